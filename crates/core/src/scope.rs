//! The output mode, and the [`Scope`] of a set of windows that it implies.
//!
//! Whether an instance writes one series per group over every partition
//! (`single`) or one per group and partition (`partitioned`) is one setting of
//! the whole pipeline (`[pipeline] output_mode`). Everything downstream of it
//! speaks in scopes instead of asking the mode: watermarks, window sets and
//! the checkpoint's window boundaries are each keyed by the scope they cover,
//! so the aggregator, the commit ledger and the sink have no mode of their own
//! (docs/ARCHITECTURE.md, "Output modes").

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::{PartitionId, TimestampMs};

/// Which series an instance writes.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum OutputMode {
    /// One series per group over every partition: the instance processes
    /// only while it owns every partition of the topic (default).
    #[default]
    Single,
    /// One series per group and partition, labelled `kafka_partition`: any
    /// number of instances share the consumer group.
    Partitioned,
}

/// `[pipeline]`: what holds for the whole pipeline.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct PipelineConfig {
    /// `single` (default) or `partitioned`; see [`OutputMode`].
    pub output_mode: OutputMode,
}

/// What one set of windows covers: its watermark, its window boundary in the
/// checkpoint, and the label its series carry.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Scope {
    /// Every partition (the single output mode; also "every scope" for a
    /// watermark such as the end of a bounded input).
    All,
    /// One partition (the partitioned output mode).
    Partition(PartitionId),
}

impl Scope {
    /// The partition this scope is limited to, if any: the `kafka_partition`
    /// label of its series.
    pub fn partition(self) -> Option<PartitionId> {
        match self {
            Scope::All => None,
            Scope::Partition(p) => Some(p),
        }
    }

    /// Whether something addressed to `self` (a watermark) reaches the
    /// windows of `other`.
    pub fn covers(self, other: Scope) -> bool {
        self == Scope::All || self == other
    }
}

impl OutputMode {
    /// The scope whose windows an event of `partition` goes to.
    #[inline]
    pub fn scope_of(self, partition: PartitionId) -> Scope {
        match self {
            OutputMode::Single => Scope::All,
            OutputMode::Partitioned => Scope::Partition(partition),
        }
    }

    /// Whether this mode keeps a set of windows per `scope`: [`Scope::All`]
    /// in the single mode, each [`Scope::Partition`] in the partitioned one.
    pub fn keeps(self, scope: Scope) -> bool {
        matches!(
            (self, scope),
            (OutputMode::Single, Scope::All) | (OutputMode::Partitioned, Scope::Partition(_))
        )
    }

    /// Whether one instance must own every partition to write its series:
    /// a series over every partition written by two instances would carry
    /// partial aggregates.
    pub fn needs_every_partition(self) -> bool {
        self == OutputMode::Single
    }

    /// Per-partition window boundaries gathered per scope: each scope gets the
    /// newest boundary among its partitions.
    pub fn per_scope(
        self,
        per_partition: impl IntoIterator<Item = (PartitionId, TimestampMs)>,
    ) -> BTreeMap<Scope, TimestampMs> {
        let mut scoped = BTreeMap::new();
        for (p, ts) in per_partition {
            let kept = scoped.entry(self.scope_of(p)).or_insert(ts);
            *kept = (*kept).max(ts);
        }
        scoped
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_single_mode_has_one_scope_and_the_partitioned_one_per_partition() {
        assert_eq!(OutputMode::Single.scope_of(3), Scope::All);
        assert_eq!(OutputMode::Partitioned.scope_of(3), Scope::Partition(3));
        assert!(OutputMode::Single.needs_every_partition());
        assert!(!OutputMode::Partitioned.needs_every_partition());
        assert!(OutputMode::Single.keeps(Scope::All));
        assert!(!OutputMode::Single.keeps(Scope::Partition(0)));
        assert!(OutputMode::Partitioned.keeps(Scope::Partition(0)));
        assert!(!OutputMode::Partitioned.keeps(Scope::All));
    }

    #[test]
    fn boundaries_per_scope_keep_the_newest() {
        let boundaries = [(0, 10_000), (1, 25_000), (2, 15_000)];
        assert_eq!(
            OutputMode::Single.per_scope(boundaries),
            BTreeMap::from([(Scope::All, 25_000)])
        );
        assert_eq!(
            OutputMode::Partitioned.per_scope(boundaries),
            BTreeMap::from([
                (Scope::Partition(0), 10_000),
                (Scope::Partition(1), 25_000),
                (Scope::Partition(2), 15_000)
            ])
        );
    }

    #[test]
    fn all_covers_every_scope_and_a_partition_only_itself() {
        assert!(Scope::All.covers(Scope::Partition(1)));
        assert!(Scope::All.covers(Scope::All));
        assert!(Scope::Partition(1).covers(Scope::Partition(1)));
        assert!(!Scope::Partition(1).covers(Scope::Partition(2)));
        assert!(!Scope::Partition(1).covers(Scope::All));
        assert_eq!(Scope::Partition(4).partition(), Some(4));
        assert_eq!(Scope::All.partition(), None);
    }
}
