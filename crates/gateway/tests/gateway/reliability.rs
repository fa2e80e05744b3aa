//! The faults a stress run of the gateway found, each with the behaviour that fixes it:
//! streams that break after their first chunk count against the target; a probe whose
//! client went away does not shut the target for good; the cache tells images apart;
//! budgets hold under concurrency and streams without usage are charged; slow, idle and
//! surplus connections are closed; every error has OpenAI's shape.

use std::time::Duration;

use serde_json::{Value, json};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use super::{MATRIX, chat, gateway, header, provider, read};
use crate::support::upstream::{Mode, Upstream};

/// `bad` then `good`, with a breaker that opens after 3 failures in a row.
fn breaker_config(bad: &Upstream, good: &Upstream, open_ms: u64) -> String {
    super::pair_config(bad, good)
        .replace(
            "consecutive_failures = 1000\nwindow = 1000\nerror_rate = 1.0\n",
            &format!(
                "consecutive_failures = 3\nwindow = 20\nerror_rate = 1.0\nopen_ms = {open_ms}\n"
            ),
        )
        .replace("max_retries = 1", "max_retries = 0")
}

#[tokio::test]
async fn streams_that_break_after_the_first_chunk_count_against_the_target() {
    for mode in [
        Mode::Stall,
        Mode::ResetAfterFirst,
        Mode::MalformedAfterFirst,
    ] {
        let (bad, good) = (Upstream::start("bad").await, Upstream::start("good").await);
        let g = gateway(&breaker_config(&bad, &good, 60_000)).await;
        bad.set(mode);
        for i in 0..3 {
            let a = g.post("/v1/chat/completions", &chat("pair", true)).await;
            assert_eq!(header(&a, "x-switchyard-model"), "bad", "{mode:?} #{i}");
            assert!(
                a.error.is_some() && !a.done,
                "{mode:?} #{i}: the stream ends in an error"
            );
        }
        // Three broken streams in a row: the breaker is open, the next request skips `bad`.
        let hits = bad.hits();
        let a = g.post("/v1/chat/completions", &chat("pair", true)).await;
        assert_eq!(header(&a, "x-switchyard-model"), "good", "{mode:?}");
        assert_eq!(
            bad.hits(),
            hits,
            "{mode:?}: nothing more is sent to the broken target"
        );
        let metrics = g.get("/metrics").await.1;
        assert!(
            metrics.contains("switchyard_breaker_open{model=\"bad\"} 1"),
            "{mode:?}: {metrics}"
        );
        assert!(
            metrics.contains("switchyard_stream_breaks_total{model=\"bad\""),
            "{mode:?}"
        );
        // The log records the broken attempt as failed, with its class.
        let log = g.wait_log(4).await;
        let broken = &log[0]["attempts"][0];
        assert_eq!(broken["model"], "bad", "{mode:?}");
        assert!(broken["error_class"].is_string(), "{mode:?}: {broken}");
    }
}

#[tokio::test]
async fn a_probe_whose_client_went_away_does_not_shut_the_target() {
    let (bad, good) = (Upstream::start("bad").await, Upstream::start("good").await);
    let g = gateway(&breaker_config(&bad, &good, 200)).await;
    bad.set(Mode::Status500);
    for _ in 0..3 {
        g.post("/v1/chat/completions", &chat("solo", false)).await;
    }
    assert_eq!(
        g.post("/v1/chat/completions", &chat("solo", false))
            .await
            .status,
        503
    );
    // Half-open: the probe hangs and its client gives up.
    bad.set(Mode::Hang);
    tokio::time::sleep(Duration::from_millis(250)).await;
    let probe = g
        .client
        .post(format!("{}/v1/chat/completions", g.url))
        .json(&chat("solo", false))
        .timeout(Duration::from_millis(150))
        .send()
        .await;
    assert!(probe.is_err(), "the client timed out");
    tokio::time::sleep(Duration::from_millis(100)).await;
    // The target has recovered: the next request is the probe, and it closes the breaker.
    bad.set(Mode::Ok);
    let a = g.post("/v1/chat/completions", &chat("solo", false)).await;
    assert_eq!(a.status, 200, "{:?}", a.body);
    assert_eq!(header(&a, "x-switchyard-model"), "bad");
}

#[tokio::test]
async fn the_cache_tells_images_apart() {
    let up = Upstream::start("up").await;
    let g = gateway(&format!(
        "{{router}}\n{}\n[models.one]\nprovider = \"p\"\ninput_per_mtok = 1.0\noutput_per_mtok = 2.0\nquality = 0.9\n\
         [routes.auto]\nmodels = [\"one\"]\n{{cache}}\n",
        provider("p", &up, "openai"),
    ))
    .await;
    let cache = g.state.cache().expect("the cache is ready");
    let ask = |url: &str| {
        json!({"model": "auto", "temperature": 0, "messages": [{"role": "user", "content": [
            {"type": "text", "text": "What animal is in this picture?"},
            {"type": "image_url", "image_url": {"url": url}}]}]})
    };
    let a = g
        .post("/v1/chat/completions", &ask("https://example.com/cat.png"))
        .await;
    assert_eq!(header(&a, "x-switchyard-cache"), "miss");
    for _ in 0..500 {
        if cache.backend().entry_count().await.unwrap() >= 1 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let same = g
        .post("/v1/chat/completions", &ask("https://example.com/cat.png"))
        .await;
    assert_eq!(
        header(&same, "x-switchyard-cache"),
        "hit",
        "the same image is a repeat"
    );
    let other = g
        .post("/v1/chat/completions", &ask("https://example.com/dog.png"))
        .await;
    assert_eq!(
        header(&other, "x-switchyard-cache"),
        "miss",
        "another image is another question"
    );
    assert_eq!(up.hits(), 2);
}

fn budget_config(up: &Upstream, tenant: &str) -> String {
    let hash = switchyard_gateway::limits::sha256_hex(b"sk-budget");
    format!(
        "[router]\nenabled = false\n{}\n\
         [models.one]\nprovider = \"p\"\ninput_per_mtok = 1.0\noutput_per_mtok = 1.0\n\
         [routes.auto]\nmodels = [\"one\"]\npolicy = \"order\"\n\
         [tenants.t]\nkey_sha256 = \"{hash}\"\n{tenant}\n",
        provider("p", up, "openai"),
    )
}

#[tokio::test]
async fn a_token_budget_holds_under_concurrent_requests() {
    let up = Upstream::start("up").await;
    up.set(Mode::Slow);
    let g = gateway(&budget_config(&up, "daily_tokens = 100")).await;
    let requests = (0..40).map(|_| {
        let request = g
            .client
            .post(format!("{}/v1/chat/completions", g.url))
            .bearer_auth("sk-budget")
            .json(&chat("auto", false));
        async move { read(request.send().await.unwrap()).await }
    });
    let answers = futures_util::future::join_all(requests).await;
    let spent: u64 = answers
        .iter()
        .filter(|a| a.status == 200)
        .map(|a| a.body["usage"]["total_tokens"].as_u64().unwrap())
        .sum();
    assert!(spent > 0, "some requests were served");
    assert!(
        spent <= 100 + 15,
        "admitted {spent} tokens against a budget of 100 (one request is 15)"
    );
    let refused = answers.iter().filter(|a| a.status == 429).count();
    assert!(refused > 0);
}

#[tokio::test]
async fn a_stream_without_usage_is_charged_an_estimate() {
    let up = Upstream::start("up").await;
    up.set(Mode::NoUsage);
    let g = gateway(&budget_config(&up, "daily_tokens = 60")).await;
    let mut served = 0;
    for _ in 0..10 {
        let a = read(
            g.client
                .post(format!("{}/v1/chat/completions", g.url))
                .bearer_auth("sk-budget")
                .json(&chat("auto", true))
                .send()
                .await
                .unwrap(),
        )
        .await;
        if a.status == 429 {
            break;
        }
        assert!(a.done);
        served += 1;
    }
    assert!(
        (1..10).contains(&served),
        "{served} streams without usage were served against a 60-token budget"
    );
    let log = g.wait_log(served + 1).await;
    assert_eq!(log[0]["usage_estimated"], true, "{}", log[0]);
}

/// Reads until the server closes the connection (or 10 s pass); returns what came.
async fn until_closed(socket: &mut TcpStream) -> Option<String> {
    let mut got = Vec::new();
    let mut buf = [0u8; 4096];
    let read = async {
        loop {
            match socket.read(&mut buf).await {
                Ok(0) | Err(_) => return,
                Ok(n) => got.extend_from_slice(&buf[..n]),
            }
        }
    };
    tokio::time::timeout(Duration::from_secs(10), read)
        .await
        .ok()?;
    Some(String::from_utf8_lossy(&got).into_owned())
}

fn limits(extra: &str) -> String {
    let up_free = "[models.one]\nprovider = \"p\"\ninput_per_mtok = 0.0\noutput_per_mtok = 0.0\n";
    format!(
        "{MATRIX}[server]\n{extra}\n[providers.p]\nkind = \"openai\"\nbase_url = \"http://127.0.0.1:9/v1\"\n{up_free}"
    )
}

#[tokio::test]
async fn idle_and_half_sent_requests_are_closed() {
    let g = gateway(&limits("header_timeout_ms = 300\nbody_timeout_ms = 300")).await;
    let addr = g.url.trim_start_matches("http://").to_owned();
    // Connected, silent.
    let mut idle = TcpStream::connect(&addr).await.unwrap();
    assert!(
        until_closed(&mut idle).await.is_some(),
        "an idle connection is closed"
    );
    // Half a header.
    let mut half = TcpStream::connect(&addr).await.unwrap();
    half.write_all(b"POST /v1/chat/completions HTTP/1.1\r\nhost: x\r\n")
        .await
        .unwrap();
    assert!(
        until_closed(&mut half).await.is_some(),
        "a half-sent header is closed"
    );
    // Headers, then part of the body: 408 in OpenAI's shape.
    let mut slow = TcpStream::connect(&addr).await.unwrap();
    slow.write_all(
        b"POST /v1/chat/completions HTTP/1.1\r\nhost: x\r\ncontent-type: application/json\r\ncontent-length: 100\r\n\r\n{\"model\":",
    )
    .await
    .unwrap();
    let answer = until_closed(&mut slow).await.expect("answered and closed");
    assert!(answer.starts_with("HTTP/1.1 408"), "{answer}");
    assert!(answer.contains("server.body_timeout_ms"), "{answer}");
    // A keep-alive connection after its answer is idle too.
    let mut kept = TcpStream::connect(&addr).await.unwrap();
    kept.write_all(b"GET /health HTTP/1.1\r\nhost: x\r\n\r\n")
        .await
        .unwrap();
    let answer = until_closed(&mut kept)
        .await
        .expect("closed after the idle timeout");
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
    // The gateway still serves.
    assert_eq!(g.get("/health").await.0, 200);
}

#[tokio::test]
async fn connections_over_the_cap_are_refused_at_once() {
    let g = gateway(&limits("max_connections = 3\nheader_timeout_ms = 60000")).await;
    let addr = g.url.trim_start_matches("http://").to_owned();
    let mut held = Vec::new();
    for _ in 0..3 {
        held.push(TcpStream::connect(&addr).await.unwrap());
    }
    // Let the server accept them before the fourth arrives.
    tokio::time::sleep(Duration::from_millis(100)).await;
    let mut extra = TcpStream::connect(&addr).await.unwrap();
    let answer = until_closed(&mut extra).await.expect("refused and closed");
    assert!(answer.starts_with("HTTP/1.1 503"), "{answer}");
    assert!(answer.contains("server.max_connections"), "{answer}");
    drop(held);
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert_eq!(g.get("/health").await.0, 200, "freed slots serve again");
    assert!(
        g.get("/metrics")
            .await
            .1
            .contains("switchyard_connections_refused_total 1")
    );
}

#[tokio::test]
async fn wrong_methods_and_keyless_listings_get_openai_errors() {
    let g = gateway(&limits("")).await;
    let r = g
        .client
        .get(format!("{}/v1/chat/completions", g.url))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 405);
    let body: Value = r.json().await.unwrap();
    assert_eq!(body["error"]["type"], "invalid_request_error", "{body}");

    let hash = switchyard_gateway::limits::sha256_hex(b"sk-list");
    let tenants =
        format!("\n[tenants.t]\nkey_sha256 = \"{hash}\"\nmodels = [\"one\"]\nroutes = []\n");
    let g = gateway(&(limits("") + &tenants)).await;
    assert_eq!(
        g.get("/v1/models").await.0,
        401,
        "listing models needs a key"
    );
    let listed: Value = g
        .client
        .get(format!("{}/v1/models", g.url))
        .bearer_auth("sk-list")
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let ids: Vec<&str> = listed["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["id"].as_str().unwrap())
        .collect();
    assert_eq!(ids, ["one"], "only what the tenant may use");
    assert_eq!(
        g.get("/metrics").await.0,
        200,
        "metrics are open by default"
    );
    let g = gateway(&(limits("metrics_need_key = true") + &tenants)).await;
    assert_eq!(g.get("/metrics").await.0, 401);
}

#[tokio::test]
async fn the_rest_of_the_fault_matrix_falls_back_stream_and_not() {
    let (bad, good) = (Upstream::start("bad").await, Upstream::start("good").await);
    let g = gateway(&super::pair_config(&bad, &good)).await;
    let cases = [
        (Mode::SlowFirstByte, true, "timeout"),
        (Mode::SlowFirstByte, false, "timeout"),
        (Mode::ResetAfterFirst, false, "reset"),
        (Mode::MalformedAfterFirst, false, ""),
    ];
    for (mode, stream, class) in cases {
        bad.set(mode);
        let what = format!("{mode:?} stream={stream}");
        let a = g.post("/v1/chat/completions", &chat("pair", stream)).await;
        assert_eq!(a.status, 200, "{what}: {:?}", a.body);
        assert_eq!(header(&a, "x-switchyard-model"), "good", "{what}");
        let id = header(&a, "x-switchyard-request-id");
        let log = g.wait_log(1).await;
        let record = log.iter().find(|r| r["request_id"] == id.as_str()).unwrap();
        let first = &record["attempts"][0];
        assert_eq!(first["model"], "bad", "{what}");
        if !class.is_empty() {
            assert_eq!(first["error_class"], class, "{what}: {record}");
        }
    }

    // Connection refused: a provider on a port nothing listens on.
    let closed = super::pair_config(&bad, &good).replace(&bad.base_url(), "http://127.0.0.1:9/v1");
    let g = gateway(&closed).await;
    for stream in [false, true] {
        let a = g.post("/v1/chat/completions", &chat("pair", stream)).await;
        assert_eq!(
            header(&a, "x-switchyard-model"),
            "good",
            "refused stream={stream}"
        );
        assert_eq!(
            header(&a, "x-switchyard-attempts"),
            "3",
            "connect errors are retried once"
        );
        let solo = g.post("/v1/chat/completions", &chat("solo", stream)).await;
        assert_eq!(solo.status, 502, "{:?}", solo.body);
        let message = solo.body["error"]["message"].as_str().unwrap();
        assert!(message.contains("cannot connect"), "{message}");
    }
}

#[tokio::test]
async fn a_huge_max_tokens_reserves_the_whole_budget_instead_of_wrapping() {
    let up = Upstream::start("up").await;
    up.set(Mode::Slow);
    let g = gateway(&budget_config(&up, "daily_tokens = 100")).await;
    let send = |max_tokens: u64| {
        let mut body = chat("auto", false);
        body["max_tokens"] = json!(max_tokens);
        let request = g
            .client
            .post(format!("{}/v1/chat/completions", g.url))
            .bearer_auth("sk-budget")
            .json(&body);
        async move { read(request.send().await.unwrap()).await }
    };
    // While the first holds its (saturated) reservation, the second finds no room.
    let (first, second) = tokio::join!(send(u64::MAX), async {
        tokio::time::sleep(Duration::from_millis(50)).await;
        send(10).await
    });
    assert_eq!(first.status, 200, "{:?}", first.body);
    assert_eq!(second.status, 429, "{:?}", second.body);
}

/// With `[state]` pointing at a Redis that is not there, `limits_when_down = "local"` serves
/// under this replica's own limits and `"reject"` answers a retryable 503; tenants' requests
/// are never lost to a hang, and `/ready` says the shared state is down.
#[tokio::test]
async fn an_unreachable_redis_falls_back_to_local_limits_or_rejects_as_configured() {
    let up = Upstream::start("up").await;
    let closed = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let state = |policy: &str| {
        format!("[state]\nurl = \"redis://127.0.0.1:{closed}\"\nlimits_when_down = \"{policy}\"\n")
    };
    let local = gateway(&format!(
        "{}{}",
        state("local"),
        budget_config(&up, "daily_tokens = 40")
    ))
    .await;
    let mut statuses = Vec::new();
    for _ in 0..5 {
        let a = read(
            local
                .client
                .post(format!("{}/v1/chat/completions", local.url))
                .bearer_auth("sk-budget")
                .json(&chat("auto", false))
                .send()
                .await
                .unwrap(),
        )
        .await;
        statuses.push(a.status);
    }
    assert_eq!(
        statuses.iter().filter(|s| **s == 200).count(),
        3,
        "the local budget of 40 tokens (15 a request) holds: {statuses:?}"
    );
    assert_eq!(statuses.last(), Some(&429), "{statuses:?}");
    let ready: Value = local
        .client
        .get(format!("{}/ready", local.url))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(ready["shared_state"]["up"], json!(false), "{ready}");
    assert!(
        !ready["shared_state"]["at"].as_str().unwrap().contains('@'),
        "{ready}"
    );

    let reject = gateway(&format!(
        "{}{}",
        state("reject"),
        budget_config(&up, "daily_tokens = 40")
    ))
    .await;
    let response = reject
        .client
        .post(format!("{}/v1/chat/completions", reject.url))
        .bearer_auth("sk-budget")
        .json(&chat("auto", false))
        .send()
        .await
        .unwrap();
    assert!(response.headers().contains_key("retry-after"));
    let a = read(response).await;
    assert_eq!(a.status, 503, "{}", a.body);
    assert!(
        a.body["error"]["message"]
            .as_str()
            .unwrap()
            .contains("limits_when_down"),
        "{}",
        a.body
    );
}
