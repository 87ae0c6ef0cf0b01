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
mod windows;

pub use metrics::AggregatorMetrics;
pub use windows::{Admit, TumblingWindows};

use fleet_core::{EnrichedBatch, Msg, WindowBatch};
use tokio::sync::mpsc;

/// Why the aggregator stopped.
#[derive(Debug, thiserror::Error)]
pub enum AggregatorError {
    /// The sink went away before the input ended.
    #[error("the sink's channel closed while the aggregator was still running")]
    DownstreamClosed,
}

/// Runs the stage until `input` closes.
pub async fn run(
    mut windows: TumblingWindows,
    mut input: mpsc::Receiver<Msg<EnrichedBatch>>,
    output: mpsc::Sender<WindowBatch>,
    metrics: AggregatorMetrics,
) -> Result<(), AggregatorError> {
    while let Some(msg) = input.recv().await {
        match msg {
            Msg::Data(batch) => {
                let outcome = windows.record_batch(batch);
                metrics.recorded(&outcome, windows.watermark());
            }
            Msg::Watermark(watermark) => {
                let aggregates = windows.advance(watermark);
                metrics.advanced(watermark, aggregates.len(), windows.open_windows());
                if aggregates.is_empty() {
                    continue;
                }
                let batch = WindowBatch {
                    aggregates,
                    checkpoint: windows.checkpoint(),
                };
                output
                    .send(batch)
                    .await
                    .map_err(|_| AggregatorError::DownstreamClosed)?;
            }
            Msg::Rewind { written_through } => {
                let dropped = windows.rewind(written_through);
                metrics.rewound(written_through, dropped);
            }
        }
    }
    metrics.input_closed(windows.open_windows());
    Ok(())
}
