//! Scale-out in the partitioned output mode, on a real broker and Prometheus:
//! several instances share one consumer group over a 12-partition topic, one
//! is killed and another starts mid-run (two rebalances), and the per-partition
//! series they write add up, per (window, model, region), to the batch
//! computation — and Prometheus refused no write outside the partitions the
//! killed instance's replay or a double assignment by the broker explain:
//! every revocation fenced the sink (docs/SCALING.md). A second test
//! rebalances three times while a backlog is worked off.
#![allow(clippy::unwrap_used)] // helpers of the test below

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use crate::common::*;
use fleet_testkit::oracle::{self, Expected, ExpectedKey};
use fleet_testkit::{BrokerKind, Prometheus};

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
    let mut partitions = BTreeSet::new();
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

/// [`summed_over_partitions`] once it equals `want`, or after `seconds`.
async fn summed_once_equal(
    prom: &Prometheus,
    start_ms: i64,
    end_ms: i64,
    want: &BTreeMap<ExpectedKey, BTreeMap<String, f64>>,
    seconds: u64,
) -> (BTreeMap<ExpectedKey, BTreeMap<String, f64>>, usize) {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(seconds);
    loop {
        let (got, partitions) = summed_over_partitions(prom, start_ms, end_ms).await;
        if got == *want || tokio::time::Instant::now() >= deadline {
            return (got, partitions);
        }
        tokio::time::sleep(Duration::from_millis(1000)).await;
    }
}

/// Per (window, model, region) the sums over partitions equal the batch
/// computation, each of the `partitions` seen wrote its own series, and
/// Prometheus refused no conflicting sample (two writes of one window that
/// differ).
fn assert_partitions_add_up(
    prom: &Prometheus,
    got: &BTreeMap<ExpectedKey, BTreeMap<String, f64>>,
    expected: &BTreeMap<ExpectedKey, Expected>,
    partitions: usize,
) {
    assert_samples_equal(got, expected);
    assert_eq!(
        partitions, PARTITIONS as usize,
        "every partition wrote its own series"
    );
    let conflicts = conflicts_logged(prom);
    assert!(
        conflicts.is_empty(),
        "two writes of one window differ:\n{}",
        conflicts.join("\n")
    );
}

/// The warnings, errors and ownership changes of `services`, each under
/// its log's name.
fn logs_of<'a>(services: impl IntoIterator<Item = &'a Service>) -> String {
    services
        .into_iter()
        .map(|s| format!("--- {}\n{}\n", s.log.display(), s.log_events()))
        .collect()
}

/// The group's session timeout in these tests, ms.
///
/// Tansu 0.6 holds every follower's JoinGroup for 3 s and counts only
/// heartbeats of the current generation as contact, so one rebalance can
/// leave a live follower silent for 3 s (its last heartbeat) + 3 s per join
/// round + the next heartbeat. With the other tests' 6 s session it was
/// evicted, which started another rebalance: the group never settled. 12 s
/// with 1 s heartbeats leaves room for three join rounds. Other brokers
/// take the other tests' 6 s (on nisshi, five runs in five).
fn session_timeout_ms() -> i64 {
    if BrokerKind::configured() == BrokerKind::Tansu {
        12_000
    } else {
        6_000
    }
}

const PARTITIONS: i32 = 12;

/// The partitioned output mode, 1 s heartbeats (the eviction of a killed
/// instance is then due within a second of its session's end), and on
/// Tansu a session that outlives its rebalances.
fn scale_out_config(config: &std::path::Path) {
    edit_config(config, |text| {
        text.replace(
            "session_timeout_ms = 6000",
            &format!("session_timeout_ms = {}", session_timeout_ms()),
        ) + "\n[pipeline]\noutput_mode = \"partitioned\"\n[kafka.client]\n\"heartbeat.interval.ms\" = \"1000\"\n"
    });
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
    scale_out_config(&config);
    let refused_before = refused_writes(&prom).await;

    // The rebalances happen one at a time, each settled before the next
    // starts, because Tansu 0.6's coordinator gets overlapping ones wrong
    // (docs/SCALING.md, 6):
    // - it keeps the member that first formed the group as its leader, and a
    //   leader evicted by a heartbeat's check is never replaced, so the next
    //   join could never complete: the first instance leads, and a follower
    //   is the one killed;
    // - an eviction does not start a new generation, so the survivors keep
    //   their assignments and the dead member's partitions wait for the next
    //   join; an eviction after a join has completed leaves partitions that
    //   nobody reads for good: the new instance joins after the eviction.
    let mut instances = vec![Service::start(&config)];
    settle(&instances, "the first instance").await;
    instances.extend((0..2).map(|_| Service::start(&config)));
    settle(&instances, "three instances").await;

    // 1,200 events are 5 s of fleet time: one window per chunk.
    let producer = produce_paced(
        &kafka,
        "fleet12",
        run.events.clone(),
        1200,
        Duration::from_millis(1200),
    );
    wait_for_some_windows(&prom, start, end, expected.len() / 4).await;
    // First rebalance: a follower is killed (SIGKILL: no drain, no last
    // commit); its partitions move once its session times out.
    let mut stopped = instances.remove(1);
    stopped.kill_now();
    let killed_at = fleet_core::telemetry::wall_clock_ms();
    // Its last heartbeat was at most a heartbeat interval before the kill.
    let evicted_after = killed_at + session_timeout_ms() - 1000;
    let deadline =
        tokio::time::Instant::now() + Duration::from_millis(session_timeout_ms() as u64 + 15_000);
    while !instances.iter().any(|s| revoked_since(s, evicted_after))
        && tokio::time::Instant::now() < deadline
    {
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    // Second rebalance: a new one joins.
    instances.push(Service::start(&config));
    settle(&instances, "after the kill and the join").await;
    producer.await.unwrap();

    let want = oracle::expected_samples(&expected, "");
    let (got, partitions) = summed_once_equal(&prom, start, end, &want, 120).await;
    let logs = logs_of(std::iter::once(&stopped).chain(&instances));
    if got != want {
        eprintln!("Windows differ; logs:\n{logs}");
    }
    assert_partitions_add_up(&prom, &got, &expected, partitions);
    assert!(
        instances.iter().any(|s| s.logged("Partitions assigned.")),
        "{logs}"
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
    if (refused, out_of_order) != (0.0, 0.0) {
        // Two things can make an instance write a window older than what a
        // series already holds, and neither is a fence failure:
        // - the killed instance's partitions are replayed from its last
        //   commit, so windows it wrote after that commit are sent again
        //   (docs/ARCHITECTURE.md, "Delivery guarantee": "After a SIGKILL");
        // - Tansu's coordinator may complete a generation before every member
        //   has rejoined, so that a member that has not noticed the
        //   rebalance yet still holds a partition its new owner already
        //   reads (Kafka waits for every member).
        // Refusals are tolerated in those partitions only.
        let killed = ownership_intervals(&stopped, Some(killed_at));
        let mut ownership = killed.clone();
        for s in &instances {
            ownership.extend(ownership_intervals(s, None));
        }
        let overlaps = overlapping(&ownership);
        let mut allowed: BTreeSet<i32> = killed
            .iter()
            .filter(|o| o.3 == killed_at)
            .map(|o| o.1)
            .collect();
        allowed.extend(overlaps.iter().map(|o| o.0));
        let dropped: BTreeSet<i32> = instances.iter().flat_map(out_of_order_partitions).collect();
        assert!(
            !dropped.is_empty() && dropped.is_subset(&allowed),
            "{refused} write requests refused, {out_of_order} samples dropped as out of order in partitions {dropped:?}; only the killed instance's {allowed:?} may be replayed (overlaps: {overlaps:?}); logs:\n{logs}"
        );
        eprintln!(
            "{refused} write requests refused and {out_of_order} samples dropped as out of order in partitions {dropped:?}: replayed after the kill or owned twice at once ({overlaps:?})."
        );
    }
    for s in instances {
        s.terminate().await;
    }
}

/// Waits until `instances` own every partition between them, each exactly
/// once, by their logs, unchanged over three checks a second apart (a
/// rebalance in progress shows as a gap or an overlap); panics with the
/// ownership if they do not within a minute.
async fn settle(instances: &[Service], stage: &str) {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    let (mut last, mut stable) = (Vec::new(), 0);
    loop {
        let owned: Vec<BTreeSet<i32>> = instances.iter().map(owned_now).collect();
        let mut all: Vec<i32> = owned.iter().flatten().copied().collect();
        all.sort_unstable();
        let complete = all == (0..PARTITIONS).collect::<Vec<_>>();
        stable = if complete && owned == last {
            stable + 1
        } else {
            0
        };
        if stable == 2 {
            return;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "the group did not settle ({stage}): owned {owned:?}"
        );
        last = owned;
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
}

/// The partitions `service` owns now, by its log.
fn owned_now(service: &Service) -> BTreeSet<i32> {
    ownership_intervals(service, None)
        .into_iter()
        .filter(|o| o.3 == i64::MAX)
        .map(|o| o.1)
        .collect()
}

/// Whether `service` logged a revocation of partitions it owned at or after `at_ms`.
fn revoked_since(service: &Service, at_ms: i64) -> bool {
    ownership_intervals(service, None)
        .iter()
        .any(|o| o.3 >= at_ms && o.3 != i64::MAX)
}

/// One instance's ownership of one partition: (instance, partition, from, to), epoch ms.
type Ownership = (String, i32, i64, i64);

/// When each partition was owned by `service`, from its "Partitions
/// assigned" and "Partitions revoked" log lines (the eager protocol revokes
/// every partition); what it owned last ends at `ended_at` (killed) or never.
fn ownership_intervals(service: &Service, ended_at: Option<i64>) -> Vec<Ownership> {
    let id = service.log.display().to_string();
    let log = std::fs::read_to_string(&service.log).unwrap_or_default();
    let mut owned: BTreeMap<i32, i64> = BTreeMap::new();
    let mut intervals = Vec::new();
    for line in log.lines() {
        let Some(at) = line.get(..27).and_then(log_time_ms) else {
            continue;
        };
        if line.contains("Partitions revoked.") {
            for (p, from) in std::mem::take(&mut owned) {
                intervals.push((id.clone(), p, from, at));
            }
        } else if let Some(list) = line
            .split_once("assigned=[")
            .and_then(|(_, rest)| rest.split_once("] "))
        {
            for item in list.0.split("), ") {
                let p = item.trim_start_matches('(').split(',').next().unwrap_or("");
                if let Ok(p) = p.trim().parse() {
                    owned.entry(p).or_insert(at);
                }
            }
        }
    }
    for (p, from) in owned {
        intervals.push((id.clone(), p, from, ended_at.unwrap_or(i64::MAX)));
    }
    intervals
}

/// The partitions of the first sample of each request part `service`
/// logged as dropped for being out of order.
fn out_of_order_partitions(service: &Service) -> Vec<i32> {
    out_of_order_partitions_in(&std::fs::read_to_string(&service.log).unwrap_or_default())
}

fn out_of_order_partitions_in(log: &str) -> Vec<i32> {
    log.lines()
        .filter(|l| l.contains("reason=\"out_of_order\""))
        .filter_map(|l| {
            let rest = l.split_once("kafka_partition=\\\"")?.1;
            rest.split('\\').next()?.parse().ok()
        })
        .collect()
}

/// Pairs of intervals in which two instances owned one partition at once.
fn overlapping(ownership: &[Ownership]) -> Vec<(i32, i64, i64)> {
    let mut found = Vec::new();
    for (i, a) in ownership.iter().enumerate() {
        for b in &ownership[i + 1..] {
            if a.0 != b.0 && a.1 == b.1 && a.2 < b.3 && b.2 < a.3 {
                found.push((a.1, a.2.max(b.2), a.3.min(b.3)));
            }
        }
    }
    found
}

/// `2026-11-24T07:13:24.869491Z` (a log line's start) as epoch ms.
fn log_time_ms(text: &str) -> Option<i64> {
    let num = |range: std::ops::Range<usize>| text.get(range)?.parse::<i64>().ok();
    let (y, m, d) = (num(0..4)?, num(5..7)?, num(8..10)?);
    let (h, min, sec, micros) = (num(11..13)?, num(14..16)?, num(17..19)?, num(20..26)?);
    // Days since 1970-01-01 of a proleptic Gregorian date.
    let (y, m) = if m <= 2 { (y - 1, m + 9) } else { (y, m - 3) };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let doy = (153 * m + 2) / 5 + d - 1;
    let days = era * 146_097 + yoe * 365 + yoe / 4 - yoe / 100 + doy - 719_468;
    Some((((days * 24 + h) * 60 + min) * 60 + sec) * 1000 + micros / 1000)
}

#[test]
fn log_times_and_overlaps_are_read() {
    assert_eq!(
        log_time_ms("2026-11-24T07:13:24.869491Z"),
        Some(1_795_504_404_869)
    );
    let owned = [
        ("a".to_string(), 8, 0, 100),
        ("b".to_string(), 8, 50, 200),
        ("b".to_string(), 9, 0, 10),
        ("c".to_string(), 9, 10, 20),
    ];
    assert_eq!(overlapping(&owned), [(8, 50, 100)]);
    let log = r#"2026-11-24T07:36:27.791419Z  WARN fleet_remote_write::metrics: Remote-write samples dropped. reason="out_of_order" samples=196 detail="first ic_engine_rpm_sum{kafka_partition=\"3\",model=\"Aurelis\",region=\"ES\"} @ 1795504575000; endpoint: 400 Bad Request: out of order sample""#;
    assert_eq!(out_of_order_partitions_in(log), [3]);
}

/// Rebalances while a backlog is worked off: one instance starts on a topic
/// that already holds ten minutes of a fleet, with a sink slowed to small
/// requests, so closed windows are waiting for the sink whenever the group
/// rebalances. A second and a third instance join, then the first stops
/// gracefully: every eager rebalance revokes every partition, the fence drops
/// the windows the sink had not taken, and the partitions' next owner (often
/// the same instance) must build them again from the committed boundary.
/// Every window must be written once, exact, by partition and summed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rebalances_while_catching_up_lose_and_repeat_nothing() {
    let _serial = SERIAL.lock().await;
    let Some((kafka, prom)) = services().await else {
        return;
    };
    let run = generate(300, 600, 43, in_bound);
    kafka.create_topic("backlog12", PARTITIONS).await.unwrap();
    let expected: BTreeMap<ExpectedKey, Expected> =
        oracle::expected_windows(&run.events, &run.reference, WINDOW_MS, None);
    let (start, end) = time_range(&expected);
    let config = config_for(&run, &kafka, &prom, "backlog12");
    scale_out_config(&config);
    // The first instance's graceful stop drains its sink whole, however
    // slow: what it sent after its last commit would be sent again.
    edit_config(&config, |text| {
        text.replace(
            "[remote_write]\n",
            "[remote_write]\nmax_samples_per_request = 5\nshards = 1\n",
        )
        .replace("drain_timeout_ms = 5000", "drain_timeout_ms = 120000")
    });
    let refused_before = refused_writes(&prom).await;
    produce_paced(
        &kafka,
        "backlog12",
        run.events.clone(),
        20_000,
        Duration::ZERO,
    )
    .await
    .unwrap();

    let mut instances = vec![Service::start(&config)];
    settle(&instances, "the first instance").await;
    wait_for_some_windows(&prom, start, end, 500).await;
    let mut written_at_rebalance = Vec::new();
    for stage in ["a second instance", "a third instance"] {
        written_at_rebalance.push(windows_written(&prom, start, end).await);
        instances.push(Service::start(&config));
        settle(&instances, stage).await;
    }
    written_at_rebalance.push(windows_written(&prom, start, end).await);
    let mut first = instances.remove(0);
    first.stop_gracefully().await;
    settle(&instances, "after the first one stopped").await;

    let want = oracle::expected_samples(&expected, "");
    let (got, partitions) = summed_once_equal(&prom, start, end, &want, 180).await;
    let logs = logs_of(std::iter::once(&first).chain(&instances));
    let total = windows_written(&prom, start, end).await;
    eprintln!(
        "vehicles_reporting samples written when each rebalance began: {written_at_rebalance:?} of {total}"
    );
    if got != want {
        eprintln!("Windows differ; logs:\n{logs}");
    }
    assert_partitions_add_up(&prom, &got, &expected, partitions);
    assert!(
        written_at_rebalance.iter().all(|n| *n < total),
        "every rebalance came while the backlog was being worked off: {written_at_rebalance:?} of {total}"
    );
    // Nothing was killed, so a window is sent twice only where the broker
    // let two instances own a partition at once.
    let refused = refused_writes(&prom).await - refused_before;
    if refused > 0.0 {
        let mut ownership = ownership_intervals(&first, None);
        for s in &instances {
            ownership.extend(ownership_intervals(s, None));
        }
        let overlaps = overlapping(&ownership);
        let dropped: BTreeSet<i32> = std::iter::once(&first)
            .chain(&instances)
            .flat_map(out_of_order_partitions)
            .collect();
        let owned_twice: BTreeSet<i32> = overlaps.iter().map(|o| o.0).collect();
        assert!(
            dropped.is_subset(&owned_twice),
            "{refused} write requests refused in partitions {dropped:?}, owned twice only in {owned_twice:?}; logs:\n{logs}"
        );
    }
    for s in instances {
        s.terminate().await;
    }
}
