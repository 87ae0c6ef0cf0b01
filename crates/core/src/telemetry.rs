//! Logs, self-metrics and health endpoints.
//!
//! One [`prometheus_client::registry::Registry`] with the prefix `fleet` is
//! built at start; each stage registers its own metrics struct in a
//! sub-registry. [`TelemetryServer`] exposes it on `/metrics` next to `/healthz`
//! (liveness: the runtime answers) and `/readyz` (every readiness condition
//! holds; the body names those that do not).
//!
//! [`TelemetryMetrics`] holds the service-wide metrics that belong to no
//! stage: the process start time, the build, readiness as a gauge, and the
//! fill of the channels between stages.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use axum::http::{header, StatusCode};
use axum::response::IntoResponse;
use axum::routing::get;
use prometheus_client::encoding::{EncodeLabelSet, EncodeLabelValue, LabelValueEncoder};
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::{Metric, Registry, Unit};
use serde::{Deserialize, Serialize};
use tokio::net::TcpListener;

/// How log lines are written.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum LogFormat {
    /// Human-readable lines.
    #[default]
    Human,
    /// One JSON object per line (CloudWatch, Loki).
    Json,
}

/// `[telemetry]`: the HTTP endpoint and the logs.
#[derive(Clone, Debug, PartialEq, Eq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct TelemetryConfig {
    /// `host:port` of the HTTP endpoint (`/metrics`, `/healthz`, `/readyz`); empty: none.
    pub listen: String,
    /// Log line format.
    pub log_format: LogFormat,
    /// Log level or filter.
    pub log_level: String,
}

impl TelemetryConfig {
    /// Checks every key, naming it under `telemetry.`; returns the endpoint's
    /// address, if one is configured and valid.
    pub fn validate(&self, problems: &mut crate::config::Problems) -> Option<SocketAddr> {
        problems.check(
            is_log_filter(&self.log_level),
            "telemetry.log_level",
            format!(
                "{:?} is neither a level (error, warn, info, debug, trace, off) nor \
                 comma-separated target=level directives (RUST_LOG takes any filter)",
                self.log_level
            ),
        );
        let listen = self.listen.trim();
        if listen.is_empty() {
            return None;
        }
        let parsed = listen.parse::<SocketAddr>();
        problems.check(
            parsed.is_ok(),
            "telemetry.listen",
            format!("{listen:?} is not an ip:port address"),
        );
        parsed.ok()
    }
}

/// Whether `filter` is a level or `target=level` directives: what
/// `telemetry.log_level` takes. A filter the subscriber reads otherwise (a
/// misspelt level is read as a target) would silence every line.
fn is_log_filter(filter: &str) -> bool {
    let level = |l: &str| {
        ["error", "warn", "info", "debug", "trace", "off"]
            .iter()
            .any(|known| l.trim().eq_ignore_ascii_case(known))
    };
    let target = |t: &str| {
        let t = t.trim();
        !t.is_empty()
            && t.chars()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | ':' | '-' | '.'))
    };
    !filter.trim().is_empty()
        && filter
            .split(',')
            .all(|directive| match directive.split_once('=') {
                Some((t, l)) => target(t) && level(l),
                None => level(directive),
            })
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

/// Registration that returns the metric, so that a stage's metrics struct
/// is built in one expression naming each metric once:
/// `events: registry.metric("events", "Events decoded")`.
pub trait RegisterMetric {
    /// Registers a new `M` as `name`; clones of the result share its values.
    fn metric<M: Metric + Clone + Default>(&mut self, name: &str, help: &str) -> M;

    /// Registers `metric` as `name` in `unit`, and returns it.
    fn metric_with_unit<M: Metric + Clone>(
        &mut self,
        name: &str,
        help: &str,
        unit: Unit,
        metric: M,
    ) -> M;
}

impl RegisterMetric for Registry {
    fn metric<M: Metric + Clone + Default>(&mut self, name: &str, help: &str) -> M {
        let metric = M::default();
        self.register(name, help, metric.clone());
        metric
    }

    fn metric_with_unit<M: Metric + Clone>(
        &mut self,
        name: &str,
        help: &str,
        unit: Unit,
        metric: M,
    ) -> M {
        self.register_with_unit(name, help, unit, metric.clone());
        metric
    }
}

/// Named conditions that must all hold for the service to be ready.
///
/// Besides `/readyz`, the verdict is kept in a gauge (1 ready, 0 not),
/// updated at every change of a condition and exported as `fleet_ready` by
/// [`TelemetryMetrics`], so that alerts need not probe `/readyz`.
#[derive(Debug)]
pub struct Readiness {
    conditions: Mutex<BTreeMap<&'static str, Option<String>>>,
    /// 1 while every condition holds, else 0.
    ready: Gauge,
}

impl Default for Readiness {
    fn default() -> Self {
        let ready = Gauge::default();
        ready.set(1); // no condition yet: nothing fails
        Readiness {
            conditions: Mutex::default(),
            ready,
        }
    }
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
            let ready = c.values().all(Option::is_none);
            self.ready.set(i64::from(ready));
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

/// A bounded channel between two stages, as the `channel` label names it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Channel {
    /// Source → enricher (`[channels] source_to_enricher`).
    SourceToEnricher,
    /// Enricher → aggregator (`[channels] enricher_to_aggregator`).
    EnricherToAggregator,
    /// Aggregator → sink (`[channels] aggregator_to_sink`).
    AggregatorToSink,
}

impl Channel {
    /// Every channel, for exporting each gauge from the start.
    pub const ALL: [Channel; 3] = [
        Channel::SourceToEnricher,
        Channel::EnricherToAggregator,
        Channel::AggregatorToSink,
    ];

    /// The label value: the configuration key of the channel's capacity.
    pub fn as_str(self) -> &'static str {
        match self {
            Channel::SourceToEnricher => "source_to_enricher",
            Channel::EnricherToAggregator => "enricher_to_aggregator",
            Channel::AggregatorToSink => "aggregator_to_sink",
        }
    }
}

// By hand, for snake_case values (the derive writes the variant name).
impl EncodeLabelValue for Channel {
    fn encode(&self, encoder: &mut LabelValueEncoder<'_>) -> Result<(), std::fmt::Error> {
        std::fmt::Write::write_str(encoder, self.as_str())
    }
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ChannelLabels {
    channel: Channel,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct BuildLabels {
    version: String,
}

/// Service-wide self-metrics that belong to no stage. Cheap to clone.
///
/// Registered by [`TelemetryMetrics::register`] under a registry without
/// prefix: `process_start_time_seconds` (the name every Prometheus client
/// uses, for `changes(…[15m])` restart alerts), and under `fleet_`:
/// `fleet_build_info{version}`, `fleet_ready`,
/// `fleet_channel_capacity_remaining{channel}` and `fleet_channel_capacity{channel}`.
#[derive(Clone, Debug)]
pub struct TelemetryMetrics {
    channel_remaining: Family<ChannelLabels, Gauge>,
    channel_capacity: Family<ChannelLabels, Gauge>,
}

impl TelemetryMetrics {
    /// Registers the metrics: the process start time in `root` (no prefix),
    /// the rest in `fleet` (the `fleet` sub-registry of `root`). `version` is
    /// the binary's `CARGO_PKG_VERSION`; `readiness` is the service's.
    pub fn register(root: &mut Registry, version: &str, readiness: &Readiness) -> Self {
        let start = Gauge::<f64, std::sync::atomic::AtomicU64>::default();
        start.set(wall_clock_ms() as f64 / 1000.0);
        root.register_with_unit(
            "process_start_time",
            "Start time of the process since the Unix epoch",
            Unit::Seconds,
            start,
        );
        let fleet = root.sub_registry_with_prefix("fleet");
        let build = Family::<BuildLabels, Gauge>::default();
        build
            .get_or_create(&BuildLabels {
                version: version.to_string(),
            })
            .set(1);
        fleet.register(
            "build_info",
            "Always 1, labelled with the version of the running binary",
            build,
        );
        fleet.register(
            "ready",
            "1 while every readiness condition holds (what /readyz answers 200 for), else 0",
            readiness.ready.clone(),
        );
        let metrics = TelemetryMetrics {
            channel_remaining: fleet.metric(
                "channel_capacity_remaining",
                "Free slots of a bounded channel between stages, sampled every second; 0 means the receiving stage is the bottleneck",
            ),
            channel_capacity: fleet.metric(
                "channel_capacity",
                "Slots of a bounded channel between stages",
            ),
        };
        for channel in Channel::ALL {
            let _ = metrics
                .channel_remaining
                .get_or_create(&ChannelLabels { channel });
            let _ = metrics
                .channel_capacity
                .get_or_create(&ChannelLabels { channel });
        }
        metrics
    }

    /// A sample of `channel`: `remaining` free slots of `capacity`.
    pub fn channel_sampled(&self, channel: Channel, remaining: usize, capacity: usize) {
        let labels = ChannelLabels { channel };
        self.channel_remaining
            .get_or_create(&labels)
            .set(i64::try_from(remaining).unwrap_or(i64::MAX));
        self.channel_capacity
            .get_or_create(&labels)
            .set(i64::try_from(capacity).unwrap_or(i64::MAX));
    }
}

/// `/metrics`, `/healthz` and `/readyz`, served on a thread of their own
/// with a single-threaded runtime of their own: liveness answers at once
/// whatever the pipeline's runtime is doing (a librdkafka call that waits on
/// an unreachable broker, a stage that is busy), so an orchestrator's probe
/// never kills a healthy process for an outage outside it. Stops serving
/// when dropped.
#[derive(Debug)]
pub struct TelemetryServer {
    addr: SocketAddr,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
}

impl TelemetryServer {
    /// Binds `addr` (a busy port is reported here, at start) and serves.
    pub fn start(
        addr: SocketAddr,
        registry: Arc<Registry>,
        readiness: Arc<Readiness>,
    ) -> std::io::Result<TelemetryServer> {
        let listener = std::net::TcpListener::bind(addr)?;
        listener.set_nonblocking(true)?;
        let addr = listener.local_addr()?;
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()?;
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        std::thread::Builder::new()
            .name("telemetry".into())
            .spawn(move || {
                let served = runtime.block_on(async move {
                    let listener = TcpListener::from_std(listener)?;
                    let stopped = async move {
                        let _ = stopped.await;
                    };
                    serve(listener, registry, readiness, stopped).await
                });
                if let Err(error) = served {
                    tracing::error!(%error, "The telemetry endpoint stopped.");
                }
            })?;
        Ok(TelemetryServer {
            addr,
            stop: Some(stop),
        })
    }

    /// The address served (the port chosen when `addr` asked for port 0).
    pub fn local_addr(&self) -> SocketAddr {
        self.addr
    }
}

impl Drop for TelemetryServer {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
    }
}

/// Serves `/metrics`, `/healthz` and `/readyz` on `listener` until `stopped`
/// completes.
async fn serve(
    listener: TcpListener,
    registry: Arc<Registry>,
    readiness: Arc<Readiness>,
    stopped: impl std::future::Future<Output = ()> + Send + 'static,
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
    axum::serve(listener, app)
        .with_graceful_shutdown(stopped)
        .await
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
    fn log_levels_and_target_directives_are_log_filters_and_nothing_else() {
        for good in [
            "info",
            "DEBUG",
            "warn,fleet_kafka=debug",
            "rdkafka=off, info",
            "a::b-c.d=trace",
        ] {
            assert!(is_log_filter(good), "{good}");
        }
        for bad in [
            "verbose!!",
            "",
            "informative",
            "fleet=loud",
            "=info",
            "info,",
        ] {
            assert!(!is_log_filter(bad), "{bad}");
        }
        let mut problems = crate::config::Problems::default();
        let config = TelemetryConfig {
            listen: String::new(),
            log_format: LogFormat::Human,
            log_level: "verbose!!".into(),
        };
        config.validate(&mut problems);
        let err = problems.finish(()).unwrap_err();
        assert_eq!(err.problems[0].key, "telemetry.log_level", "{err}");
    }

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

    #[test]
    fn exports_start_time_build_readiness_and_channels() {
        let readiness = Readiness::default();
        let mut root = Registry::default();
        let metrics = TelemetryMetrics::register(&mut root, "1.2.3", &readiness);
        readiness.require("partitions", "none");
        metrics.channel_sampled(Channel::EnricherToAggregator, 3, 8);
        let mut text = String::new();
        prometheus_client::encoding::text::encode(&mut text, &root).unwrap();
        for line in [
            "# TYPE process_start_time_seconds gauge",
            r#"fleet_build_info{version="1.2.3"} 1"#,
            "fleet_ready 0",
            r#"fleet_channel_capacity_remaining{channel="enricher_to_aggregator"} 3"#,
            r#"fleet_channel_capacity_remaining{channel="source_to_enricher"} 0"#,
            r#"fleet_channel_capacity{channel="enricher_to_aggregator"} 8"#,
        ] {
            assert!(text.contains(line), "missing {line} in\n{text}");
        }
        readiness.ok("partitions");
        let mut text = String::new();
        prometheus_client::encoding::text::encode(&mut text, &root).unwrap();
        assert!(text.contains("fleet_ready 1"), "{text}");
    }
}
