//! The `[remote_write]` configuration section and its validation.
//!
//! Every field has a default, so an empty section writes to a local Prometheus.
//! [`RemoteWriteConfig::validate`] reports every problem at once under keys
//! `remote_write.<field>`; the emitter parses the URL and headers with the same
//! functions, so what validates is what runs.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use fleet_aws::Region;
use fleet_core::config::Problems;
use fleet_core::Secret;
use reqwest::header::{HeaderMap, HeaderName, HeaderValue};
use reqwest::Url;
use serde::{Deserialize, Serialize};

use crate::backoff::Backoff;
use crate::encode::{is_builtin_label, SeriesNaming};

/// The section name, the prefix of every key in validation problems.
pub const SECTION: &str = "remote_write";

/// The most shards: each is a task, a connection and a self-metric series,
/// and more requests in flight than this gain nothing against one endpoint.
pub const MAX_SHARDS: usize = 64;

/// Headers the protocol or the auth options set; a configured header may not replace them.
const RESERVED_HEADERS: [&str; 6] = [
    "content-encoding",
    "content-type",
    "content-length",
    "host",
    "user-agent",
    "x-prometheus-remote-write-version",
];

/// What to do with a request whose retryable failures do not end.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum OnRetryExhausted {
    /// Retry without limit: the pipeline stops behind it (backpressure) and
    /// Kafka keeps the data until the endpoint is back. Nothing is lost.
    #[default]
    Block,
    /// After `max_retries` retries drop the request's samples, counted as
    /// `retry_exhausted`, and go on: fresh data wins over complete data.
    Drop,
}

/// SigV4 request signing for Amazon Managed Service for Prometheus.
///
/// Credentials come from the standard AWS chain: environment variables, the
/// shared config and credentials files, web identity (EKS IRSA), the ECS task
/// role, then EC2 instance metadata.
#[derive(Clone, Debug, Default, PartialEq, Eq, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct SigV4Config {
    /// The AWS region, for example `eu-west-1`. Default: the region in the
    /// workspace URL (`https://aps-workspaces.<region>.amazonaws.com/...`).
    pub region: Option<String>,
    /// The service name signed for. Default `aps` (Amazon Managed Service for Prometheus).
    pub service: Option<String>,
    /// The profile of the shared AWS config files to take credentials from.
    /// Default: `AWS_PROFILE`, else `default`.
    pub profile: Option<String>,
}

/// The SigV4 service name of Amazon Managed Service for Prometheus.
pub const AMP_SERVICE: &str = "aps";

/// Where and how to write the aggregates. The secrets (the basic-auth
/// password, the header values, which often carry tokens) are [`Secret`]s.
#[derive(Clone, Debug, PartialEq, Eq, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct RemoteWriteConfig {
    /// The remote-write endpoint, `http` or `https`. Default empty: remote
    /// write is off (the service prints the aggregates instead).
    pub url: String,
    /// Time for one HTTP request, connection to answer, in milliseconds. Default 10000.
    pub timeout_ms: u64,
    /// Most samples in one request; larger batches are split. Default 2000
    /// (Prometheus's own `max_samples_per_send`).
    pub max_samples_per_request: usize,
    /// Longest a sample waits for its request to fill up before it is sent
    /// anyway, in milliseconds; 0 sends at once whatever is waiting. Default
    /// 100: a window's samples arrive together (per partition in the
    /// partitioned mode, within milliseconds of each other), so waiting
    /// longer saves few requests and delays every sample; measured at a live
    /// 100,000 events/s, 500 put windows 3–5 s after their end, 100 under 3 s.
    pub max_linger_ms: u64,
    /// Series are spread over this many shards by a hash of their full label
    /// set; each shard sends one request at a time, so this is the number of
    /// requests in flight. 1 to 64. Default 4.
    pub shards: usize,
    /// Window batches that may wait for each shard before the stage itself
    /// waits, holding the pipeline back. Default 4.
    pub shard_queue_capacity: usize,
    /// Readiness (`/readyz`) turns false once retryable failures (5xx, 429,
    /// no answer) have lasted this long without an accepted request, in
    /// milliseconds. Default 30000.
    pub unready_after_ms: u64,
    /// Wait before the first retry, in milliseconds. Default 30.
    pub min_backoff_ms: u64,
    /// Longest wait between retries, in milliseconds, unless the endpoint asks
    /// for more with `Retry-After`. Default 5000.
    pub max_backoff_ms: u64,
    /// `block` (default): retry retryable failures forever, holding the
    /// pipeline back; `drop`: give up after `max_retries` retries and count the samples.
    pub on_retry_exhausted: OnRetryExhausted,
    /// Retries after the first try before giving up; only with `on_retry_exhausted = "drop"`. Default 10.
    pub max_retries: u32,
    /// Prepended to every metric name, for example `fleet_`. Default empty.
    pub metric_prefix: String,
    /// Labels added to every series: not `__*`, a label the service sets
    /// (`model`, `kafka_partition`, `vehicle_id`, `le`), nor (checked with the
    /// plan, by the preprocessor's settings) an event label or dimension. Default none.
    pub constant_labels: BTreeMap<String, String>,
    /// Extra HTTP headers sent with every request (for example a tenant id). Default none.
    pub headers: BTreeMap<String, Secret>,
    /// HTTP basic-auth user name; needs `basic_auth_password`. Default none.
    pub basic_auth_username: Option<String>,
    /// HTTP basic-auth password. Default none.
    pub basic_auth_password: Option<Secret>,
    /// A file holding a bearer token, re-read whenever it changes (token
    /// rotation). Default none.
    pub bearer_token_file: Option<PathBuf>,
    /// Sign requests with AWS SigV4 (Amazon Managed Service for Prometheus).
    /// Default none: no signing.
    pub sigv4: Option<SigV4Config>,
    /// A PEM file of CA certificates trusted besides the built-in roots
    /// (a private CA in front of the endpoint). Default none.
    pub tls_ca_file: Option<PathBuf>,
    /// Accept any server certificate. For tests against self-signed endpoints
    /// only: it removes the protection TLS gives. Default false.
    pub tls_insecure_skip_verify: bool,
}

impl Default for RemoteWriteConfig {
    fn default() -> Self {
        RemoteWriteConfig {
            url: String::new(),
            timeout_ms: 10_000,
            max_samples_per_request: 2000,
            max_linger_ms: 100,
            shards: 4,
            shard_queue_capacity: 4,
            unready_after_ms: 30_000,
            min_backoff_ms: 30,
            max_backoff_ms: 5000,
            on_retry_exhausted: OnRetryExhausted::Block,
            max_retries: 10,
            metric_prefix: String::new(),
            constant_labels: BTreeMap::new(),
            headers: BTreeMap::new(),
            basic_auth_username: None,
            basic_auth_password: None,
            bearer_token_file: None,
            sigv4: None,
            tls_ca_file: None,
            tls_insecure_skip_verify: false,
        }
    }
}

impl RemoteWriteConfig {
    /// Records every problem under `remote_write.<field>`.
    pub fn validate(&self, problems: &mut Problems) {
        let key = |field: &str| format!("{SECTION}.{field}");
        if self.enabled() {
            if let Err(problem) = self.endpoint() {
                problems.add(&key("url"), problem);
            }
        }
        problems.check(self.timeout_ms > 0, &key("timeout_ms"), "must be positive");
        problems.check(
            self.max_samples_per_request > 0,
            &key("max_samples_per_request"),
            "must be positive",
        );
        problems.check(
            (1..=MAX_SHARDS).contains(&self.shards),
            &key("shards"),
            format!("must be from 1 to {MAX_SHARDS}"),
        );
        problems.check(
            self.shard_queue_capacity > 0,
            &key("shard_queue_capacity"),
            "must be positive",
        );
        problems.check(
            self.unready_after_ms > 0,
            &key("unready_after_ms"),
            "must be positive",
        );
        problems.check(
            self.min_backoff_ms > 0,
            &key("min_backoff_ms"),
            "must be positive",
        );
        problems.check(
            self.min_backoff_ms <= self.max_backoff_ms,
            &key("max_backoff_ms"),
            format!("must be at least min_backoff_ms ({})", self.min_backoff_ms),
        );
        problems.check(
            valid_metric_prefix(&self.metric_prefix),
            &key("metric_prefix"),
            format!(
                "{:?} is not a metric-name prefix: [a-zA-Z_:][a-zA-Z0-9_:]*, not starting with __",
                self.metric_prefix
            ),
        );
        for (name, value) in &self.constant_labels {
            let label_key = key(&format!("constant_labels.{name}"));
            if let Err(problem) = check_constant_label(name, value) {
                problems.add(&label_key, problem);
            }
        }
        if let Err(problem) = self.extra_headers() {
            problems.add(&key("headers"), problem);
        }
        problems.check(
            self.basic_auth_username.is_some() == self.basic_auth_password.is_some(),
            &key("basic_auth_password"),
            "basic_auth_username and basic_auth_password go together",
        );
        problems.check(
            !(self.basic_auth_username.is_some() && self.bearer_token_file.is_some()),
            &key("bearer_token_file"),
            "use either basic auth or a bearer token, not both",
        );
        if let Some(path) = &self.bearer_token_file {
            // Read again before each request (rotation); at start it must be there.
            match std::fs::read_to_string(path) {
                Ok(token) => problems.check(
                    !token.trim().is_empty(),
                    &key("bearer_token_file"),
                    format!("{} is empty", path.display()),
                ),
                Err(e) => problems.add(
                    &key("bearer_token_file"),
                    format!("cannot read {}: {e}", path.display()),
                ),
            }
        }
        let has_auth = self.basic_auth_username.is_some() || self.bearer_token_file.is_some();
        problems.check(
            !(has_auth
                && self
                    .headers
                    .keys()
                    .any(|h| h.eq_ignore_ascii_case("authorization"))),
            &key("headers"),
            "an Authorization header conflicts with basic_auth_* or bearer_token_file",
        );
        if let Some(sigv4) = &self.sigv4 {
            let has_authorization_header = self
                .headers
                .keys()
                .any(|h| h.eq_ignore_ascii_case("authorization"));
            problems.check(
                !(has_auth || has_authorization_header),
                &key("sigv4"),
                "SigV4 writes the Authorization header: drop basic_auth_*, bearer_token_file and any Authorization header",
            );
            if let Err(problem) = self.sigv4_region() {
                problems.add(&key("sigv4.region"), problem);
            }
            problems.check(
                sigv4
                    .service
                    .as_deref()
                    .is_none_or(|s| !s.trim().is_empty()),
                &key("sigv4.service"),
                "must not be empty",
            );
        }
        if let Err(problem) = self.tls_roots() {
            problems.add(&key("tls_ca_file"), problem);
        }
    }

    /// The region requests are signed for: the configured one, else the one in
    /// the AMP workspace URL. `Err` when SigV4 is off or neither says.
    pub fn sigv4_region(&self) -> Result<Region, String> {
        let configured = self.sigv4.as_ref().and_then(|s| s.region.as_deref());
        match configured {
            Some(region) => Region::parse(region).map_err(|e| e.to_string()),
            None => self
                .endpoint()
                .ok()
                .as_ref()
                .and_then(crate::sigv4::region_from_url)
                .ok_or_else(|| {
                    format!(
                        "{:?} is not an Amazon Managed Service for Prometheus workspace URL: set the region",
                        self.url
                    )
                }),
        }
    }

    /// The extra trusted CA certificates of `tls_ca_file`, read and parsed.
    pub fn tls_roots(&self) -> Result<Vec<reqwest::Certificate>, String> {
        let Some(path) = &self.tls_ca_file else {
            return Ok(Vec::new());
        };
        let pem =
            std::fs::read(path).map_err(|e| format!("cannot read {}: {e}", path.display()))?;
        let roots = reqwest::Certificate::from_pem_bundle(&pem)
            .map_err(|e| format!("{} is not a PEM certificate bundle: {e}", path.display()))?;
        if roots.is_empty() {
            return Err(format!("{} holds no PEM certificate", path.display()));
        }
        Ok(roots)
    }

    /// How the aggregates of `plan`'s metrics are named as series.
    pub fn series_naming(&self, plan: Arc<fleet_plan::MetricPlan>) -> SeriesNaming {
        SeriesNaming {
            plan,
            metric_prefix: self.metric_prefix.clone(),
            constant_labels: self.constant_labels.clone(),
        }
    }

    /// The per-request timeout.
    pub fn timeout(&self) -> Duration {
        Duration::from_millis(self.timeout_ms)
    }

    /// The retry backoff bounds.
    pub fn backoff(&self) -> Backoff {
        Backoff {
            min: Duration::from_millis(self.min_backoff_ms),
            max: Duration::from_millis(self.max_backoff_ms),
        }
    }

    /// The parsed endpoint URL.
    pub fn endpoint(&self) -> Result<Url, String> {
        if !self.enabled() {
            return Err("is empty: remote write is off".into());
        }
        let shown = fleet_core::secret::redact_url(&self.url);
        let url = Url::parse(&self.url).map_err(|e| format!("{shown:?} is not a URL: {e}"))?;
        if !matches!(url.scheme(), "http" | "https") {
            return Err(format!("{shown:?}: the scheme must be http or https"));
        }
        if url.host_str().is_none_or(str::is_empty) {
            return Err(format!("{shown:?} has no host"));
        }
        Ok(url)
    }

    /// Whether remote write is on: a URL is configured.
    pub fn enabled(&self) -> bool {
        !self.url.trim().is_empty()
    }

    /// The extra headers, parsed.
    pub fn extra_headers(&self) -> Result<HeaderMap, String> {
        let mut map = HeaderMap::new();
        for (name, value) in &self.headers {
            let header = HeaderName::from_bytes(name.as_bytes())
                .map_err(|_| format!("{name:?} is not a header name"))?;
            if RESERVED_HEADERS.contains(&header.as_str()) {
                return Err(format!("{name:?} is set by the remote-write protocol"));
            }
            let mut value = HeaderValue::from_str(value.expose())
                .map_err(|_| format!("the value of {name:?} is not a valid header value"))?;
            value.set_sensitive(true);
            map.insert(header, value);
        }
        Ok(map)
    }
}

/// Whether `prefix` can start a metric name (`[a-zA-Z_:][a-zA-Z0-9_:]*`);
/// names starting with `__` are reserved by Prometheus. Empty is fine.
fn valid_metric_prefix(prefix: &str) -> bool {
    let mut chars = prefix.chars();
    let first_ok = chars
        .next()
        .is_none_or(|c| c.is_ascii_alphabetic() || c == '_' || c == ':');
    first_ok
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_' || c == ':')
        && !prefix.starts_with("__")
}

fn check_constant_label(name: &str, value: &str) -> Result<(), String> {
    check_label_name(name)?;
    if value.is_empty() {
        return Err("an empty value is the same as no label to Prometheus".into());
    }
    Ok(())
}

/// Whether `name` may be a label this service adds to its series (a constant
/// label or a reference dimension): Prometheus's syntax, not reserved, not
/// one of the labels the service sets itself.
pub fn check_label_name(name: &str) -> Result<(), String> {
    let mut chars = name.chars();
    let valid = chars
        .next()
        .is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_');
    if !valid {
        return Err(format!(
            "{name:?} is not a label name: [a-zA-Z_][a-zA-Z0-9_]*"
        ));
    }
    if name.starts_with("__") {
        return Err("label names starting with __ are reserved by Prometheus".into());
    }
    if is_builtin_label(name) {
        return Err(format!("{name:?} is set by the service itself"));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A readable token file, alive for the test process.
    fn token_file() -> PathBuf {
        static FILE: std::sync::OnceLock<tempfile::NamedTempFile> = std::sync::OnceLock::new();
        FILE.get_or_init(|| {
            let file = tempfile::NamedTempFile::new().unwrap();
            std::fs::write(file.path(), "token\n").unwrap();
            file
        })
        .path()
        .to_path_buf()
    }

    #[test]
    fn the_bearer_token_file_must_be_readable_and_not_empty() {
        let with = |path: PathBuf| RemoteWriteConfig {
            url: "http://prom:9090/api/v1/write".into(),
            bearer_token_file: Some(path),
            ..RemoteWriteConfig::default()
        };
        assert!(problems(&with(token_file())).is_empty());
        let missing = problems(&with("/nonexistent/token".into()));
        assert!(
            missing[0].starts_with("remote_write.bearer_token_file: cannot read"),
            "{missing:?}"
        );
        let empty = tempfile::NamedTempFile::new().unwrap();
        let empty = problems(&with(empty.path().to_path_buf()));
        assert!(empty[0].ends_with("is empty"), "{empty:?}");
    }

    fn problems(cfg: &RemoteWriteConfig) -> Vec<String> {
        let mut p = Problems::default();
        cfg.validate(&mut p);
        match p.finish(()) {
            Ok(()) => vec![],
            Err(e) => e.problems.iter().map(ToString::to_string).collect(),
        }
    }

    #[test]
    fn defaults_are_valid() {
        assert_eq!(
            problems(&RemoteWriteConfig::default()),
            Vec::<String>::new()
        );
    }

    #[test]
    fn an_empty_section_gives_the_defaults_and_unknown_keys_are_refused() {
        let cfg: RemoteWriteConfig = serde_json::from_str("{}").unwrap();
        assert_eq!(cfg, RemoteWriteConfig::default());
        let cfg: RemoteWriteConfig =
            serde_json::from_str(r#"{"on_retry_exhausted":"drop","max_retries":3}"#).unwrap();
        assert_eq!(cfg.on_retry_exhausted, OnRetryExhausted::Drop);
        assert!(serde_json::from_str::<RemoteWriteConfig>(r#"{"timeout":5}"#).is_err());
    }

    #[test]
    fn reports_every_problem() {
        let cfg = RemoteWriteConfig {
            url: "ftp://example.com/write".into(),
            timeout_ms: 0,
            max_samples_per_request: 0,
            min_backoff_ms: 100,
            max_backoff_ms: 50,
            metric_prefix: "9fleet".into(),
            constant_labels: BTreeMap::from([
                ("model".into(), "x".into()),
                ("__meta".into(), "x".into()),
                ("bad-name".into(), "x".into()),
                ("empty".into(), String::new()),
                ("env".into(), "prod".into()),
            ]),
            headers: BTreeMap::from([("Content-Type".into(), "text/plain".into())]),
            basic_auth_username: Some("u".into()),
            ..RemoteWriteConfig::default()
        };
        let p = problems(&cfg);
        let keys: Vec<&str> = p.iter().map(|p| p.split(':').next().unwrap()).collect();
        assert_eq!(
            keys,
            [
                "remote_write.url",
                "remote_write.timeout_ms",
                "remote_write.max_samples_per_request",
                "remote_write.max_backoff_ms",
                "remote_write.metric_prefix",
                "remote_write.constant_labels.__meta",
                "remote_write.constant_labels.bad-name",
                "remote_write.constant_labels.empty",
                "remote_write.constant_labels.model",
                "remote_write.headers",
                "remote_write.basic_auth_password",
            ],
            "{p:#?}"
        );
    }

    #[test]
    fn checks_urls() {
        let url = |u: &str| {
            RemoteWriteConfig {
                url: u.into(),
                ..RemoteWriteConfig::default()
            }
            .endpoint()
        };
        assert!(url(
            "https://aps-workspaces.eu-west-1.amazonaws.com/workspaces/ws-1/api/v1/remote_write"
        )
        .is_ok());
        assert!(url("http://127.0.0.1:9090/api/v1/write").is_ok());
        assert!(url("localhost:9090").is_err());
        assert!(url("not a url").is_err());
        assert!(url("file:///tmp/x").is_err());
    }

    #[test]
    fn checks_prefixes() {
        for ok in ["", "fleet_", "fleet:", "_x", "a1"] {
            assert!(valid_metric_prefix(ok), "{ok}");
        }
        for bad in ["1a", "a-b", "__x", "é", "a b"] {
            assert!(!valid_metric_prefix(bad), "{bad}");
        }
    }

    #[test]
    fn auth_options_do_not_conflict() {
        let both = RemoteWriteConfig {
            basic_auth_username: Some("u".into()),
            basic_auth_password: Some("p".into()),
            bearer_token_file: Some(token_file()),
            ..RemoteWriteConfig::default()
        };
        assert_eq!(problems(&both).len(), 1, "{:?}", problems(&both));
        let header = RemoteWriteConfig {
            bearer_token_file: Some(token_file()),
            headers: BTreeMap::from([("Authorization".into(), "Bearer x".into())]),
            ..RemoteWriteConfig::default()
        };
        assert_eq!(problems(&header).len(), 1);
        let tenant = RemoteWriteConfig {
            headers: BTreeMap::from([("X-Scope-OrgID".into(), "fleet".into())]),
            ..RemoteWriteConfig::default()
        };
        assert!(problems(&tenant).is_empty());
        assert_eq!(tenant.extra_headers().unwrap()["x-scope-orgid"], "fleet");
    }

    #[test]
    fn checks_sharding_and_readiness_bounds() {
        for (shards, ok) in [(0, false), (1, true), (4, true), (64, true), (65, false)] {
            let cfg = RemoteWriteConfig {
                shards,
                ..RemoteWriteConfig::default()
            };
            assert_eq!(problems(&cfg).is_empty(), ok, "{shards}");
        }
        let cfg = RemoteWriteConfig {
            shard_queue_capacity: 0,
            unready_after_ms: 0,
            max_linger_ms: 0,
            ..RemoteWriteConfig::default()
        };
        let p = problems(&cfg);
        assert_eq!(p.len(), 2, "{p:?}");
        assert!(p[0].starts_with("remote_write.shard_queue_capacity"));
        assert!(p[1].starts_with("remote_write.unready_after_ms"));
    }

    #[test]
    fn sigv4_takes_the_region_from_the_workspace_url_or_the_configuration() {
        let amp =
            "https://aps-workspaces.eu-west-1.amazonaws.com/workspaces/ws-1/api/v1/remote_write";
        let sigv4 = |region: Option<&str>, url: &str| RemoteWriteConfig {
            url: url.into(),
            sigv4: Some(SigV4Config {
                region: region.map(Into::into),
                ..SigV4Config::default()
            }),
            ..RemoteWriteConfig::default()
        };
        assert_eq!(sigv4(None, amp).sigv4_region().unwrap(), "eu-west-1");
        assert!(problems(&sigv4(None, amp)).is_empty());
        assert_eq!(
            sigv4(Some("us-east-2"), amp).sigv4_region().unwrap(),
            "us-east-2"
        );
        let local = sigv4(None, "http://localhost:9090/api/v1/write");
        assert_eq!(problems(&local).len(), 1);
        assert!(problems(&local)[0].starts_with("remote_write.sigv4.region"));
        assert!(problems(&sigv4(
            Some("us-east-2"),
            "http://localhost:9090/api/v1/write"
        ))
        .is_empty());
        assert_eq!(problems(&sigv4(Some("Ireland"), amp)).len(), 1);
        assert!(
            RemoteWriteConfig::default().sigv4_region().is_err(),
            "SigV4 off"
        );

        let conflicting = RemoteWriteConfig {
            bearer_token_file: Some(token_file()),
            ..sigv4(None, amp)
        };
        assert!(problems(&conflicting)[0].starts_with("remote_write.sigv4"));
        let empty_service = RemoteWriteConfig {
            sigv4: Some(SigV4Config {
                service: Some(" ".into()),
                ..SigV4Config::default()
            }),
            ..sigv4(None, amp)
        };
        assert!(problems(&empty_service)[0].starts_with("remote_write.sigv4.service"));
        let cfg: RemoteWriteConfig = serde_json::from_str(
            r#"{"url":"https://x.example/w","sigv4":{"region":"eu-west-1","profile":"fleet"}}"#,
        )
        .unwrap();
        assert_eq!(cfg.sigv4.unwrap().profile.as_deref(), Some("fleet"));
        assert!(
            serde_json::from_str::<RemoteWriteConfig>(r#"{"sigv4":{"role_arn":"x"}}"#).is_err()
        );
    }

    #[test]
    fn sigv4_refuses_an_availability_zone_as_kafka_does() {
        let cfg = RemoteWriteConfig {
            sigv4: Some(SigV4Config {
                region: Some("eu-west-1a".into()),
                ..SigV4Config::default()
            }),
            ..RemoteWriteConfig::default()
        };
        let p = problems(&cfg);
        assert_eq!(p.len(), 1, "{p:?}");
        assert!(p[0].starts_with("remote_write.sigv4.region"), "{p:?}");
        assert!(p[0].contains("availability zone"), "{p:?}");
    }

    #[test]
    fn reads_the_ca_bundle() {
        let dir = tempfile::tempdir().unwrap();
        let with = |path: &std::path::Path| RemoteWriteConfig {
            tls_ca_file: Some(path.to_owned()),
            ..RemoteWriteConfig::default()
        };
        assert!(problems(&with(&dir.path().join("missing.pem")))[0]
            .starts_with("remote_write.tls_ca_file"));
        let garbage = dir.path().join("garbage.pem");
        std::fs::write(&garbage, "not a certificate").unwrap();
        assert_eq!(problems(&with(&garbage)).len(), 1);
        let ca = dir.path().join("ca.pem");
        std::fs::write(&ca, TEST_CA).unwrap();
        assert_eq!(with(&ca).tls_roots().unwrap().len(), 1);
    }

    /// A self-signed CA certificate (openssl req -x509 -newkey ec
    /// -pkeyopt ec_paramgen_curve:P-256 -subj /CN=fleet-test-ca -days 3650 -nodes).
    const TEST_CA: &str = include_str!("../tests/fixtures/test-ca.pem");

    #[test]
    fn debug_hides_secrets() {
        let cfg = RemoteWriteConfig {
            basic_auth_username: Some("user".into()),
            basic_auth_password: Some("hunter2".into()),
            headers: BTreeMap::from([("X-Token".into(), "s3cret".into())]),
            ..RemoteWriteConfig::default()
        };
        let text = format!("{cfg:?}");
        assert!(text.contains("user") && text.contains("X-Token"));
        assert!(!text.contains("hunter2") && !text.contains("s3cret"));
    }
}
