//! Where reading one owned partition stands, and what that makes of each
//! message delivered for it.
//!
//! Reading restarts at a known offset after every assignment, seek to a
//! point in time and resume from a pause. What the broker then delivers may
//! start before that offset (re-deliveries: skipped), or, on a broker that
//! answers from the next record batch, after it (the [`FetchGuard`] rewinds
//! until it is covered). Kept apart from librdkafka so that every such
//! decision is a plain function of offsets, unit-tested below.

use std::time::Duration;

use tokio::time::Instant;

use super::fetch_guard::{FetchGuard, Verdict};

/// What to do with one message, from its offset alone.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Judgement {
    /// New: decode and process it.
    Take,
    /// New, but the offsets from `expected` up to it no longer exist
    /// (retention, compaction): process it, and count what is missing.
    TakeAfterGap {
        /// Where the fetch was asked to start.
        expected: i64,
    },
    /// Delivered before (fetched again after a pause or a rewind): skip it.
    Duplicate,
    /// The broker answered from past the offset asked for: drop the message
    /// and seek the partition back to this offset.
    Rewind(i64),
}

/// One owned partition's reading position.
#[derive(Clone, Debug, Default)]
pub(super) struct Position {
    /// The next offset expected; lower ones are re-deliveries. Unknown until
    /// the first message when the group's reset policy picks the start.
    next: Option<i64>,
    /// Checks that the fetch starts where it was asked to.
    guard: FetchGuard,
    /// When the last message was delivered.
    last_delivery: Option<Instant>,
    /// The first offset taken since the partition was assigned.
    first: Option<i64>,
}

impl Position {
    /// Reading restarts at `offset` (a committed offset, a point in time, the
    /// next expected one after a pause), asked for at `now`.
    pub(super) fn restart_at(&mut self, offset: i64, now: Instant) {
        self.next = Some(offset);
        self.guard.expect(offset, now);
    }

    /// Reading restarts where the group's reset policy says: the first
    /// message delivered sets the position.
    pub(super) fn restart_unknown(&mut self) {
        self.next = None;
    }

    /// The partition was assigned (again): no offset taken since.
    pub(super) fn forget_first_read(&mut self) {
        self.first = None;
    }

    /// The first offset taken since the partition was assigned, if any.
    pub(super) fn first_read(&self) -> Option<i64> {
        self.first
    }

    /// The next offset expected, if known.
    #[cfg(test)]
    fn next(&self) -> Option<i64> {
        self.next
    }

    /// Judges the message at `offset`, delivered at `now`, and moves past it
    /// if it is taken.
    pub(super) fn judge(&mut self, offset: i64, now: Instant) -> Judgement {
        self.last_delivery = Some(now);
        let gap = match self.guard.check(offset, now) {
            Verdict::Accept => None,
            Verdict::RewindTo(target) => return Judgement::Rewind(target),
            Verdict::Gap { expected } => Some(expected),
        };
        let next = self.next.get_or_insert(offset);
        if offset < *next {
            return Judgement::Duplicate;
        }
        *next = offset + 1;
        self.first.get_or_insert(offset);
        match gap {
            Some(expected) => Judgement::TakeAfterGap { expected },
            None => Judgement::Take,
        }
    }

    /// A pause dropped what librdkafka had fetched ahead: where to seek so
    /// that reading resumes with the next message expected (anything
    /// delivered twice is then skipped by offset). Asked for at `now`.
    pub(super) fn resume(&mut self, now: Instant) -> Option<i64> {
        let next = self.next?;
        self.guard.expect(next, now);
        Some(next)
    }

    /// Messages waiting on the broker, whose end offset is `end`, past the
    /// next one expected.
    pub(super) fn lag(&self, end: i64) -> Option<i64> {
        self.next.map(|next| (end - next).max(0))
    }

    /// Whether nothing has been delivered for `after` before `now`.
    pub(super) fn quiet(&self, now: Instant, after: Duration) -> bool {
        self.last_delivery
            .is_none_or(|t| now.saturating_duration_since(t) >= after)
    }

    /// Whether the fetch asked for has stayed silent for `after` while
    /// messages wait: where to rewind, if so (see the [`FetchGuard`]).
    pub(super) fn silent(&mut self, now: Instant, after: Duration) -> Option<i64> {
        self.guard.silent(now, after)
    }

    /// Whether a rewound fetch has yet to deliver the offset asked for.
    pub(super) fn rewinding(&self) -> bool {
        self.guard.rewinding()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn re_deliveries_below_the_next_offset_are_skipped() {
        let now = Instant::now();
        let mut p = Position::default();
        p.restart_at(100, now);
        assert_eq!(p.judge(100, now), Judgement::Take);
        assert_eq!(p.judge(101, now), Judgement::Take);
        assert_eq!(p.next(), Some(102));
        // Fetched again from 90 (a pause dropped the prefetch, a rewind).
        assert_eq!(p.judge(90, now), Judgement::Duplicate);
        assert_eq!(p.judge(101, now), Judgement::Duplicate);
        assert_eq!(p.judge(102, now), Judgement::Take);
        assert_eq!(p.next(), Some(103));
    }

    #[test]
    fn an_unknown_start_is_set_by_the_first_message() {
        let now = Instant::now();
        let mut p = Position::default();
        assert_eq!(p.next(), None);
        assert_eq!(p.lag(500), None, "no lag without a position");
        assert_eq!(p.judge(40, now), Judgement::Take);
        assert_eq!(p.judge(39, now), Judgement::Duplicate);
        assert_eq!(p.next(), Some(41));
        assert_eq!(p.resume(now), Some(41));
    }

    #[test]
    fn a_fetch_answered_past_the_asked_offset_rewinds_then_skips_what_came_before() {
        let now = Instant::now();
        let mut p = Position::default();
        p.restart_at(5000, now);
        // Tansu answers from the next record batch.
        assert_eq!(p.judge(5100, now), Judgement::Rewind(5000 - 1024));
        assert_eq!(p.next(), Some(5000), "a dropped message does not move it");
        // The rewound fetch starts before the asked offset.
        assert_eq!(p.judge(3976, now), Judgement::Duplicate);
        assert_eq!(p.judge(4999, now), Judgement::Duplicate);
        assert_eq!(p.judge(5000, now), Judgement::Take);
        assert_eq!(p.judge(5100, now), Judgement::Take, "guard passed");
    }

    #[test]
    fn offsets_missing_for_good_are_taken_after_a_gap() {
        let now = Instant::now();
        let mut p = Position::default();
        p.restart_at(0, now);
        assert_eq!(p.judge(25, now), Judgement::TakeAfterGap { expected: 0 });
        assert_eq!(p.next(), Some(26));
        p.restart_at(800, now);
        assert_eq!(p.judge(900, now), Judgement::Rewind(0));
        assert_eq!(p.judge(900, now), Judgement::TakeAfterGap { expected: 800 });
    }

    #[test]
    fn resuming_seeks_to_the_next_offset_and_guards_that_fetch() {
        let now = Instant::now();
        let mut p = Position::default();
        p.restart_at(10, now);
        for o in 10..2000 {
            assert_eq!(p.judge(o, now), Judgement::Take);
        }
        assert_eq!(p.resume(now), Some(2000));
        // The resumed fetch answers from a later batch.
        assert_eq!(p.judge(2100, now), Judgement::Rewind(2000 - 1024));
        p.restart_unknown();
        assert_eq!(p.resume(now), None, "nothing to seek to");
    }

    #[test]
    fn lag_counts_from_the_next_offset_and_never_goes_negative() {
        let now = Instant::now();
        let mut p = Position::default();
        p.restart_at(70, now);
        assert_eq!(p.lag(100), Some(30));
        assert_eq!(p.lag(60), Some(0));
    }

    #[test]
    fn a_silent_fetch_rewinds_from_the_asked_offset() {
        let t0 = Instant::now();
        let mut p = Position::default();
        p.restart_at(3000, t0);
        let after = Duration::from_secs(1);
        assert_eq!(p.silent(t0, after), None);
        assert_eq!(p.silent(t0 + after, after), Some(3000 - 1024));
    }
}
