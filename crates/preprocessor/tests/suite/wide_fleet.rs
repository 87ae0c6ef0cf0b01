//! Declared input and metrics end to end (issue #17): the generator's wide
//! records → the broker → fleet-preprocessor configured with the wide example's
//! `[input]` and `[[metrics]]` → Prometheus, compared series by series with
//! the declared batch oracle of fleet-testkit (`oracle::declared`), which
//! reads the same configuration file but shares no code with the service.
//! The same run then checks `histogram_quantile` over the written buckets
//! and every query of the wide-fleet dashboard.
#![allow(clippy::unwrap_used)] // helpers of the tests below

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::path::PathBuf;
use std::time::Duration;

use crate::common::*;
use crate::dashboards;
use fleet_generator::{GeneratorConfig, WideGenerator, WideLayout, WideRecord};
use fleet_testkit::oracle::declared::{
    self, approx_eq, DeclaredConfig, OracleRecord, SampleKey, VehicleRef,
};
use fleet_testkit::Prometheus;

/// Signals per record: the example configuration's layout.
const SIGNALS: usize = 50;

/// A generated wide run: the records in arrival order and the fleet's
/// reference data.
pub(crate) struct WideRun {
    pub(crate) records: Vec<WideRecord>,
    pub(crate) reference: HashMap<String, VehicleRef>,
    pub(crate) reference_csv: PathBuf,
    pub(crate) dir: tempfile::TempDir,
}

/// `seconds` of wide records for `vehicles`, starting 20 minutes ago
/// (aligned to a window), like [`generate`] for the narrow events.
pub(crate) fn generate_wide(
    vehicles: usize,
    seconds: u64,
    seed: u64,
    layout: &WideLayout,
    realism: impl FnOnce(GeneratorConfig) -> GeneratorConfig,
) -> WideRun {
    let RecentFleet {
        config,
        fleet,
        reference_csv,
        dir,
    } = RecentFleet::new(vehicles, seed, realism);
    let mut generator = WideGenerator::new(&fleet, &config, layout).unwrap();
    let records: Vec<WideRecord> = generator.take_exact(vehicles as u64 * seconds).collect();
    let reference = fleet
        .reference_map()
        .into_iter()
        .map(|(vin, model)| {
            let vehicle = VehicleRef {
                model,
                dimensions: BTreeMap::new(),
            };
            (vin, vehicle)
        })
        .collect();
    WideRun {
        records,
        reference,
        reference_csv,
        dir,
    }
}

/// Every raw sample Prometheus holds with a timestamp in `[start_ms,
/// end_ms]`, of every series (only the service writes to it), keyed as the
/// oracle's samples are.
async fn all_samples(prom: &Prometheus, start_ms: i64, end_ms: i64) -> BTreeMap<SampleKey, f64> {
    let mut got = BTreeMap::new();
    let series = prom
        .series_samples("{__name__=~\".+\"}", start_ms, end_ms)
        .await
        .unwrap();
    for s in series {
        let mut labels = s.labels;
        let name = labels.remove("__name__").unwrap_or_default();
        for (ts, value) in s.samples {
            got.insert((name.clone(), labels.clone(), ts), value);
        }
    }
    got
}

/// The oracle's input: the run's records in JSON, each from the partition
/// it was `delivered` to.
pub(crate) fn oracle_input(run: &WideRun, delivered: &[(i32, i64)]) -> Vec<OracleRecord> {
    run.records
        .iter()
        .zip(delivered)
        .map(|(r, &(partition, _))| OracleRecord {
            partition,
            bytes: r.json.clone().into_bytes(),
        })
        .collect()
}

/// Prometheus's samples in `[start_ms, end_ms]` once they equal `want`, or
/// after 30 s (the last samples of a window may still be on their way),
/// and what differs then.
pub(crate) async fn settled_samples(
    prom: &Prometheus,
    want: &BTreeMap<SampleKey, f64>,
    start_ms: i64,
    end_ms: i64,
) -> (BTreeMap<SampleKey, f64>, Vec<String>) {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    loop {
        let got = all_samples(prom, start_ms, end_ms).await;
        let problems = sample_differences(want, &got);
        if problems.is_empty() || tokio::time::Instant::now() >= deadline {
            return (got, problems);
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}

/// What differs between the oracle's samples and Prometheus's: missing,
/// unexpected and different samples (floats within the oracle's tolerance).
fn sample_differences(
    want: &BTreeMap<SampleKey, f64>,
    got: &BTreeMap<SampleKey, f64>,
) -> Vec<String> {
    let mut problems = Vec::new();
    for (key, &w) in want {
        match got.get(key) {
            None => problems.push(format!("missing {key:?} = {w}")),
            Some(&g) if !approx_eq(w, g) => {
                problems.push(format!("{key:?}: got {g}, want {w}"));
            }
            Some(_) => {}
        }
    }
    for (key, g) in got {
        if !want.contains_key(key) {
            problems.push(format!("unexpected {key:?} = {g}"));
        }
    }
    problems
}

/// `histogram_quantile(q, …)` of one classic histogram, `(le, cumulative
/// count)` per bucket with `+Inf` among them, by Prometheus's rule
/// (promql/quantile.go, `bucketQuantile`): NaN without a `+Inf` bucket, with
/// fewer than two buckets or no observations; the rank `q · count` falls in
/// the first bucket whose count reaches it, and the result is interpolated
/// linearly within that bucket (from 0 for the first one, unless its bound
/// is ≤ 0); in the `+Inf` bucket, the highest finite bound.
fn bucket_quantile(q: f64, buckets: &[(f64, f64)]) -> f64 {
    if q.is_nan() {
        return f64::NAN;
    }
    if q < 0.0 {
        return f64::NEG_INFINITY;
    }
    if q > 1.0 {
        return f64::INFINITY;
    }
    let mut buckets = buckets.to_vec();
    buckets.sort_by(|a, b| a.0.total_cmp(&b.0));
    if buckets.last().is_none_or(|b| b.0 != f64::INFINITY) || buckets.len() < 2 {
        return f64::NAN;
    }
    // Cumulative counts never decrease (Prometheus's `ensureMonotonic`).
    let mut max = f64::NEG_INFINITY;
    for bucket in &mut buckets {
        max = max.max(bucket.1);
        bucket.1 = max;
    }
    let observations = buckets[buckets.len() - 1].1;
    if observations == 0.0 {
        return f64::NAN;
    }
    let mut rank = q * observations;
    let last = buckets.len() - 1;
    let b = buckets[..last]
        .iter()
        .position(|&(_, count)| count >= rank)
        .unwrap_or(last);
    if b == last {
        return buckets[last - 1].0;
    }
    if b == 0 && buckets[0].0 <= 0.0 {
        return buckets[0].0;
    }
    let bucket_end = buckets[b].0;
    let mut count = buckets[b].1;
    let mut bucket_start = 0.0;
    if b > 0 {
        bucket_start = buckets[b - 1].0;
        count -= buckets[b - 1].1;
        rank -= buckets[b - 1].1;
    }
    bucket_start + (bucket_end - bucket_start) * (rank / count)
}

#[test]
fn bucket_quantile_interpolates_as_prometheus_does() {
    let inf = f64::INFINITY;
    // 10 observations: 2 ≤ 10, 8 ≤ 30, 10 ≤ +Inf.
    let buckets = [(10.0, 2.0), (30.0, 8.0), (inf, 10.0)];
    // Rank 1 of the first bucket's 2, from 0 to 10.
    assert_eq!(bucket_quantile(0.1, &buckets), 5.0);
    // Rank 5: 3 of the second bucket's 6, from 10 to 30.
    assert_eq!(bucket_quantile(0.5, &buckets), 20.0);
    // Rank 9 is in +Inf: the highest finite bound.
    assert_eq!(bucket_quantile(0.9, &buckets), 30.0);
    // Exactly a bucket's count: its upper bound.
    assert_eq!(bucket_quantile(0.8, &buckets), 30.0);
    assert!(bucket_quantile(0.5, &[(10.0, 0.0), (inf, 0.0)]).is_nan());
    assert!(bucket_quantile(0.5, &[(10.0, 1.0), (20.0, 1.0)]).is_nan());
    assert!(bucket_quantile(0.5, &[(inf, 3.0)]).is_nan());
    assert_eq!(bucket_quantile(0.5, &[(-1.0, 4.0), (inf, 4.0)]), -1.0);
}

/// Per value of `by` (label values joined with `,`), `histogram_quantile(q,
/// sum by (le, by…) (<histogram>_bucket))` at `at_ms` from the oracle's
/// samples (each series' sample at `at_ms`).
fn oracle_quantiles(
    want: &BTreeMap<SampleKey, f64>,
    histogram: &str,
    by: &[&str],
    q: f64,
    at_ms: i64,
) -> BTreeMap<String, f64> {
    let bucket = format!("{histogram}_bucket");
    let mut sums: BTreeMap<String, BTreeMap<String, f64>> = BTreeMap::new();
    for ((name, labels, ts), value) in want {
        if *name != bucket || *ts != at_ms {
            continue;
        }
        let group: Vec<&str> = by
            .iter()
            .map(|l| labels.get(*l).map_or("", String::as_str))
            .collect();
        let le = labels.get("le").cloned().unwrap_or_default();
        *sums
            .entry(group.join(","))
            .or_default()
            .entry(le)
            .or_default() += value;
    }
    sums.into_iter()
        .map(|(group, les)| {
            let buckets: Vec<(f64, f64)> = les
                .iter()
                .map(|(le, count)| (le.parse::<f64>().unwrap(), *count))
                .collect();
            (group, bucket_quantile(q, &buckets))
        })
        .collect()
}

/// The window ends at which an instant query sees exactly that window's
/// samples of `name`: every series of it with a sample at or before the
/// window end has one at the window end (else the lookback would pick an
/// older window's sample).
fn windows_complete_for(want: &BTreeMap<SampleKey, f64>, name: &str) -> Vec<i64> {
    let mut by_time: BTreeMap<i64, BTreeSet<&BTreeMap<String, String>>> = BTreeMap::new();
    for (n, labels, ts) in want.keys() {
        if n == name {
            by_time.entry(*ts).or_default().insert(labels);
        }
    }
    let mut seen: BTreeSet<&BTreeMap<String, String>> = BTreeSet::new();
    let mut complete = Vec::new();
    for (ts, series) in &by_time {
        seen.extend(series.iter().copied());
        if seen.len() == series.len() {
            complete.push(*ts);
        }
    }
    complete
}

/// Same numbers, NaN equal to NaN (a group without observations).
fn same_quantile(a: f64, b: f64) -> bool {
    (a.is_nan() && b.is_nan()) || approx_eq(a, b)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wide_records_through_kafka_and_prometheus_equal_the_declared_oracle() {
    let _serial = SERIAL.lock().await;
    let Some((kafka, prom)) = services().await else {
        return;
    };
    let began = tokio::time::Instant::now();
    let layout = WideLayout::new(SIGNALS).unwrap();
    // The checked-in example is this layout's configuration: the run uses it.
    let example = std::fs::read_to_string(
        std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("../../config/examples/wide-fleet.toml"),
    )
    .unwrap();
    assert_eq!(example, layout.config_toml(), "the example is the layout's");
    let run = generate_wide(300, 90, 31, &layout, in_bound);
    let topic = "wide";
    kafka.create_topic(topic, 4).await.unwrap();
    let delivered = kafka
        .produce_json(
            topic,
            run.records
                .iter()
                .map(|r| (r.vin.as_str(), r.json.as_str())),
        )
        .await
        .unwrap();
    let config = service_config(
        run.dir.path(),
        &kafka.bootstrap_servers(),
        topic,
        &prom.remote_write_url(),
        &run.reference_csv,
        &example,
    );

    // The oracle reads the service's own configuration file.
    let declared_config =
        DeclaredConfig::from_toml(&std::fs::read_to_string(&config).unwrap()).unwrap();
    assert_eq!(declared_config.metric_names().len(), 12);
    let input = oracle_input(&run, &delivered);
    let output = declared::expected_declared(
        &declared_config,
        &input,
        &run.reference,
        WINDOW_MS,
        None,
        false,
    );
    assert!(
        output.decode_errors.is_empty(),
        "{:?}",
        output.decode_errors
    );
    // Records arrive out of order, but within the bound: by the late rule
    // over each partition's arrival order, nothing is late.
    let mut newest = i64::MIN;
    let mut disordered = 0;
    for r in &run.records {
        disordered += usize::from(r.timestamp < newest);
        newest = newest.max(r.timestamp);
    }
    assert!(disordered > 100, "disordered records: {disordered}");
    let judged = declared::expected_declared(
        &declared_config,
        &input,
        &run.reference,
        WINDOW_MS,
        Some(OUT_OF_ORDERNESS_MS),
        false,
    );
    assert_eq!(judged.late, 0, "no record is late");
    let want = declared::prometheus_samples(&output, "", &BTreeMap::new());
    let windows: BTreeSet<i64> = want.keys().map(|k| k.2).collect();
    let (first, last) = (*windows.first().unwrap(), *windows.last().unwrap());
    let (start, end) = (first - WINDOW_MS, last + WINDOW_MS);
    let reporting = want.keys().filter(|k| k.0 == "vehicles_reporting").count();
    eprintln!(
        "wide run: {} records, {} windows, {} samples ({} groups per window at most), generated in {:?}",
        run.records.len(),
        windows.len(),
        want.len(),
        reporting / windows.len().max(1),
        began.elapsed()
    );

    let service = Service::start(&config);
    let n = wait_for_windows(&prom, start, end, reporting, Duration::from_secs(120)).await;
    assert_eq!(
        n,
        reporting,
        "vehicles_reporting samples written; log:\n{}",
        service.log_tail()
    );
    let (got, problems) = settled_samples(&prom, &want, start, end).await;
    assert!(
        problems.is_empty(),
        "{} of {} samples differ ({} in Prometheus); first ones:\n{}\nlog:\n{}",
        problems.len(),
        want.len(),
        got.len(),
        problems[..problems.len().min(15)].join("\n"),
        service.log_events()
    );
    assert_eq!(
        service.metric("fleet_source_events_total", &[]).await as usize,
        run.records.len()
    );
    assert_eq!(
        service
            .metric("fleet_source_decode_errors_total", &[])
            .await,
        0.0
    );
    assert_eq!(
        service
            .metric("fleet_aggregator_late_events_total", &[])
            .await,
        0.0
    );
    assert_eq!(refused_writes(&prom).await, 0.0, "no write was refused");
    eprintln!("wide run: every sample equal after {:?}", began.elapsed());

    // histogram_quantile over the written buckets, at window ends where the
    // instant query sees exactly that window, equals the oracle's buckets
    // interpolated by Prometheus's rule.
    let mut checked = 0;
    let mut finite = 0;
    for histogram in ["speed_kmh", "coolant_c"] {
        let bucket = format!("{histogram}_bucket");
        let at = windows_complete_for(&want, &bucket);
        // The bucket samples by window, so each look-up reads only its own.
        let mut by_window: BTreeMap<i64, BTreeMap<SampleKey, f64>> = BTreeMap::new();
        for (key, value) in want.iter().filter(|(k, _)| k.0 == bucket) {
            by_window
                .entry(key.2)
                .or_default()
                .insert(key.clone(), *value);
        }
        assert!(at.len() >= windows.len() / 2, "{histogram}: {at:?}");
        for by in [&["model"][..], &["model", "region"][..]] {
            for q in [0.5, 0.9] {
                let promql = format!(
                    "histogram_quantile({q}, sum by (le, {}) ({histogram}_bucket))",
                    by.join(", ")
                );
                for &t in &at {
                    let expected = oracle_quantiles(&by_window[&t], histogram, by, q, t);
                    let samples = prom.query(&promql, Some(t)).await.unwrap();
                    let got: BTreeMap<String, f64> = samples
                        .iter()
                        .map(|s| {
                            let group: Vec<&str> = by
                                .iter()
                                .map(|l| s.labels.get(*l).map_or("", String::as_str))
                                .collect();
                            (group.join(","), s.value)
                        })
                        .collect();
                    assert_eq!(
                        got.keys().collect::<Vec<_>>(),
                        expected.keys().collect::<Vec<_>>(),
                        "{promql} at {t}"
                    );
                    for (group, &w) in &expected {
                        let g = got[group];
                        assert!(
                            same_quantile(g, w),
                            "{promql} at {t}, {group}: Prometheus {g}, oracle {w}"
                        );
                        checked += 1;
                        finite += usize::from(w.is_finite());
                    }
                }
            }
        }
    }
    assert!(
        finite > checked / 2,
        "mostly real quantiles: {finite} of {checked}"
    );
    eprintln!(
        "wide run: {checked} quantiles equal after {:?}",
        began.elapsed()
    );

    // Every query of the wide dashboard returns data from this run (and a
    // selector matching nothing gives none: the check can fail).
    let nothing = "sum(vehicles_moving{depot=~\"nowhere\"})";
    assert!(prom.query(nothing, Some(end)).await.unwrap().is_empty());
    let (queries, failures) = dashboards::failing_queries(&prom, &dashboards::WIDE, end).await;
    assert!(queries >= 20, "queries checked: {queries}");
    assert!(
        failures.is_empty(),
        "{} of {queries} dashboard queries fail:\n{}",
        failures.len(),
        failures.join("\n")
    );
    service.terminate().await;
    eprintln!("wide run: done in {:?}", began.elapsed());
}
