//! Logs, self-metrics and health endpoints.
//!
//! One [`prometheus_client::registry::Registry`] with the prefix `fleet` is
//! built at start; each stage registers its own metrics struct in a
//! sub-registry. [`serve`] exposes it on `/metrics` next to `/healthz`
//! (liveness: the runtime answers) and `/readyz` (every readiness condition
//! holds; the body names those that do not).

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use axum::http::{header, StatusCode};
use axum::response::IntoResponse;
use axum::routing::get;
use prometheus_client::registry::Registry;
use serde::Deserialize;
use tokio::net::TcpListener;

/// How log lines are written.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum LogFormat {
    /// Human-readable lines.
    #[default]
    Human,
    /// One JSON object per line (CloudWatch, Loki).
    Json,
}

/// Installs the global `tracing` subscriber, writing to stderr. `RUST_LOG`,
/// when set, overrides `level`. Calling it twice is harmless.
pub fn init_tracing(format: LogFormat, level: &str) {
    use tracing_subscriber::EnvFilter;
    let filter = EnvFilter::try_from_default_env()
        .or_else(|_| EnvFilter::try_new(level))
        .unwrap_or_else(|_| EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .with_writer(std::io::stderr);
    let _ = match format {
        LogFormat::Human => builder.try_init(),
        LogFormat::Json => builder.json().flatten_event(true).try_init(),
    };
}

/// Named conditions that must all hold for the service to be ready.
#[derive(Debug, Default)]
pub struct Readiness {
    conditions: Mutex<BTreeMap<&'static str, Option<String>>>,
}

impl Readiness {
    /// A condition that is not met yet, with the reason.
    pub fn require(&self, name: &'static str, reason: impl Into<String>) {
        self.set(name, Some(reason.into()));
    }

    /// The condition holds.
    pub fn ok(&self, name: &'static str) {
        self.set(name, None);
    }

    fn set(&self, name: &'static str, failing: Option<String>) {
        if let Ok(mut c) = self.conditions.lock() {
            c.insert(name, failing);
        }
    }

    /// `Ok(())` when every condition holds, otherwise every failing one as `name: reason`.
    pub fn check(&self) -> Result<(), Vec<String>> {
        let c = match self.conditions.lock() {
            Ok(c) => c,
            Err(_) => return Err(vec!["readiness state poisoned".into()]),
        };
        let failing: Vec<String> = c
            .iter()
            .filter_map(|(n, r)| r.as_ref().map(|r| format!("{n}: {r}")))
            .collect();
        if failing.is_empty() {
            Ok(())
        } else {
            Err(failing)
        }
    }
}

/// Binds the telemetry endpoint; kept apart from [`serve`] so that a busy port
/// is reported at start.
pub async fn bind(addr: SocketAddr) -> std::io::Result<TcpListener> {
    TcpListener::bind(addr).await
}

/// Serves `/metrics`, `/healthz` and `/readyz` until the task is dropped.
pub async fn serve(
    listener: TcpListener,
    registry: Arc<Registry>,
    readiness: Arc<Readiness>,
) -> std::io::Result<()> {
    let metrics = move || {
        let registry = registry.clone();
        async move {
            let mut body = String::new();
            match prometheus_client::encoding::text::encode(&mut body, &registry) {
                Ok(()) => (
                    StatusCode::OK,
                    [(
                        header::CONTENT_TYPE,
                        "application/openmetrics-text; version=1.0.0; charset=utf-8",
                    )],
                    body,
                )
                    .into_response(),
                Err(e) => (StatusCode::INTERNAL_SERVER_ERROR, e.to_string()).into_response(),
            }
        }
    };
    let ready = move || {
        let readiness = readiness.clone();
        async move {
            match readiness.check() {
                Ok(()) => (StatusCode::OK, "ready\n".to_string()),
                Err(failing) => (
                    StatusCode::SERVICE_UNAVAILABLE,
                    format!("not ready\n{}\n", failing.join("\n")),
                ),
            }
        }
    };
    let app = axum::Router::new()
        .route("/metrics", get(metrics))
        .route("/healthz", get(|| async { "ok\n" }))
        .route("/readyz", get(ready));
    axum::serve(listener, app).await
}

/// Milliseconds since the Unix epoch on the wall clock.
pub fn wall_clock_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
        .unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn readiness_lists_failing_conditions() {
        let r = Readiness::default();
        r.require("partitions", "no partitions assigned");
        r.ok("reference");
        assert_eq!(
            r.check().unwrap_err(),
            vec!["partitions: no partitions assigned".to_string()]
        );
        r.ok("partitions");
        assert!(r.check().is_ok());
    }
}
