//! AWS credentials for the fleet preprocessor's signers: the MSK IAM tokens
//! of `fleet-kafka` and the SigV4 signatures of `fleet-remote-write`.
//!
//! Both sign with credentials of the standard AWS chain for a region, so
//! both need the same three things, kept here once so that they cannot
//! drift apart:
//! - [`default_chain`]: the chain, on the same TLS stack as the rest;
//! - [`CredentialsCache`]: credentials kept until shortly before they expire,
//!   refreshed on demand (async) or in the background
//!   ([`RefreshingCredentials`], for synchronous callers);
//! - [`Region`]: the one check of a region name, and [`region_from_host`]
//!   for endpoints that name theirs.
#![deny(missing_docs)]

pub mod chain;
pub mod credentials;
pub mod region;
#[cfg(any(test, feature = "test-util"))]
pub mod testing;

pub use aws_credential_types::provider::SharedCredentialsProvider;
pub use aws_credential_types::Credentials;
pub use chain::default_chain;
pub use credentials::{
    needs_refresh, still_valid, CredentialsCache, CredentialsError, RefreshingCredentials,
    FIRST_CREDENTIALS_WAIT, NO_EXPIRY_TTL, REFRESH_BEFORE_EXPIRY,
};
pub use region::{region_from_host, Region, RegionError};
