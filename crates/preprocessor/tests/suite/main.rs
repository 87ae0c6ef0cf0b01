//! The service's integration tests, one module per concern, linked into one
//! test binary: the real `fleet-preprocessor` binary against a real broker and
//! Prometheus started on loopback (see `common`), compared with the batch
//! oracle of fleet-testkit.
//!
//! Tests that start services take `common::SERIAL`, so they run one at a
//! time whatever the test threads; the rest run beside them.

mod common;

mod binary_formats;
mod config_commands;
mod crash;
mod dashboards;
mod dead_letters;
mod dimensions;
mod drilldown;
mod end_to_end;
mod event_time;
mod faults;
mod health;
mod image;
mod observability;
mod reference_topic;
mod scale_out;
mod shutdown;
mod wide_fleet;
