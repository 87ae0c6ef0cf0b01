//! The source stage: a consumer-group member feeding the pipeline.
//!
//! One task owns the consumer. Each wake-up it takes every message that is
//! ready (up to `max_batch_events`), decodes them, updates the partitions'
//! watermarks and queues a batch followed by the new pipeline watermark, if
//! it moved. Malformed messages are counted by reason and skipped, and kept
//! in the dead-letter topic when one is configured: its letters not yet
//! written hold back their partitions' commits.
//!
//! The decisions are plain code, unit-tested without a broker, each in its
//! own module: which partitions are owned and what an assignment means
//! (`assignment`), what each message's offset makes of it and where to seek
//! (`offsets`, `fetch_guard`), what is known of the partitions' ends and
//! when a partition may turn idle (`ends`), when to pause and resume
//! (`backpressure`),
//! whether the broker keeps commit metadata (`metadata`); what to commit is
//! the [`CommitLedger`]'s. This file runs the loop and carries the decisions
//! out on the consumer; librdkafka's callbacks are in `context`, commits in
//! `committer`.
//!
//! Offsets: the sink publishes each accepted [`Checkpoint`] on a watch
//! channel; every `commit_interval_ms` the source commits it. On revoke it
//! commits before giving the partitions up. On shutdown it closes the
//! pipeline's head, waits for the sink to drain, makes a last synchronous
//! commit and leaves the group.

mod assignment;
mod backpressure;
mod committer;
mod context;
mod ends;
mod fetch_guard;
mod metadata;
mod offsets;

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use futures::{FutureExt, StreamExt};
use rdkafka::consumer::{BaseConsumer, CommitMode, Consumer, MessageStream, StreamConsumer};
use rdkafka::error::KafkaResult;
use rdkafka::message::{BorrowedMessage, Message};
use rdkafka::{Offset, TopicPartitionList};
use tokio::sync::{mpsc, watch};
use tokio::time::Instant;

use fleet_core::telemetry::{wall_clock_ms, Readiness};
use fleet_core::{
    Checkpoint, DeadLetter, DeadLetterCause, DeadLetterQueue, FiringLog, Msg, PartitionId,
    RevocationFence, SourceBatch, SourceBatcher, TimestampMs,
};
use fleet_schema::{RecordReader, Resolved, SchemaRef};

use self::assignment::{AssignedPartition, Assignment, RebalanceEvent};
use self::backpressure::{Decision, Flow};
use self::context::SourceContext;
use self::fetch_guard::SILENT_FETCH;
use self::metadata::companion_group;
use self::offsets::Judgement;
use crate::{
    CommitLedger, KafkaConfig, KafkaDeadLetters, KafkaStageError, ProgressSample, ProgressWatch,
    SecurityContext, SourceMetrics, StartFrom,
};

/// The readiness condition: partitions are assigned.
pub const READY_PARTITIONS: &str = "kafka_partitions";

/// The readiness condition: this instance owns every partition of the topic.
pub const READY_OWNERSHIP: &str = "kafka_ownership";

/// Readiness condition: messages waiting get consumed and a broker is reachable.
pub const READY_PROGRESS: &str = "kafka_progress";

/// How long reading one partition's end from the broker may wait.
const END_OFFSETS_TIMEOUT: Duration = Duration::from_secs(2);

/// How long a call to the group coordinator (or a seek) may wait.
const COORDINATOR_TIMEOUT: Duration = Duration::from_secs(10);

/// What came of one message.
enum Taken {
    /// A record, now in the batcher.
    Record,
    /// Nothing: skipped, counted, refused or rewound.
    Nothing,
    /// It names a schema to fetch from the registry first.
    NeedsSchema(SchemaRef),
}

/// The consumer loop's state.
struct SourceTask {
    cfg: KafkaConfig,
    consumer: Arc<StreamConsumer<SourceContext>>,
    /// Message value → record, as `[input]` says (fetching the schemas of
    /// framed records from the registry).
    reader: RecordReader,
    /// Decoded events and watermarks waiting for the enricher's channel.
    batcher: SourceBatcher,
    /// The owned partitions and where reading each stands.
    assignment: Assignment,
    /// Whether messages flow from the consumer (backpressure, pauses).
    flow: Flow,
    /// With `start_from = "timestamp"`, the time to seek to at the first
    /// assignment; taken then.
    start_at: Option<i64>,
    /// Messages taken from the consumer so far, for the progress condition.
    consumed: u64,
    progress: ProgressWatch,
    metrics: SourceMetrics,
    readiness: Arc<Readiness>,
    /// The last commit, on its blocking thread (see
    /// [`SourceTask::commit_accepted`]).
    committing: Option<tokio::task::JoinHandle<()>>,
    /// The sink's firing points taken, until a commit carries them all.
    storing: Option<committer::Storing>,
    /// The partition ends being read from the broker (see
    /// [`SourceTask::read_ends`]), and when that read started.
    reading_ends: Option<tokio::task::JoinHandle<()>>,
    ends_read_at: Option<Instant>,
}

/// What the source hears back from the sink.
#[derive(Debug)]
pub struct SinkFeedback {
    /// The checkpoints the sink has accepted, newest first: what may be committed.
    pub acks: watch::Receiver<Option<Checkpoint>>,
    /// Shared with the sink, for revocations.
    pub fence: Arc<RevocationFence>,
    /// Shared with the sink in the single output mode: the firing points
    /// it asks to have stored with a commit before it sends their windows.
    pub firing: Option<Arc<FiringLog>>,
}

/// Declares the source's readiness conditions, not met until partitions are
/// assigned. [`run`] does it first thing; a service that answers `/readyz`
/// before that task has run calls it itself, or it would answer "ready"
/// while the source is still connecting.
pub fn declare_readiness(readiness: &Readiness) {
    readiness.require(READY_PARTITIONS, "no partitions assigned yet");
    readiness.require(READY_OWNERSHIP, "no partitions assigned yet");
}

/// Runs the source until `shutdown` completes, then drains and leaves the group.
/// `reader` turns each message value into a record; `batcher` places the
/// records in event time (its watermark tracker, the output mode's
/// watermarks, at most `kafka.max_batch_events` per batch).
#[allow(clippy::too_many_arguments)]
pub async fn run(
    cfg: KafkaConfig,
    reader: RecordReader,
    batcher: SourceBatcher,
    output: mpsc::Sender<Msg<SourceBatch>>,
    sink: SinkFeedback,
    metrics: SourceMetrics,
    readiness: Arc<Readiness>,
    dead_letters: Option<KafkaDeadLetters>,
    shutdown: impl Future<Output = ()>,
) -> Result<(), KafkaStageError> {
    declare_readiness(&readiness);
    let SinkFeedback {
        mut acks,
        fence,
        firing,
    } = sink;
    let security = SecurityContext::for_config(&cfg)?;
    security.warm_up().await;
    let companion: Arc<BaseConsumer<SecurityContext>> = Arc::new(
        cfg.consumer_config()
            .set("group.id", companion_group(&cfg.group_id))
            .create_with_context(security.clone())
            .map_err(KafkaStageError::Setup)?,
    );
    security.keep_polled(&companion);
    let mode = batcher.output_mode();
    let context = SourceContext::new(
        cfg.topic.clone(),
        CommitLedger::new(mode),
        metrics.clone(),
        companion,
        security,
        SinkFeedback {
            acks: acks.clone(),
            fence,
            firing: firing.clone(),
        },
        Duration::from_millis(cfg.drain_timeout_ms),
        dead_letters,
    );
    let consumer: Arc<StreamConsumer<SourceContext>> = Arc::new(
        cfg.consumer_config()
            .create_with_context(context)
            .map_err(KafkaStageError::Setup)?,
    );
    consumer
        .subscribe(&[&cfg.topic])
        .map_err(KafkaStageError::Setup)?;
    tracing::info!(topic = %cfg.topic, group = %cfg.group_id, "Subscribed.");

    let mut task = SourceTask {
        reader,
        batcher,
        consumer,
        assignment: Assignment::new(mode),
        flow: Flow::default(),
        start_at: match cfg.start_from {
            StartFrom::Timestamp => cfg.start_timestamp_ms,
            StartFrom::Committed => None,
        },
        consumed: 0,
        progress: ProgressWatch::new(Duration::from_millis(cfg.progress_timeout_ms)),
        metrics,
        readiness,
        committing: None,
        storing: None,
        reading_ends: None,
        ends_read_at: None,
        cfg,
    };
    // One message stream for the task's life: a `recv()` per message would
    // register and unregister a waker (two mutex round trips) each time.
    let consumer = Arc::clone(&task.consumer);
    let mut messages = consumer.stream();
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
                // Fetch again as soon as the pipeline has taken what waited,
                // not at the next tick: catching up on a backlog is then paced
                // by the pipeline, not by the timer.
                task.apply_backpressure(Instant::now());
            }
            _ = tick.tick() => {
                task.on_tick();
                if task.storing.is_some() {
                    task.store_firing_points(&acks);
                } else if last_commit.elapsed() >= commit_every {
                    task.commit_accepted(&acks, CommitMode::Async);
                    last_commit = Instant::now();
                }
            }
            () = requested(firing.as_deref()) => task.store_firing_points(&acks),
            received = messages.next(), if task.flow.takes_messages() => {
                // The stream never ends while its consumer lives.
                let Some(received) = received else { break };
                task.on_received(received, &mut messages).await;
            }
        }
    }

    // Shutdown: close the pipeline's head, let the sink drain, commit, leave.
    drop(output);
    task.batcher.discard();
    task.pause();
    tracing::info!("Source stopping; waiting for the sink to drain.");
    let deadline = Instant::now() + Duration::from_millis(task.cfg.drain_timeout_ms);
    loop {
        tokio::select! {
            changed = acks.changed() => if changed.is_err() { break },
            _ = tokio::time::sleep_until(deadline) => {
                tracing::warn!("The sink did not drain before kafka.drain_timeout_ms; committing what it accepted.");
                break;
            }
            // The sink sends what it holds only once its points are stored.
            () = requested(firing.as_deref()) => task.store_firing_points(&acks),
            _ = tick.tick(), if task.storing.is_some() => task.store_firing_points(&acks),
            // Keep serving the group while waiting.
            _ = messages.next() => {}
        }
    }
    task.commit_last(&acks).await;
    task.consumer.unsubscribe();
    tracing::info!("Source stopped.");
    Ok(())
}

/// Resolves when the sink asks for firing points to be stored; never
/// without a firing log.
async fn requested(firing: Option<&FiringLog>) {
    match firing {
        Some(log) => log.requested().await,
        None => std::future::pending().await,
    }
}

impl SourceTask {
    /// Handles the first received message and everything else already waiting.
    ///
    /// The poll that delivers a rebalance returns without a message, and the
    /// first message of the new assignment may follow before the next tick:
    /// the rebalance is applied before any message is judged, or it would be
    /// judged by the old assignment's offsets. A message framed for a schema
    /// not fetched yet waits, copied, while the schema is fetched (the
    /// messages after it wait in the consumer).
    async fn on_received<'a>(
        &mut self,
        first: KafkaResult<BorrowedMessage<'a>>,
        stream: &mut MessageStream<'a, SourceContext>,
    ) {
        self.apply_rebalances();
        if !self.assignment.may_process() {
            // Paused; anything still arriving is fetched again from the
            // committed offsets once this instance owns every partition.
            return;
        }
        let mut now = Instant::now();
        let mut wall = wall_clock_ms();
        let (mut messages, mut events) = (0u64, 0u64);
        let mut next = Some(first);
        while let Some(received) = next.take() {
            messages += 1;
            let waiting = match received {
                Ok(m) => match self.take(&m, now, wall) {
                    Taken::Record => {
                        events += 1;
                        None
                    }
                    Taken::Nothing => None,
                    Taken::NeedsSchema(schema) => Some((schema, m.detach())),
                },
                Err(error) => {
                    tracing::warn!(%error, "Kafka consumer error.");
                    None
                }
            };
            if let Some((schema, message)) = waiting {
                self.reader.fetch(schema).await;
                (now, wall) = (Instant::now(), wall_clock_ms());
                if let Taken::Record = self.take(&message, now, wall) {
                    events += 1;
                }
            }
            if (messages as usize) < self.cfg.max_batch_events {
                // A rebalance ends the batch: its poll yields no message.
                next = stream.next().now_or_never().flatten();
            }
        }
        self.consumed += messages;
        self.metrics.received(messages, events);
        self.advance_watermark(now);
        self.apply_backpressure(now);
    }

    /// Decodes message `m` into the batcher if it is one to process, and
    /// says what came of it; what is not processed is counted, or rewound.
    fn take(&mut self, m: &impl Message, now: Instant, wall: TimestampMs) -> Taken {
        let (partition, offset) = (m.partition(), m.offset());
        let ready = match self.reader.resolve(m.payload().unwrap_or_default()) {
            // Judged once the schema is there.
            Resolved::Fetch(schema) => return Taken::NeedsSchema(schema),
            Resolved::Ready(decoder, payload) => Ok((decoder, payload)),
            Resolved::Refused(e) => Err(e),
        };
        let Some(judgement) = self.assignment.judge(partition, offset, now) else {
            tracing::debug!(
                partition,
                offset,
                "Message of a partition not owned skipped."
            );
            return Taken::Nothing;
        };
        match judgement {
            Judgement::Take => {}
            Judgement::TakeAfterGap { expected } => {
                self.metrics.fetch_gap(partition, expected, offset);
            }
            Judgement::Duplicate => {
                self.metrics.duplicates(1);
                return Taken::Nothing;
            }
            Judgement::Rewind(target) => {
                self.rewind(partition, target);
                return Taken::Nothing;
            }
        }
        match self.batcher.push_with(now, wall, |batch| {
            let (decoder, payload) = ready?;
            decoder.decode_into(payload, partition, offset, batch)
        }) {
            Ok(()) => Taken::Record,
            Err(e) => {
                self.metrics.decode_error(partition, offset, &e);
                if let Some(letters) = &self.consumer.context().dead_letters {
                    if letters.keeps(DeadLetterCause::Malformed) {
                        let _written = letters.send(DeadLetter {
                            cause: DeadLetterCause::Malformed,
                            reason: e.kind.as_str().to_owned(),
                            detail: e.detail,
                            key: m.key().unwrap_or_default().to_vec(),
                            value: m.payload().unwrap_or_default().to_vec(),
                            origin: Some((partition, offset)),
                        });
                    }
                }
                Taken::Nothing
            }
        }
    }

    /// Seeks `partition` back to `offset`; the seek completes before the
    /// next message is taken, so nothing from the old position follows.
    fn rewind(&mut self, partition: PartitionId, offset: i64) {
        tracing::debug!(
            partition,
            offset,
            "Rewinding: the broker answered from a later offset than asked."
        );
        let mut tpl = TopicPartitionList::new();
        if tpl
            .add_partition_offset(&self.cfg.topic, partition, Offset::Offset(offset))
            .is_ok()
        {
            if let Err(error) = self.consumer.seek_partitions(tpl, COORDINATOR_TIMEOUT) {
                tracing::warn!(partition, %error, "Cannot rewind the partition.");
            }
        }
    }

    fn on_tick(&mut self) {
        self.apply_rebalances();
        let now = Instant::now();
        let fetching = self.flow.fetching();
        self.read_ends(now);
        let (survey, broker_up) = match self.consumer.context().shared.lock() {
            Ok(shared) => (
                self.assignment
                    .survey(&shared.ends, fetching, SILENT_FETCH, now),
                shared.broker_up,
            ),
            Err(_) => Default::default(),
        };
        for (p, lag) in &survey.lags {
            self.metrics.consumer_lag(*p, *lag);
            if *lag > 0 {
                // Data is waiting for this partition: it is behind, not idle.
                self.batcher.tracker_mut().touch(*p, now);
            }
        }
        for (p, caught_up) in &survey.caught_up {
            self.batcher.tracker_mut().set_caught_up(*p, *caught_up);
        }
        for (partition, target) in &survey.rewinds {
            self.rewind(*partition, *target);
        }
        let sample = ProgressSample {
            consumed: self.consumed,
            lag: survey.total_lag(),
            broker_up,
        };
        self.check_progress(now, sample);
        self.apply_backpressure(now);
        self.advance_watermark(now);
    }

    /// Reads partition ends from the broker, on a blocking thread, one
    /// read at a time, every [`ends::READ_EVERY`]: those of the partitions
    /// that have delivered nothing for [`ends::QUIET_AFTER`] (only an answer
    /// of the broker lets them turn idle), and while the source does not
    /// fetch, every owned one (librdkafka's statistics stop following a
    /// partition it does not fetch, and the lag would freeze at its value
    /// from the pause however much piles up).
    fn read_ends(&mut self, now: Instant) {
        if self.reading_ends.as_ref().is_some_and(|r| !r.is_finished())
            || self
                .ends_read_at
                .is_some_and(|t| now.saturating_duration_since(t) < ends::READ_EVERY)
        {
            return;
        }
        let partitions: Vec<PartitionId> = if self.flow.fetching() {
            self.assignment.quiet(now, ends::QUIET_AFTER)
        } else {
            self.assignment.partitions().collect()
        };
        if partitions.is_empty() {
            return;
        }
        self.ends_read_at = Some(now);
        let consumer = Arc::clone(&self.consumer);
        let topic = self.cfg.topic.clone();
        self.reading_ends = Some(tokio::task::spawn_blocking(move || {
            for p in partitions {
                let asked_at = Instant::now();
                let Ok((_, high)) = consumer.fetch_watermarks(&topic, p, END_OFFSETS_TIMEOUT)
                else {
                    continue;
                };
                if let Ok(mut shared) = consumer.context().shared.lock() {
                    shared.ends.confirmed(p, high, asked_at);
                }
            }
        }));
    }

    /// Updates the progress readiness condition.
    fn check_progress(&mut self, now: Instant, sample: ProgressSample) {
        if !self.assignment.may_process() {
            // Not processing on purpose; the ownership condition says why.
            self.progress.reset();
            self.readiness.ok(READY_PROGRESS);
            return;
        }
        match self.progress.observe(now, sample) {
            Some(reason) => self.readiness.require(READY_PROGRESS, reason),
            None => self.readiness.ok(READY_PROGRESS),
        }
    }

    fn advance_watermark(&mut self, now: Instant) {
        self.batcher.advance(now, wall_clock_ms());
        for p in self.assignment.partitions() {
            if let Some(pw) = self.batcher.tracker().partition_watermark(p) {
                self.metrics.partition_watermark(p, pw.0);
            }
        }
    }

    fn apply_backpressure(&mut self, now: Instant) {
        if !self.assignment.may_process() {
            return;
        }
        match self.flow.decide(self.batcher.ready_len(), now) {
            Decision::Proceed => {}
            Decision::Hold => self.batcher.tracker_mut().hold_active(now),
            Decision::Pause => {
                self.batcher.tracker_mut().hold_active(now);
                self.pause();
            }
            Decision::Resume => self.resume(now),
        }
    }

    /// Pauses every owned partition, unless they are paused already.
    fn pause(&mut self) {
        if !self.flow.paused() {
            self.pause_owned();
        }
    }

    /// Pauses every owned partition, including any assigned since the last
    /// pause.
    fn pause_owned(&mut self) {
        if let Some(tpl) = self.owned_list() {
            if let Err(error) = self.consumer.pause(&tpl) {
                tracing::warn!(%error, "Cannot pause partitions.");
                self.flow.set_paused(false);
                return;
            }
        }
        self.flow.set_paused(true);
        self.metrics.paused(true);
    }

    /// Resumes every owned partition where reading left off: pausing dropped
    /// what librdkafka had fetched ahead, and without a seek it would resume
    /// after those messages.
    fn resume(&mut self, now: Instant) {
        if let Some(tpl) = self.owned_list() {
            if let Err(error) = self.consumer.resume(&tpl) {
                tracing::warn!(%error, "Cannot resume partitions.");
                return;
            }
            self.seek_to_next_offsets(now);
        }
        self.flow.set_paused(false);
        self.metrics.paused(false);
    }

    /// Seeks every owned partition to the next offset expected (anything
    /// delivered twice is skipped by offset).
    fn seek_to_next_offsets(&mut self, now: Instant) {
        let mut tpl = TopicPartitionList::new();
        for (p, next) in self.assignment.resume_targets(now) {
            if tpl
                .add_partition_offset(&self.cfg.topic, p, Offset::Offset(next))
                .is_err()
            {
                return;
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

    /// Replays from a point in time: seeks every owned partition to its first
    /// offset at or after `timestamp` (the broker's offsets-for-times).
    fn seek_to_time(&mut self, timestamp: i64, now: Instant) {
        let found = match self
            .consumer
            .offsets_for_timestamp(timestamp, COORDINATOR_TIMEOUT)
        {
            Ok(found) => found,
            Err(error) => {
                tracing::warn!(%error, timestamp, "Cannot find offsets for the start time; starting from the committed offsets.");
                return;
            }
        };
        let mut seek = TopicPartitionList::new();
        for e in found.elements_for_topic(&self.cfg.topic) {
            if let Offset::Offset(offset) = e.offset() {
                if seek
                    .add_partition_offset(&self.cfg.topic, e.partition(), Offset::Offset(offset))
                    .is_ok()
                {
                    self.assignment.restart_at(e.partition(), offset, now);
                }
            }
        }
        tracing::info!(timestamp, offsets = ?seek, "Starting from a point in time.");
        if let Err(error) = self.consumer.seek_partitions(seek, COORDINATOR_TIMEOUT) {
            tracing::warn!(%error, "Cannot seek to the start time.");
        }
    }

    fn owned_list(&self) -> Option<TopicPartitionList> {
        let mut tpl = TopicPartitionList::new();
        for p in self.assignment.partitions() {
            tpl.add_partition(&self.cfg.topic, p);
        }
        (tpl.count() > 0).then_some(tpl)
    }

    /// Applies the rebalances the callbacks recorded.
    fn apply_rebalances(&mut self) {
        let events = match self.consumer.context().shared.lock() {
            Ok(mut shared) => std::mem::take(&mut shared.events),
            Err(_) => return,
        };
        let now = Instant::now();
        for event in events {
            match event {
                RebalanceEvent::Assigned {
                    partitions,
                    topic_partitions,
                } => self.on_assigned(&partitions, topic_partitions, now),
                RebalanceEvent::Revoked(partitions) => {
                    self.assignment.revoke(&partitions);
                    for p in &partitions {
                        self.batcher.tracker_mut().revoke(*p);
                        self.metrics.partition_revoked(*p);
                    }
                    tracing::info!(
                        revoked = ?partitions,
                        owned = ?self.assignment.partition_set(),
                        "Partitions revoked."
                    );
                }
            }
        }
        self.metrics.assigned(self.assignment.len());
        match self.assignment.unassigned_reason() {
            Some(reason) => self.readiness.require(READY_PARTITIONS, reason),
            None => self.readiness.ok(READY_PARTITIONS),
        }
    }

    /// A new assignment. librdkafka restarts every assigned partition from
    /// its committed offset, so the windows built so far are dropped
    /// downstream ([`Msg::Rewind`]) and rebuilt from the replayed events.
    fn on_assigned(
        &mut self,
        partitions: &[AssignedPartition],
        topic_partitions: Option<usize>,
        now: Instant,
    ) {
        for a in partitions {
            self.batcher.tracker_mut().assign(a.partition, now);
        }
        let epoch = self.consumer.context().fence.epoch();
        let assigned = self
            .assignment
            .assign(partitions, topic_partitions, epoch, now);
        if let Ok(mut shared) = self.consumer.context().shared.lock() {
            for a in partitions {
                if let Some(offset) = a.committed {
                    shared
                        .ledger
                        .restore(a.partition, offset, a.metadata.as_ref());
                }
            }
            if let Msg::Rewind { fired, .. } = &assigned.rewind {
                shared.ledger.restore_fired(fired);
            }
        }
        if let Some(timestamp) = self.start_at.take() {
            self.seek_to_time(timestamp, now);
        }
        tracing::info!(
            assigned = ?partitions
                .iter()
                .map(|a| (a.partition, a.committed, a.metadata.as_ref().and_then(|m| m.closed_through)))
                .collect::<Vec<_>>(),
            rewind = ?assigned.rewind,
            "Partitions assigned."
        );
        self.batcher.push_msg(assigned.rewind);
        match assigned.not_processing {
            None => self.readiness.ok(READY_OWNERSHIP),
            Some(reason) => {
                tracing::warn!(%reason, "Not processing: in single output mode this instance must own every partition.");
                self.readiness.require(READY_OWNERSHIP, reason);
            }
        }
        if self.flow.pause_at_assignment(self.assignment.may_process()) {
            self.pause_owned();
        }
    }
}
