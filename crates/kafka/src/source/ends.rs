//! What the source knows of each owned partition's end on the broker, and
//! whether it knows it now.
//!
//! Idleness must come from knowing there is nothing to read, never from
//! having received nothing: a consumer whose broker has stopped answering
//! (or whose fetches stall) receives nothing either, and if that counted as
//! idleness the watermark would close windows on the wall clock and the
//! events still on their way would turn late. librdkafka's statistics give
//! an end, but they repeat the last one they saw while the broker is away.
//! So a partition may turn idle only while an answer of the broker itself
//! (a ListOffsets request sent within [`CONFIRMED_FOR`]) shows that nothing
//! waits past its position.

use std::collections::HashMap;
use std::time::Duration;

use fleet_core::PartitionId;
use tokio::time::Instant;

/// How recent the broker's answer on a partition's end must be for the
/// partition to count as caught up: a second between reads, and the read's
/// own timeout.
pub(super) const CONFIRMED_FOR: Duration = Duration::from_secs(3);

/// How long a partition must have delivered nothing before its end is read
/// from the broker (a partition delivering is not idle anyway).
pub(super) const QUIET_AFTER: Duration = Duration::from_secs(1);

/// How often the ends are read while some partition is quiet or the source
/// does not fetch.
pub(super) const READ_EVERY: Duration = Duration::from_secs(1);

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct End {
    offset: i64,
    /// When the request whose answer showed `offset` (or more) was sent.
    confirmed_at: Option<Instant>,
}

/// Per partition, the broker's end offset (last stable offset, or high
/// watermark) and when the broker last answered for it.
#[derive(Clone, Debug, Default)]
pub(super) struct BrokerEnds {
    ends: HashMap<PartitionId, End>,
}

impl BrokerEnds {
    /// An end from librdkafka's statistics. Ends only grow; statistics of a
    /// partition not being fetched repeat an old one, which must not undo a
    /// fresher answer.
    pub(super) fn saw(&mut self, partition: PartitionId, offset: i64) {
        let end = self.ends.entry(partition).or_insert(End {
            offset,
            confirmed_at: None,
        });
        end.offset = end.offset.max(offset);
    }

    /// The broker answered `offset` to a request sent at `asked_at`.
    pub(super) fn confirmed(&mut self, partition: PartitionId, offset: i64, asked_at: Instant) {
        self.saw(partition, offset);
        if let Some(end) = self.ends.get_mut(&partition) {
            end.confirmed_at = Some(end.confirmed_at.map_or(asked_at, |t| t.max(asked_at)));
        }
    }

    /// The end known for `partition`.
    pub(super) fn end(&self, partition: PartitionId) -> Option<i64> {
        self.ends.get(&partition).map(|e| e.offset)
    }

    /// Whether the broker answered for `partition` within [`CONFIRMED_FOR`]
    /// before `now`.
    pub(super) fn confirmed_recently(&self, partition: PartitionId, now: Instant) -> bool {
        self.ends
            .get(&partition)
            .and_then(|e| e.confirmed_at)
            .is_some_and(|t| now.saturating_duration_since(t) <= CONFIRMED_FOR)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn statistics_alone_never_confirm_an_end() {
        let now = Instant::now();
        let mut ends = BrokerEnds::default();
        ends.saw(0, 100);
        assert_eq!(ends.end(0), Some(100));
        assert!(!ends.confirmed_recently(0, now));
    }

    #[test]
    fn an_answer_confirms_until_it_is_too_old() {
        let t0 = Instant::now();
        let mut ends = BrokerEnds::default();
        ends.confirmed(3, 40, t0);
        assert!(ends.confirmed_recently(3, t0 + CONFIRMED_FOR));
        assert!(!ends.confirmed_recently(3, t0 + CONFIRMED_FOR + Duration::from_millis(1)));
        assert!(!ends.confirmed_recently(4, t0), "another partition");
    }

    #[test]
    fn ends_only_grow_and_confirmations_only_get_newer() {
        let t0 = Instant::now();
        let mut ends = BrokerEnds::default();
        ends.confirmed(0, 250, t0 + Duration::from_secs(2));
        ends.saw(0, 200);
        ends.confirmed(0, 240, t0);
        assert_eq!(ends.end(0), Some(250));
        assert!(ends.confirmed_recently(0, t0 + Duration::from_secs(5)));
    }
}
