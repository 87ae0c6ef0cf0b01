//! The container image against real services, as it is deployed: the
//! image's `fleet-generator` writes a fleet to the broker, the image's service
//! reads it configured by `FLEET__*` variables alone, on a read-only root
//! filesystem, and every window in Prometheus equals the batch oracle.
//!
//! Ignored in a plain `cargo test`: `scripts/test-image.sh` builds the image
//! from the Dockerfile and runs these with `--ignored`, naming the image
//! (`FLEET_TEST_IMAGE`), the engine (`FLEET_TEST_CONTAINER_ENGINE`, for
//! example `podman --runtime runc`) and the options every `run` needs
//! (`FLEET_TEST_CONTAINER_RUN_OPTIONS`).
#![allow(clippy::unwrap_used)] // helpers of the test below

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Duration;

use crate::common::*;
use fleet_generator::GeneratorConfig;
use fleet_testkit::oracle;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::{Offset, TopicPartitionList};

const IGNORED: &str = "needs the container image: scripts/test-image.sh builds it and runs this";

/// The engine and image named by the environment.
struct Engine {
    command: Vec<String>,
    run_options: Vec<String>,
    image: String,
}

impl Engine {
    fn from_env() -> Engine {
        let var = |name: &str| {
            std::env::var(name).unwrap_or_else(|_| panic!("{name} is not set; {IGNORED}"))
        };
        let words = |text: String| text.split_whitespace().map(String::from).collect();
        Engine {
            command: words(var("FLEET_TEST_CONTAINER_ENGINE")),
            run_options: words(
                std::env::var("FLEET_TEST_CONTAINER_RUN_OPTIONS").unwrap_or_default(),
            ),
            image: var("FLEET_TEST_IMAGE"),
        }
    }

    fn command(&self) -> Command {
        let mut command = Command::new(&self.command[0]);
        command.args(&self.command[1..]);
        command
    }

    /// `<engine> run --rm` on the host network with a read-only root
    /// filesystem, `dir` mounted at /data, and `env` as the only settings.
    fn run(&self, name: &str, dir: &Path, env: &[(&str, String)]) -> Command {
        let mut command = self.command();
        command
            .args([
                "run",
                "--rm",
                "--name",
                name,
                "--read-only",
                "--network",
                "host",
            ])
            .args(&self.run_options)
            .arg("--volume")
            .arg(format!("{}:/data", dir.display()));
        for (key, value) in env {
            command.arg("--env").arg(format!("{key}={value}"));
        }
        command
    }
}

/// Removes the container when the test ends, however it ends.
struct Container<'e> {
    engine: &'e Engine,
    name: String,
}

impl Container<'_> {
    /// `<engine> stop`: SIGTERM, then SIGKILL after `grace`.
    fn stop(&self, grace: Duration) {
        let status = self
            .engine
            .command()
            .args(["stop", "--time", &grace.as_secs().to_string(), &self.name])
            .stdout(Stdio::null())
            .status()
            .unwrap();
        assert!(status.success(), "stopping {}", self.name);
    }
}

impl Drop for Container<'_> {
    fn drop(&mut self) {
        let _ = self
            .engine
            .command()
            .args(["rm", "--force", &self.name])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status();
    }
}

/// The command-line flags that make `fleet-generator` write `config`'s fleet.
fn generator_flags(config: &GeneratorConfig, events: usize) -> Vec<String> {
    let mut flags = vec![
        format!("--vehicles={}", config.vehicles),
        format!("--seed={}", config.seed),
        format!("--events={events}"),
        format!("--disorder-fraction={}", config.disorder_fraction),
        format!("--max-disorder-ms={}", config.max_disorder_ms),
        format!("--late-fraction={}", config.late_fraction),
        format!("--late-min-ms={}", config.late_min_ms),
        format!("--late-max-ms={}", config.late_max_ms),
        format!("--offline-probability={}", config.offline_probability),
        format!("--offline-min-s={}", config.offline_min_s),
        format!("--offline-max-s={}", config.offline_max_s),
    ];
    if let Some(start) = config.start_ms {
        flags.push(format!("--start-ms={start}"));
    }
    flags
}

/// The offsets committed for `group` on `topic`, summed over its partitions.
fn committed_total(bootstrap: &str, group: &str, topic: &str, partitions: i32) -> i64 {
    let consumer: BaseConsumer = rdkafka::ClientConfig::new()
        .set("bootstrap.servers", bootstrap)
        .set("group.id", group)
        .set("enable.auto.commit", "false")
        .create()
        .unwrap();
    let mut list = TopicPartitionList::new();
    for p in 0..partitions {
        list.add_partition(topic, p);
    }
    let committed = consumer
        .committed_offsets(list, Duration::from_secs(10))
        .unwrap();
    committed
        .elements()
        .iter()
        .map(|e| match e.offset() {
            Offset::Offset(o) => o,
            _ => 0,
        })
        .sum()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs the container image: scripts/test-image.sh builds it and runs this"]
async fn the_images_generator_and_service_equal_the_batch_computation() {
    let _serial = SERIAL.lock().await;
    let engine = Engine::from_env();
    let (kafka, prom) = services().await.expect("a broker and Prometheus");
    let (vehicles, seconds, seed) = (200, 60, 29);
    let fleet = RecentFleet::new(vehicles, seed, in_bound);
    let events = vehicles * seconds;
    let topic = "image-events";
    let partitions = 4;
    kafka.create_topic(topic, partitions).await.unwrap();
    // The container's user (10001) writes the reference CSV here.
    let data = tempfile::tempdir().unwrap();
    std::fs::set_permissions(
        data.path(),
        std::os::unix::fs::PermissionsExt::from_mode(0o777),
    )
    .unwrap();

    let generator_name = fleet_testkit::unique_name("fleet-image-generator");
    let _generator = Container {
        engine: &engine,
        name: generator_name.clone(),
    };
    let flags = generator_flags(&fleet.config, events);
    let run = generate_fleet(fleet, seconds as u64);
    let out = engine
        .run(&generator_name, data.path(), &[])
        .args(["--entrypoint", "fleet-generator", &engine.image])
        .arg(format!("--brokers={}", kafka.bootstrap_servers()))
        .arg(format!("--topic={topic}"))
        .arg("--rate=0")
        .arg("--reference-out=/data/vehicles.csv")
        .args(flags)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "the image's fleet-generator: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    // The container wrote the fleet the test computes.
    assert_eq!(
        std::fs::read_to_string(data.path().join("vehicles.csv")).unwrap(),
        std::fs::read_to_string(&run.reference_csv).unwrap(),
        "the reference CSV the image's generator wrote"
    );
    let expected = oracle::expected_windows(&run.events, &run.reference, WINDOW_MS, None);

    let port = fleet_testkit::free_port().unwrap();
    let group = format!("{topic}-group");
    let drain = Duration::from_secs(5);
    let service_name = fleet_testkit::unique_name("fleet-image-service");
    let container = Container {
        engine: &engine,
        name: service_name.clone(),
    };
    let settings = [
        ("FLEET__KAFKA__BROKERS", kafka.bootstrap_servers()),
        ("FLEET__KAFKA__TOPIC", topic.to_string()),
        ("FLEET__KAFKA__GROUP_ID", group.clone()),
        ("FLEET__KAFKA__COMMIT_INTERVAL_MS", "200".into()),
        ("FLEET__KAFKA__SESSION_TIMEOUT_MS", "6000".into()),
        (
            "FLEET__KAFKA__DRAIN_TIMEOUT_MS",
            drain.as_millis().to_string(),
        ),
        ("FLEET__REFERENCE__CSV_PATH", "/data/vehicles.csv".into()),
        ("FLEET__WINDOWS__IDLE_TIMEOUT_MS", "2000".into()),
        ("FLEET__WINDOWS__ALL_IDLE_CLOSE_AFTER_MS", "2000".into()),
        ("FLEET__REMOTE_WRITE__URL", prom.remote_write_url()),
        ("FLEET__REMOTE_WRITE__MIN_BACKOFF_MS", "50".into()),
        ("FLEET__REMOTE_WRITE__MAX_BACKOFF_MS", "1000".into()),
        ("FLEET__TELEMETRY__LISTEN", format!("127.0.0.1:{port}")),
    ];
    let log = data.path().join("service.log");
    let log_file = std::fs::File::create(&log).unwrap();
    let child = engine
        .run(&service_name, data.path(), &settings)
        .arg(&engine.image)
        .stdin(Stdio::null())
        .stdout(log_file.try_clone().unwrap())
        .stderr(log_file)
        .spawn()
        .unwrap();
    let mut service = Service::adopt(child, port, log, data.path().to_path_buf());

    assert_prometheus_holds(&prom, &service, &expected).await;
    assert_every_event_read_on_time(&prom, &service, events).await;
    assert!(service.readiness().await.0, "ready: {}", service.log_tail());

    // Every window is written: the stop commits every offset.
    let stopping = tokio::time::Instant::now();
    container.stop(Duration::from_secs(30));
    let took = stopping.elapsed();
    // The engine's client ends with the container. Signalling the client as
    // well races with its removal of the container: podman then dies of the
    // signal it could not forward.
    service.assert_clean_exit(Duration::from_secs(30)).await;
    assert!(
        took < drain + Duration::from_secs(3),
        "SIGTERM stopped the container in {took:?}, past the drain deadline {drain:?}"
    );
    assert!(
        service.logged("Shutdown requested."),
        "{}",
        service.log_tail()
    );
    eprintln!(
        "image: {events} events from the image's generator, {} windows equal to the oracle, stopped by SIGTERM in {took:?}",
        expected.len()
    );
    assert_eq!(
        committed_total(&kafka.bootstrap_servers(), &group, topic, partitions),
        events as i64,
        "every event's offset committed by the stop"
    );
}
