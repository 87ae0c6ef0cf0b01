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

use std::collections::HashMap;

use fleet_core::PartitionId;

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
    pending: HashMap<PartitionId, Expectation>,
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
            },
        );
    }

    /// The partition was revoked.
    pub(crate) fn forget(&mut self, partition: PartitionId) {
        self.pending.remove(&partition);
    }

    /// Judges a message at `offset` of `partition`.
    pub(crate) fn check(&mut self, partition: PartitionId, offset: i64) -> Verdict {
        let Some(e) = self.pending.get_mut(&partition) else {
            return Verdict::Accept;
        };
        if offset <= e.expected {
            self.pending.remove(&partition);
            return Verdict::Accept;
        }
        if e.rewound_to == Some(0) || e.expected == 0 {
            let expected = e.expected;
            self.pending.remove(&partition);
            return Verdict::Gap { expected };
        }
        let target = e.expected.saturating_sub(e.step).max(0);
        e.step = e.step.saturating_mul(2);
        e.rewound_to = Some(target);
        Verdict::RewindTo(target)
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
