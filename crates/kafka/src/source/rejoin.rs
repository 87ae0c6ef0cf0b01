//! Joining the group afresh when it stops answering this member.
//!
//! After a revocation (a session that timed out while the broker was
//! unreachable, a member joining or leaving) librdkafka rejoins the group
//! under its member id, and the coordinator answers with an assignment,
//! empty when there are more members than partitions. A coordinator that
//! never answers would leave the instance without partitions for good:
//! Tansu 0.6 was seen to, after its broker had stalled past the session
//! timeout, while a new member was served at once. So a member left with no
//! assignment at all for [`GroupWatch::after`] leaves the group and joins
//! again as a new member (counted in `fleet_source_group_rejoins_total`).

use std::time::Duration;

use tokio::time::Instant;

/// Watches for an assignment after each revocation.
#[derive(Clone, Debug)]
pub(super) struct GroupWatch {
    after: Duration,
    /// Since when an assignment is awaited, if one is.
    awaited_since: Option<Instant>,
}

impl GroupWatch {
    /// A watch that gives up waiting after `after`; an assignment is awaited
    /// from `now` (the subscription).
    pub(super) fn new(after: Duration, now: Instant) -> Self {
        GroupWatch {
            after,
            awaited_since: Some(now),
        }
    }

    /// How long to wait for a session timeout of `session_timeout`: three
    /// sessions, and at least 30 s (a rebalance waits for every member).
    pub(super) fn wait_for(session_timeout: Duration) -> Duration {
        (session_timeout * 3).max(Duration::from_secs(30))
    }

    /// Partitions were revoked at `now`: an assignment is awaited.
    pub(super) fn revoked(&mut self, now: Instant) {
        self.awaited_since.get_or_insert(now);
    }

    /// An assignment came (perhaps empty).
    pub(super) fn assigned(&mut self) {
        self.awaited_since = None;
    }

    /// Whether to leave and rejoin at `now`: how long the assignment was
    /// awaited, if so. The wait then starts again.
    pub(super) fn due(&mut self, now: Instant) -> Option<Duration> {
        let since = self.awaited_since?;
        let waited = now.saturating_duration_since(since);
        (waited >= self.after).then(|| {
            self.awaited_since = Some(now);
            waited
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_member_left_without_any_assignment_rejoins_and_waits_again() {
        let t0 = Instant::now();
        let after = Duration::from_secs(30);
        let mut w = GroupWatch::new(after, t0);
        assert_eq!(w.due(t0 + Duration::from_secs(29)), None);
        assert_eq!(w.due(t0 + after), Some(after), "never assigned");
        assert_eq!(
            w.due(t0 + after + Duration::from_secs(1)),
            None,
            "waits again"
        );
        w.assigned();
        assert_eq!(w.due(t0 + Duration::from_secs(500)), None);
        let t1 = t0 + Duration::from_secs(600);
        w.revoked(t1);
        w.revoked(t1 + Duration::from_secs(10));
        assert_eq!(w.due(t1 + Duration::from_secs(29)), None);
        assert_eq!(w.due(t1 + after), Some(after), "from the first revocation");
    }

    #[test]
    fn an_empty_assignment_is_an_answer() {
        let t0 = Instant::now();
        let mut w = GroupWatch::new(Duration::from_secs(30), t0);
        w.revoked(t0);
        // More members than partitions: this one gets none, and that is fine.
        w.assigned();
        assert_eq!(w.due(t0 + Duration::from_secs(3600)), None);
    }

    #[test]
    fn the_wait_is_three_sessions_and_at_least_half_a_minute() {
        assert_eq!(
            GroupWatch::wait_for(Duration::from_secs(6)),
            Duration::from_secs(30)
        );
        assert_eq!(
            GroupWatch::wait_for(Duration::from_secs(45)),
            Duration::from_secs(135)
        );
    }
}
