//! The test-support crate against the real services as local processes: a
//! broker round trip, what each broker answers for watermarks and times, a
//! Prometheus remote-write round trip, and a Prometheus that starts,
//! answers and scrapes. `tests/containers.rs` runs the same
//! round trips (`tests/common`) against Apache Kafka and Prometheus in Docker.
//!
//! Skipped (with `SKIPPED:` on stderr) when a binary is missing, unless the
//! `integration` feature or `FLEET_REQUIRE_SERVICES=1` makes that a failure.
#![allow(clippy::unwrap_used)] // helpers of the tests below

use std::time::Duration;

use fleet_testkit::{
    broker_kind_or_skip, broker_or_skip, poll_until, prometheus_or_skip, BrokerKind,
    PrometheusOptions, TestBroker,
};
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::{Offset, TopicPartitionList};

mod common;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_test_broker_round_trips_keyed_messages() {
    let Some(broker) = broker_or_skip().await else {
        return;
    };
    common::keyed_round_trip(&broker, &broker.log_path().display().to_string()).await;
}

/// What a broker answers about a one-partition topic holding 100 records,
/// the last 50 produced a second after the first 50: the high watermark,
/// and the offsets for a time between the two halves and for a minute after
/// the last record.
async fn watermark_and_offsets_for_times(broker: &TestBroker) -> (i64, Offset, Offset) {
    broker.create_topic("fidelity", 1).await.unwrap();
    let records = |from: usize| (from..from + 50).map(|i| ("VIN", format!("{{\"n\":{i}}}")));
    broker.produce_json("fidelity", records(0)).await.unwrap();
    tokio::time::sleep(Duration::from_millis(1100)).await;
    let between = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as i64;
    tokio::time::sleep(Duration::from_millis(100)).await;
    broker.produce_json("fidelity", records(50)).await.unwrap();

    let consumer: BaseConsumer = broker
        .client_config()
        .set("group.id", "fidelity")
        .create()
        .unwrap();
    let timeout = Duration::from_secs(10);
    let (_, high) = consumer.fetch_watermarks("fidelity", 0, timeout).unwrap();
    let offset_for = |time: i64| {
        let mut at = TopicPartitionList::new();
        at.add_partition_offset("fidelity", 0, Offset::Offset(time))
            .unwrap();
        let found = consumer.offsets_for_times(at, timeout).unwrap();
        found.elements()[0].offset()
    };
    (high, offset_for(between), offset_for(between + 60_000))
}

/// nisshi, the suite's broker, answers as Kafka does; Tansu 0.6 as
/// docs/ARCHITECTURE.md's table of its differences says: its high watermark
/// stops at the last batch's base offset + 1, and it answers a time after
/// the last record with the partition's first offset instead of its end.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_broker_answers_watermarks_and_times_as_documented() {
    if let Some(nisshi) = broker_kind_or_skip(BrokerKind::Nisshi).await {
        assert_eq!(
            watermark_and_offsets_for_times(&nisshi).await,
            (100, Offset::Offset(50), Offset::End)
        );
    }
    if let Some(tansu) = broker_kind_or_skip(BrokerKind::Tansu).await {
        let (high, between, after) = watermark_and_offsets_for_times(&tansu).await;
        assert!(
            (51..100).contains(&high),
            "Tansu's high watermark: {high} (the last batch's base offset + 1)"
        );
        assert_eq!(between, Offset::Offset(50));
        assert_eq!(
            after,
            Offset::Offset(0),
            "Tansu's offset for a time after the last record"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn prometheus_round_trips_a_remote_write_and_refuses_out_of_order() {
    let Some(prometheus) = prometheus_or_skip(PrometheusOptions::default()).await else {
        return;
    };
    common::remote_write_round_trip(&prometheus, &prometheus.log_path().display().to_string())
        .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn prometheus_starts_answers_and_scrapes() {
    let options = PrometheusOptions {
        scrape_self: true,
        ..PrometheusOptions::default()
    };
    let Some(prometheus) = prometheus_or_skip(options).await else {
        return;
    };
    assert!(prometheus.is_ready().await.unwrap());
    assert_eq!(
        prometheus.remote_write_url(),
        format!("{}/api/v1/write", prometheus.url())
    );
    assert!(prometheus
        .write_requests_by_code()
        .await
        .unwrap()
        .is_empty());

    // The first self-scrape lands within a scrape interval or two.
    let up = poll_until(Duration::from_secs(15), || async {
        let samples = prometheus.query("up", None).await.ok()?;
        samples.into_iter().find(|s| s.value == 1.0)
    })
    .await
    .unwrap_or_else(|| panic!("no up == 1; log: {}", prometheus.log_path().display()));
    assert_eq!(up.labels.get("job").map(String::as_str), Some("prometheus"));

    let series = prometheus
        .series_samples("up", up.timestamp_ms - 60_000, up.timestamp_ms)
        .await
        .unwrap();
    assert_eq!(series.len(), 1);
    assert!(series[0].samples.iter().all(|&(_, v)| v == 1.0));

    let scalar = prometheus
        .query("1 + 1", Some(1_764_000_005_000))
        .await
        .unwrap();
    assert_eq!(scalar[0].value, 2.0);
    assert_eq!(scalar[0].timestamp_ms, 1_764_000_005_000);
    assert!(prometheus.query("up{", None).await.is_err());
}
