//! A real Kafka-compatible broker for tests: Tansu with in-memory storage.
//!
//! Each [`Tansu`] is its own cluster on its own port, so tests never share
//! topics or consumer groups. Topics, producing and reading back are the
//! broker-independent [`KafkaClient`]'s, which a `Tansu` dereferences to.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use crate::kafka::KafkaClient;
use crate::process::{self, LocalService, ServiceProcess};
use crate::{unique_name, TestkitError};

const SERVICE: &str = "tansu";

/// Tansu reads these from the environment; a developer's shell must not
/// redirect the test broker (`tansu broker --help` lists them).
const TANSU_ENV: [&str; 6] = [
    "LISTENER_URL",
    "ADVERTISED_LISTENER_URL",
    "STORAGE_ENGINE",
    "CLUSTER_ID",
    "SCHEMA_REGISTRY",
    "OTEL_EXPORTER_OTLP_ENDPOINT",
];

/// How long the broker has to come up; it is normally ready in milliseconds.
const READY_TIMEOUT: Duration = Duration::from_secs(20);

/// A Tansu broker running as a child process; killed on drop. It
/// dereferences to a [`KafkaClient`] of itself (`create_topic`,
/// `produce_json`, `consume_all`…).
pub type Tansu = LocalService<KafkaClient>;

/// Which broker the tests start: Tansu 0.6, or its successor nisshi
/// (`FLEET_TEST_BROKER=nisshi`), which answers ListOffsets and
/// offsets-for-times like Kafka.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum BrokerKind {
    /// `tansu`, with its in-memory storage.
    Tansu,
    /// `nisshi`, with its in-memory storage and no initial rebalance delay.
    Nisshi,
}

impl BrokerKind {
    /// The broker `FLEET_TEST_BROKER` names; Tansu by default.
    pub fn configured() -> BrokerKind {
        match std::env::var("FLEET_TEST_BROKER").as_deref() {
            Ok("nisshi") => BrokerKind::Nisshi,
            _ => BrokerKind::Tansu,
        }
    }

    fn name(self) -> &'static str {
        match self {
            BrokerKind::Tansu => "tansu",
            BrokerKind::Nisshi => "nisshi",
        }
    }
}

impl Tansu {
    /// Finds the broker's binary (`tansu`, or `nisshi` as
    /// [`BrokerKind::configured`] says): `$FLEET_TANSU_BIN` (or
    /// `$FLEET_NISSHI_BIN`), then `PATH`, then `~/.cargo/bin`.
    pub fn binary() -> Result<PathBuf, TestkitError> {
        let name = BrokerKind::configured().name();
        let mut fallbacks = Vec::new();
        if let Some(cargo_home) = std::env::var_os("CARGO_HOME") {
            fallbacks.push(PathBuf::from(cargo_home).join("bin").join(name));
        }
        if let Some(home) = std::env::var_os("HOME") {
            fallbacks.push(PathBuf::from(home).join(".cargo/bin").join(name));
        }
        match BrokerKind::configured() {
            BrokerKind::Tansu => process::find_binary(SERVICE, "FLEET_TANSU_BIN", &fallbacks),
            BrokerKind::Nisshi => process::find_binary("nisshi", "FLEET_NISSHI_BIN", &fallbacks),
        }
    }

    /// Starts a broker with in-memory storage on a free loopback port and
    /// waits until it answers a Kafka metadata request.
    pub async fn start() -> Result<Tansu, TestkitError> {
        let binary = Self::binary()?;
        process::start_with_retries(SERVICE, || Self::start_once(&binary)).await
    }

    async fn start_once(binary: &Path) -> Result<Tansu, TestkitError> {
        let port = process::free_port()?;
        let client = KafkaClient::new(format!("127.0.0.1:{port}"));
        spawn_broker(binary, port, &format!("tcp://127.0.0.1:{port}"), client).await
    }
}

/// Starts a broker listening on loopback `port` and advertising
/// `advertised` (a `tcp://host:port` URL: itself, or a proxy in front of
/// it), ready once its plain port answers a metadata request; `client` is
/// what the returned [`Tansu`] dereferences to.
pub(crate) async fn spawn_broker(
    binary: &Path,
    port: u16,
    advertised: &str,
    client: KafkaClient,
) -> Result<Tansu, TestkitError> {
    let url = format!("tcp://127.0.0.1:{port}");
    let kind = BrokerKind::configured();
    let mut command = Command::new(binary);
    command
        .arg("broker")
        .args(["--listener-url", &url])
        .args(["--advertised-listener-url", advertised])
        .args(["--storage-engine", &format!("memory://{}/", kind.name())])
        .args(["--cluster-id", &unique_name("fleet-test")]);
    if kind == BrokerKind::Nisshi {
        command.args(["--group-initial-rebalance-delay", "0s"]);
    }
    for name in TANSU_ENV {
        command.env_remove(name);
    }
    let dir = ServiceProcess::temp_dir(kind.name())?;
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
    Ok(Tansu::new(process, client))
}
