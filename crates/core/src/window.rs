//! Window geometry, and what the aggregator sends to the sink.

use std::sync::Arc;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::config::Problems;
use fleet_plan::SignalId;

use crate::aggregate::WindowAggregate;
use crate::{Checkpoint, GroupKey, TimestampMs, WatermarkRules};

/// `[windows]`: the windows' geometry and the event-time rules that close them.
#[derive(Clone, Debug, PartialEq, Eq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct WindowsConfig {
    /// Window length, ms.
    pub length_ms: i64,
    /// Bounded out-of-orderness, ms.
    pub out_of_orderness_ms: i64,
    /// Idleness timeout, ms.
    pub idle_timeout_ms: u64,
    /// All-idle wall-clock close delay, ms; 0 disables it.
    pub all_idle_close_after_ms: u64,
    /// How far ahead of the wall clock an event may be, ms; a later one is
    /// refused (`too_far_ahead`). 0 disables the check.
    pub max_ahead_ms: u64,
    /// Most label sets (groups) one window writes; the excess is folded
    /// into one group labelled `other`.
    pub max_label_sets: usize,
}

impl WindowsConfig {
    /// Checks every key, naming it under `windows.`; returns the window
    /// geometry and the watermark rules when the length is valid.
    pub fn validate(&self, problems: &mut Problems) -> Option<(WindowSpec, WatermarkRules)> {
        let window = WindowSpec::new(self.length_ms);
        problems.check(
            window.is_some(),
            "windows.length_ms",
            "must be a positive number of milliseconds",
        );
        problems.check(
            self.out_of_orderness_ms >= 0,
            "windows.out_of_orderness_ms",
            "must not be negative",
        );
        problems.check(
            self.idle_timeout_ms > 0,
            "windows.idle_timeout_ms",
            "must be positive",
        );
        problems.check(
            self.max_label_sets > 0,
            "windows.max_label_sets",
            "must be at least 1",
        );
        let rules = WatermarkRules {
            out_of_orderness_ms: self.out_of_orderness_ms.max(0),
            idle_timeout: Duration::from_millis(self.idle_timeout_ms),
            all_idle_close_after: (self.all_idle_close_after_ms > 0)
                .then(|| Duration::from_millis(self.all_idle_close_after_ms)),
            max_ahead_ms: (self.max_ahead_ms > 0)
                .then(|| i64::try_from(self.max_ahead_ms).unwrap_or(i64::MAX)),
        };
        Some((window?, rules))
    }
}

/// Tumbling windows of a fixed length, aligned to the Unix epoch.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct WindowSpec {
    length_ms: i64,
}

impl WindowSpec {
    /// A window length in ms; `None` unless it is positive.
    pub fn new(length_ms: i64) -> Option<Self> {
        (length_ms > 0).then_some(WindowSpec { length_ms })
    }

    /// The window length in ms.
    pub fn length_ms(self) -> i64 {
        self.length_ms
    }

    /// Start of the window holding `ts` (floor, also for negative times).
    pub fn start_of(self, ts: TimestampMs) -> TimestampMs {
        ts - ts.rem_euclid(self.length_ms)
    }

    /// End (exclusive) of the window holding `ts`.
    pub fn end_of(self, ts: TimestampMs) -> TimestampMs {
        self.start_of(ts).saturating_add(self.length_ms)
    }
}

/// One sample of the per-vehicle drill-down output: a vehicle's sensor
/// reading, raw or reduced over a window.
#[derive(Clone, Debug, PartialEq)]
pub struct VehicleSample {
    /// The vehicle id (label `vehicle_id`).
    pub vehicle_id: Arc<str>,
    /// The vehicle's model, region and dimensions when it sent the reading.
    pub group: GroupKey,
    /// Which signal: the series is `vehicle_<drilldown_name>` of the signal
    /// (`vehicle_ic_engine_rpm` for the demo's `IC_RPM`).
    pub signal: SignalId,
    /// The reading's event time, or the window end for a reduction, epoch ms.
    pub timestamp: TimestampMs,
    /// The reading, or the reduction's value.
    pub value: f64,
}

/// What the aggregator sends to the sink: windows that just closed, in
/// `(window_end, model, region)` order, and the checkpoint that becomes safe
/// to commit once they (and every earlier batch) are accepted.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct WindowBatch {
    /// Closed windows.
    pub aggregates: Vec<WindowAggregate>,
    /// The drill-down samples of the same windows, each vehicle series in
    /// timestamp order; empty unless the drill-down output is on.
    pub vehicle_samples: Vec<VehicleSample>,
    /// Offsets and window boundary to acknowledge after acceptance.
    pub checkpoint: Checkpoint,
    /// Where these windows closed, to be stored before they are sent (the
    /// single output mode; see [`FiringPoint`](crate::FiringPoint)).
    pub firing_points: Vec<crate::FiringPoint>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn windows_are_epoch_aligned_and_half_open() {
        let w = WindowSpec::new(5000).unwrap();
        assert_eq!(w.start_of(1_764_000_000_123), 1_764_000_000_000);
        assert_eq!(w.end_of(1_764_000_004_999), 1_764_000_005_000);
        assert_eq!(w.start_of(1_764_000_005_000), 1_764_000_005_000);
        assert_eq!(w.start_of(-1), -5000);
        assert!(WindowSpec::new(0).is_none());
    }
}
