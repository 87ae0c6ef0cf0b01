//! The dead-letter topic end to end (issue #18): malformed messages, records
//! of vehicles the reference data lacks (dropped by policy) and samples
//! Prometheus refuses for good all land in a real Kafka topic, with their
//! reason and origin in the headers, each counted by cause; every other
//! window still equals the oracle.
#![allow(clippy::unwrap_used)] // helpers of the tests below

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::time::Duration;

use crate::common::*;
use crate::wide_fleet::settled_samples;
use fleet_remote_write::{Label, Sample, TimeSeries, WriteRequest};
use fleet_testkit::oracle::declared::{self, DeclaredConfig, OracleRecord, VehicleRef};
use fleet_testkit::Prometheus;

/// Writes one sample of the series `labels` (with `__name__`) at `at_ms`
/// straight to Prometheus, as a remote-write client does.
async fn push_sample(prom: &Prometheus, labels: &BTreeMap<String, String>, at_ms: i64) {
    let request = WriteRequest {
        timeseries: vec![TimeSeries {
            labels: labels
                .iter()
                .map(|(name, value)| Label {
                    name: name.clone(),
                    value: value.clone(),
                })
                .collect(),
            samples: vec![Sample {
                value: 1.0,
                timestamp: at_ms,
            }],
        }],
    };
    let body = fleet_remote_write::compress(&request).unwrap();
    let answer = reqwest::Client::new()
        .post(prom.remote_write_url())
        .header("Content-Encoding", "snappy")
        .header("Content-Type", "application/x-protobuf")
        .header("X-Prometheus-Remote-Write-Version", "0.1.0")
        .body(body)
        .send()
        .await
        .unwrap();
    assert!(answer.status().is_success(), "{answer:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn what_cannot_be_processed_lands_in_the_dead_letter_topic_with_its_reason_and_origin() {
    let _serial = SERIAL.lock().await;
    let Some((kafka, prom)) = services().await else {
        return;
    };
    let run = generate(120, 40, 61, in_bound);
    // Every tenth vehicle is missing from the reference data: dropped.
    let mut vins: Vec<&String> = run.reference.keys().collect();
    vins.sort();
    let unknown: BTreeSet<String> = vins.iter().step_by(10).map(|v| (*v).clone()).collect();
    let known_csv = run.dir.path().join("known.csv");
    let mut csv = String::from("vehicle_id,model\n");
    for (vin, model) in &run.reference {
        if !unknown.contains(vin) {
            csv.push_str(&format!("{vin},{model}\n"));
        }
    }
    std::fs::write(&known_csv, csv).unwrap();

    let mut messages: Vec<(String, String)> = run
        .events
        .iter()
        .map(|e| (e.vehicle_id.to_string(), e.to_json()))
        .collect();
    let bad = [
        ("invalid_json", "{not json"),
        (
            "missing_field",
            r#"{"eventType":"IC_RPM","vehicleId":"X","region":"UK","measurement":1}"#,
        ),
        ("invalid_json", "\u{1}"),
    ];
    let mut bad_at = Vec::new();
    for (i, (_, body)) in bad.iter().enumerate() {
        let at = (i + 1) * messages.len() / 4;
        messages.insert(at, (format!("BAD{i}"), body.to_string()));
        bad_at.push(at);
    }
    for topic in ["letters-in", "dead"] {
        kafka.create_topic(topic, 3).await.unwrap();
    }
    let delivered = kafka
        .produce_json("letters-in", messages.clone())
        .await
        .unwrap();

    // The oracle: the good records of known vehicles.
    let reference: HashMap<String, VehicleRef> = run
        .reference
        .iter()
        .filter(|(vin, _)| !unknown.contains(*vin))
        .map(|(vin, model)| {
            let vehicle = VehicleRef {
                model: model.clone(),
                dimensions: BTreeMap::new(),
            };
            (vin.clone(), vehicle)
        })
        .collect();
    let mut input = Vec::new();
    let mut dropped_origins = BTreeSet::new();
    for (i, ((vin, json), &(partition, offset))) in messages.iter().zip(&delivered).enumerate() {
        if bad_at.contains(&i) {
            continue;
        }
        if unknown.contains(vin) {
            dropped_origins.insert((partition, offset));
            continue;
        }
        input.push(OracleRecord {
            partition,
            bytes: json.clone().into_bytes(),
        });
    }
    assert!(!dropped_origins.is_empty());
    let config = DeclaredConfig::from_toml("").unwrap();
    let output = declared::expected_declared(&config, &input, &reference, WINDOW_MS, None, false);
    let mut want = declared::prometheus_samples(&output, "", &BTreeMap::new());
    let windows: Vec<i64> = want.keys().map(|k| k.2).collect();
    let (start, end) = (
        windows.iter().min().unwrap() - WINDOW_MS,
        windows.iter().max().unwrap() + WINDOW_MS,
    );
    // One series already has a sample from now: Prometheus refuses every
    // older one the service writes to it as out of order.
    let (name, labels, _) = want.keys().find(|k| k.0 == "warnings").unwrap().clone();
    let mut poisoned = labels.clone();
    poisoned.insert("__name__".into(), name.clone());
    push_sample(&prom, &poisoned, fleet_core::telemetry::wall_clock_ms()).await;
    let refused: Vec<i64> = want
        .keys()
        .filter(|k| k.0 == name && k.1 == labels)
        .map(|k| k.2)
        .collect();
    want.retain(|k, _| !(k.0 == name && k.1 == labels));
    let reporting = want.keys().filter(|k| k.0 == "vehicles_reporting").count();

    let file = service_config(
        run.dir.path(),
        &kafka.bootstrap_servers(),
        "letters-in",
        &prom.remote_write_url(),
        &known_csv,
        "[dead_letter]\ntopic = \"dead\"\n",
    );
    let text = std::fs::read_to_string(&file).unwrap();
    std::fs::write(
        &file,
        text.replace("[reference]\n", "[reference]\nunknown_vehicle = \"drop\"\n"),
    )
    .unwrap();
    let service = Service::start(&file);
    let n = wait_for_windows(&prom, start, end, reporting, Duration::from_secs(120)).await;
    assert_eq!(
        n,
        reporting,
        "windows written; log:\n{}",
        service.log_tail()
    );

    let expected_letters = bad.len() + dropped_origins.len() + refused.len();
    let letters = kafka
        .consume_all("dead", expected_letters, Duration::from_secs(60))
        .await
        .unwrap();
    assert_eq!(
        letters.len(),
        expected_letters,
        "log:\n{}",
        service.log_events()
    );
    let of = |cause: &str| -> Vec<&fleet_testkit::ConsumedRecord> {
        letters
            .iter()
            .filter(|l| l.header("fleet.cause") == Some(cause))
            .collect()
    };
    let origin = |l: &fleet_testkit::ConsumedRecord| -> (i32, i64) {
        (
            l.header("fleet.source.partition").unwrap().parse().unwrap(),
            l.header("fleet.source.offset").unwrap().parse().unwrap(),
        )
    };
    // Malformed: the message as read, its reason and where it was.
    let malformed = of("malformed");
    assert_eq!(malformed.len(), bad.len());
    for ((reason, body), &at) in bad.iter().zip(&bad_at) {
        let letter = malformed
            .iter()
            .find(|l| origin(l) == delivered[at])
            .unwrap_or_else(|| panic!("no letter from {:?}", delivered[at]));
        assert_eq!(letter.value.as_deref(), Some(body.as_bytes()));
        assert_eq!(letter.header("fleet.reason"), Some(*reason));
        assert_eq!(letter.header("fleet.source.topic"), Some("letters-in"));
        assert!(!letter.header("fleet.error").unwrap().is_empty());
    }
    // Unknown vehicles: every dropped record, from where it was.
    let dropped = of("unknown_vehicle");
    let origins: BTreeSet<(i32, i64)> = dropped.iter().map(|l| origin(l)).collect();
    assert_eq!(origins, dropped_origins);
    for letter in &dropped {
        let value: serde_json::Value =
            serde_json::from_slice(letter.value.as_ref().unwrap()).unwrap();
        let vin = value["vehicle_id"].as_str().unwrap();
        assert!(unknown.contains(vin), "{value}");
        assert_eq!(letter.key.as_deref(), Some(vin.as_bytes()));
    }
    // Refused samples: each sample of the poisoned series, with the reason.
    let samples = of("refused_sample");
    let mut times: Vec<i64> = samples
        .iter()
        .map(|l| {
            assert_eq!(l.header("fleet.reason"), Some("out_of_order"));
            let value: serde_json::Value =
                serde_json::from_slice(l.value.as_ref().unwrap()).unwrap();
            let got: BTreeMap<String, String> =
                serde_json::from_value(value["labels"].clone()).unwrap();
            assert_eq!(got, poisoned);
            value["timestamp"].as_i64().unwrap()
        })
        .collect();
    times.sort_unstable();
    assert_eq!(times, refused);

    // Every other sample equals the oracle.
    let (_, problems) = settled_samples(&prom, &want, start, end).await;
    assert!(
        problems.is_empty(),
        "{}",
        problems[..problems.len().min(10)].join("\n")
    );
    for (cause, count) in [
        ("malformed", bad.len()),
        ("unknown_vehicle", dropped_origins.len()),
        ("refused_sample", refused.len()),
    ] {
        let written = service
            .metric("fleet_dead_letter_records_total", &[("cause", cause)])
            .await;
        assert_eq!(written as usize, count, "{cause}");
    }
    assert_eq!(service.metric("fleet_dead_letter_pending", &[]).await, 0.0);
    eprintln!(
        "dead letters: {} malformed, {} of unknown vehicles, {} refused samples",
        bad.len(),
        dropped_origins.len(),
        refused.len()
    );
    service.terminate().await;
}
