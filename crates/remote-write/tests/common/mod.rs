//! Helpers shared by the emitter's integration tests: aggregates to send and
//! the stage's own metrics.
// Test code: a panic is the failure report.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use fleet_core::WindowAggregate;
use fleet_remote_write::RemoteWriteMetrics;
use fleet_testkit::oracle::Expected;
use prometheus_client::registry::Registry;

/// A window of one (model, region) with every metric present (9 samples);
/// values differ with `seed`.
pub fn expected(model: &str, region: &str, window_end: i64, seed: u64) -> Expected {
    Expected {
        window_start: window_end - 5000,
        window_end,
        model: model.into(),
        region: region.into(),
        vehicles_in_motion: 10 + seed,
        warnings: 2 + seed as i64,
        vehicles_reporting: 20 + seed,
        ic_rpm_sum: 3000 + 100 * seed as i64,
        ic_rpm_count: 2,
        electric_rpm_sum: -60,
        electric_rpm_count: 3 + seed,
        events: 30,
    }
}

/// The aggregate of [`expected`].
pub fn aggregate(model: &str, region: &str, window_end: i64, seed: u64) -> WindowAggregate {
    Expected::to_aggregate(&expected(model, region, window_end, seed))
}

/// The stage's metrics, registered under `fleet_remote_write_` in a registry
/// of their own.
pub fn metrics() -> (Registry, RemoteWriteMetrics) {
    let mut root = Registry::with_prefix("fleet");
    let m = RemoteWriteMetrics::register(root.sub_registry_with_prefix("remote_write"));
    (root, m)
}

/// The value of the exposition line that starts with `series` (a name, or a
/// name with its labels as exposed); panics when there is none.
pub fn metric(root: &Registry, series: &str) -> f64 {
    let mut text = String::new();
    prometheus_client::encoding::text::encode(&mut text, root).unwrap();
    text.lines()
        .find_map(|l| l.strip_prefix(series)?.strip_prefix(' '))
        .unwrap_or_else(|| panic!("no {series} in\n{text}"))
        .parse()
        .unwrap()
}
