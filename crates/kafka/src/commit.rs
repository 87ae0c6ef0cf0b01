//! Offset-commit bookkeeping, kept free of Kafka so it can be unit-tested.
//!
//! A partition's committed offset is the sink's acknowledged
//! [`Checkpoint`]: it never passes an event whose window has not been
//! accepted downstream, and it never moves backwards. With every commit goes
//! [`CommitMetadata`], the end of the last window accepted, so a restart (or a
//! new owner of the partition) replays from the offset without writing those
//! windows again — the way Kafka Streams keeps its partition time there.

use std::collections::{BTreeMap, BTreeSet};

use fleet_core::{Checkpoint, OutputMode, PartitionId, TimestampMs};

/// What the service stores in the offset-commit metadata.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct CommitMetadata {
    /// Windows ending at or before this were accepted by the sink.
    pub closed_through: TimestampMs,
}

const METADATA_PREFIX: &str = "fleet/1;closed_through=";

impl CommitMetadata {
    /// The metadata string.
    pub fn encode(&self) -> String {
        format!("{METADATA_PREFIX}{}", self.closed_through)
    }

    /// Parses metadata written by [`encode`](Self::encode); anything else
    /// (empty, another tool's) is `None`.
    pub fn parse(s: &str) -> Option<Self> {
        let closed_through = s.strip_prefix(METADATA_PREFIX)?.parse().ok()?;
        Some(CommitMetadata { closed_through })
    }
}

/// One commit to make.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CommitPlan {
    /// `(partition, offset to resume from)`.
    pub offsets: Vec<(PartitionId, i64)>,
    /// The metadata that goes with each partition's offset.
    pub metadata: BTreeMap<PartitionId, CommitMetadata>,
}

impl CommitPlan {
    /// The metadata to commit with `partition`'s offset.
    pub fn metadata_for(&self, partition: PartitionId) -> Option<CommitMetadata> {
        self.metadata.get(&partition).copied()
    }
}

/// What has been committed per partition.
#[derive(Clone, Debug, Default)]
pub struct CommitLedger {
    /// Which scope each partition's window boundary belongs to.
    mode: OutputMode,
    committed: BTreeMap<PartitionId, i64>,
    closed_through: BTreeMap<PartitionId, TimestampMs>,
}

impl CommitLedger {
    /// An empty ledger for the window boundaries of `mode`'s scopes.
    pub fn new(mode: OutputMode) -> Self {
        CommitLedger {
            mode,
            ..Self::default()
        }
    }

    /// Records an offset found committed at assignment.
    pub fn restore(
        &mut self,
        partition: PartitionId,
        offset: i64,
        metadata: Option<CommitMetadata>,
    ) {
        self.committed.insert(partition, offset);
        if let Some(m) = metadata {
            let kept = self
                .closed_through
                .entry(partition)
                .or_insert(m.closed_through);
            *kept = (*kept).max(m.closed_through);
        }
    }

    /// Forgets a partition that was revoked.
    pub fn forget(&mut self, partition: PartitionId) {
        self.committed.remove(&partition);
        self.closed_through.remove(&partition);
    }

    /// The committed offset of a partition, if any.
    pub fn committed(&self, partition: PartitionId) -> Option<i64> {
        self.committed.get(&partition).copied()
    }

    /// The window boundary to commit with `partition`: its scope's, never
    /// behind what was committed for any partition of that scope (in the
    /// single output mode one boundary covers every partition).
    fn boundary(&self, checkpoint: &Checkpoint, partition: PartitionId) -> Option<TimestampMs> {
        let scope = self.mode.scope_of(partition);
        let committed = self
            .closed_through
            .iter()
            .filter(|(p, _)| self.mode.scope_of(**p) == scope)
            .map(|(_, closed)| *closed)
            .max();
        checkpoint
            .closed_through
            .get(&scope)
            .copied()
            .max(committed)
    }

    /// What to commit for `checkpoint`, limited to `owned` partitions; `None`
    /// when nothing would change. Offsets never go backwards; when a
    /// partition's window boundary moved, it is committed again at its old
    /// offset if need be, so that it carries the new metadata.
    pub fn plan(
        &self,
        checkpoint: &Checkpoint,
        owned: &BTreeSet<PartitionId>,
    ) -> Option<CommitPlan> {
        let mut plan = CommitPlan {
            offsets: Vec::new(),
            metadata: BTreeMap::new(),
        };
        for p in owned {
            let boundary = self.boundary(checkpoint, *p);
            let boundary_moved =
                boundary.is_some_and(|c| self.closed_through.get(p).is_none_or(|old| c > *old));
            let old = self.committed.get(p).copied();
            let new = checkpoint.resume_offsets.get(p).copied();
            let offset = match (old, new) {
                (Some(o), Some(n)) if n > o => n,
                (None, Some(n)) => n,
                (Some(o), _) if boundary_moved => o,
                _ => continue,
            };
            plan.offsets.push((*p, offset));
            if let Some(closed_through) = boundary {
                plan.metadata.insert(*p, CommitMetadata { closed_through });
            }
        }
        (!plan.offsets.is_empty()).then_some(plan)
    }

    /// Records that `plan` was committed.
    pub fn committed_plan(&mut self, plan: &CommitPlan) {
        for (p, o) in &plan.offsets {
            self.committed.insert(*p, *o);
        }
        for (p, m) in &plan.metadata {
            self.closed_through.insert(*p, m.closed_through);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use fleet_core::Scope;

    fn cp(offsets: &[(PartitionId, i64)], closed: Option<i64>) -> Checkpoint {
        Checkpoint {
            resume_offsets: offsets.iter().copied().collect(),
            closed_through: closed.map(|c| (Scope::All, c)).into_iter().collect(),
            epoch: 0,
        }
    }

    #[test]
    fn metadata_round_trips_and_ignores_foreign_values() {
        let m = CommitMetadata {
            closed_through: 1_764_000_005_000,
        };
        assert_eq!(CommitMetadata::parse(&m.encode()), Some(m));
        assert_eq!(CommitMetadata::parse(""), None);
        assert_eq!(CommitMetadata::parse("something else"), None);
    }

    #[test]
    fn offsets_only_move_forward_and_only_for_owned_partitions() {
        let owned = BTreeSet::from([0, 1]);
        let mut l = CommitLedger::new(OutputMode::Single);
        let plan = l
            .plan(&cp(&[(0, 10), (1, 5), (2, 7)], Some(5000)), &owned)
            .unwrap();
        assert_eq!(plan.offsets, vec![(0, 10), (1, 5)]);
        assert_eq!(
            plan.metadata_for(1),
            Some(CommitMetadata {
                closed_through: 5000
            })
        );
        l.committed_plan(&plan);
        assert_eq!(l.plan(&cp(&[(0, 10), (1, 5)], Some(5000)), &owned), None);
        assert_eq!(
            l.plan(&cp(&[(0, 8)], Some(5000)), &owned),
            None,
            "never backwards"
        );
        let plan = l.plan(&cp(&[(0, 12)], Some(10_000)), &owned).unwrap();
        assert_eq!(
            plan.offsets,
            vec![(0, 12), (1, 5)],
            "boundary moved: re-commit partition 1"
        );
    }

    #[test]
    fn partitioned_checkpoints_commit_each_partitions_own_boundary() {
        let owned = BTreeSet::from([0, 1]);
        let mut l = CommitLedger::new(OutputMode::Partitioned);
        l.restore(
            1,
            50,
            Some(CommitMetadata {
                closed_through: 30_000,
            }),
        );
        let checkpoint = Checkpoint {
            resume_offsets: [(0, 10), (1, 60)].into(),
            closed_through: OutputMode::Partitioned.per_scope([(0, 10_000), (1, 25_000)]),
            epoch: 0,
        };
        let plan = l.plan(&checkpoint, &owned).unwrap();
        assert_eq!(plan.offsets, vec![(0, 10), (1, 60)]);
        let closed = |p| plan.metadata_for(p).map(|m| m.closed_through);
        assert_eq!(closed(0), Some(10_000), "its own, not partition 1's");
        assert_eq!(closed(1), Some(30_000), "never behind what was committed");
        l.committed_plan(&plan);
        // Only partition 0's boundary moves: only it is committed again.
        let checkpoint = Checkpoint {
            closed_through: OutputMode::Partitioned.per_scope([(0, 15_000), (1, 25_000)]),
            ..checkpoint
        };
        let plan = l.plan(&checkpoint, &owned).unwrap();
        assert_eq!(plan.offsets, vec![(0, 10)]);
        assert_eq!(closed_of(&plan, 0), Some(15_000));
    }

    fn closed_of(plan: &CommitPlan, p: PartitionId) -> Option<i64> {
        plan.metadata_for(p).map(|m| m.closed_through)
    }

    #[test]
    fn restored_boundary_is_kept() {
        let mut l = CommitLedger::new(OutputMode::Single);
        l.restore(
            0,
            100,
            Some(CommitMetadata {
                closed_through: 20_000,
            }),
        );
        let plan = l
            .plan(&cp(&[(0, 120)], Some(15_000)), &BTreeSet::from([0]))
            .unwrap();
        assert_eq!(
            plan.metadata_for(0),
            Some(CommitMetadata {
                closed_through: 20_000
            })
        );
        l.forget(0);
        assert_eq!(l.committed(0), None);
    }
}
