//! The declared input schema and metrics, checked and compiled into one
//! [`MetricPlan`].
//!
//! `[input]` says where a record keeps the vehicle id, the event time, its
//! labels and its signals; `[[metrics]]` says what each window computes per
//! group (docs/METRICS.md). Both are checked once, at start, every problem
//! named by its key; the plan that results is what the decoder, the
//! aggregator, the series naming, the JSON-lines writer and the drill-down
//! read. Everything in it is resolved to indices (signal ids, label ids,
//! grouping ids), so the hot path never compares or hashes a name.
#![deny(missing_docs)]

use std::fmt;

pub mod config;
pub mod filter;
pub mod names;
pub mod path;

mod compile;

pub use compile::{PlanProblem, MAX_PER_VEHICLE_METRICS};
pub use config::{
    Function, InputConfig, MetricConfig, RecordFormat, Shape, SignalConfig, SignalType, TimeFormat,
};
pub use filter::{CmpOp, Filter, FilterError, Truth};
pub use path::FieldPath;

/// The label holding the vehicle's model (from the reference data).
pub const MODEL_LABEL: &str = "model";

/// Labels the service sets itself, which no event label or dimension may take.
pub const RESERVED_LABELS: [&str; 5] = [
    "__name__",
    MODEL_LABEL,
    "kafka_partition",
    "vehicle_id",
    "le",
];

/// A signal: an index into [`InputPlan::signals`].
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct SignalId(pub u16);

/// A label: an index into [`MetricPlan::labels`].
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct LabelId(pub u16);

/// A grouping (a set of labels some metrics group by): an index into
/// [`MetricPlan::groupings`].
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct GroupingId(pub u16);

/// A decoded signal value, or a filter's constant.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Value {
    /// An integer signal's value.
    Integer(i64),
    /// A float signal's value.
    Float(f64),
    /// A boolean signal's value.
    Boolean(bool),
    /// A state signal's value: the index of the state in its `states`.
    State(u32),
}

impl Value {
    /// The value as a number, for sums and histograms (`None` for booleans and states).
    pub fn as_f64(self) -> Option<f64> {
        match self {
            Value::Integer(i) => Some(i as f64),
            Value::Float(f) => Some(f),
            Value::Boolean(_) | Value::State(_) => None,
        }
    }
}

/// The compiled input schema.
#[derive(Clone, Debug, PartialEq)]
pub struct InputPlan {
    /// The records' encoding.
    pub format: RecordFormat,
    /// Protobuf and Avro: the schema file, when one is given.
    pub schema_file: Option<String>,
    /// Protobuf: the record's message type.
    pub message: Option<String>,
    /// One signal per record, or several.
    pub shape: Shape,
    /// Where the vehicle id is.
    pub vehicle_id: FieldPath,
    /// Where the event time is.
    pub time: FieldPath,
    /// The event time's form.
    pub time_format: TimeFormat,
    /// Where each event label is, in label order (its name is the path's leaf).
    pub labels: Vec<FieldPath>,
    /// Narrow shape: where the signal's name and value are.
    pub narrow: Option<NarrowFields>,
    /// The signals, indexed by [`SignalId`].
    pub signals: Vec<Signal>,
}

impl InputPlan {
    /// The signal of `id`.
    pub fn signal(&self, id: SignalId) -> &Signal {
        &self.signals[usize::from(id.0)]
    }

    /// The signal named `name` (its name in metrics and filters).
    pub fn signal_named(&self, name: &str) -> Option<SignalId> {
        self.signals
            .iter()
            .position(|s| s.name == name)
            .map(|i| SignalId(i as u16))
    }

    /// Narrow shape: the signal whose `key` is `key`.
    pub fn signal_keyed(&self, key: &str) -> Option<SignalId> {
        self.signals
            .iter()
            .position(|s| s.key.as_deref() == Some(key))
            .map(|i| SignalId(i as u16))
    }
}

/// Where a narrow record names its signal and holds its value.
#[derive(Clone, Debug, PartialEq)]
pub struct NarrowFields {
    /// The path of the signal's key.
    pub type_field: FieldPath,
    /// The path of the value.
    pub value_field: FieldPath,
}

/// One declared signal.
#[derive(Clone, Debug, PartialEq)]
pub struct Signal {
    /// Its name in metrics and filters.
    pub name: String,
    /// Its type.
    pub signal_type: SignalType,
    /// With [`SignalType::State`]: the states, indexed by [`Value::State`].
    pub states: Vec<String>,
    /// Narrow shape: the type field's value that names it.
    pub key: Option<String>,
    /// Wide shape: where it is in the record.
    pub path: Option<FieldPath>,
    /// The valid range of a numeric signal (inclusive); outside it a value is invalid.
    pub min: Option<f64>,
    /// See `min`.
    pub max: Option<f64>,
    /// The drill-down series of this signal is `vehicle_<drilldown_name>`.
    pub drilldown_name: String,
}

impl Signal {
    /// Whether a numeric `value` is inside the signal's valid range.
    pub fn in_range(&self, value: f64) -> bool {
        self.min.is_none_or(|min| value >= min) && self.max.is_none_or(|max| value <= max)
    }
}

/// Where a label's value comes from.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum LabelSource {
    /// The vehicle's model, from the reference data.
    Model,
    /// The record: the `n`th of [`InputPlan::labels`].
    Event(usize),
    /// The reference data: the `n`th of `reference.dimensions`.
    Dimension(usize),
}

/// One grouping label.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LabelDef {
    /// The label name.
    pub name: String,
    /// Where its value comes from.
    pub source: LabelSource,
}

/// The labels some metrics group by, in plan label order.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Grouping {
    /// The labels.
    pub labels: Vec<LabelId>,
}

/// One compiled metric.
#[derive(Clone, Debug, PartialEq)]
pub struct Metric {
    /// Its name, before the prefix.
    pub name: String,
    /// What it measures.
    pub help: String,
    /// How records combine.
    pub function: Function,
    /// The input signal, if any.
    pub signal: Option<SignalId>,
    /// Its filter, if any.
    pub filter: Option<Filter>,
    /// The filter as written.
    pub filter_text: Option<String>,
    /// The labels it groups by.
    pub grouping: GroupingId,
    /// Histogram bucket bounds (without `+Inf`); empty otherwise.
    pub buckets: Vec<f64>,
}

impl Metric {
    /// The names of the series this metric writes (before the prefix), in
    /// the order written: one per name, histograms' `_bucket` once for all
    /// its `le` values.
    pub fn series_names(&self) -> Vec<String> {
        let name = &self.name;
        match self.function {
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
            _ => vec![name.clone()],
        }
    }

    /// The fields this metric adds to a JSON-lines record (docs/METRICS.md,
    /// "The JSON-lines output").
    pub fn json_fields(&self) -> Vec<String> {
        match self.function {
            Function::Mean => vec![format!("{}_avg", self.name)],
            _ => self.series_names(),
        }
    }
}

impl fmt::Display for MetricPlan {
    /// What `check-config` prints: the schema, then each metric, its series and help.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let input = &self.input;
        let shape = match input.shape {
            Shape::Narrow => "narrow",
            Shape::Wide => "wide",
        };
        writeln!(
            f,
            "input: {shape} {} records, vehicle id at {}, event time at {} ({})",
            input.format.as_str(),
            input.vehicle_id,
            input.time,
            input.time_format.as_str()
        )?;
        for s in &input.signals {
            let place = match (&s.key, &s.path) {
                (Some(key), _) => format!("key {key:?}"),
                (_, Some(path)) => format!("at {path}"),
                _ => String::new(),
            };
            writeln!(
                f,
                "  signal {} ({}, {place})",
                s.name,
                s.signal_type.as_str()
            )?;
        }
        for m in &self.metrics {
            let labels: Vec<&str> = self
                .grouping(m.grouping)
                .labels
                .iter()
                .map(|l| self.label(*l).name.as_str())
                .collect();
            write!(f, "metric {}: {}", m.name, m.function.as_str())?;
            if let Some(signal) = m.signal {
                write!(f, " of {}", self.input.signal(signal).name)?;
            }
            if let Some(text) = &m.filter_text {
                write!(f, " where {text}")?;
            }
            writeln!(f, " by {}", labels.join(", "))?;
            writeln!(f, "  series: {}", m.series_names().join(", "))?;
            writeln!(f, "  help: {}", m.help)?;
        }
        Ok(())
    }
}

/// The service's embedded defaults, where the reference demo's schema and
/// metrics are declared.
const DEFAULT_TOML: &str = include_str!("../../../config/default.toml");

/// The two sections of a configuration file this crate reads.
#[derive(serde::Deserialize)]
struct Sections {
    input: InputConfig,
    metrics: Vec<MetricConfig>,
}

/// Fields of every JSON-lines record besides labels and metrics.
pub const JSON_FIELDS: [&str; 3] = ["window_start", "window_end", "events"];

/// The checked input schema and metrics: what every stage reads.
#[derive(Clone, Debug, PartialEq)]
pub struct MetricPlan {
    /// The record's schema.
    pub input: InputPlan,
    /// Every label a metric may group by: `model`, the event labels, the
    /// reference dimensions, in that order.
    pub labels: Vec<LabelDef>,
    /// The distinct groupings, in the order of the first metric using each.
    pub groupings: Vec<Grouping>,
    /// The metrics, in declaration order.
    pub metrics: Vec<Metric>,
}

impl MetricPlan {
    /// Checks `input` and `metrics` against each other and against the
    /// reference `dimensions`; every problem found, each naming its key.
    pub fn compile(
        input: &InputConfig,
        metrics: &[MetricConfig],
        dimensions: &[String],
    ) -> Result<MetricPlan, Vec<PlanProblem>> {
        compile::compile(input, metrics, dimensions)
    }

    /// The plan of the `[input]` and `[[metrics]]` of a TOML text (a whole
    /// configuration file may be given; other sections are ignored), or of
    /// the defaults in `config/default.toml` where it has none.
    pub fn from_toml(text: &str, dimensions: &[String]) -> Result<MetricPlan, Vec<PlanProblem>> {
        let problem = |e: toml::de::Error| {
            vec![PlanProblem {
                key: String::new(),
                problem: e.to_string(),
            }]
        };
        let mut sections: toml::Table = toml::from_str(DEFAULT_TOML).map_err(problem)?;
        sections.retain(|key, _| key == "input" || key == "metrics");
        let given: toml::Table = toml::from_str(text).map_err(problem)?;
        // As the configuration's layers merge: tables key by key, arrays whole.
        for (key, value) in given {
            match (sections.get_mut(&key), value) {
                (Some(toml::Value::Table(default)), toml::Value::Table(table))
                    if key == "input" =>
                {
                    default.extend(table)
                }
                (_, value) if key == "input" || key == "metrics" => {
                    sections.insert(key, value);
                }
                _ => {}
            }
        }
        let Sections { input, metrics } = sections.try_into().map_err(problem)?;
        compile::compile(&input, &metrics, dimensions)
    }

    /// The reference demo: the plan of `config/default.toml`.
    pub fn reference_demo() -> MetricPlan {
        // The embedded defaults are checked by this crate's tests.
        Self::from_toml("", &[]).unwrap_or_else(|problems| {
            unreachable!("config/default.toml's plan is invalid: {problems:?}")
        })
    }

    /// The label of `id`.
    pub fn label(&self, id: LabelId) -> &LabelDef {
        &self.labels[usize::from(id.0)]
    }

    /// The grouping of `id`.
    pub fn grouping(&self, id: GroupingId) -> &Grouping {
        &self.groupings[usize::from(id.0)]
    }
}
