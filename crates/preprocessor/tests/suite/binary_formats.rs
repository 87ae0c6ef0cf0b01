//! Protobuf and Avro records end to end (issue #18): the generator's wide
//! records, encoded by the formats' reference libraries, → Tansu →
//! fleet-preprocessor configured with `input.format` and the schema file the
//! generator wrote → Prometheus, every sample compared with the declared
//! oracle over the same records in JSON. Messages that are no record of the
//! schema are counted as `malformed` and lose nothing else.
#![allow(clippy::unwrap_used)] // helpers of the tests below

use std::collections::BTreeMap;
use std::time::Duration;

use crate::common::*;
use crate::wide_fleet::{all_samples, generate_wide, sample_differences};
use fleet_generator::{WideEncoder, WideLayout, WireFormat};
use fleet_testkit::oracle::declared::{self, DeclaredConfig, OracleRecord};

/// Garbage that is no record of either format: a varint (Protobuf's tag,
/// Avro's string length) that never ends.
const GARBAGE: [u8; 8] = [0xff; 8];
const GARBAGE_MESSAGES: usize = 3;

async fn binary_run(format: WireFormat, seed: u64) {
    let _serial = SERIAL.lock().await;
    let Some((kafka, prom)) = services().await else {
        return;
    };
    let began = tokio::time::Instant::now();
    let layout = WideLayout::new(30).unwrap();
    let run = generate_wide(200, 60, seed, &layout, in_bound);
    let (schema, name) = match format {
        WireFormat::Protobuf => (layout.proto_schema(), "wide.proto"),
        _ => (layout.avro_schema(), "wide.avsc"),
    };
    let schema_file = run.dir.path().join(name);
    std::fs::write(&schema_file, schema).unwrap();
    let encoder = WideEncoder::new(&layout, format).unwrap();
    let values: Vec<Vec<u8>> = run
        .records
        .iter()
        .map(|r| encoder.encode(r).unwrap())
        .collect();
    let json_bytes: usize = run.records.iter().map(|r| r.json.len()).sum();
    let binary_bytes: usize = values.iter().map(Vec::len).sum();
    let topic = format.as_str();
    kafka.create_topic(topic, 4).await.unwrap();
    // Garbage first, among the first records of each partition.
    let garbage = (0..GARBAGE_MESSAGES).map(|i| (format!("garbage-{i}"), GARBAGE.to_vec()));
    let messages: Vec<(String, Vec<u8>)> = garbage
        .chain(
            run.records
                .iter()
                .zip(&values)
                .map(|(r, v)| (r.vin.clone(), v.clone())),
        )
        .collect();
    let delivered = kafka.produce_json(topic, messages).await.unwrap();
    let delivered = &delivered[GARBAGE_MESSAGES..];
    let config = service_config(
        run.dir.path(),
        &kafka.bootstrap_servers(),
        topic,
        &prom.remote_write_url(),
        &run.reference_csv,
        &layout.config_toml_for(format, &schema_file.display().to_string()),
    );

    // The oracle reads the same records in JSON, with the JSON configuration.
    let oracle_config = DeclaredConfig::from_toml(&layout.config_toml()).unwrap();
    let input: Vec<OracleRecord> = run
        .records
        .iter()
        .zip(delivered)
        .map(|(r, &(partition, _))| OracleRecord {
            partition,
            bytes: r.json.clone().into_bytes(),
        })
        .collect();
    let output = declared::expected_declared(
        &oracle_config,
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
    let want = declared::prometheus_samples(&output, "", &BTreeMap::new());
    let windows: Vec<i64> = want.keys().map(|k| k.2).collect();
    let (first, last) = (
        *windows.iter().min().unwrap(),
        *windows.iter().max().unwrap(),
    );
    let (start, end) = (first - WINDOW_MS, last + WINDOW_MS);
    let reporting = want.keys().filter(|k| k.0 == "vehicles_reporting").count();

    let service = Service::start(&config);
    let n = wait_for_windows(&prom, start, end, reporting, Duration::from_secs(120)).await;
    assert_eq!(
        n,
        reporting,
        "{topic}: windows written; log:\n{}",
        service.log_tail()
    );
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    let mut got = all_samples(&prom, start, end).await;
    while !sample_differences(&want, &got).is_empty() && tokio::time::Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(500)).await;
        got = all_samples(&prom, start, end).await;
    }
    let problems = sample_differences(&want, &got);
    assert!(
        problems.is_empty(),
        "{topic}: {} of {} samples differ; first ones:\n{}\nlog:\n{}",
        problems.len(),
        want.len(),
        problems[..problems.len().min(15)].join("\n"),
        service.log_events()
    );
    let errors = |reason: &'static str| {
        let service = &service;
        async move {
            service
                .metric("fleet_source_decode_errors_total", &[("reason", reason)])
                .await
        }
    };
    assert_eq!(
        errors("malformed").await,
        GARBAGE_MESSAGES as f64,
        "{topic}"
    );
    assert_eq!(
        service
            .metric("fleet_source_decode_errors_total", &[])
            .await,
        GARBAGE_MESSAGES as f64,
        "{topic}: nothing else refused"
    );
    assert_eq!(
        service
            .metric("fleet_aggregator_late_events_total", &[])
            .await,
        0.0
    );
    assert_eq!(refused_writes(&prom).await, 0.0, "no write was refused");
    eprintln!(
        "{topic}: {} records ({binary_bytes} bytes; {json_bytes} as JSON), {} samples equal \
         to the oracle after {:?}",
        run.records.len(),
        want.len(),
        began.elapsed()
    );
    service.terminate().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn protobuf_records_through_tansu_and_prometheus_equal_the_oracle() {
    binary_run(WireFormat::Protobuf, 41).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn avro_records_through_tansu_and_prometheus_equal_the_oracle() {
    binary_run(WireFormat::Avro, 43).await;
}
