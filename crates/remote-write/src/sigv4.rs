//! AWS SigV4 signing for Amazon Managed Service for Prometheus (AMP).
//!
//! [`SigV4Signer`] is a [`RequestSigner`]: the emitter calls
//! [`prepare`](RequestSigner::prepare) before each request, which makes sure
//! fresh credentials are at hand (the only step that may wait), then
//! [`sign`](RequestSigner::sign) once the request is final, which hashes the
//! body and adds `Authorization`, `X-Amz-Date`, `X-Amz-Content-Sha256` and,
//! with temporary credentials, `X-Amz-Security-Token`.
//!
//! Credentials come from the standard AWS chain of `aws-config`: environment,
//! shared config/credentials files (optionally a named profile), web identity
//! (EKS IRSA), the ECS task role, EC2 instance metadata. That chain does not
//! cache on its own in aws-config 1.x (the SDK's clients cache in front of
//! it), so [`CredentialsCache`] does: one provider for the life of the stage,
//! asked again only when the credentials it gave are about to expire.

use std::sync::Mutex;
use std::time::{Duration, SystemTime};

use aws_config::BehaviorVersion;
use aws_credential_types::provider::{ProvideCredentials, SharedCredentialsProvider};
use aws_credential_types::Credentials;
use aws_sigv4::http_request::{
    sign, PayloadChecksumKind, SignableBody, SignableRequest, SigningSettings,
};
use aws_sigv4::sign::v4;
use reqwest::header::{HeaderName, HeaderValue};
use reqwest::Url;

use crate::config::{is_region, RemoteWriteConfig, AMP_SERVICE};
use crate::emitter::{RequestSigner, SignFuture};
use crate::RemoteWriteError;

/// Credentials are fetched again this long before they expire. EC2 instance
/// metadata and the ECS agent offer new credentials at least five minutes
/// before the old ones expire, so asking earlier than that gains nothing.
pub const REFRESH_BEFORE_EXPIRY: Duration = Duration::from_secs(5 * 60);

/// How long credentials without an expiry (static keys) are kept before the
/// chain is asked again: the SDK's own lazy cache uses the same 15 minutes.
pub const NO_EXPIRY_TTL: Duration = Duration::from_secs(15 * 60);

/// The region of an AMP workspace URL: `https://aps-workspaces.<region>.amazonaws.com/workspaces/ws-…/api/v1/remote_write`,
/// also through a VPC endpoint (`vpce-….aps-workspaces.<region>.vpce.amazonaws.com`)
/// and in the China partition (`.amazonaws.com.cn`). `None` for any other URL.
pub fn region_from_url(url: &Url) -> Option<String> {
    let host = url.host_str()?;
    if !(host.ends_with(".amazonaws.com") || host.ends_with(".amazonaws.com.cn")) {
        return None;
    }
    let mut labels = host.split('.');
    labels.find(|label| *label == "aps-workspaces")?;
    labels
        .next()
        .filter(|region| is_region(region))
        .map(str::to_owned)
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

/// Whether credentials fetched at `fetched_at` should be fetched again at `now`.
pub fn needs_refresh(credentials: &Credentials, fetched_at: SystemTime, now: SystemTime) -> bool {
    match credentials.expiry() {
        Some(expiry) => now + REFRESH_BEFORE_EXPIRY >= expiry,
        None => now >= fetched_at + NO_EXPIRY_TTL,
    }
}

/// Credentials from one provider, kept until shortly before they expire.
#[derive(Debug)]
pub struct CredentialsCache {
    provider: SharedCredentialsProvider,
    /// The credentials in use and when they were fetched.
    current: Mutex<Option<(Credentials, SystemTime)>>,
    /// Held while fetching, so that shards needing credentials at the same
    /// moment make one call to the chain, not one each.
    refreshing: tokio::sync::Mutex<()>,
}

impl CredentialsCache {
    /// A cache in front of `provider`, empty until the first [`refresh`](Self::refresh).
    pub fn new(provider: SharedCredentialsProvider) -> Self {
        CredentialsCache {
            provider,
            current: Mutex::new(None),
            refreshing: tokio::sync::Mutex::new(()),
        }
    }

    fn current(&self) -> Option<(Credentials, SystemTime)> {
        self.current.lock().ok().and_then(|c| c.clone())
    }

    /// Makes sure the credentials in use are not about to expire, asking the
    /// provider only if they are. If the provider fails while the old
    /// credentials are still valid, they are kept (with a warning): a
    /// metadata service hiccup must not stop the writes.
    pub async fn refresh(&self) -> Result<(), RemoteWriteError> {
        let fresh = |now| {
            self.current()
                .is_some_and(|(c, at)| !needs_refresh(&c, at, now))
        };
        if fresh(SystemTime::now()) {
            return Ok(());
        }
        let _one_at_a_time = self.refreshing.lock().await;
        let now = SystemTime::now();
        if fresh(now) {
            return Ok(()); // another shard refreshed while this one waited
        }
        match self.provider.provide_credentials().await {
            Ok(credentials) => {
                tracing::debug!(
                    expiry = ?credentials.expiry(),
                    "Fetched AWS credentials for SigV4."
                );
                if let Ok(mut current) = self.current.lock() {
                    *current = Some((credentials, now));
                }
                Ok(())
            }
            Err(error) => {
                let still_valid = self
                    .current()
                    .is_some_and(|(c, _)| c.expiry().is_none_or(|expiry| now < expiry));
                let error = RemoteWriteError::Sign(format!(
                    "no AWS credentials from the default chain: {}",
                    fleet_core::error_chain(&error)
                ));
                if still_valid {
                    tracing::warn!(%error, "Cannot refresh AWS credentials; using the current ones until they expire.");
                    Ok(())
                } else {
                    Err(error)
                }
            }
        }
    }

    /// The credentials in use, if any were ever fetched.
    pub fn credentials(&self) -> Option<Credentials> {
        self.current().map(|(c, _)| c)
    }
}

/// Signs every request with SigV4 for one region and service.
#[derive(Debug)]
pub struct SigV4Signer {
    region: String,
    service: String,
    credentials: CredentialsCache,
}

impl SigV4Signer {
    /// A signer taking credentials from `provider`.
    pub fn new(provider: SharedCredentialsProvider, region: String, service: String) -> Self {
        SigV4Signer {
            region,
            service,
            credentials: CredentialsCache::new(provider),
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
        // rustls on ring, as reqwest uses: no second TLS stack in the build.
        let http_client = aws_smithy_http_client::Builder::new()
            .tls_provider(aws_smithy_http_client::tls::Provider::Rustls(
                aws_smithy_http_client::tls::rustls_provider::CryptoMode::Ring,
            ))
            .build_https();
        let mut loader = aws_config::defaults(BehaviorVersion::latest())
            .http_client(http_client)
            // Web identity and role credentials call STS in this region.
            .region(aws_config::Region::new(region.clone()));
        if let Some(profile) = &sigv4.profile {
            loader = loader.profile_name(profile);
        }
        let provider = loader.load().await.credentials_provider().ok_or_else(|| {
            RemoteWriteError::Config("the AWS configuration has no credential chain".into())
        })?;
        let service = sigv4.service.clone().unwrap_or_else(|| AMP_SERVICE.into());
        tracing::info!(%region, %service, profile = ?sigv4.profile, "Signing remote-write requests with SigV4.");
        Ok(Some(SigV4Signer::new(provider, region, service)))
    }
}

impl RequestSigner for SigV4Signer {
    fn prepare(&self) -> SignFuture<'_> {
        Box::pin(self.credentials.refresh())
    }

    fn sign(&self, request: &mut reqwest::Request) -> Result<(), RemoteWriteError> {
        let credentials = self
            .credentials
            .credentials()
            .ok_or_else(|| RemoteWriteError::Sign("no AWS credentials fetched yet".into()))?;
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
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::sync::Arc;

    use aws_credential_types::provider::{error::CredentialsError, future};

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

    #[test]
    fn refreshes_before_expiry_and_static_keys_after_a_while() {
        let t0 = SystemTime::UNIX_EPOCH + Duration::from_secs(1_764_000_000);
        let expiring = Credentials::new(
            "AK",
            "SK",
            Some("T".into()),
            Some(t0 + Duration::from_secs(3600)),
            "test",
        );
        assert!(!needs_refresh(&expiring, t0, t0));
        assert!(!needs_refresh(
            &expiring,
            t0,
            t0 + Duration::from_secs(3600 - 301)
        ));
        assert!(needs_refresh(
            &expiring,
            t0,
            t0 + Duration::from_secs(3600 - 300)
        ));
        let fixed = Credentials::new("AK", "SK", None, None, "test");
        assert!(!needs_refresh(&fixed, t0, t0 + Duration::from_secs(899)));
        assert!(needs_refresh(&fixed, t0, t0 + NO_EXPIRY_TTL));
    }

    /// Counts calls; answers with credentials valid for `valid_for`, or fails.
    #[derive(Debug)]
    struct Counting {
        calls: AtomicUsize,
        valid_for: Option<Duration>,
        fail_after: usize,
    }

    impl ProvideCredentials for Counting {
        fn provide_credentials<'a>(&'a self) -> future::ProvideCredentials<'a>
        where
            Self: 'a,
        {
            let call = self.calls.fetch_add(1, Ordering::SeqCst);
            if call >= self.fail_after {
                return future::ProvideCredentials::ready(Err(CredentialsError::not_loaded(
                    "metadata service unavailable",
                )));
            }
            let expiry = self.valid_for.map(|d| SystemTime::now() + d);
            future::ProvideCredentials::ready(Ok(Credentials::new(
                format!("AK{call}"),
                "SK",
                None,
                expiry,
                "test",
            )))
        }
    }

    fn cache(valid_for: Option<Duration>, fail_after: usize) -> (Arc<Counting>, CredentialsCache) {
        let counting = Arc::new(Counting {
            calls: AtomicUsize::new(0),
            valid_for,
            fail_after,
        });
        let provider = SharedCredentialsProvider::new(ArcProvider(counting.clone()));
        (counting, CredentialsCache::new(provider))
    }

    #[derive(Debug)]
    struct ArcProvider(Arc<Counting>);

    impl ProvideCredentials for ArcProvider {
        fn provide_credentials<'a>(&'a self) -> future::ProvideCredentials<'a>
        where
            Self: 'a,
        {
            self.0.provide_credentials()
        }
    }

    #[tokio::test]
    async fn asks_the_chain_once_while_the_credentials_last() {
        let (counting, cache) = cache(Some(Duration::from_secs(3600)), usize::MAX);
        assert!(cache.credentials().is_none());
        for _ in 0..5 {
            cache.refresh().await.unwrap();
        }
        assert_eq!(counting.calls.load(Ordering::SeqCst), 1);
        assert_eq!(cache.credentials().unwrap().access_key_id(), "AK0");
    }

    #[tokio::test]
    async fn asks_again_when_they_are_about_to_expire() {
        let (counting, cache) = cache(Some(Duration::from_secs(60)), usize::MAX);
        cache.refresh().await.unwrap();
        cache.refresh().await.unwrap();
        assert_eq!(counting.calls.load(Ordering::SeqCst), 2);
        assert_eq!(cache.credentials().unwrap().access_key_id(), "AK1");
    }

    #[tokio::test]
    async fn keeps_valid_credentials_when_a_refresh_fails_and_fails_without_any() {
        let (_, cache) = cache(Some(Duration::from_secs(60)), 1);
        cache.refresh().await.unwrap();
        cache.refresh().await.unwrap(); // failed, but AK0 is valid for a minute
        assert_eq!(cache.credentials().unwrap().access_key_id(), "AK0");

        let (_, empty) = self::cache(None, 0);
        let error = empty.refresh().await.unwrap_err();
        assert!(matches!(error, RemoteWriteError::Sign(_)), "{error}");
        assert!(
            error.to_string().contains("metadata service unavailable"),
            "{error}"
        );
    }

    #[tokio::test]
    async fn the_signer_signs_after_prepare() {
        let (_, cache) = cache(None, usize::MAX);
        let signer = SigV4Signer {
            region: "eu-west-1".into(),
            service: AMP_SERVICE.into(),
            credentials: cache,
        };
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
