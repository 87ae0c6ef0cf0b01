//! Window geometry and the aggregate one window produces per group.

use std::sync::Arc;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::config::Problems;
use crate::{Checkpoint, EventType, GroupKey, TimestampMs, WatermarkRules};

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

/// The result of one window `[window_start, window_end)` for one group.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct WindowAggregate {
    /// Inclusive start, epoch ms.
    pub window_start: TimestampMs,
    /// Exclusive end, epoch ms; the timestamp of every sample written for it.
    pub window_end: TimestampMs,
    /// The (model, region) group.
    pub group: GroupKey,
    /// Distinct vehicles with a non-zero RPM event.
    pub vehicles_in_motion: u64,
    /// Sum over vehicles of their latest warnings count in the window.
    pub warnings: i64,
    /// Distinct vehicles with any event.
    pub vehicles_reporting: u64,
    /// Sum of `IC_RPM` measurements.
    pub ic_rpm_sum: i64,
    /// Number of `IC_RPM` events.
    pub ic_rpm_count: u64,
    /// Sum of `ELECTRIC_RPM` measurements.
    pub electric_rpm_sum: i64,
    /// Number of `ELECTRIC_RPM` events.
    pub electric_rpm_count: u64,
    /// Events of every type.
    pub events: u64,
}

impl WindowAggregate {
    /// Mean engine RPM, `None` without `IC_RPM` events.
    pub fn ic_rpm_avg(&self) -> Option<f64> {
        mean(self.ic_rpm_sum, self.ic_rpm_count)
    }

    /// Mean motor RPM, `None` without `ELECTRIC_RPM` events.
    pub fn electric_rpm_avg(&self) -> Option<f64> {
        mean(self.electric_rpm_sum, self.electric_rpm_count)
    }

    /// The JSON-lines record of the design (replay output, console sink).
    /// Configured dimensions follow `region`, under their own names.
    pub fn to_json_line(&self) -> String {
        serde_json::to_string(&JsonLine(self)).unwrap_or_default()
    }

    /// The order of the design's JSON-lines output: window end, model, region.
    pub fn output_order(&self) -> (TimestampMs, &str, &str) {
        (self.window_end, &self.group.model, &self.group.region)
    }
}

/// [`WindowAggregate::to_json_line`]'s record, field by field in the design's order.
struct JsonLine<'a>(&'a WindowAggregate);

impl Serialize for JsonLine<'_> {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        use serde::ser::SerializeMap;
        let a = self.0;
        let mut map = s.serialize_map(None)?;
        map.serialize_entry("window_start", &a.window_start)?;
        map.serialize_entry("window_end", &a.window_end)?;
        map.serialize_entry("model", &*a.group.model)?;
        map.serialize_entry("region", &*a.group.region)?;
        for (name, value) in a.group.dimensions.iter() {
            map.serialize_entry(&**name, &**value)?;
        }
        if let Some(partition) = a.group.partition {
            map.serialize_entry("kafka_partition", &partition)?;
        }
        map.serialize_entry("vehicles_in_motion", &a.vehicles_in_motion)?;
        map.serialize_entry("warnings", &a.warnings)?;
        map.serialize_entry("vehicles_reporting", &a.vehicles_reporting)?;
        map.serialize_entry("ic_engine_rpm_avg", &a.ic_rpm_avg())?;
        map.serialize_entry("electric_motor_rpm_avg", &a.electric_rpm_avg())?;
        map.serialize_entry("events", &a.events)?;
        map.end()
    }
}

fn mean(sum: i64, count: u64) -> Option<f64> {
    (count > 0).then(|| sum as f64 / count as f64)
}

/// One sample of the per-vehicle drill-down output: a vehicle's sensor
/// reading, raw or reduced over a window.
#[derive(Clone, Debug, PartialEq)]
pub struct VehicleSample {
    /// The vehicle id (label `vehicle_id`).
    pub vehicle_id: Arc<str>,
    /// The vehicle's model, region and dimensions when it sent the reading.
    pub group: GroupKey,
    /// Which sensor: the series is `vehicle_ic_engine_rpm`,
    /// `vehicle_electric_motor_rpm` or `vehicle_warnings`.
    pub sensor: EventType,
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

    #[test]
    fn json_line_has_null_means_without_input() {
        let a = WindowAggregate {
            window_start: 0,
            window_end: 5000,
            group: GroupKey::new("Nebulara", "UK"),
            vehicles_in_motion: 1,
            warnings: 3,
            vehicles_reporting: 2,
            ic_rpm_sum: 3000,
            ic_rpm_count: 2,
            electric_rpm_sum: 0,
            electric_rpm_count: 0,
            events: 4,
        };
        assert_eq!(
            a.to_json_line(),
            r#"{"window_start":0,"window_end":5000,"model":"Nebulara","region":"UK","vehicles_in_motion":1,"warnings":3,"vehicles_reporting":2,"ic_engine_rpm_avg":1500.0,"electric_motor_rpm_avg":null,"events":4}"#
        );
        let with_dimensions = WindowAggregate {
            group: GroupKey {
                dimensions: [("fuel_type".into(), "diesel".into())]
                    .into_iter()
                    .collect(),
                partition: Some(3),
                ..a.group.clone()
            },
            ..a
        };
        assert!(with_dimensions
            .to_json_line()
            .starts_with(r#"{"window_start":0,"window_end":5000,"model":"Nebulara","region":"UK","fuel_type":"diesel","kafka_partition":3,"vehicles_in_motion":1,"#));
    }
}
