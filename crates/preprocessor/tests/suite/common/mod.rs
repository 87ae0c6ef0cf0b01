//! Shared harness of the end-to-end tests: the preprocessor as a child
//! process, deterministic generated input, and the comparison of what
//! Prometheus holds with the batch oracle.
#![allow(dead_code, clippy::unwrap_used, clippy::expect_used)]

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use fleet_core::RawEvent;
use fleet_generator::{EventGenerator, Fleet, GeneratorConfig};
use fleet_testkit::oracle::{self, Expected, ExpectedKey};
use fleet_testkit::{BrokerKind, ExposedSample, Prometheus, PrometheusOptions, TestBroker};

/// The output metrics of the design.
pub const METRICS: [&str; 9] = [
    "vehicles_in_motion",
    "warnings",
    "vehicles_reporting",
    "ic_engine_rpm_avg",
    "electric_motor_rpm_avg",
    "ic_engine_rpm_sum",
    "ic_engine_rpm_count",
    "electric_motor_rpm_sum",
    "electric_motor_rpm_count",
];

pub const WINDOW_MS: i64 = 5000;
pub const OUT_OF_ORDERNESS_MS: i64 = 2000;

/// Tests in one binary share the machine's two cores: run them one at a time
/// so processing-time idleness is not disturbed by a neighbour's load.
pub static SERIAL: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

/// A generated run: the fleet's reference data and its events in arrival order.
pub struct Run {
    pub events: Vec<RawEvent>,
    pub reference: HashMap<String, String>,
    pub reference_csv: PathBuf,
    pub dir: tempfile::TempDir,
}

/// A fleet of `vehicles` whose time starts 20 minutes ago (aligned to a
/// window), so every window is in the past and inside Prometheus's head;
/// its reference CSV written in a new temporary directory.
pub struct RecentFleet {
    pub config: GeneratorConfig,
    pub fleet: Fleet,
    pub reference_csv: PathBuf,
    pub dir: tempfile::TempDir,
}

impl RecentFleet {
    pub fn new(
        vehicles: usize,
        seed: u64,
        realism: impl FnOnce(GeneratorConfig) -> GeneratorConfig,
    ) -> RecentFleet {
        let now = fleet_core::telemetry::wall_clock_ms();
        let start = now - 20 * 60_000;
        RecentFleet::starting_at(vehicles, seed, realism, start - start.rem_euclid(WINDOW_MS))
    }

    /// A fleet of `vehicles` whose time starts at `start` (epoch ms).
    pub fn starting_at(
        vehicles: usize,
        seed: u64,
        realism: impl FnOnce(GeneratorConfig) -> GeneratorConfig,
        start: i64,
    ) -> RecentFleet {
        let config = realism(GeneratorConfig {
            vehicles,
            seed,
            start_ms: Some(start),
            ..GeneratorConfig::DEFAULT
        });
        let fleet = Fleet::from_config(&config);
        let dir = tempfile::tempdir().unwrap();
        let reference_csv = dir.path().join("vehicles.csv");
        fleet
            .write_reference_csv(std::fs::File::create(&reference_csv).unwrap())
            .unwrap();
        RecentFleet {
            config,
            fleet,
            reference_csv,
            dir,
        }
    }
}

/// `seconds` of fleet time for `vehicles` of a [`RecentFleet`].
pub fn generate(
    vehicles: usize,
    seconds: u64,
    seed: u64,
    realism: impl FnOnce(GeneratorConfig) -> GeneratorConfig,
) -> Run {
    generate_fleet(RecentFleet::new(vehicles, seed, realism), seconds)
}

/// `seconds` of fleet time for `vehicles`, starting now: events to send
/// live with [`produce_live`].
pub fn generate_live(
    vehicles: usize,
    seconds: u64,
    seed: u64,
    realism: impl FnOnce(GeneratorConfig) -> GeneratorConfig,
) -> Run {
    let now = fleet_core::telemetry::wall_clock_ms();
    generate_fleet(
        RecentFleet::starting_at(vehicles, seed, realism, now),
        seconds,
    )
}

/// Sends `events` of a [`generate_live`] run of `vehicles` as the fleet
/// would, in the background: each second of fleet time once the wall clock
/// reaches it, in arrival order. What comes due while a send waits (a broker
/// that does not answer) goes with the next send.
pub fn produce_live(
    kafka: &TestBroker,
    topic: &str,
    events: Vec<RawEvent>,
    vehicles: usize,
) -> tokio::task::JoinHandle<()> {
    let publisher = publisher(kafka, topic);
    let started = tokio::time::Instant::now();
    tokio::spawn(async move {
        let mut sent = 0;
        while sent < events.len() {
            let elapsed_ms = started.elapsed().as_millis() as usize;
            let due = (elapsed_ms * vehicles / 1000).min(events.len());
            if due > sent {
                publisher.publish(&events[sent..due]).await.unwrap();
                sent = due;
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    })
}

/// `seconds` of `fleet`'s time, for each of its vehicles.
pub fn generate_fleet(fleet: RecentFleet, seconds: u64) -> Run {
    let RecentFleet {
        config,
        fleet,
        reference_csv,
        dir,
    } = fleet;
    let vehicles = config.vehicles;
    let mut generator = EventGenerator::new(&fleet, &config).unwrap();
    let events: Vec<RawEvent> = generator.take_exact(vehicles as u64 * seconds).collect();
    Run {
        events,
        reference: fleet.reference_map(),
        reference_csv,
        dir,
    }
}

/// Disorder within the bound only: nothing is late.
pub fn in_bound(c: GeneratorConfig) -> GeneratorConfig {
    GeneratorConfig {
        disorder_fraction: 0.1,
        max_disorder_ms: 1500,
        late_fraction: 0.0,
        offline_probability: 0.0,
        ..c
    }
}

/// A running `fleet-preprocessor`.
pub struct Service {
    child: Option<Child>,
    pub metrics_url: String,
    pub log: PathBuf,
    config: PathBuf,
}

/// Writes a configuration for a Kafka + remote-write run and returns its path.
pub fn service_config(
    dir: &Path,
    brokers: &str,
    topic: &str,
    remote_write_url: &str,
    reference_csv: &Path,
    extra: &str,
) -> PathBuf {
    let path = dir.join(format!("fleet-{}.toml", fleet_testkit::unique_name("cfg")));
    let toml = format!(
        r#"
[kafka]
brokers = "{brokers}"
topic = "{topic}"
group_id = "{topic}-group"
commit_interval_ms = 200
session_timeout_ms = 6000
drain_timeout_ms = 5000

[reference]
csv_path = "{csv}"

[windows]
idle_timeout_ms = 2000
all_idle_close_after_ms = 2000

[remote_write]
url = "{remote_write_url}"
min_backoff_ms = 50
max_backoff_ms = 1000

{extra}
"#,
        csv = reference_csv.display()
    );
    std::fs::write(&path, toml).unwrap();
    path
}

impl Service {
    /// Starts the binary with `config`; logs go to a file next to it.
    pub fn start(config: &Path) -> Service {
        Service::start_with_port(config, fleet_testkit::free_port().unwrap())
    }

    /// `fleet-preprocessor healthcheck [--ready]` against this service, as a
    /// container runtime would run it: whether it exited 0, and its stderr.
    pub fn healthcheck(&self, ready: bool) -> (bool, String) {
        let port = self
            .metrics_url
            .trim_start_matches("http://")
            .trim_end_matches("/metrics")
            .to_string();
        let mut command = Command::new(env!("CARGO_BIN_EXE_fleet-preprocessor"));
        command
            .arg("--config")
            .arg(&self.config)
            .arg("healthcheck")
            .env("FLEET__TELEMETRY__LISTEN", port);
        if ready {
            command.arg("--ready");
        }
        let out = command.output().unwrap();
        (
            out.status.success(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    }

    /// The service's own metrics, empty while it does not answer.
    pub async fn metrics(&self) -> Vec<ExposedSample> {
        match reqwest::get(&self.metrics_url).await {
            Ok(r) => fleet_testkit::parse_exposition(&r.text().await.unwrap_or_default()),
            Err(_) => Vec::new(),
        }
    }

    /// `/readyz`: whether ready, and the body naming what is not.
    pub async fn readiness(&self) -> (bool, String) {
        let url = self.metrics_url.replace("/metrics", "/readyz");
        match reqwest::get(&url).await {
            Ok(r) => (r.status().is_success(), r.text().await.unwrap_or_default()),
            Err(e) => (false, e.to_string()),
        }
    }

    /// Whether the log has a line containing `text`.
    pub fn logged(&self, text: &str) -> bool {
        std::fs::read_to_string(&self.log)
            .unwrap_or_default()
            .contains(text)
    }

    /// The process's CPU seconds (user + system) and peak resident set, KiB,
    /// from `/proc`; `None` once it has exited.
    pub fn usage(&self) -> Option<(f64, u64)> {
        let pid = self.child.as_ref()?.id();
        let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
        // Fields after the command name, which is in parentheses.
        let fields: Vec<&str> = stat.rsplit_once(')')?.1.split_whitespace().collect();
        let ticks: f64 =
            fields.get(11)?.parse::<f64>().ok()? + fields.get(12)?.parse::<f64>().ok()?;
        // /proc reports CPU time in USER_HZ, 100 per second on Linux.
        let per_second = 100.0;
        let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
        let peak_kib = status
            .lines()
            .find_map(|l| l.strip_prefix("VmHWM:"))?
            .trim()
            .trim_end_matches("kB")
            .trim()
            .parse()
            .ok()?;
        Some((ticks / per_second, peak_kib))
    }

    /// One metric, summed over series matching `filter`.
    pub async fn metric(&self, name: &str, filter: &[(&str, &str)]) -> f64 {
        fleet_testkit::exposed_value(&self.metrics().await, name, filter)
    }

    /// SIGTERM, then waits for a clean exit.
    pub async fn terminate(mut self) {
        self.stop_gracefully().await;
    }

    /// SIGTERM, then waits for a clean exit; the log stays readable.
    pub async fn stop_gracefully(&mut self) {
        let child = self.child.as_ref().unwrap();
        let pid = nix::unistd::Pid::from_raw(child.id() as i32);
        nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGTERM).unwrap();
        self.assert_clean_exit(Duration::from_secs(600)).await;
    }

    /// Waits up to `within` for the process to end (stopped by other means:
    /// a container engine's `stop`), and asserts that it ended cleanly.
    pub async fn assert_clean_exit(&mut self, within: Duration) {
        let mut child = self.child.take().unwrap();
        let deadline = tokio::time::Instant::now() + within;
        let status = loop {
            if let Some(status) = child.try_wait().unwrap() {
                break status;
            }
            if tokio::time::Instant::now() >= deadline {
                let _ = child.kill();
                panic!("still running {within:?} later; log: {}", self.log_tail());
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        };
        assert!(
            status.success(),
            "graceful stop failed: {status}; log: {}",
            self.log_tail()
        );
    }

    /// SIGKILL: no chance to drain or commit.
    pub fn kill(mut self) {
        self.kill_now();
    }

    /// SIGKILL; the log stays readable.
    pub fn kill_now(&mut self) {
        let mut child = self.child.take().unwrap();
        child.kill().unwrap();
        child.wait().unwrap();
    }

    pub fn log_tail(&self) -> String {
        let text = std::fs::read_to_string(&self.log).unwrap_or_default();
        let lines: Vec<&str> = text.lines().collect();
        lines[lines.len().saturating_sub(60)..].join("\n")
    }

    pub fn config(&self) -> &Path {
        &self.config
    }

    /// The log lines about rebalances and everything at WARN or above, for
    /// a failure report.
    pub fn log_events(&self) -> String {
        std::fs::read_to_string(&self.log)
            .unwrap_or_default()
            .lines()
            .filter(|l| {
                l.contains("WARN")
                    || l.contains("ERROR")
                    || l.contains("Partitions assigned")
                    || l.contains("Partitions revoked")
            })
            .collect::<Vec<_>>()
            .join("\n")
    }
}

impl Drop for Service {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// A series' `model` label: what the oracle groups by.
pub fn model_label(labels: &BTreeMap<String, String>) -> String {
    labels.get("model").cloned().unwrap_or_default()
}

/// Every (window end, model, region) → metric → value that Prometheus holds.
pub async fn prometheus_samples(
    prom: &Prometheus,
    start_ms: i64,
    end_ms: i64,
) -> BTreeMap<ExpectedKey, BTreeMap<String, f64>> {
    prometheus_samples_keyed(prom, start_ms, end_ms, model_label).await
}

/// The same, with the oracle's "model" taken from each series' labels by
/// `model_of` (a test whose oracle groups by more than the model joins them).
pub async fn prometheus_samples_keyed(
    prom: &Prometheus,
    start_ms: i64,
    end_ms: i64,
    model_of: impl Fn(&BTreeMap<String, String>) -> String,
) -> BTreeMap<ExpectedKey, BTreeMap<String, f64>> {
    let mut got: BTreeMap<ExpectedKey, BTreeMap<String, f64>> = BTreeMap::new();
    for metric in METRICS {
        for series in prom.series_samples(metric, start_ms, end_ms).await.unwrap() {
            let model = model_of(&series.labels);
            let region = series.labels.get("region").cloned().unwrap_or_default();
            for (ts, value) in series.samples {
                got.entry((ts, model.clone(), region.clone()))
                    .or_default()
                    .insert(metric.to_string(), value);
            }
        }
    }
    got
}

/// How many `vehicles_reporting` samples Prometheus holds between
/// `start_ms` and `end_ms`: one per window and group (and partition, in the
/// partitioned mode).
pub async fn windows_written(prom: &Prometheus, start_ms: i64, end_ms: i64) -> usize {
    prom.series_samples("vehicles_reporting", start_ms, end_ms)
        .await
        .map(|s| s.iter().map(|s| s.samples.len()).sum())
        .unwrap_or(0)
}

/// Waits until Prometheus holds `expected_keys` window series of
/// `vehicles_reporting` (or the timeout passes), returning what it holds.
pub async fn wait_for_windows(
    prom: &Prometheus,
    start_ms: i64,
    end_ms: i64,
    expected_keys: usize,
    timeout: Duration,
) -> usize {
    let deadline = tokio::time::Instant::now() + timeout;
    loop {
        let n = windows_written(prom, start_ms, end_ms).await;
        if n >= expected_keys || tokio::time::Instant::now() >= deadline {
            return n;
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}

/// Waits until Prometheus holds `expected_keys` window series, at most 60 s:
/// the run is under way, the moment to disturb it.
pub async fn wait_for_some_windows(
    prom: &Prometheus,
    start_ms: i64,
    end_ms: i64,
    expected_keys: usize,
) {
    wait_for_windows(
        prom,
        start_ms,
        end_ms,
        expected_keys,
        Duration::from_secs(60),
    )
    .await;
}

/// Asserts that Prometheus holds exactly the oracle's samples: every metric of
/// every window and group, nothing missing, nothing extra.
pub fn assert_samples_equal(
    got: &BTreeMap<ExpectedKey, BTreeMap<String, f64>>,
    expected: &BTreeMap<ExpectedKey, Expected>,
) {
    let want = oracle::expected_samples(expected, "");
    let mut problems = Vec::new();
    for (key, metrics) in &want {
        match got.get(key) {
            None => problems.push(format!("missing window {key:?}")),
            Some(g) if g != metrics => {
                problems.push(format!("{key:?}: got {g:?}, want {metrics:?}"))
            }
            Some(_) => {}
        }
    }
    for key in got.keys() {
        if !want.contains_key(key) {
            problems.push(format!("unexpected window {key:?}: {:?}", got[key]));
        }
    }
    assert!(
        problems.is_empty(),
        "{} of {} windows differ; first ones:\n{}",
        problems.len(),
        want.len(),
        problems
            .iter()
            .take(10)
            .cloned()
            .collect::<Vec<_>>()
            .join("\n")
    );
}

/// The range of window ends in `expected`, for queries.
pub fn time_range(expected: &BTreeMap<ExpectedKey, Expected>) -> (i64, i64) {
    let first = expected.keys().next().map(|k| k.0).unwrap_or(0);
    let last = expected.keys().last().map(|k| k.0).unwrap_or(0);
    (first - WINDOW_MS, last + WINDOW_MS)
}

/// Write requests Prometheus refused with 400 so far.
pub async fn refused_writes(prom: &Prometheus) -> f64 {
    prom.write_requests_by_code()
        .await
        .unwrap()
        .get("400")
        .copied()
        .unwrap_or(0.0)
}

/// Waits until Prometheus holds every expected window and asserts that each
/// one equals the batch computation. The last samples of a window may still
/// be on their way when its first metric appears, so it polls until every
/// sample matches or the time is up, then compares for good.
pub async fn assert_prometheus_holds(
    prom: &Prometheus,
    service: &Service,
    expected: &BTreeMap<ExpectedKey, Expected>,
) {
    assert_prometheus_holds_keyed(prom, service, expected, model_label).await;
}

/// [`assert_prometheus_holds`], keying series as [`prometheus_samples_keyed`] does.
pub async fn assert_prometheus_holds_keyed(
    prom: &Prometheus,
    service: &Service,
    expected: &BTreeMap<ExpectedKey, Expected>,
    model_of: impl Fn(&BTreeMap<String, String>) -> String + Copy,
) {
    let (start, end) = time_range(expected);
    let n = wait_for_windows(prom, start, end, expected.len(), Duration::from_secs(90)).await;
    assert_eq!(
        n,
        expected.len(),
        "windows written; log:\n{}",
        service.log_tail()
    );
    let want = oracle::expected_samples(expected, "");
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    let mut got = prometheus_samples_keyed(prom, start, end, model_of).await;
    while got != want && tokio::time::Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(500)).await;
        got = prometheus_samples_keyed(prom, start, end, model_of).await;
    }
    assert_samples_equal(&got, expected);
}

/// The service read `events` events, none of them late, and Prometheus
/// refused none of its writes.
pub async fn assert_every_event_read_on_time(prom: &Prometheus, service: &Service, events: usize) {
    assert_eq!(
        service.metric("fleet_source_events_total", &[]).await as usize,
        events
    );
    assert_none_late_or_refused(prom, service).await;
}

/// The service took no event as late, and Prometheus refused none of its writes.
pub async fn assert_none_late_or_refused(prom: &Prometheus, service: &Service) {
    assert_eq!(
        service
            .metric("fleet_aggregator_late_events_total", &[])
            .await,
        0.0
    );
    assert_eq!(refused_writes(prom).await, 0.0, "no write was refused");
}

/// A real broker and a real Prometheus, or `None` (after saying why) when the
/// tests may skip and one of them is not installed.
pub async fn services() -> Option<(TestBroker, Prometheus)> {
    let kafka = fleet_testkit::broker_or_skip().await?;
    let prom = fleet_testkit::prometheus_or_skip(PrometheusOptions::default()).await?;
    Some((kafka, prom))
}

/// noida-db, the test broker that keeps offset-commit metadata as Kafka
/// does, and a real Prometheus, or `None` (after saying why) when the tests
/// may skip and one of them is not installed.
pub async fn noida_services() -> Option<(TestBroker, Prometheus)> {
    let kafka = fleet_testkit::broker_kind_or_skip(BrokerKind::Noida).await?;
    let prom = fleet_testkit::prometheus_or_skip(PrometheusOptions::default()).await?;
    Some((kafka, prom))
}

/// Rewrites the configuration file `config` with `edit`.
pub fn edit_config(config: &Path, edit: impl FnOnce(String) -> String) {
    let text = std::fs::read_to_string(config).unwrap();
    std::fs::write(config, edit(text)).unwrap();
}

/// The configuration of a service that reads `topic` and writes to `prom`.
pub fn config_for(run: &Run, kafka: &TestBroker, prom: &Prometheus, topic: &str) -> PathBuf {
    service_config(
        run.dir.path(),
        &kafka.bootstrap_servers(),
        topic,
        &prom.remote_write_url(),
        &run.reference_csv,
        "",
    )
}

/// The fleet's producer of events to `topic`.
fn publisher(kafka: &TestBroker, topic: &str) -> fleet_kafka::producer::EventPublisher {
    fleet_kafka::producer::EventPublisher::new(&fleet_kafka::KafkaConfig {
        brokers: kafka.bootstrap_servers(),
        topic: topic.into(),
        ..fleet_kafka::KafkaConfig::default()
    })
    .unwrap()
}

/// Produces `events` to `topic` in chunks, one chunk every `every`, in the
/// background: the fleet keeps sending while a test does things to the service.
pub fn produce_paced(
    kafka: &TestBroker,
    topic: &str,
    events: Vec<RawEvent>,
    chunk: usize,
    every: Duration,
) -> tokio::task::JoinHandle<()> {
    let publisher = publisher(kafka, topic);
    tokio::spawn(async move {
        for part in events.chunks(chunk) {
            publisher.publish(part).await.unwrap();
            tokio::time::sleep(every).await;
        }
    })
}

/// The refusals of conflicting samples (another value for a timestamp it
/// already had) that Prometheus logged.
pub fn conflicts_logged(prom: &Prometheus) -> Vec<String> {
    prometheus_log_lines(prom, "duplicate sample for timestamp")
}

/// The lines of Prometheus's log that contain `text`.
pub fn prometheus_log_lines(prom: &Prometheus, text: &str) -> Vec<String> {
    std::fs::read_to_string(prom.log_path())
        .unwrap_or_default()
        .lines()
        .filter(|l| l.contains(text))
        .map(String::from)
        .collect()
}

impl Service {
    /// Like [`Service::start`], with the telemetry endpoint on `port`, so
    /// that a Prometheus started before the service can scrape it.
    pub fn start_with_port(config: &Path, port: u16) -> Service {
        let log = config.with_extension(format!("{port}.log"));
        let log_file = std::fs::File::create(&log).unwrap();
        let child = Command::new(env!("CARGO_BIN_EXE_fleet-preprocessor"))
            .arg("--config")
            .arg(config)
            .env("FLEET__TELEMETRY__LISTEN", format!("127.0.0.1:{port}"))
            .env("RUST_LOG", "info,fleet_kafka=debug,librdkafka=warn")
            .stdin(Stdio::null())
            .stdout(log_file.try_clone().unwrap())
            .stderr(log_file)
            .spawn()
            .unwrap();
        Service::adopt(child, port, log, config.to_path_buf())
    }

    /// A service already running as `child`, its telemetry endpoint on
    /// 127.0.0.1:`port` and its output in `log`: the foreground process of a
    /// container, for instance.
    pub fn adopt(child: Child, port: u16, log: PathBuf, config: PathBuf) -> Service {
        Service {
            child: Some(child),
            metrics_url: format!("http://127.0.0.1:{port}/metrics"),
            log,
            config,
        }
    }
}

/// The `expr` of every rule in a Prometheus rules file, in file order. Knows
/// the two forms the repository's files use: `expr: <one line>` and a folded
/// block (`expr: >-` followed by more-indented lines).
pub fn rule_expressions(rules_yaml: &str) -> Vec<String> {
    let lines: Vec<&str> = rules_yaml.lines().collect();
    let mut exprs = Vec::new();
    let mut i = 0;
    while i < lines.len() {
        let line = lines[i];
        let trimmed = line.trim_start();
        if let Some(value) = trimmed.strip_prefix("expr:") {
            let value = value.trim();
            if matches!(value, ">-" | ">" | "|" | "|-") {
                let indent = line.len() - trimmed.len();
                let mut parts = Vec::new();
                i += 1;
                while i < lines.len() {
                    let next = lines[i];
                    let next_indent = next.len() - next.trim_start().len();
                    if !next.trim().is_empty() && next_indent <= indent {
                        break;
                    }
                    parts.push(next.trim());
                    i += 1;
                }
                exprs.push(parts.join(" ").trim().to_string());
                continue;
            }
            exprs.push(value.trim_matches(|c| c == '\'' || c == '"').to_string());
        }
        i += 1;
    }
    exprs
}

/// Like [`services`], with Prometheus also scraping the service's `/metrics`
/// (job `fleet`) on the returned port from the start: pass the port to
/// [`Service::start_with_port`].
pub async fn observed_services() -> Option<(TestBroker, Prometheus, u16)> {
    let kafka = fleet_testkit::broker_or_skip().await?;
    let port = fleet_testkit::free_port().unwrap();
    let options = PrometheusOptions::default().scrape(format!("127.0.0.1:{port}"));
    let prom = fleet_testkit::prometheus_or_skip(options).await?;
    Some((kafka, prom, port))
}
