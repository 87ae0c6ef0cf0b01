//! Event time under a moving assignment and a slow sink, on real services.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use crate::common::*;
use axum::body::Bytes;
use axum::http::{HeaderMap, StatusCode};
use fleet_testkit::{oracle, Prometheus};
use rdkafka::consumer::{Consumer, StreamConsumer};

/// A second member joins the group mid-run and leaves again. While it holds
/// partitions the service (single output mode) owns only some of them: it
/// processes nothing and is not ready. Once it owns all of them again it
/// rebuilds its open windows from the committed offsets. The output equals
/// the batch computation and Prometheus saw no conflicting sample.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn partitions_revoked_and_reassigned_mid_window() {
    let _serial = SERIAL.lock().await;
    let Some((kafka, prom)) = services().await else {
        return;
    };
    let run = generate(200, 150, 29, in_bound);
    kafka.create_topic("shared", 4).await.unwrap();
    let expected = oracle::expected_windows(&run.events, &run.reference, WINDOW_MS, None);
    let (start, end) = time_range(&expected);
    let config = config_for(&run, &kafka, &prom, "shared");
    let producer = produce_paced(
        &kafka,
        "shared",
        run.events.clone(),
        1000,
        Duration::from_millis(600),
    );
    let service = Service::start(&config);
    wait_for_some_windows(&prom, start, end, expected.len() / 5).await;
    assert!(
        service.readiness().await.0,
        "ready while owning every partition"
    );

    // Another member of the same group: it polls, so it keeps its partitions.
    let intruder: Arc<StreamConsumer> = Arc::new(
        kafka
            .client_config()
            .set("group.id", "shared-group")
            .set("enable.auto.commit", "false")
            .set("session.timeout.ms", "6000")
            .create()
            .unwrap(),
    );
    intruder.subscribe(&["shared"]).unwrap();
    let polling = {
        let intruder = intruder.clone();
        tokio::spawn(async move {
            loop {
                let _ = intruder.recv().await;
            }
        })
    };
    let mut saw_not_ready = None;
    for _ in 0..100 {
        let (ready, body) = service.readiness().await;
        if !ready && body.contains("kafka_ownership") {
            saw_not_ready = Some(body);
            break;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let body = saw_not_ready.expect("not ready while another member holds partitions");
    assert!(body.contains("another member"), "{body}");
    // It writes nothing while it does not own every partition.
    let sent = || service.metric("fleet_remote_write_samples_sent_total", &[]);
    let sent_before = sent().await;
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert_eq!(sent().await, sent_before, "wrote while sharing the group");
    polling.abort();
    intruder.unsubscribe();
    drop(intruder);

    producer.await.unwrap();
    assert_prometheus_holds(&prom, &service, &expected).await;
    assert!(
        service.readiness().await.0,
        "ready again: {}",
        service.readiness().await.1
    );
    assert_eq!(conflicts_logged(&prom), Vec::<String>::new());
    service.terminate().await;
}

/// A remote-write endpoint much slower than the input backpressures the
/// pipeline for longer than the idle timeout: the source stops fetching and
/// then pauses its partitions, but they do not count as idle, so no window
/// closes early and no event turns late.
/// What a request to [`proxy_to`] waits for before it is forwarded.
type Hold = Arc<dyn Fn() -> Pin<Box<dyn Future<Output = ()> + Send>> + Send + Sync>;

/// A remote-write proxy in front of `prom` (a real Prometheus cannot be made
/// slow or stopped at will): each request waits for `hold`, then is
/// forwarded unchanged and answered as Prometheus answered. Its URL, and
/// its server task.
#[allow(clippy::unwrap_used)] // a test's helper
async fn proxy_to(prom: &Prometheus, hold: Hold) -> (String, tokio::task::JoinHandle<()>) {
    let target = prom.remote_write_url();
    let client = reqwest::Client::new();
    let app = axum::Router::new().route(
        "/api/v1/write",
        axum::routing::post(move |headers: HeaderMap, body: Bytes| {
            let (client, target, hold) = (client.clone(), target.clone(), Arc::clone(&hold));
            async move {
                hold().await;
                let mut request = client.post(&target).body(body);
                for (name, value) in &headers {
                    if name != "host" && name != "content-length" {
                        request = request.header(name, value);
                    }
                }
                match request.send().await {
                    Ok(r) => (
                        StatusCode::from_u16(r.status().as_u16())
                            .unwrap_or(StatusCode::BAD_GATEWAY),
                        r.text().await.unwrap_or_default(),
                    ),
                    Err(e) => (StatusCode::BAD_GATEWAY, e.to_string()),
                }
            }
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/api/v1/write", listener.local_addr().unwrap());
    let server = tokio::spawn(async move {
        let _ = axum::serve(listener, app).await;
    });
    (url, server)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_slow_sink_pauses_partitions_without_spurious_late_events() {
    let _serial = SERIAL.lock().await;
    let Some((kafka, prom)) = services().await else {
        return;
    };
    let run = generate(100, 40, 31, in_bound);
    kafka.create_topic("slow", 4).await.unwrap();
    kafka.produce_events("slow", &run.events).await.unwrap();
    let expected = oracle::expected_windows(&run.events, &run.reference, WINDOW_MS, None);

    // A slow proxy in front of the real Prometheus (a real Prometheus cannot
    // be made slow): each request waits 500 ms, then is forwarded unchanged;
    // with small requests and queues a window takes about 6 s to write.
    let (proxy, server) = proxy_to(
        &prom,
        Arc::new(|| Box::pin(tokio::time::sleep(Duration::from_millis(500)))),
    )
    .await;

    let config = service_config(
        run.dir.path(),
        &kafka.bootstrap_servers(),
        "slow",
        &proxy,
        &run.reference_csv,
        "[channels]\nsource_to_enricher = 1\nenricher_to_aggregator = 1\naggregator_to_sink = 1\n",
    );
    edit_config(&config, small_batches);
    let service = Service::start(&config);
    assert_prometheus_holds(&prom, &service, &expected).await;
    assert_eq!(
        service
            .metric("fleet_aggregator_late_events_total", &[])
            .await,
        0.0
    );
    assert!(
        service.logged("paused=true"),
        "the source paused its partitions"
    );
    service.terminate().await;
    server.abort();
}

/// Issue #20, finding 3: while the source is paused, the consumer-lag gauge
/// (and so `/readyz` and the idleness rule) follows what piles up on the
/// broker, not the figure from the moment of the pause; then everything is
/// written once the sink takes again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn while_paused_the_lag_counts_what_piles_up() {
    let _serial = SERIAL.lock().await;
    let Some((kafka, prom)) = services().await else {
        return;
    };
    // Enough windows before the pause to fill every queue behind the sink.
    let run = generate(200, 100, 37, in_bound);
    let half = run.events.len() / 2;
    kafka.create_topic("piling", 4).await.unwrap();
    kafka
        .produce_events("piling", &run.events[..half])
        .await
        .unwrap();
    let expected = oracle::expected_windows(&run.events, &run.reference, WINDOW_MS, None);

    // A sink that takes nothing until the gate opens: the pipeline fills
    // and the source pauses its partitions.
    let open = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let gate = Arc::clone(&open);
    let (proxy, server) = proxy_to(
        &prom,
        Arc::new(move || {
            let gate = Arc::clone(&gate);
            Box::pin(async move {
                while !gate.load(std::sync::atomic::Ordering::SeqCst) {
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
            })
        }),
    )
    .await;
    let config = service_config(
        run.dir.path(),
        &kafka.bootstrap_servers(),
        "piling",
        &proxy,
        &run.reference_csv,
        "[channels]\nsource_to_enricher = 1\nenricher_to_aggregator = 1\naggregator_to_sink = 1\n",
    );
    edit_config(&config, small_batches);
    let service = Service::start(&config);
    let paused = async {
        loop {
            if service.metric("fleet_source_paused", &[]).await == 1.0 {
                return;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    };
    tokio::time::timeout(Duration::from_secs(60), paused)
        .await
        .unwrap_or_else(|_| panic!("the source never paused; log:\n{}", service.log_tail()));
    tokio::time::sleep(Duration::from_secs(2)).await;
    let lag = || service.metric("fleet_source_consumer_lag_messages", &[]);
    let before = lag().await;
    kafka
        .produce_events("piling", &run.events[half..])
        .await
        .unwrap();
    // Tansu reports a partition's end as its last batch's first offset + 1,
    // so the gauge may fall short of the count by up to a batch per partition.
    let piled = (run.events.len() - half) as f64;
    let followed = async {
        loop {
            let now = lag().await;
            if now >= before + piled / 2.0 {
                return now;
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    };
    let after = tokio::time::timeout(Duration::from_secs(20), followed)
        .await
        .unwrap_or_else(|_| panic!("the lag stayed near {before} while {piled} messages piled up"));
    assert_eq!(
        service.metric("fleet_source_paused", &[]).await,
        1.0,
        "still paused (lag {before} → {after})"
    );
    open.store(true, std::sync::atomic::Ordering::SeqCst);
    assert_prometheus_holds(&prom, &service, &expected).await;
    service.terminate().await;
    server.abort();
}

/// Small batches all the way to the sink, one request at a time: the sink
/// of the slow-endpoint tests holds the pipeline back early.
fn small_batches(text: String) -> String {
    text.replace(
        "[remote_write]",
        "[remote_write]\nmax_samples_per_request = 50\nshards = 1\nshard_queue_capacity = 1",
    )
    .replace("[kafka]", "[kafka]\nmax_batch_events = 200")
}
