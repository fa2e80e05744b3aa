//! The context fingerprint: a hash of everything in a chat request that changes the answer
//! except the last user message — the system prompt, earlier turns, tools, the response
//! format and the sampling parameters. Two requests may share a cache entry only when
//! their fingerprints are equal; their last messages are then compared by the cache.

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
/// user message's content blanked and the ignored fields removed).
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
                            let mut m = m.clone();
                            if let Some(o) = m.as_object_mut() {
                                o.insert("content".into(), Value::String("<last>".into()));
                            }
                            canonical(&m, &mut hasher);
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
}
