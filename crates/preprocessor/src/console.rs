//! The console sink: window aggregates as JSON lines (the design's replay format).

use std::io::Write;

use fleet_core::{Checkpoint, WindowBatch};
use fleet_plan::MetricPlan;
use tokio::sync::{mpsc, watch};

/// Writes every aggregate as one line (its metrics named by `plan`),
/// flushing per batch, and acknowledges each batch's checkpoint once
/// written. Returns when `input` closes.
pub async fn run(
    mut input: mpsc::Receiver<WindowBatch>,
    acks: watch::Sender<Option<Checkpoint>>,
    plan: &MetricPlan,
    mut out: impl Write,
) -> std::io::Result<u64> {
    let mut written = 0u64;
    while let Some(batch) = input.recv().await {
        for aggregate in &batch.aggregates {
            writeln!(out, "{}", aggregate.to_json_line(plan))?;
        }
        out.flush()?;
        written += batch.aggregates.len() as u64;
        acks.send_replace(Some(batch.checkpoint));
    }
    Ok(written)
}
