//! `fleet-generator`: writes a synthetic fleet's raw events and reference CSV.
//!
//! Argument parsing and output selection only; the fleet, the events and their
//! encoding come from the library. [`Output`] names where events go, so that
//! further sinks (Kafka) are one more variant and one more match arm.

use std::fs::File;
use std::io::{self, BufWriter, IsTerminal, Write};
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::{Duration, SystemTime};

use anyhow::Context;
use clap::Parser;
use fleet_core::config::{ConfigError, EXIT_CONFIG};
use fleet_generator::{jsonl, EventGenerator, Fleet, GeneratorConfig};

/// Output buffer size: large enough that writes are rare system calls.
const BUFFER_BYTES: usize = 1 << 20;

/// Writes a deterministic synthetic fleet's raw events (JSON lines) and its
/// reference CSV (`vehicle_id,model`).
#[derive(Debug, Parser)]
#[command(name = "fleet-generator", version)]
struct Cli {
    /// Number of vehicles; each reports about once per simulated second.
    #[arg(long, default_value_t = GeneratorConfig::DEFAULT.vehicles)]
    vehicles: usize,
    /// Number of events to write (required for file and stdout output).
    #[arg(long)]
    events: Option<u64>,
    /// Seed of the fleet and the events; the same seed gives the same output.
    #[arg(long, default_value_t = GeneratorConfig::DEFAULT.seed)]
    seed: u64,
    /// Where events go: a file path, or `-` for stdout.
    #[arg(long, value_name = "PATH|-")]
    output: String,
    /// Also write the fleet's reference CSV to this file.
    #[arg(long, value_name = "PATH")]
    reference_out: Option<PathBuf>,
    /// Event-time origin, epoch milliseconds [default: now, floored to the second].
    #[arg(long)]
    start_ms: Option<i64>,
    /// Share of events (0–1) delayed by up to --max-disorder-ms.
    #[arg(long, default_value_t = GeneratorConfig::DEFAULT.disorder_fraction)]
    disorder_fraction: f64,
    /// Largest delay of a disordered event, milliseconds.
    #[arg(long, default_value_t = GeneratorConfig::DEFAULT.max_disorder_ms)]
    max_disorder_ms: u64,
    /// Share of events (0–1) delayed by --late-min-ms..=--late-max-ms (late for the service).
    #[arg(long, default_value_t = GeneratorConfig::DEFAULT.late_fraction)]
    late_fraction: f64,
    /// Smallest delay of a late event, milliseconds.
    #[arg(long, default_value_t = GeneratorConfig::DEFAULT.late_min_ms)]
    late_min_ms: u64,
    /// Largest delay of a late event, milliseconds.
    #[arg(long, default_value_t = GeneratorConfig::DEFAULT.late_max_ms)]
    late_max_ms: u64,
    /// Chance (0–1) per vehicle and simulated second of going offline.
    #[arg(long, default_value_t = GeneratorConfig::DEFAULT.offline_probability)]
    offline_probability: f64,
    /// Shortest time offline, seconds.
    #[arg(long, default_value_t = GeneratorConfig::DEFAULT.offline_min_s)]
    offline_min_s: u64,
    /// Longest time offline, seconds.
    #[arg(long, default_value_t = GeneratorConfig::DEFAULT.offline_max_s)]
    offline_max_s: u64,
    /// Deliver every event in order and on time (all three fractions 0).
    #[arg(long, conflicts_with_all = ["disorder_fraction", "late_fraction", "offline_probability"])]
    no_realism: bool,
}

impl Cli {
    fn generator_config(&self) -> GeneratorConfig {
        let config = GeneratorConfig {
            vehicles: self.vehicles,
            seed: self.seed,
            start_ms: self.start_ms,
            disorder_fraction: self.disorder_fraction,
            max_disorder_ms: self.max_disorder_ms,
            late_fraction: self.late_fraction,
            late_min_ms: self.late_min_ms,
            late_max_ms: self.late_max_ms,
            offline_probability: self.offline_probability,
            offline_min_s: self.offline_min_s,
            offline_max_s: self.offline_max_s,
        };
        if self.no_realism {
            config.without_realism()
        } else {
            config
        }
    }

    fn output(&self) -> Output {
        match self.output.as_str() {
            "-" => Output::Stdout,
            path => Output::File(PathBuf::from(path)),
        }
    }
}

/// Where the events go.
#[derive(Debug)]
enum Output {
    /// JSON lines into a file (created or truncated).
    File(PathBuf),
    /// JSON lines on standard output.
    Stdout,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match run(&cli) {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            eprintln!("fleet-generator: {err:#}");
            if err.downcast_ref::<ConfigError>().is_some() {
                ExitCode::from(EXIT_CONFIG as u8)
            } else {
                ExitCode::FAILURE
            }
        }
    }
}

fn run(cli: &Cli) -> anyhow::Result<()> {
    let output = cli.output();
    let events = match (&output, cli.events) {
        (_, Some(events)) => events,
        (Output::File(_) | Output::Stdout, None) => {
            return Err(ConfigError::single(
                "events",
                "--events is required for file and stdout output",
            )
            .into());
        }
    };
    let mut config = cli.generator_config();
    config.validate()?;
    // Resolved once and shown at the end, so the run can be reproduced with --start-ms.
    let start_ms = config.resolve_start_ms();
    config.start_ms = Some(start_ms);
    let fleet = Fleet::from_config(&config);
    if let Some(path) = &cli.reference_out {
        let file =
            File::create(path).with_context(|| format!("cannot create {}", path.display()))?;
        fleet
            .write_reference_csv(BufWriter::new(file))
            .with_context(|| format!("cannot write {}", path.display()))?;
    }
    let mut generator = EventGenerator::new(&fleet, &config)?;
    let mut progress = Progress::new(events);
    let result = match &output {
        Output::File(path) => {
            let file =
                File::create(path).with_context(|| format!("cannot create {}", path.display()))?;
            let out = BufWriter::with_capacity(BUFFER_BYTES, file);
            jsonl::write_events(generator.take_exact(events), out, |n| progress.report(n))
                .with_context(|| format!("cannot write {}", path.display()))
        }
        Output::Stdout => {
            let out = BufWriter::with_capacity(BUFFER_BYTES, io::stdout().lock());
            match jsonl::write_events(generator.take_exact(events), out, |n| progress.report(n)) {
                // A closed pipe (`| head`) is the reader's choice, not a failure.
                Err(e) if e.kind() == io::ErrorKind::BrokenPipe => Ok(0),
                other => other.context("cannot write to stdout"),
            }
        }
    };
    progress.finish(result?, start_ms);
    Ok(())
}

/// A progress line on stderr, only when stderr is a terminal, at most four times a second.
#[derive(Debug)]
struct Progress {
    total: u64,
    enabled: bool,
    started: SystemTime,
    last: SystemTime,
}

impl Progress {
    const INTERVAL: Duration = Duration::from_millis(250);

    fn new(total: u64) -> Progress {
        let now = SystemTime::now();
        Progress {
            total,
            enabled: io::stderr().is_terminal(),
            started: now,
            last: now,
        }
    }

    /// Events per second so far (wall clock; display only, so a clock step is harmless).
    fn rate(&self, written: u64) -> f64 {
        let secs = self.started.elapsed().unwrap_or_default().as_secs_f64();
        if secs > 0.0 {
            written as f64 / secs
        } else {
            0.0
        }
    }

    fn report(&mut self, written: u64) {
        if !self.enabled || self.last.elapsed().unwrap_or_default() < Self::INTERVAL {
            return;
        }
        self.last = SystemTime::now();
        let percent = written as f64 * 100.0 / self.total.max(1) as f64;
        let mut err = io::stderr().lock();
        let _ = write!(
            err,
            "\r{written}/{} events ({percent:.0} %), {:.0} events/s   ",
            self.total,
            self.rate(written)
        );
        let _ = err.flush();
    }

    fn finish(&self, written: u64, start_ms: i64) {
        if self.enabled {
            eprintln!(
                "\r{written} events written, {:.0} events/s, event time from --start-ms {start_ms}   ",
                self.rate(written)
            );
        }
    }
}
