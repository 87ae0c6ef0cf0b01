//! The emitter stage of the fleet preprocessor: closed windows to any
//! Prometheus Remote-Write 1.0 endpoint (Prometheus with the remote-write
//! receiver, Amazon Managed Service for Prometheus, Mimir…), without losing data.
//!
//! Consumes [`fleet_core::WindowBatch`]es from the aggregator, produces HTTP
//! requests, and publishes each batch's [`fleet_core::Checkpoint`] once its
//! samples are done, which is what the Kafka source commits. Invariants:
//! - every series reaches the endpoint in timestamp order: batches, the
//!   requests a batch is split into, and the halves of a bisected request are
//!   all sent in order, one request at a time;
//! - a checkpoint is published only when every sample before it was accepted,
//!   or dropped *and counted* — nothing is dropped silently;
//! - retryable failures (5xx, 429, 408, no answer) hold the pipeline back by
//!   default rather than drop data; Kafka is the buffer.
//!
//! # Layout
//! - [`proto`]: the protobuf messages, derived by hand.
//! - [`encode`](mod@encode): aggregates → series → request (pure).
//! - [`bisect`]: isolating refused samples (pure bookkeeping).
//! - [`backoff`]: retry waits and `Retry-After` (pure).
//! - [`emitter`]: HTTP, retries, bisection driving, the signing hook.
//! - [`stage`]: the [`run`] loop: merge, chunk, deliver, acknowledge.
//! - [`config`], [`metrics`], [`error`]: the section, self-metrics, the error type.
#![deny(missing_docs)]

pub mod backoff;
pub mod bisect;
pub mod config;
pub mod emitter;
pub mod encode;
pub mod error;
pub mod metrics;
pub mod proto;
pub mod stage;

pub use bisect::{Delivery, DroppedSamples};
pub use config::{OnRetryExhausted, RemoteWriteConfig};
pub use emitter::{Emitter, RequestSigner, RetryPolicy};
pub use encode::{compress, encode, Metric, RemoteWriteBatch, SeriesNaming};
pub use error::{RemoteWriteError, Retry};
pub use metrics::{DropReason, RemoteWriteMetrics, StatusClass};
pub use proto::{Label, Sample, TimeSeries, WriteRequest};
pub use stage::run;
