//! The aggregator stage: event-time tumbling windows per (model, region).
//!
//! Consumes [`Msg<EnrichedBatch>`](fleet_core::Msg) and produces
//! [`WindowBatch`](fleet_core::WindowBatch)es for the sink. Only this stage
//! interprets watermarks: a window `[start, end)` is emitted once, when the
//! watermark reaches `end − 1`; windows are emitted in start order and, within
//! a window, in (model, region) order. An event whose window has already been
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

mod metrics;
mod partitioned;
mod windows;

pub use metrics::AggregatorMetrics;
pub use partitioned::PartitionedWindows;
pub use windows::{Admit, BatchOutcome, Folds, PendingVehicleSample, TumblingWindows};

use std::collections::HashMap;
use std::sync::Arc;

use fleet_core::{EnrichedBatch, Msg, VehicleKey, VehicleSample, WindowAggregate, WindowBatch};
use tokio::sync::mpsc;

/// The windows of one of the two output modes (DESIGN: scale-out).
#[derive(Debug)]
pub enum Aggregation {
    /// One set of windows over every partition, closed on the pipeline watermark.
    Single(TumblingWindows),
    /// One set per partition, each closed on its partition's watermark.
    Partitioned(PartitionedWindows),
}

impl From<TumblingWindows> for Aggregation {
    fn from(windows: TumblingWindows) -> Self {
        Aggregation::Single(windows)
    }
}

impl From<PartitionedWindows> for Aggregation {
    fn from(windows: PartitionedWindows) -> Self {
        Aggregation::Partitioned(windows)
    }
}

impl Aggregation {
    fn record_batch(&mut self, batch: EnrichedBatch) -> BatchOutcome {
        match self {
            Aggregation::Single(w) => w.record_batch(batch),
            Aggregation::Partitioned(w) => w.record_batch(batch),
        }
    }

    /// Applies a control message; returns the windows it closes.
    fn control(
        &mut self,
        msg: Msg<EnrichedBatch>,
        metrics: &AggregatorMetrics,
    ) -> Vec<WindowAggregate> {
        let (closed, watermark) = match (&mut *self, msg) {
            (_, Msg::Data(_)) => return Vec::new(),
            (Aggregation::Single(w), Msg::Watermark(watermark)) => {
                (w.advance(watermark), Some(watermark))
            }
            (Aggregation::Partitioned(w), Msg::Watermark(watermark)) => {
                (w.advance_all(watermark), w.watermark())
            }
            (Aggregation::Partitioned(w), Msg::PartitionWatermark(p, watermark)) => {
                (w.advance_partition(p, watermark), w.watermark())
            }
            (Aggregation::Single(_), Msg::PartitionWatermark(..)) => {
                // A source in the single mode never sends these.
                return Vec::new();
            }
            (
                _,
                Msg::Rewind {
                    written_through, ..
                },
            ) => {
                let newest = written_through.values().max().copied();
                let dropped = match self {
                    Aggregation::Single(w) => w.rewind(newest),
                    Aggregation::Partitioned(w) => w.rewind(written_through),
                };
                metrics.rewound(newest, dropped);
                return Vec::new();
            }
        };
        if let Some(watermark) = watermark {
            metrics.advanced(watermark, closed.len(), self.open_windows());
        }
        metrics.folded(self.take_folds());
        closed
    }

    fn take_vehicle_samples(&mut self) -> Vec<PendingVehicleSample> {
        match self {
            Aggregation::Single(w) => w.take_vehicle_samples(),
            Aggregation::Partitioned(w) => w.take_vehicle_samples(),
        }
    }

    fn take_drilldown_duplicates(&mut self) -> u64 {
        match self {
            Aggregation::Single(w) => w.take_drilldown_duplicates(),
            Aggregation::Partitioned(w) => w.take_drilldown_duplicates(),
        }
    }

    fn take_folds(&mut self) -> Folds {
        match self {
            Aggregation::Single(w) => w.take_folds(),
            Aggregation::Partitioned(w) => w.take_folds(),
        }
    }

    fn open_windows(&self) -> usize {
        match self {
            Aggregation::Single(w) => w.open_windows(),
            Aggregation::Partitioned(w) => w.open_windows(),
        }
    }

    fn watermark(&self) -> Option<fleet_core::Watermark> {
        match self {
            Aggregation::Single(w) => w.watermark(),
            Aggregation::Partitioned(w) => w.watermark(),
        }
    }

    fn checkpoint(&self) -> fleet_core::Checkpoint {
        match self {
            Aggregation::Single(w) => w.checkpoint(),
            Aggregation::Partitioned(w) => w.checkpoint(),
        }
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
                    sensor: s.sensor,
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
    windows: impl Into<Aggregation>,
    mut input: mpsc::Receiver<Msg<EnrichedBatch>>,
    output: mpsc::Sender<WindowBatch>,
    metrics: AggregatorMetrics,
) -> Result<(), AggregatorError> {
    let mut windows = windows.into();
    // The assignment epoch of the input (see `fleet_core::RevocationFence`).
    let mut epoch = 0;
    let mut vehicle_ids = VehicleIds::default();
    while let Some(msg) = input.recv().await {
        match msg {
            Msg::Data(mut batch) => {
                vehicle_ids.announce(&mut batch);
                let outcome = windows.record_batch(batch);
                metrics.recorded(&outcome, windows.watermark());
                continue;
            }
            Msg::Rewind { epoch: e, .. } => epoch = e,
            Msg::Watermark(_) | Msg::PartitionWatermark(..) => {}
        }
        let aggregates = windows.control(msg, &metrics);
        if aggregates.is_empty() {
            continue;
        }
        let vehicle_samples = vehicle_ids.resolve(windows.take_vehicle_samples());
        metrics.vehicle_samples(vehicle_samples.len(), windows.take_drilldown_duplicates());
        let batch = WindowBatch {
            aggregates,
            vehicle_samples,
            checkpoint: fleet_core::Checkpoint {
                epoch,
                ..windows.checkpoint()
            },
        };
        output
            .send(batch)
            .await
            .map_err(|_| AggregatorError::DownstreamClosed)?;
    }
    metrics.input_closed(windows.open_windows());
    Ok(())
}
