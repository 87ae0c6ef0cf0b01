//! Layered configuration: embedded defaults → `--config` file → environment.
//!
//! Environment variables map one-to-one onto keys: `FLEET__KAFKA__BROKERS`
//! sets `kafka.brokers`. Errors name the key and the problem; binaries exit
//! with [`EXIT_CONFIG`] on them before touching any external service.

use std::collections::BTreeMap;
use std::fmt;
use std::path::Path;

use serde::de::DeserializeOwned;

/// The exit code for a configuration error (`EX_USAGE` from sysexits.h).
pub const EXIT_CONFIG: i32 = 64;

/// One problem with the configuration.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ConfigProblem {
    /// The dotted key, for example `windows.length_ms`; empty when the problem is the whole file.
    pub key: String,
    /// What is wrong with it.
    pub problem: String,
}

impl ConfigProblem {
    /// A problem with `key`.
    pub fn new(key: impl Into<String>, problem: impl Into<String>) -> Self {
        ConfigProblem {
            key: key.into(),
            problem: problem.into(),
        }
    }
}

impl fmt::Display for ConfigProblem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.key.is_empty() {
            write!(f, "{}", self.problem)
        } else {
            write!(f, "{}: {}", self.key, self.problem)
        }
    }
}

/// The configuration could not be loaded or is invalid; lists every problem found.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub struct ConfigError {
    /// Every problem, in key order where known.
    pub problems: Vec<ConfigProblem>,
}

impl ConfigError {
    /// An error with a single problem.
    pub fn single(key: impl Into<String>, problem: impl Into<String>) -> Self {
        ConfigError {
            problems: vec![ConfigProblem::new(key, problem)],
        }
    }
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("invalid configuration")?;
        for p in &self.problems {
            write!(f, "\n  - {p}")?;
        }
        Ok(())
    }
}

/// Collects problems during validation so that all are reported at once.
#[derive(Debug, Default)]
pub struct Problems(Vec<ConfigProblem>);

impl Problems {
    /// Records a problem with `key`.
    pub fn add(&mut self, key: &str, problem: impl Into<String>) {
        self.0.push(ConfigProblem::new(key, problem));
    }

    /// Records a problem with `key` unless `ok`.
    pub fn check(&mut self, ok: bool, key: &str, problem: impl Into<String>) {
        if !ok {
            self.add(key, problem);
        }
    }

    /// `Ok(value)` when nothing was recorded.
    pub fn finish<T>(self, value: T) -> Result<T, ConfigError> {
        if self.0.is_empty() {
            Ok(value)
        } else {
            Err(ConfigError { problems: self.0 })
        }
    }
}

/// Where the layers come from.
#[derive(Clone, Copy, Debug)]
pub struct Layers<'a> {
    /// The embedded defaults (TOML), normally `include_str!("config/default.toml")`.
    pub defaults_toml: &'a str,
    /// An optional file given with `--config` (TOML).
    pub file: Option<&'a Path>,
    /// The environment prefix, for example `FLEET` for `FLEET__KAFKA__BROKERS`.
    pub env_prefix: Option<&'a str>,
}

/// Loads and deserialises the layered configuration into `T`; fails with
/// every problem found (see [`load_collecting`]).
pub fn load<T: DeserializeOwned>(layers: Layers<'_>) -> Result<T, ConfigError> {
    let mut problems = Problems::default();
    match load_collecting(layers, &mut problems) {
        Some(value) => problems.finish(value),
        None => Err(problems
            .finish(())
            .err()
            .unwrap_or_else(|| ConfigError::single("", "cannot load the configuration"))),
    }
}

/// The most keys one load repairs before giving up: a file with more broken
/// keys than this is reported in part.
const MAX_REPAIRS: usize = 64;

/// Loads the layers and records every key that does not deserialise, not only
/// the first: each broken key is reported, then replaced by its default (or
/// removed, when it has none — an unknown key) and deserialisation is tried
/// again. Returns the repaired value, so that the caller can go on to
/// validate the rest and report everything at once; `None` when the layers
/// cannot be read at all or the repairs do not converge.
pub fn load_collecting<T: DeserializeOwned>(
    layers: Layers<'_>,
    problems: &mut Problems,
) -> Option<T> {
    load_layers(layers, None, problems)
}

/// [`load_collecting`] with the variables of `env` (name → value, as
/// `FLEET__KAFKA__BROKERS` → `b-1:9092`) in place of the process
/// environment, which is then not read: for callers that must not depend
/// on it, such as the fuzz targets.
pub fn load_collecting_with_env<T: DeserializeOwned>(
    layers: Layers<'_>,
    env: &BTreeMap<String, String>,
    problems: &mut Problems,
) -> Option<T> {
    load_layers(layers, Some(env), problems)
}

/// [`load_collecting`] reading the environment from `env` when given.
fn load_layers<T: DeserializeOwned>(
    layers: Layers<'_>,
    env: Option<&BTreeMap<String, String>>,
    problems: &mut Problems,
) -> Option<T> {
    use config::{Config, Environment, File, FileFormat};
    let defaults = Config::builder()
        .add_source(File::from_str(layers.defaults_toml, FileFormat::Toml))
        .build()
        .and_then(|c| c.try_deserialize::<config::Value>());
    let mut builder =
        Config::builder().add_source(File::from_str(layers.defaults_toml, FileFormat::Toml));
    if let Some(path) = layers.file {
        if !path.is_file() {
            problems.add(
                "",
                format!("configuration file {} does not exist", path.display()),
            );
            return None;
        }
        builder = builder.add_source(File::from(path).format(FileFormat::Toml));
    }
    if let Some(prefix) = layers.env_prefix {
        builder = builder.add_source(
            Environment::with_prefix(prefix)
                .prefix_separator("__")
                .separator("__")
                .try_parsing(true)
                .source(env.map(|env| {
                    env.iter()
                        .map(|(name, value)| (name.clone(), value.clone()))
                        .collect()
                })),
        );
    }
    let merged = builder
        .build()
        .and_then(|c| c.try_deserialize::<config::Value>());
    let (defaults, mut tree) = match (defaults, merged) {
        (Ok(d), Ok(m)) => (d, m),
        (Err(e), _) | (_, Err(e)) => {
            problems.add("", e.to_string());
            return None;
        }
    };
    refuse_inexact_integers(&mut tree, &defaults, &mut Vec::new(), problems);
    for _ in 0..MAX_REPAIRS {
        let error = match serde_path_to_error::deserialize::<_, T>(tree.clone()) {
            Ok(value) => return Some(value),
            Err(e) => e,
        };
        let path: Vec<String> = error
            .path()
            .iter()
            .filter_map(|segment| match segment {
                serde_path_to_error::Segment::Map { key } => Some(key.clone()),
                serde_path_to_error::Segment::Seq { index } => Some(index.to_string()),
                _ => None,
            })
            .collect();
        problems.add(&path.join("."), error.into_inner().to_string());
        if !repair(&mut tree, &defaults, &path) {
            return None;
        }
    }
    None
}

/// Refuses, naming the key, a number given where the default is an integer
/// that is not exactly one: the deserialiser would round `5000.5` and `1e4`,
/// and saturate `1e20` (or an environment value too large for an `i64`, read
/// as a float), without a word. The default takes the key's place, so the
/// rest still loads and is checked.
fn refuse_inexact_integers(
    tree: &mut config::Value,
    defaults: &config::Value,
    path: &mut Vec<String>,
    problems: &mut Problems,
) {
    use config::ValueKind;
    let config::ValueKind::Table(table) = &mut tree.kind else {
        return;
    };
    for (key, value) in table.iter_mut() {
        let Some(default) = table_get(defaults, key) else {
            continue;
        };
        path.push(key.clone());
        let integer_default = matches!(
            default.kind,
            ValueKind::I64(_) | ValueKind::I128(_) | ValueKind::U64(_) | ValueKind::U128(_)
        );
        match &value.kind {
            ValueKind::Table(_) => refuse_inexact_integers(value, default, path, problems),
            ValueKind::Float(f) if integer_default => {
                let problem = if f.abs() >= 9.2e18 {
                    format!(
                        "{f} is beyond the integers this key takes (at most {})",
                        i64::MAX
                    )
                } else {
                    format!(
                        "must be an integer written without a fraction or an exponent, \
                         not the floating-point number {f}"
                    )
                };
                problems.add(&path.join("."), problem);
                *value = default.clone();
            }
            ValueKind::Boolean(b) if integer_default => {
                problems.add(&path.join("."), format!("must be an integer, not {b}"));
                *value = default.clone();
            }
            _ => {}
        }
        path.pop();
    }
}

/// `#[serde(default, deserialize_with = "fleet_core::config::exact_i64")]`
/// for an optional integer key that has no default to check it against (see
/// [`refuse_inexact_integers`]): a number that is not exactly an `i64` is
/// refused, not rounded.
pub fn exact_i64<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Option<i64>, D::Error> {
    struct Exact;
    impl serde::de::Visitor<'_> for Exact {
        type Value = i64;
        fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            f.write_str("an integer written without a fraction or an exponent")
        }
        fn visit_i64<E: serde::de::Error>(self, v: i64) -> Result<i64, E> {
            Ok(v)
        }
        fn visit_u64<E: serde::de::Error>(self, v: u64) -> Result<i64, E> {
            i64::try_from(v)
                .map_err(|_| E::invalid_value(serde::de::Unexpected::Unsigned(v), &self))
        }
        fn visit_str<E: serde::de::Error>(self, v: &str) -> Result<i64, E> {
            v.trim()
                .parse()
                .map_err(|_| E::invalid_value(serde::de::Unexpected::Str(v), &self))
        }
    }
    struct Optional;
    impl<'de> serde::de::Visitor<'de> for Optional {
        type Value = Option<i64>;
        fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            f.write_str("an integer written without a fraction or an exponent")
        }
        fn visit_none<E: serde::de::Error>(self) -> Result<Option<i64>, E> {
            Ok(None)
        }
        fn visit_unit<E: serde::de::Error>(self) -> Result<Option<i64>, E> {
            Ok(None)
        }
        fn visit_some<D: serde::Deserializer<'de>>(self, d: D) -> Result<Option<i64>, D::Error> {
            d.deserialize_any(Exact).map(Some)
        }
    }
    d.deserialize_option(Optional)
}

/// Puts the default of `path` in place of its value, or removes the key when
/// it has no default. False when nothing could be changed.
fn repair(tree: &mut config::Value, defaults: &config::Value, path: &[String]) -> bool {
    let Some((last, parents)) = path.split_last() else {
        return false;
    };
    let mut node = tree;
    let mut default = Some(defaults);
    for key in parents {
        let config::ValueKind::Table(table) = &mut node.kind else {
            return false;
        };
        let Some(child) = table.get_mut(key) else {
            return false;
        };
        node = child;
        default = default.and_then(|d| table_get(d, key));
    }
    let config::ValueKind::Table(table) = &mut node.kind else {
        return false;
    };
    match default.and_then(|d| table_get(d, last)) {
        Some(d) if table.get(last) != Some(d) => {
            table.insert(last.clone(), d.clone());
            true
        }
        _ => table.remove(last).is_some(),
    }
}

fn table_get<'a>(value: &'a config::Value, key: &str) -> Option<&'a config::Value> {
    match &value.kind {
        config::ValueKind::Table(table) => table.get(key),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde::Deserialize;

    #[derive(Debug, Deserialize)]
    #[serde(deny_unknown_fields)]
    #[allow(dead_code)]
    struct Sample {
        windows: Windows,
    }

    #[derive(Debug, Deserialize)]
    #[serde(deny_unknown_fields)]
    #[allow(dead_code)]
    struct Windows {
        length_ms: i64,
    }

    #[test]
    fn wrong_type_names_the_key() {
        let err = load::<Sample>(Layers {
            defaults_toml: "[windows]\nlength_ms = \"five\"\n",
            file: None,
            env_prefix: None,
        })
        .unwrap_err();
        assert_eq!(err.problems[0].key, "windows.length_ms", "{err}");
    }

    #[test]
    fn unknown_key_is_refused() {
        let err = load::<Sample>(Layers {
            defaults_toml: "[windows]\nlength_ms = 5\nlenght = 3\n",
            file: None,
            env_prefix: None,
        })
        .unwrap_err();
        assert!(err.to_string().contains("lenght"), "{err}");
    }

    #[derive(Debug, Deserialize)]
    #[serde(deny_unknown_fields)]
    #[allow(dead_code)]
    struct Two {
        windows: Windows,
        kafka: Kafka,
    }

    #[derive(Debug, Deserialize)]
    #[serde(deny_unknown_fields)]
    #[allow(dead_code)]
    struct Kafka {
        brokers: String,
        batch: u32,
    }

    #[test]
    fn every_broken_key_is_named_and_the_rest_loads_with_defaults() {
        let dir = std::env::temp_dir().join(format!("fleet-config-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let file = dir.join("broken.toml");
        std::fs::write(
            &file,
            "[windows]\nlength_ms = \"five\"\n[kafka]\nbrokers = \"b:9092\"\nbatch = -3\nbrokerz = 1\n",
        )
        .unwrap();
        let mut problems = Problems::default();
        let repaired = load_collecting::<Two>(
            Layers {
                defaults_toml: "[windows]\nlength_ms = 5\n[kafka]\nbrokers = \"\"\nbatch = 7\n",
                file: Some(&file),
                env_prefix: None,
            },
            &mut problems,
        )
        .expect("repaired");
        let err = problems.finish(()).unwrap_err();
        let keys: Vec<&str> = err.problems.iter().map(|p| p.key.as_str()).collect();
        assert!(keys.contains(&"windows.length_ms"), "{err}");
        assert!(keys.contains(&"kafka.batch"), "{err}");
        assert!(err.to_string().contains("brokerz"), "{err}");
        assert_eq!(err.problems.len(), 3, "{err}");
        assert_eq!(repaired.windows.length_ms, 5);
        assert_eq!(repaired.kafka.batch, 7);
        assert_eq!(
            repaired.kafka.brokers, "b:9092",
            "good keys keep their value"
        );
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn a_number_that_is_not_exactly_an_integer_is_refused_by_key() {
        let dir = tempfile_dir("inexact");
        let defaults = "[windows]\nlength_ms = 5\n[kafka]\nbrokers = \"\"\nbatch = 7\n";
        for (given, shown) in [
            ("5000.5", "5000.5"),
            ("1e4", "10000"),
            ("1e20", "100000000000000000000"),
            ("true", "true"),
        ] {
            let file = dir.join("inexact.toml");
            std::fs::write(&file, format!("[windows]\nlength_ms = {given}\n")).unwrap();
            let mut problems = Problems::default();
            let repaired = load_collecting::<Two>(
                Layers {
                    defaults_toml: defaults,
                    file: Some(&file),
                    env_prefix: None,
                },
                &mut problems,
            )
            .expect("repaired");
            let err = problems.finish(()).unwrap_err();
            assert_eq!(err.problems.len(), 1, "{err}");
            assert_eq!(err.problems[0].key, "windows.length_ms", "{err}");
            assert!(err.problems[0].problem.contains(shown), "{err}");
            assert_eq!(repaired.windows.length_ms, 5, "the default in its place");
        }
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[derive(Debug, Deserialize)]
    #[serde(deny_unknown_fields)]
    #[allow(dead_code)]
    struct Start {
        #[serde(default, deserialize_with = "exact_i64")]
        start_ms: Option<i64>,
    }

    #[derive(Debug, Deserialize)]
    #[serde(deny_unknown_fields)]
    #[allow(dead_code)]
    struct WithStart {
        generator: Start,
    }

    #[test]
    fn an_optional_integer_without_a_default_is_refused_when_inexact() {
        let dir = tempfile_dir("optional");
        let file = dir.join("start.toml");
        let load_with = |given: &str| {
            std::fs::write(&file, format!("[generator]\n{given}")).unwrap();
            load::<WithStart>(Layers {
                defaults_toml: "[generator]\n",
                file: Some(&file),
                env_prefix: None,
            })
        };
        assert_eq!(load_with("").unwrap().generator.start_ms, None);
        assert_eq!(
            load_with("start_ms = 1764000000000")
                .unwrap()
                .generator
                .start_ms,
            Some(1_764_000_000_000)
        );
        for inexact in ["start_ms = 1.5", "start_ms = 1e12", "start_ms = true"] {
            let err = load_with(inexact).unwrap_err();
            assert_eq!(
                err.problems[0].key, "generator.start_ms",
                "{inexact}: {err}"
            );
        }
        std::fs::remove_dir_all(&dir).unwrap();
    }

    fn tempfile_dir(name: &str) -> std::path::PathBuf {
        let dir = std::env::temp_dir().join(format!("fleet-config-{name}-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        dir
    }

    #[test]
    fn an_environment_given_replaces_the_process_one() {
        let defaults = "[windows]\nlength_ms = 5\n[kafka]\nbrokers = \"\"\nbatch = 7\n";
        let layers = Layers {
            defaults_toml: defaults,
            file: None,
            env_prefix: Some("FLEET_CONFIG_TEST"),
        };
        let env = BTreeMap::from([
            (
                "FLEET_CONFIG_TEST__KAFKA__BROKERS".to_owned(),
                "b:9092".to_owned(),
            ),
            (
                "FLEET_CONFIG_TEST__WINDOWS__LENGTH_MS".to_owned(),
                "9".to_owned(),
            ),
            ("OTHER__KAFKA__BATCH".to_owned(), "3".to_owned()),
        ]);
        let mut problems = Problems::default();
        let two: Two = load_collecting_with_env(layers, &env, &mut problems).expect("loads");
        problems.finish(()).unwrap();
        assert_eq!(two.kafka.brokers, "b:9092");
        assert_eq!((two.windows.length_ms, two.kafka.batch), (9, 7));

        let env = BTreeMap::from([(
            "FLEET_CONFIG_TEST__KAFKA__BATCH".to_owned(),
            "many".to_owned(),
        )]);
        let mut problems = Problems::default();
        let two: Two = load_collecting_with_env(layers, &env, &mut problems).expect("repaired");
        assert_eq!(two.kafka.batch, 7, "the default in its place");
        let err = problems.finish(()).unwrap_err();
        assert_eq!(err.problems[0].key, "kafka.batch", "{err}");
    }

    #[test]
    fn missing_file_is_an_error() {
        let err = load::<Sample>(Layers {
            defaults_toml: "[windows]\nlength_ms = 5\n",
            file: Some(Path::new("/nonexistent/fleet.toml")),
            env_prefix: None,
        })
        .unwrap_err();
        assert!(err.to_string().contains("does not exist"));
    }
}
