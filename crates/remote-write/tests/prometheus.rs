//! The emitter against a real Prometheus (Debian's `/usr/bin/prometheus`,
//! remote-write receiver on), started per test on a free loopback port by
//! fleet-testkit: what is written can be read back with PromQL, and the
//! samples Prometheus refuses (out of order, duplicate with another value, out
//! of bounds) are isolated by bisection, dropped, counted by reason — and
//! nothing else is lost.
//!
//! Timestamps are near the wall clock (now − 10 min, on a 5 s boundary) so
//! they fall inside Prometheus's head block.
// Test code: a panic is the failure report.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::sync::Arc;
use std::time::Duration;

use common::{aggregate, expected, metric, metrics};
use fleet_core::telemetry::Readiness;
use fleet_core::{Checkpoint, WindowBatch};
use fleet_plan::MetricPlan;
use fleet_remote_write::{
    DropReason, Emitter, OnRetryExhausted, RemoteWriteBatch, RemoteWriteConfig,
};
use fleet_testkit::oracle::Expected;
use fleet_testkit::{prometheus_or_skip, Prometheus, PrometheusOptions};
use tokio::sync::{mpsc, watch};

mod common;

/// Writes to `prometheus`, and never blocks a test forever on an unexpected
/// retryable answer.
fn config(prometheus: &Prometheus) -> RemoteWriteConfig {
    RemoteWriteConfig {
        url: prometheus.remote_write_url(),
        on_retry_exhausted: OnRetryExhausted::Drop,
        max_retries: 3,
        ..RemoteWriteConfig::default()
    }
}

/// `(timestamp ms, value)` of every sample of the one series `selector`
/// matches, over the 10 minutes up to `time_ms`.
async fn samples(prometheus: &Prometheus, selector: &str, time_ms: i64) -> Vec<(i64, f64)> {
    let series = prometheus
        .series_samples(selector, time_ms - 10 * 60 * 1000, time_ms)
        .await
        .unwrap();
    assert!(
        series.len() <= 1,
        "{selector} matches several series: {series:?}"
    );
    series
        .into_iter()
        .next()
        .map(|s| s.samples)
        .unwrap_or_default()
}

/// How a written metric's value is computed from what its aggregate holds.
type ValueOf = fn(&Expected) -> f64;

/// Now − 10 min on a 5 s boundary.
fn recent_window_end() -> i64 {
    let now = fleet_core::telemetry::wall_clock_ms();
    let t = now - 10 * 60 * 1000;
    t - t.rem_euclid(5000)
}

#[tokio::test]
async fn writes_two_windows_of_two_groups_and_reads_them_back() {
    let Some(prometheus) = prometheus_or_skip(PrometheusOptions::default()).await else {
        return;
    };
    let t1 = recent_window_end();
    let t2 = t1 + 5000;
    let cfg = RemoteWriteConfig {
        metric_prefix: "fleet_".into(),
        constant_labels: [("env".to_string(), "test".to_string())].into(),
        ..config(&prometheus)
    };
    let (root, m) = metrics();
    let (tx, rx) = mpsc::channel(4);
    let (acks, acked) = watch::channel(None);
    let checkpoint = |offset, end| Checkpoint {
        resume_offsets: [(0, offset)].into(),
        closed_through: [(fleet_core::Scope::All, end)].into(),
        epoch: 0,
    };
    // Per window: its end, the checkpoint's offset, the seeds of both groups.
    for (end, offset, [nebulara, zephyr]) in [(t1, 100, [0, 1]), (t2, 200, [2, 3])] {
        let aggregates = vec![
            aggregate("Nebulara", "UK", end, nebulara),
            aggregate("Zephyr", "FR", end, zephyr),
        ];
        let checkpoint = checkpoint(offset, end);
        tx.send(WindowBatch {
            firing_points: Vec::new(),
            vehicle_samples: Vec::new(),
            aggregates,
            checkpoint,
        })
        .await
        .unwrap();
    }
    drop(tx);
    let readiness = Arc::new(Readiness::default());
    tokio::time::timeout(
        Duration::from_secs(60),
        fleet_remote_write::run(cfg, rx, acks, m, readiness),
    )
    .await
    .expect("the stage finished")
    .unwrap();

    assert_eq!(*acked.borrow(), Some(checkpoint(200, t2)));
    assert_eq!(metric(&root, "fleet_remote_write_samples_sent_total"), 36.0);
    for reason in [
        "out_of_order",
        "duplicate",
        "out_of_bounds",
        "other",
        "rejected",
    ] {
        let series = format!(r#"fleet_remote_write_samples_dropped_total{{reason="{reason}"}}"#);
        assert_eq!(metric(&root, &series), 0.0, "{reason}");
    }

    // The design's dashboard queries work on what was written.
    let total = prometheus
        .query("sum(fleet_vehicles_in_motion)", Some(t2))
        .await
        .unwrap();
    assert_eq!(total[0].value, 25.0, "12 + 13 at the newest window");
    let series = prometheus.query("fleet_warnings", Some(t2)).await.unwrap();
    assert_eq!(series.len(), 2);
    for s in &series {
        let names: Vec<&str> = s.labels.keys().map(String::as_str).collect();
        assert_eq!(names, ["__name__", "env", "model", "region"], "{s:?}");
        assert_eq!(s.labels["env"], "test");
    }
    let written: [(&str, ValueOf); 4] = [
        ("fleet_vehicles_in_motion", |a| a.vehicles_in_motion as f64),
        ("fleet_warnings", |a| a.warnings as f64),
        ("fleet_ic_engine_rpm_avg", |a| a.ic_rpm_avg().unwrap()),
        ("fleet_electric_motor_rpm_count", |a| {
            a.electric_rpm_count as f64
        }),
    ];
    for (model, region, seeds) in [("Nebulara", "UK", [0, 2]), ("Zephyr", "FR", [1, 3])] {
        for (name, value) in written {
            let selector = format!(r#"{name}{{model="{model}",region="{region}",env="test"}}"#);
            let expected = vec![
                (t1, value(&expected(model, region, t1, seeds[0]))),
                (t2, value(&expected(model, region, t2, seeds[1]))),
            ];
            assert_eq!(
                samples(&prometheus, &selector, t2).await,
                expected,
                "{selector}"
            );
        }
    }
}

#[tokio::test]
async fn bad_samples_are_isolated_dropped_and_counted_the_rest_written() {
    let Some(prometheus) = prometheus_or_skip(PrometheusOptions::default()).await else {
        return;
    };
    let t1 = recent_window_end();
    let (t2, t3) = (t1 + 5000, t1 + 10_000);
    let (root, m) = metrics();
    let mut emitter = Emitter::new(&config(&prometheus), m).unwrap();
    let naming = config(&prometheus).series_naming(Arc::new(MetricPlan::reference_demo()));

    let first = [aggregate("A", "UK", t1, 0), aggregate("A", "UK", t2, 0)];
    let d = emitter
        .deliver(RemoteWriteBatch::from_aggregates(&first, &naming))
        .await;
    assert_eq!((d.written, d.dropped_total()), (18, 0));

    // Resent, identical but older than A's newest sample: out of order.
    let stale = aggregate("A", "UK", t1, 0);
    // Same timestamp as A's newest sample: the 7 metrics whose value changed
    // are duplicates; ic_engine_rpm_count and electric_motor_rpm_sum keep
    // theirs, and Prometheus accepts a repeated identical sample.
    let conflicting = aggregate("A", "UK", t2, 1);
    // Far older than anything in the head block (more than an hour before its
    // newest sample): out of bounds.
    let ancient = aggregate("C", "UK", t1 - 3 * 3600 * 1000, 0);
    let good = [
        aggregate("A", "UK", t3, 0),
        aggregate("B", "FR", t1, 4),
        aggregate("B", "FR", t2, 5),
    ];
    let mut second = vec![stale, conflicting, ancient];
    second.extend(good.iter().cloned());
    let d = tokio::time::timeout(
        Duration::from_secs(60),
        emitter.deliver(RemoteWriteBatch::from_aggregates(&second, &naming)),
    )
    .await
    .expect("bisection finished");
    assert_eq!(
        d.dropped(DropReason::OutOfOrder),
        9,
        "{d:#?}\n{}",
        std::fs::read_to_string(prometheus.log_path()).unwrap_or_default()
    );
    assert_eq!(d.dropped(DropReason::Duplicate), 7, "{d:#?}");
    assert_eq!(d.dropped(DropReason::OutOfBounds), 9, "{d:#?}");
    assert_eq!(d.dropped_total(), 25, "{d:#?}");
    assert_eq!(d.written, 27 + 2);

    for (reason, n) in [
        ("out_of_order", 9.0),
        ("duplicate", 7.0),
        ("out_of_bounds", 9.0),
        ("other", 0.0),
    ] {
        let series = format!(r#"fleet_remote_write_samples_dropped_total{{reason="{reason}"}}"#);
        assert_eq!(metric(&root, &series), n, "{reason}");
    }
    assert_eq!(
        metric(&root, "fleet_remote_write_samples_sent_total"),
        18.0 + 29.0
    );

    // A keeps its first values at t1 and t2, and gained t3.
    let a = |f: ValueOf| {
        vec![
            (t1, f(&expected("A", "UK", t1, 0))),
            (t2, f(&expected("A", "UK", t2, 0))),
            (t3, f(&expected("A", "UK", t3, 0))),
        ]
    };
    assert_eq!(
        samples(&prometheus, r#"vehicles_in_motion{model="A"}"#, t3).await,
        a(|x| x.vehicles_in_motion as f64)
    );
    assert_eq!(
        samples(&prometheus, r#"electric_motor_rpm_avg{model="A"}"#, t3).await,
        a(|x| x.electric_rpm_avg().unwrap())
    );
    // B is complete.
    assert_eq!(
        samples(&prometheus, r#"warnings{model="B",region="FR"}"#, t3).await,
        vec![(t1, 6.0), (t2, 7.0)]
    );
    // Nothing of C was written.
    assert!(prometheus
        .query(r#"{model="C"}"#, Some(t3))
        .await
        .unwrap()
        .is_empty());
}
