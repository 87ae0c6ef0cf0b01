//! How long to wait before sending a failed request again.
//!
//! Exponential from `min` to `max` (defaults 30 ms and 5 s, those of
//! Prometheus's own remote-write queue manager), with "equal jitter": half of
//! each step is fixed, half random, so that many instances recovering from the
//! same outage do not retry in lockstep. A `Retry-After` from the endpoint
//! (429 and 503) is a floor on the wait, never shortened by the backoff, and
//! is itself capped at [`RETRY_AFTER_LIMIT`]: an endpoint asking for days (or
//! 2^64 seconds) is broken, and a shard asleep for that long is lost.

use std::time::{Duration, SystemTime};

/// Exponential backoff bounds.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Backoff {
    /// The wait before the first retry, and the smallest wait ever.
    pub min: Duration,
    /// The largest wait computed from the exponent (a `Retry-After` may ask for more).
    pub max: Duration,
}

impl Backoff {
    /// The wait before retry number `retry` (1 for the first), given `jitter`
    /// drawn uniformly from `[0, 1)`. Always within `[min, max]` when `min ≤ max`.
    pub fn delay(&self, retry: u32, jitter: f64) -> Duration {
        let doublings = retry.saturating_sub(1).min(31);
        let step = self
            .min
            .saturating_mul(1u32 << doublings)
            .min(self.max)
            .max(self.min);
        let half = step / 2;
        let jitter = if jitter.is_nan() {
            0.0
        } else {
            jitter.clamp(0.0, 1.0)
        };
        let jittered = half + half.mul_f64(jitter);
        jittered.clamp(self.min, step)
    }

    /// The wait before retry `retry` after an answer that asked for `retry_after`.
    pub fn delay_after(&self, retry: u32, jitter: f64, retry_after: Option<Duration>) -> Duration {
        let delay = self.delay(retry, jitter);
        retry_after.map_or(delay, |asked| delay.max(asked))
    }
}

/// The longest wait a `Retry-After` is honoured for: an hour.
pub const RETRY_AFTER_LIMIT: Duration = Duration::from_secs(3600);

/// Parses a `Retry-After` header value: delay-seconds or an HTTP-date
/// (RFC 9110 §10.2.3), at most [`RETRY_AFTER_LIMIT`]. A date in the past
/// means no wait; garbage means none was asked.
pub fn parse_retry_after(value: &str, now: SystemTime) -> Option<Duration> {
    let value = value.trim();
    let asked = match value.parse::<u64>() {
        Ok(seconds) => Duration::from_secs(seconds),
        Err(_) => {
            let at = httpdate::parse_http_date(value).ok()?;
            at.duration_since(now).unwrap_or(Duration::ZERO)
        }
    };
    Some(asked.min(RETRY_AFTER_LIMIT))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn prometheus_defaults() -> Backoff {
        Backoff {
            min: Duration::from_millis(30),
            max: Duration::from_secs(5),
        }
    }

    #[test]
    fn delays_stay_within_bounds_for_any_jitter() {
        let b = prometheus_defaults();
        for retry in [0, 1, 2, 3, 7, 8, 20, 31, 32, 1000, u32::MAX] {
            for jitter in [0.0, 0.25, 0.5, 0.999_999, 1.0, -3.0, 7.0, f64::NAN] {
                let d = b.delay(retry, jitter);
                assert!(
                    d >= b.min && d <= b.max,
                    "retry {retry} jitter {jitter}: {d:?}"
                );
            }
        }
    }

    #[test]
    fn delays_double_until_the_maximum() {
        let b = prometheus_defaults();
        assert_eq!(b.delay(1, 0.0), Duration::from_millis(30));
        assert_eq!(b.delay(1, 1.0), Duration::from_millis(30));
        assert_eq!(b.delay(2, 1.0), Duration::from_millis(60));
        assert_eq!(b.delay(3, 1.0), Duration::from_millis(120));
        assert_eq!(b.delay(3, 0.0), Duration::from_millis(60));
        assert_eq!(b.delay(9, 1.0), Duration::from_secs(5), "30 ms × 2^8 > 5 s");
        assert_eq!(b.delay(9, 0.0), Duration::from_millis(2500));
    }

    #[test]
    fn retry_after_is_a_floor() {
        let b = prometheus_defaults();
        let asked = Some(Duration::from_secs(2));
        assert_eq!(b.delay_after(1, 0.5, asked), Duration::from_secs(2));
        assert_eq!(b.delay_after(1, 0.5, None), Duration::from_millis(30));
        assert_eq!(
            b.delay_after(1, 0.5, Some(Duration::ZERO)),
            Duration::from_millis(30)
        );
    }

    #[test]
    fn parses_retry_after_seconds_and_dates() {
        let now = httpdate::parse_http_date("Sun, 06 Nov 1994 08:49:37 GMT").unwrap();
        assert_eq!(
            parse_retry_after("120", now),
            Some(Duration::from_secs(120))
        );
        assert_eq!(parse_retry_after(" 0 ", now), Some(Duration::ZERO));
        assert_eq!(
            parse_retry_after("Sun, 06 Nov 1994 08:49:40 GMT", now),
            Some(Duration::from_secs(3))
        );
        assert_eq!(
            parse_retry_after("Sun, 06 Nov 1994 08:00:00 GMT", now),
            Some(Duration::ZERO),
            "a date in the past"
        );
        assert_eq!(
            parse_retry_after("18446744073709551615", now),
            Some(RETRY_AFTER_LIMIT),
            "u64::MAX seconds"
        );
        assert_eq!(
            parse_retry_after("Fri, 31 Dec 9999 23:59:59 GMT", now),
            Some(RETRY_AFTER_LIMIT)
        );
        assert_eq!(parse_retry_after("soon", now), None);
        assert_eq!(parse_retry_after("-5", now), None);
    }
}
