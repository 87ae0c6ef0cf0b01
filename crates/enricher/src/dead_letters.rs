//! Records of unknown vehicles as dead letters, with
//! `reference.unknown_vehicle = "drop"` and a dead-letter topic that keeps
//! `unknown_vehicle`: each dropped record is written there as a JSON object
//! of what was decoded from it (`vehicle_id`, `timestamp`, `labels`,
//! `signals`), with its origin, before the batch goes on, so the commit of
//! its offset waits for the letter.

use std::sync::Arc;

use fleet_core::{DeadLetter, DeadLetterCause, DeadLetterQueue, SourceBatch};
use fleet_plan::{MetricPlan, Value};
use serde_json::{Map, Value as Json};

use crate::VehicleCatalog;

/// Writes the records of unknown vehicles to the dead-letter queue.
#[derive(Debug, Clone)]
pub struct UnknownVehicleLetters {
    queue: Arc<dyn DeadLetterQueue>,
    plan: Arc<MetricPlan>,
}

impl UnknownVehicleLetters {
    /// Letters for `queue` if it keeps unknown vehicles; `plan` names the
    /// records' labels and signals.
    pub fn new(queue: Arc<dyn DeadLetterQueue>, plan: Arc<MetricPlan>) -> Option<Self> {
        queue
            .keeps(DeadLetterCause::UnknownVehicle)
            .then_some(UnknownVehicleLetters { queue, plan })
    }

    /// Sends a letter for every record of `batch` whose vehicle `catalog`
    /// does not know: the records its policy drops.
    pub fn send(&self, catalog: &VehicleCatalog, batch: &SourceBatch) {
        let input = &self.plan.input;
        for record in &batch.records {
            if catalog.model_of(&record.vehicle_id).is_some() {
                continue;
            }
            let labels: Map<String, Json> = input
                .labels
                .iter()
                .zip(batch.labels_of(record, input.labels.len()))
                .map(|(path, value)| (path.leaf().to_owned(), Json::from(value.as_str())))
                .collect();
            let signals: Map<String, Json> = batch
                .values_of(record)
                .iter()
                .map(|v| {
                    let signal = input.signal(v.signal);
                    let value = match v.value {
                        Value::Integer(i) => Json::from(i),
                        Value::Float(f) => Json::from(f),
                        Value::Boolean(b) => Json::from(b),
                        Value::State(i) => signal
                            .states
                            .get(i as usize)
                            .map_or(Json::Null, |s| Json::from(s.as_str())),
                    };
                    (signal.name.clone(), value)
                })
                .collect();
            let value = serde_json::json!({
                "vehicle_id": record.vehicle_id.as_str(),
                "timestamp": record.timestamp,
                "labels": labels,
                "signals": signals,
            });
            let _written = self.queue.send(DeadLetter {
                cause: DeadLetterCause::UnknownVehicle,
                reason: "unknown_vehicle".to_owned(),
                detail: format!(
                    "vehicle {:?} is not in the reference data",
                    record.vehicle_id.as_str()
                ),
                key: record.vehicle_id.as_str().as_bytes().to_vec(),
                value: value.to_string().into_bytes(),
                origin: Some((record.partition, record.offset)),
            });
        }
    }
}
