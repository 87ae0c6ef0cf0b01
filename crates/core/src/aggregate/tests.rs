use super::*;

fn demo(ic_count: u64) -> WindowAggregate {
    WindowAggregate {
        window_start: 0,
        window_end: 5000,
        grouping: GroupingId(0),
        group: GroupKey::new([("model", "Nebulara"), ("region", "UK")]),
        events: 4,
        values: vec![
            MetricValue::Count(1),
            MetricValue::Value(Some(Number::Integer(3))),
            MetricValue::Count(2),
            MetricValue::Mean {
                sum: Number::Integer(3000),
                count: ic_count,
            },
            MetricValue::Mean {
                sum: Number::Integer(0),
                count: 0,
            },
        ],
    }
}

#[test]
fn the_reference_demo_writes_the_designs_json_line() {
    let plan = MetricPlan::reference_demo();
    assert_eq!(
        demo(2).to_json_line(&plan),
        r#"{"window_start":0,"window_end":5000,"model":"Nebulara","region":"UK","vehicles_in_motion":1,"warnings":3,"vehicles_reporting":2,"ic_engine_rpm_avg":1500.0,"electric_motor_rpm_avg":null,"events":4}"#
    );
    let partitioned = WindowAggregate {
        group: GroupKey {
            partition: Some(3),
            ..GroupKey::new([
                ("model", "Nebulara"),
                ("region", "UK"),
                ("fuel_type", "diesel"),
            ])
        },
        ..demo(2)
    };
    assert!(partitioned.to_json_line(&plan).starts_with(
        r#"{"window_start":0,"window_end":5000,"model":"Nebulara","region":"UK","fuel_type":"diesel","kafka_partition":3,"vehicles_in_motion":1,"#
    ));
}

#[test]
fn the_reference_demo_writes_its_nine_series_and_omits_empty_means() {
    let plan = MetricPlan::reference_demo();
    let mut samples = Vec::new();
    let mut slots = Vec::new();
    demo(2).for_each_sample(&plan, |s| {
        samples.push((s.metric.series_names()[s.series].clone(), s.value));
        slots.push(s.slot);
    });
    // The order the demo always wrote: every mean after the counts, then the
    // sums and counts behind the means.
    let expected = [
        ("vehicles_in_motion", 1.0),
        ("warnings", 3.0),
        ("vehicles_reporting", 2.0),
        ("ic_engine_rpm_avg", 1500.0),
        ("ic_engine_rpm_sum", 3000.0),
        ("ic_engine_rpm_count", 2.0),
        ("electric_motor_rpm_sum", 0.0),
        ("electric_motor_rpm_count", 0.0),
    ];
    let mut sorted = samples.clone();
    sorted.sort_by(|a, b| a.0.cmp(&b.0));
    let mut expected_sorted = expected.map(|(n, v)| (n.to_string(), v)).to_vec();
    expected_sorted.sort_by(|a, b| a.0.cmp(&b.0));
    assert_eq!(sorted, expected_sorted);
    assert_eq!(
        samples.iter().map(|s| s.0.as_str()).collect::<Vec<_>>()[..4],
        [
            "vehicles_in_motion",
            "warnings",
            "vehicles_reporting",
            "ic_engine_rpm_avg"
        ]
    );
    assert_eq!(slots, [0, 1, 2, 5, 3, 4, 6, 7]);
}

#[test]
fn histograms_are_cumulative_with_inf_last() {
    let plan = MetricPlan::from_toml(
        r#"
        [[metrics]]
        name = "rpm"
        help = "h"
        function = "histogram"
        signal = "IC_RPM"
        buckets = [0.5, 1000.0, 2500.0]
        [[metrics]]
        name = "rpm_max"
        help = "h"
        function = "max"
        signal = "IC_RPM"
        "#,
        &[],
    )
    .unwrap();
    let a = WindowAggregate {
        values: vec![
            MetricValue::Histogram {
                buckets: vec![1, 0, 2, 1],
                sum: Number::Integer(9000),
                count: 4,
            },
            MetricValue::Value(None),
        ],
        ..demo(0)
    };
    assert_eq!(
        a.to_json_line(&plan),
        r#"{"window_start":0,"window_end":5000,"model":"Nebulara","region":"UK","rpm_bucket":{"0.5":1,"1000":1,"2500":3,"+Inf":4},"rpm_sum":9000,"rpm_count":4,"rpm_max":null,"events":4}"#
    );
    let mut buckets = Vec::new();
    a.for_each_sample(&plan, |s| {
        if let Some(le) = s.le {
            buckets.push((le.to_string(), s.value));
        }
    });
    assert_eq!(
        buckets,
        [("0.5", 1.0), ("1000", 1.0), ("2500", 3.0), ("+Inf", 4.0)]
            .map(|(l, v)| (l.to_string(), v))
    );
}
