//! What flows between the stages.
//!
//! Channels carry batches, never single events. Watermarks travel in-band
//! ([`Msg::Watermark`]) so they are ordered with the data they follow: a
//! watermark always comes after every event it covers.

use std::collections::BTreeMap;
use std::sync::Arc;

use serde::{Deserialize, Serialize};

use crate::aggregate::Labels;
#[cfg(doc)]
use crate::OutputMode;
use crate::{FiringPoint, PartitionId, RecordBatch, Scope, SignalValue, TimestampMs, Watermark};

/// A message on a stage channel: a batch of data, or a control message.
#[derive(Clone, Debug, PartialEq)]
pub enum Msg<T> {
    /// A batch of records.
    Data(T),
    /// Event time of the windows `Scope` covers has advanced to here for
    /// every record that follows: the pipeline's watermark in the single
    /// output mode ([`Scope::All`]), a partition's in the partitioned one.
    /// [`Scope::All`] reaches every window set (the end of a bounded input).
    Watermark(Scope, Watermark),
    /// The input restarts from the committed offsets (at start, and after
    /// every change of partition assignment): every open window is dropped,
    /// because its events will be delivered again. Windows ending at or
    /// before their scope's `written_through` (known from the commit
    /// metadata) were written before and are neither rebuilt nor written again.
    Rewind {
        /// Per scope of the assigned partitions, the end of the last window
        /// written before, where known (see [`OutputMode::per_scope`]).
        written_through: BTreeMap<Scope, TimestampMs>,
        /// The assignment epoch of the [`RevocationFence`](crate::RevocationFence)
        /// this input belongs to; checkpoints built from it carry it.
        epoch: u64,
        /// The single output mode's closings after `written_through` whose
        /// windows may have been sent, in order: their windows close at these
        /// points again, holding what they held (see [`FiringPoint`]).
        fired: Vec<FiringPoint>,
    },
}

impl<T> Msg<T> {
    /// The batch this message carries, or the control message it is, typed
    /// for the next stage's channel: control messages pass every stage
    /// unchanged and in order.
    pub fn into_data<U>(self) -> Result<T, Msg<U>> {
        match self {
            Msg::Data(batch) => Ok(batch),
            Msg::Watermark(scope, watermark) => Err(Msg::Watermark(scope, watermark)),
            Msg::Rewind {
                written_through,
                epoch,
                fired,
            } => Err(Msg::Rewind {
                written_through,
                epoch,
                fired,
            }),
        }
    }
}

/// `[channels]`: the capacity of each stage channel, in batches. A full
/// channel holds the stage before it back; the source pauses last.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct ChannelsConfig {
    /// Source → enricher.
    pub source_to_enricher: usize,
    /// Enricher → aggregator.
    pub enricher_to_aggregator: usize,
    /// Aggregator → sink.
    pub aggregator_to_sink: usize,
}

impl ChannelsConfig {
    /// Checks every key, naming it under `channels.`.
    pub fn validate(&self, problems: &mut crate::config::Problems) {
        for (key, capacity) in [
            ("channels.source_to_enricher", self.source_to_enricher),
            (
                "channels.enricher_to_aggregator",
                self.enricher_to_aggregator,
            ),
            ("channels.aggregator_to_sink", self.aggregator_to_sink),
        ] {
            problems.check(capacity > 0, key, "must be at least 1");
        }
    }
}

/// What the source sends to the enricher: decoded records (see [`RecordBatch`]).
pub type SourceBatch = RecordBatch;

/// A dense per-process number for a vehicle id, assigned by the enricher the
/// first time it sees the VIN. Distinct-vehicle counts use it instead of the string.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct VehicleKey(pub u32);

/// A dense number for a [`GroupKey`]; see [`EnrichedBatch::new_groups`].
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct GroupId(pub u32);

/// The labels an aggregate is grouped by: one output series per metric and group.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct GroupKey {
    /// `(name, value)` in plan label order: `model`, the event labels, the
    /// reference dimensions (docs/METRICS.md); a metric's grouping keeps
    /// some of them.
    pub labels: Labels,
    /// Partitioned output mode: the Kafka partition whose events these are
    /// (label `kafka_partition`); `None` in the single output mode.
    pub partition: Option<PartitionId>,
}

/// The label value of everything folded together once a window has more
/// groups than its configured limit (see [`GroupKey::other`]).
pub const OTHER_GROUP: &str = "other";

impl GroupKey {
    /// The group of these `(name, value)` labels, not partitioned.
    pub fn new<'a>(labels: impl IntoIterator<Item = (&'a str, &'a str)>) -> Self {
        GroupKey {
            labels: labels
                .into_iter()
                .map(|(n, v)| (Arc::from(n), Arc::from(v)))
                .collect(),
            partition: None,
        }
    }

    /// The value of the label `name`, if the group has it.
    pub fn label(&self, name: &str) -> Option<&str> {
        self.labels
            .iter()
            .find(|(n, _)| &**n == name)
            .map(|(_, v)| &**v)
    }

    /// The group that stands for every group folded away by a cardinality
    /// limit: every label of `self` set to [`OTHER_GROUP`], the partition kept.
    pub fn other(&self) -> Self {
        let other: Arc<str> = Arc::from(OTHER_GROUP);
        GroupKey {
            labels: self
                .labels
                .iter()
                .map(|(name, _)| (name.clone(), other.clone()))
                .collect(),
            partition: self.partition,
        }
    }
}

/// A record after the VIN → model join, reduced to what the windows need;
/// its signal values are in its batch ([`EnrichedBatch::values_of`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct EnrichedEvent {
    /// Source partition, for watermarks and offset bookkeeping.
    pub partition: PartitionId,
    /// Source offset, for offset bookkeeping.
    pub offset: i64,
    /// The vehicle, for distinct counts.
    pub vehicle: VehicleKey,
    /// The group of every label (model, event labels, dimensions).
    pub group: GroupId,
    /// Event time, epoch ms.
    pub timestamp: TimestampMs,
    /// Index of its first signal value in [`EnrichedBatch::values`].
    pub values_at: u32,
    /// How many signal values it carries.
    pub values_len: u16,
    /// The vehicle is selected for the per-vehicle drill-down output.
    pub drilldown: bool,
}

/// What the enricher sends to the aggregator.
///
/// Group ids are dense and assigned in order: the `i`-th group ever announced
/// has id `i`. A batch announces, before its events, every group those events
/// use for the first time, so the receiver can keep a plain `Vec<GroupKey>`.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct EnrichedBatch {
    /// Groups first used in this batch, in id order.
    pub new_groups: Vec<GroupKey>,
    /// Vehicles of the drill-down output first seen in this batch, with
    /// their ids, so the receiver can label their series.
    pub new_vehicles: Vec<(VehicleKey, Arc<str>)>,
    /// The events.
    pub events: Vec<EnrichedEvent>,
    /// Every event's signal values, one run per event.
    pub values: Vec<SignalValue>,
    /// Events of this batch that were consumed but produce no output (for
    /// example dropped unknown vehicles), so offset bookkeeping still sees them:
    /// `(partition, offset)`.
    pub consumed_without_output: Vec<(PartitionId, i64)>,
}

impl EnrichedBatch {
    /// The signal values of `event`.
    pub fn values_of(&self, event: &EnrichedEvent) -> &[SignalValue] {
        let at = event.values_at as usize;
        &self.values[at..at + usize::from(event.values_len)]
    }
}

/// How far the input may be acknowledged once the windows emitted with (and
/// before) this checkpoint have been accepted by the sink.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Checkpoint {
    /// Per partition, the offset a restart must replay from: no event before it
    /// is still in an open window. This is the offset to commit to Kafka.
    pub resume_offsets: BTreeMap<PartitionId, i64>,
    /// Per scope, the end of the newest window closed so far: once accepted,
    /// every window of that scope ending at or before it has been written and
    /// must not be written again.
    pub closed_through: BTreeMap<Scope, TimestampMs>,
    /// The assignment epoch of the input it was built from (see
    /// [`RevocationFence`](crate::RevocationFence)).
    pub epoch: u64,
}
