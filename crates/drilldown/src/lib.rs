//! The optional per-vehicle drill-down: raw per-vehicle series besides the
//! window aggregates.
//!
//! The reference demo this service replaces wrote every raw event to
//! Prometheus as its own per-vehicle series. docs/ARCHITECTURE.md replaces that with
//! aggregates per (model, region), which is what dashboards of a fleet need;
//! but looking at one vehicle still needs its own series. The drill-down
//! brings them back under control: it writes one series per vehicle and
//! integer signal, `vehicle_<drilldown_name>` (the demo's
//! `vehicle_ic_engine_rpm`, `vehicle_electric_motor_rpm`, `vehicle_warnings`;
//! labels `vehicle_id`, `model`, `region`, …) for a chosen set of vehicles only (cardinality:
//! [`VehicleScope`]) and at a chosen rate (samples: [`SampleFrequency`]).
//!
//! This crate holds the pure parts; the stages wire them:
//! - [`DrilldownConfig`], the `[drilldown]` section, off by default;
//! - [`VehicleSelection`] decides per VIN whether a vehicle is drilled down,
//!   stably across processes for a sample ([`vin_hash`]), and re-reads an
//!   allow list when it changes ([`AllowListWatch`]);
//! - [`VehicleWindows`] keeps the drilled-down events of the aggregator's
//!   open windows and reduces each window at close to [`ReducedSample`]s,
//!   sorted so that every series is in timestamp order, whatever the
//!   arrival order of the events.
#![deny(missing_docs)]

mod config;
mod reduce;
mod select;

pub use config::{DrilldownConfig, SampleFrequency, VehicleScope, SECTION};
pub use reduce::{ReducedSample, VehicleWindows};
pub use select::{vin_hash, AllowList, AllowListWatch, DrilldownError, Sample, VehicleSelection};

/// The label that carries the VIN on drill-down series.
pub const VEHICLE_ID_LABEL: &str = "vehicle_id";

/// The metric name of a signal's drill-down series (before any configured
/// metric-name prefix): `vehicle_<drilldown_name>`.
pub fn metric_name(signal: &fleet_plan::Signal) -> String {
    format!("vehicle_{}", signal.drilldown_name)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_demos_metric_names_match_the_dashboards() {
        let dashboard = include_str!("../../../grafana/dashboards/vehicle-drilldown.json");
        let plan = fleet_plan::MetricPlan::reference_demo();
        for signal in &plan.input.signals {
            let name = metric_name(signal);
            assert!(dashboard.contains(&name), "{name}");
        }
    }
}
