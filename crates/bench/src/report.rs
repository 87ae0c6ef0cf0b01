//! Summaries of the repeated runs: a table for people, one JSON object for scripts.
//!
//! Each phase is summarised by its best run (least CPU time: the run least
//! disturbed by other tenants) and its median run. The pipeline/decode ratio
//! divides CPU seconds of the same statistic, so both sides saw the same
//! machine: it is the figure to compare across machines and commits.

use std::fmt::Write as _;

use serde::Serialize;

use crate::phases::{DecodeWork, PipelineWork};
use crate::usage::Timing;

/// The machine the figures come from.
#[derive(Clone, Debug, Serialize)]
pub struct Machine {
    /// CPUs this process may use (what `nproc` prints).
    pub nproc: usize,
    /// The first `model name` of `/proc/cpuinfo`.
    pub cpu_model: String,
}

impl Machine {
    /// Describes this machine.
    pub fn detect() -> Machine {
        let cpu_model = std::fs::read_to_string("/proc/cpuinfo")
            .ok()
            .and_then(|info| {
                info.lines()
                    .find(|l| l.starts_with("model name"))
                    .and_then(|l| l.split_once(':'))
                    .map(|(_, name)| name.trim().to_owned())
            })
            .unwrap_or_else(|| "unknown".to_owned());
        Machine {
            nproc: std::thread::available_parallelism().map_or(1, |n| n.get()),
            cpu_model,
        }
    }
}

/// What was measured on.
#[derive(Clone, Debug, Serialize)]
pub struct Input {
    /// `narrow` (the reference demo) or `wide, N signals`.
    pub shape: String,
    /// Metrics declared by the plan the records are read with.
    pub metrics: usize,
    /// Fleet size.
    pub vehicles: usize,
    /// Events generated.
    pub events: u64,
    /// Generator seed.
    pub seed: u64,
    /// Event-time origin, epoch ms.
    pub start_ms: i64,
    /// Size of the JSON lines, bytes.
    pub json_bytes: u64,
    /// Events per source batch.
    pub batch_events: usize,
    /// Timed runs per phase.
    pub repeat: usize,
}

/// One run's figures.
#[derive(Clone, Copy, Debug, Serialize)]
pub struct Figures {
    /// Elapsed seconds.
    pub wall_s: f64,
    /// Process CPU seconds (user + system).
    pub cpu_s: f64,
    /// Of which system time, seconds.
    pub sys_s: f64,
    /// CPU microseconds per event.
    pub cpu_us_per_event: f64,
    /// Events per CPU-second: events per second per fully used core.
    pub events_per_cpu_s: f64,
    /// Events per elapsed second.
    pub events_per_wall_s: f64,
    /// Megabytes (10^6) of input (JSON lines, or binary messages) per CPU-second.
    pub json_mb_per_cpu_s: f64,
}

impl Figures {
    fn new(t: Timing, events: u64, bytes: u64) -> Figures {
        let n = events as f64;
        Figures {
            wall_s: t.wall_s,
            cpu_s: t.cpu_s,
            sys_s: t.sys_s,
            cpu_us_per_event: t.cpu_s * 1e6 / n.max(1.0),
            events_per_cpu_s: n / t.cpu_s.max(f64::MIN_POSITIVE),
            events_per_wall_s: n / t.wall_s.max(f64::MIN_POSITIVE),
            json_mb_per_cpu_s: bytes as f64 / 1e6 / t.cpu_s.max(f64::MIN_POSITIVE),
        }
    }
}

/// The summary of one phase.
#[derive(Clone, Debug, Serialize)]
pub struct Phase {
    /// `decode`, `pipeline` or `threaded`.
    pub name: &'static str,
    /// Events per run.
    pub events: u64,
    /// JSON bytes per run.
    pub bytes: u64,
    /// Every run, in order.
    pub runs: Vec<Timing>,
    /// The run with the least CPU time.
    pub best: Figures,
    /// The median run by CPU time (the lower one for an even count).
    pub median: Figures,
}

impl Phase {
    /// Summarises `runs` (at least one) of `events` events in `bytes` of
    /// JSON each.
    pub fn new(name: &'static str, events: u64, bytes: u64, runs: Vec<Timing>) -> Phase {
        let mut by_cpu = runs.clone();
        by_cpu.sort_by(|a, b| a.cpu_s.total_cmp(&b.cpu_s));
        let pick =
            |i: usize| Figures::new(by_cpu.get(i).copied().unwrap_or_default(), events, bytes);
        Phase {
            name,
            events,
            bytes,
            best: pick(0),
            median: pick(by_cpu.len().saturating_sub(1) / 2),
            runs,
        }
    }
}

/// CPU time of one phase over another's, for the best and the median runs.
#[derive(Clone, Copy, Debug, Serialize)]
pub struct Ratio {
    /// Best over best.
    pub best: f64,
    /// Median over median.
    pub median: f64,
}

impl Ratio {
    fn of(num: &Phase, den: &Phase) -> Ratio {
        let div = |a: f64, b: f64| if b > 0.0 { a / b } else { f64::NAN };
        Ratio {
            best: div(num.best.cpu_s, den.best.cpu_s),
            median: div(num.median.cpu_s, den.median.cpu_s),
        }
    }
}

/// Everything one invocation measured.
#[derive(Clone, Debug, Serialize)]
pub struct Report {
    /// Where.
    pub machine: Machine,
    /// On what.
    pub input: Input,
    /// Decode floor, inline pipeline, and threaded pipeline if asked for.
    pub phases: Vec<Phase>,
    /// What the decode floor did (last run).
    pub decode_work: DecodeWork,
    /// What the inline pipeline produced (last run).
    pub pipeline_work: PipelineWork,
    /// What the threaded pipeline produced (last run), if run.
    pub threaded_work: Option<PipelineWork>,
    /// Inline pipeline CPU time over decode CPU time.
    pub pipeline_over_decode: Ratio,
    /// Threaded pipeline CPU time over inline pipeline CPU time, if run.
    pub threaded_over_pipeline: Option<Ratio>,
    /// Peak RSS once the input was prepared (the JSON lines and line index dominate), bytes.
    pub peak_rss_after_input_bytes: u64,
    /// Peak RSS of the whole process at the end, bytes.
    pub peak_rss_bytes: u64,
}

impl Report {
    /// Assembles the report from each phase's runs and work, and the peak
    /// RSS `(once the input was prepared, at the end)`.
    pub fn new(
        machine: Machine,
        input: Input,
        decode: (Phase, DecodeWork),
        pipeline: (Phase, PipelineWork),
        threaded: Option<(Phase, PipelineWork)>,
        peak_rss: (u64, u64),
    ) -> Report {
        let pipeline_over_decode = Ratio::of(&pipeline.0, &decode.0);
        let threaded_over_pipeline = threaded.as_ref().map(|t| Ratio::of(&t.0, &pipeline.0));
        let (threaded_phase, threaded_work) = threaded.unzip();
        let mut phases = vec![decode.0, pipeline.0];
        phases.extend(threaded_phase);
        Report {
            machine,
            input,
            phases,
            decode_work: decode.1,
            pipeline_work: pipeline.1,
            threaded_work,
            pipeline_over_decode,
            threaded_over_pipeline,
            peak_rss_after_input_bytes: peak_rss.0,
            peak_rss_bytes: peak_rss.1,
        }
    }

    /// The human table.
    pub fn to_table(&self) -> String {
        let mut out = String::new();
        let (m, i) = (&self.machine, &self.input);
        let _ = writeln!(
            out,
            "fleet-bench: {} events ({}, {} metrics) of {} vehicles (seed {}), {} MB of input, batches of {}",
            thousands(i.events),
            i.shape,
            i.metrics,
            thousands(i.vehicles as u64),
            i.seed,
            thousands(i.json_bytes / 1_000_000),
            i.batch_events,
        );
        let _ = writeln!(
            out,
            "machine: {} CPUs, {}; {} runs per phase\n",
            m.nproc, m.cpu_model, i.repeat
        );
        let _ = writeln!(
            out,
            "{:<9} {:<6} {:>8} {:>8} {:>7} {:>12} {:>14} {:>14} {:>9}",
            "phase",
            "run",
            "wall s",
            "CPU s",
            "sys s",
            "CPU µs/event",
            "events/CPU-s",
            "events/wall-s",
            "MB/CPU-s"
        );
        for phase in &self.phases {
            for (label, f) in [("best", &phase.best), ("median", &phase.median)] {
                let _ = writeln!(
                    out,
                    "{:<9} {:<6} {:>8.3} {:>8.3} {:>7.3} {:>12.3} {:>14} {:>14} {:>9.0}",
                    phase.name,
                    label,
                    f.wall_s,
                    f.cpu_s,
                    f.sys_s,
                    f.cpu_us_per_event,
                    thousands(f.events_per_cpu_s.round() as u64),
                    thousands(f.events_per_wall_s.round() as u64),
                    f.json_mb_per_cpu_s,
                );
            }
        }
        let r = self.pipeline_over_decode;
        let _ = writeln!(
            out,
            "\npipeline / decode CPU time: {:.2}x (best), {:.2}x (median)",
            r.best, r.median
        );
        if let Some(r) = self.threaded_over_pipeline {
            let _ = writeln!(
                out,
                "threaded / pipeline CPU time: {:.2}x (best), {:.2}x (median)",
                r.best, r.median
            );
        }
        let w = &self.pipeline_work;
        let _ = writeln!(
            out,
            "\npipeline work: {} events ({} malformed, {} late), {} aggregates in {} window batches,\n               {} samples ({} of them drill-down) in {} requests, {} bytes compressed",
            thousands(w.events),
            thousands(w.malformed),
            thousands(w.late_events()),
            thousands(w.aggregates),
            thousands(w.window_batches),
            thousands(w.samples),
            thousands(w.vehicle_samples),
            thousands(w.requests),
            thousands(w.request_bytes),
        );
        if let Some(t) = &self.threaded_work {
            let same = if t == w {
                "identical"
            } else {
                "DIFFERENT (a bug)"
            };
            let _ = writeln!(out, "threaded work: {same}");
        }
        let _ = writeln!(
            out,
            "peak RSS: {} MiB at the end, {} MiB once the input was prepared",
            thousands(self.peak_rss_bytes >> 20),
            thousands(self.peak_rss_after_input_bytes >> 20),
        );
        out
    }
}

/// `1234567` as `1,234,567`.
fn thousands(n: u64) -> String {
    let digits = n.to_string();
    let (head, tail) = digits.split_at(match digits.len() % 3 {
        0 => digits.len().min(3),
        r => r,
    });
    let mut out = String::from(head);
    for group in tail.as_bytes().chunks(3) {
        out.push(',');
        out.extend(group.iter().map(|&b| char::from(b)));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn t(wall_s: f64, cpu_s: f64) -> Timing {
        Timing {
            wall_s,
            cpu_s,
            sys_s: 0.0,
        }
    }

    #[test]
    fn best_is_least_cpu_and_median_is_the_middle_run() {
        let p = Phase::new(
            "decode",
            1_000_000,
            500_000_000,
            vec![t(1.0, 3.0), t(9.0, 1.0), t(2.0, 2.0)],
        );
        assert_eq!((p.best.wall_s, p.best.cpu_s), (9.0, 1.0));
        assert_eq!(p.median.cpu_s, 2.0);
        assert_eq!(p.best.events_per_cpu_s, 1_000_000.0);
        assert_eq!(p.median.cpu_us_per_event, 2.0);
        assert_eq!(p.best.json_mb_per_cpu_s, 500.0);
        let q = Phase::new(
            "pipeline",
            1_000_000,
            500_000_000,
            vec![t(1.0, 4.0), t(1.0, 3.0)],
        );
        assert_eq!(q.median.cpu_s, 3.0, "lower median of two");
        let r = Ratio::of(&q, &p);
        assert_eq!((r.best, r.median), (3.0, 1.5));
    }

    #[test]
    fn thousands_are_grouped() {
        assert_eq!(thousands(0), "0");
        assert_eq!(thousands(999), "999");
        assert_eq!(thousands(1_000), "1,000");
        assert_eq!(thousands(5_000_000), "5,000,000");
    }
}
