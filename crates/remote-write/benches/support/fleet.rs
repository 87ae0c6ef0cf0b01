//! The benchmarks' synthetic fleet: groups of 8 models across regions, on
//! the reference demo's metrics.

use fleet_testkit::oracle::Expected;

/// Group `g` (`Model{g % 8}` in `region-{g / 8}`) in the 5 s window ending at
/// `end`, with 3,000 events; every other count is 0, for the caller to set.
pub fn window(g: i64, end: i64) -> Expected {
    Expected {
        window_start: end - 5000,
        window_end: end,
        model: format!("Model{}", g % 8),
        region: format!("region-{}", g / 8),
        events: 3000,
        ..Expected::default()
    }
}
