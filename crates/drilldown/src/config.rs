//! The `[drilldown]` configuration section and its validation.
//!
//! Every field has a default, and the defaults leave the drill-down off.
//! [`DrilldownConfig::validate`] reports every problem at once under keys
//! `drilldown.<field>`; it reads the allow list with the same function the
//! service later uses, so what validates is what runs.

use std::path::Path;
use std::time::Duration;

use fleet_core::config::Problems;
use serde::{Deserialize, Serialize};

use crate::select::AllowList;

/// The section name, the prefix of every key in validation problems.
pub const SECTION: &str = "drilldown";

/// How many samples each drilled-down series gets.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, Deserialize, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum SampleFrequency {
    /// Every event, with its own timestamp (about one sample a second per
    /// sensor); of events with the same timestamp, the larger measurement.
    Raw,
    /// Per window, the measurement of the vehicle's latest event (by event
    /// time; ties: the larger value), timestamped with the window end.
    #[default]
    WindowLast,
    /// Per window, the mean of the vehicle's measurements, timestamped with
    /// the window end.
    WindowMean,
}

/// Which vehicles are drilled down.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, Deserialize, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum VehicleScope {
    /// Every vehicle: one series per vehicle and sensor, for the whole fleet.
    All,
    /// The VINs listed in `allow_list_path`.
    AllowList,
    /// A stable pseudo-random share `sample_fraction` of the fleet (see
    /// [`vin_hash`](crate::vin_hash)).
    #[default]
    Sample,
}

/// The `[drilldown]` section: raw per-vehicle series besides the aggregates.
#[derive(Clone, Debug, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct DrilldownConfig {
    /// Write the per-vehicle series `vehicle_ic_engine_rpm`,
    /// `vehicle_electric_motor_rpm` and `vehicle_warnings`. Default false.
    pub enabled: bool,
    /// `raw`, `window_last` or `window_mean`. Default `window_last`.
    pub frequency: SampleFrequency,
    /// `all`, `allow_list` or `sample`. Default `sample`.
    pub vehicles: VehicleScope,
    /// With `vehicles = "allow_list"`: a file of VINs, one per line; blank
    /// lines and lines starting with `#` are ignored. Default empty (none).
    pub allow_list_path: String,
    /// How often the allow list is checked for changes, in milliseconds;
    /// 0 reads it at start only. Default 10000.
    pub allow_list_reload_interval_ms: u64,
    /// With `vehicles = "sample"`: the share of vehicles drilled down, in
    /// (0, 1]. Default 0.01.
    pub sample_fraction: f64,
}

impl Default for DrilldownConfig {
    fn default() -> Self {
        DrilldownConfig {
            enabled: false,
            frequency: SampleFrequency::WindowLast,
            vehicles: VehicleScope::Sample,
            allow_list_path: String::new(),
            allow_list_reload_interval_ms: 10_000,
            sample_fraction: 0.01,
        }
    }
}

impl DrilldownConfig {
    /// Records every problem under `drilldown.<field>`.
    ///
    /// The rules between fields are checked whether or not the drill-down is
    /// enabled, so that a mistake shows before it is switched on; the allow
    /// list file is read only when it is enabled.
    pub fn validate(&self, problems: &mut Problems) {
        let key = |field: &str| format!("{SECTION}.{field}");
        if self.vehicles == VehicleScope::Sample {
            problems.check(
                valid_fraction(self.sample_fraction),
                &key("sample_fraction"),
                format!(
                    "{} is not a share of vehicles: must be greater than 0 and at most 1 with vehicles = \"sample\"",
                    self.sample_fraction
                ),
            );
        }
        let has_path = !self.allow_list_path.trim().is_empty();
        if self.vehicles == VehicleScope::AllowList {
            if !has_path {
                problems.add(
                    &key("allow_list_path"),
                    "required with vehicles = \"allow_list\"",
                );
            } else if self.enabled {
                if let Err(error) = AllowList::from_file(Path::new(&self.allow_list_path)) {
                    problems.add(&key("allow_list_path"), error.to_string());
                }
            }
        } else if has_path {
            problems.add(
                &key("allow_list_path"),
                format!(
                    "set, but vehicles = \"{}\" does not use it: set vehicles = \"allow_list\" or remove it",
                    self.vehicles.as_str()
                ),
            );
        }
    }

    /// The allow-list reload interval; `None` when the list is read at start only.
    pub fn allow_list_reload_interval(&self) -> Option<Duration> {
        (self.allow_list_reload_interval_ms > 0)
            .then(|| Duration::from_millis(self.allow_list_reload_interval_ms))
    }
}

impl VehicleScope {
    /// The configuration spelling.
    pub fn as_str(self) -> &'static str {
        match self {
            VehicleScope::All => "all",
            VehicleScope::AllowList => "allow_list",
            VehicleScope::Sample => "sample",
        }
    }
}

impl SampleFrequency {
    /// The configuration spelling.
    pub fn as_str(self) -> &'static str {
        match self {
            SampleFrequency::Raw => "raw",
            SampleFrequency::WindowLast => "window_last",
            SampleFrequency::WindowMean => "window_mean",
        }
    }
}

/// Whether `fraction` is in (0, 1] (NaN is not).
pub(crate) fn valid_fraction(fraction: f64) -> bool {
    fraction > 0.0 && fraction <= 1.0
}

#[cfg(test)]
mod tests {
    use super::*;

    fn problems_of(config: &DrilldownConfig) -> Vec<(String, String)> {
        let mut problems = Problems::default();
        config.validate(&mut problems);
        match problems.finish(()) {
            Ok(()) => Vec::new(),
            Err(error) => error
                .problems
                .iter()
                .map(|p| (p.key.clone(), p.to_string()))
                .collect(),
        }
    }

    fn keys(config: &DrilldownConfig) -> Vec<String> {
        problems_of(config).into_iter().map(|(k, _)| k).collect()
    }

    #[test]
    fn defaults_are_off_and_valid() {
        let config = DrilldownConfig::default();
        assert!(!config.enabled);
        assert_eq!(config.frequency, SampleFrequency::WindowLast);
        assert_eq!(config.vehicles, VehicleScope::Sample);
        assert_eq!(config.allow_list_path, "");
        assert_eq!(config.allow_list_reload_interval_ms, 10_000);
        assert_eq!(config.sample_fraction, 0.01);
        assert!(problems_of(&config).is_empty());
        assert!(problems_of(&DrilldownConfig {
            enabled: true,
            ..DrilldownConfig::default()
        })
        .is_empty());
    }

    /// The `[drilldown]` section of `toml`, loaded as the service loads its
    /// configuration.
    fn load(toml: &str) -> Result<DrilldownConfig, fleet_core::config::ConfigError> {
        #[derive(Deserialize)]
        struct File {
            drilldown: DrilldownConfig,
        }
        fleet_core::config::load::<File>(fleet_core::config::Layers {
            defaults_toml: toml,
            file: None,
            env_prefix: None,
        })
        .map(|file| file.drilldown)
    }

    #[test]
    fn the_shipped_section_parses_to_the_defaults() {
        // The service's embedded defaults, from `[drilldown]` to the next section.
        let defaults = include_str!("../../../config/default.toml");
        let start = defaults.find("[drilldown]").unwrap();
        let end = defaults[start + 1..]
            .find("\n[")
            .map_or(defaults.len(), |i| start + 2 + i);
        let text = &defaults[start..end];
        assert_eq!(load(text).unwrap(), DrilldownConfig::default());
        // Every field is in the snippet, each after a comment.
        let fields = [
            "enabled",
            "frequency",
            "vehicles",
            "allow_list_path",
            "allow_list_reload_interval_ms",
            "sample_fraction",
        ];
        let lines: Vec<&str> = text.lines().collect();
        let keys = lines
            .iter()
            .filter(|l| !l.starts_with('#') && l.contains(" = "))
            .count();
        assert_eq!(
            keys,
            fields.len(),
            "a key of the snippet is not listed here"
        );
        for name in fields {
            let at = lines
                .iter()
                .position(|l| l.starts_with(&format!("{name} =")))
                .unwrap_or_else(|| panic!("{name} missing from config/default.toml"));
            assert!(lines[at - 1].starts_with('#'), "{name} has no comment");
        }
    }

    #[test]
    fn parses_snake_case_values_and_refuses_unknown_keys() {
        let config = load(
            "[drilldown]\nenabled = true\nfrequency = \"raw\"\nvehicles = \"all\"\nsample_fraction = 0.5\n",
        )
        .unwrap();
        assert!(config.enabled);
        assert_eq!(config.frequency, SampleFrequency::Raw);
        assert_eq!(config.vehicles, VehicleScope::All);
        assert_eq!(config.sample_fraction, 0.5);
        assert_eq!(config.allow_list_reload_interval_ms, 10_000, "default kept");
        assert_eq!(load("[drilldown]\n").unwrap(), DrilldownConfig::default());
        for scope in [
            VehicleScope::All,
            VehicleScope::AllowList,
            VehicleScope::Sample,
        ] {
            let text = format!("[drilldown]\nvehicles = \"{}\"\n", scope.as_str());
            assert_eq!(load(&text).unwrap().vehicles, scope);
        }
        for frequency in [
            SampleFrequency::Raw,
            SampleFrequency::WindowLast,
            SampleFrequency::WindowMean,
        ] {
            let text = format!("[drilldown]\nfrequency = \"{}\"\n", frequency.as_str());
            assert_eq!(load(&text).unwrap().frequency, frequency);
        }
        let error = load("[drilldown]\nfrequency = \"WindowLast\"\n").unwrap_err();
        assert!(error.to_string().contains("drilldown.frequency"), "{error}");
        let error = load("[drilldown]\nsample_fractoin = 0.5\n").unwrap_err();
        assert!(error.to_string().contains("sample_fractoin"), "{error}");
    }

    #[test]
    fn sample_fraction_must_be_a_share_when_sampling() {
        for bad in [0.0, -0.1, 1.0001, 2.0, f64::NAN, f64::INFINITY] {
            let config = DrilldownConfig {
                sample_fraction: bad,
                ..DrilldownConfig::default()
            };
            assert_eq!(keys(&config), ["drilldown.sample_fraction"], "{bad}");
        }
        for good in [1.0, 0.5, 1e-9] {
            let config = DrilldownConfig {
                sample_fraction: good,
                ..DrilldownConfig::default()
            };
            assert!(keys(&config).is_empty(), "{good}");
        }
        // Not sampling: the fraction does not matter.
        let config = DrilldownConfig {
            vehicles: VehicleScope::All,
            sample_fraction: 0.0,
            ..DrilldownConfig::default()
        };
        assert!(keys(&config).is_empty());
    }

    #[test]
    fn allow_list_needs_a_readable_file() {
        let config = DrilldownConfig {
            enabled: true,
            vehicles: VehicleScope::AllowList,
            ..DrilldownConfig::default()
        };
        let problems = problems_of(&config);
        assert_eq!(problems.len(), 1, "{problems:?}");
        assert_eq!(problems[0].0, "drilldown.allow_list_path");
        assert!(problems[0].1.contains("required"), "{problems:?}");

        let config = DrilldownConfig {
            allow_list_path: "/nonexistent/drilldown-vins.txt".into(),
            ..config
        };
        let problems = problems_of(&config);
        assert_eq!(problems.len(), 1, "{problems:?}");
        assert_eq!(problems[0].0, "drilldown.allow_list_path");
        assert!(
            problems[0].1.contains("/nonexistent/drilldown-vins.txt"),
            "{problems:?}"
        );
        // Disabled: the file is not read, but the path is still required.
        assert!(keys(&DrilldownConfig {
            enabled: false,
            ..config.clone()
        })
        .is_empty());
        assert_eq!(
            keys(&DrilldownConfig {
                enabled: false,
                allow_list_path: " ".into(),
                ..config.clone()
            }),
            ["drilldown.allow_list_path"]
        );

        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("vins.txt");
        std::fs::write(&path, "# fleet A\nVIN1\n\nVIN2\n").unwrap();
        let config = DrilldownConfig {
            allow_list_path: path.display().to_string(),
            ..config
        };
        assert!(keys(&config).is_empty());
        std::fs::write(&path, b"VIN1\n\xff\xfe\n").unwrap();
        let problems = problems_of(&config);
        assert_eq!(problems.len(), 1, "{problems:?}");
        assert!(problems[0].1.contains("line 2"), "{problems:?}");
        assert!(keys(&DrilldownConfig {
            allow_list_path: dir.path().display().to_string(),
            ..config
        })
        .contains(&"drilldown.allow_list_path".to_string()));
    }

    #[test]
    fn allow_list_path_without_allow_list_is_a_problem() {
        for scope in [VehicleScope::All, VehicleScope::Sample] {
            let config = DrilldownConfig {
                vehicles: scope,
                allow_list_path: "vins.txt".into(),
                ..DrilldownConfig::default()
            };
            let problems = problems_of(&config);
            assert_eq!(problems.len(), 1, "{problems:?}");
            assert_eq!(problems[0].0, "drilldown.allow_list_path");
            assert!(problems[0].1.contains(scope.as_str()), "{problems:?}");
        }
    }

    #[test]
    fn every_problem_is_reported_at_once() {
        let config = DrilldownConfig {
            enabled: true,
            vehicles: VehicleScope::Sample,
            sample_fraction: 3.0,
            allow_list_path: "vins.txt".into(),
            ..DrilldownConfig::default()
        };
        let mut found = keys(&config);
        found.sort();
        assert_eq!(
            found,
            ["drilldown.allow_list_path", "drilldown.sample_fraction"]
        );
    }

    #[test]
    fn reload_interval_zero_means_never() {
        let config = DrilldownConfig {
            allow_list_reload_interval_ms: 0,
            ..DrilldownConfig::default()
        };
        assert_eq!(config.allow_list_reload_interval(), None);
        assert_eq!(
            DrilldownConfig::default().allow_list_reload_interval(),
            Some(Duration::from_millis(10_000))
        );
    }
}
