//! The accumulators of one open window, laid out by the plan ([`Layout`]).
//!
//! Per grouping, the cells of every group sit in two flat vectors (integers
//! and floats) indexed by the grouping's dense group id. Per distinct
//! (vehicle, group), one slot of words in an open-addressing table
//! ([`VehicleTable`]): its key, flag bits (counted for this distinct
//! metric, has a reading for that latest one) and the latest readings.
//! Vehicle keys are dense integers from the enricher, so the hash is one
//! multiplication; with the reference demo's metrics a slot is 32 bytes and
//! a probe reads one cache line. Distinct counts and integer sums of latest
//! readings are kept up to date as records arrive, so closing a window walks
//! its vehicles only for a float sum of latest readings or a fold.

use fleet_core::{
    EnrichedEvent, MetricValue, Number, PartitionId, PartitionMap, SignalValue, TimestampMs,
};
use fleet_plan::{SignalId, Value};

use crate::layout::{GroupingLayout, Layout, MetricCells, Num, Op, OCCUPIED};

/// (vehicle, group) → a slot of `stride` words: open addressing, linear
/// probing, at most 3/4 full. Word 0 is the key, word 1 the flags (0: an
/// empty slot), then the metrics' words. The home slot is the vehicle's
/// Fibonacci hash scaled to the table length: the enricher numbers vehicles
/// densely, and the Fibonacci hashes of dense keys spread evenly, where
/// mixing the group in made them collide like random ones. A vehicle's
/// other groups in the same window (rare: a region change) probe on from
/// the same home.
#[derive(Debug, Default)]
pub(super) struct VehicleTable {
    words: Vec<u64>,
    stride: usize,
    /// `words.len() / stride`, kept so that a probe divides nothing.
    slots: usize,
    len: usize,
}

impl VehicleTable {
    #[inline(always)]
    fn slots(&self) -> usize {
        self.slots
    }

    #[inline(always)]
    fn home(&self, vehicle: u32) -> usize {
        let h = u64::from(vehicle).wrapping_mul(0x9e37_79b9_7f4a_7c15);
        ((u128::from(h) * self.slots() as u128) >> 64) as usize
    }

    /// The first word of the slot of `key`, or of the empty slot where it goes.
    #[inline(always)]
    fn find(&self, vehicle: u32, key: u64) -> usize {
        let slots = self.slots();
        let mut i = self.home(vehicle);
        loop {
            let at = i * self.stride;
            if self.words[at + 1] == 0 || self.words[at] == key {
                return at;
            }
            i += 1;
            if i == slots {
                i = 0;
            }
        }
    }

    /// Starts loading the home slot of `vehicle`'s groups.
    #[inline(always)]
    fn prefetch(&self, vehicle: u32) {
        if self.stride > 0 {
            if let Some(word) = self.words.get(self.home(vehicle) * self.stride) {
                fleet_core::prefetch::prefetch_read(word);
            }
        }
    }

    #[cold]
    #[inline(never)]
    fn grow(&mut self) {
        let capacity = (self.slots * 3 / 2).max(64);
        let old = std::mem::replace(&mut self.words, vec![0; capacity * self.stride]);
        self.slots = capacity;
        for slot in old.chunks_exact(self.stride).filter(|s| s[1] != 0) {
            let at = self.find((slot[0] >> 32) as u32, slot[0]);
            self.words[at..at + self.stride].copy_from_slice(slot);
        }
    }

    /// The occupied slots: `(group, words)`.
    fn occupied(&self) -> impl Iterator<Item = (u32, &[u64])> + '_ {
        self.words
            .chunks_exact(self.stride.max(1))
            .filter(|s| s.len() > 1 && s[1] != 0)
            .map(|s| (s[0] as u32, s))
    }

    /// Empties the table for slots of `stride` words, keeping its memory.
    fn reset(&mut self, stride: usize) {
        if self.len > 0 || self.stride != stride {
            self.words.fill(0);
            self.len = 0;
        }
        if self.stride != stride {
            self.words.clear();
            self.slots = 0;
            self.stride = stride;
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

    pub fn get(&self, partition: PartitionId) -> Option<i64> {
        self.0.get(partition).copied()
    }

    pub fn iter(&self) -> impl Iterator<Item = (PartitionId, i64)> + '_ {
        self.0.iter().map(|(p, v)| (p, *v))
    }
}

/// A record's signal values by signal id, loaded once per record of
/// several signals so that every metric finds its input by indexing.
/// Entries of earlier records are told apart by a stamp, so loading never
/// clears.
#[derive(Debug, Default)]
pub(super) struct SignalIndex {
    stamp: u32,
    slots: Vec<(u32, Value)>,
}

impl SignalIndex {
    pub fn new(signals: usize) -> Self {
        SignalIndex {
            stamp: 0,
            slots: vec![(0, Value::Integer(0)); signals],
        }
    }

    #[inline]
    pub fn load(&mut self, values: &[SignalValue]) {
        self.stamp = self.stamp.wrapping_add(1);
        if self.stamp == 0 {
            self.slots.fill((0, Value::Integer(0)));
            self.stamp = 1;
        }
        for v in values {
            if let Some(slot) = self.slots.get_mut(usize::from(v.signal.0)) {
                *slot = (self.stamp, v.value);
            }
        }
    }

    #[inline(always)]
    pub fn get(&self, signal: SignalId) -> Option<Value> {
        match self.slots.get(usize::from(signal.0)) {
            Some(&(stamp, value)) if stamp == self.stamp => Some(value),
            _ => None,
        }
    }
}

/// One grouping's cells in one window.
#[derive(Debug, Default)]
pub(super) struct GroupingCells {
    ints: Vec<i64>,
    floats: Vec<f64>,
    vehicles: VehicleTable,
}

/// One open window.
#[derive(Debug, Default)]
pub(super) struct OpenWindow {
    pub start: TimestampMs,
    /// Per grouping of the layout.
    cells: Vec<GroupingCells>,
    /// Per partition, the smallest offset of an event in this window: the
    /// input must be replayed from there if this window is lost.
    pub first_offsets: OffsetMap,
}

/// The storage of a closed window, kept for the next one.
pub(super) type Spare = Vec<GroupingCells>;

impl OpenWindow {
    /// A window starting at `start`, reusing `spare`'s memory if given.
    pub fn new(start: TimestampMs, layout: &Layout, spare: Option<Spare>) -> OpenWindow {
        let mut cells = spare.unwrap_or_default();
        cells.resize_with(layout.groupings.len(), GroupingCells::default);
        for (c, g) in cells.iter_mut().zip(&layout.groupings) {
            c.ints.clear();
            c.floats.clear();
            c.vehicles
                .reset(if g.per_vehicle { g.slot_words } else { 0 });
        }
        OpenWindow {
            start,
            cells,
            first_offsets: OffsetMap::default(),
        }
    }

    /// Gives back the storage for another window.
    pub fn recycle(self) -> Spare {
        self.cells
    }

    /// Starts loading what [`Self::add`] of `e` will read.
    #[inline(always)]
    pub fn prefetch(&self, e: &EnrichedEvent) {
        for c in &self.cells {
            c.vehicles.prefetch(e.vehicle.0);
        }
    }

    /// Adds a record that carries `values`, loaded into `signals`;
    /// `groups[g]` is its group in grouping `g`.
    #[inline]
    pub fn add(
        &mut self,
        layout: &Layout,
        e: &EnrichedEvent,
        groups: &[u32],
        signals: &SignalIndex,
        values: &[SignalValue],
    ) {
        self.first_offsets.lower(e.partition, e.offset);
        for ((g, cells), &group) in layout.groupings.iter().zip(&mut self.cells).zip(groups) {
            cells.add(g, group, e, signals, values);
        }
    }

    /// The groups of grouping `g` with data, with their values; float sums
    /// of latest readings are summed over the vehicles here.
    pub fn close(&mut self, layout: &Layout, g: usize) -> Vec<(u32, u64, Vec<MetricValue>)> {
        let (Some(gl), Some(cells)) = (layout.groupings.get(g), self.cells.get_mut(g)) else {
            return Vec::new();
        };
        if gl.float_latest {
            cells.sum_float_latest(gl);
        }
        cells
            .groups(gl)
            .map(|(id, ints, floats)| (id, ints[0] as u64, values(gl, ints, floats)))
            .collect()
    }

    /// The values of the groups of grouping `g` for which `folded` holds,
    /// merged into one: sums and counts add up; a vehicle in several of them
    /// counts once, with its latest reading among them. Walks the window's
    /// vehicles, so only for the rare window over its group limit. Call
    /// after [`Self::close`] of the same grouping.
    pub fn fold(
        &self,
        layout: &Layout,
        g: usize,
        folded: impl Fn(u32) -> bool,
    ) -> (u64, Vec<MetricValue>) {
        let (Some(gl), Some(cells)) = (layout.groupings.get(g), self.cells.get(g)) else {
            return (0, Vec::new());
        };
        let mut ints = vec![0i64; gl.ints];
        let mut floats = vec![0f64; gl.floats];
        for (_, gi, gf) in cells.groups(gl).filter(|(id, _, _)| folded(*id)) {
            ints[0] += gi[0];
            for m in &gl.metrics {
                merge(m, &mut ints, &mut floats, gi, gf);
            }
        }
        let mut slots: Vec<&[u64]> = cells
            .vehicles
            .occupied()
            .filter(|(group, _)| folded(*group))
            .map(|(_, s)| s)
            .collect();
        slots.sort_unstable_by_key(|s| s[0] >> 32);
        for same in slots.chunk_by(|a, b| a[0] >> 32 == b[0] >> 32) {
            for m in &gl.metrics {
                fold_vehicle(m, same, &mut ints, &mut floats);
            }
        }
        (ints[0] as u64, values(gl, &ints, &floats))
    }
}

impl VehicleTable {
    /// The index of the first word of `(vehicle, group)`'s slot, created
    /// empty (only [`OCCUPIED`]) if absent.
    #[inline(always)]
    fn slot_at(&mut self, vehicle: u32, group: u32) -> usize {
        if (self.len + 1) * 4 > self.slots() * 3 {
            self.grow();
        }
        let key = (u64::from(vehicle) << 32) | u64::from(group);
        let at = self.find(vehicle, key);
        // An empty slot is all zeros: tables start zeroed and lose no slot.
        if self.words[at + 1] == 0 {
            self.words[at] = key;
            self.words[at + 1] = OCCUPIED;
            self.len += 1;
        }
        at
    }
}

impl GroupingCells {
    /// Adds a record that carries `values` (loaded into `signals`).
    #[inline(always)]
    fn add(
        &mut self,
        g: &GroupingLayout,
        group: u32,
        e: &EnrichedEvent,
        signals: &SignalIndex,
        values: &[SignalValue],
    ) {
        let gi = group as usize;
        if (gi + 1) * g.ints > self.ints.len() {
            self.ints.resize((gi + 1) * g.ints, 0);
            self.floats.resize((gi + 1) * g.floats, 0.0);
        }
        let mut cells = Cells {
            ints: &mut self.ints[gi * g.ints..(gi + 1) * g.ints],
            floats: &mut self.floats[gi * g.floats..(gi + 1) * g.floats],
            vehicles: &mut self.vehicles,
            slot_at: None,
        };
        cells.ints[0] += 1;
        match values {
            [] => {
                for &i in &g.unconditional {
                    cells.apply(g, &g.metrics[usize::from(i)], None, group, e, |_| None);
                }
            }
            // The record's one signal is all a metric or a filter can read.
            &[one] => {
                let Some(metrics) = g.single.get(usize::from(one.signal.0)) else {
                    return;
                };
                let only = |s: SignalId| (s == one.signal).then_some(one.value);
                for &i in metrics {
                    let m = &g.metrics[usize::from(i)];
                    let value = m.signal.map(|_| one.value);
                    cells.apply(g, m, value, group, e, only);
                }
            }
            _ => {
                for m in &g.metrics {
                    let value = match m.signal {
                        Some(s) => match signals.get(s) {
                            Some(v) => Some(v),
                            None => continue,
                        },
                        None => None,
                    };
                    cells.apply(g, m, value, group, e, |s| signals.get(s));
                }
            }
        }
    }

    /// The groups with data: `(group, ints, floats)`.
    fn groups<'a>(
        &'a self,
        g: &GroupingLayout,
    ) -> impl Iterator<Item = (u32, &'a [i64], &'a [f64])> + 'a {
        let (ni, nf) = (g.ints, g.floats);
        (0..self.ints.len() / ni)
            .map(move |i| {
                (
                    i as u32,
                    &self.ints[i * ni..(i + 1) * ni],
                    &self.floats[i * nf..(i + 1) * nf],
                )
            })
            .filter(|(_, ints, _)| ints[0] > 0)
    }

    /// Sums every float latest reading into its group's cell.
    fn sum_float_latest(&mut self, g: &GroupingLayout) {
        let nf = g.floats;
        for (group, slot) in self.vehicles.occupied() {
            for m in &g.metrics {
                if let Op::Latest {
                    num: Num::Float, ..
                } = m.op
                {
                    if slot[1] & (1 << m.bit) != 0 {
                        self.floats[group as usize * nf + m.float_at] +=
                            f64::from_bits(slot[m.word_at + 1]);
                    }
                }
            }
        }
    }
}

/// One group's cells in one grouping, while a record is added: the slot of
/// (vehicle, group) is found once, by the first metric that needs it.
struct Cells<'a> {
    ints: &'a mut [i64],
    floats: &'a mut [f64],
    vehicles: &'a mut VehicleTable,
    slot_at: Option<usize>,
}

impl Cells<'_> {
    #[inline(always)]
    fn slot(&mut self, vehicle: u32, group: u32) -> usize {
        match self.slot_at {
            Some(at) => at,
            None => {
                let at = self.vehicles.slot_at(vehicle, group);
                self.slot_at = Some(at);
                at
            }
        }
    }

    /// Metric `m`'s part of adding the record: `value` is its input
    /// signal's (present: a metric whose signal is absent is not applied),
    /// `signal` gives the record's signals to its filter.
    #[inline(always)]
    fn apply(
        &mut self,
        g: &GroupingLayout,
        m: &MetricCells,
        value: Option<Value>,
        group: u32,
        e: &EnrichedEvent,
        signal: impl Fn(SignalId) -> Option<Value>,
    ) {
        if let Some(filter) = &m.filter {
            // A vehicle counted once in the window needs no more filtering.
            if m.op == Op::Distinct {
                let at = self.slot(e.vehicle.0, group);
                if self.vehicles.words[at + 1] & (1u64 << m.bit) != 0 {
                    return;
                }
            }
            if !filter.passes(&signal) {
                return;
            }
        }
        let c = m.int_at;
        let (ints, floats) = (&mut *self.ints, &mut *self.floats);
        match (m.op, value) {
            (Op::Count, _) => ints[c] += 1,
            (Op::Sum(n), Some(v)) => add_sum(n, v, ints, floats, c, m.float_at),
            (Op::Mean(n), Some(v)) => {
                ints[c] += 1;
                add_sum(n, v, ints, floats, c + 1, m.float_at);
            }
            (Op::Min(n) | Op::Max(n), Some(v)) => {
                let first = ints[c] == 0;
                ints[c] += 1;
                let min = matches!(m.op, Op::Min(_));
                match (n, v) {
                    (Num::Int, Value::Integer(v)) => {
                        let cur = &mut ints[c + 1];
                        if first || (min && v < *cur) || (!min && v > *cur) {
                            *cur = v;
                        }
                    }
                    (_, v) => {
                        let v = v.as_f64().unwrap_or(0.0);
                        let cur = &mut floats[m.float_at];
                        if first || (min && v < *cur) || (!min && v > *cur) {
                            *cur = v;
                        }
                    }
                }
            }
            (Op::Distinct, _) => {
                let at = self.slot(e.vehicle.0, group);
                let (ints, words) = (&mut *self.ints, &mut self.vehicles.words);
                let bit = 1u64 << m.bit;
                if words[at + 1] & bit == 0 {
                    words[at + 1] |= bit;
                    ints[c] += 1;
                }
            }
            (Op::Latest { num, .. }, Some(v)) => {
                let at = self.slot(e.vehicle.0, group);
                let ints = &mut *self.ints;
                let s = &mut self.vehicles.words[at..at + g.slot_words];
                let bit = 1u64 << m.bit;
                let had = s[1] & bit != 0;
                let reading = Reading::of(num, e.timestamp, v);
                let old = Reading {
                    ts: s[m.word_at] as i64,
                    bits: s[m.word_at + 1],
                };
                if had && !reading.is_newer_than(old, num) {
                    return;
                }
                if !had {
                    ints[c] += 1;
                    s[1] |= bit;
                }
                if num == Num::Int {
                    let previous = if had { old.bits as i64 } else { 0 };
                    let sum = &mut ints[c + 1..c + 3];
                    wide_set(
                        sum,
                        wide_get(sum) - i128::from(previous) + i128::from(reading.bits as i64),
                    );
                }
                s[m.word_at] = reading.ts as u64;
                s[m.word_at + 1] = reading.bits;
            }
            (Op::Histogram(n), Some(v)) => {
                let x = v.as_f64().unwrap_or(0.0);
                let bucket = m.buckets.partition_point(|&b| b < x);
                let count = c + m.buckets.len() + 1;
                ints[c + bucket] += 1;
                ints[count] += 1;
                add_sum(n, v, ints, floats, count + 1, m.float_at);
            }
            (_, None) => {}
        }
    }
}

/// A latest reading: its time and its value's bits (an `i64` or an `f64`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Reading {
    ts: TimestampMs,
    bits: u64,
}

impl Reading {
    fn of(num: Num, ts: TimestampMs, v: Value) -> Reading {
        let bits = match (num, v) {
            (Num::Int, Value::Integer(i)) => i as u64,
            (_, v) => v.as_f64().unwrap_or(0.0).to_bits(),
        };
        Reading { ts, bits }
    }

    /// Later by event time; at the same time, the larger value.
    fn is_newer_than(self, old: Reading, num: Num) -> bool {
        match num {
            Num::Int => (self.ts, self.bits as i64) > (old.ts, old.bits as i64),
            Num::Float => {
                self.ts > old.ts
                    || (self.ts == old.ts && f64::from_bits(self.bits) > f64::from_bits(old.bits))
            }
        }
    }
}

/// Adds `v` to the sum at `ints[int_at]` (saturating) or `floats[float_at]`.
#[inline(always)]
fn add_sum(n: Num, v: Value, ints: &mut [i64], floats: &mut [f64], int_at: usize, float_at: usize) {
    match (n, v) {
        (Num::Int, Value::Integer(v)) => ints[int_at] = ints[int_at].saturating_add(v),
        (_, v) => floats[float_at] += v.as_f64().unwrap_or(0.0),
    }
}

/// Merges one group's cells of metric `m` into `ints`/`floats` (a fold);
/// per-vehicle values are merged by [`fold_vehicle`].
fn merge(m: &MetricCells, ints: &mut [i64], floats: &mut [f64], gi: &[i64], gf: &[f64]) {
    let c = m.int_at;
    let sum = |n: Num, ints: &mut [i64], floats: &mut [f64], int_at: usize| match n {
        Num::Int => ints[int_at] = ints[int_at].saturating_add(gi[int_at]),
        Num::Float => floats[m.float_at] += gf[m.float_at],
    };
    match m.op {
        Op::Count => ints[c] += gi[c],
        Op::Sum(n) => sum(n, ints, floats, c),
        Op::Mean(n) => {
            ints[c] += gi[c];
            sum(n, ints, floats, c + 1);
        }
        Op::Min(n) | Op::Max(n) => {
            if gi[c] == 0 {
                return;
            }
            let first = ints[c] == 0;
            ints[c] += gi[c];
            let min = matches!(m.op, Op::Min(_));
            match n {
                Num::Int => {
                    let (cur, v) = (&mut ints[c + 1], gi[c + 1]);
                    if first || (min && v < *cur) || (!min && v > *cur) {
                        *cur = v;
                    }
                }
                Num::Float => {
                    let (cur, v) = (&mut floats[m.float_at], gf[m.float_at]);
                    if first || (min && v < *cur) || (!min && v > *cur) {
                        *cur = v;
                    }
                }
            }
        }
        Op::Histogram(n) => {
            let count = c + m.buckets.len() + 1;
            for i in c..=count {
                ints[i] += gi[i];
            }
            sum(n, ints, floats, count + 1);
        }
        Op::Distinct | Op::Latest { .. } => {}
    }
}

/// Folds one vehicle's slots (`same`, one per folded group it is in) into
/// the distinct counts and latest readings.
fn fold_vehicle(m: &MetricCells, same: &[&[u64]], ints: &mut [i64], floats: &mut [f64]) {
    let bit = 1u64 << m.bit;
    let c = m.int_at;
    match m.op {
        Op::Distinct if same.iter().any(|s| s[1] & bit != 0) => ints[c] += 1,
        Op::Latest { num, .. } => {
            let latest = same
                .iter()
                .filter(|s| s[1] & bit != 0)
                .map(|s| Reading {
                    ts: s[m.word_at] as i64,
                    bits: s[m.word_at + 1],
                })
                .reduce(|a, b| if b.is_newer_than(a, num) { b } else { a });
            if let Some(r) = latest {
                ints[c] += 1;
                match num {
                    Num::Int => {
                        let sum = &mut ints[c + 1..c + 3];
                        wide_set(sum, wide_get(sum) + i128::from(r.bits as i64));
                    }
                    Num::Float => floats[m.float_at] += f64::from_bits(r.bits),
                }
            }
        }
        _ => {}
    }
}

/// An integer sum of latest readings, kept exact in two cells: the low and
/// the high 64 bits. Readings are 64-bit, so no fleet's sum comes near the
/// bounds of 128 bits.
fn wide_get(cells: &[i64]) -> i128 {
    (i128::from(cells[1]) << 64) | i128::from(cells[0] as u64)
}

fn wide_set(cells: &mut [i64], sum: i128) {
    cells[0] = sum as u64 as i64;
    cells[1] = (sum >> 64) as i64;
}

/// The metric values of one group's cells, in the grouping's metric order.
fn values(g: &GroupingLayout, ints: &[i64], floats: &[f64]) -> Vec<MetricValue> {
    let number = |n: Num, int_at: usize, float_at: usize| match n {
        Num::Int => Number::Integer(ints[int_at]),
        Num::Float => Number::Float(floats[float_at]),
    };
    // Integers: the exact sum, saturated at the 64-bit bounds.
    let latest_sum = |n: Num, int_at: usize, float_at: usize| match n {
        Num::Int => {
            let sum = wide_get(&ints[int_at..int_at + 2]);
            Number::Integer(i64::try_from(sum).unwrap_or(if sum < 0 { i64::MIN } else { i64::MAX }))
        }
        Num::Float => Number::Float(floats[float_at]),
    };
    g.metrics
        .iter()
        .map(|m| {
            let c = m.int_at;
            // Every op but a float sum has its count at `int_at`.
            let count = ints.get(c).map_or(0, |&n| n as u64);
            match m.op {
                Op::Count | Op::Distinct => MetricValue::Count(count),
                Op::Sum(n) => MetricValue::Value(Some(number(n, c, m.float_at))),
                Op::Mean(n) => MetricValue::Mean {
                    sum: number(n, c + 1, m.float_at),
                    count,
                },
                Op::Min(n) | Op::Max(n) => {
                    MetricValue::Value((count > 0).then(|| number(n, c + 1, m.float_at)))
                }
                Op::Latest { num, mean: false } => {
                    MetricValue::Value(Some(latest_sum(num, c + 1, m.float_at)))
                }
                Op::Latest { num, mean: true } => MetricValue::Value((count > 0).then(|| {
                    Number::Float(latest_sum(num, c + 1, m.float_at).as_f64() / count as f64)
                })),
                Op::Histogram(n) => {
                    let count_at = c + m.buckets.len() + 1;
                    MetricValue::Histogram {
                        buckets: ints[c..count_at].iter().map(|&n| n as u64).collect(),
                        sum: number(n, count_at + 1, m.float_at),
                        count: ints[count_at] as u64,
                    }
                }
            }
        })
        .collect()
}

#[cfg(test)]
mod tests;
