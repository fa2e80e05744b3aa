//! `[state]`: state shared by replicas on Redis (limits, request ids, promotions).

use std::path::PathBuf;

use serde::Deserialize;

/// State that replicas share: tenant budgets and rate limits, request ids for feedback,
/// the router to serve. Without a URL (here or in `SWITCHYARD_REDIS_URL`) each process
/// keeps its own, as a single gateway needs.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StateConfig {
    /// `redis://HOST:PORT[/DB]`. A URL with a password belongs in `SWITCHYARD_REDIS_URL`,
    /// not in this file; it is never logged or shown.
    pub url: Option<String>,
    /// Every key starts with `PREFIX:`, so deployments can share one Redis.
    #[serde(default = "StateConfig::default_prefix")]
    pub key_prefix: String,
    /// The longest one call may wait for Redis before it counts as unreachable.
    #[serde(default = "StateConfig::default_timeout")]
    pub timeout_ms: u64,
    /// What budgets and rate limits do while Redis is unreachable: `local` (each replica
    /// enforces every tenant's limits on its own, so up to N replicas × each limit can be
    /// admitted during the outage; what was spent is added to the shared totals once Redis
    /// is back) or `reject` (requests of tenants with limits get 503 until it is back).
    #[serde(default)]
    pub limits_when_down: WhenDown,
    /// How long request ids are kept for feedback.
    #[serde(default = "StateConfig::default_ids_ttl")]
    pub ids_ttl_s: u64,
    /// How often each replica checks for a router promoted on another one.
    #[serde(default = "StateConfig::default_router_poll")]
    pub router_poll_ms: u64,
    /// The largest router (all of a scorer directory's files) stored in Redis for the
    /// other replicas; a larger one is still served here, and replicas that can read its
    /// directory follow it by path.
    #[serde(default = "StateConfig::default_router_max_bytes")]
    pub router_max_bytes: usize,
    /// Where a replica writes the routers it loads from Redis (one directory per version);
    /// by default a `switchyard-routers/PREFIX` directory in the system's temporary directory.
    #[serde(default)]
    pub router_dir: Option<PathBuf>,
}

/// The behaviour of shared limits while Redis is unreachable.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum WhenDown {
    /// Fail open: this replica's own limits.
    #[default]
    Local,
    /// Fail closed: 503.
    Reject,
}

impl WhenDown {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Local => "local",
            Self::Reject => "reject",
        }
    }
}

impl StateConfig {
    fn default_prefix() -> String {
        "switchyard".into()
    }
    fn default_timeout() -> u64 {
        250
    }
    fn default_ids_ttl() -> u64 {
        7 * 86_400
    }
    fn default_router_poll() -> u64 {
        2_000
    }
    fn default_router_max_bytes() -> usize {
        32 << 20
    }

    /// Where routers loaded from Redis are written.
    pub fn router_dir(&self) -> PathBuf {
        self.router_dir.clone().unwrap_or_else(|| {
            std::env::temp_dir()
                .join("switchyard-routers")
                .join(&self.key_prefix)
        })
    }
}

impl Default for StateConfig {
    fn default() -> Self {
        Self {
            url: None,
            key_prefix: Self::default_prefix(),
            timeout_ms: Self::default_timeout(),
            limits_when_down: WhenDown::default(),
            ids_ttl_s: Self::default_ids_ttl(),
            router_poll_ms: Self::default_router_poll(),
            router_max_bytes: Self::default_router_max_bytes(),
            router_dir: None,
        }
    }
}
