//! A real remote-write receiver for tests: Debian's Prometheus.
//!
//! The emitter's contract is defined by what Prometheus accepts and refuses
//! (docs/ARCHITECTURE.md, "Delivery guarantee"), so tests write to the real thing and
//! read back through its HTTP API. [`PrometheusClient::series_samples`]
//! evaluates a range-vector selector rather than `query_range`, because only
//! the former returns the raw samples with their exact timestamps.
//!
//! Each instance listens on its own free port: the Debian package may run a
//! system Prometheus on 9090, which tests never touch.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use serde::Deserialize;

use crate::process::{self, LocalService, ServiceProcess};
use crate::TestkitError;

const SERVICE: &str = "prometheus";

/// How long Prometheus has to come up; it is normally ready in about a second.
const READY_TIMEOUT: Duration = Duration::from_secs(30);

/// Per-request timeout of every HTTP call.
const HTTP_TIMEOUT: Duration = Duration::from_secs(10);

/// What the started Prometheus scrapes.
#[derive(Clone, Debug)]
pub struct PrometheusOptions {
    /// `host:port` targets scraped at `/metrics` as job `fleet`.
    pub scrape_targets: Vec<String>,
    /// How often targets are scraped (default 1 s).
    pub scrape_interval: Duration,
    /// Also scrape Prometheus's own `/metrics` as job `prometheus`, so `up`
    /// has a series even without targets (default off).
    pub scrape_self: bool,
}

impl Default for PrometheusOptions {
    fn default() -> Self {
        PrometheusOptions {
            scrape_targets: Vec::new(),
            scrape_interval: Duration::from_secs(1),
            scrape_self: false,
        }
    }
}

impl PrometheusOptions {
    /// Adds a `host:port` scrape target to job `fleet`.
    pub fn scrape(mut self, target: impl Into<String>) -> Self {
        self.scrape_targets.push(target.into());
        self
    }
}

/// One element of an instant vector.
#[derive(Clone, Debug, PartialEq)]
pub struct PromSample {
    /// Every label, including `__name__` when the expression keeps it.
    pub labels: BTreeMap<String, String>,
    /// The value.
    pub value: f64,
    /// The evaluation timestamp, epoch ms.
    pub timestamp_ms: i64,
}

/// One series of a range vector.
#[derive(Clone, Debug, PartialEq)]
pub struct PromSeries {
    /// Every label, including `__name__` for raw samples.
    pub labels: BTreeMap<String, String>,
    /// `(timestamp ms, value)` in timestamp order.
    pub samples: Vec<(i64, f64)>,
}

/// A Prometheus with the remote-write receiver on, running as a child
/// process; killed on drop. It dereferences to a [`PrometheusClient`] of
/// itself (`query`, `series_samples`, `remote_write_url`…). Its log is
/// Prometheus's stderr.
pub type Prometheus = LocalService<PrometheusClient>;

impl Prometheus {
    /// Kills Prometheus (SIGKILL) and keeps its directory: its port stays
    /// free for [`Prometheus::start_again`], and nothing answers meanwhile.
    pub fn kill(&mut self) {
        self.process_mut().kill();
    }

    /// Starts a killed Prometheus again on its port and data directory (it
    /// replays its write-ahead log) and waits until it is ready.
    pub async fn start_again(&mut self) -> Result<(), TestkitError> {
        self.process_mut().respawn()?;
        let deadline = tokio::time::Instant::now() + READY_TIMEOUT;
        while !self.is_ready().await.unwrap_or(false) {
            if tokio::time::Instant::now() > deadline {
                return Err(TestkitError::Timeout {
                    what: "Prometheus after a restart".into(),
                    after: READY_TIMEOUT,
                });
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        Ok(())
    }

    /// Finds the `prometheus` binary: `$FLEET_PROMETHEUS_BIN`, then `PATH`, then `/usr/bin`.
    pub fn binary() -> Result<PathBuf, TestkitError> {
        process::find_binary(
            SERVICE,
            "FLEET_PROMETHEUS_BIN",
            &[PathBuf::from("/usr/bin/prometheus")],
        )
    }

    /// Starts Prometheus on a free loopback port with an empty database in a
    /// temporary directory and waits until `/-/ready` answers 200.
    pub async fn start(options: PrometheusOptions) -> Result<Prometheus, TestkitError> {
        let binary = Self::binary()?;
        let http = http_client()?;
        process::start_with_retries(SERVICE, || {
            Self::start_once(&binary, &options, http.clone())
        })
        .await
    }

    async fn start_once(
        binary: &Path,
        options: &PrometheusOptions,
        http: reqwest::Client,
    ) -> Result<Prometheus, TestkitError> {
        let port = process::free_port()?;
        let listen = format!("127.0.0.1:{port}");
        let dir = ServiceProcess::temp_dir(SERVICE)?;
        let config_path = dir.path().join("prometheus.yml");
        std::fs::write(&config_path, config_file(options, &listen)).map_err(|source| {
            TestkitError::Io {
                context: format!("writing {}", config_path.display()),
                source,
            }
        })?;
        let mut command = Command::new(binary);
        command
            .arg(format!("--config.file={}", config_path.display()))
            .arg(format!(
                "--storage.tsdb.path={}",
                dir.path().join("data").display()
            ))
            .arg(format!("--web.listen-address={listen}"))
            .arg("--web.enable-remote-write-receiver");
        let client = PrometheusClient {
            url: format!("http://{listen}"),
            http,
        };
        let probe = || client.ready_probe();
        let process = ServiceProcess::spawn(SERVICE, command, dir)?
            .wait_ready(READY_TIMEOUT, Duration::from_millis(100), probe)
            .await?;
        Ok(Prometheus::new(process, client))
    }
}

/// The HTTP API of a Prometheus wherever it runs: a local [`Prometheus`] or
/// one in a container.
#[derive(Clone, Debug)]
pub struct PrometheusClient {
    url: String,
    http: reqwest::Client,
}

/// The HTTP client of every call of a local service: no proxy (a
/// developer's HTTP_PROXY must not capture loopback requests), a
/// per-request timeout.
pub(crate) fn http_client_builder() -> reqwest::ClientBuilder {
    reqwest::Client::builder().no_proxy().timeout(HTTP_TIMEOUT)
}

/// The HTTP client of every call: no proxy, a per-request timeout.
fn http_client() -> Result<reqwest::Client, TestkitError> {
    http_client_builder()
        .build()
        .map_err(|source| TestkitError::Http {
            context: "building the HTTP client".to_string(),
            source,
        })
}

impl PrometheusClient {
    /// A client of the Prometheus at `url` (`http://host:port`, no trailing slash).
    pub fn new(url: impl Into<String>) -> Result<Self, TestkitError> {
        Ok(PrometheusClient {
            url: url.into(),
            http: http_client()?,
        })
    }

    /// Whether `/-/ready` answers 200.
    pub async fn is_ready(&self) -> Result<bool, TestkitError> {
        let response = self
            .http
            .get(format!("{}/-/ready", self.url))
            .send()
            .await
            .map_err(|source| TestkitError::Http {
                context: "GET /-/ready".to_string(),
                source,
            })?;
        Ok(response.status() == reqwest::StatusCode::OK)
    }

    /// [`Self::is_ready`] as a readiness probe: `Err` says why not.
    async fn ready_probe(&self) -> Result<(), String> {
        match self.is_ready().await {
            Ok(true) => Ok(()),
            Ok(false) => Err("/-/ready did not answer 200".to_string()),
            Err(error) => Err(error.to_string()),
        }
    }

    /// The base URL, `http://HOST:PORT`.
    pub fn url(&self) -> &str {
        &self.url
    }

    /// The remote-write endpoint, `<url>/api/v1/write`.
    pub fn remote_write_url(&self) -> String {
        format!("{}/api/v1/write", self.url)
    }

    /// Evaluates `expr` as an instant query at `at_ms` (now when `None`).
    /// A scalar result comes back as one sample without labels.
    pub async fn query(
        &self,
        expr: &str,
        at_ms: Option<i64>,
    ) -> Result<Vec<PromSample>, TestkitError> {
        let mut params = vec![("query", expr.to_string())];
        if let Some(at) = at_ms {
            params.push(("time", prom_time(at)));
        }
        match self.api("/api/v1/query", &params).await? {
            QueryData::Vector(items) => Ok(items
                .into_iter()
                .map(|item| PromSample {
                    labels: item.metric,
                    value: parse_value(&item.value.1),
                    timestamp_ms: seconds_to_ms(item.value.0),
                })
                .collect()),
            QueryData::Scalar(point) => Ok(vec![PromSample {
                labels: BTreeMap::new(),
                value: parse_value(&point.1),
                timestamp_ms: seconds_to_ms(point.0),
            }]),
            other => Err(TestkitError::Prometheus {
                context: format!("instant query {expr:?}"),
                detail: format!("expected a vector or scalar, got {}", other.kind()),
            }),
        }
    }

    /// Evaluates `expr` over `[start_ms, end_ms]` every `step`. The points are
    /// evaluations (with lookback), not raw samples: see [`Self::series_samples`].
    pub async fn query_range(
        &self,
        expr: &str,
        start_ms: i64,
        end_ms: i64,
        step: Duration,
    ) -> Result<Vec<PromSeries>, TestkitError> {
        let params = [
            ("query", expr.to_string()),
            ("start", prom_time(start_ms)),
            ("end", prom_time(end_ms)),
            ("step", format!("{}", step.as_secs_f64())),
        ];
        let data = self.api("/api/v1/query_range", &params).await?;
        into_series(data, &format!("range query {expr:?}"))
    }

    /// Every raw sample of every series matching `selector` (a metric name or
    /// a series selector such as `warnings{region="UK"}`) with a timestamp in
    /// `[start_ms, end_ms]`, series sorted by labels.
    pub async fn series_samples(
        &self,
        selector: &str,
        start_ms: i64,
        end_ms: i64,
    ) -> Result<Vec<PromSeries>, TestkitError> {
        // One extra millisecond so the start is included whether the range
        // selector is closed (Prometheus 2) or left-open (Prometheus 3).
        let range_ms = end_ms.saturating_sub(start_ms).saturating_add(1).max(1);
        let expr = format!("{selector}[{range_ms}ms]");
        let data = self
            .api(
                "/api/v1/query",
                &[("query", expr.clone()), ("time", prom_time(end_ms))],
            )
            .await?;
        let mut series = into_series(data, &format!("raw samples {expr:?}"))?;
        for s in &mut series {
            s.samples
                .retain(|&(ts, _)| (start_ms..=end_ms).contains(&ts));
        }
        series.retain(|s| !s.samples.is_empty());
        series.sort_by(|a, b| a.labels.cmp(&b.labels));
        Ok(series)
    }

    /// Requests to the remote-write endpoint so far, per HTTP status code,
    /// from Prometheus's own `prometheus_http_requests_total`. Empty before
    /// the first request.
    pub async fn write_requests_by_code(&self) -> Result<BTreeMap<String, f64>, TestkitError> {
        Ok(self
            .own_metric("prometheus_http_requests_total")
            .await?
            .into_iter()
            .filter(|(labels, _)| {
                labels.get("handler").map(String::as_str) == Some("/api/v1/write")
            })
            .filter_map(|(mut labels, value)| labels.remove("code").map(|code| (code, value)))
            .collect())
    }

    /// Every sample of `name` on Prometheus's own `/metrics` page, as
    /// `(labels without __name__, value)`.
    pub async fn own_metric(
        &self,
        name: &str,
    ) -> Result<Vec<(BTreeMap<String, String>, f64)>, TestkitError> {
        let http_error = |source| TestkitError::Http {
            context: "GET /metrics".to_string(),
            source,
        };
        let text = self
            .http
            .get(format!("{}/metrics", self.url))
            .send()
            .await
            .and_then(reqwest::Response::error_for_status)
            .map_err(http_error)?
            .text()
            .await
            .map_err(http_error)?;
        Ok(text
            .lines()
            .filter_map(parse_exposition_line)
            .filter(|(metric, _, _)| metric == name)
            .map(|(_, labels, value)| (labels, value))
            .collect())
    }

    /// Calls a query endpoint and unwraps the API envelope.
    async fn api(&self, path: &str, params: &[(&str, String)]) -> Result<QueryData, TestkitError> {
        let context = || format!("{path} {:?}", params.first().map(|p| &p.1));
        let response = self
            .http
            .post(format!("{}{path}", self.url))
            .form(params)
            .send()
            .await
            .map_err(|source| TestkitError::Http {
                context: context(),
                source,
            })?;
        // Errors come back as 4xx/5xx with the same JSON envelope.
        let status = response.status();
        let body = response.text().await.map_err(|source| TestkitError::Http {
            context: context(),
            source,
        })?;
        let envelope: ApiEnvelope =
            serde_json::from_str(&body).map_err(|e| TestkitError::Prometheus {
                context: context(),
                detail: format!("HTTP {status}, unreadable answer ({e}): {body}"),
            })?;
        match envelope {
            ApiEnvelope {
                status,
                data: Some(data),
                ..
            } if status == "success" => Ok(data),
            ApiEnvelope {
                error_type, error, ..
            } => Err(TestkitError::Prometheus {
                context: context(),
                detail: format!(
                    "HTTP {status}: {}: {}",
                    error_type.unwrap_or_default(),
                    error.unwrap_or_default()
                ),
            }),
        }
    }
}

/// The configuration file. JSON is valid YAML, and serde_json quotes every
/// target correctly whatever it contains.
fn config_file(options: &PrometheusOptions, listen: &str) -> String {
    let interval = format!("{}ms", options.scrape_interval.as_millis().max(1));
    let mut jobs = Vec::new();
    if !options.scrape_targets.is_empty() {
        jobs.push(serde_json::json!({
            "job_name": "fleet",
            "static_configs": [{ "targets": options.scrape_targets }],
        }));
    }
    if options.scrape_self {
        jobs.push(serde_json::json!({
            "job_name": "prometheus",
            "static_configs": [{ "targets": [listen] }],
        }));
    }
    let config = serde_json::json!({
        "global": {
            "scrape_interval": interval,
            // The timeout may not exceed the interval.
            "scrape_timeout": interval,
            "evaluation_interval": interval,
        },
        "scrape_configs": jobs,
    });
    serde_json::to_string_pretty(&config).unwrap_or_default()
}

/// A query time parameter: seconds with millisecond precision.
fn prom_time(ms: i64) -> String {
    if ms >= 0 {
        format!("{}.{:03}", ms / 1000, ms % 1000)
    } else {
        format!("{}", ms as f64 / 1000.0)
    }
}

fn seconds_to_ms(seconds: f64) -> i64 {
    (seconds * 1000.0).round() as i64
}

/// Prometheus sends values as strings so that `NaN` and `±Inf` survive JSON;
/// Rust's float parser reads those spellings too.
fn parse_value(text: &str) -> f64 {
    text.parse().unwrap_or(f64::NAN)
}

fn into_series(data: QueryData, context: &str) -> Result<Vec<PromSeries>, TestkitError> {
    match data {
        QueryData::Matrix(items) => Ok(items
            .into_iter()
            .map(|item| PromSeries {
                labels: item.metric,
                samples: item
                    .values
                    .iter()
                    .map(|(ts, v)| (seconds_to_ms(*ts), parse_value(v)))
                    .collect(),
            })
            .collect()),
        other => Err(TestkitError::Prometheus {
            context: context.to_string(),
            detail: format!("expected a matrix, got {}", other.kind()),
        }),
    }
}

#[derive(Debug, Deserialize)]
struct ApiEnvelope {
    status: String,
    data: Option<QueryData>,
    #[serde(rename = "errorType")]
    error_type: Option<String>,
    error: Option<String>,
}

/// `[seconds, "value"]`, as the API encodes a point.
type ApiPoint = (f64, String);

#[derive(Debug, Deserialize)]
#[serde(tag = "resultType", content = "result", rename_all = "lowercase")]
enum QueryData {
    Vector(Vec<VectorItem>),
    Matrix(Vec<MatrixItem>),
    Scalar(ApiPoint),
    String(serde::de::IgnoredAny),
}

impl QueryData {
    fn kind(&self) -> &'static str {
        match self {
            QueryData::Vector(_) => "vector",
            QueryData::Matrix(_) => "matrix",
            QueryData::Scalar(_) => "scalar",
            QueryData::String(_) => "string",
        }
    }
}

#[derive(Debug, Deserialize)]
struct VectorItem {
    metric: BTreeMap<String, String>,
    value: ApiPoint,
}

#[derive(Debug, Deserialize)]
struct MatrixItem {
    metric: BTreeMap<String, String>,
    values: Vec<ApiPoint>,
}

/// Parses one sample line of the Prometheus text exposition format:
/// `name{label="value",...} value [timestamp]`. Comments and blank lines give `None`.
pub(crate) fn parse_exposition_line(line: &str) -> Option<(String, BTreeMap<String, String>, f64)> {
    let line = line.trim();
    if line.is_empty() || line.starts_with('#') {
        return None;
    }
    let name_end = line.find(|c: char| c == '{' || c.is_whitespace())?;
    let name = &line[..name_end];
    let mut rest = &line[name_end..];
    let mut labels = BTreeMap::new();
    if let Some(after_brace) = rest.strip_prefix('{') {
        let mut chars = after_brace.char_indices();
        let mut label = String::new();
        loop {
            // Label name up to '=' (or the closing brace).
            let (i, c) = chars.next()?;
            match c {
                '}' => {
                    rest = &after_brace[i + 1..];
                    break;
                }
                ',' | ' ' => continue,
                '=' => {
                    if chars.next()?.1 != '"' {
                        return None;
                    }
                    let mut value = String::new();
                    loop {
                        match chars.next()?.1 {
                            '"' => break,
                            '\\' => match chars.next()?.1 {
                                'n' => value.push('\n'),
                                other => value.push(other),
                            },
                            other => value.push(other),
                        }
                    }
                    labels.insert(std::mem::take(&mut label), value);
                }
                other => label.push(other),
            }
        }
    }
    let value = rest.split_whitespace().next()?;
    Some((name.to_string(), labels, parse_value(value)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_exposition_lines() {
        let (name, labels, value) = parse_exposition_line(
            r#"prometheus_http_requests_total{code="204",handler="/api/v1/write"} 3"#,
        )
        .unwrap();
        assert_eq!(name, "prometheus_http_requests_total");
        assert_eq!(labels["code"], "204");
        assert_eq!(labels["handler"], "/api/v1/write");
        assert_eq!(value, 3.0);

        let (_, labels, value) =
            parse_exposition_line(r#"x{a="q\"uo,te}",b="back\\slash"} +Inf 1700000000000"#)
                .unwrap();
        assert_eq!(labels["a"], "q\"uo,te}");
        assert_eq!(labels["b"], "back\\slash");
        assert_eq!(value, f64::INFINITY);

        let (name, labels, value) = parse_exposition_line("go_goroutines 42").unwrap();
        assert_eq!(
            (name.as_str(), labels.len(), value),
            ("go_goroutines", 0, 42.0)
        );
        assert!(parse_exposition_line("# HELP x y").is_none());
        assert!(parse_exposition_line("").is_none());
    }

    #[test]
    fn query_times_keep_milliseconds() {
        assert_eq!(prom_time(1_764_000_005_007), "1764000005.007");
        assert_eq!(prom_time(0), "0.000");
        assert_eq!(seconds_to_ms(1_764_000_005.007), 1_764_000_005_007);
        assert_eq!(prom_time(-1500), "-1.5");
    }

    #[test]
    fn config_quotes_targets_and_sets_the_timeout() {
        let options = PrometheusOptions {
            scrape_interval: Duration::from_millis(500),
            ..PrometheusOptions::default()
        }
        .scrape("127.0.0.1:9000");
        let config: serde_json::Value =
            serde_json::from_str(&config_file(&options, "127.0.0.1:1")).unwrap();
        assert_eq!(config["global"]["scrape_timeout"], "500ms");
        assert_eq!(
            config["scrape_configs"][0]["static_configs"][0]["targets"][0],
            "127.0.0.1:9000"
        );
    }
}
