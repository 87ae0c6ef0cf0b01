//! The source against a real broker (nisshi by default) that goes away while the source
//! runs: the source's loop must keep ticking whatever the coordinator does,
//! or its readiness freezes at "ready".
#![allow(clippy::unwrap_used)]

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use fleet_core::telemetry::Readiness;
use fleet_core::{
    Checkpoint, OutputMode, RevocationFence, Scope, SourceBatcher, WatermarkRules,
    WatermarkTracker, WindowSpec,
};
use fleet_kafka::producer::EventPublisher;
use fleet_kafka::source::{SinkFeedback, READY_PROGRESS};
use fleet_kafka::{KafkaConfig, SourceMetrics};
use fleet_testkit::broker_or_skip;
use prometheus_client::registry::Registry;
use tokio::sync::{mpsc, watch};
use tokio::time::Instant;

const EVENTS: usize = 200;
const START_MS: i64 = 1_764_000_000_000;

/// Polls the readiness conditions every 50 ms until `done` holds or `limit`
/// passes; returns the last answer.
async fn readiness_until(
    readiness: &Readiness,
    limit: Duration,
    done: impl Fn(&Result<(), Vec<String>>) -> bool,
) -> Result<(), Vec<String>> {
    let deadline = Instant::now() + limit;
    loop {
        let state = readiness.check();
        if done(&state) || Instant::now() >= deadline {
            return state;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// The first commit after a start is synchronous and read back: it finds out
/// whether the broker keeps commit metadata. When the broker has just gone,
/// that commit waits on the coordinator for seconds. It must not hold the
/// source's loop meanwhile: `kafka_progress` still turns unready once the
/// progress timeout has passed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn progress_turns_unready_while_the_first_commit_waits_on_a_vanished_broker() {
    let Some(broker) = broker_or_skip().await else {
        return;
    };
    broker.create_topic("vanishing", 1).await.unwrap();
    let progress_timeout = Duration::from_secs(1);
    let cfg = KafkaConfig {
        brokers: broker.bootstrap_servers(),
        topic: "vanishing".into(),
        group_id: "vanishing-source".into(),
        commit_interval_ms: 100,
        progress_timeout_ms: progress_timeout.as_millis() as u64,
        ..KafkaConfig::default()
    };
    let records: Vec<(String, String)> = (0..EVENTS)
        .map(|i| {
            let vin = format!("VIN{:014}", i % 20);
            let at = START_MS + i as i64 * 50;
            let event = format!(
                r#"{{"eventType":"IC_RPM","vehicleId":"{vin}","region":"UK","timestamp":{at},"measurement":900}}"#
            );
            (vin, event)
        })
        .collect();
    EventPublisher::new(&cfg)
        .unwrap()
        .publish_raw(records.iter().map(|(k, v)| (k.as_bytes(), v.as_bytes())))
        .await
        .unwrap();

    let (head, mut batches) = mpsc::channel(16);
    let (acks, acks_rx) = watch::channel(None);
    let fence = Arc::new(RevocationFence::default());
    let readiness = Arc::new(Readiness::default());
    let tracker = WatermarkTracker::new(WatermarkRules::defaults(), WindowSpec::new(5000).unwrap());
    let batcher = SourceBatcher::new(tracker, cfg.max_batch_events, OutputMode::Single);
    let decoder = fleet_schema::RecordReader::Fixed(fleet_core::decode::Decoder::new(
        &fleet_plan::MetricPlan::reference_demo().input,
    ));
    let source = tokio::spawn(fleet_kafka::source::run(
        cfg,
        decoder,
        batcher,
        head,
        SinkFeedback {
            acks: acks_rx,
            fence: Arc::clone(&fence),
            firing: None,
        },
        SourceMetrics::register(&mut Registry::default()),
        Arc::clone(&readiness),
        None,
        std::future::pending(),
    ));
    // The pipeline: takes everything, counts the events.
    let (consumed_tx, mut consumed) = watch::channel(0usize);
    let pipeline = tokio::spawn(async move {
        let mut total = 0;
        while let Some(msg) = batches.recv().await {
            if let fleet_core::Msg::Data(batch) = msg {
                total += batch.len();
                let _ = consumed_tx.send(total);
            }
        }
    });
    tokio::time::timeout(Duration::from_secs(30), consumed.wait_for(|n| *n >= EVENTS))
        .await
        .expect("the source consumes every event")
        .unwrap();
    let state = readiness_until(&readiness, Duration::from_secs(30), Result::is_ok).await;
    assert_eq!(state, Ok(()), "ready while consuming");

    broker.stop();
    // The sink accepts everything just after: the source's first commit
    // finds no coordinator.
    acks.send(Some(Checkpoint {
        resume_offsets: BTreeMap::from([(0, EVENTS as i64)]),
        closed_through: BTreeMap::from([(Scope::All, START_MS + 5000)]),
        epoch: fence.epoch(),
    }))
    .unwrap();
    let stopped = Instant::now();
    // The broker's loss shows in librdkafka's statistics (every second),
    // then the progress timeout runs; a few seconds more of slack.
    let limit = progress_timeout + Duration::from_secs(4);
    let state = readiness_until(&readiness, limit, |state| {
        state
            .as_ref()
            .is_err_and(|failing| failing.iter().any(|f| f.starts_with(READY_PROGRESS)))
    })
    .await;
    let failing = state.expect_err("kafka_progress unready once the broker is gone");
    assert!(
        failing
            .iter()
            .any(|f| f.starts_with(READY_PROGRESS) && f.contains("no connection")),
        "{failing:?} after {:?}",
        stopped.elapsed()
    );

    // A shutdown would wait on the missing broker for its final commit.
    source.abort();
    pipeline.abort();
}
