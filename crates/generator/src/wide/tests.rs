use std::collections::{BTreeSet, HashMap, HashSet};

use fleet_plan::{Function, MetricPlan, Shape, TimeFormat};
use serde_json::Value as Json;

use super::*;
use crate::generator::tests::{config, lags, START};

fn run(config: &GeneratorConfig, signals: usize, records: u64) -> Vec<WideRecord> {
    let fleet = Fleet::from_config(config);
    let layout = WideLayout::new(signals).unwrap();
    let mut generator = WideGenerator::new(&fleet, config, &layout).unwrap();
    generator.take_exact(records).collect()
}

fn parse(record: &WideRecord) -> Json {
    serde_json::from_str(&record.json).unwrap_or_else(|e| panic!("{e}: {}", record.json))
}

/// The value at a dotted path.
fn at<'a>(json: &'a Json, path: &str) -> Option<&'a Json> {
    path.split('.')
        .try_fold(json, |value, name| value.get(name))
}

/// Every leaf's dotted path.
fn leaf_paths(json: &Json, prefix: &str, out: &mut BTreeSet<String>) {
    match json {
        Json::Object(fields) => {
            for (name, value) in fields {
                let path = if prefix.is_empty() {
                    name.clone()
                } else {
                    format!("{prefix}.{name}")
                };
                leaf_paths(value, &path, out);
            }
        }
        _ => {
            out.insert(prefix.to_string());
        }
    }
}

fn rfc3339(ms: TimestampMs) -> String {
    let mut out = String::new();
    write_rfc3339_ms(&mut out, ms);
    out
}

fn example_plan(signals: usize) -> MetricPlan {
    let toml = WideLayout::new(signals).unwrap().config_toml();
    MetricPlan::from_toml(&toml, &[]).unwrap_or_else(|p| panic!("{p:?}\n{toml}"))
}

fn workspace_file(relative: &str) -> std::path::PathBuf {
    std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../..")
        .join(relative)
}

#[test]
fn timestamps_are_rfc3339_utc_with_milliseconds() {
    for (ms, text) in [
        (0, "1970-01-01T00:00:00.000Z"),
        (START, "2025-11-24T16:00:00.000Z"),
        (1_796_379_302_120, "2026-12-04T10:15:02.120Z"),
        (951_782_400_000, "2000-02-29T00:00:00.000Z"),
        (1_709_164_799_999, "2024-02-28T23:59:59.999Z"),
        (4_102_444_800_000, "2100-01-01T00:00:00.000Z"),
        (253_402_300_799_999, "9999-12-31T23:59:59.999Z"),
        (-1, "1969-12-31T23:59:59.999Z"),
    ] {
        assert_eq!(rfc3339(ms), text, "{ms}");
    }
}

#[test]
fn floats_always_have_a_fraction() {
    for (value, text) in [
        (54.0, "54.0"),
        (88.5, "88.5"),
        (-0.0, "0.0"),
        (-3.25, "-3.25"),
    ] {
        let mut out = String::new();
        write_float(&mut out, value);
        assert_eq!(out, text);
    }
}

#[test]
fn a_layout_has_one_to_a_thousand_signals() {
    for bad in [0, WideLayout::MAX_SIGNALS + 1] {
        let err = WideLayout::new(bad).unwrap_err();
        assert_eq!(err.problems[0].key, "signals", "{err}");
    }
    let layout = WideLayout::new(WideLayout::MAX_SIGNALS).unwrap();
    assert_eq!(layout.signals().len(), WideLayout::MAX_SIGNALS);
    let names: HashSet<&str> = layout.signals().iter().map(|s| s.name.as_str()).collect();
    assert_eq!(names.len(), WideLayout::MAX_SIGNALS);
    let one = WideLayout::new(1).unwrap();
    assert_eq!(one.signals()[0].name, "speed_kmh");
    let fifty = WideLayout::new(50).unwrap();
    assert_eq!(fifty.signals()[27].name, "sensor_28");
    assert_eq!(fifty.signals()[27].signal_type, SignalType::Integer);
    assert_eq!(fifty.signals()[49].name, "sensor_50");
}

#[test]
fn the_same_seed_gives_the_same_records_and_another_seed_others() {
    let a = run(&config(200), 50, 20_000);
    assert_eq!(a, run(&config(200), 50, 20_000));
    let other = GeneratorConfig {
        seed: 12,
        ..config(200)
    };
    assert_ne!(a, run(&other, 50, 20_000));
}

#[test]
fn records_carry_exactly_the_declared_fields_with_their_types() {
    for signals in [1, 3, 27, 50, 120] {
        // 19:00 UTC: dark, headlights on.
        let config = GeneratorConfig {
            start_ms: Some(START + 3 * 3_600_000),
            ..config(100)
        };
        let plan = example_plan(signals);
        assert_eq!(plan.input.shape, Shape::Wide);
        assert_eq!(plan.input.time_format, TimeFormat::Rfc3339);
        let fleet = Fleet::from_config(&config);
        let regions: HashMap<&str, &str> = fleet
            .vehicles()
            .iter()
            .map(|v| (v.vin.as_str(), v.region))
            .collect();
        let mut expected: BTreeSet<String> = [VEHICLE_ID_PATH, TIME_PATH]
            .into_iter()
            .chain(LABEL_PATHS)
            .map(String::from)
            .collect();
        for signal in &plan.input.signals {
            let path = signal.path.as_ref().unwrap().to_string();
            assert!(expected.insert(path), "{} declared twice", signal.name);
        }
        let mut seen_true = HashSet::new();
        for record in run(&config, signals, 10_000) {
            let json = parse(&record);
            let mut paths = BTreeSet::new();
            leaf_paths(&json, "", &mut paths);
            assert_eq!(paths, expected, "{}", record.json);
            let vin = json["vin"].as_str().unwrap();
            assert_eq!(vin, record.vin);
            assert_eq!(json["region"].as_str(), regions.get(vin).copied());
            let depot = json["site"]["depot"].as_str().unwrap();
            assert!(DEPOTS.iter().any(|(d, _)| *d == depot), "{depot}");
            assert_eq!(json["ts"].as_str().unwrap(), rfc3339(record.timestamp));
            for signal in &plan.input.signals {
                let path = signal.path.as_ref().unwrap().to_string();
                let value = at(&json, &path).unwrap();
                let number = match signal.signal_type {
                    SignalType::Integer => value.as_i64().map(|i| i as f64),
                    // Written with a fraction, so it reads as a float.
                    SignalType::Float => value.is_f64().then(|| value.as_f64().unwrap()),
                    SignalType::Boolean => {
                        if value.as_bool().unwrap() {
                            seen_true.insert(signal.name.clone());
                        }
                        value.is_boolean().then_some(0.0)
                    }
                    SignalType::State => {
                        let state = value.as_str().unwrap();
                        signal.states.iter().any(|s| s == state).then_some(0.0)
                    }
                };
                let number =
                    number.unwrap_or_else(|| panic!("{}: {value} is not its type", signal.name));
                assert!(signal.in_range(number), "{}: {number}", signal.name);
            }
        }
        if signals >= 27 {
            for name in ["charging", "brake_pressed", "headlights_on", "door_fl_open"] {
                assert!(seen_true.contains(name), "{name} never true");
            }
        }
    }
}

/// Per vehicle, its records in generation order, parsed.
fn per_vehicle(records: &[WideRecord]) -> HashMap<String, Vec<(TimestampMs, Json)>> {
    let mut out: HashMap<String, Vec<(TimestampMs, Json)>> = HashMap::new();
    for r in records {
        out.entry(r.vin.clone())
            .or_default()
            .push((r.timestamp, parse(r)));
    }
    out
}

#[test]
fn each_vehicle_reports_once_a_second_in_time_order_before_disorder() {
    let records = run(&config(300).without_realism(), 50, 300 * 120);
    assert!(records.windows(2).all(|w| w[0].timestamp <= w[1].timestamp));
    assert_eq!(records[0].timestamp, START);
    let vehicles = per_vehicle(&records);
    assert_eq!(vehicles.len(), 300);
    for series in vehicles.values() {
        assert_eq!(series.len(), 120);
        for w in series.windows(2) {
            assert_eq!(w[1].0 - w[0].0, 1_000);
            // The text orders as the time does.
            assert!(w[0].1["ts"].as_str() < w[1].1["ts"].as_str());
        }
    }
}

#[test]
fn realism_only_reorders_the_same_records() {
    let heavy = GeneratorConfig {
        disorder_fraction: 0.2,
        late_fraction: 0.05,
        offline_probability: 0.001,
        ..config(200)
    };
    let plain = run(&heavy.clone().without_realism(), 20, 40_000);
    let mut real = run(&heavy, 20, 40_000);
    assert_ne!(plain, real);
    let late = lags(real.iter().map(|r| r.timestamp))
        .into_iter()
        .filter(|&lag| lag > 2_000)
        .count();
    assert!(late > 500, "{late} late records");
    real.sort_by_key(|r| (r.timestamp, r.vin.clone()));
    let mut sorted = plain.clone();
    sorted.sort_by_key(|r| (r.timestamp, r.vin.clone()));
    assert_eq!(sorted, real);
}

#[test]
fn signals_evolve_like_a_vehicle_s() {
    let records = run(&config(200).without_realism(), 30, 200 * 900);
    let mut moving = 0;
    let mut gears = HashSet::new();
    let mut speeds = Vec::new();
    for series in per_vehicle(&records).values() {
        for (i, (_, r)) in series.iter().enumerate() {
            let speed = r["speed_kmh"].as_f64().unwrap();
            let gear = r["gear"].as_str().unwrap();
            gears.insert(gear.to_string());
            match gear {
                "P" | "N" => assert_eq!(speed, 0.0, "{r}"),
                "R" => assert!(speed <= 10.0, "{r}"),
                _ => {}
            }
            let doors = [
                "front_left",
                "front_right",
                "rear_left",
                "rear_right",
                "trunk",
            ];
            if doors.iter().any(|d| r["doors"][d].as_bool().unwrap()) {
                assert_eq!(gear, "P", "a door open while not parked: {r}");
            }
            if r["charging"].as_bool().unwrap() {
                assert_eq!(speed, 0.0, "{r}");
            }
            if speed > 3.0 && (gear == "D" || gear == "R") {
                moving += 1;
            }
            if speed > 0.0 {
                speeds.push(speed);
            }
            let Some((_, before)) = i.checked_sub(1).map(|p| &series[p]) else {
                continue;
            };
            let gained = speed - before["speed_kmh"].as_f64().unwrap();
            // Braking, and snapping to a standstill below 1.5 km/h.
            assert!((-7.6..=3.1).contains(&gained), "{gained} km/h in a second");
            let soc = r["soc_pct"].as_i64().unwrap() - before["soc_pct"].as_i64().unwrap();
            assert!(soc.abs() <= 1, "soc jumped by {soc}");
            let km = r["odometer_km"].as_i64().unwrap() - before["odometer_km"].as_i64().unwrap();
            assert!((0..=1).contains(&km), "odometer moved by {km}");
        }
    }
    assert_eq!(gears.len(), 4, "{gears:?}");
    let share = f64::from(moving) / records.len() as f64;
    assert!((0.3..0.6).contains(&share), "moving share {share}");
    speeds.sort_by(f64::total_cmp);
    let median = speeds[speeds.len() / 2];
    assert!((25.0..90.0).contains(&median), "median speed {median}");
}

#[test]
fn the_example_configuration_is_what_the_generator_writes() {
    let path = workspace_file("config/examples/wide-fleet.toml");
    let checked_in = std::fs::read_to_string(&path).unwrap();
    assert!(
        checked_in == WideLayout::new(50).unwrap().config_toml(),
        "{} is stale: write it again with `fleet-generator --shape wide --signals 50 --config-out {}`",
        path.display(),
        path.display()
    );
}

#[test]
fn the_example_uses_every_function_and_smaller_layouts_stay_valid() {
    let plan = example_plan(50);
    assert_eq!(plan.input.signals.len(), 50);
    assert_eq!(plan.metrics.len(), 12);
    let functions: HashSet<&str> = plan.metrics.iter().map(|m| m.function.as_str()).collect();
    for function in [
        Function::Count,
        Function::Sum,
        Function::Mean,
        Function::Min,
        Function::Max,
        Function::DistinctVehicles,
        Function::SumOfLatest,
        Function::MeanOfLatest,
        Function::Histogram,
    ] {
        assert!(functions.contains(function.as_str()), "{function:?} unused");
    }
    let histograms = plan
        .metrics
        .iter()
        .filter(|m| m.function == Function::Histogram)
        .count();
    assert!(histograms >= 2);
    let mut previous = 0;
    for signals in 1..=60 {
        let metrics = example_plan(signals).metrics.len();
        assert!(metrics >= previous && metrics >= 2, "{signals}: {metrics}");
        previous = metrics;
    }
    assert_eq!(previous, 12);
}

/// The series a dashboard query selects: `name{...}` in panels,
/// `label_values(name..., label)` in variables.
fn series_in(query: &str) -> Vec<&str> {
    if let Some(inner) = query.strip_prefix("label_values(") {
        let end = inner.find(['{', ',']).unwrap_or(inner.len());
        return vec![inner[..end].trim()];
    }
    let pieces: Vec<&str> = query.split('{').collect();
    pieces[..pieces.len() - 1]
        .iter()
        .filter_map(|before| {
            let start = before
                .rfind(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
                .map_or(0, |i| i + 1);
            Some(&before[start..]).filter(|n| !n.is_empty())
        })
        .collect()
}

#[test]
fn the_dashboard_reads_only_series_the_example_writes() {
    let plan = example_plan(50);
    let series: HashSet<String> = plan.metrics.iter().flat_map(|m| m.series_names()).collect();
    let labels: HashSet<&str> = plan.labels.iter().map(|l| l.name.as_str()).collect();
    let text =
        std::fs::read_to_string(workspace_file("grafana/dashboards/wide-fleet.json")).unwrap();
    let dashboard: Json = serde_json::from_str(&text).unwrap();
    let mut queries = Vec::new();
    for panel in dashboard["panels"].as_array().unwrap() {
        for target in panel["targets"].as_array().into_iter().flatten() {
            queries.push(target["expr"].as_str().unwrap().to_string());
        }
    }
    for variable in dashboard["templating"]["list"].as_array().unwrap() {
        if let Some(query) = variable["query"]["query"].as_str() {
            queries.push(query.to_string());
        }
    }
    assert!(queries.len() >= 12, "{queries:?}");
    let mut used = HashSet::new();
    for query in &queries {
        let names = series_in(query);
        assert!(!names.is_empty(), "no series in {query}");
        for name in names {
            assert!(
                series.contains(name),
                "{name} is no series of the example: {query}"
            );
            used.insert(name.to_string());
        }
        for clause in query.split(" by (").skip(1) {
            let grouping = clause.split(')').next().unwrap_or_default();
            for label in grouping.split(',').map(str::trim) {
                assert!(
                    labels.contains(label) || label == "le",
                    "{label} in {query}"
                );
            }
        }
    }
    for metric in &plan.metrics {
        assert!(
            metric.series_names().iter().any(|s| used.contains(s)),
            "no panel shows {}",
            metric.name
        );
    }
}

/// Each binary format's records, encoded by the formats' reference
/// libraries, decode with the layout's schema and configuration into
/// exactly the records the JSON ones decode into.
#[test]
fn binary_records_decode_into_the_json_records() {
    use fleet_core::decode::Decoder;
    use fleet_core::record::RecordBatch;

    let records = run(&config(40), 60, 400);
    let layout = WideLayout::new(60).unwrap();
    let json_plan = MetricPlan::from_toml(&layout.config_toml(), &[]).unwrap();
    let json = Decoder::new(&json_plan.input);
    let dir = std::env::temp_dir().join(format!("fleet-wire-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    for (format, schema, file) in [
        (WireFormat::Protobuf, layout.proto_schema(), "wide.proto"),
        (WireFormat::Avro, layout.avro_schema(), "wide.avsc"),
    ] {
        let path = dir.join(file);
        std::fs::write(&path, schema).unwrap();
        let toml = layout.config_toml_for(format, &path.display().to_string());
        let plan = MetricPlan::from_toml(&toml, &[]).unwrap();
        let registry = fleet_schema::SchemaRegistryConfig::default();
        let fleet_schema::InputSchema::Fixed(loaded) =
            fleet_schema::load(&plan.input, &registry).unwrap()
        else {
            panic!("no registry configured")
        };
        let (decoder, problems) = Decoder::for_schema(&plan.input, &loaded);
        assert!(problems.is_empty(), "{problems:?}");
        let encoder = WideEncoder::new(&layout, format).unwrap();
        let (mut want, mut got) = (RecordBatch::default(), RecordBatch::default());
        for (i, record) in records.iter().enumerate() {
            json.decode_into(record.json.as_bytes(), 0, i as i64, &mut want)
                .unwrap();
            let bytes = encoder.encode(record).unwrap();
            decoder.decode_into(&bytes, 0, i as i64, &mut got).unwrap();
        }
        // Within a record, values come in field order, which differs.
        for batch in [&mut want, &mut got] {
            for r in &batch.records {
                let at = r.values_at as usize;
                batch.values[at..at + usize::from(r.values_len)].sort_by_key(|v| v.signal);
            }
        }
        assert_eq!(got, want, "{format:?}");
    }
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn the_json_configuration_is_the_binary_ones_but_for_format_and_time() {
    let layout = WideLayout::new(8).unwrap();
    let json = layout.config_toml();
    let proto = layout.config_toml_for(WireFormat::Protobuf, "wide.proto");
    assert!(proto.contains(
        "format = \"protobuf\"\nschema_file = \"wide.proto\"\nmessage = \"fleet.wide.Record\"\n"
    ));
    assert!(proto.contains("time_format = \"epoch_ms\""));
    let body = |t: &str| t[t.find("shape = ").unwrap()..].replace("epoch_ms", "rfc3339");
    assert_eq!(body(&proto), body(&json));
    let framed = layout.config_toml_framed(WireFormat::Avro, "http://registry:8081");
    assert!(framed.contains("[input]\nformat = \"avro\"\nshape = \"wide\""));
    assert!(framed.ends_with("\n[schema_registry]\nurl = \"http://registry:8081\"\n"));
    let plan = MetricPlan::from_toml(&framed, &[]).unwrap();
    assert_eq!((plan.input.schema_file, plan.input.message), (None, None));
    assert!(layout.proto_schema().contains("optional Gear gear = 6;"));
    assert!(layout.avro_schema().contains("\"timestamp-millis\""));
}
