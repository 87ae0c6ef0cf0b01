//! The `progress` readiness condition: a source that owns its partitions and
//! is connected can still be stuck — data waiting that never gets consumed,
//! or no broker reachable. Either, for longer than `kafka.progress_timeout_ms`,
//! turns `/readyz` false with the reason; consuming anything, or being caught
//! up with nothing to do, is progress.
//!
//! Whether what was consumed gets *written* is the emitter's condition
//! (`remote_write`), so the two together mean "data flows and is written".

use std::time::Duration;

use tokio::time::Instant;

/// What the source sees at one tick.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ProgressSample {
    /// Messages consumed so far (any monotonic count).
    pub consumed: u64,
    /// Messages waiting on the broker for the owned partitions.
    pub lag: i64,
    /// Whether some broker connection is up; `None` before the first statistics.
    pub broker_up: Option<bool>,
}

/// Remembers since when the source has not made progress.
#[derive(Debug)]
pub struct ProgressWatch {
    timeout: Duration,
    consumed: u64,
    /// Since when data has been waiting with nothing consumed.
    stalled_since: Option<Instant>,
    /// Since when no broker connection has been up.
    disconnected_since: Option<Instant>,
}

impl ProgressWatch {
    /// A watch that fails after `timeout` without progress.
    pub fn new(timeout: Duration) -> Self {
        ProgressWatch {
            timeout,
            consumed: 0,
            stalled_since: None,
            disconnected_since: None,
        }
    }

    /// Takes a sample; returns why the source is not progressing, if it is not.
    pub fn observe(&mut self, now: Instant, sample: ProgressSample) -> Option<String> {
        let moved = sample.consumed != self.consumed;
        self.consumed = sample.consumed;
        if moved || sample.lag <= 0 {
            self.stalled_since = None;
        } else {
            self.stalled_since.get_or_insert(now);
        }
        if sample.broker_up == Some(false) {
            self.disconnected_since.get_or_insert(now);
        } else {
            self.disconnected_since = None;
        }
        let overdue = |since: Option<Instant>| {
            since
                .map(|s| now.saturating_duration_since(s))
                .filter(|d| *d >= self.timeout)
        };
        if let Some(d) = overdue(self.disconnected_since) {
            return Some(format!(
                "no connection to any Kafka broker for {} s",
                d.as_secs()
            ));
        }
        overdue(self.stalled_since).map(|d| {
            format!(
                "{} messages waiting on the broker but none consumed for {} s",
                sample.lag,
                d.as_secs()
            )
        })
    }

    /// Forgets any stall: the source stopped processing on purpose (for
    /// example while it does not own every partition).
    pub fn reset(&mut self) {
        self.stalled_since = None;
        self.disconnected_since = None;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample(consumed: u64, lag: i64, broker_up: bool) -> ProgressSample {
        ProgressSample {
            consumed,
            lag,
            broker_up: Some(broker_up),
        }
    }

    #[test]
    fn caught_up_with_nothing_to_do_is_progress() {
        let t0 = Instant::now();
        let mut w = ProgressWatch::new(Duration::from_secs(5));
        for s in 0..60 {
            let now = t0 + Duration::from_secs(s);
            assert_eq!(w.observe(now, sample(100, 0, true)), None);
        }
    }

    #[test]
    fn waiting_data_that_is_not_consumed_fails_after_the_timeout() {
        let t0 = Instant::now();
        let mut w = ProgressWatch::new(Duration::from_secs(5));
        // The first sample counts as progress (from nothing to 10).
        assert_eq!(w.observe(t0, sample(10, 500, true)), None);
        let at = |s| t0 + Duration::from_secs(s);
        assert_eq!(w.observe(at(1), sample(10, 500, true)), None);
        assert_eq!(w.observe(at(5), sample(10, 500, true)), None);
        let reason = w.observe(at(6), sample(10, 500, true)).unwrap();
        assert!(reason.contains("500 messages waiting"), "{reason}");
        assert!(reason.contains("for 5 s"), "{reason}");
        // Consuming anything clears it.
        assert_eq!(w.observe(at(7), sample(11, 499, true)), None);
    }

    #[test]
    fn flowing_data_never_fails() {
        let t0 = Instant::now();
        let mut w = ProgressWatch::new(Duration::from_secs(5));
        for s in 0..60u64 {
            let now = t0 + Duration::from_secs(s);
            assert_eq!(w.observe(now, sample(s * 1000, 10_000, true)), None);
        }
    }

    #[test]
    fn no_broker_fails_after_the_timeout_and_recovers() {
        let t0 = Instant::now();
        let mut w = ProgressWatch::new(Duration::from_secs(5));
        assert_eq!(w.observe(t0, sample(0, 0, false)), None);
        let reason = w
            .observe(t0 + Duration::from_secs(7), sample(0, 0, false))
            .unwrap();
        assert!(reason.contains("no connection"), "{reason}");
        assert_eq!(
            w.observe(t0 + Duration::from_secs(8), sample(0, 0, true)),
            None
        );
    }

    #[test]
    fn unknown_broker_state_is_not_a_failure_and_reset_forgets() {
        let t0 = Instant::now();
        let mut w = ProgressWatch::new(Duration::from_secs(5));
        let unknown = ProgressSample {
            consumed: 0,
            lag: 0,
            broker_up: None,
        };
        assert_eq!(w.observe(t0 + Duration::from_secs(60), unknown), None);
        w.observe(t0, sample(0, 9, true));
        w.reset();
        assert_eq!(
            w.observe(t0 + Duration::from_secs(5), sample(0, 9, true)),
            None
        );
    }
}
