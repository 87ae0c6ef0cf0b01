//! The batch oracle for declared input and metrics (docs/METRICS.md).
//!
//! Like [`super::expected_windows`] it reads the whole input at once and
//! computes with plain maps, and it shares no code with the streaming side:
//! its own TOML structures and default, record decoder (with a hand-written
//! RFC 3339 parser), filter parser and evaluator, windows and groups. When
//! the two agree, they agree on the specification, not on a shared bug.
//!
//! Float sums are added in arrival order as specified, except the sums over
//! vehicles of `sum_of_latest` and `mean_of_latest`, whose order the
//! specification leaves open: the oracle adds them in vehicle-id order, so
//! compare float results with [`approx_eq`] / [`samples_approx_eq`].
//! The oracle does not fold groups beyond `windows.max_label_sets`.

use std::cmp::Ordering;
use std::collections::{BTreeMap, BTreeSet, HashMap};

use super::UNKNOWN_MODEL;

mod config;
mod decode;
mod filter;
#[cfg(test)]
mod tests;

pub use config::{DeclaredConfig, DEFAULT_CONFIG_TOML};
use config::{Function, Metric};

/// The label of the partition in the partitioned output mode.
pub const PARTITION_LABEL: &str = "kafka_partition";

/// A number of an integer signal (exact, 64-bit) or of a float signal.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Number {
    /// An integer signal's value or sum.
    Int(i64),
    /// A float signal's value or sum.
    Float(f64),
}

impl Number {
    /// The value as a 64-bit float.
    pub fn as_f64(self) -> f64 {
        match self {
            Number::Int(i) => i as f64,
            Number::Float(f) => f,
        }
    }

    /// Integers exactly; as 64-bit floats when either side is a float.
    fn compare(self, other: Number) -> Option<Ordering> {
        match (self, other) {
            (Number::Int(a), Number::Int(b)) => Some(a.cmp(&b)),
            _ => self.as_f64().partial_cmp(&other.as_f64()),
        }
    }

    /// Integers saturate at the 64-bit bounds (sums, means, histograms);
    /// floats add.
    fn saturating_add(self, other: Number) -> Number {
        match (self, other) {
            (Number::Int(a), Number::Int(b)) => Number::Int(a.saturating_add(b)),
            _ => Number::Float(self.as_f64() + other.as_f64()),
        }
    }

    /// The sum of `values` from `zero`: integers exact, then saturated at
    /// the 64-bit bounds (the sum of latest readings); floats added in order.
    fn sum_of(zero: Number, values: impl Iterator<Item = Number>) -> Number {
        let mut exact = match zero {
            Number::Int(z) => Some(i128::from(z)),
            Number::Float(_) => None,
        };
        let mut float = zero.as_f64();
        for v in values {
            exact = match (exact, v) {
                (Some(e), Number::Int(i)) => Some(e + i128::from(i)),
                _ => None,
            };
            float += v.as_f64();
        }
        match exact {
            Some(e) => {
                Number::Int(i64::try_from(e).unwrap_or(if e < 0 { i64::MIN } else { i64::MAX }))
            }
            None => Number::Float(float),
        }
    }
}

/// A decoded signal value.
#[derive(Clone, Debug, PartialEq)]
enum SignalValue {
    Number(Number),
    Bool(bool),
    State(String),
}

/// One input record, in the order it was consumed.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct OracleRecord {
    /// The Kafka partition it came from.
    pub partition: i32,
    /// The message value.
    pub bytes: Vec<u8>,
}

/// What the reference data says about one vehicle.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct VehicleRef {
    /// The vehicle's model.
    pub model: String,
    /// Reference dimensions by name; a missing one reads `unknown`.
    pub dimensions: BTreeMap<String, String>,
}

/// One metric's result for one window and group.
#[derive(Clone, Debug, PartialEq)]
pub enum MetricValue {
    /// `count`, `distinct_vehicles`.
    Count(u64),
    /// `sum`, `min`, `max`, `sum_of_latest`; `None` where the series is
    /// omitted (`min`, `max` with nothing contributing).
    Value(Option<Number>),
    /// `mean`: the sum and count behind it.
    Mean {
        /// Sum of the contributing values.
        sum: Number,
        /// Number of contributing values.
        count: u64,
    },
    /// `mean_of_latest`; `None` when no vehicle has a value.
    MeanOfLatest(Option<f64>),
    /// `histogram`.
    Histogram {
        /// Per finite bound, ascending: values `<=` it (cumulative).
        buckets: Vec<(f64, u64)>,
        /// Sum of the contributing values.
        sum: Number,
        /// Number of contributing values (the `+Inf` bucket).
        count: u64,
    },
}

impl MetricValue {
    /// The mean, `None` without contributions.
    fn mean(sum: Number, count: u64) -> Option<f64> {
        (count > 0).then(|| sum.as_f64() / count as f64)
    }
}

/// One JSON line: one window and group of one grouping.
#[derive(Clone, Debug, PartialEq)]
pub struct DeclaredLine {
    /// Inclusive window start, epoch ms.
    pub window_start: i64,
    /// Exclusive window end, epoch ms; the samples' timestamp.
    pub window_end: i64,
    /// Index of the grouping (in the order of its first metric).
    pub grouping: usize,
    /// The group's labels `(name, value)`, in plan order.
    pub labels: Vec<(String, String)>,
    /// The partition, in the partitioned output mode.
    pub partition: Option<i32>,
    /// The grouping's metrics in declaration order: `(name, value)`.
    pub metrics: Vec<(String, MetricValue)>,
    /// The group's records in the window.
    pub events: u64,
}

/// The value of one JSON field, kept in order (serde_json's maps, without
/// `preserve_order`, would sort the fields and histogram buckets).
enum Field {
    UInt(u64),
    Number(Option<Number>),
    Float(Option<f64>),
    Str(String),
    Buckets(Vec<(String, u64)>),
}

impl Field {
    fn write(&self, out: &mut String) {
        match self {
            Field::UInt(n) => out.push_str(&n.to_string()),
            Field::Number(Some(Number::Int(i))) => out.push_str(&i.to_string()),
            Field::Number(Some(Number::Float(f))) | Field::Float(Some(f)) => {
                // serde_json's float text (`1500.0`, `null` when not finite).
                out.push_str(&serde_json::to_string(f).unwrap_or_default());
            }
            Field::Number(None) | Field::Float(None) => out.push_str("null"),
            Field::Str(s) => write_string(s, out),
            Field::Buckets(buckets) => {
                out.push('{');
                for (i, (le, count)) in buckets.iter().enumerate() {
                    if i > 0 {
                        out.push(',');
                    }
                    write_string(le, out);
                    out.push(':');
                    out.push_str(&count.to_string());
                }
                out.push('}');
            }
        }
    }

    fn to_value(&self) -> serde_json::Value {
        use serde_json::Value;
        match self {
            Field::UInt(n) => Value::from(*n),
            Field::Number(Some(Number::Int(i))) => Value::from(*i),
            Field::Number(Some(Number::Float(f))) | Field::Float(Some(f)) => Value::from(*f),
            Field::Number(None) | Field::Float(None) => Value::Null,
            Field::Str(s) => Value::from(s.as_str()),
            Field::Buckets(buckets) => Value::Object(
                buckets
                    .iter()
                    .map(|(le, count)| (le.clone(), Value::from(*count)))
                    .collect(),
            ),
        }
    }
}

fn write_string(s: &str, out: &mut String) {
    out.push_str(&serde_json::to_string(s).unwrap_or_default());
}

/// A histogram bound as an `le` label value: Rust's `Display` (`1`, `0.5`).
fn le(bound: f64) -> String {
    format!("{bound}")
}

const INF: &str = "+Inf";

impl DeclaredLine {
    /// The fields in METRICS.md's order.
    fn fields(&self) -> Vec<(String, Field)> {
        let mut fields = vec![
            (
                "window_start".to_string(),
                Field::Number(Some(Number::Int(self.window_start))),
            ),
            (
                "window_end".to_string(),
                Field::Number(Some(Number::Int(self.window_end))),
            ),
        ];
        for (name, value) in &self.labels {
            fields.push((name.clone(), Field::Str(value.clone())));
        }
        if let Some(p) = self.partition {
            fields.push((
                PARTITION_LABEL.to_string(),
                Field::Number(Some(Number::Int(p.into()))),
            ));
        }
        for (name, value) in &self.metrics {
            match value {
                MetricValue::Count(n) => fields.push((name.clone(), Field::UInt(*n))),
                MetricValue::Value(v) => fields.push((name.clone(), Field::Number(*v))),
                MetricValue::Mean { sum, count } => fields.push((
                    format!("{name}_avg"),
                    Field::Float(MetricValue::mean(*sum, *count)),
                )),
                MetricValue::MeanOfLatest(mean) => {
                    fields.push((name.clone(), Field::Float(*mean)));
                }
                MetricValue::Histogram {
                    buckets,
                    sum,
                    count,
                } => {
                    let mut les: Vec<(String, u64)> =
                        buckets.iter().map(|&(b, n)| (le(b), n)).collect();
                    les.push((INF.to_string(), *count));
                    fields.push((format!("{name}_bucket"), Field::Buckets(les)));
                    fields.push((format!("{name}_sum"), Field::Number(Some(*sum))));
                    fields.push((format!("{name}_count"), Field::UInt(*count)));
                }
            }
        }
        fields.push(("events".to_string(), Field::UInt(self.events)));
        fields
    }

    /// The JSON line's text, fields in METRICS.md's order, numbers as
    /// serde_json writes them.
    pub fn to_json_line(&self) -> String {
        let mut out = String::from("{");
        for (i, (name, field)) in self.fields().iter().enumerate() {
            if i > 0 {
                out.push(',');
            }
            write_string(name, &mut out);
            out.push(':');
            field.write(&mut out);
        }
        out.push('}');
        out
    }

    /// The JSON line as a value, for looking fields up (serde_json's map
    /// does not keep the order: compare texts with [`Self::to_json_line`]).
    pub fn to_json_value(&self) -> serde_json::Value {
        serde_json::Value::Object(
            self.fields()
                .into_iter()
                .map(|(name, field)| (name, field.to_value()))
                .collect(),
        )
    }
}

/// The oracle's result for a whole input.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct DeclaredOutput {
    /// The JSON lines, in METRICS.md's order: window end, grouping, label
    /// values, then partition (numerically).
    pub lines: Vec<DeclaredLine>,
    /// Refused records by reason (`invalid_json`, ...); only reasons seen.
    pub decode_errors: BTreeMap<String, u64>,
    /// Decoded records dropped as late.
    pub late: u64,
}

impl DeclaredOutput {
    /// Every line's text, in order.
    pub fn json_lines(&self) -> Vec<String> {
        self.lines.iter().map(DeclaredLine::to_json_line).collect()
    }
}

/// Identifies one sample: series name (with prefix), labels (with `le`,
/// without `__name__`), timestamp (the window end).
pub type SampleKey = (String, BTreeMap<String, String>, i64);

/// Everything the oracle keeps for one metric of one window and group.
enum Accumulator {
    Count(u64),
    Sum(Number),
    Mean {
        sum: Number,
        count: u64,
    },
    Extreme(Option<Number>),
    Distinct(BTreeSet<String>),
    /// Per vehicle, its latest `(event time, value)`.
    Latest(BTreeMap<String, (i64, Number)>),
    Histogram {
        cumulative: Vec<u64>,
        sum: Number,
        count: u64,
    },
}

impl Accumulator {
    fn new(metric: &Metric) -> Self {
        match metric.function {
            Function::Count => Accumulator::Count(0),
            Function::Sum => Accumulator::Sum(metric.zero),
            Function::Mean => Accumulator::Mean {
                sum: metric.zero,
                count: 0,
            },
            Function::Min | Function::Max => Accumulator::Extreme(None),
            Function::DistinctVehicles => Accumulator::Distinct(BTreeSet::new()),
            Function::SumOfLatest | Function::MeanOfLatest => Accumulator::Latest(BTreeMap::new()),
            Function::Histogram => Accumulator::Histogram {
                cumulative: vec![0; metric.buckets.len()],
                sum: metric.zero,
                count: 0,
            },
        }
    }

    /// Adds one contributing record; `value` is its signal's number, if the
    /// metric has a number signal.
    fn add(&mut self, metric: &Metric, vehicle: &str, time_ms: i64, value: Option<Number>) {
        match (self, value) {
            (Accumulator::Count(n), _) => *n += 1,
            (Accumulator::Distinct(vehicles), _) => {
                vehicles.insert(vehicle.to_string());
            }
            (Accumulator::Sum(sum), Some(v)) => *sum = sum.saturating_add(v),
            (Accumulator::Mean { sum, count }, Some(v)) => {
                *sum = sum.saturating_add(v);
                *count += 1;
            }
            (Accumulator::Extreme(extreme), Some(v)) => {
                // On equal values the first stays.
                let wanted = if metric.function == Function::Min {
                    Ordering::Less
                } else {
                    Ordering::Greater
                };
                if extreme.is_none_or(|e| v.compare(e) == Some(wanted)) {
                    *extreme = Some(v);
                }
            }
            (Accumulator::Latest(latest), Some(v)) => {
                let later = |(t, old): (i64, Number)| {
                    time_ms > t || (time_ms == t && v.compare(old) == Some(Ordering::Greater))
                };
                if latest.get(vehicle).is_none_or(|&old| later(old)) {
                    latest.insert(vehicle.to_string(), (time_ms, v));
                }
            }
            (
                Accumulator::Histogram {
                    cumulative,
                    sum,
                    count,
                },
                Some(v),
            ) => {
                for (n, &bound) in cumulative.iter_mut().zip(&metric.buckets) {
                    if v.as_f64() <= bound {
                        *n += 1;
                    }
                }
                *sum = sum.saturating_add(v);
                *count += 1;
            }
            // A number function always has a number signal (checked at parse).
            (_, None) => {}
        }
    }

    fn finish(self, metric: &Metric) -> MetricValue {
        match self {
            Accumulator::Count(n) => MetricValue::Count(n),
            Accumulator::Sum(sum) => MetricValue::Value(Some(sum)),
            Accumulator::Mean { sum, count } => MetricValue::Mean { sum, count },
            Accumulator::Extreme(extreme) => MetricValue::Value(extreme),
            Accumulator::Distinct(vehicles) => MetricValue::Count(vehicles.len() as u64),
            Accumulator::Latest(latest) => {
                // Vehicle-id order (the map's).
                let sum = Number::sum_of(metric.zero, latest.values().map(|&(_, v)| v));
                if metric.function == Function::MeanOfLatest {
                    MetricValue::MeanOfLatest(MetricValue::mean(sum, latest.len() as u64))
                } else {
                    MetricValue::Value(Some(sum))
                }
            }
            Accumulator::Histogram {
                cumulative,
                sum,
                count,
            } => MetricValue::Histogram {
                buckets: metric.buckets.iter().copied().zip(cumulative).collect(),
                sum,
                count,
            },
        }
    }
}

/// One window and group while the input is read.
struct Group {
    window_start: i64,
    events: u64,
    /// Aligned with the grouping's metrics.
    accumulators: Vec<Accumulator>,
}

/// Window end, grouping, label values in plan order, partition: the output order.
type GroupKey = (i64, usize, Vec<String>, Option<i32>);

/// The declared metrics over `input` (in arrival order): tumbling windows
/// of `window_ms` aligned to the epoch, groups of every grouping, and with
/// `partitioned` the `kafka_partition` label.
///
/// The late rule is applied per partition in arrival order: a decoded
/// record is late iff its window end ≤ (the largest event time of the
/// partition's earlier decoded records, late ones included) −
/// `out_of_orderness_ms`; with `None` nothing is late. That is the design's
/// rule for one partition and for the partitioned mode. The single mode
/// with several partitions judges against the pipeline watermark (a minimum
/// over partitions, with idleness), which this rule does not model: compare
/// such runs only where nothing is late.
///
/// # Panics
/// When `window_ms` is not positive: a test bug, not an input problem.
pub fn expected_declared(
    config: &DeclaredConfig,
    input: &[OracleRecord],
    reference: &HashMap<String, VehicleRef>,
    window_ms: i64,
    out_of_orderness_ms: Option<i64>,
    partitioned: bool,
) -> DeclaredOutput {
    assert!(
        window_ms > 0,
        "window length must be positive, got {window_ms}"
    );
    let members: Vec<Vec<&Metric>> = (0..config.groupings.len())
        .map(|g| config.metrics.iter().filter(|m| m.grouping == g).collect())
        .collect();
    let event_labels = config.input.labels.len();
    let dimensions = config.labels.get(1 + event_labels..).unwrap_or_default();

    let mut output = DeclaredOutput::default();
    let mut groups: BTreeMap<GroupKey, Group> = BTreeMap::new();
    let mut max_time: HashMap<i32, i64> = HashMap::new();
    for record in input {
        let decoded = match decode::decode(&config.input, &record.bytes) {
            Ok(decoded) => decoded,
            Err(reason) => {
                *output
                    .decode_errors
                    .entry(reason.as_str().to_string())
                    .or_default() += 1;
                continue;
            }
        };
        let time = decoded.time_ms;
        // Saturating: a time in the first window after i64::MIN must not panic.
        let window_start = time.saturating_sub(time.rem_euclid(window_ms));
        let window_end = window_start.saturating_add(window_ms);
        let earlier_max = max_time.get(&record.partition).copied();
        let late = out_of_orderness_ms
            .zip(earlier_max)
            .is_some_and(|(ooo, max)| window_end <= max.saturating_sub(ooo));
        max_time.insert(record.partition, earlier_max.map_or(time, |m| m.max(time)));
        if late {
            output.late += 1;
            continue;
        }

        let vehicle = reference.get(&decoded.vehicle);
        let mut values = vec![vehicle
            .map_or(UNKNOWN_MODEL, |v| v.model.as_str())
            .to_string()];
        values.extend(decoded.labels.iter().cloned());
        values.extend(dimensions.iter().map(|d| {
            vehicle
                .and_then(|v| v.dimensions.get(d))
                .map_or(UNKNOWN_MODEL, String::as_str)
                .to_string()
        }));
        for (grouping, labels) in config.groupings.iter().enumerate() {
            let key_values = labels
                .iter()
                .filter_map(|&i| values.get(i).cloned())
                .collect();
            let partition = partitioned.then_some(record.partition);
            let metrics = members.get(grouping).map_or(&[][..], Vec::as_slice);
            let group = groups
                .entry((window_end, grouping, key_values, partition))
                .or_insert_with(|| Group {
                    window_start,
                    events: 0,
                    accumulators: metrics.iter().map(|m| Accumulator::new(m)).collect(),
                });
            group.events += 1;
            for (metric, accumulator) in metrics.iter().zip(&mut group.accumulators) {
                let passes = metric
                    .filter
                    .as_ref()
                    .is_none_or(|f| f.eval(&decoded.signals) == Some(true));
                let signal = metric
                    .signal
                    .map(|i| decoded.signals.get(i).and_then(Option::as_ref));
                // A metric with a signal sees only records carrying it.
                if !passes || signal.is_some_and(|s| s.is_none()) {
                    continue;
                }
                let number = match signal.flatten() {
                    Some(SignalValue::Number(n)) => Some(*n),
                    _ => None,
                };
                accumulator.add(metric, &decoded.vehicle, time, number);
            }
        }
    }

    output.lines = groups
        .into_iter()
        .map(|((window_end, grouping, values, partition), group)| {
            let names = config
                .groupings
                .get(grouping)
                .map_or(&[][..], Vec::as_slice);
            let metrics = members.get(grouping).map_or(&[][..], Vec::as_slice);
            DeclaredLine {
                window_start: group.window_start,
                window_end,
                grouping,
                labels: names
                    .iter()
                    .filter_map(|&i| config.labels.get(i).cloned())
                    .zip(values)
                    .collect(),
                partition,
                metrics: metrics
                    .iter()
                    .zip(group.accumulators)
                    .map(|(m, a)| (m.name.clone(), a.finish(m)))
                    .collect(),
                events: group.events,
            }
        })
        .collect();
    output
}

/// The Prometheus samples of `output`: every series of METRICS.md (the
/// omitted ones absent), names prefixed with `prefix`, labels with
/// `constant_labels` (which a group label of the same name overrides).
pub fn prometheus_samples(
    output: &DeclaredOutput,
    prefix: &str,
    constant_labels: &BTreeMap<String, String>,
) -> BTreeMap<SampleKey, f64> {
    let mut samples = BTreeMap::new();
    for line in &output.lines {
        let mut labels = constant_labels.clone();
        labels.extend(line.labels.iter().cloned());
        if let Some(p) = line.partition {
            labels.insert(PARTITION_LABEL.to_string(), p.to_string());
        }
        let mut put = |name: String, le: Option<String>, value: f64| {
            let mut labels = labels.clone();
            if let Some(le) = le {
                labels.insert("le".to_string(), le);
            }
            samples.insert((format!("{prefix}{name}"), labels, line.window_end), value);
        };
        for (name, value) in &line.metrics {
            match value {
                MetricValue::Count(n) => put(name.clone(), None, *n as f64),
                MetricValue::Value(v) => {
                    if let Some(v) = v {
                        put(name.clone(), None, v.as_f64());
                    }
                }
                MetricValue::Mean { sum, count } => {
                    if let Some(mean) = MetricValue::mean(*sum, *count) {
                        put(format!("{name}_avg"), None, mean);
                    }
                    put(format!("{name}_sum"), None, sum.as_f64());
                    put(format!("{name}_count"), None, *count as f64);
                }
                MetricValue::MeanOfLatest(mean) => {
                    if let Some(mean) = mean {
                        put(name.clone(), None, *mean);
                    }
                }
                MetricValue::Histogram {
                    buckets,
                    sum,
                    count,
                } => {
                    for &(bound, n) in buckets {
                        put(format!("{name}_bucket"), Some(le(bound)), n as f64);
                    }
                    put(
                        format!("{name}_bucket"),
                        Some(INF.to_string()),
                        *count as f64,
                    );
                    put(format!("{name}_sum"), None, sum.as_f64());
                    put(format!("{name}_count"), None, *count as f64);
                }
            }
        }
    }
    samples
}

/// Equal within a relative tolerance of 1e-9, or an absolute one of 1e-9
/// (exactly, for infinities). The absolute floor is for sums that cancel:
/// terms summed in another order round differently, so a window whose
/// readings sum to zero may give +2.2e-16 in one order and -2.2e-16 in
/// another (seen: the streaming side adds in arrival order).
pub fn approx_eq(a: f64, b: f64) -> bool {
    a == b || (a - b).abs() <= 1e-9 * a.abs().max(b.abs()).max(1.0)
}

/// Compares two sample maps key by key with [`approx_eq`]; the error names
/// the first difference.
pub fn samples_approx_eq(
    expected: &BTreeMap<SampleKey, f64>,
    actual: &BTreeMap<SampleKey, f64>,
) -> Result<(), String> {
    if let Some(key) = expected.keys().find(|k| !actual.contains_key(*k)) {
        return Err(format!("missing sample {key:?}"));
    }
    if let Some(key) = actual.keys().find(|k| !expected.contains_key(*k)) {
        return Err(format!("unexpected sample {key:?}"));
    }
    for (key, &want) in expected {
        let got = actual.get(key).copied().unwrap_or(f64::NAN);
        if !approx_eq(want, got) {
            return Err(format!("sample {key:?}: expected {want}, got {got}"));
        }
    }
    Ok(())
}
