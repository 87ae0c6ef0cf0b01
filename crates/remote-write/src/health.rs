//! Whether the endpoint takes this service's writes: the `remote_write`
//! readiness condition, and the pause after a configuration error.
//!
//! Shared by every shard. The condition fails, naming the reason, when
//! - the endpoint answered 401, 403 or 404 (wrong URL, credentials or
//!   permissions): until the next accepted request;
//! - a shard's retryable failures (5xx, 429, no answer) have lasted
//!   `unready_after_ms` with no accepted request: until that shard's next
//!   answer. It is checked at each failure, so it turns false at most one
//!   backoff late.
//!
//! After a configuration error every shard waits `max_backoff_ms` before its
//! next request: the samples are dropped and counted, but a misconfigured
//! service must not hammer the endpoint (or fill its logs) in a busy loop.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use fleet_core::telemetry::Readiness;
use tokio::time::Instant;

use crate::RemoteWriteError;

/// The readiness condition this crate maintains.
pub const READY_REMOTE_WRITE: &str = "remote_write";

/// The shared view of the endpoint's health.
#[derive(Debug)]
pub struct EndpointHealth {
    readiness: Arc<Readiness>,
    unready_after: Duration,
    pause: Duration,
    state: Mutex<HealthState>,
}

#[derive(Debug, Default)]
struct HealthState {
    /// The last configuration error since the last accepted request.
    refused: Option<String>,
    /// No request is sent before this, after a configuration error.
    paused_until: Option<Instant>,
    /// Per shard, since when its retryable failures have lasted, and the last one.
    failing_since: BTreeMap<usize, (Instant, String)>,
}

impl HealthState {
    /// Why the endpoint is not usable at `now`, or `None` when it is.
    fn verdict(&self, now: Instant, unready_after: Duration) -> Option<String> {
        if let Some(refused) = &self.refused {
            return Some(refused.clone());
        }
        self.failing_since
            .values()
            .min_by_key(|(since, _)| *since)
            .filter(|(since, _)| now.duration_since(*since) >= unready_after)
            .map(|(since, error)| {
                format!(
                    "remote-write requests have failed for {} s: {error}",
                    now.duration_since(*since).as_secs()
                )
            })
    }
}

impl EndpointHealth {
    /// Health reported on `readiness`, failing after `unready_after` of
    /// retryable failures; `pause` is the wait after a configuration error.
    /// The condition holds at first: nothing has failed.
    pub fn new(readiness: Arc<Readiness>, unready_after: Duration, pause: Duration) -> Self {
        readiness.ok(READY_REMOTE_WRITE);
        EndpointHealth {
            readiness,
            unready_after,
            pause,
            state: Mutex::new(HealthState::default()),
        }
    }

    /// `shard`'s request was accepted: the endpoint works, configuration and all.
    pub fn accepted(&self, shard: usize) {
        self.update(|s, _| {
            s.refused = None;
            s.paused_until = None;
            s.failing_since.remove(&shard);
        });
    }

    /// `shard`'s request was answered with a refusal that is neither retryable
    /// nor a configuration error (a 400): the endpoint is reachable.
    pub fn answered(&self, shard: usize) {
        self.update(|s, _| {
            s.failing_since.remove(&shard);
        });
    }

    /// `shard`'s request failed with `error`, a configuration error (401, 403,
    /// 404) or a retryable one; other errors change nothing.
    pub fn failed(&self, shard: usize, error: &RemoteWriteError) {
        if error.configuration_status().is_some() {
            let reason = format!(
                "the endpoint answered {}; check url, credentials and permissions",
                crate::emitter::answer_of(error)
            );
            let pause = self.pause;
            self.update(|s, now| {
                s.refused = Some(reason);
                s.paused_until = Some(now + pause);
                s.failing_since.remove(&shard);
            });
        } else if error.retry() == crate::Retry::WithBackoff {
            let error = error.to_string();
            self.update(|s, now| {
                s.failing_since
                    .entry(shard)
                    .and_modify(|(_, last)| last.clone_from(&error))
                    .or_insert((now, error));
            });
        } else {
            self.answered(shard);
        }
    }

    /// How long to wait before the next request: the rest of the pause after
    /// a configuration error, if any.
    pub fn pause_remaining(&self) -> Option<Duration> {
        let until = self.state.lock().ok()?.paused_until?;
        let now = Instant::now();
        (until > now).then(|| until - now)
    }

    fn update(&self, change: impl FnOnce(&mut HealthState, Instant)) {
        let now = Instant::now();
        let verdict = match self.state.lock() {
            Ok(mut state) => {
                change(&mut state, now);
                state.verdict(now, self.unready_after)
            }
            Err(_) => Some("remote-write health state poisoned".into()),
        };
        match verdict {
            Some(reason) => self.readiness.require(READY_REMOTE_WRITE, reason),
            None => self.readiness.ok(READY_REMOTE_WRITE),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::error::tests::status;

    fn health(unready_after_ms: u64) -> (Arc<Readiness>, EndpointHealth) {
        let readiness = Arc::new(Readiness::default());
        let health = EndpointHealth::new(
            readiness.clone(),
            Duration::from_millis(unready_after_ms),
            Duration::from_secs(5),
        );
        (readiness, health)
    }

    fn failing(readiness: &Readiness) -> Vec<String> {
        readiness.check().err().unwrap_or_default()
    }

    #[tokio::test(start_paused = true)]
    async fn a_configuration_error_fails_readiness_and_pauses_until_accepted() {
        let (readiness, health) = health(30_000);
        assert!(readiness.check().is_ok());
        assert_eq!(health.pause_remaining(), None);
        health.failed(2, &status(401, "missing credentials"));
        let reasons = failing(&readiness);
        assert_eq!(reasons.len(), 1);
        assert!(reasons[0].starts_with("remote_write: "), "{reasons:?}");
        assert!(reasons[0].contains("401 Unauthorized"), "{reasons:?}");
        assert!(reasons[0].contains("missing credentials"), "{reasons:?}");
        assert_eq!(health.pause_remaining(), Some(Duration::from_secs(5)));
        tokio::time::advance(Duration::from_secs(2)).await;
        assert_eq!(health.pause_remaining(), Some(Duration::from_secs(3)));
        health.failed(1, &status(400, "out of order sample"));
        assert!(readiness.check().is_err(), "a 400 does not clear it");
        health.accepted(0);
        assert!(readiness.check().is_ok(), "any accepted request clears it");
        assert_eq!(health.pause_remaining(), None);
    }

    #[tokio::test(start_paused = true)]
    async fn retryable_failures_fail_readiness_only_after_the_grace() {
        let (readiness, health) = health(30_000);
        health.failed(0, &status(503, "down"));
        tokio::time::advance(Duration::from_secs(29)).await;
        health.failed(0, &status(502, "still down"));
        assert!(readiness.check().is_ok(), "within the grace");
        tokio::time::advance(Duration::from_secs(1)).await;
        health.failed(1, &status(503, "other shard"));
        let reasons = failing(&readiness);
        assert!(reasons[0].contains("failed for 30 s"), "{reasons:?}");
        assert!(reasons[0].contains("still down"), "{reasons:?}");
        assert_eq!(
            health.pause_remaining(),
            None,
            "retryable failures do not pause"
        );
        health.accepted(0);
        assert!(readiness.check().is_ok(), "shard 1 has failed for 0 s only");
        tokio::time::advance(Duration::from_secs(30)).await;
        health.failed(1, &status(429, "slow down"));
        assert!(readiness.check().is_err());
        health.failed(1, &status(400, "bad sample"));
        assert!(readiness.check().is_ok(), "an answer ends the streak");
    }
}
