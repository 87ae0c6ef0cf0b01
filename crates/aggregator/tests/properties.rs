#![allow(clippy::unwrap_used, clippy::expect_used)]
//! Property tests of the event-time rules: the source's batcher, the join and
//! the windows, driven synchronously, against the batch oracle of
//! fleet-testkit and a small sequential model of the late rule.
//!
//! In both output modes, and whatever the fleet, the arrival order, the
//! number of partitions, their interleaving and the batch sizes (in the
//! partitioned mode each partition's series against the batch computation
//! over that partition's events):
//! - with disorder within the bound, the output equals the batch computation;
//! - with disorder beyond it, exactly the events the design's rule calls late
//!   are dropped, and the rest equals the batch computation;
//! - in the single output mode, a replay that reads the same partitions in
//!   another interleaving, given the first run's firing points, writes the
//!   very same windows.

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::sync::Arc;

use fleet_core::{EventType, OutputMode, RawEvent, WindowAggregate};
use fleet_plan::MetricPlan;
use fleet_testkit::oracle;
use proptest::prelude::*;

mod common;

use common::{OOO_MS, WINDOW_MS};

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
                    let mut queues: Vec<VecDeque<RawEvent>> =
                        vec![Default::default(); partitions as usize];
                    for (_, _, e) in timed {
                        let p =
                            e.vehicle_id.bytes().map(u32::from).sum::<u32>() % partitions as u32;
                        queues[p as usize].push_back(e);
                    }
                    let arrivals = merged(queues, &picks);
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
fn run_pipeline(s: &Scenario, mode: OutputMode) -> (Vec<WindowAggregate>, usize) {
    let run = run_from(s, mode, Vec::new());
    (run.aggregates, run.late)
}

/// Runs the cores over the scenario after a rewind that gives `fired`.
fn run_from(s: &Scenario, mode: OutputMode, fired: Vec<fleet_core::FiringPoint>) -> common::Run {
    let arrivals: Vec<(i32, Vec<u8>)> = s
        .arrivals
        .iter()
        .map(|(p, e)| (*p, e.to_json().into_bytes()))
        .collect();
    let input = common::Input {
        arrivals: &arrivals,
        partitions: s.partitions,
        max_batch: s.max_batch,
        reference: &s.reference,
    };
    common::run_from_rewind(&input, &Arc::new(MetricPlan::reference_demo()), mode, fired)
}

/// The design's late rule, event by event. Single output mode: the pipeline
/// watermark is the minimum over partitions of `max ts − ooo − 1` (a
/// partition without data holds it back) and never goes back. Partitioned:
/// each partition's own `max ts − ooo − 1`. An event is late iff it arrives
/// after its window's end − 1 was reached.
fn late_by_model(s: &Scenario, mode: OutputMode) -> Vec<bool> {
    let mut max: BTreeMap<i32, i64> = BTreeMap::new();
    let mut watermark: Option<i64> = None;
    s.arrivals
        .iter()
        .map(|(p, e)| {
            let end = e.timestamp - e.timestamp.rem_euclid(WINDOW_MS) + WINDOW_MS;
            let late = match mode {
                OutputMode::Single => watermark.is_some_and(|w| w >= end - 1),
                OutputMode::Partitioned => max.get(p).is_some_and(|m| m - OOO_MS > end - 1),
            };
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

/// Single output mode: every series against the batch computation over every
/// on-time event. Partitioned: each partition's series against the batch
/// computation over that partition's on-time events.
fn assert_matches_oracle(
    out: &[WindowAggregate],
    on_time: &[(i32, RawEvent)],
    s: &Scenario,
    mode: OutputMode,
) {
    let scopes: Vec<Option<i32>> = match mode {
        OutputMode::Single => vec![None],
        OutputMode::Partitioned => (0..s.partitions).map(Some).collect(),
    };
    for scope in scopes {
        let mine: Vec<WindowAggregate> = out
            .iter()
            .filter(|a| a.group.partition == scope)
            .cloned()
            .collect();
        let got = oracle::from_aggregates(&mine);
        assert_eq!(
            got.len(),
            mine.len(),
            "each (window, model, region) emitted once per scope"
        );
        let events: Vec<RawEvent> = on_time
            .iter()
            .filter(|(p, _)| scope.is_none_or(|s| s == *p))
            .map(|(_, e)| e.clone())
            .collect();
        let want = oracle::expected_windows(&events, &s.reference, WINDOW_MS, None);
        assert_eq!(got, want, "scope {scope:?}");
        let ends: Vec<i64> = mine.iter().map(|a| a.window_end).collect();
        assert!(
            ends.windows(2).all(|w| w[0] <= w[1]),
            "each scope's windows emitted in time order"
        );
    }
    let scoped: usize = out
        .iter()
        .filter(|a| match mode {
            OutputMode::Single => a.group.partition.is_none(),
            OutputMode::Partitioned => a.group.partition.is_some(),
        })
        .count();
    assert_eq!(scoped, out.len(), "every series labelled as its mode says");
}

/// The scenario's partitions read in another interleaving: each
/// partition's records in the same order, the partitions merged by `picks`.
fn reinterleaved(s: &Scenario, picks: &[u32]) -> Scenario {
    let mut queues: Vec<VecDeque<RawEvent>> = vec![Default::default(); s.partitions as usize];
    for (p, e) in &s.arrivals {
        queues[*p as usize].push_back(e.clone());
    }
    Scenario {
        arrivals: merged(queues, picks),
        ..s.clone()
    }
}

/// The partitions' queues merged into one arrival order, each next record
/// taken from the queue `picks` names (cycled) among those not empty.
fn merged(mut queues: Vec<VecDeque<RawEvent>>, picks: &[u32]) -> Vec<(i32, RawEvent)> {
    let mut arrivals = Vec::new();
    let mut pick = picks.iter().copied().cycle();
    while queues.iter().any(|q| !q.is_empty()) {
        let nonempty: Vec<usize> = (0..queues.len())
            .filter(|q| !queues[*q].is_empty())
            .collect();
        let q = nonempty[pick.next().unwrap_or(0) as usize % nonempty.len()];
        if let Some(e) = queues[q].pop_front() {
            arrivals.push((q as i32, e));
        }
    }
    arrivals
}

fn output_mode() -> impl Strategy<Value = OutputMode> {
    prop_oneof![Just(OutputMode::Single), Just(OutputMode::Partitioned)]
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(2000))]

    #[test]
    fn within_the_bound_output_equals_the_batch_computation(
        s in scenario(OOO_MS - 1),
        mode in output_mode(),
    ) {
        let (out, late) = run_pipeline(&s, mode);
        prop_assert_eq!(late, 0);
        assert_matches_oracle(&out, &s.arrivals, &s, mode);
    }

    #[test]
    fn beyond_the_bound_exactly_the_late_events_are_dropped(
        s in scenario(4 * OOO_MS),
        mode in output_mode(),
    ) {
        let (out, late) = run_pipeline(&s, mode);
        let verdicts = late_by_model(&s, mode);
        prop_assert_eq!(late, verdicts.iter().filter(|l| **l).count());
        let on_time: Vec<(i32, RawEvent)> = s
            .arrivals
            .iter()
            .zip(&verdicts)
            .filter(|(_, late)| !**late)
            .map(|(arrival, _)| arrival.clone())
            .collect();
        assert_matches_oracle(&out, &on_time, &s, mode);
    }

    #[test]
    fn a_replay_given_the_firing_points_writes_the_same_windows(
        s in scenario(4 * OOO_MS),
        picks in proptest::collection::vec(any::<u32>(), 1..50),
    ) {
        let first = run_from(&s, OutputMode::Single, Vec::new());
        let again = run_from(&reinterleaved(&s, &picks), OutputMode::Single, first.fired.clone());
        prop_assert_eq!(again.aggregates, first.aggregates);
        prop_assert_eq!(again.late, first.late);
        prop_assert_eq!(again.fired, first.fired);
    }
}
