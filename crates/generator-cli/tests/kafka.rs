//! The built `fleet-generator` binary in Kafka mode, against a real broker (nisshi by default).
//!
//! Skipped (with `SKIPPED:` on stderr) when the broker is not installed, unless
//! `FLEET_REQUIRE_SERVICES=1` makes that a failure (see `fleet_testkit`).
// Helpers outside `#[test]` functions fail the test by panicking, as the tests do.
#![allow(clippy::unwrap_used)]

use std::collections::{BTreeMap, BTreeSet};
use std::process::{Command, Stdio};
use std::time::Duration;

use fleet_core::{decode_event, RawEvent};
use fleet_testkit::{broker_or_skip, ConsumedRecord, TestBroker};

const START_MS: &str = "1764000000000";

fn generator() -> Command {
    Command::new(env!("CARGO_BIN_EXE_fleet-generator"))
}

/// Runs the generator and fails the test with its stderr when it fails.
async fn run_generator(mut command: Command) -> String {
    let out = tokio::task::spawn_blocking(move || command.output())
        .await
        .unwrap()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    assert!(out.status.success(), "{:?}: {stderr}", out.status);
    stderr
}

/// Every record decoded, after checking it is keyed by its event's VIN.
fn decode_keyed(records: &[ConsumedRecord]) -> Vec<(i32, RawEvent)> {
    records
        .iter()
        .map(|record| {
            let event = decode_event(record.value.as_deref().unwrap()).unwrap();
            assert_eq!(
                record.key.as_deref(),
                Some(event.vehicle_id.as_bytes()),
                "record at {}/{} is not keyed by its VIN",
                record.partition,
                record.offset
            );
            (record.partition, event)
        })
        .collect()
}

/// Checks that the topic holds exactly the file's records: the same
/// vehicles, each in one partition with its records in the file's order
/// (`consumed` is sorted by partition and offset). Returns the partitions used.
fn assert_as_in_file_per_vehicle<T: PartialEq + std::fmt::Debug>(
    consumed: impl IntoIterator<Item = (i32, String, T)>,
    expected: impl IntoIterator<Item = (String, T)>,
) -> BTreeSet<i32> {
    let mut got: BTreeMap<String, (BTreeSet<i32>, Vec<T>)> = BTreeMap::new();
    for (partition, vin, record) in consumed {
        let entry = got.entry(vin).or_default();
        entry.0.insert(partition);
        entry.1.push(record);
    }
    let mut want: BTreeMap<String, Vec<T>> = BTreeMap::new();
    for (vin, record) in expected {
        want.entry(vin).or_default().push(record);
    }
    assert_eq!(got.len(), want.len());
    for (vin, records) in &want {
        let (partitions, values) = &got[vin];
        assert_eq!(partitions.len(), 1, "{vin} spread over {partitions:?}");
        assert_eq!(values, records, "records of {vin}");
    }
    got.values().flat_map(|(p, _)| p.iter().copied()).collect()
}

/// Reads everything: `expected` records, then checks that nothing more follows.
async fn consume_exactly(broker: &TestBroker, topic: &str, expected: usize) -> Vec<ConsumedRecord> {
    let records = broker
        .consume_all(topic, expected, Duration::from_secs(60))
        .await
        .unwrap();
    assert_eq!(
        records.len(),
        expected,
        "log: {}",
        broker.log_path().display()
    );
    // Every delivery was confirmed before the generator exited, so an extra
    // record would already be there; a short second read finds none.
    let again = broker
        .consume_all(topic, expected + 1, Duration::from_secs(3))
        .await
        .unwrap();
    assert_eq!(again.len(), expected, "more records than events produced");
    records
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kafka_mode_produces_exactly_the_file_mode_events_keyed_by_vin() {
    let Some(broker) = broker_or_skip().await else {
        return;
    };
    broker.create_topic("raw", 4).await.unwrap();
    let dir = tempfile::tempdir().unwrap();
    let events_path = dir.path().join("events.jsonl");
    let csv_path = dir.path().join("vehicles.csv");
    let kafka_csv_path = dir.path().join("kafka-vehicles.csv");
    let common = ["--vehicles", "500", "--events", "5000", "--seed", "7"];

    let mut file_run = generator();
    file_run
        .args(common)
        .args(["--start-ms", START_MS, "--output"])
        .arg(&events_path)
        .arg("--reference-out")
        .arg(&csv_path);
    run_generator(file_run).await;

    let mut kafka_run = generator();
    kafka_run
        .args(common)
        .args(["--start-ms", START_MS, "--rate", "0", "--topic", "raw"])
        .args(["--brokers", &broker.bootstrap_servers()])
        .args(["--kafka-property", "linger.ms=20"])
        .arg("--reference-out")
        .arg(&kafka_csv_path);
    let stderr = run_generator(kafka_run).await;
    assert!(
        stderr.contains("5000 events produced to topic raw"),
        "{stderr}"
    );

    // --reference-out works in Kafka mode too, and describes the same fleet.
    assert_eq!(
        std::fs::read_to_string(&kafka_csv_path).unwrap(),
        std::fs::read_to_string(&csv_path).unwrap()
    );

    let records = consume_exactly(&broker, "raw", 5000).await;
    let consumed = decode_keyed(&records);
    let expected: Vec<RawEvent> = std::fs::read_to_string(&events_path)
        .unwrap()
        .lines()
        .map(|line| decode_event(line.as_bytes()).unwrap())
        .collect();
    assert_eq!(expected.len(), 5000);

    let consumed = consumed
        .into_iter()
        .map(|(partition, event)| (partition, event.vehicle_id.to_string(), event));
    let expected = expected.into_iter().map(|e| (e.vehicle_id.to_string(), e));
    let used = assert_as_in_file_per_vehicle(consumed, expected);
    assert!(used.len() > 1, "500 vehicles all landed in {used:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wide_records_go_to_kafka_as_in_file_mode_keyed_by_vin() {
    let Some(broker) = broker_or_skip().await else {
        return;
    };
    broker.create_topic("wide", 3).await.unwrap();
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("wide.jsonl");
    let common = ["--shape", "wide", "--signals", "40", "--vehicles", "300"];
    let common = [&common[..], &["--events", "3000", "--start-ms", START_MS]].concat();

    let mut file_run = generator();
    file_run.args(&common).arg("--output").arg(&path);
    run_generator(file_run).await;
    let mut kafka_run = generator();
    kafka_run
        .args(&common)
        .args(["--rate", "0", "--topic", "wide"])
        .args(["--brokers", &broker.bootstrap_servers()]);
    let stderr = run_generator(kafka_run).await;
    assert!(
        stderr.contains("3000 events produced to topic wide"),
        "{stderr}"
    );

    let vin_of = |json: &str| {
        let value: serde_json::Value = serde_json::from_str(json).unwrap();
        value["vin"].as_str().unwrap().to_string()
    };
    let consumed = consume_exactly(&broker, "wide", 3000).await;
    let consumed = consumed.into_iter().map(|record| {
        let value = String::from_utf8(record.value.unwrap()).unwrap();
        let vin = vin_of(&value);
        assert_eq!(
            record.key.as_deref(),
            Some(vin.as_bytes()),
            "not keyed by its VIN"
        );
        (record.partition, vin, value)
    });
    let file = std::fs::read_to_string(&path).unwrap();
    let expected = file.lines().map(|line| (vin_of(line), line.to_string()));
    assert_as_in_file_per_vehicle(consumed, expected);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_endless_paced_run_stops_cleanly_on_sigterm_with_everything_delivered() {
    use nix::sys::signal::{kill, Signal};
    use nix::unistd::Pid;

    let Some(broker) = broker_or_skip().await else {
        return;
    };
    broker.create_topic("live", 2).await.unwrap();
    // 2000 events/s by default (one per vehicle per second), no --events.
    let child = generator()
        .args(["--vehicles", "2000", "--topic", "live"])
        .args(["--brokers", &broker.bootstrap_servers()])
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let started = tokio::time::Instant::now();
    tokio::time::sleep(Duration::from_millis(2500)).await;
    kill(Pid::from_raw(child.id() as i32), Signal::SIGTERM).unwrap();
    let out = tokio::task::spawn_blocking(move || child.wait_with_output())
        .await
        .unwrap()
        .unwrap();
    let elapsed = started.elapsed();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{:?}: {stderr}", out.status);
    assert!(stderr.contains("stopped by signal"), "{stderr}");

    // The summary's count is what the topic holds.
    let sent: usize = stderr
        .lines()
        .find_map(|line| {
            let (before, _) = line.split_once(" events produced to topic")?;
            before.rsplit(' ').next()?.parse().ok()
        })
        .unwrap_or_else(|| panic!("no summary in {stderr}"));
    // Paced: about 2000 events/s, so neither a burst nor a crawl.
    let ceiling = (elapsed.as_secs_f64() * 2000.0 * 1.2) as usize + 1;
    assert!(
        (2000..=ceiling).contains(&sent),
        "{sent} events in {elapsed:?}"
    );
    let records = consume_exactly(&broker, "live", sent).await;
    let consumed = decode_keyed(&records);
    // Event time starts at the wall clock (floored to the second) by default.
    let now_ms = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as i64;
    let first = consumed.iter().map(|(_, e)| e.timestamp).min().unwrap();
    assert!(
        (now_ms - 60_000..=now_ms).contains(&first),
        "first event at {first}, now {now_ms}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_fleets_reference_data_goes_to_its_topic_keyed_by_vin() {
    let Some(broker) = broker_or_skip().await else {
        return;
    };
    broker.create_topic("vehicles-ref", 2).await.unwrap();
    let dir = tempfile::tempdir().unwrap();
    let csv_path = dir.path().join("vehicles.csv");
    let mut run = generator();
    run.args(["--vehicles", "300", "--events", "0", "--seed", "5"])
        .args(["--brokers", &broker.bootstrap_servers()])
        .args(["--reference-topic", "vehicles-ref"])
        .arg("--reference-out")
        .arg(&csv_path);
    let stderr = run_generator(run).await;
    assert!(
        stderr.contains("300 vehicles published to reference topic vehicles-ref"),
        "{stderr}"
    );
    let records = consume_exactly(&broker, "vehicles-ref", 300).await;
    let published: BTreeMap<String, serde_json::Value> = records
        .iter()
        .map(|r| {
            let key = String::from_utf8(r.key.clone().unwrap()).unwrap();
            let value = serde_json::from_slice(r.value.as_deref().unwrap()).unwrap();
            (key, value)
        })
        .collect();
    let csv = std::fs::read_to_string(&csv_path).unwrap();
    let mut rows = csv.lines();
    assert_eq!(rows.next(), Some("vehicle_id,model,fuel_type,model_year"));
    // Every attribute, the model year a JSON number.
    let csv: BTreeMap<String, serde_json::Value> = rows
        .map(|l| {
            let [vin, model, fuel_type, model_year] =
                <[&str; 4]>::try_from(l.split(',').collect::<Vec<_>>()).unwrap();
            let value = serde_json::json!({
                "model": model,
                "fuel_type": fuel_type,
                "model_year": model_year.parse::<u16>().unwrap(),
            });
            (vin.to_string(), value)
        })
        .collect();
    assert_eq!(published, csv, "the topic holds the same fleet as the CSV");
}
