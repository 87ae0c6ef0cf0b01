//! The service's configuration: one section per stage, layered and validated once.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use fleet_core::config::{ConfigError, Layers, Problems};
use fleet_core::telemetry::LogFormat;
use fleet_core::{PipelineConfig, WatermarkRules, WindowSpec};
use fleet_drilldown::DrilldownConfig;
use fleet_enricher::UnknownVehiclePolicy;
use fleet_generator::GeneratorConfig;
use fleet_kafka::KafkaConfig;
use fleet_remote_write::RemoteWriteConfig;
use serde::{Deserialize, Serialize, Serializer};

/// The embedded defaults, so the binary runs with no file at all.
pub const DEFAULT_TOML: &str = include_str!("../../../config/default.toml");

/// The whole configuration as written.
#[derive(Clone, Debug, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct Settings {
    /// `[pipeline]`
    pub pipeline: PipelineConfig,
    /// `[kafka]`
    pub kafka: KafkaConfig,
    /// `[reference]`
    pub reference: ReferenceSettings,
    /// `[windows]`
    pub windows: WindowSettings,
    /// `[remote_write]`
    pub remote_write: RemoteWriteConfig,
    /// `[drilldown]`: the optional per-vehicle output.
    pub drilldown: DrilldownConfig,
    /// `[generator]`: the embedded generator.
    pub generator: GeneratorConfig,
    /// `[channels]`
    pub channels: ChannelSettings,
    /// `[telemetry]`
    pub telemetry: TelemetrySettings,
}

/// `[reference]`
#[derive(Clone, Debug, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct ReferenceSettings {
    /// CSV `vehicle_id,model`; empty: none.
    pub csv_path: String,
    /// What happens to vehicles missing from it.
    #[serde(serialize_with = "serialize_unknown_vehicle")]
    pub unknown_vehicle: UnknownVehiclePolicy,
    /// How often the file is checked for changes and reloaded, ms; 0: never.
    pub reload_interval_ms: u64,
    /// A compacted Kafka topic of reference data (key = vehicle id, value =
    /// `{"model":…}`, empty = retired), instead of the file; empty: none.
    pub topic: String,
    /// Reference columns (CSV) or attributes (topic) that become labels and
    /// grouping keys of the aggregates, besides model and region.
    pub dimensions: Vec<String>,
}

/// Fields of the JSON-lines record (replay, console): a dimension, which
/// becomes a field too, may not take one. The labels the service sets
/// (`model`, `region`, …) are refused by `check_label_name`.
const RESERVED_DIMENSION_NAMES: [&str; 8] = [
    "window_start",
    "window_end",
    "vehicles_in_motion",
    "warnings",
    "vehicles_reporting",
    "ic_engine_rpm_avg",
    "electric_motor_rpm_avg",
    "events",
];

impl ReferenceSettings {
    fn validate_dimensions(&self, remote_write: &RemoteWriteConfig, p: &mut Problems) {
        for (i, name) in self.dimensions.iter().enumerate() {
            let problem = if let Err(problem) = fleet_remote_write::check_label_name(name) {
                Some(problem)
            } else if RESERVED_DIMENSION_NAMES.contains(&name.as_str()) {
                Some(format!("{name:?} is a name the service uses itself"))
            } else if self.dimensions[..i].contains(name) {
                Some(format!("{name:?} is named twice"))
            } else if remote_write.constant_labels.contains_key(name) {
                Some(format!(
                    "{name:?} is also a constant label (remote_write.constant_labels)"
                ))
            } else {
                None
            };
            if let Some(problem) = problem {
                p.add("reference.dimensions", problem);
            }
        }
    }
}

/// `[windows]`
#[derive(Clone, Debug, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct WindowSettings {
    /// Window length, ms.
    pub length_ms: i64,
    /// Bounded out-of-orderness, ms.
    pub out_of_orderness_ms: i64,
    /// Idleness timeout, ms.
    pub idle_timeout_ms: u64,
    /// All-idle wall-clock close delay, ms; 0 disables it.
    pub all_idle_close_after_ms: u64,
    /// Most label sets (groups) one window writes; the excess is folded
    /// into one group labelled `other`.
    pub max_label_sets: usize,
}

/// `[channels]`: capacities in batches.
#[derive(Clone, Debug, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct ChannelSettings {
    /// Source → enricher.
    pub source_to_enricher: usize,
    /// Enricher → aggregator.
    pub enricher_to_aggregator: usize,
    /// Aggregator → sink.
    pub aggregator_to_sink: usize,
}

/// `[telemetry]`
#[derive(Clone, Debug, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct TelemetrySettings {
    /// `host:port` of the HTTP endpoint; empty: none.
    pub listen: String,
    /// Log line format.
    #[serde(serialize_with = "serialize_log_format")]
    pub log_format: LogFormat,
    /// Log level or filter.
    pub log_level: String,
}

/// Where the aggregates go.
#[derive(Clone, Debug)]
pub enum SinkKind {
    /// JSON lines on stdout.
    Console,
    /// Prometheus remote write.
    RemoteWrite(Box<RemoteWriteConfig>),
}

/// Settings after validation: parsed, cross-checked, in the types the stages take.
#[derive(Clone, Debug)]
pub struct ValidSettings {
    /// The settings as written (for `print-config`).
    pub raw: Settings,
    /// Kafka, when configured; otherwise the embedded generator runs.
    pub kafka: Option<KafkaConfig>,
    /// The reference CSV, when configured.
    pub reference_csv: Option<PathBuf>,
    /// The reference topic, when configured (requires Kafka).
    pub reference_topic: Option<String>,
    /// Window geometry.
    pub window: WindowSpec,
    /// Watermark rules.
    pub watermarks: WatermarkRules,
    /// Output.
    pub sink: SinkKind,
    /// Telemetry endpoint address.
    pub listen: Option<SocketAddr>,
}

// The enums below live in crates that only deserialize them; they are written
// back as the same snake_case words the configuration takes.
fn serialize_unknown_vehicle<S: Serializer>(
    policy: &UnknownVehiclePolicy,
    s: S,
) -> Result<S::Ok, S::Error> {
    s.serialize_str(match policy {
        UnknownVehiclePolicy::Unknown => "unknown",
        UnknownVehiclePolicy::Drop => "drop",
    })
}

fn serialize_log_format<S: Serializer>(format: &LogFormat, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_str(match format {
        LogFormat::Human => "human",
        LogFormat::Json => "json",
    })
}

impl Settings {
    /// The effective configuration as TOML, every secret replaced by
    /// `<redacted>`: the secrets are [`fleet_core::Secret`]s, which serialize
    /// so (`remote_write.basic_auth_password`, the values of
    /// `remote_write.headers`, `kafka.security.password`, and the secret
    /// properties of `kafka.client`: see [`fleet_kafka::ClientProperties`]).
    pub fn to_redacted_toml(&self) -> Result<String, toml::ser::Error> {
        toml::to_string(self)
    }

    /// Loads the layers: embedded defaults, optional file, `FLEET__*` environment.
    pub fn load(file: Option<&std::path::Path>) -> Result<Settings, ConfigError> {
        fleet_core::config::load(Layers {
            defaults_toml: DEFAULT_TOML,
            file,
            env_prefix: Some("FLEET"),
        })
    }

    /// Loads the layers, recording every key that does not load (see
    /// [`fleet_core::config::load_collecting`]); the result has defaults in
    /// place of those keys, for [`Settings::validate_with`].
    pub fn load_collecting(
        file: Option<&std::path::Path>,
        problems: &mut Problems,
    ) -> Option<Settings> {
        fleet_core::config::load_collecting(
            Layers {
                defaults_toml: DEFAULT_TOML,
                file,
                env_prefix: Some("FLEET"),
            },
            problems,
        )
    }

    /// Checks everything and reports every problem at once.
    #[cfg(test)]
    pub fn validate(self) -> Result<ValidSettings, ConfigError> {
        self.validate_with(Problems::default())
    }

    /// Checks everything, adding to the problems already found while loading.
    pub fn validate_with(self, mut p: Problems) -> Result<ValidSettings, ConfigError> {
        self.kafka.validate(&mut p);
        let w = &self.windows;
        let window = WindowSpec::new(w.length_ms);
        p.check(
            window.is_some(),
            "windows.length_ms",
            "must be a positive number of milliseconds",
        );
        p.check(
            w.out_of_orderness_ms >= 0,
            "windows.out_of_orderness_ms",
            "must not be negative",
        );
        p.check(
            w.idle_timeout_ms > 0,
            "windows.idle_timeout_ms",
            "must be positive",
        );
        let remote = self.remote_write.enabled();
        if remote {
            self.remote_write.validate(&mut p);
        }
        self.drilldown.validate(&mut p);
        p.check(
            !self.drilldown.enabled || remote,
            "drilldown.enabled",
            "needs remote_write.url: the console output carries the aggregates only",
        );
        let reference_csv = (!self.reference.csv_path.trim().is_empty())
            .then(|| PathBuf::from(self.reference.csv_path.trim()));
        if let Some(path) = &reference_csv {
            p.check(
                path.is_file(),
                "reference.csv_path",
                format!("{} is not a readable file", path.display()),
            );
        }
        p.check(
            w.max_label_sets > 0,
            "windows.max_label_sets",
            "must be at least 1",
        );
        self.reference
            .validate_dimensions(&self.remote_write, &mut p);
        let reference_topic = (!self.reference.topic.trim().is_empty())
            .then(|| self.reference.topic.trim().to_string());
        if reference_topic.is_some() {
            p.check(
                self.kafka.enabled(),
                "reference.topic",
                "needs Kafka (kafka.brokers)",
            );
            p.check(
                reference_csv.is_none(),
                "reference.topic",
                "cannot be combined with reference.csv_path: choose one source",
            );
        }
        if !self.kafka.enabled() {
            if let Err(e) = self.generator.validate() {
                for problem in e.problems {
                    p.add(&format!("generator.{}", problem.key), problem.problem);
                }
            }
        }
        for (key, cap) in [
            (
                "channels.source_to_enricher",
                self.channels.source_to_enricher,
            ),
            (
                "channels.enricher_to_aggregator",
                self.channels.enricher_to_aggregator,
            ),
            (
                "channels.aggregator_to_sink",
                self.channels.aggregator_to_sink,
            ),
        ] {
            p.check(cap > 0, key, "must be at least 1");
        }
        let listen = self.telemetry.listen.trim();
        let listen_addr = if listen.is_empty() {
            None
        } else {
            let parsed = listen.parse::<SocketAddr>();
            p.check(
                parsed.is_ok(),
                "telemetry.listen",
                format!("{listen:?} is not an ip:port address"),
            );
            parsed.ok()
        };
        let window = match window {
            Some(w) => w,
            None => {
                return Err(p
                    .finish(())
                    .err()
                    .unwrap_or_else(|| ConfigError::single("windows.length_ms", "invalid")))
            }
        };
        let watermarks = WatermarkRules {
            out_of_orderness_ms: w.out_of_orderness_ms.max(0),
            idle_timeout: Duration::from_millis(w.idle_timeout_ms),
            all_idle_close_after: (w.all_idle_close_after_ms > 0)
                .then(|| Duration::from_millis(w.all_idle_close_after_ms)),
        };
        let sink = if remote {
            SinkKind::RemoteWrite(Box::new(self.remote_write.clone()))
        } else {
            SinkKind::Console
        };
        let kafka = self.kafka.enabled().then(|| self.kafka.clone());
        p.finish(ValidSettings {
            kafka,
            reference_csv,
            reference_topic,
            window,
            watermarks,
            sink,
            listen: listen_addr,
            raw: self,
        })
    }
}

#[cfg(test)]
mod tests {
    use fleet_core::secret::REDACTED;

    use super::*;

    #[test]
    fn embedded_defaults_parse_and_validate() {
        let s = Settings::load(None).unwrap().validate().unwrap();
        assert!(s.kafka.is_none());
        assert!(matches!(s.sink, SinkKind::Console));
        assert_eq!(s.window.length_ms(), 5000);
        assert_eq!(s.watermarks, WatermarkRules::defaults());
    }

    /// `config/default.toml` is the one source of defaults: a section's Rust
    /// `Default` (what a library user of the stage gets) must say the same.
    #[test]
    fn every_sections_default_is_the_one_in_default_toml() {
        let embedded: Settings = toml::from_str(DEFAULT_TOML).unwrap();
        assert_eq!(embedded.pipeline, PipelineConfig::default());
        assert_eq!(embedded.kafka, KafkaConfig::default());
        assert_eq!(embedded.remote_write, RemoteWriteConfig::default());
        assert_eq!(embedded.drilldown, DrilldownConfig::default());
        assert_eq!(embedded.generator, GeneratorConfig::default());
    }

    #[test]
    fn every_problem_is_named() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("bad.toml");
        std::fs::write(
            &file,
            "[windows]\nlength_ms = 0\nidle_timeout_ms = 0\n[channels]\nsource_to_enricher = 0\n[telemetry]\nlisten = \"nowhere\"\n",
        )
        .unwrap();
        let err = Settings::load(Some(&file)).unwrap().validate().unwrap_err();
        let keys: Vec<_> = err.problems.iter().map(|p| p.key.as_str()).collect();
        assert_eq!(
            keys,
            vec![
                "windows.length_ms",
                "windows.idle_timeout_ms",
                "channels.source_to_enricher",
                "telemetry.listen"
            ]
        );
    }

    #[test]
    fn printed_configuration_hides_secrets_and_loads_back() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("secret.toml");
        std::fs::write(
            &file,
            "[kafka.client]\n\"sasl.password\" = \"kafka-pw\"\n\"sasl.oauthbearer.client.secret\" = \"s3cr3t\"\n\"fetch.min.bytes\" = \"1\"\n[remote_write]\nbasic_auth_password = \"rw-pw\"\nheaders = { Authorization = \"Bearer tok\" }\n",
        )
        .unwrap();
        let settings = Settings::load(Some(&file)).unwrap();
        let text = settings.to_redacted_toml().unwrap();
        for secret in ["kafka-pw", "s3cr3t", "rw-pw", "Bearer tok"] {
            assert!(!text.contains(secret), "{secret} shown in:\n{text}");
        }
        assert!(text.contains("fetch.min.bytes"), "{text}");
        // What it prints is itself a complete, valid configuration.
        let printed = dir.path().join("printed.toml");
        std::fs::write(&printed, &text).unwrap();
        let back = Settings::load(Some(&printed)).unwrap();
        assert_eq!(back.windows.length_ms, settings.windows.length_ms);
        assert_eq!(back.kafka.client["fetch.min.bytes"], "1");
        assert_eq!(
            back.remote_write
                .basic_auth_password
                .as_ref()
                .map(fleet_core::Secret::expose),
            Some(REDACTED)
        );
    }

    #[test]
    fn dimensions_must_be_label_names_of_their_own() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("dims.toml");
        std::fs::write(
            &file,
            "[reference]\ndimensions = [\"fuel_type\", \"model\", \"fuel-type\", \"fuel_type\", \"zone\"]\n[windows]\nmax_label_sets = 0\n[remote_write]\nconstant_labels = { zone = \"eu\" }\n",
        )
        .unwrap();
        let err = Settings::load(Some(&file)).unwrap().validate().unwrap_err();
        let text = err.to_string();
        for expected in [
            "windows.max_label_sets",
            "\"model\" is set by the service itself",
            "\"fuel-type\" is not a label name",
            "\"fuel_type\" is named twice",
            "\"zone\" is also a constant label",
        ] {
            assert!(text.contains(expected), "{expected} missing from: {text}");
        }
        std::fs::write(
            &file,
            "[reference]\ndimensions = [\"fuel_type\", \"model_year\"]\n",
        )
        .unwrap();
        let ok = Settings::load(Some(&file)).unwrap().validate().unwrap();
        assert_eq!(ok.raw.reference.dimensions, ["fuel_type", "model_year"]);
    }

    #[test]
    fn unknown_keys_and_wrong_types_name_the_key() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("bad.toml");
        std::fs::write(&file, "[windows]\nlength_ms = \"five\"\n").unwrap();
        let err = Settings::load(Some(&file)).unwrap_err();
        assert_eq!(err.problems[0].key, "windows.length_ms");
        std::fs::write(&file, "[kafka]\nbrokerz = \"x:1\"\n").unwrap();
        let err = Settings::load(Some(&file)).unwrap_err();
        assert!(err.to_string().contains("brokerz"), "{err}");
    }
}
