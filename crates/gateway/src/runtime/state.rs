//! What every request shares: the runtime in service (swapped whole by a reload or a
//! promotion), and what outlives reloads — the encoder, breakers, limits, metrics, the
//! traffic log, the cache.

use std::collections::{BTreeMap, HashMap};
use std::path::PathBuf;
use std::sync::{Arc, Mutex, RwLock};

use switchyard_providers::{Breaker, BreakerConfig};

use super::cache::{CachePlan, CacheState};
use super::resolved::Runtime;
use super::stack::RouterStack;
use super::telemetry::Telemetry;
use crate::config::Config;
use crate::limits::Limits;
use crate::metrics::Metrics;
use crate::traffic::TrafficLog;

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

/// Shared by every request.
#[derive(Debug)]
pub struct AppState {
    /// The encoder's thread (`[router] enabled`); it outlives reloads.
    pub router: Option<RouterStack>,
    /// The runtime in service; swapped whole with [`Self::config`].
    pub runtime: RwLock<Arc<Runtime>>,
    /// The config the runtime was built from: read by reloads and promotions, never by
    /// request code.
    pub config: RwLock<Arc<Config>>,
    pub breakers: Mutex<BTreeMap<String, Arc<Breaker>>>,
    /// Tenants' budgets and rate limits, recent request ids, shared state.
    pub limits: Limits,
    /// What explored requests spent today, per route.
    pub explore_spend: ExploreSpend,
    pub explore_draws: ExploreDraws,
    pub metrics: Arc<Metrics>,
    /// The OpenTelemetry exporter (`[telemetry]`).
    pub telemetry: Option<Telemetry>,
    pub log: Option<TrafficLog>,
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

    /// The config the runtime in service was built from.
    pub fn config(&self) -> Arc<Config> {
        self.config
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .clone()
    }

    pub fn swap_runtime(&self, runtime: Runtime, config: Arc<Config>) {
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
            .config
            .write()
            .unwrap_or_else(std::sync::PoisonError::into_inner) = config;
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
}
