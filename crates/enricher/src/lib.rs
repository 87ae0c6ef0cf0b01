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
//! under `model="unknown"` or dropped, as configured; dropped ones go to the
//! dead-letter topic when it keeps them ([`UnknownVehicleLetters`]).
#![deny(missing_docs)]

mod catalog;
mod config;
mod dead_letters;
mod drilldown;
mod metrics;
mod reference;
mod region_index;
mod reload;
mod table;

pub use catalog::{Enrichment, VehicleCatalog};
pub use config::{ReferenceConfig, ReferencePlan, ReferenceSource};
pub use dead_letters::UnknownVehicleLetters;
pub use drilldown::DrilldownSelector;
pub use metrics::EnricherMetrics;
pub use reference::{ReferenceError, ReferenceTable};
pub use reload::ReferenceWatch;

use fleet_core::{EnrichedBatch, Msg, ReferenceChanges, SourceBatch};
use serde::{Deserialize, Serialize};
use tokio::sync::mpsc;

/// What happens to events of vehicles that are not in the reference data.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Deserialize, Serialize)]
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

/// Where changes of the reference data come from while the stage runs.
#[derive(Debug, Default)]
pub enum ReferenceFeed {
    /// The table given at start stays in force.
    #[default]
    Fixed,
    /// The CSV file, re-read when it changes.
    File(ReferenceWatch),
    /// A log-following source (the compacted Kafka topic): a snapshot, then
    /// deltas. Until the snapshot, events see the table given at start.
    Changes(mpsc::Receiver<ReferenceChanges>),
}

impl ReferenceFeed {
    /// Waits for the next change and applies it to `catalog` (between
    /// batches: no event ever sees half a change). Never completes for
    /// [`ReferenceFeed::Fixed`] or a closed change channel.
    async fn next_change(
        &mut self,
        reload: &mut Option<tokio::time::Interval>,
        catalog: &mut VehicleCatalog,
        metrics: &EnricherMetrics,
    ) {
        let closed = match self {
            ReferenceFeed::File(watch) => {
                tick(reload).await;
                match watch.poll() {
                    Some(Ok(table)) => {
                        catalog.load(&table);
                        metrics.reference_reloaded(catalog.reference_len());
                    }
                    Some(Err(error)) => metrics.reference_reload_failed(watch.path(), &error),
                    None => {}
                }
                false
            }
            ReferenceFeed::Changes(changes) => match changes.recv().await {
                Some(ReferenceChanges::Snapshot(records)) => {
                    catalog.load_records(&records);
                    metrics.reference_reloaded(catalog.reference_len());
                    false
                }
                Some(ReferenceChanges::Delta(delta)) => {
                    for change in &delta {
                        catalog.apply(change);
                    }
                    metrics.reference_changed(delta.len(), catalog.reference_len());
                    false
                }
                // The source stopped (shutdown): the table stays in force.
                None => true,
            },
            ReferenceFeed::Fixed => std::future::pending().await,
        };
        if closed {
            *self = ReferenceFeed::Fixed;
        }
    }
}

/// Runs the stage until `input` closes, then returns (dropping `output`,
/// which closes the next stage in turn). Changes of the reference data from
/// `feed` are applied between batches.
pub async fn run(
    mut catalog: VehicleCatalog,
    mut feed: ReferenceFeed,
    mut input: mpsc::Receiver<Msg<SourceBatch>>,
    output: mpsc::Sender<Msg<EnrichedBatch>>,
    metrics: EnricherMetrics,
    letters: Option<UnknownVehicleLetters>,
) -> Result<(), EnricherError> {
    metrics.reference_loaded(catalog.reference_len());
    // No timer without a file to watch: the stage then runs on any tokio runtime.
    let mut reload = match &feed {
        ReferenceFeed::File(w) => Some(w.interval()),
        _ => None,
    }
    .map(reload_timer);
    let mut allow_list_reload = catalog
        .drilldown_mut()
        .selection_mut()
        .reload_interval()
        .map(reload_timer);
    loop {
        let msg = tokio::select! {
            msg = input.recv() => match msg {
                Some(msg) => msg,
                None => break,
            },
            () = feed.next_change(&mut reload, &mut catalog, &metrics) => continue,
            () = tick(&mut allow_list_reload) => {
                let drilldown = catalog.drilldown_mut();
                match drilldown.selection_mut().poll_reload() {
                    Some(Ok(vehicles)) => {
                        drilldown.reselect();
                        metrics.allow_list_reloaded(vehicles);
                    }
                    Some(Err(error)) => metrics.allow_list_reload_failed(&error),
                    None => {}
                }
                continue;
            }
        };
        let out = match msg.into_data() {
            Ok(batch) => {
                if let Some(letters) = letters.as_ref().filter(|_| catalog.drops_unknown()) {
                    letters.send(&catalog, &batch);
                }
                let (enriched, stats) = catalog.enrich_batch(batch);
                metrics.enriched(&stats, catalog.distinct_unknown_vehicles());
                if !enriched.new_vehicles.is_empty() {
                    metrics.drilldown_followed(catalog.drilldown_mut().vehicles());
                }
                if enriched.events.is_empty()
                    && enriched.new_groups.is_empty()
                    && enriched.consumed_without_output.is_empty()
                {
                    continue;
                }
                Msg::Data(enriched)
            }
            Err(control) => control,
        };
        output
            .send(out)
            .await
            .map_err(|_| EnricherError::DownstreamClosed)?;
    }
    Ok(())
}

/// A timer for a file reload every `every`; a late tick does not bunch up.
fn reload_timer(every: std::time::Duration) -> tokio::time::Interval {
    let mut timer = tokio::time::interval(every);
    timer.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    timer
}

/// The next tick of `interval`; never, without one.
async fn tick(interval: &mut Option<tokio::time::Interval>) {
    match interval {
        Some(every) => {
            every.tick().await;
        }
        None => std::future::pending().await,
    }
}
