//! Offset-commit bookkeeping, kept free of Kafka so it can be unit-tested.
//!
//! A partition's committed offset is the sink's acknowledged
//! [`Checkpoint`]: it never passes an event whose window has not been
//! accepted downstream, and it never moves backwards. With every commit goes
//! [`CommitMetadata`], the end of the last window accepted, so a restart (or a
//! new owner of the partition) replays from the offset without writing those
//! windows again — the way Kafka Streams keeps its partition time there.

use std::collections::{BTreeMap, BTreeSet, VecDeque};

use fleet_core::{Checkpoint, FiringPoint, OutputMode, PartitionId, TimestampMs};

/// What the service stores in the offset-commit metadata.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct CommitMetadata {
    /// Windows ending at or before this were accepted by the sink; `None`
    /// before any was.
    pub closed_through: Option<TimestampMs>,
    /// The single output mode's closings after `closed_through` whose
    /// windows may have been sent, oldest first: each closing's `through`
    /// and this partition's offset in its [`FiringPoint`].
    pub fired: Vec<(TimestampMs, i64)>,
}

const METADATA_PREFIX: &str = "fleet/1;closed_through=";
const FIRED: &str = ";fired=";

/// Most closings one commit carries: Kafka keeps 4 KiB of metadata per
/// partition by default (`offset.metadata.max.bytes`), and each takes at
/// most 41 bytes (usually about 25). When the ledger holds this many, the
/// sink waits until commits record some of their windows as accepted.
pub const MAX_FIRED: usize = 64;

impl CommitMetadata {
    /// The metadata string: `fleet/1;closed_through=<ms>`, then
    /// `;fired=<through>@<offset>,…` when there are closings.
    pub fn encode(&self) -> String {
        let mut s = String::from(METADATA_PREFIX);
        if let Some(closed) = self.closed_through {
            s.push_str(&closed.to_string());
        }
        for (i, (through, offset)) in self.fired.iter().enumerate() {
            s.push_str(if i == 0 { FIRED } else { "," });
            s.push_str(&format!("{through}@{offset}"));
        }
        s
    }

    /// Parses metadata written by [`encode`](Self::encode); anything else
    /// (empty, another tool's) is `None`.
    pub fn parse(s: &str) -> Option<Self> {
        let rest = s.strip_prefix(METADATA_PREFIX)?;
        let (closed, fired) = match rest.split_once(FIRED) {
            Some((closed, fired)) => (closed, Some(fired)),
            None => (rest, None),
        };
        let closed_through = match closed {
            "" => None,
            c => Some(c.parse().ok()?),
        };
        let fired = match fired {
            None => Vec::new(),
            Some(list) => list
                .split(',')
                .map(|entry| {
                    let (through, offset) = entry.split_once('@')?;
                    Some((through.parse().ok()?, offset.parse().ok()?))
                })
                .collect::<Option<Vec<_>>>()?,
        };
        Some(CommitMetadata {
            closed_through,
            fired,
        })
    }
}

/// The firing points stored with the commits of every partition in
/// `assigned` (`(partition, committed offset, metadata)`): the closings
/// every partition carrying metadata lists, each partition's offset in
/// them set to 0 where reading restarts past it (none of its events
/// replayed belong to their windows, and nothing need be read to reach it).
pub fn stored_firing_points<'a>(
    assigned: impl IntoIterator<Item = (PartitionId, Option<i64>, Option<&'a CommitMetadata>)>,
) -> Vec<FiringPoint> {
    let mut points: Option<BTreeMap<TimestampMs, FiringPoint>> = None;
    for (partition, committed, metadata) in assigned {
        let Some(metadata) = metadata else {
            continue;
        };
        let mine: BTreeMap<TimestampMs, i64> = metadata.fired.iter().copied().collect();
        let points = points.get_or_insert_with(|| {
            mine.keys()
                .map(|t| {
                    (
                        *t,
                        FiringPoint {
                            through: *t,
                            offsets: BTreeMap::new(),
                        },
                    )
                })
                .collect()
        });
        points.retain(|through, point| match mine.get(through) {
            Some(offset) => {
                let past = committed.is_some_and(|c| c >= *offset);
                point
                    .offsets
                    .insert(partition, if past { 0 } else { *offset });
                true
            }
            None => false,
        });
    }
    points.unwrap_or_default().into_values().collect()
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
    pub fn metadata_for(&self, partition: PartitionId) -> Option<&CommitMetadata> {
        self.metadata.get(&partition)
    }
}

/// What has been committed per partition.
#[derive(Clone, Debug, Default)]
pub struct CommitLedger {
    /// Which scope each partition's window boundary belongs to.
    mode: OutputMode,
    committed: BTreeMap<PartitionId, i64>,
    closed_through: BTreeMap<PartitionId, TimestampMs>,
    /// Firing points of closings whose windows may have been sent and are
    /// not recorded as accepted: every commit carries them.
    fired: Vec<FiringPoint>,
    /// The newest closing the last commit carried.
    fired_committed: Option<TimestampMs>,
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
        metadata: Option<&CommitMetadata>,
    ) {
        self.committed.insert(partition, offset);
        if let Some(closed) = metadata.and_then(|m| m.closed_through) {
            let kept = self.closed_through.entry(partition).or_insert(closed);
            *kept = (*kept).max(closed);
        }
    }

    /// Keeps the firing points found stored at assignment: the commits
    /// carry them until their windows are recorded as accepted.
    pub fn restore_fired(&mut self, points: &[FiringPoint]) {
        self.fired = points.to_vec();
        self.fired_committed = points.last().map(|p| p.through);
    }

    /// Moves from `points` (firing points of closings about to be sent, in
    /// order) those there is room for, up to [`MAX_FIRED`]; a closing made
    /// again at a stored point is there already and is dropped.
    pub fn add_fired(&mut self, points: &mut VecDeque<FiringPoint>) {
        while let Some(point) = points.front() {
            let new = self
                .fired
                .last()
                .is_none_or(|last| point.through > last.through);
            if new && self.fired.len() >= MAX_FIRED {
                return;
            }
            if let Some(point) = points.pop_front().filter(|_| new) {
                self.fired.push(point);
            }
        }
    }

    /// Drops every firing point: the broker refused metadata that long.
    pub fn drop_fired(&mut self) {
        self.fired.clear();
    }

    /// Whether some firing point is not committed yet.
    pub fn fired_pending(&self) -> bool {
        self.fired
            .last()
            .is_some_and(|p| Some(p.through) > self.fired_committed)
    }

    /// Forgets a partition that was revoked.
    pub fn forget(&mut self, partition: PartitionId) {
        self.committed.remove(&partition);
        self.closed_through.remove(&partition);
        if self.committed.is_empty() {
            self.fired.clear();
            self.fired_committed = None;
        }
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
    /// partition's window boundary moved, or firing points are to be
    /// stored, it is committed again at its old offset if need be, so that
    /// it carries the new metadata. A partition never committed is then
    /// committed at its offset in `first_read` (the first read since its
    /// assignment), before which nothing is needed.
    pub fn plan(
        &self,
        checkpoint: &Checkpoint,
        owned: &BTreeSet<PartitionId>,
        first_read: &BTreeMap<PartitionId, i64>,
    ) -> Option<CommitPlan> {
        let mut plan = CommitPlan {
            offsets: Vec::new(),
            metadata: BTreeMap::new(),
        };
        let fired_moved = self.fired_pending();
        for p in owned {
            let boundary = self.boundary(checkpoint, *p);
            let metadata_moved = fired_moved
                || boundary.is_some_and(|c| self.closed_through.get(p).is_none_or(|old| c > *old));
            let old = self.committed.get(p).copied();
            let new = checkpoint.resume_offsets.get(p).copied();
            let offset = match (old, new) {
                (Some(o), Some(n)) if n > o => n,
                (None, Some(n)) => n,
                (Some(o), _) if metadata_moved => o,
                (None, None) if fired_moved => match first_read.get(p) {
                    Some(first) => *first,
                    None => continue,
                },
                _ => continue,
            };
            plan.offsets.push((*p, offset));
            let fired: Vec<(TimestampMs, i64)> = self
                .fired
                .iter()
                .filter(|f| boundary.is_none_or(|b| f.through > b))
                .map(|f| (f.through, f.bound(*p)))
                .collect();
            if boundary.is_some() || !fired.is_empty() {
                plan.metadata.insert(
                    *p,
                    CommitMetadata {
                        closed_through: boundary,
                        fired,
                    },
                );
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
            if let Some(closed) = m.closed_through {
                self.closed_through.insert(*p, closed);
            }
            if let Some((through, _)) = m.fired.last() {
                self.fired_committed = self.fired_committed.max(Some(*through));
            }
        }
        if let Some(boundary) = self.closed_through.values().min() {
            self.fired.retain(|f| f.through > *boundary);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use fleet_core::Scope;

    impl CommitMetadata {
        fn through(closed_through: TimestampMs) -> Self {
            CommitMetadata {
                closed_through: Some(closed_through),
                fired: Vec::new(),
            }
        }
    }

    fn cp(offsets: &[(PartitionId, i64)], closed: Option<i64>) -> Checkpoint {
        Checkpoint {
            resume_offsets: offsets.iter().copied().collect(),
            closed_through: closed.map(|c| (Scope::All, c)).into_iter().collect(),
            epoch: 0,
        }
    }

    #[test]
    fn metadata_round_trips_and_ignores_foreign_values() {
        let m = CommitMetadata::through(1_764_000_005_000);
        assert_eq!(CommitMetadata::parse(&m.encode()), Some(m.clone()));
        assert_eq!(CommitMetadata::parse(""), None);
        assert_eq!(CommitMetadata::parse("something else"), None);
    }

    #[test]
    fn offsets_only_move_forward_and_only_for_owned_partitions() {
        let owned = BTreeSet::from([0, 1]);
        let mut l = CommitLedger::new(OutputMode::Single);
        let plan = l
            .plan(
                &cp(&[(0, 10), (1, 5), (2, 7)], Some(5000)),
                &owned,
                &BTreeMap::new(),
            )
            .unwrap();
        assert_eq!(plan.offsets, vec![(0, 10), (1, 5)]);
        assert_eq!(plan.metadata_for(1), Some(&CommitMetadata::through(5000)));
        l.committed_plan(&plan);
        assert_eq!(
            l.plan(
                &cp(&[(0, 10), (1, 5)], Some(5000)),
                &owned,
                &BTreeMap::new()
            ),
            None
        );
        assert_eq!(
            l.plan(&cp(&[(0, 8)], Some(5000)), &owned, &BTreeMap::new()),
            None,
            "never backwards"
        );
        let plan = l
            .plan(&cp(&[(0, 12)], Some(10_000)), &owned, &BTreeMap::new())
            .unwrap();
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
        l.restore(1, 50, Some(&CommitMetadata::through(30_000)));
        let checkpoint = Checkpoint {
            resume_offsets: [(0, 10), (1, 60)].into(),
            closed_through: OutputMode::Partitioned.per_scope([(0, 10_000), (1, 25_000)]),
            epoch: 0,
        };
        let plan = l.plan(&checkpoint, &owned, &BTreeMap::new()).unwrap();
        assert_eq!(plan.offsets, vec![(0, 10), (1, 60)]);
        let closed = |p| plan.metadata_for(p).and_then(|m| m.closed_through);
        assert_eq!(closed(0), Some(10_000), "its own, not partition 1's");
        assert_eq!(closed(1), Some(30_000), "never behind what was committed");
        l.committed_plan(&plan);
        // Only partition 0's boundary moves: only it is committed again.
        let checkpoint = Checkpoint {
            closed_through: OutputMode::Partitioned.per_scope([(0, 15_000), (1, 25_000)]),
            ..checkpoint
        };
        let plan = l.plan(&checkpoint, &owned, &BTreeMap::new()).unwrap();
        assert_eq!(plan.offsets, vec![(0, 10)]);
        assert_eq!(closed_of(&plan, 0), Some(15_000));
    }

    fn closed_of(plan: &CommitPlan, p: PartitionId) -> Option<i64> {
        plan.metadata_for(p).and_then(|m| m.closed_through)
    }

    #[test]
    fn restored_boundary_is_kept() {
        let mut l = CommitLedger::new(OutputMode::Single);
        l.restore(0, 100, Some(&CommitMetadata::through(20_000)));
        let plan = l
            .plan(
                &cp(&[(0, 120)], Some(15_000)),
                &BTreeSet::from([0]),
                &BTreeMap::new(),
            )
            .unwrap();
        assert_eq!(plan.metadata_for(0), Some(&CommitMetadata::through(20_000)));
        l.forget(0);
        assert_eq!(l.committed(0), None);
    }

    #[test]
    fn firing_points_round_trip_in_the_metadata() {
        let m = CommitMetadata {
            closed_through: Some(10_000),
            fired: vec![(15_000, 42), (20_000, 0)],
        };
        assert_eq!(
            m.encode(),
            "fleet/1;closed_through=10000;fired=15000@42,20000@0"
        );
        assert_eq!(CommitMetadata::parse(&m.encode()), Some(m));
        let nothing_closed = CommitMetadata {
            closed_through: None,
            fired: vec![(5_000, 7)],
        };
        assert_eq!(
            CommitMetadata::parse(&nothing_closed.encode()),
            Some(nothing_closed)
        );
        assert_eq!(
            CommitMetadata::parse("fleet/1;closed_through=5;fired=x@1"),
            None
        );
        assert_eq!(
            CommitMetadata::parse("fleet/1;closed_through=5"),
            Some(CommitMetadata::through(5)),
            "what earlier versions wrote"
        );
    }

    #[test]
    fn every_commit_carries_the_firing_points_not_yet_accepted() {
        let owned = BTreeSet::from([0, 1]);
        let mut l = CommitLedger::new(OutputMode::Single);
        // Nothing accepted or committed yet: the partitions are committed
        // where they were first read.
        l.add_fired(&mut VecDeque::from([FiringPoint::new(5_000, [(0, 3)])]));
        assert!(l.fired_pending());
        let first_read = BTreeMap::from([(0, 0), (1, 0)]);
        let plan = l.plan(&Checkpoint::default(), &owned, &first_read).unwrap();
        assert_eq!(plan.offsets, vec![(0, 0), (1, 0)]);
        assert_eq!(plan.metadata_for(1).unwrap().fired, vec![(5_000, 0)]);
        assert_eq!(
            plan.metadata_for(0).unwrap().encode(),
            "fleet/1;closed_through=;fired=5000@3"
        );
        l.committed_plan(&plan);
        assert!(!l.fired_pending());
        let mut again = VecDeque::from([FiringPoint::new(5_000, [(0, 3)])]);
        l.add_fired(&mut again);
        assert!(
            again.is_empty() && !l.fired_pending(),
            "stored again: nothing new"
        );
        // A later closing, and the first one accepted: only the later one
        // stays, on every partition.
        l.add_fired(&mut VecDeque::from([FiringPoint::new(
            10_000,
            [(0, 9), (1, 4)],
        )]));
        let plan = l
            .plan(&cp(&[(0, 3)], Some(5_000)), &owned, &first_read)
            .unwrap();
        assert_eq!(plan.offsets, vec![(0, 3), (1, 0)]);
        assert_eq!(plan.metadata_for(0).unwrap().fired, vec![(10_000, 9)]);
        assert_eq!(plan.metadata_for(1).unwrap().fired, vec![(10_000, 4)]);
        l.committed_plan(&plan);
        assert_eq!(
            l.plan(&cp(&[(0, 3)], Some(5_000)), &owned, &first_read),
            None
        );
        // Accepted: the next commit carries no point.
        let plan = l
            .plan(&cp(&[(0, 9)], Some(10_000)), &owned, &first_read)
            .unwrap();
        assert!(plan.metadata.values().all(|m| m.fired.is_empty()));
        l.committed_plan(&plan);
        assert!(!l.fired_pending());
    }

    #[test]
    fn stored_points_are_the_closings_every_partition_lists() {
        let m = |fired: &[(i64, i64)]| CommitMetadata {
            closed_through: Some(5_000),
            fired: fired.to_vec(),
        };
        let (m0, m1) = (m(&[(10_000, 8), (15_000, 9)]), m(&[(10_000, 20)]));
        // A commit of partition 1 that failed left it without the second.
        let points = stored_firing_points([
            (0, Some(2), Some(&m0)),
            (1, Some(20), Some(&m1)),
            (2, None, None),
        ]);
        assert_eq!(
            points,
            vec![FiringPoint::new(10_000, [(0, 8), (1, 0)])],
            "partition 1 restarts at its point: nothing to wait for"
        );
        assert!(stored_firing_points([(0, None, None)]).is_empty());
    }

    #[test]
    fn the_ledger_takes_no_more_firing_points_than_a_commit_carries() {
        let mut l = CommitLedger::new(OutputMode::Single);
        let mut points: VecDeque<FiringPoint> = (1..=MAX_FIRED as i64 + 2)
            .map(|k| FiringPoint::new(k * 5_000, [(0, k)]))
            .collect();
        l.add_fired(&mut points);
        assert_eq!(points.len(), 2, "these wait for room");
        let plan = l
            .plan(&cp(&[(0, 0)], None), &BTreeSet::from([0]), &BTreeMap::new())
            .unwrap();
        let carried = plan.metadata_for(0).unwrap();
        assert_eq!(carried.fired.len(), MAX_FIRED);
        assert!(carried.encode().len() < 4096);
        l.committed_plan(&plan);
        // Two closings' windows accepted: room for the two that waited.
        let plan = l
            .plan(
                &cp(&[(0, 2)], Some(10_000)),
                &BTreeSet::from([0]),
                &BTreeMap::new(),
            )
            .unwrap();
        l.committed_plan(&plan);
        l.add_fired(&mut points);
        assert!(points.is_empty());
    }
}
