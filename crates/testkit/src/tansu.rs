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

impl Tansu {
    /// Finds the `tansu` binary: `$FLEET_TANSU_BIN`, then `PATH`, then `~/.cargo/bin`.
    pub fn binary() -> Result<PathBuf, TestkitError> {
        let mut fallbacks = Vec::new();
        if let Some(cargo_home) = std::env::var_os("CARGO_HOME") {
            fallbacks.push(PathBuf::from(cargo_home).join("bin/tansu"));
        }
        if let Some(home) = std::env::var_os("HOME") {
            fallbacks.push(PathBuf::from(home).join(".cargo/bin/tansu"));
        }
        process::find_binary(SERVICE, "FLEET_TANSU_BIN", &fallbacks)
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
    let mut command = Command::new(binary);
    command
        .arg("broker")
        .args(["--listener-url", &url])
        .args(["--advertised-listener-url", advertised])
        .args(["--storage-engine", "memory://tansu/"])
        .args(["--cluster-id", &unique_name("fleet-test")]);
    for name in TANSU_ENV {
        command.env_remove(name);
    }
    let dir = ServiceProcess::temp_dir(SERVICE)?;
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
    let process = ServiceProcess::spawn(SERVICE, command, dir)?
        .wait_ready(READY_TIMEOUT, Duration::from_millis(50), probe)
        .await?;
    Ok(Tansu::new(process, client))
}
