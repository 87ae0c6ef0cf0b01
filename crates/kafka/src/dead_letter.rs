//! The dead-letter topic: a [`DeadLetterQueue`] writing each letter as one
//! Kafka message, with the same brokers and security settings as the source.
//!
//! A letter keeps its key and value; its headers say why and whence:
//! `fleet.cause`, `fleet.reason`, `fleet.error` and, for input messages,
//! `fleet.source.topic`, `fleet.source.partition`, `fleet.source.offset`. A
//! write that fails is retried with backoff until it succeeds; until then a
//! letter's origin offset is *held*: [`KafkaDeadLetters::hold_back`] keeps
//! the source's commit of that partition below it, so a crash replays the
//! message and writes its letter again (at least once, never lost).

use std::collections::{BTreeMap, BTreeSet};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use fleet_core::config::Problems;
use fleet_core::telemetry::RegisterMetric;
use fleet_core::PartitionId;
use fleet_core::{Checkpoint, DeadLetter, DeadLetterCause, DeadLetterQueue, DeadLetterReceipt};
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;
use rdkafka::message::{Header, OwnedHeaders};
use rdkafka::producer::{FutureProducer, FutureRecord};
use serde::{Deserialize, Serialize};

use crate::{KafkaConfig, KafkaStageError, SecurityContext};

/// `[dead_letter]`: where what cannot be processed is kept.
#[derive(Clone, Debug, Deserialize, Serialize, PartialEq, Eq)]
#[serde(deny_unknown_fields, default)]
pub struct DeadLetterConfig {
    /// The topic; empty (default): no dead letters, only counts.
    pub topic: String,
    /// Which causes go there: `malformed`, `unknown_vehicle` (with
    /// `reference.unknown_vehicle = "drop"`), `refused_sample`. Default: all.
    pub causes: Vec<String>,
}

impl Default for DeadLetterConfig {
    fn default() -> Self {
        DeadLetterConfig {
            topic: String::new(),
            causes: DeadLetterCause::ALL
                .iter()
                .map(|c| c.as_str().to_owned())
                .collect(),
        }
    }
}

impl DeadLetterConfig {
    /// Whether dead letters are written.
    pub fn enabled(&self) -> bool {
        !self.topic.trim().is_empty()
    }

    /// Checks the section; the causes it keeps.
    pub fn validate(&self, kafka: &KafkaConfig, p: &mut Problems) -> BTreeSet<DeadLetterCause> {
        let mut causes = BTreeSet::new();
        if !self.enabled() {
            return causes;
        }
        p.check(
            kafka.enabled(),
            "dead_letter.topic",
            "needs Kafka (kafka.brokers): the dead-letter topic is written there",
        );
        p.check(
            self.topic.trim() != kafka.topic.trim(),
            "dead_letter.topic",
            "must not be the topic of raw events (kafka.topic)",
        );
        for name in &self.causes {
            match DeadLetterCause::parse(name) {
                Some(cause) => {
                    causes.insert(cause);
                }
                None => p.add(
                    "dead_letter.causes",
                    format!("{name:?} is no cause: malformed, unknown_vehicle or refused_sample"),
                ),
            }
        }
        p.check(
            !self.causes.is_empty(),
            "dead_letter.causes",
            "name at least one cause, or leave dead_letter.topic empty",
        );
        causes
    }
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct CauseLabels {
    cause: &'static str,
}

/// Counters of the dead-letter topic (`fleet_dead_letter_*`).
#[derive(Clone, Debug)]
pub struct DeadLetterMetrics {
    written: Family<CauseLabels, Counter>,
    failures: Family<CauseLabels, Counter>,
    pending: Gauge,
}

impl DeadLetterMetrics {
    /// Registers the metrics in `registry` (the `dead_letter` sub-registry).
    pub fn register(registry: &mut Registry) -> Self {
        let m = DeadLetterMetrics {
            written: registry.metric("records", "Dead letters written, by cause"),
            failures: registry.metric(
                "write_failures",
                "Failed writes of a dead letter, retried, by cause",
            ),
            pending: registry.metric("pending", "Dead letters not yet written"),
        };
        for cause in DeadLetterCause::ALL {
            let labels = CauseLabels {
                cause: cause.as_str(),
            };
            let _ = m.written.get_or_create(&labels);
            let _ = m.failures.get_or_create(&labels);
        }
        m
    }
}

/// Backoff between attempts to write one letter.
const RETRY_MIN: Duration = Duration::from_millis(200);
const RETRY_MAX: Duration = Duration::from_secs(10);
/// How long librdkafka may try one write before it counts as failed.
const WRITE_TIMEOUT: Duration = Duration::from_secs(30);

/// The origin offsets of letters not yet written: what holds back commits.
#[derive(Debug, Default)]
struct Holds(BTreeMap<PartitionId, BTreeMap<i64, usize>>);

impl Holds {
    fn hold(&mut self, (p, offset): (PartitionId, i64)) {
        *self.0.entry(p).or_default().entry(offset).or_default() += 1;
    }

    fn release(&mut self, (p, offset): (PartitionId, i64)) {
        let Some(offsets) = self.0.get_mut(&p) else {
            return;
        };
        if let Some(n) = offsets.get_mut(&offset) {
            *n -= 1;
            if *n == 0 {
                offsets.remove(&offset);
            }
        }
    }

    fn hold_back(&self, checkpoint: &Checkpoint) -> Checkpoint {
        let mut checkpoint = checkpoint.clone();
        for (p, offset) in checkpoint.resume_offsets.iter_mut() {
            if let Some((&oldest, _)) = self.0.get(p).and_then(BTreeMap::first_key_value) {
                *offset = (*offset).min(oldest);
            }
        }
        checkpoint
    }
}

/// The dead-letter topic's writer; clones share it.
#[derive(Clone)]
pub struct KafkaDeadLetters {
    inner: Arc<Inner>,
}

struct Inner {
    producer: FutureProducer<SecurityContext>,
    topic: String,
    /// The raw-event topic, named in the letters' headers.
    source_topic: String,
    causes: BTreeSet<DeadLetterCause>,
    held: Mutex<Holds>,
    metrics: DeadLetterMetrics,
}

impl std::fmt::Debug for KafkaDeadLetters {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KafkaDeadLetters")
            .field("topic", &self.inner.topic)
            .field("causes", &self.inner.causes)
            .finish()
    }
}

/// Producer properties unless `[kafka.client]` sets them: every replica's
/// acknowledgement, no duplicates from librdkafka's own retries.
const PRODUCER_DEFAULTS: [(&str, &str); 3] = [
    ("acks", "all"),
    ("enable.idempotence", "true"),
    ("linger.ms", "5"),
];

impl KafkaDeadLetters {
    /// The writer of `config.topic`, keeping `causes`, connected as `kafka` says.
    pub fn new(
        kafka: &KafkaConfig,
        config: &DeadLetterConfig,
        causes: BTreeSet<DeadLetterCause>,
        metrics: DeadLetterMetrics,
    ) -> Result<Self, KafkaStageError> {
        let context = SecurityContext::for_config(kafka)?;
        let producer = kafka
            .client_config_over(&PRODUCER_DEFAULTS)
            .create_with_context(context)
            .map_err(KafkaStageError::Setup)?;
        Ok(KafkaDeadLetters {
            inner: Arc::new(Inner {
                producer,
                topic: config.topic.trim().to_owned(),
                source_topic: kafka.topic.clone(),
                causes,
                held: Mutex::default(),
                metrics,
            }),
        })
    }

    /// `checkpoint` with each partition's resume offset held back to the
    /// oldest letter of that partition not yet written.
    pub fn hold_back(&self, checkpoint: &Checkpoint) -> Checkpoint {
        self.inner.holds().hold_back(checkpoint)
    }
}

impl Inner {
    fn holds(&self) -> std::sync::MutexGuard<'_, Holds> {
        self.held.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn headers(&self, letter: &DeadLetter) -> OwnedHeaders {
        let mut headers = OwnedHeaders::new()
            .insert(header("fleet.cause", letter.cause.as_str()))
            .insert(header("fleet.reason", &letter.reason))
            .insert(header("fleet.error", &letter.detail));
        if let Some((partition, offset)) = letter.origin {
            headers = headers
                .insert(header("fleet.source.topic", &self.source_topic))
                .insert(header("fleet.source.partition", &partition.to_string()))
                .insert(header("fleet.source.offset", &offset.to_string()));
        }
        headers
    }
}

fn header<'a>(key: &'a str, value: &'a str) -> Header<'a, &'a str> {
    Header {
        key,
        value: Some(value),
    }
}

impl DeadLetterQueue for KafkaDeadLetters {
    fn keeps(&self, cause: DeadLetterCause) -> bool {
        self.inner.causes.contains(&cause)
    }

    fn send(&self, letter: DeadLetter) -> DeadLetterReceipt {
        let (done, receipt) = tokio::sync::oneshot::channel();
        if let Some(origin) = letter.origin {
            self.inner.holds().hold(origin);
        }
        self.inner.metrics.pending.inc();
        let this = Arc::clone(&self.inner);
        tokio::spawn(async move {
            let labels = CauseLabels {
                cause: letter.cause.as_str(),
            };
            let mut backoff = RETRY_MIN;
            loop {
                let record = FutureRecord::to(&this.topic)
                    .key(&letter.key)
                    .payload(&letter.value)
                    .headers(this.headers(&letter));
                match this.producer.send(record, WRITE_TIMEOUT).await {
                    Ok(_) => break,
                    Err((error, _)) => {
                        this.metrics.failures.get_or_create(&labels).inc();
                        tracing::warn!(topic = %this.topic, %error, cause = %letter.cause, "Cannot write a dead letter; retrying.");
                        tokio::time::sleep(backoff).await;
                        backoff = (backoff * 2).min(RETRY_MAX);
                    }
                }
            }
            this.metrics.written.get_or_create(&labels).inc();
            this.metrics.pending.dec();
            if let Some(origin) = letter.origin {
                this.holds().release(origin);
            }
            let _ = done.send(());
        });
        receipt
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn letters_not_yet_written_hold_back_their_partitions_resume_offsets() {
        let checkpoint = Checkpoint {
            resume_offsets: BTreeMap::from([(0, 100), (1, 50), (2, 7)]),
            ..Checkpoint::default()
        };
        let mut holds = Holds::default();
        holds.hold((0, 40));
        holds.hold((0, 60));
        holds.hold((0, 40));
        holds.hold((1, 80));
        let held = holds.hold_back(&checkpoint);
        assert_eq!(
            held.resume_offsets,
            BTreeMap::from([(0, 40), (1, 50), (2, 7)])
        );
        holds.release((0, 40));
        assert_eq!(
            holds.hold_back(&checkpoint).resume_offsets[&0],
            40,
            "one letter left at 40"
        );
        holds.release((0, 40));
        assert_eq!(holds.hold_back(&checkpoint).resume_offsets[&0], 60);
        holds.release((0, 60));
        holds.release((9, 1));
        assert_eq!(holds.hold_back(&checkpoint), checkpoint);
    }

    #[test]
    fn the_section_names_its_problems() {
        let kafka = KafkaConfig {
            brokers: "127.0.0.1:9092".into(),
            ..KafkaConfig::default()
        };
        let mut p = Problems::default();
        let off = DeadLetterConfig::default();
        assert!(off.validate(&kafka, &mut p).is_empty());
        let config = DeadLetterConfig {
            topic: "dead".into(),
            causes: vec!["malformed".into(), "lost".into()],
        };
        let causes = config.validate(&kafka, &mut p);
        assert_eq!(causes, BTreeSet::from([DeadLetterCause::Malformed]));
        let same = DeadLetterConfig {
            topic: kafka.topic.clone(),
            ..DeadLetterConfig::default()
        };
        assert_eq!(same.validate(&KafkaConfig::default(), &mut p).len(), 3);
        let text = p.finish(()).unwrap_err().to_string();
        for problem in [
            "dead_letter.causes: \"lost\" is no cause",
            "dead_letter.topic: needs Kafka",
            "dead_letter.topic: must not be the topic of raw events",
        ] {
            assert!(text.contains(problem), "{text}");
        }
    }
}
