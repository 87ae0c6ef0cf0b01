#![allow(clippy::unwrap_used, clippy::expect_used)]
//! Property tests of the event-time rules: the source's batcher, the join and
//! the windows, driven synchronously, against the batch oracle of
//! fleet-testkit and a small sequential model of the late rule.
//!
//! Whatever the fleet, the arrival order, the number of partitions, their
//! interleaving and the batch sizes:
//! - with disorder within the bound, the output equals the batch computation;
//! - with disorder beyond it, exactly the events the design's rule calls late
//!   are dropped, and the rest equals the batch computation.

use std::collections::{BTreeMap, HashMap};
use std::time::Duration;

use fleet_aggregator::TumblingWindows;
use fleet_core::{
    EventType, Msg, RawEvent, SourceBatcher, SourceEvent, Watermark, WatermarkRules,
    WatermarkTracker, WindowAggregate, WindowSpec,
};
use fleet_enricher::{ReferenceTable, UnknownVehiclePolicy, VehicleCatalog};
use fleet_testkit::oracle;
use proptest::prelude::*;
use tokio::time::Instant;

const WINDOW_MS: i64 = 5000;
const OOO_MS: i64 = 2000;
const START: i64 = 1_764_000_000_000;

/// One generated scenario.
#[derive(Clone, Debug)]
struct Scenario {
    /// (partition, event) in the order they reach the pipeline.
    arrivals: Vec<(i32, RawEvent)>,
    partitions: i32,
    max_batch: usize,
    reference: HashMap<String, String>,
}

fn vin(v: u32) -> String {
    format!("VIN{v:05}")
}

/// Events of `vehicles` vehicles at increasing times, delayed by up to
/// `max_delay_ms`, split over partitions by vehicle and interleaved at random.
fn scenario(max_delay_ms: i64) -> impl Strategy<Value = Scenario> {
    (1u32..12, 1i32..5, 1usize..40, 1usize..250).prop_flat_map(
        move |(vehicles, partitions, max_batch, n)| {
            let event = (
                0..vehicles,
                0u8..3,
                prop_oneof![Just(0i64), -3000i64..6000],
                1i64..300,
                0..=max_delay_ms,
            );
            (
                proptest::collection::vec(event, n),
                proptest::collection::vec(any::<u32>(), n),
                Just((vehicles, partitions, max_batch)),
            )
                .prop_map(move |(raw, picks, (vehicles, partitions, max_batch))| {
                    let mut t = START + 1234;
                    let mut timed = Vec::with_capacity(raw.len());
                    for (i, (v, kind, m, step, delay)) in raw.into_iter().enumerate() {
                        t += step;
                        let event_type = match kind {
                            0 => EventType::IcRpm,
                            1 => EventType::ElectricRpm,
                            _ => EventType::Warnings,
                        };
                        let measurement = if event_type == EventType::Warnings {
                            m.abs() % 4
                        } else {
                            m
                        };
                        let event = RawEvent {
                            event_type,
                            vehicle_id: vin(v).into(),
                            region: ["UK", "DE", "FR"][(v % 3) as usize].into(),
                            timestamp: t,
                            measurement,
                        };
                        // Arrival: event time plus delay; ties keep generation order.
                        timed.push((t + delay, i, event));
                    }
                    timed.sort_by_key(|(arrival, i, _)| (*arrival, *i));
                    // Per-partition queues in arrival order, merged at random.
                    let mut queues: Vec<std::collections::VecDeque<RawEvent>> =
                        vec![Default::default(); partitions as usize];
                    for (_, _, e) in timed {
                        let p =
                            e.vehicle_id.bytes().map(u32::from).sum::<u32>() % partitions as u32;
                        queues[p as usize].push_back(e);
                    }
                    let mut arrivals = Vec::new();
                    let mut pick = picks.into_iter().cycle();
                    while queues.iter().any(|q| !q.is_empty()) {
                        let nonempty: Vec<usize> = (0..queues.len())
                            .filter(|q| !queues[*q].is_empty())
                            .collect();
                        let q = nonempty[pick.next().unwrap_or(0) as usize % nonempty.len()];
                        if let Some(e) = queues[q].pop_front() {
                            arrivals.push((q as i32, e));
                        }
                    }
                    // Two vehicles out of three are in the reference data.
                    let reference = (0..vehicles)
                        .filter(|v| v % 3 != 2)
                        .map(|v| {
                            (
                                vin(v),
                                ["Nebulara", "Aurelis"][(v % 2) as usize].to_string(),
                            )
                        })
                        .collect();
                    Scenario {
                        arrivals,
                        partitions,
                        max_batch,
                        reference,
                    }
                })
        },
    )
}

/// Runs the pipeline's synchronous cores over the scenario; returns the
/// aggregates and the number of late events.
fn run_pipeline(s: &Scenario) -> (Vec<WindowAggregate>, usize) {
    let window = WindowSpec::new(WINDOW_MS).unwrap();
    let rules = WatermarkRules {
        out_of_orderness_ms: OOO_MS,
        idle_timeout: Duration::MAX,
        all_idle_close_after: None,
    };
    let now = Instant::now();
    let mut tracker = WatermarkTracker::new(rules, window);
    for p in 0..s.partitions {
        tracker.assign(p, now);
    }
    let mut batcher = SourceBatcher::new(tracker, s.max_batch);
    let table = ReferenceTable::from_pairs(s.reference.clone());
    let mut catalog = VehicleCatalog::new(&table, UnknownVehiclePolicy::Unknown);
    let mut windows = TumblingWindows::new(window);
    let mut out = Vec::new();
    let mut late = 0;
    let mut offsets: HashMap<i32, i64> = HashMap::new();
    let mut drain =
        |batcher: &mut SourceBatcher, out: &mut Vec<WindowAggregate>, late: &mut usize| {
            while let Some(msg) = batcher.pop() {
                match msg {
                    Msg::Data(batch) => {
                        let (enriched, _) = catalog.enrich_batch(batch);
                        *late += windows.record_batch(enriched).late_lags_ms.len();
                    }
                    Msg::Watermark(w) => out.extend(windows.advance(w)),
                    Msg::PartitionWatermark(..) => unreachable!("single output mode"),
                    Msg::Rewind {
                        written_through, ..
                    } => {
                        windows.rewind(written_through.values().max().copied());
                    }
                }
            }
        };
    for (p, event) in &s.arrivals {
        let offset = offsets.entry(*p).or_default();
        batcher.push(
            SourceEvent {
                partition: *p,
                offset: *offset,
                event: event.clone(),
            },
            now,
            0,
        );
        *offset += 1;
        drain(&mut batcher, &mut out, &mut late);
    }
    batcher.push_msg(Msg::Watermark(Watermark::END_OF_INPUT));
    drain(&mut batcher, &mut out, &mut late);
    (out, late)
}

/// The design's late rule, event by event: the pipeline watermark is the
/// minimum over partitions of `max ts − ooo − 1` (a partition without data
/// holds it back) and never goes back; an event is late iff it arrives after
/// its window's end − 1 was reached.
fn late_by_model(s: &Scenario) -> Vec<bool> {
    let mut max: BTreeMap<i32, i64> = BTreeMap::new();
    let mut watermark: Option<i64> = None;
    s.arrivals
        .iter()
        .map(|(p, e)| {
            let end = e.timestamp - e.timestamp.rem_euclid(WINDOW_MS) + WINDOW_MS;
            let late = watermark.is_some_and(|w| w >= end - 1);
            let m = max.entry(*p).or_insert(e.timestamp);
            *m = (*m).max(e.timestamp);
            if max.len() == s.partitions as usize {
                let candidate = max.values().min().map(|m| m - OOO_MS - 1);
                watermark = watermark.max(candidate);
            }
            late
        })
        .collect()
}

fn assert_matches_oracle(out: &[WindowAggregate], on_time: &[RawEvent], s: &Scenario) {
    let got = oracle::from_aggregates(out);
    assert_eq!(
        got.len(),
        out.len(),
        "each (window, model, region) emitted once"
    );
    let want = oracle::expected_windows(on_time, &s.reference, WINDOW_MS, None);
    assert_eq!(got, want);
    let ends: Vec<i64> = out.iter().map(|a| a.window_end).collect();
    assert!(
        ends.windows(2).all(|w| w[0] <= w[1]),
        "windows emitted in time order"
    );
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(1000))]

    #[test]
    fn within_the_bound_output_equals_the_batch_computation(s in scenario(OOO_MS - 1)) {
        let (out, late) = run_pipeline(&s);
        prop_assert_eq!(late, 0);
        let events: Vec<RawEvent> = s.arrivals.iter().map(|(_, e)| e.clone()).collect();
        assert_matches_oracle(&out, &events, &s);
    }

    #[test]
    fn beyond_the_bound_exactly_the_late_events_are_dropped(s in scenario(4 * OOO_MS)) {
        let (out, late) = run_pipeline(&s);
        let verdicts = late_by_model(&s);
        prop_assert_eq!(late, verdicts.iter().filter(|l| **l).count());
        let on_time: Vec<RawEvent> = s
            .arrivals
            .iter()
            .zip(&verdicts)
            .filter(|(_, late)| !**late)
            .map(|((_, e), _)| e.clone())
            .collect();
        assert_matches_oracle(&out, &on_time, &s);
    }
}
