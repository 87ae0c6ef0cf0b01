//! The group labels of every grouping, as the enricher announces groups.
//!
//! The enricher numbers groups of every label (model, the event labels, the
//! reference dimensions). A metric may group by fewer (`by`): each plan
//! grouping numbers its own groups densely, and this table maps every
//! enricher group to its group in each grouping once, when announced, so a
//! record finds its groups by indexing.

use std::collections::HashMap;

use fleet_core::{GroupId, GroupKey, Labels};
use fleet_plan::MetricPlan;

/// One grouping's groups.
#[derive(Debug)]
struct GroupingTable {
    /// Positions of the grouping's labels in an enricher group's labels.
    labels: Vec<usize>,
    keys: Vec<GroupKey>,
    index: HashMap<Labels, u32>,
}

/// Every grouping's groups, and the map from enricher groups to them.
#[derive(Debug)]
pub(crate) struct GroupTables {
    full: Vec<GroupKey>,
    /// Per enricher group, its group in each grouping.
    of_full: Vec<u32>,
    groupings: Vec<GroupingTable>,
}

impl GroupTables {
    pub fn new(plan: &MetricPlan) -> Self {
        GroupTables {
            full: Vec::new(),
            of_full: Vec::new(),
            groupings: plan
                .groupings
                .iter()
                .map(|g| GroupingTable {
                    labels: g.labels.iter().map(|l| usize::from(l.0)).collect(),
                    keys: Vec::new(),
                    index: HashMap::new(),
                })
                .collect(),
        }
    }

    /// Adds the groups the enricher announces, in id order.
    pub fn announce(&mut self, new_groups: Vec<GroupKey>) {
        for key in new_groups {
            for g in &mut self.groupings {
                let labels: Labels = g
                    .labels
                    .iter()
                    .filter_map(|&i| key.labels.get(i).cloned())
                    .collect();
                let next = g.keys.len() as u32;
                let id = *g.index.entry(labels.clone()).or_insert_with(|| {
                    g.keys.push(GroupKey {
                        labels,
                        partition: key.partition,
                    });
                    next
                });
                self.of_full.push(id);
            }
            self.full.push(key);
        }
    }

    /// The group of enricher group `group` in each grouping.
    #[inline(always)]
    pub fn of(&self, group: GroupId) -> &[u32] {
        let n = self.groupings.len();
        let at = group.0 as usize * n;
        self.of_full.get(at..at + n).unwrap_or_default()
    }

    /// The labels of group `id` of grouping `grouping`.
    pub fn key(&self, grouping: usize, id: u32) -> Option<&GroupKey> {
        self.groupings.get(grouping)?.keys.get(id as usize)
    }

    /// The labels of enricher group `group`.
    pub fn full(&self, group: GroupId) -> Option<&GroupKey> {
        self.full.get(group.0 as usize)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn maps_every_group_to_its_group_in_each_grouping() {
        let plan = MetricPlan::from_toml(
            r#"
            [[metrics]]
            name = "all"
            help = "h"
            function = "count"
            [[metrics]]
            name = "by_region"
            help = "h"
            function = "count"
            by = ["region"]
            "#,
            &[],
        )
        .unwrap();
        let mut t = GroupTables::new(&plan);
        t.announce(vec![
            GroupKey::new([("model", "A"), ("region", "UK")]),
            GroupKey::new([("model", "B"), ("region", "UK")]),
            GroupKey::new([("model", "A"), ("region", "FR")]),
        ]);
        assert_eq!(t.of(GroupId(0)), [0, 0]);
        assert_eq!(t.of(GroupId(1)), [1, 0]);
        assert_eq!(t.of(GroupId(2)), [2, 1]);
        assert_eq!(t.key(1, 1), Some(&GroupKey::new([("region", "FR")])));
        assert_eq!(t.full(GroupId(1)).and_then(|k| k.label("model")), Some("B"));
        assert!(t.of(GroupId(3)).is_empty());
    }
}
