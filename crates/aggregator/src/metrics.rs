//! The aggregator's self-metrics; each method logs and counts one observable thing.

use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::{Registry, Unit};

use crate::windows::{BatchOutcome, Folds};
use fleet_core::telemetry::RegisterMetric;
use fleet_core::{TimestampMs, Watermark};

/// Counters and gauges of the aggregator (`fleet_aggregator_*`).
#[derive(Clone, Debug)]
pub struct AggregatorMetrics {
    events: Counter,
    late_events: Counter,
    late_lag: Histogram,
    already_written: Counter,
    windows_emitted: Counter,
    folded_groups: Counter,
    folded_events: Counter,
    vehicle_samples: Counter,
    vehicle_duplicates: Counter,
    replayed_closings: Counter,
    open_windows: Gauge,
    watermark: Gauge,
}

impl AggregatorMetrics {
    /// Registers the metrics in `registry` (normally the `aggregator` sub-registry).
    pub fn register(registry: &mut Registry) -> Self {
        // How late late events are: from 100 ms to ~14 min.
        let buckets = [0.1, 0.5, 1.0, 2.0, 5.0, 10.0, 30.0, 60.0, 300.0, 900.0];
        AggregatorMetrics {
            events: registry.metric("events", "Events added to a window"),
            late_events: registry.metric(
                "late_events",
                "Events dropped because their window had already been emitted",
            ),
            late_lag: registry.metric_with_unit(
                "late_event_lag",
                "How far the watermark was past a late event's time",
                Unit::Seconds,
                Histogram::new(buckets),
            ),
            already_written: registry.metric(
                "already_written_events",
                "Replayed events skipped because their window was written before a restart",
            ),
            windows_emitted: registry.metric(
                "windows_emitted",
                "Window aggregates emitted, one per window and group",
            ),
            folded_groups: registry.metric(
                "folded_groups",
                "Groups of a window over windows.max_label_sets, folded into the group labelled other",
            ),
            folded_events: registry.metric(
                "folded_events",
                "Events of the groups folded into other",
            ),
            vehicle_samples: registry.metric(
                "vehicle_samples",
                "Samples of the per-vehicle drill-down output emitted",
            ),
            vehicle_duplicates: registry.metric(
                "vehicle_duplicate_samples",
                "Raw drill-down samples dropped for sharing a vehicle series and timestamp with another (the larger reading is kept)",
            ),
            replayed_closings: registry.metric(
                "replayed_closings",
                "Closings of windows made again after a restart at the firing point stored before they were first sent",
            ),
            open_windows: registry.metric("open_windows", "Windows currently open"),
            watermark: registry.metric(
                "watermark_milliseconds",
                "The pipeline watermark, epoch milliseconds",
            ),
        }
    }

    /// A batch was recorded.
    pub fn recorded(&self, outcome: &BatchOutcome, watermark: Option<Watermark>) {
        self.events.inc_by(outcome.counted);
        if !outcome.late_lags_ms.is_empty() {
            let n = outcome.late_lags_ms.len() as u64;
            self.late_events.inc_by(n);
            let mut max_lag = 0;
            for lag in &outcome.late_lags_ms {
                self.late_lag.observe(*lag as f64 / 1000.0);
                max_lag = max_lag.max(*lag);
            }
            tracing::debug!(
                late_events = n,
                max_lag_ms = max_lag,
                watermark = watermark.map(|w| w.0),
                "Late events dropped."
            );
        }
        if outcome.already_written > 0 {
            self.already_written.inc_by(outcome.already_written);
        }
    }

    /// The watermark moved and closed `emitted` window aggregates.
    /// `watermark` is the oldest of the window sets, the end of a bounded
    /// input aside.
    pub fn advanced(&self, watermark: Option<Watermark>, emitted: usize, open: usize) {
        self.windows_emitted.inc_by(emitted as u64);
        self.open_windows
            .set(i64::try_from(open).unwrap_or(i64::MAX));
        if let Some(watermark) = watermark {
            self.watermark.set(watermark.0);
        }
    }

    /// Windows over their group limit were folded (nothing when `folds` is empty).
    pub fn folded(&self, folds: Folds) {
        if folds.windows == 0 {
            return;
        }
        let first = self.folded_groups.get() == 0;
        self.folded_groups.inc_by(folds.groups);
        self.folded_events.inc_by(folds.events);
        if first {
            tracing::warn!(
                windows = folds.windows,
                groups = folds.groups,
                events = folds.events,
                "More label sets in a window than windows.max_label_sets: the excess is folded into model=\"other\" (counted in fleet_aggregator_folded_groups_total; logged once)."
            );
        } else {
            tracing::debug!(
                windows = folds.windows,
                groups = folds.groups,
                events = folds.events,
                "Label sets folded into other."
            );
        }
    }

    /// Drill-down samples were emitted, and `duplicates` dropped since the
    /// last call.
    pub fn vehicle_samples(&self, emitted: usize, duplicates: u64) {
        self.vehicle_samples.inc_by(emitted as u64);
        self.vehicle_duplicates.inc_by(duplicates);
    }

    /// The input restarts from the committed offsets.
    pub fn rewound(
        &self,
        written_through: Option<TimestampMs>,
        dropped_windows: usize,
        firing_points: usize,
    ) {
        self.open_windows.set(0);
        tracing::info!(
            written_through,
            dropped_windows,
            firing_points,
            "Input restarts from the committed offsets; open windows are rebuilt, written ones skipped, those sent since close at their stored firing points."
        );
    }

    /// `closings` held closings were made at their stored firing points.
    pub fn replayed(&self, closings: u64) {
        self.replayed_closings.inc_by(closings);
    }

    /// The input closed; open windows are abandoned to be rebuilt after a restart.
    pub fn input_closed(&self, open: usize) {
        tracing::debug!(open_windows = open, "Aggregator input closed.");
    }
}
