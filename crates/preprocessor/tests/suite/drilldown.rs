//! The per-vehicle drill-down output, end to end on a real broker and
//! Prometheus: for the vehicles selected (a deterministic sample of the
//! fleet, or an allow list), every series equals the vehicle's events (raw)
//! or their per-window reduction, computed here plainly from the generated
//! events; no other vehicle appears; and the aggregates are unchanged.
#![allow(clippy::unwrap_used)] // helpers of the tests below

use std::collections::{BTreeMap, BTreeSet, HashMap};

use crate::common::*;
use fleet_core::{EventType, RawEvent};
use fleet_testkit::oracle;

/// (vehicle id, metric name) → samples (timestamp, value) in time order.
type VehicleSeries = BTreeMap<(String, String), Vec<(i64, f64)>>;

fn metric(sensor: EventType) -> &'static str {
    match sensor {
        EventType::IcRpm => "vehicle_ic_engine_rpm",
        EventType::ElectricRpm => "vehicle_electric_motor_rpm",
        EventType::Warnings => "vehicle_warnings",
    }
}

/// Every event of the selected vehicles at its own time; of two with the
/// same time, the larger measurement.
fn expected_raw(events: &[RawEvent], selected: &BTreeSet<String>) -> VehicleSeries {
    let mut points: BTreeMap<(String, String), BTreeMap<i64, i64>> = BTreeMap::new();
    for e in events
        .iter()
        .filter(|e| selected.contains(e.vehicle_id.as_str()))
    {
        let at = points
            .entry((e.vehicle_id.to_string(), metric(e.event_type).to_string()))
            .or_default()
            .entry(e.timestamp)
            .or_insert(i64::MIN);
        *at = (*at).max(e.measurement);
    }
    points
        .into_iter()
        .map(|(k, p)| (k, p.into_iter().map(|(t, v)| (t, v as f64)).collect()))
        .collect()
}

/// Per window, the latest event of each selected vehicle and sensor (ties:
/// the larger measurement), at the window end.
fn expected_window_last(events: &[RawEvent], selected: &BTreeSet<String>) -> VehicleSeries {
    let mut latest: BTreeMap<(String, String), BTreeMap<i64, (i64, i64)>> = BTreeMap::new();
    for e in events
        .iter()
        .filter(|e| selected.contains(e.vehicle_id.as_str()))
    {
        let end = e.timestamp - e.timestamp.rem_euclid(WINDOW_MS) + WINDOW_MS;
        let at = latest
            .entry((e.vehicle_id.to_string(), metric(e.event_type).to_string()))
            .or_default()
            .entry(end)
            .or_insert((i64::MIN, i64::MIN));
        *at = (*at).max((e.timestamp, e.measurement));
    }
    latest
        .into_iter()
        .map(|(k, w)| {
            (
                k,
                w.into_iter().map(|(end, (_, v))| (end, v as f64)).collect(),
            )
        })
        .collect()
}

/// What Prometheus holds of the drill-down metrics; checks each series'
/// model and region against the reference data and the events.
async fn vehicle_series(
    prom: &fleet_testkit::Prometheus,
    start: i64,
    end: i64,
    run: &Run,
    regions: &HashMap<String, String>,
) -> VehicleSeries {
    let mut got = VehicleSeries::new();
    for sensor in [
        EventType::IcRpm,
        EventType::ElectricRpm,
        EventType::Warnings,
    ] {
        for series in prom
            .series_samples(metric(sensor), start, end)
            .await
            .unwrap()
        {
            let vin = series.labels["vehicle_id"].clone();
            assert_eq!(series.labels.get("model"), run.reference.get(&vin));
            assert_eq!(series.labels.get("region"), regions.get(&vin));
            got.insert((vin, metric(sensor).to_string()), series.samples);
        }
    }
    got
}

async fn drill_down(frequency: &str, vehicles: &str, seed: u64) {
    let _serial = SERIAL.lock().await;
    let Some((kafka, prom)) = services().await else {
        return;
    };
    let run = generate(200, 30, seed, in_bound);
    let topic = format!("drill-{frequency}");
    kafka.create_topic(&topic, 2).await.unwrap();
    kafka.produce_events(&topic, &run.events).await.unwrap();
    let regions: HashMap<String, String> = run
        .events
        .iter()
        .map(|e| (e.vehicle_id.to_string(), e.region.to_string()))
        .collect();

    let selected: BTreeSet<String> = match vehicles {
        "sample" => {
            let sample = fleet_drilldown::Sample::new(0.1).unwrap();
            run.reference
                .keys()
                .filter(|vin| sample.selects(vin))
                .cloned()
                .collect()
        }
        _ => run.reference.keys().step_by(13).cloned().collect(),
    };
    assert!(
        selected.len() >= 5 && selected.len() < run.reference.len() / 4,
        "{} of {} vehicles selected",
        selected.len(),
        run.reference.len()
    );
    let allow_list = run.dir.path().join("allow-list.txt");
    let listed: Vec<&str> = selected.iter().map(String::as_str).collect();
    std::fs::write(
        &allow_list,
        format!("# drilled down\n{}\n", listed.join("\n")),
    )
    .unwrap();
    let section = match vehicles {
        "sample" => "vehicles = \"sample\"\nsample_fraction = 0.1".to_string(),
        _ => format!(
            "vehicles = \"allow_list\"\nallow_list_path = \"{}\"",
            allow_list.display()
        ),
    };
    let config = service_config(
        run.dir.path(),
        &kafka.bootstrap_servers(),
        &topic,
        &prom.remote_write_url(),
        &run.reference_csv,
        &format!("[drilldown]\nenabled = true\nfrequency = \"{frequency}\"\n{section}\n"),
    );
    let want = match frequency {
        "raw" => expected_raw(&run.events, &selected),
        _ => expected_window_last(&run.events, &selected),
    };
    let expected = oracle::expected_windows(&run.events, &run.reference, WINDOW_MS, None);

    let service = Service::start(&config);
    // The aggregates are the same as without the drill-down.
    assert_prometheus_holds(&prom, &service, &expected).await;
    let (start, end) = time_range(&expected);
    let got = fleet_testkit::poll_until(std::time::Duration::from_secs(30), || async {
        let got = vehicle_series(&prom, start, end, &run, &regions).await;
        (got == want).then_some(got)
    })
    .await;
    let got = match got {
        Some(got) => got,
        None => vehicle_series(&prom, start, end, &run, &regions).await,
    };
    let unselected: Vec<&String> = got
        .keys()
        .map(|(vin, _)| vin)
        .filter(|vin| !selected.contains(*vin))
        .collect();
    assert!(
        unselected.is_empty(),
        "unselected vehicles written: {unselected:?}"
    );
    let differ: Vec<_> = want
        .iter()
        .filter(|(k, v)| got.get(*k) != Some(*v))
        .map(|(k, v)| {
            format!(
                "{k:?}: want {} samples, got {:?}",
                v.len(),
                got.get(k).map(Vec::len)
            )
        })
        .take(5)
        .collect();
    assert!(
        differ.is_empty() && got.len() == want.len(),
        "series differ:\n{}",
        differ.join("\n")
    );
    assert_eq!(refused_writes(&prom).await, 0.0);
    let followed = service
        .metric("fleet_enricher_drilldown_vehicles", &[])
        .await;
    assert_eq!(followed, selected.len() as f64);
    service.terminate().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn raw_samples_of_a_stable_sample_of_the_fleet() {
    drill_down("raw", "sample", 71).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_sample_per_window_of_an_allow_list() {
    drill_down("window_last", "allow_list", 72).await;
}

/// The cardinality argument, measured: the same events through each output
/// mode into a fresh Prometheus, and the series each creates (its
/// `prometheus_tsdb_head_series`), the samples written and the service's CPU
/// and peak memory. Sized by `FLEET_DRILLDOWN_BENCH_VEHICLES` (default 300)
/// and `FLEET_DRILLDOWN_BENCH_SECONDS` (default 30); `docs/BENCHMARKS.md`
/// records a full-size run. Only the series counts are asserted.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn series_and_cost_of_each_output_mode() {
    let _serial = SERIAL.lock().await;
    let size = |name: &str, default: u64| -> u64 {
        std::env::var(name)
            .ok()
            .and_then(|v| v.parse().ok())
            .unwrap_or(default)
    };
    let vehicles = size("FLEET_DRILLDOWN_BENCH_VEHICLES", 300) as usize;
    let seconds = size("FLEET_DRILLDOWN_BENCH_SECONDS", 30);
    let run = generate(vehicles, seconds, 73, in_bound);
    let everyone: BTreeSet<String> = run.reference.keys().cloned().collect();
    let expected = oracle::expected_windows(&run.events, &run.reference, WINDOW_MS, None);
    let aggregate_samples = oracle::expected_samples(&expected, "");
    let aggregate_series: BTreeSet<(String, String, String)> = aggregate_samples
        .iter()
        .flat_map(|((_, model, region), metrics)| {
            metrics
                .keys()
                .map(|m| (model.clone(), region.clone(), m.clone()))
        })
        .collect();
    let aggregate_sample_count: usize = aggregate_samples.values().map(BTreeMap::len).sum();
    let mut table = vec![format!(
        "{} vehicles, {} events, {} s of fleet time\n{:<28} {:>9} {:>10} {:>8} {:>9}",
        vehicles,
        run.events.len(),
        seconds,
        "mode",
        "series",
        "samples",
        "CPU s",
        "peak MiB"
    )];
    for (mode, section) in [
        ("aggregates only", ""),
        (
            "window_last, every vehicle",
            "[drilldown]\nenabled = true\nvehicles = \"all\"\nfrequency = \"window_last\"\n",
        ),
        (
            "raw, every vehicle",
            "[drilldown]\nenabled = true\nvehicles = \"all\"\nfrequency = \"raw\"\n",
        ),
    ] {
        let Some((kafka, prom)) = services().await else {
            return;
        };
        let vehicle_series = match mode {
            "aggregates only" => VehicleSeries::new(),
            m if m.starts_with("raw") => expected_raw(&run.events, &everyone),
            _ => expected_window_last(&run.events, &everyone),
        };
        let series = aggregate_series.len() + vehicle_series.len();
        let samples = aggregate_sample_count + vehicle_series.values().map(Vec::len).sum::<usize>();
        kafka.create_topic("cost", 2).await.unwrap();
        kafka.produce_events("cost", &run.events).await.unwrap();
        let config = service_config(
            run.dir.path(),
            &kafka.bootstrap_servers(),
            "cost",
            &prom.remote_write_url(),
            &run.reference_csv,
            section,
        );
        let service = Service::start(&config);
        // Generous for a full-size run: the service reads a backlog.
        let patience = std::time::Duration::from_secs(120 + run.events.len() as u64 / 5_000);
        let sent = fleet_testkit::poll_until(patience, || async {
            let sent = service
                .metric("fleet_remote_write_samples_sent_total", &[])
                .await;
            (sent >= samples as f64).then_some(sent)
        })
        .await;
        assert_eq!(
            sent,
            Some(samples as f64),
            "{mode}: samples written; log:\n{}",
            service.log_tail()
        );
        let head_series = prom
            .own_metric("prometheus_tsdb_head_series")
            .await
            .unwrap();
        let head_series = head_series.first().map_or(0.0, |(_, v)| *v);
        assert_eq!(head_series, series as f64, "{mode}: series in Prometheus");
        let (cpu, peak_kib) = service.usage().unwrap_or_default();
        table.push(format!(
            "{mode:<28} {:>9} {:>10} {:>8.2} {:>9.1}",
            head_series,
            samples,
            cpu,
            peak_kib as f64 / 1024.0
        ));
        service.terminate().await;
    }
    eprintln!("{}", table.join("\n"));
}
