//! OpenAI-compatible upstreams: the request goes through as it is (tools, response_format and
//! every other field included); responses are checked, not rewritten.

use futures_util::StreamExt;
use serde_json::Value;

use crate::{AttemptError, ErrorClass, ProviderSpec, Reply, Usage, body, sse};

pub async fn chat(
    client: &reqwest::Client,
    spec: &ProviderSpec,
    mut body: Value,
    stream: bool,
) -> Result<Reply, AttemptError> {
    let who = spec.name.as_str();
    let url = format!("{}/chat/completions", spec.base_url.trim_end_matches('/'));
    if let Some(obj) = body.as_object_mut() {
        obj.insert("stream".into(), Value::Bool(stream));
        if stream {
            // Usage arrives in a last chunk only when asked for; the gateway needs it for
            // cost and budgets, and drops that chunk when the client did not ask.
            let options = obj
                .entry("stream_options")
                .or_insert_with(|| Value::Object(Default::default()));
            if let Some(options) = options.as_object_mut() {
                options.insert("include_usage".into(), Value::Bool(true));
            }
        }
    }
    let mut builder = client.post(url).json(&body);
    if let Some(key) = &spec.api_key {
        builder = builder.bearer_auth(key.expose());
    }
    let response = body::send(builder, spec.timeouts.first_byte, who).await?;
    if !response.status().is_success() {
        return Err(body::status_error(response, spec.timeouts.idle, who).await);
    }
    if !stream {
        let bytes = body::read_all(response, spec.timeouts.idle, None, who).await?;
        let body: Value = serde_json::from_slice(&bytes).map_err(|e| body::malformed(who, e))?;
        if let Some(message) = body.pointer("/error/message").and_then(Value::as_str) {
            return Err(AttemptError::new(
                ErrorClass::ServerError,
                format!("{who}: {message}"),
            ));
        }
        if !body.get("choices").is_some_and(Value::is_array) {
            return Err(body::malformed(who, "no `choices` array"));
        }
        let usage = body.get("usage").and_then(Usage::from_openai);
        return Ok(Reply::Full { body, usage });
    }

    let who_owned = who.to_owned();
    let events: crate::ChunkStream = Box::pin(
        sse::data_stream(response.bytes_stream(), spec.timeouts.idle, who.to_owned())
            .take_while(|data| {
                let done = matches!(data, Ok(d) if d.trim() == "[DONE]");
                std::future::ready(!done)
            })
            .map(move |data| parse_chunk(&who_owned, data?)),
    );
    body::first_chunk(events, spec.timeouts.first_byte, who).await
}

fn parse_chunk(who: &str, data: String) -> Result<Value, AttemptError> {
    let chunk: Value = serde_json::from_str(&data).map_err(|e| body::malformed(who, e))?;
    if let Some(message) = chunk.pointer("/error/message").and_then(Value::as_str) {
        return Err(AttemptError::new(
            ErrorClass::ServerError,
            format!("{who}: error inside the stream: {message}"),
        ));
    }
    if !chunk.get("choices").is_some_and(Value::is_array) {
        return Err(body::malformed(who, "a stream chunk without `choices`"));
    }
    Ok(chunk)
}
