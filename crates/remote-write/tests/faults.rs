//! Failures a real Prometheus cannot be made to produce, from an in-process
//! HTTP server on loopback: 429 with `Retry-After`, 503, a dropped
//! connection, an answer slower than the timeout, refusals (401) and endless
//! 503s in drop mode. Plus what only a test server can see: the headers sent,
//! and the request split and merge decisions of the stage.
// Test code: a panic is the failure report.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::{BTreeMap, VecDeque};
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use common::{metric, metrics};
use fleet_core::telemetry::Readiness;
use fleet_core::{Checkpoint, WindowAggregate, WindowBatch};
use fleet_remote_write::{
    encode, DropReason, Emitter, OnRetryExhausted, RemoteWriteBatch, RemoteWriteConfig,
    RemoteWriteError, RemoteWriteMetrics, RequestSigner, SeriesNaming, WriteRequest,
};
use prost::Message;
use tokio::io::AsyncReadExt;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{mpsc, watch};
use tokio::time::Instant;

mod common;

/// What the server does with the next request; when none is scripted it accepts.
#[derive(Clone, Debug)]
enum Fault {
    Status {
        status: u16,
        retry_after: Option<&'static str>,
        answer: &'static str,
    },
    /// Answers 204 after this long, without storing anything.
    Slow(Duration),
}

fn status(status: u16) -> Fault {
    Fault::Status {
        status,
        retry_after: None,
        answer: "injected failure",
    }
}

#[derive(Default)]
struct Script {
    faults: Mutex<VecDeque<Fault>>,
    accepted: Mutex<Vec<(HeaderMap, WriteRequest)>>,
    hits: Mutex<usize>,
}

struct FaultServer {
    addr: SocketAddr,
    script: Arc<Script>,
}

impl FaultServer {
    /// Serves on 127.0.0.1:0; the first `drop_connections` connections are
    /// closed after the request arrived, without an answer.
    async fn start(faults: Vec<Fault>, drop_connections: usize) -> Self {
        let script = Arc::new(Script {
            faults: Mutex::new(faults.into()),
            ..Script::default()
        });
        let listener = DroppingListener {
            inner: TcpListener::bind("127.0.0.1:0").await.unwrap(),
            drop_remaining: drop_connections,
        };
        let addr = listener.inner.local_addr().unwrap();
        let app = axum::Router::new()
            .route("/api/v1/write", axum::routing::post(write))
            .with_state(script.clone());
        tokio::spawn(async move { axum::serve(listener, app).await });
        FaultServer { addr, script }
    }

    fn config(&self) -> RemoteWriteConfig {
        RemoteWriteConfig {
            url: format!("http://{}/api/v1/write", self.addr),
            timeout_ms: 2000,
            // One stream of requests, whose split, merge and retry decisions
            // these tests count; tests/shards.rs covers several shards.
            shards: 1,
            ..RemoteWriteConfig::default()
        }
    }

    fn accepted(&self) -> Vec<WriteRequest> {
        self.script
            .accepted
            .lock()
            .unwrap()
            .iter()
            .map(|(_, r)| r.clone())
            .collect()
    }

    fn hits(&self) -> usize {
        *self.script.hits.lock().unwrap()
    }
}

async fn write(State(script): State<Arc<Script>>, headers: HeaderMap, body: Bytes) -> Response {
    *script.hits.lock().unwrap() += 1;
    let fault = script.faults.lock().unwrap().pop_front();
    match fault {
        Some(Fault::Status {
            status,
            retry_after,
            answer,
        }) => {
            let mut h = HeaderMap::new();
            if let Some(v) = retry_after {
                h.insert("retry-after", v.parse().unwrap());
            }
            (StatusCode::from_u16(status).unwrap(), h, answer).into_response()
        }
        Some(Fault::Slow(d)) => {
            tokio::time::sleep(d).await;
            StatusCode::NO_CONTENT.into_response()
        }
        None => {
            let raw = snap::raw::Decoder::new().decompress_vec(&body).unwrap();
            let request = WriteRequest::decode(raw.as_slice()).unwrap();
            script.accepted.lock().unwrap().push((headers, request));
            StatusCode::NO_CONTENT.into_response()
        }
    }
}

struct DroppingListener {
    inner: TcpListener,
    drop_remaining: usize,
}

impl axum::serve::Listener for DroppingListener {
    type Io = TcpStream;
    type Addr = SocketAddr;

    async fn accept(&mut self) -> (TcpStream, SocketAddr) {
        loop {
            let Ok((mut socket, addr)) = self.inner.accept().await else {
                continue;
            };
            if self.drop_remaining == 0 {
                return (socket, addr);
            }
            self.drop_remaining -= 1;
            // Wait for the request so the client has sent it, then hang up.
            let mut buf = [0u8; 4096];
            let _ = socket.read(&mut buf).await;
            drop(socket);
        }
    }

    fn local_addr(&self) -> std::io::Result<SocketAddr> {
        self.inner.local_addr()
    }
}

/// A window of group (`model`, UK) ending at `window_end`: 9 samples.
fn aggregate(model: &str, window_end: i64) -> WindowAggregate {
    common::aggregate(model, "UK", window_end, 0)
}

const T0: i64 = 1_764_000_000_000;

fn batch_of(aggregates: &[WindowAggregate]) -> RemoteWriteBatch {
    RemoteWriteBatch::from_aggregates(aggregates, &SeriesNaming::default())
}

/// Delivers `aggregates` through a server scripted with `faults` and checks
/// that exactly one request with all of them was stored.
async fn delivered_despite(
    faults: Vec<Fault>,
    drop_connections: usize,
    timeout_ms: u64,
) -> Duration {
    let server = FaultServer::start(faults, drop_connections).await;
    let cfg = RemoteWriteConfig {
        timeout_ms,
        ..server.config()
    };
    let (root, m) = metrics();
    let mut emitter = Emitter::new(&cfg, m).unwrap();
    let aggregates = [aggregate("A", T0), aggregate("B", T0)];
    let started = Instant::now();
    let delivery = emitter.deliver(batch_of(&aggregates)).await;
    let elapsed = started.elapsed();
    assert_eq!(delivery.written, 18);
    assert_eq!(delivery.dropped_total(), 0);
    assert_eq!(
        server.accepted(),
        [encode(&aggregates, &SeriesNaming::default())]
    );
    assert_eq!(metric(&root, "fleet_remote_write_samples_sent_total"), 18.0);
    assert_eq!(
        metric(&root, "fleet_remote_write_retries_total"),
        (server.hits() - 1 + drop_connections) as f64
    );
    elapsed
}

#[tokio::test]
async fn waits_as_long_as_retry_after_asks_then_succeeds() {
    let faults = vec![Fault::Status {
        status: 429,
        retry_after: Some("1"),
        answer: "slow down",
    }];
    let elapsed = delivered_despite(faults, 0, 2000).await;
    assert!(elapsed >= Duration::from_secs(1), "{elapsed:?}");
}

#[tokio::test]
async fn retries_service_unavailable() {
    let elapsed = delivered_despite(vec![status(503), status(502), status(500)], 0, 2000).await;
    // 30 ms, then about 60 and 120 ms of backoff.
    assert!(
        elapsed >= Duration::from_millis(30 + 30 + 60),
        "{elapsed:?}"
    );
}

#[tokio::test]
async fn retries_a_dropped_connection() {
    delivered_despite(vec![], 1, 2000).await;
}

#[tokio::test]
async fn retries_an_answer_slower_than_the_timeout() {
    let elapsed = delivered_despite(vec![Fault::Slow(Duration::from_secs(3))], 0, 300).await;
    assert!(elapsed >= Duration::from_millis(300), "{elapsed:?}");
    assert!(
        elapsed < Duration::from_secs(3),
        "did not wait for the slow answer: {elapsed:?}"
    );
}

#[tokio::test]
async fn a_refused_request_is_dropped_counted_and_the_stage_goes_on() {
    let server = FaultServer::start(
        vec![Fault::Status {
            status: 401,
            retry_after: None,
            answer: "unauthorized",
        }],
        0,
    )
    .await;
    let (root, m) = metrics();
    let (tx, rx) = mpsc::channel(4);
    let (acks, mut acked) = watch::channel(None);
    let readiness = Arc::new(Readiness::default());
    let stage = tokio::spawn(fleet_remote_write::run(
        server.config(),
        rx,
        acks,
        m,
        readiness,
    ));
    let checkpoint = |offset| Checkpoint {
        resume_offsets: [(0, offset)].into(),
        closed_through: Default::default(),
        epoch: 0,
    };
    tx.send(WindowBatch {
        firing_points: Vec::new(),
        vehicle_samples: Vec::new(),
        aggregates: vec![aggregate("A", T0)],
        checkpoint: checkpoint(10),
    })
    .await
    .unwrap();
    acked.changed().await.unwrap();
    assert_eq!(
        *acked.borrow_and_update(),
        Some(checkpoint(10)),
        "acked after the drop"
    );
    tx.send(WindowBatch {
        firing_points: Vec::new(),
        vehicle_samples: Vec::new(),
        aggregates: vec![aggregate("A", T0 + 5000)],
        checkpoint: checkpoint(20),
    })
    .await
    .unwrap();
    drop(tx);
    stage.await.unwrap().unwrap();
    assert_eq!(*acked.borrow(), Some(checkpoint(20)));
    assert_eq!(server.hits(), 2, "the 401 was not sent again");
    assert_eq!(
        server.accepted(),
        [encode(
            &[aggregate("A", T0 + 5000)],
            &SeriesNaming::default()
        )]
    );
    assert_eq!(
        metric(
            &root,
            r#"fleet_remote_write_samples_dropped_total{reason="rejected"}"#
        ),
        9.0
    );
    assert_eq!(
        metric(
            &root,
            r#"fleet_remote_write_requests_total{status_class="rejected"}"#
        ),
        1.0
    );
    assert_eq!(metric(&root, "fleet_remote_write_samples_sent_total"), 9.0);
}

#[tokio::test]
async fn drop_mode_gives_up_after_max_retries() {
    let server = FaultServer::start(vec![status(503); 10], 0).await;
    let cfg = RemoteWriteConfig {
        on_retry_exhausted: OnRetryExhausted::Drop,
        max_retries: 2,
        min_backoff_ms: 1,
        max_backoff_ms: 1,
        ..server.config()
    };
    let (root, m) = metrics();
    let mut emitter = Emitter::new(&cfg, m).unwrap();
    let delivery = emitter.deliver(batch_of(&[aggregate("A", T0)])).await;
    assert_eq!(server.hits(), 3, "one try and two retries");
    assert_eq!(delivery.dropped(DropReason::RetryExhausted), 9);
    assert_eq!(
        metric(
            &root,
            r#"fleet_remote_write_samples_dropped_total{reason="retry_exhausted"}"#
        ),
        9.0
    );
    assert_eq!(
        metric(
            &root,
            r#"fleet_remote_write_requests_total{status_class="retryable"}"#
        ),
        3.0
    );
}

#[tokio::test]
async fn block_mode_retries_past_max_retries() {
    let server = FaultServer::start(vec![status(503); 4], 0).await;
    let cfg = RemoteWriteConfig {
        max_retries: 1,
        min_backoff_ms: 1,
        max_backoff_ms: 2,
        ..server.config()
    };
    let mut emitter = Emitter::new(&cfg, RemoteWriteMetrics::unregistered()).unwrap();
    let delivery = emitter.deliver(batch_of(&[aggregate("A", T0)])).await;
    assert_eq!((server.hits(), delivery.written), (5, 9));
}

#[tokio::test]
async fn the_stage_fills_requests_across_batches_up_to_the_limit() {
    let server = FaultServer::start(vec![], 0).await;
    let cfg = RemoteWriteConfig {
        max_samples_per_request: 20,
        ..server.config()
    };
    let (tx, rx) = mpsc::channel(8);
    let (acks, acked) = watch::channel(None);
    let mut batches = Vec::new();
    // Three small batches of 9 samples, then one of 45: 72 samples in all.
    for (i, end) in [T0, T0 + 5000, T0 + 10_000].into_iter().enumerate() {
        batches.push(WindowBatch {
            firing_points: Vec::new(),
            vehicle_samples: Vec::new(),
            aggregates: vec![aggregate("A", end)],
            checkpoint: Checkpoint {
                resume_offsets: [(0, i as i64)].into(),
                closed_through: [(fleet_core::Scope::All, end)].into(),
                epoch: 0,
            },
        });
    }
    let big: Vec<_> = (3..8).map(|w| aggregate("A", T0 + w * 5000)).collect();
    batches.push(WindowBatch {
        firing_points: Vec::new(),
        vehicle_samples: Vec::new(),
        aggregates: big,
        checkpoint: Checkpoint {
            resume_offsets: [(0, 99)].into(),
            closed_through: [(fleet_core::Scope::All, T0 + 35_000)].into(),
            epoch: 0,
        },
    });
    for b in batches.iter().cloned() {
        tx.send(b).await.unwrap();
    }
    drop(tx);
    let readiness = Arc::new(Readiness::default());
    fleet_remote_write::run(cfg, rx, acks, RemoteWriteMetrics::unregistered(), readiness)
        .await
        .unwrap();
    assert_eq!(*acked.borrow(), Some(batches[3].checkpoint.clone()));
    let requests = server.accepted();
    let sizes: Vec<usize> = requests
        .iter()
        .map(|r| r.timeseries.iter().map(|t| t.samples.len()).sum())
        .collect();
    // One shard fills each request up to the limit, across batch boundaries.
    assert_eq!(sizes, [20, 20, 20, 12]);
    // Every series arrived complete and in timestamp order.
    let mut series: BTreeMap<String, Vec<i64>> = BTreeMap::new();
    for r in &requests {
        for t in &r.timeseries {
            let key = format!("{:?}", t.labels);
            series
                .entry(key)
                .or_default()
                .extend(t.samples.iter().map(|s| s.timestamp));
        }
    }
    let expected: Vec<i64> = (0..8).map(|w| T0 + w * 5000).collect();
    assert_eq!(series.len(), 9);
    for times in series.values() {
        assert_eq!(times, &expected);
    }
}

#[derive(Debug)]
struct TestSigner;

impl RequestSigner for TestSigner {
    fn sign(&self, request: &mut reqwest::Request) -> Result<(), RemoteWriteError> {
        let len = request
            .body()
            .and_then(|b| b.as_bytes())
            .map_or(0, <[u8]>::len);
        request
            .headers_mut()
            .insert("x-test-signature", len.to_string().parse().unwrap());
        Ok(())
    }
}

#[tokio::test]
async fn sends_the_protocol_headers_auth_and_signature() {
    let server = FaultServer::start(vec![], 0).await;
    let cfg = RemoteWriteConfig {
        basic_auth_username: Some("fleet".into()),
        basic_auth_password: Some("s3cret".into()),
        headers: [(
            "X-Scope-OrgID".to_string(),
            fleet_core::Secret::from("tenant-1"),
        )]
        .into(),
        ..server.config()
    };
    let mut emitter = Emitter::new(&cfg, RemoteWriteMetrics::unregistered())
        .unwrap()
        .with_signer(Arc::new(TestSigner));
    emitter.deliver(batch_of(&[aggregate("A", T0)])).await;
    let (headers, _) = server.script.accepted.lock().unwrap()[0].clone();
    let h = |name: &str| headers.get(name).unwrap().to_str().unwrap().to_owned();
    assert_eq!(h("content-encoding"), "snappy");
    assert_eq!(h("content-type"), "application/x-protobuf");
    assert_eq!(h("x-prometheus-remote-write-version"), "0.1.0");
    assert_eq!(
        h("user-agent"),
        concat!("fleet-preprocessor/", env!("CARGO_PKG_VERSION"))
    );
    assert_eq!(h("x-scope-orgid"), "tenant-1");
    assert_eq!(h("authorization"), "Basic ZmxlZXQ6czNjcmV0");
    assert_eq!(h("x-test-signature"), h("content-length"));
}

#[tokio::test]
async fn rereads_a_rotated_bearer_token() {
    let server = FaultServer::start(vec![], 0).await;
    let dir = tempfile::tempdir().unwrap();
    let token = dir.path().join("token");
    std::fs::write(&token, "first\n").unwrap();
    let cfg = RemoteWriteConfig {
        bearer_token_file: Some(token.clone()),
        ..server.config()
    };
    let mut emitter = Emitter::new(&cfg, RemoteWriteMetrics::unregistered()).unwrap();
    emitter.deliver(batch_of(&[aggregate("A", T0)])).await;
    // A new file with a new mtime, as Kubernetes' atomic symlink swap gives.
    std::fs::write(&token, "second").unwrap();
    let later = std::time::SystemTime::now() + Duration::from_secs(5);
    std::fs::File::options()
        .write(true)
        .open(&token)
        .unwrap()
        .set_modified(later)
        .unwrap();
    emitter
        .deliver(batch_of(&[aggregate("A", T0 + 5000)]))
        .await;
    let seen: Vec<String> = server
        .script
        .accepted
        .lock()
        .unwrap()
        .iter()
        .map(|(h, _)| h["authorization"].to_str().unwrap().to_owned())
        .collect();
    assert_eq!(seen, ["Bearer first", "Bearer second"]);
}

#[tokio::test]
async fn a_missing_token_file_is_retried_not_dropped() {
    let server = FaultServer::start(vec![], 0).await;
    let dir = tempfile::tempdir().unwrap();
    let token = dir.path().join("token");
    let cfg = RemoteWriteConfig {
        bearer_token_file: Some(token.clone()),
        min_backoff_ms: 50,
        max_backoff_ms: 50,
        ..server.config()
    };
    let mut emitter = Emitter::new(&cfg, RemoteWriteMetrics::unregistered()).unwrap();
    let writer = tokio::spawn(async move {
        tokio::time::sleep(Duration::from_millis(200)).await;
        std::fs::write(&token, "late").unwrap();
    });
    let delivery = emitter.deliver(batch_of(&[aggregate("A", T0)])).await;
    writer.await.unwrap();
    assert_eq!(delivery.written, 9);
    assert_eq!(server.hits(), 1, "nothing was sent without a token");
}
