//! The partitioned output mode: one set of windows per Kafka partition.
//!
//! Raw events are keyed by VIN, so each vehicle lives in one partition and
//! per-partition aggregates add up exactly (`sum by (model, region)`). Each
//! partition's windows close on that partition's own watermark
//! ([`Msg::PartitionWatermark`](fleet_core::Msg)), its late events are judged
//! against it, and its aggregates carry the partition in their
//! [`GroupKey`], which the emitter writes as the `kafka_partition` label. No
//! two instances of one consumer group own a partition at once, so no two
//! write the same series.

use std::collections::BTreeMap;

use fleet_core::{
    Checkpoint, EnrichedBatch, GroupKey, PartitionId, PartitionMap, TimestampMs, Watermark,
    WindowAggregate, WindowSpec,
};

use crate::windows::{Admit, BatchOutcome, Folds, PendingVehicleSample, TumblingWindows};
use fleet_drilldown::SampleFrequency;

/// The windows of every partition this instance has seen.
#[derive(Debug)]
pub struct PartitionedWindows {
    spec: WindowSpec,
    /// Every group announced so far, for partitions seen later.
    groups: Vec<GroupKey>,
    partitions: PartitionMap<TumblingWindows>,
    /// Per partition, the end of the last window written before (from the
    /// commit metadata of the last assignment), for partitions not seen yet.
    written_through: BTreeMap<PartitionId, TimestampMs>,
    /// Each partition's group limit per window (see [`TumblingWindows::with_max_groups`]).
    max_groups: usize,
    /// Each partition's drill-down (see [`TumblingWindows::with_drilldown`]).
    drilldown: Option<SampleFrequency>,
}

impl PartitionedWindows {
    /// No partition seen yet.
    pub fn new(spec: WindowSpec) -> Self {
        PartitionedWindows {
            spec,
            groups: Vec::new(),
            partitions: PartitionMap::default(),
            written_through: BTreeMap::new(),
            max_groups: usize::MAX,
            drilldown: None,
        }
    }

    /// Keeps drill-down samples per partition (see [`TumblingWindows::with_drilldown`]).
    pub fn with_drilldown(mut self, frequency: Option<SampleFrequency>) -> Self {
        self.drilldown = frequency;
        self
    }

    /// Every partition's drill-down samples since the last call, labelled
    /// with the partition like its aggregates.
    pub fn take_vehicle_samples(&mut self) -> Vec<PendingVehicleSample> {
        let mut samples = Vec::new();
        for (p, windows) in self.partitions.iter_mut() {
            let first = samples.len();
            samples.extend(windows.take_vehicle_samples());
            for s in &mut samples[first..] {
                s.group.partition = Some(p);
            }
        }
        samples
    }

    /// Raw drill-down samples dropped as duplicates, over all partitions,
    /// since last taken.
    pub fn take_drilldown_duplicates(&mut self) -> u64 {
        self.partitions
            .values_mut()
            .map(TumblingWindows::take_drilldown_duplicates)
            .sum()
    }

    /// Emits at most `max_groups` groups per window and partition, folding
    /// the excess (see [`TumblingWindows::with_max_groups`]).
    pub fn with_max_groups(mut self, max_groups: usize) -> Self {
        self.max_groups = max_groups;
        self
    }

    /// The folds of every partition since the last call.
    pub fn take_folds(&mut self) -> Folds {
        let mut folds = Folds::default();
        for windows in self.partitions.values_mut() {
            folds.add(windows.take_folds());
        }
        folds
    }

    fn windows_of(&mut self, partition: PartitionId) -> &mut TumblingWindows {
        let (spec, groups, written) = (self.spec, &self.groups, &self.written_through);
        let (max_groups, drilldown) = (self.max_groups, self.drilldown);
        self.partitions.get_or_insert_with(partition, || {
            let mut windows = TumblingWindows::new(spec)
                .with_max_groups(max_groups)
                .with_drilldown(drilldown);
            windows.record_batch(EnrichedBatch {
                new_groups: groups.clone(),
                ..EnrichedBatch::default()
            });
            windows.rewind(written.get(&partition).copied());
            windows
        })
    }

    /// Adds a batch from the enricher; each event goes to its partition's windows.
    pub fn record_batch(&mut self, batch: EnrichedBatch) -> BatchOutcome {
        if !batch.new_groups.is_empty() {
            for windows in self.partitions.values_mut() {
                windows.record_batch(EnrichedBatch {
                    new_groups: batch.new_groups.clone(),
                    ..EnrichedBatch::default()
                });
            }
            self.groups.extend(batch.new_groups);
        }
        let mut outcome = BatchOutcome::default();
        for e in &batch.events {
            match self.windows_of(e.partition).record(e) {
                Admit::Counted => outcome.counted += 1,
                Admit::Late { lag_ms } => outcome.late_lags_ms.push(lag_ms),
                Admit::AlreadyWritten => outcome.already_written += 1,
            }
        }
        for (partition, offset) in batch.consumed_without_output {
            self.windows_of(partition).record_batch(EnrichedBatch {
                consumed_without_output: vec![(partition, offset)],
                ..EnrichedBatch::default()
            });
        }
        outcome
    }

    /// Moves `partition`'s event time to `watermark`; returns the windows it
    /// closes, labelled with the partition.
    pub fn advance_partition(
        &mut self,
        partition: PartitionId,
        watermark: Watermark,
    ) -> Vec<WindowAggregate> {
        let mut closed = self.windows_of(partition).advance(watermark);
        for a in &mut closed {
            a.group.partition = Some(partition);
        }
        closed
    }

    /// Moves every partition's event time to `watermark` (the end of a
    /// bounded input), in (window end, partition, model, region) order.
    pub fn advance_all(&mut self, watermark: Watermark) -> Vec<WindowAggregate> {
        let partitions: Vec<PartitionId> = self.partitions.keys().collect();
        let mut closed: Vec<WindowAggregate> = partitions
            .into_iter()
            .flat_map(|p| self.advance_partition(p, watermark))
            .collect();
        closed.sort_by(|a, b| (a.window_end, &a.group).cmp(&(b.window_end, &b.group)));
        closed
    }

    /// The input restarts from the committed offsets: every partition drops
    /// its open windows and skips those written before (`written_through`,
    /// per assigned partition). Returns how many windows were dropped.
    pub fn rewind(&mut self, written_through: BTreeMap<PartitionId, TimestampMs>) -> usize {
        let mut dropped = 0;
        for (p, windows) in self.partitions.iter_mut() {
            dropped += windows.rewind(written_through.get(&p).copied());
        }
        self.written_through = written_through;
        dropped
    }

    /// What may be acknowledged once everything emitted so far is accepted:
    /// each partition's offsets and window boundary.
    pub fn checkpoint(&self) -> Checkpoint {
        let mut merged = Checkpoint::default();
        for (p, windows) in self.partitions.iter() {
            let own = windows.checkpoint();
            merged.resume_offsets.extend(own.resume_offsets);
            if let Some(closed) = own.closed_through {
                merged.partition_closed_through.insert(p, closed);
            }
        }
        merged
    }

    /// Open windows over all partitions.
    pub fn open_windows(&self) -> usize {
        self.partitions.values().map(|w| w.open_windows()).sum()
    }

    /// The oldest partition watermark (for the watermark gauge).
    pub fn watermark(&self) -> Option<Watermark> {
        self.partitions
            .values()
            .filter_map(|w| w.watermark())
            .filter(|w| *w != Watermark::END_OF_INPUT)
            .min()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use fleet_core::{EnrichedEvent, EventType, GroupId, VehicleKey};

    fn group(model: &str) -> GroupKey {
        GroupKey::new(model, "UK")
    }

    fn event(partition: PartitionId, offset: i64, vehicle: u32, ts: i64) -> EnrichedEvent {
        EnrichedEvent {
            drilldown: false,
            partition,
            offset,
            vehicle: VehicleKey(vehicle),
            group: GroupId(0),
            event_type: EventType::IcRpm,
            timestamp: ts,
            measurement: 1000,
        }
    }

    fn batch(events: Vec<EnrichedEvent>, new_groups: Vec<GroupKey>) -> EnrichedBatch {
        EnrichedBatch {
            new_vehicles: Vec::new(),
            new_groups,
            events,
            consumed_without_output: Vec::new(),
        }
    }

    #[test]
    fn each_partition_closes_on_its_own_watermark_and_is_labelled() {
        let mut w = PartitionedWindows::new(WindowSpec::new(5000).unwrap());
        w.record_batch(batch(
            vec![event(0, 0, 1, 1_000), event(1, 0, 2, 1_000)],
            vec![group("A")],
        ));
        // Partition 0 moves on; partition 1 stays behind.
        let closed = w.advance_partition(0, Watermark(4_999));
        assert_eq!(closed.len(), 1);
        assert_eq!(closed[0].group.partition, Some(0));
        assert_eq!(closed[0].vehicles_in_motion, 1);
        assert_eq!(w.open_windows(), 1, "partition 1's window is still open");
        // Late on partition 0, not on partition 1.
        let outcome = w.record_batch(batch(
            vec![event(0, 1, 3, 2_000), event(1, 1, 4, 2_000)],
            vec![],
        ));
        assert_eq!(outcome.counted, 1);
        assert_eq!(outcome.late_lags_ms.len(), 1);
        let closed = w.advance_partition(1, Watermark(4_999));
        assert_eq!(closed[0].group.partition, Some(1));
        assert_eq!(closed[0].vehicles_in_motion, 2);
    }

    #[test]
    fn checkpoint_keeps_each_partitions_boundary() {
        let mut w = PartitionedWindows::new(WindowSpec::new(5000).unwrap());
        w.record_batch(batch(
            vec![
                event(0, 10, 1, 1_000),
                event(1, 20, 2, 1_000),
                event(1, 21, 2, 6_000),
            ],
            vec![group("A")],
        ));
        w.advance_partition(1, Watermark(4_999));
        let cp = w.checkpoint();
        assert_eq!(cp.resume_offsets, [(0, 10), (1, 21)].into());
        assert_eq!(cp.closed_through_for(1), Some(5_000));
        assert_eq!(cp.closed_through_for(0), None);
    }

    #[test]
    fn rewind_skips_what_each_partition_wrote_before() {
        let mut w = PartitionedWindows::new(WindowSpec::new(5000).unwrap());
        w.record_batch(batch(vec![event(0, 0, 1, 1_000)], vec![group("A")]));
        assert_eq!(w.rewind([(0, 5_000), (1, 10_000)].into()), 1);
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
        let closed = w.advance_all(Watermark::END_OF_INPUT);
        let ends: Vec<(i64, Option<PartitionId>)> = closed
            .iter()
            .map(|a| (a.window_end, a.group.partition))
            .collect();
        assert_eq!(ends, vec![(10_000, Some(0)), (15_000, Some(1))]);
    }
}
