//! Everything that talks to Kafka, kept in one crate so that only it links
//! librdkafka (editing another stage never rebuilds this glue).
//!
//! - [`source::run`]: the source stage. A consumer-group member that decodes
//!   each partition's messages, tracks per-partition watermarks, pauses its
//!   partitions when the pipeline is backpressured (and keeps polling, so it
//!   stays in the group), and commits offsets only as far as the sink has
//!   accepted the windows holding them.
//! - [`producer::EventPublisher`]: writes raw events keyed by VIN (the generator).
//! - [`KafkaDeadLetters`]: the dead-letter topic (`[dead_letter]`).
//! - [`KafkaConfig`]: the shared client configuration, with its
//!   [`security`] section (TLS, SASL/SCRAM, MSK IAM).
#![deny(missing_docs)]

mod commit;
mod config;
pub mod dead_letter;
mod metrics;
pub mod msk_iam;
pub mod producer;
mod progress;
pub mod reference;
pub mod security;
pub mod source;

pub use commit::{stored_firing_points, CommitLedger, CommitMetadata};
pub use config::{ClientProperties, KafkaConfig, OffsetReset, StartFrom};
pub use dead_letter::{DeadLetterConfig, DeadLetterMetrics, KafkaDeadLetters};
pub use metrics::SourceMetrics;
pub use msk_iam::MskIamError;
pub use progress::{ProgressSample, ProgressWatch};
pub use security::{
    KafkaSecurity, SaslMechanism, SecurityContext, SecurityError, SecurityProtocol, TokenProvider,
};

/// Why a Kafka stage failed.
#[derive(Debug, thiserror::Error)]
pub enum KafkaStageError {
    /// The client could not be created or subscribed (bad configuration).
    #[error("cannot set up the Kafka client: {0}")]
    Setup(rdkafka::error::KafkaError),
    /// The topic does not exist (or has no partition).
    #[error("topic {0} does not exist")]
    NoSuchTopic(String),
    /// The enricher stopped taking reference data.
    #[error("the reference data's consumer went away")]
    ReferenceClosed,
    /// MSK IAM authentication cannot start (no runtime, no region).
    #[error("cannot set up Kafka authentication: {0}")]
    Security(#[from] SecurityError),
    /// Producing an event failed for good.
    #[error("cannot produce to topic {topic}: {cause}")]
    Produce {
        /// The topic.
        topic: String,
        /// The cause.
        cause: rdkafka::error::KafkaError,
    },
}
