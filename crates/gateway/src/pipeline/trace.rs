//! What one chat request did, gathered as the pipeline runs and written once at the end:
//! the `x-switchyard-*` headers, the metrics, the tenant's charge and the traffic record.

use std::sync::Arc;
use std::time::Instant;

use axum::http::{HeaderMap, HeaderValue};
use axum::response::{IntoResponse, Response};
use switchyard_providers::Usage;

use super::plan::{Plan, ms};
use crate::error::ApiError;
use crate::limits::{DEFAULT_TENANT, sha256_hex};
use crate::runtime::{AppState, Runtime};
use crate::traffic::{Attempt, CacheOutcome, Latency, TRAFFIC_VERSION, TrafficRecord, now_rfc3339};

/// The request as the client sent it.
#[derive(Debug, Default)]
pub struct Asked {
    pub tenant: String,
    /// `model` as sent (`auto`, a route, a model).
    pub model: String,
    /// The routed text: the last user message.
    pub prompt: String,
    pub stream: bool,
    /// The whole chat's estimated prompt tokens.
    pub input_tokens: u64,
}

/// What the cache did.
#[derive(Debug, Default)]
pub struct CacheTrace {
    pub outcome: CacheOutcome,
    pub ms: f64,
    /// The served entry's id and, for a semantic hit, its score.
    pub entry: Option<(String, Option<f32>)>,
    /// The model whose stored answer was served.
    pub model: Option<String>,
}

/// How the answer ended, for the record.
#[derive(Debug, Default)]
pub struct Ending {
    pub status: u16,
    pub model: Option<String>,
    pub usage: Option<Usage>,
    pub cost: Option<f64>,
    pub error: Option<String>,
    /// `usage` is Switchyard's estimate: the upstream streamed no usage.
    pub usage_estimated: bool,
    /// The answer's text, when `[log] log_answers` is on.
    pub answer: Option<String>,
}

/// The shared-state writes a finished request started (its settlement, its id). The
/// answer leaves once they have landed, so the client's next request, on any replica,
/// sees them (a spend settled, an id known to feedback).
#[derive(Debug, Default)]
#[must_use = "await `land` before the answer leaves, or drop to let the writes finish alone"]
pub struct Writes(Vec<tokio::task::JoinHandle<()>>);

impl Writes {
    pub async fn land(self) {
        for write in self.0 {
            // Each is bounded by `[state] timeout_ms`; a failed one was kept for later.
            let _ = write.await;
        }
    }
}

#[derive(Debug)]
pub struct Trace {
    pub state: Arc<AppState>,
    pub runtime: Arc<Runtime>,
    pub request_id: String,
    started: Instant,
    pub asked: Asked,
    /// What `model` resolved to: `Some(route)`, or `Some(None)` for a pinned model.
    pub route: Option<Option<String>>,
    pub embed_ms: f64,
    pub cache: CacheTrace,
    pub plan: Option<Plan>,
    pub attempts: Vec<Attempt>,
    pub upstream_ms: f64,
    /// The request's hold on its tenant's budgets while it is in flight.
    pub reservation: Option<crate::limits::Reservation>,
    /// The caller's W3C `traceparent`, for the request's span.
    pub traceparent: Option<String>,
}

impl Trace {
    pub fn start(state: &Arc<AppState>) -> Self {
        let request_id = crate::limits::RecentIds::new_id();
        Self {
            state: state.clone(),
            runtime: state.runtime(),
            request_id,
            started: Instant::now(),
            asked: Asked {
                tenant: DEFAULT_TENANT.into(),
                ..Asked::default()
            },
            route: None,
            embed_ms: 0.0,
            cache: CacheTrace::default(),
            plan: None,
            attempts: Vec::new(),
            upstream_ms: 0.0,
            reservation: None,
            traceparent: None,
        }
    }

    pub fn started(&self) -> Instant {
        self.started
    }

    fn route_label(&self) -> String {
        match &self.route {
            Some(Some(r)) => r.clone(),
            Some(None) => "pinned".into(),
            None => "-".into(),
        }
    }

    /// The `x-switchyard-*` headers: why this model, at what cost, from where.
    pub fn explain(&self, headers: &mut HeaderMap, model: Option<&str>, cost: Option<f64>) {
        let mut set = |name: &'static str, value: String| {
            if let Ok(v) = HeaderValue::from_str(&value) {
                headers.insert(name, v);
            }
        };
        set("x-switchyard-request-id", self.request_id.clone());
        set("x-switchyard-route", self.route_label());
        set("x-switchyard-cache", self.cache.outcome.as_str().into());
        if let Some((id, score)) = &self.cache.entry {
            set("x-switchyard-cache-entry", id.clone());
            if let Some(score) = score {
                set("x-switchyard-cache-score", format!("{score:.3}"));
            }
        }
        set("x-switchyard-attempts", self.attempts.len().to_string());
        if let Some(model) = model {
            set("x-switchyard-model", model.to_owned());
        }
        if let Some(cost) = cost {
            set("x-switchyard-cost-usd", format!("{cost:.8}"));
        }
        let Some(d) = self.plan.as_ref().and_then(|p| p.decision.as_ref()) else {
            return;
        };
        if let Some(task) = d.task {
            set("x-switchyard-task", task.to_string());
        }
        if let Some(difficulty) = d.difficulty {
            set("x-switchyard-difficulty", format!("{difficulty:.3}"));
        }
        if let Some(version) = &d.router_version {
            set("x-switchyard-router-version", version.clone());
        }
        if d.explored {
            set("x-switchyard-explored", "true".into());
        }
        let chosen = model.unwrap_or(&d.chosen);
        if let Some(r) = d.ranked.iter().find(|r| r.model == chosen) {
            set(
                "x-switchyard-predicted-quality",
                format!("{:.3}", r.quality),
            );
        }
    }

    /// Answers with `error` and records the request.
    pub fn fail(self, error: ApiError) -> Response {
        let error = error.request_id(&self.request_id);
        let mut response = error.clone().into_response();
        self.explain(response.headers_mut(), None, None);
        if self.plan.is_none() {
            self.state.metrics.rejected(error.kind.openai_type());
        }
        let status = error.status().as_u16();
        // Nothing waits on a failed request's writes (a released hold, its id).
        drop(self.finish(Ending {
            status,
            error: Some(error.message),
            ..Ending::default()
        }));
        response
    }

    /// Accounts, counts and logs the finished request.
    pub fn finish(mut self, ending: Ending) -> Writes {
        let mut writes = Vec::new();
        self.count(&ending);
        let spent = ending.model.as_ref().and(ending.usage).map(|u| {
            let tokens = u.prompt_tokens.saturating_add(u.completion_tokens);
            (tokens, ending.cost.unwrap_or(0.0))
        });
        match (self.reservation.take(), spent) {
            (Some(held), Some((tokens, usd))) => writes.extend(held.settle(tokens, usd)),
            // No answer: dropping the reservation gives it back.
            (Some(_), None) | (None, None) => {}
            (None, Some((tokens, usd))) => {
                self.state
                    .limits
                    .ledger
                    .charge(&self.asked.tenant, tokens, usd)
            }
        }
        let explored = self.plan.as_ref().and_then(|p| {
            let d = p.decision.as_ref().filter(|d| d.explored)?;
            Some((p.route.clone()?, d.chosen.clone()))
        });
        if let (Some((route, chosen)), Some(cost)) = (explored, ending.cost)
            && ending.model.as_deref() == Some(&chosen)
        {
            self.state.explore_spend.add(&route, cost);
        }
        let state = self.state.clone();
        // Known to feedback once its record is written, and only to its own tenant.
        writes.extend(state.limits.remember(&self.request_id, &self.asked.tenant));
        if state.log.is_none() && state.telemetry.is_none() {
            return Writes(writes);
        }
        let (runtime, parent) = (self.runtime.clone(), self.traceparent.take());
        let record = self.record(ending);
        if let Some(telemetry) = &state.telemetry {
            telemetry.export(&record, &runtime, parent.as_deref());
        }
        if let Some(log) = &state.log {
            log.traffic(&record);
        }
        Writes(writes)
    }

    fn count(&self, ending: &Ending) {
        let m = &self.state.metrics;
        let route = self.route_label();
        let served = ending.model.as_deref().unwrap_or("-");
        let seconds = self.started.elapsed().as_secs_f64();
        m.request(&route, served, ending.status, seconds);
        let first = self.plan.as_ref().and_then(|p| p.order.first());
        if let (Some(model), Some(first)) = (&ending.model, first)
            && *model != first.id
        {
            m.fallback(&route);
        }
        if let Some(u) = ending.usage {
            m.usage(served, u.prompt_tokens, u.completion_tokens);
        }
        if let Some(c) = ending.cost {
            m.cost(served, c);
        }
    }

    fn record(self, ending: Ending) -> TrafficRecord {
        let mut latency = self
            .plan
            .as_ref()
            .map(|p| p.latency.clone())
            .unwrap_or_default();
        latency = Latency {
            embed_ms: self.embed_ms,
            upstream_ms: self.upstream_ms,
            cache_ms: self.cache.ms,
            total_ms: ms(self.started),
            ..latency
        };
        let log_prompts = self.runtime.capture.prompts;
        let Asked {
            tenant,
            model: requested,
            prompt,
            stream,
            ..
        } = self.asked;
        TrafficRecord {
            v: TRAFFIC_VERSION,
            request_id: self.request_id,
            time: now_rfc3339(),
            tenant,
            route: self.route.flatten(),
            requested,
            prompt_sha256: sha256_hex(prompt.as_bytes()),
            prompt: log_prompts.then_some(prompt),
            stream,
            decision: self.plan.and_then(|p| p.decision),
            attempts: self.attempts,
            model: ending.model,
            usage: ending.usage,
            cost_usd: ending.cost,
            usage_estimated: ending.usage_estimated,
            answer: ending.answer.filter(|_| log_prompts),
            cache: self.cache.outcome,
            status: ending.status,
            error: ending.error,
            latency,
        }
    }
}
