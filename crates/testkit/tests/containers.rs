//! The service-level checks of `tests/services.rs` against containers, where
//! a Docker engine exists (docs/ARCHITECTURE.md, "What runs where"): the keyed
//! produce/consume round trip against Apache Kafka (`apache/kafka:3.9.0`,
//! one KRaft node that is broker and controller), and readiness plus the
//! remote-write round trip against `prom/prometheus` with the receiver on.
//! Tansu differs from Apache Kafka in places (its high watermark,
//! offsets-for-times, commit metadata); this is where the real broker runs.
//!
//! Without a Docker engine (`docker info` fails or hangs) each test prints
//! `SKIPPED: …` to stderr and returns, with the `integration` feature on too:
//! the required variant is the local-process one in `tests/services.rs`.
//!
//! Published ports are bound to 127.0.0.1 only, on ports picked free on this
//! machine, so the engine must be local. `TESTCONTAINERS_COMMAND=keep` keeps
//! the containers after the test, for `docker logs`.

use std::future::Future;
use std::io::Write;
use std::process::Stdio;
use std::time::Duration;

use fleet_testkit::{poll_until, KafkaClient, PrometheusClient, TestkitError};
use testcontainers::bollard::models::HostConfig;
use testcontainers::core::{IntoContainerPort, WaitFor};
use testcontainers::runners::AsyncRunner;
use testcontainers::{ContainerAsync, ContainerRequest, GenericImage, Image, ImageExt};

mod common;

const SKIP_MESSAGE: &str = "SKIPPED: no Docker engine (docker info failed); the same checks run against a local broker and Prometheus in tests/services.rs";

/// How long `docker info` may take before the engine counts as absent.
const DOCKER_INFO_TIMEOUT: Duration = Duration::from_secs(10);

/// How long a container has to log that it started (the image pull comes
/// before and is not counted).
const STARTUP_TIMEOUT: Duration = Duration::from_secs(120);

/// How long a started service has to answer its readiness check.
const READY_TIMEOUT: Duration = Duration::from_secs(60);

/// Whether a Docker engine answers: `docker info` exits 0 within
/// [`DOCKER_INFO_TIMEOUT`]. A missing `docker` command counts as no engine.
async fn docker_available() -> bool {
    let child = tokio::process::Command::new("docker")
        .arg("info")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .kill_on_drop(true)
        .spawn();
    let Ok(mut child) = child else {
        return false;
    };
    matches!(
        tokio::time::timeout(DOCKER_INFO_TIMEOUT, child.wait()).await,
        Ok(Ok(status)) if status.success()
    )
}

/// `true` when the test must return: no Docker engine, said on stderr past
/// libtest's capture so that the skip shows in a passing run.
async fn skip_without_docker() -> bool {
    if docker_available().await {
        return false;
    }
    let _ = writeln!(std::io::stderr(), "{SKIP_MESSAGE}");
    true
}

/// Publishes `container_port` on 127.0.0.1:`host_port` only: the docker
/// default, every interface, would open the test services to the network.
fn published_on_loopback(
    image: GenericImage,
    host_port: u16,
    container_port: u16,
) -> ContainerRequest<GenericImage> {
    image
        .with_mapped_port(host_port, container_port.tcp())
        .with_host_config_modifier(|host_config: &mut HostConfig| {
            for bindings in host_config
                .port_bindings
                .iter_mut()
                .flat_map(|m| m.values_mut())
            {
                for binding in bindings.iter_mut().flatten() {
                    binding.host_ip = Some("127.0.0.1".to_string());
                }
            }
        })
        .with_startup_timeout(STARTUP_TIMEOUT)
}

/// Starts `request`, then polls `is_ready` until it answers `Ok(true)`.
/// Returns the container (removed on drop) and where its log is, for
/// failure messages.
async fn start_until_ready<F, Fut>(
    request: ContainerRequest<GenericImage>,
    mut is_ready: F,
) -> (ContainerAsync<GenericImage>, String)
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<bool, TestkitError>>,
{
    let image = format!("{}:{}", request.image().name(), request.image().tag());
    let container = request
        .start()
        .await
        .unwrap_or_else(|error| panic!("starting {image}: {error}"));
    let logs = format!(
        "docker logs {} (set TESTCONTAINERS_COMMAND=keep to keep the container)",
        container.id()
    );
    let ready = poll_until(READY_TIMEOUT, || {
        let check = is_ready();
        async move { check.await.ok().filter(|&ready| ready) }
    })
    .await;
    assert!(
        ready.is_some(),
        "{image} not ready within {READY_TIMEOUT:?}; {logs}"
    );
    (container, logs)
}

/// One Apache Kafka node in KRaft mode, broker and controller. Clients on
/// this machine reach it on 127.0.0.1:`host_port`, which it advertises; the
/// broker's own listener stays inside the container. With any `KAFKA_*`
/// variable set the image takes its whole configuration from the
/// environment, so every required setting is here (as in docker-compose.yml).
fn kafka_container(host_port: u16) -> ContainerRequest<GenericImage> {
    let image = GenericImage::new("apache/kafka", "3.9.0")
        .with_wait_for(WaitFor::message_on_stdout("Kafka Server started"));
    let advertised = format!("PLAINTEXT://127.0.0.1:{host_port},BROKER://localhost:9094");
    let settings = [
        // A KRaft cluster id: 16 bytes, URL-safe base64 without padding.
        ("CLUSTER_ID", "4L6g3nShT-eMCtK--X86sw"),
        ("KAFKA_NODE_ID", "1"),
        ("KAFKA_PROCESS_ROLES", "broker,controller"),
        ("KAFKA_CONTROLLER_QUORUM_VOTERS", "1@localhost:9093"),
        ("KAFKA_CONTROLLER_LISTENER_NAMES", "CONTROLLER"),
        (
            "KAFKA_LISTENERS",
            "PLAINTEXT://:9092,CONTROLLER://:9093,BROKER://:9094",
        ),
        ("KAFKA_ADVERTISED_LISTENERS", advertised.as_str()),
        (
            "KAFKA_LISTENER_SECURITY_PROTOCOL_MAP",
            "PLAINTEXT:PLAINTEXT,CONTROLLER:PLAINTEXT,BROKER:PLAINTEXT",
        ),
        ("KAFKA_INTER_BROKER_LISTENER_NAME", "BROKER"),
        // One broker: internal topics cannot have more than one replica.
        ("KAFKA_OFFSETS_TOPIC_REPLICATION_FACTOR", "1"),
        ("KAFKA_TRANSACTION_STATE_LOG_REPLICATION_FACTOR", "1"),
        ("KAFKA_TRANSACTION_STATE_LOG_MIN_ISR", "1"),
        ("KAFKA_GROUP_INITIAL_REBALANCE_DELAY_MS", "0"),
        ("KAFKA_AUTO_CREATE_TOPICS_ENABLE", "false"),
        ("KAFKA_LOG_DIRS", "/tmp/kraft-combined-logs"),
    ];
    settings.into_iter().fold(
        published_on_loopback(image, host_port, 9092),
        |request, (name, value)| request.with_env_var(name, value),
    )
}

/// Prometheus with the remote-write receiver on, its image's configuration
/// (it scrapes itself) and an empty database.
fn prometheus_container(host_port: u16) -> ContainerRequest<GenericImage> {
    let image = GenericImage::new("prom/prometheus", "v2.55.1").with_wait_for(
        WaitFor::message_on_stderr("Server is ready to receive web requests."),
    );
    published_on_loopback(image, host_port, 9090).with_cmd([
        "--config.file=/etc/prometheus/prometheus.yml",
        "--storage.tsdb.path=/prometheus",
        "--web.enable-remote-write-receiver",
    ])
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn apache_kafka_round_trips_keyed_messages() {
    if skip_without_docker().await {
        return;
    }
    let host_port = fleet_testkit::free_port().unwrap();
    let kafka = KafkaClient::new(format!("127.0.0.1:{host_port}"));
    // Ready: a metadata answer that lists the broker.
    let (_container, logs) =
        start_until_ready(kafka_container(host_port), || kafka.is_ready()).await;
    common::keyed_round_trip(&kafka, &logs).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn prometheus_container_round_trips_a_remote_write() {
    if skip_without_docker().await {
        return;
    }
    let host_port = fleet_testkit::free_port().unwrap();
    let prometheus = PrometheusClient::new(format!("http://127.0.0.1:{host_port}")).unwrap();
    // Ready: `/-/ready` answers 200.
    let (_container, logs) =
        start_until_ready(prometheus_container(host_port), || prometheus.is_ready()).await;
    common::remote_write_round_trip(&prometheus, &logs).await;
}
