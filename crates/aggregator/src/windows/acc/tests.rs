use fleet_core::{GroupId, VehicleKey};
use fleet_plan::MetricPlan;

use super::*;

#[test]
fn vehicle_table_keeps_vehicle_group_pairs_apart_and_grows() {
    let mut t = VehicleTable::default();
    t.reset(4);
    for v in 0..10_000u32 {
        for g in [0u32, 7, u32::MAX] {
            let at = t.slot_at(v, g);
            assert_eq!(t.words[at + 1], OCCUPIED, "created empty");
            t.words[at + 2] = u64::from(v) * 3 + u64::from(g % 5);
        }
    }
    for v in (0..10_000u32).rev() {
        for g in [0u32, 7, u32::MAX] {
            let at = t.slot_at(v, g);
            assert_eq!(t.words[at + 2], u64::from(v) * 3 + u64::from(g % 5));
        }
    }
    assert_eq!(t.len, 30_000);
    assert_eq!(t.occupied().count(), 30_000);
    t.reset(4);
    assert_eq!(t.occupied().count(), 0, "empty again");
}

#[test]
fn offset_map_keeps_min_and_max_per_partition() {
    let mut m = OffsetMap::default();
    for (p, o) in [(3, 10), (1, 5), (3, 8), (2, 1), (1, 7), (3, 12)] {
        m.lower(p, o);
    }
    assert_eq!(m.iter().collect::<Vec<_>>(), [(1, 5), (2, 1), (3, 8)]);
    let mut m = OffsetMap::default();
    for (p, o) in [(3, 10), (1, 5), (3, 8), (2, 1), (1, 7), (3, 12)] {
        m.raise(p, o);
    }
    assert_eq!(m.iter().collect::<Vec<_>>(), [(1, 7), (2, 1), (3, 12)]);
}

#[test]
fn signal_index_forgets_the_previous_record() {
    let mut index = SignalIndex::new(3);
    let v = |s: u16, x: i64| SignalValue {
        signal: SignalId(s),
        value: Value::Integer(x),
    };
    index.load(&[v(0, 1), v(2, 5)]);
    assert_eq!(index.get(SignalId(2)), Some(Value::Integer(5)));
    index.load(&[v(1, 9)]);
    assert_eq!(index.get(SignalId(0)), None);
    assert_eq!(index.get(SignalId(1)), Some(Value::Integer(9)));
    assert_eq!(index.get(SignalId(7)), None, "no such signal");
}

/// Every function on a few records of two vehicles in one group.
#[test]
fn computes_each_function_in_one_window() {
    let plan = MetricPlan::from_toml(
        r#"
        [input]
        shape = "wide"
        [[input.signals]]
        name = "speed"
        type = "float"
        [[input.signals]]
        name = "soc"
        type = "integer"
        [[metrics]]
        name = "n"
        help = "h"
        function = "count"
        where = "speed > 0"
        [[metrics]]
        name = "soc_sum"
        help = "h"
        function = "sum"
        signal = "soc"
        [[metrics]]
        name = "speed"
        help = "h"
        function = "mean"
        signal = "speed"
        [[metrics]]
        name = "soc_min"
        help = "h"
        function = "min"
        signal = "soc"
        [[metrics]]
        name = "speed_max"
        help = "h"
        function = "max"
        signal = "speed"
        [[metrics]]
        name = "moving"
        help = "h"
        function = "distinct_vehicles"
        where = "speed > 1"
        [[metrics]]
        name = "soc_latest"
        help = "h"
        function = "sum_of_latest"
        signal = "soc"
        [[metrics]]
        name = "speed_latest"
        help = "h"
        function = "mean_of_latest"
        signal = "speed"
        [[metrics]]
        name = "speed_h"
        help = "h"
        function = "histogram"
        signal = "speed"
        buckets = [1.0, 50.0]
        "#,
        &[],
    )
    .unwrap();
    let layout = Layout::new(&plan);
    let mut window = OpenWindow::new(0, &layout, None);
    let mut index = SignalIndex::new(2);
    // (vehicle, ts, speed, soc)
    let records: [(u32, i64, Option<f64>, Option<i64>); 5] = [
        (1, 100, Some(0.0), Some(80)),
        (1, 300, Some(60.0), Some(79)),
        (2, 200, Some(30.0), None),
        (1, 200, Some(10.0), Some(90)),
        (2, 200, Some(40.0), Some(50)),
    ];
    for (i, (vehicle, ts, speed, soc)) in records.into_iter().enumerate() {
        let mut values = Vec::new();
        if let Some(s) = speed {
            values.push(SignalValue {
                signal: SignalId(0),
                value: Value::Float(s),
            });
        }
        if let Some(s) = soc {
            values.push(SignalValue {
                signal: SignalId(1),
                value: Value::Integer(s),
            });
        }
        index.load(&values);
        let e = EnrichedEvent {
            partition: 0,
            offset: i as i64,
            vehicle: VehicleKey(vehicle),
            group: GroupId(0),
            timestamp: ts,
            values_at: 0,
            values_len: values.len() as u16,
            drilldown: false,
        };
        window.add(&layout, &e, &[0], &index, &values);
    }
    let closed = window.close(&layout, 0);
    assert_eq!(closed.len(), 1);
    let (group, events, values) = &closed[0];
    assert_eq!((*group, *events), (0, 5));
    assert_eq!(
        values,
        &vec![
            MetricValue::Count(4),
            MetricValue::Value(Some(Number::Integer(80 + 79 + 90 + 50))),
            MetricValue::Mean {
                sum: Number::Float(140.0),
                count: 5
            },
            MetricValue::Value(Some(Number::Integer(50))),
            MetricValue::Value(Some(Number::Float(60.0))),
            MetricValue::Count(2),
            // Vehicle 1's latest soc is 79 (t = 300), vehicle 2's 50.
            MetricValue::Value(Some(Number::Integer(79 + 50))),
            // Vehicle 1: 60 at t = 300; vehicle 2: 40 (the larger at t = 200).
            MetricValue::Value(Some(Number::Float(50.0))),
            MetricValue::Histogram {
                buckets: vec![1, 3, 1],
                sum: Number::Float(140.0),
                count: 5
            },
        ]
    );
    let (events, folded) = window.fold(&layout, 0, |g| g == 0);
    assert_eq!(events, 5);
    assert_eq!(&folded, values, "one group folds into itself");
}
