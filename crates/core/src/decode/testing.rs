//! Input plans from TOML, for the decoder's tests and benchmark (which
//! includes this file).

use fleet_plan::{InputConfig, InputPlan, MetricConfig, MetricPlan};

/// The reference demo's configuration.
pub const DEFAULT_TOML: &str = include_str!("../../../../config/default.toml");

/// The compiled `[input]` of `toml` over the default one (keys it leaves out
/// keep their defaults), with its `[[metrics]]`, else one counting records.
pub fn input_plan(toml: &str) -> InputPlan {
    #[derive(serde::Deserialize)]
    struct Sections {
        input: InputConfig,
        metrics: Vec<MetricConfig>,
    }
    let defaults: toml::Table = toml::from_str(DEFAULT_TOML).unwrap();
    let given: toml::Table = toml::from_str(toml).unwrap();
    let mut input = defaults["input"].as_table().unwrap().clone();
    if let Some(keys) = given.get("input").and_then(toml::Value::as_table) {
        input.extend(keys.clone());
    }
    let count = "[[metrics]]\nname = \"records\"\nhelp = \"Records.\"\nfunction = \"count\"";
    let count: toml::Table = toml::from_str(count).unwrap();
    let mut sections = toml::Table::new();
    sections.insert("input".into(), input.into());
    sections.insert(
        "metrics".into(),
        given.get("metrics").unwrap_or(&count["metrics"]).clone(),
    );
    let sections: Sections = sections.try_into().unwrap();
    MetricPlan::compile(&sections.input, &sections.metrics, &[])
        .unwrap()
        .input
}
