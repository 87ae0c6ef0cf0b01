//! The file source of `fleet-preprocessor replay`: a bounded input of raw
//! events as JSON lines (docs/ARCHITECTURE.md, "Offline replay").
//!
//! The file is one partition (`0`) read in file order (line number = offset).
//! Processing time plays no part, so the caller's batcher should have no
//! idleness; at the end of the file the source sends
//! [`Watermark::END_OF_INPUT`] for every scope, which flushes every open
//! window, and closes the pipeline by dropping its sender. Malformed lines are
//! counted by reason, the first of each reason logged, and skipped.
#![deny(missing_docs)]

use std::collections::BTreeMap;
use std::io::BufRead;
use std::path::PathBuf;

use fleet_core::decode::Decoder;
use fleet_core::{DecodeErrorKind, Msg, Scope, SourceBatch, SourceBatcher, Watermark};
use tokio::sync::mpsc;
use tokio::time::Instant;

/// Bytes read from the file at a time.
const READ_BUFFER: usize = 1 << 20;

/// What the file held.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ReplayStats {
    /// Events decoded.
    pub events: u64,
    /// Lines refused, by reason.
    pub malformed: BTreeMap<DecodeErrorKind, u64>,
}

/// Why a replay stopped before the end of its file.
#[derive(Debug, thiserror::Error)]
pub enum ReplayError {
    /// The file cannot be opened.
    #[error("cannot open {path}: {source}")]
    Open {
        /// The file.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// Reading the file failed part-way.
    #[error("cannot read {path}: {source}")]
    Read {
        /// The file.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// The pipeline went away before the end of the input.
    #[error("the pipeline stopped before the end of the input")]
    DownstreamClosed,
    /// The reading thread panicked or was cancelled.
    #[error("the file reader stopped: {0}")]
    Reader(#[from] tokio::task::JoinError),
}

/// Reads `path` into `output` on a blocking thread, each line decoded by
/// `decoder` into `batcher`.
pub async fn run(
    path: PathBuf,
    decoder: Decoder,
    batcher: SourceBatcher,
    output: mpsc::Sender<Msg<SourceBatch>>,
) -> Result<ReplayStats, ReplayError> {
    let file = std::fs::File::open(&path).map_err(|source| ReplayError::Open {
        path: path.clone(),
        source,
    })?;
    tokio::task::spawn_blocking(move || {
        let reader = std::io::BufReader::with_capacity(READ_BUFFER, file);
        read(reader, &decoder, batcher, &mut |msg| {
            output
                .blocking_send(msg)
                .map_err(|_| ReplayError::DownstreamClosed)
        })
        .map_err(|e| match e {
            ReadError::Io(source) => ReplayError::Read { path, source },
            ReadError::Send(e) => e,
        })
    })
    .await?
}

/// A failure of [`read`]: the input's, or the one `deliver` returned.
#[derive(Debug)]
enum ReadError<E> {
    Io(std::io::Error),
    Send(E),
}

/// The synchronous step: every line of `reader` decoded into `batcher`, each
/// message handed to `deliver` as soon as it is ready, then the end of input.
fn read<E>(
    mut reader: impl BufRead,
    decoder: &Decoder,
    mut batcher: SourceBatcher,
    deliver: &mut impl FnMut(Msg<SourceBatch>) -> Result<(), E>,
) -> Result<ReplayStats, ReadError<E>> {
    let mut stats = ReplayStats::default();
    let mut flush = |batcher: &mut SourceBatcher| -> Result<(), ReadError<E>> {
        while let Some(msg) = batcher.pop() {
            deliver(msg).map_err(ReadError::Send)?;
        }
        Ok(())
    };
    let now = Instant::now();
    // One line buffer for the whole file: no allocation per line.
    let mut buf = Vec::with_capacity(1024);
    for offset in 0i64.. {
        buf.clear();
        if reader.read_until(b'\n', &mut buf).map_err(ReadError::Io)? == 0 {
            break;
        }
        let line = buf.strip_suffix(b"\n").unwrap_or(&buf);
        if line.iter().all(u8::is_ascii_whitespace) {
            continue;
        }
        match batcher.push_with(now, 0, |batch| decoder.decode_into(line, 0, offset, batch)) {
            Ok(()) => stats.events += 1,
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

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use fleet_core::{OutputMode, WatermarkRules, WatermarkTracker, WindowSpec};

    fn batcher() -> SourceBatcher {
        let rules = WatermarkRules::defaults().bounded();
        let tracker = WatermarkTracker::new(rules, WindowSpec::new(5000).unwrap());
        SourceBatcher::new(tracker, 100, OutputMode::Single)
    }

    fn decoder() -> Decoder {
        Decoder::new(&fleet_plan::MetricPlan::reference_demo().input)
    }

    const EVENT: &str =
        r#"{"eventType":"IC_RPM","vehicleId":"V1","region":"UK","timestamp":1000,"measurement":5}"#;

    #[test]
    fn lines_become_one_partition_in_file_order_and_the_end_closes_every_window() {
        let input = format!("{EVENT}\n\n{{not json\n{EVENT}");
        let mut sent = Vec::new();
        let stats = read::<()>(input.as_bytes(), &decoder(), batcher(), &mut |msg| {
            sent.push(msg);
            Ok(())
        })
        .unwrap();
        assert_eq!(stats.events, 2);
        assert_eq!(
            stats.malformed,
            BTreeMap::from([(DecodeErrorKind::InvalidJson, 1)])
        );
        let offsets: Vec<(i32, i64)> = sent
            .iter()
            .filter_map(|m| match m {
                Msg::Data(batch) => Some(batch.records.iter().map(|e| (e.partition, e.offset))),
                _ => None,
            })
            .flatten()
            .collect();
        assert_eq!(offsets, [(0, 0), (0, 3)], "line numbers are the offsets");
        assert_eq!(
            sent.last(),
            Some(&Msg::Watermark(Scope::All, Watermark::END_OF_INPUT))
        );
    }

    #[tokio::test]
    async fn a_closed_pipeline_and_a_missing_file_are_errors() {
        let dir = tempfile::tempdir().unwrap();
        let missing = run(
            dir.path().join("none.jsonl"),
            decoder(),
            batcher(),
            mpsc::channel(1).0,
        )
        .await;
        assert!(
            matches!(missing, Err(ReplayError::Open { .. })),
            "{missing:?}"
        );
        let file = dir.path().join("events.jsonl");
        std::fs::write(&file, format!("{EVENT}\n")).unwrap();
        let (tx, rx) = mpsc::channel(1);
        drop(rx);
        let closed = run(file, decoder(), batcher(), tx).await;
        assert!(
            matches!(closed, Err(ReplayError::DownstreamClosed)),
            "{closed:?}"
        );
    }
}
