//! One behaviour suite for both backends: Qdrant Edge on disk always, a Qdrant server when
//! `SWITCHYARD_TEST_QDRANT_URL` or `SWITCHYARD_QDRANT_URL` is set (`scripts/test.sh` starts
//! the one in `../shared/tools/qdrant`; it prints that it skipped otherwise: no Qdrant
//! server can be installed from the package registries this project builds from).
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::print_stderr,
    reason = "tests"
)]

use std::sync::Arc;
use std::time::Duration;

use switchyard_cache::{
    Cache, CacheScope, CacheSettings, EdgeCache, Invalidate, Method, RemoteCache, RemoteSettings,
    SemanticCache,
};
use switchyard_core::EncoderInfo;

const DIM: usize = 8;

fn encoder(sha: &str) -> EncoderInfo {
    EncoderInfo {
        id: "test-encoder".into(),
        dim: DIM,
        max_tokens: 128,
        weights_sha256: sha.into(),
        truncation: Default::default(),
    }
}

/// A unit vector along axis `i`, tilted towards axis `i + 1` by `tilt`.
fn v(i: usize, tilt: f32) -> Vec<f32> {
    let mut x = [0.0; DIM];
    x[i % DIM] = 1.0;
    x[(i + 1) % DIM] = tilt;
    let n = (1.0 + tilt * tilt).sqrt();
    x.iter().map(|a| a / n).collect()
}

fn scope(tenant: &str, route: &str, fp: &str) -> CacheScope {
    CacheScope {
        tenant: tenant.into(),
        route: route.into(),
        fingerprint: fp.into(),
    }
}

struct Backend {
    name: &'static str,
    store: Arc<dyn SemanticCache>,
    _dir: Option<tempfile::TempDir>,
}

async fn backends() -> Vec<Backend> {
    let dir = tempfile::tempdir().unwrap();
    let edge = EdgeCache::open(dir.path(), &encoder("aaa")).unwrap();
    let mut out = vec![Backend {
        name: "edge",
        store: Arc::new(edge),
        _dir: Some(dir),
    }];
    // `scripts/test.sh` starts the Qdrant server of `../shared/tools/qdrant` and sets
    // SWITCHYARD_TEST_QDRANT_URL (not SWITCHYARD_QDRANT_URL, which would move every gateway
    // test's cache onto that server).
    let url = std::env::var("SWITCHYARD_TEST_QDRANT_URL")
        .or_else(|_| std::env::var("SWITCHYARD_QDRANT_URL"));
    match url {
        Ok(url) if !url.is_empty() => {
            let settings = RemoteSettings {
                url,
                collection: format!("switchyard-test-{}", uuid_like()),
                api_key: std::env::var("SWITCHYARD_QDRANT_API_KEY").ok(),
                timeout: Duration::from_secs(10),
                shards: None,
                replication_factor: None,
            };
            let remote = RemoteCache::connect(&settings, &encoder("aaa"))
                .await
                .unwrap();
            out.push(Backend {
                name: "qdrant",
                store: Arc::new(remote),
                _dir: None,
            });
        }
        _ => eprintln!(
            "SKIPPED: the remote Qdrant backend (no ../shared/tools/qdrant for scripts/test.sh to \
             start; set SWITCHYARD_QDRANT_URL=http://127.0.0.1:6334 to run this suite against a \
             Qdrant server too)"
        ),
    }
    out
}

fn uuid_like() -> String {
    format!(
        "{:x}",
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_nanos()
    )
}

fn cache(store: &Arc<dyn SemanticCache>, settings: CacheSettings) -> Cache {
    Cache::new(Arc::clone(store), None, settings).unwrap()
}

fn guard(threshold: f32) -> CacheSettings {
    CacheSettings {
        method: Method::Guard,
        threshold,
        ..CacheSettings::default()
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn exact_then_semantic_within_scope_only() {
    for b in backends().await {
        let c = cache(&b.store, guard(0.95));
        let s = scope("acme", "auto", "fp1");
        c.insert(
            s.clone(),
            "What is the capital of France?",
            v(0, 0.0),
            "Paris".into(),
            "m1",
        )
        .await
        .unwrap();

        // Exact path: same text, whitespace aside, whatever the vector.
        let hit = c
            .lookup(
                &s,
                "  What is the capital   of France? ",
                &v(3, 0.0),
                None,
                None,
            )
            .await
            .unwrap()
            .expect("exact hit");
        assert!(hit.exact, "{}", b.name);
        assert_eq!(hit.entry.response, "Paris");
        assert_eq!(hit.entry.model, "m1");

        // Semantic path: a close vector (cosine 0.995) and a paraphrase.
        let hit = c
            .lookup(
                &s,
                "Which city is France's capital?",
                &v(0, 0.1),
                None,
                None,
            )
            .await
            .unwrap()
            .expect("semantic hit");
        assert!(!hit.exact && hit.judgement.cosine > 0.99, "{}", b.name);

        // A far vector misses; so does the same vector under a guard veto.
        assert!(
            c.lookup(&s, "Other", &v(0, 1.0), None, None)
                .await
                .unwrap()
                .is_none()
        );
        assert!(
            c.lookup(
                &s,
                "What is the capital of France in 1800?",
                &v(0, 0.1),
                None,
                None
            )
            .await
            .unwrap()
            .is_none(),
            "{}: numbers differ, the guard must veto",
            b.name
        );

        // Hard filters: another tenant, route or fingerprint never sees the entry, even
        // with the identical text and vector.
        for other in [
            scope("globex", "auto", "fp1"),
            scope("acme", "gpt-4o", "fp1"),
            scope("acme", "auto", "fp2"),
        ] {
            let r = c
                .lookup(
                    &other,
                    "What is the capital of France?",
                    &v(0, 0.0),
                    None,
                    None,
                )
                .await
                .unwrap();
            assert!(
                r.is_none(),
                "{}: {other:?} saw another scope's entry",
                b.name
            );
        }

        // Cosine alone would have served the number-changed prompt.
        let plain = cache(
            &b.store,
            CacheSettings {
                method: Method::Cosine,
                ..guard(0.95)
            },
        );
        assert!(
            plain
                .lookup(
                    &s,
                    "What is the capital of France in 1800?",
                    &v(0, 0.1),
                    None,
                    None
                )
                .await
                .unwrap()
                .is_some()
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ttl_max_age_and_purge() {
    for b in backends().await {
        let s = scope("t", "auto", "fp");
        let short = cache(
            &b.store,
            CacheSettings {
                ttl: Duration::from_millis(300),
                ..guard(0.9)
            },
        );
        short
            .insert(s.clone(), "short lived", v(1, 0.0), "a".into(), "m")
            .await
            .unwrap();
        let long = cache(&b.store, guard(0.9));
        long.insert(s.clone(), "long lived", v(4, 0.0), "b".into(), "m")
            .await
            .unwrap();
        assert!(
            long.lookup(&s, "short lived", &v(1, 0.0), None, None)
                .await
                .unwrap()
                .is_some()
        );
        tokio::time::sleep(Duration::from_millis(450)).await;
        assert!(
            long.lookup(&s, "short lived", &v(1, 0.0), None, None)
                .await
                .unwrap()
                .is_none(),
            "{}: an expired entry was served",
            b.name
        );
        // max-age: the long-lived entry is older than 100 ms by now.
        assert!(
            long.lookup(
                &s,
                "long lived",
                &v(4, 0.0),
                Some(Duration::from_millis(100)),
                None
            )
            .await
            .unwrap()
            .is_none()
        );
        assert!(
            long.lookup(&s, "long lived", &v(4, 0.0), None, None)
                .await
                .unwrap()
                .is_some()
        );
        let purged = long.maintain().await.unwrap().purged;
        assert_eq!(purged, 1, "{}", b.name);
        assert_eq!(b.store.entry_count().await.unwrap(), 1);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn capacity_evicts_the_least_recently_hit() {
    for b in backends().await {
        let c = cache(
            &b.store,
            CacheSettings {
                capacity: 3,
                ..guard(0.9)
            },
        );
        let s = scope("t", "auto", "fp");
        for i in 0..3 {
            c.insert(
                s.clone(),
                &format!("prompt {i}"),
                v(i, 0.0),
                i.to_string(),
                "m",
            )
            .await
            .unwrap();
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        // Hit the oldest, so "prompt 1" becomes the least recently hit.
        assert!(
            c.lookup(&s, "prompt 0", &v(0, 0.0), None, None)
                .await
                .unwrap()
                .is_some()
        );
        tokio::time::sleep(Duration::from_millis(5)).await;
        c.insert(s.clone(), "prompt 3", v(3, 0.0), "3".into(), "m")
            .await
            .unwrap();
        assert_eq!(b.store.entry_count().await.unwrap(), 3, "{}", b.name);
        assert!(
            c.lookup(&s, "prompt 1", &v(1, 0.0), None, None)
                .await
                .unwrap()
                .is_none()
        );
        for kept in ["prompt 0", "prompt 2", "prompt 3"] {
            let i: usize = kept[7..].parse().unwrap();
            assert!(
                c.lookup(&s, kept, &v(i, 0.0), None, None)
                    .await
                    .unwrap()
                    .is_some(),
                "{}: {kept} was evicted",
                b.name
            );
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn invalidation_by_tenant_route_entry_and_flush() {
    for b in backends().await {
        let c = cache(&b.store, guard(0.9));
        let mut ids = Vec::new();
        for (i, (t, r)) in [("a", "auto"), ("a", "code"), ("b", "auto"), ("b", "code")]
            .into_iter()
            .enumerate()
        {
            ids.push(
                c.insert(
                    scope(t, r, "fp"),
                    &format!("q{i}"),
                    v(i, 0.0),
                    "x".into(),
                    "m",
                )
                .await
                .unwrap(),
            );
        }
        let store = &b.store;
        assert_eq!(
            store
                .invalidate(Invalidate::Entry(ids[3].clone()))
                .await
                .unwrap(),
            1
        );
        assert_eq!(
            store
                .invalidate(Invalidate::Tenant("a".into()))
                .await
                .unwrap(),
            2
        );
        assert_eq!(store.entry_count().await.unwrap(), 1, "{}", b.name);
        assert!(
            c.lookup(&scope("b", "auto", "fp"), "q2", &v(2, 0.0), None, None)
                .await
                .unwrap()
                .is_some()
        );
        assert_eq!(
            store
                .invalidate(Invalidate::Route("auto".into()))
                .await
                .unwrap(),
            1
        );
        c.insert(scope("c", "r", "fp"), "q", v(5, 0.0), "x".into(), "m")
            .await
            .unwrap();
        assert_eq!(store.invalidate(Invalidate::All).await.unwrap(), 1);
        assert_eq!(store.entry_count().await.unwrap(), 0);
        assert!(
            store
                .invalidate(Invalidate::Entry("not-a-uuid".into()))
                .await
                .is_ok(),
            "an unknown id removes nothing"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn edge_survives_restart_and_refuses_another_encoder() {
    let dir = tempfile::tempdir().unwrap();
    let s = scope("t", "auto", "fp");
    {
        let store: Arc<dyn SemanticCache> =
            Arc::new(EdgeCache::open(dir.path(), &encoder("aaa")).unwrap());
        let c = cache(&store, guard(0.9));
        c.insert(
            s.clone(),
            "kept across restarts",
            v(2, 0.0),
            "yes".into(),
            "m",
        )
        .await
        .unwrap();
    }
    let store: Arc<dyn SemanticCache> =
        Arc::new(EdgeCache::open(dir.path(), &encoder("aaa")).unwrap());
    let c = cache(&store, guard(0.9));
    let hit = c
        .lookup(&s, "kept across restarts!", &v(2, 0.01), None, None)
        .await
        .unwrap()
        .expect("entry survived the restart");
    assert_eq!(hit.entry.response, "yes");
    drop((c, store));

    let err = EdgeCache::open(dir.path(), &encoder("bbb"))
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("encoder") && err.contains("remove the directory"),
        "{err}"
    );
    let mut wider = encoder("aaa");
    wider.dim = 16;
    let err = EdgeCache::open(dir.path(), &wider).unwrap_err().to_string();
    assert!(err.contains("8-d") && err.contains("16-d"), "{err}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_lookups_and_inserts() {
    for b in backends().await {
        let c = Arc::new(cache(&b.store, guard(0.99)));
        let mut tasks = Vec::new();
        for i in 0..16 {
            let c = Arc::clone(&c);
            tasks.push(tokio::spawn(async move {
                let s = scope(&format!("t{i}"), "auto", "fp");
                c.insert(s.clone(), &format!("q{i}"), v(i, 0.0), i.to_string(), "m")
                    .await
                    .unwrap();
                let hit = c
                    .lookup(&s, &format!("q{i}?"), &v(i, 0.0), None, None)
                    .await
                    .unwrap();
                hit.map(|h| h.entry.response)
            }));
        }
        for (i, t) in tasks.into_iter().enumerate() {
            assert_eq!(t.await.unwrap(), Some(i.to_string()), "{}", b.name);
        }
        assert_eq!(b.store.entry_count().await.unwrap(), 16);
    }
}

/// The same prompts stored by many tenants, each with its own answer: every lookup, exact
/// or semantic, answers from the asking tenant's entries only, and a tenant that stored
/// nothing gets nothing — however close the others' entries are.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn many_tenants_same_prompts_never_cross() {
    const TENANTS: usize = 12;
    const PROMPTS: usize = 6;
    let prompt = |p: usize| format!("Explain topic {p} like I am five");
    for b in backends().await {
        let c = cache(&b.store, guard(0.9));
        for t in 0..TENANTS {
            for p in 0..PROMPTS {
                let s = scope(&format!("tenant-{t}"), "auto", "fp");
                c.insert(s, &prompt(p), v(p, 0.0), format!("answer {t}/{p}"), "m")
                    .await
                    .unwrap();
            }
        }
        let mut cross = 0;
        for t in 0..=TENANTS {
            let s = scope(&format!("tenant-{t}"), "auto", "fp");
            for p in 0..PROMPTS {
                for (text, vector) in [
                    (prompt(p), v(p, 0.0)),
                    (format!("{} please", prompt(p)), v(p, 0.05)),
                ] {
                    let found = c.lookup(&s, &text, &vector, None, None).await.unwrap();
                    match found {
                        Some(f) if t < TENANTS => {
                            assert_eq!(f.entry.scope.tenant, format!("tenant-{t}"));
                            if f.entry.response != format!("answer {t}/{p}") {
                                cross += 1;
                            }
                        }
                        Some(_) => cross += 1, // tenant-12 stored nothing
                        None => assert!(t == TENANTS, "{}: tenant {t} missed its own {p}", b.name),
                    }
                }
            }
        }
        assert_eq!(cross, 0, "{}: cross-tenant hits", b.name);
    }
}

/// On a Qdrant server, the collection Switchyard creates has the configured shards and
/// replication factor (a cluster deployment's settings; one node takes both).
#[tokio::test]
async fn a_server_collection_is_created_with_the_cluster_settings() {
    let Ok(url) = std::env::var("SWITCHYARD_TEST_QDRANT_URL")
        .or_else(|_| std::env::var("SWITCHYARD_QDRANT_URL"))
    else {
        eprintln!("SKIPPED: no Qdrant server (scripts/test.sh starts ../shared/tools/qdrant)");
        return;
    };
    let settings = RemoteSettings {
        url: url.clone(),
        collection: format!("switchyard-cluster-{}", uuid_like()),
        api_key: None,
        timeout: Duration::from_secs(10),
        shards: Some(3),
        replication_factor: Some(1),
    };
    RemoteCache::connect(&settings, &encoder("aaa"))
        .await
        .unwrap();
    let client = qdrant_client::Qdrant::from_url(&url).build().unwrap();
    let params = client
        .collection_info(&settings.collection)
        .await
        .unwrap()
        .result
        .and_then(|i| i.config)
        .and_then(|c| c.params)
        .unwrap();
    assert_eq!(params.shard_number, 3);
    assert_eq!(params.replication_factor, Some(1));
    // Opening it again (another replica) keeps it as it is.
    RemoteCache::connect(&settings, &encoder("aaa"))
        .await
        .unwrap();
}
