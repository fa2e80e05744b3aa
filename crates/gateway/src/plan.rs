//! From a validated request to an ordered list of models: the route's decision (learned
//! router or configured order) after the tenant's allow-list and open circuit breakers.

use std::collections::BTreeSet;
use std::time::Instant;

use axum::http::StatusCode;
use serde::Deserialize;
use switchyard_core::TaskClass;
use switchyard_core::policy::{Candidate, Constraints, Decision, PolicyError, decide};
use switchyard_providers::BreakerState;
use switchyard_scorer::{PromptFeatures, features};

use crate::config::{RoutePolicy, TenantConfig};
use crate::error::ApiError;
use crate::state::{AppState, RouteRuntime, Runtime};
use crate::traffic::Latency;

/// The fields of a chat request the gateway reads; the rest passes through untouched.
#[derive(Debug, Deserialize)]
pub struct ChatView {
    pub model: String,
    pub messages: Vec<MessageView>,
    #[serde(default)]
    pub stream: Option<bool>,
    #[serde(default)]
    pub stream_options: Option<StreamOptions>,
    #[serde(default)]
    pub max_tokens: Option<u64>,
    #[serde(default)]
    pub max_completion_tokens: Option<u64>,
    #[serde(default)]
    pub temperature: Option<f64>,
    #[serde(default)]
    pub top_p: Option<f64>,
    #[serde(default)]
    pub n: Option<u32>,
}

#[derive(Debug, Deserialize)]
pub struct StreamOptions {
    #[serde(default)]
    pub include_usage: Option<bool>,
}

#[derive(Debug, Deserialize)]
pub struct MessageView {
    pub role: String,
    #[serde(default)]
    pub content: Option<ContentView>,
}

#[derive(Debug, Deserialize)]
#[serde(untagged)]
pub enum ContentView {
    Text(String),
    Parts(Vec<PartView>),
}

#[derive(Debug, Deserialize)]
pub struct PartView {
    #[serde(rename = "type")]
    pub kind: String,
    #[serde(default)]
    pub text: Option<String>,
}

impl MessageView {
    pub fn text(&self) -> String {
        match &self.content {
            None => String::new(),
            Some(ContentView::Text(s)) => s.clone(),
            Some(ContentView::Parts(parts)) => parts
                .iter()
                .filter(|p| p.kind == "text")
                .filter_map(|p| p.text.as_deref())
                .collect::<Vec<_>>()
                .join("\n"),
        }
    }
}

const ROLES: [&str; 6] = [
    "system",
    "developer",
    "user",
    "assistant",
    "tool",
    "function",
];

impl ChatView {
    /// Parses and checks the request, naming the offending field.
    pub fn parse(body: &serde_json::Value) -> Result<Self, ApiError> {
        if !body.is_object() {
            return Err(ApiError::invalid("the request body must be a JSON object"));
        }
        let view: Self =
            crate::error::parse_body(body, "must be a string or an array of content parts")?;
        if view.messages.is_empty() {
            return Err(
                ApiError::invalid("messages: must contain at least one message").param("messages"),
            );
        }
        for (i, m) in view.messages.iter().enumerate() {
            if !ROLES.contains(&m.role.as_str()) {
                return Err(ApiError::invalid(format!(
                    "messages[{i}].role: {:?} is not one of {}",
                    m.role,
                    ROLES.join(", ")
                ))
                .param(format!("messages[{i}].role")));
            }
        }
        if let Some(t) = view.temperature
            && !(0.0..=2.0).contains(&t)
        {
            return Err(
                ApiError::invalid("temperature: must be between 0 and 2").param("temperature")
            );
        }
        if let Some(p) = view.top_p
            && !(p > 0.0 && p <= 1.0)
        {
            return Err(ApiError::invalid("top_p: must be in (0, 1]").param("top_p"));
        }
        if view.n.is_some_and(|n| n == 0) {
            return Err(ApiError::invalid("n: must be at least 1").param("n"));
        }
        if view.max_tokens.or(view.max_completion_tokens) == Some(0) {
            return Err(ApiError::invalid("max_tokens: must be at least 1").param("max_tokens"));
        }
        Ok(view)
    }

    pub fn stream(&self) -> bool {
        self.stream.unwrap_or(false)
    }

    pub fn wants_usage(&self) -> bool {
        self.stream_options
            .as_ref()
            .and_then(|o| o.include_usage)
            .unwrap_or(false)
    }

    /// What the router embeds: the last user message's text (else the last message's).
    pub fn prompt(&self) -> String {
        self.messages
            .iter()
            .rev()
            .find(|m| m.role == "user")
            .or(self.messages.last())
            .map(MessageView::text)
            .unwrap_or_default()
    }

    /// A rough prompt size (4 characters per token), for cost estimates and context checks.
    pub fn input_tokens(&self) -> u64 {
        let chars: usize = self
            .messages
            .iter()
            .map(|m| m.text().chars().count() + 4)
            .sum();
        chars.div_ceil(4) as u64
    }
}

/// The models to try, in order, and why.
#[derive(Debug, Clone)]
pub struct Plan {
    /// The route's name, or `None` when the client pinned a model.
    pub route: Option<String>,
    pub order: Vec<String>,
    pub decision: Option<Decision>,
    pub latency: Latency,
}

impl Plan {
    pub fn task(&self) -> Option<TaskClass> {
        self.decision.as_ref().and_then(|d| d.task)
    }
}

fn allowed_models(tenant: Option<&TenantConfig>) -> Option<BTreeSet<String>> {
    tenant
        .and_then(|t| t.models.as_ref())
        .map(|m| m.iter().cloned().collect())
}

/// Resolves `model` (a route, `auto`, or a model id) into a plan.
pub async fn plan(
    state: &AppState,
    runtime: &Runtime,
    tenant: Option<(&str, &TenantConfig)>,
    request: &ChatView,
    embedding: Option<Vec<f32>>,
) -> Result<Plan, ApiError> {
    let name = request.model.as_str();
    let allowed = allowed_models(tenant.map(|t| t.1));
    if let Some(route) = runtime.routes.get(name) {
        if let Some((tname, t)) = tenant
            && t.routes
                .as_ref()
                .is_some_and(|r| !r.iter().any(|r| r == name))
        {
            return Err(forbidden(format!(
                "tenant {tname:?} may not use route {name:?}"
            )));
        }
        return plan_route(state, runtime, route, allowed.as_ref(), request, embedding).await;
    }
    if runtime.models.contains_key(name) {
        if let Some((tname, _)) = tenant
            && allowed.as_ref().is_some_and(|a| !a.contains(name))
        {
            return Err(forbidden(format!(
                "tenant {tname:?} may not use model {name:?}"
            )));
        }
        return Ok(Plan {
            route: None,
            order: vec![name.to_owned()],
            decision: None,
            latency: Latency::default(),
        });
    }
    let mut known: Vec<&str> = runtime.routes.keys().map(String::as_str).collect();
    known.extend(runtime.models.keys().map(String::as_str));
    Err(ApiError::new(
        StatusCode::NOT_FOUND,
        "invalid_request_error",
        format!(
            "the model {name:?} does not exist: use one of {} (GET /v1/models lists them)",
            known.join(", ")
        ),
    )
    .param("model")
    .code("model_not_found"))
}

fn forbidden(message: String) -> ApiError {
    ApiError::new(StatusCode::FORBIDDEN, "permission_error", message).code("model_not_allowed")
}

async fn plan_route(
    state: &AppState,
    runtime: &Runtime,
    route: &RouteRuntime,
    allowed: Option<&BTreeSet<String>>,
    request: &ChatView,
    embedding: Option<Vec<f32>>,
) -> Result<Plan, ApiError> {
    let models: Vec<&String> = route
        .models
        .iter()
        .filter(|m| allowed.is_none_or(|a| a.contains(*m)))
        .collect();
    if models.is_empty() {
        return Err(forbidden(format!(
            "route {:?} has no model this tenant may use",
            route.name
        )));
    }
    let unavailable: BTreeSet<String> = models
        .iter()
        .filter(|m| state.breaker(m, runtime.breaker).state() == BreakerState::Open)
        .map(|m| (*m).clone())
        .collect();
    let policy = match route.policy {
        RoutePolicy::Order => {
            // Healthy models first, in the configured order; open breakers last (they are
            // skipped unless they have become half-open by the time their turn comes).
            let (up, down): (Vec<&String>, Vec<&String>) =
                models.iter().partition(|m| !unavailable.contains(**m));
            return Ok(Plan {
                route: Some(route.name.clone()),
                order: up.into_iter().chain(down).cloned().collect(),
                decision: None,
                latency: Latency::default(),
            });
        }
        RoutePolicy::Learned(policy) => policy,
    };
    let Some(router) = state.router.as_ref() else {
        return Err(ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "server_error",
            "the learned router is not loaded",
        ));
    };
    let prompt = request.prompt();
    if prompt.trim().is_empty() {
        return Err(ApiError::invalid(
            "messages: no user text to route on; add a user message or pin a model",
        )
        .param("messages"));
    }
    let mut latency = Latency::default();
    let embedding = match embedding {
        Some(e) => e,
        None => {
            let t = Instant::now();
            let e = embed_prompt(router, prompt).await?;
            latency.embed_ms = ms(t);
            e
        }
    };
    let t = Instant::now();
    let class = router
        .heads
        .classify(std::slice::from_ref(&embedding))
        .map_err(|e| {
            ApiError::new(
                StatusCode::INTERNAL_SERVER_ERROR,
                "server_error",
                format!("classifier: {e}"),
            )
        })?
        .pop()
        .ok_or_else(|| {
            ApiError::new(
                StatusCode::INTERNAL_SERVER_ERROR,
                "server_error",
                "classifier returned nothing",
            )
        })?;
    latency.classify_ms = ms(t);

    let t = Instant::now();
    let input_tokens = request.input_tokens();
    let probs: Vec<f32> = class.task_probs.iter().map(|(_, p)| *p).collect();
    let prompt_features = PromptFeatures {
        features: features(&embedding, &probs, class.difficulty, input_tokens as usize),
        task: class.task,
        input_tokens: input_tokens as usize,
    };
    let likes: Vec<String> = models
        .iter()
        .filter_map(|m| runtime.models.get(*m).and_then(|r| r.quality_like.clone()))
        .collect::<BTreeSet<_>>()
        .into_iter()
        .collect();
    let predictions = router
        .scorer
        .predict(&prompt_features, Some(&likes))
        .map_err(|e| {
            ApiError::new(
                StatusCode::INTERNAL_SERVER_ERROR,
                "server_error",
                format!("scorer: {e}"),
            )
        })?;
    let output_cap = request.max_completion_tokens.or(request.max_tokens);
    let candidates: Vec<Candidate> = models
        .iter()
        .filter_map(|m| runtime.models.get(*m))
        .map(|m| {
            let predicted = m
                .quality_like
                .as_ref()
                .and_then(|like| predictions.iter().find(|p| &p.model == like));
            let quality = predicted
                .map(|p| p.quality)
                .or(m.quality_prior)
                .unwrap_or(0.5);
            let mut output = predicted
                .and_then(|p| p.output_tokens)
                .unwrap_or(m.output_tokens);
            if let Some(cap) = output_cap {
                output = output.min(cap as f64);
            }
            Candidate {
                model: m.id.clone(),
                quality,
                cost_usd: m.price.cost(input_tokens as f64, output),
                context_window: m.context_window,
            }
        })
        .collect();
    let constraints = Constraints {
        required_tokens: input_tokens + output_cap.unwrap_or(0),
        allowed: None,
        unavailable,
    };
    let mut decision = match decide(&candidates, &constraints, policy) {
        Ok(d) => d,
        Err(PolicyError::AllExcluded(why)) => {
            let detail: Vec<String> = why
                .iter()
                .map(|(m, e)| {
                    format!(
                        "{m}: {}",
                        serde_json::to_string(e)
                            .unwrap_or_default()
                            .trim_matches('"')
                    )
                })
                .collect();
            let all_down = why
                .values()
                .all(|e| *e == switchyard_core::policy::Exclusion::Unavailable);
            let mut e = ApiError::new(
                if all_down {
                    StatusCode::SERVICE_UNAVAILABLE
                } else {
                    StatusCode::BAD_REQUEST
                },
                if all_down {
                    "server_error"
                } else {
                    "invalid_request_error"
                },
                format!(
                    "no model of route {:?} can take this request ({})",
                    route.name,
                    detail.join("; ")
                ),
            );
            if all_down {
                e = e.retry_after(runtime.breaker.open_for.as_secs().max(1));
            }
            return Err(e);
        }
        Err(e) => {
            return Err(ApiError::new(
                StatusCode::INTERNAL_SERVER_ERROR,
                "server_error",
                e.to_string(),
            ));
        }
    };
    decision.task = Some(class.task);
    decision.difficulty = Some(f64::from(class.difficulty));
    latency.score_ms = ms(t);
    Ok(Plan {
        route: Some(route.name.clone()),
        order: decision.ranked.iter().map(|r| r.model.clone()).collect(),
        decision: Some(decision),
        latency,
    })
}

/// The router's embedding of a prompt (also the cache's key vector).
pub async fn embed_prompt(
    router: &crate::state::RouterStack,
    prompt: String,
) -> Result<Vec<f32>, ApiError> {
    Ok(
        switchyard_core::Embedder::embed(&router.worker, vec![prompt])
            .await
            .map_err(embed_error)?
            .pop()
            .unwrap_or_default(),
    )
}

pub fn ms(since: Instant) -> f64 {
    since.elapsed().as_secs_f64() * 1e3
}

pub fn embed_error(e: switchyard_core::EmbedError) -> ApiError {
    use switchyard_core::EmbedError;
    match e {
        EmbedError::QueueFull { .. } => ApiError::new(
            StatusCode::TOO_MANY_REQUESTS,
            "rate_limit_error",
            e.to_string(),
        )
        .retry_after(1),
        EmbedError::NoInputs | EmbedError::EmptyInput { .. } => ApiError::invalid(e.to_string()),
        other => ApiError::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            "server_error",
            other.to_string(),
        ),
    }
}
