//! What one window computes for one group under a [`MetricPlan`], and how
//! it is written: as a JSON line, and as Prometheus samples.
//!
//! An aggregate holds its values in the plan's order of the metrics of its
//! grouping; the plan names them. Naming lives here once, for both outputs
//! (docs/METRICS.md, "`[[metrics]]`" and "The JSON-lines output").

use std::sync::Arc;

use fleet_plan::{Function, GroupingId, Metric, MetricPlan};
use serde::ser::SerializeMap;
use serde::{Serialize, Serializer};

use crate::{GroupKey, TimestampMs};

/// A group's labels, `(name, value)` in plan label order.
pub type Labels = Arc<[(Arc<str>, Arc<str>)]>;

/// A sum or a single value: an integer for an integer signal, else a float.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Number {
    /// Of an integer signal.
    Integer(i64),
    /// Of a float signal.
    Float(f64),
}

impl Number {
    /// As a sample value (integers beyond 2^53 lose precision, as in Prometheus).
    pub fn as_f64(self) -> f64 {
        match self {
            Number::Integer(i) => i as f64,
            Number::Float(f) => f,
        }
    }
}

impl Serialize for Number {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        match self {
            Number::Integer(i) => s.serialize_i64(*i),
            Number::Float(f) => s.serialize_f64(*f),
        }
    }
}

/// One metric's result for one window and group.
#[derive(Clone, Debug, PartialEq)]
pub enum MetricValue {
    /// `count`, `distinct_vehicles`.
    Count(u64),
    /// `sum`, `min`, `max`, `sum_of_latest`, `mean_of_latest`; `None` where
    /// the series is omitted (nothing contributed).
    Value(Option<Number>),
    /// `mean`: the sum and count behind it.
    Mean {
        /// Sum of the contributing values.
        sum: Number,
        /// Contributing records.
        count: u64,
    },
    /// `histogram`.
    Histogram {
        /// Contributing values per bucket (not cumulative), one per bound
        /// and one for `+Inf`.
        buckets: Vec<u64>,
        /// Sum of the contributing values.
        sum: Number,
        /// Contributing records.
        count: u64,
    },
}

impl MetricValue {
    /// The mean of a `Mean`, `None` without input.
    fn mean(sum: Number, count: u64) -> Option<f64> {
        (count > 0).then(|| sum.as_f64() / count as f64)
    }
}

/// The result of one window `[window_start, window_end)` for one group of
/// one grouping.
#[derive(Clone, Debug, PartialEq)]
pub struct WindowAggregate {
    /// Inclusive start, epoch ms.
    pub window_start: TimestampMs,
    /// Exclusive end, epoch ms; the timestamp of every sample written for it.
    pub window_end: TimestampMs,
    /// Which of the plan's groupings.
    pub grouping: GroupingId,
    /// The group's labels (those of the grouping) and partition.
    pub group: GroupKey,
    /// Records of the group in the window.
    pub events: u64,
    /// One per metric of the grouping, in plan order.
    pub values: Vec<MetricValue>,
}

/// The label of the partition in the partitioned output mode.
pub const PARTITION_LABEL: &str = "kafka_partition";

/// The `le` label of histogram buckets.
pub const BUCKET_LABEL: &str = "le";

/// One sample of an aggregate: which series of which metric, and the value.
#[derive(Clone, Debug, PartialEq)]
pub struct Sample<'a> {
    /// The metric.
    pub metric: &'a Metric,
    /// Which of its series: an index into [`Metric::series_names`].
    pub series: usize,
    /// With a histogram bucket: its bound as written (`"0.5"`, `"+Inf"`).
    pub le: Option<Arc<str>>,
    /// A number for this series that is the same in every aggregate of the
    /// grouping (a dense index over its metrics' series and buckets), for
    /// caching the series' labels.
    pub slot: usize,
    /// The value.
    pub value: f64,
}

impl WindowAggregate {
    /// The metrics of this aggregate's grouping, each with its value.
    pub fn metrics<'p>(
        &'p self,
        plan: &'p MetricPlan,
    ) -> impl Iterator<Item = (&'p Metric, &'p MetricValue)> + 'p {
        plan.metrics
            .iter()
            .filter(|m| m.grouping == self.grouping)
            .zip(&self.values)
    }

    /// The order of the JSON-lines output: window end, grouping, label values.
    pub fn output_order(&self) -> (TimestampMs, GroupingId, impl Iterator<Item = &str> + '_) {
        (
            self.window_end,
            self.grouping,
            self.group.labels.iter().map(|(_, v)| &**v),
        )
    }

    /// The JSON-lines record (replay output, console sink).
    pub fn to_json_line(&self, plan: &MetricPlan) -> String {
        serde_json::to_string(&JsonLine(self, plan)).unwrap_or_default()
    }

    /// Calls `sample` for every sample this aggregate writes: first each
    /// metric's own series (a mean's `_avg`, a histogram's buckets), then
    /// the `_sum` and `_count` behind means and histograms, each pass in
    /// plan order (the reference demo's order since its first release).
    /// Omitted series are not called.
    pub fn for_each_sample<'p>(&'p self, plan: &'p MetricPlan, mut sample: impl FnMut(Sample<'p>)) {
        for pass in 0..2 {
            let mut slot = 0;
            for (m, value) in self.metrics(plan) {
                let base = slot;
                slot += series_slots(m);
                let mut put = |series: usize, offset: usize, le: Option<Arc<str>>, value: f64| {
                    sample(Sample {
                        metric: m,
                        series,
                        le,
                        slot: base + offset,
                        value,
                    })
                };
                match (pass, value) {
                    (0, MetricValue::Count(n)) => put(0, 0, None, *n as f64),
                    (0, MetricValue::Value(Some(v))) => put(0, 0, None, v.as_f64()),
                    (0, MetricValue::Mean { sum, count }) => {
                        if let Some(mean) = MetricValue::mean(*sum, *count) {
                            put(0, 2, None, mean);
                        }
                    }
                    (0, MetricValue::Histogram { buckets, .. }) => {
                        let mut cumulative = 0u64;
                        for (i, (le, n)) in bucket_bounds(m).zip(buckets).enumerate() {
                            cumulative += n;
                            put(0, 2 + i, Some(le), cumulative as f64);
                        }
                    }
                    (
                        1,
                        MetricValue::Mean { sum, count }
                        | MetricValue::Histogram { sum, count, .. },
                    ) => {
                        put(1, 0, None, sum.as_f64());
                        put(2, 1, None, *count as f64);
                    }
                    _ => {}
                }
            }
        }
    }
}

/// How many series (histogram buckets each counted) a metric writes at most.
fn series_slots(m: &Metric) -> usize {
    match m.function {
        Function::Mean => 2 + 1,
        Function::Histogram => 2 + m.buckets.len() + 1,
        _ => 1,
    }
}

/// The `le` values of a histogram's buckets, `+Inf` last.
pub fn bucket_bounds(metric: &Metric) -> impl Iterator<Item = Arc<str>> + '_ {
    metric
        .buckets
        .iter()
        .map(|b| Arc::from(b.to_string()))
        .chain(std::iter::once(Arc::from("+Inf")))
}

/// [`WindowAggregate::to_json_line`]'s record, field by field in order.
struct JsonLine<'a>(&'a WindowAggregate, &'a MetricPlan);

impl Serialize for JsonLine<'_> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let JsonLine(a, plan) = *self;
        let mut map = s.serialize_map(None)?;
        map.serialize_entry("window_start", &a.window_start)?;
        map.serialize_entry("window_end", &a.window_end)?;
        for (name, value) in a.group.labels.iter() {
            map.serialize_entry(&**name, &**value)?;
        }
        if let Some(partition) = a.group.partition {
            map.serialize_entry(PARTITION_LABEL, &partition)?;
        }
        for (m, value) in a.metrics(plan) {
            match value {
                MetricValue::Count(n) => map.serialize_entry(&m.name, n)?,
                MetricValue::Value(v) => map.serialize_entry(&m.name, v)?,
                MetricValue::Mean { sum, count } => {
                    map.serialize_entry(&m.series_names()[0], &MetricValue::mean(*sum, *count))?
                }
                MetricValue::Histogram {
                    buckets,
                    sum,
                    count,
                } => {
                    let names = m.series_names();
                    map.serialize_entry(&names[0], &CumulativeBuckets(m, buckets))?;
                    map.serialize_entry(&names[1], sum)?;
                    map.serialize_entry(&names[2], count)?;
                }
            }
        }
        map.serialize_entry("events", &a.events)?;
        map.end()
    }
}

/// A histogram's buckets as a JSON object `{"<le>": cumulative count}`.
struct CumulativeBuckets<'a>(&'a Metric, &'a [u64]);

impl Serialize for CumulativeBuckets<'_> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let mut map = s.serialize_map(Some(self.1.len()))?;
        let mut cumulative = 0u64;
        for (le, n) in bucket_bounds(self.0).zip(self.1) {
            cumulative += n;
            map.serialize_entry(&*le, &cumulative)?;
        }
        map.end()
    }
}

#[cfg(test)]
mod tests;
