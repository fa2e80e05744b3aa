//! Traces over OTLP/HTTP, received by a collector written here (OTLP/JSON over HTTP on
//! loopback): one server span per request, child spans per stage and per upstream attempt,
//! the GenAI semantic-convention attributes, the caller's `traceparent` as parent, and no
//! prompt in any span unless `capture_prompts` is on.

use super::*;

/// An OTLP/HTTP traces receiver: every exported span, flattened.
struct Collector {
    url: String,
    spans: Arc<std::sync::Mutex<Vec<Value>>>,
}

impl Collector {
    async fn start() -> Self {
        let spans = Arc::new(std::sync::Mutex::new(Vec::new()));
        let sink = spans.clone();
        let app = axum::Router::new().route(
            "/v1/traces",
            axum::routing::post(move |body: axum::body::Bytes| {
                let sink = sink.clone();
                async move {
                    let v: Value = serde_json::from_slice(&body).unwrap();
                    let mut all = sink.lock().unwrap();
                    for rs in v["resourceSpans"].as_array().into_iter().flatten() {
                        for ss in rs["scopeSpans"].as_array().into_iter().flatten() {
                            for s in ss["spans"].as_array().into_iter().flatten() {
                                let mut s = s.clone();
                                s["resource"] = rs["resource"].clone();
                                all.push(s);
                            }
                        }
                    }
                    axum::Json(json!({}))
                }
            }),
        );
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}/v1/traces", listener.local_addr().unwrap());
        tokio::spawn(async move { axum::serve(listener, app).await });
        Self { url, spans }
    }

    /// The spans of trace `trace_id`, once the request's span and `n` in all have arrived.
    async fn trace(&self, trace_id: &str, n: usize) -> Vec<Value> {
        for _ in 0..100 {
            let spans: Vec<Value> = self
                .spans
                .lock()
                .unwrap()
                .iter()
                .filter(|s| s["traceId"] == json!(trace_id))
                .cloned()
                .collect();
            if spans.len() >= n {
                return spans;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        panic!(
            "trace {trace_id}: fewer than {n} spans arrived: {:#?}",
            self.spans.lock().unwrap()
        );
    }
}

fn attr(span: &Value, key: &str) -> Value {
    span["attributes"]
        .as_array()
        .into_iter()
        .flatten()
        .find(|a| a["key"] == json!(key))
        .map(|a| {
            let v = &a["value"];
            v.get("stringValue")
                .or_else(|| v.get("intValue"))
                .or_else(|| v.get("doubleValue"))
                .or_else(|| v.get("boolValue"))
                .cloned()
                .unwrap_or(Value::Null)
        })
        .unwrap_or(Value::Null)
}

fn traced(small: &Upstream, big: &Upstream, collector: &Collector, capture: bool) -> String {
    format!(
        "{{router}}\n{}{}\n\
         [models.small]\nprovider = \"a\"\ninput_per_mtok = 0.1\noutput_per_mtok = 0.2\nquality_like = \"mistralai/mistral-7b-chat\"\n\
         [models.big]\nprovider = \"b\"\ninput_per_mtok = 10.0\noutput_per_mtok = 30.0\nquality_like = \"gpt-4-1106-preview\"\n\
         [routes.auto]\nmodels = [\"small\", \"big\"]\npolicy = \"threshold:0.0\"\n\
         [retry]\nmax_retries = 0\n\
         [telemetry]\nendpoint = \"{}\"\nprotocol = \"http/json\"\nexport_delay_ms = 50\ncapture_prompts = {capture}\n",
        provider("a", small, "openai"),
        provider("b", big, "openai"),
        collector.url,
    )
}

const PROMPT: &str = "Tell me about the zebras of the secret savannah";

async fn traced_request(g: &Gateway, trace_id: &str) -> Answer {
    read(
        g.client
            .post(format!("{}/v1/chat/completions", g.url))
            .header("traceparent", format!("00-{trace_id}-00f067aa0ba902b7-01"))
            .json(&json!({"model": "auto", "messages": [{"role": "user", "content": PROMPT}]}))
            .send()
            .await
            .unwrap(),
    )
    .await
}

#[tokio::test]
async fn each_request_is_a_trace_of_stages_and_attempts_with_genai_attributes() {
    let (small, big) = (Upstream::start("small").await, Upstream::start("big").await);
    small.set(Mode::Status500);
    let collector = Collector::start().await;
    let g = gateway(&traced(&small, &big, &collector, false)).await;
    let trace_id = "4bf92f3577b34da6a3ce929d0e0e4736";
    let a = traced_request(&g, trace_id).await;
    assert_eq!(a.status, 200, "{}", a.body);
    assert_eq!(header(&a, "x-switchyard-model"), "big", "fell back");

    // The request, embed, classify, route, and two attempts (small failed, big answered).
    let spans = collector.trace(trace_id, 6).await;
    let by_name = |name: &str| {
        spans
            .iter()
            .find(|s| s["name"] == json!(name))
            .unwrap_or_else(|| panic!("no span {name:?} in {spans:#?}"))
    };
    let root = by_name("chat auto");
    assert_eq!(
        root["parentSpanId"],
        json!("00f067aa0ba902b7"),
        "the caller's span is the parent"
    );
    assert!(
        root["kind"] == json!(2) || root["kind"] == json!("SPAN_KIND_SERVER"),
        "{root}"
    );
    for (key, value) in [
        ("gen_ai.operation.name", json!("chat")),
        ("gen_ai.request.model", json!("auto")),
        ("gen_ai.response.model", json!("big")),
        ("gen_ai.provider.name", json!("b")),
        ("switchyard.route", json!("auto")),
        ("switchyard.cache", json!("bypass")),
        (
            "gen_ai.response.id",
            json!(header(&a, "x-switchyard-request-id")),
        ),
    ] {
        assert_eq!(attr(root, key), value, "{key} in {root}");
    }
    // OTLP/JSON writes 64-bit integers as strings.
    assert_eq!(attr(root, "gen_ai.usage.input_tokens"), json!("10"));
    assert_eq!(attr(root, "gen_ai.usage.output_tokens"), json!("5"));
    assert_eq!(attr(root, "switchyard.attempts"), json!("2"));
    assert!(attr(root, "switchyard.task").is_string(), "{root}");
    assert!(
        attr(root, "switchyard.predicted_quality").is_number(),
        "{root}"
    );
    let service = root["resource"]["attributes"].to_string();
    assert!(service.contains("switchyard"), "{service}");

    let root_id = root["spanId"].clone();
    for name in ["embed", "classify", "route", "chat small", "chat big"] {
        assert_eq!(
            by_name(name)["parentSpanId"],
            root_id,
            "{name} is the request's child"
        );
    }
    let failed = by_name("chat small");
    assert_eq!(attr(failed, "http.response.status_code"), json!("500"));
    assert!(attr(failed, "error.type").is_string(), "{failed}");
    assert_eq!(
        attr(by_name("chat big"), "gen_ai.request.model"),
        json!("big")
    );
    let all = serde_json::to_string(&spans).unwrap();
    assert!(!all.contains("zebras"), "no prompt in spans by default");

    // With capture_prompts, the prompt is in the request's span.
    let collector = Collector::start().await;
    small.set(Mode::Ok);
    let g = gateway(&traced(&small, &big, &collector, true)).await;
    let trace_id = "5bf92f3577b34da6a3ce929d0e0e4737";
    assert_eq!(traced_request(&g, trace_id).await.status, 200);
    let spans = collector.trace(trace_id, 4).await;
    let root = spans
        .iter()
        .find(|s| s["name"] == json!("chat auto"))
        .unwrap();
    assert!(
        attr(root, "gen_ai.input.messages")
            .as_str()
            .unwrap()
            .contains("zebras"),
        "{root}"
    );
}
