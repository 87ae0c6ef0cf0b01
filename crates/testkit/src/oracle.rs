//! The batch oracle: the design's output computed the plainest possible way.
//!
//! It reads the whole input at once and groups it with ordinary maps and
//! sets, sharing no code with the streaming aggregator (not even
//! `fleet_core::WindowSpec`), so that agreement between the two means
//! something. Big generated runs, replays and crash tests compare the
//! service's output with [`expected_windows`].
//!
//! The late rule is the design's for one partition read in arrival order: an
//! event is late iff its window end ≤ (max timestamp of all earlier events) −
//! out-of-orderness, because window `[s, e)` fires when the watermark
//! `maxTs − ooo − 1` reaches `e − 1`.

use std::collections::{BTreeMap, BTreeSet, HashMap};

use fleet_core::{EventType, RawEvent, WindowAggregate};
use serde::Serialize;

pub mod declared;
#[cfg(test)]
mod tests;

/// The model of a vehicle missing from the reference data (docs/ARCHITECTURE.md, "Reference data").
pub const UNKNOWN_MODEL: &str = "unknown";

/// Identifies one output record: `(window_end, model, region)`, which is also
/// the design's output order.
pub type ExpectedKey = (i64, String, String);

/// What one window of one (model, region) must contain.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Expected {
    /// Inclusive window start, epoch ms.
    pub window_start: i64,
    /// Exclusive window end, epoch ms; the sample timestamp.
    pub window_end: i64,
    /// The model, or [`UNKNOWN_MODEL`].
    pub model: String,
    /// The region.
    pub region: String,
    /// Distinct vehicles with a non-zero `IC_RPM` or `ELECTRIC_RPM` event.
    pub vehicles_in_motion: u64,
    /// Sum over vehicles of their latest `WARNINGS` measurement.
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

impl Expected {
    /// The key of this record.
    pub fn key(&self) -> ExpectedKey {
        (self.window_end, self.model.clone(), self.region.clone())
    }

    /// Mean `IC_RPM`, `None` without such events.
    pub fn ic_rpm_avg(&self) -> Option<f64> {
        (self.ic_rpm_count > 0).then(|| self.ic_rpm_sum as f64 / self.ic_rpm_count as f64)
    }

    /// Mean `ELECTRIC_RPM`, `None` without such events.
    pub fn electric_rpm_avg(&self) -> Option<f64> {
        (self.electric_rpm_count > 0)
            .then(|| self.electric_rpm_sum as f64 / self.electric_rpm_count as f64)
    }

    /// The design's JSON-lines record as a JSON value (averages `null` when
    /// there was no input).
    pub fn to_json_value(&self) -> serde_json::Value {
        serde_json::to_value(self.line()).unwrap_or_default()
    }

    /// The design's JSON-lines record as text, fields in the design's order.
    pub fn to_json_line(&self) -> String {
        serde_json::to_string(&self.line()).unwrap_or_default()
    }

    fn line(&self) -> JsonLine<'_> {
        JsonLine {
            window_start: self.window_start,
            window_end: self.window_end,
            model: &self.model,
            region: &self.region,
            vehicles_in_motion: self.vehicles_in_motion,
            warnings: self.warnings,
            vehicles_reporting: self.vehicles_reporting,
            ic_engine_rpm_avg: self.ic_rpm_avg(),
            electric_motor_rpm_avg: self.electric_rpm_avg(),
            events: self.events,
        }
    }

    /// The same record from the streaming side (an aggregate of the
    /// reference demo's metrics, in `config/default.toml`'s order), for
    /// comparing maps. Its values are read by position and kind only, so a
    /// streaming aggregate of another shape reads as zeros and fails the
    /// comparison.
    pub fn from_aggregate(aggregate: &WindowAggregate) -> Self {
        use fleet_core::{MetricValue, Number};
        let count = |i: usize| match aggregate.values.get(i) {
            Some(MetricValue::Count(n)) => *n,
            _ => 0,
        };
        let integer = |n: &Number| match n {
            Number::Integer(i) => *i,
            Number::Float(_) => 0,
        };
        let mean = |i: usize| match aggregate.values.get(i) {
            Some(MetricValue::Mean { sum, count }) => (integer(sum), *count),
            _ => (0, 0),
        };
        let warnings = match aggregate.values.get(1) {
            Some(MetricValue::Value(Some(n))) => integer(n),
            _ => 0,
        };
        let label = |name: &str| aggregate.group.label(name).unwrap_or_default().to_string();
        let (ic_rpm_sum, ic_rpm_count) = mean(3);
        let (electric_rpm_sum, electric_rpm_count) = mean(4);
        Expected {
            window_start: aggregate.window_start,
            window_end: aggregate.window_end,
            model: label("model"),
            region: label("region"),
            vehicles_in_motion: count(0),
            warnings,
            vehicles_reporting: count(2),
            ic_rpm_sum,
            ic_rpm_count,
            electric_rpm_sum,
            electric_rpm_count,
            events: aggregate.events,
        }
    }

    /// The streaming aggregate this record describes (the inverse of
    /// [`Self::from_aggregate`]): the reference demo's one grouping, group
    /// (`model`, `region`), values in plan order. For tests of the stages
    /// after the aggregator.
    pub fn to_aggregate(&self) -> WindowAggregate {
        use fleet_core::{GroupKey, MetricValue, Number};
        let mean = |sum, count| MetricValue::Mean {
            sum: Number::Integer(sum),
            count,
        };
        WindowAggregate {
            window_start: self.window_start,
            window_end: self.window_end,
            grouping: fleet_plan::GroupingId(0),
            group: GroupKey::new([
                ("model", self.model.as_str()),
                ("region", self.region.as_str()),
            ]),
            events: self.events,
            values: vec![
                MetricValue::Count(self.vehicles_in_motion),
                MetricValue::Value(Some(Number::Integer(self.warnings))),
                MetricValue::Count(self.vehicles_reporting),
                mean(self.ic_rpm_sum, self.ic_rpm_count),
                mean(self.electric_rpm_sum, self.electric_rpm_count),
            ],
        }
    }

    /// The samples written to Prometheus for this record, metric name (with
    /// `prefix`) → value. Averages are absent without input; sums and counts
    /// are always present.
    pub fn prometheus_samples(&self, prefix: &str) -> BTreeMap<String, f64> {
        let mut samples = BTreeMap::new();
        let mut put = |name: &str, value: f64| {
            samples.insert(format!("{prefix}{name}"), value);
        };
        put("vehicles_in_motion", self.vehicles_in_motion as f64);
        put("warnings", self.warnings as f64);
        put("vehicles_reporting", self.vehicles_reporting as f64);
        if let Some(avg) = self.ic_rpm_avg() {
            put("ic_engine_rpm_avg", avg);
        }
        if let Some(avg) = self.electric_rpm_avg() {
            put("electric_motor_rpm_avg", avg);
        }
        put("ic_engine_rpm_sum", self.ic_rpm_sum as f64);
        put("ic_engine_rpm_count", self.ic_rpm_count as f64);
        put("electric_motor_rpm_sum", self.electric_rpm_sum as f64);
        put("electric_motor_rpm_count", self.electric_rpm_count as f64);
        samples
    }
}

/// The JSON-lines record, in the design's field order.
#[derive(Serialize)]
struct JsonLine<'a> {
    window_start: i64,
    window_end: i64,
    model: &'a str,
    region: &'a str,
    vehicles_in_motion: u64,
    warnings: i64,
    vehicles_reporting: u64,
    ic_engine_rpm_avg: Option<f64>,
    electric_motor_rpm_avg: Option<f64>,
    events: u64,
}

/// Everything the oracle knows about one window of one group while it reads.
#[derive(Default)]
struct Group {
    in_motion: BTreeSet<String>,
    reporting: BTreeSet<String>,
    /// Per vehicle, its latest warnings event as `(timestamp, measurement)`:
    /// tuple order picks the later one, and on equal timestamps the larger value.
    latest_warnings: BTreeMap<String, (i64, i64)>,
    ic_sum: i64,
    ic_count: u64,
    electric_sum: i64,
    electric_count: u64,
    events: u64,
}

/// The design's output for `events` (one partition, in arrival order):
/// tumbling windows of `window_ms` per (model, region), VINs missing from
/// `reference` under model `unknown`. With `out_of_orderness_ms`, late
/// events are dropped by the design's rule; with `None`, nothing is late.
///
/// # Panics
/// When `window_ms` is not positive: a test bug, not an input problem.
pub fn expected_windows(
    events: &[RawEvent],
    reference: &HashMap<String, String>,
    window_ms: i64,
    out_of_orderness_ms: Option<i64>,
) -> BTreeMap<ExpectedKey, Expected> {
    assert!(
        window_ms > 0,
        "window length must be positive, got {window_ms}"
    );
    let mut groups: BTreeMap<ExpectedKey, Group> = BTreeMap::new();
    for event in on_time_events(events, window_ms, out_of_orderness_ms) {
        let model = reference
            .get(event.vehicle_id.as_str())
            .map_or(UNKNOWN_MODEL, String::as_str);
        let key = (
            window_end(event.timestamp, window_ms),
            model.to_string(),
            event.region.to_string(),
        );
        let group = groups.entry(key).or_default();
        let vehicle = &event.vehicle_id.to_string();
        group.events += 1;
        group.reporting.insert(vehicle.clone());
        match event.event_type {
            EventType::IcRpm => {
                group.ic_sum += event.measurement;
                group.ic_count += 1;
            }
            EventType::ElectricRpm => {
                group.electric_sum += event.measurement;
                group.electric_count += 1;
            }
            EventType::Warnings => {
                let candidate = (event.timestamp, event.measurement);
                let latest = group
                    .latest_warnings
                    .entry(vehicle.clone())
                    .or_insert(candidate);
                *latest = (*latest).max(candidate);
            }
        }
        let is_rpm = matches!(event.event_type, EventType::IcRpm | EventType::ElectricRpm);
        if is_rpm && event.measurement != 0 {
            group.in_motion.insert(vehicle.clone());
        }
    }
    groups
        .into_iter()
        .map(|((end, model, region), g)| {
            let expected = Expected {
                window_start: end - window_ms,
                window_end: end,
                model: model.clone(),
                region: region.clone(),
                vehicles_in_motion: g.in_motion.len() as u64,
                warnings: g.latest_warnings.values().map(|&(_, value)| value).sum(),
                vehicles_reporting: g.reporting.len() as u64,
                ic_rpm_sum: g.ic_sum,
                ic_rpm_count: g.ic_count,
                electric_rpm_sum: g.electric_sum,
                electric_rpm_count: g.electric_count,
                events: g.events,
            };
            ((end, model, region), expected)
        })
        .collect()
}

/// How many of `events` (one partition, in arrival order) the design's rule
/// drops as late with `out_of_orderness_ms`.
pub fn late_event_count(events: &[RawEvent], window_ms: i64, out_of_orderness_ms: i64) -> usize {
    events.len() - on_time_events(events, window_ms, Some(out_of_orderness_ms)).len()
}

/// The events that are not late, in arrival order.
fn on_time_events(
    events: &[RawEvent],
    window_ms: i64,
    out_of_orderness_ms: Option<i64>,
) -> Vec<&RawEvent> {
    let Some(ooo) = out_of_orderness_ms else {
        return events.iter().collect();
    };
    let mut kept = Vec::with_capacity(events.len());
    let mut max_earlier: Option<i64> = None;
    for event in events {
        let late = max_earlier
            .is_some_and(|max_ts| window_end(event.timestamp, window_ms) <= max_ts - ooo);
        if !late {
            kept.push(event);
        }
        // Late events still count as seen: the watermark is generated before
        // the window operator drops them, as in Flink.
        max_earlier = Some(max_earlier.map_or(event.timestamp, |m| m.max(event.timestamp)));
    }
    kept
}

/// The exclusive end of the window holding `ts`; floors for negative times too.
fn window_end(ts: i64, window_ms: i64) -> i64 {
    ts.div_euclid(window_ms) * window_ms + window_ms
}

/// The expected `replay` output: one JSON line per record, in the design's
/// order (window end, model, region), byte-comparable with the service's
/// JSON-lines sink.
pub fn expected_json_lines(expected: &BTreeMap<ExpectedKey, Expected>) -> Vec<String> {
    // The map's key order is the design's output order.
    expected.values().map(Expected::to_json_line).collect()
}

/// The expected Prometheus samples, per record: metric name (with `prefix`)
/// → value. See [`Expected::prometheus_samples`].
pub fn expected_samples(
    expected: &BTreeMap<ExpectedKey, Expected>,
    prefix: &str,
) -> BTreeMap<ExpectedKey, BTreeMap<String, f64>> {
    expected
        .iter()
        .map(|(key, e)| (key.clone(), e.prometheus_samples(prefix)))
        .collect()
}

/// The streaming side's aggregates as a map comparable with [`expected_windows`].
/// A key emitted twice keeps its last record, so compare the number of
/// aggregates with the map's length too.
pub fn from_aggregates<'a>(
    aggregates: impl IntoIterator<Item = &'a WindowAggregate>,
) -> BTreeMap<ExpectedKey, Expected> {
    aggregates
        .into_iter()
        .map(|a| {
            let e = Expected::from_aggregate(a);
            (e.key(), e)
        })
        .collect()
}
