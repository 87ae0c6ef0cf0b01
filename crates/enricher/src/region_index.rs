//! [`RegionIndex`]: the regions seen so far, each alone in its slot.
//!
//! Every event names its region, and a fleet reports from a few dozen. The
//! catalog's keyed [`IdTable`](crate::table::IdTable) finds them, but with
//! random regions its probe loop ends after a varying number of steps, and
//! the mispredicted exits made the region lookup cost as much as the VIN's.
//! Here the known regions are placed without collisions (the table grows or
//! changes its seed until each has a slot of its own), so a lookup is one
//! multiply, one slot and one compare that is nearly always true. A region
//! not found here is new, and goes through the catalog's table first.
//!
//! Regions come from the input, so their number is not bounded: past
//! [`MAX_REGIONS`] this index stops taking more, and the others are found
//! in the catalog's table as before.

/// Regions this index holds at most. Placing n keys without a collision
/// takes a table of about n² / 2 slots, so this keeps it within 64 KiB.
const MAX_REGIONS: usize = 64;
const EMPTY_SLOT: ([u64; 3], u32) = ([0; 3], u32::MAX);

/// Inline region words → region index; see the module documentation.
#[derive(Debug)]
pub(crate) struct RegionIndex {
    /// Power-of-two length.
    slots: Vec<([u64; 3], u32)>,
    /// `64 - log2(slots.len())`.
    shift: u32,
    seed: u64,
    /// Every region placed, to place again when the table is rebuilt.
    regions: Vec<([u64; 3], u32)>,
}

impl Default for RegionIndex {
    fn default() -> Self {
        RegionIndex {
            slots: vec![EMPTY_SLOT; 1],
            shift: 64,
            seed: 0,
            regions: Vec::new(),
        }
    }
}

impl RegionIndex {
    #[inline(always)]
    fn slot_of(key: &[u64; 3], seed: u64, shift: u32) -> usize {
        let mixed = key[0] ^ key[1].rotate_left(21) ^ key[2].rotate_left(42) ^ seed;
        // `shift` is 64 for the one-slot table: every key goes to slot 0.
        mixed
            .wrapping_mul(0x9e37_79b9_7f4a_7c15)
            .checked_shr(shift)
            .unwrap_or(0) as usize
    }

    /// The index of the region whose inline words are `key`, if placed.
    #[inline(always)]
    pub fn get(&self, key: &[u64; 3]) -> Option<u32> {
        let (k, index) = self.slots.get(Self::slot_of(key, self.seed, self.shift))?;
        (k == key && *index != u32::MAX).then_some(*index)
    }

    /// Places a region that is not here yet; does nothing once full.
    pub fn insert(&mut self, key: [u64; 3], index: u32) {
        if self.regions.len() >= MAX_REGIONS || self.get(&key).is_some() {
            return;
        }
        self.regions.push((key, index));
        let slot = Self::slot_of(&key, self.seed, self.shift);
        if self.regions.len() * 4 <= self.slots.len() && self.slots[slot].1 == u32::MAX {
            self.slots[slot] = (key, index);
            return;
        }
        self.rebuild();
    }

    /// Places every region again without collisions, in a table at least
    /// four times their number, trying a few seeds per length before
    /// doubling it.
    #[cold]
    fn rebuild(&mut self) {
        let mut len = (self.regions.len() * 4).next_power_of_two();
        let mut seed = self.seed;
        loop {
            for _ in 0..8 {
                seed = seed.wrapping_add(0xa076_1d64_78bd_642f);
                if let Some(slots) = self.placed(len, seed) {
                    self.slots = slots;
                    self.shift = 64 - len.trailing_zeros();
                    self.seed = seed;
                    return;
                }
            }
            len *= 2;
        }
    }

    /// The regions placed in `len` slots with `seed`, if none collide.
    fn placed(&self, len: usize, seed: u64) -> Option<Vec<([u64; 3], u32)>> {
        let shift = 64 - len.trailing_zeros();
        let mut slots = vec![EMPTY_SLOT; len];
        for &(key, index) in &self.regions {
            let slot = &mut slots[Self::slot_of(&key, seed, shift)];
            if slot.1 != u32::MAX {
                return None;
            }
            *slot = (key, index);
        }
        Some(slots)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use fleet_core::SmallStr;

    fn words(s: &str) -> [u64; 3] {
        SmallStr::words_of_str(s).expect("inline")
    }

    #[test]
    fn finds_every_region_placed_and_nothing_else() {
        let mut index = RegionIndex::default();
        let names: Vec<String> = (0..300).map(|i| format!("region-{i}")).collect();
        for (i, name) in names.iter().enumerate() {
            index.insert(words(name), i as u32);
            index.insert(words(name), 9999);
            for (j, earlier) in names[..=i.min(MAX_REGIONS - 1)].iter().enumerate() {
                assert_eq!(index.get(&words(earlier)), Some(j as u32), "{earlier}");
            }
        }
        assert_eq!(index.regions.len(), MAX_REGIONS, "stops taking more");
        assert_eq!(index.get(&words(&names[MAX_REGIONS])), None);
        assert_eq!(index.get(&words("elsewhere")), None);
        assert_eq!(index.get(&[0; 3]), None, "an empty slot is no region");
    }
}
