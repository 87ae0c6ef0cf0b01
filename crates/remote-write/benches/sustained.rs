//! Sustained samples per second into a real Prometheus (Debian's
//! `/usr/bin/prometheus`, started on a free loopback port by fleet-testkit),
//! through the whole stage: `fleet_remote_write::run` with its default shards,
//! linger and request size, window batches fed as fast as it takes them.
//!
//! ```sh
//! cargo bench -p fleet-remote-write --bench sustained
//! cargo bench -p fleet-remote-write --bench sustained -- --groups 2000 --seconds 30 --shards 8
//! ```
//!
//! Prometheus runs on the same two cores as the emitter, so this measures the
//! pair; the emitter's own CPU time is printed too. Window timestamps start
//! 50 minutes in the past and advance 1 s per batch (not 5: a run of a few
//! thousand batches stays in the past, inside the range a fresh Prometheus
//! head accepts). At the end the stored samples are counted back
//! with a query, so the figure is what Prometheus took, not what was sent.
// A benchmark binary: a panic is the failure report.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::sync::Arc;
use std::time::Duration;

use fleet_core::telemetry::{wall_clock_ms, Readiness};
use fleet_core::{Checkpoint, WindowBatch};
use fleet_plan::MetricPlan;
use fleet_remote_write::{RemoteWriteConfig, RemoteWriteMetrics};
use fleet_testkit::oracle::Expected;
use fleet_testkit::{Prometheus, PrometheusOptions};
use prometheus_client::registry::Registry;
use tokio::sync::{mpsc, watch};
use tokio::time::Instant;

/// Event time between consecutive batches.
const STEP_MS: i64 = 1000;

#[path = "support/flags.rs"]
mod flags;
#[path = "support/fleet.rs"]
mod fleet;

struct Args {
    groups: usize,
    seconds: u64,
    shards: usize,
}

fn args() -> Args {
    Args {
        groups: flags::flag("groups", 1000) as usize,
        seconds: flags::flag("seconds", 20),
        shards: flags::flag("shards", RemoteWriteConfig::default().shards as u64) as usize,
    }
}

fn window(groups: usize, end: i64, n: i64) -> WindowBatch {
    WindowBatch {
        firing_points: Vec::new(),
        vehicle_samples: Vec::new(),
        aggregates: (0..groups as i64)
            .map(|g| {
                Expected::to_aggregate(&Expected {
                    vehicles_in_motion: (g + n) as u64 % 500,
                    warnings: (g + n) % 40,
                    vehicles_reporting: 600,
                    ic_rpm_sum: 1_500_000 + g + n,
                    ic_rpm_count: 900,
                    electric_rpm_sum: -20_000 + g - n,
                    electric_rpm_count: 800,
                    ..fleet::window(g, end)
                })
            })
            .collect(),
        checkpoint: Checkpoint {
            resume_offsets: [(0, n)].into(),
            closed_through: [(fleet_core::Scope::All, end)].into(),
            epoch: 0,
        },
    }
}

/// CPU time of the whole process (the emitter's threads; Prometheus is another process).
fn process_cpu() -> Option<Duration> {
    let stat = std::fs::read_to_string("/proc/self/stat").ok()?;
    let fields: Vec<&str> = stat.rsplit(") ").next()?.split_whitespace().collect();
    // utime and stime are fields 14 and 15 of proc(5), 12 and 13 after the name.
    let ticks: u64 = fields.get(11)?.parse::<u64>().ok()? + fields.get(12)?.parse::<u64>().ok()?;
    Some(Duration::from_millis(ticks * 10)) // USER_HZ is 100 on Linux
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    let args = args();
    let prometheus = Prometheus::start(PrometheusOptions::default())
        .await
        .expect("Prometheus (install it with scripts/install-test-deps.sh)");
    let cfg = RemoteWriteConfig {
        url: prometheus.remote_write_url(),
        shards: args.shards,
        ..RemoteWriteConfig::default()
    };
    let mut root = Registry::with_prefix("fleet");
    let metrics = RemoteWriteMetrics::register(root.sub_registry_with_prefix("remote_write"));
    let (tx, rx) = mpsc::channel(16);
    let (acks, acked) = watch::channel(None);
    let stage = tokio::spawn(fleet_remote_write::run(
        cfg,
        rx,
        acks,
        metrics,
        Arc::new(Readiness::default()),
    ));
    let first_end = (wall_clock_ms() - 50 * 60 * 1000) / 1000 * 1000;
    let (cpu0, started) = (process_cpu(), Instant::now());
    let mut n = 0i64;
    while started.elapsed() < Duration::from_secs(args.seconds) {
        tx.send(window(args.groups, first_end + n * STEP_MS, n))
            .await
            .unwrap();
        n += 1;
    }
    drop(tx);
    stage.await.unwrap().unwrap();
    let wall = started.elapsed();
    let cpu = match (cpu0, process_cpu()) {
        (Some(a), Some(b)) => b.saturating_sub(a),
        _ => wall,
    };
    assert_eq!(
        acked.borrow().as_ref().map(|c| c.resume_offsets[&0]),
        Some(n - 1),
        "the last batch was acknowledged"
    );
    let mut text = String::new();
    prometheus_client::encoding::text::encode(&mut text, &root).unwrap();
    let exposed = fleet_testkit::parse_exposition(&text);
    let sent = fleet_testkit::exposed_value(&exposed, "fleet_remote_write_samples_sent_total", &[]);
    let dropped =
        fleet_testkit::exposed_value(&exposed, "fleet_remote_write_samples_dropped_total", &[]);
    let requests = fleet_testkit::exposed_value(&exposed, "fleet_remote_write_requests_total", &[]);
    // Every sample of every series, counted by Prometheus itself.
    let range_s = n * STEP_MS / 1000 + 60;
    let series_names: Vec<String> = MetricPlan::reference_demo()
        .metrics
        .iter()
        .flat_map(|m| m.series_names())
        .collect();
    let mut stored = 0.0;
    for name in &series_names {
        stored += prometheus
            .query(
                &format!("sum(count_over_time({name}[{range_s}s]))"),
                Some(first_end + n * STEP_MS),
            )
            .await
            .unwrap()
            .first()
            .map_or(0.0, |s| s.value);
    }
    let series = args.groups * series_names.len();
    let samples = (n as usize * series) as f64;
    println!(
        "{} groups ({series} series), {} shards: {n} windows, {samples} samples in {:.2} s wall",
        args.groups,
        args.shards,
        wall.as_secs_f64()
    );
    println!(
        "sent {sent} (stored in Prometheus: {stored}), dropped {dropped}, {requests} requests"
    );
    println!(
        "{:.0} samples/s sustained; emitter CPU {:.2} s = {:.0} samples per emitter CPU-s",
        sent / wall.as_secs_f64(),
        cpu.as_secs_f64(),
        sent / cpu.as_secs_f64().max(1e-9)
    );
    prometheus.stop();
}
