//! Protobuf and Avro records end to end (issue #18): the generator's wide
//! records, encoded by the formats' reference libraries, → the broker →
//! fleet-preprocessor → Prometheus, every sample compared with the declared
//! oracle over the same records in JSON. Read against the schema file the
//! generator wrote, or framed for a real schema registry
//! (crabka-schema-registry) with the schema changing mid-run. Messages that
//! are no record of the schema are counted as `malformed` and lose nothing
//! else.
#![allow(clippy::unwrap_used)] // helpers of the tests below

use std::collections::BTreeMap;
use std::time::Duration;

use crate::common::*;
use crate::wide_fleet::{generate_wide, oracle_input, settled_samples, WideRun};
use fleet_generator::{WideEncoder, WideLayout, WideRecord, WireFormat};
use fleet_testkit::oracle::declared::{self, DeclaredConfig};
use fleet_testkit::{Prometheus, TestBroker};

/// Garbage that is no record of either format, framed or not: a varint
/// (Protobuf's tag, Avro's string length) that never ends.
const GARBAGE: [u8; 8] = [0xff; 8];

/// What the service must write for a run, and how it is configured.
struct Expected {
    config: std::path::PathBuf,
    want: BTreeMap<declared::SampleKey, f64>,
    /// The time range of the windows, and how many `vehicles_reporting`
    /// samples it holds.
    range: (i64, i64),
    reporting: usize,
    /// Messages produced that are no record: where each is, in order.
    bad: Vec<(i32, i64)>,
    /// The dead-letter topic they must land in, and its brokers.
    dead_letters: (String, String),
    bytes: (usize, usize),
}

/// Produces `bad` then the records' `values` to `topic`, writes the
/// service's configuration with `input_toml`, and computes what Prometheus
/// must hold: the oracle over the records in JSON.
async fn prepare(
    kafka: &TestBroker,
    prom: &Prometheus,
    (run, layout): (&WideRun, &WideLayout),
    topic: &str,
    (bad, values): (Vec<Vec<u8>>, Vec<Vec<u8>>),
    input_toml: &str,
) -> Expected {
    let json_bytes: usize = run.records.iter().map(|r| r.json.len()).sum();
    let binary_bytes: usize = values.iter().map(Vec::len).sum();
    kafka.create_topic(topic, 4).await.unwrap();
    let garbage = bad
        .iter()
        .enumerate()
        .map(|(i, b)| (format!("garbage-{i}"), b.clone()));
    let messages: Vec<(String, Vec<u8>)> = garbage
        .chain(
            run.records
                .iter()
                .zip(values)
                .map(|(r, v)| (r.vin.clone(), v)),
        )
        .collect();
    let delivered = kafka.produce_json(topic, messages).await.unwrap();
    let (bad_at, delivered) = delivered.split_at(bad.len());
    let dead_letters = format!("{topic}-dead");
    kafka.create_topic(&dead_letters, 1).await.unwrap();
    let config = service_config(
        run.dir.path(),
        &kafka.bootstrap_servers(),
        topic,
        &prom.remote_write_url(),
        &run.reference_csv,
        &format!("{input_toml}\n[dead_letter]\ntopic = \"{dead_letters}\"\n"),
    );
    let oracle_config = DeclaredConfig::from_toml(&layout.config_toml()).unwrap();
    let input = oracle_input(run, delivered);
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
    let reporting = want.keys().filter(|k| k.0 == "vehicles_reporting").count();
    Expected {
        config,
        want,
        range: (first - WINDOW_MS, last + WINDOW_MS),
        reporting,
        bad: bad_at.to_vec(),
        dead_letters: (kafka.bootstrap_servers(), dead_letters),
        bytes: (binary_bytes, json_bytes),
    }
}

/// Waits for `service` to write every window, then compares Prometheus
/// with `expected`; the refused messages must be exactly the bad ones, all
/// `malformed`.
async fn check(prom: &Prometheus, service: &Service, expected: &Expected, topic: &str) {
    let began = tokio::time::Instant::now();
    let (start, end) = expected.range;
    let want = &expected.want;
    let n = wait_for_windows(
        prom,
        start,
        end,
        expected.reporting,
        Duration::from_secs(120),
    )
    .await;
    assert_eq!(
        n,
        expected.reporting,
        "{topic}: windows written; log:\n{}",
        service.log_tail()
    );
    let (_, problems) = settled_samples(prom, want, start, end).await;
    assert!(
        problems.is_empty(),
        "{topic}: {} of {} samples differ; first ones:\n{}\nlog:\n{}",
        problems.len(),
        want.len(),
        problems[..problems.len().min(15)].join("\n"),
        service.log_events()
    );
    let bad = expected.bad.len();
    let malformed = service
        .metric(
            "fleet_source_decode_errors_total",
            &[("reason", "malformed")],
        )
        .await;
    assert_eq!(malformed, bad as f64, "{topic}");
    assert_eq!(
        service
            .metric("fleet_source_decode_errors_total", &[])
            .await,
        bad as f64,
        "{topic}: nothing else refused"
    );
    // Each refused message is in the dead-letter topic, with its reason
    // and where it was read.
    let (brokers, dead_letters) = &expected.dead_letters;
    let letters = fleet_testkit::KafkaClient::new(brokers.as_str())
        .consume_all(dead_letters, bad, Duration::from_secs(30))
        .await
        .unwrap();
    assert_eq!(letters.len(), bad, "{topic}: dead letters");
    let mut origins: Vec<(i32, i64)> = letters
        .iter()
        .map(|l| {
            assert_eq!(l.header("fleet.reason"), Some("malformed"), "{topic}");
            assert_eq!(l.header("fleet.source.topic"), Some(topic));
            (
                l.header("fleet.source.partition").unwrap().parse().unwrap(),
                l.header("fleet.source.offset").unwrap().parse().unwrap(),
            )
        })
        .collect();
    origins.sort_unstable();
    let mut want_origins = expected.bad.clone();
    want_origins.sort_unstable();
    assert_eq!(origins, want_origins, "{topic}");
    assert_none_late_or_refused(prom, service).await;
    let (binary_bytes, json_bytes) = expected.bytes;
    eprintln!(
        "{topic}: {binary_bytes} bytes ({json_bytes} as JSON), {} samples equal to the oracle \
         (waited {:?})",
        want.len(),
        began.elapsed()
    );
}

/// [`prepare`], run the service, [`check`].
async fn run_and_compare(
    (kafka, prom): (&TestBroker, &Prometheus),
    run: &WideRun,
    layout: &WideLayout,
    topic: &str,
    messages: (Vec<Vec<u8>>, Vec<Vec<u8>>),
    input_toml: &str,
) {
    let expected = prepare(kafka, prom, (run, layout), topic, messages, input_toml).await;
    let service = Service::start(&expected.config);
    check(prom, &service, &expected, topic).await;
    service.terminate().await;
}

/// The records read against the schema file the generator wrote.
async fn with_a_schema_file(format: WireFormat, seed: u64) {
    let _serial = SERIAL.lock().await;
    let Some((kafka, prom)) = services().await else {
        return;
    };
    let layout = WideLayout::new(30).unwrap();
    let run = generate_wide(200, 60, seed, &layout, in_bound);
    let (schema, name) = match format {
        WireFormat::Protobuf => (layout.proto_schema(), "wide.proto"),
        _ => (layout.avro_schema(), "wide.avsc"),
    };
    let schema_file = run.dir.path().join(name);
    std::fs::write(&schema_file, schema).unwrap();
    let encoder = WideEncoder::new(&layout, format).unwrap();
    let values = run
        .records
        .iter()
        .map(|r| encoder.encode(r).unwrap())
        .collect();
    let bad = vec![GARBAGE.to_vec(); 3];
    let toml = layout.config_toml_for(format, &schema_file.display().to_string());
    run_and_compare(
        (&kafka, &prom),
        &run,
        &layout,
        format.as_str(),
        (bad, values),
        &toml,
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn protobuf_records_through_kafka_and_prometheus_equal_the_oracle() {
    with_a_schema_file(WireFormat::Protobuf, 41).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn avro_records_through_kafka_and_prometheus_equal_the_oracle() {
    with_a_schema_file(WireFormat::Avro, 43).await;
}

/// The layout's schema with a field `firmware` added, as a newer version of
/// the subject.
fn with_firmware(format: WireFormat, schema: &str) -> String {
    match format {
        WireFormat::Protobuf => schema.replacen(
            "message Record {\n",
            "message Record {\n  optional string firmware = 99;\n",
            1,
        ),
        _ => schema.replacen(
            "\"fields\": [",
            "\"fields\": [\n    {\"name\": \"firmware\", \"type\": [\"null\", \"string\"], \"default\": null},",
            1,
        ),
    }
}

/// Framed records: the first half written with the layout's schema, the
/// second with a newer version adding a field; both read by the schema each
/// names, from a registry that wants basic auth (over HTTPS with its own
/// CA, with `tls`). A record naming a schema the registry does not have is
/// `malformed`, like garbage.
async fn framed_for_a_registry(format: WireFormat, seed: u64, tls: bool) {
    let _serial = SERIAL.lock().await;
    let Some((kafka, prom)) = services().await else {
        return;
    };
    let credentials = ("fleet", "registry-secret");
    let bootstrap = kafka.bootstrap_servers();
    let pki = match tls {
        true => match fleet_testkit::pki::pki_or_skip("IP:127.0.0.1, DNS:localhost") {
            Some(pki) => Some(pki),
            None => return,
        },
        false => None,
    };
    let registry = match &pki {
        Some(pki) => {
            fleet_testkit::SchemaRegistry::start_tls(&bootstrap, Some(credentials), pki).await
        }
        None => fleet_testkit::SchemaRegistry::start(&bootstrap, Some(credentials)).await,
    };
    let registry = match registry {
        Ok(registry) => registry,
        Err(error @ fleet_testkit::TestkitError::BinaryMissing { .. }) => {
            fleet_testkit::skip_or_fail(&error.to_string());
            return;
        }
        Err(error) => panic!("starting the schema registry: {error}"),
    };
    let topic = format!("framed-{}", format.as_str());
    let subject = format!("{topic}-value");
    let schema_type = match format {
        WireFormat::Protobuf => "PROTOBUF",
        _ => "AVRO",
    };
    let layout = WideLayout::new(30).unwrap();
    let v1 = match format {
        WireFormat::Protobuf => layout.proto_schema(),
        _ => layout.avro_schema(),
    };
    let v2 = with_firmware(format, &v1);
    let id1 = registry.register(&subject, schema_type, &v1).await.unwrap();
    let id2 = registry.register(&subject, schema_type, &v2).await.unwrap();
    assert_ne!(id1, id2);
    let old = WideEncoder::with_schema(format, &v1).unwrap().framed(id1);
    let new = WideEncoder::with_schema(format, &v2).unwrap().framed(id2);
    let run = generate_wide(200, 60, seed, &layout, in_bound);
    let half = run.records.len() / 2;
    let values: Vec<Vec<u8>> = run
        .records
        .iter()
        .enumerate()
        .map(|(i, r)| match i < half {
            true => old.encode(r).unwrap(),
            false => {
                let mut json: serde_json::Value = serde_json::from_str(&r.json).unwrap();
                json["firmware"] = serde_json::Value::from("2.1.0");
                let newer = WideRecord {
                    json: json.to_string(),
                    ..r.clone()
                };
                new.encode(&newer).unwrap()
            }
        })
        .collect();
    // Garbage, and a good record framed with a schema id nobody registered.
    let mut unknown = values[0].clone();
    unknown[1..5].copy_from_slice(&9_999_u32.to_be_bytes());
    let bad = vec![GARBAGE.to_vec(), unknown];
    let toml = layout.config_toml_framed(format, registry.url()).replace(
        "[schema_registry]\n",
        &format!(
            "[schema_registry]\nusername = \"{}\"\npassword = \"{}\"\nca_file = \"{}\"\n",
            credentials.0,
            credentials.1,
            pki.as_ref()
                .map(|p| p.ca.display().to_string())
                .unwrap_or_default()
        ),
    );
    run_and_compare((&kafka, &prom), &run, &layout, &topic, (bad, values), &toml).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn avro_framed_for_a_schema_registry_decodes_across_a_schema_change() {
    framed_for_a_registry(WireFormat::Avro, 47, false).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn protobuf_framed_for_a_schema_registry_over_https_decodes_across_a_schema_change() {
    framed_for_a_registry(WireFormat::Protobuf, 53, true).await;
}

/// The registry is down when the service starts: the records wait (nothing
/// written, nothing refused) while the service asks again, and are all read
/// once the registry is back.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn framed_records_wait_for_a_registry_that_is_down() {
    let _serial = SERIAL.lock().await;
    let Some((kafka, prom)) = services().await else {
        return;
    };
    let bootstrap = kafka.bootstrap_servers();
    let Some(registry) = fleet_testkit::schema_registry_or_skip(&bootstrap, None).await else {
        return;
    };
    let format = WireFormat::Avro;
    let layout = WideLayout::new(10).unwrap();
    let id = registry
        .register("outage-value", "AVRO", &layout.avro_schema())
        .await
        .unwrap();
    let client = (*registry).clone();
    registry.stop();
    let encoder = WideEncoder::new(&layout, format).unwrap().framed(id);
    let run = generate_wide(100, 30, 59, &layout, in_bound);
    let values = run
        .records
        .iter()
        .map(|r| encoder.encode(r).unwrap())
        .collect();
    let toml = layout.config_toml_framed(format, client.url());
    let expected = prepare(
        &kafka,
        &prom,
        (&run, &layout),
        "outage",
        (Vec::new(), values),
        &toml,
    )
    .await;
    let service = Service::start(&expected.config);
    tokio::time::sleep(Duration::from_secs(4)).await;
    let (start, end) = expected.range;
    let written = prom
        .series_samples("vehicles_reporting", start, end)
        .await
        .unwrap();
    assert!(written.is_empty(), "nothing is written without the schema");
    assert_eq!(
        service
            .metric("fleet_source_decode_errors_total", &[])
            .await,
        0.0,
        "nothing is refused while the registry is down"
    );
    assert!(
        service.log_events().contains("Cannot fetch a schema"),
        "{}",
        service.log_tail()
    );
    let _registry = fleet_testkit::SchemaRegistry::restart(&bootstrap, None, &client, id)
        .await
        .unwrap();
    check(&prom, &service, &expected, "outage").await;
    service.terminate().await;
}
