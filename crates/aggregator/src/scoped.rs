//! Every window set of the aggregator, one per [`Scope`].
//!
//! The output mode decides the scopes: one set over every partition
//! ([`Scope::All`], the single mode) or one per partition (the partitioned
//! mode; raw events are keyed by VIN, so each vehicle lives in one partition
//! and per-partition aggregates add up exactly). Past that choice both modes
//! are the same code: events go to their scope's set in runs, a watermark
//! reaches the sets its scope covers, a rewind and the checkpoint's window
//! boundaries are per scope, and a set's aggregates carry its partition, if
//! any, as the `kafka_partition` label. The group labels are one table for
//! every set.

use std::collections::BTreeMap;
use std::sync::Arc;

use fleet_core::{
    Checkpoint, EnrichedBatch, FiringPoint, OutputMode, Scope, TimestampMs, Watermark,
    WindowAggregate, WindowSpec,
};
use fleet_drilldown::SampleFrequency;
use fleet_plan::MetricPlan;

use crate::groups::GroupTables;
use crate::layout::Layout;
use crate::windows::{BatchOutcome, Folds, PendingVehicleSample, TumblingWindows};

/// The windows of every scope this instance has seen.
#[derive(Debug)]
pub struct ScopedWindows {
    mode: OutputMode,
    spec: WindowSpec,
    /// Most groups one window of one scope writes (see [`Self::with_max_groups`]).
    max_groups: usize,
    drilldown: Option<SampleFrequency>,
    /// Where each metric keeps its state.
    layout: Arc<Layout>,
    /// Group labels of every grouping, as announced by the enricher.
    groups: GroupTables,
    sets: BTreeMap<Scope, TumblingWindows>,
    /// Per scope, the end of the last window written before (from the last
    /// rewind), for the sets made after it.
    written_through: BTreeMap<Scope, TimestampMs>,
    /// The firing points of the last rewind, for the set of [`Scope::All`].
    fired: Vec<FiringPoint>,
}

impl ScopedWindows {
    /// No scope seen yet; windows compute the metrics of `plan`.
    pub fn new(spec: WindowSpec, mode: OutputMode, plan: &MetricPlan) -> Self {
        ScopedWindows {
            mode,
            spec,
            max_groups: usize::MAX,
            drilldown: None,
            layout: Arc::new(Layout::new(plan)),
            groups: GroupTables::new(plan),
            sets: BTreeMap::new(),
            written_through: BTreeMap::new(),
            fired: Vec::new(),
        }
    }

    /// Writes at most `max_groups` (at least 1) groups per window and scope:
    /// when a window has more, the `max_groups − 1` with the most events
    /// (ties: in label order) keep their own series and the rest are folded
    /// into one group labelled `other` (see [`GroupKey::other`]). The choice
    /// depends only on the window's events, so a replay folds the same way.
    pub fn with_max_groups(mut self, max_groups: usize) -> Self {
        self.max_groups = max_groups;
        self
    }

    /// Also keeps the samples of drilled-down vehicles (events marked
    /// [`EnrichedEvent::drilldown`](fleet_core::EnrichedEvent::drilldown)),
    /// reduced per window as `frequency` says; they are taken with
    /// [`take_vehicle_samples`](Self::take_vehicle_samples) after each
    /// [`advance`](Self::advance).
    pub fn with_drilldown(mut self, frequency: Option<SampleFrequency>) -> Self {
        self.drilldown = frequency;
        self
    }

    fn set_of(&mut self, scope: Scope) -> &mut TumblingWindows {
        let (spec, max_groups, drilldown) = (self.spec, self.max_groups, self.drilldown);
        let layout = &self.layout;
        let written_through = self.written_through.get(&scope).copied();
        let fired = &self.fired;
        self.sets.entry(scope).or_insert_with(|| {
            let mut set = TumblingWindows::new(spec, Arc::clone(layout))
                .with_max_groups(max_groups)
                .with_drilldown(drilldown)
                .with_firing_points(scope == Scope::All);
            set.rewind(written_through, fired);
            set
        })
    }

    /// Adds a batch from the enricher: each run of events of one scope goes
    /// to that scope's windows.
    pub fn record_batch(&mut self, batch: EnrichedBatch) -> BatchOutcome {
        self.groups.announce(batch.new_groups);
        let mut outcome = BatchOutcome::default();
        let mut rest = &batch.events[..];
        while let Some(first) = rest.first() {
            let scope = self.mode.scope_of(first.partition);
            let run = rest
                .iter()
                .position(|e| self.mode.scope_of(e.partition) != scope)
                .unwrap_or(rest.len());
            let (events, after) = rest.split_at(run);
            self.set_of(scope);
            if let Some(set) = self.sets.get_mut(&scope) {
                set.record_events(events, &batch.values, &self.groups, &mut outcome);
            }
            rest = after;
        }
        for (partition, offset) in batch.consumed_without_output {
            let scope = self.mode.scope_of(partition);
            self.set_of(scope).consumed(partition, offset);
        }
        outcome
    }

    /// Moves event time to `watermark` in every set `scope` covers (the set of
    /// `scope` itself made if need be, so that it judges later events by it);
    /// returns the windows it closes in (window end, grouping, labels) order, each
    /// labelled with its set's partition, if any.
    pub fn advance(&mut self, scope: Scope, watermark: Watermark) -> Vec<WindowAggregate> {
        if self.mode.keeps(scope) {
            self.set_of(scope);
        }
        let mut closed = Vec::new();
        for (set_scope, set) in &mut self.sets {
            if !scope.covers(*set_scope) {
                continue;
            }
            let first = closed.len();
            closed.extend(set.advance(watermark, &self.groups));
            for a in &mut closed[first..] {
                a.group.partition = set_scope.partition();
            }
        }
        closed.sort_by(|a, b| {
            (a.window_end, a.grouping, &a.group).cmp(&(b.window_end, b.grouping, &b.group))
        });
        closed
    }

    /// The input restarts from the committed offsets: every set drops its
    /// open windows and skips those its scope wrote before
    /// (`written_through`); the single output mode's set closes the windows
    /// of the closings `fired` at their points. Returns how many windows
    /// were dropped.
    pub fn rewind(
        &mut self,
        written_through: BTreeMap<Scope, TimestampMs>,
        fired: Vec<FiringPoint>,
    ) -> usize {
        let mut dropped = 0;
        for (scope, set) in &mut self.sets {
            dropped += set.rewind(written_through.get(scope).copied(), &fired);
        }
        self.written_through = written_through;
        self.fired = fired;
        dropped
    }

    /// The windows of the held closings whose points the input has been
    /// read to again, as [`Self::advance`] returns them.
    pub fn release(&mut self) -> Vec<WindowAggregate> {
        let mut closed = Vec::new();
        for set in self.sets.values_mut() {
            closed.extend(set.release(&self.groups));
        }
        closed
    }

    /// The firing points of the closings since the last call, in order.
    pub fn take_fired(&mut self) -> Vec<FiringPoint> {
        self.sets
            .values_mut()
            .flat_map(TumblingWindows::take_fired)
            .collect()
    }

    /// Closings made again at a point given by a rewind, since the last call.
    pub fn take_replayed(&mut self) -> u64 {
        self.sets
            .values_mut()
            .map(TumblingWindows::take_replayed)
            .sum()
    }

    /// What may be acknowledged once everything emitted so far is accepted:
    /// each partition's offset and each scope's window boundary.
    pub fn checkpoint(&self) -> Checkpoint {
        let mut checkpoint = Checkpoint::default();
        for (scope, set) in &self.sets {
            set.resume_offsets_into(&mut checkpoint.resume_offsets);
            if let Some(closed) = set.closed_through() {
                checkpoint.closed_through.insert(*scope, closed);
            }
        }
        checkpoint
    }

    /// The drill-down samples of the windows closed since the last call,
    /// labelled with their set's partition like its aggregates.
    pub fn take_vehicle_samples(&mut self) -> Vec<PendingVehicleSample> {
        let mut samples = Vec::new();
        for (scope, set) in &mut self.sets {
            let first = samples.len();
            samples.extend(set.take_vehicle_samples());
            for s in &mut samples[first..] {
                s.group.partition = scope.partition();
            }
        }
        samples
    }

    /// Raw drill-down samples dropped for sharing a series and timestamp with
    /// another, since last taken.
    pub fn take_drilldown_duplicates(&mut self) -> u64 {
        self.sets
            .values_mut()
            .map(TumblingWindows::take_drilldown_duplicates)
            .sum()
    }

    /// The folds of every set since the last call.
    pub fn take_folds(&mut self) -> Folds {
        let mut folds = Folds::default();
        for set in self.sets.values_mut() {
            folds.add(set.take_folds());
        }
        folds
    }

    /// Open windows over every set.
    pub fn open_windows(&self) -> usize {
        self.sets.values().map(TumblingWindows::open_windows).sum()
    }

    /// The oldest watermark of a set, the end of a bounded input aside (for
    /// the watermark gauge).
    pub fn watermark(&self) -> Option<Watermark> {
        self.sets
            .values()
            .filter_map(TumblingWindows::watermark)
            .filter(|w| *w != Watermark::END_OF_INPUT)
            .min()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use fleet_core::{
        EnrichedEvent, GroupId, GroupKey, PartitionId, SignalValue, VehicleKey, WindowAggregate,
    };
    use fleet_plan::{SignalId, Value};
    use fleet_testkit::oracle::Expected;

    fn group(model: &str) -> GroupKey {
        GroupKey::new([("model", model), ("region", "UK")])
    }

    /// An `IC_RPM` record of the reference demo, 1000 RPM: moving.
    fn event(partition: PartitionId, offset: i64, vehicle: u32, ts: i64) -> EnrichedEvent {
        EnrichedEvent {
            drilldown: false,
            partition,
            offset,
            vehicle: VehicleKey(vehicle),
            group: GroupId(0),
            timestamp: ts,
            values_at: 0,
            values_len: 1,
        }
    }

    fn batch(events: Vec<EnrichedEvent>, new_groups: Vec<GroupKey>) -> EnrichedBatch {
        EnrichedBatch {
            new_vehicles: Vec::new(),
            new_groups,
            events,
            values: vec![SignalValue {
                signal: SignalId(0),
                value: Value::Integer(1000),
            }],
            consumed_without_output: Vec::new(),
        }
    }

    fn windows(mode: OutputMode) -> ScopedWindows {
        ScopedWindows::new(
            WindowSpec::new(5000).unwrap(),
            mode,
            &MetricPlan::reference_demo(),
        )
    }

    fn partitioned() -> ScopedWindows {
        windows(OutputMode::Partitioned)
    }

    fn in_motion(a: &WindowAggregate) -> u64 {
        Expected::from_aggregate(a).vehicles_in_motion
    }

    #[test]
    fn each_partition_closes_on_its_own_watermark_and_is_labelled() {
        let mut w = partitioned();
        w.record_batch(batch(
            vec![event(0, 0, 1, 1_000), event(1, 0, 2, 1_000)],
            vec![group("A")],
        ));
        // Partition 0 moves on; partition 1 stays behind.
        let closed = w.advance(Scope::Partition(0), Watermark(4_999));
        assert_eq!(closed.len(), 1);
        assert_eq!(closed[0].group.partition, Some(0));
        assert_eq!(in_motion(&closed[0]), 1);
        assert_eq!(w.open_windows(), 1, "partition 1's window is still open");
        // Late on partition 0, not on partition 1.
        let outcome = w.record_batch(batch(
            vec![event(0, 1, 3, 2_000), event(1, 1, 4, 2_000)],
            vec![],
        ));
        assert_eq!(outcome.counted, 1);
        assert_eq!(outcome.late_lags_ms.len(), 1);
        let closed = w.advance(Scope::Partition(1), Watermark(4_999));
        assert_eq!(closed[0].group.partition, Some(1));
        assert_eq!(in_motion(&closed[0]), 2);
    }

    #[test]
    fn checkpoint_keeps_each_partitions_boundary() {
        let mut w = partitioned();
        w.record_batch(batch(
            vec![
                event(0, 10, 1, 1_000),
                event(1, 20, 2, 1_000),
                event(1, 21, 2, 6_000),
            ],
            vec![group("A")],
        ));
        w.advance(Scope::Partition(1), Watermark(4_999));
        let cp = w.checkpoint();
        assert_eq!(cp.resume_offsets, [(0, 10), (1, 21)].into());
        assert_eq!(cp.closed_through.get(&Scope::Partition(1)), Some(&5_000));
        assert_eq!(cp.closed_through.get(&Scope::Partition(0)), None);
    }

    #[test]
    fn rewind_skips_what_each_partition_wrote_before() {
        let mut w = partitioned();
        w.record_batch(batch(vec![event(0, 0, 1, 1_000)], vec![group("A")]));
        assert_eq!(
            w.rewind(
                OutputMode::Partitioned.per_scope([(0, 5_000), (1, 10_000)]),
                Vec::new()
            ),
            1
        );
        // Replayed: partition 0's first window was written, partition 1's
        // (seen for the first time) first two were.
        let outcome = w.record_batch(batch(
            vec![
                event(0, 0, 1, 1_000),
                event(0, 1, 1, 6_000),
                event(1, 0, 2, 7_000),
                event(1, 1, 2, 11_000),
            ],
            vec![],
        ));
        assert_eq!(outcome.already_written, 2);
        assert_eq!(outcome.counted, 2);
        let closed = w.advance(Scope::All, Watermark::END_OF_INPUT);
        let ends: Vec<(i64, Option<PartitionId>)> = closed
            .iter()
            .map(|a| (a.window_end, a.group.partition))
            .collect();
        assert_eq!(ends, vec![(10_000, Some(0)), (15_000, Some(1))]);
    }

    #[test]
    fn the_single_mode_keeps_one_set_over_every_partition() {
        let mut w = windows(OutputMode::Single);
        w.record_batch(batch(
            vec![event(0, 10, 1, 1_000), event(1, 20, 2, 1_000)],
            vec![group("A")],
        ));
        assert!(
            w.advance(Scope::Partition(0), Watermark(4_999)).is_empty(),
            "a partition's watermark reaches no set of the single mode"
        );
        let closed = w.advance(Scope::All, Watermark(4_999));
        assert_eq!(closed.len(), 1);
        assert_eq!(closed[0].group.partition, None);
        assert_eq!(in_motion(&closed[0]), 2);
        let cp = w.checkpoint();
        assert_eq!(cp.resume_offsets, [(0, 11), (1, 21)].into());
        assert_eq!(cp.closed_through, [(Scope::All, 5_000)].into());
    }

    #[test]
    fn dropped_events_reach_their_scopes_offsets_without_a_window() {
        let mut w = partitioned();
        w.record_batch(EnrichedBatch {
            consumed_without_output: vec![(2, 40), (3, 7)],
            ..EnrichedBatch::default()
        });
        assert_eq!(w.checkpoint().resume_offsets, [(2, 41), (3, 8)].into());
        assert_eq!(w.open_windows(), 0);
    }
}
