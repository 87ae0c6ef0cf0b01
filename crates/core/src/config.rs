//! Layered configuration: embedded defaults → `--config` file → environment.
//!
//! Environment variables map one-to-one onto keys: `FLEET__KAFKA__BROKERS`
//! sets `kafka.brokers`. Errors name the key and the problem; binaries exit
//! with [`EXIT_CONFIG`] on them before touching any external service.

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

/// Loads and deserialises the layered configuration into `T`.
pub fn load<T: DeserializeOwned>(layers: Layers<'_>) -> Result<T, ConfigError> {
    use config::{Config, Environment, File, FileFormat};
    let mut builder =
        Config::builder().add_source(File::from_str(layers.defaults_toml, FileFormat::Toml));
    if let Some(path) = layers.file {
        if !path.is_file() {
            return Err(ConfigError::single(
                "",
                format!("configuration file {} does not exist", path.display()),
            ));
        }
        builder = builder.add_source(File::from(path).format(FileFormat::Toml));
    }
    if let Some(prefix) = layers.env_prefix {
        builder = builder.add_source(
            Environment::with_prefix(prefix)
                .prefix_separator("__")
                .separator("__")
                .try_parsing(true),
        );
    }
    let merged = builder
        .build()
        .map_err(|e| ConfigError::single("", e.to_string()))?;
    serde_path_to_error::deserialize(merged).map_err(|e| {
        let key = e.path().to_string();
        let key = if key == "." { String::new() } else { key };
        ConfigError::single(key, e.into_inner().to_string())
    })
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
