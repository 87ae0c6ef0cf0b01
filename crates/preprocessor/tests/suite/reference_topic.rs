//! Reference data from a compacted Kafka topic, end to end on a real broker and
//! Prometheus: the service is not ready until it has read the topic, then
//! follows it while events flow. Vehicles re-registered under another model
//! are counted under the new model from the next events on, and retired
//! vehicles turn unknown; every window equals the batch computation with the
//! reference data in force when its events were processed.
#![allow(clippy::unwrap_used)] // helpers of the test below

use std::collections::{BTreeMap, HashMap};
use std::time::Duration;

use crate::common::*;
use fleet_kafka::producer::EventPublisher;
use fleet_testkit::oracle;

fn publisher(kafka: &fleet_testkit::TestBroker, topic: &str) -> EventPublisher {
    EventPublisher::new(&fleet_kafka::KafkaConfig {
        brokers: kafka.bootstrap_servers(),
        topic: topic.into(),
        ..fleet_kafka::KafkaConfig::default()
    })
    .unwrap()
}

async fn publish_reference(publisher: &EventPublisher, records: &[(String, Option<String>)]) {
    let encoded: Vec<(String, String)> = records
        .iter()
        .map(|(vin, model)| {
            let value = model
                .as_ref()
                .map(|m| serde_json::json!({ "model": m }).to_string())
                .unwrap_or_default();
            (vin.clone(), value)
        })
        .collect();
    publisher
        .publish_raw(encoded.iter().map(|(k, v)| (k.as_bytes(), v.as_bytes())))
        .await
        .unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_topic_is_followed_while_events_flow() {
    let _serial = SERIAL.lock().await;
    let Some((kafka, prom)) = services().await else {
        return;
    };
    let run = generate(120, 60, 43, in_bound);
    kafka.create_topic("ref-events", 2).await.unwrap();
    kafka.create_topic("ref-vehicles", 2).await.unwrap();
    let reference_publisher = publisher(&kafka, "ref-vehicles");
    let first: Vec<(String, Option<String>)> = run
        .reference
        .iter()
        .map(|(vin, model)| (vin.clone(), Some(model.clone())))
        .collect();
    publish_reference(&reference_publisher, &first).await;

    // No CSV: the topic is the reference data. Partitions stay active between
    // the two halves (the idle timeout outlasts the pause).
    let config = config_for(&run, &kafka, &prom, "ref-events");
    edit_config(&config, |text| {
        text.replace(
            &format!("csv_path = \"{}\"", run.reference_csv.display()),
            "topic = \"ref-vehicles\"",
        )
        .replace("idle_timeout_ms = 2000", "idle_timeout_ms = 8000")
    });
    let service = Service::start(&config);
    let ready = fleet_testkit::poll_until(Duration::from_secs(30), || async {
        service.readiness().await.0.then_some(())
    })
    .await;
    assert!(ready.is_some(), "never ready: {}", service.log_tail());
    assert_eq!(
        service
            .metric("fleet_enricher_reference_vehicles", &[])
            .await,
        run.reference.len() as f64
    );

    // The first half of the fleet's time, under the first reference data.
    let split = {
        let first_ts = run.events.iter().map(|e| e.timestamp).min().unwrap();
        let start = first_ts - first_ts.rem_euclid(WINDOW_MS);
        start + 6 * WINDOW_MS
    };
    let (before, after): (Vec<_>, Vec<_>) = run
        .events
        .iter()
        .cloned()
        .partition(|e| e.timestamp < split);
    kafka.produce_events("ref-events", &before).await.unwrap();
    let sent = fleet_testkit::poll_until(Duration::from_secs(30), || async {
        let n = service.metric("fleet_enricher_events_total", &[]).await;
        (n >= before.len() as f64).then_some(())
    })
    .await;
    assert!(
        sent.is_some(),
        "first half not enriched: {}",
        service.log_tail()
    );

    // A fifth of the fleet is re-registered as another model, a tenth retired.
    let mut vins: Vec<&String> = run.reference.keys().collect();
    vins.sort();
    let mut second: HashMap<String, String> = run.reference.clone();
    let mut changes = Vec::new();
    for (i, vin) in vins.iter().enumerate() {
        if i % 5 == 0 {
            second.insert((*vin).clone(), "Voyager".into());
            changes.push(((*vin).clone(), Some("Voyager".to_string())));
        } else if i % 10 == 1 {
            second.remove(*vin);
            changes.push(((*vin).clone(), None));
        }
    }
    publish_reference(&reference_publisher, &changes).await;
    let applied = fleet_testkit::poll_until(Duration::from_secs(30), || async {
        let n = service
            .metric("fleet_enricher_reference_changes_total", &[])
            .await;
        (n >= changes.len() as f64).then_some(())
    })
    .await;
    assert!(
        applied.is_some(),
        "changes not applied: {}",
        service.log_tail()
    );
    assert_eq!(
        service
            .metric("fleet_enricher_reference_vehicles", &[])
            .await,
        second.len() as f64
    );
    kafka.produce_events("ref-events", &after).await.unwrap();

    let mut expected = oracle::expected_windows(&before, &run.reference, WINDOW_MS, None);
    let later = oracle::expected_windows(&after, &second, WINDOW_MS, None);
    assert!(
        expected.keys().all(|k| k.0 <= split) && later.keys().all(|k| k.0 > split),
        "the halves share a window"
    );
    expected.extend(later);
    assert!(expected.keys().any(|k| k.1 == "Voyager"));
    assert!(expected.keys().any(|k| k.1 == "unknown"));
    let expected: BTreeMap<_, _> = expected;
    assert_prometheus_holds(&prom, &service, &expected).await;
    service.terminate().await;
}
