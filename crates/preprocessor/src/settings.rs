//! The service's configuration: one section per stage, each declared and
//! checked by the crate that owns it, layered and validated once here, where
//! the checks that span sections live too.

use std::collections::BTreeSet;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use fleet_core::config::{ConfigError, Layers, Problems};
use fleet_core::decode::Decoder;
use fleet_core::telemetry::{LogFormat, TelemetryConfig};
use fleet_core::DeadLetterCause;
use fleet_core::{
    ChannelsConfig, OutputMode, PipelineConfig, WatermarkRules, WindowSpec, WindowsConfig,
};
use fleet_drilldown::DrilldownConfig;
use fleet_enricher::{ReferenceConfig, ReferencePlan, ReferenceSource};
use fleet_generator::GeneratorConfig;
use fleet_kafka::{DeadLetterConfig, KafkaConfig};
use fleet_plan::{InputConfig, MetricConfig, MetricPlan, RecordFormat};
use fleet_remote_write::RemoteWriteConfig;
use fleet_schema::{InputSchema, RecordReader, SchemaRegistryConfig};
use serde::{Deserialize, Serialize};

/// The embedded defaults, so the binary runs with no file at all.
pub const DEFAULT_TOML: &str = include_str!("../../../config/default.toml");

/// The whole configuration as written.
#[derive(Clone, Debug, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct Settings {
    /// `[pipeline]` (fleet-core)
    pub pipeline: PipelineConfig,
    /// `[input]` (fleet-plan): the records' schema.
    pub input: InputConfig,
    /// `[[metrics]]` (fleet-plan): what each window computes.
    pub metrics: Vec<MetricConfig>,
    /// `[kafka]` (fleet-kafka)
    pub kafka: KafkaConfig,
    /// `[dead_letter]` (fleet-kafka): where what cannot be processed is kept.
    pub dead_letter: DeadLetterConfig,
    /// `[schema_registry]` (fleet-schema): where framed records' schemas are.
    pub schema_registry: SchemaRegistryConfig,
    /// `[reference]` (fleet-enricher)
    pub reference: ReferenceConfig,
    /// `[windows]` (fleet-core)
    pub windows: WindowsConfig,
    /// `[remote_write]` (fleet-remote-write)
    pub remote_write: RemoteWriteConfig,
    /// `[drilldown]` (fleet-drilldown): the optional per-vehicle output.
    pub drilldown: DrilldownConfig,
    /// `[generator]` (fleet-generator): the embedded generator.
    pub generator: GeneratorConfig,
    /// `[channels]` (fleet-core)
    pub channels: ChannelsConfig,
    /// `[telemetry]` (fleet-core)
    pub telemetry: TelemetryConfig,
}

/// What a dimension name must not clash with outside `[reference]`: the
/// sink's label rules and constant labels. (The plan refuses a name that is
/// a JSON-lines field, as it does for the event labels.)
fn check_dimensions(dimensions: &[String], remote_write: &RemoteWriteConfig, p: &mut Problems) {
    for name in dimensions {
        let problem = if let Err(problem) = fleet_remote_write::check_label_name(name) {
            problem
        } else if remote_write.constant_labels.contains_key(name) {
            format!("{name:?} is also a constant label (remote_write.constant_labels)")
        } else {
            continue;
        };
        p.add("reference.dimensions", problem);
    }
}

/// Where the aggregates go.
#[derive(Clone, Debug)]
pub enum SinkKind {
    /// JSON lines on stdout.
    Console,
    /// Prometheus remote write.
    RemoteWrite(Box<RemoteWriteConfig>),
}

/// Where the events come from.
#[derive(Clone, Debug)]
pub enum SourceKind {
    /// A Kafka consumer group (`kafka.brokers` set).
    Kafka(Box<KafkaConfig>),
    /// The in-process generator, paced in real time (no Kafka configured).
    Embedded(GeneratorConfig),
    /// A file of raw events, a bounded input (`replay`).
    File(PathBuf),
}

/// Settings after validation: parsed, cross-checked, in the types the stages
/// take. The wiring reads nothing else.
#[derive(Clone, Debug)]
pub struct ValidSettings {
    /// Where the events come from.
    pub source: SourceKind,
    /// The records' schema and the metrics, compiled.
    pub plan: Arc<MetricPlan>,
    /// What binary records are read against (`input.schema_file`, or the
    /// schema registry).
    pub schema: InputSchema,
    /// The dead-letter topic and the causes it keeps, when configured.
    pub dead_letter: Option<(DeadLetterConfig, BTreeSet<DeadLetterCause>)>,
    /// The enricher's reference data.
    pub reference: ReferencePlan,
    /// The drill-down output (`[drilldown]`).
    pub drilldown: DrilldownConfig,
    /// Window geometry.
    pub window: WindowSpec,
    /// Watermark rules.
    pub watermarks: WatermarkRules,
    /// One window set over every partition, or one per partition.
    pub output_mode: OutputMode,
    /// Most label sets one window of one scope writes.
    pub max_label_sets: usize,
    /// Channel capacities, in batches.
    pub channels: ChannelsConfig,
    /// Where the aggregates go.
    pub sink: SinkKind,
    /// Telemetry endpoint address.
    pub listen: Option<SocketAddr>,
    /// Log line format and level.
    pub log: (LogFormat, String),
    /// After a stop request, how long the source waits for the sink to drain.
    pub drain_timeout: Duration,
}

impl ValidSettings {
    /// Reads the reference CSV as the service does at start, so that
    /// `check-config` refuses what the service would (`reference.csv_path`).
    pub fn check_reference_data(&self) -> Result<(), ConfigError> {
        let ReferenceSource::Csv { path, .. } = &self.reference.source else {
            return Ok(());
        };
        fleet_enricher::ReferenceTable::from_csv_file(path, &self.reference.dimensions)
            .map(drop)
            .map_err(|e| ConfigError::single("reference.csv_path", e.to_string()))
    }

    /// Refuses an `[input]` that reads none of the embedded generator's
    /// events when the generator is the source: every event would be counted
    /// as malformed. `replay` reads a file instead and does not ask.
    pub fn check_embedded_input(&self) -> Result<(), ConfigError> {
        let SourceKind::Embedded(generator) = &self.source else {
            return Ok(());
        };
        if self.plan.input.format != RecordFormat::Json {
            return Err(ConfigError::single(
                "input.format",
                format!(
                    "the embedded generator (the source while kafka.brokers is empty) writes \
                     JSON, not {}; set kafka.brokers",
                    self.plan.input.format.as_str()
                ),
            ));
        }
        fleet_generator::live::readable_by(generator, &self.decoder()).map_err(|refusal| {
            ConfigError::single(
                "input",
                format!(
                    "reads none of the embedded generator's events, which are the reference \
                     demo's (the source while kafka.brokers is empty; the first was refused: \
                     {refusal}); set kafka.brokers, or give a file of your records to \
                     `fleet-preprocessor replay`"
                ),
            )
        })
    }

    /// The decoder of the configured records, for the sources other than
    /// Kafka (whose records are JSON: a registry needs Kafka).
    pub fn decoder(&self) -> Decoder {
        match &self.schema {
            InputSchema::Fixed(schema) => Decoder::for_schema(&self.plan.input, schema).0,
            InputSchema::Registry(_) => Decoder::new(&self.plan.input),
        }
    }

    /// The reader of the configured records from Kafka.
    pub fn record_reader(&self) -> Result<RecordReader, String> {
        RecordReader::new(&self.plan.input, &self.schema)
    }

    /// Refuses binary records for `replay`, which reads a file of JSON lines.
    pub fn check_replay_input(&self) -> Result<(), ConfigError> {
        match self.plan.input.format {
            RecordFormat::Json => Ok(()),
            format => Err(ConfigError::single(
                "input.format",
                format!(
                    "replay reads a file of JSON records, one a line, not {}",
                    format.as_str()
                ),
            )),
        }
    }

    /// The same pipeline over a file of raw events (`replay`): a bounded
    /// input with no idleness, printed as JSON lines; its reference data is
    /// the CSV as it is at the start (a reference topic is not read), and it
    /// writes no drill-down and serves no telemetry endpoint.
    pub fn for_replay(self, input: PathBuf) -> ValidSettings {
        let reference = match self.reference.source {
            ReferenceSource::Csv { path, .. } => ReferenceSource::Csv { path, reload: None },
            ReferenceSource::None | ReferenceSource::Topic(_) => ReferenceSource::None,
        };
        ValidSettings {
            source: SourceKind::File(input),
            reference: ReferencePlan {
                source: reference,
                ..self.reference
            },
            drilldown: DrilldownConfig {
                enabled: false,
                ..self.drilldown
            },
            watermarks: self.watermarks.bounded(),
            sink: SinkKind::Console,
            listen: None,
            ..self
        }
    }
}

impl Settings {
    /// The effective configuration as TOML, every secret replaced by
    /// `<redacted>`: the secrets are [`fleet_core::Secret`]s, which serialize
    /// so (`remote_write.basic_auth_password`, the values of
    /// `remote_write.headers`, `kafka.security.password`, and the secret
    /// properties of `kafka.client`: see [`fleet_kafka::ClientProperties`]),
    /// and so is a password in `remote_write.url`.
    pub fn to_redacted_toml(&self) -> Result<String, toml::ser::Error> {
        let mut shown = self.clone();
        shown.remote_write.url = fleet_core::secret::redact_url(&self.remote_write.url).into();
        toml::to_string(&shown)
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

    /// [`Settings::load_collecting`] with the `FLEET__*` variables of `env`
    /// in place of the process environment, which is then not read (see
    /// [`fleet_core::config::load_collecting_with_env`]).
    pub fn load_collecting_with_env(
        file: Option<&std::path::Path>,
        env: &std::collections::BTreeMap<String, String>,
        problems: &mut Problems,
    ) -> Option<Settings> {
        fleet_core::config::load_collecting_with_env(
            Layers {
                defaults_toml: DEFAULT_TOML,
                file,
                env_prefix: Some("FLEET"),
            },
            env,
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
        let dead_letter_causes = self.dead_letter.validate(&self.kafka, &mut p);
        let event_time = self.windows.validate(&mut p);
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
        let reference = self.reference.validate(&mut p);
        check_dimensions(&reference.dimensions, &self.remote_write, &mut p);
        let plan = MetricPlan::compile(&self.input, &self.metrics, &reference.dimensions)
            .map_err(|problems| {
                for problem in problems {
                    p.add(&problem.key, problem.problem);
                }
            })
            .ok();
        if let Some(plan) = &plan {
            for label in &plan.labels {
                if matches!(label.source, fleet_plan::LabelSource::Event(_))
                    && self.remote_write.constant_labels.contains_key(&label.name)
                {
                    p.add(
                        "input.labels",
                        format!(
                            "{:?} is also a constant label (remote_write.constant_labels)",
                            label.name
                        ),
                    );
                }
            }
        }
        if !self.reference.topic.trim().is_empty() {
            p.check(
                self.kafka.enabled(),
                "reference.topic",
                "needs Kafka (kafka.brokers)",
            );
        }
        if !self.kafka.enabled() {
            if let Err(e) = self.generator.validate() {
                for problem in e.problems {
                    p.add(&format!("generator.{}", problem.key), problem.problem);
                }
            }
        }
        if let Some(plan) = &plan {
            self.schema_registry.validate(&plan.input, &mut p);
        }
        if self.schema_registry.enabled() {
            p.check(
                self.kafka.enabled(),
                "schema_registry.url",
                "needs Kafka (kafka.brokers): framed records come from there",
            );
        }
        let schema = plan.as_ref().and_then(|plan| {
            fleet_schema::load(&plan.input, &self.schema_registry)
                .map_err(|e| {
                    for (key, problem) in e.problems {
                        p.add(&key, problem);
                    }
                })
                .ok()
        });
        self.channels.validate(&mut p);
        let listen = self.telemetry.validate(&mut p);
        let (Some((window, watermarks)), Some(plan), Some(schema)) = (event_time, plan, schema)
        else {
            return Err(p
                .finish(())
                .err()
                .unwrap_or_else(|| ConfigError::single("", "invalid")));
        };
        let sink = if remote {
            SinkKind::RemoteWrite(Box::new(self.remote_write))
        } else {
            SinkKind::Console
        };
        let source = if self.kafka.enabled() {
            SourceKind::Kafka(Box::new(self.kafka.clone()))
        } else {
            SourceKind::Embedded(self.generator)
        };
        p.finish(ValidSettings {
            source,
            plan: Arc::new(plan),
            schema,
            dead_letter: self
                .dead_letter
                .enabled()
                .then(|| (self.dead_letter.clone(), dead_letter_causes)),
            reference,
            drilldown: self.drilldown,
            window,
            watermarks,
            output_mode: self.pipeline.output_mode,
            max_label_sets: self.windows.max_label_sets,
            channels: self.channels,
            sink,
            listen,
            log: (self.telemetry.log_format, self.telemetry.log_level),
            drain_timeout: Duration::from_millis(self.kafka.drain_timeout_ms),
        })
    }
}

#[cfg(test)]
mod tests {
    use fleet_core::secret::REDACTED;

    use super::*;

    #[test]
    fn the_embedded_generator_needs_an_input_that_reads_its_events() {
        let defaults = Settings::load(None).unwrap().validate().unwrap();
        assert_eq!(defaults.check_embedded_input(), Ok(()));

        let dir = tempfile::tempdir().unwrap();
        let wide = dir.path().join("wide.toml");
        std::fs::write(
            &wide,
            fleet_generator::WideLayout::new(5).unwrap().config_toml(),
        )
        .unwrap();
        let valid = Settings::load(Some(&wide)).unwrap().validate().unwrap();
        let refusal = valid.check_embedded_input().unwrap_err().to_string();
        assert!(refusal.contains("input: reads none"), "{refusal}");
        // Replay reads a file, whatever the generator writes.
        let replay = valid.for_replay("records.jsonl".into());
        assert_eq!(replay.check_embedded_input(), Ok(()));
    }

    #[test]
    fn embedded_defaults_parse_and_validate() {
        let s = Settings::load(None).unwrap().validate().unwrap();
        assert!(matches!(s.source, SourceKind::Embedded(_)));
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
            "[kafka.client]\n\"sasl.password\" = \"kafka-pw\"\n\"sasl.oauthbearer.client.secret\" = \"s3cr3t\"\n\"fetch.min.bytes\" = \"1\"\n[remote_write]\nurl = \"http://writer:url-pw@prom:9090/api/v1/write\"\nbasic_auth_password = \"rw-pw\"\nheaders = { Authorization = \"Bearer tok\" }\n",
        )
        .unwrap();
        let settings = Settings::load(Some(&file)).unwrap();
        let text = settings.to_redacted_toml().unwrap();
        for secret in ["kafka-pw", "s3cr3t", "rw-pw", "Bearer tok", "url-pw"] {
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
        assert_eq!(ok.reference.dimensions, ["fuel_type", "model_year"]);
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
