//! Decoding throughput, in MB of JSON per CPU-second on one thread.
//!
//! ```sh
//! cargo bench -p fleet-core --bench decode
//! cargo bench -p fleet-core --bench decode -- wide   # the parts whose name has "wide"
//! ```
//!
//! 1. The reference demo's events, with the serde reference decoder
//!    `decode_event` and with the plan-driven `Decoder` on the default plan,
//!    side by side: each trial runs both over the same corpus, the best trial
//!    of each counts, and their CPU-time ratio is printed.
//! 2. Wide records of 50 signals (floats, integers, booleans, states, some
//!    in a nested object, a few fields no path names), with epoch and with
//!    RFC 3339 times.
//!
//! Messages lie back to back in one buffer, as a consumer's batch does;
//! decoded records go into a batch cleared every 1,024. Time is the thread's
//! CPU time (`/proc/thread-self/schedstat`), so a busy neighbour does not
//! count; the wall time is printed beside it.
// A benchmark binary: a panic is the failure report.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::fmt::Write as _;
use std::hint::black_box;
use std::time::Duration;

use fleet_core::{decode_event, Decoder, EventType, RawEvent, RecordBatch};
use rand::rngs::SmallRng;
use rand::{Rng, SeedableRng};
use tokio::time::Instant;

#[path = "../src/decode/testing.rs"]
mod testing;

const TRIALS: usize = 7;
const BATCH: usize = 1024;

/// Messages back to back, and where each ends.
struct Corpus {
    bytes: Vec<u8>,
    ends: Vec<usize>,
}

impl Corpus {
    fn new(messages: impl Iterator<Item = String>) -> Corpus {
        let mut corpus = Corpus {
            bytes: Vec::new(),
            ends: Vec::new(),
        };
        for m in messages {
            corpus.bytes.extend_from_slice(m.as_bytes());
            corpus.ends.push(corpus.bytes.len());
        }
        corpus
    }

    fn messages(&self) -> impl Iterator<Item = &[u8]> {
        let starts = std::iter::once(0).chain(self.ends.iter().copied());
        starts.zip(&self.ends).map(|(s, &e)| &self.bytes[s..e])
    }
}

/// A vehicle identification number: 17 of the characters VINs use.
fn vin(rng: &mut SmallRng) -> String {
    const VIN: &[u8] = b"0123456789ABCDEFGHJKLMNPRSTUVWXYZ";
    (0..17)
        .map(|_| VIN[rng.random_range(0..VIN.len())] as char)
        .collect()
}

const REGIONS: [&str; 8] = [
    "UK",
    "FR",
    "DE",
    "ES",
    "IT",
    "NL",
    "São Paulo",
    "North America",
];

/// The generator's events: a fleet of 10,000 vehicles, time advancing.
fn demo_corpus(n: usize) -> Corpus {
    let mut rng = SmallRng::seed_from_u64(5);
    let vins: Vec<String> = (0..10_000).map(|_| vin(&mut rng)).collect();
    Corpus::new((0..n).map(|i| {
        let (event_type, measurement) = match rng.random_range(0..3) {
            0 => (EventType::IcRpm, rng.random_range(0..6000)),
            1 => (EventType::ElectricRpm, rng.random_range(-4000..12_000)),
            _ => (EventType::Warnings, rng.random_range(0..4)),
        };
        RawEvent {
            event_type,
            vehicle_id: vins[rng.random_range(0..vins.len())].as_str().into(),
            region: REGIONS[rng.random_range(0..REGIONS.len())].into(),
            timestamp: 1_764_000_000_000 + i as i64 * 3,
            measurement,
        }
        .to_json()
    }))
}

#[derive(Clone, Copy)]
enum Kind {
    Float,
    Integer,
    Boolean,
    State,
}

const STATES: [&str; 4] = ["off", "idle", "drive", "charge"];

/// The 50 signals: name, type, whether in the nested `signals` object.
fn wide_signals() -> Vec<(String, Kind, bool)> {
    let mut signals = Vec::new();
    for (count, prefix, kind, nested) in [
        (20, "temp_", Kind::Float, false),
        (12, "count_", Kind::Integer, false),
        (5, "flag_", Kind::Boolean, false),
        (5, "mode_", Kind::State, false),
        (4, "pressure_", Kind::Float, true),
        (4, "level_", Kind::Integer, true),
    ] {
        for i in 0..count {
            signals.push((format!("{prefix}{i:02}"), kind, nested));
        }
    }
    signals
}

fn wide_toml(time_format: &str) -> String {
    let mut toml = format!(
        "[input]\nshape = \"wide\"\nvehicle_id = \"vin\"\ntime = \"ts\"\n\
         time_format = \"{time_format}\"\nlabels = [\"region\", \"site.depot\"]\n"
    );
    for (name, kind, nested) in wide_signals() {
        let (kind, extra) = match kind {
            Kind::Float => ("float", "min = -1000.0\nmax = 100000.0\n".to_string()),
            Kind::Integer => ("integer", "min = 0\n".to_string()),
            Kind::Boolean => ("boolean", String::new()),
            Kind::State => ("state", format!("states = {STATES:?}\n")),
        };
        let path = if nested {
            format!("path = \"signals.{name}\"\n")
        } else {
            String::new()
        };
        write!(
            toml,
            "\n[[input.signals]]\nname = \"{name}\"\ntype = \"{kind}\"\n{path}{extra}"
        )
        .unwrap();
    }
    toml
}

fn wide_corpus(n: usize, rfc3339: bool) -> Corpus {
    let mut rng = SmallRng::seed_from_u64(7);
    let signals = wide_signals();
    Corpus::new((0..n).map(|i| {
        let ms = 1_764_000_000_000 + i as i64 * 7;
        let ts = if rfc3339 {
            // 2025-11-24T16:00:00Z is 1764000000 s.
            let s = (ms / 1000 - 1_764_000_000) as u64;
            format!(
                "\"2025-11-24T{:02}:{:02}:{:02}.{:03}Z\"",
                16 + s / 3600,
                s / 60 % 60,
                s % 60,
                ms % 1000
            )
        } else {
            ms.to_string()
        };
        let mut top = String::new();
        let mut nested = String::new();
        for (name, kind, in_nested) in &signals {
            let value = match kind {
                Kind::Float => format!("{:.3}", rng.random_range(0.0..99_999.0)),
                Kind::Integer => rng.random_range(0..1_000_000).to_string(),
                Kind::Boolean => rng.random_bool(0.5).to_string(),
                Kind::State => format!("\"{}\"", STATES[rng.random_range(0..STATES.len())]),
            };
            let out = if *in_nested { &mut nested } else { &mut top };
            write!(out, ",\"{name}\":{value}").unwrap();
        }
        format!(
            r#"{{"vin":"{}","ts":{ts},"region":"{}","site":{{"depot":"Depot {}"}},"fw":"2.14.1","seq":{i}{top},"signals":{{"unit":"kPa"{nested}}},"diag":{{"codes":[12,345,6789],"ok":true,"note":null}}}}"#,
            vin(&mut rng),
            REGIONS[rng.random_range(0..REGIONS.len())],
            rng.random_range(0..40),
        )
    }))
}

fn thread_cpu() -> Duration {
    let stat = std::fs::read_to_string("/proc/thread-self/schedstat").unwrap();
    Duration::from_nanos(stat.split_whitespace().next().unwrap().parse().unwrap())
}

#[derive(Clone, Copy)]
struct Run {
    cpu: Duration,
    wall: Duration,
}

/// One pass of `decode` over every message of `corpus`, `passes` times.
fn timed(corpus: &Corpus, passes: usize, mut decode: impl FnMut(&[u8], usize)) -> Run {
    let (cpu, wall) = (thread_cpu(), Instant::now());
    for _ in 0..passes {
        for (i, m) in corpus.messages().enumerate() {
            decode(black_box(m), i);
        }
    }
    Run {
        cpu: thread_cpu() - cpu,
        wall: wall.elapsed(),
    }
}

fn serde_reference(corpus: &Corpus, passes: usize) -> Run {
    let mut events = Vec::with_capacity(BATCH);
    timed(corpus, passes, |m, _| {
        if events.len() == BATCH {
            black_box(&events);
            events.clear();
        }
        if let Ok(e) = decode_event(m) {
            events.push(e);
        }
    })
}

fn with_decoder(decoder: &Decoder, corpus: &Corpus, passes: usize) -> Run {
    let mut batch = RecordBatch::with_capacity(BATCH);
    timed(corpus, passes, |m, i| {
        if batch.len() == BATCH {
            black_box(&batch);
            batch.clear();
        }
        let _ = decoder.decode_into(m, 0, i as i64, &mut batch);
    })
}

/// The best of `TRIALS` trials of each runner, taken in turns.
fn best_of<const N: usize>(mut runners: [&mut dyn FnMut() -> Run; N]) -> [Run; N] {
    let mut best: [Option<Run>; N] = [None; N];
    for _ in 0..TRIALS {
        for (run, best) in runners.iter_mut().zip(&mut best) {
            let r = run();
            if best.is_none_or(|b| r.cpu < b.cpu) {
                *best = Some(r);
            }
        }
    }
    best.map(Option::unwrap)
}

fn report(name: &str, corpus: &Corpus, passes: usize, run: Run) -> f64 {
    let mb = (corpus.bytes.len() * passes) as f64 / 1e6;
    let records = (corpus.ends.len() * passes) as f64;
    let rate = mb / run.cpu.as_secs_f64();
    println!(
        "  {name:<28} {rate:>8.1} MB/CPU-s  {:>7.1} ns/record  (wall {:.2} s, CPU {:.2} s)",
        run.cpu.as_nanos() as f64 / records,
        run.wall.as_secs_f64(),
        run.cpu.as_secs_f64(),
    );
    rate
}

fn check_all_decode(decoder: &Decoder, corpus: &Corpus) {
    let mut batch = RecordBatch::default();
    for (i, m) in corpus.messages().enumerate() {
        decoder
            .decode_into(m, 0, i as i64, &mut batch)
            .unwrap_or_else(|e| panic!("{e}: {}", String::from_utf8_lossy(m)));
    }
}

/// Whether to run the part `name`: every part, or those named on the
/// command line (`cargo bench` adds `--bench`, which is ignored).
fn selected(name: &str) -> bool {
    let names: Vec<String> = std::env::args()
        .skip(1)
        .filter(|a| !a.starts_with("--"))
        .collect();
    names.is_empty() || names.iter().any(|n| name.contains(n.as_str()))
}

fn main() {
    if selected("demo") {
        demo();
    }
    for (time_format, rfc3339) in [("epoch_ms", false), ("rfc3339", true)] {
        if selected(&format!("wide-{time_format}")) {
            wide(time_format, rfc3339);
        }
    }
}

/// Says what is measured.
fn header(what: &str, corpus: &Corpus, passes: usize) {
    println!(
        "{what}: {} records of {:.0} bytes on average, {passes} passes, best of {TRIALS}",
        corpus.ends.len(),
        corpus.bytes.len() as f64 / corpus.ends.len() as f64
    );
}

fn demo() {
    let demo = demo_corpus(100_000);
    let decoder = Decoder::new(&testing::input_plan(testing::DEFAULT_TOML));
    check_all_decode(&decoder, &demo);
    let passes = 10;
    header("demo events", &demo, passes);
    let [old, new] = best_of([&mut || serde_reference(&demo, passes), &mut || {
        with_decoder(&decoder, &demo, passes)
    }]);
    report("decode_event (serde)", &demo, passes, old);
    report("Decoder, default plan", &demo, passes, new);
    println!(
        "  Decoder / serde CPU time: {:.3}",
        new.cpu.as_secs_f64() / old.cpu.as_secs_f64()
    );
}

fn wide(time_format: &str, rfc3339: bool) {
    let wide = wide_corpus(20_000, rfc3339);
    let decoder = Decoder::new(&testing::input_plan(&wide_toml(time_format)));
    check_all_decode(&decoder, &wide);
    let passes = 5;
    header(
        &format!("wide records, 50 signals, {time_format} time"),
        &wide,
        passes,
    );
    let [run] = best_of([&mut || with_decoder(&decoder, &wide, passes)]);
    let rate = report("Decoder", &wide, passes, run);
    println!("  {:.2} of the 500 MB/CPU-s target", rate / 500.0);
}
