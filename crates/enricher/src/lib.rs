//! The enricher stage: joins every event's VIN to its vehicle model.
//!
//! Consumes [`Msg<SourceBatch>`](fleet_core::Msg) from the source and produces
//! [`Msg<EnrichedBatch>`](fleet_core::Msg) for the aggregator. Watermarks pass
//! through untouched and in order. Strings are interned here, once per event:
//! every VIN gets a dense [`VehicleKey`](fleet_core::VehicleKey) and every
//! (model, region) pair a dense [`GroupId`](fleet_core::GroupId), so the
//! windows downstream count distinct vehicles on integers.
//!
//! Vehicles missing from the reference data are counted and either grouped
//! under `model="unknown"` or dropped, as configured.
#![deny(missing_docs)]

mod catalog;
mod metrics;
mod reference;

pub use catalog::{Enrichment, VehicleCatalog};
pub use metrics::EnricherMetrics;
pub use reference::{ReferenceError, ReferenceTable};

use fleet_core::{EnrichedBatch, Msg, SourceBatch};
use serde::Deserialize;
use tokio::sync::mpsc;

/// What happens to events of vehicles that are not in the reference data.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum UnknownVehiclePolicy {
    /// Aggregate them under `model="unknown"` (default).
    #[default]
    Unknown,
    /// Drop them (still counted).
    Drop,
}

/// The model name given to vehicles missing from the reference data.
pub const UNKNOWN_MODEL: &str = "unknown";

/// Why the enricher stopped.
#[derive(Debug, thiserror::Error)]
pub enum EnricherError {
    /// The aggregator went away before the input ended.
    #[error("the aggregator's channel closed while the enricher was still running")]
    DownstreamClosed,
}

/// Runs the stage until `input` closes, then returns (dropping `output`,
/// which closes the next stage in turn).
pub async fn run(
    mut catalog: VehicleCatalog,
    mut input: mpsc::Receiver<Msg<SourceBatch>>,
    output: mpsc::Sender<Msg<EnrichedBatch>>,
    metrics: EnricherMetrics,
) -> Result<(), EnricherError> {
    metrics.reference_loaded(catalog.reference_len());
    while let Some(msg) = input.recv().await {
        let out = match msg {
            Msg::Data(batch) => {
                let (enriched, stats) = catalog.enrich_batch(batch);
                metrics.enriched(&stats, catalog.distinct_unknown_vehicles());
                if enriched.events.is_empty()
                    && enriched.new_groups.is_empty()
                    && enriched.consumed_without_output.is_empty()
                {
                    continue;
                }
                Msg::Data(enriched)
            }
            Msg::Watermark(w) => Msg::Watermark(w),
            Msg::Rewind { written_through } => Msg::Rewind { written_through },
        };
        output
            .send(out)
            .await
            .map_err(|_| EnricherError::DownstreamClosed)?;
    }
    Ok(())
}
