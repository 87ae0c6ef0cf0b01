//! The library half of `fleet-preprocessor`: the service's configuration,
//! [`settings`], which the binary loads and validates before anything
//! connects. It is a library so that the fuzz targets (`fuzz/`) can load
//! configurations as the binary does; the rest of the service is the
//! binary's (`main.rs`).

pub mod settings;
