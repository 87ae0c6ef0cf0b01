//! Event-time progress: per-partition watermarks with idleness.
//!
//! The rules are the design's (and Flink's bounded out-of-orderness with
//! idleness): a partition's watermark is `max event time seen −
//! out_of_orderness − 1 ms`; the pipeline watermark is the minimum over
//! partitions that are not idle; a partition is idle after receiving nothing
//! for `idle_timeout` of processing time and rejoins when data arrives.
//! The emitted watermark never goes backwards (Flink's multiplexer only emits
//! advances), so a partition that rejoins late cannot reopen closed windows.
//!
//! When every partition is idle, the wall clock stands in: windows close once
//! it passes `end + all_idle_close_after`, so the last windows of a quiet fleet
//! are written instead of waiting for the next event.
//!
//! A paused partition is not idle: the source calls [`WatermarkTracker::hold_active`]
//! while it is backpressured, otherwise a slow sink would close windows early.

use std::time::Duration;

use tokio::time::Instant;

use crate::{PartitionId, PartitionMap, TimestampMs, WindowSpec};

/// A point in event time: every event at or before it has been seen, except
/// late ones. A window `[start, end)` closes once the watermark reaches `end − 1`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Watermark(pub TimestampMs);

impl Watermark {
    /// The watermark of a bounded input that has ended: closes every window.
    pub const END_OF_INPUT: Watermark = Watermark(TimestampMs::MAX);

    /// Whether a window ending (exclusively) at `window_end` is closed by this watermark.
    pub fn closes(self, window_end: TimestampMs) -> bool {
        self.0 >= window_end.saturating_sub(1)
    }
}

/// The parameters of the watermark rules.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct WatermarkRules {
    /// How far behind the newest event an event may arrive and still count.
    pub out_of_orderness_ms: i64,
    /// Processing time without data after which a partition is idle.
    pub idle_timeout: Duration,
    /// With every partition idle, close windows once the wall clock passes
    /// `end + this`; `None` keeps them open until data arrives (Flink's behaviour).
    pub all_idle_close_after: Option<Duration>,
    /// How far ahead of the wall clock an event may be, ms; `None` for a
    /// bounded input, where the wall clock plays no part.
    pub max_ahead_ms: Option<i64>,
}

impl WatermarkRules {
    /// The design's defaults: 2 s out-of-orderness, 5 s idleness, all-idle
    /// close after 7 s; events at most an hour ahead of the wall clock.
    pub fn defaults() -> Self {
        WatermarkRules {
            out_of_orderness_ms: 2000,
            idle_timeout: Duration::from_secs(5),
            all_idle_close_after: Some(Duration::from_secs(7)),
            max_ahead_ms: Some(3_600_000),
        }
    }

    /// These rules for a bounded input (`replay`, a benchmark's corpus):
    /// processing time plays no part, so no partition turns idle, nothing
    /// closes on the wall clock, and no event is too far ahead of it.
    pub fn bounded(self) -> Self {
        WatermarkRules {
            idle_timeout: Duration::MAX,
            all_idle_close_after: None,
            max_ahead_ms: None,
            ..self
        }
    }

    /// The watermark a partition holds after seeing `max_ts`.
    pub fn partition_watermark(&self, max_ts: TimestampMs) -> Watermark {
        Watermark(
            max_ts
                .saturating_sub(self.out_of_orderness_ms)
                .saturating_sub(1),
        )
    }
}

#[derive(Clone, Copy, Debug)]
struct PartitionClock {
    max_ts: Option<TimestampMs>,
    last_active: Instant,
    /// Whether the source knows nothing waits to be read: only then may
    /// the partition turn idle.
    caught_up: bool,
    /// Partitioned output mode: the last watermark of this partition alone
    /// returned by [`WatermarkTracker::advance_partitions`].
    emitted: Option<Watermark>,
}

impl PartitionClock {
    /// A partition that has sent nothing yet, active as of `now`.
    fn new(now: Instant) -> Self {
        PartitionClock {
            max_ts: None,
            last_active: now,
            caught_up: true,
            emitted: None,
        }
    }
}

/// Idle: caught up, and nothing received for `idle_timeout`.
fn clock_is_idle(clock: &PartitionClock, now: Instant, idle_timeout: Duration) -> bool {
    clock.caught_up && now.saturating_duration_since(clock.last_active) >= idle_timeout
}

/// Tracks every assigned partition's event-time progress and merges them.
#[derive(Debug)]
pub struct WatermarkTracker {
    rules: WatermarkRules,
    window: WindowSpec,
    partitions: PartitionMap<PartitionClock>,
    emitted: Option<Watermark>,
}

impl WatermarkTracker {
    /// A tracker with no partitions, for windows of `window`.
    pub fn new(rules: WatermarkRules, window: WindowSpec) -> Self {
        WatermarkTracker {
            rules,
            window,
            partitions: PartitionMap::default(),
            emitted: None,
        }
    }

    /// The rules in force.
    pub fn rules(&self) -> &WatermarkRules {
        &self.rules
    }

    /// A partition joins. Until it sends data or turns idle it holds the
    /// pipeline watermark back, as Flink's does.
    pub fn assign(&mut self, partition: PartitionId, now: Instant) {
        self.partitions
            .get_or_insert_with(partition, || PartitionClock::new(now));
    }

    /// A partition leaves and stops holding the watermark back.
    pub fn revoke(&mut self, partition: PartitionId) {
        self.partitions.remove(partition);
    }

    /// The partitions currently tracked.
    pub fn partitions(&self) -> impl Iterator<Item = PartitionId> + '_ {
        self.partitions.keys()
    }

    /// An event with event time `ts` arrived on `partition` (assigning it if
    /// new). Returns whether the partition's watermark just reached a window
    /// end it had not reached before: only then can the pipeline watermark
    /// close a window, so only then must [`advance`](Self::advance) run before
    /// the next event is judged late or not.
    pub fn observe(&mut self, partition: PartitionId, ts: TimestampMs, now: Instant) -> bool {
        let clock = self
            .partitions
            .get_or_insert_with(partition, || PartitionClock::new(now));
        clock.last_active = now;
        let before = clock.max_ts;
        if before.is_some_and(|m| m >= ts) {
            return false;
        }
        clock.max_ts = Some(ts);
        // The watermark w closes windows ending at or before w + 1.
        let closed_through = |max_ts| {
            let w = self.rules.partition_watermark(max_ts);
            self.window.start_of(w.0.saturating_add(1))
        };
        before.is_none_or(|b| closed_through(ts) > closed_through(b))
    }

    /// `partition` has data waiting (consumer lag) that has not arrived yet:
    /// it is behind, not idle.
    pub fn touch(&mut self, partition: PartitionId, now: Instant) {
        if let Some(clock) = self.partitions.get_mut(partition) {
            clock.last_active = now;
        }
    }

    /// The pipeline was backpressured until `now`: no partition may count the
    /// time it spent paused as idleness.
    pub fn hold_active(&mut self, now: Instant) {
        for clock in self.partitions.values_mut() {
            clock.last_active = now;
        }
    }

    /// Whether the source knows that nothing waits to be read on
    /// `partition` (a Kafka source knows it from the broker's recent
    /// answers). While it does not, the partition does not turn idle however
    /// long it has received nothing: a consumer cut off from its broker
    /// receives nothing either. A partition is caught up unless said
    /// otherwise (sources without such knowledge: replay, the generator).
    pub fn set_caught_up(&mut self, partition: PartitionId, caught_up: bool) {
        if let Some(clock) = self.partitions.get_mut(partition) {
            clock.caught_up = caught_up;
        }
    }

    /// Whether `partition` is idle at `now`.
    pub fn is_idle(&self, partition: PartitionId, now: Instant) -> bool {
        self.partitions
            .get(partition)
            .is_some_and(|c| self.clock_is_idle(c, now))
    }

    fn clock_is_idle(&self, clock: &PartitionClock, now: Instant) -> bool {
        clock_is_idle(clock, now, self.rules.idle_timeout)
    }

    /// The watermark a partition holds, `None` before its first event.
    pub fn partition_watermark(&self, partition: PartitionId) -> Option<Watermark> {
        self.partitions
            .get(partition)
            .and_then(|c| c.max_ts)
            .map(|m| self.rules.partition_watermark(m))
    }

    /// The last watermark returned by [`advance`](Self::advance).
    pub fn current(&self) -> Option<Watermark> {
        self.emitted
    }

    /// Recomputes the pipeline watermark at processing time `now` and wall
    /// clock `wall_ms`; returns it when it moved forward.
    pub fn advance(&mut self, now: Instant, wall_ms: TimestampMs) -> Option<Watermark> {
        let candidate = self.candidate(now, wall_ms)?;
        if self.emitted.is_some_and(|e| e >= candidate) {
            return None;
        }
        self.emitted = Some(candidate);
        Some(candidate)
    }

    /// Partitioned output mode: recomputes each partition's own watermark —
    /// its events' bound while active; once idle, the wall-clock close of the
    /// all-idle rule applied to that partition alone — and returns those that
    /// moved forward, in partition order.
    pub fn advance_partitions(
        &mut self,
        now: Instant,
        wall_ms: TimestampMs,
    ) -> Vec<(PartitionId, Watermark)> {
        let wall_close = self.wall_clock_close(wall_ms);
        let idle_timeout = self.rules.idle_timeout;
        let mut moved = Vec::new();
        for (partition, clock) in self.partitions.iter_mut() {
            let Some(max_ts) = clock.max_ts else {
                continue;
            };
            let own = self.rules.partition_watermark(max_ts);
            let idle = clock_is_idle(clock, now, idle_timeout);
            let candidate = match wall_close {
                Some(wall) if idle => own.max(wall),
                _ => own,
            };
            if clock.emitted.is_none_or(|e| e < candidate) {
                clock.emitted = Some(candidate);
                moved.push((partition, candidate));
            }
        }
        moved
    }

    /// The watermark the wall clock gives windows of idle input, if enabled.
    fn wall_clock_close(&self, wall_ms: TimestampMs) -> Option<Watermark> {
        let after = self.rules.all_idle_close_after?;
        let after_ms = i64::try_from(after.as_millis()).unwrap_or(i64::MAX);
        Some(Watermark(
            wall_ms.saturating_sub(after_ms).saturating_sub(1),
        ))
    }

    fn candidate(&self, now: Instant, wall_ms: TimestampMs) -> Option<Watermark> {
        if self.partitions.is_empty() {
            return None;
        }
        let mut min: Option<Watermark> = None;
        let mut any_active = false;
        for clock in self.partitions.values() {
            if self.clock_is_idle(clock, now) {
                continue;
            }
            any_active = true;
            // An active partition without data holds everything back.
            let wm = self.rules.partition_watermark(clock.max_ts?);
            min = Some(min.map_or(wm, |m| m.min(wm)));
        }
        if any_active {
            return min;
        }
        // Before any data there is no window to close, and a wall-clock
        // watermark would turn a backlog that is about to arrive into late data.
        if self.partitions.values().all(|c| c.max_ts.is_none()) {
            return None;
        }
        self.wall_clock_close(wall_ms)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rules() -> WatermarkRules {
        WatermarkRules::defaults()
    }

    #[test]
    fn partitions_advance_on_their_own_in_partitioned_mode() {
        let t0 = Instant::now();
        let mut t = WatermarkTracker::new(rules(), WindowSpec::new(5000).unwrap());
        t.assign(2, t0);
        t.observe(0, 10_000, t0);
        t.observe(1, 4_000, t0);
        assert_eq!(
            t.advance_partitions(t0, 0),
            vec![(0, Watermark(7_999)), (1, Watermark(1_999))],
            "partition 2 has no data: it holds nothing back and gets nothing"
        );
        assert_eq!(t.advance_partitions(t0, 0), vec![], "nothing moved");
        t.observe(1, 9_000, t0);
        assert_eq!(t.advance_partitions(t0, 0), vec![(1, Watermark(6_999))]);
        // Idle partitions close on the wall clock, each on its own.
        let later = t0 + Duration::from_secs(6);
        t.observe(0, 10_001, later);
        assert_eq!(
            t.advance_partitions(later, 20_000),
            vec![(0, Watermark(8_000)), (1, Watermark(12_999))]
        );
        assert_eq!(t.current(), None, "the pipeline watermark is not used");
    }

    #[test]
    fn minimum_over_active_partitions() {
        let t0 = Instant::now();
        let mut t = WatermarkTracker::new(rules(), WindowSpec::new(5000).unwrap());
        t.assign(0, t0);
        t.assign(1, t0);
        t.observe(0, 10_000, t0);
        assert_eq!(t.advance(t0, 0), None, "partition 1 has no data yet");
        t.observe(1, 8_000, t0);
        assert_eq!(t.advance(t0, 0), Some(Watermark(5_999)));
        t.observe(1, 20_000, t0);
        assert_eq!(t.advance(t0, 0), Some(Watermark(7_999)));
        assert_eq!(t.advance(t0, 0), None, "no advance, nothing emitted");
    }

    #[test]
    fn idle_partition_stops_holding_back_and_rejoins() {
        let t0 = Instant::now();
        let mut t = WatermarkTracker::new(rules(), WindowSpec::new(5000).unwrap());
        t.observe(0, 10_000, t0);
        t.observe(1, 3_000, t0);
        assert_eq!(t.advance(t0, 0), Some(Watermark(999)));
        let later = t0 + Duration::from_secs(4);
        t.observe(0, 12_000, later);
        assert_eq!(t.advance(later, 0), None, "partition 1 is not idle yet");
        let idle = t0 + Duration::from_secs(5);
        assert!(t.is_idle(1, idle));
        assert_eq!(t.advance(idle, 0), Some(Watermark(9_999)));
        // Partition 1 rejoins behind: the emitted watermark does not go back.
        t.observe(1, 4_000, idle);
        assert_eq!(t.advance(idle, 0), None);
        assert_eq!(t.current(), Some(Watermark(9_999)));
    }

    #[test]
    fn backpressure_is_not_idleness() {
        let t0 = Instant::now();
        let mut t = WatermarkTracker::new(rules(), WindowSpec::new(5000).unwrap());
        t.observe(0, 10_000, t0);
        t.observe(1, 10_000, t0);
        t.advance(t0, 0);
        let paused_until = t0 + Duration::from_secs(30);
        t.hold_active(paused_until);
        t.observe(0, 50_000, paused_until);
        assert!(!t.is_idle(1, paused_until));
        assert_eq!(t.advance(paused_until, 0), None);
    }

    #[test]
    fn a_partition_with_lag_is_not_idle() {
        let t0 = Instant::now();
        let mut t = WatermarkTracker::new(rules(), WindowSpec::new(5000).unwrap());
        t.observe(0, 10_000, t0);
        t.observe(1, 10_000, t0);
        let later = t0 + Duration::from_secs(6);
        t.touch(1, later);
        assert!(t.is_idle(0, later));
        assert!(!t.is_idle(1, later));
    }

    #[test]
    fn all_idle_closes_by_wall_clock() {
        let t0 = Instant::now();
        let mut t = WatermarkTracker::new(rules(), WindowSpec::new(5000).unwrap());
        t.observe(0, 10_000, t0);
        assert_eq!(t.advance(t0, 0), Some(Watermark(7_999)));
        let idle = t0 + Duration::from_secs(6);
        // Window [10000, 15000) closes once the wall clock reaches 15000 + 7000.
        assert_eq!(t.advance(idle, 21_999), Some(Watermark(14_998)));
        assert!(!Watermark(14_998).closes(15_000));
        assert_eq!(t.advance(idle, 22_000), Some(Watermark(14_999)));
        assert!(Watermark(14_999).closes(15_000));
    }

    #[test]
    fn a_partition_not_known_caught_up_neither_idles_nor_lets_the_wall_clock_close() {
        let t0 = Instant::now();
        let mut t = WatermarkTracker::new(rules(), WindowSpec::new(5000).unwrap());
        t.observe(0, 10_000, t0);
        t.observe(1, 10_000, t0);
        assert_eq!(t.advance(t0, 0), Some(Watermark(7_999)));
        // The broker stopped answering for partition 1: silence is not idleness.
        t.set_caught_up(1, false);
        let silent = t0 + Duration::from_secs(60);
        assert!(t.is_idle(0, silent));
        assert!(!t.is_idle(1, silent));
        assert_eq!(t.advance(silent, 1_000_000), None, "nothing closes");
        assert_eq!(
            t.advance_partitions(silent, 1_000_000),
            vec![(0, Watermark(992_999)), (1, Watermark(7_999))],
            "partitioned output: only the idle partition follows the wall clock"
        );
        // It answers again, nothing waits: idle at once, and the wall clock closes.
        t.set_caught_up(1, true);
        assert!(t.is_idle(1, silent));
        assert_eq!(t.advance(silent, 1_000_000), Some(Watermark(992_999)));
    }

    #[test]
    fn all_idle_before_any_data_emits_nothing() {
        let t0 = Instant::now();
        let mut t = WatermarkTracker::new(rules(), WindowSpec::new(5000).unwrap());
        t.assign(0, t0);
        t.assign(1, t0);
        assert_eq!(t.advance(t0 + Duration::from_secs(60), 1_000_000), None);
    }

    #[test]
    fn all_idle_close_can_be_disabled() {
        let t0 = Instant::now();
        let mut t = WatermarkTracker::new(
            WatermarkRules {
                all_idle_close_after: None,
                ..rules()
            },
            WindowSpec::new(5000).unwrap(),
        );
        t.observe(0, 10_000, t0);
        t.advance(t0, 0);
        assert_eq!(t.advance(t0 + Duration::from_secs(60), i64::MAX / 2), None);
    }

    #[test]
    fn observe_reports_when_a_window_end_is_reached() {
        let t0 = Instant::now();
        let mut t = WatermarkTracker::new(rules(), WindowSpec::new(5000).unwrap());
        assert!(t.observe(0, 6_000, t0), "first event");
        assert!(
            !t.observe(0, 6_999, t0),
            "watermark 4998 closes nothing new"
        );
        assert!(t.observe(0, 7_000, t0), "watermark 4999 closes [0, 5000)");
        assert!(!t.observe(0, 3_000, t0), "older events never advance");
        assert!(!t.observe(0, 11_999, t0));
        assert!(t.observe(0, 12_000, t0));
    }

    #[test]
    fn revoked_partition_stops_holding_back() {
        let t0 = Instant::now();
        let mut t = WatermarkTracker::new(rules(), WindowSpec::new(5000).unwrap());
        t.observe(0, 10_000, t0);
        t.assign(1, t0);
        assert_eq!(t.advance(t0, 0), None);
        t.revoke(1);
        assert_eq!(t.advance(t0, 0), Some(Watermark(7_999)));
    }
}
