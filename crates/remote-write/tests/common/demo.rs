//! Aggregates of the reference demo's plan (`config/default.toml`), built
//! from the batch oracle's record of a window. One file for every test of
//! this crate: the integration tests have it as `common::demo`, the unit
//! tests (`src/lib.rs`) and the benchmarks (`benches/support/fleet.rs`)
//! include it by path.

use fleet_core::{GroupKey, MetricValue, Number, WindowAggregate};
use fleet_plan::GroupingId;
use fleet_testkit::oracle::Expected;

/// The aggregate `expected` describes (the inverse of
/// [`Expected::from_aggregate`]): the plan's one grouping, group (`model`,
/// `region`), values in plan order.
pub fn aggregate(expected: &Expected) -> WindowAggregate {
    let e = expected;
    let mean = |sum, count| MetricValue::Mean {
        sum: Number::Integer(sum),
        count,
    };
    WindowAggregate {
        window_start: e.window_start,
        window_end: e.window_end,
        grouping: GroupingId(0),
        group: GroupKey::new([("model", e.model.as_str()), ("region", e.region.as_str())]),
        events: e.events,
        values: vec![
            MetricValue::Count(e.vehicles_in_motion),
            MetricValue::Value(Some(Number::Integer(e.warnings))),
            MetricValue::Count(e.vehicles_reporting),
            mean(e.ic_rpm_sum, e.ic_rpm_count),
            mean(e.electric_rpm_sum, e.electric_rpm_count),
        ],
    }
}
