//! A deterministic synthetic fleet of connected hybrid vehicles.
//!
//! It produces what the preprocessor consumes: raw events (docs/ARCHITECTURE.md, "Wire formats")
//! and the reference data mapping each VIN to its model, fuel type and model
//! year. Everything is a pure function of the seed and the event-time origin,
//! so a test, a golden file or a demo can be reproduced exactly; no I/O happens
//! here except through the writers a caller passes in, and no Kafka client is
//! linked: the `fleet-generator` command (`crates/generator-cli`) delivers to
//! Kafka, pacing [`EventGenerator`] against the wall clock.
//!
//! - [`Fleet`]: N vehicles with valid, distinct VINs ([`vin`]), each with a
//!   model and a region drawn with uneven weights, the model's fuel type and
//!   the model year coded in the VIN; writes the reference CSV and the
//!   reference topic's JSON values.
//! - [`EventGenerator`]: one event per vehicle per simulated second, from a
//!   small per-vehicle state machine (parked, electric, engine, hybrid); about
//!   10 % are warning-light counts. A simulated network disorders events within
//!   `max_disorder_ms`, makes a few late beyond the out-of-orderness, and lets
//!   vehicles go offline and deliver a burst when they return.
//! - [`WideGenerator`]: the same fleet, clock and network, but each record
//!   one JSON object per vehicle and second with many typed signals (speed,
//!   gear, state of charge, temperatures, doors, tyres, extra sensors), as a
//!   fleet with its own schema sends them; [`WideLayout`] is their schema and
//!   writes the matching `[input]` and `[[metrics]]` (docs/METRICS.md).
//! - [`jsonl`]: the events as JSON lines, fast.
//! - [`live`]: the embedded source, the generator paced in real time into
//!   the pipeline when no Kafka is configured.
//!
//! Invariants: the same configuration gives the same events in the same order;
//! [`EventGenerator::take_exact`] yields exactly the requested number of
//! events; with late events and outages off, no event arrives more than
//! `max_disorder_ms` behind the newest one before it.
#![deny(missing_docs)]

mod config;
mod fleet;
mod generator;
pub mod jsonl;
pub mod live;
mod vehicle;
pub mod vin;
pub mod wide;

pub use config::GeneratorConfig;
pub use fleet::{Fleet, Model, Vehicle, FUEL_TYPES, MODELS, REFERENCE_CSV_HEADER, REGIONS};
pub use generator::{Bounded, EventGenerator, Generator, NarrowSim, RecordKind};
pub use wide::{WideEncoder, WideGenerator, WideLayout, WideRecord, WireFormat};
