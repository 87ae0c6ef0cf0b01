//! Tumbling windows as a plain, synchronous state machine.
//!
//! Open windows live in a `BTreeMap` keyed by start, so closing is popping
//! from the front. Per (window, group) the accumulator keeps one small record
//! per distinct vehicle: whether it moved, and its latest warnings reading.

use std::collections::{BTreeMap, HashMap};

use fleet_core::{
    Checkpoint, EnrichedBatch, EnrichedEvent, EventType, GroupId, GroupKey, PartitionId,
    TimestampMs, VehicleKey, Watermark, WindowAggregate, WindowSpec,
};

/// What happened to one event.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Admit {
    /// Added to its window.
    Counted,
    /// Its window was already emitted; dropped. `lag_ms` is how far the
    /// watermark was past the event's time.
    Late {
        /// Watermark minus event time, ms.
        lag_ms: i64,
    },
    /// Its window was written before a restart; skipped.
    AlreadyWritten,
}

/// Totals of one [`TumblingWindows::record_batch`] call.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct BatchOutcome {
    /// Events added to windows.
    pub counted: u64,
    /// How late each late event was, ms.
    pub late_lags_ms: Vec<i64>,
    /// Events skipped as already written.
    pub already_written: u64,
}

#[derive(Clone, Copy, Debug, Default)]
struct VehicleState {
    moving: bool,
    /// Latest warnings reading by event time: (timestamp, lights on).
    warning: Option<(TimestampMs, i64)>,
}

#[derive(Debug, Default)]
struct GroupAcc {
    vehicles: HashMap<VehicleKey, VehicleState>,
    in_motion: u64,
    ic_sum: i64,
    ic_count: u64,
    electric_sum: i64,
    electric_count: u64,
    events: u64,
}

impl GroupAcc {
    fn add(&mut self, e: &EnrichedEvent) {
        self.events += 1;
        let v = self.vehicles.entry(e.vehicle).or_default();
        match e.event_type {
            EventType::IcRpm => {
                self.ic_sum = self.ic_sum.saturating_add(e.measurement);
                self.ic_count += 1;
            }
            EventType::ElectricRpm => {
                self.electric_sum = self.electric_sum.saturating_add(e.measurement);
                self.electric_count += 1;
            }
            EventType::Warnings => {
                let newer = match v.warning {
                    None => true,
                    Some((ts, value)) => (e.timestamp, e.measurement) > (ts, value),
                };
                if newer {
                    v.warning = Some((e.timestamp, e.measurement));
                }
            }
        }
        if e.event_type != EventType::Warnings && e.measurement != 0 && !v.moving {
            v.moving = true;
            self.in_motion += 1;
        }
    }

    fn finish(self, start: TimestampMs, end: TimestampMs, group: GroupKey) -> WindowAggregate {
        WindowAggregate {
            window_start: start,
            window_end: end,
            group,
            vehicles_in_motion: self.in_motion,
            warnings: self
                .vehicles
                .values()
                .filter_map(|v| v.warning.map(|(_, n)| n))
                .sum(),
            vehicles_reporting: self.vehicles.len() as u64,
            ic_rpm_sum: self.ic_sum,
            ic_rpm_count: self.ic_count,
            electric_rpm_sum: self.electric_sum,
            electric_rpm_count: self.electric_count,
            events: self.events,
        }
    }
}

#[derive(Debug, Default)]
struct OpenWindow {
    groups: HashMap<GroupId, GroupAcc>,
    /// Per partition, the smallest offset of an event in this window: the
    /// input must be replayed from there if this window is lost.
    first_offsets: BTreeMap<PartitionId, i64>,
}

/// The windows of one aggregator.
#[derive(Debug)]
pub struct TumblingWindows {
    spec: WindowSpec,
    /// Group labels by [`GroupId`], as announced by the enricher.
    groups: Vec<GroupKey>,
    open: BTreeMap<TimestampMs, OpenWindow>,
    watermark: Option<Watermark>,
    /// Windows ending at or before this were written before a restart.
    resumed_through: Option<TimestampMs>,
    /// Per partition, one past the highest offset consumed.
    next_offsets: BTreeMap<PartitionId, i64>,
}

impl TumblingWindows {
    /// No windows open, no watermark yet.
    pub fn new(spec: WindowSpec) -> Self {
        TumblingWindows {
            spec,
            groups: Vec::new(),
            open: BTreeMap::new(),
            watermark: None,
            resumed_through: None,
            next_offsets: BTreeMap::new(),
        }
    }

    /// The current watermark.
    pub fn watermark(&self) -> Option<Watermark> {
        self.watermark
    }

    /// How many windows are open.
    pub fn open_windows(&self) -> usize {
        self.open.len()
    }

    /// The input restarts from the committed offsets: drops every open
    /// window (its events come again) and returns how many there were.
    /// Windows ending at or before `written_through`, or already emitted by
    /// this instance, are skipped from now on and never emitted again.
    pub fn rewind(&mut self, written_through: Option<TimestampMs>) -> usize {
        let dropped = self.open.len();
        self.open.clear();
        self.next_offsets.clear();
        let emitted = self
            .watermark
            .map(|w| self.spec.start_of(w.0.saturating_add(1)));
        let through = [self.resumed_through, written_through, emitted]
            .into_iter()
            .flatten()
            .max();
        if let Some(through) = through {
            self.resumed_through = Some(through);
            let closing = Watermark(through.saturating_sub(1));
            if self.watermark.is_none_or(|w| w < closing) {
                self.watermark = Some(closing);
            }
        }
        dropped
    }

    /// Adds a batch from the enricher.
    pub fn record_batch(&mut self, batch: EnrichedBatch) -> BatchOutcome {
        self.groups.extend(batch.new_groups);
        let mut outcome = BatchOutcome::default();
        for e in &batch.events {
            match self.record(e) {
                Admit::Counted => outcome.counted += 1,
                Admit::Late { lag_ms } => outcome.late_lags_ms.push(lag_ms),
                Admit::AlreadyWritten => outcome.already_written += 1,
            }
        }
        for (partition, offset) in batch.consumed_without_output {
            self.consumed(partition, offset);
        }
        outcome
    }

    fn consumed(&mut self, partition: PartitionId, offset: i64) {
        let next = self.next_offsets.entry(partition).or_insert(offset + 1);
        *next = (*next).max(offset + 1);
    }

    /// Adds one event (its group must have been announced).
    pub fn record(&mut self, e: &EnrichedEvent) -> Admit {
        self.consumed(e.partition, e.offset);
        let start = self.spec.start_of(e.timestamp);
        let end = start.saturating_add(self.spec.length_ms());
        if self.resumed_through.is_some_and(|r| end <= r) {
            return Admit::AlreadyWritten;
        }
        if let Some(w) = self.watermark.filter(|w| w.closes(end)) {
            return Admit::Late {
                lag_ms: w.0.saturating_sub(e.timestamp),
            };
        }
        let window = self.open.entry(start).or_default();
        let first = window.first_offsets.entry(e.partition).or_insert(e.offset);
        *first = (*first).min(e.offset);
        window.groups.entry(e.group).or_default().add(e);
        Admit::Counted
    }

    /// Moves event time to `watermark` and returns every window it closes, in
    /// (window end, model, region) order. A watermark behind the current one
    /// changes nothing.
    pub fn advance(&mut self, watermark: Watermark) -> Vec<WindowAggregate> {
        if self.watermark.is_some_and(|w| w >= watermark) {
            return Vec::new();
        }
        self.watermark = Some(watermark);
        let mut out = Vec::new();
        while let Some(entry) = self.open.first_entry() {
            let start = *entry.key();
            let end = start.saturating_add(self.spec.length_ms());
            if !watermark.closes(end) {
                break;
            }
            let window = entry.remove();
            let first = out.len();
            for (group, acc) in window.groups {
                // Groups are announced before the events that use them.
                let Some(key) = self.groups.get(group.0 as usize) else {
                    continue;
                };
                out.push(acc.finish(start, end, key.clone()));
            }
            out[first..].sort_by(|a, b| a.group.cmp(&b.group));
        }
        out
    }

    /// What may be acknowledged once everything emitted so far is accepted.
    pub fn checkpoint(&self) -> Checkpoint {
        let mut resume_offsets = self.next_offsets.clone();
        for window in self.open.values() {
            for (p, first) in &window.first_offsets {
                if let Some(r) = resume_offsets.get_mut(p) {
                    *r = (*r).min(*first);
                }
            }
        }
        let closed = self
            .watermark
            .map(|w| self.spec.start_of(w.0.saturating_add(1)));
        Checkpoint {
            resume_offsets,
            closed_through: match (closed, self.resumed_through) {
                (Some(c), Some(r)) => Some(c.max(r)),
                (c, r) => c.or(r),
            },
        }
    }
}

#[cfg(test)]
mod tests;
