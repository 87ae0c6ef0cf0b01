//! The authentication token of Amazon MSK's IAM access control.
//!
//! MSK brokers with IAM access control take SASL/OAUTHBEARER, whose bearer
//! token is not an OAuth token but a SigV4-presigned request for the
//! `kafka-cluster:Connect` action, as AWS's signers build it
//! (`aws-msk-iam-sasl-signer-python`, `-go`, `-js`, and `aws-msk-iam-auth`
//! for Java):
//!
//! 1. the URL `https://kafka.<region>.amazonaws.com/?Action=kafka-cluster%3AConnect`,
//!    method `GET`, presigned with SigV4 in the query string for the service
//!    `kafka-cluster` and the cluster's region: `X-Amz-Algorithm`,
//!    `X-Amz-Credential`, `X-Amz-Date`, `X-Amz-Expires=900`,
//!    `X-Amz-SignedHeaders=host`, with temporary credentials
//!    `X-Amz-Security-Token` (signed too), then `X-Amz-Signature`; `host`
//!    is the only signed header and the canonical request's payload hash is
//!    the SHA-256 of the empty body (botocore's, not the `UNSIGNED-PAYLOAD`
//!    of most presigned URLs: the broker checks the signature, so it
//!    matters);
//! 2. then a `User-Agent` query parameter naming the client, appended after
//!    signing (it is not signed);
//! 3. the whole URL, UTF-8, base64url-encoded without `=` padding.
//!
//! [`auth_token`] does exactly that for given credentials and time, nothing
//! else: it is pure, so `tests/fixtures/msk_iam_expected.json` (tokens made
//! by AWS's Python signer for fixed credentials and a fixed clock) checks it
//! byte for byte.
//!
//! # Lifetime
//!
//! A token is valid for [`TOKEN_LIFETIME`] (900 s) from its `X-Amz-Date`
//! (the signing time, whole seconds): [`token_expiry`]. The broker checks it
//! when a connection authenticates (and, with
//! `connections.max.reauth.ms`, when it re-authenticates); a connection
//! already authenticated is not cut when the token expires. Temporary
//! credentials must still be valid when the token is *signed*: a token
//! cannot outlive what the broker accepts, so credentials about to expire
//! are refreshed first (`fleet_aws::CredentialsCache` does, five minutes
//! ahead).
//!
//! # Use
//!
//! [`crate::security::TokenProvider`] answers librdkafka's OAUTHBEARER token
//! requests with [`auth_token`], signed with credentials that a
//! `fleet_aws::RefreshingCredentials` keeps fresh in the background (see
//! [`crate::security::tokens`]). The principal name is informative (MSK
//! takes the identity from the signature); the access key id serves.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use aws_credential_types::Credentials;
use aws_sigv4::http_request::{
    sign, SignableBody, SignableRequest, SignatureLocation, SigningSettings,
};
use aws_sigv4::sign::v4;
use base64::Engine;
use fleet_aws::{Region, RegionError};

/// The SigV4 service name of MSK's IAM access control.
pub const SIGNING_NAME: &str = "kafka-cluster";

/// The action a token authorizes.
pub const ACTION: &str = "kafka-cluster:Connect";

/// How long a token is valid after its signing time (AWS's signers use 900 s).
pub const TOKEN_LIFETIME: Duration = Duration::from_secs(900);

/// The `User-Agent` query parameter of the tokens this service builds.
pub const USER_AGENT: &str = concat!("fleet-preprocessor/", env!("CARGO_PKG_VERSION"));

/// Why no token could be built.
#[derive(Debug, thiserror::Error)]
pub enum MskIamError {
    /// The region is not a region name (`eu-west-1`, `us-gov-west-1`…).
    #[error(transparent)]
    Region(#[from] RegionError),
    /// The access key id or the secret key is empty.
    #[error("the AWS credentials are empty")]
    EmptyCredentials,
    /// SigV4 signing failed.
    #[error("cannot sign the MSK IAM request: {0}")]
    Sign(String),
}

/// The MSK IAM authentication token for a cluster in `region`, signed with
/// `credentials` at `now` (only whole seconds count), with this service's
/// [`USER_AGENT`]. Valid until [`token_expiry`]`(now)`.
pub fn auth_token(
    region: &str,
    credentials: &Credentials,
    now: SystemTime,
) -> Result<String, MskIamError> {
    auth_token_with_user_agent(region, credentials, now, USER_AGENT)
}

/// [`auth_token`] with another `User-Agent` parameter (it is not signed).
pub fn auth_token_with_user_agent(
    region: &str,
    credentials: &Credentials,
    now: SystemTime,
    user_agent: &str,
) -> Result<String, MskIamError> {
    let url = presigned_url(region, credentials, now, user_agent)?;
    Ok(base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(url))
}

/// When a token signed at `now` expires: the signing time, truncated to the
/// second as in `X-Amz-Date`, plus [`TOKEN_LIFETIME`].
pub fn token_expiry(now: SystemTime) -> SystemTime {
    let seconds = now
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0);
    UNIX_EPOCH + Duration::from_secs(seconds) + TOKEN_LIFETIME
}

/// The presigned URL a token encodes, before base64.
pub fn presigned_url(
    region: &str,
    credentials: &Credentials,
    now: SystemTime,
    user_agent: &str,
) -> Result<String, MskIamError> {
    Region::parse(region)?;
    if credentials.access_key_id().is_empty() || credentials.secret_access_key().is_empty() {
        return Err(MskIamError::EmptyCredentials);
    }
    let failed = |what: &str, e: &dyn std::fmt::Display| MskIamError::Sign(format!("{what}: {e}"));
    let endpoint = format!("https://kafka.{region}.amazonaws.com/");
    let action = format!("Action={}", percent_encode(ACTION));
    let mut settings = SigningSettings::default();
    settings.signature_location = SignatureLocation::QueryParams;
    settings.expires_in = Some(TOKEN_LIFETIME);
    let identity = credentials.clone().into();
    let params = v4::SigningParams::builder()
        .identity(&identity)
        .region(region)
        .name(SIGNING_NAME)
        .time(now)
        .settings(settings)
        .build()
        .map_err(|e| failed("parameters", &e))?
        .into();
    let to_sign = format!("{endpoint}?{action}");
    let signable = SignableRequest::new(
        "GET",
        &to_sign,
        std::iter::empty(),
        // As AWS's signer: the payload hash is that of the empty body, not
        // `UNSIGNED-PAYLOAD` as in most presigned URLs.
        SignableBody::Bytes(&[]),
    )
    .map_err(|e| failed("request", &e))?;
    let (instructions, _signature) = sign(signable, &params)
        .map_err(|e| failed("signature", &e))?
        .into_parts();
    let (_headers, mut query) = instructions.into_parts();
    // AWS's signers' order: the signing parameters, the signature last.
    query.sort_by_key(|(name, _)| query_rank(name));
    let mut url = format!("{endpoint}?{action}");
    for (name, value) in &query {
        url.push('&');
        url.push_str(&percent_encode(name));
        url.push('=');
        url.push_str(&percent_encode(value));
    }
    url.push_str("&User-Agent=");
    url.push_str(&percent_encode(user_agent));
    Ok(url)
}

/// Where a presigning parameter goes in the URL, as botocore places them.
fn query_rank(name: &str) -> usize {
    const ORDER: [&str; 7] = [
        "X-Amz-Algorithm",
        "X-Amz-Credential",
        "X-Amz-Date",
        "X-Amz-Expires",
        "X-Amz-SignedHeaders",
        "X-Amz-Security-Token",
        "X-Amz-Signature",
    ];
    ORDER
        .iter()
        .position(|n| *n == name)
        .unwrap_or(ORDER.len() - 1)
}

/// RFC 3986 percent-encoding of everything but the unreserved characters,
/// as SigV4 and AWS's signers encode query strings.
fn percent_encode(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for byte in s.bytes() {
        if byte.is_ascii_alphanumeric() || matches!(byte, b'-' | b'_' | b'.' | b'~') {
            out.push(byte as char);
        } else {
            out.push_str(&format!("%{byte:02X}"));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]

    use std::collections::BTreeMap;

    use super::*;

    /// `tests/fixtures/msk_iam_expected.json`: see `tests/fixtures/README.md`.
    const FIXTURE: &str = include_str!("../tests/fixtures/msk_iam_expected.json");

    fn fixture() -> serde_json::Value {
        serde_json::from_str(FIXTURE).unwrap()
    }

    fn decode(token: &str) -> String {
        let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD
            .decode(token)
            .unwrap();
        String::from_utf8(bytes).unwrap()
    }

    /// The endpoint and the query parameters, decoded, as a sorted map.
    fn split(url: &str) -> (String, BTreeMap<String, String>) {
        let parsed = url::Url::parse(url).unwrap();
        let endpoint = format!(
            "{}://{}{}",
            parsed.scheme(),
            parsed.host_str().unwrap(),
            parsed.path()
        );
        let params: BTreeMap<String, String> = parsed.query_pairs().into_owned().collect();
        assert_eq!(
            params.len(),
            parsed.query_pairs().count(),
            "no repeated parameter: {url}"
        );
        (endpoint, params)
    }

    fn cases() -> Vec<(Credentials, serde_json::Value, SystemTime, String)> {
        let f = fixture();
        let now = UNIX_EPOCH + Duration::from_secs(f["epoch_seconds"].as_u64().unwrap());
        f["cases"]
            .as_array()
            .unwrap()
            .iter()
            .map(|case| {
                let credentials = Credentials::new(
                    f["access_key"].as_str().unwrap(),
                    f["secret_key"].as_str().unwrap(),
                    case["session_token"].as_str().map(String::from),
                    None,
                    "fixture",
                );
                (
                    credentials,
                    case.clone(),
                    now,
                    f["region"].as_str().unwrap().to_string(),
                )
            })
            .collect()
    }

    #[test]
    fn the_token_is_the_one_aws_python_signer_builds() {
        let cases = cases();
        assert_eq!(cases.len(), 2);
        assert!(cases.iter().any(|(c, ..)| c.session_token().is_none()));
        assert!(cases.iter().any(|(c, ..)| c.session_token().is_some()));
        for (credentials, case, now, region) in cases {
            let want_url = decode(case["token"].as_str().unwrap());
            assert_eq!(want_url, case["url"].as_str().unwrap());
            let (want_endpoint, want_params) = split(&want_url);
            let user_agent = &want_params["User-Agent"];
            let token = auth_token_with_user_agent(&region, &credentials, now, user_agent).unwrap();
            let (endpoint, params) = split(&decode(&token));
            assert_eq!(endpoint, want_endpoint);
            // Every parameter, X-Amz-Signature included.
            assert_eq!(
                params, want_params,
                "session token: {:?}",
                case["session_token"]
            );
            // And the same bytes: parameter order and encoding as AWS's signer.
            assert_eq!(token, case["token"].as_str().unwrap());
            let expiry_ms = token_expiry(now)
                .duration_since(UNIX_EPOCH)
                .unwrap()
                .as_millis();
            assert_eq!(expiry_ms as u64, case["expiry_ms"].as_u64().unwrap());
        }
    }

    #[test]
    fn the_token_has_the_structure_msk_expects() {
        let (credentials, _, now, region) = cases().pop().unwrap();
        // Sub-second parts of the clock do not change the token.
        let later = now + Duration::from_millis(999);
        let token = auth_token(&region, &credentials, later).unwrap();
        assert_eq!(token, auth_token(&region, &credentials, now).unwrap());
        assert!(!token.contains('='), "no padding");
        assert!(
            token
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_'),
            "base64url"
        );
        let (endpoint, params) = split(&decode(&token));
        assert_eq!(endpoint, format!("https://kafka.{region}.amazonaws.com/"));
        assert_eq!(params["Action"], "kafka-cluster:Connect");
        assert_eq!(params["X-Amz-Expires"], "900");
        assert_eq!(params["X-Amz-SignedHeaders"], "host");
        assert_eq!(params["User-Agent"], USER_AGENT);
        assert!(
            params["X-Amz-Credential"].ends_with(&format!("/{region}/kafka-cluster/aws4_request"))
        );
        assert_eq!(
            params["X-Amz-Security-Token"],
            credentials.session_token().unwrap()
        );
        assert_eq!(
            token_expiry(later),
            now + TOKEN_LIFETIME,
            "expiry counts from X-Amz-Date"
        );
    }

    #[test]
    fn refuses_bad_regions_and_empty_credentials() {
        let now = UNIX_EPOCH + Duration::from_secs(1_764_000_000);
        let ok = Credentials::new("AK", "SK", None, None, "test");
        for region in [
            "",
            "eu",
            "EU-WEST-1",
            "eu-west-1.evil.com/x?",
            "eu--1",
            "eu-west-1a",
        ] {
            assert!(
                matches!(auth_token(region, &ok, now), Err(MskIamError::Region(_))),
                "{region:?}"
            );
        }
        assert!(auth_token("us-gov-west-1", &ok, now).is_ok());
        for (ak, sk) in [("", "SK"), ("AK", "")] {
            let empty = Credentials::new(ak, sk, None, None, "test");
            assert!(matches!(
                auth_token("eu-west-1", &empty, now),
                Err(MskIamError::EmptyCredentials)
            ));
        }
    }
}
