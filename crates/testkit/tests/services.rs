//! The test-support crate against the real services as local processes: a
//! Tansu round trip, a Prometheus remote-write round trip, and a Prometheus
//! that starts, answers and scrapes. `tests/containers.rs` runs the same
//! round trips (`tests/common`) against Apache Kafka and Prometheus in Docker.
//!
//! Skipped (with `SKIPPED:` on stderr) when a binary is missing, unless the
//! `integration` feature or `FLEET_REQUIRE_SERVICES=1` makes that a failure.

use std::time::Duration;

use fleet_testkit::{poll_until, prometheus_or_skip, tansu_or_skip, PrometheusOptions};

mod common;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tansu_round_trips_keyed_messages() {
    let Some(tansu) = tansu_or_skip().await else {
        return;
    };
    common::keyed_round_trip(&tansu, &tansu.log_path().display().to_string()).await;
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
