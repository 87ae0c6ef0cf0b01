//! Encode + compress throughput of the emitter's hot path, in samples per
//! second on one core.
//!
//! ```sh
//! cargo bench -p fleet-remote-write --bench encode
//! cargo bench -p fleet-remote-write --bench encode -- --groups 1600 --windows 2000 --repeat 5
//! ```
//!
//! Measured, per window batch, exactly what the stage and its shards do before
//! the HTTP call: [`SeriesTable::batch`] (aggregates → samples, series reused),
//! [`RemoteWriteBatch::split_by_shard`] over 4 shards, requests of at most
//! 2,000 samples, and each request's protobuf body snappy-compressed. The
//! prost path (`to_write_request` + `compress`, building the messages) is
//! timed too, for comparison. Time is the thread's CPU time
//! (`/proc/thread-self/schedstat`), so a busy neighbour does not count; the
//! wall time is printed beside it.
// A benchmark binary: a panic is the failure report.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::hint::black_box;
use std::time::Duration;

use fleet_core::WindowBatch;
use fleet_remote_write::{compress, RemoteWriteBatch, SeriesNaming, SeriesTable};
use fleet_testkit::oracle::Expected;
use tokio::time::Instant;

/// The design's fleet: 8 models × 20 regions.
const DEFAULT_GROUPS: usize = 160;
const SHARDS: usize = 4;
const MAX_SAMPLES: usize = 2000;

#[path = "support/flags.rs"]
mod flags;
#[path = "support/fleet.rs"]
mod fleet;

struct Args {
    groups: usize,
    windows: usize,
    repeat: usize,
}

fn args() -> Args {
    Args {
        groups: flags::flag("groups", DEFAULT_GROUPS as u64) as usize,
        windows: flags::flag("windows", 4000) as usize,
        repeat: flags::flag("repeat", 3) as usize,
    }
}

fn windows(groups: usize, windows: usize) -> Vec<WindowBatch> {
    (0..windows as i64)
        .map(|w| {
            let end = 1_764_000_005_000 + w * 5000;
            WindowBatch {
                firing_points: Vec::new(),
                vehicle_samples: Vec::new(),
                aggregates: (0..groups as i64)
                    .map(|g| {
                        Expected::to_aggregate(&Expected {
                            vehicles_in_motion: (g * 7 + w) as u64 % 500,
                            warnings: (g + w) % 40,
                            vehicles_reporting: 600 + (g * 3 + w) as u64 % 100,
                            ic_rpm_sum: 1_500_000 + g * 1000 + w,
                            ic_rpm_count: 900 + (w % 50) as u64,
                            electric_rpm_sum: -20_000 + g * 31 - w,
                            electric_rpm_count: 800 + (g % 50) as u64,
                            ..fleet::window(g, end)
                        })
                    })
                    .collect(),
                checkpoint: Default::default(),
            }
        })
        .collect()
}

/// CPU time of this thread, when Linux says.
fn thread_cpu() -> Option<Duration> {
    let stat = std::fs::read_to_string("/proc/thread-self/schedstat").ok()?;
    let ns: u64 = stat.split_whitespace().next()?.parse().ok()?;
    Some(Duration::from_nanos(ns))
}

struct Run {
    samples: usize,
    requests: usize,
    bytes: usize,
    cpu: Duration,
    wall: Duration,
}

fn timed(mut work: impl FnMut() -> (usize, usize, usize)) -> Run {
    let (cpu0, wall0) = (thread_cpu(), Instant::now());
    let (samples, requests, bytes) = work();
    let wall = wall0.elapsed();
    let cpu = match (cpu0, thread_cpu()) {
        (Some(a), Some(b)) => b.saturating_sub(a),
        _ => wall,
    };
    Run {
        samples,
        requests,
        bytes,
        cpu,
        wall,
    }
}

fn direct(batches: &[WindowBatch]) -> (usize, usize, usize) {
    let mut table = SeriesTable::new(SeriesNaming::default());
    let (mut samples, mut requests, mut bytes) = (0, 0, 0);
    for batch in batches {
        let all = table.batch(&batch.aggregates);
        for part in all.split_by_shard(SHARDS) {
            for request in part.chunks(MAX_SAMPLES) {
                let body = request.compressed_body().unwrap();
                samples += request.len();
                requests += 1;
                bytes += body.len();
                black_box(body);
            }
        }
    }
    (samples, requests, bytes)
}

fn via_prost(batches: &[WindowBatch]) -> (usize, usize, usize) {
    let naming = SeriesNaming::default();
    let (mut samples, mut requests, mut bytes) = (0, 0, 0);
    for batch in batches {
        let all = RemoteWriteBatch::from_aggregates(&batch.aggregates, &naming);
        for part in all.split_by_shard(SHARDS) {
            for request in part.chunks(MAX_SAMPLES) {
                let body = compress(&request.to_write_request()).unwrap();
                samples += request.len();
                requests += 1;
                bytes += body.len();
                black_box(body);
            }
        }
    }
    (samples, requests, bytes)
}

fn report(name: &str, run: &Run) {
    println!(
        "{name:<7} {:>10} samples {:>7} requests {:>11} bytes  CPU {:>7.3} s  wall {:>7.3} s  {:>12.0} samples/CPU-s  {:>6.1} B/sample",
        run.samples,
        run.requests,
        run.bytes,
        run.cpu.as_secs_f64(),
        run.wall.as_secs_f64(),
        run.samples as f64 / run.cpu.as_secs_f64(),
        run.bytes as f64 / run.samples as f64,
    );
}

fn main() {
    let args = args();
    let batches = windows(args.groups, args.windows);
    println!(
        "{} groups × {} windows, {SHARDS} shards, at most {MAX_SAMPLES} samples per request, best of {}",
        args.groups, args.windows, args.repeat
    );
    for (name, work) in [
        (
            "direct",
            direct as fn(&[WindowBatch]) -> (usize, usize, usize),
        ),
        ("prost", via_prost),
    ] {
        let runs: Vec<Run> = (0..args.repeat.max(1))
            .map(|_| timed(|| work(&batches)))
            .collect();
        for run in &runs {
            report(name, run);
        }
        if let Some(best) = runs.iter().min_by_key(|r| r.cpu) {
            report(&format!("{name}*"), best);
        }
    }
}
