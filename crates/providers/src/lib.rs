//! Upstream LLM providers behind one OpenAI-shaped interface.
//!
//! A [`Provider`] takes an OpenAI Chat Completions request body (with `model` already set to
//! the upstream's model id) and returns either the whole `chat.completion` object or a stream
//! of `chat.completion.chunk` objects — whatever the upstream speaks. Two kinds exist:
//! [`ProviderKind::Openai`], any OpenAI-compatible base URL (OpenAI, vLLM, Ollama,
//! llama.cpp's server, OpenRouter, Together, Groq, …), and [`ProviderKind::Anthropic`], whose
//! Messages API is translated both ways, streaming included ([`anthropic`]).
//!
//! Every failure is an [`AttemptError`] with a class that says whether retrying the same
//! target can help ([`AttemptError::retryable`]) and whether another target may be tried
//! ([`AttemptError::falls_back`]). Retries ([`RetryPolicy`]) and per-target circuit
//! breakers ([`Breaker`]) are small pure pieces the gateway's fallback loop combines.

pub mod anthropic;
mod breaker;
pub mod fallback;
mod openai;
mod retry;
mod sse;

use std::pin::Pin;
use std::time::Duration;

use futures_util::Stream;
use serde::{Deserialize, Serialize};
use serde_json::Value;

pub use breaker::{Breaker, BreakerConfig, BreakerState, Permit};
pub use retry::{RetryPolicy, parse_retry_after};

/// Which wire protocol a provider speaks.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ProviderKind {
    /// OpenAI Chat Completions at `{base_url}/chat/completions`.
    Openai,
    /// Anthropic Messages at `{base_url}/messages`.
    Anthropic,
    /// A GGUF model run in-process (`switchyard-local`, behind [`InProcess`]).
    Local,
}

/// An upstream API key. Its `Debug` never shows the value, so it cannot leak into logs.
#[derive(Clone, PartialEq, Eq)]
pub struct ApiKey(String);

impl ApiKey {
    pub fn new(value: impl Into<String>) -> Self {
        Self(value.into())
    }

    fn expose(&self) -> &str {
        &self.0
    }
}

impl std::fmt::Debug for ApiKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("ApiKey(<redacted>)")
    }
}

/// How long each phase of an attempt may take.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Timeouts {
    /// TCP (and TLS) connect.
    pub connect: Duration,
    /// From sending the request to the response headers (and, for streams, the first chunk).
    pub first_byte: Duration,
    /// Longest silence between two body chunks.
    pub idle: Duration,
}

impl Default for Timeouts {
    fn default() -> Self {
        Self {
            connect: Duration::from_secs(5),
            first_byte: Duration::from_secs(60),
            idle: Duration::from_secs(30),
        }
    }
}

/// Everything needed to talk to one upstream.
#[derive(Debug, Clone)]
pub struct ProviderSpec {
    pub name: String,
    pub kind: ProviderKind,
    /// e.g. `https://api.openai.com/v1` (no trailing `/chat/completions`).
    pub base_url: String,
    pub api_key: Option<ApiKey>,
    pub timeouts: Timeouts,
}

/// Why an attempt failed, as metrics and the traffic log name it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ErrorClass {
    /// Could not connect.
    Connect,
    /// No response headers (or first stream chunk) in time.
    Timeout,
    /// HTTP 429.
    RateLimited,
    /// HTTP 5xx, or an error event inside a stream.
    ServerError,
    /// HTTP 4xx other than 429.
    ClientError,
    /// A body that is not what the protocol promises.
    Malformed,
    /// The body stopped arriving for longer than the idle timeout.
    Stalled,
    /// The connection closed or reset mid-response.
    Reset,
    /// The target's circuit breaker is open; no request was sent.
    BreakerOpen,
}

impl ErrorClass {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Connect => "connect",
            Self::Timeout => "timeout",
            Self::RateLimited => "rate_limited",
            Self::ServerError => "server_error",
            Self::ClientError => "client_error",
            Self::Malformed => "malformed",
            Self::Stalled => "stalled",
            Self::Reset => "reset",
            Self::BreakerOpen => "breaker_open",
        }
    }
}

/// One failed attempt. The message names the provider and what went wrong; it never holds
/// the API key (keys travel only in request headers, which are never formatted).
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error("{message}")]
pub struct AttemptError {
    pub class: ErrorClass,
    /// The upstream's HTTP status, when it answered with one.
    pub status: Option<u16>,
    /// The upstream's `Retry-After`, when it sent one.
    pub retry_after: Option<Duration>,
    pub message: String,
}

impl AttemptError {
    pub fn new(class: ErrorClass, message: impl Into<String>) -> Self {
        Self {
            class,
            status: None,
            retry_after: None,
            message: message.into(),
        }
    }

    /// Whether the same target may be tried again: transport failures, timeouts, 429, 5xx.
    pub fn retryable(&self) -> bool {
        matches!(
            self.class,
            ErrorClass::Connect
                | ErrorClass::Timeout
                | ErrorClass::RateLimited
                | ErrorClass::ServerError
                | ErrorClass::Reset
        )
    }

    /// Whether another target may be tried. Not when the upstream said the request itself
    /// is bad (400, 413, 422): another model would refuse it too, and the client must see why.
    pub fn falls_back(&self) -> bool {
        !(self.class == ErrorClass::ClientError && matches!(self.status, Some(400 | 413 | 422)))
    }

    /// Whether the failure says something about the target's health (breaker input).
    pub fn counts_against_target(&self) -> bool {
        !matches!(
            self.class,
            ErrorClass::ClientError | ErrorClass::BreakerOpen
        )
    }
}

/// Token counts as the upstream reported them.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Usage {
    pub prompt_tokens: u64,
    pub completion_tokens: u64,
}

impl Usage {
    /// Reads an OpenAI `usage` object.
    pub fn from_openai(usage: &Value) -> Option<Self> {
        Some(Self {
            prompt_tokens: usage.get("prompt_tokens")?.as_u64()?,
            completion_tokens: usage.get("completion_tokens")?.as_u64().unwrap_or(0),
        })
    }
}

/// `chat.completion.chunk` objects, ending where the upstream's stream ends.
pub type ChunkStream = Pin<Box<dyn Stream<Item = Result<Value, AttemptError>> + Send>>;

/// A successful answer.
pub enum Reply {
    /// A whole `chat.completion` object.
    Full { body: Value, usage: Option<Usage> },
    /// A stream that has produced its first chunk (so the upstream has committed to
    /// answering); the rest follows.
    Stream { first: Value, rest: ChunkStream },
}

impl std::fmt::Debug for Reply {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Full { usage, .. } => f.debug_struct("Full").field("usage", usage).finish(),
            Self::Stream { first, .. } => f.debug_struct("Stream").field("first", first).finish(),
        }
    }
}

/// Makes ring the process's rustls crypto provider (once; a provider installed earlier by
/// the program stays). reqwest is built without one of its own.
pub fn install_crypto_provider() {
    static ONCE: std::sync::Once = std::sync::Once::new();
    ONCE.call_once(|| {
        // Err means a provider is installed already: that one serves.
        let _ = rustls::crypto::ring::default_provider().install_default();
    });
}

/// The calling thread's pooled HTTP client for this connect timeout.
///
/// One client per thread, not one per process: a pooled connection is driven by a task on
/// the runtime that opened it, so with one client shared by the gateway's event loops (one
/// single-threaded runtime per thread) a request could go out on another loop's connection
/// and its response come back through a cross-thread wake-up each way. Per-thread clients
/// keep a request, its connection and its response on one thread.
fn http_client(connect_timeout: Duration) -> Result<reqwest::Client, reqwest::Error> {
    install_crypto_provider();
    thread_local! {
        static CLIENTS: std::cell::RefCell<Vec<(Duration, reqwest::Client)>> =
            const { std::cell::RefCell::new(Vec::new()) };
    }
    CLIENTS.with_borrow_mut(|clients| {
        if let Some((_, client)) = clients.iter().find(|(t, _)| *t == connect_timeout) {
            return Ok(client.clone());
        }
        let client = reqwest::Client::builder()
            .connect_timeout(connect_timeout)
            .pool_idle_timeout(Duration::from_secs(90))
            .tcp_nodelay(true)
            .build()?;
        clients.push((connect_timeout, client.clone()));
        Ok(client)
    })
}

fn client(spec: &ProviderSpec) -> Result<reqwest::Client, AttemptError> {
    http_client(spec.timeouts.connect).map_err(|e| {
        AttemptError::new(
            ErrorClass::Connect,
            format!("{}: cannot build an HTTP client: {e}", spec.name),
        )
    })
}

/// A model served inside this process (the local GGUF engine in `switchyard-local`): the
/// same OpenAI shapes as the HTTP providers, behind one seam so this crate needs no model
/// runtime.
pub trait InProcess: Send + Sync + std::fmt::Debug {
    /// Answers an OpenAI Chat Completions request, whole or as a stream.
    fn chat<'a>(
        &'a self,
        request: &'a Value,
        stream: bool,
    ) -> Pin<Box<dyn std::future::Future<Output = Result<Reply, AttemptError>> + Send + 'a>>;
}

/// One configured upstream.
#[derive(Debug, Clone)]
pub enum Provider {
    /// An HTTP API; connections are pooled per thread ([`http_client`]).
    Http(ProviderSpec),
    /// A model run in this process.
    InProcess {
        name: String,
        engine: std::sync::Arc<dyn InProcess>,
    },
}

impl Provider {
    /// An HTTP provider; fails here, at start-up or reload, rather than on the first request.
    pub fn new(spec: ProviderSpec) -> Result<Self, AttemptError> {
        client(&spec)?;
        Ok(Self::Http(spec))
    }

    /// A provider around a model loaded in this process.
    pub fn in_process(name: &str, engine: std::sync::Arc<dyn InProcess>) -> Self {
        Self::InProcess {
            name: name.to_owned(),
            engine,
        }
    }

    pub fn name(&self) -> &str {
        match self {
            Self::Http(spec) => &spec.name,
            Self::InProcess { name, .. } => name,
        }
    }

    /// Sends an OpenAI Chat Completions request (`model` set to the upstream's id).
    ///
    /// Error messages are scrubbed of the API key: some upstreams echo it back.
    pub async fn chat(&self, request: Value, stream: bool) -> Result<Reply, AttemptError> {
        match self {
            Self::Http(spec) => http_chat(spec, request, stream).await,
            Self::InProcess { engine, .. } => engine.chat(&request, stream).await,
        }
    }
}

async fn http_chat(
    spec: &ProviderSpec,
    request: Value,
    stream: bool,
) -> Result<Reply, AttemptError> {
    let result = match (spec.kind, client(spec)) {
        (_, Err(e)) => Err(e),
        (ProviderKind::Anthropic, Ok(c)) => anthropic::chat(&c, spec, &request, stream).await,
        (_, Ok(c)) => openai::chat(&c, spec, request, stream).await,
    };
    let key = spec.api_key.clone();
    let scrub = move |e: AttemptError| scrub(e, key.as_ref());
    match result {
        Ok(Reply::Stream { first, rest }) => Ok(Reply::Stream {
            first,
            rest: Box::pin(futures_util::StreamExt::map(rest, move |r| {
                r.map_err(&scrub)
            })),
        }),
        Ok(full) => Ok(full),
        Err(e) => Err(scrub(e)),
    }
}

/// The longest error message kept from an upstream (the log and the client see no more).
const ERROR_MESSAGE_CHARS: usize = 300;

/// Removes the API key from an error's message, then cuts the message to
/// [`ERROR_MESSAGE_CHARS`]. In that order: a cut first could split an echoed key, and its
/// prefix would no longer match the key and would leak.
fn scrub(mut e: AttemptError, key: Option<&ApiKey>) -> AttemptError {
    if let Some(k) = key
        && !k.expose().is_empty()
    {
        e.message = e.message.replace(k.expose(), "<redacted>");
    }
    if e.message.chars().count() > ERROR_MESSAGE_CHARS {
        e.message = e
            .message
            .chars()
            .take(ERROR_MESSAGE_CHARS)
            .collect::<String>()
            + "…";
    }
    e
}

/// Response body helpers shared by both kinds.
mod body {
    use std::time::Duration;

    use bytes::Bytes;
    use futures_util::StreamExt;

    use crate::{AttemptError, ErrorClass};

    /// The most of an error body worth reading.
    const ERROR_BODY_LIMIT: usize = 64 * 1024;

    /// Reads a whole body, failing when it stalls for longer than `idle` between chunks.
    pub async fn read_all(
        response: reqwest::Response,
        idle: Duration,
        limit: Option<usize>,
        who: &str,
    ) -> Result<Vec<u8>, AttemptError> {
        let mut stream = response.bytes_stream();
        let mut out = Vec::new();
        loop {
            match next_chunk(&mut stream, idle, who).await? {
                Some(chunk) => {
                    out.extend_from_slice(&chunk);
                    if limit.is_some_and(|l| out.len() >= l) {
                        return Ok(out);
                    }
                }
                None => return Ok(out),
            }
        }
    }

    pub async fn next_chunk<S>(
        stream: &mut S,
        idle: Duration,
        who: &str,
    ) -> Result<Option<Bytes>, AttemptError>
    where
        S: futures_util::Stream<Item = reqwest::Result<Bytes>> + Unpin,
    {
        match tokio::time::timeout(idle, stream.next()).await {
            Err(_) => Err(AttemptError::new(
                ErrorClass::Stalled,
                format!("{who}: no data for {} ms mid-response", idle.as_millis()),
            )),
            Ok(None) => Ok(None),
            Ok(Some(Ok(chunk))) => Ok(Some(chunk)),
            Ok(Some(Err(e))) => Err(AttemptError::new(
                ErrorClass::Reset,
                format!("{who}: the connection broke mid-response: {}", describe(&e)),
            )),
        }
    }

    /// Turns a non-2xx response into an error carrying the upstream's own message.
    pub async fn status_error(
        response: reqwest::Response,
        idle: Duration,
        who: &str,
    ) -> AttemptError {
        let status = response.status().as_u16();
        let retry_after = response
            .headers()
            .get(reqwest::header::RETRY_AFTER)
            .and_then(|v| v.to_str().ok())
            .and_then(crate::parse_retry_after);
        let text = read_all(response, idle, Some(ERROR_BODY_LIMIT), who)
            .await
            .unwrap_or_default();
        let upstream = serde_json::from_slice::<serde_json::Value>(&text)
            .ok()
            .and_then(|v| {
                v.pointer("/error/message")
                    .and_then(|m| m.as_str())
                    .map(str::to_owned)
            })
            // Whole: the caller scrubs the key, then shortens (see `scrub`).
            .unwrap_or_else(|| String::from_utf8_lossy(&text).into_owned());
        let class = match status {
            429 => ErrorClass::RateLimited,
            500..=599 => ErrorClass::ServerError,
            _ => ErrorClass::ClientError,
        };
        AttemptError {
            class,
            status: Some(status),
            retry_after,
            message: format!("{who}: HTTP {status}: {upstream}"),
        }
    }

    /// Sends with the first-byte timeout and classifies transport errors.
    pub async fn send(
        request: reqwest::RequestBuilder,
        first_byte: Duration,
        who: &str,
    ) -> Result<reqwest::Response, AttemptError> {
        match tokio::time::timeout(first_byte, request.send()).await {
            Err(_) => Err(AttemptError::new(
                ErrorClass::Timeout,
                format!(
                    "{who}: no response within {} ms (first-byte timeout)",
                    first_byte.as_millis()
                ),
            )),
            Ok(Ok(response)) => Ok(response),
            Ok(Err(e)) => {
                let class = if e.is_connect() {
                    ErrorClass::Connect
                } else if e.is_timeout() {
                    ErrorClass::Timeout
                } else {
                    ErrorClass::Reset
                };
                Err(AttemptError::new(
                    class,
                    format!("{who}: request failed: {}", describe(&e)),
                ))
            }
        }
    }

    /// A reqwest error with its causes (the URL is the configured base URL; keys travel
    /// only in headers, which reqwest never formats).
    fn describe(e: &reqwest::Error) -> String {
        let mut text = e.to_string();
        let mut source = std::error::Error::source(e);
        while let Some(s) = source {
            text.push_str(": ");
            text.push_str(&s.to_string());
            source = s.source();
        }
        text
    }

    /// Waits (within the first-byte timeout) for a stream's first chunk: until it arrives
    /// nothing has reached the client, so a failure here can still fall back.
    pub async fn first_chunk(
        mut chunks: crate::ChunkStream,
        first_byte: Duration,
        who: &str,
    ) -> Result<crate::Reply, AttemptError> {
        match tokio::time::timeout(first_byte, chunks.next()).await {
            Err(_) => Err(AttemptError::new(
                ErrorClass::Timeout,
                format!("{who}: no stream chunk within the first-byte timeout"),
            )),
            Ok(None) => Err(malformed(who, "the stream ended before any chunk")),
            Ok(Some(first)) => Ok(crate::Reply::Stream {
                first: first?,
                rest: chunks,
            }),
        }
    }

    pub fn malformed(who: &str, what: impl std::fmt::Display) -> AttemptError {
        AttemptError::new(
            ErrorClass::Malformed,
            format!("{who}: malformed response: {what}"),
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_key_echoed_across_the_cut_leaks_no_prefix() {
        let key = ApiKey::new("sk-live-0123456789abcdefghijklmnopqrstuvwxyz");
        for pad in [0, 150, 190, 280, 299, 400] {
            let echoed = format!("{}{} was refused", "x".repeat(pad), key.expose());
            let e = scrub(
                AttemptError::new(ErrorClass::ClientError, echoed),
                Some(&key),
            );
            assert!(
                !e.message.contains(&key.expose()[..8]),
                "pad {pad}: {}",
                e.message
            );
            assert!(e.message.chars().count() <= ERROR_MESSAGE_CHARS + 1);
        }
    }
}
