//! Kafka over TLS with the service's own configuration, against a real broker.
//!
//! Tansu 0.6 cannot serve TLS itself (its `--cert` and `--key` cannot be
//! given together, and its listener never uses the TLS acceptor it builds
//! from them: see `fleet_testkit::TestBroker::start_tls`), so the broker (Tansu or nisshi,
//! serving plain TCP) stands behind the testkit's TLS front, which it advertises: every
//! connection a client makes goes through TLS, with librdkafka's OpenSSL
//! (rdkafka's `ssl-vendored`) on the client side.
//!
//! The certificates are made at run time with the `openssl` command-line
//! tool: a private CA, and a server certificate for `IP:127.0.0.1` and
//! `DNS:localhost` signed by it. The tests show that
//! - `kafka.security.protocol = "ssl"` with `ca_file` = that CA produces
//!   ([`EventPublisher`]) and consumes (a consumer of
//!   [`KafkaConfig::consumer_config`], as the source's) every event;
//! - without `ca_file` (the system CA store) the handshake fails, with
//!   librdkafka's "certificate verify failed";
//! - the broker's host name is checked against its certificate;
//! - a TLS client of a plaintext broker fails in the handshake, and a
//!   plaintext client of a TLS broker finds every broker down;
//! - `sasl_mechanism = "scram_sha_256"` / `"scram_sha_512"` run the SCRAM
//!   exchange with the configured user against a Tansu that requires
//!   authentication (`--authentication`). Tansu 0.6 cannot be given a user
//!   there: it refuses `tansu user create` (AlterUserScramCredentials) from an
//!   unauthenticated client, and its in-memory storage does not survive a
//!   restart, so the exchange ends with the broker's "unknown-user".
//!
//! The plaintext broker's handshake and SCRAM pin Tansu's own behaviour, so
//! they start Tansu whatever `FLEET_TEST_BROKER` says.
//!
//! Skipped (with `SKIPPED:` on stderr) when Tansu or openssl is not
//! installed, unless services are required (`fleet_testkit::services_required`).
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::BTreeSet;
use std::path::PathBuf;
use std::process::Command;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use fleet_core::config::Problems;
use fleet_core::{decode_event, EventType, RawEvent};
use fleet_kafka::producer::EventPublisher;
use fleet_kafka::{KafkaConfig, KafkaSecurity, SaslMechanism, SecurityProtocol};
use fleet_testkit::pki::{pki_or_skip, Pki};
use fleet_testkit::{
    broker_kind_or_skip, skip_or_fail, unique_name, BrokerKind, TestBroker, TestkitError,
};
use rdkafka::config::RDKafkaLogLevel;
use rdkafka::consumer::{BaseConsumer, Consumer, ConsumerContext, StreamConsumer};
use rdkafka::error::KafkaError;
use rdkafka::{ClientContext, Message, Offset, TopicPartitionList};

/// Tansu behind a TLS front presenting `pki`'s server certificate.
async fn tls_broker_or_skip(pki: &Pki) -> Option<TestBroker> {
    match TestBroker::start_tls(&pki.cert, &pki.key, &pki.ca).await {
        Ok(broker) => Some(broker),
        Err(error @ TestkitError::BinaryMissing { .. }) => {
            skip_or_fail(&error.to_string());
            None
        }
        Err(error) => panic!("starting the broker with TLS: {error}"),
    }
}

fn tls_config(brokers: String, ca_file: Option<PathBuf>) -> KafkaConfig {
    KafkaConfig {
        brokers,
        topic: unique_name("tls"),
        group_id: unique_name("tls-group"),
        security: KafkaSecurity {
            protocol: SecurityProtocol::Ssl,
            ca_file,
            ..KafkaSecurity::default()
        },
        ..KafkaConfig::default()
    }
}

fn assert_valid(cfg: &KafkaConfig) {
    let mut problems = Problems::default();
    cfg.validate(&mut problems);
    problems.finish(()).unwrap();
}

fn events(n: usize) -> Vec<RawEvent> {
    (0..n)
        .map(|i| RawEvent {
            event_type: [
                EventType::IcRpm,
                EventType::ElectricRpm,
                EventType::Warnings,
            ][i % 3],
            vehicle_id: format!("VIN{:014}", i % 17).into(),
            region: "UK".into(),
            timestamp: 1_764_000_000_000 + i as i64 * 10,
            measurement: i as i64,
        })
        .collect()
}

/// Keeps what librdkafka reports: errors, and log lines at warning or worse.
#[derive(Default)]
struct Reported(Mutex<Vec<String>>);

impl Reported {
    fn lines(&self) -> Vec<String> {
        self.0.lock().unwrap().clone()
    }
}

#[derive(Clone, Default)]
struct Recorder(Arc<Reported>);

impl ClientContext for Recorder {
    fn log(&self, level: RDKafkaLogLevel, fac: &str, message: &str) {
        if (level as i32) <= RDKafkaLogLevel::Warning as i32 {
            self.0 .0.lock().unwrap().push(format!("{fac}: {message}"));
        }
    }

    fn error(&self, error: KafkaError, reason: &str) {
        self.0 .0.lock().unwrap().push(format!("{error}: {reason}"));
    }
}

impl ConsumerContext for Recorder {}

/// Asks for metadata with a client of `cfg` (as the source's: from
/// `consumer_config()`); when that fails, polls it until librdkafka has
/// reported a line containing `expected` (errors and log lines arrive as
/// events of the consumer's queue), for at most 15 s. Returns whether metadata came, and
/// everything librdkafka reported.
async fn metadata_with(
    cfg: &KafkaConfig,
    expected: &'static str,
) -> (Result<usize, KafkaError>, Vec<String>) {
    let recorder = Recorder::default();
    // rdkafka sets librdkafka's log level from the `log` crate's, which no
    // logger raises in a test.
    let consumer: BaseConsumer<Recorder> = cfg
        .consumer_config()
        .set_log_level(RDKafkaLogLevel::Warning)
        .create_with_context(recorder.clone())
        .unwrap();
    let result = tokio::task::spawn_blocking(move || {
        let result = consumer
            .fetch_metadata(None, Duration::from_secs(5))
            .map(|m| m.brokers().len());
        let deadline = tokio::time::Instant::now() + Duration::from_secs(15);
        while result.is_err()
            && tokio::time::Instant::now() < deadline
            && !consumer
                .context()
                .0
                .lines()
                .iter()
                .any(|line| line.contains(expected))
        {
            let _ = consumer.poll(Duration::from_millis(100));
        }
        result
    })
    .await
    .unwrap();
    (result, recorder.0.lines())
}

/// Reads `n` messages of `cfg.topic` from the beginning of its `partitions`
/// with a consumer of `cfg.consumer_config()`.
async fn consume(cfg: &KafkaConfig, partitions: i32, n: usize) -> Vec<RawEvent> {
    let consumer: StreamConsumer = cfg.consumer_config().create().unwrap();
    let mut assignment = TopicPartitionList::new();
    for p in 0..partitions {
        assignment
            .add_partition_offset(&cfg.topic, p, Offset::Beginning)
            .unwrap();
    }
    consumer.assign(&assignment).unwrap();
    let mut read = Vec::new();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    while read.len() < n {
        let message = tokio::time::timeout_at(deadline, consumer.recv())
            .await
            .unwrap_or_else(|_| panic!("read {} of {n} messages over TLS", read.len()))
            .unwrap();
        read.push(decode_event(message.payload().unwrap()).unwrap());
    }
    read
}

fn json_set(events: &[RawEvent]) -> BTreeSet<String> {
    events.iter().map(RawEvent::to_json).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn produces_and_consumes_over_tls_trusting_the_configured_ca() {
    let Some(pki) = pki_or_skip("IP:127.0.0.1, DNS:localhost") else {
        return;
    };
    let Some(broker) = tls_broker_or_skip(&pki).await else {
        return;
    };
    let cfg = tls_config(broker.bootstrap_servers(), Some(pki.ca.clone()));
    assert_valid(&cfg);
    let client = cfg.consumer_config();
    assert_eq!(client.get("security.protocol"), Some("SSL"));
    assert_eq!(client.get("ssl.ca.location"), pki.ca.to_str());
    broker.create_topic(&cfg.topic, 2).await.unwrap();

    let sent = events(60);
    let publisher = EventPublisher::new(&cfg).unwrap();
    publisher.publish(&sent).await.unwrap();

    let received = consume(&cfg, 2, sent.len()).await;
    assert_eq!(json_set(&received), json_set(&sent));
    // The name `localhost` is in the certificate too.
    let by_name = KafkaConfig {
        brokers: broker.bootstrap_servers().replace("127.0.0.1", "localhost"),
        ..cfg.clone()
    };
    let (brokers, reported) = metadata_with(&by_name, "").await;
    assert_eq!(brokers.unwrap(), 1, "{reported:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_system_ca_store_does_not_trust_a_private_ca() {
    let Some(pki) = pki_or_skip("IP:127.0.0.1, DNS:localhost") else {
        return;
    };
    let Some(broker) = tls_broker_or_skip(&pki).await else {
        return;
    };
    let cfg = tls_config(broker.bootstrap_servers(), None);
    assert_valid(&cfg);
    assert_eq!(cfg.consumer_config().get("ssl.ca.location"), Some("probe"));
    let (result, reported) = metadata_with(&cfg, "certificate verify failed").await;
    assert!(result.is_err(), "metadata through an untrusted certificate");
    assert!(
        reported
            .iter()
            .any(|line| line.contains("SSL handshake failed")
                && line.contains("certificate verify failed")),
        "{reported:#?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_certificate_must_name_the_broker() {
    // Signed by the trusted CA, but for another host.
    let Some(pki) = pki_or_skip("DNS:broker.fleet.invalid") else {
        return;
    };
    let Some(broker) = tls_broker_or_skip(&pki).await else {
        return;
    };
    let cfg = tls_config(broker.bootstrap_servers(), Some(pki.ca.clone()));
    let (result, reported) = metadata_with(&cfg, "certificate verify failed").await;
    assert!(
        result.is_err(),
        "metadata from a broker its certificate does not name"
    );
    assert!(
        reported
            .iter()
            .any(|line| line.contains("certificate verify failed")),
        "{reported:#?}"
    );
    // The same certificate without the host name check is accepted: the
    // check is what refused it.
    let mut unchecked = cfg.clone();
    unchecked.client.insert(
        "ssl.endpoint.identification.algorithm".into(),
        "none".into(),
    );
    let (brokers, reported) = metadata_with(&unchecked, "").await;
    assert_eq!(brokers.unwrap(), 1, "{reported:#?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_tls_client_of_a_plaintext_broker_times_out_in_the_handshake() {
    let Some(pki) = pki_or_skip("IP:127.0.0.1, DNS:localhost") else {
        return;
    };
    let Some(broker) = broker_kind_or_skip(BrokerKind::Tansu).await else {
        return;
    };
    // Tansu takes the TLS ClientHello for the length of a Kafka request and
    // waits for the rest: the handshake ends with librdkafka's connection
    // setup timeout (30 s by default; shortened here).
    let mut cfg = tls_config(broker.bootstrap_servers(), Some(pki.ca.clone()));
    cfg.client
        .insert("socket.connection.setup.timeout.ms".into(), "1000".into());
    assert_valid(&cfg);
    let (result, reported) = metadata_with(&cfg, "SSL_HANDSHAKE").await;
    assert!(result.is_err(), "metadata over TLS from a plaintext broker");
    assert!(
        reported
            .iter()
            .any(|line| line.contains("timed out in state SSL_HANDSHAKE")),
        "{reported:#?}"
    );
}

/// librdkafka does not say more: the front closes the connection at the
/// first bytes of the ApiVersions request, which librdkafka logs only at
/// debug level ("Disconnected: connection closed by peer … in state
/// APIVERSION_QUERY").
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_plaintext_client_of_a_tls_broker_finds_all_brokers_down() {
    let Some(pki) = pki_or_skip("IP:127.0.0.1, DNS:localhost") else {
        return;
    };
    let Some(broker) = tls_broker_or_skip(&pki).await else {
        return;
    };
    let cfg = KafkaConfig {
        brokers: broker.bootstrap_servers(),
        ..KafkaConfig::default()
    };
    let (result, reported) = metadata_with(&cfg, "brokers are down").await;
    assert!(result.is_err(), "metadata in plaintext from a TLS listener");
    assert!(
        reported
            .iter()
            .any(|line| line.contains("All broker connections are down")),
        "{reported:#?}"
    );
}

/// A Tansu that requires SASL authentication (`--authentication`), plain
/// TCP on a free loopback port; killed on drop.
struct AuthenticatingTansu {
    child: std::process::Child,
    port: u16,
    _dir: tempfile::TempDir,
}

impl Drop for AuthenticatingTansu {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

async fn authenticating_tansu_or_skip() -> Option<AuthenticatingTansu> {
    let binary = match BrokerKind::Tansu.binary() {
        Ok(binary) => binary,
        Err(error) => {
            skip_or_fail(&error.to_string());
            return None;
        }
    };
    let port = fleet_testkit::free_port().unwrap();
    let dir = tempfile::tempdir().unwrap();
    let log = std::fs::File::create(dir.path().join("tansu.log")).unwrap();
    let url = format!("tcp://127.0.0.1:{port}");
    let mut command = Command::new(binary);
    command
        .arg("broker")
        .args(["--listener-url", &url, "--advertised-listener-url", &url])
        .args(["--storage-engine", "memory://tansu/", "--authentication"])
        .args(["--cluster-id", &unique_name("fleet-sasl")])
        .stdout(log.try_clone().unwrap())
        .stderr(log);
    for name in [
        "LISTENER_URL",
        "ADVERTISED_LISTENER_URL",
        "STORAGE_ENGINE",
        "CLUSTER_ID",
    ] {
        command.env_remove(name);
    }
    let tansu = AuthenticatingTansu {
        child: command.spawn().unwrap(),
        port,
        _dir: dir,
    };
    for _ in 0..200 {
        if std::net::TcpStream::connect(("127.0.0.1", port)).is_ok() {
            return Some(tansu);
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("Tansu --authentication did not listen on {port}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn scram_runs_the_exchange_with_the_configured_user() {
    let Some(tansu) = authenticating_tansu_or_skip().await else {
        return;
    };
    for mechanism in [SaslMechanism::ScramSha256, SaslMechanism::ScramSha512] {
        let cfg = KafkaConfig {
            brokers: format!("127.0.0.1:{}", tansu.port),
            security: KafkaSecurity {
                protocol: SecurityProtocol::SaslPlaintext,
                sasl_mechanism: Some(mechanism),
                username: Some("fleet-preprocessor".into()),
                password: Some("not-stored-by-tansu".into()),
                ..KafkaSecurity::default()
            },
            ..KafkaConfig::default()
        };
        assert_valid(&cfg);
        let (result, reported) = metadata_with(&cfg, "SCRAM authentication failed").await;
        assert!(result.is_err(), "{mechanism:?}");
        assert!(
            reported.iter().any(|line| line
                .contains("SASL SCRAM authentication failed: broker responded with unknown-user")),
            "{mechanism:?}: {reported:#?}"
        );
    }
    // Without SASL the broker drops the connection at the first request.
    let plaintext = KafkaConfig {
        brokers: format!("127.0.0.1:{}", tansu.port),
        ..KafkaConfig::default()
    };
    let (result, _) = metadata_with(&plaintext, "Disconnected").await;
    assert!(result.is_err());
}
