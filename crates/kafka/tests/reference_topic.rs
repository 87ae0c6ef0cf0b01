//! The reference-data topic against a real broker (nisshi by default): the table is sent
//! once the log is read to its end — updates applied, tombstoned vehicles
//! gone — and later records follow as deltas.
#![allow(clippy::unwrap_used)]

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use fleet_core::telemetry::Readiness;
use fleet_core::{ReferenceChange, ReferenceChanges};
use fleet_kafka::producer::EventPublisher;
use fleet_kafka::KafkaConfig;
use fleet_testkit::broker_or_skip;
use tokio::sync::{mpsc, oneshot};

fn config(brokers: String, topic: &str) -> KafkaConfig {
    KafkaConfig {
        brokers,
        topic: topic.into(),
        ..KafkaConfig::default()
    }
}

async fn publish(publisher: &EventPublisher, records: &[(&str, &str)]) {
    publisher
        .publish_raw(records.iter().map(|(k, v)| (k.as_bytes(), v.as_bytes())))
        .await
        .unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn snapshot_after_catching_up_then_deltas_with_updates_and_tombstones() {
    let Some(broker) = broker_or_skip().await else {
        return;
    };
    broker.create_topic("vehicles", 3).await.unwrap();
    let cfg = config(broker.bootstrap_servers(), "vehicles");
    let publisher = EventPublisher::new(&cfg).unwrap();
    // 200 vehicles, then 20 of them re-registered as another model, 10 retired,
    // and one malformed record, which is skipped.
    let vins: Vec<String> = (0..200).map(|i| format!("VIN{i:05}")).collect();
    let first: Vec<(String, String)> = vins
        .iter()
        .map(|v| {
            (
                v.clone(),
                r#"{"model":"Aurora","fuel_type":"hybrid"}"#.to_string(),
            )
        })
        .collect();
    let pairs: Vec<(&str, &str)> = first
        .iter()
        .map(|(k, v)| (k.as_str(), v.as_str()))
        .collect();
    publish(&publisher, &pairs).await;
    let moved: Vec<(&str, &str)> = vins[..20]
        .iter()
        .map(|v| (v.as_str(), r#"{"model":"Borealis"}"#))
        .collect();
    publish(&publisher, &moved).await;
    let retired: Vec<(&str, &str)> = vins[190..].iter().map(|v| (v.as_str(), "")).collect();
    publish(&publisher, &retired).await;
    publish(&publisher, &[("VIN00050", "not json")]).await;

    let (tx, mut rx) = mpsc::channel(16);
    let (stop, stopped) = oneshot::channel::<()>();
    let readiness = Arc::new(Readiness::default());
    let follower = {
        let readiness = Arc::clone(&readiness);
        tokio::spawn(async move {
            fleet_kafka::reference::follow(&cfg, "vehicles", tx, readiness, async {
                let _ = stopped.await;
            })
            .await
        })
    };

    let snapshot = tokio::time::timeout(Duration::from_secs(30), rx.recv())
        .await
        .expect("no snapshot within 30 s")
        .unwrap();
    let ReferenceChanges::Snapshot(records) = snapshot else {
        panic!("the first message is not the snapshot: {snapshot:?}");
    };
    let mut ready = readiness.check().is_ok();
    for _ in 0..100 {
        if ready {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
        ready = readiness.check().is_ok();
    }
    assert!(ready, "ready once caught up: {:?}", readiness.check());
    let table: BTreeMap<String, String> = records
        .iter()
        .map(|r| (r.vehicle_id.clone(), r.model.clone()))
        .collect();
    assert_eq!(table.len(), 190, "the retired vehicles are gone");
    assert_eq!(table["VIN00000"], "Borealis", "the update wins");
    assert_eq!(
        table["VIN00050"], "Aurora",
        "the malformed record is skipped"
    );
    assert!(!table.contains_key("VIN00195"));
    let aurora = records.iter().find(|r| r.vehicle_id == "VIN00100").unwrap();
    assert_eq!(aurora.attributes["fuel_type"], "hybrid");

    // Then it follows: an update and a tombstone arrive as a delta.
    let publisher = EventPublisher::new(&config(broker.bootstrap_servers(), "vehicles")).unwrap();
    publish(
        &publisher,
        &[("VIN00100", r#"{"model":"Cygnus"}"#), ("VIN00101", "")],
    )
    .await;
    let mut changes = Vec::new();
    while changes.len() < 2 {
        match tokio::time::timeout(Duration::from_secs(30), rx.recv())
            .await
            .expect("no delta within 30 s")
            .unwrap()
        {
            ReferenceChanges::Delta(c) => changes.extend(c),
            other => panic!("a second snapshot: {other:?}"),
        }
    }
    assert!(changes.iter().any(|c| matches!(c,
        ReferenceChange::Upsert(r) if r.vehicle_id == "VIN00100" && r.model == "Cygnus")));
    assert!(changes.iter().any(|c| matches!(c,
        ReferenceChange::Delete { vehicle_id } if vehicle_id == "VIN00101")));

    stop.send(()).unwrap();
    follower.await.unwrap().unwrap();
}
