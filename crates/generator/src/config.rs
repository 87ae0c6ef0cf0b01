//! What the generator simulates, as a strict, documented configuration.
//!
//! The realism knobs exist to make the aggregator's edge cases reproducible on
//! demand: events a little out of order (within the watermark's out-of-orderness,
//! so nothing is lost), events beyond it (counted as late by the service), and
//! vehicles that go offline and deliver a burst of old events when they return.

use std::time::{SystemTime, UNIX_EPOCH};

use fleet_core::config::{ConfigError, Problems};
use fleet_core::TimestampMs;
use serde::{Deserialize, Serialize};

/// Upper bound on every delay, so simulated time arithmetic stays far from overflow.
const MAX_DELAY_MS: u64 = 86_400_000;

/// How the synthetic fleet behaves; every field has a default.
#[derive(Clone, Debug, PartialEq, Deserialize, Serialize)]
#[serde(default, deny_unknown_fields)]
pub struct GeneratorConfig {
    /// Number of vehicles; each sends about one event per simulated second.
    /// Default 1000.
    pub vehicles: usize,
    /// Seed of the fleet and of every event; the same seed gives the same output.
    /// Default 11.
    pub seed: u64,
    /// Event-time origin, epoch milliseconds. Default: unset, meaning the wall
    /// clock at start floored to the second (see [`GeneratorConfig::resolve_start_ms`]).
    #[serde(default, deserialize_with = "fleet_core::config::exact_i64")]
    pub start_ms: Option<TimestampMs>,
    /// Share of events (0–1) whose delivery is delayed by up to `max_disorder_ms`,
    /// so they arrive after newer events. Default 0.05.
    pub disorder_fraction: f64,
    /// Largest delay of a disordered event, milliseconds of event time. Keep it
    /// within the service's out-of-orderness (default 2 s, docs/ARCHITECTURE.md, "Event time") so these events
    /// are reordered but never late. Default 1500.
    pub max_disorder_ms: u64,
    /// Share of events (0–1) delayed by `late_min_ms`..=`late_max_ms`, beyond the
    /// out-of-orderness, so the service counts them as late. Default 0.001.
    pub late_fraction: f64,
    /// Smallest delay of a late event, milliseconds. Default 3000.
    pub late_min_ms: u64,
    /// Largest delay of a late event, milliseconds. Default 30000.
    pub late_max_ms: u64,
    /// Chance (0–1) per vehicle and simulated second that an online vehicle loses
    /// its connection; it keeps measuring and sends everything buffered when it
    /// returns. Default 0.00002.
    pub offline_probability: f64,
    /// Shortest time offline, seconds. Default 10.
    pub offline_min_s: u64,
    /// Longest time offline, seconds. Default 60.
    pub offline_max_s: u64,
}

impl GeneratorConfig {
    /// The fleet of the reference deployment (100,000 vehicles, one event
    /// each a second): what the `fleet-generator` command and the benchmarks
    /// generate unless told otherwise.
    pub const REFERENCE_FLEET_VEHICLES: usize = 100_000;

    /// The defaults of `[generator]` (`config/default.toml`), usable in
    /// constant contexts (command-line defaults).
    pub const DEFAULT: GeneratorConfig = GeneratorConfig {
        vehicles: 1_000,
        seed: 11,
        start_ms: None,
        disorder_fraction: 0.05,
        max_disorder_ms: 1_500,
        late_fraction: 0.001,
        late_min_ms: 3_000,
        late_max_ms: 30_000,
        offline_probability: 0.000_02,
        offline_min_s: 10,
        offline_max_s: 60,
    };

    /// This configuration with every event delivered in order and on time:
    /// no disorder, no late events, no offline vehicles.
    pub fn without_realism(self) -> GeneratorConfig {
        GeneratorConfig {
            disorder_fraction: 0.0,
            late_fraction: 0.0,
            offline_probability: 0.0,
            ..self
        }
    }

    /// Lists every problem, by key.
    pub fn validate(&self) -> Result<(), ConfigError> {
        let mut problems = Problems::default();
        problems.check(self.vehicles >= 1, "vehicles", "must be at least 1");
        problems.check(
            u32::try_from(self.vehicles).is_ok(),
            "vehicles",
            format!("must be at most {}", u32::MAX),
        );
        if let Some(start) = self.start_ms {
            problems.check(
                fleet_core::EVENT_TIMES.contains(&start),
                "start_ms",
                format!(
                    "must be between {} and {}",
                    fleet_core::EVENT_TIMES.start(),
                    fleet_core::EVENT_TIMES.end()
                ),
            );
        }
        for (key, value) in [
            ("disorder_fraction", self.disorder_fraction),
            ("late_fraction", self.late_fraction),
            ("offline_probability", self.offline_probability),
        ] {
            problems.check(
                (0.0..=1.0).contains(&value),
                key,
                format!("must be between 0 and 1, not {value}"),
            );
        }
        // One draw decides between disordered, late and on time.
        problems.check(
            self.disorder_fraction + self.late_fraction <= 1.0,
            "late_fraction",
            "disorder_fraction + late_fraction must not exceed 1",
        );
        for (key, value) in [
            ("max_disorder_ms", self.max_disorder_ms),
            ("late_max_ms", self.late_max_ms),
            ("offline_max_s", self.offline_max_s.saturating_mul(1_000)),
        ] {
            problems.check(
                value <= MAX_DELAY_MS,
                key,
                format!("must not exceed one day ({MAX_DELAY_MS} ms)"),
            );
        }
        problems.check(
            self.late_min_ms <= self.late_max_ms,
            "late_min_ms",
            "must not exceed late_max_ms",
        );
        problems.check(
            self.offline_min_s <= self.offline_max_s,
            "offline_min_s",
            "must not exceed offline_max_s",
        );
        problems.finish(())
    }

    /// The event-time origin: `start_ms`, or else the wall clock now, floored to
    /// the second. Callers that want reproducible output set `start_ms`.
    pub fn resolve_start_ms(&self) -> TimestampMs {
        self.start_ms.unwrap_or_else(|| {
            let now = SystemTime::now()
                .duration_since(UNIX_EPOCH)
                .map_or(0, |d| d.as_secs());
            i64::try_from(now).map_or(0, |s| s * 1_000)
        })
    }
}

impl Default for GeneratorConfig {
    fn default() -> Self {
        GeneratorConfig::DEFAULT
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_defaults_are_valid_and_match_an_empty_document() {
        GeneratorConfig::default().validate().unwrap();
        let parsed: GeneratorConfig = serde_json::from_str("{}").unwrap();
        assert_eq!(parsed, GeneratorConfig::default());
    }

    #[test]
    fn fields_override_defaults_and_unknown_keys_are_refused() {
        let parsed: GeneratorConfig =
            serde_json::from_str(r#"{"vehicles": 3000, "start_ms": 1764000000000}"#).unwrap();
        assert_eq!(parsed.vehicles, 3000);
        assert_eq!(parsed.start_ms, Some(1_764_000_000_000));
        assert_eq!(parsed.seed, 11);
        let err = serde_json::from_str::<GeneratorConfig>(r#"{"vehicle": 3}"#).unwrap_err();
        assert!(err.to_string().contains("vehicle"), "{err}");
    }

    #[test]
    fn validation_lists_every_problem_by_key() {
        let config = GeneratorConfig {
            vehicles: 0,
            disorder_fraction: 1.5,
            late_fraction: f64::NAN,
            late_min_ms: 10,
            late_max_ms: 5,
            offline_min_s: 2,
            offline_max_s: 1,
            start_ms: Some(-1),
            ..GeneratorConfig::default()
        };
        let err = config.validate().unwrap_err();
        let keys: Vec<&str> = err.problems.iter().map(|p| p.key.as_str()).collect();
        for key in [
            "vehicles",
            "start_ms",
            "disorder_fraction",
            "late_fraction",
            "late_min_ms",
            "offline_min_s",
        ] {
            assert!(keys.contains(&key), "{key} missing from {err}");
        }
    }

    #[test]
    fn without_realism_zeroes_the_three_fractions_only() {
        let plain = GeneratorConfig::default().without_realism();
        assert_eq!(plain.disorder_fraction, 0.0);
        assert_eq!(plain.late_fraction, 0.0);
        assert_eq!(plain.offline_probability, 0.0);
        assert_eq!(plain.max_disorder_ms, 1_500);
        plain.validate().unwrap();
    }

    #[test]
    fn an_explicit_start_is_kept_and_the_default_is_a_whole_second() {
        let config = GeneratorConfig {
            start_ms: Some(42),
            ..GeneratorConfig::default()
        };
        assert_eq!(config.resolve_start_ms(), 42);
        let now = GeneratorConfig::default().resolve_start_ms();
        assert!(now > 1_700_000_000_000 && now % 1_000 == 0, "{now}");
    }
}
