//! A circuit breaker per target: stop sending to a target that keeps failing, probe it
//! again after a while.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex};
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

    /// Leave to send one request to the target now, or `None` while the breaker is open.
    /// When half-open, only one probe at a time is let through. The permit is how the
    /// attempt's outcome gets back: [`Permit::record`]; a permit dropped unrecorded (the
    /// client went away mid-attempt) frees the probe slot it held, so the next request
    /// probes instead of the target staying shut for good.
    pub fn try_acquire(self: &Arc<Self>) -> Option<Permit> {
        let mut inner = self.lock();
        let probe = match self.state_of(&inner, Instant::now()) {
            BreakerState::Closed => false,
            BreakerState::Open => return None,
            BreakerState::HalfOpen if inner.probe_in_flight => return None,
            BreakerState::HalfOpen => {
                inner.probe_in_flight = true;
                true
            }
        };
        Some(Permit {
            breaker: self.clone(),
            probe,
            settled: false,
        })
    }

    /// Records an outcome that no permit carries (only failures that are the target's
    /// fault count).
    pub fn record(&self, success: bool) {
        self.settle(success, false);
    }

    fn settle(&self, success: bool, probe: bool) {
        let mut inner = self.lock();
        let window = self.config.window.max(1) as usize;
        inner.recent.push_back(success);
        while inner.recent.len() > window {
            inner.recent.pop_front();
        }
        if probe {
            inner.probe_in_flight = false;
        }
        if success {
            inner.consecutive = 0;
            if inner.opened_at.is_some() {
                // A successful attempt closes the breaker with a clean slate.
                inner.opened_at = None;
                inner.recent.clear();
            }
            return;
        }
        inner.consecutive += 1;
        let failures = inner.recent.iter().filter(|ok| !**ok).count();
        let rate_tripped = inner.recent.len() >= window
            && failures as f64 >= self.config.error_rate * window as f64;
        if probe || inner.consecutive >= self.config.consecutive_failures.max(1) || rate_tripped {
            inner.opened_at = Some(Instant::now());
        }
    }

    /// An attempt ended with no outcome (abandoned): a probe's slot is freed.
    fn abandon(&self, probe: bool) {
        if probe {
            self.lock().probe_in_flight = false;
        }
    }
}

/// One request's leave to go to a target (see [`Breaker::try_acquire`]).
#[must_use = "an attempt's outcome is recorded through its permit"]
#[derive(Debug)]
pub struct Permit {
    breaker: Arc<Breaker>,
    probe: bool,
    settled: bool,
}

impl Permit {
    /// Whether this attempt is the half-open probe.
    pub fn is_probe(&self) -> bool {
        self.probe
    }

    /// Records the attempt's outcome (pass `true` for failures that are not the target's
    /// fault, such as a 400).
    pub fn record(mut self, success: bool) {
        self.settled = true;
        self.breaker.settle(success, self.probe);
    }
}

impl Drop for Permit {
    fn drop(&mut self) {
        if !self.settled {
            self.breaker.abandon(self.probe);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn breaker(open_for: Duration) -> Arc<Breaker> {
        Arc::new(Breaker::new(BreakerConfig {
            consecutive_failures: 3,
            window: 10,
            error_rate: 0.5,
            open_for,
        }))
    }

    #[test]
    fn opens_after_consecutive_failures_and_probes_once() {
        let b = breaker(Duration::from_millis(30));
        for _ in 0..2 {
            b.try_acquire().unwrap().record(false);
        }
        assert_eq!(b.state(), BreakerState::Closed);
        b.try_acquire().unwrap().record(false);
        assert_eq!(b.state(), BreakerState::Open);
        assert!(b.try_acquire().is_none());
        std::thread::sleep(Duration::from_millis(40));
        assert_eq!(b.state(), BreakerState::HalfOpen);
        let probe = b.try_acquire().expect("one probe");
        assert!(probe.is_probe());
        assert!(b.try_acquire().is_none(), "only one probe at a time");
        probe.record(false);
        assert_eq!(b.state(), BreakerState::Open, "a failed probe reopens");
        std::thread::sleep(Duration::from_millis(40));
        b.try_acquire().unwrap().record(true);
        assert_eq!(b.state(), BreakerState::Closed, "a good probe closes");
        assert!(b.try_acquire().is_some_and(|p| !p.is_probe()));
    }

    #[test]
    fn a_probe_dropped_without_an_outcome_frees_the_slot() {
        let b = breaker(Duration::from_millis(20));
        for _ in 0..3 {
            b.record(false);
        }
        std::thread::sleep(Duration::from_millis(30));
        let probe = b.try_acquire().expect("half-open: a probe");
        drop(probe); // the client of the probe went away mid-attempt
        assert_eq!(b.state(), BreakerState::HalfOpen);
        let next = b.try_acquire().expect("the next request probes");
        next.record(true);
        assert_eq!(b.state(), BreakerState::Closed);
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
