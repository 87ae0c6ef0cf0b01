//! The tumbling windows of one scope, as a plain, synchronous state machine.
//!
//! Open windows live in a deque ordered by start, so closing is popping from
//! the front, and most events find theirs at the back. Per window the
//! accumulators ([`acc`]) keep, laid out by the plan, cells per group of
//! each grouping and a small slot per distinct (vehicle, group).
//!
//! A set that keeps firing points (the single output mode's) records one at
//! every closing, and after a rewind closes the windows of the points it was
//! given at those points, not by the watermark (see [`FiringPoint`]).

mod acc;

use std::collections::{BTreeMap, VecDeque};
use std::sync::Arc;

use fleet_core::{
    EnrichedEvent, FiringPoint, GroupKey, MetricValue, Number, PartitionId, SignalValue,
    TimestampMs, VehicleKey, Watermark, WindowAggregate, WindowSpec,
};
use fleet_plan::{GroupingId, SignalId, Value};

use crate::groups::GroupTables;
use crate::layout::Layout;
use acc::{OffsetMap, OpenWindow, SignalIndex, Spare};
use fleet_drilldown::{ReducedSample, SampleFrequency, VehicleWindows};

/// A drill-down sample of a closed window; its vehicle is still a key (the
/// stage knows the ids).
#[derive(Clone, Debug, PartialEq)]
pub struct PendingVehicleSample {
    /// The vehicle.
    pub vehicle: VehicleKey,
    /// Its labels when it sent the reading.
    pub group: GroupKey,
    /// The signal.
    pub signal: SignalId,
    /// Sample time, epoch ms.
    pub timestamp: TimestampMs,
    /// Sample value.
    pub value: f64,
}

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

/// Groups folded into `other` by the per-window group limit, since last taken.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Folds {
    /// Windows that had more groups than the limit.
    pub windows: u64,
    /// Groups folded away.
    pub groups: u64,
    /// Events of those groups.
    pub events: u64,
}

impl Folds {
    /// Adds `other`'s counts.
    pub fn add(&mut self, other: Folds) {
        self.windows += other.windows;
        self.groups += other.groups;
        self.events += other.events;
    }
}

/// Totals of one [`ScopedWindows::record_batch`](crate::ScopedWindows::record_batch) call.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct BatchOutcome {
    /// Events added to windows.
    pub counted: u64,
    /// How late each late event was, ms.
    pub late_lags_ms: Vec<i64>,
    /// Events skipped as already written.
    pub already_written: u64,
}

fn finish(
    start: TimestampMs,
    end: TimestampMs,
    grouping: usize,
    group: GroupKey,
    (events, values): (u64, Vec<MetricValue>),
) -> WindowAggregate {
    WindowAggregate {
        window_start: start,
        window_end: end,
        grouping: GroupingId(grouping as u16),
        group,
        events,
        values,
    }
}

/// Vehicle tables of closed windows kept for the next ones: a window's table
/// grows to the fleet's size, and reusing it saves growing and faulting in
/// a new one every window.
const SPARE_TABLES: usize = 2;
/// How many events ahead `record_batch` asks for the vehicle slot
/// (see [`fleet_core::prefetch`]).
const PREFETCH_DISTANCE: usize = 16;

/// The windows of one scope. Group labels are the aggregator's, passed in
/// where windows close: every scope shares one table.
#[derive(Debug)]
pub(crate) struct TumblingWindows {
    spec: WindowSpec,
    layout: Arc<Layout>,
    signals: SignalIndex,
    /// Ordered by start.
    open: VecDeque<OpenWindow>,
    spare: Vec<Spare>,
    watermark: Option<Watermark>,
    /// Windows ending at or before this were written before a restart.
    resumed_through: Option<TimestampMs>,
    /// Per partition, one past the highest offset consumed.
    next_offsets: OffsetMap,
    /// Whether each closing records its firing point.
    keeps_points: bool,
    /// The points of the closings since last taken.
    fired: Vec<FiringPoint>,
    /// Closings to make at their points, in order: those given by the last
    /// rewind, then those the watermark asked for while they waited. The
    /// windows up to the last one's `through` close only there.
    held: VecDeque<FiringPoint>,
    /// Closings made at a point given by a rewind, since last taken.
    replayed: u64,
    /// How many of the held closings the rewind gave (the first ones).
    held_from_rewind: usize,
    /// The `through` of the last held closing made.
    released_through: Option<TimestampMs>,
    /// Most groups one window emits; the excess is folded into `other`.
    max_groups: usize,
    folds: Folds,
    /// The drill-down samples of the open windows, when that output is on.
    drilldown: Option<VehicleWindows>,
    /// Drill-down samples of closed windows, not taken yet.
    vehicle_samples: Vec<PendingVehicleSample>,
    reduced: Vec<ReducedSample>,
}

impl TumblingWindows {
    /// No windows open, no watermark yet.
    pub fn new(spec: WindowSpec, layout: Arc<Layout>) -> Self {
        TumblingWindows {
            spec,
            signals: SignalIndex::new(layout.signals),
            layout,
            open: VecDeque::new(),
            spare: Vec::new(),
            watermark: None,
            resumed_through: None,
            next_offsets: OffsetMap::default(),
            keeps_points: false,
            fired: Vec::new(),
            held: VecDeque::new(),
            replayed: 0,
            held_from_rewind: 0,
            released_through: None,
            max_groups: usize::MAX,
            folds: Folds::default(),
            drilldown: None,
            vehicle_samples: Vec::new(),
            reduced: Vec::new(),
        }
    }

    /// Also keeps the samples of drilled-down vehicles (events marked
    /// [`EnrichedEvent::drilldown`]), reduced per window as `frequency` says;
    /// they are taken with [`take_vehicle_samples`](Self::take_vehicle_samples)
    /// after each [`advance`](Self::advance).
    pub fn with_drilldown(mut self, frequency: Option<SampleFrequency>) -> Self {
        self.drilldown = frequency.map(VehicleWindows::new);
        self
    }

    /// The drill-down samples of the windows closed since the last call,
    /// window by window, each vehicle series in timestamp order.
    pub fn take_vehicle_samples(&mut self) -> Vec<PendingVehicleSample> {
        std::mem::take(&mut self.vehicle_samples)
    }

    /// Raw drill-down samples dropped for sharing a series and timestamp
    /// with another, since last taken (as [`Self::take_folds`]).
    pub fn take_drilldown_duplicates(&mut self) -> u64 {
        self.drilldown
            .as_mut()
            .map_or(0, VehicleWindows::take_duplicates_dropped)
    }

    /// Emits at most `max_groups` (at least 1) groups per window: when a
    /// window has more, the `max_groups − 1` with the most events (ties: in
    /// label order) keep their own series and the rest are folded into one
    /// group labelled `other` (see [`GroupKey::other`]). The choice depends
    /// only on the window's events, so a replay folds the same way.
    pub fn with_max_groups(mut self, max_groups: usize) -> Self {
        self.max_groups = max_groups.max(1);
        self
    }

    /// The folds since the last call.
    pub fn take_folds(&mut self) -> Folds {
        std::mem::take(&mut self.folds)
    }

    /// Records the firing point of every closing (taken with
    /// [`take_fired`](Self::take_fired)), and closes the windows of the
    /// points given to [`rewind`](Self::rewind) at them.
    pub fn with_firing_points(mut self, keep: bool) -> Self {
        self.keeps_points = keep;
        self
    }

    /// The firing points of the closings since the last call, in order.
    pub fn take_fired(&mut self) -> Vec<FiringPoint> {
        std::mem::take(&mut self.fired)
    }

    /// How many closings were made at a point given by a rewind since the
    /// last call.
    pub fn take_replayed(&mut self) -> u64 {
        std::mem::take(&mut self.replayed)
    }

    /// The current watermark.
    pub fn watermark(&self) -> Option<Watermark> {
        self.watermark
    }

    /// How many windows are open.
    pub fn open_windows(&self) -> usize {
        self.open.len()
    }

    fn recycle(&mut self, window: OpenWindow) {
        if self.spare.len() < SPARE_TABLES {
            self.spare.push(window.recycle());
        }
    }

    /// The input restarts from the committed offsets: drops every open
    /// window (its events come again) and returns how many there were.
    /// Windows ending at or before `written_through` are skipped from now on
    /// and never emitted again. Windows this instance emitted after it are
    /// built again: the revocation that comes before a new assignment
    /// drops the batches the sink had not taken (`RevocationFence`), and the
    /// boundary committed then is the end of the last one accepted.
    ///
    /// `fired` are the points of closings after `written_through` whose
    /// windows may have been sent (kept only by a set that keeps points):
    /// their windows admit an event iff the point admits its offset, and
    /// close once every partition is read to the point again.
    pub fn rewind(&mut self, written_through: Option<TimestampMs>, fired: &[FiringPoint]) -> usize {
        let dropped = self.open.len();
        while let Some(window) = self.open.pop_front() {
            self.recycle(window);
        }
        if let Some(drilldown) = &mut self.drilldown {
            drilldown.clear();
        }
        self.next_offsets.clear();
        let through = self.resumed_through.max(written_through);
        self.resumed_through = through;
        self.watermark = through.map(|t| Watermark(t.saturating_sub(1)));
        self.fired.clear();
        self.held.clear();
        self.released_through = None;
        if self.keeps_points {
            self.held.extend(
                fired
                    .iter()
                    .filter(|p| through.is_none_or(|t| p.through > t))
                    .cloned(),
            );
        }
        self.held_from_rewind = self.held.len();
        dropped
    }

    /// The held closing whose point judges the events of the window ending
    /// at `end`: the first one that closes it. A window a released closing
    /// closed has none: it is closed, and the watermark says so.
    #[inline]
    fn held_point(&self, end: TimestampMs) -> Option<&FiringPoint> {
        match self.held.back() {
            Some(last) if end <= last.through => {
                if self.released_through.is_some_and(|r| end <= r) {
                    return None;
                }
                self.held
                    .get(self.held.partition_point(|p| p.through < end))
            }
            _ => None,
        }
    }

    /// Adds events of this scope whose values are in `values` (their
    /// groups must have been announced in `groups`).
    pub fn record_events(
        &mut self,
        events: &[EnrichedEvent],
        values: &[SignalValue],
        groups: &GroupTables,
        outcome: &mut BatchOutcome,
    ) {
        for (i, e) in events.iter().enumerate() {
            // Most events fall in the newest window: start loading the
            // vehicle slot of an event ahead there while this one is added.
            if let (Some(ahead), Some(w)) = (events.get(i + PREFETCH_DISTANCE), self.open.back()) {
                w.prefetch(ahead);
            }
            let at = e.values_at as usize;
            let values = values
                .get(at..at + usize::from(e.values_len))
                .unwrap_or_default();
            match self.record(e, values, groups.of(e.group)) {
                Admit::Counted => outcome.counted += 1,
                Admit::Late { lag_ms } => outcome.late_lags_ms.push(lag_ms),
                Admit::AlreadyWritten => outcome.already_written += 1,
            }
        }
    }

    /// An event consumed without output (a dropped unknown vehicle): only
    /// the offset bookkeeping sees it.
    pub fn consumed(&mut self, partition: PartitionId, offset: i64) {
        self.next_offsets.raise(partition, offset.saturating_add(1));
    }

    /// Whether `ts` falls in `window` (without a division).
    #[inline]
    fn holds(&self, window: &OpenWindow, ts: TimestampMs) -> bool {
        ts >= window.start && ts < window.start.saturating_add(self.spec.length_ms())
    }

    /// The index in `open` of the window starting at `start`, opened if needed.
    #[inline]
    fn window_index(&mut self, start: TimestampMs) -> usize {
        let n = self.open.len();
        if n > 0 && self.open[n - 1].start == start {
            return n - 1;
        }
        match self.open.binary_search_by_key(&start, |w| w.start) {
            Ok(i) => i,
            Err(i) => {
                let window = OpenWindow::new(start, &self.layout, self.spare.pop());
                self.open.insert(i, window);
                i
            }
        }
    }

    /// Adds one event with its signal values; `groups` are its groups in
    /// each grouping.
    #[inline(always)]
    pub fn record(&mut self, e: &EnrichedEvent, values: &[SignalValue], groups: &[u32]) -> Admit {
        self.next_offsets
            .raise(e.partition, e.offset.saturating_add(1));
        // Most events belong to the newest open window.
        let start = match self.open.back() {
            Some(w) if self.holds(w, e.timestamp) => w.start,
            _ => self.spec.start_of(e.timestamp),
        };
        let end = start.saturating_add(self.spec.length_ms());
        if self.resumed_through.is_some_and(|r| end <= r) {
            return Admit::AlreadyWritten;
        }
        let late = match self.held_point(end) {
            Some(point) => !point.admits(e.partition, e.offset),
            None => self.watermark.is_some_and(|w| w.closes(end)),
        };
        if late {
            return Admit::Late {
                lag_ms: self
                    .watermark
                    .map_or(0, |w| w.0.saturating_sub(e.timestamp).max(0)),
            };
        }
        let i = self.window_index(start);
        // Records of one signal give it to the metrics directly.
        if values.len() > 1 {
            self.signals.load(values);
        }
        self.open[i].add(&self.layout, e, groups, &self.signals, values);
        if e.drilldown {
            if let Some(drilldown) = &mut self.drilldown {
                // Booleans as 0 and 1; a state is not a quantity.
                for v in values {
                    let measurement = match v.value {
                        Value::Integer(i) => Number::Integer(i),
                        Value::Float(f) => Number::Float(f),
                        Value::Boolean(b) => Number::Integer(i64::from(b)),
                        Value::State(_) => continue,
                    };
                    drilldown.record(
                        start,
                        e.vehicle,
                        e.group,
                        v.signal,
                        e.timestamp,
                        measurement,
                    );
                }
            }
        }
        Admit::Counted
    }

    /// Moves event time to `watermark` and returns every window it closes, in
    /// (window end, grouping, labels) order, labelled from `groups`. A
    /// watermark behind the current one changes nothing. While closings are
    /// held, the windows it closes wait behind them.
    pub fn advance(&mut self, watermark: Watermark, groups: &GroupTables) -> Vec<WindowAggregate> {
        if self.watermark.is_some_and(|w| w >= watermark) {
            return Vec::new();
        }
        let before = self.closes_through();
        self.watermark = Some(watermark);
        let through = self.closes_through();
        let mut out = Vec::new();
        let crossed = match through {
            Some(t) if through > before && self.keeps_points => Some(t),
            _ => None,
        };
        if let Some(last) = self.held.back() {
            if let Some(t) = crossed.filter(|t| *t > last.through) {
                let point = self.point_here(t);
                self.held.push_back(point);
            }
            return out;
        }
        self.close_through(through, groups, &mut out);
        if let Some(t) = crossed {
            let point = self.point_here(t);
            self.fired.push(point);
        }
        out
    }

    /// Makes the held closings whose points every partition has been read
    /// to, in order, and returns the windows they close (as
    /// [`advance`](Self::advance)).
    pub fn release(&mut self, groups: &GroupTables) -> Vec<WindowAggregate> {
        let mut out = Vec::new();
        while let Some(point) = self.held.front() {
            if !point.reached(|p| self.next_offsets.get(p)) {
                break;
            }
            let Some(point) = self.held.pop_front() else {
                break;
            };
            self.close_through(Some(point.through), groups, &mut out);
            let wall = Watermark(point.through.saturating_sub(1));
            self.watermark = self.watermark.max(Some(wall));
            if self.held_from_rewind > 0 {
                self.held_from_rewind -= 1;
                self.replayed += 1;
            }
            self.released_through = Some(point.through);
            self.fired.push(point);
        }
        out
    }

    /// The end of the newest window the watermark closes.
    fn closes_through(&self) -> Option<TimestampMs> {
        self.watermark
            .map(|w| self.spec.start_of(w.0.saturating_add(1)))
    }

    /// A firing point for the windows through `through`, here.
    fn point_here(&self, through: TimestampMs) -> FiringPoint {
        FiringPoint::new(through, self.next_offsets.iter())
    }

    /// Closes every open window ending at or before `through`, in order.
    fn close_through(
        &mut self,
        through: Option<TimestampMs>,
        groups: &GroupTables,
        out: &mut Vec<WindowAggregate>,
    ) {
        let Some(through) = through else {
            return;
        };
        while let Some(window) = self.open.front() {
            let start = window.start;
            let end = start.saturating_add(self.spec.length_ms());
            if end > through {
                break;
            }
            let Some(mut window) = self.open.pop_front() else {
                break;
            };
            let first = out.len();
            self.close(&mut window, end, groups, out);
            out[first..].sort_by(|a, b| (a.grouping, &a.group).cmp(&(b.grouping, &b.group)));
            self.close_drilldown(start, end, groups);
            self.recycle(window);
        }
    }

    /// The drill-down samples of a closing window, labelled.
    fn close_drilldown(&mut self, start: TimestampMs, end: TimestampMs, groups: &GroupTables) {
        let Some(drilldown) = &mut self.drilldown else {
            return;
        };
        drilldown.close_into(start, end, &mut self.reduced);
        for r in self.reduced.drain(..) {
            let Some(group) = groups.full(r.group) else {
                continue;
            };
            self.vehicle_samples.push(PendingVehicleSample {
                vehicle: r.vehicle,
                group: group.clone(),
                signal: r.signal,
                timestamp: r.timestamp,
                value: r.value,
            });
        }
    }

    /// The aggregates of a closing window, per grouping its groups over the
    /// limit folded.
    fn close(
        &mut self,
        window: &mut OpenWindow,
        end: TimestampMs,
        tables: &GroupTables,
        out: &mut Vec<WindowAggregate>,
    ) {
        for g in 0..self.layout.groupings.len() {
            // Groups are announced before the events that use them.
            let mut groups: Vec<(u32, u64, Vec<MetricValue>, &GroupKey)> = window
                .close(&self.layout, g)
                .into_iter()
                .filter_map(|(id, events, values)| Some((id, events, values, tables.key(g, id)?)))
                .collect();
            if groups.len() > self.max_groups {
                groups.sort_by(|a, b| b.1.cmp(&a.1).then_with(|| a.3.cmp(b.3)));
                let folded = groups.split_off(self.max_groups - 1);
                let mut is_folded = Vec::new();
                for (id, ..) in &folded {
                    let id = *id as usize;
                    if is_folded.len() <= id {
                        is_folded.resize(id + 1, false);
                    }
                    is_folded[id] = true;
                }
                let merged = window.fold(&self.layout, g, |id| {
                    is_folded.get(id as usize).copied().unwrap_or(false)
                });
                self.folds.add(Folds {
                    windows: 1,
                    groups: folded.len() as u64,
                    events: merged.0,
                });
                out.push(finish(window.start, end, g, folded[0].3.other(), merged));
            }
            for (_, events, values, key) in groups {
                out.push(finish(window.start, end, g, key.clone(), (events, values)));
            }
        }
    }

    /// Adds to `resume_offsets`, per partition of this scope, the offset a
    /// restart must replay from: no event before it is in an open window.
    pub fn resume_offsets_into(&self, resume_offsets: &mut BTreeMap<PartitionId, i64>) {
        let mut mine: BTreeMap<PartitionId, i64> = self.next_offsets.iter().collect();
        for window in &self.open {
            for (p, first) in window.first_offsets.iter() {
                if let Some(r) = mine.get_mut(&p) {
                    *r = (*r).min(first);
                }
            }
        }
        resume_offsets.extend(mine);
    }

    /// The end of the newest window closed (or written before a restart),
    /// if any: once accepted, no window ending at or before it is written again.
    pub fn closed_through(&self) -> Option<TimestampMs> {
        let closed = if self.held.is_empty() {
            self.closes_through()
        } else {
            self.released_through
        };
        closed.max(self.resumed_through)
    }
}

#[cfg(test)]
mod tests;
