//! One cache of AWS credentials for everything that signs.
//!
//! The credential chain of aws-config 1.x does not cache (the SDK's clients
//! cache in front of it), and asking it may be network I/O (instance
//! metadata, STS). [`CredentialsCache`] keeps what the chain gave until
//! shortly before it expires ([`needs_refresh`]), makes one call to the
//! chain at a time however many callers need credentials at once, and keeps
//! credentials that are still valid when a refresh fails: a metadata
//! service hiccup must not stop the service. Two kinds of callers use it:
//!
//! - async code that may wait calls [`CredentialsCache::refresh`] before it
//!   signs (the remote-write emitter, before each request);
//! - a synchronous callback that must never wait on the network from a
//!   runtime thread (librdkafka's OAUTHBEARER token request) uses
//!   [`RefreshingCredentials`]: a background task keeps the cache fresh, and
//!   [`RefreshingCredentials::get_at`] only reads it, waiting for the first
//!   credentials only off the runtime's threads.

use std::sync::{Arc, Condvar, Mutex, MutexGuard, Weak};
use std::time::{Duration, SystemTime};

use aws_credential_types::provider::{ProvideCredentials, SharedCredentialsProvider};
use aws_credential_types::Credentials;
use tokio::runtime::Handle;
use tokio::time::Instant;

use crate::chain::default_chain;
use crate::Region;

/// Credentials are fetched again this long before they expire. EC2 instance
/// metadata and the ECS agent offer new credentials at least five minutes
/// before the old ones expire, so asking earlier than that gains nothing.
pub const REFRESH_BEFORE_EXPIRY: Duration = Duration::from_secs(5 * 60);

/// How long credentials without an expiry (static keys) are kept before the
/// chain is asked again: the SDK's own lazy cache uses the same 15 minutes.
pub const NO_EXPIRY_TTL: Duration = Duration::from_secs(15 * 60);

/// How often the background refresh checks whether the credentials need one.
pub const CHECK_EVERY: Duration = Duration::from_secs(30);

/// After a failed refresh, the background refresh tries again this soon.
pub const RETRY_AFTER_FAILURE: Duration = Duration::from_secs(5);

/// Longest [`RefreshingCredentials::get_at`] waits for the first credentials,
/// off the runtime's threads.
pub const FIRST_CREDENTIALS_WAIT: Duration = Duration::from_secs(10);

/// Why there are no credentials to sign with.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum CredentialsError {
    /// The AWS configuration came without a credential chain.
    #[error("the AWS configuration has no credential chain")]
    NoChain,
    /// The chain failed: the error and its causes, on one line.
    #[error("the AWS credential chain gave no credentials: {0}")]
    Chain(String),
    /// Nothing fetched yet, and no failure either (a refresh is under way).
    #[error("not fetched yet")]
    NotFetchedYet,
    /// The background refresh needs a tokio runtime, and there is none.
    #[error("refreshing AWS credentials needs a tokio runtime")]
    NoRuntime,
}

/// Whether credentials fetched at `fetched_at` should be fetched again at `now`.
pub fn needs_refresh(credentials: &Credentials, fetched_at: SystemTime, now: SystemTime) -> bool {
    match credentials.expiry() {
        Some(expiry) => now + REFRESH_BEFORE_EXPIRY >= expiry,
        None => now >= fetched_at + NO_EXPIRY_TTL,
    }
}

/// Whether `credentials` can still sign at `now`.
pub fn still_valid(credentials: &Credentials, now: SystemTime) -> bool {
    credentials.expiry().is_none_or(|expiry| now < expiry)
}

/// The default chain's settings, for a chain built on first use.
#[derive(Debug)]
struct ChainSettings {
    region: Region,
    profile: Option<String>,
}

#[derive(Debug, Default)]
struct State {
    /// The credentials in use and when they were fetched.
    current: Option<(Credentials, SystemTime)>,
    /// Why the last refresh failed, if it did.
    last_error: Option<CredentialsError>,
    /// Refreshes attempted, for [`CredentialsCache::wait_usable`].
    attempts: u64,
}

/// Credentials from one provider, kept until shortly before they expire.
#[derive(Debug)]
pub struct CredentialsCache {
    /// What the credentials are for, in log lines ("MSK IAM", "SigV4").
    purpose: &'static str,
    /// The default chain to build on first use, when no provider was given.
    chain: Option<ChainSettings>,
    provider: tokio::sync::OnceCell<SharedCredentialsProvider>,
    state: Mutex<State>,
    /// Signalled after every refresh attempt.
    attempted: Condvar,
    /// Held while fetching: one call to the chain at a time.
    refreshing: tokio::sync::Mutex<()>,
}

impl CredentialsCache {
    /// A cache in front of `provider`, empty until the first
    /// [`refresh`](Self::refresh). `purpose` names the credentials' use in log lines.
    pub fn new(provider: SharedCredentialsProvider, purpose: &'static str) -> Self {
        Self::with_source(
            None,
            tokio::sync::OnceCell::new_with(Some(provider)),
            purpose,
        )
    }

    /// A cache in front of the default chain (see [`default_chain`]) for
    /// `region` and `profile`, which is built by the first
    /// [`refresh`](Self::refresh): building it is async.
    pub fn with_default_chain(
        region: Region,
        profile: Option<String>,
        purpose: &'static str,
    ) -> Self {
        let chain = ChainSettings { region, profile };
        Self::with_source(Some(chain), tokio::sync::OnceCell::new(), purpose)
    }

    fn with_source(
        chain: Option<ChainSettings>,
        provider: tokio::sync::OnceCell<SharedCredentialsProvider>,
        purpose: &'static str,
    ) -> Self {
        CredentialsCache {
            purpose,
            chain,
            provider,
            state: Mutex::new(State::default()),
            attempted: Condvar::new(),
            refreshing: tokio::sync::Mutex::new(()),
        }
    }

    fn state(&self) -> MutexGuard<'_, State> {
        // A poisoned lock only means a panic elsewhere while it was held;
        // the state itself is always consistent.
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The credentials in use, if any were ever fetched, valid or not.
    pub fn current(&self) -> Option<Credentials> {
        self.state().current.as_ref().map(|(c, _)| c.clone())
    }

    /// The credentials in use, if they can still sign at `now`.
    pub fn usable(&self, now: SystemTime) -> Option<Credentials> {
        self.state()
            .current
            .as_ref()
            .map(|(c, _)| c.clone())
            .filter(|c| still_valid(c, now))
    }

    /// Whether there are credentials that need no refresh at `now`.
    pub fn is_fresh(&self, now: SystemTime) -> bool {
        self.state()
            .current
            .as_ref()
            .is_some_and(|(c, at)| !needs_refresh(c, *at, now))
    }

    /// Why the last refresh failed, unless one succeeded since.
    pub fn last_error(&self) -> Option<CredentialsError> {
        self.state().last_error.clone()
    }

    async fn provider(&self) -> Result<&SharedCredentialsProvider, CredentialsError> {
        self.provider
            .get_or_try_init(|| async {
                match &self.chain {
                    Some(chain) => default_chain(&chain.region, chain.profile.as_deref()).await,
                    None => Err(CredentialsError::NoChain),
                }
            })
            .await
    }

    /// Makes sure the credentials are not about to expire, asking the chain
    /// only if they are; callers waiting at the same time share one call.
    /// When the chain fails while the old credentials are still valid, they
    /// are kept (with a warning) and this succeeds.
    pub async fn refresh(&self) -> Result<(), CredentialsError> {
        if self.is_fresh(SystemTime::now()) {
            return Ok(());
        }
        let _one_at_a_time = self.refreshing.lock().await;
        let now = SystemTime::now();
        if self.is_fresh(now) {
            return Ok(()); // refreshed by another caller while this one waited
        }
        let fetched = match self.provider().await {
            Ok(provider) => provider
                .provide_credentials()
                .await
                .map_err(|e| CredentialsError::Chain(fleet_core::error_chain(&e))),
            Err(e) => Err(e),
        };
        let mut state = self.state();
        state.attempts += 1;
        let result = match fetched {
            Ok(credentials) => {
                tracing::debug!(expiry = ?credentials.expiry(), "Fetched AWS credentials for {}.", self.purpose);
                state.current = Some((credentials, now));
                state.last_error = None;
                Ok(())
            }
            Err(error) => {
                let first = state.last_error.is_none();
                state.last_error = Some(error.clone());
                let valid = state
                    .current
                    .as_ref()
                    .is_some_and(|(c, _)| still_valid(c, now));
                if valid {
                    if first {
                        tracing::warn!(%error, "Cannot refresh the AWS credentials for {}; using the current ones until they expire.", self.purpose);
                    }
                    Ok(())
                } else {
                    Err(error)
                }
            }
        };
        drop(state);
        self.attempted.notify_all();
        result
    }

    /// Waits, blocking the thread, until credentials are usable or a refresh
    /// attempt made after the call has failed, at most `timeout`.
    fn wait_usable(&self, timeout: Duration) -> Option<Credentials> {
        let deadline = Instant::now() + timeout;
        let mut state = self.state();
        let attempts = state.attempts;
        loop {
            let now = SystemTime::now();
            if let Some((c, _)) = state.current.as_ref().filter(|(c, _)| still_valid(c, now)) {
                return Some(c.clone());
            }
            let left = deadline.saturating_duration_since(Instant::now());
            if state.attempts > attempts || left.is_zero() {
                return None;
            }
            state = match self.attempted.wait_timeout(state, left) {
                Ok((state, _)) => state,
                Err(poisoned) => poisoned.into_inner().0,
            };
        }
    }
}

/// A [`CredentialsCache`] refreshed by a background task (every
/// [`CHECK_EVERY`], [`RETRY_AFTER_FAILURE`] after a failure) for as long as
/// a clone of this lives, and read synchronously with [`get_at`](Self::get_at).
#[derive(Clone, Debug)]
pub struct RefreshingCredentials {
    cache: Arc<CredentialsCache>,
    handle: Handle,
}

impl RefreshingCredentials {
    /// Starts refreshing `cache` on the current tokio runtime (which must
    /// exist) at once.
    pub fn start(cache: CredentialsCache) -> Result<Self, CredentialsError> {
        let handle = Handle::try_current().map_err(|_| CredentialsError::NoRuntime)?;
        let cache = Arc::new(cache);
        handle.spawn(keep_fresh(Arc::downgrade(&cache)));
        Ok(RefreshingCredentials { cache, handle })
    }

    /// The cache.
    pub fn cache(&self) -> &CredentialsCache {
        &self.cache
    }

    /// Fetches credentials now unless fresh ones are cached.
    pub async fn warm_up(&self) -> Result<(), CredentialsError> {
        self.cache.refresh().await
    }

    /// Credentials that can sign at `now`, for synchronous code. Cached
    /// ones are returned at once (starting a refresh if they are due for
    /// one). Without any, a refresh starts; on a thread of a tokio runtime
    /// this returns the last error (or [`CredentialsError::NotFetchedYet`])
    /// at once, never blocking the runtime; on any other thread it waits
    /// for that refresh, at most [`FIRST_CREDENTIALS_WAIT`].
    pub fn get_at(&self, now: SystemTime) -> Result<Credentials, CredentialsError> {
        if let Some(credentials) = self.cache.usable(now) {
            if !self.cache.is_fresh(now) {
                self.refresh_in_background();
            }
            return Ok(credentials);
        }
        self.refresh_in_background();
        let waited = if Handle::try_current().is_err() {
            self.cache.wait_usable(FIRST_CREDENTIALS_WAIT)
        } else {
            None
        };
        waited.ok_or_else(|| {
            self.cache
                .last_error()
                .unwrap_or(CredentialsError::NotFetchedYet)
        })
    }

    fn refresh_in_background(&self) {
        let cache = self.cache.clone();
        self.handle.spawn(async move {
            if let Err(error) = cache.refresh().await {
                tracing::debug!(%error, "Refreshing the AWS credentials for {} failed.", cache.purpose);
            }
        });
    }
}

/// The background refresh: runs while any [`RefreshingCredentials`] of the
/// cache lives.
async fn keep_fresh(cache: Weak<CredentialsCache>) {
    let mut failing = false;
    loop {
        let Some(strong) = cache.upgrade() else {
            return;
        };
        let next = match strong.refresh().await {
            Ok(()) => {
                failing = false;
                CHECK_EVERY
            }
            Err(error) => {
                if !failing {
                    tracing::warn!(%error, "Cannot fetch AWS credentials for {}; retrying.", strong.purpose);
                }
                failing = true;
                RETRY_AFTER_FAILURE
            }
        };
        drop(strong);
        tokio::time::sleep(next).await;
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]

    use std::ops::Range;
    use std::sync::atomic::{AtomicUsize, Ordering};

    use crate::testing::{
        eventually, on_another_thread, one_worker_runtime, ScriptedChain, CHAIN_FAILURE,
    };

    use super::*;

    const NEVER: Range<usize> = 0..0;
    const ALWAYS: Range<usize> = 0..usize::MAX;

    fn cache(
        valid_for: Option<Duration>,
        fails: Range<usize>,
        delay: Duration,
    ) -> (Arc<AtomicUsize>, CredentialsCache) {
        let (calls, provider) = ScriptedChain {
            valid_for,
            fails,
            delay,
            session_token: None,
        }
        .provider();
        (calls, CredentialsCache::new(provider, "tests"))
    }

    const HOUR: Option<Duration> = Some(Duration::from_secs(3600));

    #[test]
    fn refreshes_before_expiry_and_static_keys_after_a_while() {
        let t0 = SystemTime::UNIX_EPOCH + Duration::from_secs(1_764_000_000);
        let expiring = Credentials::new(
            "AK",
            "SK",
            Some("T".into()),
            Some(t0 + Duration::from_secs(3600)),
            "test",
        );
        assert!(!needs_refresh(&expiring, t0, t0));
        let at = |s| t0 + Duration::from_secs(s);
        assert!(!needs_refresh(&expiring, t0, at(3600 - 301)));
        assert!(needs_refresh(&expiring, t0, at(3600 - 300)));
        assert!(still_valid(&expiring, at(3599)));
        assert!(!still_valid(&expiring, at(3600)));
        let fixed = Credentials::new("AK", "SK", None, None, "test");
        assert!(!needs_refresh(&fixed, t0, at(899)));
        assert!(needs_refresh(&fixed, t0, t0 + NO_EXPIRY_TTL));
        assert!(still_valid(&fixed, at(1_000_000)));
    }

    #[tokio::test]
    async fn asks_the_chain_once_while_the_credentials_last() {
        let (calls, cache) = cache(HOUR, NEVER, Duration::ZERO);
        assert!(cache.current().is_none());
        assert!(!cache.is_fresh(SystemTime::now()));
        for _ in 0..5 {
            cache.refresh().await.unwrap();
        }
        assert_eq!(calls.load(Ordering::SeqCst), 1);
        assert_eq!(cache.current().unwrap().access_key_id(), "AK0");
        assert!(cache.is_fresh(SystemTime::now()));
    }

    #[tokio::test]
    async fn callers_at_the_same_moment_share_one_call() {
        let (calls, cache) = cache(HOUR, NEVER, Duration::from_millis(50));
        let cache = Arc::new(cache);
        let waiters: Vec<_> = (0..4)
            .map(|_| {
                let cache = cache.clone();
                tokio::spawn(async move { cache.refresh().await })
            })
            .collect();
        for waiter in waiters {
            waiter.await.unwrap().unwrap();
        }
        assert_eq!(calls.load(Ordering::SeqCst), 1);
    }

    #[tokio::test]
    async fn asks_again_when_they_are_about_to_expire() {
        let (calls, cache) = cache(Some(Duration::from_secs(60)), NEVER, Duration::ZERO);
        cache.refresh().await.unwrap();
        cache.refresh().await.unwrap();
        assert_eq!(calls.load(Ordering::SeqCst), 2);
        assert_eq!(cache.current().unwrap().access_key_id(), "AK1");
    }

    #[tokio::test]
    async fn keeps_valid_credentials_when_a_refresh_fails_and_fails_without_any() {
        let (_, cache) = cache(Some(Duration::from_secs(60)), 1..usize::MAX, Duration::ZERO);
        cache.refresh().await.unwrap();
        cache.refresh().await.unwrap(); // failed, but AK0 is valid for a minute
        assert_eq!(cache.current().unwrap().access_key_id(), "AK0");
        assert!(cache.last_error().is_some());

        let (_, empty) = self::cache(None, ALWAYS, Duration::ZERO);
        let error = empty.refresh().await.unwrap_err();
        assert!(matches!(error, CredentialsError::Chain(_)), "{error}");
        assert!(
            error.to_string().contains(CHAIN_FAILURE),
            "the cause, not only the chain's summary: {error}"
        );
        assert_eq!(empty.last_error(), Some(error));
        assert!(empty.current().is_none());
    }

    #[tokio::test]
    async fn a_success_clears_the_last_error() {
        let (_, cache) = cache(HOUR, 0..1, Duration::ZERO);
        cache.refresh().await.unwrap_err();
        assert!(cache.last_error().is_some());
        cache.refresh().await.unwrap();
        assert_eq!(cache.last_error(), None);
        assert_eq!(cache.current().unwrap().access_key_id(), "AK1");
    }

    #[tokio::test]
    async fn a_cache_without_a_provider_or_chain_says_so() {
        let cache = CredentialsCache::with_source(None, tokio::sync::OnceCell::new(), "tests");
        assert_eq!(cache.refresh().await, Err(CredentialsError::NoChain));
    }

    #[test]
    fn the_background_refresh_needs_a_runtime() {
        let (_, cache) = cache(None, NEVER, Duration::ZERO);
        assert_eq!(
            RefreshingCredentials::start(cache).unwrap_err(),
            CredentialsError::NoRuntime
        );
    }

    #[tokio::test]
    async fn the_background_refresh_fetches_at_once_and_before_expiry() {
        // Valid for less than REFRESH_BEFORE_EXPIRY: due for a refresh at once.
        let (calls, cache) = cache(Some(Duration::from_secs(290)), NEVER, Duration::ZERO);
        let credentials = RefreshingCredentials::start(cache).unwrap();
        assert!(eventually(|| calls.load(Ordering::SeqCst) >= 1).await);
        let before = calls.load(Ordering::SeqCst);
        // Still valid: returned at once, and a refresh starts in the background.
        let got = credentials.get_at(SystemTime::now()).unwrap();
        assert!(got.access_key_id().starts_with("AK"));
        assert!(eventually(|| calls.load(Ordering::SeqCst) > before).await);
    }

    #[tokio::test]
    async fn the_background_refresh_ends_with_the_last_handle() {
        let (_, cache) = cache(Some(Duration::from_secs(1)), NEVER, Duration::ZERO);
        let credentials = RefreshingCredentials::start(cache).unwrap();
        credentials.warm_up().await.unwrap();
        let weak = Arc::downgrade(&credentials.cache);
        drop(credentials);
        // The task holds the cache only while it refreshes.
        assert!(eventually(|| weak.upgrade().is_none()).await);
    }

    #[tokio::test]
    async fn a_runtime_thread_never_waits() {
        let (_, slow) = cache(None, NEVER, Duration::from_secs(3600));
        let credentials = RefreshingCredentials::start(slow).unwrap();
        let started = Instant::now();
        let error = credentials.get_at(SystemTime::now()).unwrap_err();
        assert!(started.elapsed() < Duration::from_secs(1));
        assert_eq!(error, CredentialsError::NotFetchedYet);

        // A failure is reported as such.
        let (_, failing) = cache(None, ALWAYS, Duration::ZERO);
        let credentials = RefreshingCredentials::start(failing).unwrap();
        assert!(credentials.warm_up().await.is_err());
        let error = credentials.get_at(SystemTime::now()).unwrap_err();
        assert!(error.to_string().contains(CHAIN_FAILURE), "{error}");
    }

    #[test]
    fn another_thread_waits_for_the_first_credentials() {
        let runtime = one_worker_runtime().unwrap();
        let (calls, slow) = cache(None, NEVER, Duration::from_millis(300));
        let credentials = runtime
            .block_on(async { RefreshingCredentials::start(slow) })
            .unwrap();
        // As librdkafka's own threads: no runtime here, so it may wait.
        let got = on_another_thread(move || credentials.get_at(SystemTime::now())).unwrap();
        assert_eq!(got.access_key_id(), "AK0");
        assert!(calls.load(Ordering::SeqCst) >= 1);
    }

    #[test]
    fn another_thread_stops_waiting_when_the_refresh_fails() {
        let runtime = one_worker_runtime().unwrap();
        let (_, failing) = cache(None, ALWAYS, Duration::from_millis(100));
        let credentials = runtime
            .block_on(async { RefreshingCredentials::start(failing) })
            .unwrap();
        let started = Instant::now();
        let error = on_another_thread(move || credentials.get_at(SystemTime::now())).unwrap_err();
        assert!(started.elapsed() < FIRST_CREDENTIALS_WAIT, "{error}");
        assert!(matches!(error, CredentialsError::Chain(_)), "{error}");
    }
}
