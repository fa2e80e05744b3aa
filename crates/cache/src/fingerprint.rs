//! The context fingerprint: a hash of everything in a chat request that changes the answer
//! except the last user message's text — the system prompt, earlier turns, tool calls and
//! results, tools, the response format, the sampling parameters, and every non-text part of
//! the last user message (images, audio, files). Two requests may share a cache entry only
//! when their fingerprints are equal; their last texts are then compared by the cache.

use serde_json::Value;
use sha2::{Digest, Sha256};

/// Fields that do not change the answer: transport and bookkeeping. `model` is left out
/// because the route or pinned model is a scope of its own.
const IGNORED: [&str; 7] = [
    "model",
    "stream",
    "stream_options",
    "user",
    "metadata",
    "store",
    "service_tier",
];

/// The fingerprint of a chat request body (sha256 hex of its canonical JSON with the last
/// user message's text blanked and the ignored fields removed).
pub fn fingerprint(body: &Value) -> String {
    let mut hasher = Sha256::new();
    if let Value::Object(map) = body {
        let last_user = map.get("messages").and_then(Value::as_array).and_then(|m| {
            m.iter()
                .rposition(|m| m.get("role").and_then(Value::as_str) == Some("user"))
                .or(m.len().checked_sub(1))
        });
        let mut keys: Vec<&String> = map
            .keys()
            .filter(|k| !IGNORED.contains(&k.as_str()))
            .collect();
        keys.sort();
        for key in keys {
            hasher.update(key.as_bytes());
            hasher.update([0]);
            match (key.as_str(), &map[key]) {
                ("messages", Value::Array(messages)) => {
                    hasher.update(b"[");
                    for (i, m) in messages.iter().enumerate() {
                        if Some(i) == last_user {
                            canonical(&blank_text(m), &mut hasher);
                        } else {
                            canonical(m, &mut hasher);
                        }
                        hasher.update(b",");
                    }
                    hasher.update(b"]");
                }
                (_, v) => canonical(v, &mut hasher),
            }
            hasher.update([0]);
        }
    }
    crate::guard::hex(&hasher.finalize())
}

/// The last user message with its text blanked: the cache compares that text itself, but
/// every other part of the message (an image, an audio clip, a file) changes the answer and
/// stays in the hash. Text-only content hashes as it always has (`"<last>"`).
fn blank_text(message: &Value) -> Value {
    let mut m = message.clone();
    let Some(o) = m.as_object_mut() else {
        return m;
    };
    let blanked = match o.get("content") {
        Some(Value::Array(parts)) if !parts.iter().all(is_text_part) => Value::Array(
            parts
                .iter()
                .map(|p| {
                    if is_text_part(p) {
                        serde_json::json!({"type": "text"})
                    } else {
                        p.clone()
                    }
                })
                .collect(),
        ),
        _ => Value::String("<last>".into()),
    };
    o.insert("content".into(), blanked);
    m
}

fn is_text_part(part: &Value) -> bool {
    part.get("type").and_then(Value::as_str) == Some("text")
}

/// Feeds a JSON value with object keys sorted, so key order never changes the hash.
fn canonical(v: &Value, h: &mut Sha256) {
    match v {
        Value::Object(map) => {
            let mut keys: Vec<&String> = map.keys().collect();
            keys.sort();
            h.update(b"{");
            for k in keys {
                h.update(serde_json::to_string(k).unwrap_or_default().as_bytes());
                h.update(b":");
                canonical(&map[k], h);
                h.update(b",");
            }
            h.update(b"}");
        }
        Value::Array(items) => {
            h.update(b"[");
            for item in items {
                canonical(item, h);
                h.update(b",");
            }
            h.update(b"]");
        }
        other => h.update(other.to_string().as_bytes()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn fp(v: Value) -> String {
        fingerprint(&v)
    }

    #[test]
    fn only_the_last_user_message_and_transport_may_differ() {
        let base = fp(json!({"model": "auto", "messages": [
            {"role": "system", "content": "Be brief."},
            {"role": "user", "content": "What is Rust?"}], "temperature": 0}));
        let same = fp(
            json!({"temperature": 0, "stream": true, "user": "u1", "model": "x",
            "messages": [{"content": "Be brief.", "role": "system"},
                         {"role": "user", "content": "Explain Rust"}]}),
        );
        assert_eq!(base, same);
        for changed in [
            json!({"messages": [{"role": "system", "content": "Be long."},
                {"role": "user", "content": "What is Rust?"}], "temperature": 0}),
            json!({"messages": [{"role": "system", "content": "Be brief."},
                {"role": "user", "content": "What is Rust?"}], "temperature": 0.7}),
            json!({"messages": [{"role": "system", "content": "Be brief."},
                {"role": "user", "content": "What is Rust?"}], "temperature": 0, "seed": 1}),
            json!({"messages": [{"role": "system", "content": "Be brief."},
                {"role": "user", "content": "What is Rust?"}], "temperature": 0,
                "tools": [{"type": "function", "function": {"name": "f"}}]}),
            json!({"messages": [{"role": "user", "content": "Hi"},
                {"role": "assistant", "content": "Hello"},
                {"role": "user", "content": "What is Rust?"}], "temperature": 0}),
        ] {
            assert_ne!(base, fp(changed.clone()), "{changed}");
        }
    }

    fn with_image(text: &str, url: &str) -> Value {
        json!({"messages": [{"role": "user", "content": [
            {"type": "text", "text": text},
            {"type": "image_url", "image_url": {"url": url}}]}]})
    }

    #[test]
    fn the_last_messages_images_audio_and_files_are_part_of_the_context() {
        let cat = fp(with_image(
            "What is in this picture?",
            "https://example.com/cat.png",
        ));
        let dog = fp(with_image(
            "What is in this picture?",
            "https://example.com/dog.png",
        ));
        assert_ne!(cat, dog, "another image is another question");
        assert_eq!(
            cat,
            fp(with_image(
                "Describe the picture",
                "https://example.com/cat.png"
            )),
            "the text itself is compared by the cache, not hashed"
        );
        let audio = |data: &str| {
            fp(json!({"messages": [{"role": "user", "content": [
                {"type": "text", "text": "Transcribe"},
                {"type": "input_audio", "input_audio": {"data": data, "format": "wav"}}]}]}))
        };
        assert_ne!(audio("AAAA"), audio("BBBB"));
        let file = |id: &str| {
            fp(json!({"messages": [{"role": "user", "content": [
                {"type": "file", "file": {"file_id": id}}, {"type": "text", "text": "Sum up"}]}]}))
        };
        assert_ne!(file("file-1"), file("file-2"));
        let text_parts = fp(json!({"messages": [{"role": "user", "content": [
            {"type": "text", "text": "What is Rust?"}]}]}));
        let text = fp(json!({"messages": [{"role": "user", "content": "What is Rust?"}]}));
        assert_eq!(
            text_parts, text,
            "text-only content keeps its old fingerprint"
        );
    }

    #[test]
    fn tool_calls_and_results_are_part_of_the_context() {
        let turn = |result: &str| {
            fp(json!({"messages": [
                {"role": "user", "content": "Weather in Paris?"},
                {"role": "assistant", "content": null, "tool_calls": [{"id": "t1",
                    "type": "function", "function": {"name": "weather", "arguments": "{}"}}]},
                {"role": "tool", "tool_call_id": "t1", "content": result}]}))
        };
        assert_ne!(turn("sunny"), turn("rain"));
    }
}
