//! The axum application: routes, the smaller endpoints, start-up and SIGHUP reloads.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::{Arc, Mutex, RwLock};
use std::time::Instant;

use axum::body::{Body, Bytes};
use axum::extract::{DefaultBodyLimit, Request, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::serve::ListenerExt;
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

/// Builds the whole state: router, runtime, traffic log.
pub fn build_state(source: &ConfigSource, config: Config) -> Result<Arc<AppState>, String> {
    let router = if config.router.enabled {
        let started = Instant::now();
        let r = RouterStack::load(&config.router)?;
        tracing::info!(
            elapsed_ms = started.elapsed().as_millis() as u64,
            "router loaded (encoder, heads, scorer)"
        );
        Some(r)
    } else {
        None
    };
    let log = if config.log.enabled {
        Some(
            TrafficLog::start(
                &config.log.dir,
                Rotation {
                    max_bytes: config.log.max_bytes,
                    max_age: std::time::Duration::from_secs(config.log.max_age_s),
                },
            )
            .map_err(|e| format!("log.dir: cannot use {}: {e}", config.log.dir.display()))?,
        )
    } else {
        None
    };
    let (cache, cache_plan) = match crate::cache::prepare(
        &config.cache,
        router.as_ref().map(|r| r.worker.info()),
        &env,
    )? {
        Prepared::Off(why) => {
            tracing::info!(why = %why, "semantic cache off");
            (CacheState::Off(why), None)
        }
        Prepared::Plan(plan) => {
            // A cache that cannot open (unwritable or full directory, a directory made for
            // another encoder) must not keep the gateway down: serve uncached and say why
            // in the log and in /ready.
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
            (state, Some(plan))
        }
    };
    let runtime = Runtime::build(config, router.as_ref(), &env).map_err(|e| e.to_string())?;
    Ok(Arc::new(AppState {
        router,
        runtime: RwLock::new(Arc::new(runtime)),
        breakers: Mutex::default(),
        ledger: Default::default(),
        metrics: Default::default(),
        log,
        recent: Mutex::default(),
        config_path: match source {
            ConfigSource::File(p) => Some(p.clone()),
            ConfigSource::Environment => None,
        },
        cache: Arc::new(RwLock::new(cache)),
        cache_plan,
    }))
}

/// Re-reads the config file and swaps the runtime; requests in flight finish on the old one.
pub fn reload(state: &AppState) -> Result<(), String> {
    let Some(path) = &state.config_path else {
        return Err("no config file to reload (started without --config)".into());
    };
    let config = Config::load(path).map_err(|e| e.to_string())?;
    let old = state.runtime();
    if config.router.encoder != old.config.router.encoder
        || config.router.heads != old.config.router.heads
        || config.router.scorer != old.config.router.scorer
        || config.router.enabled != old.config.router.enabled
    {
        tracing::warn!("[router] changes take effect only on restart");
    }
    let runtime = Runtime::build(config, state.router.as_ref(), &env).map_err(|e| e.to_string())?;
    state.swap_runtime(runtime);
    Ok(())
}

pub fn app(state: Arc<AppState>) -> Router {
    Router::new()
        .route("/v1/chat/completions", post(chat))
        .route("/v1/route", post(route))
        .route("/v1/models", get(models))
        .route("/v1/embeddings", post(embeddings))
        .route("/v1/feedback", post(feedback))
        .route("/v1/cache/invalidate", post(invalidate_cache))
        .route("/health", get(|| async { Json(json!({"status": "ok"})) }))
        .route("/ready", get(ready))
        .route("/metrics", get(metrics))
        .fallback(not_found)
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

async fn read_body(state: &AppState, body: Body) -> Result<Bytes, ApiError> {
    let limit = state.runtime().config.server.max_body_bytes;
    axum::body::to_bytes(body, limit).await.map_err(|_| {
        ApiError::new(
            ErrorKind::PayloadTooLarge,
            format!("the request body is larger than {limit} bytes (server.max_body_bytes)"),
        )
    })
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
    let resolved = resolve(&runtime, tenant, &view.model)?;
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
    Ok(Json(json!({
        "route": p.route,
        "model": p.order.first(),
        "order": p.order,
        "decision": p.decision,
        "latency_ms": p.latency,
    })))
}

async fn models(State(state): Shared) -> Json<Value> {
    let runtime = state.runtime();
    let mut data: Vec<Value> = runtime
        .routes
        .values()
        .map(|r| json!({"id": r.name, "object": "model", "created": 0, "owned_by": "switchyard",
                        "switchyard": {"kind": "route", "models": r.models, "policy": r.policy.to_string()}}))
        .collect();
    data.extend(runtime.models.values().map(|m| {
        json!({"id": m.id, "object": "model", "created": 0, "owned_by": m.provider,
               "switchyard": {"kind": "model", "upstream_model": m.upstream_model,
                              "input_per_mtok": m.price.input_per_mtok, "output_per_mtok": m.price.output_per_mtok,
                              "quality_like": m.quality_like}})
    }));
    Json(json!({"object": "list", "data": data}))
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

/// Removes cached answers: one entry, a tenant's, a route's, or all. Needs the admin key
/// named by `[cache] admin_key_env`.
async fn invalidate_cache(
    State(state): Shared,
    headers: HeaderMap,
    body: Body,
) -> Result<Json<Value>, ApiError> {
    use switchyard_cache::Invalidate;
    let runtime = state.runtime();
    let forbidden = |m: &str| ApiError::new(ErrorKind::Forbidden, m.to_owned());
    let Some(var) = &runtime.config.cache.admin_key_env else {
        return Err(forbidden(
            "cache invalidation is off: set [cache] admin_key_env to the name of an env var holding an admin key",
        ));
    };
    let Some(admin) = env(var) else {
        return Err(forbidden(&format!(
            "cache invalidation is off: the environment variable {var} is not set"
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
            "cache invalidation needs the admin key as `Authorization: Bearer KEY`",
        ));
    }
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
    if !state.knows(&f.request_id) {
        return Err(ApiError::new(
            ErrorKind::NotFound,
            format!(
                "no recent request {:?} (ids come from the x-switchyard-request-id header)",
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
        tenant: tenant.map_or(DEFAULT_TENANT, |t| t.0).to_owned(),
        time: now_rfc3339(),
    });
    Ok(Json(
        json!({"status": "recorded", "request_id": f.request_id}),
    ))
}

async fn ready(State(state): Shared) -> Response {
    let runtime = state.runtime();
    let router = state.router.as_ref().map(|r| {
        json!({
            "encoder": r.worker.info().describe(),
            "heads": "loaded",
            "scorer_models": r.router.scorer().model_ids().len(),
            "router_version": r.router.version(),
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
    });
    (StatusCode::OK, Json(body)).into_response()
}

async fn metrics(State(state): Shared) -> Response {
    let runtime = state.runtime();
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

/// [`serve_on_threads`] from async code (a program or a test that already runs a runtime):
/// the same event loops, with `server.io_threads` from the config, started on a thread of
/// their own; resolves when they stop (SIGINT/SIGTERM). `on_bound` gets the bound address
/// (useful with port 0).
pub async fn serve(
    state: Arc<AppState>,
    listen: SocketAddr,
    on_bound: impl FnOnce(SocketAddr) + Send + 'static,
) -> std::io::Result<()> {
    let threads = state.runtime().config.server.io_threads;
    let (done, finished) = tokio::sync::oneshot::channel();
    std::thread::Builder::new()
        .name("switchyard-serve".into())
        .spawn(move || {
            let _ = done.send(serve_on_threads(
                state,
                listen,
                threads,
                on_bound,
                shutdown_signal(),
            ));
        })?;
    finished
        .await
        .unwrap_or_else(|_| Err(std::io::Error::other("the server thread panicked")))
}

/// Serves on `threads` event loops (0 = one per CPU core) until `stop` resolves (the
/// command passes [`shutdown_signal`]: SIGINT/SIGTERM), then lets the requests in flight
/// finish; SIGHUP reloads the config file. Blocks the calling thread,
/// which runs the first loop and the background work (cache connection and maintenance,
/// reloads).
///
/// Each loop is a single-threaded tokio runtime on its own thread accepting from the same
/// listening socket (one `bind`, so a second server on the port fails with "address in
/// use"): a request is read, forwarded over a connection of that thread's pool and answered
/// on one thread, with no hand-over between threads. On a small machine that keeps wake-ups
/// and cross-core traffic off the proxy's latency, which a work-stealing runtime adds to each
/// request. Slow work never runs on a loop: embeddings and the local model have their own
/// worker threads, the embedded cache runs on the blocking pool.
pub fn serve_on_threads(
    state: Arc<AppState>,
    listen: SocketAddr,
    threads: usize,
    on_bound: impl FnOnce(SocketAddr),
    stop: impl std::future::Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    let threads = match threads {
        0 => std::thread::available_parallelism().map_or(1, std::num::NonZero::get),
        n => n,
    };
    let socket = std::net::TcpListener::bind(listen)?;
    socket.set_nonblocking(true)?;
    let bound = socket.local_addr()?;
    let event_loop = || -> std::io::Result<(tokio::runtime::Runtime, tokio::net::TcpListener)> {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()?;
        // Registers the socket with this runtime's reactor.
        let listener = {
            let _entered = runtime.enter();
            tokio::net::TcpListener::from_std(socket.try_clone()?)?
        };
        Ok((runtime, listener))
    };
    let (main, first) = event_loop()?;
    let (stop_all, stopped) = tokio::sync::watch::channel(false);
    let mut others = Vec::with_capacity(threads - 1);
    for i in 1..threads {
        let (runtime, listener) = event_loop()?;
        let (state, mut stopped) = (state.clone(), stopped.clone());
        let thread = std::thread::Builder::new()
            .name(format!("switchyard-io-{i}"))
            .spawn(move || {
                runtime.block_on(serve_listener(state, listener, async move {
                    let _ = stopped.wait_for(|stop| *stop).await;
                }))
            });
        match thread {
            Ok(t) => others.push(t),
            Err(e) => {
                let _ = stop_all.send(true);
                return Err(e);
            }
        }
    }
    drop(stopped);
    on_bound(bound);
    tracing::info!(threads, "serving on {bound}");
    let result = main.block_on(async {
        start_background(&state);
        serve_listener(state, first, async move {
            stop.await;
            let _ = stop_all.send(true);
        })
        .await
    });
    for t in others {
        match t.join() {
            Ok(Err(e)) => tracing::error!(error = %e, "an event loop stopped with an error"),
            Err(_) => tracing::error!("an event loop panicked"),
            Ok(Ok(())) => {}
        }
    }
    result
}

/// Starts the work beside the request handlers: the cache's connection and maintenance,
/// and the SIGHUP reloader. Call once, on a runtime that lives as long as the server.
fn start_background(state: &Arc<AppState>) {
    if let Some(plan) = &state.cache_plan {
        let connecting = matches!(
            &*state
                .cache
                .read()
                .unwrap_or_else(std::sync::PoisonError::into_inner),
            CacheState::Connecting(_)
        );
        if connecting {
            crate::cache::connect_in_background(plan.clone(), state.cache.clone());
        }
        crate::cache::maintain_in_background(state.cache.clone());
    }
    let reloader = state.clone();
    tokio::spawn(async move {
        #[cfg(unix)]
        {
            use tokio::signal::unix::{SignalKind, signal};
            let Ok(mut hup) = signal(SignalKind::hangup()) else {
                return;
            };
            while hup.recv().await.is_some() {
                match reload(&reloader) {
                    Ok(()) => tracing::info!("configuration reloaded"),
                    Err(e) => {
                        tracing::error!(error = %e, "reload failed; keeping the running configuration")
                    }
                }
            }
        }
    });
}

/// Serves connections from `listener` until `stop` resolves, then waits for the requests in
/// flight.
async fn serve_listener(
    state: Arc<AppState>,
    listener: tokio::net::TcpListener,
    stop: impl std::future::Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    // No Nagle: response headers, SSE chunks and streamed bodies go out as separate writes,
    // and each must leave at once rather than wait for the client's ACK of the last one.
    let listener = listener.tap_io(|tcp| {
        if let Err(e) = tcp.set_nodelay(true) {
            tracing::debug!(error = %e, "cannot set TCP_NODELAY on an accepted connection");
        }
    });
    axum::serve(listener, app(state))
        .with_graceful_shutdown(stop)
        .await
}

/// Resolves on SIGINT (Ctrl-C) or SIGTERM.
pub async fn shutdown_signal() {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        if let Ok(mut term) = signal(SignalKind::terminate()) {
            tokio::select! {
                _ = tokio::signal::ctrl_c() => {}
                _ = term.recv() => {}
            }
            return;
        }
    }
    let _ = tokio::signal::ctrl_c().await;
}
