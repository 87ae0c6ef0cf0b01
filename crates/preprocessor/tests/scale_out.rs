//! Scale-out in the partitioned output mode, on real Tansu and Prometheus:
//! several instances share one consumer group over a 12-partition topic, one
//! is killed and another starts mid-run (two rebalances), and the per-partition
//! series they write add up, per (window, model, region), to the batch
//! computation — and Prometheus refused no write: no instance wrote a series
//! or a window that another had written.
#![allow(clippy::unwrap_used)] // helpers of the test below

mod common;

use std::collections::BTreeMap;
use std::time::Duration;

use common::*;
use fleet_testkit::oracle::{self, Expected, ExpectedKey};
use fleet_testkit::Prometheus;

/// The metrics that add up over partitions; the two averages are derived
/// from their sums and counts, as `sum(x_sum) / sum(x_count)` does.
const ADDITIVE: [&str; 7] = [
    "vehicles_in_motion",
    "warnings",
    "vehicles_reporting",
    "ic_engine_rpm_sum",
    "ic_engine_rpm_count",
    "electric_motor_rpm_sum",
    "electric_motor_rpm_count",
];

/// Prometheus's samples summed over `kafka_partition`, per (window end,
/// model, region), with the averages derived; also the partitions seen.
async fn summed_over_partitions(
    prom: &Prometheus,
    start_ms: i64,
    end_ms: i64,
) -> (BTreeMap<ExpectedKey, BTreeMap<String, f64>>, usize) {
    let mut got: BTreeMap<ExpectedKey, BTreeMap<String, f64>> = BTreeMap::new();
    let mut partitions = std::collections::BTreeSet::new();
    for metric in ADDITIVE {
        for series in prom.series_samples(metric, start_ms, end_ms).await.unwrap() {
            let label = |name: &str| series.labels.get(name).cloned().unwrap_or_default();
            partitions.insert(label("kafka_partition"));
            for (ts, value) in &series.samples {
                *got.entry((*ts, label("model"), label("region")))
                    .or_default()
                    .entry(metric.to_string())
                    .or_default() += value;
            }
        }
    }
    for metrics in got.values_mut() {
        for (avg, sum, count) in [
            (
                "ic_engine_rpm_avg",
                "ic_engine_rpm_sum",
                "ic_engine_rpm_count",
            ),
            (
                "electric_motor_rpm_avg",
                "electric_motor_rpm_sum",
                "electric_motor_rpm_count",
            ),
        ] {
            let (s, c) = (metrics.get(sum).copied(), metrics.get(count).copied());
            if let (Some(s), Some(c)) = (s, c) {
                if c > 0.0 {
                    metrics.insert(avg.to_string(), s / c);
                }
            }
        }
    }
    (got, partitions.len())
}

fn partitioned(config: &std::path::Path) {
    let toml = std::fs::read_to_string(config).unwrap().replace(
        "drain_timeout_ms = 5000",
        "drain_timeout_ms = 5000\noutput_mode = \"partitioned\"",
    );
    std::fs::write(config, toml).unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_instances_partitioned_add_up_to_the_batch_computation() {
    let _serial = SERIAL.lock().await;
    let Some((kafka, prom)) = services().await else {
        return;
    };
    let run = generate(240, 120, 41, in_bound);
    kafka.create_topic("fleet12", 12).await.unwrap();
    let expected: BTreeMap<ExpectedKey, Expected> =
        oracle::expected_windows(&run.events, &run.reference, WINDOW_MS, None);
    let (start, end) = time_range(&expected);
    let config = config_for(&run, &kafka, &prom, "fleet12");
    partitioned(&config);
    let refused_before = refused_writes(&prom).await;

    let mut instances: Vec<Service> = (0..3).map(|_| Service::start(&config)).collect();
    // 1,200 events are 5 s of fleet time: one window per chunk.
    let producer = produce_paced(
        &kafka,
        "fleet12",
        run.events.clone(),
        1200,
        Duration::from_millis(700),
    );
    let written = |n| wait_for_windows(&prom, start, end, n, Duration::from_secs(60));
    written(expected.len() / 4).await;
    // First rebalance: one instance is killed (SIGKILL: no drain, no last
    // commit); its partitions move once its session times out.
    let mut stopped = instances.remove(0);
    stopped.kill_now();
    written(expected.len() / 2).await;
    // Second rebalance: a new one joins.
    instances.push(Service::start(&config));
    producer.await.unwrap();

    let want = oracle::expected_samples(&expected, "");
    let deadline = tokio::time::Instant::now() + Duration::from_secs(120);
    let (mut got, mut partitions) = summed_over_partitions(&prom, start, end).await;
    while got != want && tokio::time::Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(1000)).await;
        (got, partitions) = summed_over_partitions(&prom, start, end).await;
    }
    let logs: String = std::iter::once(&stopped)
        .chain(&instances)
        .map(|s| format!("--- {}\n{}\n", s.log.display(), s.log_events()))
        .collect();
    assert_samples_equal(&got, &expected);
    assert_eq!(partitions, 12, "every partition wrote its own series");
    assert!(
        instances.iter().any(|s| s.logged("Partitions assigned.")),
        "{logs}"
    );
    let conflicts = conflicts_logged(&prom);
    assert!(
        conflicts.is_empty(),
        "two instances wrote different values for one series and time:\n{}",
        conflicts.join("\n")
    );
    // Every revocation fenced the sink before committing: no instance wrote
    // a window after its partition's new owner could have.
    let refused = refused_writes(&prom).await - refused_before;
    let mut out_of_order = 0.0;
    for s in &instances {
        out_of_order += s
            .metric(
                "fleet_remote_write_samples_dropped_total",
                &[("reason", "out_of_order")],
            )
            .await;
    }
    assert_eq!(
        (refused, out_of_order),
        (0.0, 0.0),
        "write requests refused, samples dropped as out of order; logs:\n{logs}"
    );
    for s in instances {
        s.terminate().await;
    }
}
