//! The three measured phases, each a plain function over the same [`Corpus`].
//!
//! - [`decode_only`]: the plan's decoder on every line, the floor any
//!   pipeline pays.
//! - [`inline_pipeline`]: the whole job on the calling thread — decode, the
//!   source's batcher and watermarks, the enricher's join, the aggregator's
//!   windows, and the emitter's encoding of every closed window batch into
//!   snappy-compressed Remote-Write requests — calling the stages' pure cores
//!   exactly as their `run` loops do, with a function call where the service
//!   has a channel. Events per CPU-second here is the cost of the logic itself.
//! - [`threaded_pipeline`]: the same through the real `fleet_enricher::run` and
//!   `fleet_aggregator::run` tasks and bounded channels; the difference to the
//!   inline phase is what the channels and task hand-offs cost.
//!
//! Both pipelines return [`PipelineWork`], the counts of what they produced;
//! they must be equal (a test checks it), which proves the inline wiring is the
//! service's, and printing them keeps the optimiser from discarding the work.
//! Functions that profilers should find by name are `#[inline(never)]`.

use std::hint::black_box;
use std::sync::Arc;

use anyhow::Context;
use fleet_aggregator::{Aggregator, AggregatorConfig, AggregatorMetrics};
use fleet_core::{
    Msg, OutputMode, RecordBatch, Scope, SourceBatch, SourceBatcher, Watermark, WatermarkRules,
    WatermarkTracker, WindowBatch, WindowSpec,
};
use fleet_drilldown::{SampleFrequency, VehicleSelection};
use fleet_enricher::{DrilldownSelector, EnricherMetrics, UnknownVehiclePolicy, VehicleCatalog};
use fleet_plan::MetricPlan;
use fleet_remote_write::{compress, RemoteWriteConfig, SeriesNaming, SeriesTable};
use prometheus_client::registry::Registry;
use serde::Serialize;
use tokio::sync::mpsc;
use tokio::time::Instant;

use crate::corpus::Corpus;

/// The pipeline's settings; [`PipelineParams::service_defaults`] are the
/// service's (`config/default.toml`).
#[derive(Clone, Copy, Debug)]
pub struct PipelineParams {
    /// Tumbling window length.
    pub window: WindowSpec,
    /// Watermark lag behind the newest event, ms.
    pub out_of_orderness_ms: i64,
    /// Most events per source batch.
    pub batch_events: usize,
    /// Most samples per Remote-Write request.
    pub max_samples_per_request: usize,
    /// Capacity of each stage channel, in batches (threaded phase only).
    pub channel_capacity: usize,
    /// The per-vehicle drill-down output for every vehicle, at this frequency.
    pub drilldown: Option<SampleFrequency>,
}

/// `windows.length_ms` in `config/default.toml`.
const WINDOW_MS: i64 = 5_000;
/// `kafka.max_batch_events` in `config/default.toml`.
pub const BATCH_EVENTS: usize = 2_048;
/// `channels.*` in `config/default.toml`.
const CHANNEL_CAPACITY: usize = 16;

impl PipelineParams {
    /// What the service runs with unless configured otherwise.
    pub fn service_defaults() -> anyhow::Result<PipelineParams> {
        Ok(PipelineParams {
            window: WindowSpec::new(WINDOW_MS).context("window length")?,
            out_of_orderness_ms: WatermarkRules::defaults().out_of_orderness_ms,
            batch_events: BATCH_EVENTS,
            max_samples_per_request: RemoteWriteConfig::default().max_samples_per_request,
            channel_capacity: CHANNEL_CAPACITY,
            drilldown: None,
        })
    }

    /// The watermark rules of a bounded input, as `replay` uses them.
    fn bounded_input_rules(&self) -> WatermarkRules {
        WatermarkRules {
            out_of_orderness_ms: self.out_of_orderness_ms,
            ..WatermarkRules::defaults()
        }
        .bounded()
    }
}

/// What the decode floor did.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize)]
pub struct DecodeWork {
    /// Lines decoded into events.
    pub events: u64,
    /// Lines refused.
    pub malformed: u64,
}

/// Decodes every line with the corpus's plan, a batch of `BATCH_EVENTS`
/// records at a time, and drops the records.
#[inline(never)]
pub fn decode_only(corpus: &Corpus) -> DecodeWork {
    let decoder = corpus.decoder();
    let mut work = DecodeWork::default();
    let mut batch = RecordBatch::with_capacity(BATCH_EVENTS);
    for (offset, line) in (0i64..).zip(corpus.lines()) {
        match decoder.decode_into(line, 0, offset, &mut batch) {
            Ok(()) => work.events += 1,
            Err(_) => work.malformed += 1,
        }
        if batch.len() == BATCH_EVENTS {
            black_box(&batch);
            batch.clear();
        }
    }
    black_box(&batch);
    work
}

/// What a pipeline run produced.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize)]
pub struct PipelineWork {
    /// Lines decoded into events.
    pub events: u64,
    /// Lines refused by the decoder.
    pub malformed: u64,
    /// Events counted in an emitted window (the rest arrived late).
    pub windowed_events: u64,
    /// Window batches the aggregator emitted (one per watermark that closed windows).
    pub window_batches: u64,
    /// Window aggregates, one per window, grouping and group.
    pub aggregates: u64,
    /// Remote-Write samples.
    pub samples: u64,
    /// Of those, samples of the per-vehicle drill-down.
    pub vehicle_samples: u64,
    /// Remote-Write requests (at most `max_samples_per_request` samples each).
    pub requests: u64,
    /// Snappy-compressed request bodies, bytes: what would go on the wire.
    pub request_bytes: u64,
}

impl PipelineWork {
    /// Events dropped as late: decoded but in no emitted window (every vehicle
    /// is in the reference data, so none is dropped as unknown).
    pub fn late_events(&self) -> u64 {
        self.events.saturating_sub(self.windowed_events)
    }
}

/// The state a pipeline run starts from, built before the clock starts: the
/// catalog interns every reference vehicle when created, which the service
/// does once at start-up, not per event.
#[derive(Debug)]
pub struct Stages {
    catalog: VehicleCatalog,
    /// What the threaded phase's aggregator task is built from.
    aggregator_config: AggregatorConfig,
    /// The inline phase's aggregator.
    aggregator: Aggregator,
    sink: EncodingSink,
}

impl Stages {
    /// Fresh stages over the corpus's reference data.
    pub fn new(corpus: &Corpus, params: &PipelineParams) -> Stages {
        let selection = match params.drilldown {
            Some(_) => VehicleSelection::All,
            None => VehicleSelection::Disabled,
        };
        let aggregator_config = AggregatorConfig {
            window: params.window,
            output_mode: OutputMode::Single,
            max_label_sets: usize::MAX,
            drilldown: params.drilldown,
            plan: Arc::clone(corpus.plan()),
        };
        let metrics = AggregatorMetrics::register(&mut Registry::default());
        let aggregator = Aggregator::new(&aggregator_config, metrics);
        Stages {
            catalog: VehicleCatalog::new(corpus.reference(), UnknownVehiclePolicy::Unknown)
                .with_event_labels(corpus.plan())
                .with_drilldown(DrilldownSelector::new(selection)),
            aggregator_config,
            aggregator,
            sink: EncodingSink::new(corpus.plan(), params.max_samples_per_request),
        }
    }

    /// One message through the enricher and the aggregator, as their `run`
    /// loops handle it, and closed windows into the sink.
    fn handle(&mut self, msg: Msg<SourceBatch>) -> anyhow::Result<()> {
        let msg = match msg.into_data() {
            Ok(batch) => Msg::Data(self.catalog.enrich_batch(batch).0),
            Err(control) => control,
        };
        if let Some(batch) = self.aggregator.step(msg) {
            self.sink.emit(&batch)?;
        }
        Ok(())
    }
}

/// The emitter's pure half: each closed window batch becomes samples, split
/// into requests of at most `max_samples`, each protobuf-encoded and
/// snappy-compressed — everything `fleet_remote_write::run` does before the
/// HTTP call.
#[derive(Debug)]
struct EncodingSink {
    series: SeriesTable,
    max_samples: usize,
    work: PipelineWork,
}

impl EncodingSink {
    fn new(plan: &Arc<MetricPlan>, max_samples: usize) -> EncodingSink {
        EncodingSink {
            series: SeriesTable::new(SeriesNaming {
                plan: Arc::clone(plan),
                ..SeriesNaming::default()
            }),
            max_samples,
            work: PipelineWork::default(),
        }
    }

    fn emit(&mut self, batch: &WindowBatch) -> anyhow::Result<()> {
        self.work.window_batches += 1;
        self.work.aggregates += batch.aggregates.len() as u64;
        self.work.windowed_events += batch.aggregates.iter().map(|a| a.events).sum::<u64>();
        self.work.vehicle_samples += batch.vehicle_samples.len() as u64;
        let samples = self.series.window_batch(batch);
        for request in samples.chunks(self.max_samples) {
            let body = compress(&request.to_write_request()).context("encoding a request")?;
            self.work.samples += request.len() as u64;
            self.work.requests += 1;
            self.work.request_bytes += body.len() as u64;
            black_box(body);
        }
        black_box(&batch.checkpoint);
        Ok(())
    }
}

/// What the source half counted.
#[derive(Clone, Copy, Debug, Default)]
struct SourceWork {
    events: u64,
    malformed: u64,
}

/// The source's half of the job, as the replay source does it: decode each
/// line (offset = line number, one partition), feed the batcher, and hand each
/// message to `deliver` as soon as it is ready; the end of input flushes every
/// window.
fn feed(
    corpus: &Corpus,
    params: &PipelineParams,
    mut deliver: impl FnMut(Msg<SourceBatch>) -> anyhow::Result<()>,
) -> anyhow::Result<SourceWork> {
    let tracker = WatermarkTracker::new(params.bounded_input_rules(), params.window);
    let mut batcher = SourceBatcher::new(tracker, params.batch_events, OutputMode::Single);
    let decoder = corpus.decoder();
    let mut work = SourceWork::default();
    let now = Instant::now();
    for (offset, line) in (0i64..).zip(corpus.lines()) {
        match batcher.push_with(now, 0, |batch| decoder.decode_into(line, 0, offset, batch)) {
            Ok(()) => work.events += 1,
            Err(_) => work.malformed += 1,
        }
        while let Some(msg) = batcher.pop() {
            deliver(msg)?;
        }
    }
    batcher.push_msg(Msg::Watermark(Scope::All, Watermark::END_OF_INPUT));
    while let Some(msg) = batcher.pop() {
        deliver(msg)?;
    }
    Ok(work)
}

/// The whole job on the calling thread. `stages` are borrowed so that the
/// caller drops them after the clock stops: tearing down the catalog is not
/// per-event work.
#[inline(never)]
pub fn inline_pipeline(
    corpus: &Corpus,
    params: &PipelineParams,
    stages: &mut Stages,
) -> anyhow::Result<PipelineWork> {
    let source = feed(corpus, params, |msg| stages.handle(msg))?;
    Ok(PipelineWork {
        events: source.events,
        malformed: source.malformed,
        ..stages.sink.work
    })
}

/// The whole job through the real stage tasks on `runtime`: the calling
/// thread is the source (as `replay`'s blocking reader is), the enricher, the
/// aggregator and an encoding sink are tasks joined by bounded channels. The
/// tasks own the stages and drop them when they end, so this phase also pays
/// for freeing the catalog (a few ms for 100,000 vehicles).
#[inline(never)]
pub fn threaded_pipeline(
    corpus: &Corpus,
    params: &PipelineParams,
    stages: Stages,
    runtime: &tokio::runtime::Runtime,
) -> anyhow::Result<PipelineWork> {
    let Stages {
        catalog,
        aggregator_config,
        mut sink,
        ..
    } = stages;
    let capacity = params.channel_capacity.max(1);
    let (head, enricher_in) = mpsc::channel(capacity);
    let (enricher_out, aggregator_in) = mpsc::channel(capacity);
    let (aggregator_out, mut tail) = mpsc::channel::<WindowBatch>(capacity);
    // Registered as the service registers them, so their per-batch cost counts.
    let mut registry = Registry::with_prefix("fleet");
    let enricher_metrics = EnricherMetrics::register(registry.sub_registry_with_prefix("enricher"));
    let aggregator_metrics =
        AggregatorMetrics::register(registry.sub_registry_with_prefix("aggregator"));

    let enricher = runtime.spawn(fleet_enricher::run(
        catalog,
        fleet_enricher::ReferenceFeed::Fixed,
        enricher_in,
        enricher_out,
        enricher_metrics,
        None,
    ));
    let aggregator = runtime.spawn(fleet_aggregator::run(
        aggregator_config,
        aggregator_in,
        aggregator_out,
        aggregator_metrics,
    ));
    let sink = runtime.spawn(async move {
        while let Some(batch) = tail.recv().await {
            sink.emit(&batch)?;
        }
        anyhow::Ok(sink.work)
    });

    let fed = feed(corpus, params, |msg| {
        head.blocking_send(msg)
            .map_err(|_| anyhow::anyhow!("the enricher stopped before the end of the input"))
    });
    // Closing the head shuts the stages down in order.
    drop(head);
    let (enriched, aggregated, sunk) =
        runtime.block_on(async { (enricher.await, aggregator.await, sink.await) });
    enriched.context("enricher task")?.context("enricher")?;
    aggregated
        .context("aggregator task")?
        .context("aggregator")?;
    let work = sunk.context("sink task")??;
    let source = fed?;
    Ok(PipelineWork {
        events: source.events,
        malformed: source.malformed,
        ..work
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::corpus::Shape;
    use fleet_generator::{GeneratorConfig, WideLayout};

    fn corpus() -> Corpus {
        let config = GeneratorConfig {
            vehicles: 300,
            start_ms: Some(1_764_000_000_000),
            ..GeneratorConfig::DEFAULT
        };
        Corpus::generate(&config, 60_000, &Shape::Narrow).unwrap()
    }

    /// What the inline pipeline did with the service defaults, checked to be
    /// what the threaded one did.
    fn inline_as_threaded(corpus: &Corpus) -> PipelineWork {
        let params = PipelineParams::service_defaults().unwrap();
        let inline = inline_pipeline(corpus, &params, &mut Stages::new(corpus, &params)).unwrap();
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .build()
            .unwrap();
        let threaded =
            threaded_pipeline(corpus, &params, Stages::new(corpus, &params), &runtime).unwrap();
        assert_eq!(inline, threaded);
        inline
    }

    #[test]
    fn the_inline_and_the_threaded_pipelines_do_the_same_work() {
        let corpus = corpus();
        let params = PipelineParams::service_defaults().unwrap();
        let inline = inline_as_threaded(&corpus);
        assert_eq!(inline.events, 60_000);
        assert_eq!(decode_only(&corpus).events, 60_000);
        assert_eq!(inline.malformed, 0);
        // The default realism makes ~0.1 % late; nothing else is lost.
        assert!(
            inline.late_events() > 0 && inline.late_events() < 600,
            "{inline:?}"
        );
        // 200 s of event time for 300 vehicles: 40 windows of every group.
        assert!(inline.aggregates >= 40, "{inline:?}");
        assert!(inline.samples >= 7 * inline.aggregates && inline.samples <= 9 * inline.aggregates);
        let max = params.max_samples_per_request as u64;
        assert!(inline.requests >= inline.samples.div_ceil(max));
        assert!(inline.request_bytes > 0);
    }

    #[test]
    fn smaller_requests_split_the_same_samples() {
        let corpus = corpus();
        let params = PipelineParams::service_defaults().unwrap();
        let small = PipelineParams {
            max_samples_per_request: 10,
            ..params
        };
        let a = inline_pipeline(&corpus, &params, &mut Stages::new(&corpus, &params)).unwrap();
        let b = inline_pipeline(&corpus, &small, &mut Stages::new(&corpus, &small)).unwrap();
        assert_eq!((a.aggregates, a.samples), (b.aggregates, b.samples));
        assert!(b.requests >= a.samples / 10 && b.requests > a.requests);
    }

    #[test]
    fn the_wide_example_runs_through_both_pipelines_alike() {
        let config = GeneratorConfig {
            vehicles: 100,
            start_ms: Some(1_764_000_000_000),
            ..GeneratorConfig::DEFAULT
        };
        let layout = WideLayout::new(50).unwrap();
        let corpus = Corpus::generate(
            &config,
            6_000,
            &Shape::Wide(layout, fleet_generator::WireFormat::Json),
        )
        .unwrap();
        let inline = inline_as_threaded(&corpus);
        assert_eq!((inline.events, inline.malformed), (6_000, 0));
        assert_eq!(decode_only(&corpus).events, 6_000);
        // Twelve metrics, histograms among them: many more samples per
        // aggregate than the demo's nine.
        assert!(inline.samples > 12 * inline.aggregates, "{inline:?}");
    }
}
