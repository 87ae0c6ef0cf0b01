//! Every query of the Grafana dashboards returns data from a real Prometheus
//! after an end-to-end run: generated events → the broker → fleet-preprocessor →
//! Prometheus, then each panel target's `expr` and each templating query,
//! with the template variables substituted as Grafana would for "All", is
//! evaluated as an instant query at the end of the generated data.
//!
//! The dashboards of the default configuration's series are checked here,
//! after a run of the reference demo's events; the wide-fleet dashboard
//! after the wide run of `wide_fleet`, which writes its series.
#![allow(clippy::unwrap_used)] // helpers of the tests below

use crate::common::*;
use fleet_testkit::oracle;
use fleet_testkit::Prometheus;

/// The dashboards over the default configuration's series, relative to the
/// workspace root.
const DASHBOARDS: [&str; 2] = [
    "grafana/dashboards/fleet-overview.json",
    "grafana/dashboards/vehicle-drilldown.json",
];

/// The dashboard over the series of the wide example
/// (`config/examples/wide-fleet.toml`), checked by `wide_fleet`.
pub const WIDE: [&str; 1] = ["grafana/dashboards/wide-fleet.json"];

fn workspace_file(relative: &str) -> std::path::PathBuf {
    std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../..")
        .join(relative)
}

#[test]
fn dashboard_queries_are_extracted_and_substituted() {
    let dashboard: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(workspace_file(DASHBOARDS[0])).unwrap())
            .unwrap();
    let queries = dashboard_queries(&dashboard);
    let panels = queries
        .iter()
        .filter(|q| q.what.starts_with("panel"))
        .count();
    let variables = queries.len() - panels;
    assert!(panels >= 12, "one query per panel at least: {queries:#?}");
    assert!(variables >= 2, "region and model at least: {queries:#?}");
    for q in &queries {
        let promql = to_promql(&q.expr);
        assert!(!promql.contains('$'), "{}: {promql}", q.what);
    }
    assert_eq!(
        to_promql("label_values(vehicles_reporting{region=~\"$region\"}, model)"),
        "group by (model) (vehicles_reporting{region=~\".*\"})"
    );
    assert_eq!(
        to_promql("sum(rate(x{model=~\"${model}\"}[$__rate_interval])) / $__range"),
        "sum(rate(x{model=~\".*\"}[1m])) / 1h"
    );
    assert_eq!(
        to_promql("label_values(x{model=~\"$model\"}, depot)"),
        "group by (depot) (x{model=~\".*\"})"
    );
    assert_eq!(
        to_promql("sum by (depot) (x{depot=~\"$depot\",region=~\"${depot}\"})"),
        "sum by (depot) (x{depot=~\".*\",region=~\".*\"})"
    );
    // Every dashboard's queries are left without a variable.
    for file in DASHBOARDS.iter().chain(&WIDE) {
        let dashboard: serde_json::Value =
            serde_json::from_str(&std::fs::read_to_string(workspace_file(file)).unwrap()).unwrap();
        let queries = dashboard_queries(&dashboard);
        assert!(!queries.is_empty(), "{file}: no query");
        for q in &queries {
            let promql = to_promql(&q.expr);
            assert!(!promql.contains('$'), "{file}: {}: {promql}", q.what);
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_dashboard_query_returns_data_after_an_end_to_end_run() {
    let _serial = SERIAL.lock().await;
    let Some((kafka, prom)) = services().await else {
        return;
    };
    let run = generate(200, 30, 23, in_bound);
    kafka.create_topic("dashboards", 3).await.unwrap();
    kafka
        .produce_events("dashboards", &run.events)
        .await
        .unwrap();
    let expected = oracle::expected_windows(&run.events, &run.reference, WINDOW_MS, None);
    // The drill-down output on for every vehicle, for the drill-down dashboard.
    let config = service_config(
        run.dir.path(),
        &kafka.bootstrap_servers(),
        "dashboards",
        &prom.remote_write_url(),
        &run.reference_csv,
        "[drilldown]\nenabled = true\nvehicles = \"all\"\n",
    );
    let service = Service::start(&config);
    assert_prometheus_holds(&prom, &service, &expected).await;
    let (_, end) = time_range(&expected);
    // The check can fail: a selector matching nothing gives no data.
    let nothing = to_promql("sum(vehicles_in_motion{region=~\"nowhere\",model=~\"$model\"})");
    assert!(prom.query(&nothing, Some(end)).await.unwrap().is_empty());

    let (checked, failures) = failing_queries(&prom, &DASHBOARDS, end).await;
    assert!(checked >= 20, "queries checked: {checked}");
    assert!(
        failures.is_empty(),
        "{} of {checked} dashboard queries fail:\n{}",
        failures.len(),
        failures.join("\n")
    );
    service.terminate().await;
}

/// Runs every query of the dashboards `files` (workspace-relative) as an
/// instant query at `at_ms`, as Grafana would with "All" selected: how many
/// ran, and each that failed, gave no data, a series without the label a
/// variable offers, or a non-finite value.
pub async fn failing_queries(
    prom: &Prometheus,
    files: &[&str],
    at_ms: i64,
) -> (usize, Vec<String>) {
    let mut checked = 0;
    let mut failures = Vec::new();
    for &file in files {
        let dashboard: serde_json::Value =
            serde_json::from_str(&std::fs::read_to_string(workspace_file(file)).unwrap()).unwrap();
        for query in dashboard_queries(&dashboard) {
            let promql = to_promql(&query.expr);
            checked += 1;
            match prom.query(&promql, Some(at_ms)).await {
                Ok(samples) if samples.is_empty() => failures.push(format!(
                    "{file}: {}: no data from {promql:?} (dashboard: {:?})",
                    query.what, query.expr
                )),
                Ok(samples) => {
                    eprintln!("{}: {} series from {promql}", query.what, samples.len());
                    if let Some(label) = label_values_label(&query.expr) {
                        let bad: Vec<_> = samples
                            .iter()
                            .filter(|s| s.labels.get(&label).is_none_or(String::is_empty))
                            .collect();
                        if !bad.is_empty() {
                            failures.push(format!(
                                "{file}: {}: {promql:?} gave series without {label}: {bad:?}",
                                query.what
                            ));
                        }
                    }
                    if let Some(nan) = samples.iter().find(|s| !s.value.is_finite()) {
                        failures.push(format!(
                            "{file}: {}: {promql:?} gave a non-finite value: {nan:?}",
                            query.what
                        ));
                    }
                }
                Err(error) => failures.push(format!(
                    "{file}: {}: {promql:?} failed: {error}",
                    query.what
                )),
            }
        }
    }
    (checked, failures)
}

/// One query of a dashboard: where it is and its text as written.
#[derive(Debug)]
struct DashboardQuery {
    what: String,
    expr: String,
}

/// Every panel target's `expr` (panels nested in rows included) and every
/// templating variable's query, in dashboard order.
fn dashboard_queries(dashboard: &serde_json::Value) -> Vec<DashboardQuery> {
    fn panels(list: &serde_json::Value, out: &mut Vec<DashboardQuery>) {
        for panel in list.as_array().into_iter().flatten() {
            let title = panel["title"].as_str().unwrap_or("?");
            for target in panel["targets"].as_array().into_iter().flatten() {
                if let Some(expr) = target["expr"].as_str() {
                    out.push(DashboardQuery {
                        what: format!(
                            "panel {:?} target {}",
                            title,
                            target["refId"].as_str().unwrap_or("?")
                        ),
                        expr: expr.to_string(),
                    });
                }
            }
            panels(&panel["panels"], out);
        }
    }
    let mut out = Vec::new();
    panels(&dashboard["panels"], &mut out);
    for variable in dashboard["templating"]["list"]
        .as_array()
        .into_iter()
        .flatten()
    {
        if variable["type"].as_str() != Some("query") {
            continue;
        }
        let query = match &variable["query"] {
            serde_json::Value::String(q) => Some(q.as_str()),
            object => object["query"].as_str(),
        };
        if let Some(query) = query {
            out.push(DashboardQuery {
                what: format!("variable ${}", variable["name"].as_str().unwrap_or("?")),
                expr: query.to_string(),
            });
        }
    }
    out
}

/// The label of a Grafana `label_values(selector, label)` query.
fn label_values_label(query: &str) -> Option<String> {
    let inner = query
        .trim()
        .strip_prefix("label_values(")?
        .strip_suffix(')')?;
    let (_, label) = inner.rsplit_once(',')?;
    Some(label.trim().to_string())
}

/// The PromQL Grafana runs for `expr` with "All" selected for `$region`,
/// `$model` and `$depot` (their `allValue` is `.*`), a 1-minute interval and a 1-hour
/// range. A `label_values(selector, label)` variable query becomes
/// `group by (label) (selector)`: one series per value the variable offers.
fn to_promql(expr: &str) -> String {
    let mut promql = expr.to_string();
    for (variable, value) in [
        ("${region}", ".*"),
        ("$region", ".*"),
        ("${model}", ".*"),
        ("$model", ".*"),
        ("${vehicle_id}", ".*"),
        ("$vehicle_id", ".*"),
        ("${depot}", ".*"),
        ("$depot", ".*"),
        ("${__rate_interval}", "1m"),
        ("$__rate_interval", "1m"),
        ("${__interval}", "1m"),
        ("$__interval", "1m"),
        ("${__range}", "1h"),
        ("$__range", "1h"),
    ] {
        promql = promql.replace(variable, value);
    }
    if let Some(label) = label_values_label(&promql) {
        let inner = &promql.trim()["label_values(".len()..promql.trim().len() - 1];
        let (selector, _) = inner.rsplit_once(',').unwrap_or((inner, ""));
        promql = format!("group by ({label}) ({})", selector.trim());
    }
    promql
}
