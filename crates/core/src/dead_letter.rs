//! Dead letters: what the pipeline could not process, kept with the reason
//! and where it came from instead of only counted.
//!
//! Three stages meet such input: the source (a message that is no record:
//! [`DeadLetterCause::Malformed`]), the enricher (a record of a vehicle the
//! reference data lacks, with `reference.unknown_vehicle = "drop"`:
//! [`DeadLetterCause::UnknownVehicle`]) and the sink (samples the endpoint
//! refuses for good: [`DeadLetterCause::RefusedSample`]). Each hands its
//! letters to one [`DeadLetterQueue`] (the Kafka dead-letter topic, in
//! fleet-kafka) and goes on. Nothing is lost between the two: a letter with
//! an origin holds back the commit of its partition at its offset until it
//! is written, and the sink acknowledges the samples it refused only once
//! their letters are written (each [`DeadLetterReceipt`] says when).

use std::fmt;

use crate::PartitionId;

/// Why something became a dead letter.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum DeadLetterCause {
    /// A message that is no record of `[input]` (any decode refusal).
    Malformed,
    /// A record of a vehicle the reference data lacks, dropped.
    UnknownVehicle,
    /// A sample the remote-write endpoint refused for good.
    RefusedSample,
}

impl DeadLetterCause {
    /// Every cause.
    pub const ALL: [DeadLetterCause; 3] = [
        DeadLetterCause::Malformed,
        DeadLetterCause::UnknownVehicle,
        DeadLetterCause::RefusedSample,
    ];

    /// Its name in `dead_letter.causes`, headers and metric labels.
    pub fn as_str(self) -> &'static str {
        match self {
            DeadLetterCause::Malformed => "malformed",
            DeadLetterCause::UnknownVehicle => "unknown_vehicle",
            DeadLetterCause::RefusedSample => "refused_sample",
        }
    }

    /// The cause named `name`.
    pub fn parse(name: &str) -> Option<DeadLetterCause> {
        Self::ALL.into_iter().find(|c| c.as_str() == name)
    }
}

impl fmt::Display for DeadLetterCause {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One thing that could not be processed.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DeadLetter {
    /// Why.
    pub cause: DeadLetterCause,
    /// The short reason, a metric-label-like word (`invalid_json`,
    /// `out_of_order`).
    pub reason: String,
    /// What exactly was wrong, for a person.
    pub detail: String,
    /// The message key to write it with.
    pub key: Vec<u8>,
    /// The message value: the input message as read, or the record or
    /// sample as JSON.
    pub value: Vec<u8>,
    /// The input message it came from: `(partition, offset)`.
    pub origin: Option<(PartitionId, i64)>,
}

/// Completes once its letter is written (an error: the queue was closed
/// before, so the letter is not known to be written).
pub type DeadLetterReceipt = tokio::sync::oneshot::Receiver<()>;

/// Where dead letters go.
pub trait DeadLetterQueue: Send + Sync + fmt::Debug {
    /// Whether letters of `cause` are kept; a stage does as before (counts
    /// and drops) with those that are not.
    fn keeps(&self, cause: DeadLetterCause) -> bool;

    /// Queues `letter`, retrying until it is written; from now until then,
    /// its origin's offset holds back its partition's commit.
    fn send(&self, letter: DeadLetter) -> DeadLetterReceipt;
}
