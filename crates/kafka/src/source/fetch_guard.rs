//! Makes fetching from an offset lossless on brokers that answer from the
//! next record batch instead.
//!
//! Kafka answers a fetch at offset `o` with the record batch that contains
//! `o`; the client drops the records before it. Tansu 0.6 answers with the
//! first batch that *starts* at or after `o`, silently skipping the rest of
//! the batch holding `o` — so resuming from a committed offset, or after a
//! pause, would lose events. When the first message after such a fetch is
//! beyond the offset asked for, the source rewinds (further each time) until
//! the broker delivers the asked offset or something before it; records
//! before it are then skipped as already seen. On Kafka a rewind happens
//! only where offsets legitimately have gaps (compaction, transaction
//! markers), once per assignment, and costs one extra fetch.
//!
//! When the asked offset lies in the partition's *last* batch, such a broker
//! answers with nothing at all, so no message ever shows the skip. The source
//! then asks [`FetchGuard::silent`] whether a fetch that the broker's end
//! offset says should have delivered has stayed silent too long, and rewinds
//! the same way. A rewound fetch that stays silent is rewound further even
//! when the end offset says nothing waits: Tansu's stops at the start of its
//! last batch, so after a rewind into that batch, with nothing produced
//! after it, neither a message nor the end offset would ever show the skip.

use std::time::Duration;

use tokio::time::Instant;

/// The first rewind goes this many offsets back; each further one twice as far.
const FIRST_REWIND: i64 = 1024;

/// How long a fetch may deliver nothing while the broker holds messages
/// past it before it is taken for a skipped last batch.
pub(super) const SILENT_FETCH: Duration = Duration::from_secs(1);

#[derive(Clone, Copy, Debug)]
struct Expectation {
    /// The offset the fetch was asked to start at.
    expected: i64,
    /// How far back the next rewind goes.
    step: i64,
    /// Where the last rewind went.
    rewound_to: Option<i64>,
    /// When the fetch (or the last rewind) was asked for.
    since: Instant,
}

/// What to do with a message.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Verdict {
    /// Process it.
    Accept,
    /// The broker skipped past the offset asked for: seek here and drop the message.
    RewindTo(i64),
    /// Nothing earlier exists (rewound to the start): the offsets between
    /// were skipped for good. Process it.
    Gap {
        /// The offset asked for.
        expected: i64,
    },
}

/// One partition's guard: the offset a fetch should start at, until it is seen.
#[derive(Clone, Debug, Default)]
pub(super) struct FetchGuard {
    pending: Option<Expectation>,
}

impl FetchGuard {
    /// A fetch will start at `offset`, asked for at `now`.
    pub(super) fn expect(&mut self, offset: i64, now: Instant) {
        self.pending = Some(Expectation {
            expected: offset,
            step: FIRST_REWIND,
            rewound_to: None,
            since: now,
        });
    }

    /// Judges a message at `offset`, delivered at `now`.
    pub(super) fn check(&mut self, offset: i64, now: Instant) -> Verdict {
        let Some(e) = self.pending.as_mut() else {
            return Verdict::Accept;
        };
        if offset <= e.expected {
            self.pending = None;
            return Verdict::Accept;
        }
        if e.rewound_to == Some(0) || e.expected == 0 {
            let expected = e.expected;
            self.pending = None;
            return Verdict::Gap { expected };
        }
        Verdict::RewindTo(e.rewind(now))
    }

    /// Whether the broker has skipped past the offset asked for and the
    /// rewound fetch has not yet delivered it.
    pub(super) fn rewinding(&self) -> bool {
        self.pending.is_some_and(|e| e.rewound_to.is_some())
    }

    /// The fetch asked for has delivered nothing for `after`, while the
    /// partition had messages waiting (its end offset past what was
    /// delivered) or the fetch was a rewind: where to rewind, if so.
    pub(super) fn silent(&mut self, now: Instant, after: Duration) -> Option<i64> {
        let e = self.pending.as_mut()?;
        if now.saturating_duration_since(e.since) < after || e.rewound_to == Some(0) {
            return None;
        }
        Some(e.rewind(now))
    }
}

impl Expectation {
    /// The next rewind target, each further back than the last.
    fn rewind(&mut self, now: Instant) -> i64 {
        let target = self.expected.saturating_sub(self.step).max(0);
        self.step = self.step.saturating_mul(2);
        self.rewound_to = Some(target);
        self.since = now;
        target
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unguarded_partitions_and_exact_fetches_pass() {
        let now = Instant::now();
        let mut g = FetchGuard::default();
        assert_eq!(g.check(17, now), Verdict::Accept);
        g.expect(100, now);
        assert_eq!(g.check(100, now), Verdict::Accept);
        assert_eq!(
            g.check(5000, now),
            Verdict::Accept,
            "checked once per fetch start"
        );
    }

    #[test]
    fn a_rewound_fetch_is_rewinding_until_the_asked_offset_comes() {
        let now = Instant::now();
        let mut g = FetchGuard::default();
        g.expect(5000, now);
        assert!(!g.rewinding(), "a first fetch is not a rewind");
        assert_eq!(g.check(5600, now), Verdict::RewindTo(5000 - 1024));
        assert!(g.rewinding());
        assert_eq!(g.check(4000, now), Verdict::Accept);
        assert!(!g.rewinding());
    }

    #[test]
    fn rewinds_further_until_the_asked_offset_is_covered() {
        let now = Instant::now();
        let mut g = FetchGuard::default();
        g.expect(5000, now);
        assert_eq!(g.check(5600, now), Verdict::RewindTo(5000 - 1024));
        assert_eq!(g.check(5600, now), Verdict::RewindTo(5000 - 2048));
        // The broker now answers from a batch starting before 5000.
        assert_eq!(g.check(2500, now), Verdict::Accept);
    }

    #[test]
    fn a_silent_fetch_of_the_last_batch_rewinds_after_a_while() {
        let t0 = Instant::now();
        let at = |ms| t0 + Duration::from_millis(ms);
        let mut g = FetchGuard::default();
        let after = Duration::from_secs(1);
        assert_eq!(g.silent(at(5000), after), None, "never asked");
        g.expect(5000, t0);
        assert_eq!(g.silent(at(999), after), None, "not yet");
        assert_eq!(g.silent(at(1500), after), Some(5000 - 1024));
        assert_eq!(g.silent(at(2000), after), None, "waits again");
        assert_eq!(g.silent(at(3000), after), Some(5000 - 2048));
        // A message before the asked offset ends it.
        assert_eq!(g.check(3000, at(3100)), Verdict::Accept);
        assert_eq!(g.silent(at(9000), after), None);
    }

    #[test]
    fn a_real_gap_is_accepted_after_rewinding_to_the_start() {
        let now = Instant::now();
        let mut g = FetchGuard::default();
        g.expect(1500, now);
        assert_eq!(g.check(1600, now), Verdict::RewindTo(476));
        assert_eq!(g.check(1600, now), Verdict::RewindTo(0));
        assert_eq!(g.check(1600, now), Verdict::Gap { expected: 1500 });
        assert_eq!(g.check(1601, now), Verdict::Accept);
        let mut g = FetchGuard::default();
        g.expect(0, now);
        assert_eq!(g.check(10, now), Verdict::Gap { expected: 0 });
    }

    #[test]
    fn a_fetch_rewound_to_the_start_stays_silent_without_rewinding_again() {
        let t0 = Instant::now();
        let mut g = FetchGuard::default();
        g.expect(700, t0);
        let after = Duration::from_secs(1);
        assert_eq!(g.silent(t0 + after, after), Some(0));
        assert_eq!(
            g.silent(t0 + after * 5, after),
            None,
            "nowhere further back"
        );
    }
}
