//! [`IdTable`]: string id → (dense id, model), one cache line per probe.
//!
//! The catalog looks up every event's VIN. With a `HashMap<Box<str>, _>` a
//! lookup costs SipHash, a miss on the bucket and a second, dependent miss on
//! the boxed key bytes. Here an id of at most 23 bytes (every VIN) is stored
//! inline in its slot as three words ([`SmallStr::inline_words`]): one slot
//! is 32 bytes, aligned, so a probe reads one cache line, compares three
//! words and finds the dense id and the model next to them. Open addressing
//! with linear probing, at most 3/4 full; the hash is two folded
//! 64×64→128-bit multiplies, keyed per process, scaled to the table length
//! (which need not be a power of two, so a table loaded with `n` ids takes
//! `4n/3` slots, not up to twice that).
//!
//! Ids longer than 23 bytes (which the wire format allows and the fleet
//! never sends) and the empty id go to an ordinary `HashMap`.

use std::collections::HashMap;
use std::hash::{BuildHasher, RandomState};

use fleet_core::SmallStr;

/// What the table holds per id.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(crate) struct Meta {
    /// The dense id assigned at insertion.
    pub id: u32,
    /// Caller's data; the catalog keeps the model index there.
    pub value: u32,
}

/// One slot: an inline key (all zero: empty) and its data.
#[derive(Clone, Copy, Debug, Default)]
#[repr(C, align(32))]
struct Slot {
    key: [u64; 3],
    meta: Meta,
}

const EMPTY: [u64; 3] = [0; 3];
const MIN_CAPACITY: usize = 16;

/// String id → [`Meta`]; see the module documentation.
#[derive(Debug)]
pub(crate) struct IdTable {
    /// Any length of at least [`MIN_CAPACITY`]: the home slot is the hash
    /// scaled to it (multiply-high), so the table is sized to what it holds.
    slots: Vec<Slot>,
    /// Occupied slots.
    inline_len: usize,
    /// Ids that are not inline (empty, or longer than 23 bytes).
    other: HashMap<Box<str>, Meta>,
    seeds: [u64; 2],
}

#[inline]
fn folded_multiply(a: u64, b: u64) -> u64 {
    let p = u128::from(a) * u128::from(b);
    (p as u64) ^ ((p >> 64) as u64)
}

impl IdTable {
    /// An empty table with room for `n` inline ids before it grows.
    pub fn with_capacity(n: usize) -> IdTable {
        let random = RandomState::new();
        let mut table = IdTable {
            slots: Vec::new(),
            inline_len: 0,
            other: HashMap::new(),
            seeds: [
                random.hash_one(0x5eed_u64) | 1,
                random.hash_one(0xf1ee7_u64) | 1,
            ],
        };
        table.resize(Self::capacity_for(n));
        table
    }

    fn capacity_for(n: usize) -> usize {
        (n.saturating_mul(4) / 3 + 1).max(MIN_CAPACITY)
    }

    /// Ids in the table.
    pub fn len(&self) -> usize {
        self.inline_len + self.other.len()
    }

    /// Makes room for `additional` more ids without growing on the way.
    pub fn reserve(&mut self, additional: usize) {
        let want = Self::capacity_for(self.inline_len.saturating_add(additional));
        if want > self.slots.len() {
            self.resize(want);
        }
    }

    #[inline(always)]
    fn hash(&self, key: &[u64; 3]) -> u64 {
        let h = folded_multiply(key[0] ^ self.seeds[0], key[1] ^ 0x243f_6a88_85a3_08d3);
        folded_multiply(h ^ key[2], self.seeds[1])
    }

    #[inline(always)]
    fn home(&self, key: &[u64; 3]) -> usize {
        ((u128::from(self.hash(key)) * self.slots.len() as u128) >> 64) as usize
    }

    /// The slot holding `key`, or the empty slot where it would go.
    #[inline(always)]
    fn find(&self, key: &[u64; 3]) -> usize {
        let mut i = self.home(key);
        loop {
            let slot = &self.slots[i];
            if slot.key == *key || slot.key == EMPTY {
                return i;
            }
            i += 1;
            if i == self.slots.len() {
                i = 0;
            }
        }
    }

    #[cold]
    #[inline(never)]
    fn grow(&mut self) {
        self.resize(self.slots.len() * 2);
    }

    fn resize(&mut self, capacity: usize) {
        let old = std::mem::replace(&mut self.slots, vec![Slot::default(); capacity]);
        for slot in old.into_iter().filter(|s| s.key != EMPTY) {
            let i = self.find(&slot.key);
            self.slots[i] = slot;
        }
    }

    /// Starts loading the home slot of `id` (see [`fleet_core::prefetch`]),
    /// for an `entry` or `get` of it shortly after.
    #[inline(always)]
    pub fn prefetch(&self, id: &SmallStr) {
        if let Some(key) = id.inline_words() {
            if let Some(slot) = self.slots.get(self.home(&key)) {
                fleet_core::prefetch::prefetch_read(slot);
            }
        }
    }

    /// The data of `id`, if present.
    #[inline]
    pub fn get(&self, id: &SmallStr) -> Option<Meta> {
        match id.inline_words() {
            Some(key) if key != EMPTY => {
                let slot = &self.slots[self.find(&key)];
                (slot.key == key).then_some(slot.meta)
            }
            _ => self.other.get(id.as_str()).copied(),
        }
    }

    /// The data of `id`; when absent, inserts `Meta { id: next_id, value }`
    /// first. Returns whether it inserted.
    #[inline(always)]
    pub fn entry(&mut self, id: &SmallStr, next_id: u32, value: u32) -> (&mut Meta, bool) {
        match id.inline_words() {
            Some(key) if key != EMPTY => self.entry_inline(key, next_id, value),
            _ => self.entry_other(id.as_str(), next_id, value),
        }
    }

    /// [`Self::entry`] for a `&str`.
    pub fn entry_str(&mut self, id: &str, next_id: u32, value: u32) -> (&mut Meta, bool) {
        match SmallStr::words_of_str(id) {
            Some(key) if key != EMPTY => self.entry_inline(key, next_id, value),
            _ => self.entry_other(id, next_id, value),
        }
    }

    #[inline(always)]
    fn entry_inline(&mut self, key: [u64; 3], next_id: u32, value: u32) -> (&mut Meta, bool) {
        let mut i = self.find(&key);
        let inserted = self.slots[i].key == EMPTY;
        if inserted {
            if (self.inline_len + 1) * 4 > self.slots.len() * 3 {
                self.grow();
                i = self.find(&key);
            }
            self.inline_len += 1;
            self.slots[i] = Slot {
                key,
                meta: Meta { id: next_id, value },
            };
        }
        (&mut self.slots[i].meta, inserted)
    }

    #[cold]
    #[inline(never)]
    fn entry_other(&mut self, id: &str, next_id: u32, value: u32) -> (&mut Meta, bool) {
        let mut inserted = false;
        let meta = self.other.entry(id.into()).or_insert_with(|| {
            inserted = true;
            Meta { id: next_id, value }
        });
        (meta, inserted)
    }

    /// Every id's data, in no particular order.
    pub fn values_mut(&mut self) -> impl Iterator<Item = &mut Meta> {
        self.slots
            .iter_mut()
            .filter(|s| s.key != EMPTY)
            .map(|s| &mut s.meta)
            .chain(self.other.values_mut())
    }

    /// Heap bytes held (slots and the fallback map's entries, roughly).
    pub fn heap_bytes(&self) -> usize {
        self.slots.capacity() * std::mem::size_of::<Slot>()
            + self
                .other
                .keys()
                .map(|k| k.len() + 16 + std::mem::size_of::<Meta>())
                .sum::<usize>()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use std::collections::HashMap;

    #[test]
    fn slots_are_one_aligned_half_cache_line() {
        assert_eq!(std::mem::size_of::<Slot>(), 32);
        assert_eq!(std::mem::align_of::<Slot>(), 32);
    }

    #[test]
    fn keeps_ids_of_every_length_apart() {
        let mut t = IdTable::with_capacity(0);
        let ids = [
            "",
            "a",
            "a\0",
            "1HGCM82633A004352",
            &"x".repeat(23),
            &"x".repeat(24),
            &"y".repeat(200),
        ];
        for (n, id) in ids.iter().enumerate() {
            let (meta, inserted) = t.entry_str(id, n as u32, 7);
            assert!(inserted, "{id:?}");
            assert_eq!(meta.id, n as u32);
        }
        for (n, id) in ids.iter().enumerate() {
            assert_eq!(
                t.get(&SmallStr::new(id)),
                Some(Meta {
                    id: n as u32,
                    value: 7
                })
            );
            let (meta, inserted) = t.entry(&SmallStr::new(id), 99, 0);
            assert!(!inserted);
            assert_eq!(meta.id, n as u32);
        }
        assert_eq!(t.len(), ids.len());
        assert_eq!(t.get(&SmallStr::new("b")), None);
        assert_eq!(t.values_mut().count(), ids.len());
    }

    proptest! {
        #[test]
        fn is_a_map(ops in proptest::collection::vec(("[a-c]{0,3}|[0-9A-Z]{17}|.{20,30}", any::<u32>()), 0..400)) {
            let mut t = IdTable::with_capacity(0);
            let mut model: HashMap<String, Meta> = HashMap::new();
            for (id, value) in ops {
                let next = model.len() as u32;
                let existed = model.contains_key(&id);
                let (meta, inserted) = t.entry_str(&id, next, value);
                let want = *model.entry(id.clone()).or_insert(Meta { id: next, value });
                prop_assert_eq!(*meta, want);
                prop_assert_eq!(inserted, !existed);
                meta.value = value ^ 1;
                model.get_mut(&id).unwrap().value = value ^ 1;
            }
            prop_assert_eq!(t.len(), model.len());
            for (id, meta) in &model {
                prop_assert_eq!(t.get(&SmallStr::new(id)), Some(*meta));
            }
        }
    }
}
