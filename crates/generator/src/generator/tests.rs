use std::collections::HashMap;

use super::*;
use fleet_core::EventType;

pub(crate) const START: TimestampMs = 1_764_000_000_000;

pub(crate) fn config(vehicles: usize) -> GeneratorConfig {
    GeneratorConfig {
        vehicles,
        start_ms: Some(START),
        ..GeneratorConfig::default()
    }
}

fn run(config: &GeneratorConfig, events: u64) -> Vec<RawEvent> {
    let fleet = Fleet::from_config(config);
    let mut generator = EventGenerator::new(&fleet, config).unwrap();
    generator.take_exact(events).collect()
}

/// For each event, how far its timestamp lies behind the newest one emitted before it.
pub(crate) fn lags(timestamps: impl IntoIterator<Item = TimestampMs>) -> Vec<i64> {
    let mut newest = TimestampMs::MIN;
    timestamps
        .into_iter()
        .map(|t| {
            let lag = newest.saturating_sub(t).max(0);
            newest = newest.max(t);
            lag
        })
        .collect()
}

fn times(events: &[RawEvent]) -> impl Iterator<Item = TimestampMs> + '_ {
    events.iter().map(|e| e.timestamp)
}

fn sorted(mut events: Vec<RawEvent>) -> Vec<RawEvent> {
    events.sort_by(|a, b| {
        (a.timestamp, &a.vehicle_id, a.event_type, a.measurement).cmp(&(
            b.timestamp,
            &b.vehicle_id,
            b.event_type,
            b.measurement,
        ))
    });
    events
}

#[test]
fn the_same_seed_gives_the_same_events_and_another_seed_others() {
    let a = run(&config(500), 20_000);
    assert_eq!(a, run(&config(500), 20_000));
    let other = GeneratorConfig {
        seed: 12,
        ..config(500)
    };
    assert_ne!(a, run(&other, 20_000));
}

#[test]
fn each_vehicle_reports_once_per_simulated_second() {
    let vehicles = 300;
    let events = run(&config(vehicles).without_realism(), 300 * 60);
    let mut per_vehicle: HashMap<&str, Vec<TimestampMs>> = HashMap::new();
    for e in &events {
        per_vehicle
            .entry(&e.vehicle_id)
            .or_default()
            .push(e.timestamp);
    }
    assert_eq!(per_vehicle.len(), vehicles);
    for timestamps in per_vehicle.values() {
        assert_eq!(timestamps.len(), 60);
        assert!(
            timestamps.windows(2).all(|w| w[1] - w[0] == 1_000),
            "{timestamps:?}"
        );
    }
    // Spread over the second, in order, from the origin on.
    assert!(events.windows(2).all(|w| w[0].timestamp <= w[1].timestamp));
    assert_eq!(events[0].timestamp, START);
    assert!(events[..vehicles]
        .iter()
        .all(|e| e.timestamp < START + 1_000));
    assert_eq!(events[vehicles].timestamp, START + 1_000);
}

#[test]
fn with_realism_every_vehicle_still_reports_once_per_second() {
    let events = run(&config(300), 300 * 60);
    let mut counts: HashMap<&str, usize> = HashMap::new();
    for e in &events {
        *counts.entry(&e.vehicle_id).or_default() += 1;
    }
    assert!(counts.values().all(|&c| c == 60), "{counts:?}");
    assert!(events
        .iter()
        .all(|e| (START..START + 60_000).contains(&e.timestamp)));
}

#[test]
fn about_ten_percent_are_warnings_and_the_rest_rpm() {
    let events = run(&config(2_000), 200_000);
    let warnings = events
        .iter()
        .filter(|e| e.event_type == EventType::Warnings)
        .count() as f64;
    let share = warnings / events.len() as f64;
    assert!((0.095..0.105).contains(&share), "warnings share {share}");
    for kind in [EventType::IcRpm, EventType::ElectricRpm] {
        let n = events.iter().filter(|e| e.event_type == kind).count();
        assert!(n > 50_000, "{kind:?}: {n}");
    }
    let moving = events
        .iter()
        .filter(|e| e.event_type != EventType::Warnings && e.measurement != 0)
        .count();
    assert!(
        moving > 60_000 && moving < 130_000,
        "moving readings {moving}"
    );
}

#[test]
fn disorder_never_exceeds_max_disorder_ms() {
    for vehicles in [1, 7, 999, 3_000] {
        let config = GeneratorConfig {
            disorder_fraction: 0.3,
            max_disorder_ms: 1_500,
            late_fraction: 0.0,
            offline_probability: 0.0,
            ..config(vehicles)
        };
        let events = run(&config, 200_000);
        let lags = lags(times(&events));
        let worst = lags.iter().copied().max().unwrap_or(0);
        assert!(
            worst <= 1_500,
            "{vehicles} vehicles: an event {worst} ms behind"
        );
        // The knob has an effect: many events arrive after newer ones.
        let disordered = lags.iter().filter(|&&l| l > 0).count();
        assert!(
            disordered > 10_000,
            "{vehicles} vehicles: only {disordered} disordered"
        );
        if vehicles > 1 {
            assert!(
                worst > 1_000,
                "{vehicles} vehicles: worst lag only {worst} ms"
            );
        }
    }
}

#[test]
fn the_late_fraction_is_roughly_honoured() {
    let config = GeneratorConfig {
        late_fraction: 0.01,
        offline_probability: 0.0,
        ..config(2_000)
    };
    let events = run(&config, 400_000);
    // Beyond the design's default out-of-orderness of 2 s.
    let late = lags(times(&events)).iter().filter(|&&l| l > 2_000).count() as f64;
    let expected = 0.01 * 400_000.0;
    assert!(
        (late - expected).abs() < 0.15 * expected,
        "{late} late, expected about {expected}"
    );
}

#[test]
fn the_default_realism_has_a_few_late_events_and_more_disordered_ones() {
    let events = run(&config(3_000), 300_000);
    let lags = lags(times(&events));
    let late = lags.iter().filter(|&&l| l > 2_000).count();
    let disordered = lags.iter().filter(|&&l| l > 0).count();
    assert!((150..600).contains(&late), "{late} late");
    assert!(disordered > 5_000, "{disordered} disordered");
}

#[test]
fn offline_vehicles_deliver_their_events_in_a_late_burst() {
    let config = GeneratorConfig {
        disorder_fraction: 0.0,
        late_fraction: 0.0,
        offline_probability: 0.001,
        ..config(500)
    };
    let events = run(&config, 500 * 600);
    let lags = lags(times(&events));
    // About 0.001 × 300,000 = 300 outages of 10–60 s, each delivering that many seconds of events.
    let very_late = lags.iter().filter(|&&l| l >= 9_000).count();
    assert!(very_late > 1_000, "{very_late}");
    assert!(
        lags.iter().all(|&l| l <= 60_000),
        "no event is older than the longest outage"
    );
    // A burst: one vehicle's buffered events arrive back to back, in measurement order.
    let burst_start = lags.iter().position(|&l| l >= 50_000).unwrap();
    let vehicle = &events[burst_start].vehicle_id;
    let burst: Vec<&RawEvent> = events[burst_start..]
        .iter()
        .take_while(|e| &e.vehicle_id == vehicle)
        .collect();
    assert!(burst.len() >= 5, "burst of {}", burst.len());
    assert!(burst
        .windows(2)
        .all(|w| w[1].timestamp - w[0].timestamp == 1_000));
}

#[test]
fn realism_only_reorders_the_same_events() {
    let heavy = GeneratorConfig {
        disorder_fraction: 0.2,
        late_fraction: 0.05,
        offline_probability: 0.001,
        ..config(400)
    };
    let plain = run(&heavy.clone().without_realism(), 100_000);
    let real = run(&heavy, 100_000);
    assert_ne!(plain, real);
    assert_eq!(sorted(plain), sorted(real));
}

#[test]
fn a_bounded_run_is_exact_and_drain_empties_the_buffer() {
    let heavy = GeneratorConfig {
        disorder_fraction: 0.3,
        late_fraction: 0.1,
        offline_probability: 0.01,
        ..config(50)
    };
    let fleet = Fleet::from_config(&heavy);
    let mut generator = EventGenerator::new(&fleet, &heavy).unwrap();
    let run = generator.take_exact(12_345);
    assert_eq!(run.size_hint(), (12_345, Some(12_345)));
    assert_eq!(run.count(), 12_345);
    assert_eq!(generator.buffered(), 0);
    assert_eq!(generator.generated(), 12_345);

    // An endless stream holds events back; drain hands them over.
    let emitted = generator.by_ref().take(5_000).count();
    let buffered = generator.buffered();
    assert!(buffered > 0);
    assert_eq!(generator.generated(), 12_345 + (emitted + buffered) as u64);
    assert_eq!(generator.drain().count(), buffered);
    assert_eq!(generator.buffered(), 0);
    assert!(generator.next_event().timestamp >= START);
}

#[test]
fn events_carry_the_fleet_identity() {
    let config = config(100);
    let fleet = Fleet::from_config(&config);
    let by_vin: HashMap<&str, &str> = fleet
        .vehicles()
        .iter()
        .map(|v| (v.vin.as_str(), v.region))
        .collect();
    let mut generator = EventGenerator::new(&fleet, &config).unwrap();
    for e in generator.take_exact(1_000) {
        assert_eq!(by_vin.get(e.vehicle_id.as_str()), Some(&e.region.as_str()));
        assert!(e.event_type != EventType::Warnings || (0..=3).contains(&e.measurement));
    }
}

#[test]
fn an_invalid_configuration_or_an_empty_fleet_is_refused() {
    let fleet = Fleet::new(0, 1);
    let err = EventGenerator::new(&fleet, &config(1)).unwrap_err();
    assert_eq!(err.problems[0].key, "vehicles");
    let bad = GeneratorConfig {
        late_fraction: 2.0,
        ..config(1)
    };
    let err = EventGenerator::new(&Fleet::new(1, 1), &bad).unwrap_err();
    assert_eq!(err.problems[0].key, "late_fraction");
}

#[test]
fn the_clock_tracks_the_newest_generated_event() {
    let config = config(4).without_realism();
    let mut generator = EventGenerator::new(&Fleet::from_config(&config), &config).unwrap();
    assert_eq!(generator.clock_ms(), START);
    let times: Vec<TimestampMs> = generator
        .by_ref()
        .take(9)
        .map(|e| e.timestamp - START)
        .collect();
    assert_eq!(times, [0, 250, 500, 750, 1_000, 1_250, 1_500, 1_750, 2_000]);
    assert_eq!(generator.clock_ms(), START + 2_000);
}
