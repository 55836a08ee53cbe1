//! When and how long to wait before trying a registry request again.

use std::time::{Duration, SystemTime};

use reqwest::StatusCode;

use super::transport::{is_certificate_error, is_plain_http_answer};

/// How often and how patiently idempotent requests are retried.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RetryPolicy {
    /// Tries in total, the first included (1 = never retry).
    pub attempts: u32,
    /// Delay before the first retry; doubled for each further one, with jitter.
    pub base_delay: Duration,
    /// Upper bound of a computed delay and of an honoured `Retry-After`.
    pub max_delay: Duration,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        RetryPolicy {
            attempts: 5,
            base_delay: Duration::from_millis(200),
            max_delay: Duration::from_secs(5),
        }
    }
}

impl RetryPolicy {
    /// The pause before retry number `retry` (1 for the first retry): exponential with "equal
    /// jitter" (half fixed, half random) so concurrent clients do not retry in lockstep.
    pub fn backoff(&self, retry: u32) -> Duration {
        let exponential = self
            .base_delay
            .saturating_mul(1u32 << retry.saturating_sub(1).min(16))
            .min(self.max_delay);
        let half = exponential / 2;
        half + half.mul_f64(fastrand::f64())
    }

    /// The pause before retry number `retry`, preferring the server's `Retry-After` (capped).
    pub fn delay(&self, retry: u32, retry_after: Option<Duration>) -> Duration {
        match retry_after {
            Some(wait) => wait.min(self.max_delay),
            None => self.backoff(retry),
        }
    }
}

/// The tries one blob upload may make, shared by resuming a broken upload and starting it over
/// from its HEAD check, so that a blob whose uploads never get through fails after
/// `RetryPolicy::attempts` tries in all rather than after attempts squared.
pub(crate) struct RetryBudget {
    policy: RetryPolicy,
    /// Tries made so far, the first included.
    tries: u32,
}

impl RetryBudget {
    pub fn new(policy: &RetryPolicy) -> Self {
        RetryBudget {
            policy: policy.clone(),
            tries: 1,
        }
    }

    /// Tries made so far.
    pub fn tries(&self) -> u32 {
        self.tries
    }

    /// `message` for a failure after the last try.
    pub fn gave_up(&self, message: &str) -> String {
        format!("{message} (gave up after {} attempts)", self.tries)
    }

    /// Takes one more try, after the backoff (or the registry's `Retry-After`); `false`, at
    /// once, when every try is spent.
    pub async fn next_try(&mut self, retry_after: Option<Duration>) -> bool {
        if self.tries >= self.policy.attempts {
            return false;
        }
        tokio::time::sleep(self.policy.delay(self.tries, retry_after)).await;
        self.tries += 1;
        true
    }
}

/// Statuses that say "try again later" rather than "this request is wrong".
pub(crate) fn is_retryable_status(status: StatusCode) -> bool {
    matches!(status.as_u16(), 408 | 429 | 500 | 502 | 503 | 504)
}

/// Transport failures worth retrying: refused or reset connections, timeouts, broken bodies;
/// not TLS handshakes that failed on the protocol or the certificate, which fail the same again.
pub(crate) fn is_retryable_error(error: &reqwest::Error) -> bool {
    (error.is_connect() || error.is_timeout() || error.is_request() || error.is_body())
        && !is_plain_http_answer(error)
        && !is_certificate_error(error)
}

/// The `Retry-After` of a response, if it has a readable one.
pub(crate) fn retry_after(headers: &reqwest::header::HeaderMap) -> Option<Duration> {
    let value = headers.get(reqwest::header::RETRY_AFTER)?.to_str().ok()?;
    parse_retry_after(value, SystemTime::now())
}

/// Parses `Retry-After`: delay-seconds or an HTTP date (a date in the past means "now").
pub(crate) fn parse_retry_after(value: &str, now: SystemTime) -> Option<Duration> {
    let value = value.trim();
    if let Ok(seconds) = value.parse::<u64>() {
        return Some(Duration::from_secs(seconds));
    }
    let when = httpdate::parse_http_date(value).ok()?;
    Some(when.duration_since(now).unwrap_or(Duration::ZERO))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn retry_after_in_seconds() {
        assert_eq!(
            parse_retry_after(" 3 ", SystemTime::now()),
            Some(Duration::from_secs(3))
        );
    }

    #[test]
    fn retry_after_as_http_date() {
        let now = httpdate::parse_http_date("Sun, 06 Nov 1994 08:49:37 GMT").unwrap();
        assert_eq!(
            parse_retry_after("Sun, 06 Nov 1994 08:49:39 GMT", now),
            Some(Duration::from_secs(2))
        );
        assert_eq!(
            parse_retry_after("Sun, 06 Nov 1994 08:49:30 GMT", now),
            Some(Duration::ZERO)
        );
    }

    #[test]
    fn retry_after_garbage_is_ignored() {
        assert_eq!(parse_retry_after("soon", SystemTime::now()), None);
        assert_eq!(parse_retry_after("-1", SystemTime::now()), None);
    }

    #[test]
    fn backoff_grows_exponentially_within_jitter_and_cap() {
        let policy = RetryPolicy {
            attempts: 10,
            base_delay: Duration::from_millis(100),
            max_delay: Duration::from_millis(1000),
        };
        for _ in 0..50 {
            let first = policy.backoff(1);
            assert!((Duration::from_millis(50)..=Duration::from_millis(100)).contains(&first));
            let third = policy.backoff(3);
            assert!((Duration::from_millis(200)..=Duration::from_millis(400)).contains(&third));
            let late = policy.backoff(30);
            assert!((Duration::from_millis(500)..=Duration::from_millis(1000)).contains(&late));
        }
    }

    #[test]
    fn retry_after_wins_but_is_capped() {
        let policy = RetryPolicy::default();
        assert_eq!(
            policy.delay(1, Some(Duration::from_secs(1))),
            Duration::from_secs(1)
        );
        assert_eq!(
            policy.delay(1, Some(Duration::from_secs(3600))),
            policy.max_delay
        );
    }

    #[tokio::test]
    async fn a_budget_allows_the_policy_attempts_in_all() {
        let mut budget = RetryBudget::new(&RetryPolicy {
            attempts: 3,
            base_delay: Duration::from_millis(1),
            max_delay: Duration::from_millis(1),
        });
        assert!(budget.next_try(None).await);
        assert!(budget.next_try(Some(Duration::ZERO)).await);
        assert!(!budget.next_try(None).await);
        assert_eq!(budget.tries(), 3);
    }

    #[test]
    fn retryable_statuses() {
        for code in [408, 429, 500, 502, 503, 504] {
            assert!(is_retryable_status(StatusCode::from_u16(code).unwrap()));
        }
        for code in [400, 401, 403, 404, 413, 501] {
            assert!(!is_retryable_status(StatusCode::from_u16(code).unwrap()));
        }
    }
}
