//! `fleet-bench`: how many events per CPU-second the preprocessor's hot path
//! handles, measured against the cost of JSON decoding alone.
//!
//! The performance issue compares this service with the Apache Flink job it
//! replaces (about 7 CPU-µs per event). Absolute figures on a shared machine
//! drift from run to run, so one invocation generates the events once, keeps
//! them in memory as JSON lines, and runs every phase on that same input,
//! interleaved, `--repeat` times: the ratio of the pipeline to the decode floor
//! is then meaningful even where the absolute figures are not.
//!
//! # Layout
//!
//! - `corpus`: the generated input, serialised before any clock starts.
//! - `phases`: decode floor, inline pipeline, threaded pipeline; all call the
//!   stage crates' own code, none re-implements it.
//! - `catalog`, `consume`: the VIN table at fleet scale; the Kafka client's
//!   own cost per message.
//! - `usage`: wall time, process CPU time and peak RSS (`getrusage`).
//! - `report`: best and median per phase, the table and the JSON object.
//!
//! CI builds this binary and never runs it; `docs/BENCHMARKS.md` records runs.

mod catalog;
mod consume;
mod corpus;
mod phases;
mod report;
mod usage;

use std::io::Write;

use anyhow::Context;
use clap::Parser;
use fleet_generator::{GeneratorConfig, WideLayout, WireFormat};

use corpus::{Corpus, Shape};
use phases::{PipelineParams, Stages};
use report::{Input, Machine, Phase, Report};
use usage::{measure, ProcessUsage, Timing};

/// Measures decode-only, the in-process pipeline and (optionally) the threaded
/// stages on the same generated events, and prints events per CPU-second.
#[derive(Debug, Parser)]
#[command(name = "fleet-bench", version)]
struct Cli {
    /// `catalog` or `consume`: another measurement instead of the pipeline phases.
    #[command(subcommand)]
    command: Option<Command>,
    /// `narrow`: the reference demo's events, read with the default
    /// configuration; `wide`: the generator's wide records of `--signals`
    /// signals, read with their example configuration (twelve metrics).
    #[arg(long, default_value = "narrow", value_parser = ["narrow", "wide"])]
    shape: String,
    /// Wide only: signals per record [default: 50].
    #[arg(long)]
    signals: Option<usize>,
    /// Wide only: the records' encoding (the generator's; Protobuf and Avro
    /// read against the layout's own schema).
    #[arg(long, default_value = "json", value_parser = ["json", "protobuf", "avro"])]
    format: String,
    /// Fleet size.
    #[arg(long, default_value_t = GeneratorConfig::REFERENCE_FLEET_VEHICLES)]
    vehicles: usize,
    /// Events to generate (and to push through every phase).
    #[arg(long, default_value_t = 5_000_000)]
    events: u64,
    /// Generator seed.
    #[arg(long, default_value_t = GeneratorConfig::DEFAULT.seed)]
    seed: u64,
    /// Event-time origin, epoch ms; fixed so that every run sees the same windows.
    #[arg(long, default_value_t = 1_764_000_000_000)]
    start_ms: i64,
    /// Timed runs of each phase; the best and the median are reported.
    #[arg(long, default_value_t = 3, value_parser = clap::value_parser!(u64).range(1..))]
    repeat: u64,
    /// Most events per source batch (the service's `kafka.max_batch_events`).
    #[arg(long, default_value_t = phases::BATCH_EVENTS, value_parser = parse_positive)]
    batch_events: usize,
    /// Also run the pipeline through the real tokio stages and bounded channels.
    #[arg(long)]
    threaded: bool,
    /// Turn the per-vehicle drill-down output on for every vehicle, at this
    /// frequency: `raw`, `window_last` or `window_mean`.
    #[arg(long, value_parser = parse_frequency)]
    drilldown: Option<fleet_drilldown::SampleFrequency>,
    /// Print one JSON object instead of the table.
    #[arg(long)]
    json: bool,
}

/// Other measurements than the pipeline phases.
#[derive(Debug, clap::Subcommand)]
enum Command {
    /// Loads a reference table of `--vehicles` VINs into the enricher's
    /// catalog and measures load time, resident bytes per vehicle and
    /// lookup time (the scale target: 10,000,000 vehicles).
    Catalog(catalog::CatalogArgs),
    /// Reads a backlog from Kafka with the service's consumer properties and
    /// does nothing else: the client's own CPU per message, against which
    /// the Kafka path's cost above `replay` is judged.
    Consume(consume::ConsumeArgs),
}

fn parse_frequency(s: &str) -> Result<fleet_drilldown::SampleFrequency, String> {
    use fleet_drilldown::SampleFrequency::*;
    [Raw, WindowLast, WindowMean]
        .into_iter()
        .find(|f| f.as_str() == s)
        .ok_or_else(|| format!("`{s}` is not raw, window_last or window_mean"))
}

fn parse_positive(s: &str) -> Result<usize, String> {
    match s.parse::<usize>() {
        Ok(n) if n > 0 => Ok(n),
        _ => Err(format!("`{s}` is not a positive integer")),
    }
}

fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    match &cli.command {
        Some(Command::Catalog(args)) => return catalog::run(args),
        Some(Command::Consume(args)) => return consume::run(args),
        None => {}
    }
    let report = run(&cli)?;
    let mut stdout = std::io::stdout().lock();
    if cli.json {
        serde_json::to_writer(&mut stdout, &report).context("writing the report")?;
        writeln!(stdout)?;
    } else {
        write!(stdout, "{}", report.to_table())?;
    }
    Ok(())
}

fn run(cli: &Cli) -> anyhow::Result<Report> {
    let config = GeneratorConfig {
        vehicles: cli.vehicles,
        seed: cli.seed,
        start_ms: Some(cli.start_ms),
        ..GeneratorConfig::DEFAULT
    };
    let params = PipelineParams {
        batch_events: cli.batch_events,
        drilldown: cli.drilldown,
        ..PipelineParams::service_defaults()?
    };
    eprintln!(
        "Generating {} events of {} vehicles (not timed)…",
        cli.events, cli.vehicles
    );
    let format = match cli.format.as_str() {
        "protobuf" => WireFormat::Protobuf,
        "avro" => WireFormat::Avro,
        _ => WireFormat::Json,
    };
    let (shape, shape_name) = match (cli.shape.as_str(), cli.signals) {
        ("wide", signals) => {
            let signals = signals.unwrap_or(WideLayout::DEFAULT_SIGNALS);
            (
                Shape::Wide(WideLayout::new(signals).context("--signals")?, format),
                format!("wide, {signals} signals, {}", format.as_str()),
            )
        }
        (_, Some(_)) => anyhow::bail!("--signals applies to --shape wide only"),
        _ if format != WireFormat::Json => anyhow::bail!("--format applies to --shape wide only"),
        _ => (Shape::Narrow, "narrow".to_string()),
    };
    let corpus = Corpus::generate(&config, cli.events, &shape)?;
    let peak_after_input = ProcessUsage::now()?.peak_rss_bytes;
    let runtime = if cli.threaded {
        Some(
            tokio::runtime::Builder::new_multi_thread()
                .enable_all()
                .build()
                .context("cannot start the async runtime")?,
        )
    } else {
        None
    };

    let events = corpus.len();
    let (mut decode_runs, mut pipeline_runs, mut threaded_runs) =
        (Vec::new(), Vec::new(), Vec::new());
    let (mut decode_work, mut pipeline_work, mut threaded_work) =
        (Default::default(), Default::default(), None);
    for round in 1..=cli.repeat {
        let (work, t) = measure(|| Ok(phases::decode_only(&corpus)))?;
        progress(round, cli.repeat, "decode", t);
        decode_runs.push(t);
        decode_work = work;

        let mut stages = Stages::new(&corpus, &params);
        let (work, t) = measure(|| phases::inline_pipeline(&corpus, &params, &mut stages))?;
        drop(stages);
        progress(round, cli.repeat, "pipeline", t);
        pipeline_runs.push(t);
        pipeline_work = work;

        if let Some(runtime) = &runtime {
            let stages = Stages::new(&corpus, &params);
            let (work, t) =
                measure(|| phases::threaded_pipeline(&corpus, &params, stages, runtime))?;
            progress(round, cli.repeat, "threaded", t);
            threaded_runs.push(t);
            threaded_work = Some(work);
        }
    }

    let input = Input {
        shape: shape_name,
        metrics: corpus.plan().metrics.len(),
        vehicles: cli.vehicles,
        events,
        seed: cli.seed,
        start_ms: cli.start_ms,
        json_bytes: corpus.bytes(),
        batch_events: params.batch_events,
        repeat: decode_runs.len(),
    };
    let bytes = corpus.bytes();
    let threaded =
        threaded_work.map(|work| (Phase::new("threaded", events, bytes, threaded_runs), work));
    Ok(Report::new(
        Machine::detect(),
        input,
        (
            Phase::new("decode", events, bytes, decode_runs),
            decode_work,
        ),
        (
            Phase::new("pipeline", events, bytes, pipeline_runs),
            pipeline_work,
        ),
        threaded,
        (peak_after_input, ProcessUsage::now()?.peak_rss_bytes),
    ))
}

fn progress(round: u64, of: u64, phase: &str, t: Timing) {
    eprintln!(
        "run {round}/{of} {phase:<8} wall {:>7.3} s  CPU {:>7.3} s (sys {:.3} s)",
        t.wall_s, t.cpu_s, t.sys_s
    );
}
