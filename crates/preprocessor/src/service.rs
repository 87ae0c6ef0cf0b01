//! Wiring: builds the channels, spawns one task per stage, and waits.
//!
//! ```text
//! source ──Msg<SourceBatch>──▶ enricher ──Msg<EnrichedBatch>──▶ aggregator ──WindowBatch──▶ sink
//!   ▲                                                                                          │
//!   └───────────────────────────── accepted Checkpoint (watch) ────────────────────────────────┘
//! ```
//!
//! Every channel is bounded: a slow sink fills them and the source pauses.
//! Shutdown is closing the head: the source drops its sender, each stage sees
//! the end of its input and returns, and the sink drains and returns last.

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use fleet_aggregator::{AggregatorConfig, AggregatorMetrics};
use fleet_core::telemetry::{Channel, Readiness, TelemetryMetrics};
use fleet_core::{
    Checkpoint, DeadLetterQueue, FiringLog, Msg, OutputMode, ReferenceChanges, RevocationFence,
    SourceBatch, SourceBatcher, WatermarkTracker, WindowBatch,
};
use fleet_drilldown::VehicleSelection;
use fleet_enricher::{
    DrilldownSelector, EnricherMetrics, ReferenceFeed, ReferenceSource, ReferenceTable,
    ReferenceWatch, UnknownVehicleLetters, VehicleCatalog,
};
use fleet_kafka::{DeadLetterMetrics, KafkaDeadLetters, SourceMetrics};
use fleet_remote_write::RemoteWriteMetrics;
use prometheus_client::registry::Registry;
use tokio::sync::{mpsc, watch};
use tokio::task::JoinSet;
use tracing::Instrument;

use crate::settings::{SinkKind, SourceKind, ValidSettings};

/// Time after the source's drain deadline for its final commit and leaving
/// the group, before the remaining stages are abandoned.
const STOP_GRACE: Duration = Duration::from_secs(5);

/// The readiness condition of the reference data.
const READY_REFERENCE: &str = "reference_data";

/// Reference-topic messages (a snapshot, then deltas) waiting for the enricher.
const REFERENCE_CHANGES_CAPACITY: usize = 16;

/// Most events per batch of the file source.
const REPLAY_BATCH: usize = 4096;

/// How often the channels' fill is sampled.
const CHANNEL_SAMPLE_EVERY: Duration = Duration::from_secs(1);

/// Metrics of every stage, registered under the `fleet` prefix, and the
/// service-wide ones ([`TelemetryMetrics`]: start time, build, readiness,
/// channel fill).
pub struct Telemetry {
    /// The root registry: `process_start_time_seconds`, and the `fleet` sub-registry.
    pub registry: Arc<Registry>,
    /// Build, readiness and channel fill.
    service: TelemetryMetrics,
    source: SourceMetrics,
    enricher: EnricherMetrics,
    aggregator: AggregatorMetrics,
    remote_write: RemoteWriteMetrics,
    dead_letter: DeadLetterMetrics,
    /// What `/readyz` reports.
    pub readiness: Arc<Readiness>,
}

impl Telemetry {
    /// Registers every stage's metrics.
    pub fn new() -> Self {
        let readiness = Arc::new(Readiness::default());
        let mut root = Registry::default();
        let service = TelemetryMetrics::register(&mut root, env!("CARGO_PKG_VERSION"), &readiness);
        let registry = root.sub_registry_with_prefix("fleet");
        let source = SourceMetrics::register(registry.sub_registry_with_prefix("source"));
        let enricher = EnricherMetrics::register(registry.sub_registry_with_prefix("enricher"));
        let aggregator =
            AggregatorMetrics::register(registry.sub_registry_with_prefix("aggregator"));
        let remote_write =
            RemoteWriteMetrics::register(registry.sub_registry_with_prefix("remote_write"));
        let dead_letter =
            DeadLetterMetrics::register(registry.sub_registry_with_prefix("dead_letter"));
        readiness.require(READY_REFERENCE, "reference data not loaded yet");
        Telemetry {
            registry: Arc::new(root),
            service,
            source,
            enricher,
            aggregator,
            remote_write,
            dead_letter,
            readiness,
        }
    }
}

/// The middle of the pipeline: the channel the source writes to, and the one
/// the sink reads from.
struct Core {
    /// Where the source sends.
    head: mpsc::Sender<Msg<SourceBatch>>,
    /// What the sink receives.
    tail: mpsc::Receiver<WindowBatch>,
}

/// Loads the reference table the settings name; the embedded source's fleet
/// stands in when none is named.
fn load_reference(
    settings: &ValidSettings,
    fleet: Option<&fleet_generator::Fleet>,
) -> anyhow::Result<ReferenceTable> {
    let dimensions = &settings.reference.dimensions;
    Ok(match (&settings.reference.source, fleet) {
        (ReferenceSource::Csv { path, .. }, _) => {
            ReferenceTable::from_csv_file(path, dimensions)
                .with_context(|| format!("reference.csv_path {}", path.display()))?
        }
        (ReferenceSource::None, Some(fleet)) => {
            ReferenceTable::from_records(&fleet.reference_records(), dimensions)
        }
        (ReferenceSource::Topic(_), _) => ReferenceTable::from_records(&[], dimensions),
        (ReferenceSource::None, None) => {
            tracing::warn!(
                "No reference data configured (reference.csv_path or reference.topic): every vehicle is unknown."
            );
            ReferenceTable::from_records(&[], dimensions)
        }
    })
}

/// Spawns the enricher and the aggregator.
fn spawn_core(
    settings: &ValidSettings,
    reference: &ReferenceTable,
    reference_changes: Option<mpsc::Receiver<ReferenceChanges>>,
    letters: Option<Arc<dyn DeadLetterQueue>>,
    telemetry: &Telemetry,
    tasks: &mut JoinSet<anyhow::Result<()>>,
) -> anyhow::Result<Core> {
    let selection = VehicleSelection::from_config(&settings.drilldown).context("drilldown")?;
    let drilldown_frequency = selection
        .is_enabled()
        .then_some(settings.drilldown.frequency);
    let ch = &settings.channels;
    let (head, enricher_in) = mpsc::channel(ch.source_to_enricher);
    let (enricher_out, aggregator_in) = mpsc::channel(ch.enricher_to_aggregator);
    let (aggregator_out, tail) = mpsc::channel(ch.aggregator_to_sink);
    spawn_channel_sampler(
        vec![
            (Channel::SourceToEnricher, probe(&head)),
            (Channel::EnricherToAggregator, probe(&enricher_out)),
            (Channel::AggregatorToSink, probe(&aggregator_out)),
        ],
        telemetry.service.clone(),
    );
    let catalog = VehicleCatalog::new(reference, settings.reference.unknown_vehicle)
        .with_event_labels(&settings.plan)
        .with_drilldown(DrilldownSelector::new(selection));
    telemetry.readiness.ok(READY_REFERENCE);
    let metrics = telemetry.enricher.clone();
    let letters =
        letters.and_then(|queue| UnknownVehicleLetters::new(queue, Arc::clone(&settings.plan)));
    let feed = match (reference_changes, &settings.reference.source) {
        (Some(changes), _) => ReferenceFeed::Changes(changes),
        (
            None,
            ReferenceSource::Csv {
                path,
                reload: Some(every),
            },
        ) => ReferenceFeed::File(ReferenceWatch::new(
            path.clone(),
            *every,
            settings.reference.dimensions.clone(),
        )),
        _ => ReferenceFeed::Fixed,
    };
    tasks.spawn(
        async move {
            fleet_enricher::run(catalog, feed, enricher_in, enricher_out, metrics, letters)
                .await
                .context("enricher")
        }
        .instrument(tracing::info_span!("enricher")),
    );
    let aggregator = AggregatorConfig {
        window: settings.window,
        output_mode: settings.output_mode,
        max_label_sets: settings.max_label_sets,
        drilldown: drilldown_frequency,
        plan: Arc::clone(&settings.plan),
    };
    let metrics = telemetry.aggregator.clone();
    tasks.spawn(
        async move {
            fleet_aggregator::run(aggregator, aggregator_in, aggregator_out, metrics)
                .await
                .context("aggregator")
        }
        .instrument(tracing::info_span!("aggregator")),
    );
    Ok(Core { head, tail })
}

/// Reads a channel's free and total capacity, or `None` once it is closed.
type Probe = Box<dyn Fn() -> Option<(usize, usize)> + Send>;

/// A probe of the channel `sender` sends on. It holds the sender weakly:
/// the sampler must not keep a channel open, as shutdown is the head closing.
fn probe<T: Send + 'static>(sender: &mpsc::Sender<T>) -> Probe {
    let weak = sender.downgrade();
    Box::new(move || {
        weak.upgrade()
            .map(|sender| (sender.capacity(), sender.max_capacity()))
    })
}

/// Samples the free capacity of each channel every second into
/// `fleet_channel_capacity_remaining{channel}` (STYLE 5: visible fill), until
/// every one is closed.
fn spawn_channel_sampler(channels: Vec<(Channel, Probe)>, metrics: TelemetryMetrics) {
    tokio::spawn(async move {
        let mut every = tokio::time::interval(CHANNEL_SAMPLE_EVERY);
        every.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            every.tick().await;
            let mut open = false;
            for (channel, probe) in &channels {
                // A closed channel keeps its last sample.
                let (remaining, capacity) = match probe() {
                    Some(sample) => {
                        open = true;
                        sample
                    }
                    None => continue,
                };
                metrics.channel_sampled(*channel, remaining, capacity);
            }
            if !open {
                return;
            }
        }
    });
}

/// What the sink shares with a Kafka source: the revocation fence, and in
/// the single output mode the log of firing points to store before sending.
struct SharedWithSource {
    fence: Arc<RevocationFence>,
    firing: Option<Arc<FiringLog>>,
}

/// Spawns the configured sink reading `tail`.
fn spawn_sink(
    settings: &ValidSettings,
    tail: mpsc::Receiver<WindowBatch>,
    acks: watch::Sender<Option<Checkpoint>>,
    shared: SharedWithSource,
    letters: Option<Arc<dyn DeadLetterQueue>>,
    telemetry: &Telemetry,
    tasks: &mut JoinSet<anyhow::Result<()>>,
) {
    let plan = Arc::clone(&settings.plan);
    match &settings.sink {
        SinkKind::Console => {
            tasks.spawn(
                async move {
                    let stdout = std::io::BufWriter::new(std::io::stdout());
                    crate::console::run(tail, acks, &plan, stdout)
                        .await
                        .context("console sink")?;
                    Ok(())
                }
                .instrument(tracing::info_span!("console")),
            );
        }
        SinkKind::RemoteWrite(cfg) => {
            let cfg = cfg.clone();
            let metrics = telemetry.remote_write.clone();
            let readiness = telemetry.readiness.clone();
            let SharedWithSource { fence, firing } = shared;
            tasks.spawn(
                async move {
                    fleet_remote_write::run_fenced(
                        *cfg, plan, tail, acks, metrics, readiness, fence, letters, firing,
                    )
                    .await
                    .context("remote-write emitter")
                }
                .instrument(tracing::info_span!("remote_write")),
            );
        }
    }
}

/// Runs the pipeline until `shutdown` completes and it has drained, or, on
/// a bounded input, until the input has ended and every window is written.
pub async fn run(
    settings: ValidSettings,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> anyhow::Result<()> {
    let telemetry = Telemetry::new();
    let mut tasks = JoinSet::new();
    // The stop request reaches the source (which closes the head of the
    // pipeline) and starts the deadline by which every stage must be done.
    let (stop_tx, stop_rx) = watch::channel(false);
    tokio::spawn(async move {
        shutdown.await;
        let _ = stop_tx.send(true);
    });
    let fleet = match &settings.source {
        SourceKind::Embedded(generator) => Some(fleet_generator::Fleet::from_config(generator)),
        SourceKind::Kafka(_) | SourceKind::File(_) => None,
    };
    let reference = load_reference(&settings, fleet.as_ref())?;
    let reference_changes = spawn_reference_topic(&settings, &telemetry, &stop_rx, &mut tasks);
    let letters = match (&settings.source, &settings.dead_letter) {
        (SourceKind::Kafka(kafka), Some((config, causes))) => Some(
            KafkaDeadLetters::new(kafka, config, causes.clone(), telemetry.dead_letter.clone())
                .context("dead-letter topic")?,
        ),
        _ => None,
    };
    let queue = letters
        .clone()
        .map(|l| Arc::new(l) as Arc<dyn DeadLetterQueue>);
    let core = spawn_core(
        &settings,
        &reference,
        reference_changes,
        queue.clone(),
        &telemetry,
        &mut tasks,
    )?;
    let (acks_tx, acks_rx) = watch::channel(None);
    let fence = Arc::new(RevocationFence::default());
    // The single output mode's windows close where the reads of the
    // partitions happened to interleave: the sink has those points stored
    // with a commit before it sends them, so a replay closes them there.
    let firing = (settings.output_mode == OutputMode::Single
        && matches!(settings.source, SourceKind::Kafka(_)))
    .then(|| Arc::new(FiringLog::default()));
    spawn_sink(
        &settings,
        core.tail,
        acks_tx,
        SharedWithSource {
            fence: Arc::clone(&fence),
            firing: firing.clone(),
        },
        queue,
        &telemetry,
        &mut tasks,
    );
    let feedback = fleet_kafka::source::SinkFeedback {
        acks: acks_rx,
        fence,
        firing,
    };
    spawn_source(
        &settings,
        fleet,
        core.head,
        feedback,
        letters,
        &telemetry,
        stop_requested(&stop_rx),
        &mut tasks,
    )?;
    let server = serve_telemetry(&settings, &telemetry)?;
    // After a stop request the source drains for up to kafka.drain_timeout_ms
    // and commits; whatever is still running after that and a grace period
    // (an endpoint that never answers, with on_retry_exhausted = "block") is
    // abandoned: its data was not committed and is replayed after a restart.
    let result = supervise(
        tasks,
        stop_requested(&stop_rx),
        settings.drain_timeout + STOP_GRACE,
    )
    .await;
    drop(server);
    result
}

/// Completes once a stop is requested.
fn stop_requested(stop_rx: &watch::Receiver<bool>) -> impl Future<Output = ()> + Send + 'static {
    let mut stop_rx = stop_rx.clone();
    async move {
        let _ = stop_rx.wait_for(|stop| *stop).await;
    }
}

/// Follows the reference topic, when one is configured, into the enricher.
fn spawn_reference_topic(
    settings: &ValidSettings,
    telemetry: &Telemetry,
    stop_rx: &watch::Receiver<bool>,
    tasks: &mut JoinSet<anyhow::Result<()>>,
) -> Option<mpsc::Receiver<ReferenceChanges>> {
    let (SourceKind::Kafka(kafka), ReferenceSource::Topic(topic)) =
        (&settings.source, &settings.reference.source)
    else {
        return None;
    };
    let (changes_tx, changes_rx) = mpsc::channel(REFERENCE_CHANGES_CAPACITY);
    let (kafka, topic) = (kafka.clone(), topic.clone());
    let readiness = telemetry.readiness.clone();
    let stop = stop_requested(stop_rx);
    tasks.spawn(
        async move {
            fleet_kafka::reference::follow(&kafka, &topic, changes_tx, readiness, stop)
                .await
                .with_context(|| format!("reference topic {topic}"))
        }
        .instrument(tracing::info_span!("reference_topic")),
    );
    Some(changes_rx)
}

/// Spawns the configured source writing to `head`.
#[allow(clippy::too_many_arguments)]
fn spawn_source(
    settings: &ValidSettings,
    fleet: Option<fleet_generator::Fleet>,
    head: mpsc::Sender<Msg<SourceBatch>>,
    sink: fleet_kafka::source::SinkFeedback,
    letters: Option<KafkaDeadLetters>,
    telemetry: &Telemetry,
    shutdown: impl Future<Output = ()> + Send + 'static,
    tasks: &mut JoinSet<anyhow::Result<()>>,
) -> anyhow::Result<()> {
    let tracker = WatermarkTracker::new(settings.watermarks, settings.window);
    let mode = settings.output_mode;
    let decoder = settings.decoder();
    match &settings.source {
        SourceKind::Kafka(kafka) => {
            let reader = settings
                .record_reader()
                .map_err(anyhow::Error::msg)
                .context("schema registry")?;
            let kafka = (**kafka).clone();
            let batcher = SourceBatcher::new(tracker, kafka.max_batch_events, mode);
            let metrics = telemetry.source.clone();
            let readiness = telemetry.readiness.clone();
            fleet_kafka::source::declare_readiness(&readiness);
            tasks.spawn(
                async move {
                    fleet_kafka::source::run(
                        kafka, reader, batcher, head, sink, metrics, readiness, letters, shutdown,
                    )
                    .await
                    .context("Kafka source")
                }
                .instrument(tracing::info_span!("source")),
            );
        }
        SourceKind::Embedded(generator) => {
            let fleet = fleet.context("the embedded source has no fleet")?;
            let events =
                fleet_generator::EventGenerator::new(&fleet, generator).context("generator")?;
            let rate = fleet.len() as u64;
            let batcher = SourceBatcher::new(tracker, usize::MAX, mode);
            tracing::info!(
                vehicles = fleet.len(),
                "No Kafka configured (kafka.brokers): running on the embedded generator."
            );
            tasks.spawn(
                async move {
                    fleet_generator::live::run(events, rate, decoder, batcher, head, shutdown)
                        .await;
                    Ok(())
                }
                .instrument(tracing::info_span!("source")),
            );
        }
        SourceKind::File(path) => {
            let path = path.clone();
            let batcher = SourceBatcher::new(tracker, REPLAY_BATCH, mode);
            tasks.spawn(
                async move {
                    let stats = fleet_replay::run(path, decoder, batcher, head).await?;
                    let malformed: u64 = stats.malformed.values().sum();
                    tracing::info!(events = stats.events, malformed, "Replay finished.");
                    Ok(())
                }
                .instrument(tracing::info_span!("source")),
            );
        }
    }
    Ok(())
}

/// Starts `/metrics`, `/healthz` and `/readyz` on `telemetry.listen`, if set.
fn serve_telemetry(
    settings: &ValidSettings,
    telemetry: &Telemetry,
) -> anyhow::Result<Option<fleet_core::telemetry::TelemetryServer>> {
    let Some(addr) = settings.listen else {
        return Ok(None);
    };
    let server = fleet_core::telemetry::TelemetryServer::start(
        addr,
        Arc::clone(&telemetry.registry),
        telemetry.readiness.clone(),
    )
    .with_context(|| format!("telemetry.listen {addr}"))?;
    tracing::info!(address = %server.local_addr(), "Serving /metrics, /healthz and /readyz.");
    Ok(Some(server))
}

/// Waits for every stage; the first failure is the result. Once `stopped`
/// completes, stages still running `deadline` later are abandoned.
async fn supervise(
    mut tasks: JoinSet<anyhow::Result<()>>,
    stopped: impl Future<Output = ()>,
    deadline: Duration,
) -> anyhow::Result<()> {
    let mut stopped = std::pin::pin!(async move {
        stopped.await;
        tokio::time::sleep(deadline).await;
    });
    let mut first_error = None;
    loop {
        tokio::select! {
            joined = tasks.join_next() => {
                let Some(joined) = joined else { break };
                let result = joined.map_err(anyhow::Error::from).and_then(|r| r);
                if let Err(e) = result {
                    tracing::error!(
                        error = format!("{e:#}"),
                        "A stage failed; the pipeline stops."
                    );
                    first_error.get_or_insert(e);
                }
            }
            () = &mut stopped => {
                tracing::warn!(
                    deadline_ms = deadline.as_millis() as u64,
                    "Stages still running at the shutdown deadline are abandoned; what they held was not committed and will be replayed."
                );
                tasks.abort_all();
                while tasks.join_next().await.is_some() {}
                break;
            }
        }
    }
    match first_error {
        Some(e) => Err(e),
        None => Ok(()),
    }
}
