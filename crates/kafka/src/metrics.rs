//! The source's self-metrics; each method logs and counts one observable thing.

use prometheus_client::encoding::{EncodeLabelSet, EncodeLabelValue};
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;
use tokio::time::{Duration, Instant};

use fleet_core::telemetry::RegisterMetric;
use fleet_core::{DecodeError, DecodeErrorKind, PartitionId};

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelValue)]
#[allow(non_camel_case_types)]
enum Reason {
    invalid_json,
    missing_field,
    wrong_type,
    unknown_event_type,
    invalid_value,
    malformed,
    too_far_ahead,
}

impl From<DecodeErrorKind> for Reason {
    fn from(k: DecodeErrorKind) -> Self {
        match k {
            DecodeErrorKind::InvalidJson => Reason::invalid_json,
            DecodeErrorKind::MissingField => Reason::missing_field,
            DecodeErrorKind::WrongType => Reason::wrong_type,
            DecodeErrorKind::UnknownEventType => Reason::unknown_event_type,
            DecodeErrorKind::InvalidValue => Reason::invalid_value,
            DecodeErrorKind::Malformed => Reason::malformed,
            DecodeErrorKind::TooFarAhead => Reason::too_far_ahead,
        }
    }
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ReasonLabels {
    reason: Reason,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelValue)]
#[allow(non_camel_case_types)]
enum CommitOutcome {
    ok,
    failed,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct CommitLabels {
    outcome: CommitOutcome,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct StoredLabels {
    stored: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct PartitionLabels {
    partition: i32,
}

/// Counters and gauges of the source (`fleet_source_*`).
#[derive(Clone, Debug)]
pub struct SourceMetrics {
    messages: Counter,
    events: Counter,
    decode_errors: Family<ReasonLabels, Counter>,
    duplicates: Counter,
    fetch_gaps: Counter,
    assigned: Gauge,
    paused: Gauge,
    commits: Family<CommitLabels, Counter>,
    metadata_unsupported: Gauge,
    firing_points: Family<StoredLabels, Counter>,
    partition_watermark: Family<PartitionLabels, Gauge>,
    consumer_lag: Family<PartitionLabels, Gauge>,
    log_limit: std::sync::Arc<std::sync::Mutex<LogLimit>>,
}

/// Logs at most one line per interval, counting what it suppressed.
#[derive(Debug)]
struct LogLimit {
    next: Option<Instant>,
    suppressed: u64,
}

impl SourceMetrics {
    /// Registers the metrics in `registry` (normally the `source` sub-registry).
    pub fn register(registry: &mut Registry) -> Self {
        let m = SourceMetrics {
            messages: registry.metric("messages", "Messages received from Kafka"),
            events: registry.metric("events", "Events decoded and passed on"),
            decode_errors: registry.metric(
                "decode_errors",
                "Malformed messages skipped, by reason",
            ),
            duplicates: registry.metric(
                "duplicate_messages",
                "Messages received again after a pause and skipped",
            ),
            fetch_gaps: registry.metric(
                "fetch_gap_offsets",
                "Offsets missing where a fetch started, even after rewinding to the start of the partition",
            ),
            assigned: registry.metric("assigned_partitions", "Partitions assigned"),
            paused: registry.metric(
                "paused",
                "1 while the source pauses its partitions because the pipeline is backpressured",
            ),
            commits: registry.metric("offset_commits", "Offset commits by outcome"),
            metadata_unsupported: registry.metric(
                "commit_metadata_unsupported",
                "1 when the broker does not keep offset-commit metadata (the window boundary goes to the companion group)",
            ),
            firing_points: registry.metric(
                "firing_points",
                "Firing points of the single output mode's closings the sink asked to store before sending their windows: stored=\"true\" with a commit, \"false\" where the broker drops commit metadata",
            ),
            consumer_lag: registry.metric(
                "consumer_lag_messages",
                "Messages on the broker not yet fetched, per partition (librdkafka statistics; read from the broker while the source is paused or a partition is quiet)",
            ),
            partition_watermark: registry.metric(
                "partition_watermark_milliseconds",
                "Each partition's watermark, epoch milliseconds",
            ),
            log_limit: std::sync::Arc::new(std::sync::Mutex::new(LogLimit {
                next: None,
                suppressed: 0,
            })),
        };
        for stored in ["true", "false"] {
            let _ = m.firing_points.get_or_create(&StoredLabels { stored });
        }
        for kind in DecodeErrorKind::ALL {
            // Export every reason from the start, at zero.
            let _ = m.decode_errors.get_or_create(&ReasonLabels {
                reason: kind.into(),
            });
        }
        m
    }

    /// Messages arrived: `events` decoded out of `messages`.
    pub fn received(&self, messages: u64, events: u64) {
        self.messages.inc_by(messages);
        self.events.inc_by(events);
    }

    /// A message could not be decoded; logged at most once a second.
    pub fn decode_error(&self, partition: PartitionId, offset: i64, error: &DecodeError) {
        self.decode_errors
            .get_or_create(&ReasonLabels {
                reason: error.kind.into(),
            })
            .inc();
        let Ok(mut limit) = self.log_limit.lock() else {
            return;
        };
        let now = Instant::now();
        if limit.next.is_some_and(|n| now < n) {
            limit.suppressed += 1;
            return;
        }
        tracing::warn!(
            partition,
            offset,
            reason = %error.kind,
            detail = %error.detail,
            suppressed_since_last = limit.suppressed,
            "Malformed message skipped."
        );
        limit.suppressed = 0;
        limit.next = Some(now + Duration::from_secs(1));
    }

    /// Messages already seen (re-fetched after a pause) were skipped.
    pub fn duplicates(&self, n: u64) {
        self.duplicates.inc_by(n);
    }

    /// A fetch asked for `expected` and nothing from there on or before it
    /// exists but `received` (retention or compaction removed them).
    pub fn fetch_gap(&self, partition: PartitionId, expected: i64, received: i64) {
        let missing = u64::try_from(received - expected).unwrap_or(0);
        self.fetch_gaps.inc_by(missing);
        tracing::warn!(
            partition,
            expected,
            received,
            "Offsets missing where fetching started; continuing from the first one present."
        );
    }

    /// The assignment changed.
    pub fn assigned(&self, partitions: usize) {
        self.assigned
            .set(i64::try_from(partitions).unwrap_or(i64::MAX));
    }

    /// Partitions were paused (`true`) or resumed.
    pub fn paused(&self, paused: bool) {
        tracing::debug!(paused, "Backpressure changed.");
        self.paused.set(i64::from(paused));
    }

    /// A commit finished.
    pub fn committed(&self, ok: bool, partitions: usize, error: Option<&str>) {
        let outcome = if ok {
            CommitOutcome::ok
        } else {
            CommitOutcome::failed
        };
        self.commits.get_or_create(&CommitLabels { outcome }).inc();
        match error {
            Some(error) => {
                tracing::warn!(partitions, %error, "Offset commit failed; it is retried with the next one.")
            }
            None => tracing::debug!(partitions, "Offsets committed."),
        }
    }

    /// The broker returned no commit metadata for offsets this service committed.
    pub fn metadata_unsupported(&self) {
        if self.metadata_unsupported.get() == 0 {
            tracing::warn!(
                "The broker does not keep offset-commit metadata (degraded mode): the end of \
                 the last window written is kept as the committed offset of the companion \
                 group <group_id>.closed-windows instead, and in the single output mode a \
                 window sent again after a crash can differ from its first copy when it holds \
                 an event beyond the out-of-orderness bound (no firing points are stored)."
            );
        }
        self.metadata_unsupported.set(1);
    }

    /// `n` firing points were `stored` with a commit, or let go unstored.
    pub fn firing_points(&self, stored: bool, n: usize) {
        let stored = if stored { "true" } else { "false" };
        self.firing_points
            .get_or_create(&StoredLabels { stored })
            .inc_by(n as u64);
    }

    /// A partition's watermark moved.
    pub fn partition_watermark(&self, partition: PartitionId, watermark_ms: i64) {
        self.partition_watermark
            .get_or_create(&PartitionLabels { partition })
            .set(watermark_ms);
    }

    /// librdkafka reported a partition's consumer lag.
    pub fn consumer_lag(&self, partition: PartitionId, lag: i64) {
        self.consumer_lag
            .get_or_create(&PartitionLabels { partition })
            .set(lag);
    }

    /// A partition was revoked; stop exporting its watermark and lag.
    pub fn partition_revoked(&self, partition: PartitionId) {
        self.consumer_lag.remove(&PartitionLabels { partition });
        self.partition_watermark
            .remove(&PartitionLabels { partition });
    }
}
