//! Hand-computed and randomized cases for the declared-metrics oracle.

use std::collections::{BTreeMap, HashMap};

use fleet_core::{EventType, RawEvent};

use super::decode::{decode, rfc3339_ms, Record};
use super::*;
use crate::oracle::{expected_json_lines, expected_samples, expected_windows, late_event_count};

const WINDOW: i64 = 5000;

fn config(text: &str) -> DeclaredConfig {
    DeclaredConfig::from_toml(text).unwrap()
}

fn records(partition: i32, lines: &[&str]) -> Vec<OracleRecord> {
    lines
        .iter()
        .map(|line| OracleRecord {
            partition,
            bytes: line.as_bytes().to_vec(),
        })
        .collect()
}

/// A vehicle of the reference data: `(id, model, dimensions)`.
type Vehicle<'a> = (&'a str, &'a str, &'a [(&'a str, &'a str)]);

fn reference(vehicles: &[Vehicle<'_>]) -> HashMap<String, VehicleRef> {
    vehicles
        .iter()
        .map(|(id, model, dimensions)| {
            let dimensions = dimensions
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect();
            let model = model.to_string();
            (id.to_string(), VehicleRef { model, dimensions })
        })
        .collect()
}

fn run(
    config_text: &str,
    lines: &[&str],
    vehicles: &HashMap<String, VehicleRef>,
) -> DeclaredOutput {
    expected_declared(
        &config(config_text),
        &records(0, lines),
        vehicles,
        WINDOW,
        None,
        false,
    )
}

fn no_labels() -> BTreeMap<String, String> {
    BTreeMap::new()
}

fn labels(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
    pairs
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

fn decoded(config_text: &str, line: &str) -> Result<Record, &'static str> {
    decode(&config(config_text).input, line.as_bytes()).map_err(|r| r.as_str())
}

/// A narrow config of the given signals and metrics, no event labels.
fn narrow(signals_and_metrics: &str) -> String {
    format!("[input]\nlabels = []\n{signals_and_metrics}")
}

// ---------------------------------------------------------------------------
// The default configuration against today's oracle.

/// SplitMix64: enough randomness for test inputs, no dependency.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    fn below(&mut self, n: u64) -> i64 {
        (self.next() % n) as i64
    }
}

/// Demo events with disorder, late stragglers, repeated (vehicle, time)
/// pairs with other values (ties for `warnings`), zero RPM, negative
/// electric RPM and vehicles missing from the reference data.
fn demo_events(seed: u64, start: i64, count: usize) -> Vec<RawEvent> {
    let mut rng = Rng(seed);
    let mut clock = start;
    let mut events: Vec<RawEvent> = Vec::with_capacity(count);
    while events.len() < count {
        clock += rng.below(40);
        let repeat = rng.below(100) < 8;
        if let Some(previous) = events.last().filter(|_| repeat) {
            let mut tie = previous.clone();
            tie.measurement = match tie.event_type {
                EventType::Warnings => rng.below(4),
                _ => rng.below(3000),
            };
            events.push(tie);
            continue;
        }
        let timestamp = match rng.below(100) {
            0..=4 => clock - rng.below(1500),
            5 => clock - 3000 - rng.below(27_000),
            _ => clock,
        };
        let (event_type, measurement) = match rng.below(10) {
            0..=1 => (EventType::Warnings, rng.below(4)),
            2..=5 if rng.below(5) == 0 => (EventType::IcRpm, 0),
            2..=5 => (EventType::IcRpm, rng.below(5000)),
            _ if rng.below(5) == 0 => (EventType::ElectricRpm, 0),
            _ => (EventType::ElectricRpm, rng.below(4000) - 800),
        };
        events.push(RawEvent {
            event_type,
            vehicle_id: format!("V{:02}", rng.below(40)).as_str().into(),
            region: ["UK", "DE", "FR"][rng.below(3) as usize].into(),
            timestamp,
            measurement,
        });
    }
    events
}

const MODELS: [&str; 3] = ["Nebulara", "Voltora", "Aurelis"];

/// V00..V34 are known; V35..V39 are not.
fn demo_models() -> HashMap<String, String> {
    (0..35)
        .map(|i| (format!("V{i:02}"), MODELS[i % 3].to_string()))
        .collect()
}

/// Refused records and the reason each counts under (today's decoder's).
const JUNK: [(&str, &str); 8] = [
    ("{not json", "invalid_json"),
    ("[1,2]", "wrong_type"),
    (
        r#"{"eventType":"IC_RPM","vehicleId":"V01","region":"UK","measurement":1}"#,
        "missing_field",
    ),
    (
        r#"{"eventType":"OIL","vehicleId":"V01","region":"UK","timestamp":1,"measurement":1}"#,
        "unknown_event_type",
    ),
    (
        r#"{"eventType":"IC_RPM","vehicleId":"","region":"UK","timestamp":1,"measurement":1}"#,
        "invalid_value",
    ),
    (
        r#"{"eventType":"WARNINGS","vehicleId":"V01","region":"UK","timestamp":1,"measurement":-1}"#,
        "invalid_value",
    ),
    (
        r#"{"eventType":"IC_RPM","vehicleId":"V01","region":"UK","timestamp":1,"measurement":1.5}"#,
        "wrong_type",
    ),
    (
        r#"{"eventType":"OIL","vehicleId":"V01","region":"UK","timestamp":1,"measurement":"x"}"#,
        "wrong_type",
    ),
];

/// The events' wire bytes with junk mixed in, and the junk's reasons.
fn with_junk(events: &[RawEvent], seed: u64) -> (Vec<OracleRecord>, BTreeMap<String, u64>) {
    let mut rng = Rng(seed ^ 0x5EED);
    let mut input = Vec::new();
    let mut reasons = BTreeMap::new();
    for event in events {
        if rng.below(50) == 0 {
            let (line, reason) = JUNK[rng.below(JUNK.len() as u64) as usize];
            input.push(OracleRecord {
                partition: 0,
                bytes: line.as_bytes().to_vec(),
            });
            *reasons.entry(reason.to_string()).or_default() += 1;
        }
        input.push(OracleRecord {
            partition: 0,
            bytes: event.to_json().into_bytes(),
        });
    }
    (input, reasons)
}

/// Declared samples in the shape of [`expected_samples`].
type OldSamples = BTreeMap<(i64, String, String), BTreeMap<String, f64>>;

fn as_old_samples(samples: &BTreeMap<SampleKey, f64>) -> OldSamples {
    let mut old = OldSamples::new();
    for ((name, labels, end), value) in samples {
        assert_eq!(labels.len(), 2, "{labels:?}");
        let key = (*end, labels["model"].clone(), labels["region"].clone());
        old.entry(key).or_default().insert(name.clone(), *value);
    }
    old
}

#[test]
fn the_default_config_matches_todays_oracle() {
    let declared = config("");
    let whole_file = config(include_str!("../../../../../config/default.toml"));
    assert_eq!(whole_file.labels(), declared.labels());
    assert_eq!(whole_file.metric_names(), declared.metric_names());
    let models = demo_models();
    let vehicles: HashMap<String, VehicleRef> = models
        .iter()
        .map(|(id, model)| {
            let model = model.clone();
            (
                id.clone(),
                VehicleRef {
                    model,
                    ..Default::default()
                },
            )
        })
        .collect();
    let (mut late_somewhere, mut null_somewhere, mut unknown_somewhere) = (false, false, false);
    for seed in 1..=6 {
        // Seed 6 starts a minute after the epoch: nearly the first windows.
        let start = if seed == 6 { 60_000 } else { 1_764_000_000_000 };
        let events = demo_events(seed, start, 2000);
        let (input, reasons) = with_junk(&events, seed);
        for window in [WINDOW, 1000] {
            for ooo in [None, Some(0), Some(1000), Some(2000)] {
                let old = expected_windows(&events, &models, window, ooo);
                let full_run = window == WINDOW && ooo.is_none();
                let configs = if full_run {
                    &[&declared, &whole_file][..]
                } else {
                    &[&declared][..]
                };
                for cfg in configs {
                    let new = expected_declared(cfg, &input, &vehicles, window, ooo, false);
                    assert_eq!(new.json_lines(), expected_json_lines(&old), "seed {seed}");
                    let samples = prometheus_samples(&new, "fleet_", &no_labels());
                    assert_eq!(as_old_samples(&samples), expected_samples(&old, "fleet_"));
                    let late = ooo.map_or(0, |o| late_event_count(&events, window, o));
                    assert_eq!(new.late, late as u64);
                    late_somewhere |= late > 0;
                    assert_eq!(new.decode_errors, reasons);
                    let text = new.json_lines().concat();
                    null_somewhere |= text.contains("_avg\":null");
                    unknown_somewhere |= text.contains("\"unknown\"");
                }
            }
        }
    }
    assert!(late_somewhere && null_somewhere && unknown_somewhere);
}

// ---------------------------------------------------------------------------
// Hand-computed cases.

const FILTERS: &str = r#"
[[input.signals]]
name = "A"
type = "integer"
[[input.signals]]
name = "B"
type = "integer"
[[input.signals]]
name = "GEAR"
type = "state"
states = ["park", "drive", "reverse"]
[[input.signals]]
name = "DOOR_OPEN"
type = "boolean"
[[input.signals]]
name = "TEMP"
type = "float"

[[metrics]]
name = "any_nonzero"
help = "h"
function = "count"
where = "A != 0 or B != 0"
by = []
[[metrics]]
name = "not_a1"
help = "h"
function = "count"
where = "not A = 1"
by = []
[[metrics]]
name = "not_both"
help = "h"
function = "count"
where = "not (A = 1 and B = 2)"
by = []
[[metrics]]
name = "a_in"
help = "h"
function = "count"
where = "A in [1, 2.5, 3]"
by = []
[[metrics]]
name = "moving"
help = "h"
function = "count"
where = 'GEAR in ["drive", "reverse"]'
by = []
[[metrics]]
name = "door"
help = "h"
function = "count"
where = "DOOR_OPEN = true"
by = []
[[metrics]]
name = "warm"
help = "h"
function = "count"
where = "TEMP >= 20 and TEMP < 30.5"
by = []
[[metrics]]
name = "precedence"
help = "h"
function = "count"
where = "A = 1 or A = 2 and B = 3"
by = []
[[metrics]]
name = "not_not"
help = "h"
function = "count"
where = "not not A=-3"
by = []
[[metrics]]
name = "a_records"
help = "h"
function = "count"
signal = "A"
by = []
[[metrics]]
name = "parked_vehicles"
help = "h"
function = "distinct_vehicles"
where = 'GEAR != "drive"'
by = []
"#;

fn narrow_line(vehicle: &str, signal: &str, value: &str) -> String {
    format!(
        r#"{{"eventType":"{signal}","vehicleId":"{vehicle}","timestamp":100,"measurement":{value}}}"#
    )
}

#[test]
fn filters_use_three_valued_logic_in_the_narrow_shape() {
    let lines: Vec<String> = [
        ("V1", "A", "0"),
        ("V1", "A", "1"),
        ("V1", "A", "-3"),
        ("V1", "B", "2"),
        ("V1", "B", "0"),
        ("V1", "GEAR", r#""drive""#),
        ("V2", "GEAR", r#""park""#),
        ("V3", "GEAR", r#""reverse""#),
        ("V1", "DOOR_OPEN", "true"),
        ("V1", "DOOR_OPEN", "false"),
        ("V1", "TEMP", "20"),
        ("V1", "TEMP", "30.5"),
        ("V1", "TEMP", "25.25"),
    ]
    .iter()
    .map(|(v, s, x)| narrow_line(v, s, x))
    .collect();
    let lines: Vec<&str> = lines.iter().map(String::as_str).collect();
    let out = run(&narrow(FILTERS), &lines, &HashMap::new());
    assert_eq!(out.decode_errors, BTreeMap::new());
    // any_nonzero: A=1, A=-3, B=2 (A=0 or unknown, B=0 or unknown: unknown).
    // not_a1: A=0, A=-3 (not unknown is unknown). not_both: A=0, A=-3
    // (false and unknown), B=0 (unknown and false). a_in: 1, -3 no.
    // precedence: A=1 only (A=2 and unknown B is unknown).
    assert_eq!(
        out.json_lines(),
        vec![
            r#"{"window_start":0,"window_end":5000,"any_nonzero":3,"not_a1":2,"not_both":3,"a_in":1,"moving":2,"door":1,"warm":2,"precedence":1,"not_not":1,"a_records":3,"parked_vehicles":2,"events":13}"#
        ]
    );
}

#[test]
fn filter_comparisons_and_refusals() {
    let signals = config(&narrow(FILTERS)).input.signals;
    let eval = |text: &str, values: Vec<Option<SignalValue>>| {
        filter::parse(text, &signals).unwrap().eval(&values)
    };
    let a = |v: i64| {
        vec![
            Some(SignalValue::Number(Number::Int(v))),
            None,
            None,
            None,
            None,
        ]
    };
    let temp = |v: f64| {
        vec![
            None,
            None,
            None,
            None,
            Some(SignalValue::Number(Number::Float(v))),
        ]
    };
    assert_eq!(eval("A < 1.5", a(1)), Some(true));
    assert_eq!(eval("A >= 1e0", a(1)), Some(true));
    assert_eq!(eval("A > -1", a(0)), Some(true));
    assert_eq!(eval("A <= 9223372036854775807", a(i64::MAX)), Some(true));
    // Exact 64-bit integers: as floats these two would be equal.
    assert_eq!(eval("A = 9223372036854775806", a(i64::MAX)), Some(false));
    assert_eq!(eval("TEMP = 2", temp(2.0)), Some(true));
    assert_eq!(eval("TEMP in [1, 2.5]", temp(2.5)), Some(true));
    assert_eq!(eval("(A = 1) and (TEMP > 0)", a(1)), None);
    assert_eq!(eval("A = 1 or TEMP > 0", a(1)), Some(true));
    assert_eq!(eval("not (A = 2 or TEMP > 0)", a(1)), None);
    assert_eq!(eval("not (A = 2 and TEMP > 0)", a(1)), Some(true));

    for bad in [
        "A = ",
        "A == 1",
        "A = 1 AND B = 2",
        "a = 1",
        "C = 1",
        "(A = 1",
        "A = 1)",
        "A in []",
        "A in [1,]",
        "A = \"1\"",
        "A = true",
        "A ! 1",
        "A = 1.",
        "A = 99999999999999999999",
        "DOOR_OPEN < true",
        "DOOR_OPEN in [true]",
        "DOOR_OPEN = 1",
        "GEAR = \"neutral\"",
        "GEAR < \"park\"",
        "GEAR = park",
        "GEAR = \"park",
        "1 = A",
        "A = 1 B = 2",
    ] {
        assert!(filter::parse(bad, &signals).is_err(), "{bad}");
    }
}

const WIDE: &str = r#"
[input]
shape = "wide"
vehicle_id = "meta.vin"
time = "meta.sent_at"
time_format = "epoch_s"
labels = ["site.depot"]

[[input.signals]]
name = "coolant_c"
type = "float"
path = "signals.coolant_c"
min = -40
max = 150.5
[[input.signals]]
name = "odometer_km"
type = "integer"
path = "signals.odo"
[[input.signals]]
name = "charging"
type = "boolean"

[[metrics]]
name = "coolant_total"
help = "h"
function = "sum"
signal = "coolant_c"
[[metrics]]
name = "coolant"
help = "h"
function = "mean"
signal = "coolant_c"
[[metrics]]
name = "coolant_min"
help = "h"
function = "min"
signal = "coolant_c"
[[metrics]]
name = "coolant_max"
help = "h"
function = "max"
signal = "coolant_c"
[[metrics]]
name = "odo_sum"
help = "h"
function = "sum"
signal = "odometer_km"
[[metrics]]
name = "odo_max"
help = "h"
function = "max"
signal = "odometer_km"
[[metrics]]
name = "coolant_records"
help = "h"
function = "count"
signal = "coolant_c"
[[metrics]]
name = "charging_vehicles"
help = "h"
function = "distinct_vehicles"
where = "charging = true"
[[metrics]]
name = "rows"
help = "h"
function = "count"
"#;

#[test]
fn wide_records_with_nested_paths_and_float_functions() {
    let vehicles = reference(&[("A", "Nebulara", &[]), ("B", "Voltora", &[])]);
    let lines = [
        r#"{"meta":{"vin":"A","sent_at":1},"site":{"depot":"north"},"signals":{"coolant_c":88.5,"odo":1000},"charging":false}"#,
        r#"{"meta":{"vin":"A","sent_at":2},"site":{"depot":"north"},"signals":{"coolant_c":-0.25},"charging":true,"extra":[1]}"#,
        r#"{"meta":{"vin":"A","sent_at":3},"site":{"depot":"north"},"signals":{"coolant_c":null,"odo":1010},"charging":true}"#,
        // No signal at all: still an event of its vehicle.
        r#"{"meta":{"vin":"C","sent_at":4},"site":{"depot":"north"}}"#,
        // An integer JSON number is a float signal's value too.
        r#"{"meta":{"vin":"B","sent_at":4.999e0},"site":{"depot":"south"},"signals":{"coolant_c":90}}"#,
        r#"{"meta":{"vin":"B","sent_at":4},"site":{"depot":"south"},"signals":{"coolant_c":90}}"#,
        r#"{"meta":{"vin":"A","sent_at":5},"site":{"depot":"north"},"signals":{"odo":1020}}"#,
    ];
    let out = run(WIDE, &lines, &vehicles);
    assert_eq!(
        out.decode_errors,
        BTreeMap::from([("wrong_type".to_string(), 1)])
    );
    assert_eq!(
        out.json_lines(),
        vec![
            r#"{"window_start":0,"window_end":5000,"model":"Nebulara","depot":"north","coolant_total":88.25,"coolant_avg":44.125,"coolant_min":-0.25,"coolant_max":88.5,"odo_sum":2010,"odo_max":1010,"coolant_records":2,"charging_vehicles":1,"rows":3,"events":3}"#,
            r#"{"window_start":0,"window_end":5000,"model":"Voltora","depot":"south","coolant_total":90.0,"coolant_avg":90.0,"coolant_min":90.0,"coolant_max":90.0,"odo_sum":0,"odo_max":null,"coolant_records":1,"charging_vehicles":0,"rows":1,"events":1}"#,
            r#"{"window_start":0,"window_end":5000,"model":"unknown","depot":"north","coolant_total":0.0,"coolant_avg":null,"coolant_min":null,"coolant_max":null,"odo_sum":0,"odo_max":null,"coolant_records":0,"charging_vehicles":0,"rows":1,"events":1}"#,
            r#"{"window_start":5000,"window_end":10000,"model":"Nebulara","depot":"north","coolant_total":0.0,"coolant_avg":null,"coolant_min":null,"coolant_max":null,"odo_sum":1020,"odo_max":1020,"coolant_records":0,"charging_vehicles":0,"rows":1,"events":1}"#,
        ]
    );
    let value = out.lines[0].to_json_value();
    assert_eq!(value["coolant_avg"], 44.125);
    assert!(out.lines[2].to_json_value()["coolant_min"].is_null());

    let samples = prometheus_samples(&out, "p_", &labels(&[("env", "test")]));
    let unknown = labels(&[("env", "test"), ("model", "unknown"), ("depot", "north")]);
    let at = |name: &str, labels: &BTreeMap<String, String>| {
        samples
            .get(&(name.to_string(), labels.clone(), 5000))
            .copied()
    };
    assert_eq!(at("p_coolant_total", &unknown), Some(0.0));
    assert_eq!(at("p_coolant_count", &unknown), Some(0.0));
    assert_eq!(at("p_coolant_avg", &unknown), None);
    assert_eq!(at("p_coolant_min", &unknown), None);
    assert_eq!(at("p_odo_max", &unknown), None);
    assert_eq!(at("p_rows", &unknown), Some(1.0));
    let nebulara = labels(&[("env", "test"), ("model", "Nebulara"), ("depot", "north")]);
    assert_eq!(at("p_coolant_avg", &nebulara), Some(44.125));
    assert_eq!(at("p_coolant_total", &nebulara), Some(88.25));
    assert_eq!(at("p_coolant_sum", &nebulara), Some(88.25));
    assert_eq!(at("p_coolant_count", &nebulara), Some(2.0));
    assert_eq!(at("p_coolant_min", &nebulara), Some(-0.25));
    assert_eq!(at("p_odo_sum", &nebulara), Some(2010.0));
    // Eleven series when nothing is omitted; Voltora omits odo_max, unknown
    // the mean, min, max and odo_max, the second window the float ones.
    assert_eq!(samples.len(), 11 + 10 + 7 + 8);
}

#[test]
fn float_sums_follow_arrival_order() {
    let text = narrow(
        r#"
[[input.signals]]
name = "X"
type = "float"
[[metrics]]
name = "x"
help = "h"
function = "sum"
signal = "X"
by = []
"#,
    );
    let sum = |values: &[&str]| {
        let lines: Vec<String> = values.iter().map(|v| narrow_line("V", "X", v)).collect();
        let lines: Vec<&str> = lines.iter().map(String::as_str).collect();
        run(&text, &lines, &HashMap::new()).json_lines()
    };
    assert_eq!(
        sum(&["0.1", "0.2", "0.3"]),
        vec![r#"{"window_start":0,"window_end":5000,"x":0.6000000000000001,"events":3}"#]
    );
    assert_eq!(
        sum(&["0.3", "0.2", "0.1"]),
        vec![r#"{"window_start":0,"window_end":5000,"x":0.6,"events":3}"#]
    );
}

#[test]
fn integer_sums_and_sums_of_latest_saturate() {
    let text = narrow(
        r#"
[[input.signals]]
name = "N"
type = "integer"
[[metrics]]
name = "n"
help = "h"
function = "sum"
signal = "N"
by = []
[[metrics]]
name = "n_latest"
help = "h"
function = "sum_of_latest"
signal = "N"
by = []
[[metrics]]
name = "n_mean"
help = "h"
function = "mean"
signal = "N"
by = []
"#,
    );
    let lines = [
        narrow_line("A", "N", "9223372036854775807"),
        narrow_line("B", "N", "1"),
    ];
    let lines: Vec<&str> = lines.iter().map(String::as_str).collect();
    let out = run(&text, &lines, &HashMap::new());
    let value = out.lines[0].to_json_value();
    // Sums and sums of latest readings saturate (docs/METRICS.md).
    assert_eq!(value["n"], i64::MAX);
    assert_eq!(value["n_latest"], i64::MAX);
    assert_eq!(value["n_mean_avg"], i64::MAX as f64 / 2.0);
}

#[test]
fn histogram_buckets_are_cumulative() {
    let text = r#"
[[input.signals]]
name = "SPEED"
type = "integer"
[[input.signals]]
name = "TEMP"
type = "float"
[[metrics]]
name = "speed"
help = "h"
function = "histogram"
signal = "SPEED"
buckets = [0.5, 1, 2500]
by = ["region"]
[[metrics]]
name = "temp"
help = "h"
function = "histogram"
signal = "TEMP"
buckets = [-10, 0, 10.5]
by = ["region"]
"#;
    let line = |region: &str, signal: &str, value: &str| {
        format!(
            r#"{{"eventType":"{signal}","vehicleId":"V","region":"{region}","timestamp":7,"measurement":{value}}}"#
        )
    };
    let lines: Vec<String> = ["0", "1", "1", "3000", "2500", "-7"]
        .iter()
        .map(|v| line("UK", "SPEED", v))
        .chain(["10.5", "-10", "11"].iter().map(|v| line("UK", "TEMP", v)))
        .chain([line("DE", "TEMP", "1e300")])
        .collect();
    let lines: Vec<&str> = lines.iter().map(String::as_str).collect();
    let out = run(text, &lines, &HashMap::new());
    assert_eq!(
        out.json_lines(),
        vec![
            r#"{"window_start":0,"window_end":5000,"region":"DE","speed_bucket":{"0.5":0,"1":0,"2500":0,"+Inf":0},"speed_sum":0,"speed_count":0,"temp_bucket":{"-10":0,"0":0,"10.5":0,"+Inf":1},"temp_sum":1e+300,"temp_count":1,"events":1}"#,
            r#"{"window_start":0,"window_end":5000,"region":"UK","speed_bucket":{"0.5":2,"1":4,"2500":5,"+Inf":6},"speed_sum":5495,"speed_count":6,"temp_bucket":{"-10":1,"0":1,"10.5":2,"+Inf":3},"temp_sum":11.5,"temp_count":3,"events":9}"#,
        ]
    );
    let samples = prometheus_samples(&out, "", &no_labels());
    let uk = |le: Option<&str>| {
        let mut l = labels(&[("region", "UK")]);
        if let Some(le) = le {
            l.insert("le".into(), le.into());
        }
        l
    };
    let get = |name: &str, l: BTreeMap<String, String>| samples[&(name.to_string(), l, 5000)];
    assert_eq!(get("speed_bucket", uk(Some("0.5"))), 2.0);
    assert_eq!(get("speed_bucket", uk(Some("1"))), 4.0);
    assert_eq!(get("speed_bucket", uk(Some("2500"))), 5.0);
    assert_eq!(get("speed_bucket", uk(Some("+Inf"))), 6.0);
    assert_eq!(get("speed_sum", uk(None)), 5495.0);
    assert_eq!(get("speed_count", uk(None)), 6.0);
    assert_eq!(get("temp_bucket", uk(Some("-10"))), 1.0);
    // Per region: 4 + 2 speed, 4 + 2 temp.
    assert_eq!(samples.len(), 2 * 12);
}

#[test]
fn latest_values_per_vehicle() {
    let text = narrow(
        r#"
[[input.signals]]
name = "LEVEL"
type = "integer"
[[input.signals]]
name = "FUEL"
type = "float"
[[input.signals]]
name = "OTHER"
type = "boolean"
[[metrics]]
name = "level"
help = "h"
function = "sum_of_latest"
signal = "LEVEL"
by = []
[[metrics]]
name = "level_mean"
help = "h"
function = "mean_of_latest"
signal = "LEVEL"
by = []
[[metrics]]
name = "fuel"
help = "h"
function = "sum_of_latest"
signal = "FUEL"
by = []
[[metrics]]
name = "fuel_mean"
help = "h"
function = "mean_of_latest"
signal = "FUEL"
by = []
[[metrics]]
name = "low_fuel"
help = "h"
function = "mean_of_latest"
signal = "FUEL"
where = "FUEL < 1"
by = []
"#,
    );
    let at = |vehicle: &str, ts: i64, signal: &str, value: &str| {
        format!(
            r#"{{"eventType":"{signal}","vehicleId":"{vehicle}","timestamp":{ts},"measurement":{value}}}"#
        )
    };
    let lines = [
        at("A", 1000, "LEVEL", "5"),
        at("A", 3000, "LEVEL", "2"),
        // Measured earlier, arrived later: not A's latest.
        at("A", 2000, "LEVEL", "9"),
        // Equal times: the larger value.
        at("B", 1500, "LEVEL", "4"),
        at("B", 1500, "LEVEL", "7"),
        at("B", 1500, "LEVEL", "6"),
        at("C", 100, "LEVEL", "-3"),
        at("A", 1000, "FUEL", "0.5"),
        at("A", 1000, "FUEL", "0.25"),
        at("B", 2000, "FUEL", "1.75"),
        at("C", 4000, "FUEL", "3"),
        at("C", 4999, "FUEL", "3.5"),
        // Not C's latest FUEL, but its latest below 1 (`low_fuel`).
        at("C", 10, "FUEL", "0.75"),
        // The next window: one event carrying neither signal.
        at("A", 5000, "OTHER", "true"),
    ];
    let lines: Vec<&str> = lines.iter().map(String::as_str).collect();
    let out = run(&text, &lines, &HashMap::new());
    assert_eq!(
        out.json_lines(),
        vec![
            r#"{"window_start":0,"window_end":5000,"level":6,"level_mean":2.0,"fuel":5.75,"fuel_mean":1.9166666666666667,"low_fuel":0.625,"events":13}"#,
            r#"{"window_start":5000,"window_end":10000,"level":0,"level_mean":null,"fuel":0.0,"fuel_mean":null,"low_fuel":null,"events":1}"#,
        ]
    );
    let samples = prometheus_samples(&out, "", &no_labels());
    let names: Vec<&str> = samples
        .keys()
        .filter(|k| k.2 == 10_000)
        .map(|k| k.0.as_str())
        .collect();
    assert_eq!(names, vec!["fuel", "level"]);
    assert!(approx_eq(
        samples[&("fuel_mean".into(), no_labels(), 5000)],
        5.75 / 3.0
    ));
}

#[test]
fn by_lists_take_the_plan_order_and_groupings_their_first_metrics_order() {
    let text = r#"
[reference]
dimensions = ["fuel_type"]
[input]
labels = ["region", "site.depot"]
[[input.signals]]
name = "X"
type = "integer"
[[metrics]]
name = "m1"
help = "h"
function = "count"
by = ["depot", "model"]
[[metrics]]
name = "m2"
help = "h"
function = "distinct_vehicles"
[[metrics]]
name = "m3"
help = "h"
function = "sum"
signal = "X"
by = ["model", "depot"]
[[metrics]]
name = "m4"
help = "h"
function = "count"
by = []
"#;
    assert_eq!(
        config(text).labels(),
        ["model", "region", "depot", "fuel_type"]
    );
    let vehicles = reference(&[
        ("A", "Nebulara", &[("fuel_type", "diesel")]),
        // No fuel_type: it reads unknown, as for vehicle C.
        ("B", "Voltora", &[("colour", "red")]),
    ]);
    let line = |vehicle: &str, region: &str, depot: &str, x: i64| {
        format!(
            r#"{{"eventType":"X","vehicleId":"{vehicle}","region":"{region}","site":{{"depot":"{depot}"}},"timestamp":1,"measurement":{x}}}"#
        )
    };
    let lines = [
        line("B", "UK", "north", 1),
        line("A", "UK", "north", 2),
        line("A", "DE", "north", 4),
        line("C", "UK", "south", 8),
    ];
    let lines: Vec<&str> = lines.iter().map(String::as_str).collect();
    let out = run(text, &lines, &vehicles);
    let prefix = r#"{"window_start":0,"window_end":5000,"#;
    let expected: Vec<String> = [
        r#""model":"Nebulara","depot":"north","m1":2,"m3":6,"events":2}"#,
        r#""model":"Voltora","depot":"north","m1":1,"m3":1,"events":1}"#,
        r#""model":"unknown","depot":"south","m1":1,"m3":8,"events":1}"#,
        r#""model":"Nebulara","region":"DE","depot":"north","fuel_type":"diesel","m2":1,"events":1}"#,
        r#""model":"Nebulara","region":"UK","depot":"north","fuel_type":"diesel","m2":1,"events":1}"#,
        r#""model":"Voltora","region":"UK","depot":"north","fuel_type":"unknown","m2":1,"events":1}"#,
        r#""model":"unknown","region":"UK","depot":"south","fuel_type":"unknown","m2":1,"events":1}"#,
        r#""m4":4,"events":4}"#,
    ]
    .iter()
    .map(|rest| format!("{prefix}{rest}"))
    .collect();
    assert_eq!(out.json_lines(), expected);
    let groupings: Vec<usize> = out.lines.iter().map(|l| l.grouping).collect();
    assert_eq!(groupings, vec![0, 0, 0, 1, 1, 1, 1, 2]);
}

#[test]
fn partitioned_mode_labels_order_and_late_rule() {
    let vehicles = reference(&[("A", "Nebulara", &[])]);
    let line = |ts: i64| {
        format!(
            r#"{{"eventType":"IC_RPM","vehicleId":"A","region":"UK","timestamp":{ts},"measurement":{ts}}}"#
        )
    };
    let mut input = records(10, &[&line(1000)]);
    input.splice(0..0, records(2, &[&line(10_000), &line(1000)]));
    input.extend(records(2, &["{"]));
    // Partition 10's own maximum decides: its record at 1000 is on time,
    // partition 2's (after 10000) is late.
    let out = expected_declared(&config(""), &input, &vehicles, WINDOW, Some(2000), true);
    assert_eq!(out.late, 1);
    assert_eq!(
        out.decode_errors,
        BTreeMap::from([("invalid_json".to_string(), 1)])
    );
    assert_eq!(
        out.json_lines(),
        vec![
            r#"{"window_start":0,"window_end":5000,"model":"Nebulara","region":"UK","kafka_partition":10,"vehicles_in_motion":1,"warnings":0,"vehicles_reporting":1,"ic_engine_rpm_avg":1000.0,"electric_motor_rpm_avg":null,"events":1}"#,
            r#"{"window_start":10000,"window_end":15000,"model":"Nebulara","region":"UK","kafka_partition":2,"vehicles_in_motion":1,"warnings":0,"vehicles_reporting":1,"ic_engine_rpm_avg":10000.0,"electric_motor_rpm_avg":null,"events":1}"#,
        ]
    );
    let samples = prometheus_samples(&out, "", &no_labels());
    let partition_10 = labels(&[
        ("model", "Nebulara"),
        ("region", "UK"),
        ("kafka_partition", "10"),
    ]);
    assert_eq!(
        samples[&("ic_engine_rpm_sum".into(), partition_10, 5000)],
        1000.0
    );

    // Partitions sort numerically after the labels.
    let input = [records(10, &[&line(1)]), records(2, &[&line(2)])].concat();
    let out = expected_declared(&config(""), &input, &vehicles, WINDOW, None, true);
    let partitions: Vec<Option<i32>> = out.lines.iter().map(|l| l.partition).collect();
    assert_eq!(partitions, vec![Some(2), Some(10)]);
    // The single mode merges them, with no partition label.
    let out = expected_declared(&config(""), &input, &vehicles, WINDOW, None, false);
    assert_eq!(out.lines.len(), 1);
    assert_eq!(out.lines[0].events, 2);
    assert!(!out.json_lines()[0].contains("kafka_partition"));
}

#[test]
fn late_records_still_advance_the_maximum_but_refused_ones_do_not() {
    let line = |ts: &str| {
        format!(
            r#"{{"eventType":"IC_RPM","vehicleId":"A","region":"UK","timestamp":{ts},"measurement":1}}"#
        )
    };
    let lines = [
        line("1000"),
        line("\"junk\""),
        line("6999"),
        line("4000"),
        line("7000"),
        line("4999"),
    ];
    let lines: Vec<&str> = lines.iter().map(String::as_str).collect();
    let out = expected_declared(
        &config(""),
        &records(0, &lines),
        &HashMap::new(),
        WINDOW,
        Some(2000),
        false,
    );
    // As in today's oracle's test: only 4999 (after 7000) is late.
    assert_eq!(out.late, 1);
    assert_eq!(out.lines[0].events, 2);
    let junk_max = [line("1000"), line("99999.5"), line("4000")];
    let junk_max: Vec<&str> = junk_max.iter().map(String::as_str).collect();
    let out = expected_declared(
        &config(""),
        &records(0, &junk_max),
        &HashMap::new(),
        WINDOW,
        Some(0),
        false,
    );
    assert_eq!((out.late, out.lines[0].events), (0, 2));
}

// ---------------------------------------------------------------------------
// Decoding.

#[test]
fn rfc3339_times_parse_by_hand() {
    let ms = 1_796_379_302_120;
    for text in [
        "2026-12-04T10:15:02.120Z",
        "2026-12-04T11:15:02.12+01:00",
        "2026-12-04T04:15:02.120-06:00",
        "2026-12-04t10:15:02.1209999z",
    ] {
        assert_eq!(rfc3339_ms(text), Some(ms), "{text}");
    }
    assert_eq!(rfc3339_ms("2026-12-04T10:15:02Z"), Some(ms - 120));
    // Toward the past, also before the epoch.
    assert_eq!(rfc3339_ms("1969-12-31T23:59:59.9995Z"), Some(-1));
    assert_eq!(rfc3339_ms("1970-01-01T00:00:00+00:00"), Some(0));
    assert_eq!(rfc3339_ms("1970-01-01T00:59:00+01:00"), Some(-60_000));
    assert_eq!(rfc3339_ms("2024-02-29T00:00:00Z"), Some(1_709_164_800_000));
    assert_eq!(rfc3339_ms("2016-12-31T23:59:60Z"), Some(1_483_228_800_000));
    assert_eq!(
        rfc3339_ms("0000-01-01T00:00:00Z"),
        Some(-62_167_219_200_000)
    );
    assert_eq!(
        rfc3339_ms("9999-12-31T23:59:59.999Z"),
        Some(253_402_300_799_999)
    );
    for bad in [
        "",
        "2025-02-29T00:00:00Z",
        "2026-13-01T00:00:00Z",
        "2026-00-01T00:00:00Z",
        "2026-04-31T00:00:00Z",
        "2026-12-04T10:15:02",
        "2026-12-04 10:15:02Z",
        "2026-12-04T24:00:00Z",
        "2026-12-04T10:60:00Z",
        "2026-12-04T10:15:61Z",
        "2026-12-04T10:15:02.Z",
        "2026-12-04T10:15:02+0100",
        "2026-12-04T10:15:02+24:00",
        "2026-12-04T10:15:02Z ",
        "2026-12-4T10:15:02Z",
        "+2026-12-04T10:15:02Z",
        "2026-12-04T10:15:02,5Z",
        "2026-12-04T10:15:0xZ",
        "2026-12-04T10:15:02.120Zjunk",
    ] {
        assert_eq!(rfc3339_ms(bad), None, "{bad}");
    }
}

fn time_config(format: &str) -> String {
    format!("[input]\ntime_format = \"{format}\"\ntime = \"t\"\nlabels = []\n")
}

fn time_of(format: &str, t: &str) -> Result<i64, &'static str> {
    let line = format!(r#"{{"eventType":"IC_RPM","vehicleId":"V","t":{t},"measurement":1}}"#);
    decoded(&time_config(format), &line).map(|r| r.time_ms)
}

#[test]
fn epoch_units_round_toward_the_past() {
    assert_eq!(time_of("epoch_s", "2"), Ok(2000));
    assert_eq!(time_of("epoch_s", "253402300799"), Ok(253_402_300_799_000));
    // Only times from 1970 to the end of 9999 are event times.
    assert_eq!(time_of("epoch_s", "253402300800"), Err("invalid_value"));
    assert_eq!(time_of("epoch_s", "-2"), Err("invalid_value"));
    assert_eq!(time_of("epoch_s", "9223372036854776"), Err("invalid_value"));
    assert_eq!(time_of("epoch_ms", "-1"), Err("invalid_value"));
    assert_eq!(time_of("epoch_ms", "0"), Ok(0));
    assert_eq!(time_of("epoch_us", "1999"), Ok(1));
    assert_eq!(time_of("epoch_us", "-1"), Err("invalid_value"));
    assert_eq!(time_of("epoch_ns", "5000000000"), Ok(5000));
    assert_eq!(time_of("epoch_ns", "-1"), Err("invalid_value"));
    assert_eq!(time_of("epoch_ms", "1.5"), Err("wrong_type"));
    assert_eq!(time_of("epoch_ms", "1e3"), Err("wrong_type"));
    assert_eq!(time_of("epoch_ms", "1.0"), Err("wrong_type"));
    assert_eq!(
        time_of("epoch_ms", "9223372036854775808"),
        Err("wrong_type")
    );
    assert_eq!(time_of("epoch_ms", "\"1\""), Err("wrong_type"));
    assert_eq!(time_of("epoch_ms", "null"), Err("missing_field"));
    assert_eq!(
        time_of("rfc3339", "\"2026-12-04T11:15:02.12+01:00\""),
        Ok(1_796_379_302_120)
    );
    assert_eq!(time_of("rfc3339", "1796379302120"), Err("wrong_type"));
    assert_eq!(time_of("rfc3339", "\"\""), Err("invalid_value"));
    assert_eq!(time_of("rfc3339", "\"yesterday\""), Err("invalid_value"));

    // A whole run: epoch_ns floors into the window [0, 5000).
    let out = run(
        &time_config("epoch_ns"),
        &[r#"{"eventType":"IC_RPM","vehicleId":"V","t":999999,"measurement":1}"#],
        &HashMap::new(),
    );
    assert_eq!(
        (out.lines[0].window_start, out.lines[0].window_end),
        (0, 5000)
    );
    // The ends of the i64 range are refused; the ends of the event times
    // are windows like any other.
    let extremes = [i64::MIN, i64::MAX, 0, 253_402_300_799_999]
        .map(|t| format!(r#"{{"eventType":"IC_RPM","vehicleId":"V","t":{t},"measurement":1}}"#));
    let extremes: Vec<&str> = extremes.iter().map(String::as_str).collect();
    let out = run(&time_config("epoch_ms"), &extremes, &HashMap::new());
    assert_eq!(
        out.decode_errors,
        BTreeMap::from([("invalid_value".to_string(), 2)])
    );
    assert_eq!(out.lines.len(), 2);
    assert_eq!(out.lines[1].window_end, 253_402_300_800_000);
}

const TYPED: &str = r#"
[input]
labels = ["region"]
[[input.signals]]
name = "N"
type = "integer"
min = -5
max = 5
[[input.signals]]
name = "F"
type = "float"
min = 0.5
[[input.signals]]
name = "ON"
type = "boolean"
[[input.signals]]
name = "GEAR"
type = "state"
key = "gear"
states = ["park", "drive"]
[[metrics]]
name = "n"
help = "h"
function = "count"
"#;

#[test]
fn narrow_decode_error_reasons() {
    let reason = |body: &str| {
        let line = format!(r#"{{"vehicleId":"V","region":"UK","timestamp":1,{body}}}"#);
        decoded(TYPED, &line).map(|r| r.signals)
    };
    let number = |n| Ok(vec![Some(SignalValue::Number(n)), None, None, None]);
    assert_eq!(
        reason(r#""eventType":"N","measurement":5"#),
        number(Number::Int(5))
    );
    assert_eq!(
        reason(r#""eventType":"N","measurement":-5"#),
        number(Number::Int(-5))
    );
    assert_eq!(
        reason(r#""eventType":"N","measurement":6"#),
        Err("invalid_value")
    );
    assert_eq!(
        reason(r#""eventType":"N","measurement":5.0"#),
        Err("wrong_type")
    );
    assert_eq!(
        reason(r#""eventType":"N","measurement":"5""#),
        Err("wrong_type")
    );
    assert_eq!(
        reason(r#""eventType":"N","measurement":null"#),
        Err("missing_field")
    );
    assert_eq!(reason(r#""eventType":"N""#), Err("missing_field"));
    assert_eq!(
        reason(r#""eventType":"F","measurement":0.49"#),
        Err("invalid_value")
    );
    assert_eq!(
        reason(r#""eventType":"F","measurement":1"#).map(|s| s[1].clone()),
        Ok(Some(SignalValue::Number(Number::Float(1.0))))
    );
    assert_eq!(
        reason(r#""eventType":"F","measurement":true"#),
        Err("wrong_type")
    );
    assert_eq!(
        reason(r#""eventType":"ON","measurement":false"#).map(|s| s[2].clone()),
        Ok(Some(SignalValue::Bool(false)))
    );
    assert_eq!(
        reason(r#""eventType":"ON","measurement":0"#),
        Err("wrong_type")
    );
    assert_eq!(
        reason(r#""eventType":"gear","measurement":"drive""#).map(|s| s[3].clone()),
        Ok(Some(SignalValue::State("drive".into())))
    );
    assert_eq!(
        reason(r#""eventType":"gear","measurement":"Drive""#),
        Err("invalid_value")
    );
    assert_eq!(
        reason(r#""eventType":"gear","measurement":1"#),
        Err("wrong_type")
    );
    // The key names the signal, not its name.
    assert_eq!(
        reason(r#""eventType":"GEAR","measurement":"drive""#),
        Err("unknown_event_type")
    );
    assert_eq!(
        reason(r#""eventType":"","measurement":1"#),
        Err("unknown_event_type")
    );
    assert_eq!(
        reason(r#""eventType":7,"measurement":1"#),
        Err("wrong_type")
    );
    assert_eq!(reason(r#""measurement":1"#), Err("missing_field"));
    // With no signal to type it, a value no signal could take is a wrong type.
    assert_eq!(
        reason(r#""eventType":"X","measurement":[1]"#),
        Err("wrong_type")
    );
    assert_eq!(
        reason(r#""eventType":"X","measurement":"park""#),
        Err("unknown_event_type")
    );

    let whole = |line: &str| decoded(TYPED, line).map(|_| ());
    assert_eq!(
        whole(r#"{"eventType":"N","vehicleId":"","region":"UK","timestamp":1,"measurement":1}"#),
        Err("invalid_value")
    );
    assert_eq!(
        whole(r#"{"eventType":"N","vehicleId":"V","region":"","timestamp":1,"measurement":1}"#),
        Err("invalid_value")
    );
    assert_eq!(
        whole(r#"{"eventType":"N","vehicleId":null,"region":"UK","timestamp":1,"measurement":1}"#),
        Err("missing_field")
    );
    assert_eq!(
        whole(r#"{"eventType":"N","vehicleId":"V","timestamp":1,"measurement":1}"#),
        Err("missing_field")
    );
    assert_eq!(
        whole(r#"{"eventType":"N","vehicleId":1,"region":"UK","timestamp":1,"measurement":1}"#),
        Err("wrong_type")
    );
    // Several problems: a wrong type first, then missing, unknown, invalid.
    assert_eq!(
        whole(r#"{"eventType":"X","vehicleId":1,"timestamp":1,"measurement":1}"#),
        Err("wrong_type")
    );
    assert_eq!(
        whole(r#"{"eventType":"X","vehicleId":"","timestamp":1,"measurement":1}"#),
        Err("missing_field")
    );
    assert_eq!(
        whole(r#"{"eventType":"X","vehicleId":"","region":"UK","timestamp":1,"measurement":1}"#),
        Err("unknown_event_type")
    );
    let refused: [(&[u8], &str); 7] = [
        (b"\xff", "invalid_json"),
        (b"", "invalid_json"),
        (b"{\"a\":1", "invalid_json"),
        (b"{} {}", "invalid_json"),
        (b"[]", "wrong_type"),
        (b"\"text\"", "wrong_type"),
        (b"null", "wrong_type"),
    ];
    for (bytes, expected) in refused {
        assert_eq!(
            decode(&config(TYPED).input, bytes)
                .map_err(|r| r.as_str())
                .map(|_| ()),
            Err(expected)
        );
    }
}

#[test]
fn wide_decode_error_reasons() {
    let reason = |line: &str| decoded(WIDE, line).map(|r| r.signals);
    let ok = r#"{"meta":{"vin":"A","sent_at":1},"site":{"depot":"north"}"#;
    let with = |rest: &str| format!("{ok},{rest}}}");
    assert_eq!(reason(&format!("{ok}}}")), Ok(vec![None, None, None]));
    assert_eq!(
        reason(&with(r#""signals":null"#)),
        Ok(vec![None, None, None])
    );
    assert_eq!(reason(&with(r#""signals":{}"#)), Ok(vec![None, None, None]));
    assert_eq!(
        reason(&with(r#""signals":{"coolant_c":-40}"#)).map(|s| s[0].clone()),
        Ok(Some(SignalValue::Number(Number::Float(-40.0))))
    );
    assert_eq!(
        reason(&with(r#""signals":{"coolant_c":150.5}"#)).map(|s| s[0].is_some()),
        Ok(true)
    );
    assert_eq!(
        reason(&with(r#""signals":{"coolant_c":150.75}"#)),
        Err("invalid_value")
    );
    assert_eq!(
        reason(&with(r#""signals":{"coolant_c":-40.5}"#)),
        Err("invalid_value")
    );
    assert_eq!(
        reason(&with(r#""signals":{"coolant_c":"hot"}"#)),
        Err("wrong_type")
    );
    // An enclosing field that is not an object is a wrong type.
    assert_eq!(reason(&with(r#""signals":5"#)), Err("wrong_type"));
    assert_eq!(
        reason(&with(r#""signals":{"odo":9223372036854775808}"#)),
        Err("wrong_type")
    );
    assert_eq!(reason(&with(r#""signals":{"odo":1e3}"#)), Err("wrong_type"));
    assert_eq!(reason(&with(r#""charging":"yes""#)), Err("wrong_type"));
    assert_eq!(
        reason(r#"{"meta":{"vin":"A"},"site":{"depot":"north"}}"#),
        Err("missing_field")
    );
    assert_eq!(
        reason(r#"{"meta":null,"site":{"depot":"north"}}"#),
        Err("missing_field")
    );
    assert_eq!(
        reason(r#"{"meta":"A","site":{"depot":"north"}}"#),
        Err("wrong_type")
    );
    assert_eq!(
        reason(r#"{"meta":{"vin":"A","sent_at":1},"site":{}}"#),
        Err("missing_field")
    );
    assert_eq!(
        reason(r#"{"meta":{"vin":"A","sent_at":1},"site":{"depot":""}}"#),
        Err("invalid_value")
    );
}

// ---------------------------------------------------------------------------
// Configuration.

#[test]
fn input_keys_default_one_by_one_and_lists_replace_whole() {
    let defaults = config("");
    assert_eq!(defaults.labels(), ["model", "region"]);
    assert_eq!(
        defaults.metric_names(),
        [
            "vehicles_in_motion",
            "warnings",
            "vehicles_reporting",
            "ic_engine_rpm",
            "electric_motor_rpm"
        ]
    );
    let signal_names = |c: &DeclaredConfig| {
        c.input
            .signals
            .iter()
            .map(|s| s.name.clone())
            .collect::<Vec<_>>()
    };
    assert_eq!(
        signal_names(&defaults),
        ["IC_RPM", "ELECTRIC_RPM", "WARNINGS"]
    );
    // WARNINGS keeps min = 0.
    assert_eq!(defaults.input.signals[2].min, Some(Number::Int(0)));

    let relabelled = config("[kafka]\nbrokers = \"x\"\n[input]\nlabels = [\"site.depot\"]\n");
    assert_eq!(relabelled.labels(), ["model", "depot"]);
    assert_eq!(signal_names(&relabelled), signal_names(&defaults));
    assert_eq!(relabelled.input.type_field, ["eventType"]);

    let replaced = config(
        "[[input.signals]]\nname = \"WARNINGS\"\ntype = \"integer\"\n[[input.signals]]\nname = \"IC_RPM\"\ntype = \"integer\"\n[[input.signals]]\nname = \"ELECTRIC_RPM\"\ntype = \"float\"\n",
    );
    assert_eq!(
        signal_names(&replaced),
        ["WARNINGS", "IC_RPM", "ELECTRIC_RPM"]
    );
    assert_eq!(replaced.input.signals[0].min, None);
    // The default metrics over a list without ELECTRIC_RPM cannot work.
    let broken =
        DeclaredConfig::from_toml("[[input.signals]]\nname = \"IC_RPM\"\ntype = \"integer\"\n");
    assert!(broken.unwrap_err().contains("no signal \"ELECTRIC_RPM\""));
}

#[test]
fn refuses_configs_it_cannot_evaluate() {
    let signals = "[[input.signals]]\nname = \"X\"\ntype = \"integer\"\n[[input.signals]]\nname = \"B\"\ntype = \"boolean\"\n";
    let metric = |body: &str| format!("{signals}[[metrics]]\nname = \"m\"\nhelp = \"h\"\n{body}\n");
    for (text, why) in [
        ("not toml [".to_string(), "not TOML"),
        ("[input]\nshap = \"wide\"".into(), "unknown field"),
        ("[input]\nshape = \"tall\"".into(), "shape"),
        ("[input]\ntime_format = \"epoch_m\"".into(), "time_format"),
        ("[input]\ntime = \"a..b\"".into(), "path"),
        ("input = 5".into(), "table"),
        ("[input]\nlabels = [\"model\"]".into(), "label name"),
        ("[input]\nlabels = [\"a.le\"]".into(), "label name"),
        ("[input]\nlabels = [\"region\", \"b.region\"]".into(), "twice"),
        ("[reference]\ndimensions = [\"region\"]".into(), "twice"),
        ("[reference]\ndimensions = \"fuel\"".into(), "dimensions"),
        ("[[input.signals]]\nname = \"S\"\ntype = \"state\"".into(), "states"),
        ("[[input.signals]]\nname = \"S\"\ntype = \"integer\"\nstates = [\"a\"]".into(), "states"),
        ("[[input.signals]]\nname = \"S\"\ntype = \"boolean\"\nmin = 0".into(), "min"),
        ("[[input.signals]]\nname = \"9S\"\ntype = \"integer\"".into(), "signal name"),
        ("[[input.signals]]\nname = \"S\"\ntype = \"text\"".into(), "type"),
        (format!("{signals}{signals}"), "twice"),
        (metric("function = \"median\"\nsignal = \"X\""), "function"),
        (metric("function = \"mean\""), "signal"),
        (metric("function = \"mean\"\nsignal = \"B\""), "signal"),
        (metric("function = \"sum\"\nsignal = \"Y\""), "no signal"),
        (metric("function = \"histogram\"\nsignal = \"X\""), "buckets"),
        (metric("function = \"histogram\"\nsignal = \"X\"\nbuckets = [1, 1]"), "increasing"),
        (metric("function = \"histogram\"\nsignal = \"X\"\nbuckets = [2, 1]"), "increasing"),
        (metric("function = \"count\"\nbuckets = [1]"), "buckets"),
        (metric("function = \"count\"\nby = [\"colour\"]"), "by"),
        (metric("function = \"count\"\nby = [\"model\", \"model\"]"), "by"),
        (metric("function = \"count\"\nwhere = \"B < true\""), "where"),
        (metric("function = \"count\"\nwhere = \"X = 1 AND X = 2\""), "where"),
        (metric("function = \"count\"\nhelp2 = \"h\""), "unknown field"),
        (metric("function = \"count\"\n[[metrics]]\nname = \"m\"\nhelp = \"h\"\nfunction = \"count\""), "twice"),
        (metric("function = \"mean\"\nsignal = \"X\"\n[[metrics]]\nname = \"m_avg\"\nhelp = \"h\"\nfunction = \"count\""), "twice"),
        (format!("{signals}[[metrics]]\nname = \"m\"\nfunction = \"count\""), "help"),
        (format!("{signals}[[metrics]]\nname = \"m-1\"\nhelp = \"h\"\nfunction = \"count\""), "metric name"),
        ("[input]\nshape = \"narrow\"\nsignals = []\n[[metrics]]\nname = \"m\"\nhelp = \"h\"\nfunction = \"count\"".into(), "needs a signal"),
    ] {
        let error = DeclaredConfig::from_toml(&text).err().unwrap_or_else(|| panic!("accepted:\n{text}"));
        assert!(error.contains(why), "{error:?} should say {why:?} for:\n{text}");
    }
}

#[test]
fn approximate_comparisons() {
    assert!(approx_eq(0.1 + 0.2, 0.3));
    assert!(approx_eq(0.0, 0.0));
    assert!(approx_eq(f64::INFINITY, f64::INFINITY));
    assert!(!approx_eq(1.0, 1.0 + 1e-6));
    assert!(!approx_eq(0.0, 1e-6));
    assert!(approx_eq(-2.220446049250313e-16, 2.220446049250313e-16));
    assert!(!approx_eq(1e-3, 2e-3));
    let key = |name: &str| (name.to_string(), no_labels(), 5000);
    let a = BTreeMap::from([(key("x"), 0.6000000000000001)]);
    let b = BTreeMap::from([(key("x"), 0.6)]);
    assert_eq!(samples_approx_eq(&a, &b), Ok(()));
    let c = BTreeMap::from([(key("x"), 0.61)]);
    assert!(samples_approx_eq(&a, &c).unwrap_err().contains("expected"));
    let d = BTreeMap::from([(key("y"), 0.6)]);
    assert!(samples_approx_eq(&a, &d).unwrap_err().contains("missing"));
}
