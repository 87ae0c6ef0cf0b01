//! The emitter stage: window batches in, requests out, checkpoints acknowledged.
//!
//! Batches are handled strictly in arrival order, one request in flight, so
//! every series reaches the endpoint in timestamp order. A batch's checkpoint
//! is published only after each of its samples is written or dropped and
//! counted: that is what lets the source commit offsets without losing data.
//! Small batches already waiting in the channel are merged (up to the request
//! size limit) to save requests; the checkpoint published is then the last one.

use fleet_core::{Checkpoint, TimestampMs, WindowAggregate, WindowBatch};
use tokio::sync::{mpsc, watch};

use crate::bisect::Delivery;
use crate::config::RemoteWriteConfig;
use crate::emitter::Emitter;
use crate::encode::{samples_in, RemoteWriteBatch};
use crate::metrics::RemoteWriteMetrics;
use crate::RemoteWriteError;

/// Runs the emitter stage until `input` closes, then returns once everything
/// received is delivered.
///
/// After each delivered batch its checkpoint is published on `acks` (the
/// source commits offsets from it). In the default `block` mode a failing
/// endpoint stops this loop, which fills the channel and pauses the source:
/// backpressure, nothing lost. If the task is aborted instead, the
/// checkpoints of undelivered batches were never published, so Kafka replays
/// them. Errors only on a configuration the endpoint cannot be reached with.
pub async fn run(
    cfg: RemoteWriteConfig,
    mut input: mpsc::Receiver<WindowBatch>,
    acks: watch::Sender<Option<Checkpoint>>,
    metrics: RemoteWriteMetrics,
) -> Result<(), RemoteWriteError> {
    let naming = cfg.series_naming();
    let max_samples = cfg.max_samples_per_request.max(1);
    let mut emitter = Emitter::new(&cfg, metrics.clone())?;
    let mut carried: Option<WindowBatch> = None;
    loop {
        let first = match carried.take() {
            Some(batch) => batch,
            None => match input.recv().await {
                Some(batch) => batch,
                None => break,
            },
        };
        let mut merged = MergedBatches::new(first);
        // Merge only what is already waiting: never wait for more.
        while merged.samples < max_samples {
            match input.try_recv() {
                Ok(next) if merged.fits(&next, max_samples) => merged.push(next),
                Ok(next) => {
                    carried = Some(next);
                    break;
                }
                Err(_) => break,
            }
        }
        let samples = RemoteWriteBatch::from_aggregates(&merged.aggregates, &naming);
        let mut delivery = Delivery::default();
        for request in samples.chunks(max_samples) {
            delivery.absorb(emitter.deliver(request).await);
        }
        metrics.batch_delivered(
            merged.batches,
            delivery.written,
            delivery.dropped_total(),
            merged.newest_window_end(),
        );
        acks.send_replace(Some(merged.checkpoint));
    }
    Ok(())
}

/// Consecutive window batches handled as one.
#[derive(Debug)]
struct MergedBatches {
    aggregates: Vec<WindowAggregate>,
    /// The last batch's: it covers every earlier one.
    checkpoint: Checkpoint,
    samples: usize,
    batches: usize,
}

impl MergedBatches {
    fn new(batch: WindowBatch) -> Self {
        MergedBatches {
            samples: batch.aggregates.iter().map(samples_in).sum(),
            aggregates: batch.aggregates,
            checkpoint: batch.checkpoint,
            batches: 1,
        }
    }

    /// Whether `next` can join without exceeding `max_samples`.
    fn fits(&self, next: &WindowBatch, max_samples: usize) -> bool {
        let more: usize = next.aggregates.iter().map(samples_in).sum();
        self.samples + more <= max_samples
    }

    fn push(&mut self, next: WindowBatch) {
        self.samples += next.aggregates.iter().map(samples_in).sum::<usize>();
        self.aggregates.extend(next.aggregates);
        self.checkpoint = next.checkpoint;
        self.batches += 1;
    }

    fn newest_window_end(&self) -> Option<TimestampMs> {
        self.aggregates.iter().map(|a| a.window_end).max()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::encode::tests::aggregate;

    fn batch(ends: &[i64], offset: i64) -> WindowBatch {
        WindowBatch {
            aggregates: ends.iter().map(|&e| aggregate("A", "UK", e)).collect(),
            checkpoint: Checkpoint {
                resume_offsets: [(0, offset)].into(),
                closed_through: ends.iter().copied().max(),
            },
        }
    }

    #[test]
    fn merging_keeps_the_last_checkpoint_and_counts_samples() {
        let mut m = MergedBatches::new(batch(&[5000], 10));
        assert_eq!(m.samples, 9);
        assert!(m.fits(&batch(&[10_000], 20), 18));
        assert!(!m.fits(&batch(&[10_000], 20), 17));
        m.push(batch(&[10_000], 20));
        m.push(batch(&[], 30));
        assert_eq!((m.samples, m.batches), (18, 3));
        assert_eq!(m.checkpoint.resume_offsets[&0], 30);
        assert_eq!(m.newest_window_end(), Some(10_000));
    }
}
