//! The gateway over real HTTP on 127.0.0.1: fake providers that fail in every way, the
//! learned `auto` route, streaming, fallback, breakers, tenants, bad requests, the traffic
//! log and feedback. The gateway runs in-process here, on a real socket; `handlers.rs`
//! tests handlers without one, and `tests/gateway_e2e.rs` runs the binary.

#![allow(
    clippy::expect_used,
    clippy::unwrap_used,
    clippy::panic,
    clippy::print_stderr,
    reason = "test helpers fail loudly and say what they skip"
)]

mod support;

#[path = "gateway/reliability.rs"]
mod reliability;

#[path = "gateway/learning.rs"]
mod learning;

#[path = "gateway/telemetry.rs"]
mod telemetry;

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use serde_json::{Value, json};
use support::upstream::{FAILURES, Mode, Upstream};
use switchyard_gateway::runtime::AppState;
use switchyard_gateway::{Config, ConfigSource, build_state, serve};

/// This package's directory: from cargo at run time (the checkout being tested), falling back
/// to the one it was compiled in. A test binary reused from a build in another checkout (a
/// shared CARGO_TARGET_DIR) would otherwise look for the models in that other checkout.
fn manifest_dir() -> std::path::PathBuf {
    std::env::var_os("CARGO_MANIFEST_DIR")
        .map_or_else(|| env!("CARGO_MANIFEST_DIR").into(), Into::into)
}

fn root() -> PathBuf {
    manifest_dir().join("../..")
}

struct Gateway {
    url: String,
    state: Arc<AppState>,
    dir: tempfile::TempDir,
    client: reqwest::Client,
}

/// Starts a gateway on 127.0.0.1:0 from `toml` (the log goes to a temp dir; `{router}`
/// is replaced by a [router] section with the committed artifacts, `{cache}` by a
/// [cache] section; a `toml` with its own [cache] section keeps it).
async fn gateway(toml: &str) -> Gateway {
    let (state, dir) = gateway_state(toml);
    let (tx, rx) = tokio::sync::oneshot::channel();
    let serving = state.clone();
    tokio::spawn(async move {
        serve(serving, "127.0.0.1:0".parse().unwrap(), |addr| {
            let _ = tx.send(addr);
        })
        .await
        .unwrap();
    });
    let addr = rx.await.unwrap();
    Gateway {
        url: format!("http://{addr}"),
        state,
        dir,
        client: {
            switchyard_providers::install_crypto_provider();
            reqwest::Client::new()
        },
    }
}

/// The gateway's state for `toml` (see [`gateway`]), with the temp dir holding its log.
fn gateway_state(toml: &str) -> (Arc<AppState>, tempfile::TempDir) {
    let dir = tempfile::tempdir().unwrap();
    let root = root();
    let router = format!(
        "[router]\nencoder = {:?}\nheads = {:?}\nscorer = {:?}\ndevice = \"cpu\"\n",
        root.join("models/all-MiniLM-L6-v2"),
        root.join("models/classifier"),
        root.join("models/scorer")
    );
    // `{cache}` turns the cache on (on disk in the temp dir); without it the cache is off,
    // so that repeated requests in the other tests reach their upstreams.
    let cache = format!(
        "[cache]\npath = {:?}\nverifier = {:?}\n",
        dir.path().join("cache"),
        root.join("models/cache-verifier/verifier.json")
    );
    let toml = if toml.contains("{cache}") {
        toml.replace("{cache}", &cache)
    } else if toml.contains("[cache]") {
        toml.to_owned()
    } else {
        format!("{toml}\n[cache]\nenabled = false\n")
    };
    let text = format!(
        "{}\n[log]\ndir = {:?}\n",
        toml.replace("{router}", &router),
        dir.path().join("logs")
    );
    let path = dir.path().join("switchyard.toml");
    std::fs::write(&path, &text).unwrap();
    let config = Config::parse(&text).unwrap_or_else(|e| panic!("{e}\n{text}"));
    (build_state(&ConfigSource::File(path), config).unwrap(), dir)
}

fn provider(name: &str, up: &Upstream, kind: &str) -> String {
    format!(
        "[providers.{name}]\nkind = \"{kind}\"\nbase_url = \"{}\"\nfirst_byte_timeout_ms = 400\nidle_timeout_ms = 300\n",
        up.base_url()
    )
}

fn chat(model: &str, stream: bool) -> Value {
    json!({"model": model, "stream": stream,
           "messages": [{"role": "system", "content": "Be brief."},
                        {"role": "user", "content": "Write a Python function that reverses a string."}]})
}

struct Answer {
    status: u16,
    headers: reqwest::header::HeaderMap,
    body: Value,
    /// For streams: the concatenated deltas, and whether [DONE] arrived.
    text: String,
    done: bool,
    error: Option<Value>,
}

impl Gateway {
    async fn post(&self, path: &str, body: &Value) -> Answer {
        let response = self
            .client
            .post(format!("{}{path}", self.url))
            .json(body)
            .send()
            .await
            .unwrap();
        read(response).await
    }

    async fn get(&self, path: &str) -> (u16, String) {
        let r = self
            .client
            .get(format!("{}{path}", self.url))
            .send()
            .await
            .unwrap();
        (r.status().as_u16(), r.text().await.unwrap())
    }

    fn log_lines(&self) -> Vec<Value> {
        let path = self.dir.path().join("logs/traffic.jsonl");
        std::fs::read_to_string(path)
            .unwrap_or_default()
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect()
    }

    async fn wait_log(&self, n: usize) -> Vec<Value> {
        for _ in 0..300 {
            let lines = self.log_lines();
            if lines.len() >= n {
                return lines;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        panic!("the traffic log never reached {n} lines");
    }
}

async fn read(response: reqwest::Response) -> Answer {
    let status = response.status().as_u16();
    let headers = response.headers().clone();
    let sse = headers
        .get("content-type")
        .is_some_and(|v| v.to_str().unwrap().starts_with("text/event-stream"));
    let bytes = response.bytes().await.unwrap();
    if !sse {
        let body = serde_json::from_slice(&bytes).unwrap_or(Value::Null);
        return Answer {
            status,
            headers,
            body,
            text: String::new(),
            done: false,
            error: None,
        };
    }
    let text = String::from_utf8(bytes.to_vec()).unwrap();
    let (mut out, mut done, mut error) = (String::new(), false, None);
    for event in text.split("\n\n").filter(|e| !e.trim().is_empty()) {
        let data = event
            .strip_prefix("data: ")
            .unwrap_or_else(|| panic!("not SSE: {event:?}"));
        if data == "[DONE]" {
            done = true;
            continue;
        }
        let chunk: Value = serde_json::from_str(data).unwrap();
        if chunk.get("error").is_some() {
            error = Some(chunk);
            continue;
        }
        if let Some(piece) = chunk
            .pointer("/choices/0/delta/content")
            .and_then(Value::as_str)
        {
            out.push_str(piece);
        }
    }
    Answer {
        status,
        headers,
        body: Value::Null,
        text: out,
        done,
        error,
    }
}

fn header(a: &Answer, name: &str) -> String {
    a.headers
        .get(name)
        .map(|v| v.to_str().unwrap().to_owned())
        .unwrap_or_else(|| panic!("no {name} header: {:?}", a.headers))
}

#[tokio::test]
async fn auto_routes_with_the_learned_router_and_explains_itself() {
    let (small, big) = (Upstream::start("small").await, Upstream::start("big").await);
    let g = gateway(&format!(
        "{{router}}\n{}{}\n\
         [models.small]\nprovider = \"a\"\nupstream_model = \"small-v1\"\ninput_per_mtok = 0.1\noutput_per_mtok = 0.2\nquality_like = \"mistralai/mistral-7b-chat\"\n\
         [models.big]\nprovider = \"b\"\ninput_per_mtok = 10.0\noutput_per_mtok = 30.0\nquality_like = \"gpt-4-1106-preview\"\n\
         [routes.auto]\nmodels = [\"small\", \"big\"]\npolicy = \"threshold:0.0\"\n\
         [routes.best]\nmodels = [\"small\", \"big\"]\npolicy = \"threshold:1.0\"\n",
        provider("a", &small, "openai"),
        provider("b", &big, "openai"),
    ))
    .await;

    // τ = 0: everything clears it, so the cheapest wins; τ = 1: nothing does, so the best.
    let a = g.post("/v1/chat/completions", &chat("auto", false)).await;
    assert_eq!(a.status, 200, "{:?}", a.body);
    assert_eq!(header(&a, "x-switchyard-model"), "small");
    assert_eq!(
        a.body["model"], "small",
        "the serving model's name in the body"
    );
    assert_eq!(a.body["choices"][0]["message"]["content"], small.text());
    assert_eq!(
        small.last().body["model"],
        "small-v1",
        "the upstream gets its own model id"
    );
    assert_eq!(small.last().body["messages"][0]["content"], "Be brief.");
    assert_eq!(header(&a, "x-switchyard-route"), "auto");
    assert_eq!(header(&a, "x-switchyard-task"), "code");
    assert_eq!(header(&a, "x-switchyard-cache"), "bypass");
    assert_eq!(header(&a, "x-switchyard-attempts"), "1");
    let q: f64 = header(&a, "x-switchyard-predicted-quality")
        .parse()
        .unwrap();
    assert!((0.0..=1.0).contains(&q));
    let d: f64 = header(&a, "x-switchyard-difficulty").parse().unwrap();
    assert!((0.0..=1.0).contains(&d));
    let cost: f64 = header(&a, "x-switchyard-cost-usd").parse().unwrap();
    assert!(
        (cost - (10.0 * 0.1 + 5.0 * 0.2) / 1e6).abs() < 1e-12,
        "{cost}"
    );
    assert!(header(&a, "x-switchyard-request-id").starts_with("chatcmpl-sy-"));

    let b = g.post("/v1/chat/completions", &chat("best", false)).await;
    assert_eq!(header(&b, "x-switchyard-model"), "big");

    // Streaming: chunks concatenate to the same text; [DONE] ends it; usage chunk dropped
    // unless asked for.
    let s = g.post("/v1/chat/completions", &chat("auto", true)).await;
    assert_eq!(s.status, 200);
    assert_eq!(s.text, small.text());
    assert!(s.done && s.error.is_none());

    // Pinned: no routing.
    let p = g.post("/v1/chat/completions", &chat("big", false)).await;
    assert_eq!(header(&p, "x-switchyard-route"), "pinned");
    assert!(p.headers.get("x-switchyard-task").is_none());

    // The dry run says the same as the real request and calls nobody.
    let hits = small.hits() + big.hits();
    let r = g.post("/v1/route", &chat("auto", false)).await;
    assert_eq!(r.status, 200);
    assert_eq!(r.body["model"], "small");
    assert_eq!(r.body["order"], json!(["small", "big"]));
    assert_eq!(r.body["decision"]["rule"], "cheapest_above_threshold");
    assert_eq!(r.body["decision"]["task"], "code");
    assert_eq!(small.hits() + big.hits(), hits);

    // Every request is in the traffic log with its decision and attempts.
    let log = g.wait_log(4).await;
    let first = &log[0];
    assert_eq!(first["model"], "small");
    assert_eq!(first["route"], "auto");
    assert_eq!(first["decision"]["ranked"].as_array().unwrap().len(), 2);
    assert_eq!(first["attempts"][0]["status"], 200);
    assert_eq!(first["usage"]["completion_tokens"], 5);
    assert!(first["latency"]["embed_ms"].as_f64().unwrap() > 0.0);
    assert_eq!(
        first["prompt"],
        "Write a Python function that reverses a string."
    );
    assert_eq!(
        log[2]["usage"]["prompt_tokens"], 10,
        "stream usage is captured"
    );

    // Embeddings from the same encoder (sentence-transformers truncation), unit length.
    let e = g
        .post("/v1/embeddings", &json!({"input": ["hello", "world"]}))
        .await;
    assert_eq!(e.status, 200, "{:?}", e.body);
    let v: Vec<f64> = serde_json::from_value(e.body["data"][1]["embedding"].clone()).unwrap();
    assert_eq!(v.len(), 384);
    assert!((v.iter().map(|x| x * x).sum::<f64>() - 1.0).abs() < 1e-3);
    let bad = g
        .post("/v1/embeddings", &json!({"input": ["ok", "  "]}))
        .await;
    assert_eq!(bad.status, 400);
    assert!(
        bad.body["error"]["message"]
            .as_str()
            .unwrap()
            .contains("input 1")
    );

    let models: Value = serde_json::from_str(&g.get("/v1/models").await.1).unwrap();
    let ids: Vec<&str> = models["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["id"].as_str().unwrap())
        .collect();
    assert_eq!(ids, ["auto", "best", "big", "small"]);
    assert_eq!(g.get("/ready").await.0, 200);
    let metrics = g.get("/metrics").await.1;
    assert!(
        metrics
            .contains("switchyard_requests_total{route=\"auto\",model=\"small\",status=\"200\"} 2"),
        "{metrics}"
    );
    assert!(metrics.contains("switchyard_routing_duration_seconds_count{route=\"auto\"}"));
}

const MATRIX: &str = "[router]\nenabled = false\n[retry]\nmax_retries = 1\nbase_ms = 5\nmax_ms = 20\n\
                      [breaker]\nconsecutive_failures = 1000\nwindow = 1000\nerror_rate = 1.0\n";

fn pair_config(bad: &Upstream, good: &Upstream) -> String {
    format!(
        "{MATRIX}{}{}\n\
         [models.bad]\nprovider = \"bad\"\ninput_per_mtok = 0.0\noutput_per_mtok = 0.0\n\
         [models.good]\nprovider = \"good\"\ninput_per_mtok = 1.0\noutput_per_mtok = 1.0\n\
         [routes.pair]\nmodels = [\"bad\", \"good\"]\npolicy = \"order\"\n\
         [routes.solo]\nmodels = [\"bad\"]\npolicy = \"order\"\n",
        provider("bad", bad, "openai"),
        provider("good", good, "openai"),
    )
}

#[tokio::test]
async fn fallback_matrix_every_failure_stream_and_not() {
    let (bad, good) = (Upstream::start("bad").await, Upstream::start("good").await);
    let g = gateway(&pair_config(&bad, &good)).await;
    for mode in FAILURES {
        bad.set(mode);
        for stream in [false, true] {
            let what = format!("{mode:?} stream={stream}");
            let a = g.post("/v1/chat/completions", &chat("pair", stream)).await;
            if mode == Mode::Stall && stream {
                // The first chunk reached the client before the stall: no fallback after
                // the first byte; the stream ends with an error event instead of [DONE].
                assert_eq!(a.status, 200, "{what}");
                assert_eq!(header(&a, "x-switchyard-model"), "bad", "{what}");
                assert!(!a.done, "{what}");
                let e = a.error.as_ref().expect("an error event");
                assert_eq!(e["error"]["code"], "stalled", "{what}: {e}");
            } else {
                assert_eq!(a.status, 200, "{what}: {:?}", a.body);
                assert_eq!(header(&a, "x-switchyard-model"), "good", "{what}");
                if stream {
                    assert_eq!(a.text, good.text(), "{what}");
                    assert!(a.done, "{what}");
                } else {
                    assert_eq!(
                        a.body["choices"][0]["message"]["content"],
                        good.text(),
                        "{what}"
                    );
                }
                let attempts: usize = header(&a, "x-switchyard-attempts").parse().unwrap();
                // A 429's `Retry-After: 1` is beyond the 20 ms retry cap: not waited for,
                // the next model is tried at once.
                let retried = !matches!(mode, Mode::Malformed | Mode::Stall | Mode::RateLimited);
                assert_eq!(
                    attempts,
                    if retried { 3 } else { 2 },
                    "{what}: retries then fallback"
                );
            }

            // With no healthy target: a clear OpenAI-style error.
            let a = g.post("/v1/chat/completions", &chat("solo", stream)).await;
            if mode == Mode::Stall && stream {
                assert!(a.error.is_some() && !a.done, "{what}");
                continue;
            }
            assert!(
                matches!(a.status, 502 | 504),
                "{what}: {} {:?}",
                a.status,
                a.body
            );
            let message = a.body["error"]["message"].as_str().unwrap();
            let expected = match mode {
                Mode::Status500 => "server error (HTTP 500)",
                Mode::RateLimited => "rate limited (HTTP 429)",
                Mode::Hang => "timed out",
                Mode::Stall => "stalled",
                Mode::Reset => "connection reset",
                Mode::Malformed => "malformed",
                _ => unreachable!(),
            };
            assert!(message.contains(expected), "{what}: {message}");
            assert_eq!(a.body["error"]["type"], "upstream_error", "{what}");
        }
    }
    bad.set(Mode::Ok);
    let a = g.post("/v1/chat/completions", &chat("solo", false)).await;
    assert_eq!(a.status, 200);
    let log = g.wait_log(FAILURES.len() * 4).await;
    let failed = log.iter().filter(|r| r["status"] != 200).count();
    assert!(failed >= 10, "failed requests are logged too ({failed})");
    let classes: Vec<&str> = log
        .iter()
        .flat_map(|r| r["attempts"].as_array().unwrap())
        .filter_map(|a| a["error_class"].as_str())
        .collect();
    for c in [
        "server_error",
        "rate_limited",
        "timeout",
        "stalled",
        "reset",
        "malformed",
    ] {
        assert!(classes.contains(&c), "{c} never logged: {classes:?}");
    }
}

#[tokio::test]
async fn client_errors_from_upstream_do_not_fall_back_and_other_4xx_do() {
    let (bad, good) = (Upstream::start("bad").await, Upstream::start("good").await);
    let g = gateway(&pair_config(&bad, &good)).await;
    bad.set(Mode::EchoKey); // 401: a config problem on that target → fall back
    let a = g.post("/v1/chat/completions", &chat("pair", false)).await;
    assert_eq!(header(&a, "x-switchyard-model"), "good");
    assert_eq!(
        header(&a, "x-switchyard-attempts"),
        "2",
        "4xx is not retried"
    );
}

#[tokio::test]
async fn circuit_breaker_opens_skips_the_target_and_recovers() {
    let (bad, good) = (Upstream::start("bad").await, Upstream::start("good").await);
    let config = pair_config(&bad, &good).replace(
        "consecutive_failures = 1000\nwindow = 1000\nerror_rate = 1.0\n",
        "consecutive_failures = 3\nwindow = 20\nerror_rate = 1.0\nopen_ms = 400\n",
    );
    let g = gateway(&config.replace("max_retries = 1", "max_retries = 0")).await;
    bad.set(Mode::Status500);
    for _ in 0..3 {
        let a = g.post("/v1/chat/completions", &chat("pair", false)).await;
        assert_eq!(header(&a, "x-switchyard-model"), "good");
    }
    let hits = bad.hits();
    assert_eq!(hits, 3);
    let a = g.post("/v1/chat/completions", &chat("pair", false)).await;
    assert_eq!(header(&a, "x-switchyard-model"), "good");
    assert_eq!(
        bad.hits(),
        hits,
        "an open breaker sends nothing to the target"
    );
    let solo = g.post("/v1/chat/completions", &chat("solo", false)).await;
    assert_eq!(solo.status, 503);
    assert!(solo.headers.get("retry-after").is_some());
    let metrics = g.get("/metrics").await.1;
    assert!(
        metrics.contains("switchyard_breaker_open{model=\"bad\"} 1"),
        "{metrics}"
    );

    // After open_ms one probe goes through; it succeeds and closes the breaker.
    bad.set(Mode::Ok);
    tokio::time::sleep(Duration::from_millis(450)).await;
    let a = g.post("/v1/chat/completions", &chat("pair", false)).await;
    assert_eq!(header(&a, "x-switchyard-model"), "bad");
    let a = g.post("/v1/chat/completions", &chat("pair", false)).await;
    assert_eq!(header(&a, "x-switchyard-model"), "bad");
}

#[tokio::test]
async fn anthropic_is_translated_both_ways() {
    let claude = Upstream::start("claude").await;
    let g = gateway(&format!(
        "[router]\nenabled = false\n{}\n[models.claude-small]\nprovider = \"anth\"\nupstream_model = \"claude-3-5-haiku-latest\"\n",
        provider("anth", &claude, "anthropic"),
    ))
    .await;
    let mut req = chat("claude-small", false);
    req["stop"] = json!("END");
    let a = g.post("/v1/chat/completions", &req).await;
    assert_eq!(a.status, 200, "{:?}", a.body);
    assert_eq!(a.body["choices"][0]["message"]["content"], claude.text());
    assert_eq!(a.body["choices"][0]["finish_reason"], "stop");
    assert_eq!(a.body["usage"]["completion_tokens"], 5);
    assert_eq!(a.body["model"], "claude-small");
    let seen = claude.last();
    assert_eq!(seen.path, "/v1/messages");
    assert_eq!(seen.body["system"][0]["text"], "Be brief.");
    assert_eq!(seen.body["model"], "claude-3-5-haiku-latest");
    assert_eq!(seen.body["stop_sequences"], json!(["END"]));
    assert!(seen.body["max_tokens"].as_u64().is_some());
    assert!(seen.headers.contains("anthropic-version: "));
    // Built-in price for the upstream id: 10 × 0.80 + 5 × 4.00 per 1M.
    let cost: f64 = header(&a, "x-switchyard-cost-usd").parse().unwrap();
    assert!((cost - 28e-6).abs() < 1e-12, "{cost}");

    let s = g
        .post("/v1/chat/completions", &chat("claude-small", true))
        .await;
    assert_eq!(s.text, claude.text());
    assert!(s.done && s.error.is_none());
}

#[tokio::test]
async fn bad_requests_get_openai_errors_and_the_server_stays_up() {
    let up = Upstream::start("up").await;
    let g = gateway(&format!(
        "[router]\nenabled = false\n[server]\nmax_body_bytes = 1048576\n{}\n[models.m]\nprovider = \"p\"\ninput_per_mtok = 0.0\noutput_per_mtok = 0.0\n[routes.auto]\nmodels = [\"m\"]\npolicy = \"order\"\n",
        provider("p", &up, "openai")
    ))
    .await;
    let raw = |body: Vec<u8>| {
        let client = g.client.clone();
        let url = format!("{}/v1/chat/completions", g.url);
        async move {
            let r = client
                .post(url)
                .header("content-type", "application/json")
                .body(body)
                .send()
                .await
                .unwrap();
            read(r).await
        }
    };
    let cases: Vec<(Vec<u8>, u16, &str)> = vec![
        (b"{\"model\": \"auto\", ".to_vec(), 400, "not valid JSON"),
        (b"[1, 2]".to_vec(), 400, "JSON object"),
        (br#"{"model": "auto", "messages": "hi"}"#.to_vec(), 400, "messages"),
        (br#"{"model": "auto", "messages": []}"#.to_vec(), 400, "at least one message"),
        (br#"{"model": "auto"}"#.to_vec(), 400, "messages"),
        (br#"{"model": 7, "messages": [{"role": "user", "content": "x"}]}"#.to_vec(), 400, "model"),
        (br#"{"model": "auto", "messages": [{"role": "user", "content": 5}]}"#.to_vec(), 400, "messages[0].content"),
        (br#"{"model": "auto", "messages": [{"role": "wizard", "content": "x"}]}"#.to_vec(), 400, "messages[0].role"),
        (br#"{"model": "auto", "temperature": "hot", "messages": [{"role": "user", "content": "x"}]}"#.to_vec(), 400, "temperature"),
        (br#"{"model": "auto", "temperature": 9, "messages": [{"role": "user", "content": "x"}]}"#.to_vec(), 400, "temperature"),
        (br#"{"model": "gpt-9", "messages": [{"role": "user", "content": "x"}]}"#.to_vec(), 404, "does not exist"),
        (b"{\"model\": \"auto\", \"messages\": [{\"role\": \"user\", \"content\": \"\xff\xfe\"}]}".to_vec(), 400, "not valid JSON"),
        // Just over the 1 MiB limit: small enough for loopback socket buffers to take whole,
        // so the client reads the 413 rather than a broken pipe when the server stops
        // reading at the limit.
        (vec![b' '; 1024 * 1024 + 4096], 413, "larger than"),
    ];
    for (body, status, needle) in cases {
        let preview = String::from_utf8_lossy(&body[..body.len().min(60)]).to_string();
        let a = raw(body).await;
        assert_eq!(a.status, status, "{preview}: {:?}", a.body);
        let message = a.body["error"]["message"]
            .as_str()
            .unwrap_or_else(|| panic!("{preview}: {:?}", a.body));
        assert!(message.contains(needle), "{preview}: {message}");
        assert!(a.body["error"]["type"].is_string());
    }
    assert_eq!(up.hits(), 0, "no bad request reached the upstream");
    assert_eq!(g.get("/v2/nothing").await.0, 404);
    let ok = g.post("/v1/chat/completions", &chat("auto", false)).await;
    assert_eq!(ok.status, 200);
    let fb = g
        .post("/v1/feedback", &json!({"request_id": "nope", "score": 1.0}))
        .await;
    assert_eq!(fb.status, 404);
    let fb = g
        .post(
            "/v1/feedback",
            &json!({"request_id": header(&ok, "x-switchyard-request-id"), "score": 7}),
        )
        .await;
    assert_eq!(fb.status, 400);
}

#[tokio::test]
async fn tenants_keys_allow_lists_budgets_and_rate_limits() {
    let up = Upstream::start("up").await;
    let hash = |k: &str| switchyard_gateway::limits::sha256_hex(k.as_bytes());
    let g = gateway(&format!(
        "[router]\nenabled = false\n{}\n\
         [models.cheap]\nprovider = \"p\"\ninput_per_mtok = 1.0\noutput_per_mtok = 1.0\n\
         [models.dear]\nprovider = \"p\"\ninput_per_mtok = 100.0\noutput_per_mtok = 100.0\n\
         [routes.auto]\nmodels = [\"cheap\", \"dear\"]\npolicy = \"order\"\n\
         [tenants.alpha]\nkey_sha256 = \"{}\"\nmodels = [\"cheap\"]\nrpm = 3\n\
         [tenants.beta]\nkey_sha256 = \"{}\"\ndaily_tokens = 20\n",
        provider("p", &up, "openai"),
        hash("sk-alpha"),
        hash("sk-beta"),
    ))
    .await;
    let send = |key: Option<&'static str>, model: &'static str| {
        let client = g.client.clone();
        let url = format!("{}/v1/chat/completions", g.url);
        async move {
            let mut r = client.post(url).json(&chat(model, false));
            if let Some(k) = key {
                r = r.bearer_auth(k);
            }
            read(r.send().await.unwrap()).await
        }
    };
    assert_eq!(send(None, "auto").await.status, 401);
    let wrong = send(Some("sk-gamma"), "auto").await;
    assert_eq!(wrong.status, 401);
    assert!(!wrong.body.to_string().contains("sk-gamma"));
    assert_eq!(
        send(Some("sk-alpha"), "dear").await.status,
        403,
        "not on alpha's list"
    );
    let a = send(Some("sk-alpha"), "auto").await;
    assert_eq!(a.status, 200);
    assert_eq!(header(&a, "x-switchyard-model"), "cheap");
    // Feedback belongs to the tenant that made the request: another tenant gets the 404
    // an unknown id gets.
    let feedback = |key: &'static str, id: String| {
        let request = g
            .client
            .post(format!("{}/v1/feedback", g.url))
            .bearer_auth(key)
            .json(&json!({"request_id": id, "score": 1.0}));
        async move { read(request.send().await.unwrap()).await }
    };
    let id = header(&a, "x-switchyard-request-id");
    let theirs = feedback("sk-beta", id.clone()).await;
    let unknown = feedback(
        "sk-beta",
        "chatcmpl-sy-0123456789abcdef0123456789abcdef".into(),
    )
    .await;
    assert_eq!((theirs.status, unknown.status), (404, 404));
    assert_eq!(theirs.body["error"]["code"], unknown.body["error"]["code"]);
    assert_eq!(feedback("sk-alpha", id).await.status, 200);
    assert_eq!(send(Some("sk-alpha"), "cheap").await.status, 200);
    let limited = send(Some("sk-alpha"), "auto").await;
    assert_eq!(limited.status, 429, "{:?}", limited.body);
    assert_eq!(limited.body["error"]["code"], "rate_limit_exceeded");
    assert!(limited.headers.get("retry-after").is_some());

    // beta: 15 tokens per answer, 20 per day → the second request passes, the third not.
    assert_eq!(send(Some("sk-beta"), "auto").await.status, 200);
    assert_eq!(send(Some("sk-beta"), "dear").await.status, 200);
    let spent = send(Some("sk-beta"), "auto").await;
    assert_eq!(spent.status, 429);
    assert_eq!(spent.body["error"]["code"], "insufficient_quota");
    assert!(
        spent.body["error"]["message"]
            .as_str()
            .unwrap()
            .contains("daily budget of 20 tokens")
    );
    let log = g.wait_log(8).await;
    assert!(
        log.iter()
            .any(|r| r["tenant"] == "beta" && r["status"] == 429)
    );
}

#[tokio::test]
async fn reload_swaps_the_config_and_keeps_serving() {
    let up = Upstream::start("up").await;
    let base = format!(
        "[router]\nenabled = false\n{}\n[models.one]\nprovider = \"p\"\ninput_per_mtok = 0.0\noutput_per_mtok = 0.0\n",
        provider("p", &up, "openai")
    );
    let g = gateway(&base).await;
    let path = g.dir.path().join("switchyard.toml");
    let text = std::fs::read_to_string(&path).unwrap();
    std::fs::write(
        &path,
        format!(
            "{text}\n[models.two]\nprovider = \"p\"\ninput_per_mtok = 0.0\noutput_per_mtok = 0.0\n"
        ),
    )
    .unwrap();
    switchyard_gateway::reload(&g.state).unwrap();
    assert_eq!(
        g.post("/v1/chat/completions", &chat("two", false))
            .await
            .status,
        200
    );
    // A broken file is refused, naming the key, and the running config stays.
    std::fs::write(
        &path,
        format!("{text}\n[models.three]\nprovider = \"nowhere\"\n"),
    )
    .unwrap();
    let e = switchyard_gateway::reload(&g.state)
        .unwrap_err()
        .to_string();
    assert!(e.contains("models.three.provider"), "{e}");
    assert_eq!(
        g.post("/v1/chat/completions", &chat("two", false))
            .await
            .status,
        200
    );
}

#[tokio::test]
async fn the_local_model_answers_auto_with_no_provider_at_all() {
    let gguf = root().join(switchyard_gateway::config::DEFAULT_LOCAL_GGUF);
    if !gguf.is_file() {
        eprintln!(
            "SKIPPED: {} is missing (bash models/fetch.sh local-llm)",
            gguf.display()
        );
        return;
    }
    let g = gateway(&format!(
        "{{router}}\n[providers.local]\nkind = \"local\"\nmodel = {gguf:?}\n\
         [models.tiny]\nprovider = \"local\"\ninput_per_mtok = 0.0\noutput_per_mtok = 0.0\nquality = 0.3\n"
    ))
    .await;
    let mut req = chat("auto", false);
    req["seed"] = json!(11);
    req["max_tokens"] = json!(24);
    let a = g.post("/v1/chat/completions", &req).await;
    assert_eq!(a.status, 200, "{:?}", a.body);
    assert_eq!(header(&a, "x-switchyard-model"), "tiny");
    assert_eq!(header(&a, "x-switchyard-cost-usd"), "0.00000000");
    let text = a.body["choices"][0]["message"]["content"]
        .as_str()
        .unwrap()
        .to_owned();
    assert!(!text.trim().is_empty());
    req["stream"] = json!(true);
    let s = g.post("/v1/chat/completions", &req).await;
    assert_eq!(s.text, text, "same seed: the stream says the same");
    assert!(s.done);
    req["stream"] = json!(false);
    req["n"] = json!(2);
    let bad = g.post("/v1/chat/completions", &req).await;
    assert_eq!(bad.status, 400, "{:?}", bad.body);
    assert!(
        bad.body["error"]["message"]
            .as_str()
            .unwrap()
            .contains("n = 1")
    );
}

#[tokio::test]
async fn the_cache_answers_repeats_and_paraphrases_within_scope_only() {
    let up = Upstream::start("up").await;
    let g = gateway(&format!(
        "{{router}}\n{}\n\
         [models.one]\nprovider = \"p\"\ninput_per_mtok = 1.0\noutput_per_mtok = 2.0\nquality = 0.9\n\
         [routes.auto]\nmodels = [\"one\"]\n\
         [routes.nocache]\nmodels = [\"one\"]\ncache = false\n\
         {{cache}}\n",
        provider("p", &up, "openai"),
    ))
    .await;
    let cache = g.state.cache().expect("the cache is ready");
    let stored = |n: u64| {
        let cache = cache.clone();
        async move {
            for _ in 0..500 {
                if cache.backend().entry_count().await.unwrap() >= n {
                    return;
                }
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
            panic!("the cache never held {n} entries");
        }
    };
    let ask = |text: &str, stream: bool| {
        json!({"model": "auto", "stream": stream, "temperature": 0,
               "messages": [{"role": "system", "content": "Be brief."},
                            {"role": "user", "content": text}]})
    };
    let question = "How do I reverse a list in Python?";

    let a = g.post("/v1/chat/completions", &ask(question, false)).await;
    assert_eq!(
        (a.status, header(&a, "x-switchyard-cache")),
        (200, "miss".into())
    );
    stored(1).await;
    assert_eq!(up.hits(), 1);

    // The same question (whitespace aside): an exact hit, no upstream call, no cost.
    let b = g
        .post(
            "/v1/chat/completions",
            &ask("How do I reverse  a list in Python? ", false),
        )
        .await;
    assert_eq!(header(&b, "x-switchyard-cache"), "hit", "{:?}", b.body);
    assert_eq!(up.hits(), 1);
    assert_eq!(b.body["choices"][0]["message"]["content"], up.text());
    assert_eq!(b.body["model"], "one");
    assert_eq!(header(&b, "x-switchyard-cost-usd"), "0.00000000");
    assert_eq!(header(&b, "x-switchyard-attempts"), "0");
    assert_ne!(
        b.body["id"], a.body["id"],
        "a hit is re-issued under its own id"
    );
    assert!(!header(&b, "x-switchyard-cache-entry").is_empty());

    // Streamed: the stored answer replayed as SSE.
    let c = g.post("/v1/chat/completions", &ask(question, true)).await;
    assert_eq!(header(&c, "x-switchyard-cache"), "hit");
    assert_eq!((c.text.as_str(), c.done), (up.text().as_str(), true));

    // A paraphrase: a semantic hit, accepted by the guard and the verifier.
    let d = g
        .post(
            "/v1/chat/completions",
            &ask("How can I reverse a list in Python?", false),
        )
        .await;
    assert_eq!(
        header(&d, "x-switchyard-cache"),
        "semantic_hit",
        "{:?}",
        d.headers
    );
    let score: f32 = header(&d, "x-switchyard-cache-score").parse().unwrap();
    assert!(score >= 0.5, "{score}");
    // Hits are answered before any routing (no task, no decision), an exact one even
    // before the prompt is embedded; both still count under their route.
    let log = g.wait_log(4).await;
    let record = |a: &Answer| {
        let id = header(a, "x-switchyard-request-id");
        log.iter()
            .find(|r| r["request_id"] == id.as_str())
            .unwrap()
            .clone()
    };
    for (hit, embedded) in [(&b, false), (&d, true)] {
        assert!(hit.headers.get("x-switchyard-task").is_none());
        assert_eq!(header(hit, "x-switchyard-route"), "auto");
        let r = record(hit);
        assert!(r["decision"].is_null(), "{r}");
        assert_eq!(r["route"], "auto");
        let embed_ms = r["latency"]["embed_ms"].as_f64().unwrap();
        assert_eq!(embed_ms > 0.0, embedded, "{r}");
    }
    assert_eq!(up.hits(), 1);

    // Not served: a different number, another system prompt (the fingerprint), another
    // route, a route that opts out, and the no-cache directive.
    let mut other_system = ask(question, false);
    other_system["messages"][0]["content"] = json!("Answer in French.");
    let mut other_route = ask(question, false);
    other_route["model"] = json!("one");
    let mut no_cache_route = ask(question, false);
    no_cache_route["model"] = json!("nocache");
    for (i, body) in [
        ask("How do I reverse a list of 3 items in Python?", false),
        other_system,
        other_route,
        no_cache_route,
    ]
    .iter()
    .enumerate()
    {
        let r = g.post("/v1/chat/completions", body).await;
        assert_eq!(r.status, 200);
        assert_ne!(header(&r, "x-switchyard-cache"), "hit", "case {i}");
        assert_ne!(header(&r, "x-switchyard-cache"), "semantic_hit", "case {i}");
        assert_eq!(up.hits(), 2 + i, "case {i} reached the upstream");
    }
    let bypass = g
        .client
        .post(format!("{}/v1/chat/completions", g.url))
        .header("x-switchyard-cache-control", "no-cache, no-store")
        .json(&ask(question, false))
        .send()
        .await
        .unwrap();
    assert_eq!(bypass.headers()["x-switchyard-cache"], "bypass");
    assert_eq!(up.hits(), 6);
    let bad = g
        .client
        .post(format!("{}/v1/chat/completions", g.url))
        .header("x-switchyard-cache-control", "max-age=soon")
        .json(&ask(question, false))
        .send()
        .await
        .unwrap();
    assert_eq!(bad.status().as_u16(), 400);
    let e: Value = bad.json().await.unwrap();
    assert!(
        e["error"]["message"].as_str().unwrap().contains("max-age"),
        "{e}"
    );

    // A streamed miss is stored once it completes, then served to a non-streaming client.
    let s = g
        .post(
            "/v1/chat/completions",
            &ask("What is a Rust lifetime?", true),
        )
        .await;
    assert_eq!(
        (header(&s, "x-switchyard-cache"), s.done),
        ("miss".into(), true)
    );
    let before = up.hits();
    for _ in 0..500 {
        let r = g
            .post(
                "/v1/chat/completions",
                &ask("What is a Rust lifetime?", false),
            )
            .await;
        if header(&r, "x-switchyard-cache") == "hit" {
            assert_eq!(r.body["choices"][0]["message"]["content"], up.text());
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert!(
        up.hits() - before < 500,
        "the streamed answer was never stored"
    );

    // Errors are never stored.
    up.set(Mode::Status500);
    let f = g
        .post("/v1/chat/completions", &ask("Name a prime.", false))
        .await;
    assert_eq!(f.status, 502);
    up.set(Mode::Ok);
    let f2 = g
        .post("/v1/chat/completions", &ask("Name a prime.", false))
        .await;
    assert_eq!(
        (f2.status, header(&f2, "x-switchyard-cache")),
        (200, "miss".into())
    );

    // The log says what the cache did; /ready and /metrics show it.
    let log = g.wait_log(4).await;
    let outcomes: Vec<&str> = log.iter().filter_map(|l| l["cache"].as_str()).collect();
    assert!(
        outcomes.contains(&"hit") && outcomes.contains(&"semantic_hit"),
        "{outcomes:?}"
    );
    let (_, ready) = g.get("/ready").await;
    assert!(ready.contains("\"backend\":\"edge\""), "{ready}");
    let (_, metrics) = g.get("/metrics").await;
    assert!(
        metrics.contains("switchyard_cache_lookups_total{outcome=\"hit\"}"),
        "{metrics}"
    );
}

#[tokio::test]
async fn a_cache_that_cannot_open_leaves_the_gateway_serving_uncached() {
    let up = Upstream::start("up").await;
    // The cache directory would have to live under a regular file: it cannot be created.
    let blocker = tempfile::NamedTempFile::new().unwrap();
    let g = gateway(&format!(
        "{{router}}\n{}\n[models.one]\nprovider = \"p\"\ninput_per_mtok = 1.0\noutput_per_mtok = 2.0\nquality = 0.9\n\
         [routes.auto]\nmodels = [\"one\"]\n[cache]\npath = {:?}\nmethod = \"guard\"\n",
        provider("p", &up, "openai"),
        blocker.path().join("cache"),
    ))
    .await;
    assert!(g.state.cache().is_none());
    let (status, ready) = g.get("/ready").await;
    let ready: Value = serde_json::from_str(&ready).unwrap();
    assert_eq!(status, 200);
    assert_eq!(ready["cache"]["status"], "failed", "{ready}");
    let error = ready["cache"]["error"].as_str().unwrap();
    assert!(
        error.contains("cache.path") && error.contains("cannot create cache directory"),
        "{error}"
    );
    for _ in 0..2 {
        let a = g.post("/v1/chat/completions", &chat("auto", false)).await;
        assert_eq!(a.status, 200, "{:?}", a.body);
        assert_eq!(header(&a, "x-switchyard-cache"), "bypass");
    }
    assert_eq!(up.hits(), 2, "every request reached the upstream");
}

/// What `switchyard serve` runs: several single-threaded event loops on one listening
/// socket. Concurrent requests over many connections are all answered, a second server on
/// the same address is refused (one `bind`, no `SO_REUSEPORT` to share the port with a
/// stranger), and stopping lets every loop finish.
#[tokio::test]
async fn event_loops_share_one_socket_answer_everything_and_stop() {
    let up = Upstream::start("loops").await;
    let toml = format!(
        "{}[models.m]\nprovider = \"up\"\ninput_per_mtok = 1.0\noutput_per_mtok = 2.0\n[router]\nenabled = false\n",
        provider("up", &up, "openai")
    );
    let (state, _dir) = gateway_state(&toml);
    let (bound_tx, bound_rx) = std::sync::mpsc::channel();
    let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
    let serving = state.clone();
    let server = std::thread::spawn(move || {
        switchyard_gateway::serve_on_threads(
            serving,
            "127.0.0.1:0".parse().unwrap(),
            3,
            |addr| bound_tx.send(addr).unwrap(),
            async move {
                let _ = stop_rx.await;
            },
        )
    });
    let addr = bound_rx.recv_timeout(Duration::from_secs(30)).unwrap();
    let url = format!("http://{addr}/v1/chat/completions");

    // 16 clients (16 connections at least) × 6 requests, all at once.
    let mut tasks = Vec::new();
    for c in 0..16 {
        switchyard_providers::install_crypto_provider();
        let (client, url) = (reqwest::Client::new(), url.clone());
        tasks.push(tokio::spawn(async move {
            let mut texts = Vec::new();
            for r in 0..6 {
                let answer = read(
                    client
                        .post(&url)
                        .json(&chat("m", (c + r) % 2 == 0))
                        .send()
                        .await
                        .unwrap(),
                )
                .await;
                assert_eq!(answer.status, 200, "{:?}", answer.body);
                texts.push(if answer.done {
                    answer.text
                } else {
                    answer.body["choices"][0]["message"]["content"]
                        .as_str()
                        .unwrap_or_default()
                        .to_owned()
                });
            }
            texts
        }));
    }
    for t in tasks {
        for text in t.await.unwrap() {
            assert_eq!(text, up.text());
        }
    }
    assert_eq!(up.hits(), 96);

    let second = switchyard_gateway::serve_on_threads(
        state.clone(),
        addr,
        2,
        |_| panic!("a second server bound an address in use"),
        async {},
    );
    assert_eq!(
        second.unwrap_err().kind(),
        std::io::ErrorKind::AddrInUse,
        "a second server must not share the port"
    );

    stop_tx.send(()).unwrap();
    let stopped = tokio::task::spawn_blocking(move || server.join().unwrap())
        .await
        .unwrap();
    stopped.unwrap();
    assert!(
        tokio::net::TcpStream::connect(addr).await.is_err(),
        "still accepting after the stop"
    );
}
