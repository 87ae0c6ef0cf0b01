//! The emitter against a real Prometheus (Debian's `/usr/bin/prometheus`,
//! 2.42, remote-write receiver on), started per test on a free loopback port:
//! what is written can be read back with PromQL, and the samples Prometheus
//! refuses (out of order, duplicate with another value, out of bounds) are
//! isolated by bisection, dropped, counted by reason — and nothing else is lost.
//!
//! Timestamps are near the wall clock (now − 10 min, on a 5 s boundary) so
//! they fall inside Prometheus's head block.
// Test code: a panic is the failure report.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use fleet_core::{Checkpoint, GroupKey, WindowAggregate, WindowBatch};
use fleet_remote_write::{
    DropReason, Emitter, OnRetryExhausted, RemoteWriteBatch, RemoteWriteConfig, RemoteWriteMetrics,
};
use prometheus_client::registry::Registry;
use serde_json::Value;
use tokio::sync::{mpsc, watch};

const PROMETHEUS: &str = "/usr/bin/prometheus";

/// A Prometheus of its own for one test; killed on drop.
// Private stand-in until the shared test kit exists.
struct Prometheus {
    child: Child,
    port: u16,
    dir: tempfile::TempDir,
}

impl Prometheus {
    async fn start() -> Self {
        assert!(
            Path::new(PROMETHEUS).exists(),
            "{PROMETHEUS} is missing: apt-get install prometheus"
        );
        let dir = tempfile::tempdir().unwrap();
        let config = dir.path().join("prometheus.yml");
        std::fs::write(&config, "scrape_configs: []\n").unwrap();
        let port = TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let log = std::fs::File::create(dir.path().join("prometheus.log")).unwrap();
        let child = Command::new(PROMETHEUS)
            .arg(format!("--config.file={}", config.display()))
            .arg(format!(
                "--storage.tsdb.path={}",
                dir.path().join("data").display()
            ))
            .arg(format!("--web.listen-address=127.0.0.1:{port}"))
            .arg("--web.enable-remote-write-receiver")
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .unwrap();
        let mut prometheus = Prometheus { child, port, dir };
        prometheus.wait_ready().await;
        prometheus
    }

    async fn wait_ready(&mut self) {
        let url = format!("http://127.0.0.1:{}/-/ready", self.port);
        let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
        loop {
            if let Ok(r) = reqwest::get(&url).await {
                if r.status().is_success() {
                    return;
                }
            }
            if let Some(status) = self.child.try_wait().unwrap() {
                panic!("prometheus exited with {status}:\n{}", self.log());
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "prometheus not ready after 30 s:\n{}",
                self.log()
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    fn log(&self) -> String {
        std::fs::read_to_string(self.log_path()).unwrap_or_default()
    }

    fn log_path(&self) -> PathBuf {
        self.dir.path().join("prometheus.log")
    }

    fn config(&self) -> RemoteWriteConfig {
        RemoteWriteConfig {
            url: format!("http://127.0.0.1:{}/api/v1/write", self.port),
            // Never block a test forever on an unexpected retryable answer.
            on_retry_exhausted: OnRetryExhausted::Drop,
            max_retries: 3,
            ..RemoteWriteConfig::default()
        }
    }

    /// Runs an instant query at `time_ms`; returns `data.result`.
    async fn query(&self, promql: &str, time_ms: i64) -> Vec<Value> {
        let url = reqwest::Url::parse_with_params(
            &format!("http://127.0.0.1:{}/api/v1/query", self.port),
            &[
                ("query", promql),
                ("time", &format!("{:.3}", time_ms as f64 / 1000.0)),
            ],
        )
        .unwrap();
        let body: Value =
            serde_json::from_str(&reqwest::get(url).await.unwrap().text().await.unwrap()).unwrap();
        assert_eq!(body["status"], "success", "{body}");
        body["data"]["result"].as_array().unwrap().clone()
    }

    /// `(timestamp ms, value)` of every sample of the one series `selector`
    /// matches, over the last 10 minutes before `time_ms`.
    async fn samples(&self, selector: &str, time_ms: i64) -> Vec<(i64, f64)> {
        let result = self.query(&format!("{selector}[10m]"), time_ms).await;
        assert!(
            result.len() <= 1,
            "{selector} matches several series: {result:?}"
        );
        result
            .first()
            .map(|series| {
                series["values"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .map(|pair| {
                        let t = (pair[0].as_f64().unwrap() * 1000.0).round() as i64;
                        (t, pair[1].as_str().unwrap().parse().unwrap())
                    })
                    .collect()
            })
            .unwrap_or_default()
    }
}

impl Drop for Prometheus {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Now − 10 min on a 5 s boundary.
fn recent_window_end() -> i64 {
    let now = fleet_core::telemetry::wall_clock_ms();
    let t = now - 10 * 60 * 1000;
    t - t.rem_euclid(5000)
}

fn aggregate(model: &str, region: &str, window_end: i64, seed: u64) -> WindowAggregate {
    WindowAggregate {
        window_start: window_end - 5000,
        window_end,
        group: GroupKey {
            model: model.into(),
            region: region.into(),
        },
        vehicles_in_motion: 10 + seed,
        warnings: 2 + seed as i64,
        vehicles_reporting: 20 + seed,
        ic_rpm_sum: 3000 + 100 * seed as i64,
        ic_rpm_count: 2,
        electric_rpm_sum: -60,
        electric_rpm_count: 3 + seed,
        events: 30,
    }
}

fn metrics() -> (Registry, RemoteWriteMetrics) {
    let mut root = Registry::with_prefix("fleet");
    let m = RemoteWriteMetrics::register(root.sub_registry_with_prefix("remote_write"));
    (root, m)
}

fn metric(root: &Registry, series: &str) -> f64 {
    let mut text = String::new();
    prometheus_client::encoding::text::encode(&mut text, root).unwrap();
    text.lines()
        .find_map(|l| l.strip_prefix(series)?.strip_prefix(' '))
        .unwrap_or_else(|| panic!("no {series} in\n{text}"))
        .parse()
        .unwrap()
}

#[tokio::test]
async fn writes_two_windows_of_two_groups_and_reads_them_back() {
    let prometheus = Prometheus::start().await;
    let t1 = recent_window_end();
    let t2 = t1 + 5000;
    let cfg = RemoteWriteConfig {
        metric_prefix: "fleet_".into(),
        constant_labels: [("env".to_string(), "test".to_string())].into(),
        ..prometheus.config()
    };
    let (root, m) = metrics();
    let (tx, rx) = mpsc::channel(4);
    let (acks, acked) = watch::channel(None);
    let checkpoint = |offset, end| Checkpoint {
        resume_offsets: [(0, offset)].into(),
        closed_through: Some(end),
    };
    tx.send(WindowBatch {
        aggregates: vec![
            aggregate("Nebulara", "UK", t1, 0),
            aggregate("Zephyr", "FR", t1, 1),
        ],
        checkpoint: checkpoint(100, t1),
    })
    .await
    .unwrap();
    tx.send(WindowBatch {
        aggregates: vec![
            aggregate("Nebulara", "UK", t2, 2),
            aggregate("Zephyr", "FR", t2, 3),
        ],
        checkpoint: checkpoint(200, t2),
    })
    .await
    .unwrap();
    drop(tx);
    tokio::time::timeout(
        Duration::from_secs(60),
        fleet_remote_write::run(cfg, rx, acks, m),
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
    let total = prometheus.query("sum(fleet_vehicles_in_motion)", t2).await;
    assert_eq!(total[0]["value"][1], "25", "12 + 13 at the newest window");
    let series = prometheus.query("fleet_warnings", t2).await;
    assert_eq!(series.len(), 2);
    for s in &series {
        let labels = s["metric"].as_object().unwrap();
        let names: Vec<&str> = labels.keys().map(String::as_str).collect();
        assert_eq!(names, ["__name__", "env", "model", "region"], "{s}");
        assert_eq!(labels["env"], "test");
    }
    for (model, region, seeds) in [("Nebulara", "UK", [0, 2]), ("Zephyr", "FR", [1, 3])] {
        let sel =
            |metric: &str| format!(r#"{metric}{{model="{model}",region="{region}",env="test"}}"#);
        let expect = |f: fn(&WindowAggregate) -> f64| {
            vec![
                (t1, f(&aggregate(model, region, t1, seeds[0]))),
                (t2, f(&aggregate(model, region, t2, seeds[1]))),
            ]
        };
        assert_eq!(
            prometheus
                .samples(&sel("fleet_vehicles_in_motion"), t2)
                .await,
            expect(|a| a.vehicles_in_motion as f64)
        );
        assert_eq!(
            prometheus.samples(&sel("fleet_warnings"), t2).await,
            expect(|a| a.warnings as f64)
        );
        assert_eq!(
            prometheus
                .samples(&sel("fleet_ic_engine_rpm_avg"), t2)
                .await,
            expect(|a| a.ic_rpm_avg().unwrap())
        );
        assert_eq!(
            prometheus
                .samples(&sel("fleet_electric_motor_rpm_count"), t2)
                .await,
            expect(|a| a.electric_rpm_count as f64)
        );
    }
}

#[tokio::test]
async fn bad_samples_are_isolated_dropped_and_counted_the_rest_written() {
    let prometheus = Prometheus::start().await;
    let t1 = recent_window_end();
    let (t2, t3) = (t1 + 5000, t1 + 10_000);
    let (root, m) = metrics();
    let mut emitter = Emitter::new(&prometheus.config(), m).unwrap();
    let naming = prometheus.config().series_naming();

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
        prometheus.log()
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
    let a = |f: fn(&WindowAggregate) -> f64| {
        vec![
            (t1, f(&aggregate("A", "UK", t1, 0))),
            (t2, f(&aggregate("A", "UK", t2, 0))),
            (t3, f(&aggregate("A", "UK", t3, 0))),
        ]
    };
    assert_eq!(
        prometheus
            .samples(r#"vehicles_in_motion{model="A"}"#, t3)
            .await,
        a(|x| x.vehicles_in_motion as f64)
    );
    assert_eq!(
        prometheus
            .samples(r#"electric_motor_rpm_avg{model="A"}"#, t3)
            .await,
        a(|x| x.electric_rpm_avg().unwrap())
    );
    // B is complete.
    assert_eq!(
        prometheus
            .samples(r#"warnings{model="B",region="FR"}"#, t3)
            .await,
        vec![(t1, 6.0), (t2, 7.0)]
    );
    // Nothing of C was written.
    assert!(prometheus.query(r#"{model="C"}"#, t3).await.is_empty());
}
