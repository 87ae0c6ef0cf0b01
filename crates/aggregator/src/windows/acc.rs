//! The accumulators of one open window.
//!
//! Per group, a fixed record of sums and counts ([`GroupAcc`]), in a vector
//! indexed by [`GroupId`] (group ids are dense). Per distinct (vehicle, group)
//! of the window, one 32-byte slot in an open-addressing table
//! ([`VehicleTable`]): whether the vehicle moved, and its latest warnings
//! reading. Vehicle keys are dense integers from the enricher, so the hash
//! is one multiplication; a probe reads one cache line, where a
//! `HashMap<VehicleKey, _>` per group cost SipHash and a 40-byte bucket.
//! The distinct counts and the warnings sum are kept up to date as events
//! arrive, so closing a window never walks its vehicles.

use fleet_core::{EnrichedEvent, EventType, GroupId, PartitionId, PartitionMap, TimestampMs};

/// Sums and counts of one group in one window.
#[derive(Clone, Copy, Debug, Default)]
pub(super) struct GroupAcc {
    /// Events counted; `0` means the group has no data in this window.
    pub events: u64,
    pub in_motion: u64,
    pub reporting: u64,
    /// Sum over the group's vehicles of their latest warnings reading
    /// (wrapping, as a release-mode `i64` sum of the final readings).
    pub warnings: i64,
    pub ic_sum: i64,
    pub ic_count: u64,
    pub electric_sum: i64,
    pub electric_count: u64,
}

const OCCUPIED: u8 = 1;
const MOVING: u8 = 2;
const WARNED: u8 = 4;

/// One vehicle of one group in one window.
#[derive(Clone, Copy, Debug, Default)]
#[repr(C, align(32))]
struct VehicleSlot {
    /// Latest warnings reading by event time: timestamp and lights on
    /// (meaningful when `WARNED`).
    warn_ts: TimestampMs,
    warn_value: i64,
    vehicle: u32,
    group: u32,
    flags: u8,
}

/// (vehicle, group) → [`VehicleSlot`]: open addressing, linear probing, at
/// most 3/4 full. The home slot is the vehicle's Fibonacci hash scaled to the
/// table length (which need not be a power of two). It leaves the group out:
/// the enricher numbers vehicles densely, and the Fibonacci hashes of dense
/// keys spread evenly (no two close together), where mixing the group in
/// made them collide like random ones and the probe loop's varying length
/// cost 8 % of the pipeline. A vehicle's other groups in the same window
/// (rare: a region change) probe on from the same home.
#[derive(Debug, Default)]
pub(super) struct VehicleTable {
    slots: Vec<VehicleSlot>,
    len: usize,
}

impl VehicleTable {
    #[inline(always)]
    fn home(&self, vehicle: u32) -> usize {
        let h = u64::from(vehicle).wrapping_mul(0x9e37_79b9_7f4a_7c15);
        ((u128::from(h) * self.slots.len() as u128) >> 64) as usize
    }

    /// The slot of `(vehicle, group)`, or the empty slot where it goes.
    #[inline(always)]
    fn find(&self, vehicle: u32, group: u32) -> usize {
        let mut i = self.home(vehicle);
        loop {
            let s = &self.slots[i];
            if s.flags == 0 || (s.vehicle == vehicle && s.group == group) {
                return i;
            }
            i += 1;
            if i == self.slots.len() {
                i = 0;
            }
        }
    }

    /// Starts loading the home slot of `vehicle`'s groups.
    #[inline(always)]
    fn prefetch(&self, vehicle: u32) {
        if let Some(slot) = self.slots.get(self.home(vehicle)) {
            fleet_core::prefetch::prefetch_read(slot);
        }
    }

    #[cold]
    #[inline(never)]
    fn grow(&mut self) {
        let capacity = (self.slots.len() * 3 / 2).max(64);
        let old = std::mem::replace(&mut self.slots, vec![VehicleSlot::default(); capacity]);
        for slot in old.into_iter().filter(|s| s.flags != 0) {
            let i = self.find(slot.vehicle, slot.group);
            self.slots[i] = slot;
        }
    }

    /// The slot of `(vehicle, group)`, created empty if absent; and whether
    /// it was created.
    #[inline(always)]
    fn slot(&mut self, vehicle: u32, group: u32) -> (&mut VehicleSlot, bool) {
        if (self.len + 1) * 4 > self.slots.len() * 3 {
            self.grow();
        }
        let i = self.find(vehicle, group);
        let slot = &mut self.slots[i];
        let created = slot.flags == 0;
        if created {
            *slot = VehicleSlot {
                vehicle,
                group,
                flags: OCCUPIED,
                ..VehicleSlot::default()
            };
            self.len += 1;
        }
        (slot, created)
    }

    /// Empties the table, keeping its memory for the next window.
    pub fn clear(&mut self) {
        if self.len > 0 {
            self.slots.fill(VehicleSlot::default());
            self.len = 0;
        }
    }
}

/// Per partition, the smallest or the largest offset seen.
#[derive(Clone, Debug, Default)]
pub(super) struct OffsetMap(PartitionMap<i64>);

impl OffsetMap {
    /// Keeps the largest value per partition.
    #[inline]
    pub fn raise(&mut self, partition: PartitionId, value: i64) {
        let v = self.0.get_or_insert_with(partition, || value);
        *v = (*v).max(value);
    }

    /// Keeps the smallest value per partition.
    #[inline]
    pub fn lower(&mut self, partition: PartitionId, value: i64) {
        let v = self.0.get_or_insert_with(partition, || value);
        *v = (*v).min(value);
    }

    pub fn clear(&mut self) {
        self.0.clear();
    }

    pub fn iter(&self) -> impl Iterator<Item = (PartitionId, i64)> + '_ {
        self.0.iter().map(|(p, v)| (p, *v))
    }
}

/// One open window.
#[derive(Debug, Default)]
pub(super) struct OpenWindow {
    pub start: TimestampMs,
    /// Indexed by group id; as long as the largest group id seen here.
    pub groups: Vec<GroupAcc>,
    vehicles: VehicleTable,
    /// Per partition, the smallest offset of an event in this window: the
    /// input must be replayed from there if this window is lost.
    pub first_offsets: OffsetMap,
}

impl OpenWindow {
    /// A window starting at `start`, reusing `vehicles` (empty) if given.
    pub fn new(start: TimestampMs, vehicles: Option<VehicleTable>) -> OpenWindow {
        OpenWindow {
            start,
            vehicles: vehicles.unwrap_or_default(),
            ..OpenWindow::default()
        }
    }

    /// Gives back the vehicle table, emptied, for another window.
    pub fn recycle(mut self) -> VehicleTable {
        self.vehicles.clear();
        self.vehicles
    }

    /// Starts loading what [`Self::add`] of `e` will read.
    #[inline(always)]
    pub fn prefetch(&self, e: &EnrichedEvent) {
        self.vehicles.prefetch(e.vehicle.0);
    }

    /// Adds an event.
    #[inline]
    pub fn add(&mut self, e: &EnrichedEvent) {
        self.first_offsets.lower(e.partition, e.offset);
        let g = e.group.0 as usize;
        if g >= self.groups.len() {
            self.groups.resize(g + 1, GroupAcc::default());
        }
        let acc = &mut self.groups[g];
        acc.events += 1;
        let (v, created) = self.vehicles.slot(e.vehicle.0, e.group.0);
        if created {
            acc.reporting += 1;
        }
        match e.event_type {
            EventType::IcRpm => {
                acc.ic_sum = acc.ic_sum.saturating_add(e.measurement);
                acc.ic_count += 1;
            }
            EventType::ElectricRpm => {
                acc.electric_sum = acc.electric_sum.saturating_add(e.measurement);
                acc.electric_count += 1;
            }
            EventType::Warnings => {
                // Latest by event time; on a tie, the larger value.
                let newer = v.flags & WARNED == 0
                    || (e.timestamp, e.measurement) > (v.warn_ts, v.warn_value);
                if newer {
                    let previous = if v.flags & WARNED != 0 {
                        v.warn_value
                    } else {
                        0
                    };
                    acc.warnings = acc
                        .warnings
                        .wrapping_sub(previous)
                        .wrapping_add(e.measurement);
                    v.warn_ts = e.timestamp;
                    v.warn_value = e.measurement;
                    v.flags |= WARNED;
                }
            }
        }
        if e.event_type != EventType::Warnings && e.measurement != 0 && v.flags & MOVING == 0 {
            v.flags |= MOVING;
            acc.in_motion += 1;
        }
    }

    /// The totals of every group for which `folded` holds, merged into one
    /// group: sums and counts add up; a vehicle in several of them counts
    /// once, moving if it moved in any, with its latest warnings reading
    /// among them. Walks the window's vehicles, so only for the rare window
    /// over its group limit.
    pub fn fold(&self, folded: impl Fn(GroupId) -> bool) -> GroupAcc {
        let mut acc = GroupAcc::default();
        for (g, group) in self.groups() {
            if folded(g) {
                acc.events += group.events;
                acc.ic_sum = acc.ic_sum.saturating_add(group.ic_sum);
                acc.ic_count += group.ic_count;
                acc.electric_sum = acc.electric_sum.saturating_add(group.electric_sum);
                acc.electric_count += group.electric_count;
            }
        }
        let mut slots: Vec<&VehicleSlot> = self
            .vehicles
            .slots
            .iter()
            .filter(|s| s.flags != 0 && folded(GroupId(s.group)))
            .collect();
        slots.sort_unstable_by_key(|s| s.vehicle);
        for same in slots.chunk_by(|a, b| a.vehicle == b.vehicle) {
            acc.reporting += 1;
            if same.iter().any(|s| s.flags & MOVING != 0) {
                acc.in_motion += 1;
            }
            let latest = same
                .iter()
                .filter(|s| s.flags & WARNED != 0)
                .map(|s| (s.warn_ts, s.warn_value))
                .max();
            if let Some((_, value)) = latest {
                acc.warnings = acc.warnings.wrapping_add(value);
            }
        }
        acc
    }

    /// The groups with data, with their totals.
    pub fn groups(&self) -> impl Iterator<Item = (GroupId, &GroupAcc)> + '_ {
        (0u32..)
            .zip(&self.groups)
            .filter(|(_, acc)| acc.events > 0)
            .map(|(g, acc)| (GroupId(g), acc))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn slots_are_one_aligned_half_cache_line() {
        assert_eq!(std::mem::size_of::<VehicleSlot>(), 32);
        assert_eq!(std::mem::align_of::<VehicleSlot>(), 32);
    }

    #[test]
    fn vehicle_table_keeps_vehicle_group_pairs_apart_and_grows() {
        let mut t = VehicleTable::default();
        for v in 0..10_000u32 {
            for g in [0u32, 7, u32::MAX] {
                let (s, created) = t.slot(v, g);
                assert!(created);
                s.warn_value = i64::from(v) * 3 + i64::from(g % 5);
            }
        }
        for v in (0..10_000u32).rev() {
            for g in [0u32, 7, u32::MAX] {
                let (s, created) = t.slot(v, g);
                assert!(!created);
                assert_eq!(s.warn_value, i64::from(v) * 3 + i64::from(g % 5));
            }
        }
        assert_eq!(t.len, 30_000);
        t.clear();
        assert!(t.slot(u32::MAX, u32::MAX).1, "empty again");
    }

    #[test]
    fn offset_map_keeps_min_and_max_per_partition() {
        let mut m = OffsetMap::default();
        for (p, o) in [(3, 10), (1, 5), (3, 8), (2, 1), (1, 7), (3, 12)] {
            m.lower(p, o);
        }
        assert_eq!(m.iter().collect::<Vec<_>>(), [(1, 5), (2, 1), (3, 8)]);
        let mut m = OffsetMap::default();
        for (p, o) in [(3, 10), (1, 5), (3, 8), (2, 1), (1, 7), (3, 12)] {
            m.raise(p, o);
        }
        assert_eq!(m.iter().collect::<Vec<_>>(), [(1, 7), (2, 1), (3, 12)]);
    }
}
