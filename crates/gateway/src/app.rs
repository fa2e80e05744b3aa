//! The axum application: routes, the smaller endpoints, start-up and SIGHUP reloads.

use std::path::PathBuf;
use std::sync::{Arc, Mutex, RwLock};
use std::time::Instant;

use axum::body::{Body, Bytes};
use axum::extract::{DefaultBodyLimit, Request, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use serde::Deserialize;
use serde_json::{Value, json};
use switchyard_core::{Embedder, Truncation};

use crate::cache::{CacheState, Prepared};
use crate::chat::chat_completions;
use crate::config::{Config, ConfigError};
use crate::error::{ApiError, ErrorKind, parse_body};
use crate::plan::{embed_error, embed_prompt, plan, resolve};
use crate::request::ChatView;

use crate::state::{AppState, RouterStack, Runtime};
use crate::tenants::{DEFAULT_TENANT, authenticate};
use crate::traffic::{FeedbackRecord, Rotation, TrafficLog, now_rfc3339};

type Shared = State<Arc<AppState>>;

/// Where the config comes from.
#[derive(Debug, Clone)]
pub enum ConfigSource {
    File(PathBuf),
    /// No file: providers from API-key variables ([`Config::from_env`]).
    Environment,
}

fn env(name: &str) -> Option<String> {
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
pub fn preflight(config: &Config, router: Option<&RouterStack>) -> Result<(), String> {
    if config.log.enabled {
        writable_dir(&config.log.dir).map_err(|e| {
            format!(
                "log.dir: cannot write to {}: {e} (choose another log.dir, or set log.enabled = false)",
                config.log.dir.display()
            )
        })?;
    }
    crate::cache::prepare(&config.cache, router.map(|r| r.worker.info()), &env)?;
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

fn load_router(config: &Config) -> Result<LoadedRouter, String> {
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
fn open_log(config: &Config) -> Result<Option<TrafficLog>, String> {
    if !config.log.enabled {
        return Ok(None);
    }
    let rotation = Rotation {
        max_bytes: config.log.max_bytes,
        max_age: std::time::Duration::from_secs(config.log.max_age_s),
    };
    TrafficLog::start(&config.log.dir, rotation)
        .map(Some)
        .map_err(|e| format!("log.dir: cannot use {}: {e}", config.log.dir.display()))
}

/// The semantic cache as configured. A cache that cannot open (unwritable or full
/// directory, a directory made for another encoder) must not keep the gateway down: it
/// serves uncached and says why in the log and in /ready.
fn open_cache(
    config: &Config,
    router: Option<&RouterStack>,
) -> Result<(CacheState, Option<crate::cache::CachePlan>), String> {
    let plan = match crate::cache::prepare(&config.cache, router.map(|r| r.worker.info()), &env)? {
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

/// Builds the whole state: router, runtime, traffic log.
pub fn build_state(source: &ConfigSource, config: Config) -> Result<Arc<AppState>, String> {
    let (router, learned) = load_router(&config)?;
    // Requests answered before a restart can still get feedback: their ids are in the log.
    let mut recent = crate::state::RecentIds::default();
    if config.log.enabled {
        recent.load(&config.log.dir);
    }
    let log = open_log(&config)?;
    let (cache, cache_plan) = open_cache(&config, router.as_ref())?;
    let metrics = Arc::new(crate::metrics::Metrics::default());
    let shared = crate::shared::Shared::open(&config.state, &env, metrics.clone())?;
    if let Some(s) = &shared {
        tracing::info!(at = %s.describe()["at"], "limits, request ids and promotions shared through Redis");
    }
    let telemetry = crate::telemetry::Telemetry::start(&config.telemetry, &env)?;
    if telemetry.is_some() {
        tracing::info!("exporting traces over OTLP/HTTP");
    }
    let explore_draws = crate::state::ExploreDraws::new(config.router.explore_seed);
    let runtime = Runtime::build(config, learned, &env).map_err(|e| e.to_string())?;
    Ok(Arc::new(AppState {
        router,
        runtime: RwLock::new(Arc::new(runtime)),
        breakers: Mutex::default(),
        ledger: Default::default(),
        explore_spend: Default::default(),
        explore_draws,
        metrics,
        shared,
        telemetry,
        log,
        recent: Mutex::new(recent),
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
pub fn reload(state: &AppState) -> Result<(), String> {
    let Some(path) = &state.config_path else {
        return Err("no config file to reload (started without --config)".into());
    };
    let config = Config::load(path).map_err(|e| e.to_string())?;
    let old = state.runtime();
    if config.router.encoder != old.config.router.encoder
        || config.router.enabled != old.config.router.enabled
        || config.router.device != old.config.router.device
    {
        tracing::warn!("[router] encoder, device and enabled take effect only on restart");
    }
    let router = match &state.router {
        Some(stack) if old.router.is_some() => Some(Arc::new(
            stack.load_router(&config.router.heads, &config.router.scorer)?,
        )),
        _ => old.router.clone(),
    };
    let runtime = Runtime::build(config, router, &env).map_err(|e| e.to_string())?;
    log_router_change(&old, &runtime);
    state.swap_runtime(runtime);
    Ok(())
}

/// Serves with the router whose scorer is in `scorer_dir` (trained on the configured
/// heads) from now on, if it loads and knows, or has priors for, every model the learned
/// routes use; otherwise the running router stays. Returns the new router's version.
pub fn promote(state: &AppState, scorer_dir: &std::path::Path) -> Result<String, String> {
    let Some(stack) = &state.router else {
        return Err("the learned router is not loaded ([router] enabled = false)".into());
    };
    let old = state.runtime();
    let router = stack.load_router(&old.config.router.heads, scorer_dir)?;
    let version = router.version().to_owned();
    let runtime = Runtime::build(old.config.clone(), Some(Arc::new(router)), &env)
        .map_err(|e| format!("{}: {e}", scorer_dir.display()))?;
    log_router_change(&old, &runtime);
    state.swap_runtime(runtime);
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

pub fn app(state: Arc<AppState>) -> Router {
    Router::new()
        .route("/v1/chat/completions", post(chat))
        .route("/v1/route", post(route))
        .route("/v1/models", get(models))
        .route("/v1/embeddings", post(embeddings))
        .route("/v1/feedback", post(feedback))
        .route("/v1/cache/invalidate", post(invalidate_cache))
        .route("/admin/router", post(promote_router))
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
            "{} does not accept {} (see the README's endpoint list)",
            request.uri().path(),
            request.method()
        ),
    )
}

/// The whole body, within `server.max_body_bytes` and `server.body_timeout_ms`.
async fn read_body(state: &AppState, body: Body) -> Result<Bytes, ApiError> {
    let server = &state.runtime().config.server;
    let (limit, timeout) = (
        server.max_body_bytes,
        std::time::Duration::from_millis(server.body_timeout_ms),
    );
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
    let tenant = authenticate(&runtime.config.tenants, &headers)?;
    let value = parse_json(&read_body(&state, body).await?)?;
    let view = ChatView::parse(&value)?;
    let mut resolved = resolve(&runtime, tenant, &view.model)?;
    // A dry run shows the policy's own decision: it never explores.
    resolved.explore = false;
    let prompt = view.prompt();
    let mut embed_ms = 0.0;
    let embedding = match state.router.as_ref() {
        Some(stack) if resolved.target.routes_on_embedding() && !prompt.trim().is_empty() => {
            let t = Instant::now();
            let e = embed_prompt(stack, prompt).await?;
            embed_ms = crate::plan::ms(t);
            Some(e)
        }
        _ => None,
    };
    let mut p = plan(&state, &runtime, &resolved, &view, embedding.as_deref())?;
    p.latency.embed_ms = embed_ms;
    // The policy's decision as `switchyard route` shows it: no draw, so no propensity.
    if let Some(d) = p.decision.as_mut() {
        d.propensity = None;
    }
    Ok(Json(json!({
        "route": p.route,
        "model": p.order.first(),
        "order": p.order,
        "decision": p.decision,
        "latency_ms": p.latency,
    })))
}

/// The routes and models a caller may use. With tenants configured and
/// `server.models_need_key` (the default) it needs a key, and lists only what that
/// tenant's allow-lists let it use.
async fn models(State(state): Shared, headers: HeaderMap) -> Result<Json<Value>, ApiError> {
    let runtime = state.runtime();
    let tenant = if runtime.config.server.models_need_key {
        authenticate(&runtime.config.tenants, &headers)?.map(|(_, t)| t)
    } else {
        None
    };
    let route_ok = |name: &str| {
        tenant
            .and_then(|t| t.routes.as_ref())
            .is_none_or(|r| r.iter().any(|r| r == name))
    };
    let model_ok = |id: &str| {
        tenant
            .and_then(|t| t.models.as_ref())
            .is_none_or(|m| m.iter().any(|m| m == id))
    };
    let mut data: Vec<Value> = runtime
        .routes
        .values()
        .filter(|r| route_ok(&r.name))
        .map(|r| json!({"id": r.name, "object": "model", "created": 0, "owned_by": "switchyard",
                        "switchyard": {"kind": "route", "models": r.models, "policy": r.policy.to_string()}}))
        .collect();
    data.extend(runtime.models.values().filter(|m| model_ok(&m.id)).map(|m| {
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
    authenticate(&runtime.config.tenants, &headers)?;
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
    let encoded = router
        .worker
        .encode_as(texts, Truncation::Head)
        .await
        .map_err(embed_error)?;
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
    if given.map(|g| crate::tenants::sha256_hex(g.as_bytes()))
        != Some(crate::tenants::sha256_hex(admin.as_bytes()))
    {
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
    let runtime = state.runtime();
    let var = runtime.config.router.admin_key_env.as_deref();
    admin_only(&headers, var, "router promotion", "[router] admin_key_env")?;
    let value = parse_json(&read_body(&state, body).await?)?;
    let b: PromoteBody = parse_body(&value, "invalid value")?;
    let previous = runtime.router.as_ref().map(|r| r.version().to_owned());
    let (promoting, scorer) = (state.clone(), b.scorer.clone());
    let version = tokio::task::spawn_blocking(move || promote(&promoting, &scorer))
        .await
        .map_err(ApiError::internal)?
        .map_err(|e| {
            ApiError::new(
                ErrorKind::UnprocessableRouter,
                format!("{e}; the running router stays"),
            )
        })?;
    // With shared state, the other replicas follow within `[state] router_poll_ms`.
    let published = match &state.shared {
        Some(shared) => Some(shared.publish_router(&version, &b.scorer).await),
        None => None,
    };
    Ok(Json(
        json!({"status": "promoted", "router_version": version, "previous": previous, "published": published}),
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
    let var = runtime.config.cache.admin_key_env.as_deref();
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
    let tenant = authenticate(&runtime.config.tenants, &headers)?;
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
    if !state.knows(&f.request_id, tenant).await? {
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
        "shared_state": state.shared.as_ref().map(|s| s.describe()),
    });
    (StatusCode::OK, Json(body)).into_response()
}

/// Prometheus metrics; behind a tenant's key only with `server.metrics_need_key`.
async fn metrics(State(state): Shared, headers: HeaderMap) -> Response {
    let runtime = state.runtime();
    if runtime.config.server.metrics_need_key
        && let Err(e) = authenticate(&runtime.config.tenants, &headers)
    {
        return e.into_response();
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
