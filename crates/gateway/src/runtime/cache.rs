//! The gateway's side of the semantic cache: opening the configured backend, the scope of
//! a request, answering a hit (as JSON or as a replayed SSE stream), and capturing a
//! streamed answer so it can be stored once it completes.

use std::sync::{Arc, RwLock};
use std::time::Duration;

use axum::body::Bytes;
use serde_json::{Value, json};
use switchyard_cache::{
    Cache, CacheScope, CacheSettings, Control, DEFAULT_COSINE_THRESHOLD,
    DEFAULT_VERIFIER_THRESHOLD, EdgeCache, Method, RemoteCache, RemoteSettings, Verifier,
};
use switchyard_core::EncoderInfo;

use crate::config::{CacheBackend, CacheConfig};

/// The request header with per-request cache directives.
pub const CONTROL_HEADER: &str = "x-switchyard-cache-control";

/// Where the cache stands; the remote backend connects in the background.
#[derive(Debug, Clone)]
pub enum CacheState {
    Off(String),
    Connecting(String),
    Ready(Arc<Cache>),
    Failed(String),
}

impl CacheState {
    pub fn describe(&self) -> Value {
        match self {
            Self::Off(why) => json!({"status": "off", "why": why}),
            Self::Connecting(url) => json!({"status": "connecting", "url": url}),
            Self::Ready(c) => json!({
                "status": "ready",
                "backend": c.backend().backend(),
                "method": c.settings().method.name(),
                "threshold": c.settings().threshold,
            }),
            Self::Failed(why) => json!({"status": "failed", "error": why}),
        }
    }
}

/// Everything needed to open the cache, resolved from config and environment.
#[derive(Debug, Clone)]
pub struct CachePlan {
    pub settings: CacheSettings,
    pub verifier: Option<Arc<Verifier>>,
    pub backend: Backend,
    pub encoder: EncoderInfo,
}

#[derive(Debug, Clone)]
pub enum Backend {
    Edge(std::path::PathBuf),
    Remote(RemoteSettings),
}

/// `[cache]` resolved: off (and why), or what to open.
#[derive(Debug, Clone)]
pub enum Prepared {
    Off(String),
    Plan(Box<CachePlan>),
}

/// Resolves `[cache]` against the encoder and the environment; errors name the key.
pub fn prepare(
    config: &CacheConfig,
    encoder: Option<&EncoderInfo>,
    env: &dyn Fn(&str) -> Option<String>,
) -> Result<Prepared, String> {
    if !config.enabled {
        return Ok(Prepared::Off("[cache] enabled = false".into()));
    }
    let Some(encoder) = encoder else {
        return Ok(Prepared::Off(
            "the cache needs the encoder ([router] enabled = false)".into(),
        ));
    };
    let method = config.method;
    let verifier = if method == Method::Verifier {
        let path = match &config.verifier {
            Some(p) => p.clone(),
            None => {
                let p = std::path::PathBuf::from(crate::config::DEFAULT_VERIFIER);
                if !p.is_file() {
                    return Ok(Prepared::Off(format!(
                        "no verifier at {} (run from the repository root, set [cache] verifier, \
                         or method = \"guard\")",
                        p.display()
                    )));
                }
                p
            }
        };
        let v = Verifier::load(&path).map_err(|e| format!("cache.verifier: {e}"))?;
        v.check_encoder(encoder)
            .map_err(|e| format!("cache.verifier: {e}"))?;
        Some(Arc::new(v))
    } else {
        None
    };
    let url = config.url.clone().or_else(|| env("SWITCHYARD_QDRANT_URL"));
    let backend = match (config.backend, url) {
        (Some(CacheBackend::Edge), _) | (None, None) => Backend::Edge(config.path.clone()),
        (Some(CacheBackend::Qdrant), None) => {
            return Err(
                "cache.backend: \"qdrant\" needs cache.url or SWITCHYARD_QDRANT_URL".into(),
            );
        }
        (_, Some(url)) => Backend::Remote(RemoteSettings {
            url,
            collection: config.collection.clone(),
            shards: config.shards,
            replication_factor: config.replication_factor,
            api_key: match &config.api_key_env {
                None => None,
                Some(var) => Some(env(var).ok_or_else(|| {
                    format!("cache.api_key_env: the environment variable {var} is not set")
                })?),
            },
            timeout: Duration::from_secs(5),
        }),
    };
    let threshold = config.threshold.unwrap_or(match method {
        Method::Verifier => DEFAULT_VERIFIER_THRESHOLD,
        Method::Cosine | Method::Guard => DEFAULT_COSINE_THRESHOLD,
    });
    Ok(Prepared::Plan(Box::new(CachePlan {
        settings: CacheSettings {
            method,
            threshold,
            ttl: Duration::from_secs(config.ttl_s),
            capacity: config.capacity,
            candidates: config.candidates,
        },
        verifier,
        backend,
        encoder: encoder.clone(),
    })))
}

impl CachePlan {
    /// Opens the embedded store now, or returns `Connecting` for a server (see
    /// [`connect_in_background`]).
    pub fn open(&self) -> Result<CacheState, String> {
        match &self.backend {
            Backend::Edge(dir) => {
                let store =
                    EdgeCache::open(dir, &self.encoder).map_err(|e| format!("cache.path: {e}"))?;
                let cache = Cache::new(
                    Arc::new(store),
                    self.verifier.clone(),
                    self.settings.clone(),
                )
                .map_err(|e| format!("cache: {e}"))?;
                Ok(CacheState::Ready(Arc::new(cache)))
            }
            Backend::Remote(r) => Ok(CacheState::Connecting(r.url.clone())),
        }
    }
}

/// Connects to the Qdrant server, retrying every 10 s until it answers; requests bypass
/// the cache meanwhile.
pub fn connect_in_background(plan: CachePlan, slot: Arc<RwLock<CacheState>>) {
    let Backend::Remote(remote) = plan.backend.clone() else {
        return;
    };
    tokio::spawn(async move {
        loop {
            let state = match RemoteCache::connect(&remote, &plan.encoder).await {
                Ok(store) => {
                    match Cache::new(
                        Arc::new(store),
                        plan.verifier.clone(),
                        plan.settings.clone(),
                    ) {
                        Ok(c) => CacheState::Ready(Arc::new(c)),
                        Err(e) => CacheState::Failed(e.to_string()),
                    }
                }
                Err(e) => CacheState::Failed(e.to_string()),
            };
            let done = matches!(state, CacheState::Ready(_));
            match &state {
                CacheState::Ready(_) => {
                    tracing::info!(url = %remote.url, "cache connected to Qdrant")
                }
                CacheState::Failed(e) => {
                    tracing::warn!(error = %e, "cache unavailable; retrying in 10 s")
                }
                _ => {}
            }
            *slot
                .write()
                .unwrap_or_else(std::sync::PoisonError::into_inner) = state;
            if done {
                return;
            }
            tokio::time::sleep(Duration::from_secs(10)).await;
        }
    });
}

/// Purges expired entries, evicts over capacity and builds the vector index: every minute,
/// and as soon as `INDEX_EVERY` entries were inserted since the last pass.
pub fn maintain_in_background(slot: Arc<RwLock<CacheState>>) {
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(Duration::from_secs(60));
        loop {
            let cache = match &*slot
                .read()
                .unwrap_or_else(std::sync::PoisonError::into_inner)
            {
                CacheState::Ready(c) => Some(c.clone()),
                _ => None,
            };
            let Some(cache) = cache else {
                tick.tick().await;
                continue;
            };
            // Every minute, or sooner after a burst of inserts (size trigger).
            tokio::select! {
                _ = tick.tick() => {}
                () = cache.index_due() => {}
            }
            let t = std::time::Instant::now();
            match cache.maintain().await {
                Ok(m) if m.indexed || m.purged + m.evicted > 0 => tracing::info!(
                    purged = m.purged,
                    evicted = m.evicted,
                    indexed = m.indexed,
                    seconds = t.elapsed().as_secs_f64(),
                    "cache maintenance"
                ),
                Ok(_) => {}
                Err(e) => tracing::warn!(error = %e, "cache maintenance failed"),
            }
        }
    });
}

/// Parses the control header (400 on a bad directive).
pub fn control(headers: &axum::http::HeaderMap) -> Result<Control, String> {
    match headers.get(CONTROL_HEADER) {
        None => Ok(Control::default()),
        Some(v) => {
            let text = v
                .to_str()
                .map_err(|_| format!("{CONTROL_HEADER}: not ASCII"))?;
            Control::parse(text).map_err(|e| format!("{CONTROL_HEADER}: {e}"))
        }
    }
}

pub fn scope(tenant: &str, route: &str, body: &Value) -> CacheScope {
    CacheScope {
        tenant: tenant.to_owned(),
        route: route.to_owned(),
        fingerprint: switchyard_cache::fingerprint(body),
    }
}

/// Whether a finished completion may be stored: one choice that ended on its own.
pub fn storable(body: &Value) -> bool {
    let Some(choices) = body.get("choices").and_then(Value::as_array) else {
        return false;
    };
    choices.len() == 1
        && matches!(
            choices[0].get("finish_reason").and_then(Value::as_str),
            Some("stop" | "tool_calls" | "function_call")
        )
}

/// The stored completion, re-issued under this request's id.
pub fn replay_body(stored: &str, request_id: &str, model: &str) -> Option<Value> {
    let mut body: Value = serde_json::from_str(stored).ok()?;
    let obj = body.as_object_mut()?;
    obj.insert("id".into(), Value::String(request_id.to_owned()));
    obj.insert("created".into(), json!(now_secs()));
    obj.insert("model".into(), Value::String(model.to_owned()));
    Some(body)
}

fn now_secs() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

/// A stored completion as SSE events: the message in one delta, the finish reason, the
/// usage when asked for, and `[DONE]`.
pub fn replay_stream(body: &Value, wants_usage: bool) -> Vec<Bytes> {
    let base = |choices: Value| {
        json!({
            "id": body.get("id"),
            "object": "chat.completion.chunk",
            "created": body.get("created"),
            "model": body.get("model"),
            "choices": choices,
        })
    };
    let choice = body.pointer("/choices/0").cloned().unwrap_or(Value::Null);
    let mut delta = choice.get("message").cloned().unwrap_or_else(|| json!({}));
    if let Some(calls) = delta.get_mut("tool_calls").and_then(Value::as_array_mut) {
        for (i, call) in calls.iter_mut().enumerate() {
            if let Some(o) = call.as_object_mut() {
                o.insert("index".into(), json!(i));
            }
        }
    }
    let mut events = vec![
        base(json!([{"index": 0, "delta": delta, "finish_reason": null}])),
        base(json!([{"index": 0, "delta": {}, "finish_reason": choice.get("finish_reason")}])),
    ];
    if wants_usage {
        let mut usage = base(json!([]));
        if let Some(o) = usage.as_object_mut() {
            o.insert(
                "usage".into(),
                body.get("usage").cloned().unwrap_or(Value::Null),
            );
        }
        events.push(usage);
    }
    let mut out: Vec<Bytes> = events
        .iter()
        .map(|e| Bytes::from(format!("data: {e}\n\n")))
        .collect();
    out.push(Bytes::from_static(b"data: [DONE]\n\n"));
    out
}

/// Rebuilds a streamed answer into a chat completion, so it can be stored. Gives up (and
/// the answer is not stored) on anything it cannot rebuild exactly: several choices,
/// tool-call deltas.
#[derive(Debug, Default)]
pub struct StreamCapture {
    id: Option<Value>,
    created: Option<Value>,
    role: Option<String>,
    content: String,
    finish_reason: Option<String>,
    usage: Option<Value>,
    unsupported: bool,
}

impl StreamCapture {
    /// The answer's text so far.
    pub fn text(&self) -> &str {
        &self.content
    }

    pub fn push(&mut self, chunk: &Value) {
        if self.id.is_none() {
            self.id = chunk.get("id").cloned();
            self.created = chunk.get("created").cloned();
        }
        if let Some(u) = chunk.get("usage").filter(|u| !u.is_null()) {
            self.usage = Some(u.clone());
        }
        let Some(choices) = chunk.get("choices").and_then(Value::as_array) else {
            return;
        };
        for c in choices {
            if c.get("index").and_then(Value::as_u64).unwrap_or(0) != 0 {
                self.unsupported = true;
            }
            let delta = c.get("delta");
            if delta
                .and_then(|d| d.get("tool_calls"))
                .is_some_and(|t| !t.is_null())
                || delta
                    .and_then(|d| d.get("function_call"))
                    .is_some_and(|t| !t.is_null())
            {
                self.unsupported = true;
            }
            if let Some(role) = delta.and_then(|d| d.get("role")).and_then(Value::as_str) {
                self.role = Some(role.to_owned());
            }
            if let Some(text) = delta.and_then(|d| d.get("content")).and_then(Value::as_str) {
                self.content.push_str(text);
            }
            if let Some(f) = c.get("finish_reason").and_then(Value::as_str) {
                self.finish_reason = Some(f.to_owned());
            }
        }
    }

    /// The completion, when the stream ended on its own and held one plain message.
    pub fn finish(self, model: &str) -> Option<Value> {
        if self.unsupported || self.finish_reason.as_deref() != Some("stop") {
            return None;
        }
        Some(json!({
            "id": self.id,
            "object": "chat.completion",
            "created": self.created,
            "model": model,
            "choices": [{
                "index": 0,
                "message": {"role": self.role.unwrap_or_else(|| "assistant".into()), "content": self.content},
                "finish_reason": "stop",
            }],
            "usage": self.usage,
        }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_captured_stream_replays_to_the_same_text() {
        let mut cap = StreamCapture::default();
        for c in [
            json!({"id": "x", "created": 1, "choices": [{"index": 0, "delta": {"role": "assistant", "content": "Hel"}, "finish_reason": null}]}),
            json!({"id": "x", "choices": [{"index": 0, "delta": {"content": "lo"}, "finish_reason": null}]}),
            json!({"id": "x", "choices": [{"index": 0, "delta": {}, "finish_reason": "stop"}]}),
            json!({"id": "x", "choices": [], "usage": {"prompt_tokens": 3, "completion_tokens": 2, "total_tokens": 5}}),
        ] {
            cap.push(&c);
        }
        let body = cap.finish("m").unwrap();
        assert!(storable(&body));
        assert_eq!(body["choices"][0]["message"]["content"], "Hello");
        let replayed = replay_body(&body.to_string(), "req-2", "m").unwrap();
        assert_eq!(replayed["id"], "req-2");
        let events = replay_stream(&replayed, true);
        assert_eq!(events.len(), 4);
        let text = String::from_utf8(events.concat()).unwrap();
        assert!(text.contains("\"content\":\"Hello\"") && text.ends_with("data: [DONE]\n\n"));
        assert!(text.contains("\"prompt_tokens\":3"));
    }

    #[test]
    fn truncated_or_tool_streams_are_not_stored() {
        let mut cap = StreamCapture::default();
        cap.push(&json!({"choices": [{"index": 0, "delta": {"content": "cut"}, "finish_reason": "length"}]}));
        assert!(cap.finish("m").is_none());
        let mut cap = StreamCapture::default();
        cap.push(&json!({"choices": [{"index": 0, "delta": {"tool_calls": [{"index": 0}]}, "finish_reason": "stop"}]}));
        assert!(cap.finish("m").is_none());
        let mut cap = StreamCapture::default();
        cap.push(&json!({"choices": [{"index": 0, "delta": {"content": "never ended"}}]}));
        assert!(cap.finish("m").is_none());
        assert!(!storable(
            &json!({"choices": [{"finish_reason": "length"}]})
        ));
    }
}
