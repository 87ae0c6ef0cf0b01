//! The streaming cores driven synchronously, as the service's stages call
//! them: the decoder and the source's batcher, the join, the aggregator.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

use fleet_aggregator::{Aggregator, AggregatorConfig, AggregatorMetrics};
use fleet_core::decode::Decoder;
use fleet_core::{
    FiringPoint, Msg, OutputMode, Scope, SourceBatcher, Watermark, WatermarkRules,
    WatermarkTracker, WindowAggregate, WindowSpec,
};
use fleet_enricher::{ReferenceTable, UnknownVehiclePolicy, VehicleCatalog};
use fleet_plan::MetricPlan;
use tokio::time::Instant;

pub const WINDOW_MS: i64 = 5000;
pub const OOO_MS: i64 = 2000;

/// What reaches the pipeline and how it is cut.
pub struct Input<'a> {
    /// (partition, message value) in arrival order.
    pub arrivals: &'a [(i32, Vec<u8>)],
    pub partitions: i32,
    pub max_batch: usize,
    /// VIN → model.
    pub reference: &'a HashMap<String, String>,
}

/// What one run of the cores gave.
pub struct Run {
    /// The aggregates, in the order emitted.
    pub aggregates: Vec<WindowAggregate>,
    /// Late records.
    pub late: usize,
    /// The firing points of the batches emitted, in order.
    #[allow(dead_code)] // read by properties.rs, not by declared.rs
    pub fired: Vec<FiringPoint>,
}

/// Runs `input` through the cores computing `plan`, after a rewind that
/// gives the firing points `fired` (none: a first run).
pub fn run_from_rewind(
    input: &Input<'_>,
    plan: &Arc<MetricPlan>,
    mode: OutputMode,
    fired: Vec<FiringPoint>,
) -> Run {
    let window = WindowSpec::new(WINDOW_MS).unwrap();
    let rules = WatermarkRules {
        out_of_orderness_ms: OOO_MS,
        ..WatermarkRules::defaults()
    }
    .bounded();
    let now = Instant::now();
    let mut tracker = WatermarkTracker::new(rules, window);
    for p in 0..input.partitions {
        tracker.assign(p, now);
    }
    let mut batcher = SourceBatcher::new(tracker, input.max_batch, mode);
    let decoder = Decoder::new(&plan.input);
    let table = ReferenceTable::from_pairs(input.reference.clone());
    let mut catalog =
        VehicleCatalog::new(&table, UnknownVehiclePolicy::Unknown).with_event_labels(plan);
    let mut registry = prometheus_client::registry::Registry::default();
    let metrics = AggregatorMetrics::register(&mut registry);
    let config = AggregatorConfig {
        window,
        output_mode: mode,
        max_label_sets: usize::MAX,
        drilldown: None,
        plan: Arc::clone(plan),
    };
    let mut aggregator = Aggregator::new(&config, metrics);
    aggregator.step(Msg::Rewind {
        written_through: BTreeMap::new(),
        epoch: 0,
        fired,
    });
    let mut out = Vec::new();
    let mut points = Vec::new();
    let mut drain = |batcher: &mut SourceBatcher, out: &mut Vec<WindowAggregate>| {
        while let Some(msg) = batcher.pop() {
            let msg = match msg.into_data() {
                Ok(batch) => Msg::Data(catalog.enrich_batch(batch).0),
                Err(control) => control,
            };
            if let Some(batch) = aggregator.step(msg) {
                out.extend(batch.aggregates);
                points.extend(batch.firing_points);
            }
        }
    };
    let mut offsets: HashMap<i32, i64> = HashMap::new();
    for (p, value) in input.arrivals {
        let offset = offsets.entry(*p).or_default();
        // A malformed record is skipped here as the source skips it.
        let _ = batcher.push_with(now, 0, |b| decoder.decode_into(value, *p, *offset, b));
        *offset += 1;
        drain(&mut batcher, &mut out);
    }
    batcher.push_msg(Msg::Watermark(Scope::All, Watermark::END_OF_INPUT));
    drain(&mut batcher, &mut out);
    let late = registry_value(&registry, "late_events_total");
    Run {
        aggregates: out,
        late,
        fired: points,
    }
}

/// A counter's value in the text exposition of `registry`.
fn registry_value(registry: &prometheus_client::registry::Registry, name: &str) -> usize {
    let mut text = String::new();
    prometheus_client::encoding::text::encode(&mut text, registry).unwrap();
    text.lines()
        .find_map(|line| line.strip_prefix(name)?.trim().parse::<f64>().ok())
        .unwrap_or(0.0) as usize
}
