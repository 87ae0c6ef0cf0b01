//! `[reference]`: where the reference table comes from, and what it adds.
//!
//! The enricher owns the section and the checks it can judge alone; the
//! service adds the ones that span sections (a topic needs Kafka, a
//! dimension must not clash with the sink's labels).

use std::path::PathBuf;
use std::time::Duration;

use fleet_core::config::Problems;
use serde::{Deserialize, Serialize};

use crate::UnknownVehiclePolicy;

/// `[reference]` as written.
#[derive(Clone, Debug, PartialEq, Eq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct ReferenceConfig {
    /// CSV `vehicle_id,model[,…]`; empty: none.
    pub csv_path: String,
    /// What happens to vehicles missing from it.
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

/// Where the reference table comes from.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ReferenceSource {
    /// None configured: every vehicle is unknown, unless the source brings
    /// its own table (the embedded generator's fleet).
    None,
    /// A CSV file, checked for changes every `reload` (`None`: never).
    Csv {
        /// The file.
        path: PathBuf,
        /// How often it is checked for changes.
        reload: Option<Duration>,
    },
    /// A compacted Kafka topic on the source's cluster.
    Topic(String),
}

/// The enricher's part of validated settings.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ReferencePlan {
    /// Where the table comes from.
    pub source: ReferenceSource,
    /// Reference columns or attributes that become labels, in order.
    pub dimensions: Vec<String>,
    /// What happens to vehicles missing from the table.
    pub unknown_vehicle: UnknownVehiclePolicy,
}

impl ReferenceConfig {
    /// Checks what the enricher alone can judge, naming each key under
    /// `reference.`; returns the plan the enricher is built from.
    pub fn validate(&self, problems: &mut Problems) -> ReferencePlan {
        let csv = self.csv_path.trim();
        let topic = self.topic.trim();
        if !csv.is_empty() {
            problems.check(
                std::path::Path::new(csv).is_file(),
                "reference.csv_path",
                format!("{csv} is not a readable file"),
            );
            problems.check(
                topic.is_empty(),
                "reference.topic",
                "cannot be combined with reference.csv_path: choose one source",
            );
        }
        for (i, name) in self.dimensions.iter().enumerate() {
            if self.dimensions[..i].contains(name) {
                problems.add("reference.dimensions", format!("{name:?} is named twice"));
            }
        }
        let reload = self.reload_interval_ms;
        let source = match (csv.is_empty(), topic.is_empty()) {
            (false, _) => ReferenceSource::Csv {
                path: PathBuf::from(csv),
                reload: (reload > 0).then(|| Duration::from_millis(reload)),
            },
            (true, false) => ReferenceSource::Topic(topic.to_string()),
            (true, true) => ReferenceSource::None,
        };
        ReferencePlan {
            source,
            dimensions: self.dimensions.clone(),
            unknown_vehicle: self.unknown_vehicle,
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    fn config() -> ReferenceConfig {
        ReferenceConfig {
            csv_path: String::new(),
            unknown_vehicle: UnknownVehiclePolicy::Unknown,
            reload_interval_ms: 10_000,
            topic: String::new(),
            dimensions: Vec::new(),
        }
    }

    fn problems(cfg: &ReferenceConfig) -> (ReferencePlan, Vec<String>) {
        let mut p = Problems::default();
        let plan = cfg.validate(&mut p);
        let text = match p.finish(()) {
            Ok(()) => Vec::new(),
            Err(e) => e.problems.iter().map(ToString::to_string).collect(),
        };
        (plan, text)
    }

    #[test]
    fn a_csv_a_topic_or_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let csv = dir.path().join("vehicles.csv");
        std::fs::write(&csv, "vehicle_id,model\n").unwrap();
        let (plan, none) = problems(&ReferenceConfig {
            csv_path: csv.display().to_string(),
            ..config()
        });
        assert!(none.is_empty(), "{none:?}");
        assert_eq!(
            plan.source,
            ReferenceSource::Csv {
                path: csv.clone(),
                reload: Some(Duration::from_secs(10))
            }
        );
        let (plan, _) = problems(&ReferenceConfig {
            topic: " vehicles ".into(),
            ..config()
        });
        assert_eq!(plan.source, ReferenceSource::Topic("vehicles".into()));
        assert_eq!(problems(&config()).0.source, ReferenceSource::None);
        let (_, both) = problems(&ReferenceConfig {
            csv_path: csv.display().to_string(),
            topic: "vehicles".into(),
            reload_interval_ms: 0,
            ..config()
        });
        assert_eq!(both.len(), 1, "{both:?}");
        assert!(both[0].starts_with("reference.topic"), "{both:?}");
    }

    #[test]
    fn a_missing_file_and_a_dimension_named_twice_are_named() {
        let (_, found) = problems(&ReferenceConfig {
            csv_path: "/no/such/vehicles.csv".into(),
            dimensions: vec!["fuel_type".into(), "fuel_type".into()],
            ..config()
        });
        assert_eq!(found.len(), 2, "{found:?}");
        assert!(found[0].contains("reference.csv_path"), "{found:?}");
        assert!(
            found[1].contains("\"fuel_type\" is named twice"),
            "{found:?}"
        );
    }
}
