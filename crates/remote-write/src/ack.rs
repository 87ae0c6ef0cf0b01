//! Acknowledging window batches in order while shards finish out of order.
//!
//! Every batch gets a sequence number when the stage takes it, and the number
//! of its samples. Shards report samples done (written, or dropped and
//! counted) per batch as their requests end, in any order across shards. A
//! batch's checkpoint is published only when it and every earlier batch have
//! no sample left: the completion watermark. Since a checkpoint covers all
//! before it, only the newest of a completed run is published.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex};

use fleet_core::telemetry::wall_clock_ms;
use fleet_core::{Checkpoint, RevocationFence, TimestampMs};
use tokio::sync::watch;

use crate::metrics::RemoteWriteMetrics;

/// A batch's place in the order the stage received them.
pub type BatchSeq = u64;

/// A batch whose samples are not all done yet, or whose predecessors are not.
#[derive(Debug)]
struct PendingBatch {
    remaining: usize,
    checkpoint: Checkpoint,
    newest_window_end: Option<TimestampMs>,
    /// When the stage received it, wall-clock epoch ms.
    received_ms: i64,
}

/// What completing some samples made publishable.
#[derive(Debug, PartialEq)]
pub struct Acknowledged {
    /// The newest completed batch's checkpoint: publish it.
    pub checkpoint: Checkpoint,
    /// How many batches it completes.
    pub batches: usize,
    /// The newest window among them, if they had any.
    pub newest_window_end: Option<TimestampMs>,
}

/// The completion watermark over batches in flight (pure bookkeeping).
#[derive(Debug, Default)]
pub struct AckTracker {
    /// Batches not yet acknowledged, oldest first; the first has sequence `first_seq`.
    pending: VecDeque<PendingBatch>,
    first_seq: BatchSeq,
}

impl AckTracker {
    /// Registers the next batch, of `samples` samples; returns its number.
    pub fn register(
        &mut self,
        samples: usize,
        checkpoint: Checkpoint,
        newest_window_end: Option<TimestampMs>,
        received_ms: i64,
    ) -> BatchSeq {
        let seq = self.first_seq + self.pending.len() as BatchSeq;
        self.pending.push_back(PendingBatch {
            remaining: samples,
            checkpoint,
            newest_window_end,
            received_ms,
        });
        seq
    }

    /// `samples` samples of batch `seq` are written or dropped. Unknown or
    /// already acknowledged batches are ignored.
    pub fn done(&mut self, seq: BatchSeq, samples: usize) {
        let Some(index) = seq.checked_sub(self.first_seq) else {
            return;
        };
        if let Some(batch) = usize::try_from(index)
            .ok()
            .and_then(|i| self.pending.get_mut(i))
        {
            batch.remaining = batch.remaining.saturating_sub(samples);
        }
    }

    /// Removes the batches now complete along with all before them, and
    /// returns the newest one's checkpoint; `None` when the oldest batch is
    /// still waiting.
    pub fn acknowledge(&mut self) -> Option<Acknowledged> {
        let mut done: Option<Acknowledged> = None;
        while self.pending.front().is_some_and(|b| b.remaining == 0) {
            let Some(batch) = self.pending.pop_front() else {
                break;
            };
            self.first_seq += 1;
            let newest = match &done {
                Some(d) => d.newest_window_end.max(batch.newest_window_end),
                None => batch.newest_window_end,
            };
            let batches = done.as_ref().map_or(0, |d| d.batches) + 1;
            done = Some(Acknowledged {
                checkpoint: batch.checkpoint,
                batches,
                newest_window_end: newest,
            });
        }
        done
    }

    /// When the oldest batch not yet acknowledged was received (wall-clock
    /// epoch ms): its samples, or an earlier batch's, are still unsent.
    pub fn oldest_received_ms(&self) -> Option<i64> {
        self.pending.front().map(|b| b.received_ms)
    }

    /// Batches not yet acknowledged.
    pub fn in_flight(&self) -> usize {
        self.pending.len()
    }
}

/// The tracker shared by the stage and its shards, publishing each
/// acknowledged checkpoint on the channel the source commits from.
#[derive(Debug)]
pub(crate) struct Acknowledger {
    /// Publishing happens under this lock too, so that checkpoints reach
    /// the channel in order even when two shards complete at once.
    tracker: Mutex<AckTracker>,
    acks: watch::Sender<Option<Checkpoint>>,
    metrics: RemoteWriteMetrics,
    /// Where the count of batches in flight is kept for the source.
    fence: Arc<RevocationFence>,
}

impl Acknowledger {
    pub(crate) fn new(
        acks: watch::Sender<Option<Checkpoint>>,
        metrics: RemoteWriteMetrics,
        fence: Arc<RevocationFence>,
    ) -> Self {
        Acknowledger {
            tracker: Mutex::new(AckTracker::default()),
            acks,
            metrics,
            fence,
        }
    }

    /// Registers the next batch (see [`AckTracker::register`]); an empty one
    /// may be acknowledged at once.
    pub(crate) fn register(
        &self,
        samples: usize,
        checkpoint: Checkpoint,
        newest_window_end: Option<TimestampMs>,
    ) -> BatchSeq {
        self.update(|t| t.register(samples, checkpoint, newest_window_end, wall_clock_ms()))
    }

    /// The samples of one request are done: `parts` counts them per batch.
    pub(crate) fn done(&self, parts: &[(BatchSeq, usize)]) {
        self.update(|t| {
            for &(seq, samples) in parts {
                t.done(seq, samples);
            }
        });
    }

    fn update<R>(&self, change: impl FnOnce(&mut AckTracker) -> R) -> R {
        // A poisoned lock means a shard panicked while holding it; the
        // tracker is a plain counter table, still consistent, so go on.
        let mut tracker = self.tracker.lock().unwrap_or_else(|p| p.into_inner());
        let result = change(&mut tracker);
        if let Some(done) = tracker.acknowledge() {
            self.acks.send_replace(Some(done.checkpoint));
            self.metrics
                .batches_acknowledged(done.batches, done.newest_window_end);
        }
        self.metrics.oldest_unsent(tracker.oldest_received_ms());
        self.fence.set_pending(tracker.in_flight());
        result
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn checkpoint(offset: i64) -> Checkpoint {
        Checkpoint {
            resume_offsets: [(0, offset)].into(),
            closed_through: Default::default(),
            epoch: 0,
        }
    }

    #[test]
    fn acknowledges_only_a_completed_prefix() {
        let mut t = AckTracker::default();
        let a = t.register(5, checkpoint(10), Some(5000), 1);
        let b = t.register(3, checkpoint(20), Some(10_000), 2);
        let c = t.register(0, checkpoint(30), None, 3);
        assert_eq!((a, b, c), (0, 1, 2));
        t.done(b, 3);
        assert_eq!(t.acknowledge(), None, "a is not done");
        assert_eq!(t.oldest_received_ms(), Some(1));
        t.done(a, 4);
        assert_eq!(t.acknowledge(), None);
        t.done(a, 1);
        assert_eq!(
            t.acknowledge(),
            Some(Acknowledged {
                checkpoint: checkpoint(30),
                batches: 3,
                newest_window_end: Some(10_000),
            }),
            "the empty batch c follows at once"
        );
        assert_eq!((t.in_flight(), t.oldest_received_ms()), (0, None));
        assert_eq!(t.acknowledge(), None);
        t.done(a, 1); // late or duplicate reports are ignored
        let d = t.register(2, checkpoint(40), Some(15_000), 4);
        assert_eq!(d, 3);
        t.done(d, 2);
        assert_eq!(t.acknowledge().map(|a| a.checkpoint), Some(checkpoint(40)));
    }

    #[test]
    fn an_empty_first_batch_is_acknowledged_at_once() {
        let mut t = AckTracker::default();
        t.register(0, checkpoint(1), None, 0);
        assert_eq!(t.acknowledge().map(|a| a.batches), Some(1));
    }
}
