//! The emitter stage of the fleet preprocessor: closed windows to any
//! Prometheus Remote-Write 1.0 endpoint (Prometheus with the remote-write
//! receiver, Amazon Managed Service for Prometheus, Mimir…), without losing data.
//!
//! Consumes [`fleet_core::WindowBatch`]es from the aggregator, produces HTTP
//! requests, and publishes each batch's [`fleet_core::Checkpoint`] once its
//! samples are done, which is what the Kafka source commits. Invariants:
//! - every series reaches the endpoint in timestamp order: a series belongs to
//!   exactly one shard (by a hash of its labels), and a shard sends its
//!   requests, and the halves of a bisected request, in order, one at a time;
//! - a checkpoint is published only when every sample of its batch and of
//!   every earlier batch was accepted, or dropped *and counted* — nothing is
//!   dropped silently;
//! - memory is bounded: shard queues are bounded and a full one holds the
//!   stage back;
//! - retryable failures (5xx, 429, 408, no answer) hold the pipeline back by
//!   default rather than drop data; Kafka is the buffer.
//!
//! # Layout
//! - [`proto`]: the protobuf messages, derived by hand.
//! - [`encode`](mod@encode): aggregates → series → request bytes (pure).
//! - [`bisect`]: isolating refused samples (pure bookkeeping).
//! - [`backoff`]: retry waits and `Retry-After` (pure).
//! - [`ack`]: the completion watermark over batches (pure) and its publisher.
//! - [`shard`]: a shard's batching buffer (pure) and task: linger, send, report.
//! - [`emitter`]: HTTP, TLS, retries, bisection driving, the signing hook.
//! - [`health`]: the `remote_write` readiness condition, the pause after 401/403/404.
//! - [`sigv4`]: SigV4 for Amazon Managed Service for Prometheus, cached credentials.
//! - [`stage`]: the [`run`] loop: encode, shard, acknowledge.
//! - [`config`], [`metrics`], [`error`]: the section, self-metrics, the error type.
#![deny(missing_docs)]

pub mod ack;
pub mod backoff;
pub mod bisect;
pub mod config;
pub mod emitter;
pub mod encode;
pub mod error;
pub mod health;
pub mod metrics;
pub mod proto;
pub mod shard;
pub mod sigv4;
pub mod stage;

pub use bisect::{Delivery, DroppedSamples};
pub use config::{check_label_name, OnRetryExhausted, RemoteWriteConfig, SigV4Config};
pub use emitter::{Emitter, RequestSigner, RetryPolicy, SignFuture};
pub use encode::{compress, encode, RemoteWriteBatch, Series, SeriesNaming, SeriesTable};
pub use error::{RemoteWriteError, Retry};
pub use health::READY_REMOTE_WRITE;
pub use metrics::{DropReason, RemoteWriteMetrics, StatusClass};
pub use proto::{Label, Sample, TimeSeries, WriteRequest};
pub use sigv4::SigV4Signer;
pub use stage::{run, run_fenced};
