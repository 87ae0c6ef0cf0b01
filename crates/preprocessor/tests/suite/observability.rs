//! The service's own metrics and health on real services: a Prometheus that
//! both receives the aggregates and scrapes the service's `/metrics`, as in
//! production. The counters agree with what was generated and written,
//! `/readyz` answers 200 while the service processes, and every alert rule
//! of `deploy/prometheus/alerts.yml` evaluates in that Prometheus.

use std::collections::BTreeSet;
use std::time::Duration;

use crate::common::*;
use fleet_testkit::{oracle, PrometheusClient};

/// The rules file shipped for operators.
const ALERT_RULES: &str = include_str!("../../../../deploy/prometheus/alerts.yml");

/// Polls `expr` in Prometheus until it returns `want` (or the time is up) and
/// returns the last value seen.
async fn scraped_value(prom: &PrometheusClient, expr: &str, want: f64) -> Option<f64> {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    loop {
        let got = prom
            .query(expr, None)
            .await
            .ok()
            .and_then(|v| v.first().map(|s| s.value));
        if got == Some(want) || tokio::time::Instant::now() >= deadline {
            return got;
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}

/// Polls the service's own counter until it reaches `want` (or the time is
/// up): acknowledgements may trail what Prometheus already holds.
async fn service_value(service: &Service, name: &str, want: f64) -> f64 {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    loop {
        let got = service.metric(name, &[]).await;
        if got == want || tokio::time::Instant::now() >= deadline {
            return got;
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn self_metrics_agree_with_the_run_and_alert_rules_evaluate() {
    let _serial = SERIAL.lock().await;
    let Some((kafka, prom, port)) = observed_services().await else {
        return;
    };

    let run = generate(300, 60, 17, in_bound);
    kafka.create_topic("observed", 4).await.unwrap();
    let expected = oracle::expected_windows(&run.events, &run.reference, WINDOW_MS, None);
    let samples: usize = oracle::expected_samples(&expected, "")
        .values()
        .map(|metrics| metrics.len())
        .sum();
    let events = run.events.len() as f64;
    let config = config_for(&run, &kafka, &prom, "observed");

    // The fleet sends for about 18 s, so that the service is seen processing.
    let producer = produce_paced(
        &kafka,
        "observed",
        run.events.clone(),
        300,
        Duration::from_millis(300),
    );
    let service = Service::start_with_port(&config, port);

    // /readyz: 200 while events are still coming in.
    let mut ready_while_processing = None;
    let mut last_not_ready = String::new();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    while tokio::time::Instant::now() < deadline {
        let (ready, body) = service.readiness().await;
        let consumed = service.metric("fleet_source_events_total", &[]).await;
        if ready && consumed > 0.0 && consumed < events {
            ready_while_processing = Some(consumed);
            break;
        }
        if !ready {
            last_not_ready = body;
        }
        if consumed >= events {
            break;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    assert!(
        ready_while_processing.is_some(),
        "/readyz never answered 200 while events were being processed; last answer: {last_not_ready}\nlog:\n{}",
        service.log_tail()
    );
    producer.await.unwrap();

    // The output is exact, then the counters say so too.
    assert_prometheus_holds(&prom, &service, &expected).await;
    assert_eq!(
        service_value(&service, "fleet_source_events_total", events).await,
        events,
        "events in = events generated"
    );
    assert_eq!(
        service_value(
            &service,
            "fleet_remote_write_samples_sent_total",
            samples as f64
        )
        .await,
        samples as f64,
        "samples written = the oracle's samples ({} windows and groups)",
        expected.len()
    );
    assert_eq!(
        service_value(
            &service,
            "fleet_aggregator_windows_emitted_total",
            expected.len() as f64
        )
        .await,
        expected.len() as f64,
        "one window aggregate per (window, model, region)"
    );
    assert_eq!(
        service
            .metric("fleet_remote_write_samples_dropped_total", &[])
            .await,
        0.0
    );
    let (ready, body) = service.readiness().await;
    assert!(ready, "ready once caught up: {body}");

    // Prometheus scraped the same numbers.
    assert_eq!(
        scraped_value(&prom, r#"up{job="fleet"}"#, 1.0).await,
        Some(1.0),
        "Prometheus scrapes the service"
    );
    assert_eq!(
        scraped_value(&prom, "fleet_source_events_total", events).await,
        Some(events)
    );
    assert_eq!(
        scraped_value(
            &prom,
            "fleet_remote_write_samples_sent_total",
            samples as f64
        )
        .await,
        Some(samples as f64)
    );

    // Every alert expression evaluates in a Prometheus holding the service's
    // metrics, and names only metrics the service exports (a misspelt name
    // would evaluate fine, to nothing, for ever).
    let exprs = rule_expressions(ALERT_RULES);
    assert!(exprs.len() >= 6, "rules found: {exprs:?}");
    let exposition = reqwest::get(&service.metrics_url)
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let exported: BTreeSet<&str> = exposition
        .lines()
        .filter_map(|l| l.strip_prefix("# TYPE "))
        .filter_map(|l| l.split_whitespace().next())
        .collect();
    for expr in &exprs {
        let result = prom.query(expr, None).await;
        assert!(result.is_ok(), "{expr}: {}", result.unwrap_err());
        // As deployed the job is "fleet-preprocessor"; here it is "fleet".
        let local = expr.replace(r#"job="fleet-preprocessor""#, r#"job="fleet""#);
        let result = prom.query(&local, None).await;
        assert!(result.is_ok(), "{local}: {}", result.unwrap_err());
        for name in metric_names(expr) {
            let family = name.strip_suffix("_total").unwrap_or(&name);
            assert!(
                exported.contains(family) || exported.contains(name.as_str()),
                "{expr}: the service exports no metric {name}"
            );
        }
    }
    // A healthy run fires none of the "not ready" conditions.
    for expr in [
        r#"up{job="fleet"} == 0"#,
        "fleet_source_assigned_partitions == 0",
    ] {
        let firing = prom.query(expr, None).await.unwrap();
        assert!(firing.is_empty(), "{expr}: {firing:?}");
    }
    service.terminate().await;
}

/// The `fleet_*` metric names an expression refers to.
fn metric_names(expr: &str) -> BTreeSet<String> {
    let mut names = BTreeSet::new();
    let mut rest = expr;
    while let Some(at) = rest.find("fleet_") {
        let before = rest[..at].chars().last();
        let tail = &rest[at..];
        let end = tail
            .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
            .unwrap_or(tail.len());
        if !before.is_some_and(|c| c.is_ascii_alphanumeric() || c == '_' || c == '"') {
            names.insert(tail[..end].to_string());
        }
        rest = &tail[end..];
    }
    names
}
