//! Offset-commit bookkeeping, kept free of Kafka so it can be unit-tested.
//!
//! A partition's committed offset is the sink's acknowledged
//! [`Checkpoint`]: it never passes an event whose window has not been
//! accepted downstream, and it never moves backwards. With every commit goes
//! [`CommitMetadata`], the end of the last window accepted, so a restart (or a
//! new owner of the partition) replays from the offset without writing those
//! windows again — the way Kafka Streams keeps its partition time there.

use std::collections::{BTreeMap, BTreeSet};

use fleet_core::{Checkpoint, PartitionId, TimestampMs};

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
    /// Goes with every offset of the plan.
    pub metadata: Option<CommitMetadata>,
}

/// What has been committed per partition.
#[derive(Clone, Debug, Default)]
pub struct CommitLedger {
    committed: BTreeMap<PartitionId, i64>,
    closed_through: Option<TimestampMs>,
}

impl CommitLedger {
    /// An empty ledger.
    pub fn new() -> Self {
        Self::default()
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
            self.closed_through = Some(
                self.closed_through
                    .map_or(m.closed_through, |c| c.max(m.closed_through)),
            );
        }
    }

    /// Forgets a partition that was revoked.
    pub fn forget(&mut self, partition: PartitionId) {
        self.committed.remove(&partition);
    }

    /// The committed offset of a partition, if any.
    pub fn committed(&self, partition: PartitionId) -> Option<i64> {
        self.committed.get(&partition).copied()
    }

    /// What to commit for `checkpoint`, limited to `owned` partitions; `None`
    /// when nothing would change. Offsets never go backwards; when the window
    /// boundary moved, partitions without a new offset are committed again at
    /// their old offset so that every partition carries the new metadata.
    pub fn plan(
        &self,
        checkpoint: &Checkpoint,
        owned: &BTreeSet<PartitionId>,
    ) -> Option<CommitPlan> {
        let boundary_moved = checkpoint
            .closed_through
            .is_some_and(|c| self.closed_through.is_none_or(|old| c > old));
        let mut offsets = Vec::new();
        for p in owned {
            let old = self.committed.get(p).copied();
            let new = checkpoint.resume_offsets.get(p).copied();
            match (old, new) {
                (Some(o), Some(n)) if n > o => offsets.push((*p, n)),
                (None, Some(n)) => offsets.push((*p, n)),
                (Some(o), _) if boundary_moved => offsets.push((*p, o)),
                _ => {}
            }
        }
        if offsets.is_empty() {
            return None;
        }
        let closed_through = checkpoint.closed_through.max(self.closed_through);
        Some(CommitPlan {
            offsets,
            metadata: closed_through.map(|closed_through| CommitMetadata { closed_through }),
        })
    }

    /// Records that `plan` was committed.
    pub fn committed_plan(&mut self, plan: &CommitPlan) {
        for (p, o) in &plan.offsets {
            self.committed.insert(*p, *o);
        }
        if let Some(m) = plan.metadata {
            self.closed_through = Some(m.closed_through);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cp(offsets: &[(PartitionId, i64)], closed: Option<i64>) -> Checkpoint {
        Checkpoint {
            resume_offsets: offsets.iter().copied().collect(),
            closed_through: closed,
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
        let mut l = CommitLedger::new();
        let plan = l
            .plan(&cp(&[(0, 10), (1, 5), (2, 7)], Some(5000)), &owned)
            .unwrap();
        assert_eq!(plan.offsets, vec![(0, 10), (1, 5)]);
        assert_eq!(
            plan.metadata,
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
    fn restored_boundary_is_kept() {
        let mut l = CommitLedger::new();
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
            plan.metadata,
            Some(CommitMetadata {
                closed_through: 20_000
            })
        );
        l.forget(0);
        assert_eq!(l.committed(0), None);
    }
}
