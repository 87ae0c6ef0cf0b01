//! `/readyz` of the real binary: not ready before Kafka assigns partitions,
//! not ready while the remote-write endpoint refuses its credentials or has
//! been unreachable for longer than `remote_write.unready_after_ms`, and
//! ready again once the endpoint accepts writes. The refusal (401) comes from
//! a tiny in-process server, as a real Prometheus cannot be made to answer it;
//! the unreachable endpoint is a loopback port nobody listens on, later
//! taken by such a server.
//!
//! Last, every query of the "Preprocessor health" dashboard returns data
//! from a real Prometheus scraping the service during an end-to-end run.
#![allow(clippy::unwrap_used)] // helpers of the tests below

use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use crate::common::*;
use axum::http::StatusCode;
use fleet_testkit::TestBroker;

/// The dashboard whose every query must return data.
const HEALTH_DASHBOARD: &str =
    include_str!("../../../../grafana/dashboards/preprocessor-health.json");

/// An endpoint standing in for a remote-write receiver: 401 while `accept`
/// is false, 204 (written) once it is true.
async fn endpoint(addr: SocketAddr, accept: Arc<AtomicBool>) -> tokio::task::JoinHandle<()> {
    let app = axum::Router::new().route(
        "/api/v1/write",
        axum::routing::post(move || {
            let accept = accept.clone();
            async move {
                if accept.load(Ordering::SeqCst) {
                    (StatusCode::NO_CONTENT, "")
                } else {
                    (StatusCode::UNAUTHORIZED, "missing credentials")
                }
            }
        }),
    );
    let listener = tokio::net::TcpListener::bind(addr).await.unwrap();
    tokio::spawn(async move {
        let _ = axum::serve(listener, app).await;
    })
}

/// Polls `/readyz` until `want(ready, body)` holds or `timeout` passes;
/// returns the last answer.
async fn readiness_until(
    service: &Service,
    timeout: Duration,
    want: impl Fn(bool, &str) -> bool,
) -> (bool, String) {
    let deadline = tokio::time::Instant::now() + timeout;
    loop {
        let (ready, body) = service.readiness().await;
        if want(ready, &body) || tokio::time::Instant::now() >= deadline {
            return (ready, body);
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// A service reading a fresh one-partition topic of `kafka` while the fleet
/// keeps sending (about 30 s), writing to `url`; `remote_write` holds extra
/// keys of that section.
async fn processing_service(
    kafka: &TestBroker,
    topic: &str,
    url: &str,
    remote_write: &str,
) -> (Service, Run, tokio::task::JoinHandle<()>) {
    let run = generate(50, 300, 23, in_bound);
    kafka.create_topic(topic, 1).await.unwrap();
    let config = service_config(
        run.dir.path(),
        &kafka.bootstrap_servers(),
        topic,
        url,
        &run.reference_csv,
        remote_write,
    );
    let service = Service::start(&config);
    // 250 events are 5 s of fleet time: a window closes at every chunk.
    let producer = produce_paced(
        kafka,
        topic,
        run.events.clone(),
        250,
        Duration::from_millis(500),
    );
    (service, run, producer)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn not_ready_before_partitions_are_assigned() {
    let _serial = SERIAL.lock().await;
    let run = generate(5, 10, 1, in_bound);
    // Nothing listens there: the consumer never joins a group.
    let brokers = format!("127.0.0.1:{}", fleet_testkit::free_port().unwrap());
    let config = service_config(
        run.dir.path(),
        &brokers,
        "nowhere",
        "http://127.0.0.1:9/api/v1/write",
        &run.reference_csv,
        "",
    );
    let service = Service::start(&config);
    let (ready, body) = readiness_until(&service, Duration::from_secs(20), |_, body| {
        body.contains("not ready")
    })
    .await;
    assert!(!ready, "ready without a broker: {body}");
    assert!(body.contains("kafka_partitions"), "{body}");
    assert!(
        !body.contains("reference_data"),
        "the reference data is loaded: {body}"
    );
    // It stays so: the broker never appears.
    tokio::time::sleep(Duration::from_secs(3)).await;
    let (ready, body) = service.readiness().await;
    assert!(!ready && body.contains("kafka_partitions"), "{body}");
    assert_eq!(service.metric("fleet_ready", &[]).await, 0.0);
    service.kill();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn not_ready_while_the_endpoint_refuses_auth_then_ready_when_it_accepts() {
    let _serial = SERIAL.lock().await;
    let Some(kafka) = fleet_testkit::broker_or_skip().await else {
        return;
    };
    let port = fleet_testkit::free_port().unwrap();
    let accept = Arc::new(AtomicBool::new(false));
    let server = endpoint(([127, 0, 0, 1], port).into(), accept.clone()).await;
    let url = format!("http://127.0.0.1:{port}/api/v1/write");
    let (service, _run, producer) = processing_service(&kafka, "refused", &url, "").await;

    let (ready, body) = readiness_until(&service, Duration::from_secs(60), |_, body| {
        body.contains("remote_write")
    })
    .await;
    assert!(
        !ready && body.contains("remote_write") && body.contains("401"),
        "not ready while refused: {body}\nlog:\n{}",
        service.log_tail()
    );
    assert!(
        !body.contains("kafka_partitions"),
        "partitions are assigned: {body}"
    );
    assert_eq!(service.metric("fleet_ready", &[]).await, 0.0);

    accept.store(true, Ordering::SeqCst);
    let (ready, body) = readiness_until(&service, Duration::from_secs(30), |ready, _| ready).await;
    assert!(
        ready,
        "ready once the endpoint accepts: {body}\nlog:\n{}",
        service.log_tail()
    );
    assert_eq!(service.metric("fleet_ready", &[]).await, 1.0);
    producer.abort();
    service.terminate().await;
    server.abort();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn not_ready_when_the_endpoint_is_unreachable_past_the_grace_then_ready() {
    let _serial = SERIAL.lock().await;
    let Some(kafka) = fleet_testkit::broker_or_skip().await else {
        return;
    };
    // Nobody listens on the port until the endpoint "recovers".
    let port = fleet_testkit::free_port().unwrap();
    let url = format!("http://127.0.0.1:{port}/api/v1/write");
    let (service, _run, producer) =
        processing_service(&kafka, "unreachable", &url, "unready_after_ms = 1500").await;

    let (ready, body) = readiness_until(&service, Duration::from_secs(60), |_, body| {
        body.contains("remote_write")
    })
    .await;
    assert!(
        !ready && body.contains("remote_write") && body.contains("failed for"),
        "not ready once unreachable past the grace: {body}\nlog:\n{}",
        service.log_tail()
    );

    let server = endpoint(
        ([127, 0, 0, 1], port).into(),
        Arc::new(AtomicBool::new(true)),
    )
    .await;
    let (ready, body) = readiness_until(&service, Duration::from_secs(30), |ready, _| ready).await;
    assert!(
        ready,
        "ready once the endpoint answers: {body}\nlog:\n{}",
        service.log_tail()
    );
    producer.abort();
    service.terminate().await;
    server.abort();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn not_ready_when_the_broker_goes_away_past_the_progress_timeout() {
    let _serial = SERIAL.lock().await;
    let Some(kafka) = fleet_testkit::broker_or_skip().await else {
        return;
    };
    let port = fleet_testkit::free_port().unwrap();
    let server = endpoint(
        ([127, 0, 0, 1], port).into(),
        Arc::new(AtomicBool::new(true)),
    )
    .await;
    let url = format!("http://127.0.0.1:{port}/api/v1/write");
    let run = generate(50, 300, 31, in_bound);
    kafka.create_topic("vanishing", 1).await.unwrap();
    let config = service_config(
        run.dir.path(),
        &kafka.bootstrap_servers(),
        "vanishing",
        &url,
        &run.reference_csv,
        "",
    );
    edit_config(&config, |text| {
        text.replace(
            "drain_timeout_ms = 5000",
            "drain_timeout_ms = 5000\nprogress_timeout_ms = 2000",
        )
    });
    let service = Service::start(&config);
    let producer = produce_paced(
        &kafka,
        "vanishing",
        run.events.clone(),
        250,
        Duration::from_millis(500),
    );
    let (ready, body) = readiness_until(&service, Duration::from_secs(60), |ready, _| ready).await;
    assert!(
        ready,
        "ready while processing: {body}\nlog:\n{}",
        service.log_tail()
    );
    // The image's health check command agrees.
    assert_eq!(service.healthcheck(true), (true, String::new()));

    producer.abort();
    kafka.stop();
    let (ready, body) = readiness_until(&service, Duration::from_secs(30), |_, body| {
        body.contains("kafka_progress")
    })
    .await;
    assert!(
        !ready && body.contains("kafka_progress") && body.contains("no connection"),
        "not ready once no broker is reachable: {body}\nlog:\n{}",
        service.log_tail()
    );
    assert_eq!(service.metric("fleet_ready", &[]).await, 0.0);
    let (ready, why) = service.healthcheck(true);
    assert!(!ready && why.contains("kafka_progress"), "{why}");
    let (alive, why) = service.healthcheck(false);
    assert!(alive, "alive while not ready: {why}");
    // A clean shutdown would wait on the missing broker for its commit.
    service.kill();
    server.abort();
}

/// Every panel target's `expr` of a dashboard, and for each
/// `label_values(<selector>, <label>)` variable its selector over the last
/// hour (Grafana asks for label values over the dashboard's time range, and
/// the generated windows are 20 minutes old), as `(where, query)`; template
/// variables become `.*` (Grafana's "All") and `$__rate_interval` becomes `1m`.
fn dashboard_queries(dashboard: &serde_json::Value) -> Vec<(String, String)> {
    let substitute = |expr: &str| {
        let mut expr = expr.replace("$__rate_interval", "1m");
        let variables = dashboard["templating"]["list"].as_array().cloned();
        for v in variables.unwrap_or_default() {
            if let Some(name) = v["name"].as_str() {
                expr = expr
                    .replace(&format!("${{{name}}}"), ".*")
                    .replace(&format!("${name}"), ".*");
            }
        }
        expr
    };
    let mut queries = Vec::new();
    for panel in dashboard["panels"].as_array().into_iter().flatten() {
        let title = panel["title"].as_str().unwrap_or("?");
        for target in panel["targets"].as_array().into_iter().flatten() {
            if let Some(expr) = target["expr"].as_str() {
                let what = format!("panel {title:?} target {}", target["refId"]);
                queries.push((what, substitute(expr)));
            }
        }
    }
    for v in dashboard["templating"]["list"]
        .as_array()
        .into_iter()
        .flatten()
    {
        let Some(definition) = v["definition"].as_str() else {
            continue;
        };
        if let Some(args) = definition
            .strip_prefix("label_values(")
            .and_then(|a| a.strip_suffix(')'))
        {
            let selector = args.rsplit_once(',').map_or(args, |(s, _)| s);
            let what = format!("variable {}", v["name"]);
            let selector = substitute(selector.trim());
            queries.push((what, format!("last_over_time({selector}[1h])")));
        }
    }
    queries
}

#[test]
fn dashboard_queries_cover_every_target_and_variable() {
    let dashboard: serde_json::Value = serde_json::from_str(HEALTH_DASHBOARD).unwrap();
    let queries = dashboard_queries(&dashboard);
    assert!(queries.len() >= 15, "{queries:?}");
    for (what, query) in &queries {
        assert!(
            !query.contains('$'),
            "{what}: unsubstituted variable in {query}"
        );
    }
    assert!(queries
        .iter()
        .any(|(w, q)| w == "variable \"instance\"" && q == "last_over_time(fleet_build_info[1h])"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_health_dashboard_query_returns_data_from_a_real_prometheus() {
    let _serial = SERIAL.lock().await;
    let Some((kafka, prom, port)) = observed_services().await else {
        return;
    };
    let run = generate(100, 120, 29, in_bound);
    kafka.create_topic("dashboard", 2).await.unwrap();
    let config = config_for(&run, &kafka, &prom, "dashboard");
    let service = Service::start_with_port(&config, port);
    let producer = produce_paced(
        &kafka,
        "dashboard",
        run.events.clone(),
        500,
        Duration::from_millis(500),
    );
    // Data flows through every stage before the queries are asked.
    let written = fleet_testkit::poll_until(Duration::from_secs(90), || async {
        let sent = prom
            .query("fleet_remote_write_samples_sent_total > 0", None)
            .await
            .unwrap_or_default();
        (!sent.is_empty()).then_some(())
    })
    .await;
    assert!(
        written.is_some(),
        "Prometheus never scraped samples written; log:\n{}",
        service.log_tail()
    );

    let dashboard: serde_json::Value = serde_json::from_str(HEALTH_DASHBOARD).unwrap();
    let mut empty = Vec::new();
    for (what, query) in dashboard_queries(&dashboard) {
        // A rate needs two scrapes in its range: poll a little.
        let result = fleet_testkit::poll_until(Duration::from_secs(30), || {
            let (prom, query) = (&prom, &query);
            async move {
                let result = prom.query(query, None).await;
                match result {
                    Ok(samples) if !samples.is_empty() => Some(Ok(samples.len())),
                    Ok(_) => None,
                    Err(e) => Some(Err(e.to_string())),
                }
            }
        })
        .await;
        match result {
            Some(Ok(_)) => {}
            Some(Err(e)) => empty.push(format!("{what}: {query}: {e}")),
            None => empty.push(format!("{what}: {query}: no data")),
        }
    }
    assert!(
        empty.is_empty(),
        "dashboard queries without data:\n{}",
        empty.join("\n")
    );
    producer.await.unwrap();
    service.terminate().await;
}
