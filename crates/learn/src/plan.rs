//! What the learner retrains, resolved once from the gateway's config: the route's models,
//! prices and policy, the traffic log, the router's parts, the gate.

use std::path::PathBuf;

use switchyard_core::policy::Policy;
use switchyard_core::pricing::{Price, PriceTable};
use switchyard_gateway::config::{Config, LearnConfig, RoutePolicy};

use crate::gate::Gate;

/// Why the config cannot be learned from.
#[derive(Debug, thiserror::Error)]
#[error("{key}: {message}")]
pub struct PlanError {
    pub key: String,
    pub message: String,
}

/// The learner's target.
#[derive(Debug, Clone)]
pub struct LearnPlan {
    pub route: String,
    pub log_dir: PathBuf,
    pub encoder: String,
    pub device: switchyard_core::DeviceSpec,
    pub heads_dir: PathBuf,
    /// The scorer the gateway's config serves: the learner's first incumbent.
    pub scorer_dir: PathBuf,
    pub models: Vec<String>,
    pub prices: PriceTable,
    pub policy: Policy,
    pub gate: Gate,
    pub settings: LearnConfig,
}

impl LearnPlan {
    /// Resolves `[learn]` against the rest of `config`.
    pub fn from_config(config: &Config) -> Result<Self, PlanError> {
        let at = |key: &str, message: String| PlanError {
            key: key.to_owned(),
            message,
        };
        let settings = config.learn.clone();
        if !config.log.enabled {
            return Err(at(
                "log.enabled",
                "the learner reads the traffic log: turn it on".into(),
            ));
        }
        let routes = config.effective_routes();
        let route = routes.get(&settings.route).ok_or_else(|| {
            let known: Vec<&str> = routes.keys().map(String::as_str).collect();
            at(
                "learn.route",
                format!(
                    "no route {:?} (routes: {})",
                    settings.route,
                    known.join(", ")
                ),
            )
        })?;
        let RoutePolicy::Learned(policy) = route.policy else {
            return Err(at(
                &format!("routes.{}.policy", settings.route),
                format!(
                    "{} does not use the learned router: nothing to learn",
                    route.policy
                ),
            ));
        };
        let prices = prices(config, &route.models).map_err(|(key, m)| at(&key, m))?;
        Ok(Self {
            route: settings.route.clone(),
            log_dir: config.log.dir.clone(),
            encoder: config.router.encoder.clone(),
            device: config.router.device,
            heads_dir: config.router.heads.clone(),
            scorer_dir: config.router.scorer.clone(),
            models: route.models.clone(),
            prices,
            policy,
            gate: Gate {
                min_effective_sample_size: settings.min_effective_sample_size,
                tolerance: settings.tolerance,
            },
            settings,
        })
    }
}

/// Each model's price: from its config, else the built-in table by upstream name or id.
fn prices(config: &Config, models: &[String]) -> Result<PriceTable, (String, String)> {
    let builtin = PriceTable::builtin();
    let mut table = PriceTable::default();
    for id in models {
        let m = config.models.get(id).ok_or_else(|| {
            (
                format!("models.{id}"),
                "is in the route but not configured".to_owned(),
            )
        })?;
        let upstream = m.upstream_model.as_deref().unwrap_or(id);
        let price = match (m.input_per_mtok, m.output_per_mtok) {
            (Some(i), Some(o)) => Price {
                input_per_mtok: i,
                output_per_mtok: o,
            },
            _ => *builtin
                .0
                .get(upstream)
                .or_else(|| builtin.0.get(id))
                .ok_or_else(|| {
                    (
                        format!("models.{id}"),
                        "no price: set input_per_mtok and output_per_mtok".to_owned(),
                    )
                })?,
        };
        table.0.insert(id.clone(), price);
    }
    Ok(table)
}
