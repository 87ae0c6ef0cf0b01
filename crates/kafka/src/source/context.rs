//! What librdkafka calls back into: the consumer's [`SourceContext`].
//!
//! Rebalance callbacks run inside the consumer's poll, where the source's
//! loop state is out of reach. They do only what must happen before
//! librdkafka moves on: before a revocation, fence the sink, wait for what it
//! has in flight and commit the revoked partitions; after an assignment, read
//! what was committed for the new partitions (and whether the broker keeps
//! commit metadata). Everything else they record as a [`RebalanceEvent`] for
//! the loop to apply. Statistics callbacks record the broker's end offsets.

use std::collections::{BTreeSet, HashMap};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use fleet_core::{Checkpoint, FiringLog, PartitionId, RevocationFence};
use rdkafka::consumer::{BaseConsumer, CommitMode, Consumer, ConsumerContext, Rebalance};
use rdkafka::{ClientContext, Offset, TopicPartitionList};
use tokio::sync::watch;

use super::assignment::{AssignedPartition, RebalanceEvent};
use super::committer::report_commit;
use super::ends::BrokerEnds;
use super::metadata::{boundary_from_companion, fill_from_companion, MetadataSupport};
use super::{SinkFeedback, COORDINATOR_TIMEOUT};
use crate::{CommitLedger, CommitMetadata, KafkaDeadLetters, SecurityContext, SourceMetrics};

/// State the callbacks share with the source's loop.
#[derive(Debug, Default)]
pub(super) struct Shared {
    /// Rebalances not yet applied by the loop, oldest first.
    pub(super) events: Vec<RebalanceEvent>,
    /// What was committed per partition.
    pub(super) ledger: CommitLedger,
    /// Per partition, the broker's end offset: from librdkafka's
    /// statistics, and read from the broker (see [`BrokerEnds`]).
    pub(super) ends: BrokerEnds,
    /// Whether some broker connection was up at the last statistics.
    pub(super) broker_up: Option<bool>,
}

/// The source consumer's context.
pub(super) struct SourceContext {
    pub(super) topic: String,
    pub(super) shared: Mutex<Shared>,
    pub(super) metrics: SourceMetrics,
    /// Whether the broker keeps offset-commit metadata; a leaf lock, never
    /// held while another is taken.
    metadata: Mutex<MetadataSupport>,
    /// A consumer of the companion group, never subscribed, where the window
    /// boundaries go when the broker drops commit metadata. Polled in the
    /// background ([`SecurityContext::keep_polled`]).
    pub(super) companion: Arc<BaseConsumer<SecurityContext>>,
    /// Answers librdkafka's OAUTHBEARER token requests (MSK IAM).
    security: SecurityContext,
    /// Shared with the sink: a revocation waits for what it has in flight.
    pub(super) fence: Arc<RevocationFence>,
    /// Shared with the sink in the single output mode: the firing points
    /// to store before it sends their windows.
    pub(super) firing: Option<Arc<FiringLog>>,
    /// The broker refused commit metadata with firing points as too large.
    firing_refused: AtomicBool,
    /// The sink's acknowledged checkpoints, read fresh at a revocation.
    acks: watch::Receiver<Option<Checkpoint>>,
    /// How long a revocation waits for the sink, at most.
    revoke_wait: Duration,
    /// Held through every commit: the loop's, which run on a blocking
    /// thread, and a revocation's, in the rebalance callback; so commits
    /// land one at a time, an older plan never after a newer one. Taken
    /// before `shared`.
    pub(super) committing: Mutex<()>,
    /// The dead-letter topic, whose letters not yet written hold back commits.
    pub(super) dead_letters: Option<KafkaDeadLetters>,
}

impl SourceContext {
    /// A context for the consumer of `topic`; a revocation waits at most
    /// `revoke_wait` for the `sink`.
    #[allow(clippy::too_many_arguments)]
    pub(super) fn new(
        topic: String,
        ledger: CommitLedger,
        metrics: SourceMetrics,
        companion: Arc<BaseConsumer<SecurityContext>>,
        security: SecurityContext,
        sink: SinkFeedback,
        revoke_wait: Duration,
        dead_letters: Option<KafkaDeadLetters>,
    ) -> Self {
        let SinkFeedback {
            acks,
            fence,
            firing,
        } = sink;
        SourceContext {
            topic,
            shared: Mutex::new(Shared {
                ledger,
                ..Shared::default()
            }),
            metrics,
            metadata: Mutex::new(MetadataSupport::Unknown),
            companion,
            security,
            fence,
            firing,
            firing_refused: AtomicBool::new(false),
            acks,
            revoke_wait,
            committing: Mutex::new(()),
            dead_letters,
        }
    }

    /// `checkpoint` as far as it may be committed: held back at the letters
    /// of the dead-letter topic not yet written.
    pub(super) fn held_back(&self, checkpoint: &Checkpoint) -> Checkpoint {
        match &self.dead_letters {
            Some(letters) => letters.hold_back(checkpoint),
            None => checkpoint.clone(),
        }
    }

    /// Whether firing points can be stored with the commits: the broker
    /// keeps commit metadata (or is not known yet to drop it) and has not
    /// refused it as too large.
    pub(super) fn keeps_firing_points(&self) -> bool {
        !self.metadata().uses_companion() && !self.firing_refused.load(Ordering::Relaxed)
    }

    /// The broker refused a commit's metadata as too large
    /// (`offset.metadata.max.bytes` below what the firing points take):
    /// from now on none are stored.
    pub(super) fn refuse_firing_points(&self) {
        if !self.firing_refused.swap(true, Ordering::Relaxed) {
            tracing::warn!(
                "The broker refused the commit metadata as too large (offset.metadata.max.bytes): \
                 firing points are no longer stored, so in the single output mode a window sent \
                 again after a crash can differ from its first copy."
            );
        }
        if let Ok(mut shared) = self.shared.lock() {
            shared.ledger.drop_fired();
        }
    }

    /// Whether the broker keeps offset-commit metadata, as known so far.
    pub(super) fn metadata(&self) -> MetadataSupport {
        *self.metadata.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Learns whether the broker `kept` commit metadata.
    pub(super) fn learn_metadata(&self, kept: bool) {
        let newly_lost = self
            .metadata
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .learn(kept);
        if newly_lost {
            self.metrics.metadata_unsupported();
        }
    }

    /// Waits until the sink has acknowledged every batch it registered
    /// (it drops those built before the revocation that it had not), so that
    /// the commit that follows covers every window this instance will write
    /// for the revoked partitions. Bounded by `kafka.drain_timeout_ms`.
    fn wait_for_sink(&self) {
        let wait = || self.fence.wait_drained(self.revoke_wait);
        // librdkafka calls this from the source task's poll: let the sink's
        // tasks run on the other workers meanwhile.
        let pending = match tokio::runtime::Handle::try_current().map(|h| h.runtime_flavor()) {
            Ok(tokio::runtime::RuntimeFlavor::MultiThread) => tokio::task::block_in_place(wait),
            _ => wait(),
        };
        if pending > 0 {
            tracing::warn!(
                pending,
                "Partitions revoked before the sink accepted every window in flight; their new owner may send some again."
            );
        }
    }

    /// The partitions of `query` with what was committed for them.
    fn committed_partitions(
        &self,
        consumer: &BaseConsumer<Self>,
        query: &TopicPartitionList,
    ) -> Vec<AssignedPartition> {
        match consumer.committed_offsets(query.clone(), COORDINATOR_TIMEOUT) {
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
                // Without the committed offsets the group's start position
                // applies; nothing can be skipped as already written.
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
        }
    }

    /// How many partitions the topic has.
    fn topic_partitions(&self, consumer: &BaseConsumer<Self>) -> Option<usize> {
        match consumer.fetch_metadata(Some(&self.topic), COORDINATOR_TIMEOUT) {
            Ok(metadata) => metadata
                .topics()
                .iter()
                .find(|t| t.name() == self.topic)
                .map(|t| t.partitions().len()),
            Err(error) => {
                tracing::warn!(%error, "Cannot read the topic's partition count.");
                None
            }
        }
    }

    /// The boundaries kept in the companion group, by partition.
    fn companion_boundaries(
        &self,
        query: TopicPartitionList,
    ) -> HashMap<PartitionId, CommitMetadata> {
        match self.companion.committed_offsets(query, COORDINATOR_TIMEOUT) {
            Ok(tpl) => tpl
                .elements_for_topic(&self.topic)
                .iter()
                .filter_map(|e| match e.offset() {
                    Offset::Offset(offset) => {
                        Some((e.partition(), boundary_from_companion(offset)))
                    }
                    _ => None,
                })
                .collect(),
            Err(error) => {
                tracing::warn!(%error, "Cannot read the window boundary of the companion group.");
                HashMap::new()
            }
        }
    }
}

impl ClientContext for SourceContext {
    const ENABLE_REFRESH_OAUTH_TOKEN: bool = true;

    fn generate_oauth_token(
        &self,
        _oauthbearer_config: Option<&str>,
    ) -> Result<rdkafka::client::OAuthToken, Box<dyn std::error::Error>> {
        self.security.oauth_token()
    }

    fn stats(&self, statistics: rdkafka::Statistics) {
        // Bootstrap and coordinator entries have negative node ids.
        let broker_up = statistics
            .brokers
            .values()
            .any(|b| b.nodeid >= 0 && b.state == "UP");
        if let Ok(mut shared) = self.shared.lock() {
            shared.broker_up = Some(broker_up);
        }
        let Some(topic) = statistics.topics.get(&self.topic) else {
            return;
        };
        if let Ok(mut shared) = self.shared.lock() {
            for (p, partition) in &topic.partitions {
                // Negative values mean "unknown"; partition -1 is internal.
                // (librdkafka's own consumer_lag counts from the committed
                // offset, which trails open windows on purpose.)
                let end = if partition.ls_offset >= 0 {
                    partition.ls_offset
                } else {
                    partition.hi_offset
                };
                if *p >= 0 && end >= 0 {
                    shared.ends.saw(*p, end);
                }
            }
        }
    }
}

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
        let epoch = self.fence.revoke();
        if let Some(firing) = &self.firing {
            // The sink drops the windows it waits to send: they are stale.
            firing.settle_all(epoch);
        }
        self.wait_for_sink();
        let _committing = self
            .committing
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        let accepted = self.acks.borrow().clone();
        let Ok(mut shared) = self.shared.lock() else {
            return;
        };
        if let Some(plan) = accepted.as_ref().and_then(|cp| {
            let first_read = std::collections::BTreeMap::new();
            shared
                .ledger
                .plan(&self.held_back(cp), &revoked, &first_read)
        }) {
            let result = self.commit(consumer, &plan, CommitMode::Sync);
            report_commit(&self.metrics, &plan, &result);
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
        let mut assigned = self.committed_partitions(consumer, &query);
        if let Some(kept) = MetadataSupport::shown_by(&assigned) {
            self.learn_metadata(kept);
        }
        if self.metadata().uses_companion() {
            fill_from_companion(&mut assigned, &self.companion_boundaries(query));
        }
        let topic_partitions = self.topic_partitions(consumer);
        if let Ok(mut shared) = self.shared.lock() {
            shared.events.push(RebalanceEvent::Assigned {
                partitions: assigned,
                topic_partitions,
            });
        }
    }
}
