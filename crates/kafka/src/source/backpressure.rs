//! When the source stops taking messages, pauses its partitions and resumes.
//!
//! A short stall of the pipeline (the normal flow control of a busy one)
//! only stops taking messages: librdkafka's bounded prefetch holds what was
//! fetched. A long one would exceed `max.poll.interval.ms` and cost the
//! group membership, so after [`PAUSE_AFTER`] the source pauses every owned
//! partition and keeps polling. Pausing drops the prefetched messages; on
//! resume the source seeks to the next offsets it expects
//! (docs/ARCHITECTURE.md, "Delivery guarantee", retries and backpressure).
//! Only the decisions are here; the source's loop carries them out.

use std::time::Duration;

use tokio::time::Instant;

/// Messages ready but not yet accepted by the enricher's channel at which the
/// source counts as backpressured and stops taking messages from the consumer.
pub(super) const BACKPRESSURED_AT: usize = 2;

/// How long the source may stay backpressured without polling before it
/// pauses its partitions and polls again, to stay within `max.poll.interval.ms`.
pub(super) const PAUSE_AFTER: Duration = Duration::from_secs(5);

/// What to do about the messages the consumer holds.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Decision {
    /// Nothing waits for the pipeline: carry on (paused partitions stay
    /// paused until everything ready was taken).
    Proceed,
    /// The pipeline has not taken what is ready: take no more messages.
    /// Waiting on the pipeline is not idleness.
    Hold,
    /// Held for [`PAUSE_AFTER`]: also pause every owned partition.
    Pause,
    /// Paused, and the pipeline took everything ready: resume every owned
    /// partition from the next offset expected.
    Resume,
}

/// Whether messages flow from the consumer.
#[derive(Clone, Copy, Debug, Default)]
pub(super) struct Flow {
    /// Since when the pipeline has not taken what the source has ready.
    held_since: Option<Instant>,
    /// Whether the owned partitions are paused (for backpressure, or because
    /// this instance may not process).
    paused: bool,
}

impl Flow {
    /// Decides, with `ready` messages waiting for the pipeline at `now`.
    pub(super) fn decide(&mut self, ready: usize, now: Instant) -> Decision {
        if ready >= BACKPRESSURED_AT {
            let since = *self.held_since.get_or_insert(now);
            if !self.paused && now.saturating_duration_since(since) >= PAUSE_AFTER {
                return Decision::Pause;
            }
            return Decision::Hold;
        }
        self.held_since = None;
        if self.paused && ready == 0 {
            Decision::Resume
        } else {
            Decision::Proceed
        }
    }

    /// Whether the owned partitions are paused.
    pub(super) fn paused(&self) -> bool {
        self.paused
    }

    /// The owned partitions were paused (`true`) or resumed.
    pub(super) fn set_paused(&mut self, paused: bool) {
        self.paused = paused;
    }

    /// Whether to take messages from the consumer. Paused, it keeps polling
    /// (nothing arrives but rebalances), so it stays in its group.
    pub(super) fn takes_messages(&self) -> bool {
        self.paused || self.held_since.is_none()
    }

    /// Whether fetches run: neither paused nor held back. Otherwise a fetch
    /// that delivers nothing is not silent.
    pub(super) fn fetching(&self) -> bool {
        !self.paused && self.held_since.is_none()
    }

    /// At an assignment: whether to pause every owned partition now. The new
    /// partitions join a backpressure pause, and an instance that may not
    /// process pauses them all.
    pub(super) fn pause_at_assignment(&self, may_process: bool) -> bool {
        !may_process || self.paused
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_short_stall_holds_without_pausing() {
        let t0 = Instant::now();
        let mut f = Flow::default();
        assert_eq!(f.decide(0, t0), Decision::Proceed);
        assert_eq!(
            f.decide(1, t0),
            Decision::Proceed,
            "one batch in flight is flow"
        );
        assert!(f.fetching() && f.takes_messages());
        assert_eq!(f.decide(BACKPRESSURED_AT, t0), Decision::Hold);
        assert!(!f.takes_messages());
        assert!(!f.fetching());
        let almost = t0 + PAUSE_AFTER - Duration::from_millis(1);
        assert_eq!(f.decide(5, almost), Decision::Hold);
        assert_eq!(
            f.decide(1, almost),
            Decision::Proceed,
            "the pipeline took some"
        );
        assert!(f.takes_messages());
        // The stall starts over.
        assert_eq!(f.decide(2, almost), Decision::Hold);
        assert_eq!(f.decide(2, t0 + PAUSE_AFTER), Decision::Hold);
    }

    #[test]
    fn a_long_stall_pauses_and_resumes_once_everything_ready_was_taken() {
        let t0 = Instant::now();
        let mut f = Flow::default();
        assert_eq!(f.decide(3, t0), Decision::Hold);
        assert_eq!(f.decide(3, t0 + PAUSE_AFTER), Decision::Pause);
        // Until the pause is carried out, it is asked for again.
        assert_eq!(f.decide(3, t0 + PAUSE_AFTER), Decision::Pause);
        f.set_paused(true);
        assert!(f.paused());
        assert!(f.takes_messages(), "paused, it keeps polling");
        assert!(!f.fetching());
        assert_eq!(f.decide(3, t0 + PAUSE_AFTER * 2), Decision::Hold);
        assert_eq!(
            f.decide(1, t0 + PAUSE_AFTER * 2),
            Decision::Proceed,
            "not empty yet"
        );
        assert_eq!(f.decide(0, t0 + PAUSE_AFTER * 2), Decision::Resume);
        // Until the resume is carried out, it is asked for again.
        assert_eq!(f.decide(0, t0 + PAUSE_AFTER * 2), Decision::Resume);
        f.set_paused(false);
        assert_eq!(f.decide(0, t0 + PAUSE_AFTER * 2), Decision::Proceed);
        assert!(f.fetching());
    }

    #[test]
    fn an_assignment_pauses_when_paused_or_not_processing() {
        let mut f = Flow::default();
        assert!(!f.pause_at_assignment(true));
        assert!(f.pause_at_assignment(false));
        f.set_paused(true);
        assert!(f.pause_at_assignment(true), "new partitions join the pause");
    }
}
