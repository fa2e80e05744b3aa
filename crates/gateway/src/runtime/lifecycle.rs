//! The gateway's life: reading the config, building the state, reloading it on SIGHUP,
//! promoting a router (here or, through the shared state, on another replica).

use std::path::PathBuf;
use std::sync::{Arc, Mutex, RwLock};
use std::time::Instant;

use switchyard_core::Embedder;

use super::cache::{CachePlan, CacheState, Prepared};
use super::error::StartupError;
use super::resolved::Runtime;
use super::stack::RouterStack;
use super::state::{AppState, ExploreDraws};
use crate::config::{Config, ConfigError};
use crate::limits::{Limits, RecentIds, Shared};
use crate::metrics::Metrics;
use crate::traffic::{Rotation, TrafficLog};

/// Where the config comes from.
#[derive(Debug, Clone)]
pub enum ConfigSource {
    File(PathBuf),
    /// No file: providers from API-key variables ([`Config::from_env`]).
    Environment,
}

/// A non-empty environment variable (API keys, admin keys, `SWITCHYARD_REDIS_URL`).
pub fn env(name: &str) -> Option<String> {
    std::env::var(name).ok().filter(|v| !v.is_empty())
}

/// Reads and validates the configuration (without loading models).
pub fn load_config(source: &ConfigSource) -> Result<Config, ConfigError> {
    match source {
        ConfigSource::File(path) => Config::load(path),
        ConfigSource::Environment => {
            let local = std::path::Path::new(crate::config::DEFAULT_LOCAL_GGUF);
            let local = local.is_file().then(|| local.to_path_buf());
            if local.is_none() {
                tracing::info!(
                    "no local model at {} (bash models/fetch.sh local-llm adds the offline tier)",
                    crate::config::DEFAULT_LOCAL_GGUF
                );
            }
            let config = Config::from_env(env, local);
            config.validate()?;
            Ok(config)
        }
    }
}

/// What `serve` needs beyond a valid config file, checked without starting anything, so
/// `config check` passes exactly what `serve` accepts: a log directory that can be written
/// (or created) and cache settings that resolve (a Qdrant backend has a URL, its API key
/// variable is set, the verifier fits the encoder).
pub fn preflight(config: &Config, router: Option<&RouterStack>) -> Result<(), StartupError> {
    if config.log.enabled {
        writable_dir(&config.log.dir).map_err(|e| {
            StartupError::Log(format!(
                "log.dir: cannot write to {}: {e} (choose another log.dir, or set log.enabled = false)",
                config.log.dir.display()
            ))
        })?;
    }
    super::cache::prepare(&config.cache, router.map(|r| r.worker.info()), &env)
        .map_err(StartupError::Cache)?;
    Ok(())
}

/// Whether `dir` can be written, or created and then written, without creating it: a
/// file is made and removed in `dir` or in its nearest existing ancestor.
fn writable_dir(dir: &std::path::Path) -> std::io::Result<()> {
    let existing = dir
        .ancestors()
        .find(|p| p.exists())
        .unwrap_or_else(|| std::path::Path::new("."));
    if !existing.is_dir() {
        return Err(std::io::Error::other(format!(
            "{} is not a directory",
            existing.display()
        )));
    }
    let probe = existing.join(format!(".switchyard-write-check-{}", std::process::id()));
    std::fs::File::create(&probe)?;
    std::fs::remove_file(&probe)
}

/// The learned router, when `[router] enabled`: the stack that embeds and the scorer.
type LoadedRouter = (Option<RouterStack>, Option<Arc<switchyard_router::Router>>);

fn load_router(config: &Config) -> Result<LoadedRouter, StartupError> {
    if !config.router.enabled {
        return Ok((None, None));
    }
    let started = Instant::now();
    let (stack, learned) = RouterStack::load(&config.router)?;
    tracing::info!(
        elapsed_ms = started.elapsed().as_millis() as u64,
        router_version = learned.version(),
        "router loaded (encoder, heads, scorer)"
    );
    Ok((Some(stack), Some(Arc::new(learned))))
}

/// The traffic log, when `[log] enabled`.
fn open_log(config: &Config) -> Result<Option<TrafficLog>, StartupError> {
    if !config.log.enabled {
        return Ok(None);
    }
    let rotation = Rotation {
        max_bytes: config.log.max_bytes,
        max_age: std::time::Duration::from_secs(config.log.max_age_s),
    };
    TrafficLog::start(&config.log.dir, rotation)
        .map(Some)
        .map_err(|e| {
            StartupError::Log(format!(
                "log.dir: cannot use {}: {e}",
                config.log.dir.display()
            ))
        })
}

/// The semantic cache as configured. A cache that cannot open (unwritable or full
/// directory, a directory made for another encoder) must not keep the gateway down: it
/// serves uncached and says why in the log and in /ready.
fn open_cache(
    config: &Config,
    router: Option<&RouterStack>,
) -> Result<(CacheState, Option<CachePlan>), StartupError> {
    let prepared = super::cache::prepare(&config.cache, router.map(|r| r.worker.info()), &env)
        .map_err(StartupError::Cache)?;
    let plan = match prepared {
        Prepared::Off(why) => {
            tracing::info!(why = %why, "semantic cache off");
            return Ok((CacheState::Off(why), None));
        }
        Prepared::Plan(plan) => plan,
    };
    let state = plan.open().unwrap_or_else(|e| {
        tracing::error!(error = %e, "semantic cache unavailable; serving uncached");
        CacheState::Failed(e)
    });
    if let CacheState::Ready(c) = &state {
        tracing::info!(
            backend = c.backend().backend(),
            method = c.settings().method.name(),
            threshold = c.settings().threshold,
            "semantic cache ready"
        );
    }
    Ok((state, Some(*plan)))
}

/// Limits, request ids and promotions: this replica's, and Redis's when `[state]` names it.
fn open_limits(config: &Config, metrics: &Arc<Metrics>) -> Result<Limits, StartupError> {
    // Requests answered before a restart can still get feedback: their ids are in the log.
    let mut recent = RecentIds::default();
    if config.log.enabled {
        recent.load(&config.log.dir);
    }
    let shared =
        Shared::open(&config.state, &env, metrics.clone()).map_err(StartupError::SharedState)?;
    if let Some(s) = &shared {
        tracing::info!(at = %s.describe()["at"], "limits, request ids and promotions shared through Redis");
    }
    Ok(Limits::new(shared, recent))
}

/// Builds the whole state: router, runtime, traffic log.
pub fn build_state(source: &ConfigSource, config: Config) -> Result<Arc<AppState>, StartupError> {
    let (router, learned) = load_router(&config)?;
    let log = open_log(&config)?;
    let (cache, cache_plan) = open_cache(&config, router.as_ref())?;
    let metrics = Arc::new(Metrics::default());
    let limits = open_limits(&config, &metrics)?;
    let telemetry = super::telemetry::Telemetry::start(&config.telemetry, &env)
        .map_err(StartupError::Telemetry)?;
    if telemetry.is_some() {
        tracing::info!("exporting traces over OTLP/HTTP");
    }
    let explore_draws = ExploreDraws::new(config.router.explore_seed);
    let runtime = Runtime::build(&config, learned, &env)?;
    Ok(Arc::new(AppState {
        router,
        runtime: RwLock::new(Arc::new(runtime)),
        config: RwLock::new(Arc::new(config)),
        breakers: Mutex::default(),
        limits,
        explore_spend: Default::default(),
        explore_draws,
        metrics,
        telemetry,
        log,
        config_path: match source {
            ConfigSource::File(p) => Some(p.clone()),
            ConfigSource::Environment => None,
        },
        cache: Arc::new(RwLock::new(cache)),
        cache_plan,
    }))
}

/// Re-reads the config file and swaps the runtime, with the router its `[router]` names
/// read afresh (a scorer retrained in place is picked up); requests in flight finish on
/// the old one. Anything that fails to load or validate leaves the running one serving.
pub fn reload(state: &AppState) -> Result<(), StartupError> {
    let Some(path) = &state.config_path else {
        return Err(StartupError::NoConfigFile);
    };
    let config = Config::load(path)?;
    let (old, old_config) = (state.runtime(), state.config());
    if config.router.encoder != old_config.router.encoder
        || config.router.enabled != old_config.router.enabled
        || config.router.device != old_config.router.device
    {
        tracing::warn!("[router] encoder, device and enabled take effect only on restart");
    }
    let router = match &state.router {
        Some(stack) if old.router.is_some() => Some(Arc::new(
            stack.load_router(&config.router.heads, &config.router.scorer)?,
        )),
        _ => old.router.clone(),
    };
    let runtime = Runtime::build(&config, router, &env)?;
    log_router_change(&old, &runtime);
    state.swap_runtime(runtime, Arc::new(config));
    Ok(())
}

/// Serves with the router whose scorer is in `scorer_dir` (trained on the configured
/// heads) from now on, if it loads and knows, or has priors for, every model the learned
/// routes use; otherwise the running router stays. Returns the new router's version.
pub fn promote(state: &AppState, scorer_dir: &std::path::Path) -> Result<String, StartupError> {
    let Some(stack) = &state.router else {
        return Err(StartupError::NoRouter);
    };
    let (old, config) = (state.runtime(), state.config());
    let router = stack.load_router(&config.router.heads, scorer_dir)?;
    let version = router.version().to_owned();
    let runtime = Runtime::build(&config, Some(Arc::new(router)), &env)
        .map_err(|e| StartupError::Router(format!("{}: {e}", scorer_dir.display())))?;
    log_router_change(&old, &runtime);
    state.swap_runtime(runtime, config);
    Ok(version)
}

fn log_router_change(old: &Runtime, new: &Runtime) {
    let version = |r: &Runtime| r.router.as_ref().map(|r| r.version().to_owned());
    if version(old) != version(new) {
        tracing::info!(
            from = version(old).unwrap_or_default(),
            to = version(new).unwrap_or_default(),
            "router promoted"
        );
    }
}

/// The runtime `config` gives, for work outside the server (grading with a judge model,
/// `config check`): the learned router loaded when `[router] enabled`, every provider's
/// key and every price resolved.
pub fn offline_runtime(config: &Config) -> Result<Runtime, StartupError> {
    let (_, learned) = load_router(config)?;
    Ok(Runtime::build(config, learned, &env)?)
}

/// Everything `serve` would check at start-up, without serving: the router's artifacts,
/// the log directory and cache settings ([`preflight`]), prices, scorer stand-ins, keys.
pub fn check(config: &Config) -> Result<Runtime, StartupError> {
    let (stack, learned) = load_router(config)?;
    preflight(config, stack.as_ref())?;
    Ok(Runtime::build(config, learned, &env)?)
}
