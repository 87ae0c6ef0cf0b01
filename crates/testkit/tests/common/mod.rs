//! The service-level checks that run against local processes
//! (`tests/services.rs`) and against containers (`tests/containers.rs`):
//! they take a client of a broker or a Prometheus, wherever it runs.
// Test code: a panic is the failure report.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::BTreeSet;
use std::time::Duration;

use fleet_testkit::{KafkaClient, PrometheusClient};

/// Creates a topic of 4 partitions, produces 100 messages with 17 keys and
/// reads them back: the same bytes, each where its delivery report said,
/// one partition per key. `logs` says where the broker's log is.
pub async fn keyed_round_trip(kafka: &KafkaClient, logs: &str) {
    kafka.create_topic("raw-events", 4).await.unwrap();
    assert_eq!(kafka.partitions_with_leader("raw-events").await.unwrap(), 4);

    let sent: Vec<(String, String)> = (0..100)
        .map(|i| (format!("VIN{:014}", i % 17), format!(r#"{{"n":{i}}}"#)))
        .collect();
    let delivered = kafka
        .produce_json("raw-events", sent.iter().map(|(k, v)| (k, v)))
        .await
        .unwrap();
    assert_eq!(delivered.len(), 100);

    let received = kafka
        .consume_all("raw-events", 100, Duration::from_secs(20))
        .await
        .unwrap();
    assert_eq!(received.len(), 100, "log: {logs}");

    // Same messages, byte for byte, each where its delivery report said.
    let mut got: Vec<(Vec<u8>, Vec<u8>)> = received
        .iter()
        .map(|r| (r.key.clone().unwrap(), r.value.clone().unwrap()))
        .collect();
    let mut want: Vec<(Vec<u8>, Vec<u8>)> = sent
        .iter()
        .map(|(k, v)| (k.clone().into_bytes(), v.clone().into_bytes()))
        .collect();
    got.sort();
    want.sort();
    assert_eq!(got, want);
    let mut placed: Vec<(i32, i64)> = received.iter().map(|r| (r.partition, r.offset)).collect();
    let mut reported = delivered.clone();
    placed.sort();
    reported.sort();
    assert_eq!(placed, reported);

    // Keyed: one key, one partition, in production order.
    for (key, _) in &sent {
        let partitions: BTreeSet<i32> = received
            .iter()
            .filter(|r| r.key.as_deref() == Some(key.as_bytes()))
            .map(|r| r.partition)
            .collect();
        assert_eq!(partitions.len(), 1, "key {key} spread over {partitions:?}");
    }
    let used: BTreeSet<i32> = received.iter().map(|r| r.partition).collect();
    assert!(used.len() > 1, "17 keys all landed in {used:?}");
}

/// Writes two samples of one series through the remote-write receiver and
/// reads them back with their exact timestamps; then writes an older sample
/// of the same series, which Prometheus refuses with 400. A fresh Prometheus
/// is expected: its own request counters start at zero. `logs` says where
/// its log is.
pub async fn remote_write_round_trip(prometheus: &PrometheusClient, logs: &str) {
    assert!(
        prometheus.is_ready().await.unwrap(),
        "not ready; log: {logs}"
    );
    let http = reqwest::Client::builder().no_proxy().build().unwrap();
    let labels = [
        ("__name__", "fleet_testkit_round_trip"),
        ("job", "testkit"),
        ("region", "UK"),
    ];
    // A minute ago on a 5 s boundary: inside the head block.
    let now_ms = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as i64;
    let t1 = now_ms - 60_000 - (now_ms % 5000);
    let t2 = t1 + 5000;
    let write = |samples: &[(i64, f64)]| {
        http.post(prometheus.remote_write_url())
            .header("Content-Encoding", "snappy")
            .header("Content-Type", "application/x-protobuf")
            .header("X-Prometheus-Remote-Write-Version", "0.1.0")
            .body(snappy(&write_request(&labels, samples)))
            .send()
    };

    let accepted = write(&[(t1, 42.5), (t2, -7.0)]).await.unwrap();
    assert_eq!(accepted.status(), 204, "log: {logs}");
    let series = prometheus
        .series_samples("fleet_testkit_round_trip", t1, t2)
        .await
        .unwrap();
    assert_eq!(series.len(), 1, "{series:?}; log: {logs}");
    let want_labels: Vec<(&str, &str)> = labels.to_vec();
    let got_labels: Vec<(&str, &str)> = series[0]
        .labels
        .iter()
        .map(|(k, v)| (k.as_str(), v.as_str()))
        .collect();
    assert_eq!(got_labels, want_labels);
    assert_eq!(series[0].samples, [(t1, 42.5), (t2, -7.0)]);

    // Older than the series' newest sample: out of order, refused.
    let refused = write(&[(t1 - 5000, 1.0)]).await.unwrap();
    assert_eq!(refused.status(), 400, "log: {logs}");
    let by_code = prometheus.write_requests_by_code().await.unwrap();
    assert_eq!(by_code.get("204"), Some(&1.0), "{by_code:?}");
    assert_eq!(by_code.get("400"), Some(&1.0), "{by_code:?}");
}

/// A remote-write 1.0 `WriteRequest` with one series, encoded by hand from
/// `prompb/remote.proto` and `types.proto` so that the check shares nothing
/// with the emitter. `labels` must be sorted by name.
fn write_request(labels: &[(&str, &str)], samples: &[(i64, f64)]) -> Vec<u8> {
    let mut series = Vec::new();
    for (name, value) in labels {
        let mut label = Vec::new();
        length_delimited(&mut label, 1, name.as_bytes());
        length_delimited(&mut label, 2, value.as_bytes());
        length_delimited(&mut series, 1, &label); // TimeSeries.labels
    }
    for &(timestamp, value) in samples {
        let mut sample = vec![1 << 3 | 1]; // Sample.value: field 1, 64-bit
        sample.extend_from_slice(&value.to_le_bytes());
        sample.push(2 << 3); // Sample.timestamp: field 2, varint
        varint(&mut sample, timestamp as u64);
        length_delimited(&mut series, 2, &sample); // TimeSeries.samples
    }
    let mut request = Vec::new();
    length_delimited(&mut request, 1, &series); // WriteRequest.timeseries
    request
}

fn length_delimited(out: &mut Vec<u8>, field: u8, bytes: &[u8]) {
    out.push(field << 3 | 2);
    varint(out, bytes.len() as u64);
    out.extend_from_slice(bytes);
}

fn varint(out: &mut Vec<u8>, mut value: u64) {
    while value >= 0x80 {
        out.push(value as u8 | 0x80);
        value >>= 7;
    }
    out.push(value as u8);
}

/// Snappy's block format, which remote write requires (not the framed one).
fn snappy(bytes: &[u8]) -> Vec<u8> {
    snap::raw::Encoder::new().compress_vec(bytes).unwrap()
}
