//! The emitter stage: window batches in, requests out, checkpoints acknowledged.
//!
//! Each batch's samples are split by series over `shards` shard tasks (a
//! series always goes to the same shard, by a hash of its labels), which batch
//! and send them (see [`crate::shard`]): up to `shards` requests in flight,
//! each series in timestamp order. A batch's checkpoint is published only
//! after every one of its samples, and of every earlier batch, is written or
//! dropped and counted (see [`crate::ack`]): that is what lets the source
//! commit offsets without losing data.

use std::sync::Arc;
use std::time::Duration;

use fleet_core::telemetry::Readiness;
use fleet_core::{
    Checkpoint, DeadLetterCause, DeadLetterQueue, FiringLog, RevocationFence, WindowBatch,
};
use tokio::sync::{mpsc, watch};
use tokio::task::JoinSet;

use crate::ack::Acknowledger;
use crate::config::{RemoteWriteConfig, MAX_SHARDS};
use crate::emitter::Emitter;
use crate::encode::SeriesTable;
use crate::metrics::RemoteWriteMetrics;
use crate::shard::{Shard, ShardWork};
use crate::sigv4::SigV4Signer;
use crate::RemoteWriteError;

/// Runs the emitter stage until `input` closes, then returns once everything
/// received is delivered.
///
/// Checkpoints are published on `acks` (the source commits offsets from
/// them); the endpoint's health is the `remote_write` condition of
/// `readiness`. In the default `block` mode a failing endpoint stops the
/// shards, whose queues fill, which stops this loop, which fills the channel
/// and pauses the source: backpressure, nothing lost. If the task is aborted
/// instead, the checkpoints of undelivered batches were never published, so
/// Kafka replays them. Errors on a configuration the endpoint cannot be
/// reached with, and if a shard task panics. Names the reference demo's
/// metrics; the service names its plan's with [`run_fenced`].
pub async fn run(
    cfg: RemoteWriteConfig,
    input: mpsc::Receiver<WindowBatch>,
    acks: watch::Sender<Option<Checkpoint>>,
    metrics: RemoteWriteMetrics,
    readiness: Arc<Readiness>,
) -> Result<(), RemoteWriteError> {
    let fence = Arc::new(RevocationFence::default());
    let plan = Arc::new(fleet_plan::MetricPlan::reference_demo());
    run_fenced(
        cfg, plan, input, acks, metrics, readiness, fence, None, None,
    )
    .await
}

/// [`run`], sharing `fence` with a Kafka source: batches built before the
/// source's last partition revocation are dropped unsent (the partitions'
/// new owner rebuilds their windows), and the count of batches in flight is
/// kept there for the source to wait on (see [`RevocationFence`]). Samples
/// refused for good go to `letters` when it keeps them, and are
/// acknowledged once written there. With `firing`, a batch's firing points
/// are stored (by the source) before any of its samples is sent, so that a
/// replay closes its windows at the same points (see [`FiringLog`]).
#[allow(clippy::too_many_arguments)]
pub async fn run_fenced(
    cfg: RemoteWriteConfig,
    plan: Arc<fleet_plan::MetricPlan>,
    mut input: mpsc::Receiver<WindowBatch>,
    acks: watch::Sender<Option<Checkpoint>>,
    metrics: RemoteWriteMetrics,
    readiness: Arc<Readiness>,
    fence: Arc<RevocationFence>,
    letters: Option<Arc<dyn DeadLetterQueue>>,
    firing: Option<Arc<FiringLog>>,
) -> Result<(), RemoteWriteError> {
    let letters = letters.filter(|l| l.keeps(DeadLetterCause::RefusedSample));
    let mut emitter = Emitter::new(&cfg, metrics.clone())?.with_readiness(&cfg, readiness);
    if let Some(signer) = SigV4Signer::from_config(&cfg).await? {
        emitter = emitter.with_signer(Arc::new(signer));
    }
    let shard_count = cfg.shards.clamp(1, MAX_SHARDS);
    let ack = Arc::new(Acknowledger::new(acks, metrics.clone(), Arc::clone(&fence)));
    let mut queues = Vec::with_capacity(shard_count);
    let mut shards = JoinSet::new();
    for index in 0..shard_count {
        let (queue, work) = mpsc::channel(cfg.shard_queue_capacity.max(1));
        queues.push(queue);
        metrics.shard_queued(index, 0); // export every shard's gauge from the start
        let shard = Shard {
            index,
            emitter: emitter.fork(index),
            max_samples: cfg.max_samples_per_request.max(1),
            linger: Duration::from_millis(cfg.max_linger_ms),
            ack: Arc::clone(&ack),
            metrics: metrics.clone(),
            letters: letters.clone(),
        };
        shards.spawn(shard.run(work));
    }
    let mut series = SeriesTable::new(cfg.series_naming(plan));
    let mut stopped_early = false;
    'input: while let Some(mut batch) = input.recv().await {
        if fence.is_stale(batch.checkpoint.epoch) {
            metrics.superseded(batch.aggregates.len());
            continue;
        }
        if let Some(firing) = &firing {
            let points = std::mem::take(&mut batch.firing_points);
            firing.store(points, batch.checkpoint.epoch).await;
            if fence.is_stale(batch.checkpoint.epoch) {
                metrics.superseded(batch.aggregates.len());
                continue;
            }
        }
        let samples = series.window_batch(&batch);
        let seq = ack.register(samples.len(), batch.checkpoint, samples.newest_timestamp());
        for (index, part) in samples.split_by_shard(shard_count).into_iter().enumerate() {
            if part.is_empty() {
                continue;
            }
            metrics.shard_queued(index, part.len());
            let work = ShardWork { seq, samples: part };
            // Waits while the shard's queue is full: backpressure.
            if queues[index].send(work).await.is_err() {
                // The shard task is gone (it panicked): its batches are never
                // acknowledged, so Kafka replays them after the restart.
                stopped_early = true;
                break 'input;
            }
        }
    }
    drop(queues); // end of input: each shard flushes its buffer and returns
    while let Some(joined) = shards.join_next().await {
        joined.map_err(|e| RemoteWriteError::Shard(e.to_string()))?;
    }
    if stopped_early {
        return Err(RemoteWriteError::Shard(
            "a shard stopped before the end of input".into(),
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    //! The stage's ordering and acknowledgement rules, checked on its pure
    //! parts driven in random interleavings: what the tasks do, in any order
    //! the scheduler and the endpoint could produce.
    use std::collections::{BTreeMap, HashMap};

    use fleet_core::WindowAggregate;
    use fleet_testkit::oracle::Expected;
    use proptest::prelude::*;

    use super::*;
    use crate::ack::AckTracker;
    use crate::encode::SeriesNaming;
    use crate::proto::Label;
    use crate::shard::{Request, ShardBuffer};

    /// One step of the simulated run.
    #[derive(Clone, Debug)]
    enum Step {
        /// The stage takes the next window batch and hands its parts to the shards.
        Receive,
        /// A shard without a request in flight starts one of at most `max` samples.
        Send(usize),
        /// A shard's request in flight ends: written or dropped, either way done.
        Finish(usize),
    }

    fn step() -> impl Strategy<Value = Step> {
        prop_oneof![
            Just(Step::Receive),
            (0..8usize).prop_map(Step::Send),
            (0..8usize).prop_map(Step::Finish),
        ]
    }

    /// Window batches: each holds 0 to 2 windows (later batches, later
    /// windows, as the aggregator emits them), each window some of 6 groups,
    /// in a shuffled order.
    fn batches() -> impl Strategy<Value = Vec<WindowBatch>> {
        let window = proptest::collection::btree_set(0..6usize, 0..=6);
        let batch = proptest::collection::vec(window, 0..=2);
        (proptest::collection::vec(batch, 1..12), any::<u64>()).prop_map(|(batches, seed)| {
            let mut window_end = 1_764_000_000_000i64;
            let mut rng = seed;
            batches
                .into_iter()
                .enumerate()
                .map(|(n, windows)| {
                    let mut aggregates = Vec::new();
                    for groups in windows {
                        window_end += 5000;
                        for g in groups {
                            aggregates.push(aggregate(g, window_end));
                        }
                    }
                    // A cheap deterministic shuffle (xorshift): any arrival order.
                    for i in (1..aggregates.len()).rev() {
                        rng ^= rng << 13;
                        rng ^= rng >> 7;
                        rng ^= rng << 17;
                        aggregates.swap(i, (rng % (i as u64 + 1)) as usize);
                    }
                    WindowBatch {
                        vehicle_samples: Vec::new(),
                        aggregates,
                        checkpoint: Checkpoint {
                            resume_offsets: [(0, n as i64)].into(),
                            closed_through: Default::default(),
                            epoch: 0,
                        },
                        firing_points: Vec::new(),
                    }
                })
                .collect()
        })
    }

    fn aggregate(group: usize, window_end: i64) -> WindowAggregate {
        Expected::to_aggregate(&Expected {
            window_start: window_end - 5000,
            window_end,
            model: format!("model-{group}"),
            region: ["UK", "FR"][group % 2].into(),
            vehicles_in_motion: group as u64,
            warnings: 1,
            vehicles_reporting: 2,
            ic_rpm_sum: 100,
            ic_rpm_count: (group % 3) as u64, // some aggregates have no engine mean
            electric_rpm_sum: -5,
            electric_rpm_count: 1,
            events: 3,
        })
    }

    /// The simulated stage: the same parts `run` and the shard tasks use.
    struct Sim {
        shards: usize,
        max_samples: usize,
        table: SeriesTable,
        tracker: AckTracker,
        buffers: Vec<ShardBuffer>,
        in_flight: Vec<Option<Request>>,
        /// Per batch: samples in it, samples done.
        totals: Vec<(usize, usize)>,
        /// What the endpoint received, per series, in order.
        received: HashMap<Vec<Label>, Vec<i64>>,
        /// Which shard sent each series.
        owner: HashMap<Vec<Label>, usize>,
        /// Checkpoints published, in order.
        published: Vec<i64>,
    }

    impl Sim {
        fn new(shards: usize, max_samples: usize) -> Self {
            Sim {
                shards,
                max_samples,
                table: SeriesTable::new(SeriesNaming::default()),
                tracker: AckTracker::default(),
                buffers: (0..shards).map(|_| ShardBuffer::default()).collect(),
                in_flight: vec![None; shards],
                totals: Vec::new(),
                received: HashMap::new(),
                owner: HashMap::new(),
                published: Vec::new(),
            }
        }

        fn receive(&mut self, batch: WindowBatch) {
            let samples = self.table.batch(&batch.aggregates);
            let seq = self.tracker.register(
                samples.len(),
                batch.checkpoint,
                samples.newest_timestamp(),
                0,
            );
            self.totals.push((samples.len(), 0));
            let now = tokio::time::Instant::now();
            for (shard, part) in samples.split_by_shard(self.shards).into_iter().enumerate() {
                self.buffers[shard].push(seq, part, now);
            }
            self.acknowledge();
        }

        fn send(&mut self, shard: usize) {
            if self.in_flight[shard].is_none() {
                self.in_flight[shard] = self.buffers[shard].take(self.max_samples);
            }
        }

        fn finish(&mut self, shard: usize) {
            let Some((request, parts)) = self.in_flight[shard].take() else {
                return;
            };
            for ts in request.to_write_request().timeseries {
                let owner = *self.owner.entry(ts.labels.clone()).or_insert(shard);
                assert_eq!(owner, shard, "{:?} sent by two shards", ts.labels);
                let times = self.received.entry(ts.labels).or_default();
                for s in ts.samples {
                    assert!(
                        times.last().is_none_or(|&t| t < s.timestamp),
                        "series went back from {times:?} to {}",
                        s.timestamp
                    );
                    times.push(s.timestamp);
                }
            }
            assert_eq!(parts.iter().map(|p| p.1).sum::<usize>(), request.len());
            for (seq, n) in parts {
                self.totals[seq as usize].1 += n;
                self.tracker.done(seq, n);
            }
            self.acknowledge();
        }

        fn acknowledge(&mut self) {
            if let Some(done) = self.tracker.acknowledge() {
                let k = done.checkpoint.resume_offsets[&0];
                // Every sample of batch k and of all before it is done.
                for (seq, (total, done)) in self.totals.iter().enumerate().take(k as usize + 1) {
                    assert_eq!(
                        total, done,
                        "batch {seq} acknowledged with {total} - {done} samples pending"
                    );
                }
                assert!(self.published.last().is_none_or(|&p| p < k));
                self.published.push(k);
            }
        }
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(300))]

        #[test]
        fn per_series_order_and_acknowledgement_hold_in_any_interleaving(
            batches in batches(),
            shards in 1..=6usize,
            max_samples in 1..=40usize,
            steps in proptest::collection::vec(step(), 0..120),
        ) {
            let mut sim = Sim::new(shards, max_samples);
            let mut input = batches.clone().into_iter();
            for step in steps {
                match step {
                    Step::Receive => if let Some(b) = input.next() { sim.receive(b) },
                    Step::Send(shard) => sim.send(shard % shards),
                    Step::Finish(shard) => sim.finish(shard % shards),
                }
            }
            // End of input: everything received, every shard drained.
            for b in input {
                sim.receive(b);
            }
            for shard in 0..shards {
                sim.finish(shard);
                while !sim.buffers[shard].is_empty() {
                    sim.send(shard);
                    sim.finish(shard);
                }
            }
            prop_assert_eq!(sim.published.last().copied(), Some(batches.len() as i64 - 1));
            prop_assert_eq!(sim.tracker.in_flight(), 0);
            // Everything arrived: each series' samples are those of the input.
            let mut expected: BTreeMap<Vec<Label>, Vec<i64>> = BTreeMap::new();
            for b in &batches {
                for ts in crate::encode(&b.aggregates, &SeriesNaming::default()).timeseries {
                    expected.entry(ts.labels).or_default().extend(ts.samples.iter().map(|s| s.timestamp));
                }
            }
            let received: BTreeMap<_, _> = sim.received.into_iter().collect();
            prop_assert_eq!(received, expected);
        }
    }
}
