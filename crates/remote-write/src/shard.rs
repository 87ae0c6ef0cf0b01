//! One shard: its series' samples, batched into requests, sent one at a time.
//!
//! The stage hands each shard the samples of its series, batch by batch,
//! through a bounded queue. The shard appends them to a [`ShardBuffer`] and
//! sends a request when `max_samples_per_request` samples are waiting, or when
//! the oldest has waited `max_linger_ms`, or at the end of input. The next
//! request starts only after the previous one is done (written, or dropped
//! and counted), and the buffer is first in, first out, so a series — which
//! lives in exactly one shard — reaches the endpoint in timestamp order.
//! While a request is being retried the shard takes nothing from its queue;
//! the queue fills and the stage waits: backpressure, bounded memory.
//! Samples the endpoint refuses for good go to the dead-letter topic when it
//! keeps them, and count as done only once written there.

use std::collections::VecDeque;
use std::sync::Arc;
use std::time::Duration;

use fleet_core::{DeadLetter, DeadLetterCause, DeadLetterQueue};
use tokio::sync::mpsc;
use tokio::time::Instant;

use crate::ack::{Acknowledger, BatchSeq};
use crate::emitter::Emitter;
use crate::encode::RemoteWriteBatch;
use crate::metrics::{DropReason, RemoteWriteMetrics};

/// The samples of one window batch for one shard.
#[derive(Debug)]
pub(crate) struct ShardWork {
    pub(crate) seq: BatchSeq,
    pub(crate) samples: RemoteWriteBatch,
}

/// Samples waiting for a request, oldest first, with the batch each came from.
#[derive(Debug, Default)]
pub struct ShardBuffer {
    samples: RemoteWriteBatch,
    /// Per batch, in order: its number, how many of its samples are waiting,
    /// and when they arrived.
    parts: VecDeque<(BatchSeq, usize, Instant)>,
}

/// A request's samples and how many of them belong to each batch.
pub type Request = (RemoteWriteBatch, Vec<(BatchSeq, usize)>);

impl ShardBuffer {
    /// Appends batch `seq`'s `samples`, arrived at `now`.
    pub fn push(&mut self, seq: BatchSeq, samples: RemoteWriteBatch, now: Instant) {
        if samples.is_empty() {
            return;
        }
        self.parts.push_back((seq, samples.len(), now));
        self.samples.append(samples);
    }

    /// Samples waiting.
    pub fn len(&self) -> usize {
        self.samples.len()
    }

    /// Whether nothing is waiting.
    pub fn is_empty(&self) -> bool {
        self.samples.is_empty()
    }

    /// When the oldest waiting sample has waited `linger`.
    pub fn deadline(&self, linger: Duration) -> Option<Instant> {
        self.parts.front().map(|(_, _, arrived)| *arrived + linger)
    }

    /// The oldest `max` samples (at least one) as a request; `None` when empty.
    pub fn take(&mut self, max: usize) -> Option<Request> {
        if self.is_empty() {
            return None;
        }
        let batch = self.samples.take_front(max.max(1));
        let mut left = batch.len();
        let mut parts = Vec::new();
        while left > 0 {
            let Some(front) = self.parts.front_mut() else {
                break;
            };
            let n = front.1.min(left);
            parts.push((front.0, n));
            front.1 -= n;
            left -= n;
            if front.1 == 0 {
                self.parts.pop_front();
            }
        }
        Some((batch, parts))
    }
}

/// What a shard task needs.
#[derive(Debug)]
pub(crate) struct Shard {
    pub(crate) index: usize,
    pub(crate) emitter: Emitter,
    pub(crate) max_samples: usize,
    pub(crate) linger: Duration,
    pub(crate) ack: Arc<Acknowledger>,
    pub(crate) metrics: RemoteWriteMetrics,
    /// Where refused samples go, when they are kept.
    pub(crate) letters: Option<Arc<dyn DeadLetterQueue>>,
}

impl Shard {
    /// Runs until `queue` closes and every sample taken from it is done.
    pub(crate) async fn run(mut self, mut queue: mpsc::Receiver<ShardWork>) {
        let mut buffer = ShardBuffer::default();
        loop {
            while buffer.len() >= self.max_samples {
                self.send(&mut buffer).await;
            }
            let deadline = buffer.deadline(self.linger);
            tokio::select! {
                // What is already queued joins the buffer before a linger
                // deadline sends it: fuller requests, never a longer wait.
                biased;
                work = queue.recv() => match work {
                    Some(work) => buffer.push(work.seq, work.samples, Instant::now()),
                    None => break,
                },
                () = sleep_until(deadline) => self.send(&mut buffer).await,
            }
        }
        while !buffer.is_empty() {
            self.send(&mut buffer).await;
        }
    }

    /// Sends one request from the front of `buffer` and reports its samples done.
    async fn send(&mut self, buffer: &mut ShardBuffer) {
        let Some((batch, parts)) = buffer.take(self.max_samples) else {
            return;
        };
        let samples = batch.len();
        // Returns only when every sample is written or dropped and counted.
        let delivery = self.emitter.deliver(batch).await;
        if let Some(letters) = &self.letters {
            // The samples count as done once their letters are written.
            let receipts: Vec<_> = delivery
                .dropped_parts
                .iter()
                .flat_map(|(reason, part, answer)| refused_letters(*reason, part, answer))
                .map(|letter| letters.send(letter))
                .collect();
            for receipt in receipts {
                let _ = receipt.await;
            }
        }
        self.metrics.shard_done(self.index, samples);
        self.ack.done(&parts);
    }
}

/// One dead letter per sample of `part`, refused for `reason` with
/// `answer`: key the series name, value `{"labels", "timestamp", "value"}`.
fn refused_letters(reason: DropReason, part: &RemoteWriteBatch, answer: &str) -> Vec<DeadLetter> {
    let request = part.to_write_request();
    let mut letters = Vec::new();
    for series in &request.timeseries {
        let labels: serde_json::Map<String, serde_json::Value> = series
            .labels
            .iter()
            .map(|l| (l.name.clone(), serde_json::Value::from(l.value.as_str())))
            .collect();
        let name = labels
            .get("__name__")
            .and_then(serde_json::Value::as_str)
            .unwrap_or_default()
            .to_owned();
        for sample in &series.samples {
            let value = serde_json::json!({
                "labels": labels,
                "timestamp": sample.timestamp,
                "value": sample.value,
            });
            letters.push(DeadLetter {
                cause: DeadLetterCause::RefusedSample,
                reason: reason.as_str().to_owned(),
                detail: answer.to_owned(),
                key: name.clone().into_bytes(),
                value: value.to_string().into_bytes(),
                origin: None,
            });
        }
    }
    letters
}

/// Sleeps until `deadline`, or forever without one.
async fn sleep_until(deadline: Option<Instant>) {
    match deadline {
        Some(deadline) => tokio::time::sleep_until(deadline).await,
        None => std::future::pending().await,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::encode::tests::aggregate;
    use crate::encode::SeriesNaming;

    fn samples(windows: &[i64]) -> RemoteWriteBatch {
        let aggregates: Vec<_> = windows.iter().map(|&w| aggregate("A", "UK", w)).collect();
        RemoteWriteBatch::from_aggregates(&aggregates, &SeriesNaming::default())
    }

    #[test]
    fn each_refused_sample_is_one_letter_naming_its_series_and_reason() {
        let part = samples(&[5000, 10_000]);
        let letters = refused_letters(DropReason::OutOfOrder, &part, "out of order sample");
        assert_eq!(letters.len(), part.len());
        for letter in &letters {
            assert_eq!(letter.cause, DeadLetterCause::RefusedSample);
            assert_eq!(letter.reason, "out_of_order");
            assert_eq!(letter.detail, "out of order sample");
            assert_eq!(letter.origin, None);
            let value: serde_json::Value = serde_json::from_slice(&letter.value).unwrap();
            let name = value["labels"]["__name__"].as_str().unwrap();
            assert_eq!(letter.key, name.as_bytes());
            assert_eq!(value["labels"]["region"], "UK");
            assert!([5000, 10_000].contains(&value["timestamp"].as_i64().unwrap()));
        }
        let warnings = letters.iter().filter(|l| l.key == b"warnings").count();
        assert_eq!(warnings, 2, "one per window");
    }

    #[test]
    fn requests_take_the_oldest_samples_and_name_their_batches() {
        let t0 = Instant::now();
        let mut b = ShardBuffer::default();
        assert_eq!(b.deadline(Duration::from_millis(500)), None);
        assert!(b.take(10).is_none());
        b.push(0, samples(&[5000]), t0);
        b.push(1, RemoteWriteBatch::default(), t0);
        b.push(
            2,
            samples(&[10_000, 15_000]),
            t0 + Duration::from_millis(100),
        );
        assert_eq!(b.len(), 27);
        assert_eq!(
            b.deadline(Duration::from_millis(500)),
            Some(t0 + Duration::from_millis(500))
        );
        let (first, parts) = b.take(12).unwrap();
        assert_eq!(first.len(), 12);
        assert_eq!(parts, [(0, 9), (2, 3)]);
        assert_eq!(
            b.deadline(Duration::from_millis(500)),
            Some(t0 + Duration::from_millis(600)),
            "the oldest left arrived later"
        );
        let (second, parts) = b.take(100).unwrap();
        assert_eq!((second.len(), parts), (15, vec![(2, 15)]));
        assert!(b.is_empty() && b.take(1).is_none());
        let ends: Vec<i64> = first
            .to_write_request()
            .timeseries
            .iter()
            .chain(second.to_write_request().timeseries.iter())
            .filter(|t| t.labels[0].value == "warnings")
            .flat_map(|t| t.samples.iter().map(|s| s.timestamp))
            .collect();
        assert_eq!(ends, [5000, 10_000, 15_000]);
    }
}
