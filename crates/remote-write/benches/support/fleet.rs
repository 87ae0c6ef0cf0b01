//! The benchmarks' synthetic fleet: groups of 8 models across regions.

use fleet_core::{GroupKey, WindowAggregate};

/// Group `g` (`Model{g % 8}` in `region-{g / 8}`) in the 5 s window ending at
/// `end`, with 3,000 events; every other count is 0, for the caller to set.
pub fn aggregate(g: i64, end: i64) -> WindowAggregate {
    WindowAggregate {
        window_start: end - 5000,
        window_end: end,
        group: GroupKey::new(format!("Model{}", g % 8), format!("region-{}", g / 8)),
        vehicles_in_motion: 0,
        warnings: 0,
        vehicles_reporting: 0,
        ic_rpm_sum: 0,
        ic_rpm_count: 0,
        electric_rpm_sum: 0,
        electric_rpm_count: 0,
        events: 3000,
    }
}
