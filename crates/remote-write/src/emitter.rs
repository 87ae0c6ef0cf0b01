//! The HTTP half of the emitter: send a request, retry it, bisect it.
//!
//! [`Emitter::deliver`] returns only when every sample of the request is
//! either accepted by the endpoint or dropped and counted, which is what makes
//! acknowledging the Kafka offsets behind it safe:
//! - 2xx: written.
//! - 5xx, 429, 408, no answer, timeout: sent again after a backoff
//!   (`Retry-After` honoured), without limit by default — the pipeline waits
//!   and Kafka keeps the data — or, with `on_retry_exhausted = "drop"`, until
//!   `max_retries` retries, then dropped as `retry_exhausted`.
//! - 400: some samples are bad and Prometheus wrote none; bisected (see
//!   [`crate::bisect`]) so only the bad ones are dropped, by reason.
//! - other 4xx (401, 403, 404, 413…): dropped as `rejected` and logged with
//!   the endpoint's answer; sending it again cannot help, and must not spin.
//!   401, 403 and 404 are configuration errors: readiness fails and every
//!   shard pauses `max_backoff_ms` before its next request (see [`crate::health`]).

use std::fmt;
use std::future::Future;
use std::path::PathBuf;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use bytes::Bytes;
use fleet_core::Secret;
use rand::rngs::SmallRng;
use rand::{Rng, SeedableRng};
use reqwest::header::{CONTENT_ENCODING, CONTENT_TYPE, RETRY_AFTER};
use reqwest::{Response, StatusCode, Url};
use tokio::time::Instant;

use crate::backoff::{parse_retry_after, Backoff};
use crate::bisect::{Bisection, Delivery};
use crate::config::{OnRetryExhausted, RemoteWriteConfig};
use crate::encode::RemoteWriteBatch;
use crate::error::{truncate_answer, Retry, ANSWER_LIMIT};
use crate::health::EndpointHealth;
use crate::metrics::{DropReason, RemoteWriteMetrics};
use crate::RemoteWriteError;

/// The protocol version header of Remote-Write 1.0.
pub const REMOTE_WRITE_VERSION: &str = "0.1.0";

/// The `User-Agent` of every request.
pub const USER_AGENT: &str = concat!("fleet-preprocessor/", env!("CARGO_PKG_VERSION"));

/// What [`RequestSigner::prepare`] returns.
pub type SignFuture<'a> = Pin<Box<dyn Future<Output = Result<(), RemoteWriteError>> + Send + 'a>>;

/// A hook that signs each request just before it is sent, after every header
/// and the body are final — where SigV4 for Amazon Managed Service for
/// Prometheus plugs in ([`crate::sigv4::SigV4Signer`]: it hashes the body and
/// signs the headers).
///
/// Two steps, so that signing itself stays a synchronous function of the
/// request: [`prepare`](Self::prepare) does whatever may wait (fetching or
/// refreshing credentials), [`sign`](Self::sign) only computes.
pub trait RequestSigner: Send + Sync + fmt::Debug {
    /// Gets ready to sign the next request. An error is retried with backoff,
    /// as credentials being refreshed come back. By default nothing to do.
    fn prepare(&self) -> SignFuture<'_> {
        Box::pin(std::future::ready(Ok(())))
    }

    /// Adds the signature headers to `request`. An error is retried with
    /// backoff, like one of [`prepare`](Self::prepare).
    fn sign(&self, request: &mut reqwest::Request) -> Result<(), RemoteWriteError>;
}

/// When to stop retrying.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RetryPolicy {
    /// Waits between tries.
    pub backoff: Backoff,
    /// Whether retries ever end.
    pub on_exhausted: OnRetryExhausted,
    /// Retries after the first try, with [`OnRetryExhausted::Drop`].
    pub max_retries: u32,
}

impl RetryPolicy {
    /// The policy of `cfg`.
    pub fn from_config(cfg: &RemoteWriteConfig) -> Self {
        RetryPolicy {
            backoff: cfg.backoff(),
            on_exhausted: cfg.on_retry_exhausted,
            max_retries: cfg.max_retries,
        }
    }

    /// Whether to give up once `retries` retries have failed.
    pub fn exhausted(&self, retries: u32) -> bool {
        self.on_exhausted == OnRetryExhausted::Drop && retries >= self.max_retries
    }
}

/// How requests authenticate.
#[derive(Clone, Debug)]
enum Auth {
    None,
    Basic { username: String, password: Secret },
    Bearer(BearerTokenFile),
}

/// A bearer token read from a file, read again whenever its mtime changes
/// (Kubernetes rotates projected tokens by replacing the file).
#[derive(Debug)]
struct BearerTokenFile {
    path: PathBuf,
    cached: Arc<Mutex<Option<(SystemTime, Secret)>>>,
}

// By hand: clones share the cached token (shards read one file).
impl Clone for BearerTokenFile {
    fn clone(&self) -> Self {
        BearerTokenFile {
            path: self.path.clone(),
            cached: Arc::clone(&self.cached),
        }
    }
}

impl BearerTokenFile {
    async fn token(&self) -> Result<Secret, RemoteWriteError> {
        let failed = |cause| RemoteWriteError::BearerToken {
            path: self.path.clone(),
            cause,
        };
        let modified = tokio::fs::metadata(&self.path)
            .await
            .map_err(failed)?
            .modified()
            .ok();
        if let (Some(modified), Ok(cached)) = (modified, self.cached.lock()) {
            if let Some((at, token)) = cached.as_ref() {
                if *at == modified {
                    return Ok(token.clone());
                }
            }
        }
        let token = Secret::from(
            tokio::fs::read_to_string(&self.path)
                .await
                .map_err(failed)?
                .trim(),
        );
        if let (Some(modified), Ok(mut cached)) = (modified, self.cached.lock()) {
            *cached = Some((modified, token.clone()));
        }
        Ok(token)
    }
}

/// Sends remote-write requests to one endpoint, one at a time. Each shard
/// has its own ([`fork`](Self::fork)); they share the connection pool, the
/// signer and the endpoint's health.
#[derive(Debug)]
pub struct Emitter {
    client: reqwest::Client,
    url: Url,
    auth: Auth,
    policy: RetryPolicy,
    metrics: RemoteWriteMetrics,
    signer: Option<Arc<dyn RequestSigner>>,
    health: Arc<EndpointHealth>,
    /// The shard this emitter sends for, as the health state knows it.
    shard: usize,
    /// Jitter for the backoff; not cryptographic, only decorrelating.
    rng: SmallRng,
}

impl Emitter {
    /// An emitter for `cfg`'s endpoint. Fails only on a configuration that
    /// [`RemoteWriteConfig::validate`] refuses.
    pub fn new(
        cfg: &RemoteWriteConfig,
        metrics: RemoteWriteMetrics,
    ) -> Result<Self, RemoteWriteError> {
        let url = cfg.endpoint().map_err(RemoteWriteError::Config)?;
        let headers = cfg.extra_headers().map_err(RemoteWriteError::Config)?;
        let mut client = reqwest::Client::builder()
            .timeout(cfg.timeout())
            .user_agent(USER_AGENT)
            .default_headers(headers);
        for root in cfg.tls_roots().map_err(RemoteWriteError::Config)? {
            client = client.add_root_certificate(root);
        }
        if cfg.tls_insecure_skip_verify {
            tracing::warn!(
                url = %fleet_core::secret::redact_url(url.as_str()),
                "remote_write.tls_insecure_skip_verify is on: the endpoint's certificate is not checked, so anyone in the path can read and alter the writes."
            );
            client = client.danger_accept_invalid_certs(true);
        }
        let client = client
            .build()
            .map_err(|e| RemoteWriteError::Config(format!("cannot build the HTTP client: {e}")))?;
        let auth = match (
            &cfg.basic_auth_username,
            &cfg.basic_auth_password,
            &cfg.bearer_token_file,
        ) {
            (Some(username), password, _) => Auth::Basic {
                username: username.clone(),
                password: password.clone().unwrap_or_default(),
            },
            (None, _, Some(path)) => Auth::Bearer(BearerTokenFile {
                path: path.clone(),
                cached: Arc::new(Mutex::new(None)),
            }),
            (None, _, None) => Auth::None,
        };
        let policy = RetryPolicy::from_config(cfg);
        // Reported nowhere until `with_readiness`: a lone emitter (tests, tools).
        let health = EndpointHealth::new(
            Arc::default(),
            Duration::from_millis(cfg.unready_after_ms),
            policy.backoff.max,
        );
        Ok(Emitter {
            client,
            url,
            auth,
            policy,
            metrics,
            signer: None,
            health: Arc::new(health),
            shard: 0,
            rng: SmallRng::seed_from_u64(jitter_seed(0)),
        })
    }

    /// Signs every request with `signer` (SigV4 for AMP).
    pub fn with_signer(mut self, signer: Arc<dyn RequestSigner>) -> Self {
        self.signer = Some(signer);
        self
    }

    /// Reports the endpoint's health, as the `remote_write` condition, on
    /// `readiness`; `cfg` gives the grace and the pause.
    pub fn with_readiness(
        mut self,
        cfg: &RemoteWriteConfig,
        readiness: Arc<fleet_core::telemetry::Readiness>,
    ) -> Self {
        self.health = Arc::new(EndpointHealth::new(
            readiness,
            Duration::from_millis(cfg.unready_after_ms),
            self.policy.backoff.max,
        ));
        self
    }

    /// The emitter of shard `shard`: same endpoint, client, signer and
    /// health, its own backoff jitter.
    pub fn fork(&self, shard: usize) -> Emitter {
        Emitter {
            client: self.client.clone(),
            url: self.url.clone(),
            auth: self.auth.clone(),
            policy: self.policy,
            metrics: self.metrics.clone(),
            signer: self.signer.clone(),
            health: Arc::clone(&self.health),
            shard,
            rng: SmallRng::seed_from_u64(jitter_seed(shard)),
        }
    }

    /// Writes `batch` as one request; on a 400 bisects it until the refused
    /// samples are isolated. Returns once every sample is written or dropped
    /// and counted; logs the drops once per reason.
    pub async fn deliver(&mut self, batch: RemoteWriteBatch) -> Delivery {
        let mut bisection = Bisection::new(batch);
        while let Some(part) = bisection.next_part() {
            let Err(error) = self.send_with_retry(part).await else {
                bisection.accepted();
                continue;
            };
            match (error.retry(), error.bad_samples()) {
                (Retry::No, Some(reason)) => bisection.refused(reason, &answer_of(&error)),
                (Retry::No, None) => bisection.give_up(DropReason::Rejected, &answer_of(&error)),
                (Retry::WithBackoff, _) => {
                    bisection.give_up(DropReason::RetryExhausted, &error.to_string())
                }
            }
        }
        let delivery = bisection.finish();
        for (reason, dropped) in &delivery.dropped {
            self.metrics
                .samples_dropped(*reason, dropped.samples, &dropped.detail);
        }
        delivery
    }

    /// Sends `batch` as one request, retrying retryable failures as the
    /// policy says. `Err` is a refusal ([`Retry::No`]) or the last failure
    /// once retries are exhausted ([`Retry::WithBackoff`]).
    pub async fn send_with_retry(
        &mut self,
        batch: &RemoteWriteBatch,
    ) -> Result<(), RemoteWriteError> {
        let body = Bytes::from(batch.compressed_body()?);
        let mut retries = 0u32;
        loop {
            if let Some(pause) = self.health.pause_remaining() {
                // After a 401/403/404: no busy loop against a misconfigured endpoint.
                tokio::time::sleep(pause).await;
            }
            let started = Instant::now();
            let result = self.send_once(body.clone()).await;
            let elapsed = started.elapsed();
            let error = match result {
                Ok(()) => {
                    self.health.accepted(self.shard);
                    self.metrics
                        .request_accepted(batch.len(), body.len(), elapsed);
                    return Ok(());
                }
                Err(error) => error,
            };
            self.health.failed(self.shard, &error);
            self.metrics.request_failed(&error, batch.len(), elapsed);
            if error.retry() == Retry::No || self.policy.exhausted(retries) {
                return Err(error);
            }
            retries = retries.saturating_add(1);
            let delay = self.policy.backoff.delay_after(
                retries,
                self.rng.random::<f64>(),
                error.retry_after(),
            );
            self.metrics.retry_scheduled(&error, retries, delay);
            tokio::time::sleep(delay).await;
        }
    }

    /// The request carrying `body` as it is sent, authenticated but not yet
    /// signed: what a [`RequestSigner`] is given. (The client adds its default
    /// headers — `User-Agent` and the configured extra headers — when it sends.)
    pub async fn build_request(&self, body: Bytes) -> Result<reqwest::Request, RemoteWriteError> {
        let mut builder = self
            .client
            .post(self.url.clone())
            .header(CONTENT_ENCODING, "snappy")
            .header(CONTENT_TYPE, "application/x-protobuf")
            .header("X-Prometheus-Remote-Write-Version", REMOTE_WRITE_VERSION)
            .body(body);
        builder = match &self.auth {
            Auth::None => builder,
            Auth::Basic { username, password } => {
                builder.basic_auth(username, Some(password.expose()))
            }
            Auth::Bearer(file) => builder.bearer_auth(file.token().await?.expose()),
        };
        builder
            .build()
            .map_err(|e| RemoteWriteError::Config(format!("cannot build the request: {e}")))
    }

    /// One HTTP request; `Ok` on 2xx.
    async fn send_once(&self, body: Bytes) -> Result<(), RemoteWriteError> {
        if let Some(signer) = &self.signer {
            signer.prepare().await?;
        }
        let mut request = self.build_request(body).await?;
        if let Some(signer) = &self.signer {
            signer.sign(&mut request)?;
        }
        let response = self
            .client
            .execute(request)
            .await
            .map_err(RemoteWriteError::Network)?;
        let status = response.status();
        if status.is_success() {
            // Read the (normally empty) body so the connection goes back to
            // the pool; the status already says the samples are written.
            let _ = response.bytes().await;
            return Ok(());
        }
        let retry_after = if matches!(
            status,
            StatusCode::TOO_MANY_REQUESTS | StatusCode::SERVICE_UNAVAILABLE
        ) {
            response
                .headers()
                .get(RETRY_AFTER)
                .and_then(|v| v.to_str().ok())
                .and_then(|v| parse_retry_after(v, SystemTime::now()))
        } else {
            None
        };
        let answer = read_answer(response).await;
        Err(RemoteWriteError::Status {
            status,
            answer,
            retry_after,
        })
    }
}

/// The start of an error answer; a body that breaks off keeps what arrived.
async fn read_answer(mut response: Response) -> String {
    let mut body = Vec::new();
    while body.len() <= ANSWER_LIMIT {
        match response.chunk().await {
            Ok(Some(chunk)) => body.extend_from_slice(&chunk),
            Ok(None) | Err(_) => break,
        }
    }
    truncate_answer(&body)
}

/// A seed for a shard's backoff jitter: shards (and instances) started
/// together must not retry in lockstep.
fn jitter_seed(shard: usize) -> u64 {
    let now = SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos() as u64);
    now ^ (shard as u64).wrapping_mul(0x9E37_79B9_7F4A_7C15)
}

/// What to log as the endpoint's answer.
pub(crate) fn answer_of(error: &RemoteWriteError) -> String {
    match error {
        RemoteWriteError::Status { status, answer, .. } => format!("{status}: {answer}"),
        other => other.to_string(),
    }
}
