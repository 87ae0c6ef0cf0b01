//! Whether the broker keeps offset-commit metadata, and where the window
//! boundary goes when it does not.
//!
//! Each commit carries the end of the last window accepted for the
//! partition's scope (docs/ARCHITECTURE.md, "Delivery guarantee"). Tansu 0.6
//! accepts that metadata and returns none. An assignment where some
//! partition has a committed offset tells which broker this is; until one
//! does, the first commit is synchronous and read back. A broker that loses
//! it gets the boundaries as the committed "offsets" of the companion group
//! `<group_id>.closed-windows`, committed before the real offsets. The state
//! and its rules are here; the source carries them out.

use std::collections::HashMap;

use fleet_core::PartitionId;

use super::assignment::AssignedPartition;
use crate::commit::CommitPlan;
use crate::CommitMetadata;

/// Whether the broker keeps offset-commit metadata.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(super) enum MetadataSupport {
    /// Not known yet: the next commit is synchronous and read back.
    #[default]
    Unknown,
    /// It returns what was committed.
    Kept,
    /// It drops it: the boundary goes to the companion group too.
    Lost,
}

impl MetadataSupport {
    /// What an assignment shows: with some committed offset, whether the
    /// broker kept metadata (one of them carries it); otherwise nothing.
    pub(super) fn shown_by(partitions: &[AssignedPartition]) -> Option<bool> {
        partitions
            .iter()
            .any(|a| a.committed.is_some())
            .then(|| partitions.iter().any(|a| a.metadata.is_some()))
    }

    /// What a commit read back shows: the broker kept the metadata iff it
    /// returned what was `written`.
    pub(super) fn shown_by_read_back(
        written: &CommitMetadata,
        read_back: Option<&CommitMetadata>,
    ) -> bool {
        read_back == Some(written)
    }

    /// Learns whether the broker `kept` metadata; true when it is newly
    /// known to lose it (to report once per change).
    pub(super) fn learn(&mut self, kept: bool) -> bool {
        let new = if kept {
            MetadataSupport::Kept
        } else {
            MetadataSupport::Lost
        };
        let newly_lost = new == MetadataSupport::Lost && *self != new;
        *self = new;
        newly_lost
    }

    /// Whether a commit is to be synchronous and read back.
    pub(super) fn verifies(self) -> bool {
        self == MetadataSupport::Unknown
    }

    /// Whether the window boundaries are kept in the companion group.
    pub(super) fn uses_companion(self) -> bool {
        self == MetadataSupport::Lost
    }

    /// What to commit in the companion group before `plan`'s offsets: each
    /// partition's boundary as its "offset"; `None` when nothing. (It holds
    /// one number per partition: the firing points are not kept there.)
    pub(super) fn companion_offsets(self, plan: &CommitPlan) -> Option<Vec<(PartitionId, i64)>> {
        let boundaries: Vec<(PartitionId, i64)> = plan
            .metadata
            .iter()
            .filter_map(|(p, m)| Some((*p, m.closed_through?)))
            .collect();
        (self.uses_companion() && !boundaries.is_empty()).then_some(boundaries)
    }
}

/// The partition of `plan` whose commit is read back to verify, and the
/// metadata written with it.
pub(super) fn read_back_target(plan: &CommitPlan) -> Option<(PartitionId, CommitMetadata)> {
    plan.metadata.iter().next().map(|(p, m)| (*p, m.clone()))
}

/// The companion group of the consumer group `group_id`.
pub(super) fn companion_group(group_id: &str) -> String {
    format!("{group_id}.closed-windows")
}

/// The boundary kept as a companion group's committed offset.
pub(super) fn boundary_from_companion(offset: i64) -> CommitMetadata {
    CommitMetadata {
        closed_through: Some(offset),
        fired: Vec::new(),
    }
}

/// Fills in, from the companion group's `boundaries`, the boundary of each
/// assigned partition whose commit carries none.
pub(super) fn fill_from_companion(
    partitions: &mut [AssignedPartition],
    boundaries: &HashMap<PartitionId, CommitMetadata>,
) {
    for a in partitions {
        if a.metadata.is_none() {
            a.metadata = boundaries.get(&a.partition).cloned();
        }
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use super::*;

    fn boundary(closed_through: i64) -> CommitMetadata {
        boundary_from_companion(closed_through)
    }

    fn plan(boundaries: &[(PartitionId, i64)]) -> CommitPlan {
        CommitPlan {
            offsets: boundaries.iter().map(|(p, _)| (*p, 100)).collect(),
            metadata: boundaries.iter().map(|(p, c)| (*p, boundary(*c))).collect(),
        }
    }

    #[test]
    fn an_assignment_shows_support_only_with_a_committed_offset() {
        assert_eq!(MetadataSupport::shown_by(&[]), None);
        assert_eq!(
            MetadataSupport::shown_by(&[
                AssignedPartition::committed(0, None, None),
                AssignedPartition::committed(1, None, None)
            ]),
            None,
            "a new group shows nothing"
        );
        assert_eq!(
            MetadataSupport::shown_by(&[
                AssignedPartition::committed(0, Some(5), None),
                AssignedPartition::committed(1, Some(9), Some(5000))
            ]),
            Some(true)
        );
        assert_eq!(
            MetadataSupport::shown_by(&[
                AssignedPartition::committed(0, Some(5), None),
                AssignedPartition::committed(1, None, None)
            ]),
            Some(false)
        );
    }

    #[test]
    fn a_read_back_shows_support_when_it_returns_what_was_written() {
        assert!(MetadataSupport::shown_by_read_back(
            &boundary(5000),
            Some(&boundary(5000))
        ));
        assert!(!MetadataSupport::shown_by_read_back(&boundary(5000), None));
        assert!(!MetadataSupport::shown_by_read_back(
            &boundary(5000),
            Some(&boundary(4000))
        ));
    }

    #[test]
    fn losing_metadata_is_reported_once_per_change() {
        let mut m = MetadataSupport::default();
        assert!(m.verifies());
        assert!(!m.uses_companion());
        assert!(m.learn(false), "unknown to lost");
        assert_eq!(m, MetadataSupport::Lost);
        assert!(!m.verifies());
        assert!(m.uses_companion());
        assert!(!m.learn(false), "already lost");
        assert!(!m.learn(true));
        assert_eq!(m, MetadataSupport::Kept);
        assert!(!m.verifies() && !m.uses_companion());
        assert!(m.learn(false), "kept to lost");
        let mut m = MetadataSupport::default();
        assert!(!m.learn(true));
        assert_eq!(m, MetadataSupport::Kept);
    }

    #[test]
    fn the_companion_group_gets_the_boundaries_only_when_metadata_is_lost() {
        let p = plan(&[(0, 10_000), (3, 15_000)]);
        assert_eq!(MetadataSupport::Unknown.companion_offsets(&p), None);
        assert_eq!(MetadataSupport::Kept.companion_offsets(&p), None);
        assert_eq!(
            MetadataSupport::Lost.companion_offsets(&p),
            Some(vec![(0, 10_000), (3, 15_000)])
        );
        let without = CommitPlan {
            offsets: vec![(0, 100)],
            metadata: BTreeMap::new(),
        };
        assert_eq!(MetadataSupport::Lost.companion_offsets(&without), None);
        assert_eq!(read_back_target(&p), Some((0, boundary(10_000))));
        assert_eq!(read_back_target(&without), None);
    }

    #[test]
    fn companion_boundaries_fill_in_only_what_the_commit_lacks() {
        assert_eq!(companion_group("fleet"), "fleet.closed-windows");
        let mut partitions = [
            AssignedPartition::committed(0, Some(5), Some(20_000)),
            AssignedPartition::committed(1, Some(9), None),
            AssignedPartition::committed(2, None, None),
        ];
        let kept = HashMap::from([
            (0, boundary_from_companion(10_000)),
            (1, boundary_from_companion(15_000)),
        ]);
        fill_from_companion(&mut partitions, &kept);
        assert_eq!(
            partitions.map(|a| a.metadata),
            [Some(boundary(20_000)), Some(boundary(15_000)), None]
        );
    }
}
