//! SigV4 for Amazon Managed Service for Prometheus, checked against botocore.
//!
//! `fixtures/sigv4_expected.json` holds the headers botocore's signer (an
//! independent implementation) computes for a fixed request, time and
//! credentials; see `fixtures/README.md` for how it was made. The request
//! signed here is built by the emitter itself, so a change in the headers
//! the emitter sends shows up as a different signature.
// Test code: a panic is the failure report.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::time::{Duration, SystemTime};

use aws_credential_types::Credentials;
use bytes::Bytes;
use fleet_remote_write::sigv4::{region_from_url, sign_request};
use fleet_remote_write::{Emitter, RemoteWriteConfig, RemoteWriteMetrics, SigV4Config};
use serde_json::Value;

fn fixture() -> Value {
    serde_json::from_str(include_str!("fixtures/sigv4_expected.json")).unwrap()
}

fn hex(text: &str) -> Vec<u8> {
    (0..text.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&text[i..i + 2], 16).unwrap())
        .collect()
}

#[tokio::test]
async fn signatures_match_botocore_with_and_without_a_session_token() {
    let f = fixture();
    let s = |key: &str| f[key].as_str().unwrap().to_owned();
    let cfg = RemoteWriteConfig {
        url: s("url"),
        sigv4: Some(SigV4Config::default()),
        ..RemoteWriteConfig::default()
    };
    assert_eq!(
        cfg.sigv4_region().unwrap(),
        s("region"),
        "region from the URL"
    );
    let emitter = Emitter::new(&cfg, RemoteWriteMetrics::unregistered()).unwrap();
    let time = SystemTime::UNIX_EPOCH + Duration::from_secs(f["epoch_seconds"].as_u64().unwrap());
    let cases = f["cases"].as_array().unwrap();
    assert_eq!(cases.len(), 2);
    for case in cases {
        let token = case["session_token"].as_str().map(str::to_owned);
        let credentials = Credentials::new(
            s("access_key"),
            s("secret_key"),
            token.clone(),
            None,
            "fixture",
        );
        let mut request = emitter
            .build_request(Bytes::from(hex(&s("body_hex"))))
            .await
            .unwrap();
        sign_request(
            &mut request,
            &credentials,
            &s("region"),
            &s("service"),
            time,
        )
        .unwrap();
        let expected = case["expected"].as_object().unwrap();
        assert_eq!(expected.len(), if token.is_some() { 4 } else { 3 });
        for (name, value) in expected {
            assert_eq!(
                request.headers().get(name).map(|v| v.to_str().unwrap()),
                value.as_str(),
                "{name} (token: {token:?}); request headers: {:?}",
                request.headers()
            );
        }
        assert_eq!(
            request.headers().contains_key("x-amz-security-token"),
            token.is_some()
        );
    }
}

#[test]
fn the_service_is_aps_and_the_region_comes_from_the_workspace_url() {
    let url = |u: &str| reqwest::Url::parse(u).unwrap();
    assert_eq!(
        region_from_url(&url(fixture()["url"].as_str().unwrap())).as_deref(),
        Some("eu-west-1")
    );
    assert_eq!(
        region_from_url(&url(
            "https://aps-workspaces.us-east-2.amazonaws.com/workspaces/ws-9/api/v1/remote_write"
        ))
        .as_deref(),
        Some("us-east-2")
    );
    assert_eq!(
        region_from_url(&url("http://127.0.0.1:9090/api/v1/write")),
        None
    );
    assert_eq!(
        fixture()["service"],
        fleet_remote_write::config::AMP_SERVICE
    );
}
