//! The fallback loop against real HTTP on 127.0.0.1: tiny upstreams that answer with a
//! fixed status, so each outcome of `fallback::run` is seen with every attempt's typed error.

#![allow(
    clippy::expect_used,
    clippy::unwrap_used,
    clippy::panic,
    reason = "tests fail loudly"
)]

use std::sync::Arc;
use std::time::{Duration, Instant};

use serde_json::json;
use switchyard_providers::fallback::{self, FallbackError, Plan, Quiet, Target};
use switchyard_providers::{
    ApiKey, Breaker, BreakerConfig, BreakerState, ErrorClass, Provider, ProviderKind, ProviderSpec,
    Reply, RetryPolicy, Timeouts,
};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// An upstream that answers every request with `status` (a chat completion on 200).
async fn upstream(status: u16) -> Provider {
    let body = if status == 200 {
        json!({"id": "c", "object": "chat.completion", "model": "m",
               "choices": [{"index": 0, "finish_reason": "stop",
                            "message": {"role": "assistant", "content": "ok"}}],
               "usage": {"prompt_tokens": 3, "completion_tokens": 1}})
        .to_string()
    } else {
        json!({"error": {"message": format!("status {status}")}}).to_string()
    };
    fixed(status, "content-type: application/json\r\n", body, None).await
}

/// An upstream that answers every request with `status`, extra header lines and `body`
/// (`None` for `status` = hang: read the request, never answer).
async fn fixed(status: u16, extra: &'static str, body: String, key: Option<&str>) -> Provider {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        loop {
            let Ok((mut socket, _)) = listener.accept().await else {
                return;
            };
            let body = body.clone();
            tokio::spawn(async move {
                let mut buf = vec![0u8; 65536];
                let mut seen = Vec::new();
                while !seen.windows(4).any(|w| w == b"\r\n\r\n") {
                    match socket.read(&mut buf).await {
                        Ok(0) | Err(_) => return,
                        Ok(n) => seen.extend_from_slice(&buf[..n]),
                    }
                }
                if status == 0 {
                    tokio::time::sleep(Duration::from_secs(30)).await;
                    return;
                }
                let head = format!(
                    "HTTP/1.1 {status} X\r\n{extra}content-length: {}\r\nconnection: close\r\n\r\n",
                    body.len()
                );
                let _ = socket.write_all(head.as_bytes()).await;
                let _ = socket.write_all(body.as_bytes()).await;
            });
        }
    });
    Provider::new(ProviderSpec {
        name: format!("up{status}"),
        kind: ProviderKind::Openai,
        base_url: format!("http://{addr}/v1"),
        api_key: key.map(ApiKey::new),
        timeouts: Timeouts {
            connect: Duration::from_secs(2),
            first_byte: Duration::from_secs(2),
            idle: Duration::from_secs(2),
        },
    })
    .unwrap()
}

/// A breaker that opens after `failures` failures in a row.
fn breaker_after(failures: u32) -> Arc<Breaker> {
    Arc::new(Breaker::new(BreakerConfig {
        consecutive_failures: failures,
        window: 20,
        error_rate: 0.5,
        open_for: Duration::from_secs(60),
    }))
}

const RETRY: RetryPolicy = RetryPolicy {
    max_retries: 1,
    base: Duration::from_millis(1),
    max: Duration::from_millis(5),
};

fn plan() -> Plan<'static> {
    Plan {
        retry: &RETRY,
        deadline: Instant::now() + Duration::from_secs(10),
        budget: Duration::from_secs(10),
        stream: false,
    }
}

fn target<'a>(model: &'a str, provider: &'a Provider, breaker: &Arc<Breaker>) -> Target<'a> {
    Target {
        model,
        upstream_model: model,
        provider,
        breaker: breaker.clone(),
    }
}

fn request() -> serde_json::Value {
    json!({"model": "x", "messages": [{"role": "user", "content": "hi"}]})
}

#[tokio::test]
async fn retries_then_falls_back_and_reports_every_attempt() {
    let (bad, good) = (upstream(500).await, upstream(200).await);
    let (b1, b2) = (breaker_after(5), breaker_after(5));
    let targets = [target("bad", &bad, &b1), target("good", &good, &b2)];
    let ok = fallback::run(&targets, request(), plan(), &Quiet)
        .await
        .unwrap();
    assert_eq!(ok.model, "good");
    assert!(matches!(ok.reply, Reply::Full { .. }));
    let seen: Vec<(Option<u16>, Option<ErrorClass>)> = ok
        .attempts
        .iter()
        .map(|a| (a.status, a.error.as_ref().map(|e| e.class)))
        .collect();
    // A 500 is retried once on the same target, then the next target answers.
    assert_eq!(
        seen,
        [
            (Some(500), Some(ErrorClass::ServerError)),
            (Some(500), Some(ErrorClass::ServerError)),
            (Some(200), None),
        ]
    );
}
#[tokio::test]
async fn exhausted_carries_each_typed_error_and_open_breakers_are_skipped() {
    let (a, b) = (upstream(503).await, upstream(429).await);
    let (ba, bb) = (breaker_after(1), breaker_after(1));
    let targets = [target("a", &a, &ba), target("b", &b, &bb)];
    let err = fallback::run(&targets, request(), plan(), &Quiet)
        .await
        .unwrap_err();
    let FallbackError::Exhausted { attempts } = &err else {
        panic!("{err:?}")
    };
    let seen: Vec<(&str, Option<u16>, ErrorClass)> = attempts
        .iter()
        .map(|a| {
            let e = a.error.as_ref().unwrap();
            (a.model.as_str(), a.status, e.class)
        })
        .collect();
    assert_eq!(
        seen,
        [
            ("a", Some(503), ErrorClass::ServerError),
            ("a", None, ErrorClass::BreakerOpen),
            ("b", Some(429), ErrorClass::RateLimited),
            ("b", None, ErrorClass::BreakerOpen),
        ],
        "one failure opens each breaker (consecutive_failures = 1): the retry finds it open"
    );
    // Both breakers are open now: nothing is sent.
    let err = fallback::run(&targets, request(), plan(), &Quiet)
        .await
        .unwrap_err();
    let FallbackError::AllOpen { attempts } = &err else {
        panic!("{err:?}")
    };
    assert!(
        attempts
            .iter()
            .all(|a| a.error.as_ref().unwrap().class == ErrorClass::BreakerOpen)
    );
}

#[tokio::test]
async fn a_bad_request_is_refused_without_fallback_and_deadlines_hold() {
    let (bad, good) = (upstream(400).await, upstream(200).await);
    let (b1, b2) = (breaker_after(1), breaker_after(1));
    let targets = [target("bad", &bad, &b1), target("good", &good, &b2)];
    let err = fallback::run(&targets, request(), plan(), &Quiet)
        .await
        .unwrap_err();
    assert!(
        matches!(&err, FallbackError::Refused { status: 400, attempts } if attempts.len() == 1),
        "{err:?}"
    );
    let past = Plan {
        deadline: Instant::now(),
        ..plan()
    };
    let err = fallback::run(&targets[1..], request(), past, &Quiet)
        .await
        .unwrap_err();
    assert!(matches!(err, FallbackError::Deadline { .. }), "{err:?}");
}

#[tokio::test]
async fn an_echoed_key_is_scrubbed_before_the_message_is_cut() {
    let key = "sk-live-0123456789abcdefghijklmnopqrstuvwxyz";
    // A plain-text error body that echoes the key across character 200.
    let body = format!("{}{key} is not valid", "e".repeat(190));
    let up = fixed(401, "content-type: text/plain\r\n", body, Some(key)).await;
    let b = breaker_after(5);
    let err = fallback::run(&[target("m", &up, &b)], request(), plan(), &Quiet)
        .await
        .unwrap_err();
    let message = &err.attempts()[0].error.as_ref().unwrap().message;
    assert!(!message.contains(&key[..8]), "{message}");
    assert!(message.contains("<redacted>"), "{message}");
}

#[tokio::test]
async fn a_retry_after_beyond_the_cap_moves_on_at_once() {
    let body = json!({"error": {"message": "slow down"}}).to_string();
    let limited = fixed(429, "retry-after: 30\r\n", body, None).await;
    let good = upstream(200).await;
    let (b1, b2) = (breaker_after(5), breaker_after(5));
    let targets = [target("limited", &limited, &b1), target("good", &good, &b2)];
    let ok = fallback::run(&targets, request(), plan(), &Quiet)
        .await
        .unwrap();
    let models: Vec<&str> = ok.attempts.iter().map(|a| a.model.as_str()).collect();
    assert_eq!(
        models,
        ["limited", "good"],
        "no retry of a target that asks for 30 s when the cap is 5 ms"
    );
}

#[tokio::test]
async fn a_probe_whose_caller_went_away_does_not_shut_the_target_for_good() {
    let hang = fixed(0, "", String::new(), None).await;
    let b = Arc::new(Breaker::new(BreakerConfig {
        consecutive_failures: 1,
        window: 20,
        error_rate: 0.5,
        open_for: Duration::from_millis(20),
    }));
    b.record(false);
    tokio::time::sleep(Duration::from_millis(30)).await;
    assert_eq!(b.state(), BreakerState::HalfOpen);
    let targets = [target("hang", &hang, &b)];
    // The client of the probe disconnects: its request future is dropped mid-attempt.
    let probe = fallback::run(&targets, request(), plan(), &Quiet);
    assert!(
        tokio::time::timeout(Duration::from_millis(100), probe)
            .await
            .is_err()
    );
    let next = b.try_acquire();
    assert!(
        next.as_ref().is_some_and(|p| p.is_probe()),
        "the next request must be let through as the probe"
    );
}
