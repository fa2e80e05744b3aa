//! The runtime: everything derived from one config file — providers with their keys,
//! models with their prices and scorer stand-ins, routes with their calibrated policies,
//! the settings request code reads — resolved and checked once, swapped whole on reload.

use std::collections::{BTreeMap, HashSet};
use std::sync::Arc;
use std::time::Duration;

use switchyard_core::pricing::{Price, PriceTable};
use switchyard_providers::{
    ApiKey, BreakerConfig, Provider, ProviderKind, ProviderSpec, RetryPolicy, Timeouts,
};
use switchyard_router::{CandidateSpec, Router};

use super::stack::resolve_gguf;
use crate::config::{Config, ConfigError, RoutePolicy, TenantConfig};

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
    /// The provider's name (as configured).
    pub provider: String,
    /// The provider itself, resolved once when the runtime is built.
    pub client: Provider,
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
    /// The route's models, resolved to their handles when the runtime is built.
    pub models: Vec<Arc<ModelRuntime>>,
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

/// What the HTTP edge reads of the config: body limits, which endpoints need a key, and
/// the env-var names of the admin keys (never the keys themselves).
#[derive(Debug, Clone)]
pub struct EdgeSettings {
    pub max_body_bytes: usize,
    pub body_timeout: Duration,
    pub models_need_key: bool,
    pub metrics_need_key: bool,
    /// `[router] admin_key_env`: the variable holding the key of `POST /admin/router`.
    pub router_admin_key_env: Option<String>,
    /// `[cache] admin_key_env`: the variable holding the key of cache invalidation.
    pub cache_admin_key_env: Option<String>,
}

impl EdgeSettings {
    fn of(config: &Config) -> Self {
        Self {
            max_body_bytes: config.server.max_body_bytes,
            body_timeout: Duration::from_millis(config.server.body_timeout_ms),
            models_need_key: config.server.models_need_key,
            metrics_need_key: config.server.metrics_need_key,
            router_admin_key_env: config.router.admin_key_env.clone(),
            cache_admin_key_env: config.cache.admin_key_env.clone(),
        }
    }
}

/// What the traffic log captures beyond the decision (`[log]`).
#[derive(Debug, Clone, Copy)]
pub struct Capture {
    pub prompts: bool,
    pub answers: bool,
}

/// Everything derived from one config file; swapped whole on reload. Request code reads
/// only these resolved values, never the config file's own types (tenants aside, which
/// are already plain settings).
#[derive(Debug)]
pub struct Runtime {
    pub edge: EdgeSettings,
    pub capture: Capture,
    /// Tenants by name: key hashes, allow-lists, limits.
    pub tenants: BTreeMap<String, TenantConfig>,
    /// Models by id: the one place a model name is looked up; everything after holds
    /// the handle.
    pub models: BTreeMap<String, Arc<ModelRuntime>>,
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
        config: &Config,
        router: Option<Arc<Router>>,
        env: &dyn Fn(&str) -> Option<String>,
    ) -> Result<Self, ConfigError> {
        let providers = build_providers(config, env)?;
        let routes_cfg = config.effective_routes();
        let learned: HashSet<&str> = routes_cfg
            .values()
            .filter(|r| matches!(r.policy, RoutePolicy::Learned(_)))
            .flat_map(|r| r.models.iter().map(String::as_str))
            .collect();
        let builtin = PriceTable::builtin();
        let mut models = BTreeMap::new();
        for (id, m) in &config.models {
            let client = providers.get(&m.provider).cloned().ok_or_else(|| {
                ConfigError::new(
                    format!("models.{id}.provider"),
                    format!("no provider {:?} is configured", m.provider),
                )
            })?;
            let in_learned = learned.contains(id.as_str());
            let model = model_runtime(id, m, client, &builtin, router.as_deref(), in_learned)?;
            models.insert(id.clone(), Arc::new(model));
        }
        let mut routes = BTreeMap::new();
        for (name, r) in routes_cfg {
            let route = route_runtime(name.clone(), r, &models, router.as_deref(), config)?;
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
            edge: EdgeSettings::of(config),
            capture: Capture {
                prompts: config.log.log_prompts,
                answers: config.log.log_answers,
            },
            tenants: config.tenants.clone(),
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
    client: Provider,
    builtin: &PriceTable,
    router: Option<&Router>,
    in_learned_route: bool,
) -> Result<ModelRuntime, ConfigError> {
    let upstream = m.upstream_model.clone().unwrap_or_else(|| id.to_owned());
    let price = model_price(id, &upstream, m, builtin)?;
    Ok(ModelRuntime {
        id: id.to_owned(),
        provider: m.provider.clone(),
        client,
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
    models: &BTreeMap<String, Arc<ModelRuntime>>,
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
    let models = r
        .models
        .iter()
        .enumerate()
        .map(|(i, m)| {
            models.get(m).cloned().ok_or_else(|| {
                ConfigError::new(
                    format!("routes.{name}.models[{i}]"),
                    format!("no model {m:?}"),
                )
            })
        })
        .collect::<Result<Vec<_>, _>>()?;
    Ok(RouteRuntime {
        name,
        models,
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

impl Runtime {
    /// What `usage` cost on `model` at its configured price (`None` for an unknown model or
    /// no usage).
    pub fn cost_of(&self, model: &str, usage: Option<switchyard_providers::Usage>) -> Option<f64> {
        let (m, u) = (self.models.get(model)?, usage?);
        Some(
            m.price
                .cost(u.prompt_tokens as f64, u.completion_tokens as f64),
        )
    }
}
