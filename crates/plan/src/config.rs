//! `[input]` and `[[metrics]]` as written in the configuration file.
//!
//! These are the raw, unchecked settings; [`crate::MetricPlan::compile`]
//! checks them all at once and names the key of every problem. Keys and
//! meanings: docs/METRICS.md.

use serde::{Deserialize, Serialize};

/// `[input]`: where a record keeps the vehicle id, the event time, the
/// event's labels and its signals.
#[derive(Clone, Debug, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct InputConfig {
    /// The records' encoding.
    pub format: RecordFormat,
    /// Protobuf and Avro: the schema file (`.proto`, a descriptor set, `.avsc`).
    pub schema_file: String,
    /// Protobuf: the record's message type, by full name.
    pub message: String,
    /// One signal per record, or each signal a field.
    pub shape: Shape,
    /// Path of the vehicle id.
    pub vehicle_id: String,
    /// Path of the event time.
    pub time: String,
    /// The event time's form.
    pub time_format: TimeFormat,
    /// Paths of the event's own labels; each label is named by its path's last segment.
    pub labels: Vec<String>,
    /// Narrow shape: path of the signal's name.
    pub type_field: String,
    /// Narrow shape: path of the signal's value.
    pub value_field: String,
    /// The signals.
    pub signals: Vec<SignalConfig>,
}

/// `input.format`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum RecordFormat {
    /// A UTF-8 JSON object per message.
    Json,
    /// A Protobuf message per message.
    Protobuf,
    /// An Avro datum per message.
    Avro,
}

impl RecordFormat {
    /// The configuration's name of this format.
    pub fn as_str(self) -> &'static str {
        match self {
            RecordFormat::Json => "json",
            RecordFormat::Protobuf => "protobuf",
            RecordFormat::Avro => "avro",
        }
    }
}

/// `input.shape`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Shape {
    /// One signal per record: `type_field` names it, `value_field` holds it.
    Narrow,
    /// Every signal is a field of the record, at its path.
    Wide,
}

/// `input.time_format`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum TimeFormat {
    /// Integer seconds since the epoch.
    EpochS,
    /// Integer milliseconds since the epoch.
    EpochMs,
    /// Integer microseconds since the epoch.
    EpochUs,
    /// Integer nanoseconds since the epoch.
    EpochNs,
    /// An RFC 3339 date-time string.
    Rfc3339,
}

impl TimeFormat {
    /// The configuration's name of this form.
    pub fn as_str(self) -> &'static str {
        match self {
            TimeFormat::EpochS => "epoch_s",
            TimeFormat::EpochMs => "epoch_ms",
            TimeFormat::EpochUs => "epoch_us",
            TimeFormat::EpochNs => "epoch_ns",
            TimeFormat::Rfc3339 => "rfc3339",
        }
    }
}

/// One `[[input.signals]]`.
#[derive(Clone, Debug, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct SignalConfig {
    /// Its name in metrics and filters.
    pub name: String,
    /// Its type.
    #[serde(rename = "type")]
    pub signal_type: SignalType,
    /// With `state`: the allowed values.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub states: Vec<String>,
    /// Narrow shape: the value of `type_field` naming it (default: `name`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub key: Option<String>,
    /// Wide shape: its path in the record (default: `name`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub path: Option<String>,
    /// Smallest valid value (integer and float).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub min: Option<f64>,
    /// Largest valid value (integer and float).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max: Option<f64>,
    /// The drill-down series is `vehicle_<drilldown_name>` (default: `name` in lower case).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub drilldown_name: Option<String>,
}

/// `input.signals[].type`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Deserialize, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum SignalType {
    /// A JSON integer in the signed 64-bit range.
    Integer,
    /// Any JSON number.
    Float,
    /// `true` or `false`.
    Boolean,
    /// A string, one of the signal's `states`.
    State,
}

impl SignalType {
    /// The configuration's name of this type.
    pub fn as_str(self) -> &'static str {
        match self {
            SignalType::Integer => "integer",
            SignalType::Float => "float",
            SignalType::Boolean => "boolean",
            SignalType::State => "state",
        }
    }

    /// Integer or float.
    pub fn is_numeric(self) -> bool {
        matches!(self, SignalType::Integer | SignalType::Float)
    }
}

/// One `[[metrics]]`.
#[derive(Clone, Debug, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct MetricConfig {
    /// The series name (before `remote_write.metric_prefix`).
    pub name: String,
    /// What it measures, one line.
    pub help: String,
    /// How records are combined.
    pub function: Function,
    /// The input signal.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub signal: Option<String>,
    /// The filter, in the language of docs/METRICS.md, "Filters".
    #[serde(default, rename = "where", skip_serializing_if = "Option::is_none")]
    pub filter: Option<String>,
    /// The grouping labels (default: every label).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub by: Option<Vec<String>>,
    /// Histogram bucket upper bounds.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub buckets: Option<Vec<f64>>,
}

/// `metrics[].function`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Deserialize, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Function {
    /// Contributing records.
    Count,
    /// Sum of the signal.
    Sum,
    /// Sum, count and their quotient.
    Mean,
    /// Smallest value.
    Min,
    /// Largest value.
    Max,
    /// Vehicles with a contributing record.
    DistinctVehicles,
    /// Each vehicle's latest value, summed.
    SumOfLatest,
    /// Each vehicle's latest value, averaged over vehicles.
    MeanOfLatest,
    /// Classic Prometheus histogram.
    Histogram,
}

impl Function {
    /// The configuration's name of this function.
    pub fn as_str(self) -> &'static str {
        match self {
            Function::Count => "count",
            Function::Sum => "sum",
            Function::Mean => "mean",
            Function::Min => "min",
            Function::Max => "max",
            Function::DistinctVehicles => "distinct_vehicles",
            Function::SumOfLatest => "sum_of_latest",
            Function::MeanOfLatest => "mean_of_latest",
            Function::Histogram => "histogram",
        }
    }

    /// Whether the function needs a numeric input signal (`count` and
    /// `distinct_vehicles` take any signal, or none).
    pub fn needs_numeric_signal(self) -> bool {
        !matches!(self, Function::Count | Function::DistinctVehicles)
    }
}
