//! Assembles a source's output: event batches with watermarks placed exactly
//! where they take effect.
//!
//! Lateness is decided per event ("its window had already fired when it
//! arrived"), so a watermark that closes a window must sit between the event
//! that raised it and the next one, wherever a batch boundary would otherwise
//! fall. The batcher seals the current batch at exactly those events — a few
//! times per window length — which makes the results independent of how the
//! input happened to be batched. Every source (Kafka, file, generator) feeds
//! its events through one.

use std::collections::VecDeque;

use tokio::time::Instant;

use crate::{
    DecodeError, DecodeErrorKind, Msg, OutputMode, RecordBatch, Scope, SourceBatch, TimestampMs,
    WatermarkTracker,
};

/// Batches plus watermarks, ready to send in order.
#[derive(Debug)]
pub struct SourceBatcher {
    tracker: WatermarkTracker,
    current: SourceBatch,
    ready: VecDeque<Msg<SourceBatch>>,
    max_batch: usize,
    /// Whose watermarks are sent: the pipeline's, or each partition's.
    mode: OutputMode,
}

impl SourceBatcher {
    /// A batcher sealing batches at `max_batch` events at the latest, and
    /// sending the watermarks of `mode`'s scopes: the pipeline's
    /// ([`Scope::All`]) in the single output mode, each partition's own in
    /// the partitioned one.
    pub fn new(tracker: WatermarkTracker, max_batch: usize, mode: OutputMode) -> Self {
        SourceBatcher {
            tracker,
            current: RecordBatch::default(),
            ready: VecDeque::new(),
            max_batch: max_batch.max(1),
            mode,
        }
    }

    /// Whose watermarks this batcher sends.
    pub fn output_mode(&self) -> OutputMode {
        self.mode
    }

    /// The watermark tracker, for assignment changes and backpressure.
    pub fn tracker_mut(&mut self) -> &mut WatermarkTracker {
        &mut self.tracker
    }

    /// The watermark tracker.
    pub fn tracker(&self) -> &WatermarkTracker {
        &self.tracker
    }

    /// Adds one record: `append` appends it to the current batch (as
    /// [`Decoder::decode_into`](crate::decode::Decoder::decode_into) does), or
    /// appends nothing and fails, which changes nothing here. A record whose
    /// time is further ahead of `wall_ms` than the rules allow is taken out
    /// again and refused ([`DecodeErrorKind::TooFarAhead`]).
    pub fn push_with(
        &mut self,
        now: Instant,
        wall_ms: TimestampMs,
        append: impl FnOnce(&mut RecordBatch) -> Result<(), DecodeError>,
    ) -> Result<(), DecodeError> {
        let before = self.current.len();
        append(&mut self.current)?;
        let Some(record) = self.current.records.get(before) else {
            return Ok(());
        };
        if let Some(ahead) = self.tracker.rules().max_ahead_ms {
            if record.timestamp > wall_ms.saturating_add(ahead) {
                let refusal = DecodeError::new(
                    DecodeErrorKind::TooFarAhead,
                    format!(
                        "event time {} is more than {ahead} ms ahead of the wall clock ({wall_ms})",
                        record.timestamp
                    ),
                );
                let (labels_at, values_at) = (record.labels_at as usize, record.values_at as usize);
                self.current.truncate(before, labels_at, values_at);
                return Err(refusal);
            }
        }
        let reached_window_end = self
            .tracker
            .observe(record.partition, record.timestamp, now);
        if reached_window_end {
            self.advance(now, wall_ms);
        } else if self.current.len() >= self.max_batch {
            self.seal();
        }
        Ok(())
    }

    /// Ends the current batch (if any) so it can be sent.
    pub fn seal(&mut self) {
        if !self.current.is_empty() {
            let batch = std::mem::replace(
                &mut self.current,
                RecordBatch::with_capacity(self.max_batch.min(4096)),
            );
            self.ready.push_back(Msg::Data(batch));
        }
    }

    /// Seals the current batch and queues every watermark of the mode's
    /// scopes that moved (for example because a partition turned idle).
    pub fn advance(&mut self, now: Instant, wall_ms: TimestampMs) {
        self.seal();
        match self.mode {
            OutputMode::Single => {
                if let Some(w) = self.tracker.advance(now, wall_ms) {
                    self.ready.push_back(Msg::Watermark(Scope::All, w));
                }
            }
            OutputMode::Partitioned => {
                for (p, w) in self.tracker.advance_partitions(now, wall_ms) {
                    self.ready.push_back(Msg::Watermark(Scope::Partition(p), w));
                }
            }
        }
    }

    /// Queues a message that must follow everything pushed so far.
    pub fn push_msg(&mut self, msg: Msg<SourceBatch>) {
        self.seal();
        self.ready.push_back(msg);
    }

    /// The next message to send.
    pub fn pop(&mut self) -> Option<Msg<SourceBatch>> {
        self.ready.pop_front()
    }

    /// Messages ready to send.
    pub fn ready_len(&self) -> usize {
        self.ready.len()
    }

    /// Drops everything not sent yet (on shutdown: it is replayed after a restart).
    pub fn discard(&mut self) {
        self.current.clear();
        self.ready.clear();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{Record, SmallStr, Watermark, WatermarkRules, WindowSpec};

    fn push(b: &mut SourceBatcher, partition: i32, offset: i64, ts: i64, now: Instant) {
        let appended = push_at(b, partition, offset, ts, now, 0);
        assert!(appended.is_ok());
    }

    fn push_at(
        b: &mut SourceBatcher,
        partition: i32,
        offset: i64,
        ts: i64,
        now: Instant,
        wall_ms: i64,
    ) -> Result<(), DecodeError> {
        b.push_with(now, wall_ms, |batch| {
            batch.records.push(Record {
                partition,
                offset,
                vehicle_id: SmallStr::new("V"),
                timestamp: ts,
                labels_at: 0,
                values_at: 0,
                values_len: 0,
            });
            Ok(())
        })
    }

    #[test]
    fn an_event_too_far_ahead_of_the_wall_clock_is_refused_and_taken_out() {
        let tracker =
            WatermarkTracker::new(WatermarkRules::defaults(), WindowSpec::new(5000).unwrap());
        let mut b = SourceBatcher::new(tracker, 100, OutputMode::Single);
        let (now, wall) = (Instant::now(), 1_764_000_000_000);
        assert!(push_at(&mut b, 0, 0, wall + 3_600_000, now, wall).is_ok());
        let refused = push_at(&mut b, 0, 1, wall + 3_600_001, now, wall).unwrap_err();
        assert_eq!(refused.kind, DecodeErrorKind::TooFarAhead);
        assert!(push_at(&mut b, 0, 2, wall - 10, now, wall).is_ok());
        b.seal();
        let offsets: Vec<i64> = std::iter::from_fn(|| b.pop())
            .filter_map(|m| m.into_data::<()>().ok())
            .flat_map(|batch| batch.records.iter().map(|r| r.offset).collect::<Vec<_>>())
            .collect();
        assert_eq!(offsets, [0, 2], "the refused record is gone");
        // A bounded input has no wall clock to be ahead of.
        let bounded = WatermarkRules::defaults().bounded();
        let tracker = WatermarkTracker::new(bounded, WindowSpec::new(5000).unwrap());
        let mut b = SourceBatcher::new(tracker, 100, OutputMode::Single);
        assert!(push_at(&mut b, 0, 0, wall, now, 0).is_ok());
    }

    fn drain(b: &mut SourceBatcher) -> Vec<String> {
        std::iter::from_fn(|| b.pop())
            .map(|m| match m {
                Msg::Data(d) => format!(
                    "data{:?}",
                    d.records.iter().map(|e| e.offset).collect::<Vec<_>>()
                ),
                Msg::Watermark(Scope::All, Watermark(w)) => format!("wm{w}"),
                Msg::Watermark(Scope::Partition(p), Watermark(w)) => format!("p{p}wm{w}"),
                Msg::Rewind {
                    written_through, ..
                } => format!("rewind{written_through:?}"),
            })
            .collect()
    }

    #[test]
    fn watermarks_follow_exactly_the_event_that_closes_a_window() {
        let tracker =
            WatermarkTracker::new(WatermarkRules::defaults(), WindowSpec::new(5000).unwrap());
        let mut b = SourceBatcher::new(tracker, 100, OutputMode::Single);
        let now = Instant::now();
        for (o, ts) in [
            (0, 1000),
            (1, 6000),
            (2, 6999),
            (3, 7000),
            (4, 4000),
            (5, 7100),
        ] {
            push(&mut b, 0, o, ts, now);
        }
        b.seal();
        assert_eq!(
            drain(&mut b),
            vec![
                "data[0]",
                "wm-1001",
                "data[1]",
                "wm3999",
                "data[2, 3]",
                "wm4999",
                "data[4, 5]"
            ]
        );
    }

    #[test]
    fn batches_are_capped() {
        let tracker =
            WatermarkTracker::new(WatermarkRules::defaults(), WindowSpec::new(5000).unwrap());
        let mut b = SourceBatcher::new(tracker, 2, OutputMode::Single);
        let now = Instant::now();
        push(&mut b, 0, 0, 1000, now);
        for o in 1..5 {
            push(&mut b, 0, o, 1000, now);
        }
        b.seal();
        assert_eq!(
            drain(&mut b),
            vec!["data[0]", "wm-1001", "data[1, 2]", "data[3, 4]"]
        );
    }

    #[test]
    fn the_partitioned_mode_sends_each_partitions_own_watermark() {
        let tracker =
            WatermarkTracker::new(WatermarkRules::defaults(), WindowSpec::new(5000).unwrap());
        let mut b = SourceBatcher::new(tracker, 100, OutputMode::Partitioned);
        let now = Instant::now();
        push(&mut b, 0, 0, 1000, now);
        push(&mut b, 1, 0, 8000, now);
        b.seal();
        assert_eq!(
            drain(&mut b),
            vec!["data[0]", "p0wm-1001", "data[0]", "p1wm5999"]
        );
    }
}
