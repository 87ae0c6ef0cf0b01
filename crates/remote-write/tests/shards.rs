//! The sharded stage against an in-process endpoint on loopback: readiness
//! on configuration errors (401) and on long retryable failures, no busy loop,
//! recovery; batching by size and linger; per-series order and in-order
//! acknowledgement with several requests in flight; the new self-metrics.
// Test code: a panic is the failure report.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU16, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::body::Bytes;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use common::{metric, metrics};
use fleet_core::telemetry::Readiness;
use fleet_core::{Checkpoint, WindowBatch};
use fleet_remote_write::{RemoteWriteConfig, WriteRequest};
use prometheus_client::registry::Registry;
use prost::Message;
use tokio::sync::{mpsc, watch};
use tokio::time::Instant;

mod common;

/// An endpoint that answers every request with the current status (204 stores it).
#[derive(Default)]
struct Endpoint {
    status: AtomicU16,
    hits: AtomicUsize,
    /// Accepted requests, in arrival order, with when they arrived.
    accepted: Mutex<Vec<(Instant, WriteRequest)>>,
    /// Requests being answered right now, and the most at once.
    concurrent: AtomicUsize,
    max_concurrent: AtomicUsize,
    /// How long each answer takes.
    delay_ms: AtomicUsize,
}

impl Endpoint {
    async fn start(status: u16) -> (Arc<Endpoint>, SocketAddr) {
        let endpoint = Arc::new(Endpoint {
            status: AtomicU16::new(status),
            ..Endpoint::default()
        });
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let app = axum::Router::new()
            .route("/api/v1/write", axum::routing::post(answer))
            .with_state(endpoint.clone());
        tokio::spawn(async move { axum::serve(listener, app).await });
        (endpoint, addr)
    }

    fn set_status(&self, status: u16) {
        self.status.store(status, Ordering::SeqCst);
    }

    fn hits(&self) -> usize {
        self.hits.load(Ordering::SeqCst)
    }

    fn accepted(&self) -> Vec<(Instant, WriteRequest)> {
        self.accepted.lock().unwrap().clone()
    }
}

async fn answer(State(endpoint): State<Arc<Endpoint>>, body: Bytes) -> Response {
    endpoint.hits.fetch_add(1, Ordering::SeqCst);
    let now = endpoint.concurrent.fetch_add(1, Ordering::SeqCst) + 1;
    endpoint.max_concurrent.fetch_max(now, Ordering::SeqCst);
    let delay = endpoint.delay_ms.load(Ordering::SeqCst);
    if delay > 0 {
        tokio::time::sleep(Duration::from_millis(delay as u64)).await;
    }
    endpoint.concurrent.fetch_sub(1, Ordering::SeqCst);
    let status = StatusCode::from_u16(endpoint.status.load(Ordering::SeqCst)).unwrap();
    if status != StatusCode::NO_CONTENT {
        return (status, "no credentials for workspace ws-1").into_response();
    }
    let raw = snap::raw::Decoder::new().decompress_vec(&body).unwrap();
    let request = WriteRequest::decode(raw.as_slice()).unwrap();
    endpoint
        .accepted
        .lock()
        .unwrap()
        .push((Instant::now(), request));
    StatusCode::NO_CONTENT.into_response()
}

const T0: i64 = 1_764_000_000_000;

/// Window `w` of `groups` groups (9 samples each), acknowledging offset `w`.
fn window(w: i64, groups: usize) -> WindowBatch {
    WindowBatch {
        firing_points: Vec::new(),
        vehicle_samples: Vec::new(),
        aggregates: (0..groups)
            .map(|g| common::aggregate(&format!("model-{g}"), "UK", T0 + w * 5000, 0))
            .collect(),
        checkpoint: checkpoint(w),
    }
}

fn checkpoint(offset: i64) -> Checkpoint {
    Checkpoint {
        resume_offsets: [(0, offset)].into(),
        closed_through: Default::default(),
        epoch: 0,
    }
}

struct Stage {
    input: mpsc::Sender<WindowBatch>,
    acked: watch::Receiver<Option<Checkpoint>>,
    readiness: Arc<Readiness>,
    root: Registry,
    task: StageTask,
}

impl Stage {
    /// Closes the input and waits for the stage to deliver everything;
    /// returns the acknowledgements and the metrics.
    async fn finish(self) -> (watch::Receiver<Option<Checkpoint>>, Registry) {
        drop(self.input);
        self.task.await.unwrap().unwrap();
        (self.acked, self.root)
    }
}

type StageTask = tokio::task::JoinHandle<Result<(), fleet_remote_write::RemoteWriteError>>;

/// The stage `spawn` starts with its channels, metrics and readiness.
fn stage(
    spawn: impl FnOnce(
        mpsc::Receiver<WindowBatch>,
        watch::Sender<Option<Checkpoint>>,
        fleet_remote_write::RemoteWriteMetrics,
        Arc<Readiness>,
    ) -> StageTask,
) -> Stage {
    let (root, m) = metrics();
    let (input, rx) = mpsc::channel(4);
    let (acks, acked) = watch::channel(None);
    let readiness = Arc::new(Readiness::default());
    let task = spawn(rx, acks, m, readiness.clone());
    Stage {
        input,
        acked,
        readiness,
        root,
        task,
    }
}

fn start(cfg: RemoteWriteConfig) -> Stage {
    stage(|rx, acks, m, readiness| {
        tokio::spawn(fleet_remote_write::run(cfg, rx, acks, m, readiness))
    })
}

/// The stage as the service runs it beside a Kafka source: sharing `fence`
/// and, in the single output mode, `firing`; requests go out at once.
fn start_fenced(
    addr: SocketAddr,
    fence: Arc<fleet_core::RevocationFence>,
    firing: Option<Arc<fleet_core::FiringLog>>,
) -> Stage {
    stage(|rx, acks, m, readiness| {
        tokio::spawn(fleet_remote_write::run_fenced(
            RemoteWriteConfig {
                max_linger_ms: 0,
                ..config(addr)
            },
            Arc::new(fleet_plan::MetricPlan::reference_demo()),
            rx,
            acks,
            m,
            readiness,
            fence,
            None,
            firing,
        ))
    })
}

fn config(addr: SocketAddr) -> RemoteWriteConfig {
    RemoteWriteConfig {
        url: format!("http://{addr}/api/v1/write"),
        timeout_ms: 2000,
        ..RemoteWriteConfig::default()
    }
}

/// Polls `check` every 20 ms for up to `limit`.
async fn eventually(limit: Duration, mut check: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + limit;
    while Instant::now() < deadline {
        if check() {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    check()
}

#[tokio::test]
async fn unauthorized_fails_readiness_without_a_busy_loop_and_recovers() {
    let (endpoint, addr) = Endpoint::start(401).await;
    let stage = start(RemoteWriteConfig {
        shards: 2,
        max_linger_ms: 0,
        max_backoff_ms: 1000,
        ..config(addr)
    });
    // A steady stream: a window every 50 ms for 2 s, while every request is refused.
    let input = stage.input.clone();
    let feeder = tokio::spawn(async move {
        for w in 0..40 {
            input.send(window(w, 4)).await.unwrap();
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    });
    assert!(
        eventually(Duration::from_secs(2), || stage.readiness.check().is_err()).await,
        "readiness stayed true"
    );
    let started = Instant::now();
    let hits_before = endpoint.hits();
    tokio::time::sleep(Duration::from_secs(2)).await;
    let hits = endpoint.hits() - hits_before;
    eprintln!("{hits} requests in 2 s while every one was refused with 401");
    // Each shard sends at most once per max_backoff_ms (1 s): at most 2 × 3.
    assert!(
        hits <= 6,
        "{hits} requests in {:?}: a busy loop",
        started.elapsed()
    );
    let reasons = stage.readiness.check().unwrap_err();
    assert_eq!(reasons.len(), 1, "{reasons:?}");
    assert!(reasons[0].starts_with("remote_write: "), "{reasons:?}");
    assert!(reasons[0].contains("401 Unauthorized"), "{reasons:?}");
    assert!(
        reasons[0].contains("no credentials for workspace ws-1"),
        "{reasons:?}"
    );
    let rejected = metric(
        &stage.root,
        r#"fleet_remote_write_samples_dropped_total{reason="rejected"}"#,
    );
    assert!(rejected > 0.0 && rejected % 1.0 == 0.0, "{rejected}");
    assert!(
        stage.acked.borrow().is_some(),
        "dropped (and counted) samples are acknowledged"
    );

    // The credentials are fixed: the next accepted request makes it ready again.
    endpoint.set_status(204);
    assert!(
        eventually(Duration::from_secs(3), || stage.readiness.check().is_ok()).await,
        "still not ready: {:?}",
        stage.readiness.check()
    );
    feeder.await.unwrap();
    let (acked, root) = stage.finish().await;
    assert_eq!(*acked.borrow(), Some(checkpoint(39)));
    let sent = metric(&root, "fleet_remote_write_samples_sent_total");
    let rejected = metric(
        &root,
        r#"fleet_remote_write_samples_dropped_total{reason="rejected"}"#,
    );
    assert!(sent > 0.0);
    assert_eq!(
        sent + rejected,
        40.0 * 36.0,
        "every sample written or counted"
    );
}

#[tokio::test]
async fn long_retryable_failures_fail_readiness_and_nothing_is_lost() {
    let (endpoint, addr) = Endpoint::start(503).await;
    let stage = start(RemoteWriteConfig {
        shards: 3,
        unready_after_ms: 300,
        min_backoff_ms: 20,
        max_backoff_ms: 80,
        max_linger_ms: 0,
        ..config(addr)
    });
    stage.input.send(window(0, 6)).await.unwrap();
    tokio::time::sleep(Duration::from_millis(150)).await;
    assert!(stage.readiness.check().is_ok(), "within the grace");
    assert!(
        eventually(Duration::from_secs(2), || stage.readiness.check().is_err()).await,
        "readiness stayed true"
    );
    let reasons = stage.readiness.check().unwrap_err();
    assert!(reasons[0].contains("have failed for"), "{reasons:?}");
    assert!(reasons[0].contains("503"), "{reasons:?}");
    assert_eq!(
        *stage.acked.borrow(),
        None,
        "nothing acknowledged while retrying"
    );
    assert!(
        metric(
            &stage.root,
            "fleet_remote_write_oldest_unsent_sample_age_seconds"
        ) > 0.2
    );
    endpoint.set_status(204);
    assert!(eventually(Duration::from_secs(2), || stage.readiness.check().is_ok()).await);
    let (acked, root) = stage.finish().await;
    assert_eq!(*acked.borrow(), Some(checkpoint(0)));
    assert_eq!(metric(&root, "fleet_remote_write_samples_sent_total"), 54.0);
    assert_eq!(
        metric(&root, "fleet_remote_write_oldest_unsent_sample_age_seconds"),
        0.0
    );
}

#[tokio::test]
async fn shards_send_in_parallel_keep_each_series_in_order_and_acknowledge_in_order() {
    let (endpoint, addr) = Endpoint::start(204).await;
    endpoint.delay_ms.store(30, Ordering::SeqCst);
    let stage = start(RemoteWriteConfig {
        shards: 4,
        max_samples_per_request: 50,
        max_linger_ms: 20,
        ..config(addr)
    });
    let mut acks = stage.acked.clone();
    let watcher = tokio::spawn(async move {
        let mut seen = Vec::new();
        while acks.changed().await.is_ok() {
            if let Some(c) = acks.borrow_and_update().clone() {
                seen.push(c.resume_offsets[&0]);
            }
        }
        seen
    });
    for w in 0..30 {
        stage.input.send(window(w, 12)).await.unwrap();
    }
    let (acked, root) = stage.finish().await;
    assert_eq!(*acked.borrow(), Some(checkpoint(29)));
    drop(acked);
    let seen = watcher.await.unwrap();
    assert!(seen.windows(2).all(|p| p[0] < p[1]), "{seen:?}");

    let accepted = endpoint.accepted();
    assert!(accepted
        .iter()
        .all(|(_, r)| { r.timeseries.iter().map(|t| t.samples.len()).sum::<usize>() <= 50 }));
    let mut series: BTreeMap<String, Vec<i64>> = BTreeMap::new();
    for (_, r) in &accepted {
        for t in &r.timeseries {
            series
                .entry(format!("{:?}", t.labels))
                .or_default()
                .extend(t.samples.iter().map(|s| s.timestamp));
        }
    }
    assert_eq!(series.len(), 12 * 9);
    let expected: Vec<i64> = (0..30).map(|w| T0 + w * 5000).collect();
    for times in series.values() {
        assert_eq!(times, &expected);
    }
    assert!(
        endpoint.max_concurrent.load(Ordering::SeqCst) > 1,
        "the shards never had two requests in flight"
    );
    assert!(endpoint.max_concurrent.load(Ordering::SeqCst) <= 4);
    for shard in 0..4 {
        let depth = format!(r#"fleet_remote_write_shard_queue_samples{{shard="{shard}"}}"#);
        assert_eq!(metric(&root, &depth), 0.0, "shard {shard}");
    }
    assert_eq!(
        metric(&root, "fleet_remote_write_samples_sent_total"),
        30.0 * 108.0
    );
}

#[tokio::test]
async fn a_small_batch_waits_for_the_linger_time_then_goes_as_one_request() {
    let (endpoint, addr) = Endpoint::start(204).await;
    let stage = start(RemoteWriteConfig {
        shards: 1,
        max_linger_ms: 300,
        ..config(addr)
    });
    let sent = Instant::now();
    stage.input.send(window(0, 1)).await.unwrap();
    stage.input.send(window(1, 1)).await.unwrap();
    assert!(eventually(Duration::from_secs(2), || !endpoint.accepted().is_empty()).await);
    let accepted = endpoint.accepted();
    let waited = accepted[0].0 - sent;
    assert!(waited >= Duration::from_millis(300), "{waited:?}");
    assert!(waited < Duration::from_millis(1500), "{waited:?}");
    assert_eq!(accepted.len(), 1, "both windows in one request");
    assert_eq!(
        accepted[0]
            .1
            .timeseries
            .iter()
            .map(|t| t.samples.len())
            .sum::<usize>(),
        18
    );
    let mut acked = stage.acked.clone();
    acked.wait_for(|c| c == &Some(checkpoint(1))).await.unwrap();
    stage.finish().await;
}

#[tokio::test]
async fn after_a_revocation_stale_batches_are_dropped_and_in_flight_ones_counted() {
    let (endpoint, addr) = Endpoint::start(204).await;
    endpoint.delay_ms.store(300, Ordering::SeqCst);
    let fence = Arc::new(fleet_core::RevocationFence::default());
    let Stage {
        input,
        acked,
        root,
        task,
        ..
    } = start_fenced(addr, Arc::clone(&fence), None);
    // Registered before the revocation: in flight, counted, then acknowledged.
    input.send(window(1, 2)).await.unwrap();
    assert!(eventually(Duration::from_secs(2), || fence.pending() == 1).await);
    assert_eq!(fence.revoke(), 1);
    // Built before the revocation, received after it: dropped unsent.
    input.send(window(2, 2)).await.unwrap();
    // Built after it (the aggregator stamps the new epoch).
    let mut fresh = window(3, 2);
    fresh.checkpoint.epoch = 1;
    input.send(fresh).await.unwrap();
    assert!(eventually(Duration::from_secs(5), || fence.pending() == 0).await);
    drop(input);
    task.await.unwrap().unwrap();
    let sent_ends: Vec<i64> = endpoint
        .accepted()
        .iter()
        .flat_map(|(_, r)| r.timeseries.iter().flat_map(|t| t.samples.iter()))
        .map(|s| s.timestamp)
        .collect();
    assert!(sent_ends.contains(&(T0 + 5000)));
    assert!(
        !sent_ends.contains(&(T0 + 10_000)),
        "the stale window was sent"
    );
    assert!(sent_ends.contains(&(T0 + 15_000)));
    assert_eq!(
        acked.borrow().as_ref().map(|c| c.resume_offsets[&0]),
        Some(3),
        "the stale batch never holds acknowledgement back"
    );
    assert_eq!(
        metric(&root, "fleet_remote_write_windows_superseded_total"),
        2.0
    );
}

/// The single output mode: a batch's firing points are stored (by the
/// source) before any of its samples is sent; a batch waiting for them
/// when a revocation makes it stale is dropped unsent.
#[tokio::test]
async fn a_batch_is_sent_only_once_its_firing_points_are_stored() {
    let (endpoint, addr) = Endpoint::start(204).await;
    let fence = Arc::new(fleet_core::RevocationFence::default());
    let firing = Arc::new(fleet_core::FiringLog::default());
    let Stage { input, task, .. } =
        start_fenced(addr, Arc::clone(&fence), Some(Arc::clone(&firing)));
    let with_point = |w: i64| {
        let mut batch = window(w, 2);
        batch.firing_points = vec![fleet_core::FiringPoint {
            through: T0 + w * 5000,
            offsets: [(0, w)].into(),
        }];
        batch
    };
    input.send(with_point(1)).await.unwrap();
    tokio::time::timeout(Duration::from_secs(2), firing.requested())
        .await
        .unwrap();
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert_eq!(endpoint.hits(), 0, "sent before its points were stored");
    let (points, number) = firing.take();
    assert_eq!(points[0].through, T0 + 5000);
    firing.done(number);
    assert!(eventually(Duration::from_secs(2), || endpoint.hits() > 0).await);
    tokio::time::sleep(Duration::from_millis(200)).await;
    let first = endpoint.hits();

    // Waiting for its points when the partitions are revoked: stale.
    input.send(with_point(2)).await.unwrap();
    tokio::time::timeout(Duration::from_secs(2), firing.requested())
        .await
        .unwrap();
    let epoch = fence.revoke();
    assert_eq!(firing.settle_all(epoch).len(), 1);
    drop(input);
    task.await.unwrap().unwrap();
    assert_eq!(endpoint.hits(), first, "the stale batch was sent");
}
