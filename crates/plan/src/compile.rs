//! From the written configuration to a [`MetricPlan`]: every check, each
//! problem named by its key (`input.labels`, `input.signals.speed.type`,
//! `metrics.speed_max.where`).

use std::collections::{BTreeMap, BTreeSet};

use crate::config::{
    Function, InputConfig, MetricConfig, RecordFormat, Shape, SignalConfig, SignalType,
};
use crate::filter::{self, SignalScope};
use crate::names::{is_label_name, is_metric_name, is_signal_name};
use crate::{
    FieldPath, Grouping, GroupingId, InputPlan, LabelDef, LabelId, LabelSource, Metric, MetricPlan,
    NarrowFields, Signal, SignalId, JSON_FIELDS, MODEL_LABEL, RESERVED_LABELS,
};

/// One problem with `[input]` or `[[metrics]]`.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{key}: {problem}")]
pub struct PlanProblem {
    /// The dotted key: `input.time_format`, `metrics.<name>.by`.
    pub key: String,
    /// What is wrong.
    pub problem: String,
}

#[derive(Default)]
struct Problems(Vec<PlanProblem>);

impl Problems {
    fn add(&mut self, key: impl Into<String>, problem: impl Into<String>) {
        self.0.push(PlanProblem {
            key: key.into(),
            problem: problem.into(),
        });
    }

    fn path(&mut self, key: &str, text: &str) -> Option<FieldPath> {
        let path = FieldPath::parse(text);
        if path.is_none() {
            self.add(
                key,
                format!("{text:?} is not a path: field names joined by dots, none empty"),
            );
        }
        path
    }
}

pub(crate) fn compile(
    input: &InputConfig,
    metrics: &[MetricConfig],
    dimensions: &[String],
) -> Result<MetricPlan, Vec<PlanProblem>> {
    let mut problems = Problems::default();
    let input_plan = compile_input(input, &mut problems);
    // Labels are checked even when another part of the input is wrong.
    let label_paths: Vec<FieldPath> = input
        .labels
        .iter()
        .filter_map(|l| FieldPath::parse(l))
        .collect();
    let labels = plan_labels(&label_paths, dimensions, &mut problems);
    let mut groupings = Vec::new();
    let compiled: Vec<Metric> = match &input_plan {
        Some(input_plan) => {
            compile_metrics(input_plan, &labels, &mut groupings, metrics, &mut problems)
        }
        None => Vec::new(),
    };
    check_label_fields(&labels, &compiled, &mut problems);
    check_per_vehicle_metrics(&groupings, &compiled, &mut problems);
    match input_plan {
        Some(input) if problems.0.is_empty() => Ok(MetricPlan {
            input,
            labels,
            groupings,
            metrics: compiled,
        }),
        _ => Err(problems.0),
    }
}

fn compile_input(input: &InputConfig, problems: &mut Problems) -> Option<InputPlan> {
    let vehicle_id = problems.path("input.vehicle_id", &input.vehicle_id);
    let time = problems.path("input.time", &input.time);
    let labels: Vec<Option<FieldPath>> = input
        .labels
        .iter()
        .map(|l| problems.path("input.labels", l))
        .collect();
    let narrow = match input.shape {
        Shape::Narrow => {
            let type_field = problems.path("input.type_field", &input.type_field);
            let value_field = problems.path("input.value_field", &input.value_field);
            match (type_field, value_field) {
                (Some(type_field), Some(value_field)) => Some(NarrowFields {
                    type_field,
                    value_field,
                }),
                _ => None,
            }
        }
        Shape::Wide => None,
    };
    if input.signals.is_empty() {
        problems.add("input.signals", "declare at least one signal");
    }
    let mut names = BTreeSet::new();
    let mut keys = BTreeSet::new();
    let mut drilldown_names = BTreeSet::new();
    let mut signals = Vec::new();
    for (i, s) in input.signals.iter().enumerate() {
        let key = signal_key(i, s);
        if !is_signal_name(&s.name) {
            problems.add(
                format!("{key}.name"),
                format!(
                    "{:?} is not a signal name: letters, digits and _, not starting with a digit, not a filter keyword",
                    s.name
                ),
            );
        } else if !names.insert(s.name.clone()) {
            problems.add(format!("{key}.name"), "declared twice");
        }
        if let Some(signal) = compile_signal(input.shape, &key, s, problems) {
            if let Some(k) = &signal.key {
                if !keys.insert(k.clone()) {
                    problems.add(
                        format!("{key}.key"),
                        format!("{k:?} names another signal too"),
                    );
                }
            }
            if !drilldown_names.insert(signal.drilldown_name.clone()) {
                problems.add(
                    format!("{key}.drilldown_name"),
                    format!("{:?} is another signal's too", signal.drilldown_name),
                );
            }
            signals.push(signal);
        }
    }
    if signals.len() > usize::from(u16::MAX) {
        problems.add("input.signals", "more than 65535 signals");
    }
    let labels: Option<Vec<FieldPath>> = labels.into_iter().collect();
    let text = |s: &str| (!s.is_empty()).then(|| s.to_owned());
    match input.format {
        RecordFormat::Json if !input.schema_file.is_empty() => problems.add(
            "input.schema_file",
            "JSON records have no schema file (input.format is \"json\")",
        ),
        RecordFormat::Json | RecordFormat::Avro if !input.message.is_empty() => problems.add(
            "input.message",
            format!(
                "only Protobuf records name a message type (input.format is {:?})",
                input.format.as_str()
            ),
        ),
        _ => {}
    }
    let plan = InputPlan {
        format: input.format,
        schema_file: text(&input.schema_file),
        message: text(&input.message),
        shape: input.shape,
        vehicle_id: vehicle_id?,
        time: time?,
        time_format: input.time_format,
        labels: labels?,
        narrow: match input.shape {
            Shape::Narrow => Some(narrow?),
            Shape::Wide => None,
        },
        signals,
    };
    (plan.signals.len() == input.signals.len()).then_some(plan)
}

/// `input.signals.<name>`, or `input.signals[<i>]` when the name is no name.
fn signal_key(i: usize, s: &SignalConfig) -> String {
    if is_signal_name(&s.name) {
        format!("input.signals.{}", s.name)
    } else {
        format!("input.signals[{i}]")
    }
}

fn compile_signal(
    shape: Shape,
    key: &str,
    s: &SignalConfig,
    problems: &mut Problems,
) -> Option<Signal> {
    let before = problems.0.len();
    match (shape, &s.key, &s.path) {
        (Shape::Narrow, _, Some(_)) => problems.add(
            format!("{key}.path"),
            "only wide records have paths; narrow ones name the signal with key",
        ),
        (Shape::Wide, Some(_), _) => problems.add(
            format!("{key}.key"),
            "only narrow records name signals with key; wide ones use path",
        ),
        _ => {}
    }
    let path = match shape {
        Shape::Wide => problems.path(&format!("{key}.path"), s.path.as_deref().unwrap_or(&s.name)),
        Shape::Narrow => None,
    };
    let signal_key = match shape {
        Shape::Narrow => {
            let k = s.key.clone().unwrap_or_else(|| s.name.clone());
            if k.is_empty() {
                problems.add(format!("{key}.key"), "must not be empty");
            }
            Some(k)
        }
        Shape::Wide => None,
    };
    match s.signal_type {
        SignalType::State => {
            if s.states.is_empty() {
                problems.add(format!("{key}.states"), "a state signal needs its states");
            }
            let distinct: BTreeSet<&String> = s.states.iter().collect();
            if distinct.len() != s.states.len() || s.states.iter().any(String::is_empty) {
                problems.add(
                    format!("{key}.states"),
                    "states must be distinct and non-empty",
                );
            }
        }
        _ if !s.states.is_empty() => {
            problems.add(format!("{key}.states"), "only state signals have states");
        }
        _ => {}
    }
    for (bound, value) in [("min", s.min), ("max", s.max)] {
        if value.is_some() && !s.signal_type.is_numeric() {
            problems.add(
                format!("{key}.{bound}"),
                "only integer and float signals have a range",
            );
        }
        if value.is_some_and(|v| !v.is_finite()) {
            problems.add(format!("{key}.{bound}"), "must be a finite number");
        }
    }
    if let (Some(min), Some(max)) = (s.min, s.max) {
        if min > max {
            problems.add(format!("{key}.max"), "must not be below min");
        }
    }
    let drilldown_name = s
        .drilldown_name
        .clone()
        .unwrap_or_else(|| s.name.to_ascii_lowercase());
    if !is_metric_name(&format!("vehicle_{drilldown_name}")) {
        problems.add(
            format!("{key}.drilldown_name"),
            format!("vehicle_{drilldown_name} is not a metric name"),
        );
    }
    (problems.0.len() == before).then(|| Signal {
        name: s.name.clone(),
        signal_type: s.signal_type,
        states: s.states.clone(),
        key: signal_key,
        path,
        min: s.min,
        max: s.max,
        drilldown_name,
    })
}

/// `model`, then the event labels, then the dimensions; each name checked.
fn plan_labels(
    event_labels: &[FieldPath],
    dimensions: &[String],
    problems: &mut Problems,
) -> Vec<LabelDef> {
    let mut labels = vec![LabelDef {
        name: MODEL_LABEL.to_owned(),
        source: LabelSource::Model,
    }];
    for (i, path) in event_labels.iter().enumerate() {
        let name = path.leaf();
        if !is_label_name(name) {
            problems.add(
                "input.labels",
                format!("{path}: {name:?} is not a label name: [a-zA-Z_][a-zA-Z0-9_]*, not starting with __"),
            );
        } else if RESERVED_LABELS.contains(&name) {
            problems.add(
                "input.labels",
                format!("{path}: the service sets the label {name} itself"),
            );
        } else if dimensions.iter().any(|d| d == name) {
            problems.add(
                "input.labels",
                format!("{path}: {name} is also a reference dimension"),
            );
        } else if labels.iter().any(|l| l.name == name) {
            problems.add(
                "input.labels",
                format!("{path}: a second label named {name}"),
            );
        } else {
            labels.push(LabelDef {
                name: name.to_owned(),
                source: LabelSource::Event(i),
            });
        }
    }
    labels.extend(dimensions.iter().enumerate().map(|(i, d)| LabelDef {
        name: d.clone(),
        source: LabelSource::Dimension(i),
    }));
    labels
}

/// Most metrics of one grouping that keep a flag per vehicle
/// (`distinct_vehicles`, `sum_of_latest`, `mean_of_latest`): one bit each in
/// the aggregator's per-vehicle slot.
pub const MAX_PER_VEHICLE_METRICS: usize = 63;

fn check_per_vehicle_metrics(groupings: &[Grouping], metrics: &[Metric], problems: &mut Problems) {
    for g in 0..groupings.len() {
        let per_vehicle: Vec<&str> = metrics
            .iter()
            .filter(|m| usize::from(m.grouping.0) == g)
            .filter(|m| {
                matches!(
                    m.function,
                    Function::DistinctVehicles | Function::SumOfLatest | Function::MeanOfLatest
                )
            })
            .map(|m| m.name.as_str())
            .collect();
        if per_vehicle.len() > MAX_PER_VEHICLE_METRICS {
            problems.add(
                format!("metrics.{}", per_vehicle[MAX_PER_VEHICLE_METRICS]),
                format!(
                    "more than {MAX_PER_VEHICLE_METRICS} distinct_vehicles, sum_of_latest and mean_of_latest metrics with the same grouping"
                ),
            );
        }
    }
}

/// A label is a field of the JSON-lines record too: it must not take the
/// name of another field.
fn check_label_fields(labels: &[LabelDef], metrics: &[Metric], problems: &mut Problems) {
    for label in labels {
        let key = match label.source {
            LabelSource::Model => continue,
            LabelSource::Event(_) => "input.labels",
            LabelSource::Dimension(_) => "reference.dimensions",
        };
        let name = label.name.as_str();
        if JSON_FIELDS.contains(&name) {
            problems.add(
                key,
                format!("{name:?} is a field of every JSON-lines record"),
            );
        } else if let Some(m) = metrics
            .iter()
            .find(|m| m.json_fields().iter().any(|f| f == name))
        {
            problems.add(
                key,
                format!(
                    "{name:?} is a field of metric {} in the JSON-lines record",
                    m.name
                ),
            );
        }
    }
}

impl SignalScope for InputPlan {
    fn signal(&self, name: &str) -> Option<(SignalId, crate::SignalType, &[String])> {
        let id = self.signal_named(name)?;
        let s = self.signal(id);
        Some((id, s.signal_type, &s.states))
    }
}

fn compile_metrics(
    input: &InputPlan,
    labels: &[LabelDef],
    groupings: &mut Vec<Grouping>,
    metrics: &[MetricConfig],
    problems: &mut Problems,
) -> Vec<Metric> {
    // Every series name written, and who writes it.
    let mut written: BTreeMap<String, String> = input
        .signals
        .iter()
        .map(|s| {
            (
                format!("vehicle_{}", s.drilldown_name),
                format!("the drill-down of signal {}", s.name),
            )
        })
        .collect();
    let mut compiled = Vec::new();
    if metrics.is_empty() {
        problems.add("metrics", "declare at least one metric");
    }
    for (i, m) in metrics.iter().enumerate() {
        let key = if is_metric_name(&m.name) {
            format!("metrics.{}", m.name)
        } else {
            problems.add(
                format!("metrics[{i}].name"),
                format!(
                    "{:?} is not a metric name: [a-zA-Z_:][a-zA-Z0-9_:]*",
                    m.name
                ),
            );
            format!("metrics[{i}]")
        };
        let before = problems.0.len();
        if m.help.trim().is_empty() {
            problems.add(
                format!("{key}.help"),
                "say in one line what the metric measures",
            );
        }
        let signal = compile_metric_signal(input, &key, m, problems);
        let filter = m.filter.as_deref().and_then(|text| {
            filter::parse(text, input)
                .map_err(|e| problems.add(format!("{key}.where"), e.to_string()))
                .ok()
        });
        let grouping = compile_grouping(labels, groupings, &key, m.by.as_deref(), problems);
        let buckets = compile_buckets(&key, m, problems);
        let metric = Metric {
            name: m.name.clone(),
            help: m.help.clone(),
            function: m.function,
            signal,
            filter,
            filter_text: m.filter.clone(),
            grouping,
            buckets,
        };
        if is_metric_name(&m.name) {
            for series in metric.series_names() {
                if let Some(other) = written.get(&series) {
                    problems.add(
                        format!("{key}.name"),
                        format!("writes the series {series}, as {other} does"),
                    );
                } else {
                    written.insert(series, format!("metric {}", m.name));
                }
            }
        }
        if problems.0.len() == before {
            compiled.push(metric);
        }
    }
    compiled
}

fn compile_metric_signal(
    input: &InputPlan,
    key: &str,
    m: &MetricConfig,
    problems: &mut Problems,
) -> Option<SignalId> {
    let function = m.function.as_str();
    let Some(name) = &m.signal else {
        if m.function.needs_numeric_signal() {
            problems.add(
                format!("{key}.signal"),
                format!("{function} needs an integer or float signal"),
            );
        }
        return None;
    };
    let Some(id) = input.signal_named(name) else {
        problems.add(format!("{key}.signal"), format!("unknown signal {name:?}"));
        return None;
    };
    let signal_type = input.signal(id).signal_type;
    if m.function.needs_numeric_signal() && !signal_type.is_numeric() {
        problems.add(
            format!("{key}.signal"),
            format!(
                "{function} needs an integer or float signal; {name} is a {}",
                signal_type.as_str()
            ),
        );
        return None;
    }
    Some(id)
}

fn compile_grouping(
    labels: &[LabelDef],
    groupings: &mut Vec<Grouping>,
    key: &str,
    by: Option<&[String]>,
    problems: &mut Problems,
) -> GroupingId {
    let ids: BTreeSet<LabelId> = match by {
        None => (0..labels.len()).map(|i| LabelId(i as u16)).collect(),
        Some(names) => {
            let mut ids = BTreeSet::new();
            for name in names {
                match labels.iter().position(|l| l.name == *name) {
                    Some(i) if ids.insert(LabelId(i as u16)) => {}
                    Some(_) => problems.add(format!("{key}.by"), format!("{name} is listed twice")),
                    None => problems.add(
                        format!("{key}.by"),
                        format!(
                            "unknown label {name:?}; the labels are {}",
                            labels
                                .iter()
                                .map(|l| l.name.as_str())
                                .collect::<Vec<_>>()
                                .join(", ")
                        ),
                    ),
                }
            }
            ids
        }
    };
    let grouping = Grouping {
        labels: ids.into_iter().collect(),
    };
    let index = match groupings.iter().position(|g| *g == grouping) {
        Some(i) => i,
        None => {
            groupings.push(grouping);
            groupings.len() - 1
        }
    };
    GroupingId(index as u16)
}

fn compile_buckets(key: &str, m: &MetricConfig, problems: &mut Problems) -> Vec<f64> {
    match (&m.buckets, m.function) {
        (Some(buckets), Function::Histogram) => {
            if buckets.is_empty() {
                problems.add(
                    format!("{key}.buckets"),
                    "a histogram needs at least one bucket bound",
                );
            } else if buckets.iter().any(|b| !b.is_finite()) {
                problems.add(
                    format!("{key}.buckets"),
                    "bounds must be finite (+Inf is added)",
                );
            } else if buckets.windows(2).any(|w| w[0] >= w[1]) {
                problems.add(
                    format!("{key}.buckets"),
                    "bounds must be strictly increasing",
                );
            }
            buckets.clone()
        }
        (None, Function::Histogram) => {
            problems.add(
                format!("{key}.buckets"),
                "a histogram needs its bucket bounds",
            );
            Vec::new()
        }
        (Some(_), function) => {
            problems.add(
                format!("{key}.buckets"),
                format!("only histograms have buckets, not {}", function.as_str()),
            );
            Vec::new()
        }
        (None, _) => Vec::new(),
    }
}

#[cfg(test)]
mod tests;
