//! `[input]`, `[[metrics]]` and `reference.dimensions`, read into the
//! oracle's own structures. Validation is light: enough to refuse a config
//! the oracle could not evaluate, not `check-config`'s full list.

use std::collections::HashSet;

use serde::Deserialize;

use super::filter::{self, Expr};
use super::Number;

/// docs/METRICS.md, "The default", written out again: the oracle must not
/// take the default from the code it checks.
pub const DEFAULT_CONFIG_TOML: &str = r#"
[input]
shape = "narrow"
vehicle_id = "vehicleId"
time = "timestamp"
time_format = "epoch_ms"
labels = ["region"]
type_field = "eventType"
value_field = "measurement"

[[input.signals]]
name = "IC_RPM"
type = "integer"
drilldown_name = "ic_engine_rpm"

[[input.signals]]
name = "ELECTRIC_RPM"
type = "integer"
drilldown_name = "electric_motor_rpm"

[[input.signals]]
name = "WARNINGS"
type = "integer"
min = 0
drilldown_name = "warnings"

[[metrics]]
name = "vehicles_in_motion"
help = "Distinct vehicles with a non-zero engine or motor RPM reading in the window."
function = "distinct_vehicles"
where = "IC_RPM != 0 or ELECTRIC_RPM != 0"

[[metrics]]
name = "warnings"
help = "Warning lights on: each vehicle's latest reading in the window, summed."
function = "sum_of_latest"
signal = "WARNINGS"

[[metrics]]
name = "vehicles_reporting"
help = "Distinct vehicles with any event in the window."
function = "distinct_vehicles"

[[metrics]]
name = "ic_engine_rpm"
help = "Engine RPM over the window's IC_RPM events."
function = "mean"
signal = "IC_RPM"

[[metrics]]
name = "electric_motor_rpm"
help = "Motor RPM over the window's ELECTRIC_RPM events."
function = "mean"
signal = "ELECTRIC_RPM"
"#;

/// Labels no event label may be named (METRICS.md, `labels`), besides the
/// reference dimensions.
const RESERVED_LABELS: [&str; 4] = ["model", "kafka_partition", "vehicle_id", "le"];

/// A declared configuration as the oracle understands it.
#[derive(Clone, Debug)]
pub struct DeclaredConfig {
    pub(super) input: Input,
    pub(super) metrics: Vec<Metric>,
    /// The plan's label order: `model`, the event labels, the dimensions.
    pub(super) labels: Vec<String>,
    /// Per grouping, ascending indices into `labels`; groupings in the
    /// order of the first metric declaring each.
    pub(super) groupings: Vec<Vec<usize>>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Shape {
    Narrow,
    Wide,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum TimeFormat {
    EpochS,
    EpochMs,
    EpochUs,
    EpochNs,
    Rfc3339,
}

/// A path split into its field names.
pub(super) type Path = Vec<String>;

#[derive(Clone, Debug)]
pub(super) struct Input {
    pub(super) shape: Shape,
    pub(super) vehicle_id: Path,
    pub(super) time: Path,
    pub(super) time_format: TimeFormat,
    /// The event labels' paths; each label is named by its last segment.
    pub(super) labels: Vec<Path>,
    pub(super) type_field: Path,
    pub(super) value_field: Path,
    pub(super) signals: Vec<Signal>,
}

#[derive(Clone, Debug)]
pub(super) struct Signal {
    pub(super) name: String,
    pub(super) kind: SignalKind,
    pub(super) key: String,
    pub(super) path: Path,
    pub(super) min: Option<Number>,
    pub(super) max: Option<Number>,
}

#[derive(Clone, Debug, PartialEq)]
pub(super) enum SignalKind {
    Integer,
    Float,
    Boolean,
    State(Vec<String>),
}

impl SignalKind {
    fn is_numeric(&self) -> bool {
        matches!(self, SignalKind::Integer | SignalKind::Float)
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Function {
    Count,
    Sum,
    Mean,
    Min,
    Max,
    DistinctVehicles,
    SumOfLatest,
    MeanOfLatest,
    Histogram,
}

impl Function {
    fn parse(text: &str) -> Option<Self> {
        Some(match text {
            "count" => Function::Count,
            "sum" => Function::Sum,
            "mean" => Function::Mean,
            "min" => Function::Min,
            "max" => Function::Max,
            "distinct_vehicles" => Function::DistinctVehicles,
            "sum_of_latest" => Function::SumOfLatest,
            "mean_of_latest" => Function::MeanOfLatest,
            "histogram" => Function::Histogram,
            _ => return None,
        })
    }

    /// The series names a metric `name` of this function writes.
    fn series(self, name: &str) -> Vec<String> {
        match self {
            Function::Mean => vec![
                format!("{name}_avg"),
                format!("{name}_sum"),
                format!("{name}_count"),
            ],
            Function::Histogram => vec![
                format!("{name}_bucket"),
                format!("{name}_sum"),
                format!("{name}_count"),
            ],
            _ => vec![name.to_string()],
        }
    }
}

#[derive(Clone, Debug)]
pub(super) struct Metric {
    pub(super) name: String,
    pub(super) function: Function,
    pub(super) signal: Option<usize>,
    pub(super) filter: Option<Expr>,
    pub(super) grouping: usize,
    pub(super) buckets: Vec<f64>,
    /// The empty sum: an integer 0 for integer signals, 0.0 for floats.
    pub(super) zero: Number,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawInput {
    /// The oracle reads JSON records only: absent or `"json"`.
    format: Option<String>,
    /// With JSON, empty.
    #[serde(rename = "schema_file")]
    _schema_file: Option<String>,
    /// With JSON, empty.
    #[serde(rename = "message")]
    _message: Option<String>,
    shape: String,
    vehicle_id: String,
    time: String,
    time_format: String,
    labels: Vec<String>,
    type_field: String,
    value_field: String,
    signals: Vec<RawSignal>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawSignal {
    name: String,
    #[serde(rename = "type")]
    kind: String,
    states: Option<Vec<String>>,
    key: Option<String>,
    path: Option<String>,
    min: Option<toml::Value>,
    max: Option<toml::Value>,
    // The oracle computes no drill-down.
    #[serde(rename = "drilldown_name")]
    _drilldown_name: Option<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawMetric {
    name: String,
    help: String,
    function: String,
    signal: Option<String>,
    #[serde(rename = "where")]
    filter: Option<String>,
    by: Option<Vec<String>>,
    buckets: Option<Vec<f64>>,
}

impl DeclaredConfig {
    /// Reads `[input]`, `[[metrics]]` and `reference.dimensions` from a
    /// TOML text (a whole service configuration; other sections are
    /// ignored). Absent `[input]` keys and an absent `[[metrics]]` take the
    /// defaults of [`DEFAULT_CONFIG_TOML`]; declared lists replace the
    /// default lists whole.
    pub fn from_toml(text: &str) -> Result<DeclaredConfig, String> {
        let user: toml::Table = toml::from_str(text).map_err(|e| format!("not TOML: {e}"))?;
        let default: toml::Table =
            toml::from_str(DEFAULT_CONFIG_TOML).map_err(|e| format!("default: {e}"))?;
        let mut input = match default.get("input") {
            Some(toml::Value::Table(table)) => table.clone(),
            _ => return Err("default: no [input]".into()),
        };
        match user.get("input") {
            Some(toml::Value::Table(table)) => {
                input.extend(table.iter().map(|(k, v)| (k.clone(), v.clone())));
            }
            Some(_) => return Err("input: must be a table".into()),
            None => {}
        }
        let metrics = user
            .get("metrics")
            .or_else(|| default.get("metrics"))
            .cloned()
            .ok_or("default: no [[metrics]]")?;
        let dimensions: Vec<String> = match user.get("reference").and_then(|r| r.get("dimensions"))
        {
            Some(value) => value
                .clone()
                .try_into()
                .map_err(|e| format!("reference.dimensions: {e}"))?,
            None => Vec::new(),
        };
        let input: RawInput = toml::Value::Table(input)
            .try_into()
            .map_err(|e| format!("input: {e}"))?;
        if input.format.as_deref().is_some_and(|f| f != "json") {
            return Err(
                "input.format: the oracle reads JSON records; give it the JSON form".into(),
            );
        }
        let metrics: Vec<RawMetric> = metrics.try_into().map_err(|e| format!("metrics: {e}"))?;
        build(input, metrics, dimensions)
    }

    /// The plan's label order: `model`, the event labels in declared order,
    /// then the reference dimensions.
    pub fn labels(&self) -> &[String] {
        &self.labels
    }

    /// The declared metrics' names, in declaration order.
    pub fn metric_names(&self) -> Vec<&str> {
        self.metrics.iter().map(|m| m.name.as_str()).collect()
    }
}

fn build(
    raw: RawInput,
    raw_metrics: Vec<RawMetric>,
    dimensions: Vec<String>,
) -> Result<DeclaredConfig, String> {
    let shape = match raw.shape.as_str() {
        "narrow" => Shape::Narrow,
        "wide" => Shape::Wide,
        other => return Err(format!("input.shape: unknown shape {other:?}")),
    };
    let time_format = match raw.time_format.as_str() {
        "epoch_s" => TimeFormat::EpochS,
        "epoch_ms" => TimeFormat::EpochMs,
        "epoch_us" => TimeFormat::EpochUs,
        "epoch_ns" => TimeFormat::EpochNs,
        "rfc3339" => TimeFormat::Rfc3339,
        other => return Err(format!("input.time_format: unknown format {other:?}")),
    };
    let signals = raw
        .signals
        .into_iter()
        .map(signal)
        .collect::<Result<Vec<_>, _>>()?;
    distinct(
        signals.iter().map(|s| s.name.as_str()),
        "input.signals: name",
    )?;
    if shape == Shape::Narrow {
        if signals.is_empty() {
            return Err("input.signals: the narrow shape needs a signal".into());
        }
        distinct(signals.iter().map(|s| s.key.as_str()), "input.signals: key")?;
    }

    let labels = raw
        .labels
        .iter()
        .map(|p| path(p, "input.labels"))
        .collect::<Result<Vec<_>, _>>()?;
    let mut names = vec!["model".to_string()];
    for label in &labels {
        let name = label.last().cloned().unwrap_or_default();
        if !is_name(&name, false) || RESERVED_LABELS.contains(&name.as_str()) {
            return Err(format!("input.labels: {name:?} cannot be a label name"));
        }
        names.push(name);
    }
    for dimension in &dimensions {
        if !is_name(dimension, false) || RESERVED_LABELS.contains(&dimension.as_str()) {
            return Err(format!(
                "reference.dimensions: {dimension:?} cannot be a label name"
            ));
        }
        names.push(dimension.clone());
    }
    distinct(names.iter().map(String::as_str), "labels and dimensions")?;

    let input = Input {
        shape,
        vehicle_id: path(&raw.vehicle_id, "input.vehicle_id")?,
        time: path(&raw.time, "input.time")?,
        time_format,
        labels,
        type_field: path(&raw.type_field, "input.type_field")?,
        value_field: path(&raw.value_field, "input.value_field")?,
        signals,
    };
    let mut groupings: Vec<Vec<usize>> = Vec::new();
    let metrics = raw_metrics
        .into_iter()
        .map(|m| metric(m, &input.signals, &names, &mut groupings))
        .collect::<Result<Vec<_>, _>>()?;
    let series: Vec<String> = metrics
        .iter()
        .flat_map(|m| m.function.series(&m.name))
        .collect();
    distinct(series.iter().map(String::as_str), "metrics: series name")?;
    Ok(DeclaredConfig {
        input,
        metrics,
        labels: names,
        groupings,
    })
}

fn signal(raw: RawSignal) -> Result<Signal, String> {
    let at = format!("input.signals {:?}", raw.name);
    if !is_name(&raw.name, false) {
        return Err(format!("{at}: not a valid signal name"));
    }
    let kind = match (raw.kind.as_str(), raw.states) {
        ("integer", None) => SignalKind::Integer,
        ("float", None) => SignalKind::Float,
        ("boolean", None) => SignalKind::Boolean,
        ("state", Some(states)) => {
            if states.iter().any(String::is_empty) {
                return Err(format!("{at}: states must not be empty strings"));
            }
            distinct(states.iter().map(String::as_str), &format!("{at}: states"))?;
            SignalKind::State(states)
        }
        ("state", None) => return Err(format!("{at}: a state signal needs states")),
        (_, Some(_)) => return Err(format!("{at}: only a state signal has states")),
        (other, None) => return Err(format!("{at}: unknown type {other:?}")),
    };
    let bound = |value: Option<toml::Value>, key: &str| -> Result<Option<Number>, String> {
        match value {
            None => Ok(None),
            Some(_) if !kind.is_numeric() => Err(format!("{at}: {key} needs a number signal")),
            Some(toml::Value::Integer(i)) => Ok(Some(Number::Int(i))),
            Some(toml::Value::Float(f)) if f.is_finite() => Ok(Some(Number::Float(f))),
            Some(_) => Err(format!("{at}: {key} must be a finite number")),
        }
    };
    let min = bound(raw.min, "min")?;
    let max = bound(raw.max, "max")?;
    Ok(Signal {
        key: raw.key.unwrap_or_else(|| raw.name.clone()),
        path: path(raw.path.as_deref().unwrap_or(&raw.name), &at)?,
        name: raw.name,
        kind,
        min,
        max,
    })
}

fn metric(
    raw: RawMetric,
    signals: &[Signal],
    labels: &[String],
    groupings: &mut Vec<Vec<usize>>,
) -> Result<Metric, String> {
    let at = format!("metrics {:?}", raw.name);
    if !is_name(&raw.name, true) {
        return Err(format!("{at}: not a valid metric name"));
    }
    if raw.help.trim().is_empty() || raw.help.contains('\n') {
        return Err(format!("{at}: help must be one non-empty line"));
    }
    let function = Function::parse(&raw.function)
        .ok_or_else(|| format!("{at}: unknown function {:?}", raw.function))?;
    let signal = match &raw.signal {
        Some(name) => Some(
            signals
                .iter()
                .position(|s| s.name == *name)
                .ok_or_else(|| format!("{at}: no signal {name:?}"))?,
        ),
        None => None,
    };
    let kind = signal.and_then(|i| signals.get(i)).map(|s| &s.kind);
    let optional_signal = matches!(function, Function::Count | Function::DistinctVehicles);
    if !optional_signal && !kind.is_some_and(SignalKind::is_numeric) {
        return Err(format!("{at}: needs an integer or float signal"));
    }
    let buckets = match (function, raw.buckets) {
        (Function::Histogram, Some(buckets)) => {
            let increasing = buckets.windows(2).all(|w| w[0] < w[1]);
            if !increasing || buckets.iter().any(|b| !b.is_finite()) {
                return Err(format!(
                    "{at}: buckets must be finite and strictly increasing"
                ));
            }
            buckets
        }
        (Function::Histogram, None) => return Err(format!("{at}: a histogram needs buckets")),
        (_, Some(_)) => return Err(format!("{at}: only a histogram has buckets")),
        (_, None) => Vec::new(),
    };
    let filter = match &raw.filter {
        Some(text) => Some(filter::parse(text, signals).map_err(|e| format!("{at}: where: {e}"))?),
        None => None,
    };
    let mut by: Vec<usize> = match &raw.by {
        None => (0..labels.len()).collect(),
        Some(names) => {
            distinct(names.iter().map(String::as_str), &format!("{at}: by"))?;
            names
                .iter()
                .map(|n| {
                    labels
                        .iter()
                        .position(|l| l == n)
                        .ok_or_else(|| format!("{at}: by: no label {n:?}"))
                })
                .collect::<Result<_, _>>()?
        }
    };
    // Written in plan order whatever order the user chose.
    by.sort_unstable();
    let grouping = match groupings.iter().position(|g| *g == by) {
        Some(i) => i,
        None => {
            groupings.push(by);
            groupings.len() - 1
        }
    };
    Ok(Metric {
        name: raw.name,
        function,
        signal,
        filter,
        grouping,
        buckets,
        zero: match kind {
            Some(SignalKind::Float) => Number::Float(0.0),
            _ => Number::Int(0),
        },
    })
}

fn path(text: &str, at: &str) -> Result<Path, String> {
    let segments: Path = text.split('.').map(str::to_string).collect();
    if segments.iter().any(String::is_empty) {
        return Err(format!("{at}: {text:?} is not a path"));
    }
    Ok(segments)
}

/// A Prometheus label name, or with `colon` a metric name (which the
/// signal-name rule, letters, digits and `_`, also satisfies without it).
fn is_name(text: &str, colon: bool) -> bool {
    let ok = |c: char| c.is_ascii_alphabetic() || c == '_' || (colon && c == ':');
    let mut chars = text.chars();
    chars.next().is_some_and(ok) && chars.all(|c| ok(c) || c.is_ascii_digit())
}

fn distinct<'a>(items: impl Iterator<Item = &'a str>, what: &str) -> Result<(), String> {
    let mut seen = HashSet::new();
    for item in items {
        if !seen.insert(item) {
            return Err(format!("{what}: {item:?} appears twice"));
        }
    }
    Ok(())
}
