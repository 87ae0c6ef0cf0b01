//! The enricher's self-metrics; each method logs and counts one observable thing.

use prometheus_client::encoding::{EncodeLabelSet, EncodeLabelValue};
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;

use crate::Enrichment;
use fleet_core::telemetry::RegisterMetric;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelValue)]
#[allow(non_camel_case_types)]
enum ReloadOutcome {
    ok,
    failed,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ReloadLabels {
    outcome: ReloadOutcome,
}

/// Counters and gauges of the enricher (`fleet_enricher_*`).
#[derive(Clone, Debug, Default)]
pub struct EnricherMetrics {
    events: Counter,
    unknown_vehicle_events: Counter,
    dropped_unknown: Counter,
    distinct_unknown: Gauge,
    reference_vehicles: Gauge,
    reference_reloads: Family<ReloadLabels, Counter>,
    reference_changes: Counter,
    drilldown_vehicles: Gauge,
    allow_list_reloads: Family<ReloadLabels, Counter>,
}

impl EnricherMetrics {
    /// Registers the metrics in `registry` (normally the `enricher` sub-registry).
    pub fn register(registry: &mut Registry) -> Self {
        let m = EnricherMetrics {
            events: registry.metric("events", "Events joined (known and unknown vehicles)"),
            unknown_vehicle_events: registry.metric(
                "unknown_vehicle_events",
                "Events of vehicles missing from the reference data",
            ),
            dropped_unknown: registry.metric(
                "unknown_vehicle_dropped_events",
                "Events of unknown vehicles dropped by policy",
            ),
            distinct_unknown: registry.metric(
                "unknown_vehicles",
                "Distinct vehicles seen that are missing from the reference data",
            ),
            reference_reloads: registry.metric(
                "reference_reloads",
                "Reloads of the reference file after it changed, by outcome",
            ),
            reference_changes: registry.metric(
                "reference_changes",
                "Vehicle records applied from the reference topic after its snapshot (upserts and tombstones)",
            ),
            drilldown_vehicles: registry.metric(
                "drilldown_vehicles",
                "Distinct vehicles the per-vehicle drill-down output has followed",
            ),
            allow_list_reloads: registry.metric(
                "drilldown_allow_list_reloads",
                "Reloads of the drill-down allow list after it changed, by outcome",
            ),
            reference_vehicles: registry.metric(
                "reference_vehicles",
                "Vehicles in the reference data in force",
            ),
        };
        for outcome in [ReloadOutcome::ok, ReloadOutcome::failed] {
            let _ = m.reference_reloads.get_or_create(&ReloadLabels { outcome });
        }
        m
    }

    /// Reference data was loaded.
    pub fn reference_loaded(&self, vehicles: usize) {
        tracing::info!(vehicles, "Reference data loaded.");
        self.reference_vehicles
            .set(i64::try_from(vehicles).unwrap_or(i64::MAX));
    }

    /// `changes` records of the reference topic were applied.
    pub fn reference_changed(&self, changes: usize, vehicles: usize) {
        self.reference_changes.inc_by(changes as u64);
        tracing::debug!(changes, vehicles, "Reference changes applied.");
        self.reference_vehicles
            .set(i64::try_from(vehicles).unwrap_or(i64::MAX));
    }

    /// The reference file changed and was loaded.
    pub fn reference_reloaded(&self, vehicles: usize) {
        self.reference_reloads
            .get_or_create(&ReloadLabels {
                outcome: ReloadOutcome::ok,
            })
            .inc();
        self.reference_loaded(vehicles);
    }

    /// The reference file changed but could not be loaded; the previous
    /// table stays in force.
    pub fn reference_reload_failed(&self, path: &std::path::Path, error: &crate::ReferenceError) {
        self.reference_reloads
            .get_or_create(&ReloadLabels {
                outcome: ReloadOutcome::failed,
            })
            .inc();
        tracing::warn!(path = %path.display(), %error, "Reference file not reloaded; the previous table stays in force.");
    }

    /// The drill-down allow list changed and was loaded: `vehicles` listed.
    pub fn allow_list_reloaded(&self, vehicles: usize) {
        self.allow_list_reloads
            .get_or_create(&ReloadLabels {
                outcome: ReloadOutcome::ok,
            })
            .inc();
        tracing::info!(vehicles, "Drill-down allow list reloaded.");
    }

    /// The drill-down allow list changed but could not be read; the previous
    /// list stays in force.
    pub fn allow_list_reload_failed(&self, error: &fleet_drilldown::DrilldownError) {
        self.allow_list_reloads
            .get_or_create(&ReloadLabels {
                outcome: ReloadOutcome::failed,
            })
            .inc();
        tracing::warn!(%error, "Drill-down allow list not reloaded; the previous list stays in force.");
    }

    /// The drill-down output follows `vehicles` distinct vehicles so far.
    pub fn drilldown_followed(&self, vehicles: usize) {
        self.drilldown_vehicles
            .set(i64::try_from(vehicles).unwrap_or(i64::MAX));
    }

    /// A batch was enriched.
    pub fn enriched(&self, stats: &Enrichment, distinct_unknown: u64) {
        self.events.inc_by(stats.known + stats.unknown);
        if stats.unknown > 0 {
            self.unknown_vehicle_events.inc_by(stats.unknown);
            self.dropped_unknown.inc_by(stats.dropped);
            let before = self.distinct_unknown.get();
            let now = i64::try_from(distinct_unknown).unwrap_or(i64::MAX);
            if now > before {
                tracing::debug!(
                    new_unknown_vehicles = now - before,
                    distinct_unknown_vehicles = now,
                    "Vehicles missing from the reference data."
                );
            }
            self.distinct_unknown.set(now);
        }
    }
}
