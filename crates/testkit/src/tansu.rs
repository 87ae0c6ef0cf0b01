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

/// Which broker the tests start: Tansu 0.6, its successor nisshi
/// (`FLEET_TEST_BROKER=nisshi`), which answers ListOffsets and
/// offsets-for-times like Kafka, or noida-db (`FLEET_TEST_BROKER=noida`),
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
    /// The broker `FLEET_TEST_BROKER` names; Tansu by default.
    pub fn configured() -> BrokerKind {
        match std::env::var("FLEET_TEST_BROKER").as_deref() {
            Ok("nisshi") => BrokerKind::Nisshi,
            Ok("noida") => BrokerKind::Noida,
            _ => BrokerKind::Tansu,
        }
    }

    fn name(self) -> &'static str {
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

impl Tansu {
    /// Finds the binary of the broker [`BrokerKind::configured`] names.
    pub fn binary() -> Result<PathBuf, TestkitError> {
        BrokerKind::configured().binary()
    }

    /// Starts the broker `FLEET_TEST_BROKER` names (see [`Tansu::start_kind`]).
    pub async fn start() -> Result<Tansu, TestkitError> {
        Self::start_kind(BrokerKind::configured()).await
    }

    /// Starts a broker of `kind` with storage of its own on a free loopback
    /// port and waits until it answers a Kafka metadata request.
    pub async fn start_kind(kind: BrokerKind) -> Result<Tansu, TestkitError> {
        let binary = kind.binary()?;
        process::start_with_retries(SERVICE, || async {
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
/// a metadata request; `client` is what the returned [`Tansu`] dereferences to.
pub(crate) async fn spawn_broker(
    binary: &Path,
    kind: BrokerKind,
    port: u16,
    advertised: &str,
    client: KafkaClient,
) -> Result<Tansu, TestkitError> {
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
    for name in TANSU_ENV {
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
    Ok(Tansu::new(process, client))
}
