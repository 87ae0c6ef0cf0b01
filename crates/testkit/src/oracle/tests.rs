//! Hand-computed cases for the oracle.

use std::collections::HashMap;

use fleet_core::{EventType, RawEvent};

use super::*;

const WINDOW: i64 = 5000;

fn event(event_type: EventType, vin: &str, ts: i64, measurement: i64) -> RawEvent {
    RawEvent {
        event_type,
        vehicle_id: vin.into(),
        region: "UK".into(),
        timestamp: ts,
        measurement,
    }
}

fn reference() -> HashMap<String, String> {
    [("A", "Nebulara"), ("B", "Nebulara"), ("D", "Voltora")]
        .into_iter()
        .map(|(vin, model)| (vin.to_string(), model.to_string()))
        .collect()
}

fn key(end: i64, model: &str) -> ExpectedKey {
    (end, model.to_string(), "UK".to_string())
}

fn mixed_events() -> Vec<RawEvent> {
    use EventType::*;
    vec![
        event(IcRpm, "A", 1000, 2000),
        event(ElectricRpm, "A", 1500, -300),
        event(IcRpm, "B", 2000, 0),
        event(Warnings, "B", 2500, 2),
        // Arrives later but measured earlier: not B's latest.
        event(Warnings, "B", 2400, 5),
        // Three at the same time: the larger value wins.
        event(Warnings, "A", 3000, 1),
        event(Warnings, "A", 3000, 4),
        event(Warnings, "A", 3000, 3),
        // C is not in the reference data; zero RPM is not motion.
        event(ElectricRpm, "C", 4000, 0),
        // Reversing counts as motion.
        event(ElectricRpm, "D", 4500, -50),
        // The next window starts exactly at 5000.
        event(IcRpm, "A", 5000, 1000),
    ]
}

#[test]
fn computes_every_metric_by_hand() {
    let out = expected_windows(&mixed_events(), &reference(), WINDOW, None);
    let keys: Vec<_> = out.keys().cloned().collect();
    assert_eq!(
        keys,
        vec![
            key(5000, "Nebulara"),
            key(5000, "Voltora"),
            key(5000, "unknown"),
            key(10000, "Nebulara")
        ]
    );
    assert_eq!(
        out[&key(5000, "Nebulara")],
        Expected {
            window_start: 0,
            window_end: 5000,
            model: "Nebulara".into(),
            region: "UK".into(),
            vehicles_in_motion: 1,
            warnings: 4 + 2,
            vehicles_reporting: 2,
            ic_rpm_sum: 2000,
            ic_rpm_count: 2,
            electric_rpm_sum: -300,
            electric_rpm_count: 1,
            events: 8,
        }
    );
    let unknown = &out[&key(5000, "unknown")];
    assert_eq!(
        (
            unknown.vehicles_in_motion,
            unknown.vehicles_reporting,
            unknown.events
        ),
        (0, 1, 1)
    );
    let voltora = &out[&key(5000, "Voltora")];
    assert_eq!(voltora.vehicles_in_motion, 1);
    assert_eq!(voltora.electric_rpm_avg(), Some(-50.0));
    let next = &out[&key(10000, "Nebulara")];
    assert_eq!(
        (next.window_start, next.ic_rpm_sum, next.events),
        (5000, 1000, 1)
    );
}

#[test]
fn json_lines_follow_the_design() {
    let out = expected_windows(&mixed_events(), &reference(), WINDOW, None);
    let lines = expected_json_lines(&out);
    assert_eq!(lines.len(), 4);
    assert_eq!(
        lines[0],
        r#"{"window_start":0,"window_end":5000,"model":"Nebulara","region":"UK","vehicles_in_motion":1,"warnings":6,"vehicles_reporting":2,"ic_engine_rpm_avg":1000.0,"electric_motor_rpm_avg":-300.0,"events":8}"#
    );
    assert_eq!(
        lines[2],
        r#"{"window_start":0,"window_end":5000,"model":"unknown","region":"UK","vehicles_in_motion":0,"warnings":0,"vehicles_reporting":1,"ic_engine_rpm_avg":null,"electric_motor_rpm_avg":0.0,"events":1}"#
    );
    let value = out[&key(5000, "unknown")].to_json_value();
    assert!(value["ic_engine_rpm_avg"].is_null());
    assert_eq!(value["electric_motor_rpm_avg"], 0.0);
}

#[test]
fn prometheus_samples_omit_empty_averages_only() {
    let out = expected_windows(&mixed_events(), &reference(), WINDOW, None);
    let samples = expected_samples(&out, "");
    let unknown = &samples[&key(5000, "unknown")];
    assert!(!unknown.contains_key("ic_engine_rpm_avg"));
    assert_eq!(unknown["ic_engine_rpm_sum"], 0.0);
    assert_eq!(unknown["ic_engine_rpm_count"], 0.0);
    assert_eq!(unknown["electric_motor_rpm_avg"], 0.0);
    assert_eq!(unknown.len(), 8);
    let nebulara = &samples[&key(5000, "Nebulara")];
    assert_eq!(nebulara.len(), 9);
    assert_eq!(nebulara["warnings"], 6.0);
    assert_eq!(nebulara["electric_motor_rpm_avg"], -300.0);
    let prefixed = expected_samples(&out, "fleet_");
    assert_eq!(
        prefixed[&key(5000, "Nebulara")]["fleet_vehicles_in_motion"],
        1.0
    );
}

#[test]
fn late_rule_for_one_partition_in_arrival_order() {
    use EventType::IcRpm;
    let events = vec![
        event(IcRpm, "A", 1000, 1),
        event(IcRpm, "A", 6999, 2),
        // max 6999: watermark 4998 has not reached 4999, so [0, 5000) is open.
        event(IcRpm, "A", 4000, 4),
        event(IcRpm, "A", 7000, 8),
        // max 7000: watermark 4999 fired [0, 5000).
        event(IcRpm, "A", 4999, 16),
        event(IcRpm, "A", 9500, 32),
        event(IcRpm, "A", 5000, 64),
        event(IcRpm, "A", 2000, 128),
    ];
    assert_eq!(late_event_count(&events, WINDOW, 2000), 2);
    let out = expected_windows(&events, &reference(), WINDOW, Some(2000));
    assert_eq!(out[&key(5000, "Nebulara")].ic_rpm_sum, 1 + 4);
    assert_eq!(out[&key(10000, "Nebulara")].ic_rpm_sum, 2 + 8 + 32 + 64);
    let all = expected_windows(&events, &reference(), WINDOW, None);
    assert_eq!(all[&key(5000, "Nebulara")].ic_rpm_sum, 1 + 4 + 16 + 128);
    // With more tolerance nothing is late.
    assert_eq!(late_event_count(&events, WINDOW, 10_000), 0);
}

#[test]
fn negative_times_floor_to_their_window() {
    let events = vec![event(EventType::IcRpm, "A", -1, 7)];
    let out = expected_windows(&events, &reference(), WINDOW, Some(0));
    assert_eq!(out[&key(0, "Nebulara")].window_start, -5000);
}

#[test]
fn matches_the_core_json_line_of_the_same_aggregate() {
    let expected = Expected {
        window_start: 0,
        window_end: 5000,
        model: "Nebulara".into(),
        region: "UK".into(),
        vehicles_in_motion: 1,
        warnings: 6,
        vehicles_reporting: 2,
        ic_rpm_sum: 3001,
        ic_rpm_count: 3,
        electric_rpm_sum: -7,
        electric_rpm_count: 3,
        events: 9,
    };
    let aggregate = expected.to_aggregate();
    let map = from_aggregates([&aggregate]);
    assert_eq!(map[&key(5000, "Nebulara")], expected);
    let plan = fleet_plan::MetricPlan::reference_demo();
    assert_eq!(expected.to_json_line(), aggregate.to_json_line(&plan));
}
