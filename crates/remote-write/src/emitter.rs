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

use std::fmt;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::SystemTime;

use bytes::Bytes;
use rand::rngs::SmallRng;
use rand::{Rng, SeedableRng};
use reqwest::header::{CONTENT_ENCODING, CONTENT_TYPE, RETRY_AFTER};
use reqwest::{Response, StatusCode, Url};
use tokio::time::Instant;

use crate::backoff::{parse_retry_after, Backoff};
use crate::bisect::{Bisection, Delivery};
use crate::config::{OnRetryExhausted, RemoteWriteConfig};
use crate::encode::{compress, RemoteWriteBatch};
use crate::error::{truncate_answer, Retry, ANSWER_LIMIT};
use crate::metrics::{DropReason, RemoteWriteMetrics};
use crate::RemoteWriteError;

/// The protocol version header of Remote-Write 1.0.
pub const REMOTE_WRITE_VERSION: &str = "0.1.0";

/// The `User-Agent` of every request.
pub const USER_AGENT: &str = concat!("fleet-preprocessor/", env!("CARGO_PKG_VERSION"));

/// A hook that signs each request just before it is sent, after every header
/// and the body are final — where SigV4 for Amazon Managed Service for
/// Prometheus plugs in (it hashes the body and signs the headers). None is
/// implemented yet.
pub trait RequestSigner: Send + Sync + fmt::Debug {
    /// Adds the signature headers to `request`. An error is retried with
    /// backoff, as credentials being refreshed come back.
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
enum Auth {
    None,
    Basic { username: String, password: String },
    Bearer(BearerTokenFile),
}

impl fmt::Debug for Auth {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Auth::None => f.write_str("None"),
            Auth::Basic { username, .. } => write!(f, "Basic({username}, <redacted>)"),
            Auth::Bearer(file) => write!(f, "Bearer({})", file.path.display()),
        }
    }
}

/// A bearer token read from a file, read again whenever its mtime changes
/// (Kubernetes rotates projected tokens by replacing the file).
struct BearerTokenFile {
    path: PathBuf,
    cached: Mutex<Option<(SystemTime, String)>>,
}

impl BearerTokenFile {
    async fn token(&self) -> Result<String, RemoteWriteError> {
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
        let token = tokio::fs::read_to_string(&self.path)
            .await
            .map_err(failed)?
            .trim()
            .to_owned();
        if let (Some(modified), Ok(mut cached)) = (modified, self.cached.lock()) {
            *cached = Some((modified, token.clone()));
        }
        Ok(token)
    }
}

/// Sends remote-write requests to one endpoint, one at a time.
#[derive(Debug)]
pub struct Emitter {
    client: reqwest::Client,
    url: Url,
    auth: Auth,
    policy: RetryPolicy,
    metrics: RemoteWriteMetrics,
    signer: Option<Arc<dyn RequestSigner>>,
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
        let client = reqwest::Client::builder()
            .timeout(cfg.timeout())
            .user_agent(USER_AGENT)
            .default_headers(headers)
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
                cached: Mutex::new(None),
            }),
            (None, _, None) => Auth::None,
        };
        let seed = SystemTime::now()
            .duration_since(SystemTime::UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos() as u64);
        Ok(Emitter {
            client,
            url,
            auth,
            policy: RetryPolicy::from_config(cfg),
            metrics,
            signer: None,
            rng: SmallRng::seed_from_u64(seed),
        })
    }

    /// Signs every request with `signer` (SigV4 for AMP, once written).
    pub fn with_signer(mut self, signer: Arc<dyn RequestSigner>) -> Self {
        self.signer = Some(signer);
        self
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
        let body = Bytes::from(compress(&batch.to_write_request())?);
        let mut retries = 0u32;
        loop {
            let started = Instant::now();
            let result = self.send_once(body.clone()).await;
            let elapsed = started.elapsed();
            let error = match result {
                Ok(()) => {
                    self.metrics
                        .request_accepted(batch.len(), body.len(), elapsed);
                    return Ok(());
                }
                Err(error) => error,
            };
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

    /// One HTTP request; `Ok` on 2xx.
    async fn send_once(&self, body: Bytes) -> Result<(), RemoteWriteError> {
        let mut builder = self
            .client
            .post(self.url.clone())
            .header(CONTENT_ENCODING, "snappy")
            .header(CONTENT_TYPE, "application/x-protobuf")
            .header("X-Prometheus-Remote-Write-Version", REMOTE_WRITE_VERSION)
            .body(body);
        builder = match &self.auth {
            Auth::None => builder,
            Auth::Basic { username, password } => builder.basic_auth(username, Some(password)),
            Auth::Bearer(file) => builder.bearer_auth(file.token().await?),
        };
        let mut request = builder
            .build()
            .map_err(|e| RemoteWriteError::Config(format!("cannot build the request: {e}")))?;
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

/// What to log as the endpoint's answer.
fn answer_of(error: &RemoteWriteError) -> String {
    match error {
        RemoteWriteError::Status { status, answer, .. } => format!("{status}: {answer}"),
        other => other.to_string(),
    }
}
