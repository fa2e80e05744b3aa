//! The axum application: its routes and handlers. Handlers read the request, call the
//! pipeline or the runtime, and answer; errors convert into [`ApiError`] with `?`.

use std::sync::Arc;

use axum::body::{Body, Bytes};
use axum::extract::{DefaultBodyLimit, Request, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use serde::Deserialize;
use serde_json::{Value, json};
use switchyard_core::{Embedder, Truncation};

use crate::error::{ApiError, ErrorKind, parse_body};
use crate::limits::tenants::{may_use_model, may_use_route};
use crate::limits::{DEFAULT_TENANT, LimitError, authenticate, sha256_hex};
use crate::pipeline::chat::{chat_completions, route_only};
use crate::runtime::AppState;
use crate::runtime::lifecycle::env;
use crate::runtime::routers::{RollbackError, promote_and_publish, rollback};
use crate::traffic::{FeedbackRecord, now_rfc3339};

type Shared = State<Arc<AppState>>;

pub fn app(state: Arc<AppState>) -> Router {
    Router::new()
        .route("/v1/chat/completions", post(chat))
        .route("/v1/route", post(route))
        .route("/v1/models", get(models))
        .route("/v1/embeddings", post(embeddings))
        .route("/v1/feedback", post(feedback))
        .route("/v1/cache/invalidate", post(invalidate_cache))
        .route("/admin/router", post(promote_router))
        .route("/admin/router/history", get(router_history))
        .route("/admin/router/rollback", post(rollback_router))
        .route("/health", get(|| async { Json(json!({"status": "ok"})) }))
        .route("/ready", get(ready))
        .route("/metrics", get(metrics))
        .fallback(not_found)
        .method_not_allowed_fallback(method_not_allowed)
        // Bodies are read by `read_body` with the configured limit and an OpenAI-style 413.
        .layer(DefaultBodyLimit::disable())
        .with_state(state)
}

async fn not_found(request: Request) -> ApiError {
    ApiError::new(
        ErrorKind::NotFound,
        format!("no endpoint {} {}", request.method(), request.uri().path()),
    )
}

async fn method_not_allowed(request: Request) -> ApiError {
    ApiError::new(
        ErrorKind::MethodNotAllowed,
        format!(
            "{} does not accept {} (docs/gateway.md lists the endpoints)",
            request.uri().path(),
            request.method()
        ),
    )
}

/// The whole body, within `server.max_body_bytes` and `server.body_timeout_ms`.
async fn read_body(state: &AppState, body: Body) -> Result<Bytes, ApiError> {
    let edge = state.runtime().edge.clone();
    let (limit, timeout) = (edge.max_body_bytes, edge.body_timeout);
    match tokio::time::timeout(timeout, axum::body::to_bytes(body, limit)).await {
        Ok(Ok(bytes)) => Ok(bytes),
        Ok(Err(_)) => Err(ApiError::new(
            ErrorKind::PayloadTooLarge,
            format!("the request body is larger than {limit} bytes (server.max_body_bytes)"),
        )),
        Err(_) => Err(ApiError::new(
            ErrorKind::RequestTimeout,
            format!(
                "the request body did not arrive within {} ms (server.body_timeout_ms)",
                timeout.as_millis()
            ),
        )),
    }
}

async fn chat(State(state): Shared, headers: HeaderMap, body: Body) -> Response {
    match read_body(&state, body).await {
        Ok(bytes) => chat_completions(state, headers, bytes).await,
        Err(e) => e.into_response(),
    }
}

fn parse_json(bytes: &[u8]) -> Result<Value, ApiError> {
    serde_json::from_slice(bytes)
        .map_err(|e| ApiError::invalid(format!("the body is not valid JSON: {e}")))
}

/// `POST /v1/route`: the decision for a chat request, without calling any provider.
async fn route(
    State(state): Shared,
    headers: HeaderMap,
    body: Body,
) -> Result<Json<Value>, ApiError> {
    let runtime = state.runtime();
    let tenant = authenticate(&runtime.tenants, &headers)?;
    let body = read_body(&state, body).await?;
    Ok(Json(route_only(&state, &runtime, tenant, &body).await?))
}

/// The routes and models a caller may use. With tenants configured and
/// `server.models_need_key` (the default) it needs a key, and lists only what that
/// tenant's allow-lists let it use.
async fn models(State(state): Shared, headers: HeaderMap) -> Result<Json<Value>, ApiError> {
    let runtime = state.runtime();
    let tenant = if runtime.edge.models_need_key {
        authenticate(&runtime.tenants, &headers)?.map(|(_, t)| t)
    } else {
        None
    };
    let mut data: Vec<Value> = runtime
        .routes
        .values()
        .filter(|r| may_use_route(tenant, &r.name))
        .map(|r| json!({"id": r.name, "object": "model", "created": 0, "owned_by": "switchyard",
                        "switchyard": {"kind": "route", "models": r.models.iter().map(|m| &m.id).collect::<Vec<_>>(), "policy": r.policy.to_string()}}))
        .collect();
    data.extend(runtime.models.values().filter(|m| may_use_model(tenant, &m.id)).map(|m| {
        json!({"id": m.id, "object": "model", "created": 0, "owned_by": m.provider,
               "switchyard": {"kind": "model", "upstream_model": m.upstream_model,
                              "input_per_mtok": m.price.input_per_mtok, "output_per_mtok": m.price.output_per_mtok,
                              "quality_like": m.quality_like}})
    }));
    Ok(Json(json!({"object": "list", "data": data})))
}

#[derive(Debug, Deserialize)]
#[serde(untagged)]
enum EmbeddingInput {
    One(String),
    Many(Vec<String>),
}

#[derive(Debug, Deserialize)]
struct EmbeddingRequest {
    input: EmbeddingInput,
    #[serde(default)]
    model: Option<String>,
    #[serde(default)]
    encoding_format: Option<String>,
}

/// Most inputs in one `/v1/embeddings` request (OpenAI's own limit).
const MAX_EMBEDDING_INPUTS: usize = 2048;

async fn embeddings(
    State(state): Shared,
    headers: HeaderMap,
    body: Body,
) -> Result<Json<Value>, ApiError> {
    let runtime = state.runtime();
    authenticate(&runtime.tenants, &headers)?;
    let value = parse_json(&read_body(&state, body).await?)?;
    let request: EmbeddingRequest = parse_body(&value, "must be a string or an array of strings")?;
    if request
        .encoding_format
        .as_deref()
        .is_some_and(|f| f != "float")
    {
        return Err(
            ApiError::invalid("encoding_format: only \"float\" is supported")
                .param("encoding_format"),
        );
    }
    let Some(router) = state.router.as_ref() else {
        return Err(ApiError::new(
            ErrorKind::Unavailable,
            "the encoder is not loaded ([router] enabled = false)",
        ));
    };
    let id = router.worker.info().id.clone();
    if let Some(m) = &request.model
        && !(m == &id || id.ends_with(&format!("/{m}")) || m == "switchyard-encoder")
    {
        return Err(ApiError::new(
            ErrorKind::ModelNotFound,
            format!("this gateway embeds with {id:?} only (model {m:?} is not served)"),
        )
        .param("model"));
    }
    let texts = match request.input {
        EmbeddingInput::One(s) => vec![s],
        EmbeddingInput::Many(v) => v,
    };
    if texts.len() > MAX_EMBEDDING_INPUTS {
        return Err(ApiError::invalid(format!(
            "input: at most {MAX_EMBEDDING_INPUTS} inputs per request"
        ))
        .param("input"));
    }
    // sentence-transformers' truncation (the head), so vectors match the reference model.
    let encoded = router.worker.encode_as(texts, Truncation::Head).await?;
    let tokens: usize = encoded.iter().map(|e| e.tokens).sum();
    let data: Vec<Value> = encoded
        .into_iter()
        .enumerate()
        .map(|(i, e)| json!({"object": "embedding", "index": i, "embedding": e.embedding}))
        .collect();
    Ok(Json(json!({"object": "list", "data": data, "model": id,
                   "usage": {"prompt_tokens": tokens, "total_tokens": tokens}})))
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Feedback {
    request_id: String,
    score: f64,
    #[serde(default)]
    comment: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct InvalidateBody {
    tenant: Option<String>,
    route: Option<String>,
    id: Option<String>,
    #[serde(default)]
    all: bool,
}

/// Checks the admin key (the value of env var `var`) of an admin endpoint, `what`, which
/// `setting` switches on.
fn admin_only(
    headers: &HeaderMap,
    var: Option<&str>,
    what: &str,
    setting: &str,
) -> Result<(), ApiError> {
    let forbidden = |m: String| ApiError::new(ErrorKind::Forbidden, m);
    let Some(var) = var else {
        return Err(forbidden(format!(
            "{what} is off: set {setting} to the name of an env var holding an admin key"
        )));
    };
    let Some(admin) = env(var) else {
        return Err(forbidden(format!(
            "{what} is off: the environment variable {var} is not set"
        )));
    };
    let given = headers
        .get("authorization")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "));
    if given.map(|g| sha256_hex(g.as_bytes())) != Some(sha256_hex(admin.as_bytes())) {
        return Err(ApiError::new(
            ErrorKind::AdminKeyRequired,
            format!("{what} needs the admin key as `Authorization: Bearer KEY`"),
        ));
    }
    Ok(())
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct PromoteBody {
    /// A scorer directory (manifest.json, weights.json) trained on the configured heads.
    scorer: std::path::PathBuf,
}

/// `POST /admin/router`: serve with another scorer from now on, without a restart or a
/// dropped request; one that fails to load or validate is refused (422) and the running
/// router stays. Needs the admin key named by `[router] admin_key_env`.
async fn promote_router(
    State(state): Shared,
    headers: HeaderMap,
    body: Body,
) -> Result<Json<Value>, ApiError> {
    let (previous, b): (_, PromoteBody) =
        router_admin(&state, &headers, body, "router promotion").await?;
    // With shared state, the other replicas follow within `[state] router_poll_ms`.
    let (version, published) = promote_and_publish(&state, &b.scorer, "promote")
        .await
        .map_err(refused_router)?;
    Ok(Json(
        json!({"status": "promoted", "router_version": version, "previous": previous, "published": published}),
    ))
}

/// The checks every router admin call shares: the admin key (`[router] admin_key_env`),
/// then the body as `T`; returns the version serving before the call and the body.
async fn router_admin<T: serde::de::DeserializeOwned>(
    state: &AppState,
    headers: &HeaderMap,
    body: Body,
    what: &str,
) -> Result<(Option<String>, T), ApiError> {
    let runtime = state.runtime();
    let var = runtime.edge.router_admin_key_env.as_deref();
    admin_only(headers, var, what, "[router] admin_key_env")?;
    let value = parse_json(&read_body(state, body).await?)?;
    let parsed: T = parse_body(&value, "invalid value")?;
    let previous = runtime.router.as_ref().map(|r| r.version().to_owned());
    Ok((previous, parsed))
}

fn refused_router(e: String) -> ApiError {
    ApiError::new(
        ErrorKind::UnprocessableRouter,
        format!("{e}; the running router stays"),
    )
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RollbackBody {
    /// A version from `GET /admin/router/history`.
    version: String,
}

/// `GET /admin/router/history`: the router serving here, and the promotions and rollbacks
/// kept in the shared state, newest first. Needs the admin key.
async fn router_history(State(state): Shared, headers: HeaderMap) -> Result<Json<Value>, ApiError> {
    let runtime = state.runtime();
    let var = runtime.edge.router_admin_key_env.as_deref();
    admin_only(&headers, var, "router history", "[router] admin_key_env")?;
    let shared = state
        .limits
        .shared
        .as_ref()
        .ok_or(LimitError::NoSharedState)?;
    let history = shared.router_history().await?;
    let serving = runtime.router.as_ref().map(|r| r.version().to_owned());
    Ok(Json(json!({"serving": serving, "history": history})))
}

/// `POST /admin/router/rollback` `{"version"}`: serve a router from the history again,
/// here and on every replica. Needs the admin key.
async fn rollback_router(
    State(state): Shared,
    headers: HeaderMap,
    body: Body,
) -> Result<Json<Value>, ApiError> {
    let (previous, b): (_, RollbackBody) =
        router_admin(&state, &headers, body, "router rollback").await?;
    let version = rollback(&state, &b.version).await.map_err(|e| match e {
        RollbackError::Shared(e) => ApiError::from(e),
        RollbackError::Unknown(_) => {
            ApiError::new(ErrorKind::NotFound, e.to_string()).param("version")
        }
        RollbackError::Refused(e) => refused_router(e),
    })?;
    Ok(Json(
        json!({"status": "rolled back", "router_version": version, "previous": previous}),
    ))
}

/// Removes cached answers: one entry, a tenant's, a route's, or all. Needs the admin key
/// named by `[cache] admin_key_env`.
async fn invalidate_cache(
    State(state): Shared,
    headers: HeaderMap,
    body: Body,
) -> Result<Json<Value>, ApiError> {
    use switchyard_cache::Invalidate;
    let runtime = state.runtime();
    let var = runtime.edge.cache_admin_key_env.as_deref();
    admin_only(&headers, var, "cache invalidation", "[cache] admin_key_env")?;
    let value = parse_json(&read_body(&state, body).await?)?;
    let b: InvalidateBody = parse_body(&value, "invalid value")?;
    let what = match (b.tenant, b.route, b.id, b.all) {
        (Some(t), None, None, false) => Invalidate::Tenant(t),
        (None, Some(r), None, false) => Invalidate::Route(r),
        (None, None, Some(id), false) => Invalidate::Entry(id),
        (None, None, None, true) => Invalidate::All,
        _ => {
            return Err(ApiError::invalid(
                "give exactly one of tenant, route, id, or \"all\": true",
            ));
        }
    };
    let Some(cache) = state.cache() else {
        return Err(ApiError::new(
            ErrorKind::Unavailable,
            "the cache is not ready (GET /ready says why)",
        ));
    };
    let removed = cache
        .backend()
        .invalidate(what)
        .await
        .map_err(ApiError::internal)?;
    Ok(Json(json!({"removed": removed})))
}

async fn feedback(
    State(state): Shared,
    headers: HeaderMap,
    body: Body,
) -> Result<Json<Value>, ApiError> {
    let runtime = state.runtime();
    let tenant = authenticate(&runtime.tenants, &headers)?;
    let value = parse_json(&read_body(&state, body).await?)?;
    let f: Feedback = parse_body(&value, "invalid value")?;
    if !(0.0..=1.0).contains(&f.score) {
        return Err(ApiError::invalid("score: must be between 0 and 1").param("score"));
    }
    if f.comment.as_ref().is_some_and(|c| c.len() > 4096) {
        return Err(ApiError::invalid("comment: at most 4096 bytes").param("comment"));
    }
    let tenant = tenant.map_or(DEFAULT_TENANT, |t| t.0);
    // Another tenant's request gets the same answer as an unknown id: ids are not probed.
    if !state.limits.knows(&f.request_id, tenant).await? {
        return Err(ApiError::new(
            ErrorKind::NotFound,
            format!(
                "no recent request {:?} of yours (ids come from the x-switchyard-request-id header)",
                f.request_id
            ),
        )
        .param("request_id"));
    }
    let Some(log) = &state.log else {
        return Err(ApiError::new(
            ErrorKind::Unavailable,
            "the traffic log is off ([log] enabled = false), so feedback cannot be stored",
        ));
    };
    log.feedback(&FeedbackRecord {
        request_id: f.request_id.clone(),
        score: f.score,
        comment: f.comment,
        tenant: tenant.to_owned(),
        time: now_rfc3339(),
    });
    Ok(Json(
        json!({"status": "recorded", "request_id": f.request_id}),
    ))
}

async fn ready(State(state): Shared) -> Response {
    let runtime = state.runtime();
    let router = state
        .router
        .as_ref()
        .zip(runtime.router.as_ref())
        .map(|(r, router)| {
            json!({
                "encoder": r.worker.info().describe(),
                "heads": "loaded",
                "scorer_models": router.scorer().model_ids().len(),
                "router_version": router.version(),
            })
        });
    let body = json!({
        "status": "ready",
        "router": router,
        "models": runtime.models.keys().collect::<Vec<_>>(),
        "routes": runtime.routes.keys().collect::<Vec<_>>(),
        "cache": state
            .cache
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .describe(),
        "shared_state": state.limits.shared.as_ref().map(|s| s.describe()),
    });
    (StatusCode::OK, Json(body)).into_response()
}

/// Prometheus metrics; behind a tenant's key only with `server.metrics_need_key`.
async fn metrics(State(state): Shared, headers: HeaderMap) -> Response {
    let runtime = state.runtime();
    if runtime.edge.metrics_need_key
        && let Err(e) = authenticate(&runtime.tenants, &headers)
    {
        return ApiError::from(e).into_response();
    }
    for model in runtime.models.keys() {
        let open = state.breaker(model, runtime.breaker).state()
            == switchyard_providers::BreakerState::Open;
        state.metrics.breaker_open(model, open);
    }
    (
        [("content-type", crate::metrics::CONTENT_TYPE)],
        state.metrics.render(),
    )
        .into_response()
}
