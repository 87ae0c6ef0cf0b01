//! The partitions this instance owns, and what each change of them means.
//!
//! The group's rebalance callbacks only record what changed
//! ([`RebalanceEvent`]); the source's loop applies it here. Every owned
//! partition has one [`Position`], in one map: being in the map is owning
//! it. Applying an assignment restarts each partition from its committed
//! offset and answers what the loop must do: send the [`Msg::Rewind`] that
//! drops the windows built so far (each scope skipping up to the boundary
//! found in its commits), and whether it may process at all (the single
//! output mode needs every partition; docs/ARCHITECTURE.md, "Output modes").

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use fleet_core::{Msg, OutputMode, PartitionId, PartitionMap, SourceBatch};
use tokio::time::Instant;

use super::ends::BrokerEnds;
use super::offsets::{Judgement, Position};
use crate::{stored_firing_points, CommitMetadata};

/// A partition the group gave us, with what was committed for it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(super) struct AssignedPartition {
    pub(super) partition: PartitionId,
    /// The committed offset, if any.
    pub(super) committed: Option<i64>,
    /// The window boundary committed with it (or kept in the companion group).
    pub(super) metadata: Option<CommitMetadata>,
}

#[cfg(test)]
impl AssignedPartition {
    /// A partition assigned with `committed` and, with it, the window
    /// boundary `closed`.
    pub(super) fn committed(
        partition: PartitionId,
        committed: Option<i64>,
        closed: Option<i64>,
    ) -> Self {
        AssignedPartition {
            partition,
            committed,
            metadata: closed.map(|closed_through| CommitMetadata {
                closed_through: Some(closed_through),
                fired: Vec::new(),
            }),
        }
    }
}

/// What a rebalance callback saw, for the loop to apply.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(super) enum RebalanceEvent {
    /// Partitions were assigned.
    Assigned {
        partitions: Vec<AssignedPartition>,
        /// How many partitions the topic has, if the broker said.
        topic_partitions: Option<usize>,
    },
    /// Partitions were revoked (after their last commit).
    Revoked(Vec<PartitionId>),
}

/// What the loop must do after an assignment.
#[derive(Clone, Debug, PartialEq)]
pub(super) struct Assigned {
    /// To send downstream: the input restarts from the committed offsets.
    pub(super) rewind: Msg<SourceBatch>,
    /// Why this instance must not process, if it must not (the
    /// `kafka_ownership` readiness reason).
    pub(super) not_processing: Option<String>,
}

/// What one tick learns from the broker's end offsets.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub(super) struct Survey {
    /// Per owned partition whose position and end are known, the messages
    /// waiting past its position.
    pub(super) lags: Vec<(PartitionId, i64)>,
    /// Partitions whose fetch stayed silent too long while messages waited:
    /// where to rewind each.
    pub(super) rewinds: Vec<(PartitionId, i64)>,
    /// Per owned partition, whether the broker has just shown that nothing
    /// waits past its position: only then may it turn idle (see `ends`).
    pub(super) caught_up: Vec<(PartitionId, bool)>,
}

impl Survey {
    /// Messages waiting over every owned partition.
    pub(super) fn total_lag(&self) -> i64 {
        self.lags.iter().map(|(_, lag)| lag).sum()
    }
}

/// The owned partitions and their positions.
#[derive(Clone, Debug)]
pub(super) struct Assignment {
    /// Whether every partition must be owned, and the scopes of the rewinds.
    mode: OutputMode,
    owned: PartitionMap<Position>,
    /// Whether this instance processes what it reads.
    may_process: bool,
}

impl Assignment {
    /// Nothing owned yet, in `mode`.
    pub(super) fn new(mode: OutputMode) -> Self {
        Assignment {
            mode,
            owned: PartitionMap::default(),
            may_process: false,
        }
    }

    /// Applies an assignment made when the fence's epoch was `epoch`: each
    /// partition restarts from its committed offset (or, with none, where the
    /// group's reset policy says). `topic_partitions`: how many the topic
    /// has, if known.
    pub(super) fn assign(
        &mut self,
        partitions: &[AssignedPartition],
        topic_partitions: Option<usize>,
        epoch: u64,
        now: Instant,
    ) -> Assigned {
        for a in partitions {
            let position = self
                .owned
                .get_or_insert_with(a.partition, Position::default);
            position.forget_first_read();
            match a.committed {
                Some(offset) => position.restart_at(offset, now),
                None => position.restart_unknown(),
            }
        }
        let written_through = self.mode.per_scope(
            partitions
                .iter()
                .filter_map(|a| Some((a.partition, a.metadata.as_ref()?.closed_through?))),
        );
        // Firing points judge the windows of the single output mode only:
        // a partition's own windows hold the same events in every run.
        let fired = if self.mode.needs_every_partition() {
            stored_firing_points(
                partitions
                    .iter()
                    .map(|a| (a.partition, a.committed, a.metadata.as_ref())),
            )
        } else {
            Vec::new()
        };
        // Single output mode: one instance writes every (model, region)
        // series, so it must see every partition; with fewer it would write
        // partial aggregates into series another member also writes. In the
        // partitioned mode every partition's series are its own.
        let owned = self.len();
        self.may_process = !self.mode.needs_every_partition()
            || topic_partitions.is_some_and(|n| n > 0 && owned >= n);
        let not_processing = (!self.may_process).then(|| match topic_partitions {
            Some(n) => format!(
                "owns {owned} of the topic's {n} partitions; another member shares the consumer group"
            ),
            None => "the topic's partition count is unknown".to_string(),
        });
        Assigned {
            rewind: Msg::Rewind {
                written_through,
                epoch,
                fired,
            },
            not_processing,
        }
    }

    /// Applies a revocation. In the single output mode this instance stops
    /// processing until the next assignment shows it owns every partition.
    pub(super) fn revoke(&mut self, partitions: &[PartitionId]) {
        self.may_process = !self.mode.needs_every_partition();
        for p in partitions {
            self.owned.remove(*p);
        }
    }

    /// Whether this instance processes what it reads: always in the
    /// partitioned output mode; in the single one only while it owns every
    /// partition of the topic.
    pub(super) fn may_process(&self) -> bool {
        self.may_process
    }

    /// The owned partitions, in order.
    pub(super) fn partitions(&self) -> impl Iterator<Item = PartitionId> + '_ {
        self.owned.keys()
    }

    /// Per owned partition, the first offset read since its assignment.
    pub(super) fn first_read(&self) -> BTreeMap<PartitionId, i64> {
        self.owned
            .iter()
            .filter_map(|(p, position)| Some((p, position.first_read()?)))
            .collect()
    }

    /// The owned partitions, as a set.
    pub(super) fn partition_set(&self) -> BTreeSet<PartitionId> {
        self.partitions().collect()
    }

    /// How many partitions are owned.
    pub(super) fn len(&self) -> usize {
        self.owned.keys().count()
    }

    /// Why the `kafka_partitions` readiness condition fails, if it does.
    pub(super) fn unassigned_reason(&self) -> Option<&'static str> {
        self.owned.is_empty().then_some("no partitions assigned")
    }

    /// Judges the message at `offset` of `partition`, delivered at `now`;
    /// `None` when this instance does not own the partition.
    pub(super) fn judge(
        &mut self,
        partition: PartitionId,
        offset: i64,
        now: Instant,
    ) -> Option<Judgement> {
        Some(self.owned.get_mut(partition)?.judge(offset, now))
    }

    /// Reading `partition` restarts at `offset` (a point in time); false if
    /// it is not owned.
    pub(super) fn restart_at(&mut self, partition: PartitionId, offset: i64, now: Instant) -> bool {
        match self.owned.get_mut(partition) {
            Some(position) => {
                position.restart_at(offset, now);
                true
            }
            None => false,
        }
    }

    /// After a pause: where to seek each owned partition whose position is
    /// known.
    pub(super) fn resume_targets(&mut self, now: Instant) -> Vec<(PartitionId, i64)> {
        self.owned
            .iter_mut()
            .filter_map(|(p, position)| Some((p, position.resume(now)?)))
            .collect()
    }

    /// The owned partitions that have delivered nothing for `after`.
    pub(super) fn quiet(&self, now: Instant, after: Duration) -> Vec<PartitionId> {
        self.owned
            .iter()
            .filter(|(_, position)| position.quiet(now, after))
            .map(|(p, _)| p)
            .collect()
    }

    /// Compares the owned partitions' positions with the broker's `ends`.
    /// While `fetching` (not paused, not held back by the pipeline), a
    /// partition with messages waiting whose fetch has stayed silent for
    /// `silent_after` is to be rewound.
    pub(super) fn survey(
        &mut self,
        ends: &BrokerEnds,
        fetching: bool,
        silent_after: Duration,
        now: Instant,
    ) -> Survey {
        let mut survey = Survey::default();
        for (p, position) in self.owned.iter_mut() {
            let lag = ends.end(p).and_then(|end| position.lag(end));
            let confirmed = ends.confirmed_recently(p, now);
            let rewinding = position.rewinding();
            survey
                .caught_up
                .push((p, confirmed && !rewinding && lag.is_none_or(|lag| lag == 0)));
            if let Some(lag) = lag {
                survey.lags.push((p, lag));
            }
            // A rewind's fetch is suspect even where the end says nothing
            // waits (see the fetch guard).
            if fetching && lag.is_some_and(|lag| lag > 0 || rewinding) {
                if let Some(target) = position.silent(now, silent_after) {
                    survey.rewinds.push((p, target));
                }
            }
        }
        survey
    }
}

#[cfg(test)]
mod tests {

    use fleet_core::Scope;

    use super::*;

    fn rewind(written_through: &[(Scope, i64)], epoch: u64) -> Msg<SourceBatch> {
        Msg::Rewind {
            written_through: written_through.iter().copied().collect(),
            epoch,
            fired: Vec::new(),
        }
    }

    #[test]
    fn single_mode_processes_only_with_every_partition() {
        let now = Instant::now();
        let mut a = Assignment::new(OutputMode::Single);
        assert!(!a.may_process(), "nothing before the first assignment");
        assert_eq!(a.unassigned_reason(), Some("no partitions assigned"));
        let out = a.assign(
            &[
                AssignedPartition::committed(0, None, None),
                AssignedPartition::committed(1, None, None),
            ],
            Some(3),
            1,
            now,
        );
        assert!(!a.may_process());
        assert_eq!(
            out.not_processing.as_deref(),
            Some("owns 2 of the topic's 3 partitions; another member shares the consumer group")
        );
        assert_eq!(a.unassigned_reason(), None);
        let out = a.assign(
            &[AssignedPartition::committed(2, None, None)],
            Some(3),
            1,
            now,
        );
        assert_eq!(out.not_processing, None);
        assert!(a.may_process());
        assert_eq!(a.partitions().collect::<Vec<_>>(), vec![0, 1, 2]);

        a.revoke(&[2]);
        assert!(!a.may_process(), "a revocation stops the single mode");
        assert_eq!(a.partition_set(), BTreeSet::from([0, 1]));
    }

    #[test]
    fn single_mode_without_the_partition_count_does_not_process() {
        let mut a = Assignment::new(OutputMode::Single);
        let out = a.assign(
            &[AssignedPartition::committed(0, None, None)],
            None,
            0,
            Instant::now(),
        );
        assert_eq!(
            out.not_processing.as_deref(),
            Some("the topic's partition count is unknown")
        );
        let out = a.assign(
            &[AssignedPartition::committed(0, None, None)],
            Some(0),
            0,
            Instant::now(),
        );
        assert!(
            out.not_processing.is_some(),
            "a topic of no partitions is not owned"
        );
    }

    #[test]
    fn partitioned_mode_processes_whatever_it_owns() {
        let now = Instant::now();
        let mut a = Assignment::new(OutputMode::Partitioned);
        let out = a.assign(
            &[AssignedPartition::committed(4, None, None)],
            Some(8),
            2,
            now,
        );
        assert_eq!(out.not_processing, None);
        assert!(a.may_process());
        let out = a.assign(&[AssignedPartition::committed(5, None, None)], None, 2, now);
        assert_eq!(
            out.not_processing, None,
            "the partition count does not matter"
        );
        a.revoke(&[4, 5]);
        assert!(a.may_process());
        assert_eq!(a.len(), 0);
        assert_eq!(a.unassigned_reason(), Some("no partitions assigned"));
    }

    #[test]
    fn the_rewind_carries_each_scopes_newest_committed_boundary_and_the_epoch() {
        let now = Instant::now();
        let partitions = [
            AssignedPartition::committed(0, Some(100), Some(10_000)),
            AssignedPartition::committed(1, Some(200), Some(25_000)),
            AssignedPartition::committed(2, Some(300), None),
            AssignedPartition::committed(3, None, None),
        ];
        let mut single = Assignment::new(OutputMode::Single);
        assert_eq!(
            single.assign(&partitions, Some(4), 7, now).rewind,
            rewind(&[(Scope::All, 25_000)], 7)
        );
        let mut partitioned = Assignment::new(OutputMode::Partitioned);
        assert_eq!(
            partitioned.assign(&partitions, Some(4), 8, now).rewind,
            rewind(
                &[(Scope::Partition(0), 10_000), (Scope::Partition(1), 25_000)],
                8
            )
        );
        let mut fresh = Assignment::new(OutputMode::Single);
        assert_eq!(
            fresh
                .assign(
                    &[AssignedPartition::committed(0, None, None)],
                    Some(1),
                    0,
                    now
                )
                .rewind,
            Msg::Rewind {
                written_through: BTreeMap::new(),
                epoch: 0,
                fired: Vec::new(),
            },
            "nothing committed: nothing to skip"
        );
    }

    #[test]
    fn an_assignment_restarts_each_partition_from_its_committed_offset() {
        let now = Instant::now();
        let mut a = partitioned(&[Some(50), None], now);
        assert_eq!(a.judge(0, 49, now), Some(Judgement::Duplicate));
        assert_eq!(a.judge(0, 50, now), Some(Judgement::Take));
        assert_eq!(
            a.judge(1, 7, now),
            Some(Judgement::Take),
            "reset policy: first wins"
        );
        assert_eq!(a.judge(2, 0, now), None, "not owned");
        // Reading moved on; a new assignment goes back to the commit.
        for o in 51..60 {
            a.judge(0, o, now);
        }
        a.assign(
            &[AssignedPartition::committed(0, Some(55), None)],
            None,
            1,
            now,
        );
        assert_eq!(a.judge(0, 55, now), Some(Judgement::Take));
        // Without a commit the position is unknown again.
        a.assign(&[AssignedPartition::committed(1, None, None)], None, 2, now);
        assert_eq!(a.judge(1, 3, now), Some(Judgement::Take));
    }

    #[test]
    fn a_revoked_partition_forgets_its_position() {
        let now = Instant::now();
        let mut a = partitioned(&[Some(50)], now);
        a.revoke(&[0]);
        assert_eq!(a.judge(0, 50, now), None);
        assert_eq!(a.resume_targets(now), vec![]);
        a.assign(&[AssignedPartition::committed(0, None, None)], None, 1, now);
        assert_eq!(
            a.judge(0, 10, now),
            Some(Judgement::Take),
            "no stale position or guard"
        );
    }

    #[test]
    fn resuming_seeks_every_known_position_and_guards_it() {
        let now = Instant::now();
        let mut a = partitioned(&[Some(10), None, Some(0)], now);
        for o in 10..15 {
            assert_eq!(a.judge(0, o, now), Some(Judgement::Take));
        }
        assert_eq!(a.resume_targets(now), vec![(0, 15), (2, 0)]);
        assert_eq!(a.judge(0, 2000, now), Some(Judgement::Rewind(0)));
    }

    /// A partitioned-mode assignment of partitions 0, 1, … with these
    /// committed offsets, made at `now`.
    fn partitioned(committed: &[Option<i64>], now: Instant) -> Assignment {
        let mut a = Assignment::new(OutputMode::Partitioned);
        let partitions: Vec<AssignedPartition> = (0..)
            .zip(committed)
            .map(|(p, c)| AssignedPartition::committed(p, *c, None))
            .collect();
        a.assign(&partitions, None, 0, now);
        a
    }

    #[test]
    fn a_point_in_time_restarts_owned_partitions_only() {
        let now = Instant::now();
        let mut a = Assignment::new(OutputMode::Single);
        a.assign(
            &[AssignedPartition::committed(0, Some(500), None)],
            Some(1),
            0,
            now,
        );
        assert!(a.restart_at(0, 120, now));
        assert!(!a.restart_at(1, 120, now));
        assert_eq!(a.judge(0, 120, now), Some(Judgement::Take));
        assert_eq!(a.resume_targets(now), vec![(0, 121)]);
    }

    #[test]
    fn the_survey_reports_lag_and_rewinds_silent_fetches_only_while_fetching() {
        let t0 = Instant::now();
        let after = Duration::from_secs(1);
        let mut a = partitioned(&[Some(5000), Some(80), None], t0);
        // Partition 1 is caught up; 2 has no position; 9 is not owned.
        let mut ends = BrokerEnds::default();
        for (p, end) in [(0, 6000), (1, 80), (2, 40), (9, 1000)] {
            ends.saw(p, end);
        }
        let survey = a.survey(&ends, true, after, t0);
        assert_eq!(survey.lags, vec![(0, 1000), (1, 0)]);
        assert_eq!(survey.total_lag(), 1000);
        assert_eq!(survey.rewinds, vec![], "not silent long enough yet");
        let later = t0 + Duration::from_secs(2);
        assert_eq!(
            a.survey(&ends, false, after, later).rewinds,
            vec![],
            "paused"
        );
        assert_eq!(
            a.survey(&ends, true, after, later).rewinds,
            vec![(0, 5000 - 1024)]
        );
    }

    /// Tansu's end offset stops at the start of its last batch, so a rewind
    /// into that batch sees nothing waiting, and its fetch nothing at all.
    #[test]
    fn a_silent_rewound_fetch_is_rewound_further_where_the_end_says_nothing_waits() {
        let t0 = Instant::now();
        let after = Duration::from_secs(1);
        let mut a = partitioned(&[Some(5000)], t0);
        let mut ends = BrokerEnds::default();
        ends.confirmed(0, 4001, t0);
        assert_eq!(a.judge(0, 5600, t0), Some(Judgement::Rewind(5000 - 1024)));
        let survey = a.survey(&ends, true, after, t0 + Duration::from_millis(500));
        assert_eq!(survey.lags, vec![(0, 0)]);
        assert_eq!(survey.rewinds, vec![], "not silent long enough yet");
        assert_eq!(
            survey.caught_up,
            vec![(0, false)],
            "rewinding: not caught up"
        );
        let later = t0 + Duration::from_secs(1);
        ends.confirmed(0, 4001, later);
        assert_eq!(
            a.survey(&ends, true, after, later).rewinds,
            vec![(0, 5000 - 2048)]
        );
        assert_eq!(a.judge(0, 4500, later), Some(Judgement::Duplicate));
        assert_eq!(a.judge(0, 5000, later), Some(Judgement::Take));
        let survey = a.survey(&ends, true, after, later + Duration::from_secs(5));
        assert_eq!(survey.rewinds, vec![], "the asked offset came");
    }

    #[test]
    fn only_a_partition_the_broker_just_showed_caught_up_may_turn_idle() {
        let t0 = Instant::now();
        let after = Duration::from_secs(1);
        let mut a = partitioned(&[Some(100), Some(100), None], t0);
        let mut ends = BrokerEnds::default();
        // Statistics say every partition is caught up: not enough.
        for p in 0..3 {
            ends.saw(p, 100);
        }
        let survey = a.survey(&ends, true, after, t0);
        assert_eq!(survey.caught_up, vec![(0, false), (1, false), (2, false)]);
        // The broker answers: 0 is caught up, 1 has messages waiting, and 2
        // (no position yet) has an end it may be at.
        ends.confirmed(0, 100, t0);
        ends.confirmed(1, 130, t0);
        ends.confirmed(2, 0, t0);
        let survey = a.survey(&ends, true, after, t0 + Duration::from_secs(1));
        assert_eq!(survey.caught_up, vec![(0, true), (1, false), (2, true)]);
        // The broker stops answering: the answers grow old.
        let survey = a.survey(&ends, true, after, t0 + Duration::from_secs(4));
        assert_eq!(survey.caught_up, vec![(0, false), (1, false), (2, false)]);
    }

    #[test]
    fn a_partition_is_quiet_once_it_has_delivered_nothing_for_a_while() {
        let t0 = Instant::now();
        let after = Duration::from_secs(1);
        let mut a = partitioned(&[Some(10), Some(10)], t0);
        assert_eq!(a.quiet(t0, after), vec![0, 1], "nothing delivered yet");
        let t1 = t0 + Duration::from_secs(5);
        assert_eq!(a.judge(1, 10, t1), Some(Judgement::Take));
        assert_eq!(a.quiet(t1 + Duration::from_millis(500), after), vec![0]);
        assert_eq!(a.quiet(t1 + after, after), vec![0, 1]);
    }
}
