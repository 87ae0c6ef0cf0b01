//! `remote_write_response`: how the emitter classifies a remote-write
//! endpoint's answer that is not 2xx (crates/remote-write: emitter.rs
//! `send_once`, error.rs, metrics.rs `DropReason::from_bad_request`,
//! backoff.rs `parse_retry_after` and `Backoff::delay_after`).
//!
//! The input is a fixed-size head of knobs (the retry number, the jitter
//! drawn, the backoff bounds, the wall clock: `Knobs`, read with
//! `arbitrary`), then text: the status code on the first line, the
//! `Retry-After` header value on the second, the body after it. Any answer
//! is classified, never with a panic, as Prometheus's queue manager does:
//! 5xx, 429 and 408 retried with backoff, other statuses not sent again;
//! only 400 is bisected (its reason read from the body), only 401, 403 and
//! 404 are configuration errors, only 429 and 503 carry a Retry-After. The
//! wait before the next try is the header's exact wait, capped at an hour, when
//! asked, never less than it nor than the backoff's minimum, and within
//! the backoff's bounds when not asked.
#![no_main]

use std::sync::OnceLock;
use std::time::{Duration, SystemTime};

use arbitrary::{Arbitrary, Unstructured};
use fleet_remote_write::backoff::{parse_retry_after, Backoff, RETRY_AFTER_LIMIT};
use fleet_remote_write::error::{retry_for_status, truncate_answer, ANSWER_LIMIT};
use fleet_remote_write::{DropReason, RemoteWriteError, RemoteWriteMetrics, Retry, StatusClass};
use libfuzzer_sys::fuzz_target;
use reqwest::header::HeaderValue;
use reqwest::StatusCode;

/// What the emitter knows besides the answer. 22 bytes, read first.
#[derive(Arbitrary, Debug)]
struct Knobs {
    /// Which retry the next one is (1 for the first).
    retry: u32,
    /// The jitter drawn, normally in `[0, 1)`.
    jitter: f64,
    /// The backoff's bounds, ms.
    min_backoff_ms: u16,
    max_backoff_ms: u32,
    /// The wall clock, seconds since the Unix epoch.
    now_s: u32,
}

fn metrics() -> &'static RemoteWriteMetrics {
    static METRICS: OnceLock<RemoteWriteMetrics> = OnceLock::new();
    METRICS.get_or_init(RemoteWriteMetrics::unregistered)
}

fuzz_target!(|input: &[u8]| {
    let mut u = Unstructured::new(input);
    let Ok(knobs) = Knobs::arbitrary(&mut u) else {
        return;
    };
    let mut lines = u.take_rest().splitn(3, |&b| b == b'\n');
    let status_line = lines.next().unwrap_or_default();
    let header = lines.next();
    let body = lines.next().unwrap_or_default();

    // The HTTP client hands over a status of three digits only.
    let Some(status) = std::str::from_utf8(status_line)
        .ok()
        .and_then(|s| s.trim().parse::<u16>().ok())
        .and_then(|code| StatusCode::from_u16(code).ok())
    else {
        return;
    };
    if status.is_success() {
        return;
    }
    let now = SystemTime::UNIX_EPOCH + Duration::from_secs(u64::from(knobs.now_s));
    // As `send_once`: the header as text (visible ASCII), for 429 and 503.
    let header_text = header
        .and_then(|h| HeaderValue::from_bytes(h).ok())
        .and_then(|h| h.to_str().ok().map(str::to_owned));
    let asked = match status {
        StatusCode::TOO_MANY_REQUESTS | StatusCode::SERVICE_UNAVAILABLE => header_text
            .as_deref()
            .and_then(|v| parse_retry_after(v, now)),
        _ => None,
    };
    if let (Some(asked), Some(text)) = (asked, header_text.as_deref()) {
        match text.trim().parse::<u64>() {
            Ok(seconds) => assert_eq!(
                asked,
                Duration::from_secs(seconds).min(RETRY_AFTER_LIMIT),
                "{text:?}"
            ),
            Err(_) => assert!(asked <= RETRY_AFTER_LIMIT, "{text:?}: {asked:?}"),
        }
    }
    let answer = truncate_answer(body);
    // Each byte that is not UTF-8 shows as U+FFFD, three bytes.
    assert!(
        answer.len() <= 3 * ANSWER_LIMIT + '…'.len_utf8(),
        "{}",
        answer.len()
    );
    let error = RemoteWriteError::Status {
        status,
        answer: answer.clone(),
        retry_after: asked,
    };

    let code = status.as_u16();
    let retried = status.is_server_error() || code == 429 || code == 408;
    let retry = error.retry();
    assert_eq!(retry, retry_for_status(status));
    assert_eq!(retry == Retry::WithBackoff, retried, "{code}");
    let class = error.status_class();
    match retry {
        Retry::WithBackoff => assert_eq!(class, StatusClass::Retryable, "{code}"),
        Retry::No => assert_eq!(class, StatusClass::Rejected, "{code}"),
    }
    match error.bad_samples() {
        Some(reason) => {
            assert_eq!(code, 400);
            assert_eq!(reason, DropReason::from_bad_request(&answer));
            assert_ne!(reason, DropReason::Rejected);
            assert_ne!(reason, DropReason::RetryExhausted);
        }
        None => assert_ne!(code, 400),
    }
    assert_eq!(
        error.configuration_status().is_some(),
        matches!(code, 401 | 403 | 404),
        "{code}"
    );
    assert_eq!(error.retry_after(), asked);
    let shown = error.to_string();
    assert!(shown.contains(status.as_str()), "{shown}");

    let backoff = Backoff {
        min: Duration::from_millis(u64::from(knobs.min_backoff_ms)),
        max: Duration::from_millis(u64::from(knobs.max_backoff_ms)),
    };
    let retry_number = knobs.retry;
    let own = backoff.delay(retry_number, knobs.jitter);
    let delay = backoff.delay_after(retry_number, knobs.jitter, error.retry_after());
    assert!(delay >= backoff.min, "{delay:?} below {backoff:?}");
    assert_eq!(delay, own.max(asked.unwrap_or_default()));
    if backoff.min <= backoff.max {
        assert!(own <= backoff.max, "{own:?} beyond {backoff:?}");
    }
    metrics().request_failed(&error, 1, Duration::from_millis(5));
    if retry == Retry::WithBackoff {
        metrics().retry_scheduled(&error, retry_number, delay);
    }
});
