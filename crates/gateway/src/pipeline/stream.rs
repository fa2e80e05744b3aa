//! Relaying a streamed answer: the upstream's chunks to the client as SSE, the usage kept
//! for accounting, the whole answer captured for the cache; at the end, the record.
//!
//! Once the first chunk has gone out there is no fallback: a failure mid-stream ends the
//! stream with an error event instead of `[DONE]`.

use axum::body::Bytes;
use futures_util::StreamExt;
use serde_json::Value;
use switchyard_providers::{AttemptError, ChunkStream, ErrorClass, Permit, Usage};

use super::store::StoreJob;
use super::trace::{Ending, Trace};

/// The upstream's answer as it started streaming.
pub struct Upstream {
    pub model: String,
    pub first: Value,
    pub rest: ChunkStream,
    /// The target's breaker permit: how the stream ends is the attempt's outcome.
    pub permit: Option<Permit>,
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
    /// Characters of answer text streamed (for a usage estimate when none is reported).
    chars: usize,
    error: Option<AttemptError>,
    client_gone: bool,
}

/// Copies the upstream's chunks to the client; on the end, stores, accounts and logs, then
/// ends the stream.
pub async fn relay(
    mut trace: Trace,
    upstream: Upstream,
    wants_usage: bool,
    deadline: tokio::time::Instant,
    tx: tokio::sync::mpsc::Sender<Bytes>,
    store: Option<StoreJob>,
) {
    let Upstream {
        model,
        first,
        rest,
        permit,
    } = upstream;
    let log_answers = trace.runtime.capture.answers;
    let mut capture =
        (store.is_some() || log_answers).then(crate::runtime::cache::StreamCapture::default);
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
    let complete = seen.error.is_none() && !seen.client_gone;
    let error = settle_attempt(&mut trace, permit, &seen);
    let answer = capture
        .as_ref()
        .filter(|_| log_answers)
        .map(|c| c.text().to_owned());
    if error.is_none()
        && let (Some(job), Some(capture)) = (store, capture)
        && let Some(body) = capture.finish(&model)
    {
        job.store(&trace.state, &body, &model);
    }
    // An upstream that streams no usage is charged an estimate, never nothing.
    let estimated = seen.usage.is_none();
    let usage = seen.usage.unwrap_or(Usage {
        prompt_tokens: trace.asked.input_tokens,
        completion_tokens: seen
            .chars
            .div_ceil(switchyard_core::tokens::CHARS_PER_TOKEN) as u64,
    });
    let cost = trace.runtime.cost_of(&model, Some(usage));
    let ending = Ending {
        status: 200,
        model: Some(model),
        usage: Some(usage),
        cost,
        error,
        usage_estimated: estimated,
        answer,
    };
    // The record is written before [DONE]: a client that has the whole answer can count
    // on its record being in the log, even if the gateway is killed right after.
    // The stream has ended: nobody waits on its writes.
    drop(trace.finish(ending));
    if complete {
        let _ = tx.send(Bytes::from_static(b"data: [DONE]\n\n")).await;
    }
}

/// A stream's end is its attempt's outcome: a break after the first chunk counts against
/// the target in its breaker and marks the attempt failed in the log; a client that went
/// away says nothing about the target (the permit is dropped unrecorded). Returns the
/// record's error text.
fn settle_attempt(trace: &mut Trace, permit: Option<Permit>, seen: &Relayed) -> Option<String> {
    match (&seen.error, seen.client_gone) {
        (Some(e), _) => {
            if let Some(p) = permit {
                p.record(!e.counts_against_target());
            }
            if let Some(last) = trace.attempts.last_mut() {
                last.error_class = Some(e.class);
                last.error = Some(e.message.clone());
            }
            trace
                .state
                .metrics
                .stream_broken(&last_model(trace), e.class.as_str());
            Some(e.message.clone())
        }
        (None, true) => Some("the client disconnected mid-stream".to_owned()),
        (None, false) => {
            if let Some(p) = permit {
                p.record(true);
            }
            None
        }
    }
}

fn last_model(trace: &Trace) -> String {
    trace
        .attempts
        .last()
        .map_or_else(String::new, |a| a.model.clone())
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
    mut capture: Option<&mut crate::runtime::cache::StreamCapture>,
) -> Relayed {
    let mut seen = Relayed::default();
    let mut next = Some(Ok(first));
    while let Some(item) = next.take() {
        let mut chunk = match item {
            Ok(chunk) => chunk,
            Err(e) => {
                let e: AttemptError = e;
                let _ = tx.send(sse(&broken(&e))).await;
                seen.error = Some(e);
                break;
            }
        };
        if let Some(u) = chunk.get("usage").and_then(Usage::from_openai) {
            seen.usage = Some(u);
        }
        seen.chars += text_chars(&chunk);
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

/// Characters of answer text in a chunk (every choice's `delta.content`).
fn text_chars(chunk: &Value) -> usize {
    chunk
        .get("choices")
        .and_then(Value::as_array)
        .map_or(0, |choices| {
            choices
                .iter()
                .filter_map(|c| c.pointer("/delta/content").and_then(Value::as_str))
                .map(|t| t.chars().count())
                .sum()
        })
}

/// The error event that ends a stream which broke after it started.
fn broken(e: &AttemptError) -> Value {
    serde_json::json!({"error": {
        "message": format!("the upstream stream broke after it started, so it cannot fall back: {}", e.message),
        "type": "upstream_error", "param": null, "code": e.class.as_str()}})
}
