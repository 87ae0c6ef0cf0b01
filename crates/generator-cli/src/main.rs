//! `fleet-generator`: writes a synthetic fleet's raw events and reference CSV.
//!
//! Argument parsing and output selection only; the fleet, the events and their
//! encoding come from the library. `--shape` picks the records: the reference
//! demo's narrow events (the default), or wide records of `--signals`
//! signals each, whose matching `[input]` and `[[metrics]]` `--config-out`
//! writes. Both shapes go through the same outputs. [`Output`] names where
//! events go:
//!
//! - a file or stdout (`--output`): JSON lines, written synchronously and as
//!   fast as possible. No async runtime is built: nothing waits on a network.
//! - Kafka (`--brokers`): one message per event, key = VIN, through
//!   [`EventPublisher::publish_raw`], which waits for every delivery of a batch. A tokio
//!   runtime is built for this mode only. The stream is paced against the
//!   wall clock (`--rate`, default one event per vehicle per second), so with
//!   the default event-time origin (now) event time follows the wall clock as
//!   a live fleet's would. Without `--events` it runs until SIGINT or SIGTERM
//!   and then stops after the batch in flight has been delivered, so every
//!   event it reports as produced is in the topic.
//!
//! `--reference-out` works with every output: the fleet, hence the CSV, is the
//! same whatever the events' destination.

use std::collections::BTreeMap;
use std::fs::File;
use std::io::{self, BufWriter, IsTerminal, Write};
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::{Duration, SystemTime};

use anyhow::Context;
use clap::{ArgGroup, Parser, ValueEnum};
use fleet_core::config::{ConfigError, Problems, EXIT_CONFIG};
use fleet_core::TimestampMs;
use fleet_generator::jsonl::{self, JsonRecord};
use fleet_generator::{
    EventGenerator, Fleet, Generator, GeneratorConfig, RecordKind, WideEncoder, WideGenerator,
    WideLayout, WireFormat,
};
use fleet_kafka::producer::EventPublisher;
use fleet_kafka::KafkaConfig;
use tokio::sync::watch;
use tokio::time::Instant;

/// Output buffer size: large enough that writes are rare system calls.
const BUFFER_BYTES: usize = 1 << 20;

/// Most events in one Kafka publish. A publish waits for all of its
/// deliveries before the next starts, so this bounds memory, the stall of a
/// stop request, and what a second signal can leave half-delivered.
const MAX_BATCH: usize = 20_000;

/// How often a paced Kafka run sends a batch. Ten batches a second keep event
/// time smooth against 5 s windows without paying a round trip per event.
const TICK: Duration = Duration::from_millis(100);

/// How often, at most, a paced run that falls behind says so.
const LAG_WARNING_EVERY: Duration = Duration::from_secs(10);

/// librdkafka's default delivery timeout is 5 minutes; a generator pointed at
/// a broker that is down should say so sooner. `--kafka-property
/// message.timeout.ms=…` overrides it.
const DEFAULT_MESSAGE_TIMEOUT_MS: &str = "30000";

/// Writes a deterministic synthetic fleet's raw events, or with `--shape
/// wide` its wide records (JSON lines to a file or stdout, or messages to
/// Kafka keyed by VIN), and its reference CSV
/// (`vehicle_id,model,fuel_type,model_year`).
#[derive(Debug, Parser)]
#[command(name = "fleet-generator", version)]
#[command(group(ArgGroup::new("sink").args(["output", "brokers"])))]
struct Cli {
    /// The records: `narrow`, the reference demo's events (one signal each),
    /// or `wide`, one JSON object per vehicle and second with --signals
    /// signals (docs/METRICS.md).
    #[arg(long, value_enum, default_value_t = Shape::Narrow)]
    shape: Shape,
    /// Wide only: signals per record, 1 to 1000 [default: 50].
    #[arg(long, value_name = "N")]
    signals: Option<usize>,
    /// Wide only: how each record is encoded; protobuf and avro need
    /// --brokers (they are binary) and describe the records with
    /// --schema-out.
    #[arg(long, value_enum, default_value_t = Format::Json)]
    format: Format,
    /// Wide, protobuf or avro: write the records' schema (a .proto file, or
    /// an Avro schema) to this file; --config-out names it as
    /// `input.schema_file`.
    #[arg(long, value_name = "PATH")]
    schema_out: Option<PathBuf>,
    /// Protobuf or avro, Kafka only: register the records' schema in this
    /// schema registry (subject `<topic>-value`) and frame every record for
    /// it (Confluent's wire format); --config-out then names the registry.
    #[arg(long, value_name = "URL")]
    registry: Option<String>,
    /// With --registry: HTTP basic auth.
    #[arg(long, value_name = "USER:PASSWORD", requires = "registry")]
    registry_auth: Option<String>,
    /// Wide only: write the service configuration that matches the records
    /// (`[input]` and `[[metrics]]`, TOML) to this file; alone, only that.
    #[arg(long, value_name = "PATH")]
    config_out: Option<PathBuf>,
    /// Number of vehicles; each reports about once per simulated second.
    #[arg(long, default_value_t = GeneratorConfig::REFERENCE_FLEET_VEHICLES)]
    vehicles: usize,
    /// Number of events to write (required for file and stdout output; with
    /// Kafka, endless until SIGINT/SIGTERM when absent).
    #[arg(long)]
    events: Option<u64>,
    /// Seed of the fleet and the events; the same seed gives the same output.
    #[arg(long, default_value_t = GeneratorConfig::DEFAULT.seed)]
    seed: u64,
    /// Write events as JSON lines to a file path, or `-` for stdout.
    #[arg(long, value_name = "PATH|-", required_unless_present_any = ["brokers", "config_out"])]
    output: Option<String>,
    /// Produce events to Kafka at these bootstrap servers instead (key = VIN).
    #[arg(long, value_name = "HOST:PORT[,..]")]
    brokers: Option<String>,
    /// Kafka only: topic of the raw events [default: vehicle-events].
    #[arg(long)]
    topic: Option<String>,
    /// Kafka only: events per wall-clock second, sent in batches every 100 ms;
    /// 0 = as fast as the broker takes them [default: --vehicles, i.e. one
    /// event per vehicle per second, so event time follows the wall clock].
    #[arg(long, value_name = "EVENTS_PER_SECOND")]
    rate: Option<u64>,
    /// Kafka only: a librdkafka producer property, e.g. `security.protocol=SSL`
    /// or `compression.type=zstd`; repeatable.
    #[arg(long = "kafka-property", value_name = "KEY=VALUE", value_parser = parse_property)]
    kafka_properties: Vec<(String, String)>,
    /// Also write the fleet's reference CSV to this file (header
    /// `vehicle_id,model,fuel_type,model_year`).
    #[arg(long, value_name = "PATH")]
    reference_out: Option<PathBuf>,
    /// Kafka only: first publish the fleet's reference data to this
    /// (compacted) topic, one message per vehicle: key = VIN, value =
    /// `{"model":"…","fuel_type":"…","model_year":2024}`. With `--events 0`,
    /// only that.
    #[arg(long, value_name = "TOPIC")]
    reference_topic: Option<String>,
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

/// `--shape`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
enum Shape {
    /// The reference demo's events: one signal per record.
    Narrow,
    /// One record per vehicle and second, carrying many signals.
    Wide,
}

/// `--format`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
enum Format {
    /// One JSON object per record.
    Json,
    /// A Protobuf message (`fleet.wide.Record`).
    Protobuf,
    /// An Avro datum.
    Avro,
}

impl Format {
    fn wire(self) -> WireFormat {
        match self {
            Format::Json => WireFormat::Json,
            Format::Protobuf => WireFormat::Protobuf,
            Format::Avro => WireFormat::Avro,
        }
    }
}

/// Parses `--kafka-property KEY=VALUE`; the value may contain `=` and be empty.
fn parse_property(arg: &str) -> Result<(String, String), String> {
    match arg.split_once('=') {
        Some((key, value)) if !key.trim().is_empty() => {
            Ok((key.trim().to_string(), value.to_string()))
        }
        _ => Err(format!("{arg:?} is not KEY=VALUE")),
    }
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

    /// The wide records' layout, `None` for narrow events; refuses the
    /// wide-only flags with narrow events.
    fn layout(&self) -> Result<Option<WideLayout>, ConfigError> {
        match self.shape {
            Shape::Wide => {
                WideLayout::new(self.signals.unwrap_or(WideLayout::DEFAULT_SIGNALS)).map(Some)
            }
            Shape::Narrow => {
                let mut problems = Problems::default();
                for (key, given) in [
                    ("signals", self.signals.is_some()),
                    ("config_out", self.config_out.is_some()),
                    ("format", self.format != Format::Json),
                    ("schema_out", self.schema_out.is_some()),
                ] {
                    problems.check(
                        !given,
                        key,
                        "applies to --shape wide only (narrow events match the default configuration)",
                    );
                }
                problems.finish(None)
            }
        }
    }

    /// The output, checked: clap has already made `--output` and `--brokers`
    /// exclusive and one of them present unless `--config-out` is (`None`:
    /// only the configuration is written). The Kafka-only flags are checked
    /// here, not with clap's `requires`: clap waives a requirement on an
    /// argument that conflicts with one present, and `--brokers` conflicts
    /// with `--output`.
    fn output(&self) -> Result<Option<Output>, ConfigError> {
        if let Some(brokers) = &self.brokers {
            return self
                .kafka_output(brokers)
                .map(|k| Some(Output::Kafka(Box::new(k))));
        }
        let mut problems = Problems::default();
        for (key, given) in [
            ("topic", self.topic.is_some()),
            ("rate", self.rate.is_some()),
            ("kafka_property", !self.kafka_properties.is_empty()),
            ("reference_topic", self.reference_topic.is_some()),
        ] {
            problems.check(!given, key, "applies to Kafka output only (--brokers)");
        }
        problems.finish(())?;
        match self.output.as_deref() {
            Some("-") => Ok(Some(Output::Stdout)),
            Some(path) => Ok(Some(Output::File(PathBuf::from(path)))),
            None if self.config_out.is_some() => Ok(None),
            None => Err(ConfigError::single(
                "output",
                "give --output PATH|- or --brokers HOST:PORT",
            )),
        }
    }

    fn kafka_output(&self, brokers: &str) -> Result<KafkaOutput, ConfigError> {
        let mut client: BTreeMap<String, String> = self.kafka_properties.iter().cloned().collect();
        client
            .entry("message.timeout.ms".to_string())
            .or_insert_with(|| DEFAULT_MESSAGE_TIMEOUT_MS.to_string());
        let config = KafkaConfig {
            brokers: brokers.to_string(),
            topic: self
                .topic
                .clone()
                .unwrap_or_else(|| KafkaConfig::default().topic),
            client: client.into(),
            ..KafkaConfig::default()
        };
        // The service's own checks (host:port, non-empty topic, properties it
        // manages such as bootstrap.servers), reported under this CLI's names.
        let mut problems = Problems::default();
        config.validate(&mut problems);
        if let Err(error) = problems.finish(()) {
            let mut renamed = Problems::default();
            for problem in error.problems {
                let key = problem.key.replacen("kafka.client.", "kafka_property.", 1);
                renamed.add(key.trim_start_matches("kafka."), problem.problem);
            }
            renamed.finish(())?;
        }
        let rate = match self.rate {
            Some(0) => None,
            Some(rate) => Some(rate),
            // One event per vehicle per second: N events are one simulated second.
            None => Some(u64::try_from(self.vehicles).unwrap_or(u64::MAX)),
        };
        Ok(KafkaOutput { config, rate })
    }
}

/// Where the events go.
#[derive(Debug)]
enum Output {
    /// JSON lines into a file (created or truncated).
    File(PathBuf),
    /// JSON lines on standard output.
    Stdout,
    /// Messages to a Kafka topic, key = VIN.
    Kafka(Box<KafkaOutput>),
}

/// The Kafka output's settings.
#[derive(Debug)]
struct KafkaOutput {
    /// Brokers, topic and pass-through producer properties.
    config: KafkaConfig,
    /// Events per wall-clock second; `None`: as fast as the broker takes them.
    rate: Option<u64>,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match run(&cli) {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            eprintln!("fleet-generator: {}", error_chain(&err));
            if err.downcast_ref::<ConfigError>().is_some() {
                ExitCode::from(EXIT_CONFIG as u8)
            } else {
                ExitCode::FAILURE
            }
        }
    }
}

/// The error and its causes joined with `: `, like `{:#}`, but without a cause
/// whose text the message before it already contains: librdkafka's errors (and
/// errors that print their source) would otherwise repeat it two or three times.
fn error_chain(err: &anyhow::Error) -> String {
    let mut out = String::new();
    let mut previous = String::new();
    for cause in err.chain() {
        let text = cause.to_string();
        if !previous.contains(&text) {
            if !out.is_empty() {
                out.push_str(": ");
            }
            out.push_str(&text);
        }
        previous = text;
    }
    out
}

fn run(cli: &Cli) -> anyhow::Result<()> {
    // Every configuration problem is reported before anything is written.
    let output = cli.output()?;
    let layout = cli.layout()?;
    if cli.events.is_none() && matches!(output, Some(Output::File(_) | Output::Stdout)) {
        return Err(ConfigError::single(
            "events",
            "--events is required for file and stdout output",
        )
        .into());
    }
    if cli.format != Format::Json {
        let mut problems = Problems::default();
        problems.check(
            cli.registry.is_none() || matches!(output, Some(Output::Kafka(_))),
            "registry",
            "frames records for Kafka only (--brokers)",
        );
        problems.check(
            !matches!(output, Some(Output::File(_) | Output::Stdout)),
            "format",
            "protobuf and avro records are binary: they go to Kafka (--brokers), not to JSON lines",
        );
        problems.check(
            cli.config_out.is_none() || cli.schema_out.is_some(),
            "schema_out",
            "needed with --config-out: the configuration names the schema file",
        );
        problems.finish(())?;
    } else if cli.schema_out.is_some() {
        return Err(
            ConfigError::single("schema_out", "applies to --format protobuf or avro only").into(),
        );
    }
    let mut config = cli.generator_config();
    config.validate()?;
    // Resolved once and shown at the end, so the run can be reproduced with --start-ms.
    let start_ms = config.resolve_start_ms();
    config.start_ms = Some(start_ms);
    if let (Some(path), Some(layout)) = (&cli.schema_out, &layout) {
        let schema = match cli.format {
            Format::Protobuf => layout.proto_schema(),
            Format::Avro | Format::Json => layout.avro_schema(),
        };
        std::fs::write(path, schema).with_context(|| format!("cannot write {}", path.display()))?;
    }
    if let (Some(path), Some(layout)) = (&cli.config_out, &layout) {
        let schema_file = cli
            .schema_out
            .as_ref()
            .map(|p| p.display().to_string())
            .unwrap_or_default();
        std::fs::write(
            path,
            layout.config_toml_for(cli.format.wire(), &schema_file),
        )
        .with_context(|| format!("cannot write {}", path.display()))?;
    }
    let fleet = Fleet::from_config(&config);
    if let Some(path) = &cli.reference_out {
        let file =
            File::create(path).with_context(|| format!("cannot create {}", path.display()))?;
        fleet
            .write_reference_csv(BufWriter::new(file))
            .with_context(|| format!("cannot write {}", path.display()))?;
    }
    let Some(output) = output else {
        return Ok(());
    };
    match layout {
        None => emit(
            cli,
            &output,
            &fleet,
            EventGenerator::new(&fleet, &config)?,
            start_ms,
            |event| event,
        ),
        Some(layout) => {
            let generator = WideGenerator::new(&fleet, &config, &layout)?;
            match cli.format {
                Format::Json => emit(cli, &output, &fleet, generator, start_ms, |record| record),
                format => {
                    let mut encoder = WideEncoder::new(&layout, format.wire())?;
                    if let (Some(url), Output::Kafka(kafka)) = (&cli.registry, &output) {
                        let id = register(cli, url, &layout, &kafka.config.topic)?;
                        encoder = encoder.framed(id);
                    }
                    emit(cli, &output, &fleet, generator, start_ms, |record| {
                        encoder.wire(record)
                    })
                }
            }
        }
    }
}

/// Registers the records' schema under `<topic>-value` in the registry at
/// `url`; its id.
fn register(cli: &Cli, url: &str, layout: &WideLayout, topic: &str) -> anyhow::Result<u32> {
    let (username, password) = match cli.registry_auth.as_deref().map(|a| a.split_once(':')) {
        None => (String::new(), String::new()),
        Some(Some((user, password))) => (user.to_owned(), password.to_owned()),
        Some(None) => {
            return Err(ConfigError::single("registry_auth", "give USER:PASSWORD").into());
        }
    };
    let config = fleet_schema::SchemaRegistryConfig {
        url: url.to_owned(),
        username,
        password: fleet_core::Secret::new(password),
        ..Default::default()
    };
    let client = fleet_schema::RegistryClient::new(&config).map_err(anyhow::Error::msg)?;
    let (schema_type, schema) = match cli.format {
        Format::Protobuf => ("PROTOBUF", layout.proto_schema()),
        Format::Avro | Format::Json => ("AVRO", layout.avro_schema()),
    };
    let subject = format!("{topic}-value");
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("cannot start the async runtime")?;
    let id = runtime
        .block_on(client.register(&subject, schema_type, &schema))
        .with_context(|| format!("cannot register the schema under {subject} at {url}"))?;
    eprintln!("fleet-generator: schema registered under {subject} as id {id}");
    Ok(id)
}

/// Sends the generator's records to `output`, each as `wire` makes it
/// (the Kafka output; the JSON lines are the records themselves).
fn emit<K: RecordKind, W: JsonRecord>(
    cli: &Cli,
    output: &Output,
    fleet: &Fleet,
    mut generator: Generator<K>,
    start_ms: TimestampMs,
    wire: impl FnMut(K::Record) -> W,
) -> anyhow::Result<()> {
    match output {
        Output::File(path) => {
            let events = cli.events.unwrap_or_default();
            let mut progress = Progress::new(Some(events));
            let file =
                File::create(path).with_context(|| format!("cannot create {}", path.display()))?;
            let out = BufWriter::with_capacity(BUFFER_BYTES, file);
            let written =
                jsonl::write_events(generator.take_exact(events), out, |n| progress.report(n))
                    .with_context(|| format!("cannot write {}", path.display()))?;
            progress.finish(&written_summary(written, &progress, start_ms), false);
        }
        Output::Stdout => {
            let events = cli.events.unwrap_or_default();
            let mut progress = Progress::new(Some(events));
            let out = BufWriter::with_capacity(BUFFER_BYTES, io::stdout().lock());
            let written = match jsonl::write_events(generator.take_exact(events), out, |n| {
                progress.report(n)
            }) {
                // A closed pipe (`| head`) is the reader's choice, not a failure.
                Err(e) if e.kind() == io::ErrorKind::BrokenPipe => Ok(0),
                other => other.context("cannot write to stdout"),
            }?;
            progress.finish(&written_summary(written, &progress, start_ms), false);
        }
        Output::Kafka(kafka) => {
            // Built here and only here: file output never pays for a runtime.
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .context("cannot start the async runtime")?;
            if let Some(topic) = &cli.reference_topic {
                runtime.block_on(publish_reference(kafka, topic, fleet))?;
            }
            runtime.block_on(run_kafka(kafka, &mut generator, cli, start_ms, wire))?;
        }
    }
    Ok(())
}

fn written_summary(written: u64, progress: &Progress, start_ms: TimestampMs) -> String {
    format!(
        "{written} events written, {:.0} events/s, event time from --start-ms {start_ms}",
        progress.rate(written)
    )
}

/// Publishes the fleet's reference data to `topic`, in the fleet's order: key =
/// VIN, value = the vehicle's attributes as a JSON object
/// ([`fleet_generator::Vehicle::reference_json`]).
async fn publish_reference(kafka: &KafkaOutput, topic: &str, fleet: &Fleet) -> anyhow::Result<()> {
    let config = fleet_kafka::KafkaConfig {
        topic: topic.to_string(),
        ..kafka.config.clone()
    };
    let publisher = EventPublisher::new(&config)
        .map_err(|error| ConfigError::single("kafka_property", error.to_string()))?;
    let records: Vec<(&str, String)> = fleet
        .vehicles()
        .iter()
        .map(|v| (v.vin.as_str(), v.reference_json()))
        .collect();
    for chunk in records.chunks(MAX_BATCH) {
        publisher
            .publish_raw(chunk.iter().map(|(k, v)| (k.as_bytes(), v.as_bytes())))
            .await
            .with_context(|| format!("publishing the reference data to {topic}"))?;
    }
    eprintln!(
        "fleet-generator: {} vehicles published to reference topic {topic}",
        records.len()
    );
    Ok(())
}

/// Kafka mode: builds the producer, paces the generator into it and reports.
async fn run_kafka<K: RecordKind, W: JsonRecord>(
    kafka: &KafkaOutput,
    generator: &mut Generator<K>,
    cli: &Cli,
    start_ms: TimestampMs,
    mut wire: impl FnMut(K::Record) -> W,
) -> anyhow::Result<()> {
    // Listening starts before the first event, so an early Ctrl-C is a clean stop too.
    let mut stop = watch_for_shutdown().context("cannot listen for SIGINT and SIGTERM")?;
    let publisher = EventPublisher::new(&kafka.config).map_err(|error| {
        // Creating a producer fails only on its properties, never on the network.
        ConfigError::single("kafka_property", error.to_string())
    })?;
    let topic = &kafka.config.topic;
    let brokers = &kafka.config.brokers;
    let pace = match kafka.rate {
        Some(rate) => format!("{rate} events/s"),
        None => "as fast as possible".to_string(),
    };
    let extent = match cli.events {
        Some(events) => format!("{events} events"),
        None => "until SIGINT/SIGTERM".to_string(),
    };
    eprintln!(
        "fleet-generator: producing to topic {topic} at {brokers}: {} vehicles, {pace}, {extent}, event time from --start-ms {start_ms}",
        cli.vehicles
    );
    let mut progress = Progress::new(cli.events);
    let pacing = Pacing {
        rate: kafka.rate,
        started: Instant::now(),
    };
    let produced = match cli.events {
        Some(events) => {
            pacing
                .run(
                    &publisher,
                    generator.take_exact(events).map(&mut wire),
                    &mut stop,
                    &mut progress,
                )
                .await
        }
        None => {
            let endless = std::iter::from_fn(|| Some(wire(generator.next_event())));
            pacing
                .run(&publisher, endless, &mut stop, &mut progress)
                .await
        }
    }
    .with_context(|| format!("producing to Kafka at {brokers}"))?;
    let ending = if produced.stopped {
        "stopped by signal"
    } else {
        "done"
    };
    progress.finish(
        &format!(
            "{} events produced to topic {topic}, {:.0} events/s, event time {start_ms}..={} ({ending})",
            produced.sent,
            progress.rate(produced.sent),
            generator.clock_ms()
        ),
        true,
    );
    Ok(())
}

/// How many events a Kafka run has sent, and why it ended.
#[derive(Debug)]
struct Produced {
    /// Events whose delivery the broker confirmed.
    sent: u64,
    /// Ended by a signal rather than by running out of events.
    stopped: bool,
}

/// Sends events in batches, no faster than `rate` events per second counted
/// from `started`. The schedule is absolute (events due since the start, not
/// per tick), so a slow publish is caught up by the next batch and the
/// average rate holds; a run that cannot keep up says so.
#[derive(Debug)]
struct Pacing {
    /// Events per second; `None`: no limit.
    rate: Option<u64>,
    started: Instant,
}

impl Pacing {
    async fn run(
        &self,
        publisher: &EventPublisher,
        mut events: impl Iterator<Item = impl JsonRecord>,
        stop: &mut watch::Receiver<bool>,
        progress: &mut Progress,
    ) -> anyhow::Result<Produced> {
        let mut sent = 0_u64;
        let mut batch = Vec::new();
        let mut last_lag_warning: Option<Instant> = None;
        loop {
            if *stop.borrow() {
                return Ok(Produced {
                    sent,
                    stopped: true,
                });
            }
            let want = match self.rate {
                None => MAX_BATCH,
                Some(rate) => {
                    let behind = due_events(rate, self.started.elapsed()).saturating_sub(sent);
                    if behind == 0 {
                        tokio::select! {
                            () = tokio::time::sleep(TICK) => {}
                            // A dropped sender disables this branch rather than spinning.
                            Ok(()) = stop.changed() => {}
                        }
                        continue;
                    }
                    // More than a second's worth due at once: not a tick's
                    // rounding, the broker (or this process) is too slow.
                    if behind > rate.max(1)
                        && last_lag_warning.is_none_or(|at| at.elapsed() >= LAG_WARNING_EVERY)
                    {
                        last_lag_warning = Some(Instant::now());
                        eprintln!(
                            "\nfleet-generator: {behind} events behind --rate {rate}; the broker cannot keep up, event time falls behind the wall clock"
                        );
                    }
                    usize::try_from(behind).map_or(MAX_BATCH, |b| b.min(MAX_BATCH))
                }
            };
            batch.clear();
            batch.extend(events.by_ref().take(want));
            if batch.is_empty() {
                return Ok(Produced {
                    sent,
                    stopped: false,
                });
            }
            let values = batch
                .iter()
                .map(|record| {
                    let mut value = Vec::new();
                    record.write_json(&mut value).map(|()| value)
                })
                .collect::<io::Result<Vec<_>>>()
                .context("cannot encode an event")?;
            let messages = batch
                .iter()
                .zip(&values)
                .map(|(record, value)| (record.key().as_bytes(), value.as_slice()));
            publisher
                .publish_raw(messages)
                .await
                .with_context(|| format!("failed after {sent} events were delivered"))?;
            sent += batch.len() as u64;
            progress.report(sent);
        }
    }
}

/// Events due `elapsed` after the start at `rate` events per second.
fn due_events(rate: u64, elapsed: Duration) -> u64 {
    let due = u128::from(rate).saturating_mul(elapsed.as_micros()) / 1_000_000;
    u64::try_from(due).unwrap_or(u64::MAX)
}

/// Turns the first SIGINT or SIGTERM into a stop request (the run ends once
/// the batch in flight is delivered: a clean stop) and the second into an
/// immediate exit, for a broker that no longer answers.
fn watch_for_shutdown() -> io::Result<watch::Receiver<bool>> {
    let mut signals = Signals::listen()?;
    let (stop, stopped) = watch::channel(false);
    tokio::spawn(async move {
        signals.next().await;
        eprintln!("\nfleet-generator: stopping once the batch in flight is delivered (signal again to quit at once)");
        let _ = stop.send(true);
        signals.next().await;
        eprintln!("fleet-generator: quitting; the batch in flight may be partly delivered");
        std::process::exit(130);
    });
    Ok(stopped)
}

/// SIGINT and SIGTERM (Ctrl-C only where there is no SIGTERM). Registered
/// when created, so a signal between two polls is not lost.
#[derive(Debug)]
struct Signals {
    #[cfg(unix)]
    interrupt: tokio::signal::unix::Signal,
    #[cfg(unix)]
    terminate: tokio::signal::unix::Signal,
}

impl Signals {
    fn listen() -> io::Result<Signals> {
        #[cfg(unix)]
        {
            use tokio::signal::unix::{signal, SignalKind};
            Ok(Signals {
                interrupt: signal(SignalKind::interrupt())?,
                terminate: signal(SignalKind::terminate())?,
            })
        }
        #[cfg(not(unix))]
        Ok(Signals {})
    }

    async fn next(&mut self) {
        #[cfg(unix)]
        tokio::select! {
            _ = self.interrupt.recv() => {}
            _ = self.terminate.recv() => {}
        }
        #[cfg(not(unix))]
        let _ = tokio::signal::ctrl_c().await;
    }
}

/// A progress line on stderr, only when stderr is a terminal, at most four
/// times a second. `total` is `None` for an endless run.
#[derive(Debug)]
struct Progress {
    total: Option<u64>,
    enabled: bool,
    started: SystemTime,
    last: SystemTime,
}

impl Progress {
    const INTERVAL: Duration = Duration::from_millis(250);

    fn new(total: Option<u64>) -> Progress {
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
        let mut err = io::stderr().lock();
        let rate = self.rate(written);
        let _ = match self.total {
            Some(total) => {
                let percent = written as f64 * 100.0 / total.max(1) as f64;
                write!(
                    err,
                    "\r{written}/{total} events ({percent:.0} %), {rate:.0} events/s   "
                )
            }
            None => write!(err, "\r{written} events, {rate:.0} events/s   "),
        };
        let _ = err.flush();
    }

    /// Ends the progress line with `summary`; without a terminal, prints it
    /// only when `always` (long-running modes, whose logs should say how they ended).
    fn finish(&self, summary: &str, always: bool) {
        if self.enabled {
            eprintln!("\r{summary}   ");
        } else if always {
            eprintln!("fleet-generator: {summary}");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn due_events_follow_the_rate_from_the_start() {
        assert_eq!(due_events(1_000, Duration::ZERO), 0);
        assert_eq!(due_events(1_000, Duration::from_millis(100)), 100);
        assert_eq!(due_events(3, Duration::from_millis(999)), 2);
        assert_eq!(due_events(100_000, Duration::from_secs(3600)), 360_000_000);
        assert_eq!(
            due_events(u64::MAX, Duration::from_secs(u64::MAX)),
            u64::MAX
        );
    }

    #[test]
    fn causes_already_in_the_message_are_not_repeated() {
        let inner = anyhow::anyhow!("MessageTimedOut (Local: Message timed out)");
        let err = inner
            .context("cannot produce to topic t: MessageTimedOut (Local: Message timed out)")
            .context("producing to Kafka at h:1");
        assert_eq!(
            error_chain(&err),
            "producing to Kafka at h:1: cannot produce to topic t: MessageTimedOut (Local: Message timed out)"
        );
    }

    #[test]
    fn properties_are_key_equals_value() {
        assert_eq!(
            parse_property("sasl.password=a=b"),
            Ok(("sasl.password".into(), "a=b".into()))
        );
        assert_eq!(parse_property(" acks =1"), Ok(("acks".into(), "1".into())));
        assert!(parse_property("acks").is_err());
        assert!(parse_property("=1").is_err());
    }

    fn parse(args: &[&str]) -> Result<Cli, clap::Error> {
        Cli::try_parse_from(std::iter::once("fleet-generator").chain(args.iter().copied()))
    }

    #[test]
    fn kafka_flags_need_brokers_and_exclude_a_file() {
        for flags in [
            ["--rate", "5"],
            ["--kafka-property", "acks=1"],
            ["--topic", "t"],
        ] {
            let cli = parse(&[&["--output", "-"][..], &flags[..]].concat()).unwrap();
            let Err(error) = cli.output() else {
                panic!("{flags:?} accepted with --output");
            };
            assert_eq!(error.problems.len(), 1, "{error}");
        }
        assert!(parse(&["--output", "-", "--brokers", "h:1"]).is_err());
        assert!(parse(&["--events", "5"]).is_err());
        let cli = parse(&["--output", "-"]).unwrap();
        assert!(matches!(cli.output(), Ok(Some(Output::Stdout))));
    }

    #[test]
    fn the_default_rate_is_one_event_per_vehicle_per_second_and_zero_unpaced() {
        let cli = parse(&["--brokers", "h:1", "--vehicles", "2000"]).unwrap();
        let Ok(Some(Output::Kafka(kafka))) = cli.output() else {
            panic!("not Kafka output");
        };
        assert_eq!(kafka.rate, Some(2000));
        assert_eq!(kafka.config.topic, "vehicle-events");
        assert_eq!(kafka.config.client["message.timeout.ms"], "30000");
        let cli = parse(&["--brokers", "h:1", "--rate", "0", "--topic", "raw"]).unwrap();
        let Ok(Some(Output::Kafka(kafka))) = cli.output() else {
            panic!("not Kafka output");
        };
        assert_eq!(kafka.rate, None);
        assert_eq!(kafka.config.topic, "raw");
    }

    #[test]
    fn kafka_problems_are_named_by_flag() {
        let cli = parse(&[
            "--brokers",
            "nope",
            "--kafka-property",
            "bootstrap.servers=x:1",
            "--kafka-property",
            "message.timeout.ms=5",
        ])
        .unwrap();
        let Err(error) = cli.output() else {
            panic!("accepted");
        };
        let keys: Vec<&str> = error.problems.iter().map(|p| p.key.as_str()).collect();
        assert_eq!(keys, ["brokers", "kafka_property.bootstrap.servers"]);
    }
}
