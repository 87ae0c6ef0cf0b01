//! What a phase costs: wall time, and CPU time of the whole process.
//!
//! CPU time rather than wall time is the headline because the comparison that
//! matters (the Flink job at ~7 CPU-µs per event) is in CPU time, and because on
//! a shared machine wall time also counts other tenants' work. It is the
//! process's user + system time from `getrusage(RUSAGE_SELF)`, so the threaded
//! phase is charged for every thread it keeps busy, not only the caller's.

use std::time::Duration;

use anyhow::Context;
use nix::sys::resource::{getrusage, UsageWho};
use nix::sys::time::TimeVal;
use serde::Serialize;
use tokio::time::Instant;

/// The process's resource usage so far.
#[derive(Clone, Copy, Debug)]
pub struct ProcessUsage {
    /// User + system time of every thread, living or ended.
    pub cpu: Duration,
    /// Of which system time: page faults, futex waits and wake-ups, `mmap`.
    pub sys: Duration,
    /// Largest resident set size so far, bytes.
    pub peak_rss_bytes: u64,
}

impl ProcessUsage {
    /// Reads the counters now.
    pub fn now() -> anyhow::Result<ProcessUsage> {
        let usage = getrusage(UsageWho::RUSAGE_SELF).context("getrusage(RUSAGE_SELF)")?;
        // Linux reports ru_maxrss in KiB.
        let peak_kib = u64::try_from(usage.max_rss()).unwrap_or(0);
        let sys = duration(usage.system_time());
        Ok(ProcessUsage {
            cpu: duration(usage.user_time()) + sys,
            sys,
            peak_rss_bytes: peak_kib * 1024,
        })
    }
}

fn duration(t: TimeVal) -> Duration {
    let secs = u64::try_from(t.tv_sec()).unwrap_or(0);
    let micros = u64::try_from(t.tv_usec()).unwrap_or(0);
    Duration::from_secs(secs) + Duration::from_micros(micros)
}

/// Wall and process CPU time of one timed run.
#[derive(Clone, Copy, Debug, Default, PartialEq, Serialize)]
pub struct Timing {
    /// Elapsed time, seconds.
    pub wall_s: f64,
    /// Process user + system time, seconds.
    pub cpu_s: f64,
    /// Of which system time, seconds.
    pub sys_s: f64,
}

/// Runs `f` and returns its result with what it cost.
pub fn measure<T>(f: impl FnOnce() -> anyhow::Result<T>) -> anyhow::Result<(T, Timing)> {
    let before = ProcessUsage::now()?;
    let started = Instant::now();
    let out = f()?;
    let wall = started.elapsed();
    let after = ProcessUsage::now()?;
    Ok((
        out,
        Timing {
            wall_s: wall.as_secs_f64(),
            cpu_s: after.cpu.saturating_sub(before.cpu).as_secs_f64(),
            sys_s: after.sys.saturating_sub(before.sys).as_secs_f64(),
        },
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn busy_work_costs_cpu_time_and_memory_is_reported() {
        let (sum, timing) = measure(|| {
            let mut x = 0u64;
            for i in 0..20_000_000u64 {
                x = std::hint::black_box(x.wrapping_add(i ^ (x >> 3)));
            }
            Ok(x)
        })
        .unwrap();
        std::hint::black_box(sum);
        assert!(timing.cpu_s > 0.0, "{timing:?}");
        assert!(timing.wall_s > 0.0, "{timing:?}");
        assert!(ProcessUsage::now().unwrap().peak_rss_bytes > 1 << 20);
    }
}
