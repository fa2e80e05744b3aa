//! A circuit breaker per target: stop sending to a target that keeps failing, probe it
//! again after a while.

use std::collections::VecDeque;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use serde::Serialize;

#[derive(Debug, Clone, Copy, PartialEq)]
pub struct BreakerConfig {
    /// Opens after this many failures in a row.
    pub consecutive_failures: u32,
    /// ... or when at least `error_rate` of the last `window` attempts failed (once the
    /// window is full).
    pub window: u32,
    pub error_rate: f64,
    /// How long it stays open before one probe request is let through (half-open).
    pub open_for: Duration,
}

impl Default for BreakerConfig {
    fn default() -> Self {
        Self {
            consecutive_failures: 5,
            window: 20,
            error_rate: 0.5,
            open_for: Duration::from_secs(30),
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum BreakerState {
    Closed,
    Open,
    /// Open long enough: the next request is a probe.
    HalfOpen,
}

#[derive(Debug, Default)]
struct Inner {
    consecutive: u32,
    recent: VecDeque<bool>,
    opened_at: Option<Instant>,
    probe_in_flight: bool,
}

#[derive(Debug)]
pub struct Breaker {
    config: BreakerConfig,
    inner: Mutex<Inner>,
}

impl Breaker {
    pub fn new(config: BreakerConfig) -> Self {
        Self {
            config,
            inner: Mutex::new(Inner::default()),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        // The state is a few counters: a panic elsewhere cannot leave it inconsistent.
        self.inner
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    pub fn state(&self) -> BreakerState {
        let inner = self.lock();
        self.state_of(&inner, Instant::now())
    }

    fn state_of(&self, inner: &Inner, now: Instant) -> BreakerState {
        match inner.opened_at {
            None => BreakerState::Closed,
            Some(t) if now.duration_since(t) >= self.config.open_for => BreakerState::HalfOpen,
            Some(_) => BreakerState::Open,
        }
    }

    /// Whether a request may go to the target now. When half-open, only one probe at a
    /// time is let through.
    pub fn try_acquire(&self) -> bool {
        let mut inner = self.lock();
        match self.state_of(&inner, Instant::now()) {
            BreakerState::Closed => true,
            BreakerState::Open => false,
            BreakerState::HalfOpen if inner.probe_in_flight => false,
            BreakerState::HalfOpen => {
                inner.probe_in_flight = true;
                true
            }
        }
    }

    /// Records an attempt's outcome (only failures that are the target's fault count).
    pub fn record(&self, success: bool) {
        let mut inner = self.lock();
        let window = self.config.window.max(1) as usize;
        inner.recent.push_back(success);
        while inner.recent.len() > window {
            inner.recent.pop_front();
        }
        let was_probe = std::mem::take(&mut inner.probe_in_flight);
        if success {
            inner.consecutive = 0;
            if inner.opened_at.is_some() {
                // A successful probe closes the breaker with a clean slate.
                inner.opened_at = None;
                inner.recent.clear();
            }
            return;
        }
        inner.consecutive += 1;
        let failures = inner.recent.iter().filter(|ok| !**ok).count();
        let rate_tripped = inner.recent.len() >= window
            && failures as f64 >= self.config.error_rate * window as f64;
        if was_probe || inner.consecutive >= self.config.consecutive_failures.max(1) || rate_tripped
        {
            inner.opened_at = Some(Instant::now());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn breaker(open_for: Duration) -> Breaker {
        Breaker::new(BreakerConfig {
            consecutive_failures: 3,
            window: 10,
            error_rate: 0.5,
            open_for,
        })
    }

    #[test]
    fn opens_after_consecutive_failures_and_probes_once() {
        let b = breaker(Duration::from_millis(30));
        for _ in 0..2 {
            assert!(b.try_acquire());
            b.record(false);
        }
        assert_eq!(b.state(), BreakerState::Closed);
        b.record(false);
        assert_eq!(b.state(), BreakerState::Open);
        assert!(!b.try_acquire());
        std::thread::sleep(Duration::from_millis(40));
        assert_eq!(b.state(), BreakerState::HalfOpen);
        assert!(b.try_acquire(), "one probe");
        assert!(!b.try_acquire(), "only one probe at a time");
        b.record(false);
        assert_eq!(b.state(), BreakerState::Open, "a failed probe reopens");
        std::thread::sleep(Duration::from_millis(40));
        assert!(b.try_acquire());
        b.record(true);
        assert_eq!(b.state(), BreakerState::Closed, "a good probe closes");
        assert!(b.try_acquire());
    }

    #[test]
    fn opens_on_error_rate_without_a_streak() {
        let b = breaker(Duration::from_secs(60));
        for i in 0..10 {
            b.record(i % 2 == 0);
        }
        assert_eq!(b.state(), BreakerState::Open);
        let healthy = breaker(Duration::from_secs(60));
        for i in 0..30 {
            healthy.record(i % 3 != 0);
        }
        assert_eq!(healthy.state(), BreakerState::Closed);
    }
}
