//! What replicas share through Redis ([`switchyard_state`]): tenant budgets and rate
//! limits, request ids for feedback, the router to serve. This process's own ledger
//! and recent ids stay the fallback while Redis is unreachable (`[state] limits_when_down`),
//! and what could not be written then is written once it is back. This module only talks
//! to Redis; [`super::Limits`] decides when the local fallback applies.
//!
//! Redis being "down" is known without waiting on it: a failed call marks it down at once,
//! and until a background ping succeeds requests go straight to the fallback.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde_json::{Value, json};
use switchyard_state::{
    Hold, Limits, PublishedRouter, RouterArtifact, RouterHistoryEntry, SharedState, StateOptions,
    Verdict,
};
use tokio::task::JoinHandle;

use super::error::LimitError;
use crate::config::{StateConfig, TenantConfig, WhenDown};
use crate::metrics::Metrics;

/// Writes kept while Redis is away; beyond this many the oldest are dropped (and counted).
const BACKLOG_CAP: usize = 100_000;

/// Settlements and ids that could not reach Redis yet.
#[derive(Debug, Default)]
struct Backlog {
    ids: Vec<(String, String)>,
    /// `(hold, day charged, tokens spent, USD spent)`.
    settles: Vec<(Hold, String, u64, f64)>,
}

/// The shared state and what this replica knows about reaching it.
#[derive(Debug)]
pub struct Shared {
    store: SharedState,
    up: AtomicBool,
    limits_when_down: WhenDown,
    router_poll: Duration,
    router_max_bytes: usize,
    router_dir: std::path::PathBuf,
    backlog: Mutex<Backlog>,
    metrics: Arc<Metrics>,
}

fn today() -> String {
    chrono::Utc::now().date_naive().to_string()
}

fn limits(config: &TenantConfig) -> Limits {
    Limits {
        daily_tokens: config.daily_tokens,
        daily_usd: config.daily_usd,
        rpm: config.rpm,
    }
}

impl Shared {
    /// The shared state `config` (or `SWITCHYARD_REDIS_URL`) names, if any. Redis need not
    /// be up: the connection is made on first use and retried in the background.
    pub fn open(
        config: &StateConfig,
        env: &dyn Fn(&str) -> Option<String>,
        metrics: Arc<Metrics>,
    ) -> Result<Option<Arc<Self>>, String> {
        let Some(url) = config.url.clone().or_else(|| env("SWITCHYARD_REDIS_URL")) else {
            return Ok(None);
        };
        let store = SharedState::connect_lazy(StateOptions {
            url,
            prefix: config.key_prefix.clone(),
            timeout: Duration::from_millis(config.timeout_ms),
            ids_ttl: Duration::from_secs(config.ids_ttl_s),
        })
        .map_err(|e| format!("state.url: {e}"))?;
        metrics.shared_state_up(true);
        Ok(Some(Arc::new(Self {
            store,
            up: AtomicBool::new(true),
            limits_when_down: config.limits_when_down,
            router_poll: Duration::from_millis(config.router_poll_ms),
            router_max_bytes: config.router_max_bytes,
            router_dir: config.router_dir(),
            backlog: Mutex::default(),
            metrics,
        })))
    }

    pub fn is_up(&self) -> bool {
        self.up.load(Ordering::Relaxed)
    }

    fn backlog(&self) -> std::sync::MutexGuard<'_, Backlog> {
        self.backlog
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Marks Redis down after a failed `op` (the background task brings it back).
    fn failed(&self, op: &str, e: &switchyard_state::StateError) {
        self.metrics.shared_state_error(op);
        if self.up.swap(false, Ordering::Relaxed) {
            self.metrics.shared_state_up(false);
            tracing::warn!(op, error = %e, at = %self.store.describe(),
                limits_when_down = self.limits_when_down.as_str(),
                "shared state (Redis) unreachable");
        }
    }

    /// For `/ready`.
    pub fn describe(&self) -> Value {
        let backlog = self.backlog();
        json!({
            "backend": "redis",
            "at": self.store.describe(),
            "up": self.is_up(),
            "limits_when_down": self.limits_when_down.as_str(),
            "unsynced_ids": backlog.ids.len(),
            "unsynced_settlements": backlog.settles.len(),
        })
    }

    /// While Redis is away: `Ok(None)` lets this replica's own limits decide; with
    /// `limits_when_down = "reject"`, a refusal.
    fn when_down<T>(&self) -> Result<Option<T>, LimitError> {
        match self.limits_when_down {
            WhenDown::Local => Ok(None),
            WhenDown::Reject => Err(LimitError::SharedLimitsDown),
        }
    }

    /// Admits one request of `tenant` under its shared rate limit and budgets: `Ok(Some)`
    /// when admitted, `Ok(None)` when Redis is away and the local limits decide.
    pub async fn admit(
        &self,
        tenant: &str,
        config: &TenantConfig,
    ) -> Result<Option<()>, LimitError> {
        if self.is_up() {
            let day = today();
            match self
                .store
                .reserve(tenant, &day, limits(config), true, 0, 0.0)
                .await
            {
                Ok(v) => return refusal(tenant, config, v).map(Some),
                Err(e) => self.failed("admit", &e),
            }
        }
        self.when_down()
    }

    /// Reserves a request's estimate against `tenant`'s shared budgets: the hold, or
    /// `Ok(None)` when Redis is away and the local ledger decides.
    pub async fn reserve(
        &self,
        tenant: &str,
        config: &TenantConfig,
        tokens: u64,
        usd: f64,
    ) -> Result<Option<Hold>, LimitError> {
        if self.is_up() {
            let day = today();
            match self
                .store
                .reserve(tenant, &day, limits(config), false, tokens, usd)
                .await
            {
                Ok(v) => {
                    refusal(tenant, config, v)?;
                    return Ok(Some(Hold {
                        tenant: tenant.to_owned(),
                        day,
                        tokens,
                        usd,
                    }));
                }
                Err(e) => self.failed("reserve", &e),
            }
        }
        self.when_down()
    }

    /// Replaces `hold` with the spend, on a task the caller may await (kept for later if
    /// Redis is away).
    pub fn settle(self: &Arc<Self>, hold: Hold, tokens: u64, usd: f64) -> Option<JoinHandle<()>> {
        let day = today();
        let Ok(runtime) = tokio::runtime::Handle::try_current() else {
            self.keep_settle(hold, day, tokens, usd);
            return None;
        };
        if !self.is_up() {
            self.keep_settle(hold, day, tokens, usd);
            return None;
        }
        let shared = self.clone();
        Some(runtime.spawn(async move {
            if let Err(e) = shared.store.settle(&hold, &day, tokens, usd).await {
                shared.failed("settle", &e);
                shared.keep_settle(hold, day, tokens, usd);
            }
        }))
    }

    /// Adds spend that was accounted locally (while Redis was away) to the shared totals.
    pub fn report_spend(
        self: &Arc<Self>,
        tenant: &str,
        tokens: u64,
        usd: f64,
    ) -> Option<JoinHandle<()>> {
        let nothing_held = Hold {
            tenant: tenant.to_owned(),
            day: today(),
            tokens: 0,
            usd: 0.0,
        };
        self.settle(nothing_held, tokens, usd)
    }

    fn keep_settle(&self, hold: Hold, day: String, tokens: u64, usd: f64) {
        let mut backlog = self.backlog();
        if backlog.settles.len() >= BACKLOG_CAP {
            backlog.settles.remove(0);
            self.metrics.shared_state_error("backlog_full");
        }
        backlog.settles.push((hold, day, tokens, usd));
    }

    /// Makes request `id` known to every replica, on a task the caller may await.
    pub fn remember(self: &Arc<Self>, id: &str, tenant: &str) -> Option<JoinHandle<()>> {
        let pair = (id.to_owned(), tenant.to_owned());
        let runtime = tokio::runtime::Handle::try_current();
        let (Ok(runtime), true) = (runtime, self.is_up()) else {
            self.keep_id(pair);
            return None;
        };
        let shared = self.clone();
        Some(runtime.spawn(async move {
            if let Err(e) = shared.store.remember(&pair.0, &pair.1).await {
                shared.failed("remember", &e);
                shared.keep_id(pair);
            }
        }))
    }

    fn keep_id(&self, pair: (String, String)) {
        let mut backlog = self.backlog();
        if backlog.ids.len() >= BACKLOG_CAP {
            backlog.ids.remove(0);
            self.metrics.shared_state_error("backlog_full");
        }
        backlog.ids.push(pair);
    }

    /// The tenant of request `id` as the replicas know it; `Err` while Redis is away. An id
    /// not found is asked again once after 100 ms: the replica that served it writes it as
    /// the response leaves, so feedback sent at once may arrive first.
    pub async fn tenant_of(&self, id: &str) -> Result<Option<String>, LimitError> {
        let unreachable = || LimitError::SharedIdsDown;
        if !self.is_up() {
            return Err(unreachable());
        }
        for attempt in 0..2 {
            match self.store.tenant_of(id).await {
                Ok(Some(t)) => return Ok(Some(t)),
                Ok(None) if attempt == 0 => tokio::time::sleep(Duration::from_millis(100)).await,
                Ok(None) => return Ok(None),
                Err(e) => {
                    self.failed("tenant_of", &e);
                    return Err(unreachable());
                }
            }
        }
        Ok(None)
    }

    /// Tells the other replicas to serve the router in `scorer` (version `version`): its
    /// files go to Redis (when within `[state] router_max_bytes`) so replicas need no shared
    /// directory, then the pointer to it. `action` is "promote" or "rollback" in the
    /// history. Returns whether the pointer was published.
    pub async fn publish_router(
        &self,
        version: &str,
        scorer: &std::path::Path,
        artifact: Option<&RouterArtifact>,
        action: &str,
    ) -> bool {
        if let Some(a) = artifact
            && let Err(e) = self
                .store
                .store_router(a, self.router_max_bytes, action)
                .await
        {
            tracing::warn!(error = %e, version,
                "the router's files are not in the shared state; replicas follow it by its path");
        }
        let scorer = std::path::absolute(scorer).unwrap_or_else(|_| scorer.to_path_buf());
        let published = PublishedRouter {
            version: version.to_owned(),
            scorer,
        };
        match self.store.publish_router(&published).await {
            Ok(()) => true,
            Err(e) => {
                self.failed("publish_router", &e);
                false
            }
        }
    }

    /// Router `version`'s files as stored in Redis (`None` when not stored there, or
    /// unreadable: the caller falls back to the published path).
    pub async fn router_artifact(&self, version: &str) -> Option<RouterArtifact> {
        match self.store.router_artifact(version).await {
            Ok(a) => a,
            Err(e) => {
                tracing::warn!(error = %e, version, "cannot read the router from the shared state");
                None
            }
        }
    }

    /// Promotions and rollbacks, newest first.
    pub async fn router_history(&self) -> Result<Vec<RouterHistoryEntry>, LimitError> {
        self.store.router_history().await.map_err(|e| {
            self.failed("router_history", &e);
            LimitError::SharedRoutersDown
        })
    }

    /// Where this replica writes the routers it loads from Redis.
    pub fn router_dir(&self) -> &std::path::Path {
        &self.router_dir
    }

    fn has_backlog(&self) -> bool {
        let b = self.backlog();
        !b.ids.is_empty() || !b.settles.is_empty()
    }

    /// Writes what waited for Redis; whatever fails stays for the next try.
    async fn flush(&self) -> Result<(), switchyard_state::StateError> {
        let (ids, settles) = {
            let mut b = self.backlog();
            (std::mem::take(&mut b.ids), std::mem::take(&mut b.settles))
        };
        let synced = ids.len() + settles.len();
        if let Err(e) = self.store.remember_all(&ids).await {
            self.backlog().ids.extend(ids);
            self.backlog().settles.extend(settles);
            return Err(e);
        }
        for (i, (hold, day, tokens, usd)) in settles.iter().enumerate() {
            if let Err(e) = self.store.settle(hold, day, *tokens, *usd).await {
                self.backlog().settles.extend(settles[i..].iter().cloned());
                return Err(e);
            }
        }
        if synced > 0 {
            tracing::info!(synced, "wrote what waited for the shared state");
        }
        Ok(())
    }

    /// Runs beside the server: brings Redis back after a failure (ping with backoff, then
    /// the backlog).
    pub async fn run(self: Arc<Self>) {
        let mut backoff = Duration::from_millis(100);
        loop {
            if !self.is_up() {
                tokio::time::sleep(backoff).await;
                match self.store.ping().await {
                    Ok(()) => self.recovered().await,
                    Err(_) => {
                        backoff = (backoff * 2).min(Duration::from_secs(5));
                        continue;
                    }
                }
            }
            backoff = Duration::from_millis(100);
            tokio::time::sleep(Duration::from_millis(100)).await;
            // Written while Redis was coming back (requests saw it down until then).
            if self.has_backlog()
                && let Err(e) = self.flush().await
            {
                self.failed("flush", &e);
            }
        }
    }

    /// How often replicas look for a router promoted elsewhere (`[state] router_poll_ms`).
    pub fn router_poll(&self) -> Duration {
        self.router_poll
    }

    /// The router promoted on some replica, if any (`None` also while Redis is away).
    pub async fn published_router(&self) -> Option<PublishedRouter> {
        if !self.is_up() {
            return None;
        }
        match self.store.published_router().await {
            Ok(p) => p,
            Err(e) => {
                self.failed("router", &e);
                None
            }
        }
    }

    async fn recovered(&self) {
        if let Err(e) = self.flush().await {
            self.failed("flush", &e);
            return;
        }
        self.up.store(true, Ordering::Relaxed);
        self.metrics.shared_state_up(true);
        tracing::info!(at = %self.store.describe(), "shared state (Redis) reachable again");
    }
}

/// The shared verdict as a refusal of the limits layer.
fn refusal(tenant: &str, config: &TenantConfig, verdict: Verdict) -> Result<(), LimitError> {
    let tenant = tenant.to_owned();
    match verdict {
        Verdict::Admitted => Ok(()),
        Verdict::RateLimited { retry_after_s } => Err(LimitError::RateLimited {
            tenant,
            rpm: config.rpm.unwrap_or_default(),
            wait_s: retry_after_s,
        }),
        Verdict::OverTokens { spent, reserved } => Err(LimitError::OverTokens {
            tenant,
            limit: config.daily_tokens.unwrap_or_default(),
            used: spent,
            reserved,
        }),
        Verdict::OverUsd { spent, reserved } => Err(LimitError::OverUsd {
            tenant,
            limit: config.daily_usd.unwrap_or_default(),
            spent,
            reserved,
        }),
    }
}
