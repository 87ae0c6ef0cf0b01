//! The aggregator stage: event-time tumbling windows per (model, region),
//! one set per [`Scope`](fleet_core::Scope) of the output mode.
//!
//! Consumes [`Msg<EnrichedBatch>`](fleet_core::Msg) and produces
//! [`WindowBatch`](fleet_core::WindowBatch)es for the sink. Only this stage
//! interprets watermarks: a window `[start, end)` is emitted once, when the
//! watermark of its scope reaches `end − 1`; windows are emitted in end order
//! and, within a window, in label order. An event whose window has already been
//! emitted is late: it is dropped and counted, never silently.
//!
//! Each emitted batch carries a [`Checkpoint`](fleet_core::Checkpoint): the
//! per-partition offsets before which no event is still in an open window.
//! Committing them once the batch is accepted downstream loses nothing.
//!
//! When the input closes (shutdown) the open windows are abandoned, not
//! flushed: their events are after the checkpoint, so a restart rebuilds them
//! whole. A bounded input that wants its last windows sends
//! [`Watermark::END_OF_INPUT`](fleet_core::Watermark::END_OF_INPUT) first.
#![deny(missing_docs)]

mod groups;
mod layout;
mod metrics;
mod scoped;
mod windows;

pub use metrics::AggregatorMetrics;
pub use scoped::ScopedWindows;
pub use windows::{Admit, BatchOutcome, Folds, PendingVehicleSample};

use std::collections::HashMap;
use std::sync::Arc;

use fleet_core::{
    EnrichedBatch, Msg, OutputMode, VehicleKey, VehicleSample, WindowBatch, WindowSpec,
};
use fleet_drilldown::SampleFrequency;
use fleet_plan::MetricPlan;
use tokio::sync::mpsc;

/// What the aggregator is built from.
#[derive(Clone, Debug, PartialEq)]
pub struct AggregatorConfig {
    /// The windows' length.
    pub window: WindowSpec,
    /// One window set over every partition, or one per partition.
    pub output_mode: OutputMode,
    /// Most label sets one window of one scope writes; the excess is folded
    /// into one group labelled `other`.
    pub max_label_sets: usize,
    /// The drill-down's per-window reduction, when that output is on.
    pub drilldown: Option<SampleFrequency>,
    /// The metrics to compute.
    pub plan: Arc<MetricPlan>,
}

/// The aggregator's state and its synchronous step: what [`run`] does with
/// each message, without the channels.
#[derive(Debug)]
pub struct Aggregator {
    windows: ScopedWindows,
    /// The assignment epoch of the input (see `fleet_core::RevocationFence`).
    epoch: u64,
    vehicle_ids: VehicleIds,
    metrics: AggregatorMetrics,
}

impl Aggregator {
    /// No window open yet.
    pub fn new(cfg: &AggregatorConfig, metrics: AggregatorMetrics) -> Self {
        Aggregator {
            windows: ScopedWindows::new(cfg.window, cfg.output_mode, &cfg.plan)
                .with_max_groups(cfg.max_label_sets)
                .with_drilldown(cfg.drilldown),
            epoch: 0,
            vehicle_ids: VehicleIds::default(),
            metrics,
        }
    }

    /// Handles one message of the enricher; returns the windows it closes,
    /// with their drill-down samples and the checkpoint that acknowledges them.
    pub fn step(&mut self, msg: Msg<EnrichedBatch>) -> Option<WindowBatch> {
        let aggregates = match msg {
            Msg::Data(mut batch) => {
                self.vehicle_ids.announce(&mut batch);
                let outcome = self.windows.record_batch(batch);
                self.metrics.recorded(&outcome, self.windows.watermark());
                let released = self.windows.release();
                if released.is_empty() {
                    return None;
                }
                released
            }
            Msg::Rewind {
                written_through,
                epoch,
                fired,
            } => {
                self.epoch = epoch;
                let newest = written_through.values().max().copied();
                let points = fired.len();
                let dropped = self.windows.rewind(written_through, fired);
                self.metrics.rewound(newest, dropped, points);
                return None;
            }
            Msg::Watermark(scope, watermark) => self.windows.advance(scope, watermark),
        };
        self.metrics.advanced(
            self.windows.watermark(),
            aggregates.len(),
            self.windows.open_windows(),
        );
        self.metrics.folded(self.windows.take_folds());
        self.metrics.replayed(self.windows.take_replayed());
        if aggregates.is_empty() {
            return None;
        }
        let vehicle_samples = self
            .vehicle_ids
            .resolve(self.windows.take_vehicle_samples());
        self.metrics.vehicle_samples(
            vehicle_samples.len(),
            self.windows.take_drilldown_duplicates(),
        );
        Some(WindowBatch {
            aggregates,
            vehicle_samples,
            checkpoint: fleet_core::Checkpoint {
                epoch: self.epoch,
                ..self.windows.checkpoint()
            },
            firing_points: self.windows.take_fired(),
        })
    }

    /// How many windows are open.
    pub fn open_windows(&self) -> usize {
        self.windows.open_windows()
    }
}

/// The ids of the drilled-down vehicles, as the enricher announces them
/// ([`EnrichedBatch::new_vehicles`]), to label their samples.
#[derive(Debug, Default)]
pub struct VehicleIds(HashMap<VehicleKey, Arc<str>>);

impl VehicleIds {
    /// Takes the vehicles `batch` announces.
    pub fn announce(&mut self, batch: &mut EnrichedBatch) {
        self.0.extend(batch.new_vehicles.drain(..));
    }

    /// Labels pending samples with their vehicle ids (a vehicle never
    /// announced has no samples: its events were not marked).
    pub fn resolve(&self, pending: Vec<PendingVehicleSample>) -> Vec<VehicleSample> {
        pending
            .into_iter()
            .filter_map(|s| {
                Some(VehicleSample {
                    vehicle_id: Arc::clone(self.0.get(&s.vehicle)?),
                    group: s.group,
                    signal: s.signal,
                    timestamp: s.timestamp,
                    value: s.value,
                })
            })
            .collect()
    }
}

/// Why the aggregator stopped.
#[derive(Debug, thiserror::Error)]
pub enum AggregatorError {
    /// The sink went away before the input ended.
    #[error("the sink's channel closed while the aggregator was still running")]
    DownstreamClosed,
}

/// Runs the stage until `input` closes.
pub async fn run(
    cfg: AggregatorConfig,
    mut input: mpsc::Receiver<Msg<EnrichedBatch>>,
    output: mpsc::Sender<WindowBatch>,
    metrics: AggregatorMetrics,
) -> Result<(), AggregatorError> {
    let mut aggregator = Aggregator::new(&cfg, metrics.clone());
    while let Some(msg) = input.recv().await {
        if let Some(batch) = aggregator.step(msg) {
            output
                .send(batch)
                .await
                .map_err(|_| AggregatorError::DownstreamClosed)?;
        }
    }
    metrics.input_closed(aggregator.open_windows());
    Ok(())
}
