//! A real Kafka-compatible broker for tests: nisshi by default, Tansu or
//! noida-db on request (`FLEET_TEST_BROKER`).
//!
//! nisshi 0.8.1, Tansu 0.6's successor, is the default because it is the
//! more faithful: it answers ListOffsets' high watermark and offsets-for-times
//! as Kafka does (`tests/services.rs` checks both brokers), answers a fetch
//! from inside a record batch, and assigns a group again after a session
//! expired while the broker was stalled (Tansu never does). Tansu stays for
//! the tests that pin its own behaviour and as the broker the service must
//! keep working on (docs/SCALING.md, "Brokers"). Each [`TestBroker`] is its
//! own cluster on its own port, so tests never share topics or consumer
//! groups. Topics, producing and reading back are the broker-independent
//! [`KafkaClient`]'s, which a `TestBroker` dereferences to.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use crate::kafka::KafkaClient;
use crate::process::{self, LocalService, ServiceProcess};
use crate::{unique_name, TestkitError};

/// Tansu and nisshi read these from the environment; a developer's shell must not
/// redirect the test broker (`tansu broker --help` lists them).
const BROKER_ENV: [&str; 6] = [
    "LISTENER_URL",
    "ADVERTISED_LISTENER_URL",
    "STORAGE_ENGINE",
    "CLUSTER_ID",
    "SCHEMA_REGISTRY",
    "OTEL_EXPORTER_OTLP_ENDPOINT",
];

/// How long the broker has to come up; it is normally ready in milliseconds.
const READY_TIMEOUT: Duration = Duration::from_secs(20);

/// A test broker running as a child process; killed on drop. It
/// dereferences to a [`KafkaClient`] of itself (`create_topic`,
/// `produce_json`, `consume_all`…).
pub type TestBroker = LocalService<KafkaClient>;

/// Which broker the tests start: nisshi 0.8.1 (the default), Tansu 0.6
/// (`FLEET_TEST_BROKER=tansu`), or noida-db (`FLEET_TEST_BROKER=noida`),
/// which also keeps offset-commit metadata as Kafka does.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum BrokerKind {
    /// `tansu`, with its in-memory storage.
    Tansu,
    /// `nisshi`, with its in-memory storage and no initial rebalance delay.
    Nisshi,
    /// `noida-db` 0.2.3 (PyPI) serving only Kafka, with its data in a
    /// temporary directory; its topics keep records of any age.
    Noida,
}

impl BrokerKind {
    /// The broker `FLEET_TEST_BROKER` names; nisshi by default.
    ///
    /// # Panics
    /// When it names no broker: a mistyped name must not test another.
    pub fn configured() -> BrokerKind {
        match std::env::var("FLEET_TEST_BROKER").as_deref() {
            Ok("nisshi") | Ok("") | Err(_) => BrokerKind::Nisshi,
            Ok("tansu") => BrokerKind::Tansu,
            Ok("noida") => BrokerKind::Noida,
            Ok(other) => panic!(
                "FLEET_TEST_BROKER = {other:?}: expected nisshi (the default), tansu or noida"
            ),
        }
    }

    pub(crate) fn name(self) -> &'static str {
        match self {
            BrokerKind::Tansu => "tansu",
            BrokerKind::Nisshi => "nisshi",
            BrokerKind::Noida => "noida-db",
        }
    }

    /// Finds the broker's binary: `$FLEET_TANSU_BIN` (`$FLEET_NISSHI_BIN`,
    /// `$FLEET_NOIDA_BIN`), then `PATH`, then where its installer puts it
    /// (`~/.cargo/bin`; `~/.local/bin` for noida-db).
    pub fn binary(self) -> Result<PathBuf, TestkitError> {
        let name = self.name();
        let mut fallbacks = Vec::new();
        if let Some(cargo_home) = std::env::var_os("CARGO_HOME") {
            fallbacks.push(PathBuf::from(cargo_home).join("bin").join(name));
        }
        if let Some(home) = std::env::var_os("HOME") {
            let home = PathBuf::from(home);
            fallbacks.push(home.join(".cargo/bin").join(name));
            fallbacks.push(home.join(".local/bin").join(name));
        }
        let override_var = match self {
            BrokerKind::Tansu => "FLEET_TANSU_BIN",
            BrokerKind::Nisshi => "FLEET_NISSHI_BIN",
            BrokerKind::Noida => "FLEET_NOIDA_BIN",
        };
        process::find_binary(name, override_var, &fallbacks)
    }
}

impl TestBroker {
    /// Finds the binary of the broker [`BrokerKind::configured`] names.
    pub fn binary() -> Result<PathBuf, TestkitError> {
        BrokerKind::configured().binary()
    }

    /// Starts the broker `FLEET_TEST_BROKER` names (see [`TestBroker::start_kind`]).
    pub async fn start() -> Result<TestBroker, TestkitError> {
        Self::start_kind(BrokerKind::configured()).await
    }

    /// Starts a broker of `kind` with storage of its own on a free loopback
    /// port and waits until it answers a Kafka metadata request.
    pub async fn start_kind(kind: BrokerKind) -> Result<TestBroker, TestkitError> {
        let binary = kind.binary()?;
        process::start_with_retries(kind.name(), || async {
            let port = process::free_port()?;
            let mut client = KafkaClient::new(format!("127.0.0.1:{port}"));
            if kind == BrokerKind::Noida {
                // Its default retention would drop records with old event times.
                client = client.with_topic_config("retention.ms", "-1");
            }
            spawn_broker(
                &binary,
                kind,
                port,
                &format!("tcp://127.0.0.1:{port}"),
                client,
            )
            .await
        })
        .await
    }
}

/// Starts a broker of `kind` listening on loopback `port` and advertising
/// `advertised` (a `tcp://host:port` URL: itself, or a proxy in front of
/// it; noida-db advertises itself only), ready once its plain port answers
/// a metadata request; `client` is what the returned [`TestBroker`] dereferences to.
pub(crate) async fn spawn_broker(
    binary: &Path,
    kind: BrokerKind,
    port: u16,
    advertised: &str,
    client: KafkaClient,
) -> Result<TestBroker, TestkitError> {
    let url = format!("tcp://127.0.0.1:{port}");
    let dir = ServiceProcess::temp_dir(kind.name())?;
    let mut command = Command::new(binary);
    if kind == BrokerKind::Noida {
        command
            .arg("start")
            .args(["--only", "kafka", "--host", "127.0.0.1"])
            .args(["--kafka-port", &port.to_string()])
            .arg("--data-dir")
            .arg(dir.path().join("data"));
    } else {
        command
            .arg("broker")
            .args(["--listener-url", &url])
            .args(["--advertised-listener-url", advertised])
            .args(["--storage-engine", &format!("memory://{}/", kind.name())])
            .args(["--cluster-id", &unique_name("fleet-test")]);
    }
    if kind == BrokerKind::Nisshi {
        command.args(["--group-initial-rebalance-delay", "0s"]);
    }
    for name in BROKER_ENV {
        command.env_remove(name);
    }
    // A TCP connection first, then a metadata answer listing a broker, on
    // the broker's own port (whatever stands in front of it).
    let plain = KafkaClient::new(format!("127.0.0.1:{port}"));
    let probe = || async {
        if !process::accepts_connections(port) {
            return Err(format!("port {port} does not accept connections"));
        }
        match plain.is_ready().await {
            Ok(true) => Ok(()),
            Ok(false) => Err("metadata lists no broker".to_string()),
            Err(error) => Err(error.to_string()),
        }
    };
    let process = ServiceProcess::spawn(kind.name(), command, dir)?
        .wait_ready(READY_TIMEOUT, Duration::from_millis(50), probe)
        .await?;
    Ok(TestBroker::new(process, client))
}
