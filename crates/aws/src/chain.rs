//! The standard AWS credential chain, built one way for every signer.
//!
//! `aws-config`'s defaults would bring their own HTTP client on aws-lc, a
//! second TLS stack with a slow C build; the chain here talks to instance
//! metadata, the ECS agent and STS over rustls on ring, as reqwest does.

use aws_config::BehaviorVersion;
use aws_credential_types::provider::SharedCredentialsProvider;

use crate::{CredentialsError, Region};

/// The standard AWS credential chain: environment variables, the shared
/// config and credentials files (`profile`, else `AWS_PROFILE`, else
/// `default`), web identity (EKS IRSA), the ECS task role, EC2 instance
/// metadata. `region` is where its own calls go (STS, for web identity and
/// roles). It does not cache: put a [`crate::CredentialsCache`] in front.
pub async fn default_chain(
    region: &Region,
    profile: Option<&str>,
) -> Result<SharedCredentialsProvider, CredentialsError> {
    let http_client = aws_smithy_http_client::Builder::new()
        .tls_provider(aws_smithy_http_client::tls::Provider::Rustls(
            aws_smithy_http_client::tls::rustls_provider::CryptoMode::Ring,
        ))
        .build_https();
    let mut loader = aws_config::defaults(BehaviorVersion::latest())
        .http_client(http_client)
        .region(aws_config::Region::new(region.as_str().to_owned()));
    if let Some(profile) = profile {
        loader = loader.profile_name(profile);
    }
    loader
        .load()
        .await
        .credentials_provider()
        .ok_or(CredentialsError::NoChain)
}
