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
//! the same way.

use std::time::Duration;

use fleet_core::{PartitionId, PartitionMap};
use tokio::time::Instant;

/// The first rewind goes this many offsets back; each further one twice as far.
const FIRST_REWIND: i64 = 1024;

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
pub(crate) enum Verdict {
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

/// Per partition, the offset a fetch should start at, until it is seen.
#[derive(Debug, Default)]
pub(crate) struct FetchGuard {
    pending: PartitionMap<Expectation>,
}

impl FetchGuard {
    /// A fetch of `partition` will start at `offset`.
    pub(crate) fn expect(&mut self, partition: PartitionId, offset: i64) {
        self.pending.insert(
            partition,
            Expectation {
                expected: offset,
                step: FIRST_REWIND,
                rewound_to: None,
                since: Instant::now(),
            },
        );
    }

    /// The partition was revoked.
    pub(crate) fn forget(&mut self, partition: PartitionId) {
        self.pending.remove(partition);
    }

    /// Judges a message at `offset` of `partition`.
    pub(crate) fn check(&mut self, partition: PartitionId, offset: i64) -> Verdict {
        let Some(e) = self.pending.get_mut(partition) else {
            return Verdict::Accept;
        };
        if offset <= e.expected {
            self.pending.remove(partition);
            return Verdict::Accept;
        }
        if e.rewound_to == Some(0) || e.expected == 0 {
            let expected = e.expected;
            self.pending.remove(partition);
            return Verdict::Gap { expected };
        }
        Verdict::RewindTo(e.rewind())
    }

    /// `partition` has had messages waiting on the broker (its end offset is
    /// past what was delivered) since at least `after` ago, yet the fetch
    /// asked for has delivered nothing: where to rewind, if so.
    pub(crate) fn silent(
        &mut self,
        partition: PartitionId,
        now: Instant,
        after: Duration,
    ) -> Option<i64> {
        let e = self.pending.get_mut(partition)?;
        if now.saturating_duration_since(e.since) < after || e.rewound_to == Some(0) {
            return None;
        }
        Some(e.rewind())
    }
}

impl Expectation {
    /// The next rewind target, each further back than the last.
    fn rewind(&mut self) -> i64 {
        let target = self.expected.saturating_sub(self.step).max(0);
        self.step = self.step.saturating_mul(2);
        self.rewound_to = Some(target);
        self.since = Instant::now();
        target
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unguarded_partitions_and_exact_fetches_pass() {
        let mut g = FetchGuard::default();
        assert_eq!(g.check(0, 17), Verdict::Accept);
        g.expect(0, 100);
        assert_eq!(g.check(0, 100), Verdict::Accept);
        assert_eq!(
            g.check(0, 5000),
            Verdict::Accept,
            "checked once per fetch start"
        );
    }

    #[test]
    fn rewinds_further_until_the_asked_offset_is_covered() {
        let mut g = FetchGuard::default();
        g.expect(3, 5000);
        assert_eq!(g.check(3, 5600), Verdict::RewindTo(5000 - 1024));
        assert_eq!(g.check(3, 5600), Verdict::RewindTo(5000 - 2048));
        // The broker now answers from a batch starting before 5000.
        assert_eq!(g.check(3, 2500), Verdict::Accept);
    }

    #[tokio::test(start_paused = true)]
    async fn a_silent_fetch_of_the_last_batch_rewinds_after_a_while() {
        let mut g = FetchGuard::default();
        g.expect(0, 5000);
        let after = Duration::from_secs(1);
        assert_eq!(g.silent(0, Instant::now(), after), None, "not yet");
        tokio::time::advance(Duration::from_millis(1500)).await;
        assert_eq!(g.silent(0, Instant::now(), after), Some(5000 - 1024));
        assert_eq!(g.silent(0, Instant::now(), after), None, "waits again");
        tokio::time::advance(Duration::from_millis(1500)).await;
        assert_eq!(g.silent(0, Instant::now(), after), Some(5000 - 2048));
        // A message before the asked offset ends it.
        assert_eq!(g.check(0, 3000), Verdict::Accept);
        tokio::time::advance(Duration::from_secs(5)).await;
        assert_eq!(g.silent(0, Instant::now(), after), None);
        assert_eq!(g.silent(7, Instant::now(), after), None, "never asked");
    }

    #[test]
    fn a_real_gap_is_accepted_after_rewinding_to_the_start() {
        let mut g = FetchGuard::default();
        g.expect(1, 1500);
        assert_eq!(g.check(1, 1600), Verdict::RewindTo(476));
        assert_eq!(g.check(1, 1600), Verdict::RewindTo(0));
        assert_eq!(g.check(1, 1600), Verdict::Gap { expected: 1500 });
        assert_eq!(g.check(1, 1601), Verdict::Accept);
        g.expect(2, 0);
        assert_eq!(g.check(2, 10), Verdict::Gap { expected: 0 });
    }
}
