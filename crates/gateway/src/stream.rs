//! Relaying a streamed answer: the upstream's chunks to the client as SSE, the usage kept
//! for accounting, the whole answer captured for the cache; at the end, the record.
//!
//! Once the first chunk has gone out there is no fallback: a failure mid-stream ends the
//! stream with an error event instead of `[DONE]`.

use axum::body::Bytes;
use futures_util::StreamExt;
use serde_json::Value;
use switchyard_providers::{AttemptError, ChunkStream, ErrorClass, Usage};

use crate::chat::{StoreJob, cost_of};
use crate::trace::{Ending, Trace};

/// The upstream's answer as it started streaming.
pub struct Upstream {
    pub model: String,
    pub first: Value,
    pub rest: ChunkStream,
}

impl std::fmt::Debug for Upstream {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Upstream")
            .field("model", &self.model)
            .finish_non_exhaustive()
    }
}

fn sse(value: &Value) -> Bytes {
    Bytes::from(format!("data: {value}\n\n"))
}

/// What the relay saw.
#[derive(Default)]
struct Relayed {
    usage: Option<Usage>,
    error: Option<String>,
    client_gone: bool,
}

/// Copies the upstream's chunks to the client; on the end, stores, accounts and logs.
pub async fn relay(
    trace: Trace,
    upstream: Upstream,
    wants_usage: bool,
    deadline: tokio::time::Instant,
    tx: tokio::sync::mpsc::Sender<Bytes>,
    store: Option<StoreJob>,
) {
    let Upstream { model, first, rest } = upstream;
    let mut capture = store
        .as_ref()
        .map(|_| crate::cache::StreamCapture::default());
    let seen = copy(
        &model,
        first,
        rest,
        wants_usage,
        deadline,
        &tx,
        capture.as_mut(),
    )
    .await;
    if seen.error.is_none() && !seen.client_gone {
        let _ = tx.send(Bytes::from_static(b"data: [DONE]\n\n")).await;
    }
    let error = match (seen.error, seen.client_gone) {
        (Some(e), _) => Some(e),
        (None, true) => Some("the client disconnected mid-stream".to_owned()),
        (None, false) => None,
    };
    if error.is_none()
        && let (Some(job), Some(capture)) = (store, capture)
        && let Some(body) = capture.finish(&model)
    {
        job.store(&trace.state, &body, &model);
    }
    let cost = cost_of(&trace.runtime, &model, seen.usage);
    let ending = Ending {
        status: 200,
        model: Some(model),
        usage: seen.usage,
        cost,
        error,
    };
    trace.finish(ending);
}

/// The chunk loop: forwards each chunk (usage-only chunks only when asked for) until the
/// upstream ends, fails, passes the deadline, or the client goes away.
async fn copy(
    model: &str,
    first: Value,
    mut rest: ChunkStream,
    wants_usage: bool,
    deadline: tokio::time::Instant,
    tx: &tokio::sync::mpsc::Sender<Bytes>,
    mut capture: Option<&mut crate::cache::StreamCapture>,
) -> Relayed {
    let mut seen = Relayed::default();
    let mut next = Some(Ok(first));
    while let Some(item) = next.take() {
        let mut chunk = match item {
            Ok(chunk) => chunk,
            Err(e) => {
                let e: AttemptError = e;
                let _ = tx.send(sse(&broken(&e))).await;
                seen.error = Some(e.message);
                break;
            }
        };
        if let Some(u) = chunk.get("usage").and_then(Usage::from_openai) {
            seen.usage = Some(u);
        }
        if let Some(c) = capture.as_deref_mut() {
            c.push(&chunk);
        }
        let usage_only = chunk
            .get("choices")
            .and_then(Value::as_array)
            .is_some_and(Vec::is_empty);
        if !usage_only || wants_usage {
            if let Some(obj) = chunk.as_object_mut() {
                obj.insert("model".into(), Value::String(model.to_owned()));
                if !wants_usage {
                    obj.remove("usage");
                }
            }
            if tx.send(sse(&chunk)).await.is_err() {
                seen.client_gone = true;
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
    seen
}

/// The error event that ends a stream which broke after it started.
fn broken(e: &AttemptError) -> Value {
    serde_json::json!({"error": {
        "message": format!("the upstream stream broke after it started, so it cannot fall back: {}", e.message),
        "type": "upstream_error", "param": null, "code": e.class.as_str()}})
}
