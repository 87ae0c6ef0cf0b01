//! Window aggregates → series → protobuf → snappy: the pure half of the emitter.
//!
//! Every aggregate becomes the samples its plan's metrics write
//! ([`WindowAggregate::for_each_sample`]) at `timestamp = window_end`,
//! labelled `__name__`, the group's labels (`model`, `region`, …), `le` for
//! histogram buckets and the constant labels, sorted by name as Prometheus
//! requires. A [`RemoteWriteBatch`] keeps the samples of
//! one or more requests as a flat list in which each series' samples are in
//! timestamp order (one window batch is ordered by `(timestamp, series)`, and
//! later batches are appended after earlier ones), so that any contiguous
//! piece of it — a request cut at the size limit, or a half during bisection —
//! still holds each series' samples in order, and sending the pieces in list
//! order keeps every series in order at the receiver.
//!
//! Series are built once by a [`SeriesTable`] and shared by reference; their
//! labels are protobuf-encoded once too, so a request body
//! ([`RemoteWriteBatch::to_protobuf`]) mostly copies bytes.

use std::collections::{BTreeMap, HashMap};
use std::fmt::Write as _;
use std::hash::{Hash, Hasher};
use std::sync::Arc;

use fleet_core::{GroupKey, TimestampMs, VehicleSample, WindowAggregate, WindowBatch};
use fleet_plan::{GroupingId, MetricPlan};
use prost::Message;

use crate::proto::{Label, Sample, TimeSeries, WriteRequest};
use crate::RemoteWriteError;

/// The label Prometheus stores the metric name in.
pub const METRIC_NAME_LABEL: &str = "__name__";
/// The label carrying the vehicle model.
pub const MODEL_LABEL: &str = fleet_plan::MODEL_LABEL;
/// The label carrying the vehicle id of a drill-down series.
pub const VEHICLE_ID_LABEL: &str = fleet_drilldown::VEHICLE_ID_LABEL;
/// The label carrying the Kafka partition in the partitioned output mode.
pub const PARTITION_LABEL: &str = fleet_core::aggregate::PARTITION_LABEL;
/// The label of a histogram bucket's bound.
pub const BUCKET_LABEL: &str = fleet_core::aggregate::BUCKET_LABEL;

/// How aggregates are named as series: the plan that names their metrics,
/// the metric-name prefix and the labels added to every series.
#[derive(Clone, Debug, PartialEq)]
pub struct SeriesNaming {
    /// The metrics and signals behind the aggregates.
    pub plan: Arc<MetricPlan>,
    /// Prepended verbatim to every metric name (include the trailing `_`).
    pub metric_prefix: String,
    /// Added to every series. A name the service sets itself or a group
    /// label already has is ignored here; configuration validation refuses
    /// it earlier.
    pub constant_labels: BTreeMap<String, String>,
}

impl Default for SeriesNaming {
    /// The reference demo's metrics, no prefix, no constant labels.
    fn default() -> Self {
        SeriesNaming {
            plan: Arc::new(MetricPlan::reference_demo()),
            metric_prefix: String::new(),
            constant_labels: BTreeMap::new(),
        }
    }
}

impl SeriesNaming {
    /// The drill-down series of `sample`'s vehicle and signal.
    fn vehicle_series(&self, sample: &VehicleSample) -> Series {
        let name = self
            .plan
            .input
            .signals
            .get(usize::from(sample.signal.0))
            .map(fleet_drilldown::metric_name)
            .unwrap_or_default();
        self.labelled(&name, &sample.group, Some(&sample.vehicle_id), None)
    }

    /// A series named `metric` (after the prefix), labelled with `group`,
    /// the vehicle and the bucket bound if given, and the constant labels.
    fn labelled(
        &self,
        metric: &str,
        group: &GroupKey,
        vehicle: Option<&str>,
        le: Option<&str>,
    ) -> Series {
        let label = |name: &str, value: &str| Label {
            name: name.to_owned(),
            value: value.to_owned(),
        };
        let mut labels = Vec::with_capacity(4 + group.labels.len() + self.constant_labels.len());
        labels.push(Label {
            name: METRIC_NAME_LABEL.to_owned(),
            value: format!("{}{metric}", self.metric_prefix),
        });
        if let Some(vehicle) = vehicle {
            labels.push(label(VEHICLE_ID_LABEL, vehicle));
        }
        labels.extend(group.labels.iter().map(|(name, value)| label(name, value)));
        if let Some(partition) = group.partition {
            labels.push(label(PARTITION_LABEL, &partition.to_string()));
        }
        if let Some(le) = le {
            labels.push(label(BUCKET_LABEL, le));
        }
        labels.extend(
            self.constant_labels
                .iter()
                .filter(|(name, _)| !is_builtin_label(name) && group.label(name).is_none())
                .map(|(name, value)| label(name, value)),
        );
        labels.sort_by(|a, b| a.name.cmp(&b.name));
        Series::new(labels)
    }
}

/// Whether `name` is one of the labels this crate sets itself.
pub(crate) fn is_builtin_label(name: &str) -> bool {
    fleet_plan::RESERVED_LABELS.contains(&name)
}

/// Encodes aggregates of one or more windows into one request: one
/// [`TimeSeries`] per series, its samples in timestamp order.
pub fn encode(aggregates: &[WindowAggregate], naming: &SeriesNaming) -> WriteRequest {
    RemoteWriteBatch::from_aggregates(aggregates, naming).to_write_request()
}

/// Serialises and snappy-compresses (block format, as Remote-Write 1.0 requires) a request.
pub fn compress(request: &WriteRequest) -> Result<Vec<u8>, RemoteWriteError> {
    compress_protobuf(&request.encode_to_vec())
}

fn compress_protobuf(protobuf: &[u8]) -> Result<Vec<u8>, RemoteWriteError> {
    snap::raw::Encoder::new()
        .compress_vec(protobuf)
        .map_err(RemoteWriteError::Compress)
}

/// One output series: its sorted labels, computed once and shared by every
/// sample of it in every batch.
#[derive(Debug, PartialEq, Eq)]
pub struct Series {
    labels: Vec<Label>,
    /// The `labels` fields of its `TimeSeries` message, encoded once: a
    /// request body copies these bytes instead of encoding strings again.
    encoded_labels: Vec<u8>,
    /// A hash of the full label set, which picks the series' shard.
    hash: u64,
}

impl Series {
    /// A series with these labels (sorted by name by the caller).
    pub fn new(labels: Vec<Label>) -> Self {
        let mut encoded_labels = Vec::new();
        for label in &labels {
            prost::encoding::message::encode(1, label, &mut encoded_labels);
        }
        // SipHash with fixed keys: the same series lands in the same shard for
        // the life of the process, which is all per-series ordering needs.
        let mut hasher = std::hash::DefaultHasher::new();
        labels.hash(&mut hasher);
        Series {
            labels,
            encoded_labels,
            hash: hasher.finish(),
        }
    }

    /// The sorted labels, `__name__` included.
    pub fn labels(&self) -> &[Label] {
        &self.labels
    }

    /// Which of `shards` shards (at least one) this series is sent by.
    pub fn shard(&self, shards: usize) -> usize {
        (self.hash % shards.max(1) as u64) as usize
    }
}

/// How many groups [`SeriesTable`] remembers before it starts afresh: far
/// above a fleet's models × regions (× partitions), and a bound on memory if
/// a stream of one-off groups ever arrives.
const MAX_REMEMBERED_GROUPS: usize = 100_000;

/// Turns aggregates into samples, building each series' labels once and
/// reusing them for every later window (the emitter's hot path).
#[derive(Debug, Default)]
pub struct SeriesTable {
    naming: SeriesNaming,
    /// Per grouping and group, its series by [`fleet_core::aggregate::Sample::slot`], made on first use.
    known: HashMap<(GroupingId, GroupKey), Vec<Option<Arc<Series>>>>,
}

impl SeriesTable {
    /// An empty table naming series with `naming`.
    pub fn new(naming: SeriesNaming) -> Self {
        SeriesTable {
            naming,
            known: HashMap::new(),
        }
    }

    /// The samples of `aggregates`, in any window order, ordered by
    /// `(timestamp, grouping, labels)`, then as each aggregate writes them.
    pub fn batch(&mut self, aggregates: &[WindowAggregate]) -> RemoteWriteBatch {
        let mut sorted: Vec<&WindowAggregate> = aggregates.iter().collect();
        sorted.sort_by(|a, b| {
            (a.window_end, a.grouping, &a.group).cmp(&(b.window_end, b.grouping, &b.group))
        });
        if self.known.len() >= MAX_REMEMBERED_GROUPS {
            self.known.clear();
        }
        let plan = Arc::clone(&self.naming.plan);
        let mut samples = Vec::with_capacity(aggregates.len() * plan.metrics.len());
        for a in sorted {
            let key = (a.grouping, a.group.clone());
            let naming = &self.naming;
            let slots = self.known.entry(key).or_default();
            a.for_each_sample(&plan, |s| {
                if slots.len() <= s.slot {
                    slots.resize(s.slot + 1, None);
                }
                let series = slots[s.slot].get_or_insert_with(|| {
                    let name = &s.metric.series_names()[s.series];
                    Arc::new(naming.labelled(name, &a.group, None, s.le.as_deref()))
                });
                samples.push(BatchSample {
                    series: Arc::clone(series),
                    timestamp: a.window_end,
                    value: s.value,
                });
            });
        }
        RemoteWriteBatch { samples }
    }
}

impl SeriesTable {
    /// The samples of a window batch: its aggregates, then its drill-down
    /// samples (series built per batch, not remembered: a fleet has far
    /// more vehicle series than groups).
    pub fn window_batch(&mut self, batch: &WindowBatch) -> RemoteWriteBatch {
        let mut out = self.batch(&batch.aggregates);
        out.samples.reserve(batch.vehicle_samples.len());
        let mut last: Option<(&VehicleSample, Arc<Series>)> = None;
        for sample in &batch.vehicle_samples {
            let series = match &last {
                Some((prev, series))
                    if prev.signal == sample.signal
                        && prev.vehicle_id == sample.vehicle_id
                        && prev.group == sample.group =>
                {
                    Arc::clone(series)
                }
                _ => Arc::new(self.naming.vehicle_series(sample)),
            };
            out.samples.push(BatchSample {
                series: Arc::clone(&series),
                timestamp: sample.timestamp,
                value: sample.value,
            });
            last = Some((sample, series));
        }
        out
    }
}

/// One sample in a batch, with its series.
#[derive(Clone, Debug, PartialEq)]
struct BatchSample {
    series: Arc<Series>,
    timestamp: TimestampMs,
    value: f64,
}

/// Samples waiting to be written, each series' samples in timestamp order.
///
/// Pieces of a batch ([`chunks`](Self::chunks), [`split_in_halves`](Self::split_in_halves),
/// [`split_by_shard`](Self::split_by_shard)) and batches appended together
/// ([`append`](Self::append)) share their series, so they copy samples, never labels.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct RemoteWriteBatch {
    samples: Vec<BatchSample>,
}

impl RemoteWriteBatch {
    /// The samples of `aggregates`, in any window order (building every series
    /// anew: the stage keeps a [`SeriesTable`] instead).
    pub fn from_aggregates(aggregates: &[WindowAggregate], naming: &SeriesNaming) -> Self {
        SeriesTable::new(naming.clone()).batch(aggregates)
    }

    /// The number of samples.
    pub fn len(&self) -> usize {
        self.samples.len()
    }

    /// Whether there is no sample.
    pub fn is_empty(&self) -> bool {
        self.samples.is_empty()
    }

    /// The newest sample timestamp.
    pub fn newest_timestamp(&self) -> Option<TimestampMs> {
        self.samples.iter().map(|s| s.timestamp).max()
    }

    /// Consecutive pieces of at most `max_samples` samples (at least one), to
    /// be sent in the order returned. A series may span pieces.
    pub fn chunks(&self, max_samples: usize) -> impl Iterator<Item = RemoteWriteBatch> + '_ {
        self.samples
            .chunks(max_samples.max(1))
            .map(|piece| RemoteWriteBatch {
                samples: piece.to_vec(),
            })
    }

    /// The first and second half (the first is the smaller one for an odd
    /// length), to be sent in that order. Used to isolate refused samples.
    pub fn split_in_halves(&self) -> (RemoteWriteBatch, RemoteWriteBatch) {
        let (first, second) = self.samples.split_at(self.samples.len() / 2);
        (
            RemoteWriteBatch {
                samples: first.to_vec(),
            },
            RemoteWriteBatch {
                samples: second.to_vec(),
            },
        )
    }

    /// The samples of each of `shards` shards (index = shard), each series
    /// whole in its own shard, order kept within each.
    pub fn split_by_shard(self, shards: usize) -> Vec<RemoteWriteBatch> {
        let mut parts = vec![RemoteWriteBatch::default(); shards.max(1)];
        for sample in self.samples {
            parts[sample.series.shard(shards)].samples.push(sample);
        }
        parts
    }

    /// Appends `later`'s samples, to be sent after these.
    pub fn append(&mut self, later: RemoteWriteBatch) {
        self.samples.extend(later.samples);
    }

    /// Removes and returns the first `n` samples (all of them if fewer).
    pub fn take_front(&mut self, n: usize) -> RemoteWriteBatch {
        let rest = self.samples.split_off(n.min(self.samples.len()));
        RemoteWriteBatch {
            samples: std::mem::replace(&mut self.samples, rest),
        }
    }

    /// Each series present with its samples, series in order of first
    /// appearance, samples in list order.
    fn grouped(&self) -> Vec<(&Series, Vec<&BatchSample>)> {
        let mut slot: HashMap<*const Series, usize> = HashMap::with_capacity(self.samples.len());
        let mut groups: Vec<(&Series, Vec<&BatchSample>)> = Vec::new();
        for s in &self.samples {
            let i = *slot.entry(Arc::as_ptr(&s.series)).or_insert_with(|| {
                groups.push((&s.series, Vec::with_capacity(1)));
                groups.len() - 1
            });
            groups[i].1.push(s);
        }
        groups
    }

    /// The protobuf request: one [`TimeSeries`] per series present, samples in list order.
    pub fn to_write_request(&self) -> WriteRequest {
        WriteRequest {
            timeseries: self
                .grouped()
                .into_iter()
                .map(|(series, samples)| TimeSeries {
                    labels: series.labels.clone(),
                    samples: samples
                        .into_iter()
                        .map(|s| Sample {
                            value: s.value,
                            timestamp: s.timestamp,
                        })
                        .collect(),
                })
                .collect(),
        }
    }

    /// The protobuf bytes of [`to_write_request`](Self::to_write_request),
    /// written directly: labels are copied from each series' encoding instead
    /// of being cloned into messages and encoded again, which is most of the
    /// cost of a request (its series are usually one sample each).
    pub fn to_protobuf(&self) -> Vec<u8> {
        use prost::encoding::{encode_key, encode_varint, encoded_len_varint, WireType};
        let groups = self.grouped();
        let sample_len = |s: &BatchSample| {
            // Proto3 leaves out default values, as prost's derived encoder does.
            let value = if s.value != 0.0 { 1 + 8 } else { 0 };
            let timestamp = if s.timestamp != 0 {
                1 + encoded_len_varint(s.timestamp as u64)
            } else {
                0
            };
            value + timestamp
        };
        let mut out = Vec::with_capacity(
            groups
                .iter()
                .map(|(series, samples)| series.encoded_labels.len() + 8 + samples.len() * 24)
                .sum(),
        );
        for (series, samples) in groups {
            let body: usize = series.encoded_labels.len()
                + samples
                    .iter()
                    .map(|s| {
                        let len = sample_len(s);
                        1 + encoded_len_varint(len as u64) + len
                    })
                    .sum::<usize>();
            encode_key(1, WireType::LengthDelimited, &mut out);
            encode_varint(body as u64, &mut out);
            out.extend_from_slice(&series.encoded_labels);
            for s in samples {
                encode_key(2, WireType::LengthDelimited, &mut out);
                encode_varint(sample_len(s) as u64, &mut out);
                if s.value != 0.0 {
                    encode_key(1, WireType::SixtyFourBit, &mut out);
                    out.extend_from_slice(&s.value.to_le_bytes());
                }
                if s.timestamp != 0 {
                    encode_key(2, WireType::Varint, &mut out);
                    encode_varint(s.timestamp as u64, &mut out);
                }
            }
        }
        out
    }

    /// The request body: protobuf, snappy-compressed.
    pub fn compressed_body(&self) -> Result<Vec<u8>, RemoteWriteError> {
        compress_protobuf(&self.to_protobuf())
    }

    /// The first sample as `name{label="value",...} @ timestamp`, for log lines.
    pub fn describe_first(&self) -> String {
        let Some(s) = self.samples.first() else {
            return String::new();
        };
        let labels = s.series.labels();
        let mut out = labels
            .iter()
            .find(|l| l.name == METRIC_NAME_LABEL)
            .map(|l| l.value.clone())
            .unwrap_or_default();
        out.push('{');
        let mut first = true;
        for l in labels.iter().filter(|l| l.name != METRIC_NAME_LABEL) {
            if !first {
                out.push(',');
            }
            first = false;
            let _ = write!(out, "{}={:?}", l.name, l.value);
        }
        let _ = write!(out, "}} @ {}", s.timestamp);
        out
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use fleet_core::{MetricValue, Number};
    use fleet_testkit::oracle::Expected;

    use super::*;

    /// A window of the reference demo of group (`model`, `region`), every
    /// metric present (9 samples).
    pub(crate) fn expected(model: &str, region: &str, window_end: i64) -> Expected {
        Expected {
            window_start: window_end - 5000,
            window_end,
            model: model.into(),
            region: region.into(),
            vehicles_in_motion: 3,
            warnings: 2,
            vehicles_reporting: 4,
            ic_rpm_sum: 3000,
            ic_rpm_count: 2,
            electric_rpm_sum: -90,
            electric_rpm_count: 3,
            events: 9,
        }
    }

    /// The aggregate of [`expected`].
    pub(crate) fn aggregate(model: &str, region: &str, window_end: i64) -> WindowAggregate {
        Expected::to_aggregate(&expected(model, region, window_end))
    }

    fn names(ts: &TimeSeries) -> Vec<&str> {
        ts.labels.iter().map(|l| l.name.as_str()).collect()
    }

    fn label<'a>(ts: &'a TimeSeries, name: &str) -> &'a str {
        &ts.labels.iter().find(|l| l.name == name).unwrap().value
    }

    fn series<'a>(req: &'a WriteRequest, metric: &str, model: &str) -> &'a TimeSeries {
        req.timeseries
            .iter()
            .find(|t| label(t, "__name__") == metric && label(t, "model") == model)
            .unwrap()
    }

    /// Each sample of `batch` as its log line, in list order.
    fn described(batch: &RemoteWriteBatch) -> Vec<String> {
        batch
            .samples
            .iter()
            .map(|s| {
                RemoteWriteBatch {
                    samples: vec![s.clone()],
                }
                .describe_first()
            })
            .collect()
    }

    #[test]
    fn one_sample_per_metric_at_window_end() {
        let req = encode(
            &[aggregate("Nebulara", "UK", 10_000)],
            &SeriesNaming::default(),
        );
        assert_eq!(req.timeseries.len(), 9);
        let value = |m: &str| {
            let s = &series(&req, m, "Nebulara").samples;
            assert_eq!(s.len(), 1);
            assert_eq!(s[0].timestamp, 10_000);
            s[0].value
        };
        assert_eq!(value("vehicles_in_motion"), 3.0);
        assert_eq!(value("warnings"), 2.0);
        assert_eq!(value("vehicles_reporting"), 4.0);
        assert_eq!(value("ic_engine_rpm_avg"), 1500.0);
        assert_eq!(value("electric_motor_rpm_avg"), -30.0);
        assert_eq!(value("ic_engine_rpm_sum"), 3000.0);
        assert_eq!(value("ic_engine_rpm_count"), 2.0);
        assert_eq!(value("electric_motor_rpm_sum"), -90.0);
        assert_eq!(value("electric_motor_rpm_count"), 3.0);
    }

    #[test]
    fn samples_keep_the_order_the_demo_always_wrote() {
        // Given out of order on purpose: windows, then groups, are sorted.
        let batch = RemoteWriteBatch::from_aggregates(
            &[
                aggregate("B", "UK", 10_000),
                aggregate("A", "UK", 10_000),
                aggregate("A", "UK", 5000),
            ],
            &SeriesNaming::default(),
        );
        let per_group = [
            "vehicles_in_motion",
            "warnings",
            "vehicles_reporting",
            "ic_engine_rpm_avg",
            "electric_motor_rpm_avg",
            "ic_engine_rpm_sum",
            "ic_engine_rpm_count",
            "electric_motor_rpm_sum",
            "electric_motor_rpm_count",
        ];
        let expected: Vec<String> = [("A", 5000), ("A", 10_000), ("B", 10_000)]
            .into_iter()
            .flat_map(|(model, end)| {
                per_group.map(|name| format!(r#"{name}{{model="{model}",region="UK"}} @ {end}"#))
            })
            .collect();
        assert_eq!(described(&batch), expected);
    }

    #[test]
    fn labels_are_sorted_and_carry_prefix_and_constant_labels() {
        let naming = SeriesNaming {
            metric_prefix: "fleet_".into(),
            constant_labels: BTreeMap::from([
                ("zone".to_string(), "eu".to_string()),
                ("env".to_string(), "prod".to_string()),
                ("model".to_string(), "ignored".to_string()),
                ("region".to_string(), "ignored".to_string()),
            ]),
            ..SeriesNaming::default()
        };
        let req = encode(&[aggregate("Nebulara", "UK", 10_000)], &naming);
        for ts in &req.timeseries {
            assert_eq!(names(ts), ["__name__", "env", "model", "region", "zone"]);
            assert!(label(ts, "__name__").starts_with("fleet_"));
            assert_eq!(label(ts, "model"), "Nebulara");
            assert_eq!(label(ts, "region"), "UK");
            assert_eq!(label(ts, "env"), "prod");
        }
        series(&req, "fleet_vehicles_in_motion", "Nebulara");
    }

    #[test]
    fn drill_down_samples_follow_the_aggregates_with_vehicle_labels() {
        let a = aggregate("Nebulara", "UK", 10_000);
        let naming = SeriesNaming {
            constant_labels: BTreeMap::from([("env".to_string(), "prod".to_string())]),
            ..SeriesNaming::default()
        };
        let signal = |name| naming.plan.input.signal_named(name).unwrap();
        let sample = |signal, timestamp, value| VehicleSample {
            vehicle_id: "V1".into(),
            group: a.group.clone(),
            signal,
            timestamp,
            value,
        };
        let batch = WindowBatch {
            firing_points: Vec::new(),
            aggregates: vec![a.clone()],
            vehicle_samples: vec![
                sample(signal("IC_RPM"), 6_000, 900.0),
                sample(signal("IC_RPM"), 7_000, 950.0),
                sample(signal("WARNINGS"), 10_000, 2.0),
            ],
            checkpoint: Default::default(),
        };
        let req = SeriesTable::new(naming.clone())
            .window_batch(&batch)
            .to_write_request();
        assert_eq!(req.timeseries.len(), 9 + 2);
        let rpm = series(&req, "vehicle_ic_engine_rpm", "Nebulara");
        assert_eq!(
            names(rpm),
            ["__name__", "env", "model", "region", "vehicle_id"]
        );
        assert_eq!(label(rpm, "vehicle_id"), "V1");
        let points: Vec<(i64, f64)> = rpm.samples.iter().map(|s| (s.timestamp, s.value)).collect();
        assert_eq!(points, [(6_000, 900.0), (7_000, 950.0)]);
        assert_eq!(
            series(&req, "vehicle_warnings", "Nebulara").samples[0].value,
            2.0
        );
    }

    #[test]
    fn dimensions_are_labels_of_their_own() {
        let dimensions = ["model_year".to_string(), "fuel_type".to_string()];
        let naming = SeriesNaming {
            plan: Arc::new(MetricPlan::from_toml("", &dimensions).unwrap()),
            ..SeriesNaming::default()
        };
        let group = |year| {
            GroupKey::new([
                ("model", "Nebulara"),
                ("region", "UK"),
                ("model_year", year),
                ("fuel_type", "diesel"),
            ])
        };
        let a = WindowAggregate {
            group: group("2024"),
            ..aggregate("Nebulara", "UK", 10_000)
        };
        let b = WindowAggregate {
            group: group("2025"),
            ..a.clone()
        };
        let req = encode(&[a, b], &naming);
        assert_eq!(req.timeseries.len(), 18, "two groups, one per model year");
        for ts in &req.timeseries {
            assert_eq!(
                names(ts),
                ["__name__", "fuel_type", "model", "model_year", "region"]
            );
            assert_eq!(label(ts, "fuel_type"), "diesel");
        }
    }

    #[test]
    fn histograms_write_cumulative_buckets_and_coarser_groupings_fewer_labels() {
        let plan = MetricPlan::from_toml(
            r#"
            [[metrics]]
            name = "ic_engine_rpm"
            help = "Engine RPM."
            function = "histogram"
            signal = "IC_RPM"
            buckets = [0.5, 1000, 2500]

            [[metrics]]
            name = "vehicles_reporting"
            help = "Distinct vehicles with any event."
            function = "distinct_vehicles"
            by = ["region"]
            "#,
            &[],
        )
        .unwrap();
        let naming = SeriesNaming {
            plan: Arc::new(plan),
            metric_prefix: "fleet_".into(),
            constant_labels: BTreeMap::from([("env".to_string(), "prod".to_string())]),
        };
        let by_model = |model: &str, window_end| WindowAggregate {
            values: vec![MetricValue::Histogram {
                buckets: vec![1, 0, 2, 1],
                sum: Number::Integer(9000),
                count: 4,
            }],
            ..aggregate(model, "UK", window_end)
        };
        let by_region = |window_end| WindowAggregate {
            grouping: GroupingId(1),
            group: GroupKey::new([("region", "UK")]),
            values: vec![MetricValue::Count(5)],
            ..aggregate("unused", "UK", window_end)
        };
        let mut table = SeriesTable::new(naming);
        // Given out of order on purpose: by window, then grouping, then labels.
        let batch = table.batch(&[
            by_region(10_000),
            by_model("B", 10_000),
            by_model("A", 10_000),
        ]);
        // Buckets cumulative, `+Inf` last, then the sum and count.
        let line = |series: &str, labels: &str| {
            format!(r#"fleet_ic_engine_rpm_{series}{{env="prod",{labels}region="UK"}} @ 10000"#)
        };
        let model = |m: &str| {
            let group = format!(r#"model="{m}","#);
            let bucket = |le: &str| line("bucket", &format!(r#"le="{le}",{group}"#));
            [
                bucket("0.5"),
                bucket("1000"),
                bucket("2500"),
                bucket("+Inf"),
                line("sum", &group),
                line("count", &group),
            ]
        };
        let mut expected: Vec<String> = model("A").into_iter().chain(model("B")).collect();
        expected.push(r#"fleet_vehicles_reporting{env="prod",region="UK"} @ 10000"#.into());
        assert_eq!(described(&batch), expected);
        let values: Vec<f64> = batch.samples.iter().map(|s| s.value).collect();
        let per_model = [1.0, 1.0, 3.0, 4.0, 9000.0, 4.0];
        assert_eq!(values[..6], per_model);
        assert_eq!(values[6..12], per_model);
        assert_eq!(values[12], 5.0);

        // The next window reuses every series, buckets included.
        let next = table.batch(&[
            by_model("A", 15_000),
            by_model("B", 15_000),
            by_region(15_000),
        ]);
        assert_eq!(next.len(), batch.len());
        for (a, b) in batch.samples.iter().zip(&next.samples) {
            assert!(Arc::ptr_eq(&a.series, &b.series));
        }
    }

    #[test]
    fn a_series_in_several_windows_is_one_time_series_in_time_order() {
        // Given out of window order on purpose.
        let aggregates = [
            aggregate("B", "UK", 20_000),
            aggregate("A", "UK", 20_000),
            aggregate("B", "UK", 10_000),
            aggregate("A", "UK", 15_000),
        ];
        let req = encode(&aggregates, &SeriesNaming::default());
        assert_eq!(req.timeseries.len(), 18, "9 metrics × 2 groups");
        let ts = |s: &TimeSeries| s.samples.iter().map(|x| x.timestamp).collect::<Vec<_>>();
        assert_eq!(ts(series(&req, "warnings", "A")), [15_000, 20_000]);
        assert_eq!(ts(series(&req, "warnings", "B")), [10_000, 20_000]);
    }

    #[test]
    fn averages_are_omitted_without_input() {
        let a = Expected::to_aggregate(&Expected {
            ic_rpm_sum: 0,
            ic_rpm_count: 0,
            electric_rpm_sum: 0,
            electric_rpm_count: 0,
            ..expected("A", "UK", 10_000)
        });
        let batch = RemoteWriteBatch::from_aggregates(&[a], &SeriesNaming::default());
        assert_eq!(batch.len(), 7);
        let req = batch.to_write_request();
        let metrics: Vec<&str> = req
            .timeseries
            .iter()
            .map(|t| label(t, "__name__"))
            .collect();
        assert_eq!(req.timeseries.len(), 7);
        assert!(!metrics.contains(&"ic_engine_rpm_avg"));
        assert!(!metrics.contains(&"electric_motor_rpm_avg"));
        assert!(metrics.contains(&"ic_engine_rpm_count"));
    }

    #[test]
    fn chunks_and_halves_keep_every_series_in_time_order() {
        let aggregates: Vec<_> = (1..=4)
            .flat_map(|w| {
                [
                    aggregate("A", "UK", w * 5000),
                    aggregate("B", "FR", w * 5000),
                ]
            })
            .collect();
        let batch = RemoteWriteBatch::from_aggregates(&aggregates, &SeriesNaming::default());
        assert_eq!(batch.len(), 72);
        let chunks: Vec<_> = batch.chunks(10).collect();
        assert_eq!(chunks.len(), 8);
        assert!(chunks.iter().all(|c| c.len() <= 10));
        let (a, b) = batch.split_in_halves();
        assert_eq!((a.len(), b.len()), (36, 36));
        for pieces in [chunks, vec![a, b]] {
            // Concatenating the pieces' requests in order gives every series in order.
            let mut seen: BTreeMap<Vec<Label>, Vec<i64>> = BTreeMap::new();
            for p in &pieces {
                for ts in p.to_write_request().timeseries {
                    let times = seen.entry(ts.labels.clone()).or_default();
                    times.extend(ts.samples.iter().map(|s| s.timestamp));
                }
            }
            assert_eq!(seen.len(), 18);
            for times in seen.values() {
                assert_eq!(times, &[5000, 10_000, 15_000, 20_000]);
            }
        }
    }

    #[test]
    fn direct_protobuf_is_what_prost_encodes() {
        let mut zero = expected("Z", "UK", 0);
        zero.vehicles_in_motion = 0; // default values are left out by both
        zero.warnings = i64::MAX / 3;
        let mut negative = expected("A", "FR", -5000);
        negative.electric_rpm_sum = -1;
        let batch = RemoteWriteBatch::from_aggregates(
            &[
                aggregate("A", "UK", 10_000),
                aggregate("A", "UK", 15_000),
                aggregate("Nebulara", "UK", 1_764_000_005_000),
                Expected::to_aggregate(&zero),
                Expected::to_aggregate(&negative),
            ],
            &SeriesNaming {
                metric_prefix: "fleet_".into(),
                constant_labels: BTreeMap::from([("env".to_string(), "prod".to_string())]),
                ..SeriesNaming::default()
            },
        );
        for piece in [
            batch.clone(),
            batch.split_in_halves().1,
            RemoteWriteBatch::default(),
        ] {
            assert_eq!(
                piece.to_protobuf(),
                piece.to_write_request().encode_to_vec()
            );
        }
    }

    #[test]
    fn a_table_builds_each_series_once() {
        let mut table = SeriesTable::new(SeriesNaming::default());
        let first = table.batch(&[aggregate("A", "UK", 5000)]);
        let second = table.batch(&[aggregate("A", "UK", 10_000)]);
        assert_eq!(first.len(), 9);
        for (a, b) in first.samples.iter().zip(&second.samples) {
            assert!(Arc::ptr_eq(&a.series, &b.series));
        }
        assert_eq!(table.known.len(), 1);
    }

    #[test]
    fn shards_get_whole_series_in_order_and_appending_keeps_order() {
        let aggregates: Vec<_> = (1..=3)
            .flat_map(|w| ["A", "B", "C", "D"].map(|m| aggregate(m, "UK", w * 5000)))
            .collect();
        let batch = RemoteWriteBatch::from_aggregates(&aggregates, &SeriesNaming::default());
        let parts = batch.clone().split_by_shard(3);
        assert_eq!(parts.len(), 3);
        assert_eq!(parts.iter().map(RemoteWriteBatch::len).sum::<usize>(), 108);
        let mut owner: HashMap<Vec<Label>, usize> = HashMap::new();
        for (shard, part) in parts.iter().enumerate() {
            for s in &part.samples {
                assert_eq!(s.series.shard(3), shard);
                assert_eq!(
                    *owner.entry(s.series.labels.clone()).or_insert(shard),
                    shard
                );
            }
            for ts in part.to_write_request().timeseries {
                assert_eq!(
                    ts.samples.iter().map(|s| s.timestamp).collect::<Vec<_>>(),
                    [5000, 10_000, 15_000]
                );
            }
        }
        let mut rest = batch.clone();
        let mut front = rest.take_front(40);
        assert_eq!((front.len(), rest.len()), (40, 68));
        front.append(rest);
        assert_eq!(front, batch);
        assert_eq!(front.take_front(500).len(), 108);
        assert!(front.is_empty());
    }

    #[test]
    fn compressed_request_is_snappy_block_format() {
        let req = encode(&[aggregate("A", "UK", 10_000)], &SeriesNaming::default());
        let body = compress(&req).unwrap();
        let raw = snap::raw::Decoder::new().decompress_vec(&body).unwrap();
        assert_eq!(WriteRequest::decode(raw.as_slice()).unwrap(), req);
        let batch = RemoteWriteBatch::from_aggregates(
            &[aggregate("A", "UK", 10_000)],
            &SeriesNaming::default(),
        );
        assert_eq!(batch.compressed_body().unwrap(), body);
    }

    #[test]
    fn describes_a_sample_for_logs() {
        let batch = RemoteWriteBatch::from_aggregates(
            &[aggregate("A", "UK", 10_000)],
            &SeriesNaming::default(),
        );
        assert_eq!(
            batch.describe_first(),
            r#"vehicles_in_motion{model="A",region="UK"} @ 10000"#
        );
        assert_eq!(RemoteWriteBatch::default().describe_first(), "");
    }
}
