//! `POST /v1/chat/completions`: plan, forward with retries and fallback, answer (whole or
//! streamed), explain in headers, account, log.

use std::convert::Infallible;
use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::body::{Body, Bytes};
use axum::http::{HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use futures_util::StreamExt;
use serde_json::Value;
use switchyard_providers::{AttemptError, ChunkStream, ErrorClass, Reply, Usage};

use crate::error::ApiError;
use crate::plan::{ChatView, Plan, embed_prompt, ms, plan};
use crate::state::{AppState, Runtime};
use crate::tenants::{DEFAULT_TENANT, authenticate, sha256_hex};
use crate::traffic::{Attempt, TRAFFIC_VERSION, TrafficRecord, now_rfc3339};
use switchyard_cache::{Cache, CacheScope};

/// What every response carries, successful or not.
struct Context {
    state: Arc<AppState>,
    runtime: Arc<Runtime>,
    request_id: String,
    started: Instant,
    tenant: String,
    requested: String,
    prompt: String,
    stream: bool,
    plan: Option<Plan>,
    attempts: Vec<Attempt>,
    upstream_ms: f64,
    /// `hit`, `semantic-hit`, `miss` or `bypass`.
    cache: &'static str,
    cache_ms: f64,
    /// The served cache entry's id and, for a semantic hit, its score.
    cache_entry: Option<(String, Option<f32>)>,
}

/// What storing an answer in the cache needs.
struct StoreJob {
    cache: Arc<Cache>,
    scope: CacheScope,
    prompt: String,
    vector: Vec<f32>,
}

impl StoreJob {
    /// Stores the completion in the background; the client never waits for it.
    fn store(self, state: &Arc<AppState>, body: &Value, model: &str) {
        if !crate::cache::storable(body) {
            return;
        }
        let (state, response, model) = (state.clone(), body.to_string(), model.to_owned());
        tokio::spawn(async move {
            let outcome = match self
                .cache
                .insert(self.scope, &self.prompt, self.vector, response, &model)
                .await
            {
                Ok(_) => "ok",
                Err(e) => {
                    tracing::warn!(error = %e, "cache store failed");
                    "error"
                }
            };
            state.metrics.add(
                "switchyard_cache_stores_total",
                vec![("outcome", outcome.into())],
                1.0,
            );
        });
    }
}

impl Context {
    fn route_label(&self) -> String {
        match &self.plan {
            Some(Plan { route: Some(r), .. }) => r.clone(),
            Some(_) => "pinned".into(),
            None => "-".into(),
        }
    }

    fn explain(&self, headers: &mut HeaderMap, model: Option<&str>, cost: Option<f64>) {
        let mut set = |name: &'static str, value: String| {
            if let Ok(v) = HeaderValue::from_str(&value) {
                headers.insert(name, v);
            }
        };
        set("x-switchyard-request-id", self.request_id.clone());
        set("x-switchyard-route", self.route_label());
        set("x-switchyard-cache", self.cache.into());
        if let Some((id, score)) = &self.cache_entry {
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
        if let Some(d) = self.plan.as_ref().and_then(|p| p.decision.as_ref()) {
            if let Some(task) = d.task {
                set("x-switchyard-task", task.to_string());
            }
            if let Some(difficulty) = d.difficulty {
                set("x-switchyard-difficulty", format!("{difficulty:.3}"));
            }
            let chosen = model.unwrap_or(&d.chosen);
            if let Some(r) = d.ranked.iter().find(|r| r.model == chosen) {
                set(
                    "x-switchyard-predicted-quality",
                    format!("{:.3}", r.quality),
                );
            }
        }
    }

    /// Accounts, counts and logs the finished request.
    fn finish(
        self,
        status: u16,
        model: Option<&str>,
        usage: Option<Usage>,
        cost: Option<f64>,
        error: Option<String>,
    ) {
        let route = self.route_label();
        let m = &self.state.metrics;
        let served = model.unwrap_or("-").to_owned();
        m.add(
            "switchyard_requests_total",
            vec![
                ("route", route.clone()),
                ("model", served.clone()),
                ("status", status.to_string()),
            ],
            1.0,
        );
        m.observe(
            "switchyard_request_duration_seconds",
            vec![("route", route.clone())],
            self.started.elapsed().as_secs_f64(),
        );
        if let (Some(model), Some(first)) =
            (model, self.plan.as_ref().and_then(|p| p.order.first()))
            && model != first
        {
            m.add(
                "switchyard_fallbacks_total",
                vec![("route", route.clone())],
                1.0,
            );
        }
        if let Some(u) = usage {
            m.add(
                "switchyard_tokens_total",
                vec![("model", served.clone()), ("kind", "prompt".into())],
                u.prompt_tokens as f64,
            );
            m.add(
                "switchyard_tokens_total",
                vec![("model", served.clone()), ("kind", "completion".into())],
                u.completion_tokens as f64,
            );
            self.state.ledger.charge(
                &self.tenant,
                u.prompt_tokens + u.completion_tokens,
                cost.unwrap_or(0.0),
            );
        }
        if let Some(c) = cost {
            m.add("switchyard_cost_usd_total", vec![("model", served)], c);
        }
        let Some(log) = &self.state.log else { return };
        let mut latency = self
            .plan
            .as_ref()
            .map(|p| p.latency.clone())
            .unwrap_or_default();
        latency.upstream_ms = self.upstream_ms;
        latency.cache_ms = self.cache_ms;
        latency.total_ms = ms(self.started);
        let log_prompts = self.runtime.config.log.log_prompts;
        let record = TrafficRecord {
            v: TRAFFIC_VERSION,
            request_id: self.request_id,
            time: now_rfc3339(),
            tenant: self.tenant,
            route: self.plan.as_ref().and_then(|p| p.route.clone()),
            requested: self.requested,
            prompt_sha256: sha256_hex(self.prompt.as_bytes()),
            prompt: log_prompts.then_some(self.prompt),
            stream: self.stream,
            decision: self.plan.and_then(|p| p.decision),
            attempts: self.attempts,
            model: model.map(str::to_owned),
            usage,
            cost_usd: cost,
            cache: self.cache.into(),
            status,
            error,
            latency,
        };
        log.traffic(&record);
    }

    fn fail(self, error: ApiError) -> Response {
        let mut response = error.clone().into_response();
        self.explain(response.headers_mut(), None, None);
        let status = error.status.as_u16();
        if self.plan.is_none() {
            self.state.metrics.add(
                "switchyard_rejected_total",
                vec![("reason", error.kind.into())],
                1.0,
            );
        }
        self.finish(status, None, None, None, Some(error.message));
        response
    }
}

fn cost_of(runtime: &Runtime, model: &str, usage: Option<Usage>) -> Option<f64> {
    let (m, u) = (runtime.models.get(model)?, usage?);
    Some(
        m.price
            .cost(u.prompt_tokens as f64, u.completion_tokens as f64),
    )
}

pub async fn chat_completions(state: Arc<AppState>, headers: HeaderMap, body: Bytes) -> Response {
    let runtime = state.runtime();
    let mut ctx = Context {
        state: state.clone(),
        runtime: runtime.clone(),
        request_id: crate::state::RecentIds::new_id(),
        started: Instant::now(),
        tenant: DEFAULT_TENANT.into(),
        requested: String::new(),
        prompt: String::new(),
        stream: false,
        plan: None,
        attempts: Vec::new(),
        upstream_ms: 0.0,
        cache: "bypass",
        cache_ms: 0.0,
        cache_entry: None,
    };
    state.remember(&ctx.request_id);
    let tenant = match authenticate(&runtime.config.tenants, &headers) {
        Ok(t) => t,
        Err(e) => return ctx.fail(e),
    };
    if let Some((name, config)) = tenant {
        ctx.tenant = name.to_owned();
        if let Err(e) = state.ledger.admit(name, config) {
            return ctx.fail(e);
        }
    }
    let value: Value = match serde_json::from_slice(&body) {
        Ok(v) => v,
        Err(e) => {
            return ctx.fail(ApiError::invalid(format!(
                "the body is not valid JSON: {e}"
            )));
        }
    };
    let view = match ChatView::parse(&value) {
        Ok(v) => v,
        Err(e) => return ctx.fail(e),
    };
    ctx.requested = view.model.clone();
    ctx.prompt = view.prompt();
    ctx.stream = view.stream();
    let control = match crate::cache::control(&headers) {
        Ok(c) => c,
        Err(e) => return ctx.fail(ApiError::invalid(e).param(crate::cache::CONTROL_HEADER)),
    };
    // The cache's scope is the route, or the pinned model; a route may opt out.
    let cache_route = match runtime.routes.get(&view.model) {
        Some(r) if r.cache => Some((r.name.clone(), r.cache_threshold)),
        Some(_) => None,
        None if runtime.models.contains_key(&view.model) => Some((view.model.clone(), None)),
        None => None,
    };
    let cache = state
        .cache()
        .filter(|_| cache_route.is_some() && view.n.unwrap_or(1) == 1)
        // With both no-cache and no-store the cache has nothing to do for this request.
        .filter(|_| !ctx.prompt.trim().is_empty())
        .filter(|_| !(control.no_cache && control.no_store));
    let mut embedding = None;
    let mut embed_ms = 0.0;
    if let (Some(_), Some(router)) = (&cache, state.router.as_ref()) {
        let t = Instant::now();
        match embed_prompt(router, ctx.prompt.clone()).await {
            Ok(e) => embedding = Some(e),
            Err(e) => return ctx.fail(e),
        }
        embed_ms = ms(t);
    }
    let mut planned = match plan(&state, &runtime, tenant, &view, embedding.clone()).await {
        Ok(p) => p,
        Err(e) => return ctx.fail(e),
    };
    planned.latency.embed_ms += embed_ms;
    let mut store_job = None;
    if let (Some(cache), Some((route, threshold)), Some(vector)) = (cache, cache_route, embedding) {
        let scope = crate::cache::scope(&ctx.tenant, &route, &value);
        if control.no_cache {
            ctx.cache = "bypass";
        } else {
            let t = Instant::now();
            let found = cache
                .lookup(&scope, &ctx.prompt, &vector, control.max_age, threshold)
                .await;
            ctx.cache_ms = ms(t);
            let outcome = match &found {
                Ok(Some(f)) if f.exact => "hit",
                Ok(Some(_)) => "semantic_hit",
                Ok(None) => "miss",
                Err(e) => {
                    tracing::warn!(error = %e, "cache lookup failed; answering without it");
                    "error"
                }
            };
            state.metrics.add(
                "switchyard_cache_lookups_total",
                vec![("outcome", outcome.into())],
                1.0,
            );
            ctx.cache = if outcome == "error" { "bypass" } else { "miss" };
            if let Ok(Some(found)) = found
                && let Some(body) = crate::cache::replay_body(
                    &found.entry.response,
                    &ctx.request_id,
                    &found.entry.model,
                )
            {
                ctx.plan = Some(planned);
                ctx.cache = if found.exact { "hit" } else { "semantic-hit" };
                let score = (!found.exact)
                    .then(|| found.judgement.score(cache.settings().method))
                    .flatten();
                ctx.cache_entry = Some((found.entry.id.clone(), score));
                return answer_from_cache(ctx, &found.entry.model, body, view.wants_usage());
            }
        }
        if !control.no_store {
            store_job = Some(StoreJob {
                cache,
                scope,
                prompt: ctx.prompt.clone(),
                vector,
            });
        }
    }
    if let Some(route) = &planned.route {
        let l = &planned.latency;
        state.metrics.observe(
            "switchyard_routing_duration_seconds",
            vec![("route", route.clone())],
            (l.embed_ms + l.classify_ms + l.score_ms) / 1e3,
        );
    }
    let order = planned.order.clone();
    ctx.plan = Some(planned);
    let deadline = ctx.started + runtime.deadline;
    let t = Instant::now();
    let result = forward(
        &state,
        &runtime,
        &order,
        value,
        ctx.stream,
        deadline,
        &mut ctx.attempts,
    )
    .await;
    ctx.upstream_ms = ms(t);
    let (model, reply) = match result {
        Ok(ok) => ok,
        Err(e) => return ctx.fail(e),
    };
    match reply {
        Reply::Full { mut body, usage } => {
            if let Some(obj) = body.as_object_mut() {
                obj.insert("model".into(), Value::String(model.clone()));
            }
            let cost = cost_of(&runtime, &model, usage);
            if let Some(job) = store_job {
                job.store(&state, &body, &model);
            }
            let mut response = (StatusCode::OK, axum::Json(body)).into_response();
            ctx.explain(response.headers_mut(), Some(&model), cost);
            ctx.finish(200, Some(&model), usage, cost, None);
            response
        }
        Reply::Stream { first, rest } => {
            let expected = ctx
                .plan
                .as_ref()
                .and_then(|p| p.decision.as_ref())
                .and_then(|d| d.ranked.iter().find(|r| r.model == model))
                .map(|r| r.cost_usd);
            let mut headers = HeaderMap::new();
            // The actual cost is known only at the end; the header carries the estimate.
            ctx.explain(&mut headers, Some(&model), expected);
            headers.insert(
                "content-type",
                HeaderValue::from_static("text/event-stream"),
            );
            headers.insert("cache-control", HeaderValue::from_static("no-cache"));
            let wants_usage = view.wants_usage();
            let deadline = tokio::time::Instant::from_std(deadline);
            let (tx, rx) = tokio::sync::mpsc::channel::<Bytes>(32);
            tokio::spawn(pump(
                ctx,
                Upstream { model, first, rest },
                wants_usage,
                deadline,
                tx,
                store_job,
            ));
            let body = Body::from_stream(futures_util::stream::unfold(rx, |mut rx| async move {
                rx.recv().await.map(|b| (Ok::<_, Infallible>(b), rx))
            }));
            (StatusCode::OK, headers, body).into_response()
        }
    }
}

/// A stored answer, as JSON or replayed as an SSE stream; free, and no provider is called.
fn answer_from_cache(ctx: Context, model: &str, body: Value, wants_usage: bool) -> Response {
    let mut headers = HeaderMap::new();
    ctx.explain(&mut headers, Some(model), Some(0.0));
    let response = if ctx.stream {
        headers.insert(
            "content-type",
            HeaderValue::from_static("text/event-stream"),
        );
        headers.insert("cache-control", HeaderValue::from_static("no-cache"));
        let events = crate::cache::replay_stream(&body, wants_usage);
        let stream = futures_util::stream::iter(events.into_iter().map(Ok::<_, Infallible>));
        (StatusCode::OK, headers, Body::from_stream(stream)).into_response()
    } else {
        (StatusCode::OK, headers, axum::Json(body)).into_response()
    };
    ctx.finish(200, Some(model), None, Some(0.0), None);
    response
}

/// The upstream's answer as it started streaming.
struct Upstream {
    model: String,
    first: Value,
    rest: ChunkStream,
}

fn sse(value: &Value) -> Bytes {
    Bytes::from(format!("data: {value}\n\n"))
}

/// Copies the upstream's chunks to the client; on the end, accounts and logs.
async fn pump(
    ctx: Context,
    upstream: Upstream,
    wants_usage: bool,
    deadline: tokio::time::Instant,
    tx: tokio::sync::mpsc::Sender<Bytes>,
    store_job: Option<StoreJob>,
) {
    let Upstream {
        model,
        first,
        mut rest,
    } = upstream;
    let mut capture = store_job
        .as_ref()
        .map(|_| crate::cache::StreamCapture::default());
    let mut usage: Option<Usage> = None;
    let mut next = Some(Ok(first));
    let mut error: Option<String> = None;
    let mut client_gone = false;
    while let Some(item) = next.take() {
        match item {
            Ok(mut chunk) => {
                if let Some(u) = chunk.get("usage").and_then(Usage::from_openai) {
                    usage = Some(u);
                }
                if let Some(c) = capture.as_mut() {
                    c.push(&chunk);
                }
                let usage_only = chunk
                    .get("choices")
                    .and_then(Value::as_array)
                    .is_some_and(Vec::is_empty);
                if !usage_only || wants_usage {
                    if let Some(obj) = chunk.as_object_mut() {
                        obj.insert("model".into(), Value::String(model.clone()));
                        if !wants_usage {
                            obj.remove("usage");
                        }
                    }
                    if tx.send(sse(&chunk)).await.is_err() {
                        client_gone = true;
                        break;
                    }
                }
            }
            Err(e) => {
                let e: AttemptError = e;
                let body = serde_json::json!({"error": {"message": format!("the upstream stream broke after it started, so it cannot fall back: {}", e.message), "type": "upstream_error", "param": null, "code": e.class.as_str()}});
                let _ = tx.send(sse(&body)).await;
                error = Some(e.message);
                break;
            }
        }
        next = match tokio::time::timeout_at(deadline, rest.next()).await {
            Ok(n) => n,
            Err(_) => Some(Err(AttemptError::new(
                ErrorClass::Timeout,
                "the request deadline passed mid-stream",
            ))),
        };
    }
    if error.is_none() && !client_gone {
        let _ = tx.send(Bytes::from_static(b"data: [DONE]\n\n")).await;
    }
    if client_gone {
        error = Some("the client disconnected mid-stream".into());
    }
    if error.is_none()
        && let (Some(job), Some(capture)) = (store_job, capture)
        && let Some(body) = capture.finish(&model)
    {
        job.store(&ctx.state, &body, &model);
    }
    let cost = cost_of(&ctx.runtime, &model, usage);
    ctx.finish(200, Some(&model), usage, cost, error);
}

/// Tries the models in order: retries per target, fallback across targets, breakers.
pub async fn forward(
    state: &AppState,
    runtime: &Runtime,
    order: &[String],
    mut request: Value,
    stream: bool,
    deadline: Instant,
    attempts: &mut Vec<Attempt>,
) -> Result<(String, Reply), ApiError> {
    let mut failures: Vec<String> = Vec::new();
    let mut all_breakers_open = true;
    for model in order {
        let Some(m) = runtime.models.get(model) else {
            continue;
        };
        let Some(provider) = runtime.providers.get(&m.provider) else {
            continue;
        };
        let breaker = state.breaker(model, runtime.breaker);
        // The one request body, re-pointed at each model in turn (cloned only per send).
        if let Some(obj) = request.as_object_mut() {
            obj.insert("model".into(), Value::String(m.upstream_model.clone()));
        }
        let mut last: Option<AttemptError> = None;
        for retry in 0..=runtime.retry.max_retries {
            let now = Instant::now();
            if now >= deadline {
                return Err(deadline_error(runtime.deadline, &failures));
            }
            if !breaker.try_acquire() {
                attempts.push(Attempt {
                    model: model.clone(),
                    status: None,
                    latency_ms: 0.0,
                    error_class: Some(ErrorClass::BreakerOpen),
                    error: Some("circuit breaker open".into()),
                });
                state.metrics.add(
                    "switchyard_attempts_total",
                    vec![("model", model.clone()), ("outcome", "breaker_open".into())],
                    1.0,
                );
                last = Some(AttemptError::new(
                    ErrorClass::BreakerOpen,
                    format!("{model}: circuit breaker open"),
                ));
                break;
            }
            all_breakers_open = false;
            let started = Instant::now();
            let result =
                match tokio::time::timeout(deadline - now, provider.chat(request.clone(), stream))
                    .await
                {
                    Ok(r) => r,
                    Err(_) => Err(AttemptError::new(
                        ErrorClass::Timeout,
                        format!("{model}: the request deadline passed"),
                    )),
                };
            let latency = started.elapsed();
            state.metrics.observe(
                "switchyard_upstream_duration_seconds",
                vec![("model", model.clone())],
                latency.as_secs_f64(),
            );
            match result {
                Ok(reply) => {
                    breaker.record(true);
                    state.metrics.add(
                        "switchyard_attempts_total",
                        vec![("model", model.clone()), ("outcome", "ok".into())],
                        1.0,
                    );
                    attempts.push(Attempt {
                        model: model.clone(),
                        status: Some(200),
                        latency_ms: latency.as_secs_f64() * 1e3,
                        error_class: None,
                        error: None,
                    });
                    return Ok((model.clone(), reply));
                }
                Err(e) => {
                    breaker.record(!e.counts_against_target());
                    state.metrics.add(
                        "switchyard_attempts_total",
                        vec![
                            ("model", model.clone()),
                            ("outcome", e.class.as_str().into()),
                        ],
                        1.0,
                    );
                    tracing::warn!(model = %model, class = e.class.as_str(), error = %e.message, "upstream attempt failed");
                    attempts.push(Attempt {
                        model: model.clone(),
                        status: e.status,
                        latency_ms: latency.as_secs_f64() * 1e3,
                        error_class: Some(e.class),
                        error: Some(e.message.clone()),
                    });
                    if !e.falls_back() {
                        let status = e
                            .status
                            .and_then(|s| StatusCode::from_u16(s).ok())
                            .unwrap_or(StatusCode::BAD_REQUEST);
                        return Err(ApiError::new(
                            status,
                            "invalid_request_error",
                            format!("the upstream refused the request: {}", e.message),
                        ));
                    }
                    let retry_now = e.retryable() && retry < runtime.retry.max_retries;
                    let delay = runtime.retry.delay(retry, e.retry_after);
                    last = Some(e);
                    if !retry_now {
                        break;
                    }
                    let left = deadline.saturating_duration_since(Instant::now());
                    tokio::time::sleep(delay.min(left)).await;
                }
            }
        }
        if let Some(e) = last {
            failures.push(e.message);
        }
    }
    if all_breakers_open && !order.is_empty() {
        return Err(ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "server_error",
            format!(
                "every model for this request is failing (circuit breakers open: {}); retry later",
                order.join(", ")
            ),
        )
        .retry_after(runtime.breaker.open_for.as_secs().max(1)));
    }
    Err(ApiError::new(
        StatusCode::BAD_GATEWAY,
        "upstream_error",
        format!("every model failed: {}", failures.join("; ")),
    )
    .code("upstream_failed"))
}

fn deadline_error(deadline: Duration, failures: &[String]) -> ApiError {
    ApiError::new(
        StatusCode::GATEWAY_TIMEOUT,
        "upstream_error",
        format!(
            "the request deadline of {} ms passed{}",
            deadline.as_millis(),
            if failures.is_empty() {
                String::new()
            } else {
                format!(" after: {}", failures.join("; "))
            }
        ),
    )
    .code("deadline_exceeded")
}
