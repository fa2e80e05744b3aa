//! From the request's `model` to an ordered list of models. [`resolve`] works out once
//! what `model` names (a route or a model) and whether the tenant may use it; [`plan`]
//! turns that into the order to try: the learned router's decision, or the route's
//! configured order, after the tenant's allow-list and open circuit breakers.

use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::Instant;

use switchyard_core::TaskClass;
use switchyard_core::policy::{Decision, Policy};
use switchyard_providers::BreakerState;
use switchyard_router::{CandidateSpec, Explore, RouteInput};

use super::request::ChatView;
use crate::config::{RoutePolicy, TenantConfig};
use crate::error::{ApiError, ErrorKind, RouteFailure};
use crate::limits::check_allowed;
use crate::limits::tenants::Target as Asked;
use crate::limits::tenants::may_use_model;
use crate::runtime::{AppState, ModelRuntime, RouteRuntime, Runtime};
use crate::traffic::Latency;

/// What the request's `model` names.
#[derive(Debug, Clone, Copy)]
pub enum Target<'r> {
    Route(&'r RouteRuntime),
    /// A model pinned by the client.
    Model(&'r Arc<ModelRuntime>),
}

impl Target<'_> {
    /// The route's name, or `pinned`.
    pub fn label(&self) -> &str {
        match self {
            Self::Route(r) => &r.name,
            Self::Model(_) => "pinned",
        }
    }

    /// The route's name; `None` for a pinned model.
    pub fn route_name(&self) -> Option<&str> {
        match self {
            Self::Route(r) => Some(&r.name),
            Self::Model(_) => None,
        }
    }

    /// The cache scope's name and the route's own semantic threshold, when this target's
    /// answers are cached (a route may opt out; pinned models always may be cached).
    pub fn cache_scope(&self) -> Option<(&str, Option<f32>)> {
        match self {
            Self::Route(r) if r.cache => Some((&r.name, r.cache_threshold)),
            Self::Route(_) => None,
            Self::Model(m) => Some((&m.id, None)),
        }
    }

    /// Whether planning needs the prompt's embedding (a learned route).
    pub fn routes_on_embedding(&self) -> bool {
        matches!(self, Self::Route(r) if matches!(r.policy, RoutePolicy::Learned(_)))
    }
}

/// A target the tenant may use, with the tenant's model allow-list.
#[derive(Debug, Clone)]
pub struct Resolved<'r> {
    pub target: Target<'r>,
    /// The tenant's settings (its model allow-list), when tenants are configured.
    pub tenant: Option<&'r TenantConfig>,
    /// Whether the tenant lets its requests explore (`tenants.NAME.explore`).
    pub explore: bool,
}

/// Works out what `model` names, refusing what the tenant may not use.
pub fn resolve<'r>(
    runtime: &'r Runtime,
    tenant: Option<(&str, &'r TenantConfig)>,
    model: &str,
) -> Result<Resolved<'r>, ApiError> {
    let explore = tenant.is_none_or(|(_, t)| t.explore);
    if let Some(route) = runtime.routes.get(model) {
        check_allowed(tenant, Asked::Route, model)?;
        let target = Target::Route(route);
        return Ok(Resolved {
            target,
            tenant: tenant.map(|(_, t)| t),
            explore,
        });
    }
    if let Some(m) = runtime.models.get(model) {
        check_allowed(tenant, Asked::Model, model)?;
        let target = Target::Model(m);
        return Ok(Resolved {
            target,
            tenant: tenant.map(|(_, t)| t),
            explore,
        });
    }
    let mut known: Vec<&str> = runtime.routes.keys().map(String::as_str).collect();
    known.extend(runtime.models.keys().map(String::as_str));
    Err(ApiError::new(
        ErrorKind::ModelNotFound,
        format!(
            "the model {model:?} does not exist: use one of {} (GET /v1/models lists them)",
            known.join(", ")
        ),
    )
    .param("model"))
}

/// The models to try, in order, and why.
#[derive(Debug, Clone)]
pub struct Plan {
    /// The route's name, or `None` when the client pinned a model.
    pub route: Option<String>,
    /// The models to try, in order: handles resolved once, when the plan is made.
    pub order: Vec<Arc<ModelRuntime>>,
    pub decision: Option<Decision>,
    pub latency: Latency,
}

impl Plan {
    /// The ids of the models to try, in order.
    pub fn model_ids(&self) -> Vec<String> {
        self.order.iter().map(|m| m.id.clone()).collect()
    }

    pub fn task(&self) -> Option<TaskClass> {
        self.decision.as_ref().and_then(|d| d.task)
    }
}

/// The order to try for a resolved target. `embedding` is the prompt's (the router's
/// truncation); a learned route needs it.
pub fn plan(
    state: &AppState,
    runtime: &Runtime,
    resolved: &Resolved<'_>,
    request: &ChatView,
    embedding: Option<&[f32]>,
) -> Result<Plan, ApiError> {
    let route = match resolved.target {
        Target::Model(m) => {
            let (route, order) = (None, vec![Arc::clone(m)]);
            return Ok(Plan {
                route,
                order,
                decision: None,
                latency: Latency::default(),
            });
        }
        Target::Route(route) => route,
    };
    let models: Vec<&Arc<ModelRuntime>> = route
        .models
        .iter()
        .filter(|m| may_use_model(resolved.tenant, &m.id))
        .collect();
    if models.is_empty() {
        let message = format!("route {:?} has no model this tenant may use", route.name);
        return Err(ApiError::new(ErrorKind::ModelNotAllowed, message));
    }
    let unavailable: BTreeSet<String> = models
        .iter()
        .filter(|m| state.breaker(&m.id, runtime.breaker).state() == BreakerState::Open)
        .map(|m| m.id.clone())
        .collect();
    match route.policy {
        RoutePolicy::Order => Ok(configured_order(route, &models, &unavailable)),
        RoutePolicy::Learned(policy) => {
            let learned = Learned {
                route,
                models: &models,
                unavailable,
                policy,
                explore: resolved.explore,
            };
            learned.plan(state, runtime, request, embedding)
        }
    }
}

/// Healthy models first, in the configured order; open breakers last (they are skipped
/// unless they have become half-open by the time their turn comes).
fn configured_order(
    route: &RouteRuntime,
    models: &[&Arc<ModelRuntime>],
    down: &BTreeSet<String>,
) -> Plan {
    let (up, later): (Vec<&Arc<ModelRuntime>>, Vec<&Arc<ModelRuntime>>) =
        models.iter().copied().partition(|m| !down.contains(&m.id));
    Plan {
        route: Some(route.name.clone()),
        order: up.into_iter().chain(later).cloned().collect(),
        decision: None,
        latency: Latency::default(),
    }
}

/// A route decided by the learned router.
struct Learned<'a> {
    route: &'a RouteRuntime,
    models: &'a [&'a Arc<ModelRuntime>],
    unavailable: BTreeSet<String>,
    policy: Policy,
    /// The tenant allows exploring.
    explore: bool,
}

impl Learned<'_> {
    /// The share of this request's draws that explore: the route's rate, unless the
    /// tenant opts out or the route spent its daily exploration budget.
    fn explore_rate(&self, state: &AppState) -> f64 {
        let route = self.route;
        let spent_out = route
            .explore_daily_usd
            .is_some_and(|cap| state.explore_spend.spent(&route.name) >= cap);
        if self.explore && !spent_out {
            route.explore
        } else {
            0.0
        }
    }

    fn plan(
        self,
        state: &AppState,
        runtime: &Runtime,
        request: &ChatView,
        embedding: Option<&[f32]>,
    ) -> Result<Plan, ApiError> {
        let Some(router) = runtime.router.clone() else {
            return Err(ApiError::new(
                ErrorKind::Unavailable,
                "the learned router is not loaded",
            ));
        };
        let prompt = request.prompt();
        let Some(embedding) = embedding.filter(|_| !prompt.trim().is_empty()) else {
            return Err(ApiError::invalid(
                "messages: no user text to route on; add a user message or pin a model",
            )
            .param("messages"));
        };
        let specs: Vec<CandidateSpec> = self.models.iter().map(|m| m.candidate()).collect();
        let rate = self.explore_rate(state);
        let routed = router
            .route(&RouteInput {
                embedding,
                prompt: &prompt,
                input_tokens: request.input_tokens(),
                max_output_tokens: request.max_output_tokens(),
                candidates: &specs,
                unavailable: self.unavailable,
                policy: self.policy,
            })
            .map_err(|error| RouteFailure {
                error,
                route: &self.route.name,
                breaker_open_s: runtime.breaker.open_for.as_secs(),
            })?;
        let mut decision = routed.decision;
        let evidence = |model: &str| {
            specs
                .iter()
                .find(|s| s.model == model)
                .map_or(0, |s| router.evidence(s))
        };
        let (explore_draw, pick_draw) = state.explore_draws.next();
        Explore { rate }.apply(&mut decision, &evidence, explore_draw, pick_draw);
        let order = decision
            .ranked
            .iter()
            .map(|r| {
                let m = self.models.iter().find(|m| m.id == r.model);
                m.map(|m| Arc::clone(m)).ok_or_else(|| {
                    ApiError::internal(format!("the router ranked {:?}, not a candidate", r.model))
                })
            })
            .collect::<Result<Vec<_>, _>>()?;
        Ok(Plan {
            route: Some(self.route.name.clone()),
            order,
            decision: Some(decision),
            latency: Latency {
                classify_ms: routed.classify_ms,
                score_ms: routed.score_ms,
                ..Latency::default()
            },
        })
    }
}

/// The router's embedding of a prompt (also the cache's key vector).
pub async fn embed_prompt(
    stack: &crate::runtime::RouterStack,
    prompt: String,
) -> Result<Vec<f32>, ApiError> {
    Ok(
        switchyard_core::Embedder::embed(&stack.worker, vec![prompt])
            .await?
            .pop()
            .unwrap_or_default(),
    )
}

pub fn ms(since: Instant) -> f64 {
    since.elapsed().as_secs_f64() * 1e3
}
