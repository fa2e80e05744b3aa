//! `POST /v1/chat/completions`, one straight pipeline:
//!
//! admit → parse → resolve the target once → exact cache → embed once → semantic cache
//! (a hit answers here, before any routing) → route → fallback → respond.
//!
//! Each step records what it did in the request's [`Trace`], which writes the headers,
//! metrics and the traffic record once, at the end.

use std::convert::Infallible;
use std::sync::Arc;
use std::time::Instant;

use axum::body::{Body, Bytes};
use axum::http::{HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use serde_json::Value;
use switchyard_cache::{Cache, CacheScope, Control, Found};
use switchyard_providers::fallback::Success;
use switchyard_providers::{Reply, Usage};

use super::forward::forward;
use super::plan::{Resolved, embed_prompt, ms, plan, resolve};
use super::request::ChatView;
use super::store::StoreJob;
use super::stream::{Upstream, relay};
use super::trace::{Ending, Trace, Writes};
use crate::error::ApiError;
use crate::limits::authenticate;
use crate::runtime::{AppState, Runtime};
use crate::traffic::CacheOutcome;

pub async fn chat_completions(state: Arc<AppState>, headers: HeaderMap, body: Bytes) -> Response {
    let mut trace = Trace::start(&state);
    trace.traceparent = headers
        .get("traceparent")
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned);
    let (response, writes) = match pipeline(&state, &headers, &body, &mut trace).await {
        Ok(Answer::Cached { body, wants_usage }) => answer_from_cache(trace, body, wants_usage),
        Ok(Answer::Upstream {
            success,
            store,
            wants_usage,
        }) => respond(trace, *success, store, wants_usage),
        Err(e) => (trace.fail(e), Writes::default()),
    };
    writes.land().await;
    response
}

/// Where the answer comes from.
enum Answer {
    Cached {
        body: Value,
        wants_usage: bool,
    },
    Upstream {
        success: Box<Success>,
        store: Option<StoreJob>,
        wants_usage: bool,
    },
}

async fn pipeline(
    state: &Arc<AppState>,
    headers: &HeaderMap,
    body: &Bytes,
    trace: &mut Trace,
) -> Result<Answer, ApiError> {
    let runtime = trace.runtime.clone();
    let tenant = admit(state, &runtime, headers, trace).await?;
    let (value, view) = parse(body, trace)?;
    let resolved = resolve(&runtime, tenant, &view.model)?;
    trace.route = Some(resolved.target.route_name().map(str::to_owned));
    let mut lookup = CacheLookup::prepare(state, &resolved, &view, &value, headers, trace)?;
    if let Some(body) = lookup.exact(state, trace).await {
        return Ok(Answer::Cached {
            body,
            wants_usage: view.wants_usage(),
        });
    }
    let wants_vector = lookup.wants_vector() || resolved.target.routes_on_embedding();
    let embedding = embed_once(state, wants_vector, trace).await?;
    if let Some(body) = lookup.similar(state, embedding.as_deref(), trace).await {
        return Ok(Answer::Cached {
            body,
            wants_usage: view.wants_usage(),
        });
    }
    let planned = plan(state, &runtime, &resolved, &view, embedding.as_deref())?;
    observe_routing(state, &planned, trace.embed_ms);
    super::shadow::spawn(
        state,
        &resolved,
        &view,
        embedding.as_deref(),
        &trace.request_id,
        &planned,
    );
    if let Some((name, config)) = tenant {
        trace.reservation = Some(reserve(state, name, config, &view, &planned.order).await?);
    }
    let order = planned.order.clone();
    trace.plan = Some(planned);
    let t = Instant::now();
    let result = forward(
        state,
        &runtime,
        &order,
        value,
        view.stream(),
        trace.started(),
        &mut trace.attempts,
    )
    .await;
    trace.upstream_ms = ms(t);
    let store = embedding.and_then(|vector| lookup.store_job(&trace.asked.prompt, vector));
    Ok(Answer::Upstream {
        success: Box::new(result?),
        store,
        wants_usage: view.wants_usage(),
    })
}

/// Authenticates the key and admits the tenant under its budget and rate limit.
async fn admit<'r>(
    state: &AppState,
    runtime: &'r Runtime,
    headers: &HeaderMap,
    trace: &mut Trace,
) -> Result<Option<(&'r str, &'r crate::config::TenantConfig)>, ApiError> {
    let tenant = authenticate(&runtime.tenants, headers)?;
    if let Some((name, config)) = tenant {
        trace.asked.tenant = name.to_owned();
        state.limits.admit(name, config).await?;
    }
    Ok(tenant)
}

/// Holds the request's estimated spend against the tenant's budgets while it is in
/// flight: the whole chat's prompt estimate plus its output cap (or the router's default
/// output length), priced at the dearest model it may be sent to.
async fn reserve(
    state: &AppState,
    tenant: &str,
    config: &crate::config::TenantConfig,
    view: &ChatView,
    order: &[Arc<crate::runtime::ModelRuntime>],
) -> Result<crate::limits::Reservation, ApiError> {
    let input = view.input_tokens();
    let output = view
        .max_output_tokens()
        .unwrap_or(switchyard_router::DEFAULT_OUTPUT_TOKENS as u64);
    let usd = order
        .iter()
        .map(|m| m.price.cost(input as f64, output as f64))
        .fold(0.0, f64::max);
    let tokens = input.saturating_add(output);
    Ok(state.limits.reserve(tenant, config, tokens, usd).await?)
}

fn parse(body: &Bytes, trace: &mut Trace) -> Result<(Value, ChatView), ApiError> {
    let value: Value = serde_json::from_slice(body)
        .map_err(|e| ApiError::invalid(format!("the body is not valid JSON: {e}")))?;
    let view = ChatView::parse(&value)?;
    trace.asked.model = view.model.clone();
    trace.asked.prompt = view.prompt();
    trace.asked.stream = view.stream();
    trace.asked.input_tokens = view.input_tokens();
    Ok((value, view))
}

/// The prompt's embedding, computed once for both the semantic cache and the router.
async fn embed_once(
    state: &AppState,
    wanted: bool,
    trace: &mut Trace,
) -> Result<Option<Vec<f32>>, ApiError> {
    let (vector, embed_ms) = embed_if(state, wanted, &trace.asked.prompt).await?;
    trace.embed_ms = embed_ms;
    Ok(vector)
}

/// The router's embedding of `prompt` when `wanted` and there is text to embed, with the
/// milliseconds it took.
async fn embed_if(
    state: &AppState,
    wanted: bool,
    prompt: &str,
) -> Result<(Option<Vec<f32>>, f64), ApiError> {
    let Some(stack) = state
        .router
        .as_ref()
        .filter(|_| wanted && !prompt.trim().is_empty())
    else {
        return Ok((None, 0.0));
    };
    let t = Instant::now();
    let vector = embed_prompt(stack, prompt.to_owned()).await?;
    Ok((Some(vector), ms(t)))
}

/// `POST /v1/route`: the front half of the pipeline above — parse, resolve, embed, plan
/// (the caller has authenticated) — without admission, cache or provider. A dry run shows the policy's own
/// decision: it never explores, so it has no propensity.
pub async fn route_only(
    state: &Arc<AppState>,
    runtime: &Runtime,
    tenant: Option<(&str, &crate::config::TenantConfig)>,
    body: &Bytes,
) -> Result<Value, ApiError> {
    let value: Value = serde_json::from_slice(body)
        .map_err(|e| ApiError::invalid(format!("the body is not valid JSON: {e}")))?;
    let view = ChatView::parse(&value)?;
    let mut resolved = resolve(runtime, tenant, &view.model)?;
    resolved.explore = false;
    let wanted = resolved.target.routes_on_embedding();
    let (embedding, embed_ms) = embed_if(state, wanted, &view.prompt()).await?;
    let mut p = plan(state, runtime, &resolved, &view, embedding.as_deref())?;
    p.latency.embed_ms = embed_ms;
    if let Some(d) = p.decision.as_mut() {
        d.propensity = None;
    }
    Ok(serde_json::json!({
        "route": p.route,
        "model": p.order.first().map(|m| &m.id),
        "order": p.model_ids(),
        "decision": p.decision,
        "latency_ms": p.latency,
    }))
}

fn observe_routing(state: &AppState, planned: &super::plan::Plan, embed_ms: f64) {
    if let (Some(route), Some(_)) = (&planned.route, &planned.decision) {
        let l = &planned.latency;
        state
            .metrics
            .routing(route, (embed_ms + l.classify_ms + l.score_ms) / 1e3);
    }
}

/// The cache's part in one request: whether it is used, its scope, and what it found.
struct CacheLookup {
    cache: Option<Arc<Cache>>,
    scope: Option<CacheScope>,
    threshold: Option<f32>,
    control: Control,
}

impl CacheLookup {
    fn prepare(
        state: &AppState,
        resolved: &Resolved<'_>,
        view: &ChatView,
        body: &Value,
        headers: &HeaderMap,
        trace: &Trace,
    ) -> Result<Self, ApiError> {
        let control = crate::runtime::cache::control(headers)
            .map_err(|e| ApiError::invalid(e).param(crate::runtime::cache::CONTROL_HEADER))?;
        let scope_of = resolved.target.cache_scope();
        let cache = state
            .cache()
            .filter(|_| scope_of.is_some() && view.n.unwrap_or(1) == 1)
            .filter(|_| !trace.asked.prompt.trim().is_empty())
            // With both no-cache and no-store the cache has nothing to do for this request.
            .filter(|_| !(control.no_cache && control.no_store));
        let scope = scope_of
            .filter(|_| cache.is_some())
            .map(|(name, _)| crate::runtime::cache::scope(&trace.asked.tenant, name, body));
        let threshold = scope_of.and_then(|(_, t)| t);
        Ok(Self {
            cache,
            scope,
            threshold,
            control,
        })
    }

    /// Whether the semantic lookup or the store will need the prompt's vector.
    fn wants_vector(&self) -> bool {
        self.cache.is_some()
    }

    fn looked_up(&self) -> Option<(&Arc<Cache>, &CacheScope)> {
        let cache = self.cache.as_ref().filter(|_| !self.control.no_cache)?;
        Some((cache, self.scope.as_ref()?))
    }

    async fn exact(&mut self, state: &AppState, trace: &mut Trace) -> Option<Value> {
        let (cache, scope) = self.looked_up()?;
        let t = Instant::now();
        let found = cache
            .lookup_exact(scope, &trace.asked.prompt, self.control.max_age)
            .await;
        trace.cache.ms += ms(t);
        match found {
            // A miss is counted by the semantic lookup that follows it.
            Ok(None) => {
                trace.cache.outcome = CacheOutcome::Miss;
                None
            }
            other => self.settle(state, other, trace),
        }
    }

    async fn similar(
        &mut self,
        state: &AppState,
        vector: Option<&[f32]>,
        trace: &mut Trace,
    ) -> Option<Value> {
        let (cache, scope) = self.looked_up()?;
        let Some(vector) = vector else {
            return self.settle(state, Ok(None), trace);
        };
        let t = Instant::now();
        let found = cache
            .lookup_similar(
                scope,
                &trace.asked.prompt,
                vector,
                self.control.max_age,
                self.threshold,
            )
            .await;
        trace.cache.ms += ms(t);
        self.settle(state, found, trace)
    }

    /// Counts the lookup and, on a hit, the stored answer re-issued under this request's
    /// id. A failed lookup turns the cache off for this request; an entry that cannot be
    /// replayed is a miss.
    fn settle(
        &mut self,
        state: &AppState,
        found: Result<Option<Found>, switchyard_core::CacheError>,
        trace: &mut Trace,
    ) -> Option<Value> {
        let (outcome, label) = match &found {
            Ok(Some(f)) if f.exact => (CacheOutcome::Hit, "hit"),
            Ok(Some(_)) => (CacheOutcome::SemanticHit, "semantic_hit"),
            Ok(None) => (CacheOutcome::Miss, "miss"),
            Err(e) => {
                tracing::warn!(error = %e, "cache lookup failed; answering without it");
                self.cache = None;
                (CacheOutcome::Bypass, "error")
            }
        };
        state.metrics.cache_lookup(label);
        trace.cache.outcome = if outcome.served() {
            CacheOutcome::Miss
        } else {
            outcome
        };
        let found = found.ok().flatten()?;
        let body = crate::runtime::cache::replay_body(
            &found.entry.response,
            &trace.request_id,
            &found.entry.model,
        )?;
        let method = self.cache.as_ref().map(|c| c.settings().method);
        let score = method
            .filter(|_| !found.exact)
            .and_then(|m| found.judgement.score(m));
        trace.cache.outcome = outcome;
        trace.cache.entry = Some((found.entry.id.clone(), score));
        trace.cache.model = Some(found.entry.model);
        Some(body)
    }

    fn store_job(&self, prompt: &str, vector: Vec<f32>) -> Option<StoreJob> {
        let cache = self.cache.clone().filter(|_| !self.control.no_store)?;
        let scope = self.scope.clone()?;
        Some(StoreJob {
            cache,
            scope,
            prompt: prompt.to_owned(),
            vector,
        })
    }
}

/// A stored answer, as JSON or replayed as an SSE stream; free, and no provider is called.
fn answer_from_cache(trace: Trace, body: Value, wants_usage: bool) -> (Response, Writes) {
    let model = trace.cache.model.clone().unwrap_or_default();
    let mut headers = HeaderMap::new();
    trace.explain(&mut headers, Some(&model), Some(0.0));
    let response = if trace.asked.stream {
        set_event_stream(&mut headers);
        let events = crate::runtime::cache::replay_stream(&body, wants_usage);
        let stream = futures_util::stream::iter(events.into_iter().map(Ok::<_, Infallible>));
        (StatusCode::OK, headers, Body::from_stream(stream)).into_response()
    } else {
        (StatusCode::OK, headers, axum::Json(body)).into_response()
    };
    let ending = Ending {
        status: 200,
        model: Some(model),
        cost: Some(0.0),
        ..Ending::default()
    };
    (response, trace.finish(ending))
}

pub fn set_event_stream(headers: &mut HeaderMap) {
    headers.insert(
        "content-type",
        HeaderValue::from_static("text/event-stream"),
    );
    headers.insert("cache-control", HeaderValue::from_static("no-cache"));
}

/// The upstream's answer, whole or streamed.
fn respond(
    trace: Trace,
    success: Success,
    store: Option<StoreJob>,
    wants_usage: bool,
) -> (Response, Writes) {
    let Success {
        model,
        reply,
        pending,
        ..
    } = success;
    match reply {
        Reply::Full { body, usage } => respond_full(trace, &model, body, usage, store),
        Reply::Stream { first, rest } => {
            let expected = trace
                .plan
                .as_ref()
                .and_then(|p| p.decision.as_ref())
                .and_then(|d| d.ranked.iter().find(|r| r.model == model))
                .map(|r| r.cost_usd);
            let mut headers = HeaderMap::new();
            // The actual cost is known only at the end; the header carries the estimate.
            trace.explain(&mut headers, Some(&model), expected);
            set_event_stream(&mut headers);
            let deadline = tokio::time::Instant::from_std(trace.started() + trace.runtime.deadline);
            let (tx, rx) = tokio::sync::mpsc::channel::<Bytes>(32);
            let upstream = Upstream {
                model,
                first,
                rest,
                permit: pending,
            };
            tokio::spawn(relay(trace, upstream, wants_usage, deadline, tx, store));
            let body = Body::from_stream(futures_util::stream::unfold(rx, |mut rx| async move {
                rx.recv().await.map(|b| (Ok::<_, Infallible>(b), rx))
            }));
            // The relay finishes the trace when the stream ends.
            (
                (StatusCode::OK, headers, body).into_response(),
                Writes::default(),
            )
        }
    }
}

fn respond_full(
    trace: Trace,
    model: &str,
    mut body: Value,
    usage: Option<Usage>,
    store: Option<StoreJob>,
) -> (Response, Writes) {
    if let Some(obj) = body.as_object_mut() {
        obj.insert("model".into(), Value::String(model.to_owned()));
    }
    let cost = trace.runtime.cost_of(model, usage);
    if let Some(job) = store {
        job.store(&trace.state, &body, model);
    }
    let answer = trace
        .runtime
        .capture
        .answers
        .then(|| {
            body["choices"][0]["message"]["content"]
                .as_str()
                .map(str::to_owned)
        })
        .flatten();
    let mut response = (StatusCode::OK, axum::Json(body)).into_response();
    trace.explain(response.headers_mut(), Some(model), cost);
    let ending = Ending {
        status: 200,
        model: Some(model.to_owned()),
        usage,
        cost,
        error: None,
        usage_estimated: false,
        answer,
    };
    (response, trace.finish(ending))
}
