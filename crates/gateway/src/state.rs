//! What the gateway holds: the learned router (loaded once), the runtime built from the
//! config (rebuilt on SIGHUP), and the state that outlives reloads (breakers, budgets,
//! metrics, the traffic log).

use std::collections::{BTreeMap, HashMap, HashSet, VecDeque};
use std::path::PathBuf;
use std::sync::{Arc, Mutex, RwLock};
use std::time::Duration;

use switchyard_core::ROUTING_TRUNCATION;
use switchyard_core::pricing::{Price, PriceTable};
use switchyard_embed::{EmbedWorker, ModelSource, SentenceEncoder, WorkerConfig};
use switchyard_providers::{
    ApiKey, Breaker, BreakerConfig, Provider, ProviderKind, ProviderSpec, RetryPolicy, Timeouts,
};
use switchyard_router::{CandidateSpec, Router};

use crate::cache::{CachePlan, CacheState};
use crate::config::{Config, ConfigError, RoutePolicy};
use crate::metrics::Metrics;
use crate::tenants::Ledger;
use crate::traffic::TrafficLog;

/// The encoder's thread: what `auto` routing and the semantic cache need. The learned
/// router itself lives in the [`Runtime`], so a request sees one router and the model
/// table built for it, and promoting a router is one swap.
#[derive(Debug)]
pub struct RouterStack {
    pub worker: EmbedWorker,
}

impl RouterStack {
    /// Loads the encoder and the router, checking they belong together.
    pub fn load(config: &crate::config::RouterConfig) -> Result<(Self, Router), String> {
        let device = config.device;
        let encoder = SentenceEncoder::load(&ModelSource::parse(&config.encoder), device)
            .map_err(|e| format!("router.encoder: {e}"))?
            .with_truncation(ROUTING_TRUNCATION);
        let router = Router::load(&config.heads, &config.scorer, encoder.info())
            .map_err(|e| format!("router: {e}"))?;
        let worker = EmbedWorker::spawn(encoder, WorkerConfig::default())
            .map_err(|e| format!("cannot start the encoder thread: {e}"))?;
        Ok((Self { worker }, router))
    }

    /// Loads the router of `heads` and `scorer` for this encoder (a reload or a promotion).
    pub fn load_router(
        &self,
        heads: &std::path::Path,
        scorer: &std::path::Path,
    ) -> Result<Router, String> {
        let info = switchyard_core::Embedder::info(&self.worker);
        Router::load(heads, scorer, info).map_err(|e| format!("router: {e}"))
    }
}

/// A GGUF path, or `hf:owner/name/file.gguf` resolved through the Hugging Face hub cache.
pub fn resolve_gguf(model: &std::path::Path) -> Result<PathBuf, String> {
    let text = model.to_string_lossy();
    let Some(id) = text.strip_prefix("hf:") else {
        return Ok(model.to_path_buf());
    };
    let mut parts = id.splitn(3, '/');
    let (Some(owner), Some(name), Some(file)) = (parts.next(), parts.next(), parts.next()) else {
        return Err(format!("{text:?}: a hub model is hf:owner/name/file.gguf"));
    };
    switchyard_embed::hub_file(&format!("{owner}/{name}"), file).map_err(|e| e.to_string())
}

/// The in-process GGUF model of provider `name`.
#[cfg(feature = "local")]
fn local_provider(name: &str, p: &crate::config::ProviderConfig) -> Result<Provider, ConfigError> {
    use switchyard_local::{LocalEngine, LocalSpec};
    let at = |e: String| ConfigError::new(format!("providers.{name}.model"), e);
    let gguf = resolve_gguf(p.model.as_deref().unwrap_or(std::path::Path::new(""))).map_err(at)?;
    let spec = LocalSpec {
        gguf,
        tokenizer: p.tokenizer.clone(),
        workers: p.workers.unwrap_or(1),
        queue: p.queue.unwrap_or(16),
    };
    let engine = LocalEngine::load(name, &spec).map_err(at)?;
    Ok(Provider::in_process(name, Arc::new(engine)))
}

/// Without the `local` feature there is no in-process model: say how to get one.
#[cfg(not(feature = "local"))]
fn local_provider(name: &str, _: &crate::config::ProviderConfig) -> Result<Provider, ConfigError> {
    Err(ConfigError::new(
        format!("providers.{name}.kind"),
        "this build has no local model (built without the `local` feature); rebuild with `--features local`, or use an HTTP provider",
    ))
}

/// A model as the gateway serves it.
#[derive(Debug, Clone)]
pub struct ModelRuntime {
    pub id: String,
    pub provider: String,
    pub upstream_model: String,
    pub price: Price,
    /// The scorer's model whose prediction stands in for this one.
    pub quality_like: Option<String>,
    pub quality_prior: Option<f64>,
    /// Expected output tokens when the scorer has none (the router's default when unset).
    pub output_tokens: Option<f64>,
    pub context_window: Option<u64>,
}

impl ModelRuntime {
    /// This model as the router's candidate.
    pub fn candidate(&self) -> CandidateSpec {
        CandidateSpec {
            model: self.id.clone(),
            scored_as: self.quality_like.clone(),
            price: Some(self.price),
            quality_prior: self.quality_prior,
            output_tokens: self.output_tokens,
            context_window: self.context_window,
        }
    }
}

#[derive(Debug, Clone)]
pub struct RouteRuntime {
    pub name: String,
    pub models: Vec<String>,
    pub policy: RoutePolicy,
    /// Whether this route's answers are cached, and its own semantic-hit threshold.
    pub cache: bool,
    pub cache_threshold: Option<f32>,
    /// Share of requests that explore, and the daily USD cap on what they spend.
    pub explore: f64,
    pub explore_daily_usd: Option<f64>,
    /// The shadow router (`routes.NAME.shadow`).
    pub shadow: Option<Arc<Router>>,
}

/// Everything derived from one config file; swapped whole on reload.
#[derive(Debug)]
pub struct Runtime {
    pub config: Config,
    pub providers: BTreeMap<String, Provider>,
    pub models: BTreeMap<String, ModelRuntime>,
    pub routes: BTreeMap<String, RouteRuntime>,
    pub retry: RetryPolicy,
    pub breaker: BreakerConfig,
    pub deadline: Duration,
    /// The learned router, when loaded.
    pub router: Option<Arc<Router>>,
}

impl Runtime {
    /// Builds providers, prices and routes, checking what needs the environment or the
    /// router: API-key variables, scorer stand-ins.
    pub fn build(
        config: Config,
        router: Option<Arc<Router>>,
        env: &dyn Fn(&str) -> Option<String>,
    ) -> Result<Self, ConfigError> {
        let providers = build_providers(&config, env)?;
        let routes_cfg = config.effective_routes();
        let learned: HashSet<&str> = routes_cfg
            .values()
            .filter(|r| matches!(r.policy, RoutePolicy::Learned(_)))
            .flat_map(|r| r.models.iter().map(String::as_str))
            .collect();
        let builtin = PriceTable::builtin();
        let mut models = BTreeMap::new();
        for (id, m) in &config.models {
            let model = model_runtime(
                id,
                m,
                &builtin,
                router.as_deref(),
                learned.contains(id.as_str()),
            )?;
            models.insert(id.clone(), model);
        }
        let mut routes = BTreeMap::new();
        for (name, r) in routes_cfg {
            let route = route_runtime(name.clone(), r, router.as_deref(), &config)?;
            routes.insert(name, route);
        }
        let retry = RetryPolicy {
            max_retries: config.retry.max_retries,
            base: Duration::from_millis(config.retry.base_ms),
            max: Duration::from_millis(config.retry.max_ms),
        };
        let breaker = BreakerConfig {
            consecutive_failures: config.breaker.consecutive_failures,
            window: config.breaker.window,
            error_rate: config.breaker.error_rate,
            open_for: Duration::from_millis(config.breaker.open_ms),
        };
        let deadline = Duration::from_millis(config.server.deadline_ms);
        Ok(Self {
            config,
            providers,
            models,
            routes,
            retry,
            breaker,
            deadline,
            router,
        })
    }
}

/// Every configured provider, with its API key read from the environment.
fn build_providers(
    config: &Config,
    env: &dyn Fn(&str) -> Option<String>,
) -> Result<BTreeMap<String, Provider>, ConfigError> {
    let mut providers = BTreeMap::new();
    for (name, p) in &config.providers {
        if p.kind == ProviderKind::Local {
            providers.insert(name.clone(), local_provider(name, p)?);
            continue;
        }
        let api_key = match &p.api_key_env {
            None => None,
            Some(var) => Some(ApiKey::new(env(var).ok_or_else(|| {
                ConfigError::new(
                    format!("providers.{name}.api_key_env"),
                    format!("the environment variable {var} is not set; export it, or remove api_key_env for an upstream without keys"),
                )
            })?)),
        };
        let spec = ProviderSpec {
            name: name.clone(),
            kind: p.kind,
            base_url: p.resolved_base_url(),
            api_key,
            timeouts: Timeouts {
                connect: Duration::from_millis(p.connect_timeout_ms),
                first_byte: Duration::from_millis(p.first_byte_timeout_ms),
                idle: Duration::from_millis(p.idle_timeout_ms),
            },
        };
        let provider = Provider::new(spec)
            .map_err(|e| ConfigError::new(format!("providers.{name}"), e.message))?;
        providers.insert(name.clone(), provider);
    }
    Ok(providers)
}

/// A model's price: from the config, or the built-in table by its upstream name or id.
fn model_price(
    id: &str,
    upstream: &str,
    m: &crate::config::ModelConfig,
    builtin: &PriceTable,
) -> Result<Price, ConfigError> {
    match (m.input_per_mtok, m.output_per_mtok) {
        (Some(i), Some(o)) => Ok(Price {
            input_per_mtok: i,
            output_per_mtok: o,
        }),
        (None, None) => builtin
            .0
            .get(upstream)
            .or_else(|| builtin.0.get(id))
            .copied()
            .ok_or_else(|| {
                ConfigError::new(
                    format!("models.{id}"),
                    "no built-in price: set input_per_mtok and output_per_mtok (USD per 1M tokens; 0 for a free model)",
                )
            }),
        _ => Err(ConfigError::new(
            format!("models.{id}"),
            "set both input_per_mtok and output_per_mtok, or neither",
        )),
    }
}

/// Which scorer model stands in for model `id`: a scorer that knows the model itself
/// (trained on this gateway's traffic) scores it by its own name; else its benchmark
/// stand-in; else none (a fixed prior, or an error if a learned route needs it).
fn scored_as(
    id: &str,
    m: &crate::config::ModelConfig,
    router: Option<&Router>,
    in_learned_route: bool,
) -> Result<Option<String>, ConfigError> {
    let known = |name: &str| router.is_some_and(|r| r.scorer().check_known([name]).is_ok());
    let quality_like = match &m.quality_like {
        _ if known(id) => Some(id.to_owned()),
        Some(like) if router.is_some() && !known(like) && m.quality.is_none() => {
            return Err(ConfigError::new(
                format!("models.{id}.quality_like"),
                format!(
                    "the scorer knows neither {id:?} nor {like:?}; set quality_like to a model it knows, or quality (a fixed prior in [0, 1]); the scorer's manifest.json lists the models it knows"
                ),
            ));
        }
        Some(like) if router.is_some() && !known(like) => None,
        Some(like) => Some(like.clone()),
        None => None,
    };
    if in_learned_route && router.is_some() && quality_like.is_none() && m.quality.is_none() {
        return Err(ConfigError::new(
            format!("models.{id}"),
            "a learned route includes this model but the scorer does not know it: set quality_like (a model the scorer knows) or quality (a fixed prior in [0, 1])",
        ));
    }
    Ok(quality_like)
}

fn model_runtime(
    id: &str,
    m: &crate::config::ModelConfig,
    builtin: &PriceTable,
    router: Option<&Router>,
    in_learned_route: bool,
) -> Result<ModelRuntime, ConfigError> {
    let upstream = m.upstream_model.clone().unwrap_or_else(|| id.to_owned());
    let price = model_price(id, &upstream, m, builtin)?;
    Ok(ModelRuntime {
        id: id.to_owned(),
        provider: m.provider.clone(),
        quality_like: scored_as(id, m, router, in_learned_route)?,
        upstream_model: upstream,
        price,
        quality_prior: m.quality,
        output_tokens: m.output_tokens,
        context_window: m.context_window,
    })
}

/// Route `name` as served: its policy (a target calibrated on the router), its shadow.
fn route_runtime(
    name: String,
    r: crate::config::RouteConfig,
    router: Option<&Router>,
    config: &Config,
) -> Result<RouteRuntime, ConfigError> {
    let policy = match (r.target, router) {
        (None, _) => r.policy,
        (Some(target), Some(router)) => RoutePolicy::Learned(
            router
                .calibration()
                .policy(target)
                .map_err(|e| ConfigError::new(format!("routes.{name}.target"), e))?,
        ),
        (Some(_), None) => {
            return Err(ConfigError::new(
                format!("routes.{name}.target"),
                "a target needs the learned router ([router] enabled)",
            ));
        }
    };
    let shadow = shadow_router(&name, r.shadow.as_deref(), router, config)?;
    if matches!(policy, RoutePolicy::Learned(_)) && router.is_none() && !r.models.is_empty() {
        return Err(ConfigError::new(
            format!("routes.{name}.policy"),
            format!(
                "{policy} needs the learned router, which is not loaded ([router] enabled = false, or it failed to load); use policy = \"order\""
            ),
        ));
    }
    Ok(RouteRuntime {
        name,
        models: r.models,
        policy,
        cache: r.cache,
        cache_threshold: r.cache_threshold,
        explore: r.explore,
        explore_daily_usd: r.explore_daily_usd,
        shadow,
    })
}

/// Loads route `name`'s shadow scorer into a router beside the serving one.
fn shadow_router(
    name: &str,
    dir: Option<&std::path::Path>,
    serving: Option<&Router>,
    config: &Config,
) -> Result<Option<Arc<Router>>, ConfigError> {
    let Some(dir) = dir else { return Ok(None) };
    let key = format!("routes.{name}.shadow");
    let serving = serving.ok_or_else(|| {
        ConfigError::new(
            &key,
            "a shadow router needs the learned router ([router] enabled)",
        )
    })?;
    let scorer = switchyard_scorer::Scorer::load(dir, &serving.scorer().manifest.encoder)
        .map_err(|e| ConfigError::new(&key, e.to_string()))?;
    let shadow = serving
        .with_scorer(scorer, &config.router.heads)
        .map_err(|e| ConfigError::new(&key, e.to_string()))?;
    Ok(Some(Arc::new(shadow)))
}

/// The recent request ids and the tenant each belongs to, so feedback is accepted only from
/// the tenant that made the request (anyone else, like an unknown id, gets a 404). Kept as
/// the ids' random 128 bits in tables allocated once at full size: a set of strings that
/// grew as traffic came in rehashed all of it, under the lock, on some unlucky request's
/// path. Tenant names are interned: one allocation per tenant, not per id. Filled from the
/// traffic log at start ([`Self::load`]), so feedback still works after a restart.
#[derive(Debug)]
pub struct RecentIds {
    order: VecDeque<u128>,
    set: HashMap<u128, Arc<str>>,
    tenants: HashMap<String, Arc<str>>,
}

impl Default for RecentIds {
    fn default() -> Self {
        Self {
            order: VecDeque::with_capacity(Self::CAPACITY),
            set: HashMap::with_capacity(Self::CAPACITY),
            tenants: HashMap::new(),
        }
    }
}

impl RecentIds {
    const CAPACITY: usize = 200_000;
    const PREFIX: &str = "chatcmpl-sy-";

    /// A new request id: `chatcmpl-sy-` and 32 hex digits (a v4 UUID's).
    pub fn new_id() -> String {
        format!("{}{}", Self::PREFIX, uuid::Uuid::new_v4().simple())
    }

    fn key(id: &str) -> Option<u128> {
        let hex = id.strip_prefix(Self::PREFIX)?;
        // Exactly as `new_id` writes them: `from_str_radix` alone would also take a sign or
        // upper case, and so know ids no response ever carried.
        let lower_hex = |b: u8| b.is_ascii_digit() || (b'a'..=b'f').contains(&b);
        if hex.len() != 32 || !hex.bytes().all(lower_hex) {
            return None;
        }
        u128::from_str_radix(hex, 16).ok()
    }

    pub fn insert(&mut self, id: &str, tenant: &str) {
        let Some(key) = Self::key(id) else {
            return;
        };
        let tenant = match self.tenants.get(tenant) {
            Some(t) => t.clone(),
            None => {
                let t: Arc<str> = tenant.into();
                self.tenants.insert(tenant.to_owned(), t.clone());
                t
            }
        };
        if self.set.contains_key(&key) {
            return;
        }
        if self.order.len() >= Self::CAPACITY
            && let Some(old) = self.order.pop_front()
        {
            self.set.remove(&old);
        }
        self.set.insert(key, tenant);
        self.order.push_back(key);
    }

    /// The tenant that made request `id`, if it is a recent one.
    pub fn tenant_of(&self, id: &str) -> Option<&str> {
        Self::key(id)
            .and_then(|k| self.set.get(&k))
            .map(AsRef::as_ref)
    }

    /// The ids and tenants of the newest records in the traffic logs under `dir` (the
    /// current file, then rotated ones newest first, until capacity; old rotated files are
    /// not read). Unreadable files and lines are skipped: this only decides which feedback
    /// is accepted.
    pub fn load(&mut self, dir: &std::path::Path) {
        let files = crate::traffic::logs_in(dir);
        let mut newest_first: Vec<Vec<(String, String)>> = Vec::new();
        let mut total = 0;
        for path in files.iter().rev() {
            let ids = ids_in(path);
            total += ids.len();
            newest_first.push(ids);
            if total >= Self::CAPACITY {
                break;
            }
        }
        for (id, tenant) in newest_first.iter().rev().flatten() {
            self.insert(id, tenant);
        }
    }
}

/// `(request_id, tenant)` of each record in one traffic log.
fn ids_in(path: &std::path::Path) -> Vec<(String, String)> {
    #[derive(serde::Deserialize)]
    struct Line {
        request_id: String,
        tenant: String,
    }
    let Ok(file) = std::fs::File::open(path) else {
        return Vec::new();
    };
    std::io::BufRead::lines(std::io::BufReader::new(file))
        .map_while(Result::ok)
        .filter_map(|l| serde_json::from_str::<Line>(&l).ok())
        .map(|l| (l.request_id, l.tenant))
        .collect()
}

/// USD that explored requests spent per route on the current UTC day (this process).
#[derive(Debug, Default)]
pub struct ExploreSpend(Mutex<HashMap<String, (chrono::NaiveDate, f64)>>);

impl ExploreSpend {
    pub fn spent(&self, route: &str) -> f64 {
        let today = chrono::Utc::now().date_naive();
        self.0
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .get(route)
            .filter(|(day, _)| *day == today)
            .map_or(0.0, |(_, usd)| *usd)
    }

    pub fn add(&self, route: &str, usd: f64) {
        let today = chrono::Utc::now().date_naive();
        let mut map = self
            .0
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let entry = map.entry(route.to_owned()).or_insert((today, 0.0));
        if entry.0 != today {
            *entry = (today, 0.0);
        }
        entry.1 += usd.max(0.0);
    }
}

/// Where exploration's two uniform draws per request come from: a seeded sequence
/// (`[router] explore_seed`) or the thread's random generator.
#[derive(Debug, Default)]
pub struct ExploreDraws(Option<Mutex<switchyard_core::rng::SplitMix>>);

impl ExploreDraws {
    pub fn new(seed: Option<u64>) -> Self {
        Self(seed.map(|s| Mutex::new(switchyard_core::rng::SplitMix::new(s))))
    }

    /// (whether and which perturbed decision, the perturbations' seed), both in [0, 1).
    pub fn next(&self) -> (f64, f64) {
        match &self.0 {
            Some(rng) => {
                let mut rng = rng
                    .lock()
                    .unwrap_or_else(std::sync::PoisonError::into_inner);
                (1.0 - rng.unit(), 1.0 - rng.unit())
            }
            None => (rand::random(), rand::random()),
        }
    }
}

/// Whether a tenant has any limit to share (one without costs no round trip to Redis).
fn has_limits(config: &crate::config::TenantConfig) -> bool {
    config.daily_tokens.is_some() || config.daily_usd.is_some() || config.rpm.is_some()
}

/// Shared by every request.
#[derive(Debug)]
pub struct AppState {
    pub router: Option<RouterStack>,
    pub runtime: RwLock<Arc<Runtime>>,
    pub breakers: Mutex<BTreeMap<String, Arc<Breaker>>>,
    pub ledger: Arc<Ledger>,
    /// What explored requests spent today, per route.
    pub explore_spend: ExploreSpend,
    pub explore_draws: ExploreDraws,
    pub metrics: Arc<Metrics>,
    /// Limits, request ids and promotions shared with other replicas (`[state]`).
    pub shared: Option<Arc<crate::shared::Shared>>,
    /// The OpenTelemetry exporter (`[telemetry]`).
    pub telemetry: Option<crate::telemetry::Telemetry>,
    pub log: Option<TrafficLog>,
    pub recent: Mutex<RecentIds>,
    pub config_path: Option<PathBuf>,
    /// The semantic cache (opened at start; `[cache]` changes need a restart).
    pub cache: Arc<RwLock<CacheState>>,
    /// How to reach a remote cache, for the background connection `serve` starts.
    pub cache_plan: Option<CachePlan>,
}

impl AppState {
    pub fn runtime(&self) -> Arc<Runtime> {
        self.runtime
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .clone()
    }

    pub fn swap_runtime(&self, runtime: Runtime) {
        let mut breakers = self
            .breakers
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        // New breaker settings apply to fresh breakers; models that left are forgotten.
        if runtime.breaker != self.runtime().breaker {
            breakers.clear();
        }
        breakers.retain(|model, _| runtime.models.contains_key(model));
        drop(breakers);
        *self
            .runtime
            .write()
            .unwrap_or_else(std::sync::PoisonError::into_inner) = Arc::new(runtime);
    }

    pub fn breaker(&self, model: &str, config: BreakerConfig) -> Arc<Breaker> {
        self.breakers
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .entry(model.to_owned())
            .or_insert_with(|| Arc::new(Breaker::new(config)))
            .clone()
    }

    /// The cache, when it is ready.
    pub fn cache(&self) -> Option<Arc<switchyard_cache::Cache>> {
        match &*self
            .cache
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
        {
            CacheState::Ready(c) => Some(c.clone()),
            _ => None,
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
    /// shared state, one any replica served (503 while that cannot be checked).
    pub async fn knows(&self, id: &str, tenant: &str) -> Result<bool, crate::error::ApiError> {
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

    /// Admits one request of `tenant` under its rate limit and budgets (shared ones when
    /// configured).
    pub async fn admit(
        &self,
        tenant: &str,
        config: &crate::config::TenantConfig,
    ) -> Result<(), crate::error::ApiError> {
        match &self.shared {
            Some(shared) if has_limits(config) => shared.admit(&self.ledger, tenant, config).await,
            _ => self.ledger.admit(tenant, config),
        }
    }

    /// Reserves a request's estimated spend against `tenant`'s budgets.
    pub async fn reserve(
        &self,
        tenant: &str,
        config: &crate::config::TenantConfig,
        tokens: u64,
        usd: f64,
    ) -> Result<crate::tenants::Reservation, crate::error::ApiError> {
        match &self.shared {
            Some(shared) if has_limits(config) => {
                shared
                    .reserve(&self.ledger, tenant, config, tokens, usd)
                    .await
            }
            _ => self.ledger.reserve(tenant, config, tokens, usd),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn gguf_paths_and_hub_ids() {
        let p = std::path::Path::new("models/x.gguf");
        assert_eq!(resolve_gguf(p), Ok(p.to_path_buf()));
        let e = resolve_gguf(std::path::Path::new("hf:only-owner")).unwrap_err();
        assert!(e.contains("hf:owner/name/file.gguf"), "{e}");
    }

    #[test]
    fn recent_ids_know_their_own_and_forget_the_oldest() {
        let mut recent = RecentIds::default();
        let first = RecentIds::new_id();
        recent.insert(&first, "a");
        assert_eq!(recent.tenant_of(&first), Some("a"));
        assert_eq!(recent.tenant_of(&RecentIds::new_id()), None);
        let upper = format!(
            "chatcmpl-sy-{}",
            first["chatcmpl-sy-".len()..].to_uppercase()
        );
        let signed = format!("chatcmpl-sy-+{}", &first["chatcmpl-sy-".len() + 1..]);
        for bad in [
            upper.as_str(),
            signed.as_str(),
            "",
            "chatcmpl-sy-",
            "chatcmpl-sy-xyz",
            "other-id",
            &first[1..],
        ] {
            recent.insert(bad, "a");
            assert_eq!(recent.tenant_of(bad), None, "{bad:?}");
        }
        for _ in 0..RecentIds::CAPACITY {
            recent.insert(&RecentIds::new_id(), "b");
        }
        assert_eq!(
            recent.tenant_of(&first),
            None,
            "the oldest id is evicted at capacity"
        );
        assert_eq!(recent.tenants.len(), 2, "tenant names are interned");
        assert_eq!(recent.order.len(), RecentIds::CAPACITY);
        assert_eq!(recent.set.len(), RecentIds::CAPACITY);
    }

    #[test]
    fn recent_ids_come_back_from_the_log_after_a_restart() {
        let dir = tempfile::tempdir().unwrap();
        let rotated = dir.path().join("traffic-20261201T000000.000Z.jsonl");
        let (old, new) = (RecentIds::new_id(), RecentIds::new_id());
        std::fs::write(
            &rotated,
            format!("{{\"request_id\":\"{old}\",\"tenant\":\"a\"}}\nnot json\n"),
        )
        .unwrap();
        std::fs::write(
            dir.path().join(crate::traffic::TRAFFIC_FILE),
            format!("{{\"request_id\":\"{new}\",\"tenant\":\"b\",\"status\":200}}\n"),
        )
        .unwrap();
        let mut recent = RecentIds::default();
        recent.load(dir.path());
        assert_eq!(recent.tenant_of(&old), Some("a"));
        assert_eq!(recent.tenant_of(&new), Some("b"));
        let mut none = RecentIds::default();
        none.load(&dir.path().join("missing"));
        assert_eq!(none.tenant_of(&old), None);
    }
}
