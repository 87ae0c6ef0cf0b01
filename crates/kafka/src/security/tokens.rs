//! MSK IAM tokens for librdkafka's SASL/OAUTHBEARER.
//!
//! librdkafka asks its client context for a token when a client starts and
//! again at 80 % of the token's lifetime, through
//! [`ClientContext::generate_oauth_token`], synchronously, on the thread that
//! polls the client: the producer's own polling thread, but for a consumer
//! the task that awaits its messages, a tokio worker. So the callback never
//! waits on the network from a runtime thread:
//!
//! - [`TokenProvider`] keeps credentials of the standard AWS chain
//!   (environment, shared files and `AWS_PROFILE`, web identity / IRSA, the
//!   ECS task role, EC2 instance metadata) in a [`fleet_aws::CredentialsCache`]
//!   that a background task refreshes five minutes before they expire
//!   (static keys: every 15 minutes): a [`fleet_aws::RefreshingCredentials`];
//! - the callback signs a token with the cached credentials (pure CPU). If
//!   there are none yet, it starts a refresh; off a runtime thread it waits
//!   for it (at most [`fleet_aws::FIRST_CREDENTIALS_WAIT`]), on one it
//!   returns the error and librdkafka asks again 10 s later.
//!   [`SecurityContext::warm_up`] fetches them before the clients start, so
//!   that normally never happens.
//!
//! A token expires [`crate::msk_iam::TOKEN_LIFETIME`] (15 min) after it was
//! signed, or when the credentials that signed it expire, whichever is first.
//!
//! librdkafka only asks while somebody polls the client. A consumer that is
//! otherwise never polled (the source's companion consumer of the
//! closed-windows group) is polled by [`SecurityContext::keep_polled`].

use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use aws_credential_types::provider::SharedCredentialsProvider;
use fleet_aws::{CredentialsCache, CredentialsError, RefreshingCredentials, Region, RegionError};
use rdkafka::client::OAuthToken;
use rdkafka::consumer::{BaseConsumer, ConsumerContext};
use rdkafka::ClientContext;
use tokio::runtime::Handle;

use crate::msk_iam::{self, MskIamError};
use crate::KafkaConfig;

/// What the credentials are for, in log lines.
const PURPOSE: &str = "MSK IAM";

/// How often a consumer that nobody else polls is polled, for its token refreshes.
const POLL_IDLE_CONSUMER_EVERY: Duration = Duration::from_secs(1);

/// Why no MSK IAM token could be made.
#[derive(Debug, thiserror::Error)]
pub enum SecurityError {
    /// The clients were created outside a tokio runtime.
    #[error("MSK IAM authentication needs a tokio runtime to fetch AWS credentials")]
    NoRuntime,
    /// No region to sign for.
    #[error(
        "kafka.security.aws_region is not set and the brokers' host names do not name a region"
    )]
    NoRegion,
    /// The configured region is not one.
    #[error("kafka.security.aws_region: {0}")]
    Region(#[from] RegionError),
    /// The AWS credential chain gave nothing (yet).
    #[error("no AWS credentials for MSK IAM authentication: {0}")]
    Credentials(CredentialsError),
    /// librdkafka asked for a token although MSK IAM is not configured.
    #[error("librdkafka asked for an OAUTHBEARER token, but kafka.security.sasl_mechanism is not \"aws_msk_iam\"")]
    NotConfigured,
    /// The token could not be signed.
    #[error(transparent)]
    Token(#[from] MskIamError),
}

impl From<CredentialsError> for SecurityError {
    fn from(error: CredentialsError) -> Self {
        match error {
            CredentialsError::NoRuntime => SecurityError::NoRuntime,
            other => SecurityError::Credentials(other),
        }
    }
}

/// Makes MSK IAM tokens for one region from cached AWS credentials.
#[derive(Debug)]
pub struct TokenProvider {
    region: Region,
    credentials: RefreshingCredentials,
}

impl TokenProvider {
    /// Tokens for a cluster in `region`, signed with credentials of the
    /// standard AWS chain. Must be called within a tokio runtime, which the
    /// credential refreshes run on: the background refresh starts at once.
    pub fn from_default_chain(region: Region) -> Result<Self, SecurityError> {
        let cache = CredentialsCache::with_default_chain(region.clone(), None, PURPOSE);
        Self::start(region, cache)
    }

    /// Tokens signed with credentials from `provider` (tests, or an
    /// embedding application with its own chain).
    pub fn with_provider(
        region: Region,
        provider: SharedCredentialsProvider,
    ) -> Result<Self, SecurityError> {
        Self::start(region, CredentialsCache::new(provider, PURPOSE))
    }

    fn start(region: Region, cache: CredentialsCache) -> Result<Self, SecurityError> {
        Ok(TokenProvider {
            region,
            credentials: RefreshingCredentials::start(cache)?,
        })
    }

    /// The region the tokens are signed for.
    pub fn region(&self) -> &Region {
        &self.region
    }

    /// Fetches credentials now unless fresh ones are cached.
    pub async fn warm_up(&self) -> Result<(), SecurityError> {
        Ok(self.credentials.warm_up().await?)
    }

    /// A token signed now.
    pub fn token(&self) -> Result<OAuthToken, SecurityError> {
        self.token_at(SystemTime::now())
    }

    /// A token signed at `now`: see the module documentation for when it waits.
    pub fn token_at(&self, now: SystemTime) -> Result<OAuthToken, SecurityError> {
        let credentials = self.credentials.get_at(now)?;
        let token = msk_iam::auth_token(&self.region, &credentials, now)?;
        let expiry = match credentials.expiry() {
            Some(expiry) => msk_iam::token_expiry(now).min(expiry),
            None => msk_iam::token_expiry(now),
        };
        let lifetime_ms = expiry
            .duration_since(UNIX_EPOCH)
            .map(|d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
            .unwrap_or(0);
        tracing::debug!(region = %self.region, lifetime_ms, "Made an MSK IAM token.");
        Ok(OAuthToken {
            token,
            // Informative only: MSK takes the identity from the signature.
            principal_name: credentials.access_key_id().to_string(),
            lifetime_ms,
        })
    }
}

/// The client context of the Kafka clients that have no other work for
/// one (the producer, the source's companion consumer), and the part of the
/// source's context that answers librdkafka's OAUTHBEARER token requests.
/// Without MSK IAM it holds nothing and librdkafka never asks.
#[derive(Clone, Debug, Default)]
pub struct SecurityContext {
    tokens: Option<Arc<TokenProvider>>,
}

impl SecurityContext {
    /// The context `cfg.security` asks for: with `aws_msk_iam`, a
    /// [`TokenProvider`] on the default AWS chain (call within a tokio runtime).
    pub fn for_config(cfg: &KafkaConfig) -> Result<Self, SecurityError> {
        if !cfg.security.uses_msk_iam() {
            return Ok(SecurityContext::default());
        }
        let region = cfg
            .security
            .msk_region(&cfg.brokers)?
            .ok_or(SecurityError::NoRegion)?;
        tracing::info!(%region, "Authenticating to Kafka with MSK IAM (SASL/OAUTHBEARER).");
        Ok(SecurityContext::with_tokens(
            TokenProvider::from_default_chain(region)?,
        ))
    }

    /// A context answering token requests with `tokens`.
    pub fn with_tokens(tokens: TokenProvider) -> Self {
        SecurityContext {
            tokens: Some(Arc::new(tokens)),
        }
    }

    /// The token provider, with MSK IAM.
    pub fn tokens(&self) -> Option<&TokenProvider> {
        self.tokens.as_deref()
    }

    /// Fetches the AWS credentials before the clients start (with MSK IAM).
    /// A failure is logged, not returned: the background refresh and
    /// librdkafka's own retries go on.
    pub async fn warm_up(&self) {
        if let Some(tokens) = &self.tokens {
            if let Err(error) = tokens.warm_up().await {
                tracing::warn!(%error, "No AWS credentials for MSK IAM yet; Kafka connections wait for them.");
            }
        }
    }

    /// The answer to librdkafka's token request.
    pub fn oauth_token(&self) -> Result<OAuthToken, Box<dyn std::error::Error>> {
        let tokens = self.tokens.as_ref().ok_or(SecurityError::NotConfigured)?;
        tokens.token().map_err(|error| {
            tracing::warn!(%error, "Cannot make an MSK IAM token for Kafka.");
            Box::new(error) as Box<dyn std::error::Error>
        })
    }

    /// Polls `consumer` in the background (every second, while it lives), for
    /// a consumer nobody else polls: it then answers its token refreshes
    /// (MSK IAM), and the events librdkafka queues for it (statistics every
    /// `statistics.interval.ms`, errors) do not pile up. Does nothing
    /// outside a tokio runtime.
    pub fn keep_polled<C>(&self, consumer: &Arc<BaseConsumer<C>>)
    where
        C: ConsumerContext + 'static,
    {
        let Ok(handle) = Handle::try_current() else {
            return;
        };
        let consumer = Arc::downgrade(consumer);
        handle.spawn(async move {
            let mut tick = tokio::time::interval(POLL_IDLE_CONSUMER_EVERY);
            loop {
                tick.tick().await;
                let Some(consumer) = consumer.upgrade() else {
                    return;
                };
                if let Some(Err(error)) = consumer.poll(Duration::ZERO) {
                    tracing::debug!(%error, "Idle consumer.");
                }
            }
        });
    }
}

impl ClientContext for SecurityContext {
    const ENABLE_REFRESH_OAUTH_TOKEN: bool = true;

    /// The clients with this context (the companion and reference-topic
    /// consumers, the producer) have no use for statistics; the default
    /// would log every one at INFO.
    fn stats(&self, _statistics: rdkafka::Statistics) {}

    fn generate_oauth_token(
        &self,
        _oauthbearer_config: Option<&str>,
    ) -> Result<OAuthToken, Box<dyn std::error::Error>> {
        self.oauth_token()
    }
}

impl ConsumerContext for SecurityContext {}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]

    use std::collections::BTreeMap;
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::sync::Mutex;

    use base64::Engine;
    use fleet_aws::testing::{
        eventually, on_another_thread, one_worker_runtime, ScriptedChain, CHAIN_FAILURE,
    };
    use rdkafka::config::ClientConfig;
    use rdkafka::consumer::Consumer;
    use rdkafka::error::KafkaError;

    use super::*;

    fn chain(
        valid_for: Option<Duration>,
        fail_from: usize,
        delay: Duration,
    ) -> (Arc<AtomicUsize>, SharedCredentialsProvider) {
        ScriptedChain {
            valid_for,
            fails: fail_from..usize::MAX,
            delay,
            session_token: Some("session".into()),
        }
        .provider()
    }

    fn eu_west_1() -> Region {
        Region::parse("eu-west-1").unwrap()
    }

    /// The query parameters of a token's presigned URL.
    fn params(token: &str) -> BTreeMap<String, String> {
        let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD
            .decode(token)
            .unwrap();
        let url = url::Url::parse(&String::from_utf8(bytes).unwrap()).unwrap();
        assert_eq!(url.host_str(), Some("kafka.eu-west-1.amazonaws.com"));
        url.query_pairs().into_owned().collect()
    }

    fn ms(t: SystemTime) -> i64 {
        t.duration_since(UNIX_EPOCH).unwrap().as_millis() as i64
    }

    #[tokio::test]
    async fn tokens_are_signed_with_the_cached_credentials_and_expire_with_them() {
        let (calls, provider) = chain(Some(Duration::from_secs(3600)), usize::MAX, Duration::ZERO);
        let tokens = TokenProvider::with_provider(eu_west_1(), provider).unwrap();
        tokens.warm_up().await.unwrap();
        let now = SystemTime::now();
        let token = tokens.token_at(now).unwrap();
        let p = params(&token.token);
        assert_eq!(p["Action"], "kafka-cluster:Connect");
        assert!(p["X-Amz-Credential"].starts_with("AK0/"), "{p:?}");
        assert_eq!(p["X-Amz-Security-Token"], "session");
        assert_eq!(token.principal_name, "AK0");
        assert_eq!(token.lifetime_ms, ms(msk_iam::token_expiry(now)));
        for _ in 0..3 {
            tokens.token().unwrap();
        }
        assert_eq!(calls.load(Ordering::SeqCst), 1, "one call to the chain");

        // Credentials expiring before the token would: the token expires with them.
        let (_, provider) = chain(Some(Duration::from_secs(400)), usize::MAX, Duration::ZERO);
        let short = TokenProvider::with_provider(eu_west_1(), provider).unwrap();
        short.warm_up().await.unwrap();
        let now = SystemTime::now();
        let token = short.token_at(now).unwrap();
        assert!(token.lifetime_ms < ms(msk_iam::token_expiry(now)));
        assert!(token.lifetime_ms > ms(now + Duration::from_secs(390)));
    }

    #[tokio::test]
    async fn credentials_are_fetched_again_before_they_expire() {
        // Valid for less than REFRESH_BEFORE_EXPIRY: due for a refresh at once.
        let (calls, provider) = chain(Some(Duration::from_secs(290)), usize::MAX, Duration::ZERO);
        let tokens = TokenProvider::with_provider(eu_west_1(), provider).unwrap();
        tokens.warm_up().await.unwrap();
        let before = calls.load(Ordering::SeqCst);
        // Still valid: the token is signed with them at once, and a refresh
        // starts in the background.
        let token = tokens.token().unwrap();
        assert!(token.principal_name.starts_with("AK"));
        let refreshed = eventually(|| calls.load(Ordering::SeqCst) > before).await;
        assert!(refreshed, "a background refresh");
    }

    #[tokio::test]
    async fn a_failing_chain_keeps_valid_credentials_and_reports_when_there_are_none() {
        // The first call succeeds with credentials about to expire; later calls fail.
        let (_, provider) = chain(Some(Duration::from_secs(120)), 1, Duration::ZERO);
        let tokens = TokenProvider::with_provider(eu_west_1(), provider).unwrap();
        tokens.warm_up().await.unwrap();
        // Needs a refresh (2 min left), which fails: the old ones still sign.
        tokens.warm_up().await.unwrap();
        assert_eq!(tokens.token().unwrap().principal_name, "AK0");

        let (_, failing) = chain(None, 0, Duration::ZERO);
        let none = TokenProvider::with_provider(eu_west_1(), failing).unwrap();
        let error = none.warm_up().await.unwrap_err();
        assert!(error.to_string().contains(CHAIN_FAILURE), "{error}");
        // On a runtime thread the request does not wait; it says why.
        let Err(error) = none.token() else {
            panic!("a token without credentials")
        };
        assert!(matches!(error, SecurityError::Credentials(_)), "{error}");
        assert!(error.to_string().contains(CHAIN_FAILURE), "{error}");
    }

    #[tokio::test]
    async fn a_runtime_thread_never_waits_for_credentials() {
        let (_, slow) = chain(None, usize::MAX, Duration::from_secs(3600));
        let tokens = TokenProvider::with_provider(eu_west_1(), slow).unwrap();
        let started = tokio::time::Instant::now();
        let Err(error) = tokens.token() else {
            panic!("a token without credentials")
        };
        assert!(started.elapsed() < Duration::from_secs(1));
        assert!(error.to_string().contains("not fetched yet"), "{error}");
    }

    #[test]
    fn another_thread_waits_for_the_first_credentials() {
        let runtime = one_worker_runtime().unwrap();
        let (calls, provider) = chain(None, usize::MAX, Duration::from_millis(300));
        let tokens = runtime
            .block_on(async { TokenProvider::with_provider(eu_west_1(), provider) })
            .unwrap();
        // As librdkafka's producer thread: no runtime here, so it may wait.
        let token = on_another_thread(move || tokens.token()).unwrap();
        assert_eq!(token.principal_name, "AK0");
        assert!(calls.load(Ordering::SeqCst) >= 1);
    }

    #[test]
    fn needs_a_runtime_and_a_region() {
        let (_, provider) = chain(None, usize::MAX, Duration::ZERO);
        assert!(matches!(
            TokenProvider::with_provider(eu_west_1(), provider),
            Err(SecurityError::NoRuntime)
        ));
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        let cfg = KafkaConfig {
            brokers: "localhost:9098".into(),
            security: crate::KafkaSecurity {
                protocol: crate::SecurityProtocol::SaslSsl,
                sasl_mechanism: Some(crate::SaslMechanism::AwsMskIam),
                ..crate::KafkaSecurity::default()
            },
            ..KafkaConfig::default()
        };
        runtime.block_on(async {
            assert!(matches!(
                SecurityContext::for_config(&cfg),
                Err(SecurityError::NoRegion)
            ));
            let msk = KafkaConfig {
                brokers: "b-1.c.x.c2.kafka.eu-west-1.amazonaws.com:9098".into(),
                ..cfg.clone()
            };
            let context = SecurityContext::for_config(&msk).unwrap();
            assert_eq!(context.tokens().unwrap().region(), "eu-west-1");
            // Without MSK IAM: no tokens, and a request is refused.
            let plain = SecurityContext::for_config(&KafkaConfig::default()).unwrap();
            assert!(plain.tokens().is_none());
            assert!(plain.oauth_token().is_err());
        });
    }

    /// Counts librdkafka's token requests and keeps its errors.
    struct Probe {
        inner: SecurityContext,
        requests: AtomicUsize,
        errors: Mutex<Vec<String>>,
    }

    impl ClientContext for Probe {
        const ENABLE_REFRESH_OAUTH_TOKEN: bool = true;

        fn generate_oauth_token(
            &self,
            config: Option<&str>,
        ) -> Result<OAuthToken, Box<dyn std::error::Error>> {
            self.requests.fetch_add(1, Ordering::SeqCst);
            self.inner.generate_oauth_token(config)
        }

        fn error(&self, error: KafkaError, reason: &str) {
            self.errors
                .lock()
                .unwrap()
                .push(format!("{error}: {reason}"));
        }
    }

    impl ConsumerContext for Probe {}

    /// librdkafka asks the context for a token as soon as the client starts,
    /// and takes it: no "Failed to acquire SASL OAUTHBEARER token" error.
    /// (No broker answers: the token is requested before any connection.)
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn librdkafka_asks_the_context_for_tokens_and_takes_them() {
        let (calls, provider) = chain(Some(Duration::from_secs(3600)), usize::MAX, Duration::ZERO);
        let context = SecurityContext::with_tokens(
            TokenProvider::with_provider(eu_west_1(), provider).unwrap(),
        );
        context.warm_up().await;
        let probe = Probe {
            inner: context.clone(),
            requests: AtomicUsize::new(0),
            errors: Mutex::new(Vec::new()),
        };
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port(); // closed again: nothing listens there
        let consumer: Arc<BaseConsumer<Probe>> = Arc::new(
            ClientConfig::new()
                .set("bootstrap.servers", format!("127.0.0.1:{port}"))
                .set("group.id", "fleet-security-test")
                .set("security.protocol", "SASL_PLAINTEXT")
                .set("sasl.mechanisms", "OAUTHBEARER")
                .create_with_context(probe)
                .unwrap(),
        );
        // As the source's companion consumer: polled only in the background.
        context.keep_polled(&consumer);
        let asked = eventually(|| consumer.context().requests.load(Ordering::SeqCst) > 0).await;
        assert!(asked, "librdkafka asked for a token");
        tokio::time::sleep(Duration::from_millis(500)).await;
        let errors = consumer.context().errors.lock().unwrap().clone();
        assert!(
            !errors.iter().any(|e| e.contains("OAUTHBEARER")),
            "{errors:?}"
        );
        assert_eq!(calls.load(Ordering::SeqCst), 1);
    }
}
