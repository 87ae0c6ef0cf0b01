//! A scripted credential chain for the tests of fleet-aws and of the crates
//! that sign with it (the `test-util` feature): the AWS chain needs a network
//! and an account, and the cache's refresh rules need a chain that counts
//! its calls, expires and fails on cue.

use std::ops::Range;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use aws_credential_types::provider::{error::CredentialsError, future, ProvideCredentials};
use aws_credential_types::Credentials;

use crate::SharedCredentialsProvider;

/// What a [`ScriptedChain`] says when a call fails.
pub const CHAIN_FAILURE: &str = "instance metadata unavailable";

/// Call `n` (from 0) answers, after `delay`, the credentials `AK<n>` / `SK`
/// valid for `valid_for` (`None`: no expiry), or fails with
/// [`CHAIN_FAILURE`] when `n` is in `fails`.
#[derive(Clone, Debug, Default)]
pub struct ScriptedChain {
    /// How long each answer is valid; `None`: static keys.
    pub valid_for: Option<Duration>,
    /// The calls that fail.
    pub fails: Range<usize>,
    /// How long each call takes.
    pub delay: Duration,
    /// The session token of the answers (temporary credentials).
    pub session_token: Option<String>,
}

impl ScriptedChain {
    /// The chain as a provider, and its call count.
    pub fn provider(self) -> (Arc<AtomicUsize>, SharedCredentialsProvider) {
        let calls = Arc::new(AtomicUsize::new(0));
        let provider = SharedCredentialsProvider::new(Counted {
            calls: Arc::clone(&calls),
            script: self,
        });
        (calls, provider)
    }
}

#[derive(Debug)]
struct Counted {
    calls: Arc<AtomicUsize>,
    script: ScriptedChain,
}

impl ProvideCredentials for Counted {
    fn provide_credentials<'a>(&'a self) -> future::ProvideCredentials<'a>
    where
        Self: 'a,
    {
        let call = self.calls.fetch_add(1, Ordering::SeqCst);
        let script = self.script.clone();
        future::ProvideCredentials::new(async move {
            if !script.delay.is_zero() {
                tokio::time::sleep(script.delay).await;
            }
            if script.fails.contains(&call) {
                return Err(CredentialsError::not_loaded(CHAIN_FAILURE));
            }
            Ok(Credentials::new(
                format!("AK{call}"),
                "SK",
                script.session_token,
                script.valid_for.map(|d| SystemTime::now() + d),
                "test",
            ))
        })
    }
}

/// A runtime with one worker thread, for tests that call from a thread
/// outside it, as librdkafka's own threads do.
pub fn one_worker_runtime() -> std::io::Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
}

/// Runs `f` on a new thread, outside any runtime, and returns what it
/// returns; a panic there goes on here.
pub fn on_another_thread<T: Send + 'static>(f: impl FnOnce() -> T + Send + 'static) -> T {
    std::thread::spawn(f)
        .join()
        .unwrap_or_else(|panic| std::panic::resume_unwind(panic))
}

/// Polls `check` every 50 ms for up to 5 s; whether it held (a background
/// refresh is seen from outside only by its effect).
pub async fn eventually(check: impl Fn() -> bool) -> bool {
    for _ in 0..100 {
        if check() {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    check()
}
