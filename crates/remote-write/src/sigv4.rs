//! AWS SigV4 signing for Amazon Managed Service for Prometheus (AMP).
//!
//! [`SigV4Signer`] is a [`RequestSigner`]: the emitter calls
//! [`prepare`](RequestSigner::prepare) before each request, which makes sure
//! fresh credentials are at hand (the only step that may wait), then
//! [`sign`](RequestSigner::sign) once the request is final, which hashes the
//! body and adds `Authorization`, `X-Amz-Date`, `X-Amz-Content-Sha256` and,
//! with temporary credentials, `X-Amz-Security-Token`.
//!
//! Credentials come from the standard AWS chain (`fleet_aws::default_chain`:
//! environment, shared config/credentials files, optionally a named profile,
//! web identity (EKS IRSA), the ECS task role, EC2 instance metadata), kept
//! in a `fleet_aws::CredentialsCache` for the life of the stage and asked
//! again only when the credentials it gave are about to expire.

use std::time::SystemTime;

use aws_credential_types::provider::SharedCredentialsProvider;
use aws_credential_types::Credentials;
use aws_sigv4::http_request::{
    sign, PayloadChecksumKind, SignableBody, SignableRequest, SigningSettings,
};
use aws_sigv4::sign::v4;
use fleet_aws::{CredentialsCache, CredentialsError, Region};
use reqwest::header::{HeaderName, HeaderValue};
use reqwest::Url;

use crate::config::{RemoteWriteConfig, AMP_SERVICE};
use crate::emitter::{RequestSigner, SignFuture};
use crate::RemoteWriteError;

/// What the credentials are for, in log lines.
const PURPOSE: &str = "SigV4";

/// The region of an AMP workspace URL: `https://aps-workspaces.<region>.amazonaws.com/workspaces/ws-…/api/v1/remote_write`,
/// also through a VPC endpoint (`vpce-….aps-workspaces.<region>.vpce.amazonaws.com`)
/// and in the China partition (`.amazonaws.com.cn`). `None` for any other URL.
pub fn region_from_url(url: &Url) -> Option<Region> {
    fleet_aws::region_from_host(url.host_str()?, &["aps-workspaces"])
}

/// Signs `request` for `region` and `service` with `credentials` at `time`:
/// the pure part of [`SigV4Signer`], on its own so that a fixed request,
/// time and key give a signature that can be checked against another signer.
pub fn sign_request(
    request: &mut reqwest::Request,
    credentials: &Credentials,
    region: &str,
    service: &str,
    time: SystemTime,
) -> Result<(), RemoteWriteError> {
    let failed = |what: &str, e: &dyn std::fmt::Display| {
        RemoteWriteError::Sign(format!("cannot sign the request: {what}: {e}"))
    };
    let mut settings = SigningSettings::default();
    // AMP accepts either; the header makes the body hash visible in the request.
    settings.payload_checksum_kind = PayloadChecksumKind::XAmzSha256;
    let identity = credentials.clone().into();
    let params = v4::SigningParams::builder()
        .identity(&identity)
        .region(region)
        .name(service)
        .time(time)
        .settings(settings)
        .build()
        .map_err(|e| failed("parameters", &e))?
        .into();
    let body = request
        .body()
        .and_then(reqwest::Body::as_bytes)
        .unwrap_or_default();
    let headers = request
        .headers()
        .iter()
        .filter_map(|(name, value)| Some((name.as_str(), value.to_str().ok()?)));
    let signable = SignableRequest::new(
        request.method().as_str(),
        request.url().as_str(),
        headers,
        SignableBody::Bytes(body),
    )
    .map_err(|e| failed("request", &e))?;
    let (instructions, _signature) = sign(signable, &params)
        .map_err(|e| failed("signature", &e))?
        .into_parts();
    let (headers, _query) = instructions.into_parts();
    for header in headers {
        let value = HeaderValue::from_str(header.value()).map_err(|e| failed("header", &e))?;
        request
            .headers_mut()
            .insert(HeaderName::from_static(header.name()), value);
    }
    Ok(())
}

/// Signs every request with SigV4 for one region and service.
#[derive(Debug)]
pub struct SigV4Signer {
    region: Region,
    service: String,
    credentials: CredentialsCache,
}

impl SigV4Signer {
    /// A signer taking credentials from `provider`.
    pub fn new(provider: SharedCredentialsProvider, region: Region, service: String) -> Self {
        SigV4Signer {
            region,
            service,
            credentials: CredentialsCache::new(provider, PURPOSE),
        }
    }

    /// The signer `cfg.sigv4` asks for, on the default AWS credential chain;
    /// `None` without SigV4. Nothing is fetched yet: credentials are first
    /// requested with the first request, and a failure then is retried.
    pub async fn from_config(cfg: &RemoteWriteConfig) -> Result<Option<Self>, RemoteWriteError> {
        let Some(sigv4) = &cfg.sigv4 else {
            return Ok(None);
        };
        let region = cfg.sigv4_region().map_err(RemoteWriteError::Config)?;
        let provider = fleet_aws::default_chain(&region, sigv4.profile.as_deref())
            .await
            .map_err(|e| RemoteWriteError::Config(e.to_string()))?;
        let service = sigv4.service.clone().unwrap_or_else(|| AMP_SERVICE.into());
        tracing::info!(%region, %service, profile = ?sigv4.profile, "Signing remote-write requests with SigV4.");
        Ok(Some(SigV4Signer::new(provider, region, service)))
    }
}

/// The emitter's error for `error`: retried with backoff.
fn no_credentials(error: CredentialsError) -> RemoteWriteError {
    RemoteWriteError::Sign(format!("no AWS credentials for SigV4: {error}"))
}

impl RequestSigner for SigV4Signer {
    fn prepare(&self) -> SignFuture<'_> {
        Box::pin(async { self.credentials.refresh().await.map_err(no_credentials) })
    }

    fn sign(&self, request: &mut reqwest::Request) -> Result<(), RemoteWriteError> {
        let credentials = self
            .credentials
            .current()
            .ok_or_else(|| no_credentials(CredentialsError::NotFetchedYet))?;
        sign_request(
            request,
            &credentials,
            &self.region,
            &self.service,
            SystemTime::now(),
        )
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use fleet_aws::testing::{ScriptedChain, CHAIN_FAILURE};

    use super::*;

    fn url(u: &str) -> Url {
        Url::parse(u).unwrap()
    }

    #[test]
    fn reads_the_region_of_amp_workspace_urls() {
        let cases = [
            (
                "https://aps-workspaces.eu-west-1.amazonaws.com/workspaces/ws-12345678-abcd-1234-abcd-123456789012/api/v1/remote_write",
                Some("eu-west-1"),
            ),
            (
                "https://aps-workspaces.us-gov-west-1.amazonaws.com/workspaces/ws-1/api/v1/remote_write",
                Some("us-gov-west-1"),
            ),
            (
                "https://vpce-0a1b2c3d.aps-workspaces.ap-southeast-2.vpce.amazonaws.com/workspaces/ws-1/api/v1/remote_write",
                Some("ap-southeast-2"),
            ),
            (
                "https://aps-workspaces.cn-north-1.amazonaws.com.cn/workspaces/ws-1/api/v1/remote_write",
                Some("cn-north-1"),
            ),
            ("http://localhost:9090/api/v1/write", None),
            ("https://aps-workspaces.eu-west-1.example.com/api/v1/remote_write", None),
            ("https://aps.eu-west-1.amazonaws.com/workspaces/ws-1", None),
            ("https://aps-workspaces.amazonaws.com/workspaces/ws-1", None),
            ("https://aps-workspaces.Ireland.amazonaws.com/workspaces/ws-1", None),
        ];
        for (u, region) in cases {
            assert_eq!(region_from_url(&url(u)).as_deref(), region, "{u}");
        }
    }

    fn signer(valid_for: Option<Duration>, fail_after: usize) -> SigV4Signer {
        let (_, provider) = ScriptedChain {
            valid_for,
            fails: fail_after..usize::MAX,
            ..ScriptedChain::default()
        }
        .provider();
        SigV4Signer::new(
            provider,
            Region::parse("eu-west-1").unwrap(),
            AMP_SERVICE.into(),
        )
    }

    #[tokio::test]
    async fn prepare_fails_without_credentials_and_the_emitter_retries() {
        let signer = signer(None, 0);
        let error = signer.prepare().await.unwrap_err();
        assert!(matches!(error, RemoteWriteError::Sign(_)), "{error}");
        assert!(error.to_string().contains(CHAIN_FAILURE), "{error}");
        assert_eq!(error.retry(), crate::Retry::WithBackoff);
    }

    #[tokio::test]
    async fn the_signer_signs_after_prepare() {
        let signer = signer(None, usize::MAX);
        let mut request = reqwest::Client::new()
            .post("https://aps-workspaces.eu-west-1.amazonaws.com/workspaces/ws-1/api/v1/remote_write")
            .body("x")
            .build()
            .unwrap();
        assert!(signer.sign(&mut request).is_err(), "no credentials yet");
        signer.prepare().await.unwrap();
        signer.sign(&mut request).unwrap();
        let authorization = request.headers()["authorization"].to_str().unwrap();
        assert!(
            authorization.starts_with("AWS4-HMAC-SHA256 Credential=AK0/"),
            "{authorization}"
        );
        assert!(authorization.contains("/eu-west-1/aps/aws4_request"));
    }
}
