//! Carrying out commits: the ledger ([`CommitLedger`](crate::CommitLedger))
//! decides what to commit and [`MetadataSupport`] how; this is where it
//! reaches the broker.
//!
//! Every commit of the loop runs on a blocking thread: a synchronous one
//! (the companion group's, the one that finds out whether the broker keeps
//! commit metadata, the last) waits on the group coordinator, for as long
//! as a request may take when the broker has stopped answering, and the
//! runtime's threads must go on meanwhile. One runs at a time, in order:
//! a periodic commit is skipped while the last still runs, and each holds
//! the context's `committing` lock, which a revocation's commit takes too;
//! a plan made before a revocation is dropped once it took place (the
//! revocation committed what it held).
//!
//! A plan's window boundaries go to the companion group first when the broker
//! drops commit metadata: a crash between the two commits then leaves a
//! boundary that is never ahead of the offsets replayed. While the broker's
//! keeping of metadata is unknown, a commit is synchronous and read back.

use std::collections::VecDeque;
use std::sync::{Arc, PoisonError};

use fleet_core::{Checkpoint, FiringPoint};
use rdkafka::consumer::{CommitMode, Consumer, ConsumerContext, StreamConsumer};
use rdkafka::error::KafkaError;
use rdkafka::types::RDKafkaErrorCode;
use rdkafka::{Offset, TopicPartitionList};
use tokio::sync::watch;

use super::context::SourceContext;
use super::metadata::{read_back_target, MetadataSupport};
use super::{SourceTask, COORDINATOR_TIMEOUT};
use crate::commit::CommitPlan;
use crate::{CommitMetadata, SourceMetrics};

/// Why a commit failed.
#[derive(Debug, thiserror::Error)]
pub(super) enum CommitError {
    /// The companion group refused the window boundaries.
    #[error("committing the window boundary: {0}")]
    Boundary(KafkaError),
    /// The offsets could not be committed.
    #[error(transparent)]
    Offsets(#[from] KafkaError),
}

/// Firing points the sink asked to store, until a commit carries them all
/// (see [`SourceTask::store_firing_points`]).
#[derive(Debug, Default)]
pub(super) struct Storing {
    /// The last request taken.
    number: u64,
    /// Points taken that wait for room in the ledger.
    waiting: VecDeque<FiringPoint>,
    /// Points taken and not counted yet.
    uncounted: usize,
}

/// Counts a commit's outcome (and logs a failure).
pub(super) fn report_commit(
    metrics: &SourceMetrics,
    plan: &CommitPlan,
    result: &Result<(), CommitError>,
) {
    let error = result.as_ref().err().map(ToString::to_string);
    metrics.committed(result.is_ok(), plan.offsets.len(), error.as_deref());
}

impl SourceContext {
    /// Commits `plan`: on a broker that drops commit metadata, its
    /// boundaries to the companion group first.
    pub(super) fn commit<C: ConsumerContext, K: Consumer<C>>(
        &self,
        consumer: &K,
        plan: &CommitPlan,
        mode: CommitMode,
    ) -> Result<(), CommitError> {
        if let Some(boundaries) = self.metadata().companion_offsets(plan) {
            let mut tpl = TopicPartitionList::new();
            for (p, boundary) in boundaries {
                tpl.add_partition_offset(&self.topic, p, Offset::Offset(boundary))?;
            }
            self.companion
                .commit(&tpl, CommitMode::Sync)
                .map_err(CommitError::Boundary)?;
        }
        let mut tpl = TopicPartitionList::new();
        for (p, offset) in &plan.offsets {
            let mut e = tpl.add_partition(&self.topic, *p);
            e.set_offset(Offset::Offset(*offset))?;
            e.set_metadata(
                plan.metadata_for(*p)
                    .map(CommitMetadata::encode)
                    .unwrap_or_default(),
            );
        }
        consumer.commit(&tpl, mode)?;
        Ok(())
    }
}

impl SourceTask {
    /// Commits the newest checkpoint the sink accepted, for the owned
    /// partitions, on a blocking thread: periodically (`CommitMode::Async`,
    /// skipped while the last commit still runs) and, through
    /// [`commit_last`](Self::commit_last), at shutdown. While firing points
    /// wait to be stored the commit is synchronous, and made even with no
    /// checkpoint accepted.
    pub(super) fn commit_accepted(
        &mut self,
        acks: &watch::Receiver<Option<Checkpoint>>,
        mode: CommitMode,
    ) {
        if self.committing.as_ref().is_some_and(|c| !c.is_finished()) {
            return;
        }
        let context = self.consumer.context();
        let epoch = context.fence.epoch();
        // One built before the last revocation was committed by it.
        let accepted = acks
            .borrow()
            .clone()
            .filter(|c| !context.fence.is_stale(c.epoch));
        if accepted.is_none() && self.storing.is_none() {
            return;
        }
        let checkpoint = accepted.map(|c| context.held_back(&c)).unwrap_or_default();
        let owned = self.assignment.partition_set();
        let first_read = self.assignment.first_read();
        let plan = match context.shared.lock() {
            Ok(shared) => shared.ledger.plan(&checkpoint, &owned, &first_read),
            Err(_) => None,
        };
        // The sink's request is settled by this commit once every point
        // taken is in the ledger (they wait there for room otherwise).
        let settles = match (&mut self.storing, &context.firing) {
            (Some(storing), Some(log)) if storing.waiting.is_empty() => Some((
                Arc::clone(log),
                storing.number,
                std::mem::take(&mut storing.uncounted),
            )),
            _ => None,
        };
        let Some(plan) = plan else {
            if let Some((log, number, _)) = settles {
                // Committed already (closings made again at their points).
                log.done(number);
            }
            return;
        };
        let mode = if self.storing.is_some() {
            CommitMode::Sync
        } else {
            mode
        };
        let (consumer, metrics) = (Arc::clone(&self.consumer), self.metrics.clone());
        self.committing = Some(tokio::task::spawn_blocking(move || {
            let committed = commit_plan(&consumer, &metrics, &plan, mode, epoch);
            if let (true, Some((log, number, points))) = (committed, settles) {
                // The first commit may have shown the broker drops metadata.
                metrics.firing_points(consumer.context().keeps_firing_points(), points);
                log.done(number);
            }
        }));
    }

    /// Takes the firing points the sink asks to have stored and commits
    /// them (again at every tick until a commit carries them all), or, where
    /// the broker drops commit metadata, lets the sink go on without: a
    /// window sent again may then differ (docs/SEMANTICS.md).
    pub(super) fn store_firing_points(&mut self, acks: &watch::Receiver<Option<Checkpoint>>) {
        let Some(log) = self.consumer.context().firing.clone() else {
            return;
        };
        let (points, number) = log.take();
        if !self.consumer.context().keeps_firing_points() {
            let unstored = points.len() + self.storing.take().map_or(0, |s| s.waiting.len());
            self.metrics.firing_points(false, unstored);
            log.done(number);
            return;
        }
        if !points.is_empty() {
            let storing = self.storing.get_or_insert_with(Storing::default);
            storing.number = number;
            storing.uncounted += points.len();
            storing.waiting.extend(points);
        }
        let Some(storing) = &mut self.storing else {
            return;
        };
        // Settled: stored, or let go by a revocation (their windows are
        // stale, and so are the points still waiting for room).
        if log.settled(storing.number) {
            self.storing = None;
            return;
        }
        if let Ok(mut shared) = self.consumer.context().shared.lock() {
            shared.ledger.add_fired(&mut storing.waiting);
        }
        self.commit_accepted(acks, CommitMode::Sync);
    }

    /// The last commit, synchronous, once the one still running has landed.
    pub(super) async fn commit_last(&mut self, acks: &watch::Receiver<Option<Checkpoint>>) {
        if let Some(running) = self.committing.take() {
            let _ = running.await;
        }
        self.commit_accepted(acks, CommitMode::Sync);
        if let Some(last) = self.committing.take() {
            let _ = last.await;
        }
    }
}

/// Commits `plan`, made while the fence was at `epoch`, counts the outcome
/// and records it in the ledger; while the broker's keeping of commit
/// metadata is unknown, the commit is synchronous and read back. A plan made
/// before a revocation that has taken place since is dropped. Returns
/// whether it was committed.
fn commit_plan(
    consumer: &StreamConsumer<SourceContext>,
    metrics: &SourceMetrics,
    plan: &CommitPlan,
    mode: CommitMode,
    epoch: u64,
) -> bool {
    let context = consumer.context();
    let _committing = context
        .committing
        .lock()
        .unwrap_or_else(PoisonError::into_inner);
    if context.fence.epoch() != epoch {
        return false;
    }
    let verify = context.metadata().verifies();
    let mode = if verify { CommitMode::Sync } else { mode };
    let result = context.commit(consumer, plan, mode);
    report_commit(metrics, plan, &result);
    if let Err(CommitError::Offsets(e)) = &result {
        if e.rdkafka_error_code() == Some(RDKafkaErrorCode::OffsetMetadataTooLarge) {
            context.refuse_firing_points();
        }
    }
    if result.is_ok() {
        if let Ok(mut shared) = context.shared.lock() {
            shared.ledger.committed_plan(plan);
        }
        if verify {
            verify_metadata(consumer, plan);
        }
    }
    result.is_ok()
}

/// Reads back the first committed partition of `plan`: whether the broker
/// kept its metadata. If not, the boundary goes to the companion group.
fn verify_metadata(consumer: &StreamConsumer<SourceContext>, plan: &CommitPlan) {
    let context = consumer.context();
    let Some((p, written)) = read_back_target(plan) else {
        return;
    };
    let mut tpl = TopicPartitionList::new();
    tpl.add_partition(&context.topic, p);
    match consumer.committed_offsets(tpl, COORDINATOR_TIMEOUT) {
        Ok(read) => {
            let back = read
                .elements_for_topic(&context.topic)
                .first()
                .and_then(|e| CommitMetadata::parse(e.metadata()));
            let kept = MetadataSupport::shown_by_read_back(&written, back.as_ref());
            context.learn_metadata(kept);
            if !kept {
                // Store this first boundary where the broker keeps it.
                if let Err(error) = context.commit(consumer, plan, CommitMode::Sync) {
                    tracing::warn!(%error, "Cannot commit the window boundary to the companion group.");
                }
            }
        }
        Err(error) => tracing::debug!(%error, "Cannot read back committed offsets yet."),
    }
}
