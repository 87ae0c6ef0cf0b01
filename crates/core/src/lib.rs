//! The bottom crate of the fleet preprocessor: the types every stage speaks.
//!
//! Stages depend on this crate and never on each other. It holds
//! - the wire format of raw vehicle events and its decoder ([`event`]), and
//!   the decoder of records of any declared shape ([`decode`], [`record`]),
//! - what flows between stages: enriched events, watermarks, window aggregates
//!   and the offset checkpoints that travel with them ([`pipeline`], [`window`]),
//! - the firing points that pin where windows closed, and the log in which the
//!   sink asks the source to store them before it sends ([`firing`]),
//! - the per-partition watermark tracker with idleness ([`watermark`]),
//! - the output mode and the scopes of window sets it implies ([`scope`]),
//! - the one `unsafe` block of the workspace, a cache prefetch hint ([`prefetch`]),
//! - layered configuration loading ([`config`]), the [`Secret`] type of its
//!   passwords and tokens, and telemetry ([`telemetry`]).
//!
//! Everything here is synchronous and free of I/O except [`telemetry`]'s HTTP
//! endpoint, so the rules that make results exact are testable with `#[test]`.
#![deny(missing_docs)]

pub mod aggregate;
pub mod batcher;
pub mod config;
pub mod dead_letter;
pub mod decode;
pub mod event;
pub mod fence;
pub mod file_watch;
pub mod firing;
pub mod partition_map;
pub mod pipeline;
pub mod prefetch;
pub mod record;
pub mod reference;
pub mod scope;
pub mod secret;
pub mod small_str;
pub mod telemetry;
pub mod watermark;
pub mod window;

pub use aggregate::{Labels, MetricValue, Number, WindowAggregate};
pub use batcher::SourceBatcher;
pub use dead_letter::{DeadLetter, DeadLetterCause, DeadLetterQueue, DeadLetterReceipt};
pub use decode::Decoder;
pub use event::{decode_event, DecodeError, DecodeErrorKind, EventType, RawEvent};
pub use fence::RevocationFence;
pub use file_watch::FileWatch;
pub use firing::{FiringLog, FiringPoint};
pub use partition_map::PartitionMap;
pub use pipeline::{
    ChannelsConfig, Checkpoint, EnrichedBatch, EnrichedEvent, GroupId, GroupKey, Msg, SourceBatch,
    VehicleKey, OTHER_GROUP,
};
pub use record::{Record, RecordBatch, SignalValue};
pub use reference::{ReferenceChange, ReferenceChanges, VehicleRecord};
pub use scope::{OutputMode, PipelineConfig, Scope};
pub use secret::Secret;
pub use small_str::SmallStr;
pub use watermark::{Watermark, WatermarkRules, WatermarkTracker};
pub use window::{VehicleSample, WindowBatch, WindowSpec, WindowsConfig};

/// Event time and window bounds: milliseconds since the Unix epoch.
pub type TimestampMs = i64;

/// The event times a record may carry: 1970-01-01T00:00:00Z to
/// 9999-12-31T23:59:59.999Z. A time outside is an invalid value, so window
/// arithmetic never comes near the ends of an `i64`.
pub const EVENT_TIMES: std::ops::RangeInclusive<TimestampMs> = 0..=253_402_300_799_999;

/// The Kafka partition an event came from (`0` for sources with one stream).
pub type PartitionId = i32;

/// An error and its sources on one line, `error: cause: cause…`: clients such
/// as reqwest say only "error sending request" at the top; the cause
/// (refused, reset, timed out, no credentials) is below it.
pub fn error_chain(error: &dyn std::error::Error) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    text
}
