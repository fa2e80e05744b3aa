//! Tenants' daily token and USD budgets and requests-per-minute limits in this process,
//! and the hold a request takes on them (or on the shared budgets). Counters live in
//! memory: a restart starts the day's spend from zero.
//!
//! Budgets hold under concurrency by reservation: before a request is sent upstream it
//! reserves its estimated tokens and cost (prompt estimate + `max_tokens`, at the priciest
//! model it may be sent to); a request is admitted only while the day's spend plus what
//! requests in flight have reserved is under the budget. The reservation is settled with
//! the real usage when the answer ends (an estimate from the streamed text when the
//! upstream reports none) and released when no answer comes. So the day's spend can pass
//! the budget by at most what one request uses beyond its own estimate.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::Instant;

use chrono::{NaiveDate, Utc};
use switchyard_state::Hold;

use super::error::LimitError;
use super::shared::Shared;
use crate::config::TenantConfig;

#[derive(Debug)]
struct Usage {
    day: NaiveDate,
    tokens: u64,
    usd: f64,
    /// What requests in flight have reserved.
    reserved_tokens: u64,
    reserved_usd: f64,
    /// Token bucket for requests per minute.
    bucket: f64,
    refilled: Instant,
}

/// Per-tenant spend and request rate.
#[derive(Debug, Default)]
pub struct Ledger {
    usage: Mutex<BTreeMap<String, Usage>>,
}

impl Ledger {
    fn with<R>(&self, tenant: &str, f: impl FnOnce(&mut Usage) -> R) -> R {
        let mut map = self
            .usage
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let today = Utc::now().date_naive();
        let u = map.entry(tenant.to_owned()).or_insert_with(|| Usage {
            day: today,
            tokens: 0,
            usd: 0.0,
            reserved_tokens: 0,
            reserved_usd: 0.0,
            bucket: f64::NAN,
            refilled: Instant::now(),
        });
        if u.day != today {
            u.day = today;
            u.tokens = 0;
            u.usd = 0.0;
        }
        f(u)
    }

    /// Admits one request under the tenant's rate limit and budgets, or says why not (429
    /// a typed refusal). Budgets are checked again, with a reservation, by
    /// [`Self::reserve`] once the request's models are known.
    pub fn admit(&self, tenant: &str, config: &TenantConfig) -> Result<(), LimitError> {
        self.with(tenant, |u| {
            has_room(tenant, config, u)?;
            take_rate_token(tenant, config, u)
        })
    }

    /// Reserves a request's estimated `tokens` and `usd` if the tenant's budgets have room
    /// for it, atomically with the check.
    pub fn reserve(
        self: &Arc<Self>,
        tenant: &str,
        config: &TenantConfig,
        tokens: u64,
        usd: f64,
    ) -> Result<Reservation, LimitError> {
        let usd = if usd.is_finite() { usd.max(0.0) } else { 0.0 };
        self.with(tenant, |u| {
            has_room(tenant, config, u)?;
            u.reserved_tokens = u.reserved_tokens.saturating_add(tokens);
            u.reserved_usd += usd;
            Ok(())
        })?;
        Ok(Reservation {
            holder: Holder::Local {
                ledger: self.clone(),
                report: None,
            },
            tenant: tenant.to_owned(),
            tokens,
            usd,
            open: true,
        })
    }

    /// Charges a finished request that held no reservation.
    pub fn charge(&self, tenant: &str, tokens: u64, usd: f64) {
        self.with(tenant, |u| spend(u, tokens, usd));
    }

    fn unreserve(u: &mut Usage, tokens: u64, usd: f64) {
        u.reserved_tokens = u.reserved_tokens.saturating_sub(tokens);
        u.reserved_usd = (u.reserved_usd - usd).max(0.0);
    }
}

fn spend(u: &mut Usage, tokens: u64, usd: f64) {
    u.tokens = u.tokens.saturating_add(tokens);
    if usd.is_finite() {
        u.usd += usd.max(0.0);
    }
}

/// Whether the day's spend plus the reservations of requests in flight leave room.
fn has_room(tenant: &str, config: &TenantConfig, u: &Usage) -> Result<(), LimitError> {
    if let Some(limit) = config.daily_tokens
        && u.tokens.saturating_add(u.reserved_tokens) >= limit
    {
        return Err(LimitError::OverTokens {
            tenant: tenant.to_owned(),
            limit,
            used: u.tokens,
            reserved: u.reserved_tokens,
        });
    }
    if let Some(limit) = config.daily_usd
        && u.usd + u.reserved_usd >= limit
    {
        return Err(LimitError::OverUsd {
            tenant: tenant.to_owned(),
            limit,
            spent: u.usd,
            reserved: u.reserved_usd,
        });
    }
    Ok(())
}

/// Takes one request from the tenant's per-minute token bucket.
fn take_rate_token(tenant: &str, config: &TenantConfig, u: &mut Usage) -> Result<(), LimitError> {
    let Some(rpm) = config.rpm else {
        return Ok(());
    };
    let capacity = f64::from(rpm.max(1));
    let now = Instant::now();
    if u.bucket.is_nan() {
        u.bucket = capacity;
    }
    u.bucket =
        (u.bucket + now.duration_since(u.refilled).as_secs_f64() * capacity / 60.0).min(capacity);
    u.refilled = now;
    if u.bucket < 1.0 {
        let wait = ((1.0 - u.bucket) * 60.0 / capacity).ceil() as u64;
        return Err(LimitError::RateLimited {
            tenant: tenant.to_owned(),
            rpm,
            wait_s: wait,
        });
    }
    u.bucket -= 1.0;
    Ok(())
}

/// A request's hold on its tenant's budgets ([`Ledger::reserve`], or the shared budgets):
/// settled with what the request really used, or released when dropped unsettled (no
/// answer came).
#[derive(Debug)]
pub struct Reservation {
    holder: Holder,
    tenant: String,
    tokens: u64,
    usd: f64,
    open: bool,
}

#[derive(Debug)]
enum Holder {
    /// This process's ledger; with `report`, the spend is also added to the shared totals
    /// (a reservation made locally while Redis was away).
    Local {
        ledger: Arc<Ledger>,
        report: Option<Arc<Shared>>,
    },
    /// The shared budgets, reserved on UTC day `day`.
    Shared { shared: Arc<Shared>, day: String },
}

impl Reservation {
    /// A hold on the shared budgets.
    pub fn shared(shared: Arc<Shared>, hold: Hold) -> Self {
        Self {
            holder: Holder::Shared {
                shared,
                day: hold.day,
            },
            tenant: hold.tenant,
            tokens: hold.tokens,
            usd: hold.usd,
            open: true,
        }
    }

    /// This local hold's spend also goes to the shared totals.
    pub fn reporting_to(mut self, shared: Arc<Shared>) -> Self {
        if let Holder::Local { report, .. } = &mut self.holder {
            *report = Some(shared);
        }
        self
    }

    fn hold(&self, day: &str) -> Hold {
        Hold {
            tenant: self.tenant.clone(),
            day: day.to_owned(),
            tokens: self.tokens,
            usd: self.usd,
        }
    }

    /// Replaces the reservation with the request's real spend; a write to the shared
    /// state is returned for the caller to await.
    pub fn settle(mut self, tokens: u64, usd: f64) -> Option<tokio::task::JoinHandle<()>> {
        self.open = false;
        let (reserved, reserved_usd) = (self.tokens, self.usd);
        match &self.holder {
            Holder::Local { ledger, report } => {
                ledger.with(&self.tenant, |u| {
                    Ledger::unreserve(u, reserved, reserved_usd);
                    spend(u, tokens, usd);
                });
                report
                    .as_ref()
                    .and_then(|shared| shared.report_spend(&self.tenant, tokens, usd))
            }
            Holder::Shared { shared, day } => shared.settle(self.hold(day), tokens, usd),
        }
    }
}

impl Drop for Reservation {
    fn drop(&mut self) {
        if !self.open {
            return;
        }
        let (tokens, usd) = (self.tokens, self.usd);
        match &self.holder {
            Holder::Local { ledger, .. } => {
                ledger.with(&self.tenant, |u| Ledger::unreserve(u, tokens, usd))
            }
            Holder::Shared { shared, day } => {
                // Released in the background: nobody waits on a request that failed.
                drop(shared.settle(self.hold(day), 0, 0.0));
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::error::ApiError;
    use crate::limits::tenants::tests::tenant;

    #[test]
    fn budgets_and_rate_limits() {
        let ledger = Ledger::default();
        let t = tenant(Some(2), Some(100));
        ledger.admit("a", &t).unwrap();
        ledger.admit("a", &t).unwrap();
        let e = ApiError::from(ledger.admit("a", &t).unwrap_err());
        assert_eq!(e.kind.code(), Some("rate_limit_exceeded"));
        assert!(e.retry_after.is_some());

        let t = tenant(None, Some(100));
        ledger.charge("b", 100, 0.0);
        assert_eq!(
            ApiError::from(ledger.admit("b", &t).unwrap_err())
                .kind
                .code(),
            Some("insufficient_quota")
        );
        ledger.charge("c", 1, 0.02);
        assert!(
            ApiError::from(ledger.admit("c", &t).unwrap_err())
                .message
                .contains("$0.01")
        );
    }

    #[test]
    fn reservations_hold_the_budget_under_concurrency_and_release_on_failure() {
        let ledger = Arc::new(Ledger::default());
        let t = tenant(None, Some(100));
        // Requests in flight reserve: the budget is full before any of them has finished.
        let first = ledger.reserve("a", &t, 60, 0.0).unwrap();
        let second = ledger.reserve("a", &t, 60, 0.0).unwrap();
        let e = ApiError::from(ledger.reserve("a", &t, 60, 0.0).unwrap_err());
        assert!(e.message.contains("120 reserved"), "{}", e.message);
        assert!(
            ledger.admit("a", &t).is_err(),
            "admission sees the reservations too"
        );
        // A failed request gives its reservation back; a finished one is charged its use.
        drop(second);
        first.settle(15, 0.0);
        let third = ledger.reserve("a", &t, 60, 0.0).unwrap();
        third.settle(90, 0.0);
        let e = ApiError::from(ledger.admit("a", &t).unwrap_err());
        assert!(e.message.contains("105 used"), "{}", e.message);
        // Under real threads, the admitted total stays within one request of the limit.
        let ledger = Arc::new(Ledger::default());
        let admitted = std::sync::atomic::AtomicU64::new(0);
        std::thread::scope(|s| {
            for _ in 0..40 {
                s.spawn(|| {
                    if let Ok(r) = ledger.reserve("b", &t, 15, 0.0) {
                        admitted.fetch_add(15, std::sync::atomic::Ordering::SeqCst);
                        std::thread::sleep(std::time::Duration::from_millis(5));
                        r.settle(15, 0.0);
                    }
                });
            }
        });
        let total = admitted.load(std::sync::atomic::Ordering::SeqCst);
        assert!(
            total < 100 + 15,
            "admitted {total} tokens against a budget of 100"
        );
    }
}
