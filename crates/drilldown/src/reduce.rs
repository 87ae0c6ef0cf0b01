//! Per-window state of the drilled-down samples inside the aggregator.
//!
//! The aggregator owns the tumbling event-time windows; for every event of a
//! selected vehicle it admits into a window it calls
//! [`VehicleWindows::record`], and when the window closes
//! [`VehicleWindows::close`], which reduces the window's events to samples as
//! the [`SampleFrequency`] asks.
//!
//! Invariants:
//! - The output of one `close` is sorted by (vehicle, group, signal,
//!   timestamp) and holds at most one sample per series and timestamp, so
//!   each series is in strictly increasing timestamp order (Prometheus
//!   refuses out-of-order and conflicting duplicate samples). Windows closed
//!   in start order therefore give every series increasing timestamps across
//!   windows too.
//! - The output depends only on the multiset of events recorded, never on
//!   their arrival order: every tie is broken by value, and means of integer
//!   signals are summed exactly in integers. Means of float signals are
//!   summed in arrival order, like the aggregator's float sums: their last
//!   bits may differ between two orders.
//!
//! Memory: [`SampleFrequency::Raw`] keeps one 32-byte record per event,
//! sorted only at close; the window reductions keep one small accumulator per
//! (vehicle, group, signal). The containers of closed windows are reused by
//! the next windows.

use std::collections::{BTreeMap, HashMap};

use fleet_core::aggregate::Number;
use fleet_core::{GroupId, TimestampMs, VehicleKey};
use fleet_plan::SignalId;

use crate::config::SampleFrequency;

/// One drilled-down sample, ready to be written: series
/// (vehicle, group, signal), value at `timestamp`.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct ReducedSample {
    /// The vehicle.
    pub vehicle: VehicleKey,
    /// Its (model, region) group in this window.
    pub group: GroupId,
    /// What was measured; decides the metric name (see [`metric_name`](crate::metric_name)).
    pub signal: SignalId,
    /// The sample time, epoch ms: the event's for [`SampleFrequency::Raw`],
    /// the window end otherwise.
    pub timestamp: TimestampMs,
    /// The measurement, or the mean of the measurements.
    pub value: f64,
}

/// A series of the drill-down.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
struct SeriesKey {
    vehicle: VehicleKey,
    group: GroupId,
    signal: SignalId,
}

/// One event, as [`SampleFrequency::Raw`] keeps it (32 bytes). The
/// measurement is kept as the sample value it becomes: two integers that
/// round to one `f64` write the same sample.
#[derive(Clone, Copy, Debug)]
struct RawRecord {
    key: SeriesKey,
    timestamp: TimestampMs,
    measurement: f64,
}

/// The latest event of a series (ties: the larger measurement).
#[derive(Clone, Copy, Debug)]
struct Latest {
    timestamp: TimestampMs,
    measurement: f64,
}

impl Latest {
    fn is_after(&self, other: &Latest) -> bool {
        self.timestamp
            .cmp(&other.timestamp)
            .then(self.measurement.total_cmp(&other.measurement))
            .is_gt()
    }
}

/// The sum and count of a series' measurements. Integers are summed exactly:
/// the sum of up to 2^64 measurements of any `i64` fits in an `i128`, so no
/// order of addition changes it. A series is one signal, so only one of the
/// two sums is ever non-zero.
#[derive(Clone, Copy, Debug, Default)]
struct Sum {
    integers: i128,
    floats: f64,
    count: u64,
}

impl Sum {
    fn add(&mut self, measurement: Number) {
        match measurement {
            Number::Integer(i) => self.integers += i128::from(i),
            Number::Float(f) => self.floats += f,
        }
        self.count += 1;
    }

    fn mean(&self) -> f64 {
        (self.integers as f64 + self.floats) / self.count as f64
    }
}

/// The state of one open window; every window of one [`VehicleWindows`] has
/// the variant of its frequency.
#[derive(Debug)]
enum Window {
    Raw(Vec<RawRecord>),
    Last(HashMap<SeriesKey, Latest>),
    Mean(HashMap<SeriesKey, Sum>),
}

impl Window {
    fn new(frequency: SampleFrequency) -> Self {
        match frequency {
            SampleFrequency::Raw => Window::Raw(Vec::new()),
            SampleFrequency::WindowLast => Window::Last(HashMap::new()),
            SampleFrequency::WindowMean => Window::Mean(HashMap::new()),
        }
    }

    fn len(&self) -> usize {
        match self {
            Window::Raw(records) => records.len(),
            Window::Last(map) => map.len(),
            Window::Mean(map) => map.len(),
        }
    }

    /// Empties the window for reuse. Keeps its capacity, unless it is far
    /// more than the window just held needed, so that one burst does not pin
    /// its memory for the life of the process.
    fn recycle(&mut self, used: usize) {
        let keep = used.saturating_mul(2);
        match self {
            Window::Raw(records) => {
                records.clear();
                if records.capacity() > used.saturating_mul(4) {
                    records.shrink_to(keep);
                }
            }
            Window::Last(map) => {
                map.clear();
                if map.capacity() > used.saturating_mul(4) {
                    map.shrink_to(keep);
                }
            }
            Window::Mean(map) => {
                map.clear();
                if map.capacity() > used.saturating_mul(4) {
                    map.shrink_to(keep);
                }
            }
        }
    }
}

/// Empty windows kept for reuse: about as many as are open at once (a window
/// and the next one while the watermark trails by the out-of-orderness).
const MAX_SPARE_WINDOWS: usize = 2;

/// The drilled-down events of the open windows, reduced at close.
#[derive(Debug)]
pub struct VehicleWindows {
    frequency: SampleFrequency,
    /// Open windows by start.
    open: BTreeMap<TimestampMs, Window>,
    /// Emptied windows whose allocations the next windows reuse.
    spare: Vec<Window>,
    /// Raw events dropped for having the timestamp of another event of their
    /// series, since creation.
    duplicates_dropped: u64,
}

impl VehicleWindows {
    /// No open window; samples are reduced as `frequency` says.
    pub fn new(frequency: SampleFrequency) -> Self {
        VehicleWindows {
            frequency,
            open: BTreeMap::new(),
            spare: Vec::new(),
            duplicates_dropped: 0,
        }
    }

    /// The reduction in force.
    pub fn frequency(&self) -> SampleFrequency {
        self.frequency
    }

    /// Adds an event of a drilled-down vehicle to the window starting at
    /// `window_start` (opened if needed). The caller has admitted it: it is
    /// not late and `timestamp` is inside the window.
    pub fn record(
        &mut self,
        window_start: TimestampMs,
        vehicle: VehicleKey,
        group: GroupId,
        signal: SignalId,
        timestamp: TimestampMs,
        measurement: Number,
    ) {
        let frequency = self.frequency;
        let spare = &mut self.spare;
        let window = self
            .open
            .entry(window_start)
            .or_insert_with(|| spare.pop().unwrap_or_else(|| Window::new(frequency)));
        let key = SeriesKey {
            vehicle,
            group,
            signal,
        };
        match window {
            Window::Raw(records) => records.push(RawRecord {
                key,
                timestamp,
                measurement: measurement.as_f64(),
            }),
            Window::Last(map) => {
                let reading = Latest {
                    timestamp,
                    measurement: measurement.as_f64(),
                };
                let latest = map.entry(key).or_insert(reading);
                if reading.is_after(latest) {
                    *latest = reading;
                }
            }
            Window::Mean(map) => map.entry(key).or_default().add(measurement),
        }
    }

    /// Closes the window starting at `window_start` and returns its samples,
    /// sorted by (vehicle, group, signal, timestamp); window reductions are
    /// timestamped `window_end`. Empty when no event was recorded for it.
    pub fn close(
        &mut self,
        window_start: TimestampMs,
        window_end: TimestampMs,
    ) -> Vec<ReducedSample> {
        let mut out = Vec::new();
        self.close_into(window_start, window_end, &mut out);
        out
    }

    /// [`close`](Self::close), appending to `out` (whose allocation the
    /// caller can reuse); what `out` held before is left in place, in front.
    pub fn close_into(
        &mut self,
        window_start: TimestampMs,
        window_end: TimestampMs,
        out: &mut Vec<ReducedSample>,
    ) {
        let Some(mut window) = self.open.remove(&window_start) else {
            return;
        };
        let used = window.len();
        let first = out.len();
        match &mut window {
            Window::Raw(records) => {
                // Within a series and timestamp the largest measurement first,
                // so deduplication keeps it whatever the arrival order.
                records.sort_unstable_by(|a, b| {
                    (a.key, a.timestamp)
                        .cmp(&(b.key, b.timestamp))
                        .then(b.measurement.total_cmp(&a.measurement))
                });
                out.reserve(records.len());
                let mut previous: Option<(SeriesKey, TimestampMs)> = None;
                for record in records.iter() {
                    if previous == Some((record.key, record.timestamp)) {
                        self.duplicates_dropped += 1;
                        continue;
                    }
                    previous = Some((record.key, record.timestamp));
                    out.push(sample(record.key, record.timestamp, record.measurement));
                }
            }
            Window::Last(map) => {
                out.extend(
                    map.drain()
                        .map(|(key, latest)| sample(key, window_end, latest.measurement)),
                );
                sort_series(&mut out[first..]);
            }
            Window::Mean(map) => {
                out.extend(
                    map.drain()
                        .map(|(key, sum)| sample(key, window_end, sum.mean())),
                );
                sort_series(&mut out[first..]);
            }
        }
        self.recycle(window, used);
    }

    /// Throws the window starting at `window_start` away, unreduced.
    pub fn drop_window(&mut self, window_start: TimestampMs) {
        if let Some(window) = self.open.remove(&window_start) {
            let used = window.len();
            self.recycle(window, used);
        }
    }

    /// Throws every open window away (on a rewind: their events will be
    /// delivered again). The duplicate count is kept.
    pub fn clear(&mut self) {
        let open = std::mem::take(&mut self.open);
        for (_, window) in open {
            let used = window.len();
            self.recycle(window, used);
        }
    }

    /// How many windows hold events.
    pub fn open_windows(&self) -> usize {
        self.open.len()
    }

    /// What the open windows hold: events for [`SampleFrequency::Raw`]
    /// (before deduplication), series otherwise (each one sample at close).
    pub fn pending_samples(&self) -> usize {
        self.open.values().map(Window::len).sum()
    }

    /// Raw events dropped since the last call because another event of
    /// their series had the same timestamp (the larger measurement is kept).
    pub fn take_duplicates_dropped(&mut self) -> u64 {
        std::mem::take(&mut self.duplicates_dropped)
    }

    fn recycle(&mut self, mut window: Window, used: usize) {
        if self.spare.len() < MAX_SPARE_WINDOWS {
            window.recycle(used);
            self.spare.push(window);
        }
    }
}

fn sample(key: SeriesKey, timestamp: TimestampMs, value: f64) -> ReducedSample {
    ReducedSample {
        vehicle: key.vehicle,
        group: key.group,
        signal: key.signal,
        timestamp,
        value,
    }
}

/// Sorts samples of one timestamp by series (keys are distinct: a map's).
fn sort_series(samples: &mut [ReducedSample]) {
    samples.sort_unstable_by_key(|s| (s.vehicle, s.group, s.signal));
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    const IC: SignalId = SignalId(0);
    const EL: SignalId = SignalId(1);
    const WARN: SignalId = SignalId(2);

    /// (window_start, vehicle, group, signal, timestamp, measurement)
    type Event = (TimestampMs, u32, u32, SignalId, TimestampMs, i64);

    fn record_all(windows: &mut VehicleWindows, events: &[Event]) {
        for &(start, vehicle, group, signal, ts, m) in events {
            windows.record(
                start,
                VehicleKey(vehicle),
                GroupId(group),
                signal,
                ts,
                Number::Integer(m),
            );
        }
    }

    fn s(vehicle: u32, group: u32, signal: SignalId, ts: TimestampMs, value: f64) -> ReducedSample {
        ReducedSample {
            vehicle: VehicleKey(vehicle),
            group: GroupId(group),
            signal,
            timestamp: ts,
            value,
        }
    }

    #[test]
    fn float_signals_are_reduced_like_integers() {
        const SPEED: SignalId = SignalId(3);
        let readings = [(1_000, 50.5), (3_000, 12.25), (3_000, 60.0), (2_000, -1.5)];
        let close = |frequency| {
            let mut windows = VehicleWindows::new(frequency);
            for (ts, v) in readings {
                windows.record(0, VehicleKey(7), GroupId(1), SPEED, ts, Number::Float(v));
            }
            windows.close(0, 5_000)
        };
        assert_eq!(
            close(SampleFrequency::Raw),
            vec![
                s(7, 1, SPEED, 1_000, 50.5),
                s(7, 1, SPEED, 2_000, -1.5),
                s(7, 1, SPEED, 3_000, 60.0),
            ],
            "the larger of two readings at one time"
        );
        assert_eq!(
            close(SampleFrequency::WindowLast),
            vec![s(7, 1, SPEED, 5_000, 60.0)]
        );
        assert_eq!(
            close(SampleFrequency::WindowMean),
            vec![s(7, 1, SPEED, 5_000, (50.5 + 12.25 + 60.0 - 1.5) / 4.0)]
        );
    }

    #[test]
    fn record_is_compact() {
        assert_eq!(std::mem::size_of::<RawRecord>(), 32);
        assert!(std::mem::size_of::<(SeriesKey, Sum)>() <= 48);
    }

    #[test]
    fn raw_keeps_every_sample_sorted_and_the_larger_of_duplicates() {
        let mut windows = VehicleWindows::new(SampleFrequency::Raw);
        record_all(
            &mut windows,
            &[
                (0, 2, 0, IC, 4000, 800),
                (0, 1, 0, WARN, 1000, 1),
                (0, 1, 0, IC, 3000, 900),
                (0, 1, 0, IC, 1000, 700),
                (0, 1, 0, IC, 3000, 950),
                (0, 1, 0, IC, 3000, 100),
                (0, 1, 0, EL, 2000, -40),
                (0, 2, 0, IC, 4000, 800),
            ],
        );
        assert_eq!(windows.open_windows(), 1);
        assert_eq!(windows.pending_samples(), 8);
        let out = windows.close(0, 5000);
        assert_eq!(
            out,
            [
                s(1, 0, IC, 1000, 700.0),
                s(1, 0, IC, 3000, 950.0),
                s(1, 0, EL, 2000, -40.0),
                s(1, 0, WARN, 1000, 1.0),
                s(2, 0, IC, 4000, 800.0),
            ]
        );
        assert_eq!(windows.take_duplicates_dropped(), 3);
        assert_eq!(windows.open_windows(), 0);
        assert_eq!(windows.pending_samples(), 0);
    }

    #[test]
    fn window_last_takes_the_latest_event_and_the_larger_on_ties() {
        let mut windows = VehicleWindows::new(SampleFrequency::WindowLast);
        record_all(
            &mut windows,
            &[
                (0, 1, 0, IC, 4000, 10),
                (0, 1, 0, IC, 4500, 20),
                (0, 1, 0, IC, 1000, 30),
                (0, 1, 0, WARN, 4000, 2),
                (0, 1, 0, WARN, 4000, 3),
                (0, 1, 0, WARN, 4000, 1),
                (0, 1, 1, IC, 100, -5),
                (0, 0, 3, EL, 100, 7),
            ],
        );
        assert_eq!(windows.pending_samples(), 4);
        assert_eq!(
            windows.close(0, 5000),
            [
                s(0, 3, EL, 5000, 7.0),
                s(1, 0, IC, 5000, 20.0),
                s(1, 0, WARN, 5000, 3.0),
                s(1, 1, IC, 5000, -5.0),
            ]
        );
        assert_eq!(windows.take_duplicates_dropped(), 0);
    }

    #[test]
    fn window_mean_is_exact() {
        let mut windows = VehicleWindows::new(SampleFrequency::WindowMean);
        record_all(
            &mut windows,
            &[
                (0, 1, 0, IC, 1000, 1000),
                (0, 1, 0, IC, 2000, 2001),
                (0, 1, 0, IC, 2000, 3000),
                (0, 1, 0, EL, 1000, -3),
                (0, 1, 0, EL, 1500, 0),
                // Would overflow an i64 sum.
                (0, 2, 0, IC, 1000, i64::MAX),
                (0, 2, 0, IC, 1001, i64::MAX),
            ],
        );
        assert_eq!(
            windows.close(0, 5000),
            [
                s(1, 0, IC, 5000, 2000.3333333333333),
                s(1, 0, EL, 5000, -1.5),
                s(2, 0, IC, 5000, i64::MAX as f64),
            ]
        );
    }

    #[test]
    fn windows_are_separate_and_closing_an_unknown_one_gives_nothing() {
        for frequency in [
            SampleFrequency::Raw,
            SampleFrequency::WindowLast,
            SampleFrequency::WindowMean,
        ] {
            let mut windows = VehicleWindows::new(frequency);
            record_all(
                &mut windows,
                &[
                    (0, 1, 0, IC, 4999, 10),
                    (5000, 1, 0, IC, 5000, 20),
                    (10000, 1, 0, IC, 10000, 30),
                ],
            );
            assert_eq!(windows.open_windows(), 3);
            assert_eq!(windows.pending_samples(), 3);
            assert!(windows.close(20000, 25000).is_empty());
            let first = windows.close(0, 5000);
            assert_eq!(first.len(), 1);
            assert_eq!(first[0].value, 10.0);
            windows.drop_window(5000);
            windows.drop_window(7777);
            assert_eq!(windows.open_windows(), 1);
            assert!(windows.close(5000, 10000).is_empty(), "dropped");
            let third = windows.close(10000, 15000);
            assert_eq!(third.len(), 1, "{frequency:?}");
            assert_eq!(third[0].value, 30.0);
            assert_eq!(windows.open_windows(), 0);
        }
    }

    #[test]
    fn reused_windows_start_empty() {
        for frequency in [
            SampleFrequency::Raw,
            SampleFrequency::WindowLast,
            SampleFrequency::WindowMean,
        ] {
            let mut windows = VehicleWindows::new(frequency);
            for round in 0..5_i64 {
                let start = round * 5000;
                record_all(
                    &mut windows,
                    &[
                        (start, 1, 0, IC, start + 1, round),
                        (start, 2, 0, WARN, start + 2, round),
                    ],
                );
                let out = windows.close(start, start + 5000);
                assert_eq!(out.len(), 2, "{frequency:?} round {round}");
                assert!(out.iter().all(|x| x.value == round as f64));
                assert!(windows.spare.len() <= MAX_SPARE_WINDOWS);
            }
            // After a rewind, too.
            record_all(
                &mut windows,
                &[(0, 1, 0, IC, 1, 1), (5000, 1, 0, IC, 5001, 1)],
            );
            windows.clear();
            assert_eq!(windows.open_windows(), 0);
            assert_eq!(windows.pending_samples(), 0);
            record_all(&mut windows, &[(0, 3, 0, IC, 1, 9)]);
            assert_eq!(windows.pending_samples(), 1);
            let end = if frequency == SampleFrequency::Raw {
                1
            } else {
                5000
            };
            assert_eq!(windows.close(0, 5000), [s(3, 0, IC, end, 9.0)]);
        }
    }

    #[test]
    fn a_burst_does_not_pin_its_memory() {
        let mut windows = VehicleWindows::new(SampleFrequency::Raw);
        for i in 0..10_000 {
            windows.record(0, VehicleKey(i), GroupId(0), IC, 1, Number::Integer(1));
        }
        assert_eq!(windows.close(0, 5000).len(), 10_000);
        windows.record(
            5000,
            VehicleKey(1),
            GroupId(0),
            IC,
            5001,
            Number::Integer(1),
        );
        windows.close(5000, 10_000);
        let Some(Window::Raw(records)) = windows.spare.last() else {
            panic!("a spare raw window");
        };
        assert!(records.capacity() < 100, "{}", records.capacity());
    }

    #[test]
    fn clear_keeps_the_duplicate_count() {
        let mut windows = VehicleWindows::new(SampleFrequency::Raw);
        record_all(&mut windows, &[(0, 1, 0, IC, 1, 1), (0, 1, 0, IC, 1, 2)]);
        assert_eq!(windows.close(0, 5000), [s(1, 0, IC, 1, 2.0)]);
        windows.clear();
        assert_eq!(windows.take_duplicates_dropped(), 1);
        assert_eq!(windows.frequency(), SampleFrequency::Raw);
    }

    #[test]
    fn close_into_appends() {
        let mut windows = VehicleWindows::new(SampleFrequency::WindowLast);
        let mut out = vec![s(9, 9, IC, 0, 0.0)];
        record_all(&mut windows, &[(0, 2, 0, IC, 1, 1), (0, 1, 0, IC, 1, 2)]);
        windows.close_into(0, 5000, &mut out);
        assert_eq!(
            out,
            [
                s(9, 9, IC, 0, 0.0),
                s(1, 0, IC, 5000, 2.0),
                s(2, 0, IC, 5000, 1.0)
            ]
        );
    }

    /// The reductions, written the slow and obvious way.
    fn oracle(
        frequency: SampleFrequency,
        events: &[Event],
        start: TimestampMs,
        end: TimestampMs,
    ) -> Vec<ReducedSample> {
        let mut by_series: BTreeMap<(u32, u32, SignalId), Vec<(TimestampMs, i64)>> =
            BTreeMap::new();
        for &(w, v, g, signal, ts, m) in events {
            if w == start {
                by_series.entry((v, g, signal)).or_default().push((ts, m));
            }
        }
        let mut out = Vec::new();
        for ((v, g, signal), mut points) in by_series {
            points.sort();
            match frequency {
                SampleFrequency::Raw => {
                    let mut best: BTreeMap<TimestampMs, i64> = BTreeMap::new();
                    for (ts, m) in points {
                        let slot = best.entry(ts).or_insert(m);
                        *slot = (*slot).max(m);
                    }
                    out.extend(
                        best.into_iter()
                            .map(|(ts, m)| s(v, g, signal, ts, m as f64)),
                    );
                }
                SampleFrequency::WindowLast => {
                    let (_, m) = points.last().copied().unwrap();
                    out.push(s(v, g, signal, end, m as f64));
                }
                SampleFrequency::WindowMean => {
                    let sum: i128 = points.iter().map(|&(_, m)| i128::from(m)).sum();
                    out.push(s(v, g, signal, end, sum as f64 / points.len() as f64));
                }
            }
        }
        out
    }

    fn frequency() -> impl Strategy<Value = SampleFrequency> {
        prop_oneof![
            Just(SampleFrequency::Raw),
            Just(SampleFrequency::WindowLast),
            Just(SampleFrequency::WindowMean),
        ]
    }

    /// Few vehicles, timestamps and values, so that ties are common.
    fn events() -> impl Strategy<Value = Vec<Event>> {
        let event = (0..3_i64, 0..4_u32, 0..2_u32, 0..3_u8, 0..6_i64, -3..4_i64).prop_map(
            |(w, v, g, signal, ts, m)| {
                let signal = [IC, EL, WARN][usize::from(signal)];
                (w * 5000, v, g, signal, w * 5000 + ts * 1000 / 2, m)
            },
        );
        prop::collection::vec(event, 0..80)
    }

    proptest! {
        #[test]
        fn output_is_independent_of_arrival_order(
            frequency in frequency(),
            (events, shuffled) in events().prop_flat_map(|e| (Just(e.clone()), Just(e).prop_shuffle())),
        ) {
            let mut a = VehicleWindows::new(frequency);
            let mut b = VehicleWindows::new(frequency);
            record_all(&mut a, &events);
            record_all(&mut b, &shuffled);
            prop_assert_eq!(a.pending_samples(), b.pending_samples());
            for start in [0, 5000, 10000] {
                let out_a = a.close(start, start + 5000);
                let out_b = b.close(start, start + 5000);
                prop_assert_eq!(&out_a, &out_b);
                prop_assert_eq!(&out_a, &oracle(frequency, &events, start, start + 5000));
                // Sorted by series then time, one sample per series and time.
                for pair in out_a.windows(2) {
                    let key = |x: &ReducedSample| (x.vehicle, x.group, x.signal, x.timestamp);
                    prop_assert!(key(&pair[0]) < key(&pair[1]), "{:?}", pair);
                }
            }
            prop_assert_eq!(a.take_duplicates_dropped(), b.take_duplicates_dropped());
            prop_assert_eq!(a.open_windows(), 0);
        }
    }
}
