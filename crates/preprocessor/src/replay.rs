//! The file source of `replay`: a bounded input of JSON-lines events.
//!
//! The file is one partition read in file order (line number = offset).
//! Processing time plays no part, so there is no idleness; at the end of the
//! file the source sends [`Watermark::END_OF_INPUT`], which flushes every open
//! window, and closes the pipeline.

use std::collections::BTreeMap;
use std::io::BufRead;
use std::path::PathBuf;
use std::time::Duration;

use fleet_core::{
    decode_event, DecodeErrorKind, Msg, OutputMode, Scope, SourceBatch, SourceBatcher, SourceEvent,
    Watermark, WatermarkRules, WatermarkTracker, WindowSpec,
};
use tokio::sync::mpsc;
use tokio::time::Instant;

/// Most events per batch.
const BATCH: usize = 4096;

/// Bytes read from the file at a time.
const READ_BUFFER: usize = 1 << 20;

/// What the file held.
#[derive(Clone, Debug, Default)]
pub struct ReplayStats {
    /// Events decoded.
    pub events: u64,
    /// Lines refused, by reason.
    pub malformed: BTreeMap<DecodeErrorKind, u64>,
}

/// Reads `path` into `output` on a blocking thread.
pub async fn run(
    path: PathBuf,
    out_of_orderness_ms: i64,
    window: WindowSpec,
    output_mode: OutputMode,
    output: mpsc::Sender<Msg<SourceBatch>>,
) -> anyhow::Result<ReplayStats> {
    let file = std::fs::File::open(&path)
        .map_err(|e| anyhow::anyhow!("cannot open {}: {e}", path.display()))?;
    let rules = WatermarkRules {
        out_of_orderness_ms,
        idle_timeout: Duration::MAX,
        all_idle_close_after: None,
    };
    let batcher = SourceBatcher::new(WatermarkTracker::new(rules, window), BATCH, output_mode);
    tokio::task::spawn_blocking(move || {
        read_file(
            std::io::BufReader::with_capacity(READ_BUFFER, file),
            batcher,
            &output,
        )
    })
    .await?
}

fn read_file(
    mut reader: impl BufRead,
    mut batcher: SourceBatcher,
    output: &mpsc::Sender<Msg<SourceBatch>>,
) -> anyhow::Result<ReplayStats> {
    let mut stats = ReplayStats::default();
    let flush = |batcher: &mut SourceBatcher| -> anyhow::Result<()> {
        while let Some(msg) = batcher.pop() {
            output
                .blocking_send(msg)
                .map_err(|_| anyhow::anyhow!("the pipeline stopped before the end of the input"))?;
        }
        Ok(())
    };
    let now = Instant::now();
    // One line buffer for the whole file: no allocation per line.
    let mut buf = Vec::with_capacity(1024);
    for offset in 0i64.. {
        buf.clear();
        if reader.read_until(b'\n', &mut buf)? == 0 {
            break;
        }
        let line = buf.strip_suffix(b"\n").unwrap_or(&buf);
        if line.iter().all(u8::is_ascii_whitespace) {
            continue;
        }
        match decode_event(line) {
            Ok(event) => {
                stats.events += 1;
                batcher.push(
                    SourceEvent {
                        partition: 0,
                        offset,
                        event,
                    },
                    now,
                    0,
                );
            }
            Err(e) => {
                let n = stats.malformed.entry(e.kind).or_default();
                if *n == 0 {
                    tracing::warn!(line = offset + 1, reason = %e.kind, detail = %e.detail, "Malformed event skipped (first of its kind).");
                }
                *n += 1;
            }
        }
        if batcher.ready_len() > 0 {
            flush(&mut batcher)?;
        }
    }
    batcher.push_msg(Msg::Watermark(Scope::All, Watermark::END_OF_INPUT));
    flush(&mut batcher)?;
    Ok(stats)
}
