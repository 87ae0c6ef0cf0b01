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
