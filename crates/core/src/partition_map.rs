//! [`PartitionMap`]: a value per Kafka partition, found without hashing.
//!
//! The watermark tracker and the aggregator's offset bookkeeping look a
//! partition up for every event. An instance owns a few partitions (tens at
//! most), and consecutive events mostly come from the same one, so a sorted
//! vector that first checks the entry it found last beats a `BTreeMap` or a
//! `HashMap` on the hot path, and iterates in partition order like the former.

use crate::PartitionId;

/// Partition → `V`, in partition order; see the module documentation.
#[derive(Clone, Debug)]
pub struct PartitionMap<V> {
    entries: Vec<(PartitionId, V)>,
    /// Index of the entry found last (a hint; may be out of range).
    last: usize,
}

impl<V> Default for PartitionMap<V> {
    fn default() -> Self {
        PartitionMap {
            entries: Vec::new(),
            last: 0,
        }
    }
}

impl<V> PartitionMap<V> {
    /// The entry of `partition`, or where it would go.
    #[inline(always)]
    fn search(&self, partition: PartitionId) -> Result<usize, usize> {
        match self.entries.get(self.last) {
            Some((p, _)) if *p == partition => Ok(self.last),
            _ => self.entries.binary_search_by_key(&partition, |e| e.0),
        }
    }

    /// The value of `partition`, if present.
    #[inline]
    pub fn get(&self, partition: PartitionId) -> Option<&V> {
        let i = self.search(partition).ok()?;
        self.entries.get(i).map(|e| &e.1)
    }

    /// The value of `partition`, if present, to change.
    #[inline]
    pub fn get_mut(&mut self, partition: PartitionId) -> Option<&mut V> {
        let i = self.search(partition).ok()?;
        self.last = i;
        self.entries.get_mut(i).map(|e| &mut e.1)
    }

    /// The value of `partition`, inserted from `new` first if absent.
    #[inline]
    pub fn get_or_insert_with(
        &mut self,
        partition: PartitionId,
        new: impl FnOnce() -> V,
    ) -> &mut V {
        let i = match self.search(partition) {
            Ok(i) => i,
            Err(i) => {
                self.entries.insert(i, (partition, new()));
                i
            }
        };
        self.last = i;
        &mut self.entries[i].1
    }

    /// Sets `partition`'s value; returns the one it replaced.
    pub fn insert(&mut self, partition: PartitionId, value: V) -> Option<V> {
        match self.search(partition) {
            Ok(i) => Some(std::mem::replace(&mut self.entries[i].1, value)),
            Err(i) => {
                self.entries.insert(i, (partition, value));
                None
            }
        }
    }

    /// Removes `partition`'s value and returns it.
    pub fn remove(&mut self, partition: PartitionId) -> Option<V> {
        let i = self.search(partition).ok()?;
        Some(self.entries.remove(i).1)
    }

    /// Removes every value.
    pub fn clear(&mut self) {
        self.entries.clear();
    }

    /// Whether the map is empty.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// The partitions, in order.
    pub fn keys(&self) -> impl Iterator<Item = PartitionId> + '_ {
        self.entries.iter().map(|e| e.0)
    }

    /// The values, in partition order.
    pub fn values(&self) -> impl Iterator<Item = &V> + '_ {
        self.entries.iter().map(|e| &e.1)
    }

    /// The values, in partition order, to change.
    pub fn values_mut(&mut self) -> impl Iterator<Item = &mut V> + '_ {
        self.entries.iter_mut().map(|e| &mut e.1)
    }

    /// (partition, value) pairs, in partition order.
    pub fn iter(&self) -> impl Iterator<Item = (PartitionId, &V)> + '_ {
        self.entries.iter().map(|e| (e.0, &e.1))
    }

    /// (partition, value) pairs, in partition order, values to change.
    pub fn iter_mut(&mut self) -> impl Iterator<Item = (PartitionId, &mut V)> + '_ {
        self.entries.iter_mut().map(|e| (e.0, &mut e.1))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeMap;

    #[test]
    fn behaves_as_a_btree_map() {
        let mut map = PartitionMap::default();
        let mut oracle = BTreeMap::new();
        // Inserts, hits on the last entry and elsewhere, removals.
        let ops = [3, 1, 3, 3, 7, -2, 1, 7, 0, 3, 12, 5, 5, 1];
        for (n, &p) in ops.iter().enumerate() {
            *map.get_or_insert_with(p, || 0) += n;
            *oracle.entry(p).or_insert(0) += n;
            if n % 5 == 4 {
                assert_eq!(map.remove(p), oracle.remove(&p));
            }
            if n % 7 == 6 {
                assert_eq!(map.insert(p + 1, n), oracle.insert(p + 1, n));
            }
            assert_eq!(map.get(p), oracle.get(&p));
            assert_eq!(
                map.iter().map(|(p, v)| (p, *v)).collect::<Vec<_>>(),
                oracle.iter().map(|(p, v)| (*p, *v)).collect::<Vec<_>>()
            );
        }
        assert_eq!(map.remove(99), None);
        assert!(map.get_mut(99).is_none());
        map.clear();
        assert!(map.is_empty());
        assert_eq!(map.get(3), None, "the hint does not outlive the entries");
    }
}
