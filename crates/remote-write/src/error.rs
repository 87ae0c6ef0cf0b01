//! The one error type of the crate, and how each error is retried.
//!
//! Every failure to deliver carries a [`Retry`] class, from which the emitter
//! decides: retry with backoff (5xx, 429, 408, no answer), bisect the request
//! (400: Prometheus refuses a whole request for one bad sample), or drop the
//! request's samples and count them (other 4xx).

use std::path::PathBuf;
use std::time::Duration;

use reqwest::StatusCode;

use crate::metrics::{DropReason, StatusClass};

/// How much of the endpoint's answer is kept for logs: enough for Prometheus's
/// one-line errors, bounded so a misconfigured proxy's HTML page is not logged whole.
pub const ANSWER_LIMIT: usize = 512;

/// Whether sending the same request again may succeed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Retry {
    /// It will fail the same way: do not send it again as it is.
    No,
    /// The endpoint or the network may recover: send it again after a backoff.
    WithBackoff,
}

/// What went wrong while writing to the remote-write endpoint.
#[derive(Debug, thiserror::Error)]
pub enum RemoteWriteError {
    /// The configuration cannot be used: bad URL or header, HTTP client setup.
    #[error("invalid remote-write configuration: {0}")]
    Config(String),
    /// The bearer token file could not be read.
    #[error("cannot read the bearer token file {}: {cause}", path.display())]
    BearerToken {
        /// The configured file.
        path: PathBuf,
        /// Why it could not be read.
        cause: std::io::Error,
    },
    /// Snappy refused the request (only possible for requests of gigabytes).
    #[error("cannot compress the remote-write request: {0}")]
    Compress(snap::Error),
    /// The request-signing hook failed (for example, no credentials yet).
    #[error("cannot sign the remote-write request: {0}")]
    Sign(String),
    /// A shard task failed (a bug): the stage stops, unacknowledged batches are replayed.
    #[error("a remote-write shard failed: {0}")]
    Shard(String),
    /// No answer: connection refused or reset, timeout, name resolution.
    #[error("remote-write request got no answer: {}", fleet_core::error_chain(.0))]
    Network(reqwest::Error),
    /// The endpoint answered with a status other than 2xx.
    #[error("remote-write endpoint answered {status}: {answer}")]
    Status {
        /// The HTTP status.
        status: StatusCode,
        /// The start of the response body, at most [`ANSWER_LIMIT`] bytes.
        answer: String,
        /// The wait the endpoint asked for with `Retry-After` (429 and 503 only).
        retry_after: Option<Duration>,
    },
}

impl RemoteWriteError {
    /// Whether to send the same request again.
    pub fn retry(&self) -> Retry {
        match self {
            RemoteWriteError::Config(_)
            | RemoteWriteError::Compress(_)
            | RemoteWriteError::Shard(_) => Retry::No,
            // A token file being rotated, or credentials being refreshed, come back.
            RemoteWriteError::BearerToken { .. } | RemoteWriteError::Sign(_) => Retry::WithBackoff,
            RemoteWriteError::Network(_) => Retry::WithBackoff,
            RemoteWriteError::Status { status, .. } => retry_for_status(*status),
        }
    }

    /// The self-metric class of the request that failed so.
    pub fn status_class(&self) -> StatusClass {
        match self {
            RemoteWriteError::Network(_) => StatusClass::Network,
            other => match other.retry() {
                Retry::WithBackoff => StatusClass::Retryable,
                Retry::No => StatusClass::Rejected,
            },
        }
    }

    /// For a 400, why the endpoint refused (from its answer): the request
    /// holds at least one bad sample and should be bisected. `None` otherwise.
    pub fn bad_samples(&self) -> Option<DropReason> {
        match self {
            RemoteWriteError::Status { status, answer, .. }
                if *status == StatusCode::BAD_REQUEST =>
            {
                Some(DropReason::from_bad_request(answer))
            }
            _ => None,
        }
    }

    /// For 401, 403 and 404, the status: the endpoint refuses this service's
    /// requests whatever they hold (wrong URL, credentials or permissions), so
    /// it is a configuration error rather than bad data. `None` otherwise.
    pub fn configuration_status(&self) -> Option<StatusCode> {
        match self {
            RemoteWriteError::Status { status, .. }
                if matches!(
                    *status,
                    StatusCode::UNAUTHORIZED | StatusCode::FORBIDDEN | StatusCode::NOT_FOUND
                ) =>
            {
                Some(*status)
            }
            _ => None,
        }
    }

    /// How long the endpoint asked to wait before the next try.
    pub fn retry_after(&self) -> Option<Duration> {
        match self {
            RemoteWriteError::Status { retry_after, .. } => *retry_after,
            _ => None,
        }
    }
}

/// 2xx is success; 5xx, 429 and 408 are worth retrying (as Prometheus's own
/// queue manager does); every other status will be refused again.
pub fn retry_for_status(status: StatusCode) -> Retry {
    if status.is_server_error()
        || status == StatusCode::TOO_MANY_REQUESTS
        || status == StatusCode::REQUEST_TIMEOUT
    {
        Retry::WithBackoff
    } else {
        Retry::No
    }
}

/// The start of an answer body as text, cut at a character boundary.
pub fn truncate_answer(body: &[u8]) -> String {
    let text = String::from_utf8_lossy(&body[..body.len().min(ANSWER_LIMIT)]);
    let mut text = text.trim_end().to_owned();
    if body.len() > ANSWER_LIMIT {
        text.push('…');
    }
    text
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    /// An answer of `code` saying `answer`.
    pub(crate) fn status(code: u16, answer: &str) -> RemoteWriteError {
        RemoteWriteError::Status {
            status: StatusCode::from_u16(code).unwrap(),
            answer: answer.into(),
            retry_after: None,
        }
    }

    #[test]
    fn statuses_are_classified_like_prometheus_queue_manager() {
        for code in [500, 502, 503, 504, 429, 408] {
            assert_eq!(status(code, "").retry(), Retry::WithBackoff, "{code}");
            assert_eq!(status(code, "").status_class(), StatusClass::Retryable);
        }
        for code in [400, 401, 403, 404, 413, 422] {
            assert_eq!(status(code, "").retry(), Retry::No, "{code}");
            assert_eq!(status(code, "").status_class(), StatusClass::Rejected);
        }
    }

    #[test]
    fn only_400_is_bisected() {
        assert_eq!(
            status(400, "out of order sample").bad_samples(),
            Some(DropReason::OutOfOrder)
        );
        assert_eq!(status(400, "").bad_samples(), Some(DropReason::Other));
        assert_eq!(status(401, "out of order sample").bad_samples(), None);
        assert_eq!(status(503, "").bad_samples(), None);
    }

    #[test]
    fn auth_and_not_found_are_configuration_errors() {
        for code in [401, 403, 404] {
            assert_eq!(
                status(code, "").configuration_status().map(|s| s.as_u16()),
                Some(code)
            );
        }
        for code in [400, 413, 429, 503] {
            assert_eq!(status(code, "").configuration_status(), None, "{code}");
        }
        assert_eq!(
            RemoteWriteError::Sign("x".into()).configuration_status(),
            None
        );
    }

    #[test]
    fn answers_are_truncated_at_a_char_boundary() {
        assert_eq!(
            truncate_answer(b"out of order sample\n"),
            "out of order sample"
        );
        let long = "é".repeat(400);
        let cut = truncate_answer(long.as_bytes());
        assert!(
            cut.len() <= ANSWER_LIMIT + '…'.len_utf8() + 3,
            "{}",
            cut.len()
        );
        assert!(cut.ends_with('…'));
        assert!(cut.starts_with("éé"));
    }
}
