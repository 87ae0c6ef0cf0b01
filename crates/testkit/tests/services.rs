//! The test-support crate against the real services: a Tansu round trip
//! and a Prometheus that starts, answers and scrapes.
//!
//! Skipped (with `SKIPPED:` on stderr) when a binary is missing, unless the
//! `integration` feature or `FLEET_REQUIRE_SERVICES=1` makes that a failure.

use std::time::Duration;

use fleet_testkit::{poll_until, prometheus_or_skip, tansu_or_skip, PrometheusOptions};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tansu_round_trips_keyed_messages() {
    let Some(tansu) = tansu_or_skip().await else {
        return;
    };
    tansu.create_topic("raw-events", 4).await.unwrap();
    assert_eq!(tansu.partitions_with_leader("raw-events").await.unwrap(), 4);

    let sent: Vec<(String, String)> = (0..100)
        .map(|i| (format!("VIN{:014}", i % 17), format!(r#"{{"n":{i}}}"#)))
        .collect();
    let delivered = tansu
        .produce_json("raw-events", sent.iter().map(|(k, v)| (k, v)))
        .await
        .unwrap();
    assert_eq!(delivered.len(), 100);

    let received = tansu
        .consume_all("raw-events", 100, Duration::from_secs(20))
        .await
        .unwrap();
    assert_eq!(received.len(), 100, "log: {}", tansu.log_path().display());

    // Same messages, byte for byte, each where its delivery report said.
    let mut got: Vec<(Vec<u8>, Vec<u8>)> = received
        .iter()
        .map(|r| (r.key.clone().unwrap(), r.value.clone().unwrap()))
        .collect();
    let mut want: Vec<(Vec<u8>, Vec<u8>)> = sent
        .iter()
        .map(|(k, v)| (k.clone().into_bytes(), v.clone().into_bytes()))
        .collect();
    got.sort();
    want.sort();
    assert_eq!(got, want);
    let mut placed: Vec<(i32, i64)> = received.iter().map(|r| (r.partition, r.offset)).collect();
    let mut reported = delivered.clone();
    placed.sort();
    reported.sort();
    assert_eq!(placed, reported);

    // Keyed: one key, one partition, in production order.
    for (key, _) in &sent {
        let partitions: std::collections::BTreeSet<i32> = received
            .iter()
            .filter(|r| r.key.as_deref() == Some(key.as_bytes()))
            .map(|r| r.partition)
            .collect();
        assert_eq!(partitions.len(), 1, "key {key} spread over {partitions:?}");
    }
    let used: std::collections::BTreeSet<i32> = received.iter().map(|r| r.partition).collect();
    assert!(used.len() > 1, "17 keys all landed in {used:?}");
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
