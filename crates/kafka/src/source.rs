//! The source stage: a consumer-group member feeding the pipeline.
//!
//! One task owns the consumer. Each wake-up it takes every message that is
//! ready (up to `max_batch_events`), decodes them, updates the partitions'
//! watermarks and queues a batch followed by the new pipeline watermark, if
//! it moved. Malformed messages are counted by reason and skipped.
//!
//! Backpressure: when the enricher's channel is full the queued batches wait,
//! the source pauses every assigned partition and keeps polling, so it stays
//! in its group however long the sink is slow; while paused no partition
//! counts as idle. Messages re-fetched after a resume are skipped by offset.
//!
//! Offsets: the sink publishes each accepted [`Checkpoint`] on a watch
//! channel; every `commit_interval_ms` the source commits it (see
//! [`CommitLedger`]). On revoke it commits before giving the partitions up.
//! On shutdown it closes the pipeline's head, waits for the sink to drain,
//! makes a last synchronous commit and leaves the group.

use std::collections::{BTreeSet, HashMap};
use std::future::Future;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures::FutureExt;
use rdkafka::consumer::{
    BaseConsumer, CommitMode, Consumer, ConsumerContext, Rebalance, StreamConsumer,
};
use rdkafka::message::{BorrowedMessage, Message};
use rdkafka::{ClientContext, Offset, TopicPartitionList};
use tokio::sync::{mpsc, watch};
use tokio::time::Instant;

use fleet_core::telemetry::{wall_clock_ms, Readiness};
use fleet_core::{
    decode_event, Checkpoint, Msg, PartitionId, SourceBatch, SourceBatcher, SourceEvent,
    WatermarkRules, WatermarkTracker, WindowSpec,
};

use crate::commit::CommitPlan;
use crate::{CommitLedger, CommitMetadata, KafkaConfig, KafkaStageError, SourceMetrics};

/// The readiness condition this stage maintains.
pub const READY_PARTITIONS: &str = "kafka_partitions";

/// Messages ready but not yet accepted by the enricher's channel at which the
/// source counts as backpressured and stops taking messages from the consumer.
const BACKPRESSURED_AT: usize = 2;

/// How long the source may stay backpressured without polling before it
/// pauses its partitions and polls again, to stay within `max.poll.interval.ms`.
///
/// Short stalls (the normal flow control of a busy pipeline) only stop taking
/// messages, and librdkafka's bounded prefetch holds what was fetched. Pausing
/// is kept for long stalls because a resume must re-fetch from inside a
/// record batch, which some Kafka-compatible brokers (Tansu 0.6) cannot do:
/// they answer from the next batch, and the source reports the gap.
const PAUSE_AFTER: Duration = Duration::from_secs(5);

/// How long a rebalance callback may wait for the group coordinator.
const COORDINATOR_TIMEOUT: Duration = Duration::from_secs(10);

/// A partition the group gave us, with what was committed for it.
#[derive(Clone, Debug)]
struct AssignedPartition {
    partition: PartitionId,
    committed: Option<i64>,
    metadata: Option<CommitMetadata>,
}

#[derive(Clone, Debug)]
enum RebalanceEvent {
    Assigned(Vec<AssignedPartition>),
    Revoked(Vec<PartitionId>),
}

/// State the rebalance callbacks share with the task.
#[derive(Debug, Default)]
struct Shared {
    events: Vec<RebalanceEvent>,
    ledger: CommitLedger,
    /// The newest checkpoint the sink accepted.
    accepted: Option<Checkpoint>,
}

struct SourceContext {
    topic: String,
    shared: Mutex<Shared>,
    metrics: SourceMetrics,
}

impl ClientContext for SourceContext {}

impl ConsumerContext for SourceContext {
    fn pre_rebalance(&self, consumer: &BaseConsumer<Self>, rebalance: &Rebalance<'_>) {
        let Rebalance::Revoke(tpl) = rebalance else {
            return;
        };
        let revoked: BTreeSet<PartitionId> = tpl
            .elements_for_topic(&self.topic)
            .iter()
            .map(|e| e.partition())
            .collect();
        let Ok(mut shared) = self.shared.lock() else {
            return;
        };
        if let Some(plan) = shared
            .accepted
            .as_ref()
            .and_then(|cp| shared.ledger.plan(cp, &revoked))
        {
            let result = commit(consumer, &self.topic, &plan, CommitMode::Sync);
            self.metrics
                .committed(result.is_ok(), plan.offsets.len(), result.err().as_deref());
        }
        for p in &revoked {
            shared.ledger.forget(*p);
        }
        shared
            .events
            .push(RebalanceEvent::Revoked(revoked.into_iter().collect()));
    }

    fn post_rebalance(&self, consumer: &BaseConsumer<Self>, rebalance: &Rebalance<'_>) {
        let Rebalance::Assign(tpl) = rebalance else {
            if let Rebalance::Error(e) = rebalance {
                tracing::warn!(error = %e, "Rebalance error.");
            }
            return;
        };
        let mut query = TopicPartitionList::new();
        for e in tpl.elements_for_topic(&self.topic) {
            query.add_partition(&self.topic, e.partition());
        }
        let assigned = match consumer.committed_offsets(query.clone(), COORDINATOR_TIMEOUT) {
            Ok(committed) => committed
                .elements_for_topic(&self.topic)
                .iter()
                .map(|e| AssignedPartition {
                    partition: e.partition(),
                    committed: match e.offset() {
                        Offset::Offset(o) => Some(o),
                        _ => None,
                    },
                    metadata: CommitMetadata::parse(e.metadata()),
                })
                .collect(),
            Err(error) => {
                // Without the committed metadata the windows already written
                // cannot be skipped; carry on as a broker without metadata would.
                tracing::warn!(%error, "Cannot read committed offsets of the assigned partitions.");
                query
                    .elements_for_topic(&self.topic)
                    .iter()
                    .map(|e| AssignedPartition {
                        partition: e.partition(),
                        committed: None,
                        metadata: None,
                    })
                    .collect()
            }
        };
        if let Ok(mut shared) = self.shared.lock() {
            shared.events.push(RebalanceEvent::Assigned(assigned));
        }
    }
}

fn commit<C: ConsumerContext, K: Consumer<C>>(
    consumer: &K,
    topic: &str,
    plan: &CommitPlan,
    mode: CommitMode,
) -> Result<(), String> {
    let mut tpl = TopicPartitionList::new();
    let metadata = plan.metadata.map(|m| m.encode()).unwrap_or_default();
    for (p, offset) in &plan.offsets {
        let mut e = tpl.add_partition(topic, *p);
        e.set_offset(Offset::Offset(*offset))
            .map_err(|e| e.to_string())?;
        e.set_metadata(metadata.clone());
    }
    consumer.commit(&tpl, mode).map_err(|e| e.to_string())
}

/// The consumer loop's state.
struct SourceTask {
    cfg: KafkaConfig,
    consumer: StreamConsumer<SourceContext>,
    /// Decoded events and watermarks waiting for the enricher's channel.
    batcher: SourceBatcher,
    owned: BTreeSet<PartitionId>,
    /// Per partition, the next offset expected; lower ones are re-deliveries.
    next_offset: HashMap<PartitionId, i64>,
    paused: bool,
    /// Since when the pipeline has not taken what the source has ready.
    backpressured_since: Option<Instant>,
    /// Partitions resumed after a pause whose first message is still awaited,
    /// to detect brokers that skip messages on resume.
    resumed_at: HashMap<PartitionId, i64>,
    metadata_verified: bool,
    metrics: SourceMetrics,
    readiness: Arc<Readiness>,
}

/// Runs the source until `shutdown` completes, then drains and leaves the group.
pub async fn run(
    cfg: KafkaConfig,
    rules: WatermarkRules,
    window: WindowSpec,
    output: mpsc::Sender<Msg<SourceBatch>>,
    mut acks: watch::Receiver<Option<Checkpoint>>,
    metrics: SourceMetrics,
    readiness: Arc<Readiness>,
    shutdown: impl Future<Output = ()>,
) -> Result<(), KafkaStageError> {
    let context = SourceContext {
        topic: cfg.topic.clone(),
        shared: Mutex::new(Shared::default()),
        metrics: metrics.clone(),
    };
    let consumer: StreamConsumer<SourceContext> = cfg
        .consumer_config()
        .create_with_context(context)
        .map_err(KafkaStageError::Setup)?;
    consumer
        .subscribe(&[&cfg.topic])
        .map_err(KafkaStageError::Setup)?;
    readiness.require(READY_PARTITIONS, "no partitions assigned yet");
    tracing::info!(topic = %cfg.topic, group = %cfg.group_id, "Subscribed.");

    let mut task = SourceTask {
        batcher: SourceBatcher::new(WatermarkTracker::new(rules, window), cfg.max_batch_events),
        consumer,
        owned: BTreeSet::new(),
        next_offset: HashMap::new(),
        paused: false,
        backpressured_since: None,
        resumed_at: HashMap::new(),
        metadata_verified: false,
        metrics,
        readiness,
        cfg,
    };
    let mut tick = tokio::time::interval(Duration::from_millis(100));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let commit_every = Duration::from_millis(task.cfg.commit_interval_ms);
    let mut last_commit = Instant::now();
    let mut shutdown = std::pin::pin!(shutdown);

    loop {
        tokio::select! {
            biased;
            () = &mut shutdown => break,
            permit = output.reserve(), if task.batcher.ready_len() > 0 => {
                let Ok(permit) = permit else {
                    tracing::warn!("The pipeline closed before the source; stopping.");
                    break;
                };
                if let Some(msg) = task.batcher.pop() {
                    permit.send(msg);
                }
            }
            _ = tick.tick() => {
                task.on_tick(&acks);
                if last_commit.elapsed() >= commit_every {
                    task.commit_accepted(&acks, CommitMode::Async);
                    last_commit = Instant::now();
                }
            }
            received = task.consumer.recv(), if task.paused || task.backpressured_since.is_none() => {
                let first = received.map(|m| decode(&mut task.next_offset, &mut task.resumed_at, &task.metrics, &m));
                task.on_received(first);
            }
        }
    }

    // Shutdown: close the pipeline's head, let the sink drain, commit, leave.
    drop(output);
    task.batcher.discard();
    task.pause_all();
    tracing::info!("Source stopping; waiting for the sink to drain.");
    let deadline = Instant::now() + Duration::from_millis(task.cfg.drain_timeout_ms);
    loop {
        tokio::select! {
            changed = acks.changed() => if changed.is_err() { break },
            _ = tokio::time::sleep_until(deadline) => {
                tracing::warn!("The sink did not drain before kafka.drain_timeout_ms; committing what it accepted.");
                break;
            }
            // Keep serving the group while waiting.
            _ = task.consumer.recv() => {}
        }
    }
    task.commit_accepted(&acks, CommitMode::Sync);
    task.consumer.unsubscribe();
    tracing::info!("Source stopped.");
    Ok(())
}

/// Decodes one message; `None` when it was skipped (malformed or re-delivered).
fn decode(
    next_offset: &mut HashMap<PartitionId, i64>,
    resumed_at: &mut HashMap<PartitionId, i64>,
    metrics: &SourceMetrics,
    m: &BorrowedMessage<'_>,
) -> Option<SourceEvent> {
    let (partition, offset) = (m.partition(), m.offset());
    if let Some(expected) = resumed_at.remove(&partition) {
        if offset > expected {
            metrics.skipped_on_resume(partition, expected, offset);
        }
    }
    let expected = next_offset.entry(partition).or_insert(offset);
    if offset < *expected {
        metrics.duplicates(1);
        return None;
    }
    *expected = offset + 1;
    match decode_event(m.payload().unwrap_or_default()) {
        Ok(event) => Some(SourceEvent {
            partition,
            offset,
            event,
        }),
        Err(e) => {
            metrics.decode_error(partition, offset, &e);
            None
        }
    }
}

impl SourceTask {
    /// Handles the first received message and everything else already waiting.
    fn on_received(&mut self, first: Result<Option<SourceEvent>, rdkafka::error::KafkaError>) {
        self.apply_rebalances();
        let now = Instant::now();
        let wall = wall_clock_ms();
        let (mut messages, mut events) = (0u64, 0u64);
        let mut next = Some(first);
        while let Some(received) = next.take() {
            messages += 1;
            match received {
                Ok(Some(event)) => {
                    events += 1;
                    self.batcher.push(event, now, wall);
                }
                Ok(None) => {}
                Err(error) => tracing::warn!(%error, "Kafka consumer error."),
            }
            if (messages as usize) < self.cfg.max_batch_events {
                next = self.consumer.recv().now_or_never().map(|r| {
                    r.map(|m| {
                        decode(
                            &mut self.next_offset,
                            &mut self.resumed_at,
                            &self.metrics,
                            &m,
                        )
                    })
                });
            }
        }
        self.metrics.received(messages, events);
        self.advance_watermark(now);
        self.apply_backpressure(now);
    }

    fn on_tick(&mut self, acks: &watch::Receiver<Option<Checkpoint>>) {
        self.apply_rebalances();
        if let Ok(mut shared) = self.consumer.context().shared.lock() {
            shared.accepted.clone_from(&acks.borrow());
        }
        let now = Instant::now();
        self.apply_backpressure(now);
        self.advance_watermark(now);
    }

    fn advance_watermark(&mut self, now: Instant) {
        self.batcher.advance(now, wall_clock_ms());
        for p in &self.owned {
            if let Some(pw) = self.batcher.tracker().partition_watermark(*p) {
                self.metrics.partition_watermark(*p, pw.0);
            }
        }
    }

    fn apply_backpressure(&mut self, now: Instant) {
        let blocked = self.batcher.ready_len() >= BACKPRESSURED_AT;
        if blocked {
            // Waiting on the pipeline is not idleness.
            self.batcher.tracker_mut().hold_active(now);
            let since = *self.backpressured_since.get_or_insert(now);
            if !self.paused && now.saturating_duration_since(since) >= PAUSE_AFTER {
                self.pause_all();
            }
            return;
        }
        self.backpressured_since = None;
        if self.paused && self.batcher.ready_len() == 0 {
            if let Some(tpl) = self.owned_list() {
                if let Err(error) = self.consumer.resume(&tpl) {
                    tracing::warn!(%error, "Cannot resume partitions.");
                    return;
                }
                self.seek_to_next_offsets();
            }
            self.paused = false;
            self.metrics.paused(false);
        }
    }

    /// Pausing drops what librdkafka had fetched ahead; without a seek it
    /// would resume after those messages and they would be lost. Seeking to
    /// the next offset this task expects makes the pause lossless (anything
    /// delivered twice is skipped by offset).
    fn seek_to_next_offsets(&mut self) {
        let mut tpl = TopicPartitionList::new();
        for p in &self.owned {
            if let Some(next) = self.next_offset.get(p) {
                self.resumed_at.insert(*p, *next);
                if tpl
                    .add_partition_offset(&self.cfg.topic, *p, Offset::Offset(*next))
                    .is_err()
                {
                    return;
                }
            }
        }
        if tpl.count() == 0 {
            return;
        }
        match self.consumer.seek_partitions(tpl, COORDINATOR_TIMEOUT) {
            Ok(result) => {
                for e in result.elements() {
                    if let Err(error) = e.error() {
                        tracing::warn!(partition = e.partition(), %error, "Cannot seek after a pause.");
                    }
                }
            }
            Err(error) => tracing::warn!(%error, "Cannot seek after a pause."),
        }
    }

    fn pause_all(&mut self) {
        if self.paused {
            return;
        }
        if let Some(tpl) = self.owned_list() {
            if let Err(error) = self.consumer.pause(&tpl) {
                tracing::warn!(%error, "Cannot pause partitions.");
                return;
            }
        }
        self.paused = true;
        self.metrics.paused(true);
    }

    fn owned_list(&self) -> Option<TopicPartitionList> {
        if self.owned.is_empty() {
            return None;
        }
        let mut tpl = TopicPartitionList::new();
        for p in &self.owned {
            tpl.add_partition(&self.cfg.topic, *p);
        }
        Some(tpl)
    }

    fn apply_rebalances(&mut self) {
        let events = match self.consumer.context().shared.lock() {
            Ok(mut shared) => std::mem::take(&mut shared.events),
            Err(_) => return,
        };
        let now = Instant::now();
        for event in events {
            match event {
                RebalanceEvent::Assigned(partitions) => self.on_assigned(partitions, now),
                RebalanceEvent::Revoked(partitions) => {
                    for p in partitions {
                        self.owned.remove(&p);
                        self.batcher.tracker_mut().revoke(p);
                        self.next_offset.remove(&p);
                        self.metrics.partition_revoked(p);
                    }
                    tracing::info!(partitions = ?self.owned, "Partitions revoked.");
                }
            }
        }
        self.metrics.assigned(self.owned.len());
        if self.owned.is_empty() {
            self.readiness
                .require(READY_PARTITIONS, "no partitions assigned");
        } else {
            self.readiness.ok(READY_PARTITIONS);
        }
    }

    fn on_assigned(&mut self, partitions: Vec<AssignedPartition>, now: Instant) {
        let mut resume_through = None;
        let mut without_metadata = false;
        if let Ok(mut shared) = self.consumer.context().shared.lock() {
            for a in &partitions {
                if let Some(offset) = a.committed {
                    shared.ledger.restore(a.partition, offset, a.metadata);
                    without_metadata |= a.metadata.is_none();
                }
                if let Some(m) = a.metadata {
                    resume_through = resume_through.max(Some(m.closed_through));
                }
            }
        }
        for a in &partitions {
            self.owned.insert(a.partition);
            self.batcher.tracker_mut().assign(a.partition, now);
            if let Some(offset) = a.committed {
                self.next_offset.insert(a.partition, offset);
            }
        }
        if without_metadata {
            self.metrics.metadata_unsupported();
            self.metadata_verified = true;
        }
        if let Some(through) = resume_through {
            self.batcher.push_msg(Msg::Resume(through));
        }
        if self.paused {
            // New partitions join the pause.
            self.paused = false;
            self.pause_all();
        }
        tracing::info!(
            assigned = ?partitions.iter().map(|a| (a.partition, a.committed)).collect::<Vec<_>>(),
            resume_through,
            "Partitions assigned."
        );
    }

    fn commit_accepted(&mut self, acks: &watch::Receiver<Option<Checkpoint>>, mode: CommitMode) {
        let Some(checkpoint) = acks.borrow().clone() else {
            return;
        };
        let plan = match self.consumer.context().shared.lock() {
            Ok(mut shared) => {
                shared.accepted = Some(checkpoint.clone());
                shared.ledger.plan(&checkpoint, &self.owned)
            }
            Err(_) => None,
        };
        let Some(plan) = plan else {
            return;
        };
        // The first commit is synchronous so its metadata can be read back:
        // that tells whether this broker keeps it.
        let mode = if self.metadata_verified {
            mode
        } else {
            CommitMode::Sync
        };
        let result = commit(&self.consumer, &self.cfg.topic, &plan, mode);
        self.metrics.committed(
            result.is_ok(),
            plan.offsets.len(),
            result.as_ref().err().map(String::as_str),
        );
        if result.is_ok() {
            if let Ok(mut shared) = self.consumer.context().shared.lock() {
                shared.ledger.committed_plan(&plan);
            }
            if !self.metadata_verified {
                self.verify_metadata(&plan);
            }
        }
    }

    fn verify_metadata(&mut self, plan: &CommitPlan) {
        let (Some((p, _)), Some(written)) = (plan.offsets.first(), plan.metadata) else {
            return;
        };
        let mut tpl = TopicPartitionList::new();
        tpl.add_partition(&self.cfg.topic, *p);
        match self.consumer.committed_offsets(tpl, COORDINATOR_TIMEOUT) {
            Ok(read) => {
                let back = read
                    .elements_for_topic(&self.cfg.topic)
                    .first()
                    .and_then(|e| CommitMetadata::parse(e.metadata()));
                if back != Some(written) {
                    self.metrics.metadata_unsupported();
                }
                self.metadata_verified = true;
            }
            Err(error) => tracing::debug!(%error, "Cannot read back committed offsets yet."),
        }
    }
}
