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
    Checkpoint, Msg, ReferenceChanges, RevocationFence, SourceBatch, SourceBatcher,
    WatermarkTracker, WindowBatch,
};
use fleet_drilldown::VehicleSelection;
use fleet_enricher::{
    DrilldownSelector, EnricherMetrics, ReferenceFeed, ReferenceTable, ReferenceWatch,
    VehicleCatalog,
};
use fleet_kafka::SourceMetrics;
use fleet_remote_write::RemoteWriteMetrics;
use prometheus_client::registry::Registry;
use tokio::sync::{mpsc, watch};
use tokio::task::JoinSet;
use tracing::Instrument;

use crate::settings::{SinkKind, ValidSettings};

/// Time after the source's drain deadline for its final commit and leaving
/// the group, before the remaining stages are abandoned.
const STOP_GRACE: Duration = Duration::from_secs(5);

/// The readiness condition of the reference data.
const READY_REFERENCE: &str = "reference_data";

/// Reference-topic messages (a snapshot, then deltas) waiting for the enricher.
const REFERENCE_CHANGES_CAPACITY: usize = 16;

/// How often the channels' fill is sampled.
const CHANNEL_SAMPLE_EVERY: Duration = Duration::from_secs(1);

/// Metrics of every stage, registered under the `fleet` prefix, and the
/// service-wide ones ([`TelemetryMetrics`]: start time, build, readiness,
/// channel fill).
pub struct Telemetry {
    /// The root registry: `process_start_time_seconds`, and the `fleet` sub-registry.
    pub registry: Registry,
    /// Build, readiness and channel fill.
    service: TelemetryMetrics,
    source: SourceMetrics,
    enricher: EnricherMetrics,
    aggregator: AggregatorMetrics,
    remote_write: RemoteWriteMetrics,
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
        readiness.require(READY_REFERENCE, "reference data not loaded yet");
        Telemetry {
            registry: root,
            service,
            source,
            enricher,
            aggregator,
            remote_write,
            readiness,
        }
    }
}

/// The middle of the pipeline, shared by `run` and `replay`: the channel the
/// source writes to, and the one the sink reads from.
pub struct Core {
    /// Where the source sends.
    pub head: mpsc::Sender<Msg<SourceBatch>>,
    /// What the sink receives.
    pub tail: mpsc::Receiver<WindowBatch>,
}

/// Loads the reference data named by the settings, or `fallback` when none is.
pub fn load_reference(
    settings: &ValidSettings,
    fallback: impl FnOnce() -> ReferenceTable,
) -> anyhow::Result<ReferenceTable> {
    match &settings.reference_csv {
        Some(path) => ReferenceTable::from_csv_file(path, &settings.raw.reference.dimensions)
            .with_context(|| format!("reference.csv_path {}", path.display())),
        None => Ok(fallback()),
    }
}

/// The embedded generator's fleet as reference records, every attribute kept.
fn fleet_records(fleet: &fleet_generator::Fleet) -> Vec<fleet_core::VehicleRecord> {
    fleet
        .vehicles()
        .iter()
        .map(|v| fleet_core::VehicleRecord {
            vehicle_id: v.vin.clone(),
            model: v.model.to_string(),
            attributes: v.reference_attributes(),
        })
        .collect()
}

/// Spawns the enricher and the aggregator.
pub fn spawn_core(
    settings: &ValidSettings,
    reference: &ReferenceTable,
    reference_changes: Option<mpsc::Receiver<ReferenceChanges>>,
    telemetry: &Telemetry,
    tasks: &mut JoinSet<anyhow::Result<()>>,
) -> anyhow::Result<Core> {
    let drilldown = &settings.raw.drilldown;
    let selection = VehicleSelection::from_config(drilldown).context("drilldown")?;
    let drilldown_frequency = selection.is_enabled().then_some(drilldown.frequency);
    let ch = &settings.raw.channels;
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
    let catalog = VehicleCatalog::new(reference, settings.raw.reference.unknown_vehicle)
        .with_drilldown(DrilldownSelector::new(selection));
    telemetry.readiness.ok(READY_REFERENCE);
    let metrics = telemetry.enricher.clone();
    let feed = match (
        reference_changes,
        &settings.reference_csv,
        settings.raw.reference.reload_interval_ms,
    ) {
        (Some(changes), _, _) => ReferenceFeed::Changes(changes),
        (None, Some(path), ms) if ms > 0 => ReferenceFeed::File(ReferenceWatch::new(
            path.clone(),
            Duration::from_millis(ms),
            settings.raw.reference.dimensions.clone(),
        )),
        _ => ReferenceFeed::Fixed,
    };
    tasks.spawn(
        async move {
            fleet_enricher::run(catalog, feed, enricher_in, enricher_out, metrics)
                .await
                .context("enricher")
        }
        .instrument(tracing::info_span!("enricher")),
    );
    let aggregator = AggregatorConfig {
        window: settings.window,
        output_mode: settings.raw.pipeline.output_mode,
        max_label_sets: settings.raw.windows.max_label_sets,
        drilldown: drilldown_frequency,
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

/// Spawns the configured sink reading `tail`.
pub fn spawn_sink(
    settings: &ValidSettings,
    tail: mpsc::Receiver<WindowBatch>,
    acks: watch::Sender<Option<Checkpoint>>,
    fence: Arc<RevocationFence>,
    telemetry: &Telemetry,
    tasks: &mut JoinSet<anyhow::Result<()>>,
) {
    match &settings.sink {
        SinkKind::Console => {
            tasks.spawn(
                async move {
                    crate::console::run(tail, acks, std::io::BufWriter::new(std::io::stdout()))
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
            tasks.spawn(
                async move {
                    fleet_remote_write::run_fenced(*cfg, tail, acks, metrics, readiness, fence)
                        .await
                        .context("remote-write emitter")
                }
                .instrument(tracing::info_span!("remote_write")),
            );
        }
    }
}

/// Runs the service until `shutdown` completes and the pipeline has drained.
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
    let stop_requested = |stop_rx: &watch::Receiver<bool>| {
        let mut stop_rx = stop_rx.clone();
        async move {
            let _ = stop_rx.wait_for(|stop| *stop).await;
        }
    };
    let stopped = stop_requested(&stop_rx);
    let shutdown = stop_requested(&stop_rx);
    let generator_fleet = settings
        .kafka
        .is_none()
        .then(|| fleet_generator::Fleet::from_config(&settings.raw.generator));
    let dimensions = &settings.raw.reference.dimensions;
    let reference = load_reference(&settings, || match &generator_fleet {
        Some(fleet) => ReferenceTable::from_records(&fleet_records(fleet), dimensions),
        None if settings.reference_topic.is_some() => ReferenceTable::from_records(&[], dimensions),
        None => {
            tracing::warn!(
                "No reference data configured (reference.csv_path or reference.topic): every vehicle is unknown."
            );
            ReferenceTable::from_records(&[], dimensions)
        }
    })?;
    let reference_changes = match (&settings.kafka, &settings.reference_topic) {
        (Some(kafka), Some(topic)) => {
            let (changes_tx, changes_rx) = mpsc::channel(REFERENCE_CHANGES_CAPACITY);
            let (kafka, topic) = (kafka.clone(), topic.clone());
            let readiness = telemetry.readiness.clone();
            let stop = stop_requested(&stop_rx);
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
        _ => None,
    };
    let core = spawn_core(
        &settings,
        &reference,
        reference_changes,
        &telemetry,
        &mut tasks,
    )?;
    let (acks_tx, acks_rx) = watch::channel(None);
    let fence = Arc::new(RevocationFence::default());
    spawn_sink(
        &settings,
        core.tail,
        acks_tx,
        Arc::clone(&fence),
        &telemetry,
        &mut tasks,
    );

    match (&settings.kafka, generator_fleet) {
        (Some(kafka), _) => {
            let kafka = kafka.clone();
            let batcher = SourceBatcher::new(
                WatermarkTracker::new(settings.watermarks, settings.window),
                kafka.max_batch_events,
                settings.raw.pipeline.output_mode,
            );
            let metrics = telemetry.source.clone();
            let readiness = telemetry.readiness.clone();
            fleet_kafka::source::declare_readiness(&readiness);
            let head = core.head;
            tasks.spawn(
                async move {
                    let sink = fleet_kafka::source::SinkFeedback {
                        acks: acks_rx,
                        fence,
                    };
                    fleet_kafka::source::run(
                        kafka, batcher, head, sink, metrics, readiness, shutdown,
                    )
                    .await
                    .context("Kafka source")
                }
                .instrument(tracing::info_span!("source")),
            );
        }
        (None, Some(fleet)) => {
            let generator = fleet_generator::EventGenerator::new(&fleet, &settings.raw.generator)
                .context("generator")?;
            let rate = fleet.len() as u64;
            let (rules, window, head) = (settings.watermarks, settings.window, core.head);
            let output_mode = settings.raw.pipeline.output_mode;
            tracing::info!(
                vehicles = fleet.len(),
                "No Kafka configured (kafka.brokers): running on the embedded generator."
            );
            tasks.spawn(
                async move {
                    let batcher = SourceBatcher::new(
                        WatermarkTracker::new(rules, window),
                        usize::MAX,
                        output_mode,
                    );
                    crate::embedded::run(generator, rate, batcher, head, shutdown).await;
                    Ok(())
                }
                .instrument(tracing::info_span!("source")),
            );
        }
        (None, None) => anyhow::bail!("neither Kafka nor the embedded generator is configured"),
    }

    let server = match settings.listen {
        Some(addr) => {
            let listener = fleet_core::telemetry::bind(addr)
                .await
                .with_context(|| format!("telemetry.listen {addr}"))?;
            tracing::info!(address = %listener.local_addr()?, "Serving /metrics, /healthz and /readyz.");
            let registry = Arc::new(telemetry.registry);
            let readiness = telemetry.readiness.clone();
            Some(tokio::spawn(fleet_core::telemetry::serve(
                listener, registry, readiness,
            )))
        }
        None => None,
    };

    // After a stop request the source drains for up to kafka.drain_timeout_ms
    // and commits; whatever is still running after that and a grace period
    // (an endpoint that never answers, with on_retry_exhausted = "block") is
    // abandoned: its data was not committed and is replayed after a restart.
    let deadline = Duration::from_millis(settings.raw.kafka.drain_timeout_ms) + STOP_GRACE;
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
    if let Some(server) = server {
        server.abort();
    }
    match first_error {
        Some(e) => Err(e),
        None => Ok(()),
    }
}
