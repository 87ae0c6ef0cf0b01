//! The reference data as a compacted Kafka topic: key = vehicle id, value =
//! a JSON object of attributes with at least `model`, empty value = the
//! vehicle is retired (a tombstone).
//!
//! Every partition is read from the beginning, outside any consumer group
//! (each instance needs the whole table, not a share of it). Once every
//! partition has reached the end it had at start, the table so far goes out
//! as one [`ReferenceChanges::Snapshot`] — the service is not ready before
//! that — and every later record as a [`ReferenceChanges::Delta`].

use std::collections::{BTreeMap, HashMap};
use std::future::Future;
use std::time::Duration;

use std::sync::Arc;

use fleet_core::telemetry::Readiness;
use fleet_core::{ReferenceChange, ReferenceChanges, VehicleRecord};
use futures::FutureExt;
use rdkafka::consumer::{Consumer, StreamConsumer};
use rdkafka::message::{BorrowedMessage, Message};
use rdkafka::{Offset, TopicPartitionList};
use tokio::sync::mpsc;

use crate::security::SecurityContext;
use crate::{KafkaConfig, KafkaStageError};

const METADATA_TIMEOUT: Duration = Duration::from_secs(10);

/// Readiness condition: the reference topic has been read to the end it had at start.
pub const READY_REFERENCE_TOPIC: &str = "reference_topic";

/// Most records handed over in one delta.
const MAX_DELTA: usize = 4096;

/// Why a reference record was skipped.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum ReferenceRecordError {
    /// No key, or a key that is not UTF-8 text.
    #[error("the key is missing or not UTF-8 text")]
    BadKey,
    /// The value is not a JSON object.
    #[error("the value is not a JSON object: {0}")]
    NotAnObject(String),
    /// The object has no text `model`.
    #[error("the value has no text \"model\"")]
    NoModel,
}

/// Turns one record into a change: a tombstone deletes, an object upserts.
/// Attributes other than `model` are kept as text (numbers and booleans as
/// written); nested values are ignored.
pub fn parse_record(
    key: Option<&[u8]>,
    value: Option<&[u8]>,
) -> Result<ReferenceChange, ReferenceRecordError> {
    let vehicle_id = key
        .and_then(|k| std::str::from_utf8(k).ok())
        .filter(|k| !k.is_empty())
        .ok_or(ReferenceRecordError::BadKey)?
        .to_string();
    let value = match value {
        None | Some([]) => return Ok(ReferenceChange::Delete { vehicle_id }),
        Some(v) => v,
    };
    let object: serde_json::Map<String, serde_json::Value> = serde_json::from_slice(value)
        .map_err(|e| ReferenceRecordError::NotAnObject(e.to_string()))?;
    let mut model = None;
    let mut attributes = BTreeMap::new();
    for (name, v) in object {
        let text = match v {
            serde_json::Value::String(s) => s,
            serde_json::Value::Number(n) => n.to_string(),
            serde_json::Value::Bool(b) => b.to_string(),
            _ => continue,
        };
        if name == "model" {
            model = Some(text);
        } else {
            attributes.insert(name, text);
        }
    }
    let model = model
        .filter(|m| !m.is_empty())
        .ok_or(ReferenceRecordError::NoModel)?;
    Ok(ReferenceChange::Upsert(VehicleRecord {
        vehicle_id,
        model,
        attributes,
    }))
}

/// The table being built before the first snapshot.
#[derive(Debug, Default)]
struct Table(HashMap<String, VehicleRecord>);

impl Table {
    fn apply(&mut self, change: ReferenceChange) {
        match change {
            ReferenceChange::Upsert(record) => {
                self.0.insert(record.vehicle_id.clone(), record);
            }
            ReferenceChange::Delete { vehicle_id } => {
                self.0.remove(&vehicle_id);
            }
        }
    }
}

/// Follows `topic` until `shutdown` completes, sending the table and then its
/// changes on `output`; [`READY_REFERENCE_TOPIC`] fails on `readiness` until
/// the table is sent. Records that cannot be parsed are logged (at most one
/// line a second) and skipped.
pub async fn follow(
    cfg: &KafkaConfig,
    topic: &str,
    output: mpsc::Sender<ReferenceChanges>,
    readiness: Arc<Readiness>,
    shutdown: impl Future<Output = ()>,
) -> Result<(), KafkaStageError> {
    readiness.require(
        READY_REFERENCE_TOPIC,
        format!("reading the reference topic {topic} from the beginning"),
    );
    let security = SecurityContext::for_config(cfg)?;
    security.warm_up().await;
    let consumer: StreamConsumer<SecurityContext> = cfg
        .base_client_config()
        .set("group.id", format!("{}.reference", cfg.group_id))
        .set("enable.auto.commit", "false")
        .set("enable.auto.offset.store", "false")
        .set("auto.offset.reset", "earliest")
        .create_with_context(security)
        .map_err(KafkaStageError::Setup)?;
    let partitions = partitions_of(&consumer, topic)?;
    // The end of each partition at start: the snapshot goes out once reached.
    let mut catch_up: BTreeMap<i32, i64> = BTreeMap::new();
    let mut assignment = TopicPartitionList::new();
    for p in partitions {
        let (low, high) = consumer
            .fetch_watermarks(topic, p, METADATA_TIMEOUT)
            .map_err(KafkaStageError::Setup)?;
        if high > low {
            catch_up.insert(p, high);
        }
        assignment
            .add_partition_offset(topic, p, Offset::Beginning)
            .map_err(KafkaStageError::Setup)?;
    }
    consumer
        .assign(&assignment)
        .map_err(KafkaStageError::Setup)?;
    tracing::info!(
        topic,
        partitions = assignment.count(),
        "Reading the reference topic from the beginning."
    );

    let mut table = Some(Table::default());
    let mut skipped = SkipLog::default();
    if catch_up.is_empty() {
        send_snapshot(&mut table, &output, &readiness).await?;
    }
    let mut shutdown = std::pin::pin!(shutdown);
    loop {
        let first = tokio::select! {
            () = &mut shutdown => break,
            received = consumer.recv() => received,
        };
        let mut changes = Vec::new();
        let mut next = Some(first);
        while let Some(received) = next.take() {
            match received {
                Ok(m) => {
                    if let Some(change) = skipped.parse(&m) {
                        changes.push(change);
                    }
                    if catch_up
                        .get(&m.partition())
                        .is_some_and(|end| m.offset() + 1 >= *end)
                    {
                        catch_up.remove(&m.partition());
                    }
                }
                Err(error) => tracing::warn!(%error, topic, "Reference topic consumer error."),
            }
            if changes.len() < MAX_DELTA {
                next = consumer.recv().now_or_never();
            }
        }
        match table.as_mut() {
            Some(t) => {
                changes.into_iter().for_each(|c| t.apply(c));
                if catch_up.is_empty() {
                    send_snapshot(&mut table, &output, &readiness).await?;
                }
            }
            None if !changes.is_empty() => output
                .send(ReferenceChanges::Delta(changes))
                .await
                .map_err(|_| KafkaStageError::ReferenceClosed)?,
            None => {}
        }
    }
    Ok(())
}

async fn send_snapshot(
    table: &mut Option<Table>,
    output: &mpsc::Sender<ReferenceChanges>,
    readiness: &Readiness,
) -> Result<(), KafkaStageError> {
    let Some(Table(records)) = table.take() else {
        return Ok(());
    };
    tracing::info!(vehicles = records.len(), "Reference topic caught up.");
    output
        .send(ReferenceChanges::Snapshot(records.into_values().collect()))
        .await
        .map_err(|_| KafkaStageError::ReferenceClosed)?;
    readiness.ok(READY_REFERENCE_TOPIC);
    Ok(())
}

fn partitions_of(
    consumer: &StreamConsumer<SecurityContext>,
    topic: &str,
) -> Result<Vec<i32>, KafkaStageError> {
    let metadata = consumer
        .fetch_metadata(Some(topic), METADATA_TIMEOUT)
        .map_err(KafkaStageError::Setup)?;
    let partitions: Vec<i32> = metadata
        .topics()
        .iter()
        .filter(|t| t.name() == topic && t.error().is_none())
        .flat_map(|t| t.partitions().iter().map(|p| p.id()))
        .collect();
    if partitions.is_empty() {
        return Err(KafkaStageError::NoSuchTopic(topic.to_string()));
    }
    Ok(partitions)
}

/// Parses records, logging skipped ones at most once per second.
#[derive(Default)]
struct SkipLog {
    last_logged: Option<tokio::time::Instant>,
    since_logged: u64,
}

impl SkipLog {
    fn parse(&mut self, m: &BorrowedMessage<'_>) -> Option<ReferenceChange> {
        match parse_record(m.key(), m.payload()) {
            Ok(change) => Some(change),
            Err(error) => {
                self.since_logged += 1;
                let now = tokio::time::Instant::now();
                if self
                    .last_logged
                    .is_none_or(|t| now.duration_since(t) >= Duration::from_secs(1))
                {
                    tracing::warn!(
                        partition = m.partition(),
                        offset = m.offset(),
                        %error,
                        skipped = self.since_logged,
                        "Reference record skipped."
                    );
                    self.last_logged = Some(now);
                    self.since_logged = 0;
                }
                None
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn upsert(vin: &str, model: &str, attributes: &[(&str, &str)]) -> ReferenceChange {
        ReferenceChange::Upsert(VehicleRecord {
            vehicle_id: vin.into(),
            model: model.into(),
            attributes: attributes
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
        })
    }

    #[test]
    fn records_parse_into_upserts_and_tombstones() {
        assert_eq!(
            parse_record(
                Some(b"VIN1"),
                Some(br#"{"model":"Nebulara","fuel_type":"hybrid","model_year":2024,"x":[1]}"#)
            ),
            Ok(upsert(
                "VIN1",
                "Nebulara",
                &[("fuel_type", "hybrid"), ("model_year", "2024")]
            ))
        );
        let delete = Ok(ReferenceChange::Delete {
            vehicle_id: "VIN1".into(),
        });
        assert_eq!(parse_record(Some(b"VIN1"), None), delete);
        assert_eq!(parse_record(Some(b"VIN1"), Some(b"")), delete);
    }

    #[test]
    fn bad_records_are_refused_with_the_reason() {
        assert_eq!(
            parse_record(None, Some(br#"{"model":"A"}"#)),
            Err(ReferenceRecordError::BadKey)
        );
        assert_eq!(
            parse_record(Some(b""), Some(br#"{"model":"A"}"#)),
            Err(ReferenceRecordError::BadKey)
        );
        assert!(matches!(
            parse_record(Some(b"V"), Some(b"[1]")),
            Err(ReferenceRecordError::NotAnObject(_))
        ));
        assert_eq!(
            parse_record(Some(b"V"), Some(br#"{"fuel_type":"hybrid"}"#)),
            Err(ReferenceRecordError::NoModel)
        );
        assert_eq!(
            parse_record(Some(b"V"), Some(br#"{"model":""}"#)),
            Err(ReferenceRecordError::NoModel)
        );
    }

    #[test]
    fn the_table_keeps_the_last_record_and_forgets_tombstoned_vehicles() {
        let mut t = Table::default();
        t.apply(upsert("A", "m1", &[]));
        t.apply(upsert("B", "m1", &[]));
        t.apply(upsert("A", "m2", &[]));
        t.apply(ReferenceChange::Delete {
            vehicle_id: "B".into(),
        });
        assert_eq!(t.0.len(), 1);
        assert_eq!(t.0["A"].model, "m2");
    }
}
