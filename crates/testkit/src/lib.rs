//! Test support for the fleet preprocessor: real services and a batch oracle.
//!
//! Integration tests run against the real thing (docs/ARCHITECTURE.md, "What runs
//! where"): [`TestBroker`] is a Kafka-compatible broker and [`Prometheus`] the
//! remote-write receiver, each started as a child process on a free loopback
//! port with its own temporary directory and log file, and killed on drop.
//! Both binaries are installed by `scripts/install-test-deps.sh`. Each
//! dereferences to a client that works wherever the service runs,
//! [`KafkaClient`] and [`PrometheusClient`], so the same checks also run
//! against containers (`tests/containers.rs`, where a Docker engine exists).
//!
//! Whether a missing binary skips or fails a test is decided in one place,
//! [`services_required`]: with the crate feature `integration` (or
//! `FLEET_REQUIRE_SERVICES=1`) it fails, so CI never passes by skipping.
//!
//! ```no_run
//! # async fn example() {
//! let Some(kafka) = fleet_testkit::broker_or_skip().await else { return };
//! kafka.create_topic("raw", 4).await.unwrap();
//! # }
//! ```
//!
//! [`oracle`] computes the design's output from a list of events in the
//! plainest possible way, sharing no code with the streaming aggregator, so
//! that big runs can be checked against it; [`oracle::declared`] does the
//! same for metrics declared in the configuration (docs/METRICS.md).
#![deny(missing_docs)]

use std::future::Future;
use std::io::Write;
use std::path::PathBuf;
use std::time::Duration;

mod broker;
mod kafka;
pub mod oracle;
pub mod pki;
mod process;
mod prometheus;
mod schema_registry;

pub use broker::{BrokerKind, TestBroker};
pub use kafka::{ConsumedRecord, KafkaClient};
pub use process::LocalService;
pub use prometheus::{PromSample, PromSeries, Prometheus, PrometheusClient, PrometheusOptions};
pub use schema_registry::{RegistryClient, SchemaRegistry};

/// A loopback port that was free a moment ago (for a service a test starts itself).
pub fn free_port() -> Result<u16, TestkitError> {
    process::free_port()
}

/// One sample of the Prometheus text exposition format.
#[derive(Clone, Debug, PartialEq)]
pub struct ExposedSample {
    /// Metric name as exposed (with `_total`, `_bucket`... suffixes).
    pub name: String,
    /// Labels.
    pub labels: std::collections::BTreeMap<String, String>,
    /// Value.
    pub value: f64,
}

/// Parses a `/metrics` page (Prometheus text or OpenMetrics).
pub fn parse_exposition(text: &str) -> Vec<ExposedSample> {
    text.lines()
        .filter_map(prometheus::parse_exposition_line)
        .map(|(name, labels, value)| ExposedSample {
            name,
            labels,
            value,
        })
        .collect()
}

/// Sums the samples named `name` whose labels include every `(label, value)` of `filter`.
pub fn exposed_value(samples: &[ExposedSample], name: &str, filter: &[(&str, &str)]) -> f64 {
    samples
        .iter()
        .filter(|s| s.name == name)
        .filter(|s| {
            filter
                .iter()
                .all(|(k, v)| s.labels.get(*k).map(String::as_str) == Some(*v))
        })
        .map(|s| s.value)
        .sum()
}

/// The script that installs every service binary the tests need.
pub const INSTALL_SCRIPT: &str = "scripts/install-test-deps.sh";

/// Why a service could not be started or answered unexpectedly.
#[derive(Debug, thiserror::Error)]
pub enum TestkitError {
    /// The service's binary is not installed.
    #[error("{binary} not found (looked in {looked}); run {INSTALL_SCRIPT}")]
    BinaryMissing {
        /// The executable's name.
        binary: &'static str,
        /// Where it was looked for.
        looked: String,
    },
    /// A local file or socket operation failed.
    #[error("{context}: {source}")]
    Io {
        /// What was being done.
        context: String,
        /// The underlying error.
        source: std::io::Error,
    },
    /// The child exited before it became ready.
    #[error("{service} exited before it was ready ({status}); log: {}\n--- last lines ---\n{tail}", log.display())]
    Exited {
        /// Which service.
        service: &'static str,
        /// How it exited.
        status: String,
        /// Its log file (kept on failure).
        log: PathBuf,
        /// The end of its log.
        tail: String,
    },
    /// The child runs but did not become ready in time.
    #[error("{service} was not ready within {timeout:?}: {reason}; log: {}\n--- last lines ---\n{tail}", log.display())]
    NotReady {
        /// Which service.
        service: &'static str,
        /// How long we waited.
        timeout: Duration,
        /// The last readiness check's failure.
        reason: String,
        /// Its log file (kept on failure).
        log: PathBuf,
        /// The end of its log.
        tail: String,
    },
    /// A Kafka client operation failed.
    #[error("Kafka: {context}: {source}")]
    Kafka {
        /// What was being done.
        context: String,
        /// The client's error.
        source: rdkafka::error::KafkaError,
    },
    /// An HTTP request to Prometheus failed.
    #[error("HTTP: {context}: {source}")]
    Http {
        /// What was being done.
        context: String,
        /// The client's error.
        source: reqwest::Error,
    },
    /// Prometheus answered, but not with what was asked for.
    #[error("Prometheus: {context}: {detail}")]
    Prometheus {
        /// What was being done.
        context: String,
        /// What it answered.
        detail: String,
    },
    /// The schema registry answered, but not with what was asked for.
    #[error("schema registry: {context}: {detail}")]
    Registry {
        /// What was being done.
        context: String,
        /// What it answered.
        detail: String,
    },
    /// An operation did not finish in time.
    #[error("timed out after {after:?}: {what}")]
    Timeout {
        /// What was being waited for.
        what: String,
        /// How long.
        after: Duration,
    },
}

/// Whether tests must fail, rather than skip, when a service binary is
/// missing: the crate feature `integration` is on, or `FLEET_REQUIRE_SERVICES=1`.
pub fn services_required() -> bool {
    cfg!(feature = "integration")
        || std::env::var("FLEET_REQUIRE_SERVICES").is_ok_and(|v| v.trim() == "1")
}

/// Reports that a test cannot run because `missing` is absent: panics when
/// services are required, otherwise prints `SKIPPED: …` to stderr so the
/// caller can return early. The line is written past libtest's output
/// capture, so skips show in a passing run.
pub fn skip_or_fail(missing: &str) {
    let hint = if missing.contains(INSTALL_SCRIPT) {
        String::new()
    } else {
        format!("; run {INSTALL_SCRIPT}")
    };
    if services_required() {
        panic!(
            "{missing}{hint} (services are required: feature `integration` or FLEET_REQUIRE_SERVICES=1)"
        );
    }
    // Straight to the stderr handle: libtest captures `eprintln!`, and a
    // skip must be visible in a passing run.
    let _ = writeln!(std::io::stderr(), "SKIPPED: {missing}{hint}");
}

/// Starts the test broker (`FLEET_TEST_BROKER`, nisshi by default) for a
/// test, or skips the test when it is not installed (see [`skip_or_fail`]). A broker that is installed but fails to
/// start always fails the test.
pub async fn broker_or_skip() -> Option<TestBroker> {
    broker_kind_or_skip(BrokerKind::configured()).await
}

/// Starts a broker of `kind` for a test, or skips the test when it is not
/// installed, as [`broker_or_skip`] does.
pub async fn broker_kind_or_skip(kind: BrokerKind) -> Option<TestBroker> {
    match TestBroker::start_kind(kind).await {
        Ok(broker) => Some(broker),
        Err(error @ TestkitError::BinaryMissing { .. }) => {
            skip_or_fail(&error.to_string());
            None
        }
        Err(error) => panic!("starting {kind:?}: {error}"),
    }
}

/// Starts a Prometheus for a test, or skips the test when Prometheus is not
/// installed (see [`skip_or_fail`]). One that is installed but fails to start
/// always fails the test.
pub async fn prometheus_or_skip(options: PrometheusOptions) -> Option<Prometheus> {
    match Prometheus::start(options).await {
        Ok(prometheus) => Some(prometheus),
        Err(error @ TestkitError::BinaryMissing { .. }) => {
            skip_or_fail(&error.to_string());
            None
        }
        Err(error) => panic!("starting Prometheus: {error}"),
    }
}

/// Starts a schema registry over the broker at `bootstrap_servers` for a
/// test, or skips the test when the registry is not installed (see
/// [`skip_or_fail`]).
pub async fn schema_registry_or_skip(
    bootstrap_servers: &str,
    credentials: Option<(&str, &str)>,
) -> Option<SchemaRegistry> {
    match SchemaRegistry::start(bootstrap_servers, credentials).await {
        Ok(registry) => Some(registry),
        Err(error @ TestkitError::BinaryMissing { .. }) => {
            skip_or_fail(&error.to_string());
            None
        }
        Err(error) => panic!("starting the schema registry: {error}"),
    }
}

/// Polls `check` every 100 ms until it returns `Some`, for at most `timeout`.
/// For conditions that become true eventually, such as a scrape or a write
/// becoming visible in Prometheus.
pub async fn poll_until<T, F, Fut>(timeout: Duration, mut check: F) -> Option<T>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Option<T>>,
{
    let deadline = tokio::time::Instant::now() + timeout;
    loop {
        if let Some(value) = check().await {
            return Some(value);
        }
        if tokio::time::Instant::now() >= deadline {
            return None;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// A process-unique name with `prefix`, for cluster ids, consumer groups and topics.
pub fn unique_name(prefix: &str) -> String {
    use std::sync::atomic::{AtomicU64, Ordering};
    static NEXT: AtomicU64 = AtomicU64::new(0);
    let n = NEXT.fetch_add(1, Ordering::Relaxed);
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.subsec_nanos())
        .unwrap_or(0);
    format!("{prefix}-{}-{n}-{nanos:x}", std::process::id())
}
