//! End to end on real services: generated events → the broker → fleet-preprocessor
//! → Prometheus, compared window by window with the batch oracle.
#![allow(clippy::unwrap_used)] // helpers of the tests below

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::Duration;

use crate::common::*;
use fleet_core::decode_event;
use fleet_kafka::producer::EventPublisher;
use fleet_kafka::KafkaConfig;
use fleet_testkit::oracle::{self, Expected, ExpectedKey};
use fleet_testkit::{Prometheus, TestBroker};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn generated_events_round_trip_through_kafka_unchanged() {
    let _serial = SERIAL.lock().await;
    let Some(kafka) = fleet_testkit::broker_or_skip().await else {
        return;
    };
    let run = generate(200, 10, 5, |c| c);
    kafka.create_topic("roundtrip", 4).await.unwrap();
    let publisher = EventPublisher::new(&KafkaConfig {
        brokers: kafka.bootstrap_servers(),
        topic: "roundtrip".into(),
        ..KafkaConfig::default()
    })
    .unwrap();
    publisher.publish(&run.events).await.unwrap();
    let records = kafka
        .consume_all("roundtrip", run.events.len(), Duration::from_secs(30))
        .await
        .unwrap();
    assert_eq!(records.len(), run.events.len());
    let mut got: Vec<_> = records
        .iter()
        .map(|r| {
            let e = decode_event(r.value.as_deref().unwrap()).unwrap();
            assert_eq!(
                r.key.as_deref(),
                Some(e.vehicle_id.as_bytes()),
                "keyed by VIN"
            );
            e.to_json()
        })
        .collect();
    let mut want: Vec<_> = run.events.iter().map(|e| e.to_json()).collect();
    got.sort();
    want.sort();
    assert_eq!(got, want);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kafka_to_prometheus_equals_the_batch_computation() {
    let _serial = SERIAL.lock().await;
    let Some((kafka, prom)) = services().await else {
        return;
    };
    let run = generate(300, 60, 7, in_bound);
    kafka.create_topic("events", 4).await.unwrap();
    kafka.produce_events("events", &run.events).await.unwrap();
    let expected = oracle::expected_windows(&run.events, &run.reference, WINDOW_MS, None);
    let config = config_for(&run, &kafka, &prom, "events");
    let service = Service::start(&config);
    assert_prometheus_holds(&prom, &service, &expected).await;
    assert_every_event_read_on_time(&prom, &service, run.events.len()).await;
    service.terminate().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn late_events_are_dropped_and_counted_and_the_rest_is_exact() {
    let _serial = SERIAL.lock().await;
    let Some((kafka, prom)) = services().await else {
        return;
    };
    let run = generate(200, 60, 9, |c| fleet_generator::GeneratorConfig {
        late_fraction: 0.02,
        offline_probability: 0.0005,
        ..in_bound(c)
    });
    // One partition: arrival order is the file order, so the late rule is exact.
    kafka.create_topic("late", 1).await.unwrap();
    kafka.produce_events("late", &run.events).await.unwrap();
    let expected = oracle::expected_windows(
        &run.events,
        &run.reference,
        WINDOW_MS,
        Some(OUT_OF_ORDERNESS_MS),
    );
    let late = oracle::late_event_count(&run.events, WINDOW_MS, OUT_OF_ORDERNESS_MS);
    assert!(late > 50, "the run has late events: {late}");
    let config = config_for(&run, &kafka, &prom, "late");
    let service = Service::start(&config);
    assert_prometheus_holds(&prom, &service, &expected).await;
    assert_eq!(
        service
            .metric("fleet_aggregator_late_events_total", &[])
            .await as usize,
        late
    );
    service.terminate().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn malformed_messages_are_counted_by_reason_and_skipped() {
    let _serial = SERIAL.lock().await;
    let Some((kafka, prom)) = services().await else {
        return;
    };
    let run = generate(100, 30, 13, in_bound);
    kafka.create_topic("mixed", 3).await.unwrap();
    // A vehicle clock a year ahead: accepted, it would pull its partition's
    // watermark a year forward and make the events after it late.
    let year_ahead = fleet_core::telemetry::wall_clock_ms() + 365 * 86_400_000;
    let ahead = format!(
        r#"{{"eventType":"IC_RPM","vehicleId":"X","region":"UK","timestamp":{year_ahead},"measurement":1}}"#
    );
    let bad: Vec<(&str, &str, usize)> = vec![
        ("too_far_ahead", &ahead, 2),
        (
            "invalid_value",
            r#"{"eventType":"IC_RPM","vehicleId":"X","region":"UK","timestamp":-5,"measurement":1}"#,
            2,
        ),
        ("invalid_json", "{not json", 7),
        (
            "missing_field",
            r#"{"eventType":"IC_RPM","vehicleId":"X","region":"UK","measurement":1}"#,
            5,
        ),
        (
            "wrong_type",
            r#"{"eventType":"IC_RPM","vehicleId":"X","region":"UK","timestamp":"soon","measurement":1}"#,
            4,
        ),
        (
            "unknown_event_type",
            r#"{"eventType":"OIL_PRESSURE","vehicleId":"X","region":"UK","timestamp":1,"measurement":1}"#,
            3,
        ),
    ];
    let mut messages: Vec<(String, String)> = run
        .events
        .iter()
        .map(|e| (e.vehicle_id.to_string(), e.to_json()))
        .collect();
    // Interleave the bad messages through the stream.
    let mut at = 0;
    for (_, body, count) in &bad {
        for i in 0..*count {
            at = (at + 97 + i * 13) % messages.len();
            messages.insert(at, (format!("BAD{at}"), body.to_string()));
        }
    }
    kafka.produce_json("mixed", messages).await.unwrap();
    let expected = oracle::expected_windows(&run.events, &run.reference, WINDOW_MS, None);
    let config = config_for(&run, &kafka, &prom, "mixed");
    let service = Service::start(&config);
    assert_prometheus_holds(&prom, &service, &expected).await;
    for (reason, _, count) in &bad {
        let got = service
            .metric("fleet_source_decode_errors_total", &[("reason", reason)])
            .await;
        assert_eq!(got as usize, *count, "decode errors with reason {reason}");
    }
    assert_eq!(
        service.metric("fleet_source_events_total", &[]).await as usize,
        run.events.len()
    );
    // Every window closes once the input is idle: none is held open a year
    // ahead (which would also hold its partition's commit).
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    while service.metric("fleet_aggregator_open_windows", &[]).await > 0.0 {
        assert!(
            tokio::time::Instant::now() < deadline,
            "windows still open: {}",
            service.metric("fleet_aggregator_open_windows", &[]).await
        );
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    service.terminate().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replay_equals_the_batch_computation() {
    let _serial = SERIAL.lock().await;
    let run = generate(500, 40, 11, |c| c);
    let input = run.dir.path().join("events.jsonl");
    let lines: Vec<String> = run.events.iter().map(|e| e.to_json()).collect();
    std::fs::write(&input, lines.join("\n") + "\n").unwrap();
    let output = tokio::process::Command::new(env!("CARGO_BIN_EXE_fleet-preprocessor"))
        .args(["replay", "--input"])
        .arg(&input)
        .arg("--reference")
        .arg(&run.reference_csv)
        .env("FLEET__TELEMETRY__LISTEN", "")
        .output()
        .await
        .unwrap();
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let got: Vec<&str> = std::str::from_utf8(&output.stdout)
        .unwrap()
        .lines()
        .collect();
    let expected = oracle::expected_windows(
        &run.events,
        &run.reference,
        WINDOW_MS,
        Some(OUT_OF_ORDERNESS_MS),
    );
    let want = oracle::expected_json_lines(&expected);
    assert!(
        oracle::late_event_count(&run.events, WINDOW_MS, OUT_OF_ORDERNESS_MS) > 0,
        "default realism has late events"
    );
    assert_eq!(got.len(), want.len());
    for (g, w) in got.iter().zip(&want) {
        assert_eq!(g, w);
    }
}

/// A fleet sending to `topic` while a service reads it, is stopped
/// gracefully once a quarter of the windows are written, and a second one
/// takes over: what [`restart_gracefully`] leaves running.
struct GracefulRestart {
    run: Run,
    expected: BTreeMap<ExpectedKey, Expected>,
    config: PathBuf,
    producer: tokio::task::JoinHandle<()>,
    second: Service,
}

/// Starts a service on a fleet that keeps sending to `topic`, stops it
/// gracefully (SIGTERM) once a quarter of the windows are in Prometheus and
/// starts a second one, which writes up to half of them. The second sends
/// nothing the first had sent (no write is refused) and skips the replayed
/// events of windows already written.
async fn restart_gracefully(kafka: &TestBroker, prom: &Prometheus, topic: &str) -> GracefulRestart {
    let run = generate(200, 150, 17, in_bound);
    kafka.create_topic(topic, 4).await.unwrap();
    let expected = oracle::expected_windows(&run.events, &run.reference, WINDOW_MS, None);
    let (start, end) = time_range(&expected);
    let config = config_for(&run, kafka, prom, topic);
    let producer = produce_paced(
        kafka,
        topic,
        run.events.clone(),
        1000,
        Duration::from_millis(700),
    );

    let first = Service::start(&config);
    wait_for_some_windows(prom, start, end, expected.len() / 4).await;
    let refused_before = refused_writes(prom).await;
    first.terminate().await;

    let second = Service::start(&config);
    wait_for_some_windows(prom, start, end, expected.len() / 2).await;
    let refused_after_graceful = refused_writes(prom).await;
    assert_eq!(
        refused_after_graceful,
        refused_before,
        "a graceful restart sends nothing twice; log:\n{}",
        second.log_tail()
    );
    let skipped = second
        .metric("fleet_aggregator_already_written_events_total", &[])
        .await;
    assert!(
        skipped > 0.0,
        "replayed events of written windows were skipped"
    );
    GracefulRestart {
        run,
        expected,
        config,
        producer,
        second,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn restarts_leave_no_gap_and_no_conflicting_sample() {
    let _serial = SERIAL.lock().await;
    let Some((kafka, prom)) = services().await else {
        return;
    };
    let restart = restart_gracefully(&kafka, &prom, "restart").await;
    let (start, end) = time_range(&restart.expected);
    restart.second.kill();

    let third = Service::start(&restart.config);
    restart.producer.await.unwrap();
    let expected = &restart.expected;
    let n = wait_for_windows(&prom, start, end, expected.len(), Duration::from_secs(90)).await;
    assert_eq!(n, expected.len(), "log:\n{}", third.log_tail());
    // Every series equals the batch computation: no gap, nothing wrong.
    assert_samples_equal(&prometheus_samples(&prom, start, end).await, expected);
    // After the SIGKILL, windows accepted but not yet committed may be sent
    // again; they are identical, so at most refused as out of order, never
    // as a conflicting duplicate.
    let conflicts = third
        .metric(
            "fleet_remote_write_samples_dropped_total",
            &[("reason", "duplicate")],
        )
        .await;
    assert_eq!(conflicts, 0.0, "no conflicting sample was sent");
    assert_eq!(conflicts_logged(&prom), Vec::<String>::new());
    third.terminate().await;
    drop(restart.run);
}

/// On a broker that keeps offset-commit metadata, as Kafka and MSK do, the
/// window boundary travels in the commit itself (docs/ARCHITECTURE.md,
/// "Delivery guarantee"): Tansu and nisshi drop it, so the rest of the suite
/// exercises the companion group `<group_id>.closed-windows` instead. Here,
/// on noida-db, a graceful restart sends nothing twice, every window equals
/// the batch computation, and the companion group is never committed to.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_commit_metadata_a_restart_needs_no_companion_group() {
    let _serial = SERIAL.lock().await;
    let Some((kafka, prom)) = noida_services().await else {
        return;
    };
    let topic = "metadata";
    let restart = restart_gracefully(&kafka, &prom, topic).await;
    let (start, end) = time_range(&restart.expected);
    let service = &restart.second;
    let unsupported = "fleet_source_commit_metadata_unsupported";
    let exposed = service.metrics().await;
    assert!(
        exposed.iter().any(|s| s.name == unsupported),
        "{unsupported} is exposed"
    );
    assert_eq!(
        fleet_testkit::exposed_value(&exposed, unsupported, &[]),
        0.0,
        "the broker kept the first service's commit metadata; log:\n{}",
        service.log_tail()
    );
    restart.producer.await.unwrap();
    let expected = &restart.expected;
    let n = wait_for_windows(&prom, start, end, expected.len(), Duration::from_secs(90)).await;
    assert_eq!(n, expected.len(), "log:\n{}", service.log_tail());
    assert_samples_equal(&prometheus_samples(&prom, start, end).await, expected);
    assert_none_late_or_refused(&prom, service).await;
    restart.second.terminate().await;

    let group = format!("{topic}-group");
    let committed = kafka.committed_offsets(&group, topic, 4).await.unwrap();
    assert!(
        committed.iter().all(Option::is_some),
        "{group} committed every partition: {committed:?}"
    );
    let companion = format!("{group}.closed-windows");
    assert_eq!(
        kafka.committed_offsets(&companion, topic, 4).await.unwrap(),
        vec![None; 4],
        "nothing was committed to {companion}"
    );
}
