//! The per-vehicle drill-down output, end to end on real Tansu and
//! Prometheus: for the vehicles selected (a deterministic sample of the
//! fleet, or an allow list), every series equals the vehicle's events (raw)
//! or their per-window reduction, computed here plainly from the generated
//! events; no other vehicle appears; and the aggregates are unchanged.
#![allow(clippy::unwrap_used)] // helpers of the tests below

mod common;

use std::collections::{BTreeMap, BTreeSet, HashMap};

use common::*;
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
