//! The `[remote_write]` configuration section and its validation.
//!
//! Every field has a default, so an empty section writes to a local Prometheus.
//! [`RemoteWriteConfig::validate`] reports every problem at once under keys
//! `remote_write.<field>`; the emitter parses the URL and headers with the same
//! functions, so what validates is what runs.

use std::collections::BTreeMap;
use std::fmt;
use std::path::PathBuf;
use std::time::Duration;

use fleet_core::config::Problems;
use reqwest::header::{HeaderMap, HeaderName, HeaderValue};
use reqwest::Url;
use serde::Deserialize;

use crate::backoff::Backoff;
use crate::encode::{SeriesNaming, METRIC_NAME_LABEL, MODEL_LABEL, REGION_LABEL};

/// The section name, the prefix of every key in validation problems.
pub const SECTION: &str = "remote_write";

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
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Deserialize)]
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

/// Where and how to write the aggregates.
#[derive(Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RemoteWriteConfig {
    /// The remote-write endpoint, `http` or `https`.
    /// Default `http://localhost:9090/api/v1/write` (a local Prometheus).
    pub url: String,
    /// Time for one HTTP request, connection to answer, in milliseconds. Default 10000.
    pub timeout_ms: u64,
    /// Most samples in one request; larger batches are split. Default 2000
    /// (Prometheus's own `max_samples_per_send`).
    pub max_samples_per_request: usize,
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
    /// Labels added to every series (not `model`, `region` or `__*`). Default none.
    pub constant_labels: BTreeMap<String, String>,
    /// Extra HTTP headers sent with every request (for example a tenant id). Default none.
    pub headers: BTreeMap<String, String>,
    /// HTTP basic-auth user name; needs `basic_auth_password`. Default none.
    pub basic_auth_username: Option<String>,
    /// HTTP basic-auth password. Default none.
    pub basic_auth_password: Option<String>,
    /// A file holding a bearer token, re-read whenever it changes (token
    /// rotation). Default none.
    pub bearer_token_file: Option<PathBuf>,
}

impl Default for RemoteWriteConfig {
    fn default() -> Self {
        RemoteWriteConfig {
            url: "http://localhost:9090/api/v1/write".into(),
            timeout_ms: 10_000,
            max_samples_per_request: 2000,
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
        }
    }
}

// By hand, so that passwords and header values (often tokens) never reach a log.
impl fmt::Debug for RemoteWriteConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let redacted: BTreeMap<&str, &str> = self
            .headers
            .keys()
            .map(|k| (k.as_str(), "<redacted>"))
            .collect();
        f.debug_struct("RemoteWriteConfig")
            .field("url", &self.url)
            .field("timeout_ms", &self.timeout_ms)
            .field("max_samples_per_request", &self.max_samples_per_request)
            .field("min_backoff_ms", &self.min_backoff_ms)
            .field("max_backoff_ms", &self.max_backoff_ms)
            .field("on_retry_exhausted", &self.on_retry_exhausted)
            .field("max_retries", &self.max_retries)
            .field("metric_prefix", &self.metric_prefix)
            .field("constant_labels", &self.constant_labels)
            .field("headers", &redacted)
            .field("basic_auth_username", &self.basic_auth_username)
            .field(
                "basic_auth_password",
                &self.basic_auth_password.as_ref().map(|_| "<redacted>"),
            )
            .field("bearer_token_file", &self.bearer_token_file)
            .finish()
    }
}

impl RemoteWriteConfig {
    /// Records every problem under `remote_write.<field>`.
    pub fn validate(&self, problems: &mut Problems) {
        let key = |field: &str| format!("{SECTION}.{field}");
        if let Err(problem) = self.endpoint() {
            problems.add(&key("url"), problem);
        }
        problems.check(self.timeout_ms > 0, &key("timeout_ms"), "must be positive");
        problems.check(
            self.max_samples_per_request > 0,
            &key("max_samples_per_request"),
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
    }

    /// How series are named.
    pub fn series_naming(&self) -> SeriesNaming {
        SeriesNaming {
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
        let url = Url::parse(&self.url).map_err(|e| format!("{:?} is not a URL: {e}", self.url))?;
        if !matches!(url.scheme(), "http" | "https") {
            return Err(format!("{:?}: the scheme must be http or https", self.url));
        }
        if url.host_str().is_none_or(str::is_empty) {
            return Err(format!("{:?} has no host", self.url));
        }
        Ok(url)
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
            let value = HeaderValue::from_str(value)
                .map_err(|_| format!("the value of {name:?} is not a valid header value"))?;
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
    if matches!(name, METRIC_NAME_LABEL | MODEL_LABEL | REGION_LABEL) {
        return Err(format!("{name:?} is set by the service itself"));
    }
    if value.is_empty() {
        return Err("an empty value is the same as no label to Prometheus".into());
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

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
            bearer_token_file: Some("/run/token".into()),
            ..RemoteWriteConfig::default()
        };
        assert_eq!(problems(&both).len(), 1, "{:?}", problems(&both));
        let header = RemoteWriteConfig {
            bearer_token_file: Some("/run/token".into()),
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
