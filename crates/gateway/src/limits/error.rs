//! Why a request is refused by its tenant's key, limits or budgets: typed here, turned
//! into OpenAI's error shape once, in [`crate::error`].

/// A refusal of the limits layer. The messages name the tenant and the limit, never a key.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum LimitError {
    #[error("missing API key: send `Authorization: Bearer YOUR_KEY`")]
    MissingKey,
    #[error("invalid API key (the key itself is not logged)")]
    InvalidKey,
    #[error("tenant {tenant:?} may not use {what} {name:?}")]
    NotAllowed {
        tenant: String,
        /// "route" or "model".
        what: &'static str,
        name: String,
    },
    #[error("tenant {tenant:?} is limited to {rpm} requests per minute; retry in {wait_s} s")]
    RateLimited {
        tenant: String,
        rpm: u32,
        wait_s: u64,
    },
    #[error(
        "tenant {tenant:?} has used its daily budget of {limit} tokens ({used} used, {reserved} reserved by requests in flight); it resets at 00:00 UTC"
    )]
    OverTokens {
        tenant: String,
        limit: u64,
        used: u64,
        reserved: u64,
    },
    #[error(
        "tenant {tenant:?} has spent its daily budget of ${limit} (${spent:.6} spent, ${reserved:.6} reserved by requests in flight); it resets at 00:00 UTC"
    )]
    OverUsd {
        tenant: String,
        limit: f64,
        spent: f64,
        reserved: f64,
    },
    #[error(
        "the shared budgets and rate limits (Redis) are unreachable and [state] limits_when_down = \"reject\"; retry shortly"
    )]
    SharedLimitsDown,
    #[error(
        "this replica did not serve that request and the shared request ids (Redis) are unreachable; retry shortly"
    )]
    SharedIdsDown,
    #[error(
        "the router history is kept in the shared state (Redis), which is unreachable; retry shortly"
    )]
    SharedRoutersDown,
    #[error(
        "router history and rollback need the shared state: set [state] url (or SWITCHYARD_REDIS_URL)"
    )]
    NoSharedState,
}

impl LimitError {
    /// Seconds a client should wait before retrying, where waiting helps.
    pub fn retry_after(&self) -> Option<u64> {
        match self {
            Self::RateLimited { wait_s, .. } => Some((*wait_s).max(1)),
            Self::SharedLimitsDown | Self::SharedIdsDown | Self::SharedRoutersDown => Some(1),
            _ => None,
        }
    }
}
