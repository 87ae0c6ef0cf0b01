use super::*;
use crate::{Filter, Value};

/// `[input]`, `[[metrics]]` and `reference.dimensions` of a TOML text.
#[derive(serde::Deserialize)]
struct Sections {
    input: InputConfig,
    metrics: Vec<MetricConfig>,
}

const DEFAULT_TOML: &str = include_str!("../../../../config/default.toml");

fn default_sections() -> Sections {
    let value: toml::Table = toml::from_str(DEFAULT_TOML).unwrap();
    let mut table = toml::Table::new();
    table.insert("input".into(), value["input"].clone());
    table.insert("metrics".into(), value["metrics"].clone());
    table.try_into().unwrap()
}

/// The default input with `metrics` in TOML in place of the default metrics.
fn with_metrics(metrics: &str) -> Result<MetricPlan, Vec<String>> {
    let input = default_sections().input;
    #[derive(serde::Deserialize)]
    struct M {
        metrics: Vec<MetricConfig>,
    }
    let m: M = toml::from_str(metrics).unwrap();
    MetricPlan::compile(&input, &m.metrics, &["fuel_type".into()])
        .map_err(|ps| ps.iter().map(ToString::to_string).collect())
}

fn wide(signals: &str) -> InputConfig {
    let mut input = default_sections().input;
    input.shape = Shape::Wide;
    #[derive(serde::Deserialize)]
    struct S {
        signals: Vec<SignalConfig>,
    }
    input.signals = toml::from_str::<S>(signals).unwrap().signals;
    input
}

#[test]
fn the_default_is_the_reference_demo() {
    let plan = MetricPlan::reference_demo();
    let names: Vec<String> = plan.metrics.iter().flat_map(Metric::series_names).collect();
    assert_eq!(
        names,
        [
            "vehicles_in_motion",
            "warnings",
            "vehicles_reporting",
            "ic_engine_rpm_avg",
            "ic_engine_rpm_sum",
            "ic_engine_rpm_count",
            "electric_motor_rpm_avg",
            "electric_motor_rpm_sum",
            "electric_motor_rpm_count",
        ]
    );
    let label_names: Vec<&str> = plan.labels.iter().map(|l| l.name.as_str()).collect();
    assert_eq!(label_names, ["model", "region"]);
    assert_eq!(plan.groupings.len(), 1);
    assert_eq!(plan.groupings[0].labels, [LabelId(0), LabelId(1)]);
    let ic = plan.input.signal_keyed("IC_RPM").unwrap();
    assert_eq!(plan.input.signal(ic).drilldown_name, "ic_engine_rpm");
    let warnings = plan.input.signal_keyed("WARNINGS").unwrap();
    assert!(!plan.input.signal(warnings).in_range(-1.0));
    let Some(Filter::Or(..)) = &plan.metrics[0].filter else {
        panic!("vehicles_in_motion's filter: {:?}", plan.metrics[0].filter)
    };
}

#[test]
fn labels_are_model_then_event_labels_then_dimensions_and_groupings_are_shared() {
    let plan = with_metrics(
        r#"
        [[metrics]]
        name = "a"
        help = "a"
        function = "count"
        by = ["region", "model"]
        [[metrics]]
        name = "b"
        help = "b"
        function = "count"
        [[metrics]]
        name = "c"
        help = "c"
        function = "count"
        by = ["model", "region"]
        "#,
    )
    .unwrap();
    let names: Vec<&str> = plan.labels.iter().map(|l| l.name.as_str()).collect();
    assert_eq!(names, ["model", "region", "fuel_type"]);
    assert_eq!(plan.groupings.len(), 2);
    assert_eq!(plan.metrics[0].grouping, plan.metrics[2].grouping);
    assert_eq!(
        plan.grouping(plan.metrics[0].grouping).labels,
        [LabelId(0), LabelId(1)]
    );
    assert_eq!(plan.grouping(plan.metrics[1].grouping).labels.len(), 3);
}

#[test]
fn names_the_metric_and_the_problem_for_each_bad_definition() {
    let problems = with_metrics(
        r#"
        [[metrics]]
        name = "speed"
        help = "unknown signal"
        function = "max"
        signal = "SPEED"
        [[metrics]]
        name = "gear_mix"
        help = ""
        function = "sum"
        [[metrics]]
        name = "bad_filter"
        help = "h"
        function = "count"
        where = "IC_RPM > "
        [[metrics]]
        name = "speed"
        help = "duplicate"
        function = "count"
        [[metrics]]
        name = "rpm-max"
        help = "bad name"
        function = "count"
        [[metrics]]
        name = "h"
        help = "h"
        function = "histogram"
        signal = "IC_RPM"
        buckets = [10.0, 5.0]
        [[metrics]]
        name = "by_bad"
        help = "h"
        function = "count"
        by = ["depot"]
        [[metrics]]
        name = "h_sum"
        help = "clashes with the histogram's _sum"
        function = "count"
        [[metrics]]
        name = "vehicle_warnings"
        help = "clashes with the drill-down"
        function = "count"
        [[metrics]]
        name = "m"
        help = "buckets on a mean"
        function = "mean"
        signal = "IC_RPM"
        buckets = [1.0]
        "#,
    )
    .unwrap_err();
    let expected = [
        "metrics.speed.signal: unknown signal \"SPEED\"",
        "metrics.gear_mix.help: say in one line what the metric measures",
        "metrics.gear_mix.signal: sum needs an integer or float signal",
        "metrics.bad_filter.where: at character 10: expected a constant",
        "metrics.speed.name: writes the series speed, as metric speed does",
        "metrics[4].name: \"rpm-max\" is not a metric name: [a-zA-Z_:][a-zA-Z0-9_:]*",
        "metrics.h.buckets: bounds must be strictly increasing",
        "metrics.by_bad.by: unknown label \"depot\"; the labels are model, region, fuel_type",
        "metrics.h_sum.name: writes the series h_sum, as metric h does",
        "metrics.vehicle_warnings.name: writes the series vehicle_warnings, as the drill-down of signal WARNINGS does",
        "metrics.m.buckets: only histograms have buckets, not mean",
    ];
    for e in expected {
        assert!(
            problems.iter().any(|p| p.starts_with(e)),
            "missing {e:?} in {problems:#?}"
        );
    }
    assert_eq!(problems.len(), expected.len(), "{problems:#?}");
}

#[test]
fn signal_types_must_suit_the_function() {
    let input = wide(
        r#"
        [[signals]]
        name = "gear"
        type = "state"
        states = ["P", "R", "N", "D"]
        [[signals]]
        name = "door_open"
        type = "boolean"
        path = "doors.driver_open"
        "#,
    );
    let metrics: Vec<MetricConfig> = toml::from_str::<toml::Table>(
        r#"
        [[metrics]]
        name = "gears"
        help = "h"
        function = "mean"
        signal = "gear"
        [[metrics]]
        name = "doors_open"
        help = "h"
        function = "distinct_vehicles"
        signal = "door_open"
        where = "door_open = true and gear in [\"P\"]"
        "#,
    )
    .unwrap()["metrics"]
        .clone()
        .try_into()
        .unwrap();
    let problems = MetricPlan::compile(&input, &metrics, &[]).unwrap_err();
    assert_eq!(
        problems.iter().map(ToString::to_string).collect::<Vec<_>>(),
        ["metrics.gears.signal: mean needs an integer or float signal; gear is a state"]
    );
    let plan = MetricPlan::compile(&input, &metrics[1..], &[]).unwrap();
    assert_eq!(
        plan.input
            .signal(SignalId(1))
            .path
            .as_ref()
            .map(ToString::to_string)
            .as_deref(),
        Some("doors.driver_open")
    );
    let filter = plan.metrics[0].filter.as_ref().unwrap();
    assert!(filter.passes(&|id| Some(if id.0 == 0 {
        Value::State(0)
    } else {
        Value::Boolean(true)
    })));
}

#[test]
fn input_problems_name_their_keys() {
    let mut input = wide(
        r#"
        [[signals]]
        name = "speed"
        type = "float"
        key = "SPEED"
        min = 10.0
        max = 5.0
        [[signals]]
        name = "speed"
        type = "integer"
        states = ["x"]
        [[signals]]
        name = "not"
        type = "boolean"
        min = 0.0
        [[signals]]
        name = "temp"
        type = "float"
        path = "a..b"
        "#,
    );
    input.labels = vec![
        "site.model".into(),
        "region".into(),
        "geo.region".into(),
        "fuel_type".into(),
    ];
    input.vehicle_id = String::new();
    let problems: Vec<String> = MetricPlan::compile(&input, &[], &["fuel_type".into()])
        .unwrap_err()
        .iter()
        .map(ToString::to_string)
        .collect();
    let expected = [
        "input.vehicle_id: \"\" is not a path",
        "input.signals.speed.key: only narrow records name signals with key",
        "input.signals.speed.max: must not be below min",
        "input.signals.speed.name: declared twice",
        "input.signals.speed.states: only state signals have states",
        "input.signals[2].name: \"not\" is not a signal name",
        "input.signals[2].min: only integer and float signals have a range",
        "input.signals.temp.path: \"a..b\" is not a path",
        "input.labels: site.model: the service sets the label model itself",
        "input.labels: geo.region: a second label named region",
        "input.labels: fuel_type: fuel_type is also a reference dimension",
    ];
    for e in expected {
        assert!(
            problems.iter().any(|p| p.starts_with(e)),
            "missing {e:?} in {problems:#?}"
        );
    }
    assert_eq!(problems.len(), expected.len(), "{problems:#?}");
}

#[test]
fn labels_must_not_take_a_json_field_name() {
    let mut input = default_sections().input;
    input.labels = vec!["region".into(), "loc.events".into()];
    let metrics = default_sections().metrics;
    let problems: Vec<String> =
        MetricPlan::compile(&input, &metrics, &["ic_engine_rpm_avg".into()])
            .unwrap_err()
            .iter()
            .map(ToString::to_string)
            .collect();
    assert_eq!(
        problems,
        [
            "input.labels: \"events\" is a field of every JSON-lines record",
            "reference.dimensions: \"ic_engine_rpm_avg\" is a field of metric ic_engine_rpm in the JSON-lines record",
        ]
    );
}

#[test]
fn from_toml_layers_input_keys_and_replaces_lists() {
    let plan = MetricPlan::from_toml(
        r#"
        [kafka]
        brokers = "ignored"
        [input]
        shape = "wide"
        time_format = "rfc3339"
        [[input.signals]]
        name = "speed"
        type = "float"
        [[metrics]]
        name = "speed_max"
        help = "h"
        function = "max"
        signal = "speed"
        "#,
        &[],
    )
    .unwrap();
    assert_eq!(plan.input.shape, Shape::Wide);
    assert_eq!(plan.input.vehicle_id.to_string(), "vehicleId");
    assert_eq!(plan.input.signals.len(), 1);
    assert_eq!(plan.metrics.len(), 1);
    let problems = MetricPlan::from_toml("[input]\nshape = \"round\"", &[]).unwrap_err();
    assert!(problems[0].problem.contains("round"), "{problems:?}");
}

#[test]
fn at_most_63_per_vehicle_metrics_share_a_grouping() {
    let metrics: String = (0..64)
        .map(|i| {
            format!(
                "[[metrics]]\nname = \"d{i}\"\nhelp = \"h\"\nfunction = \"distinct_vehicles\"\n"
            )
        })
        .collect();
    let problems = MetricPlan::from_toml(&metrics, &[]).unwrap_err();
    assert_eq!(problems.len(), 1, "{problems:?}");
    assert_eq!(problems[0].key, "metrics.d63");
    let fewer: String = metrics
        .split("[[metrics]]")
        .skip(2)
        .map(|m| format!("[[metrics]]{m}"))
        .collect();
    assert!(MetricPlan::from_toml(&fewer, &[]).is_ok());
}

#[test]
fn the_record_format_takes_its_own_keys_only() {
    let plan = |input: &str| MetricPlan::from_toml(&format!("[input]\n{input}"), &[]);
    let keys = |input: &str| -> Vec<String> {
        plan(input)
            .unwrap_err()
            .iter()
            .map(|p| p.key.clone())
            .collect()
    };
    assert_eq!(keys("schema_file = \"r.proto\""), ["input.schema_file"]);
    assert_eq!(
        keys("format = \"avro\"\nmessage = \"a.B\""),
        ["input.message"]
    );
    // The message type is fleet-schema's to require: a registry names it.
    assert!(plan("format = \"protobuf\"\nschema_file = \"r.proto\"").is_ok());
    let p = plan("format = \"protobuf\"\nschema_file = \"r.proto\"\nmessage = \"a.B\"").unwrap();
    assert_eq!(p.input.format, RecordFormat::Protobuf);
    assert_eq!(p.input.schema_file.as_deref(), Some("r.proto"));
    assert_eq!(p.input.message.as_deref(), Some("a.B"));
    assert_eq!(MetricPlan::reference_demo().input.schema_file, None);
}
