//! Writes raw events to Kafka, keyed by VIN (so each vehicle stays in one partition).

use std::time::Duration;

use rdkafka::producer::{FutureProducer, FutureRecord};

use fleet_core::RawEvent;

use crate::{KafkaConfig, KafkaStageError, SecurityContext};

/// A producer of raw events to one topic.
pub struct EventPublisher {
    producer: FutureProducer<SecurityContext>,
    topic: String,
}

impl std::fmt::Debug for EventPublisher {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EventPublisher")
            .field("topic", &self.topic)
            .finish()
    }
}

/// Producer properties the generator sets unless `[kafka.client]` does:
/// batching and lz4 for throughput, every replica's acknowledgement.
const PRODUCER_DEFAULTS: [(&str, &str); 5] = [
    ("linger.ms", "5"),
    ("batch.num.messages", "10000"),
    ("queue.buffering.max.messages", "1000000"),
    ("compression.type", "lz4"),
    ("acks", "all"),
];

impl EventPublisher {
    /// A producer for `cfg.topic`, tuned for throughput (batching, lz4),
    /// authenticated as `cfg.security` says. With MSK IAM it must be created
    /// within a tokio runtime, which fetches the AWS credentials; its first
    /// token waits for them (on librdkafka's polling thread, not the runtime).
    pub fn new(cfg: &KafkaConfig) -> Result<Self, KafkaStageError> {
        let context = SecurityContext::for_config(cfg)?;
        let producer = cfg
            .client_config_over(&PRODUCER_DEFAULTS)
            .create_with_context(context)
            .map_err(KafkaStageError::Setup)?;
        Ok(EventPublisher {
            producer,
            topic: cfg.topic.clone(),
        })
    }

    /// Produces one message per event and waits for every delivery.
    pub async fn publish(&self, events: &[RawEvent]) -> Result<(), KafkaStageError> {
        let payloads: Vec<String> = events.iter().map(RawEvent::to_json).collect();
        self.publish_raw(
            events
                .iter()
                .zip(&payloads)
                .map(|(e, p)| (e.vehicle_id.as_bytes(), p.as_bytes())),
        )
        .await
    }

    /// Produces `(key, value)` messages as they are (tests use it for malformed input).
    pub async fn publish_raw<'a>(
        &self,
        messages: impl IntoIterator<Item = (&'a [u8], &'a [u8])>,
    ) -> Result<(), KafkaStageError> {
        let deliveries = messages.into_iter().map(|(key, value)| {
            let record = FutureRecord::to(&self.topic).key(key).payload(value);
            self.producer.send(record, Duration::from_secs(30))
        });
        for delivery in futures::future::join_all(deliveries).await {
            delivery.map_err(|(source, _)| self.error(source))?;
        }
        Ok(())
    }

    fn error(&self, source: rdkafka::error::KafkaError) -> KafkaStageError {
        KafkaStageError::Produce {
            topic: self.topic.clone(),
            cause: source,
        }
    }
}
