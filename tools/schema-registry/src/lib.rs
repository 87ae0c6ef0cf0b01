//! Nothing: this package only pins the registry's source (see Cargo.toml).
