//! Window aggregates → series → protobuf → snappy: the pure half of the emitter.
//!
//! Every aggregate becomes one sample per [`Metric`] at `timestamp = window_end`,
//! labelled `__name__`, `model`, `region` and the constant labels, labels sorted
//! by name as Prometheus requires. A [`RemoteWriteBatch`] keeps the samples of
//! one or more requests as a flat list ordered by `(timestamp, series)`, so that
//! any contiguous piece of it — a chunk under the request size limit, or a half
//! during bisection — still holds each series' samples in timestamp order, and
//! sending the pieces in list order keeps every series in order at the receiver.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::sync::Arc;

use fleet_core::{GroupKey, TimestampMs, WindowAggregate};
use prost::Message;

use crate::proto::{Label, Sample, TimeSeries, WriteRequest};
use crate::RemoteWriteError;

/// The label Prometheus stores the metric name in.
pub const METRIC_NAME_LABEL: &str = "__name__";
/// The label carrying the vehicle model.
pub const MODEL_LABEL: &str = "model";
/// The label carrying the region.
pub const REGION_LABEL: &str = "region";

/// How aggregates are named as series: the metric-name prefix and the labels
/// added to every series.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct SeriesNaming {
    /// Prepended verbatim to every metric name (include the trailing `_`).
    pub metric_prefix: String,
    /// Added to every series. A name that collides with `__name__`, `model` or
    /// `region` is ignored here; configuration validation refuses it earlier.
    pub constant_labels: BTreeMap<String, String>,
}

impl SeriesNaming {
    /// The sorted label set of `metric` for `group`.
    fn labels(&self, group: &GroupKey, metric: Metric) -> Vec<Label> {
        let label = |name: &str, value: &str| Label {
            name: name.to_owned(),
            value: value.to_owned(),
        };
        let mut labels = Vec::with_capacity(3 + self.constant_labels.len());
        labels.push(Label {
            name: METRIC_NAME_LABEL.to_owned(),
            value: format!("{}{}", self.metric_prefix, metric.name()),
        });
        labels.push(label(MODEL_LABEL, &group.model));
        labels.push(label(REGION_LABEL, &group.region));
        labels.extend(
            self.constant_labels
                .iter()
                .filter(|(name, _)| !is_builtin_label(name))
                .map(|(name, value)| label(name, value)),
        );
        labels.sort_by(|a, b| a.name.cmp(&b.name));
        labels
    }
}

/// Whether `name` is one of the labels this crate sets itself.
pub(crate) fn is_builtin_label(name: &str) -> bool {
    matches!(name, METRIC_NAME_LABEL | MODEL_LABEL | REGION_LABEL)
}

/// The metrics written for every aggregate (DESIGN, "Output").
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Metric {
    /// Distinct vehicles with a non-zero RPM event.
    VehiclesInMotion,
    /// Sum of the vehicles' latest warning counts.
    Warnings,
    /// Distinct vehicles with any event.
    VehiclesReporting,
    /// Mean engine RPM; omitted without engine events.
    IcEngineRpmAvg,
    /// Mean motor RPM; omitted without motor events.
    ElectricMotorRpmAvg,
    /// Sum of engine RPM, so means across instances are exact.
    IcEngineRpmSum,
    /// Number of engine RPM events.
    IcEngineRpmCount,
    /// Sum of motor RPM.
    ElectricMotorRpmSum,
    /// Number of motor RPM events.
    ElectricMotorRpmCount,
}

impl Metric {
    /// Every metric, in the design's table order.
    pub const ALL: [Metric; 9] = [
        Metric::VehiclesInMotion,
        Metric::Warnings,
        Metric::VehiclesReporting,
        Metric::IcEngineRpmAvg,
        Metric::ElectricMotorRpmAvg,
        Metric::IcEngineRpmSum,
        Metric::IcEngineRpmCount,
        Metric::ElectricMotorRpmSum,
        Metric::ElectricMotorRpmCount,
    ];

    /// The metric name without prefix.
    pub fn name(self) -> &'static str {
        match self {
            Metric::VehiclesInMotion => "vehicles_in_motion",
            Metric::Warnings => "warnings",
            Metric::VehiclesReporting => "vehicles_reporting",
            Metric::IcEngineRpmAvg => "ic_engine_rpm_avg",
            Metric::ElectricMotorRpmAvg => "electric_motor_rpm_avg",
            Metric::IcEngineRpmSum => "ic_engine_rpm_sum",
            Metric::IcEngineRpmCount => "ic_engine_rpm_count",
            Metric::ElectricMotorRpmSum => "electric_motor_rpm_sum",
            Metric::ElectricMotorRpmCount => "electric_motor_rpm_count",
        }
    }

    /// This metric's value for `a`; `None` when it is omitted (a mean without input).
    pub fn value(self, a: &WindowAggregate) -> Option<f64> {
        // Counts stay exact as f64 up to 2^53, far beyond one window's events.
        match self {
            Metric::VehiclesInMotion => Some(a.vehicles_in_motion as f64),
            Metric::Warnings => Some(a.warnings as f64),
            Metric::VehiclesReporting => Some(a.vehicles_reporting as f64),
            Metric::IcEngineRpmAvg => a.ic_rpm_avg(),
            Metric::ElectricMotorRpmAvg => a.electric_rpm_avg(),
            Metric::IcEngineRpmSum => Some(a.ic_rpm_sum as f64),
            Metric::IcEngineRpmCount => Some(a.ic_rpm_count as f64),
            Metric::ElectricMotorRpmSum => Some(a.electric_rpm_sum as f64),
            Metric::ElectricMotorRpmCount => Some(a.electric_rpm_count as f64),
        }
    }
}

/// How many samples `a` produces (7 to 9).
pub fn samples_in(a: &WindowAggregate) -> usize {
    Metric::ALL.iter().filter(|m| m.value(a).is_some()).count()
}

/// Encodes aggregates of one or more windows into one request: one
/// [`TimeSeries`] per series, its samples in timestamp order.
pub fn encode(aggregates: &[WindowAggregate], naming: &SeriesNaming) -> WriteRequest {
    RemoteWriteBatch::from_aggregates(aggregates, naming).to_write_request()
}

/// Serialises and snappy-compresses (block format, as Remote-Write 1.0 requires) a request.
pub fn compress(request: &WriteRequest) -> Result<Vec<u8>, RemoteWriteError> {
    snap::raw::Encoder::new()
        .compress_vec(&request.encode_to_vec())
        .map_err(RemoteWriteError::Compress)
}

/// One sample in a batch, naming its series by index.
#[derive(Clone, Copy, Debug, PartialEq)]
struct BatchSample {
    series: usize,
    timestamp: TimestampMs,
    value: f64,
}

/// Samples waiting to be written, ordered by `(timestamp, series)`.
///
/// Pieces of a batch ([`chunks`](Self::chunks), [`split_in_halves`](Self::split_in_halves))
/// share its series table, so splitting copies samples, never labels.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct RemoteWriteBatch {
    /// Every series' sorted labels; samples refer to them by index.
    series: Arc<Vec<Vec<Label>>>,
    samples: Vec<BatchSample>,
}

impl RemoteWriteBatch {
    /// The samples of `aggregates`, in any window order.
    pub fn from_aggregates(aggregates: &[WindowAggregate], naming: &SeriesNaming) -> Self {
        let mut index: BTreeMap<(&GroupKey, Metric), usize> = BTreeMap::new();
        let mut raw = Vec::with_capacity(aggregates.len() * Metric::ALL.len());
        for a in aggregates {
            for metric in Metric::ALL {
                if let Some(value) = metric.value(a) {
                    index.insert((&a.group, metric), 0);
                    raw.push((a.window_end, (&a.group, metric), value));
                }
            }
        }
        for (i, slot) in index.values_mut().enumerate() {
            *slot = i;
        }
        let series = index
            .keys()
            .map(|(group, metric)| naming.labels(group, *metric))
            .collect();
        let mut samples: Vec<BatchSample> = raw
            .into_iter()
            .map(|(timestamp, key, value)| BatchSample {
                // Every key was inserted in the loop above.
                series: index[&key],
                timestamp,
                value,
            })
            .collect();
        samples.sort_by_key(|s| (s.timestamp, s.series));
        RemoteWriteBatch {
            series: Arc::new(series),
            samples,
        }
    }

    /// The number of samples.
    pub fn len(&self) -> usize {
        self.samples.len()
    }

    /// Whether there is no sample.
    pub fn is_empty(&self) -> bool {
        self.samples.is_empty()
    }

    /// Consecutive pieces of at most `max_samples` samples (at least one), to
    /// be sent in the order returned. A series may span pieces.
    pub fn chunks(&self, max_samples: usize) -> impl Iterator<Item = RemoteWriteBatch> + '_ {
        self.samples
            .chunks(max_samples.max(1))
            .map(|piece| self.piece(piece))
    }

    /// The first and second half (the first is the smaller one for an odd
    /// length), to be sent in that order. Used to isolate refused samples.
    pub fn split_in_halves(&self) -> (RemoteWriteBatch, RemoteWriteBatch) {
        let (first, second) = self.samples.split_at(self.samples.len() / 2);
        (self.piece(first), self.piece(second))
    }

    fn piece(&self, samples: &[BatchSample]) -> RemoteWriteBatch {
        RemoteWriteBatch {
            series: Arc::clone(&self.series),
            samples: samples.to_vec(),
        }
    }

    /// The protobuf request: one [`TimeSeries`] per series present, samples in list order.
    pub fn to_write_request(&self) -> WriteRequest {
        let mut by_series: BTreeMap<usize, Vec<Sample>> = BTreeMap::new();
        for s in &self.samples {
            by_series.entry(s.series).or_default().push(Sample {
                value: s.value,
                timestamp: s.timestamp,
            });
        }
        WriteRequest {
            timeseries: by_series
                .into_iter()
                .map(|(i, samples)| TimeSeries {
                    labels: self.series.get(i).cloned().unwrap_or_default(),
                    samples,
                })
                .collect(),
        }
    }

    /// The first sample as `name{label="value",...} @ timestamp`, for log lines.
    pub fn describe_first(&self) -> String {
        let Some(s) = self.samples.first() else {
            return String::new();
        };
        let labels = self.series.get(s.series).map(Vec::as_slice).unwrap_or(&[]);
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
    use super::*;

    pub(crate) fn aggregate(model: &str, region: &str, window_end: i64) -> WindowAggregate {
        WindowAggregate {
            window_start: window_end - 5000,
            window_end,
            group: GroupKey {
                model: model.into(),
                region: region.into(),
            },
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
    fn labels_are_sorted_and_carry_prefix_and_constant_labels() {
        let naming = SeriesNaming {
            metric_prefix: "fleet_".into(),
            constant_labels: BTreeMap::from([
                ("zone".to_string(), "eu".to_string()),
                ("env".to_string(), "prod".to_string()),
                ("model".to_string(), "ignored".to_string()),
            ]),
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
        let mut a = aggregate("A", "UK", 10_000);
        a.ic_rpm_sum = 0;
        a.ic_rpm_count = 0;
        a.electric_rpm_sum = 0;
        a.electric_rpm_count = 0;
        assert_eq!(samples_in(&a), 7);
        let req = encode(&[a], &SeriesNaming::default());
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
    fn compressed_request_is_snappy_block_format() {
        let req = encode(&[aggregate("A", "UK", 10_000)], &SeriesNaming::default());
        let body = compress(&req).unwrap();
        let raw = snap::raw::Decoder::new().decompress_vec(&body).unwrap();
        assert_eq!(WriteRequest::decode(raw.as_slice()).unwrap(), req);
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
