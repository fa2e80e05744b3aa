//! The limits layer: who a request's tenant is, what it may use, and whether its rate
//! limit and budgets admit it — in this process ([`ledger`]) or shared by replicas on
//! Redis ([`shared`]) — plus the recent request ids that feedback is checked against.
//! Refusals are typed ([`LimitError`]); the HTTP edge turns them into responses.

pub mod error;
pub mod ids;
pub mod ledger;
pub mod shared;
pub mod tenants;

use std::sync::{Arc, Mutex};

pub use error::LimitError;
pub use ids::RecentIds;
pub use ledger::{Ledger, Reservation};
pub use shared::Shared;
pub use tenants::{DEFAULT_TENANT, authenticate, check_allowed, sha256_hex};

use crate::config::TenantConfig;

/// Whether a tenant has any limit to share (one without costs no round trip to Redis).
fn has_limits(config: &TenantConfig) -> bool {
    config.daily_tokens.is_some() || config.daily_usd.is_some() || config.rpm.is_some()
}

/// This replica's budgets and recent ids, and the shared ones when `[state]` names Redis.
#[derive(Debug, Default)]
pub struct Limits {
    pub ledger: Arc<Ledger>,
    /// Limits, request ids and promotions shared with other replicas (`[state]`).
    pub shared: Option<Arc<Shared>>,
    recent: Mutex<RecentIds>,
}

impl Limits {
    pub fn new(shared: Option<Arc<Shared>>, recent: RecentIds) -> Self {
        Self {
            ledger: Arc::default(),
            shared,
            recent: Mutex::new(recent),
        }
    }

    /// Admits one request of `tenant` under its rate limit and budgets (shared ones when
    /// configured; this replica's while Redis is away and `limits_when_down = "local"`).
    pub async fn admit(&self, tenant: &str, config: &TenantConfig) -> Result<(), LimitError> {
        if let Some(shared) = self.shared.as_ref().filter(|_| has_limits(config))
            && shared.admit(tenant, config).await?.is_some()
        {
            return Ok(());
        }
        self.ledger.admit(tenant, config)
    }

    /// Reserves a request's estimated spend against `tenant`'s budgets.
    pub async fn reserve(
        &self,
        tenant: &str,
        config: &TenantConfig,
        tokens: u64,
        usd: f64,
    ) -> Result<Reservation, LimitError> {
        let Some(shared) = self.shared.as_ref().filter(|_| has_limits(config)) else {
            return self.ledger.reserve(tenant, config, tokens, usd);
        };
        match shared.reserve(tenant, config, tokens, usd).await? {
            Some(hold) => Ok(Reservation::shared(shared.clone(), hold)),
            None => Ok(self
                .ledger
                .reserve(tenant, config, tokens, usd)?
                .reporting_to(shared.clone())),
        }
    }

    /// Remembers request `id` of `tenant` for feedback; with shared state, also returns the
    /// write that makes it known to the other replicas.
    pub fn remember(&self, id: &str, tenant: &str) -> Option<tokio::task::JoinHandle<()>> {
        self.recent
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .insert(id, tenant);
        self.shared.as_ref()?.remember(id, tenant)
    }

    /// Whether `id` is a recent request of `tenant`: one this replica served, or, with
    /// shared state, one any replica served (an error while that cannot be checked).
    pub async fn knows(&self, id: &str, tenant: &str) -> Result<bool, LimitError> {
        let local = self
            .recent
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .tenant_of(id)
            .map(str::to_owned);
        match (local, &self.shared) {
            (Some(t), _) => Ok(t == tenant),
            (None, None) => Ok(false),
            (None, Some(shared)) => Ok(shared.tenant_of(id).await?.as_deref() == Some(tenant)),
        }
    }
}
