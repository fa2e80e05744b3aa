//! Anthropic's Messages API behind the OpenAI interface: requests, responses and streams are
//! translated both ways.
//!
//! Mapping: `system`/`developer` messages → `system`; text and multi-part text content →
//! text blocks; assistant `tool_calls` → `tool_use` blocks; `tool` messages → `tool_result`
//! blocks in a user turn; `stop` → `stop_sequences`; `tools`/`tool_choice` → Anthropic's
//! forms; `max_tokens` (or `max_completion_tokens`) defaults to [`DEFAULT_MAX_TOKENS`],
//! since Anthropic requires it. Stop reasons map to OpenAI's `finish_reason`s.

use std::time::{SystemTime, UNIX_EPOCH};

use futures_util::StreamExt;
use serde_json::{Map, Value, json};

use crate::{AttemptError, ErrorClass, ProviderSpec, Reply, Usage, body, sse};

/// Anthropic requires `max_tokens`; this is used when the request has none.
pub const DEFAULT_MAX_TOKENS: u64 = 4096;
const API_VERSION: &str = "2023-06-01";

fn bad_request(message: impl Into<String>) -> AttemptError {
    AttemptError {
        class: ErrorClass::ClientError,
        status: Some(400),
        retry_after: None,
        message: message.into(),
    }
}

/// The text of an OpenAI `content` (a string, or parts of which the text ones count).
fn text_blocks(content: &Value, at: &str) -> Result<Vec<Value>, AttemptError> {
    match content {
        Value::Null => Ok(Vec::new()),
        Value::String(s) => Ok(vec![json!({"type": "text", "text": s})]),
        Value::Array(parts) => parts
            .iter()
            .map(|part| match part.get("type").and_then(Value::as_str) {
                Some("text") => Ok(json!({"type": "text",
                    "text": part.get("text").and_then(Value::as_str).unwrap_or_default()})),
                other => Err(bad_request(format!(
                    "{at}: content part type {other:?} cannot be sent to an Anthropic model (only text)"
                ))),
            })
            .collect(),
        _ => Err(bad_request(format!("{at}: content must be a string or an array of parts"))),
    }
}

/// OpenAI Chat Completions request → Anthropic Messages request.
pub fn to_messages_request(request: &Value, stream: bool) -> Result<Value, AttemptError> {
    let messages = request
        .get("messages")
        .and_then(Value::as_array)
        .ok_or_else(|| bad_request("`messages` must be an array"))?;
    let (system, turns) = to_turns(messages)?;
    let mut body = Map::new();
    body.insert(
        "model".into(),
        request.get("model").cloned().unwrap_or(Value::Null),
    );
    body.insert("messages".into(), Value::Array(turns));
    if !system.is_empty() {
        body.insert("system".into(), Value::Array(system));
    }
    sampling(request, &mut body);
    tools(request, &mut body);
    if stream {
        body.insert("stream".into(), Value::Bool(true));
    }
    Ok(Value::Object(body))
}

/// The system blocks, and the turns with consecutive turns of one role merged (Anthropic
/// wants them alternating).
fn to_turns(messages: &[Value]) -> Result<(Vec<Value>, Vec<Value>), AttemptError> {
    let mut system = Vec::new();
    let mut out: Vec<Value> = Vec::new();
    for (i, m) in messages.iter().enumerate() {
        let at = format!("messages[{i}]");
        let content = m.get("content").unwrap_or(&Value::Null);
        let (role, blocks) = match m.get("role").and_then(Value::as_str).unwrap_or_default() {
            "system" | "developer" => {
                system.extend(text_blocks(content, &at)?);
                continue;
            }
            "user" => ("user", text_blocks(content, &at)?),
            "assistant" => ("assistant", assistant_blocks(m, content, &at)?),
            "tool" => ("user", tool_result_blocks(m, content, &at)?),
            other => return Err(bad_request(format!("{at}.role: unknown role {other:?}"))),
        };
        match out.last_mut() {
            Some(last) if last["role"] == role => {
                if let Some(existing) = last["content"].as_array_mut() {
                    existing.extend(blocks);
                }
            }
            _ => out.push(json!({"role": role, "content": blocks})),
        }
    }
    Ok((system, out))
}

/// An assistant turn: its text, then its tool calls as `tool_use` blocks.
fn assistant_blocks(m: &Value, content: &Value, at: &str) -> Result<Vec<Value>, AttemptError> {
    let mut blocks = text_blocks(content, at)?;
    for call in m
        .get("tool_calls")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
    {
        let f = call.get("function").unwrap_or(&Value::Null);
        let args = f.get("arguments").and_then(Value::as_str).unwrap_or("{}");
        let input: Value = serde_json::from_str(args)
            .map_err(|e| bad_request(format!("{at}.tool_calls: arguments are not JSON: {e}")))?;
        blocks.push(json!({"type": "tool_use", "id": call.get("id"),
            "name": f.get("name"), "input": input}));
    }
    Ok(blocks)
}

/// A tool's answer as a `tool_result` block of a user turn.
fn tool_result_blocks(m: &Value, content: &Value, at: &str) -> Result<Vec<Value>, AttemptError> {
    let text: String = text_blocks(content, at)?
        .iter()
        .filter_map(|b| b.get("text").and_then(Value::as_str))
        .collect();
    let id = m.get("tool_call_id").cloned().unwrap_or(Value::Null);
    Ok(vec![
        json!({"type": "tool_result", "tool_use_id": id, "content": text}),
    ])
}

/// `max_tokens` (required by Anthropic), temperature, top_p and stop sequences.
fn sampling(request: &Value, body: &mut Map<String, Value>) {
    let max_tokens = request
        .get("max_completion_tokens")
        .or_else(|| request.get("max_tokens"))
        .and_then(Value::as_u64)
        .unwrap_or(DEFAULT_MAX_TOKENS);
    body.insert("max_tokens".into(), max_tokens.into());
    for key in ["temperature", "top_p"] {
        if let Some(v) = request.get(key).filter(|v| !v.is_null()) {
            body.insert(key.into(), v.clone());
        }
    }
    match request.get("stop") {
        Some(Value::String(s)) => {
            body.insert("stop_sequences".into(), json!([s]));
        }
        Some(Value::Array(a)) => {
            body.insert("stop_sequences".into(), Value::Array(a.clone()));
        }
        _ => {}
    }
}

/// Tool definitions and the tool choice.
fn tools(request: &Value, body: &mut Map<String, Value>) {
    if let Some(tools) = request.get("tools").and_then(Value::as_array) {
        let tools: Vec<Value> = tools
            .iter()
            .map(|t| {
                let f = t.get("function").unwrap_or(&Value::Null);
                json!({"name": f.get("name"), "description": f.get("description"),
                       "input_schema": f.get("parameters").cloned()
                           .unwrap_or_else(|| json!({"type": "object"}))})
            })
            .collect();
        body.insert("tools".into(), Value::Array(tools));
    }
    match request.get("tool_choice") {
        Some(Value::String(s)) if s == "required" => {
            body.insert("tool_choice".into(), json!({"type": "any"}));
        }
        Some(Value::String(s)) if s == "none" => {
            body.insert("tool_choice".into(), json!({"type": "none"}));
        }
        Some(Value::Object(o)) => {
            let name = o.get("function").and_then(|f| f.get("name")).cloned();
            body.insert("tool_choice".into(), json!({"type": "tool", "name": name}));
        }
        _ => {}
    }
}

fn finish_reason(stop_reason: Option<&str>) -> Value {
    match stop_reason {
        Some("end_turn" | "stop_sequence") => "stop".into(),
        Some("max_tokens") => "length".into(),
        Some("tool_use") => "tool_calls".into(),
        Some(other) => other.into(),
        None => Value::Null,
    }
}

fn now_secs() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

/// Anthropic Messages response → OpenAI `chat.completion`.
pub fn from_messages_response(response: &Value) -> Result<(Value, Option<Usage>), String> {
    let blocks = response
        .get("content")
        .and_then(Value::as_array)
        .ok_or("no `content` array")?;
    let mut text = String::new();
    let mut tool_calls = Vec::new();
    for block in blocks {
        match block.get("type").and_then(Value::as_str) {
            Some("text") => text.push_str(block.get("text").and_then(Value::as_str).unwrap_or("")),
            Some("tool_use") => tool_calls.push(json!({
                "id": block.get("id"), "type": "function",
                "function": {"name": block.get("name"),
                             "arguments": block.get("input").map(Value::to_string)
                                 .unwrap_or_else(|| "{}".into())}})),
            _ => {}
        }
    }
    let usage = response.get("usage").map(|u| Usage {
        prompt_tokens: u.get("input_tokens").and_then(Value::as_u64).unwrap_or(0),
        completion_tokens: u.get("output_tokens").and_then(Value::as_u64).unwrap_or(0),
    });
    let mut message = json!({"role": "assistant",
        "content": if text.is_empty() && !tool_calls.is_empty() { Value::Null } else { text.into() }});
    if !tool_calls.is_empty() {
        message["tool_calls"] = Value::Array(tool_calls);
    }
    let mut out = json!({
        "id": response.get("id"), "object": "chat.completion", "created": now_secs(),
        "model": response.get("model"),
        "choices": [{"index": 0, "message": message, "logprobs": null,
                     "finish_reason": finish_reason(response.get("stop_reason").and_then(Value::as_str))}],
    });
    if let Some(u) = usage {
        out["usage"] = json!({"prompt_tokens": u.prompt_tokens, "completion_tokens": u.completion_tokens,
                              "total_tokens": u.prompt_tokens.saturating_add(u.completion_tokens)});
    }
    Ok((out, usage))
}

/// Turns Anthropic stream events into OpenAI chunks, one event at a time.
#[derive(Debug, Default)]
pub struct StreamTranslator {
    id: Value,
    model: Value,
    created: u64,
    input_tokens: u64,
    /// Anthropic content-block index → OpenAI tool-call index.
    tool_index: Vec<(u64, usize)>,
}

impl StreamTranslator {
    fn chunk(&self, delta: Value, finish: Value) -> Value {
        json!({"id": self.id, "object": "chat.completion.chunk", "created": self.created,
               "model": self.model,
               "choices": [{"index": 0, "delta": delta, "logprobs": null, "finish_reason": finish}]})
    }

    /// The OpenAI chunks for one event (none for pings and bookkeeping events).
    pub fn translate(&mut self, event: &Value) -> Result<Vec<Value>, AttemptError> {
        let kind = event
            .get("type")
            .and_then(Value::as_str)
            .unwrap_or_default();
        Ok(match kind {
            "message_start" => {
                let m = event.get("message").unwrap_or(&Value::Null);
                self.id = m.get("id").cloned().unwrap_or(Value::Null);
                self.model = m.get("model").cloned().unwrap_or(Value::Null);
                self.created = now_secs();
                self.input_tokens = m
                    .pointer("/usage/input_tokens")
                    .and_then(Value::as_u64)
                    .unwrap_or(0);
                vec![self.chunk(json!({"role": "assistant", "content": ""}), Value::Null)]
            }
            "content_block_start" => {
                let block = event.get("content_block").unwrap_or(&Value::Null);
                if block.get("type").and_then(Value::as_str) != Some("tool_use") {
                    return Ok(Vec::new());
                }
                let at = event.get("index").and_then(Value::as_u64).unwrap_or(0);
                let index = self.tool_index.len();
                self.tool_index.push((at, index));
                vec![self.chunk(
                    json!({"tool_calls": [{"index": index, "id": block.get("id"), "type": "function",
                           "function": {"name": block.get("name"), "arguments": ""}}]}),
                    Value::Null,
                )]
            }
            "content_block_delta" => {
                let delta = event.get("delta").unwrap_or(&Value::Null);
                match delta.get("type").and_then(Value::as_str) {
                    Some("text_delta") => vec![self.chunk(
                        json!({"content": delta.get("text").and_then(Value::as_str).unwrap_or("")}),
                        Value::Null,
                    )],
                    Some("input_json_delta") => {
                        let at = event.get("index").and_then(Value::as_u64).unwrap_or(0);
                        let index = self
                            .tool_index
                            .iter()
                            .find(|(a, _)| *a == at)
                            .map_or(0, |(_, i)| *i);
                        vec![self.chunk(
                            json!({"tool_calls": [{"index": index, "function": {
                                "arguments": delta.get("partial_json").and_then(Value::as_str).unwrap_or("")}}]}),
                            Value::Null,
                        )]
                    }
                    _ => Vec::new(),
                }
            }
            "message_delta" => {
                let stop = event.pointer("/delta/stop_reason").and_then(Value::as_str);
                let output = event
                    .pointer("/usage/output_tokens")
                    .and_then(Value::as_u64)
                    .unwrap_or(0);
                let mut usage = self.chunk(json!({}), Value::Null);
                usage["choices"] = json!([]);
                usage["usage"] = json!({"prompt_tokens": self.input_tokens, "completion_tokens": output,
                                        "total_tokens": self.input_tokens.saturating_add(output)});
                vec![self.chunk(json!({}), finish_reason(stop)), usage]
            }
            "error" => {
                let message = event
                    .pointer("/error/message")
                    .and_then(Value::as_str)
                    .unwrap_or("unknown error");
                return Err(AttemptError::new(
                    ErrorClass::ServerError,
                    format!("error inside the stream: {message}"),
                ));
            }
            _ => Vec::new(),
        })
    }
}

pub async fn chat(
    client: &reqwest::Client,
    spec: &ProviderSpec,
    request: &Value,
    stream: bool,
) -> Result<Reply, AttemptError> {
    let who = spec.name.as_str();
    let body = to_messages_request(request, stream)?;
    let url = format!("{}/messages", spec.base_url.trim_end_matches('/'));
    let mut builder = client
        .post(url)
        .header("anthropic-version", API_VERSION)
        .json(&body);
    if let Some(key) = &spec.api_key {
        builder = builder.header("x-api-key", key.expose());
    }
    let response = body::send(builder, spec.timeouts.first_byte, who).await?;
    if !response.status().is_success() {
        return Err(body::status_error(response, spec.timeouts.idle, who).await);
    }
    if !stream {
        let bytes = body::read_all(response, spec.timeouts.idle, None, who).await?;
        let value: Value = serde_json::from_slice(&bytes).map_err(|e| body::malformed(who, e))?;
        let (body, usage) = from_messages_response(&value).map_err(|e| body::malformed(who, e))?;
        return Ok(Reply::Full { body, usage });
    }
    let who_owned = who.to_owned();
    let mut translator = StreamTranslator::default();
    let chunks: crate::ChunkStream = Box::pin(
        sse::data_stream(response.bytes_stream(), spec.timeouts.idle, who.to_owned())
            .take_while(|data| {
                let stop = matches!(data, Ok(d) if d.contains("\"message_stop\""));
                std::future::ready(!stop)
            })
            .map(move |data| -> Result<Vec<Value>, AttemptError> {
                let data = data?;
                let event: Value =
                    serde_json::from_str(&data).map_err(|e| body::malformed(&who_owned, e))?;
                translator.translate(&event).map_err(|mut e| {
                    e.message = format!("{who_owned}: {}", e.message);
                    e
                })
            })
            .flat_map(|r| {
                futures_util::stream::iter(match r {
                    Ok(chunks) => chunks.into_iter().map(Ok).collect::<Vec<_>>(),
                    Err(e) => vec![Err(e)],
                })
            }),
    );
    body::first_chunk(chunks, spec.timeouts.first_byte, who).await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn request_translation_covers_system_tools_and_stop() {
        let openai = json!({
            "model": "claude-x", "temperature": 0.2, "stop": "END", "max_tokens": 50,
            "messages": [
                {"role": "system", "content": "be brief"},
                {"role": "user", "content": [{"type": "text", "text": "weather?"}]},
                {"role": "assistant", "content": null, "tool_calls": [{"id": "t1", "type": "function",
                    "function": {"name": "weather", "arguments": "{\"city\":\"Oslo\"}"}}]},
                {"role": "tool", "tool_call_id": "t1", "content": "rain"},
                {"role": "user", "content": "and tomorrow?"}
            ],
            "tools": [{"type": "function", "function": {"name": "weather", "parameters": {"type": "object"}}}],
            "tool_choice": "required"
        });
        let a = to_messages_request(&openai, true).unwrap();
        assert_eq!(a["system"], json!([{"type": "text", "text": "be brief"}]));
        assert_eq!(a["max_tokens"], 50);
        assert_eq!(a["stop_sequences"], json!(["END"]));
        assert_eq!(a["tool_choice"], json!({"type": "any"}));
        assert_eq!(a["tools"][0]["input_schema"], json!({"type": "object"}));
        let msgs = a["messages"].as_array().unwrap();
        assert_eq!(
            msgs.len(),
            3,
            "tool result and next user turn merge: {msgs:?}"
        );
        assert_eq!(msgs[1]["content"][0]["input"], json!({"city": "Oslo"}));
        assert_eq!(msgs[2]["content"][0]["type"], "tool_result");
        assert_eq!(msgs[2]["content"][1]["text"], "and tomorrow?");
        assert_eq!(a["stream"], true);
    }

    #[test]
    fn image_parts_are_refused_with_the_field() {
        let openai = json!({"model": "m", "messages": [{"role": "user", "content": [
            {"type": "image_url", "image_url": {"url": "x"}}]}]});
        let e = to_messages_request(&openai, false).unwrap_err();
        assert_eq!(e.status, Some(400));
        assert!(e.message.contains("messages[0]"), "{}", e.message);
    }

    #[test]
    fn response_and_stream_translation() {
        let resp = json!({"id": "msg_1", "model": "claude-x", "stop_reason": "end_turn",
            "content": [{"type": "text", "text": "Hi"}], "usage": {"input_tokens": 5, "output_tokens": 2}});
        let (body, usage) = from_messages_response(&resp).unwrap();
        assert_eq!(body["choices"][0]["message"]["content"], "Hi");
        assert_eq!(body["choices"][0]["finish_reason"], "stop");
        assert_eq!(
            usage,
            Some(Usage {
                prompt_tokens: 5,
                completion_tokens: 2
            })
        );

        let mut t = StreamTranslator::default();
        let events = [
            json!({"type": "message_start", "message": {"id": "msg_1", "model": "claude-x", "usage": {"input_tokens": 5}}}),
            json!({"type": "content_block_delta", "index": 0, "delta": {"type": "text_delta", "text": "Hi"}}),
            json!({"type": "ping"}),
            json!({"type": "message_delta", "delta": {"stop_reason": "max_tokens"}, "usage": {"output_tokens": 2}}),
        ];
        let chunks: Vec<Value> = events
            .iter()
            .flat_map(|e| t.translate(e).unwrap())
            .collect();
        assert_eq!(chunks.len(), 4);
        assert_eq!(chunks[1]["choices"][0]["delta"]["content"], "Hi");
        assert_eq!(chunks[2]["choices"][0]["finish_reason"], "length");
        assert_eq!(chunks[3]["usage"]["completion_tokens"], 2);
        assert!(
            t.translate(&json!({"type": "error", "error": {"message": "overloaded"}}))
                .is_err()
        );
    }
}
