//! The built `fleet-generator` binary in file and stdout mode (docs/ARCHITECTURE.md, "Generator, file mode").

use std::process::Command;

use fleet_core::decode_event;
use fleet_generator::vin;

fn generator() -> Command {
    Command::new(env!("CARGO_BIN_EXE_fleet-generator"))
}

#[test]
fn file_mode_writes_exactly_the_requested_events_and_the_reference_csv() {
    let dir = tempfile::tempdir().unwrap();
    let events_path = dir.path().join("events.jsonl");
    let csv_path = dir.path().join("vehicles.csv");
    let status = generator()
        .args(["--vehicles", "300", "--events", "30001", "--seed", "11"])
        .args(["--start-ms", "1764000000000", "--output"])
        .arg(&events_path)
        .arg("--reference-out")
        .arg(&csv_path)
        .status()
        .unwrap();
    assert!(status.success());

    let events = std::fs::read_to_string(&events_path).unwrap();
    assert_eq!(events.lines().count(), 30_001);
    let csv = std::fs::read_to_string(&csv_path).unwrap();
    let mut rows = csv.lines();
    assert_eq!(rows.next(), Some("vehicle_id,model,fuel_type,model_year"));
    let vins: std::collections::HashSet<&str> =
        rows.map(|row| row.split(',').next().unwrap()).collect();
    assert_eq!(vins.len(), 300);
    assert!(vins.iter().all(|v| vin::is_valid(v)));
    for line in events.lines() {
        let event = decode_event(line.as_bytes()).unwrap();
        assert!(vins.contains(event.vehicle_id.as_str()));
        assert!(event.timestamp >= 1_764_000_000_000);
    }

    // The same arguments give the same bytes.
    let again = dir.path().join("again.jsonl");
    let status = generator()
        .args(["--vehicles", "300", "--events", "30001", "--seed", "11"])
        .args(["--start-ms", "1764000000000", "--output"])
        .arg(&again)
        .status()
        .unwrap();
    assert!(status.success());
    assert_eq!(std::fs::read_to_string(&again).unwrap(), events);
}

#[test]
fn dash_writes_to_stdout_and_no_realism_keeps_event_time_order() {
    let out = generator()
        .args([
            "--vehicles",
            "20",
            "--events",
            "500",
            "--no-realism",
            "--output",
            "-",
        ])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = String::from_utf8(out.stdout).unwrap();
    let timestamps: Vec<i64> = text
        .lines()
        .map(|l| decode_event(l.as_bytes()).unwrap().timestamp)
        .collect();
    assert_eq!(timestamps.len(), 500);
    assert!(timestamps.windows(2).all(|w| w[0] <= w[1]));
    // The default origin is the wall clock, floored to the second.
    assert_eq!(timestamps[0] % 1_000, 0);
}

#[test]
fn configuration_errors_exit_64_and_name_the_key() {
    let out = generator()
        .args([
            "--vehicles",
            "10",
            "--events",
            "5",
            "--late-fraction",
            "1.5",
            "--output",
            "-",
        ])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(64));
    assert!(String::from_utf8_lossy(&out.stderr).contains("late_fraction"));

    let out = generator()
        .args(["--vehicles", "10", "--output", "-"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(64));
    assert!(String::from_utf8_lossy(&out.stderr).contains("events"));
}

#[test]
fn kafka_only_flags_and_bad_kafka_settings_are_configuration_errors() {
    // Refused before any file is written or any connection is made.
    for (flags, key) in [
        (
            &["--output", "-", "--events", "5", "--rate", "10"][..],
            "rate",
        ),
        (
            &["--output", "-", "--events", "5", "--topic", "t"][..],
            "topic",
        ),
        (
            &[
                "--output",
                "-",
                "--events",
                "5",
                "--kafka-property",
                "acks=1",
            ][..],
            "kafka_property",
        ),
        (&["--brokers", "no-port"][..], "brokers"),
        (
            &[
                "--brokers",
                "h:1",
                "--kafka-property",
                "bootstrap.servers=x:1",
            ][..],
            "kafka_property.bootstrap.servers",
        ),
        (
            &["--brokers", "h:1", "--kafka-property", "no.such.property=1"][..],
            "kafka_property",
        ),
    ] {
        let out = generator().args(flags).output().unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(64), "{flags:?}: {stderr}");
        assert!(stderr.contains(key), "{flags:?}: {stderr}");
        assert!(out.stdout.is_empty(), "{flags:?} wrote events");
    }
}

#[test]
fn wide_shape_writes_records_and_the_configuration_that_decodes_them() {
    use fleet_testkit::oracle::declared::{
        expected_declared, DeclaredConfig, MetricValue, OracleRecord, VehicleRef,
    };

    let dir = tempfile::tempdir().unwrap();
    let records_path = dir.path().join("wide.jsonl");
    let config_path = dir.path().join("wide.toml");
    let csv_path = dir.path().join("vehicles.csv");
    let args = |out: &std::path::Path| {
        let mut command = generator();
        command
            .args(["--shape", "wide", "--vehicles", "200", "--events", "6000"])
            .args(["--seed", "3", "--start-ms", "1764000000000", "--output"])
            .arg(out);
        command
    };
    let status = args(&records_path)
        .arg("--config-out")
        .arg(&config_path)
        .arg("--reference-out")
        .arg(&csv_path)
        .status()
        .unwrap();
    assert!(status.success());

    // The default is 50 signals: the checked-in example.
    let config = std::fs::read_to_string(&config_path).unwrap();
    let example = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../../config/examples/wide-fleet.toml");
    assert_eq!(config, std::fs::read_to_string(example).unwrap());

    let text = std::fs::read_to_string(&records_path).unwrap();
    assert_eq!(text.lines().count(), 6_000);
    let csv = std::fs::read_to_string(&csv_path).unwrap();
    let reference: std::collections::HashMap<String, VehicleRef> = csv
        .lines()
        .skip(1)
        .map(|row| {
            let mut columns = row.split(',');
            let vin = columns.next().unwrap().to_string();
            let model = columns.next().unwrap().to_string();
            let vehicle = VehicleRef {
                model,
                ..VehicleRef::default()
            };
            (vin, vehicle)
        })
        .collect();
    for line in text.lines() {
        let record: serde_json::Value = serde_json::from_str(line).unwrap();
        let vin = record["vin"].as_str().unwrap();
        assert!(reference.contains_key(vin), "{vin}");
        assert!(record["speed_kmh"].is_f64() && record["soc_pct"].is_i64());
        assert!(record["signals"]["coolant_c"].is_f64(), "{line}");
        assert!(record["site"]["depot"].is_string());
    }

    // The independent oracle decodes every record with that configuration
    // and finds moving vehicles.
    let declared = DeclaredConfig::from_toml(&config).unwrap();
    let input: Vec<OracleRecord> = text
        .lines()
        .map(|line| OracleRecord {
            partition: 0,
            bytes: line.as_bytes().to_vec(),
        })
        .collect();
    let output = expected_declared(&declared, &input, &reference, 5_000, None, false);
    assert!(
        output.decode_errors.is_empty(),
        "{:?}",
        output.decode_errors
    );
    let moving: u64 = output
        .lines
        .iter()
        .flat_map(|line| &line.metrics)
        .filter(|(name, _)| name == "vehicles_moving")
        .map(|(_, value)| match value {
            MetricValue::Count(n) => *n,
            other => panic!("{other:?}"),
        })
        .sum();
    assert!(moving > 0);

    // The same arguments give the same bytes.
    let again = dir.path().join("again.jsonl");
    assert!(args(&again).status().unwrap().success());
    assert_eq!(std::fs::read_to_string(&again).unwrap(), text);
}

#[test]
fn config_out_alone_writes_only_the_configuration() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("seven.toml");
    let out = generator()
        .args(["--shape", "wide", "--signals", "7", "--config-out"])
        .arg(&path)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(out.stdout.is_empty());
    let config = std::fs::read_to_string(&path).unwrap();
    assert_eq!(config.matches("[[input.signals]]").count(), 7);
    assert!(config.contains("name = \"engine_rpm\""), "{config}");
}

#[test]
fn wide_only_flags_are_refused_with_narrow_events() {
    for (flags, key) in [
        (&["--signals", "5"][..], "signals"),
        (&["--config-out", "x.toml"][..], "config_out"),
        (&["--shape", "wide", "--signals", "0"][..], "signals"),
    ] {
        let out = generator()
            .args(["--events", "5", "--output", "-"])
            .args(flags)
            .output()
            .unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(64), "{flags:?}: {stderr}");
        assert!(stderr.contains(key), "{flags:?}: {stderr}");
        assert!(out.stdout.is_empty(), "{flags:?} wrote events");
    }
}
