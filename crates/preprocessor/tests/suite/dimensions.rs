//! Extra dimensions from the reference data, end to end on a real broker and
//! Prometheus: reference columns named in `reference.dimensions` become
//! labels and grouping keys of every series, and `windows.max_label_sets`
//! folds a window's excess label sets into one labelled `other`, counted.
//!
//! The oracle knows nothing of dimensions: it groups by a model name that
//! joins model and dimension values, and the labels read back from
//! Prometheus are joined the same way before comparing.
#![allow(clippy::unwrap_used)] // helpers of the tests below

use std::collections::{BTreeMap, HashMap};

use crate::common::*;
use fleet_testkit::oracle::{self, Expected};

const DIMENSIONS: [&str; 2] = ["fuel_type", "model_year"];

/// VIN → model and dimension values joined by `|`, from the generated CSV
/// (`vehicle_id,model,fuel_type,model_year`).
fn joined_reference(run: &Run) -> HashMap<String, String> {
    let csv = std::fs::read_to_string(&run.reference_csv).unwrap();
    let mut lines = csv.lines();
    assert_eq!(
        lines.next(),
        Some("vehicle_id,model,fuel_type,model_year"),
        "the generator's reference columns"
    );
    lines
        .map(|line| {
            let (vin, rest) = line.split_once(',').unwrap();
            (vin.to_string(), rest.replace(',', "|"))
        })
        .collect()
}

fn joined_labels(labels: &BTreeMap<String, String>) -> String {
    let mut parts = vec![labels.get("model").cloned().unwrap_or_default()];
    for d in DIMENSIONS {
        let value = labels.get(d);
        assert!(value.is_some(), "series without {d}: {labels:?}");
        parts.push(value.cloned().unwrap_or_default());
    }
    parts.join("|")
}

fn config_with(
    run: &Run,
    kafka: &fleet_testkit::TestBroker,
    prom: &fleet_testkit::Prometheus,
    topic: &str,
    windows: &str,
) -> std::path::PathBuf {
    let config = config_for(run, kafka, prom, topic);
    let csv_line = format!("csv_path = \"{}\"", run.reference_csv.display());
    edit_config(&config, |text| {
        text.replace(
            &csv_line,
            &format!("{csv_line}\ndimensions = [\"fuel_type\", \"model_year\"]"),
        )
        .replace("[windows]", &format!("[windows]\n{windows}"))
    });
    config
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dimensions_are_labels_and_grouping_keys() {
    let _serial = SERIAL.lock().await;
    let Some((kafka, prom)) = services().await else {
        return;
    };
    let run = generate(150, 30, 61, in_bound);
    kafka.create_topic("dims", 2).await.unwrap();
    kafka.produce_events("dims", &run.events).await.unwrap();
    let expected = oracle::expected_windows(&run.events, &joined_reference(&run), WINDOW_MS, None);
    let plain = oracle::expected_windows(&run.events, &run.reference, WINDOW_MS, None);
    assert!(
        expected.len() > plain.len(),
        "the dimensions split groups: {} vs {}",
        expected.len(),
        plain.len()
    );
    let service = Service::start(&config_with(&run, &kafka, &prom, "dims", ""));
    assert_prometheus_holds_keyed(&prom, &service, &expected, joined_labels).await;
    assert_eq!(refused_writes(&prom).await, 0.0);
    service.terminate().await;
}

/// The oracle's groups of one window, ranked as the service ranks them for
/// folding: most events first, ties in label order (model, region, then
/// the dimensions).
fn ranked(window: &[&Expected]) -> Vec<(String, String)> {
    let mut groups: Vec<(u64, Vec<String>, (String, String))> = window
        .iter()
        .map(|e| {
            let mut parts = e.model.split('|').map(String::from);
            let model = parts.next().unwrap();
            let mut order = vec![model, e.region.clone()];
            order.extend(parts);
            (e.events, order, (e.model.clone(), e.region.clone()))
        })
        .collect();
    groups.sort_by(|a, b| b.0.cmp(&a.0).then_with(|| a.1.cmp(&b.1)));
    groups.into_iter().map(|g| g.2).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn label_sets_over_the_limit_fold_into_other_and_are_counted() {
    let _serial = SERIAL.lock().await;
    let Some((kafka, prom)) = services().await else {
        return;
    };
    const LIMIT: usize = 6;
    let run = generate(150, 30, 62, in_bound);
    kafka.create_topic("dims-fold", 2).await.unwrap();
    kafka
        .produce_events("dims-fold", &run.events)
        .await
        .unwrap();
    let expected = oracle::expected_windows(&run.events, &joined_reference(&run), WINDOW_MS, None);
    let mut windows: BTreeMap<i64, Vec<&Expected>> = BTreeMap::new();
    for e in expected.values() {
        windows.entry(e.window_end).or_default().push(e);
    }
    let folded_groups: usize = windows
        .values()
        .filter(|w| w.len() > LIMIT)
        .map(|w| w.len() - (LIMIT - 1))
        .sum();
    let over: Vec<i64> = windows
        .iter()
        .filter(|(_, w)| w.len() > LIMIT)
        .map(|(end, _)| *end)
        .collect();
    assert!(!over.is_empty(), "the run must exceed the limit");
    let written: usize = windows.values().map(|w| w.len().min(LIMIT)).sum();

    let config = config_with(
        &run,
        &kafka,
        &prom,
        "dims-fold",
        &format!("max_label_sets = {LIMIT}"),
    );
    let service = Service::start(&config);
    let (start, end) = time_range(&expected);
    let n = wait_for_windows(
        &prom,
        start,
        end,
        written,
        std::time::Duration::from_secs(90),
    )
    .await;
    assert_eq!(
        n,
        written,
        "label sets written; log:\n{}",
        service.log_tail()
    );
    let got = fleet_testkit::poll_until(std::time::Duration::from_secs(30), || async {
        let got = prometheus_samples_keyed(&prom, start, end, joined_labels).await;
        let complete = got.values().all(|m| m.len() >= 7);
        (got.len() == written && complete).then_some(got)
    })
    .await
    .unwrap_or_else(|| panic!("incomplete samples; log:\n{}", service.log_tail()));

    let other = "other|other|other".to_string();
    let want = oracle::expected_samples(&expected, "");
    for (window_end, groups) in &windows {
        let key = |(model, region): &(String, String)| (*window_end, model.clone(), region.clone());
        let ranked = ranked(groups);
        if groups.len() <= LIMIT {
            for g in &ranked {
                assert_eq!(got.get(&key(g)), want.get(&key(g)), "window {window_end}");
            }
            continue;
        }
        let (kept, folded) = ranked.split_at(LIMIT - 1);
        for g in kept {
            assert_eq!(got.get(&key(g)), want.get(&key(g)), "kept group {g:?}");
        }
        for g in folded {
            assert!(!got.contains_key(&key(g)), "folded group {g:?} written");
        }
        let other_samples = &got[&(*window_end, other.clone(), "other".to_string())];
        let sum = |metric: &str| -> f64 {
            folded
                .iter()
                .map(|g| want[&key(g)].get(metric).copied().unwrap_or(0.0))
                .sum()
        };
        for additive in [
            "ic_engine_rpm_sum",
            "ic_engine_rpm_count",
            "electric_motor_rpm_sum",
            "electric_motor_rpm_count",
        ] {
            assert_eq!(
                other_samples[additive],
                sum(additive),
                "{additive} of other"
            );
        }
        // A vehicle in two folded groups counts once in other.
        assert!(other_samples["vehicles_reporting"] <= sum("vehicles_reporting"));
        assert!(other_samples["vehicles_reporting"] > 0.0);
    }
    let counted = service
        .metric("fleet_aggregator_folded_groups_total", &[])
        .await;
    assert_eq!(counted, folded_groups as f64, "folded groups counted");
    assert!(
        service.logged("windows.max_label_sets"),
        "the fold is logged"
    );
    assert_eq!(refused_writes(&prom).await, 0.0);
    service.terminate().await;
}
