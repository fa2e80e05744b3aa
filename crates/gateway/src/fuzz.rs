//! Property tests that throw arbitrary JSON at everything that parses client or upstream
//! input: the chat request view, the cache's context fingerprint, and the Anthropic
//! translators both ways. The property is that none of them panics (an error is fine).
//!
//! `PROPTEST_CASES` sets how many inputs each property gets: the test suite runs the
//! default (a smoke run); `bash eval/fuzz.sh` runs many more and reports the count.

use proptest::prelude::*;
use serde_json::{Map, Value};

/// Keys the parsers look for, so generated objects reach deep into them.
const KEYS: [&str; 24] = [
    "model",
    "messages",
    "role",
    "content",
    "type",
    "text",
    "stream",
    "max_tokens",
    "temperature",
    "top_p",
    "n",
    "tools",
    "tool_calls",
    "image_url",
    "url",
    "usage",
    "input_tokens",
    "output_tokens",
    "delta",
    "index",
    "message",
    "stop_reason",
    "error",
    "partial_json",
];

const WORDS: [&str; 14] = [
    "user",
    "assistant",
    "system",
    "tool",
    "text",
    "image_url",
    "message_start",
    "content_block_start",
    "content_block_delta",
    "message_delta",
    "text_delta",
    "input_json_delta",
    "tool_use",
    "error",
];

fn leaf() -> impl Strategy<Value = Value> {
    prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        any::<i64>().prop_map(Value::from),
        any::<u64>().prop_map(Value::from),
        any::<f64>()
            .prop_filter("JSON numbers are finite", |f| f.is_finite())
            .prop_map(Value::from),
        proptest::sample::select(WORDS.to_vec()).prop_map(Value::from),
        ".{0,40}".prop_map(Value::from),
    ]
}

/// Arbitrary JSON, biased toward the shapes chat requests and stream events have.
fn json() -> impl Strategy<Value = Value> {
    leaf().prop_recursive(5, 64, 8, |inner| {
        prop_oneof![
            proptest::collection::vec(inner.clone(), 0..6).prop_map(Value::Array),
            proptest::collection::vec((proptest::sample::select(KEYS.to_vec()), inner), 0..8)
                .prop_map(|pairs| {
                    Value::Object(
                        pairs
                            .into_iter()
                            .map(|(k, v)| (k.to_owned(), v))
                            .collect::<Map<String, Value>>(),
                    )
                }),
        ]
    })
}

/// Anthropic stream events of the kinds the translator acts on, with arbitrary fields.
fn anthropic_event() -> impl Strategy<Value = Value> {
    let kind = proptest::sample::select(vec![
        "message_start",
        "content_block_start",
        "content_block_delta",
        "message_delta",
        "error",
    ]);
    (kind, json(), any::<u64>(), any::<u64>()).prop_map(|(kind, inner, a, b)| {
        serde_json::json!({"type": kind, "index": a % 4, "message": {"id": inner, "usage": {"input_tokens": a}},
                           "content_block": {"type": "tool_use", "id": "t", "name": inner},
                           "delta": {"type": "input_json_delta", "partial_json": "{", "stop_reason": "end_turn"},
                           "usage": {"output_tokens": b}})
    })
}

proptest! {
    #[test]
    fn the_anthropic_stream_translator_never_panics_on_its_own_events(
        events in proptest::collection::vec(anthropic_event(), 0..12),
    ) {
        let mut translator = switchyard_providers::anthropic::StreamTranslator::default();
        for event in &events {
            let _ = translator.translate(event);
        }
    }

    #[test]
    fn the_request_view_never_panics(body in json()) {
        if let Ok(view) = crate::pipeline::request::ChatView::parse(&body) {
            let _ = (view.prompt(), view.input_tokens(), view.stream(), view.wants_usage());
        }
    }

    #[test]
    fn the_context_fingerprint_never_panics(body in json()) {
        let _ = switchyard_cache::fingerprint(&body);
    }

    #[test]
    fn the_anthropic_translators_never_panic(request in json(), events in proptest::collection::vec(json(), 0..8)) {
        use switchyard_providers::anthropic;
        let _ = anthropic::to_messages_request(&request, true);
        let _ = anthropic::from_messages_response(&request);
        let mut translator = anthropic::StreamTranslator::default();
        for event in &events {
            let _ = translator.translate(event);
        }
    }
}
