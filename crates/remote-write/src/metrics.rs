//! Self-metrics of the emitter, each observable thing one method that both
//! logs and counts (STYLE 11), so the stage code never touches a counter.
//!
//! Registered under the `remote_write` sub-registry of the `fleet` root:
//! `fleet_remote_write_samples_sent_total`, `…_samples_dropped_total{reason}`,
//! `…_requests_total{status_class}`, `…_retries_total`, `…_bytes_sent_total`,
//! `…_request_duration_seconds`, `…_last_accepted_window_end_timestamp_seconds`,
//! `…_shard_queue_samples{shard}`, `…_oldest_unsent_sample_age_seconds`,
//! `…_window_latency_seconds`.
//! Every label value is a closed enum or a shard index (at most
//! [`MAX_SHARDS`](crate::config::MAX_SHARDS)); no series or vehicle ever becomes a label.

use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use fleet_core::telemetry::{wall_clock_ms, RegisterMetric};
use fleet_core::TimestampMs;
use prometheus_client::encoding::{EncodeLabelSet, EncodeLabelValue, LabelValueEncoder};
use prometheus_client::encoding::{EncodeMetric, MetricEncoder};
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{exponential_buckets, Histogram};
use prometheus_client::metrics::MetricType;
use prometheus_client::registry::{Registry, Unit};

use crate::error::RemoteWriteError;

/// Why samples were dropped instead of written.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum DropReason {
    /// Older than the series' newest sample at the endpoint.
    OutOfOrder,
    /// Same timestamp as the series' newest sample, another value.
    Duplicate,
    /// Outside the time range the endpoint accepts (too old or too far ahead).
    OutOfBounds,
    /// Refused with 400 for another reason.
    Other,
    /// The whole request was refused with another 4xx (auth, not found, too large).
    Rejected,
    /// Retryable failures outlasted `max_retries` with `on_retry_exhausted = "drop"`.
    RetryExhausted,
}

impl DropReason {
    /// Every reason, for exporting zero-valued counters.
    pub const ALL: [DropReason; 6] = [
        DropReason::OutOfOrder,
        DropReason::Duplicate,
        DropReason::OutOfBounds,
        DropReason::Other,
        DropReason::Rejected,
        DropReason::RetryExhausted,
    ];

    /// The metric label value and log field.
    pub fn as_str(self) -> &'static str {
        match self {
            DropReason::OutOfOrder => "out_of_order",
            DropReason::Duplicate => "duplicate",
            DropReason::OutOfBounds => "out_of_bounds",
            DropReason::Other => "other",
            DropReason::Rejected => "rejected",
            DropReason::RetryExhausted => "retry_exhausted",
        }
    }

    /// Reads the reason from a 400 answer. Prometheus answers with its storage
    /// error (`out of order sample`, `duplicate sample for timestamp`, `out of
    /// bounds`); Cortex-based backends such as AMP and Mimir say the same in
    /// other words (`sample timestamp out of order`, `sample with repeated
    /// timestamp but different value`, `sample-too-old`), which count alike.
    pub fn from_bad_request(answer: &str) -> DropReason {
        let answer = answer.to_ascii_lowercase().replace(['-', '_'], " ");
        let has = |needle: &str| answer.contains(needle);
        if has("out of order") {
            DropReason::OutOfOrder
        } else if has("duplicate sample")
            || has("duplicate timestamp")
            || has("repeated timestamp")
            || has("new value for timestamp")
        {
            DropReason::Duplicate
        } else if has("out of bounds") || has("too old") || has("too far in") {
            DropReason::OutOfBounds
        } else {
            DropReason::Other
        }
    }
}

// Written by hand rather than derived: the derive writes the variant name
// (`OutOfOrder`), and Prometheus label values are snake_case by convention.
impl EncodeLabelValue for DropReason {
    fn encode(&self, encoder: &mut LabelValueEncoder<'_>) -> Result<(), std::fmt::Error> {
        std::fmt::Write::write_str(encoder, self.as_str())
    }
}

/// How one HTTP request ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum StatusClass {
    /// 2xx: every sample written.
    Ok,
    /// 5xx, 429, 408: retried.
    Retryable,
    /// Another 4xx (400 included): not sent again as it is.
    Rejected,
    /// No answer: connection error or timeout; retried.
    Network,
}

impl StatusClass {
    /// Every class, for exporting zero-valued counters.
    pub const ALL: [StatusClass; 4] = [
        StatusClass::Ok,
        StatusClass::Retryable,
        StatusClass::Rejected,
        StatusClass::Network,
    ];

    /// The metric label value and log field.
    pub fn as_str(self) -> &'static str {
        match self {
            StatusClass::Ok => "ok",
            StatusClass::Retryable => "retryable",
            StatusClass::Rejected => "rejected",
            StatusClass::Network => "network",
        }
    }
}

impl EncodeLabelValue for StatusClass {
    fn encode(&self, encoder: &mut LabelValueEncoder<'_>) -> Result<(), std::fmt::Error> {
        std::fmt::Write::write_str(encoder, self.as_str())
    }
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ReasonLabels {
    reason: DropReason,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct StatusLabels {
    status_class: StatusClass,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ShardLabels {
    shard: usize,
}

/// A gauge of how long ago something happened, computed when scraped: it
/// keeps growing while the emitter is stuck in a retry, with nobody to set it.
#[derive(Clone, Debug, Default)]
struct AgeGauge {
    /// When, in wall-clock epoch ms; 0 for nothing (the gauge reads 0).
    since_ms: Arc<AtomicI64>,
}

impl EncodeMetric for AgeGauge {
    fn encode(&self, mut encoder: MetricEncoder) -> Result<(), std::fmt::Error> {
        let since = self.since_ms.load(Ordering::Relaxed);
        let age = if since == 0 {
            0.0
        } else {
            (wall_clock_ms() - since).max(0) as f64 / 1000.0
        };
        encoder.encode_gauge(&age)
    }

    fn metric_type(&self) -> MetricType {
        MetricType::Gauge
    }
}

/// The emitter's self-metrics. Cheap to clone: clones share the counters.
#[derive(Clone, Debug)]
pub struct RemoteWriteMetrics {
    samples_sent: Counter,
    samples_dropped: Family<ReasonLabels, Counter>,
    requests: Family<StatusLabels, Counter>,
    retries: Counter,
    windows_superseded: Counter,
    bytes_sent: Counter,
    request_duration: Histogram,
    last_accepted_window_end: Gauge<f64, AtomicU64>,
    shard_queue: Family<ShardLabels, Gauge>,
    oldest_unsent: AgeGauge,
    /// Wall clock at acknowledgement minus the end of the newest window acknowledged.
    window_latency: Histogram,
}

/// Buckets of the end-to-end latency, s: a live pipeline delivers a window
/// one out-of-orderness (2 s by default) plus a linger and a request after
/// its end, so 1–60 s in detail; beyond, a backlog being worked off.
const WINDOW_LATENCY_BUCKETS: [f64; 14] = [
    0.5, 1.0, 2.0, 3.0, 5.0, 7.5, 10.0, 15.0, 20.0, 30.0, 45.0, 60.0, 120.0, 300.0,
];

impl RemoteWriteMetrics {
    /// Registers every metric in `registry` (the caller's `remote_write` sub-registry).
    pub fn register(registry: &mut Registry) -> Self {
        let metrics = RemoteWriteMetrics {
            samples_sent: registry.metric("samples_sent", "Samples the endpoint accepted"),
            samples_dropped: registry.metric(
                "samples_dropped",
                "Samples dropped instead of written, by reason",
            ),
            requests: registry.metric("requests", "Remote-write HTTP requests, by outcome"),
            retries: registry.metric(
                "retries",
                "Requests sent again after a retryable failure",
            ),
            windows_superseded: registry.metric(
                "windows_superseded",
                "Window aggregates built before a Kafka partition revocation and dropped unsent: the partitions' new owner rebuilds them from the committed offsets",
            ),
            bytes_sent: registry.metric(
                "bytes_sent",
                "Compressed request bytes the endpoint accepted",
            ),
            request_duration: registry.metric_with_unit(
                "request_duration",
                "Time from sending a request to its answer or failure",
                Unit::Seconds,
                // 5 ms to about 10 s: a loopback Prometheus to a distant AMP at
                // the default 10 s timeout.
                Histogram::new(exponential_buckets(0.005, 2.0, 12)),
            ),
            last_accepted_window_end: registry.metric_with_unit(
                "last_accepted_window_end_timestamp",
                "End of the newest window whose batch is fully delivered",
                Unit::Seconds,
                Gauge::default(),
            ),
            shard_queue: registry.metric(
                "shard_queue_samples",
                "Samples handed to a shard and not yet written or dropped, by shard",
            ),
            oldest_unsent: registry.metric_with_unit(
                "oldest_unsent_sample_age",
                "Time since the emitter received the oldest sample not yet written or dropped; 0 when none",
                Unit::Seconds,
                AgeGauge::default(),
            ),
            window_latency: registry.metric_with_unit(
                "window_latency",
                "End-to-end latency: from the end of a window (event time) to its batch being fully delivered (wall clock), per acknowledgement, for the newest window acknowledged",
                Unit::Seconds,
                Histogram::new(WINDOW_LATENCY_BUCKETS),
            ),
        };
        for reason in DropReason::ALL {
            let _ = metrics
                .samples_dropped
                .get_or_create(&ReasonLabels { reason });
        }
        for status_class in StatusClass::ALL {
            let _ = metrics
                .requests
                .get_or_create(&StatusLabels { status_class });
        }
        metrics
    }

    /// Metrics registered nowhere, for tests and tools.
    pub fn unregistered() -> Self {
        Self::register(&mut Registry::default())
    }

    /// The endpoint accepted a request of `samples` samples and `bytes` compressed bytes.
    pub fn request_accepted(&self, samples: usize, bytes: usize, elapsed: Duration) {
        self.count_request(StatusClass::Ok, elapsed);
        self.samples_sent.inc_by(samples as u64);
        self.bytes_sent.inc_by(bytes as u64);
        tracing::debug!(
            samples,
            bytes,
            elapsed_ms = elapsed.as_millis() as u64,
            "Remote-write request accepted."
        );
    }

    /// A request of `samples` samples failed. Refusals other than 400 are logged
    /// at WARN with the endpoint's answer (401, 403 and 404 as configuration
    /// errors); retryable failures are logged by
    /// [`retry_scheduled`](Self::retry_scheduled), 400s by the drops bisection leads to.
    pub fn request_failed(&self, error: &RemoteWriteError, samples: usize, elapsed: Duration) {
        let class = error.status_class();
        self.count_request(class, elapsed);
        if let Some(status) = error.configuration_status() {
            tracing::warn!(
                %error,
                status = status.as_u16(),
                samples,
                "Remote-write endpoint refused the request as misconfigured (URL, credentials or permissions); the samples are dropped and the next request waits max_backoff_ms."
            );
        } else if class == StatusClass::Rejected && error.bad_samples().is_none() {
            tracing::warn!(
                %error,
                samples,
                status_class = class.as_str(),
                "Remote-write endpoint refused a request; it will not be sent again."
            );
        } else {
            tracing::debug!(
                %error,
                samples,
                status_class = class.as_str(),
                elapsed_ms = elapsed.as_millis() as u64,
                "Remote-write request failed."
            );
        }
    }

    /// `aggregates` window aggregates were built before a partition
    /// revocation: dropped unsent, rebuilt by the partitions' new owner.
    pub fn superseded(&self, aggregates: usize) {
        self.windows_superseded.inc_by(aggregates as u64);
        tracing::debug!(
            aggregates,
            "Windows built before a partition revocation dropped; the new owner rebuilds them."
        );
    }

    /// A failed request will be sent again after `delay`; `retry` counts from 1.
    pub fn retry_scheduled(&self, error: &RemoteWriteError, retry: u32, delay: Duration) {
        self.retries.inc();
        tracing::warn!(
            %error,
            retry,
            delay_ms = u64::try_from(delay.as_millis()).unwrap_or(u64::MAX),
            "Remote-write request failed; retrying."
        );
    }

    /// `samples` samples of one request were dropped for `reason`; `detail`
    /// names an example and the endpoint's answer. Called once per request and reason.
    pub fn samples_dropped(&self, reason: DropReason, samples: usize, detail: &str) {
        self.samples_dropped
            .get_or_create(&ReasonLabels { reason })
            .inc_by(samples as u64);
        tracing::warn!(
            reason = reason.as_str(),
            samples,
            detail,
            "Remote-write samples dropped."
        );
    }

    /// Every sample of `batches` more window batches, and of all before them,
    /// is done (written, or dropped and counted): the newest one's checkpoint
    /// is published. `newest_window_end` is their newest window, if any.
    pub fn batches_acknowledged(&self, batches: usize, newest_window_end: Option<TimestampMs>) {
        if let Some(end) = newest_window_end {
            self.last_accepted_window_end.set(end as f64 / 1000.0);
            // A window ending in the future (clock skew) counts as no latency.
            let latency_ms = (wall_clock_ms() - end).max(0);
            self.window_latency.observe(latency_ms as f64 / 1000.0);
        }
        tracing::debug!(
            batches,
            newest_window_end,
            "Window batches delivered; checkpoint published."
        );
    }

    /// `samples` samples were handed to shard `shard`.
    pub fn shard_queued(&self, shard: usize, samples: usize) {
        self.shard_queue
            .get_or_create(&ShardLabels { shard })
            .inc_by(samples as i64);
    }

    /// `samples` samples of shard `shard` were written or dropped.
    pub fn shard_done(&self, shard: usize, samples: usize) {
        self.shard_queue
            .get_or_create(&ShardLabels { shard })
            .dec_by(samples as i64);
    }

    /// The oldest sample not yet written or dropped arrived at `received_ms`
    /// (wall-clock epoch ms), or there is none.
    pub fn oldest_unsent(&self, received_ms: Option<i64>) {
        self.oldest_unsent
            .since_ms
            .store(received_ms.unwrap_or(0), Ordering::Relaxed);
    }

    fn count_request(&self, class: StatusClass, elapsed: Duration) {
        self.requests
            .get_or_create(&StatusLabels {
                status_class: class,
            })
            .inc();
        self.request_duration.observe(elapsed.as_secs_f64());
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn classifies_400_answers_by_reason() {
        let cases = [
            ("out of order sample", DropReason::OutOfOrder),
            ("out of order sample\n", DropReason::OutOfOrder),
            (
                "sample timestamp out of order; last timestamp: 1, incoming timestamp: 0",
                DropReason::OutOfOrder,
            ),
            ("err-mimir-sample-out-of-order", DropReason::OutOfOrder),
            ("duplicate sample for timestamp", DropReason::Duplicate),
            (
                "sample with repeated timestamp but different value",
                DropReason::Duplicate,
            ),
            (
                "err-mimir-sample-duplicate-timestamp",
                DropReason::Duplicate,
            ),
            ("out of bounds", DropReason::OutOfBounds),
            ("Out Of Bounds", DropReason::OutOfBounds),
            ("err-mimir-sample-too-old", DropReason::OutOfBounds),
            ("invalid metric name", DropReason::Other),
            ("", DropReason::Other),
        ];
        for (answer, reason) in cases {
            assert_eq!(DropReason::from_bad_request(answer), reason, "{answer:?}");
        }
    }

    #[test]
    fn exports_snake_case_labels_and_zero_counters() {
        let mut root = Registry::with_prefix("fleet");
        let metrics = RemoteWriteMetrics::register(root.sub_registry_with_prefix("remote_write"));
        metrics.samples_dropped(DropReason::OutOfOrder, 3, "test");
        metrics.request_accepted(10, 100, Duration::from_millis(5));
        metrics.batches_acknowledged(1, Some(1_764_000_005_000));
        metrics.batches_acknowledged(2, Some(wall_clock_ms() - 4_000));
        metrics.shard_queued(1, 7);
        metrics.shard_queued(1, 2);
        metrics.shard_done(1, 4);
        metrics.oldest_unsent(Some(wall_clock_ms() - 90_000));
        let mut text = String::new();
        prometheus_client::encoding::text::encode(&mut text, &root).unwrap();
        for line in [
            r#"fleet_remote_write_samples_dropped_total{reason="out_of_order"} 3"#,
            r#"fleet_remote_write_samples_dropped_total{reason="rejected"} 0"#,
            r#"fleet_remote_write_requests_total{status_class="ok"} 1"#,
            r#"fleet_remote_write_requests_total{status_class="network"} 0"#,
            "fleet_remote_write_samples_sent_total 10",
            "fleet_remote_write_bytes_sent_total 100",
            "fleet_remote_write_retries_total 0",
            "fleet_remote_write_request_duration_seconds_count 1",
            r#"fleet_remote_write_shard_queue_samples{shard="1"} 5"#,
            "fleet_remote_write_oldest_unsent_sample_age_seconds 90.",
            "fleet_remote_write_window_latency_seconds_count 2",
            r#"fleet_remote_write_window_latency_seconds_bucket{le="3.0"} 0"#,
            r#"fleet_remote_write_window_latency_seconds_bucket{le="5.0"} 1"#,
            r#"fleet_remote_write_window_latency_seconds_bucket{le="+Inf"} 2"#,
        ] {
            assert!(text.contains(line), "missing {line} in\n{text}");
        }
        metrics.oldest_unsent(None);
        let mut text = String::new();
        prometheus_client::encoding::text::encode(&mut text, &root).unwrap();
        assert!(text.contains("fleet_remote_write_oldest_unsent_sample_age_seconds 0.0"));
    }
}
