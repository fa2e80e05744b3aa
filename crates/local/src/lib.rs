//! Switchyard's in-process LLM. A quantized chat model inside the gateway: a GGUF llama-family model run by candle on
//! worker threads behind a bounded queue, speaking the same OpenAI shapes as the HTTP
//! providers.
//!
//! The tokenizer comes from `tokenizer.json` when given, else from the GGUF's own vocabulary
//! and merges. Prompts use the model's chat template family (ChatML or Llama 3, detected from
//! the GGUF's `tokenizer.chat_template`). Sampling follows OpenAI's parameters: temperature
//! (0 = greedy), top_p, max_tokens, stop (up to 4 strings) and seed (same seed, same
//! output). A client that goes away stops its generation: the worker notices the closed
//! channel before the next token and takes the next job.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc::{Receiver, SyncSender, TrySendError, sync_channel};
use std::time::{SystemTime, UNIX_EPOCH};

use candle_core::quantized::gguf_file;
use candle_core::quantized::tokenizer::TokenizerFromGguf;
use candle_core::{Device, Tensor};
use candle_transformers::generation::LogitsProcessor;
use futures_util::StreamExt;
use serde_json::{Value, json};
use tokenizers::Tokenizer;

use switchyard_providers::{AttemptError, ErrorClass, InProcess, Reply, Usage};

mod blocks;
mod llama;
mod q4_1;
mod q8_0;

pub use llama::{Llama, MAX_SEQ_LEN};

/// Where the model is and how many may wait.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LocalSpec {
    /// The `.gguf` file.
    pub gguf: PathBuf,
    /// A `tokenizer.json`; `None` builds the tokenizer from the GGUF.
    pub tokenizer: Option<PathBuf>,
    /// Worker threads, each with its own copy of the weights and KV cache.
    pub workers: usize,
    /// Requests that may wait for a worker before callers get 429.
    pub queue: usize,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Template {
    ChatMl,
    Llama3,
}

/// What one request asks the model to do.
#[derive(Debug, Clone, PartialEq)]
pub struct Generation {
    pub prompt: Vec<u32>,
    pub max_tokens: usize,
    pub temperature: f64,
    pub top_p: Option<f64>,
    pub seed: u64,
    pub stop: Vec<String>,
}

#[derive(Debug, Clone, PartialEq)]
pub enum Event {
    Delta(String),
    Done {
        usage: Usage,
        finish_reason: &'static str,
    },
    Failed(String),
}

struct Job {
    generation: Generation,
    events: tokio::sync::mpsc::Sender<Event>,
}

/// The loaded model and its workers.
pub struct LocalEngine {
    name: String,
    tx: Option<SyncSender<Job>>,
    tokenizer: Arc<Tokenizer>,
    template: Template,
    /// The system message the template adds when the conversation has none.
    default_system: Option<String>,
    context: usize,
    capacity: usize,
    generated: Arc<AtomicU64>,
}

impl std::fmt::Debug for LocalEngine {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LocalEngine")
            .field("name", &self.name)
            .field("template", &self.template)
            .field("context", &self.context)
            .finish_non_exhaustive()
    }
}

fn load_error(path: &Path, e: impl std::fmt::Display) -> String {
    format!("{}: {e}", path.display())
}

fn read_gguf(path: &Path) -> Result<(gguf_file::Content, std::fs::File), String> {
    let mut file = std::fs::File::open(path).map_err(|e| {
        load_error(
            path,
            format!("{e} (fetch the default model with `bash models/fetch.sh local-llm`)"),
        )
    })?;
    let content = gguf_file::Content::read(&mut file)
        .map_err(|e| load_error(path, format!("not a GGUF file: {e}")))?;
    Ok((content, file))
}

/// Loads the model's weights ([`Llama`]: Q4_1 matrices run this crate's SIMD product,
/// other formats candle's kernels).
pub fn load_weights(path: &Path) -> Result<Llama, String> {
    let (content, mut file) = read_gguf(path)?;
    Llama::from_gguf(&content, &mut file)
        .map_err(|e| load_error(path, format!("cannot load the weights: {e}")))
}

impl LocalEngine {
    /// Loads the tokenizer and one copy of the weights per worker, and starts the workers.
    pub fn load(name: &str, spec: &LocalSpec) -> Result<Self, String> {
        let (content, _) = read_gguf(&spec.gguf)?;
        let tokenizer = match &spec.tokenizer {
            Some(path) => Tokenizer::from_file(path).map_err(|e| load_error(path, e))?,
            None => Tokenizer::from_gguf(&content).map_err(|e| {
                load_error(
                    &spec.gguf,
                    format!(
                        "cannot build a tokenizer from its vocabulary: {e}; pass a tokenizer.json"
                    ),
                )
            })?,
        };
        let template_text = content
            .metadata
            .get("tokenizer.chat_template")
            .and_then(|v| v.to_string().ok())
            .cloned()
            .unwrap_or_default();
        let vocab_has = |t: &str| tokenizer.token_to_id(t).is_some();
        let template = if template_text.contains("<|im_start|>")
            || (template_text.is_empty() && vocab_has("<|im_start|>"))
        {
            Template::ChatMl
        } else if template_text.contains("<|start_header_id|>")
            || (template_text.is_empty() && vocab_has("<|start_header_id|>"))
        {
            Template::Llama3
        } else {
            return Err(load_error(
                &spec.gguf,
                "unsupported chat template (ChatML and Llama 3 are supported)",
            ));
        };
        // e.g. SmolLM2: `{% if loop.first and messages[0]['role'] != 'system' %}
        // {{ '<|im_start|>system\nYou are a helpful AI assistant named SmolLM…<|im_end|>\n' }}`
        let default_system = (template == Template::ChatMl
            && template_text.contains("!= 'system'"))
        .then(|| template_text.split("<|im_start|>system\n").nth(1))
        .flatten()
        .and_then(|rest| rest.split("<|im_end|>").next())
        .map(str::to_owned);
        let mut eos: Vec<u32> = [
            "<|im_end|>",
            "<|endoftext|>",
            "<|eot_id|>",
            "<|end_of_text|>",
        ]
        .iter()
        .filter_map(|t| tokenizer.token_to_id(t))
        .collect();
        if let Some(id) = content
            .metadata
            .get("tokenizer.ggml.eos_token_id")
            .and_then(|v| v.to_u32().ok())
        {
            eos.push(id);
        }
        let context = content
            .metadata
            .iter()
            .find(|(k, _)| k.ends_with(".context_length"))
            .and_then(|(_, v)| v.to_u32().ok())
            .map_or(MAX_SEQ_LEN, |c| (c as usize).min(MAX_SEQ_LEN));
        let tokenizer = Arc::new(tokenizer);
        let capacity = spec.queue.max(1);
        let (tx, rx) = sync_channel::<Job>(capacity);
        let rx = Arc::new(std::sync::Mutex::new(rx));
        let generated = Arc::new(AtomicU64::new(0));
        for i in 0..spec.workers.max(1) {
            let model = load_weights(&spec.gguf)?;
            let (rx, tokenizer, eos, counter) = (
                rx.clone(),
                tokenizer.clone(),
                eos.clone(),
                generated.clone(),
            );
            std::thread::Builder::new()
                .name(format!("switchyard-local-{i}"))
                .spawn(move || worker(model, &tokenizer, &eos, &rx, &counter))
                .map_err(|e| format!("cannot start a local-model worker: {e}"))?;
        }
        tracing::info!(model = name, path = %spec.gguf.display(), ?template, context, workers = spec.workers.max(1), "local model loaded");
        Ok(Self {
            name: name.to_owned(),
            tx: Some(tx),
            tokenizer,
            template,
            default_system,
            context,
            capacity,
            generated,
        })
    }

    /// Tokens generated since load, across workers (a cancelled generation stops counting).
    pub fn tokens_generated(&self) -> u64 {
        self.generated.load(Ordering::Relaxed)
    }

    /// The prompt for `messages` in the model's template, ending where the assistant speaks.
    pub fn render(&self, messages: &[(String, String)]) -> String {
        let mut out = String::new();
        match self.template {
            Template::ChatMl => {
                if let Some(system) = &self.default_system
                    && messages.first().is_none_or(|(role, _)| role != "system")
                {
                    out.push_str(&format!("<|im_start|>system\n{system}<|im_end|>\n"));
                }
                for (role, content) in messages {
                    out.push_str(&format!("<|im_start|>{role}\n{content}<|im_end|>\n"));
                }
                out.push_str("<|im_start|>assistant\n");
            }
            Template::Llama3 => {
                out.push_str("<|begin_of_text|>");
                for (role, content) in messages {
                    out.push_str(&format!(
                        "<|start_header_id|>{role}<|end_header_id|>\n\n{content}<|eot_id|>"
                    ));
                }
                out.push_str("<|start_header_id|>assistant<|end_header_id|>\n\n");
            }
        }
        out
    }

    /// Validates an OpenAI request into a [`Generation`]; a bad parameter is a 400 naming it.
    pub fn prepare(&self, request: &Value) -> Result<Generation, AttemptError> {
        let bad = |field: &str, why: &str| AttemptError {
            class: ErrorClass::ClientError,
            status: Some(400),
            retry_after: None,
            message: format!("{}: {field}: {why}", self.name),
        };
        let messages = request
            .get("messages")
            .and_then(Value::as_array)
            .ok_or_else(|| bad("messages", "must be an array"))?;
        let mut turns = Vec::new();
        for (i, m) in messages.iter().enumerate() {
            let role = m.get("role").and_then(Value::as_str).unwrap_or("user");
            let role = if role == "developer" { "system" } else { role };
            let content = match m.get("content") {
                Some(Value::String(s)) => s.clone(),
                Some(Value::Array(parts)) => parts
                    .iter()
                    .map(|p| match p.get("type").and_then(Value::as_str) {
                        Some("text") => Ok(p
                            .get("text")
                            .and_then(Value::as_str)
                            .unwrap_or("")
                            .to_owned()),
                        _ => Err(bad(
                            &format!("messages[{i}].content"),
                            "only text parts are supported by the local model",
                        )),
                    })
                    .collect::<Result<Vec<_>, _>>()?
                    .join("\n"),
                _ => String::new(),
            };
            turns.push((role.to_owned(), content));
        }
        if request.get("tools").is_some_and(|t| !t.is_null()) {
            return Err(bad("tools", "the local model does not support tools"));
        }
        if request
            .get("n")
            .and_then(Value::as_u64)
            .is_some_and(|n| n != 1)
        {
            return Err(bad("n", "the local model generates one choice (n = 1)"));
        }
        let temperature = match request.get("temperature") {
            None | Some(Value::Null) => 1.0,
            Some(v) => v
                .as_f64()
                .filter(|t| (0.0..=2.0).contains(t))
                .ok_or_else(|| bad("temperature", "must be a number between 0 and 2"))?,
        };
        let top_p = match request.get("top_p") {
            None | Some(Value::Null) => None,
            Some(v) => Some(
                v.as_f64()
                    .filter(|p| *p > 0.0 && *p <= 1.0)
                    .ok_or_else(|| bad("top_p", "must be in (0, 1]"))?,
            ),
        };
        let seed = match request.get("seed") {
            None | Some(Value::Null) => rand::random(),
            Some(v) => v
                .as_u64()
                .or_else(|| v.as_i64().map(|i| i as u64))
                .ok_or_else(|| bad("seed", "must be an integer"))?,
        };
        let stop: Vec<String> = match request.get("stop") {
            None | Some(Value::Null) => Vec::new(),
            Some(Value::String(s)) => vec![s.clone()],
            Some(Value::Array(a)) => a
                .iter()
                .map(|s| {
                    s.as_str()
                        .map(str::to_owned)
                        .ok_or_else(|| bad("stop", "must be strings"))
                })
                .collect::<Result<_, _>>()?,
            Some(_) => return Err(bad("stop", "must be a string or an array of strings")),
        };
        if stop.len() > 4 || stop.iter().any(String::is_empty) {
            return Err(bad("stop", "at most 4 non-empty strings"));
        }
        let text = self.render(&turns);
        let prompt = self
            .tokenizer
            .encode(text, false)
            .map_err(|e| bad("messages", &format!("cannot tokenize: {e}")))?
            .get_ids()
            .to_vec();
        let room = self.context.saturating_sub(prompt.len());
        if room == 0 {
            return Err(bad(
                "messages",
                &format!(
                    "the prompt has {} tokens; the model's context is {}",
                    prompt.len(),
                    self.context
                ),
            ));
        }
        let max_tokens = match request
            .get("max_completion_tokens")
            .or_else(|| request.get("max_tokens"))
        {
            None | Some(Value::Null) => room.min(1024),
            Some(v) => {
                let n = v
                    .as_u64()
                    .filter(|n| *n >= 1)
                    .ok_or_else(|| bad("max_tokens", "must be a positive integer"))?
                    as usize;
                if n > room {
                    return Err(bad(
                        "max_tokens",
                        &format!(
                            "{n} + {} prompt tokens exceed the model's context of {}",
                            prompt.len(),
                            self.context
                        ),
                    ));
                }
                n
            }
        };
        Ok(Generation {
            prompt,
            max_tokens,
            temperature,
            top_p,
            seed,
            stop,
        })
    }

    /// Queues a generation; events arrive on the returned channel.
    pub fn submit(
        &self,
        generation: Generation,
    ) -> Result<tokio::sync::mpsc::Receiver<Event>, AttemptError> {
        let (events, rx) = tokio::sync::mpsc::channel(256);
        let tx = self.tx.as_ref().ok_or_else(|| {
            AttemptError::new(ErrorClass::ServerError, "the local model has stopped")
        })?;
        match tx.try_send(Job { generation, events }) {
            Ok(()) => Ok(rx),
            Err(TrySendError::Full(_)) => Err(AttemptError {
                class: ErrorClass::RateLimited,
                status: Some(429),
                retry_after: None,
                message: format!(
                    "{}: all local workers are busy and {} requests are waiting",
                    self.name, self.capacity
                ),
            }),
            Err(TrySendError::Disconnected(_)) => Err(AttemptError::new(
                ErrorClass::ServerError,
                "the local model's workers have stopped",
            )),
        }
    }

    /// An OpenAI chat request → the whole completion or a stream of chunks.
    pub async fn chat(&self, request: &Value, stream: bool) -> Result<Reply, AttemptError> {
        let generation = self.prepare(request)?;
        let mut events = self.submit(generation)?;
        let id = format!("chatcmpl-local-{:x}", rand::random::<u64>());
        let created = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_secs());
        let model = self.name.clone();
        let name = self.name.clone();
        let failed =
            move |m: String| AttemptError::new(ErrorClass::ServerError, format!("{name}: {m}"));
        if !stream {
            let mut text = String::new();
            while let Some(event) = events.recv().await {
                match event {
                    Event::Delta(d) => text.push_str(&d),
                    Event::Failed(m) => return Err(failed(m)),
                    Event::Done {
                        usage,
                        finish_reason,
                    } => {
                        let body = json!({"id": id, "object": "chat.completion", "created": created, "model": model,
                            "choices": [{"index": 0, "message": {"role": "assistant", "content": text},
                                         "logprobs": null, "finish_reason": finish_reason}],
                            "usage": {"prompt_tokens": usage.prompt_tokens, "completion_tokens": usage.completion_tokens,
                                      "total_tokens": usage.prompt_tokens.saturating_add(usage.completion_tokens)}});
                        return Ok(Reply::Full {
                            body,
                            usage: Some(usage),
                        });
                    }
                }
            }
            return Err(failed("the worker stopped mid-generation".into()));
        }
        let chunk = move |delta: Value, finish: Value| {
            json!({"id": id, "object": "chat.completion.chunk", "created": created, "model": model,
                   "choices": [{"index": 0, "delta": delta, "logprobs": null, "finish_reason": finish}]})
        };
        // The first chunk waits for the first event, so a failure before any token can
        // still fall back to another model.
        let first_event = events.recv().await;
        if let Some(Event::Failed(m)) = &first_event {
            return Err(failed(m.clone()));
        }
        let role = chunk(json!({"role": "assistant", "content": ""}), Value::Null);
        let to_chunks = move |event: Event| -> Vec<Result<Value, AttemptError>> {
            match event {
                Event::Delta(d) => vec![Ok(chunk(json!({"content": d}), Value::Null))],
                Event::Done {
                    usage,
                    finish_reason,
                } => {
                    let mut last = chunk(json!({}), Value::Null);
                    last["choices"] = json!([]);
                    last["usage"] = json!({"prompt_tokens": usage.prompt_tokens, "completion_tokens": usage.completion_tokens,
                                           "total_tokens": usage.prompt_tokens.saturating_add(usage.completion_tokens)});
                    vec![Ok(chunk(json!({}), finish_reason.into())), Ok(last)]
                }
                Event::Failed(m) => vec![Err(AttemptError::new(ErrorClass::ServerError, m))],
            }
        };
        let mut head = vec![Ok(role)];
        head.extend(first_event.into_iter().flat_map(&to_chunks));
        let mut head = head.into_iter();
        let first = head.next().ok_or_else(|| failed("no output".into()))??;
        let rest = futures_util::stream::iter(head).chain(
            futures_util::stream::unfold(events, |mut rx| async move {
                rx.recv().await.map(|e| (e, rx))
            })
            .flat_map(move |e| futures_util::stream::iter(to_chunks(e))),
        );
        Ok(Reply::Stream {
            first,
            rest: Box::pin(rest),
        })
    }
}

impl InProcess for LocalEngine {
    fn chat<'a>(
        &'a self,
        request: &'a Value,
        stream: bool,
    ) -> std::pin::Pin<Box<dyn std::future::Future<Output = Result<Reply, AttemptError>> + Send + 'a>>
    {
        Box::pin(LocalEngine::chat(self, request, stream))
    }
}

impl Drop for LocalEngine {
    fn drop(&mut self) {
        // Closing the queue ends the workers after their current job.
        self.tx.take();
    }
}

fn worker(
    mut model: Llama,
    tokenizer: &Tokenizer,
    eos: &[u32],
    rx: &std::sync::Mutex<Receiver<Job>>,
    generated: &AtomicU64,
) {
    loop {
        let job = {
            let Ok(guard) = rx.lock() else { return };
            match guard.recv() {
                Ok(job) => job,
                Err(_) => return,
            }
        };
        let events = job.events.clone();
        if let Err(e) = generate(&mut model, tokenizer, eos, job, generated) {
            let _ = events.blocking_send(Event::Failed(e.to_string()));
        }
    }
}

/// How many bytes at the end of `text` could be the start of a stop string (held back).
fn partial_stop(text: &str, stop: &[String]) -> usize {
    stop.iter()
        .flat_map(|s| {
            (1..s.len())
                .filter(move |&k| s.is_char_boundary(k))
                .map(move |k| &s[..k])
        })
        .filter(|prefix| text.ends_with(prefix))
        .map(str::len)
        .max()
        .unwrap_or(0)
}

fn generate(
    model: &mut Llama,
    tokenizer: &Tokenizer,
    eos: &[u32],
    job: Job,
    counter: &AtomicU64,
) -> candle_core::Result<()> {
    let Job {
        generation: g,
        events,
    } = job;
    model.clear_kv_cache();
    let mut sampler = LogitsProcessor::new(g.seed, Some(g.temperature), g.top_p);
    let device = Device::Cpu;
    let input = Tensor::new(g.prompt.as_slice(), &device)?.unsqueeze(0)?;
    let logits = model.forward(&input, 0)?.squeeze(0)?;
    let mut next = sampler.sample(&logits)?;
    let mut generated: Vec<u32> = Vec::new();
    let mut sent = 0usize;
    let decode = |ids: &[u32]| {
        tokenizer
            .decode(ids, true)
            .map_err(candle_core::Error::wrap)
    };
    let finish_reason = loop {
        if eos.contains(&next) {
            break "stop";
        }
        generated.push(next);
        counter.fetch_add(1, Ordering::Relaxed);
        let text = decode(&generated)?;
        if let Some(at) = g.stop.iter().filter_map(|s| text.find(s.as_str())).min() {
            if at > sent
                && events
                    .blocking_send(Event::Delta(text[sent..at].to_owned()))
                    .is_err()
            {
                return Ok(());
            }
            sent = at;
            break "stop";
        }
        // Hold back an incomplete UTF-8 sequence and a possible start of a stop string.
        let mut end = text.len() - partial_stop(&text, &g.stop);
        while end > sent && text[..end].ends_with('\u{FFFD}') {
            end -= '\u{FFFD}'.len_utf8();
        }
        if end > sent {
            if events
                .blocking_send(Event::Delta(text[sent..end].to_owned()))
                .is_err()
            {
                return Ok(()); // the client went away: stop here, free the worker
            }
            sent = end;
        }
        if generated.len() >= g.max_tokens {
            break "length";
        }
        if events.is_closed() {
            return Ok(());
        }
        let input = Tensor::new(&[next], &device)?.unsqueeze(0)?;
        let logits = model
            .forward(&input, g.prompt.len() + generated.len() - 1)?
            .squeeze(0)?;
        next = sampler.sample(&logits)?;
    };
    if finish_reason == "length" {
        let text = decode(&generated)?;
        if text.len() > sent {
            let _ = events.blocking_send(Event::Delta(text[sent..].to_owned()));
        }
    }
    let usage = Usage {
        prompt_tokens: g.prompt.len() as u64,
        completion_tokens: generated.len() as u64,
    };
    let _ = events.blocking_send(Event::Done {
        usage,
        finish_reason,
    });
    Ok(())
}
