//! Jittered exponential backoff, honouring the upstream's `Retry-After`.

use std::time::Duration;

use rand::Rng;

/// Retries of one target before the fallback loop moves to the next.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RetryPolicy {
    /// Retries after the first attempt (0 = never retry).
    pub max_retries: u32,
    /// Delay before the first retry, before jitter.
    pub base: Duration,
    /// Cap on any one delay. An upstream whose `Retry-After` asks for longer is not waited
    /// for: the loop moves on to the next target at once.
    pub max: Duration,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        Self {
            max_retries: 2,
            base: Duration::from_millis(100),
            max: Duration::from_secs(5),
        }
    }
}

impl RetryPolicy {
    /// The delay before retry number `retry` (0-based): the upstream's `Retry-After` when it
    /// sent one, else `base · 2^retry` scaled by a random factor in [0.5, 1) ("equal
    /// jitter", so synchronised clients spread out), capped at `max`. `None` when the
    /// upstream asks for a longer wait than `max`: retrying it sooner would fail again.
    pub fn delay(&self, retry: u32, retry_after: Option<Duration>) -> Option<Duration> {
        match retry_after {
            Some(d) if d > self.max => None,
            Some(d) => Some(d),
            None => {
                let exp = self.base.saturating_mul(1u32 << retry.min(16));
                Some(
                    exp.mul_f64(rand::rng().random_range(0.5..1.0))
                        .min(self.max),
                )
            }
        }
    }
}

/// `Retry-After` in delay-seconds form (`"2"`, `"0.5"`); HTTP dates are ignored.
pub fn parse_retry_after(value: &str) -> Option<Duration> {
    let secs: f64 = value.trim().parse().ok()?;
    (secs.is_finite() && secs >= 0.0).then(|| Duration::from_secs_f64(secs.min(3600.0)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_grows_with_jitter_and_is_capped() {
        let p = RetryPolicy {
            max_retries: 5,
            base: Duration::from_millis(100),
            max: Duration::from_millis(350),
        };
        for _ in 0..50 {
            let d0 = p.delay(0, None).unwrap();
            assert!(d0 >= Duration::from_millis(50) && d0 < Duration::from_millis(100));
            let d1 = p.delay(1, None).unwrap();
            assert!(d1 >= Duration::from_millis(100) && d1 < Duration::from_millis(200));
            assert!(p.delay(4, None).unwrap() <= Duration::from_millis(350));
        }
        assert_eq!(
            p.delay(0, Some(Duration::from_secs(1))),
            None,
            "a Retry-After beyond the cap is not waited for"
        );
        assert_eq!(
            p.delay(0, Some(Duration::from_millis(200))),
            Some(Duration::from_millis(200))
        );
    }

    #[test]
    fn retry_after_seconds() {
        assert_eq!(parse_retry_after("2"), Some(Duration::from_secs(2)));
        assert_eq!(
            parse_retry_after(" 0.25 "),
            Some(Duration::from_millis(250))
        );
        assert_eq!(parse_retry_after("Wed, 21 Oct 2015 07:28:00 GMT"), None);
        assert_eq!(parse_retry_after("-1"), None);
    }
}
