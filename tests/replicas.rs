//! Three `switchyard serve` replicas behind no balancer at all (the test spreads requests
//! over them), one real Redis (`redis-server`, started here on a free loopback port with
//! its append-only file synced on every write) and, when there is one, a real Qdrant
//! server for the cache: limits hold globally, feedback and cache hits cross replicas, a
//! promotion on one reaches the others, and killing Redis or a replica behaves as the
//! README says. Included from `gateway_e2e.rs` (one test binary, one link).

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use serde_json::{Value, json};

use super::support::upstream::Upstream;
use super::{KEY, KEY_VAR, Server, root, start};

#[path = "../crates/state/tests/support/redis_server.rs"]
mod redis_server;

use redis_server::{RedisServer, free_port};

/// The Qdrant server the test script started (`SWITCHYARD_TEST_QDRANT_URL`), or one
/// started here from `../shared/tools/qdrant`; `None` when there is neither.
struct Qdrant {
    url: String,
    pid: Option<u32>,
}

impl Drop for Qdrant {
    fn drop(&mut self) {
        if let Some(pid) = self.pid {
            let _ = Command::new("kill").arg(pid.to_string()).status();
        }
    }
}

fn qdrant() -> Option<Qdrant> {
    if let Ok(url) = std::env::var("SWITCHYARD_TEST_QDRANT_URL") {
        return Some(Qdrant { url, pid: None });
    }
    let script = root().join("../shared/tools/qdrant/start.sh");
    if !script.exists() {
        return None;
    }
    let out = Command::new("bash")
        .arg(&script)
        .args([free_port().to_string(), free_port().to_string()])
        .output()
        .ok()?;
    let text = String::from_utf8_lossy(&out.stdout);
    let field = |name: &str| {
        text.split(';')
            .find_map(|kv| kv.trim().strip_prefix(&format!("{name}=")))
            .map(str::to_owned)
    };
    Some(Qdrant {
        url: field("QDRANT_URL")?,
        pid: field("QDRANT_PID")?.parse().ok(),
    })
}

fn key_hash(key: &str) -> String {
    switchyard_gateway::limits::sha256_hex(key.as_bytes())
}

fn replica_config(
    dir: &Path,
    i: usize,
    up: &Upstream,
    redis: u16,
    qdrant: Option<&str>,
) -> PathBuf {
    let cache = match qdrant {
        // A collection of this run's own: a server the test script keeps may hold others.
        Some(url) => format!(
            "backend = \"qdrant\"\nurl = \"{url}\"\ncollection = \"replicas-{}\"",
            dir.file_name()
                .unwrap_or_default()
                .to_string_lossy()
                .replace(|c: char| !c.is_ascii_alphanumeric(), "")
        ),
        None => format!("path = {:?}", dir.join(format!("cache-{i}"))),
    };
    let text = format!(
        r#"[log]
dir = {log:?}

[cache]
{cache}

[state]
url = "redis://127.0.0.1:{redis}"
router_poll_ms = 200

[router]
admin_key_env = "{KEY_VAR}"

[providers.mock]
kind = "openai"
base_url = "{base}"
api_key_env = "{KEY_VAR}"

[models.small]
provider = "mock"
input_per_mtok = 0.2
output_per_mtok = 0.6
quality_like = "mistralai/mistral-7b-chat"

[tenants.limited]
key_sha256 = "{limited}"
rpm = 12

[tenants.budget]
key_sha256 = "{budget}"
daily_tokens = 100

[tenants.plain]
key_sha256 = "{plain}"

[tenants.other]
key_sha256 = "{other}"
"#,
        log = dir.join(format!("logs-{i}")),
        base = up.base_url(),
        limited = key_hash("sk-limited"),
        budget = key_hash("sk-budget"),
        plain = key_hash("sk-plain"),
        other = key_hash("sk-other"),
    );
    let path = dir.join(format!("replica-{i}.toml"));
    std::fs::write(&path, text).unwrap();
    path
}

/// One chat request: status, request id, cache header, total tokens.
async fn chat(
    client: &reqwest::Client,
    server: &Server,
    key: &str,
    prompt: &str,
) -> (u16, Option<String>, Option<String>, u64) {
    let body = json!({"model": "small", "max_tokens": 100,
                      "messages": [{"role": "user", "content": prompt}]});
    let r = client
        .post(format!("{}/v1/chat/completions", server.url))
        .bearer_auth(key)
        .json(&body)
        .send()
        .await
        .unwrap();
    let status = r.status().as_u16();
    let header = |name: &str| {
        r.headers()
            .get(name)
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned)
    };
    let (id, cache) = (
        header("x-switchyard-request-id"),
        header("x-switchyard-cache"),
    );
    let v: Value = r.json().await.unwrap_or_default();
    let tokens = v["usage"]["total_tokens"].as_u64().unwrap_or(0);
    (status, id, cache, tokens)
}

async fn feedback(client: &reqwest::Client, server: &Server, key: &str, id: &str) -> u16 {
    client
        .post(format!("{}/v1/feedback", server.url))
        .bearer_auth(key)
        .json(&json!({"request_id": id, "score": 0.9}))
        .send()
        .await
        .unwrap()
        .status()
        .as_u16()
}

async fn ready(client: &reqwest::Client, server: &Server) -> Value {
    client
        .get(format!("{}/ready", server.url))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap()
}

/// Waits until `check` holds on `/ready` (up to 15 s).
async fn until_ready(
    client: &reqwest::Client,
    server: &Server,
    what: &str,
    check: impl Fn(&Value) -> bool,
) {
    for _ in 0..150 {
        if check(&ready(client, server).await) {
            return;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("{what}: /ready says {}", ready(client, server).await);
}

/// Sends `n` concurrent requests of tenant `key`, spread round-robin over `servers`.
async fn burst(
    client: &reqwest::Client,
    servers: &[&Server],
    key: &str,
    n: usize,
    tag: &str,
) -> Vec<(u16, u64)> {
    let mut tasks = Vec::new();
    for i in 0..n {
        let (client, url) = (client.clone(), servers[i % servers.len()].url.clone());
        // Long enough that the gateway's token estimate is at least the mock's 10 prompt
        // tokens: reservations are estimates, and the bound below needs them not to fall short.
        let prompt =
            format!("{tag} request number {i}: please answer briefly, in one short sentence");
        let key = key.to_owned();
        tasks.push(tokio::spawn(async move {
            let body = json!({"model": "small", "max_tokens": 5,
                              "messages": [{"role": "user", "content": prompt}]});
            let r = client
                .post(format!("{url}/v1/chat/completions"))
                .bearer_auth(key)
                .header("x-switchyard-cache-control", "no-cache, no-store")
                .json(&body)
                .send()
                .await
                .unwrap();
            let status = r.status().as_u16();
            let v: Value = r.json().await.unwrap_or_default();
            (status, v["usage"]["total_tokens"].as_u64().unwrap_or(0))
        }));
    }
    let mut out = Vec::new();
    for t in tasks {
        out.push(t.await.unwrap());
    }
    out
}

/// A rate limit of 12 a minute holds across replicas under concurrent load.
async fn rate_limit_holds(client: &reqwest::Client, all: &[&Server]) {
    let results = burst(client, all, "sk-limited", 30, "rate").await;
    let admitted = results.iter().filter(|r| r.0 == 200).count();
    let limited = results.iter().filter(|r| r.0 == 429).count();
    assert!(
        (12..=13).contains(&admitted),
        "admitted {admitted} of 30 at 12 rpm: {results:?}"
    );
    assert_eq!(admitted + limited, 30, "{results:?}");
}

/// A daily budget of 100 tokens (the upstream spends 15 a request): a concurrent burst,
/// then requests one at a time until refused; what was admitted stays within one
/// request of the budget.
async fn budget_holds(client: &reqwest::Client, all: &[&Server]) {
    let results = burst(client, all, "sk-budget", 40, "budget").await;
    assert!(
        results.iter().any(|r| r.0 == 429),
        "reservations refuse part of a burst: {results:?}"
    );
    let mut spent: u64 = results.iter().filter(|r| r.0 == 200).map(|r| r.1).sum();
    let mut refused = false;
    for i in 0..20 {
        let (status, _, _, tokens) = chat(
            client,
            all[i % 3],
            "sk-budget",
            &format!("budget, one at a time {i}"),
        )
        .await;
        if status == 429 {
            refused = true;
            break;
        }
        spent += tokens;
    }
    assert!(
        refused && (100..=115).contains(&spent),
        "spent {spent} of a 100-token budget"
    );
}

/// Feedback posted to replica 2 on a request replica 1 served; another tenant gets 404.
/// Returns the request's id.
async fn feedback_crosses_replicas(client: &reqwest::Client, replicas: &[&Server]) -> String {
    let (status, id, _, _) =
        chat(client, replicas[0], "sk-plain", "feedback across replicas").await;
    assert_eq!(status, 200);
    let id = id.unwrap();
    assert_eq!(feedback(client, replicas[1], "sk-plain", &id).await, 200);
    assert_eq!(feedback(client, replicas[1], "sk-other", &id).await, 404);
    id
}

/// A prompt answered via replica 1 is a cache hit on replica 3 (the Qdrant server).
async fn cache_crosses_replicas(client: &reqwest::Client, replicas: &[&Server]) {
    let prompt = "What is the capital of the cache shared by three replicas?";
    assert_eq!(chat(client, replicas[0], "sk-plain", prompt).await.0, 200);
    let mut hit = None;
    for _ in 0..40 {
        let (status, _, cache, _) = chat(client, replicas[2], "sk-plain", prompt).await;
        assert_eq!(status, 200);
        if cache.as_deref() == Some("hit") {
            hit = cache;
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(
        hit.as_deref(),
        Some("hit"),
        "replica 3 never served replica 1's answer"
    );
}

/// A router promoted on replica 1 is served by replicas 2 and 3 within the poll interval.
async fn promotion_reaches_the_others(client: &reqwest::Client, replicas: &[&Server], dir: &Path) {
    let scorer = scorer_copy(dir, "scorer-v2", "2026-12-03T00:00:00Z");
    let promoted = promote(client, replicas[0], &scorer).await;
    assert_eq!(promoted["published"], json!(true), "{promoted}");
    let version = promoted["router_version"].as_str().unwrap().to_owned();
    for r in &replicas[1..] {
        until_ready(client, r, "promotion reaches the other replicas", |v| {
            v["router"]["router_version"] == json!(version)
        })
        .await;
    }
}

/// `switchyard router ARGS` against `server` with the admin key; its stdout (it must succeed).
fn router_cli(args: &[&str], server: &Server) -> Vec<u8> {
    let out = Command::new(env!("CARGO_BIN_EXE_switchyard"))
        .arg("router")
        .args(args)
        .args(["--url", &server.url, "--admin-key-env", KEY_VAR])
        .env(KEY_VAR, KEY)
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "switchyard router {args:?}: {stderr}");
    out.stdout
}

/// `POST /admin/router` on `server` with the scorer in `dir`; its answer.
async fn promote(client: &reqwest::Client, server: &Server, dir: &Path) -> Value {
    client
        .post(format!("{}/admin/router", server.url))
        .bearer_auth(KEY)
        .json(&json!({"scorer": dir}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap()
}

/// A copy of the committed scorer under `dir/name` with another `created_at`, so another
/// version.
fn scorer_copy(dir: &Path, name: &str, created_at: &str) -> PathBuf {
    let scorer = dir.join(name);
    std::fs::create_dir(&scorer).unwrap();
    std::fs::copy(
        root().join("models/scorer/weights.json"),
        scorer.join("weights.json"),
    )
    .unwrap();
    let mut manifest: Value =
        serde_json::from_slice(&std::fs::read(root().join("models/scorer/manifest.json")).unwrap())
            .unwrap();
    manifest["created_at"] = json!(created_at);
    std::fs::write(scorer.join("manifest.json"), manifest.to_string()).unwrap();
    scorer
}

/// Routers travel through Redis, not a shared directory: after their directories are
/// deleted, a replica started later serves the last promoted router, the history lists
/// both promotions, and `switchyard router rollback` brings every replica back to the
/// first one.
async fn routers_need_no_shared_directory(
    client: &reqwest::Client,
    replicas: &[&Server],
    dir: &Path,
    late_config: &Path,
) {
    let out = router_cli(&["history", "--json"], replicas[1]);
    let listed: Value = serde_json::from_slice(&out).unwrap();
    let first = listed["serving"].as_str().unwrap().to_owned();
    let scorer = scorer_copy(dir, "scorer-v3", "2026-12-04T00:00:00Z");
    let promoted = promote(client, replicas[0], &scorer).await;
    let latest = promoted["router_version"].as_str().unwrap().to_owned();
    std::fs::remove_dir_all(dir.join("scorer-v2")).unwrap();
    std::fs::remove_dir_all(&scorer).unwrap();
    let history: Value = client
        .get(format!("{}/admin/router/history", replicas[2].url))
        .bearer_auth(KEY)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let versions: Vec<&str> = history["history"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["version"].as_str().unwrap())
        .collect();
    assert_eq!(versions, [latest.as_str(), first.as_str()], "{history}");
    let late = start(late_config);
    until_ready(
        client,
        &late,
        "a late replica loads the router from Redis",
        |v| v["router"]["router_version"] == json!(latest),
    )
    .await;
    router_cli(&["rollback", &first], replicas[1]);
    for r in replicas.iter().copied().chain([&late]) {
        until_ready(client, r, "a rollback reaches every replica", |v| {
            v["router"]["router_version"] == json!(first)
        })
        .await;
    }
}

/// Redis killed mid-run: limits fall back to each replica's own (the default), /ready
/// says so, feedback for another replica's request is a retryable 503.
async fn redis_outage_and_recovery(
    client: &reqwest::Client,
    replicas: &[&Server],
    redis: RedisServer,
) -> RedisServer {
    let (port, data) = redis.kill();
    let (status, during, _, _) = chat(
        client,
        replicas[0],
        "sk-plain",
        "served while Redis is down",
    )
    .await;
    assert_eq!(status, 200, "limits fail open by default");
    let during = during.unwrap();
    let (status, _, _, _) = chat(
        client,
        replicas[1],
        "sk-budget",
        "over budget, shared or not?",
    )
    .await;
    assert_eq!(
        status, 200,
        "locally the budget tenant has spent nothing yet today"
    );
    until_ready(client, replicas[1], "Redis down is reported", |v| {
        v["shared_state"]["up"] == json!(false)
    })
    .await;
    assert_eq!(
        feedback(client, replicas[1], "sk-plain", &during).await,
        503
    );
    assert_eq!(
        feedback(client, replicas[0], "sk-plain", &during).await,
        200,
        "its own replica knows it"
    );

    // Redis back (same data): every replica reconnects, and what waited is written.
    let redis = RedisServer::start(port, data).unwrap();
    for r in replicas {
        until_ready(client, r, "reconnects after Redis restarts", |v| {
            v["shared_state"]["up"] == json!(true) && v["shared_state"]["unsynced_ids"] == json!(0)
        })
        .await;
    }
    assert_eq!(
        feedback(client, replicas[1], "sk-plain", &during).await,
        200,
        "the outage's ids were written"
    );
    let (status, _, _, _) = chat(
        client,
        replicas[2],
        "sk-budget",
        "still over the shared budget",
    )
    .await;
    assert_eq!(status, 429, "the shared budget survived the restart");
    redis
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn three_replicas_share_limits_feedback_cache_and_promotions_through_redis() {
    let Some(redis) = RedisServer::start_or_skip() else {
        return;
    };
    let qdrant = qdrant();
    if qdrant.is_none() {
        eprintln!(
            "NOTE: no Qdrant server (../shared/tools/qdrant absent): the cross-replica cache check is SKIPPED"
        );
    }
    let up = Upstream::start("mock").await;
    let dir = tempfile::tempdir().unwrap();
    let q = qdrant.as_ref().map(|q| q.url.as_str());
    let mut replicas: Vec<Server> = (0..3)
        .map(|i| start(&replica_config(dir.path(), i, &up, redis.port, q)))
        .collect();
    switchyard_providers::install_crypto_provider();
    let client = reqwest::Client::new();
    let all: Vec<&Server> = replicas.iter().collect();

    rate_limit_holds(&client, &all).await;
    budget_holds(&client, &all).await;
    let id = feedback_crosses_replicas(&client, &all).await;
    if qdrant.is_some() {
        cache_crosses_replicas(&client, &all).await;
    }
    promotion_reaches_the_others(&client, &all, dir.path()).await;
    let late = replica_config(dir.path(), 3, &up, redis.port, q);
    routers_need_no_shared_directory(&client, &all, dir.path(), &late).await;
    let redis = redis_outage_and_recovery(&client, &all, redis).await;
    drop(all);

    // One replica killed: what it acknowledged is still known to the others.
    let mut killed = replicas.remove(0);
    let _ = killed.child.kill();
    let _ = killed.child.wait();
    assert_eq!(feedback(&client, &replicas[0], "sk-plain", &id).await, 200);
    assert_eq!(
        chat(&client, &replicas[1], "sk-plain", "after a replica died")
            .await
            .0,
        200
    );
    drop(redis);
}

/// With shared state, one learner acts: while another holds the lease in Redis, `learn
/// --once` refuses to act and says so.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_second_learner_waits_for_the_lease() {
    let Some(redis) = RedisServer::start_or_skip() else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let prefix = "lease-test";
    let other = switchyard_state::SharedState::connect_lazy(switchyard_state::StateOptions {
        url: format!("redis://127.0.0.1:{}", redis.port),
        prefix: prefix.into(),
        timeout: Duration::from_millis(500),
        ids_ttl: Duration::from_secs(60),
    })
    .unwrap();
    assert!(
        other
            .hold_lease("learner", "the-other-learner", Duration::from_secs(60))
            .await
            .unwrap()
    );
    let config = dir.path().join("learn.toml");
    std::fs::write(
        &config,
        format!(
            r#"[log]
dir = {logs:?}

[state]
url = "redis://127.0.0.1:{port}"
key_prefix = "{prefix}"

[providers.mock]
kind = "openai"
base_url = "http://127.0.0.1:9/v1"

[models.small]
provider = "mock"
input_per_mtok = 0.2
output_per_mtok = 0.6
quality = 0.5

[learn]
work_dir = {work:?}
"#,
            logs = dir.path().join("logs"),
            port = redis.port,
            work = dir.path().join("learner"),
        ),
    )
    .unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_switchyard"))
        .args(["learn", "--once", "--config"])
        .arg(&config)
        .current_dir(root())
        .env_remove("SWITCHYARD_REDIS_URL")
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "{stderr}");
    assert!(
        stderr.contains("another learner holds the lease"),
        "{stderr}"
    );
    assert!(
        !dir.path().join("learner/learn.jsonl").exists(),
        "it did not act"
    );
}
