//! `config`: the service's configuration loader
//! (crates/preprocessor/src/settings.rs) on any TOML and environment.
//!
//! The input, read as UTF-8 (lossily), is a configuration file; the lines
//! after a line `#env`, if any, are `NAME=VALUE` environment variables
//! (`KAFKA__BROKERS=b:9092` is `FLEET__KAFKA__BROKERS`), given to the loader
//! in place of the process environment. Loading the embedded defaults, the
//! file and the variables, then validating, ends in an error or in valid
//! settings, never in a panic. Valid settings print as redacted TOML
//! (`print-config`), and that text, loaded again as a file, validates and
//! prints the same.
//!
//! The loader reads the files a configuration names (schemas, CA bundles,
//! token files): inputs naming anything under /dev, /proc or /sys, which
//! may never end, are skipped. Files are written only in a temporary
//! directory, removed after each input.
#![no_main]

use std::collections::BTreeMap;
use std::path::Path;

use fleet_core::config::{ConfigError, Problems};
use fleet_preprocessor::settings::{Settings, ValidSettings};
use libfuzzer_sys::fuzz_target;

/// The line after which environment variables follow.
const ENV_MARKER: &str = "#env";

/// Most variables read from one input.
const MAX_VARIABLES: usize = 8;

/// The configuration file and the environment variables of `text`.
fn split(text: &str) -> (&str, BTreeMap<String, String>) {
    let (file, variables) = match text.split_once(&format!("\n{ENV_MARKER}\n")) {
        Some((file, variables)) => (file, variables),
        None => match text.strip_prefix(&format!("{ENV_MARKER}\n")) {
            Some(variables) => ("", variables),
            None => (text, ""),
        },
    };
    let env = variables
        .lines()
        .filter_map(|line| line.split_once('='))
        .take(MAX_VARIABLES)
        .map(|(name, value)| {
            // As the process environment would hold it: the loader ignores
            // the case of names, so two that differ only in case are one.
            let name = name.trim().to_ascii_uppercase();
            let name = match name.strip_prefix("FLEET__") {
                Some(_) => name,
                None => format!("FLEET__{name}"),
            };
            (name, value.to_owned())
        })
        .collect();
    (file, env)
}

/// Loads `file` over the defaults with `env`, and validates.
fn load(
    file: &Path,
    env: &BTreeMap<String, String>,
) -> Result<(Settings, ValidSettings), ConfigError> {
    let mut problems = Problems::default();
    let Some(settings) = Settings::load_collecting_with_env(Some(file), env, &mut problems) else {
        return Err(problems
            .finish(())
            .err()
            .unwrap_or_else(|| ConfigError::single("", "does not load")));
    };
    let valid = settings.clone().validate_with(problems)?;
    Ok((settings, valid))
}

fuzz_target!(|input: &[u8]| {
    let text = String::from_utf8_lossy(input);
    if ["/dev", "/proc", "/sys"].iter().any(|d| text.contains(d)) {
        return;
    }
    let (file, env) = split(&text);
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("fleet.toml");
    std::fs::write(&path, file).unwrap();
    let Ok((settings, _valid)) = load(&path, &env) else {
        return;
    };
    let printed = settings
        .to_redacted_toml()
        .unwrap_or_else(|e| panic!("valid settings do not print: {e}"));
    let again = dir.path().join("printed.toml");
    std::fs::write(&again, &printed).unwrap();
    let (reloaded, _) = load(&again, &BTreeMap::new())
        .unwrap_or_else(|e| panic!("the printed configuration is refused: {e}\n{printed}"));
    let reprinted = reloaded
        .to_redacted_toml()
        .unwrap_or_else(|e| panic!("reloaded settings do not print: {e}"));
    assert_eq!(
        printed, reprinted,
        "the printed configuration prints otherwise once loaded"
    );
});
