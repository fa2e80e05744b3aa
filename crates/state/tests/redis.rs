//! The shared state against a real Redis server (`redis-server` from the Debian packages,
//! started here on a free loopback port). Without `redis-server` on PATH the tests say
//! SKIPPED and pass: `bash scripts/test.sh` installs it.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::print_stderr,
    clippy::panic,
    reason = "tests"
)]

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use switchyard_state::{Hold, Limits, PublishedRouter, SharedState, StateOptions, Verdict};

#[path = "support/redis_server.rs"]
mod support;

use support::RedisServer;

fn state(port: u16) -> SharedState {
    SharedState::connect_lazy(StateOptions {
        url: format!("redis://127.0.0.1:{port}"),
        prefix: format!("test-{}", uuid_like()),
        timeout: Duration::from_millis(500),
        ids_ttl: Duration::from_secs(60),
    })
    .unwrap()
}

fn uuid_like() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos() as u64
}

const DAY: &str = "2026-12-03";

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn reservations_hold_a_shared_budget_under_concurrency() {
    let Some(redis) = RedisServer::start_or_skip() else {
        return;
    };
    let limits = Limits {
        daily_tokens: Some(100),
        ..Limits::default()
    };
    // Two "replicas": two connections to the same keys.
    let a = state(redis.port);
    let b = a.clone();
    let admitted = Arc::new(AtomicU64::new(0));
    let mut tasks = Vec::new();
    for i in 0..40 {
        let s = if i % 2 == 0 { a.clone() } else { b.clone() };
        let admitted = admitted.clone();
        tasks.push(tokio::spawn(async move {
            let v = s.reserve("t", DAY, limits, true, 15, 0.0).await.unwrap();
            if v == Verdict::Admitted {
                admitted.fetch_add(15, Ordering::SeqCst);
                tokio::time::sleep(Duration::from_millis(5)).await;
                let hold = Hold {
                    tenant: "t".into(),
                    day: DAY.into(),
                    tokens: 15,
                    usd: 0.0,
                };
                s.settle(&hold, DAY, 15, 0.0).await.unwrap();
            }
        }));
    }
    for t in tasks {
        t.await.unwrap();
    }
    let total = admitted.load(Ordering::SeqCst);
    assert!(
        (100..100 + 15).contains(&total),
        "admitted {total} tokens against a budget of 100"
    );
    match a.reserve("t", DAY, limits, true, 1, 0.0).await.unwrap() {
        Verdict::OverTokens { spent, reserved } => {
            assert_eq!((spent, reserved), (total, 0), "settled spend, nothing held")
        }
        v => panic!("{v:?}"),
    }
}

#[tokio::test]
async fn a_released_hold_gives_the_budget_back_and_usd_is_checked() {
    let Some(redis) = RedisServer::start_or_skip() else {
        return;
    };
    let s = state(redis.port);
    let limits = Limits {
        daily_usd: Some(0.01),
        ..Limits::default()
    };
    assert_eq!(
        s.reserve("u", DAY, limits, false, 10, 0.008).await.unwrap(),
        Verdict::Admitted
    );
    assert_eq!(
        s.reserve("u", DAY, limits, false, 10, 0.008).await.unwrap(),
        Verdict::Admitted,
        "0.008 < 0.01 leaves room for one more request"
    );
    assert!(matches!(
        s.reserve("u", DAY, limits, false, 10, 0.001).await.unwrap(),
        Verdict::OverUsd { .. }
    ));
    let hold = Hold {
        tenant: "u".into(),
        day: DAY.into(),
        tokens: 10,
        usd: 0.008,
    };
    // Both fail: their holds are released, nothing is charged.
    s.settle(&hold, DAY, 0, 0.0).await.unwrap();
    s.settle(&hold, DAY, 0, 0.0).await.unwrap();
    assert_eq!(
        s.reserve("u", DAY, limits, false, 10, 0.001).await.unwrap(),
        Verdict::Admitted
    );
    // Another day is another budget.
    assert_eq!(
        s.reserve("u", "2026-12-04", limits, false, 10, 0.009)
            .await
            .unwrap(),
        Verdict::Admitted
    );
}

#[tokio::test]
async fn the_rate_limit_is_one_bucket_for_all_connections() {
    let Some(redis) = RedisServer::start_or_skip() else {
        return;
    };
    let a = state(redis.port);
    let limits = Limits {
        rpm: Some(5),
        ..Limits::default()
    };
    let mut admitted = 0;
    for _ in 0..12 {
        // Each call on its own clone: one bucket whatever the connection.
        match a
            .clone()
            .reserve("r", DAY, limits, true, 0, 0.0)
            .await
            .unwrap()
        {
            Verdict::Admitted => admitted += 1,
            Verdict::RateLimited { retry_after_s } => assert!((1..=12).contains(&retry_after_s)),
            v => panic!("{v:?}"),
        }
    }
    assert_eq!(admitted, 5);
    // Reservations after admission do not take rate tokens.
    assert_eq!(
        a.reserve("r", DAY, limits, false, 1, 0.0).await.unwrap(),
        Verdict::Admitted
    );
}

#[tokio::test]
async fn ids_and_the_published_router_are_shared() {
    let Some(redis) = RedisServer::start_or_skip() else {
        return;
    };
    let s = state(redis.port);
    s.ping().await.unwrap();
    s.remember("chatcmpl-sy-1", "a").await.unwrap();
    s.remember_all(&[("chatcmpl-sy-2".into(), "b".into())])
        .await
        .unwrap();
    assert_eq!(
        s.tenant_of("chatcmpl-sy-1").await.unwrap().as_deref(),
        Some("a")
    );
    assert_eq!(
        s.tenant_of("chatcmpl-sy-2").await.unwrap().as_deref(),
        Some("b")
    );
    assert_eq!(s.tenant_of("chatcmpl-sy-3").await.unwrap(), None);
    assert_eq!(s.published_router().await.unwrap(), None);
    let r = PublishedRouter {
        version: "abc".into(),
        scorer: "models/scorer".into(),
    };
    s.publish_router(&r).await.unwrap();
    assert_eq!(s.published_router().await.unwrap(), Some(r));
}

#[tokio::test]
async fn an_unreachable_redis_is_an_error_within_the_timeout_and_recovery_is_automatic() {
    let port = support::free_port();
    let s = state(port);
    let started = std::time::Instant::now();
    assert!(s.ping().await.is_err(), "nothing listens on {port}");
    assert!(
        s.reserve("t", DAY, Limits::default(), true, 1, 0.0)
            .await
            .is_err()
    );
    assert!(started.elapsed() < Duration::from_secs(5));
    let Some(_redis) = RedisServer::start(port, tempfile::tempdir().unwrap()) else {
        return;
    };
    let mut up = false;
    for _ in 0..100 {
        if s.ping().await.is_ok() {
            up = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(
        up,
        "the same connection object reconnects once Redis is back"
    );
}

#[tokio::test]
async fn a_router_travels_through_redis_with_its_checksum_and_history() {
    let Some(redis) = RedisServer::start_or_skip() else {
        return;
    };
    let prefix = format!("test-{}", uuid_like());
    let s = SharedState::connect_lazy(StateOptions {
        url: format!("redis://127.0.0.1:{}", redis.port),
        prefix: prefix.clone(),
        timeout: Duration::from_millis(500),
        ids_ttl: Duration::from_secs(60),
    })
    .unwrap();
    let artifact = |version: &str, weights: &[u8]| switchyard_state::RouterArtifact {
        version: version.into(),
        files: [
            ("manifest.json".to_owned(), b"{}".to_vec()),
            ("weights.json".to_owned(), weights.to_vec()),
        ]
        .into(),
    };
    assert_eq!(s.router_artifact("v1").await.unwrap(), None);
    let v1 = artifact("v1", &[7u8; 1000]);
    let entry = s.store_router(&v1, 1 << 20, "promote").await.unwrap();
    assert_eq!((entry.bytes, entry.sha256.clone()), (1002, v1.sha256()));
    assert_eq!(s.router_artifact("v1").await.unwrap(), Some(v1.clone()));
    // Over the size limit: refused, nothing stored.
    let big = artifact("v2", &[1u8; 5000]);
    let e = s.store_router(&big, 4096, "promote").await.unwrap_err();
    assert!(e.to_string().contains("router_max_bytes"), "{e}");
    assert_eq!(s.router_artifact("v2").await.unwrap(), None);
    // History: newest first, rollbacks included.
    s.store_router(&artifact("v2", b"x"), 1 << 20, "promote")
        .await
        .unwrap();
    s.store_router(&v1, 1 << 20, "rollback").await.unwrap();
    let h = s.router_history().await.unwrap();
    let seen: Vec<(&str, &str)> = h
        .iter()
        .map(|e| (e.version.as_str(), e.action.as_str()))
        .collect();
    assert_eq!(
        seen,
        [("v1", "rollback"), ("v2", "promote"), ("v1", "promote")]
    );
    // A file changed behind the checksum's back is refused, not loaded.
    let mut conn = redis::Client::open(format!("redis://127.0.0.1:{}", redis.port))
        .unwrap()
        .get_multiplexed_async_connection()
        .await
        .unwrap();
    let key = format!("{prefix}:router-artifact:v2");
    let _: () = redis::AsyncCommands::hset(&mut conn, &key, "f:weights.json", "y")
        .await
        .unwrap();
    let e = s.router_artifact("v2").await.unwrap_err();
    assert!(e.to_string().contains("checksum"), "{e}");
}

#[tokio::test]
async fn the_router_history_keeps_the_newest_and_drops_old_artifacts() {
    let Some(redis) = RedisServer::start_or_skip() else {
        return;
    };
    let s = state(redis.port);
    let n = switchyard_state::routers::HISTORY_LEN as usize + 5;
    for i in 0..n {
        let a = switchyard_state::RouterArtifact {
            version: format!("v{i}"),
            files: [("weights.json".to_owned(), vec![i as u8; 10])].into(),
        };
        s.store_router(&a, 1 << 20, "promote").await.unwrap();
    }
    let h = s.router_history().await.unwrap();
    assert_eq!(h.len(), n - 5);
    assert_eq!(h[0].version, format!("v{}", n - 1));
    assert!(
        s.router_artifact("v0").await.unwrap().is_none(),
        "dropped with its entry"
    );
    assert!(
        s.router_artifact(&format!("v{}", n - 1))
            .await
            .unwrap()
            .is_some()
    );
}

#[tokio::test]
async fn a_lease_has_one_holder_until_it_expires_or_is_released() {
    let Some(redis) = RedisServer::start_or_skip() else {
        return;
    };
    let s = state(redis.port);
    let ttl = Duration::from_millis(300);
    assert!(s.hold_lease("learner", "a", ttl).await.unwrap());
    assert!(!s.hold_lease("learner", "b", ttl).await.unwrap(), "b waits");
    assert!(s.hold_lease("learner", "a", ttl).await.unwrap(), "a renews");
    // Only the holder can release it.
    s.release_lease("learner", "b").await.unwrap();
    assert!(!s.hold_lease("learner", "b", ttl).await.unwrap());
    s.release_lease("learner", "a").await.unwrap();
    assert!(
        s.hold_lease("learner", "b", ttl).await.unwrap(),
        "released: b takes it"
    );
    // A holder that stops renewing loses it once it expires.
    tokio::time::sleep(Duration::from_millis(450)).await;
    assert!(
        s.hold_lease("learner", "a", ttl).await.unwrap(),
        "expired: a takes it"
    );
}
