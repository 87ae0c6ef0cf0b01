//! Where each metric of a [`MetricPlan`] keeps its state in an open window.
//!
//! Per grouping, every group of a window owns a run of integer cells and a
//! run of float cells (cell 0 counts the group's records), and every
//! (vehicle, group) pair of the window owns a slot of words: flag bits for
//! the distinct counts and the latest readings, and the latest readings'
//! time and value. The layout is computed once from the plan, so adding a
//! record is indexing, never a lookup by name.

use fleet_plan::{Filter, Function, GroupingId, MetricPlan, SignalId, SignalType};

/// Whether a metric's numbers are integers or floats (its signal's type).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Num {
    Int,
    Float,
}

/// What a metric does with a contributing record, and where.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Op {
    /// `ints[int_at]`: records.
    Count,
    /// The sum: `ints[int_at]` or `floats[float_at]`.
    Sum(Num),
    /// `ints[int_at]`: records; the sum at `ints[int_at + 1]` or `floats[float_at]`.
    Mean(Num),
    /// `ints[int_at]`: records; the extreme at `ints[int_at + 1]` or `floats[float_at]`.
    Min(Num),
    /// As `Min`.
    Max(Num),
    /// `ints[int_at]`: vehicles; the vehicle's flag `bit`.
    Distinct,
    /// `ints[int_at]`: vehicles with a reading; the sum of their latest
    /// readings at `ints[int_at + 1]` (kept up to date) or `floats[float_at]`
    /// (summed at close); per vehicle the flag `bit` and, at `word_at`, the
    /// reading's time and value.
    Latest { num: Num, mean: bool },
    /// `ints[int_at ..= int_at + buckets]`: per bucket, `+Inf` last; then
    /// the count; the sum after it or at `floats[float_at]`.
    Histogram(Num),
}

/// One metric's place in its grouping's layout.
#[derive(Clone, Debug, PartialEq)]
pub(crate) struct MetricCells {
    pub op: Op,
    pub signal: Option<SignalId>,
    pub filter: Option<Filter>,
    pub int_at: usize,
    pub float_at: usize,
    pub bit: u32,
    pub word_at: usize,
    pub buckets: Vec<f64>,
}

/// The layout of one grouping's cells and vehicle slots.
#[derive(Clone, Debug, PartialEq)]
pub(crate) struct GroupingLayout {
    pub grouping: GroupingId,
    /// Its metrics, in plan order.
    pub metrics: Vec<MetricCells>,
    /// Integer cells per group; cell 0 counts records.
    pub ints: usize,
    /// Float cells per group.
    pub floats: usize,
    /// Words per vehicle slot: the key, the flags, then the readings.
    pub slot_words: usize,
    /// Whether any metric keeps per-vehicle state.
    pub per_vehicle: bool,
    /// Whether a float `Latest` must be summed at close.
    pub float_latest: bool,
    /// Per signal, the metrics (indices into `metrics`, in order) a record
    /// carrying that signal alone can contribute to: those reading it, and
    /// those reading no signal unless their filter compares another signal
    /// only. Narrow records carry one signal; the rest are skipped unread.
    pub single: Vec<Vec<u16>>,
    /// The metrics a record carrying no signal can contribute to: those
    /// reading no signal, without a filter.
    pub unconditional: Vec<u16>,
}

/// Every grouping's layout.
#[derive(Clone, Debug, PartialEq)]
pub(crate) struct Layout {
    pub groupings: Vec<GroupingLayout>,
    /// How many signals the plan declares.
    pub signals: usize,
}

/// The vehicle-slot flag meaning "occupied"; metrics' bits follow it.
pub(crate) const OCCUPIED: u64 = 1;

impl Layout {
    pub fn new(plan: &MetricPlan) -> Layout {
        let groupings = (0..plan.groupings.len())
            .map(|g| grouping_layout(plan, GroupingId(g as u16)))
            .collect();
        Layout {
            groupings,
            signals: plan.input.signals.len(),
        }
    }
}

fn grouping_layout(plan: &MetricPlan, grouping: GroupingId) -> GroupingLayout {
    let mut ints = 1;
    let mut floats = 0;
    let mut bits = 1;
    let mut words = 2;
    let mut metrics = Vec::new();
    for m in plan.metrics.iter().filter(|m| m.grouping == grouping) {
        let num = match m.signal.map(|s| plan.input.signal(s).signal_type) {
            Some(SignalType::Float) => Num::Float,
            _ => Num::Int,
        };
        let op = match m.function {
            Function::Count => Op::Count,
            Function::Sum => Op::Sum(num),
            Function::Mean => Op::Mean(num),
            Function::Min => Op::Min(num),
            Function::Max => Op::Max(num),
            Function::DistinctVehicles => Op::Distinct,
            Function::SumOfLatest => Op::Latest { num, mean: false },
            Function::MeanOfLatest => Op::Latest { num, mean: true },
            Function::Histogram => Op::Histogram(num),
        };
        let (int_cells, float_cells) = match op {
            Op::Count | Op::Distinct => (1, 0),
            Op::Sum(Num::Int) => (1, 0),
            Op::Sum(Num::Float) => (0, 1),
            Op::Mean(n) | Op::Min(n) | Op::Max(n) => match n {
                Num::Int => (2, 0),
                Num::Float => (1, 1),
            },
            // The count, and an exact sum in two cells (low and high words).
            Op::Latest { num: Num::Int, .. } => (3, 0),
            Op::Latest {
                num: Num::Float, ..
            } => (1, 1),
            Op::Histogram(n) => {
                let counts = m.buckets.len() + 2;
                match n {
                    Num::Int => (counts + 1, 0),
                    Num::Float => (counts, 1),
                }
            }
        };
        let (bit, word_at) = match op {
            Op::Distinct => (bits, 0),
            Op::Latest { .. } => (bits, words),
            _ => (0, 0),
        };
        if bit > 0 {
            bits += 1;
        }
        if matches!(op, Op::Latest { .. }) {
            words += 2;
        }
        metrics.push(MetricCells {
            op,
            signal: m.signal,
            filter: m.filter.clone(),
            int_at: ints,
            float_at: floats,
            bit,
            word_at,
            buckets: m.buckets.clone(),
        });
        ints += int_cells;
        floats += float_cells;
    }
    // The plan allows at most `MAX_PER_VEHICLE_METRICS` (63) flags per grouping.
    debug_assert!(bits <= 64);
    let contributes = |m: &MetricCells, carried: Option<SignalId>| match (m.signal, &m.filter) {
        (Some(s), _) => Some(s) == carried,
        (None, None) => true,
        (None, Some(f)) => carried.is_some_and(|s| f.mentions(s)),
    };
    let indices = |carried: Option<SignalId>| -> Vec<u16> {
        (0..metrics.len())
            .filter(|&i| contributes(&metrics[i], carried))
            .map(|i| i as u16)
            .collect()
    };
    let single = (0..plan.input.signals.len())
        .map(|s| indices(Some(SignalId(s as u16))))
        .collect();
    let unconditional = indices(None);
    GroupingLayout {
        single,
        unconditional,
        grouping,
        per_vehicle: bits > 1,
        float_latest: metrics.iter().any(|m| {
            matches!(
                m.op,
                Op::Latest {
                    num: Num::Float,
                    ..
                }
            )
        }),
        metrics,
        ints,
        floats,
        slot_words: words,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_reference_demo_fits_a_four_word_slot() {
        let layout = Layout::new(&MetricPlan::reference_demo());
        assert_eq!(layout.groupings.len(), 1);
        let g = &layout.groupings[0];
        let ops: Vec<Op> = g.metrics.iter().map(|m| m.op).collect();
        assert_eq!(
            ops,
            [
                Op::Distinct,
                Op::Latest {
                    num: Num::Int,
                    mean: false
                },
                Op::Distinct,
                Op::Mean(Num::Int),
                Op::Mean(Num::Int),
            ]
        );
        assert_eq!(g.slot_words, 4);
        // The sum of latest warnings is exact: two cells beside its count.
        assert_eq!(g.ints, 1 + 1 + 3 + 1 + 2 + 2);
        assert_eq!(g.floats, 0);
        assert_eq!(
            g.metrics.iter().map(|m| m.bit).collect::<Vec<_>>(),
            [1, 2, 3, 0, 0]
        );
        // IC_RPM, ELECTRIC_RPM, WARNINGS: vehicles_in_motion (0) by its
        // filter's signals, vehicles_reporting (2) always, each signal its
        // own metric.
        assert_eq!(g.single, [vec![0, 2, 3], vec![0, 2, 4], vec![1, 2]]);
        assert_eq!(g.unconditional, [2]);
    }
}
