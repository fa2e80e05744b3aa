//! What the learning loop needs from the gateway: exploration with logged propensities,
//! the tenant opt-out and daily cap, and a router promoted while serving (and a bad one
//! refused).

use super::*;

/// The env var the promotion test names as `[router] admin_key_env`: cargo sets it for
/// every test process, so the admin key is its value and no test mutates the environment.
const ADMIN_VAR: &str = "CARGO_MANIFEST_DIR";

fn two_models(small: &Upstream, big: &Upstream, routes: &str) -> String {
    format!(
        "{{router}}\n{}{}\n\
         [models.small]\nprovider = \"a\"\ninput_per_mtok = 0.1\noutput_per_mtok = 0.2\nquality_like = \"mistralai/mistral-7b-chat\"\n\
         [models.big]\nprovider = \"b\"\ninput_per_mtok = 10.0\noutput_per_mtok = 30.0\nquality_like = \"gpt-4-1106-preview\"\n{routes}",
        provider("a", small, "openai"),
        provider("b", big, "openai"),
    )
}

fn log_lines(g: &Gateway) -> Vec<Value> {
    std::fs::read_to_string(g.dir.path().join("logs/traffic.jsonl"))
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

async fn post_as(g: &Gateway, key: &str, body: &Value) -> Answer {
    read(
        g.client
            .post(format!("{}/v1/chat/completions", g.url))
            .bearer_auth(key)
            .json(body)
            .send()
            .await
            .unwrap(),
    )
    .await
}

#[tokio::test]
async fn exploration_draws_logs_propensities_and_respects_opt_outs() {
    let (small, big) = (Upstream::start("small").await, Upstream::start("big").await);
    let hash = switchyard_gateway::limits::sha256_hex;
    // Two models the router knows nothing about (a fixed prior each, no evidence): the
    // policy picks the cheaper one, and exploration (rate 0.5; perturbed decisions over the
    // prior's wide uncertainty, about half of which disagree) serves the other about half
    // the time.
    let config = two_models(
        &small,
        &big,
        &format!(
            "[routes.auto]\nmodels = [\"small\", \"big\"]\npolicy = \"margin:0.02\"\nexplore = 0.5\n\
             [routes.capped]\nmodels = [\"small\", \"big\"]\npolicy = \"margin:0.02\"\nexplore = 1.0\nexplore_daily_usd = 0.0\n\
             [tenants.loud]\nkey_sha256 = \"{}\"\n\
             [tenants.quiet]\nkey_sha256 = \"{}\"\nexplore = false\n",
            hash(b"loud-key"),
            hash(b"quiet-key")
        ),
    )
    .replace("quality_like = \"mistralai/mistral-7b-chat\"", "quality = 0.5")
    .replace("quality_like = \"gpt-4-1106-preview\"", "quality = 0.5");
    let g = gateway(&config).await;
    let mut explored = 0;
    for _ in 0..30 {
        let a = post_as(&g, "loud-key", &chat("auto", false)).await;
        assert_eq!(a.status, 200, "{:?}", a.body);
        if a.headers.contains_key("x-switchyard-explored") {
            explored += 1;
            assert_eq!(
                header(&a, "x-switchyard-model"),
                "big",
                "the policy picks small"
            );
        }
    }
    // Half the requests go to "big" (binomial: 30 requests see some of each).
    assert!((1..30).contains(&explored), "{explored} of 30 explored");
    for _ in 0..5 {
        let q = post_as(&g, "quiet-key", &chat("auto", false)).await;
        assert!(
            !q.headers.contains_key("x-switchyard-explored"),
            "tenant opted out"
        );
        let c = post_as(&g, "loud-key", &chat("capped", false)).await;
        assert!(
            !c.headers.contains_key("x-switchyard-explored"),
            "daily cap of $0"
        );
    }
    let lines = log_lines(&g);
    assert_eq!(lines.len(), 40);
    for l in &lines {
        let d = &l["decision"];
        let p = d["propensity"].as_f64().unwrap();
        let was_explored = d["explored"].as_bool().unwrap_or(false);
        let route = l["route"].as_str().unwrap();
        if l["tenant"] == "quiet" || route == "capped" {
            assert_eq!((p, was_explored), (1.0, false), "{l}");
        } else {
            // Rate 0.5: the pick keeps 1 − 0.5; "big", the only other model, gets 0.5.
            assert!((p - 0.5).abs() < 1e-12, "{l}");
            assert_eq!(was_explored, d["greedy"] == "small", "{l}");
            assert_eq!(d["chosen"], l["model"]);
        }
    }
    // The dry run never explores.
    let r = g
        .client
        .post(format!("{}/v1/route", g.url))
        .bearer_auth("loud-key")
        .json(&chat("auto", false))
        .send()
        .await
        .unwrap();
    let r: Value = r.json().await.unwrap();
    assert_eq!(r["model"], "small");
    assert!(r["decision"]["explored"].is_null(), "{r}");
}

/// The models and propensities a fresh gateway serves 24 requests with, one at a time,
/// exploring half of them, its draws seeded by `seed`.
async fn explored_sequence(seed: u64) -> Vec<(String, f64)> {
    let (small, big) = (Upstream::start("small").await, Upstream::start("big").await);
    let config = two_models(
        &small,
        &big,
        "[routes.auto]\nmodels = [\"small\", \"big\"]\npolicy = \"margin:0.02\"\nexplore = 0.5\n",
    )
    .replace("{router}", &format!("{{router}}explore_seed = {seed}\n"))
    .replace(
        "quality_like = \"mistralai/mistral-7b-chat\"",
        "quality = 0.5",
    )
    .replace("quality_like = \"gpt-4-1106-preview\"", "quality = 0.5");
    let g = gateway(&config).await;
    for _ in 0..24 {
        let a = post_as(&g, "any", &chat("auto", false)).await;
        assert_eq!(a.status, 200, "{:?}", a.body);
    }
    log_lines(&g)
        .iter()
        .map(|l| {
            let d = &l["decision"];
            (
                l["model"].as_str().unwrap().to_owned(),
                d["propensity"].as_f64().unwrap(),
            )
        })
        .collect()
}

#[tokio::test]
async fn seeded_exploration_repeats_itself() {
    let first = explored_sequence(7).await;
    assert!(
        first.iter().any(|(m, _)| m == "big") && first.iter().any(|(m, _)| m == "small"),
        "half the requests draw and big wins about half of those: {first:?}"
    );
    assert_eq!(first, explored_sequence(7).await, "same seed, same traffic");
    assert_ne!(
        first,
        explored_sequence(8).await,
        "another seed draws otherwise"
    );
}

/// A copy of the committed scorer with one model's mean nudged (a new version), or with
/// `drop` removed from it.
fn scorer_copy(dir: &std::path::Path, nudge: f64, drop: Option<&str>) -> PathBuf {
    let src = root().join("models/scorer");
    std::fs::create_dir_all(dir).unwrap();
    let mut manifest: Value =
        serde_json::from_str(&std::fs::read_to_string(src.join("manifest.json")).unwrap()).unwrap();
    let mut weights: Value =
        serde_json::from_str(&std::fs::read_to_string(src.join("weights.json")).unwrap()).unwrap();
    let models = weights["models"].as_object_mut().unwrap();
    for m in models.values_mut() {
        let mean = m["quality"]["mean"].as_f64().unwrap();
        m["quality"]["mean"] = json!(mean + nudge);
    }
    if let Some(d) = drop {
        models.remove(d);
        manifest["models"].as_object_mut().unwrap().remove(d);
    }
    std::fs::write(dir.join("manifest.json"), manifest.to_string()).unwrap();
    std::fs::write(dir.join("weights.json"), weights.to_string()).unwrap();
    dir.to_path_buf()
}

#[tokio::test]
async fn a_router_is_promoted_while_serving_and_a_bad_one_is_refused() {
    let (small, big) = (Upstream::start("small").await, Upstream::start("big").await);
    let toml = two_models(
        &small,
        &big,
        "[routes.auto]\nmodels = [\"small\", \"big\"]\npolicy = \"threshold:0.0\"\n",
    )
    .replace(
        "{router}",
        &format!("{{router}}admin_key_env = {ADMIN_VAR:?}\n"),
    );
    let g = gateway(&toml).await;
    let key = std::env::var(ADMIN_VAR).unwrap();
    let version = |a: &Answer| header(a, "x-switchyard-router-version");
    let before = version(&g.post("/v1/chat/completions", &chat("auto", false)).await);
    let promote = |scorer: PathBuf, key: Option<String>| {
        let mut req = g
            .client
            .post(format!("{}/admin/router", g.url))
            .json(&json!({"scorer": scorer}));
        if let Some(k) = key {
            req = req.bearer_auth(k);
        }
        async move { read(req.send().await.unwrap()).await }
    };
    let new = scorer_copy(&g.dir.path().join("new"), 0.01, None);
    let no_key = promote(new.clone(), None).await;
    assert_eq!(no_key.status, 401, "{:?}", no_key.body);
    let missing = promote(g.dir.path().join("nowhere"), Some(key.clone())).await;
    assert_eq!(missing.status, 422, "{:?}", missing.body);
    let unknown = scorer_copy(&g.dir.path().join("bad"), 0.0, Some("gpt-4-1106-preview"));
    let refused = promote(unknown, Some(key.clone())).await;
    assert_eq!(refused.status, 422, "{:?}", refused.body);
    let message = refused.body["error"]["message"].as_str().unwrap();
    assert!(
        message.contains("gpt-4-1106-preview") && message.contains("running router stays"),
        "{message}"
    );
    let still = version(&g.post("/v1/chat/completions", &chat("auto", false)).await);
    assert_eq!(still, before, "a refused router changes nothing");

    let ok = promote(new.clone(), Some(key)).await;
    assert_eq!(ok.status, 200, "{:?}", ok.body);
    let after = ok.body["router_version"].as_str().unwrap().to_owned();
    assert_ne!(after, before);
    assert_eq!(ok.body["previous"], before);
    let served = g.post("/v1/chat/completions", &chat("auto", false)).await;
    assert_eq!(served.status, 200);
    assert_eq!(version(&served), after);
    let lines = log_lines(&g);
    let logged: Vec<&str> = lines
        .iter()
        .map(|l| l["decision"]["router_version"].as_str().unwrap())
        .collect();
    assert_eq!(logged, [before.as_str(), before.as_str(), after.as_str()]);

    // SIGHUP's reload reads the scorer the config names afresh: back to the committed one.
    switchyard_gateway::reload(&g.state).unwrap();
    let reloaded = g.post("/v1/chat/completions", &chat("auto", false)).await;
    assert_eq!(version(&reloaded), before);
}

#[tokio::test]
async fn a_shadow_router_decides_beside_the_served_one() {
    let (small, big) = (Upstream::start("small").await, Upstream::start("big").await);
    let shadow_dir = tempfile::tempdir().unwrap();
    let shadow = scorer_copy(&shadow_dir.path().join("shadow"), 0.02, None);
    let routes = format!(
        "[routes.auto]\nmodels = [\"small\", \"big\"]\npolicy = \"threshold:0.0\"\nshadow = {shadow:?}\n"
    );
    let g = gateway(&two_models(&small, &big, &routes)).await;
    for _ in 0..3 {
        let a = g.post("/v1/chat/completions", &chat("auto", false)).await;
        assert_eq!(a.status, 200, "{:?}", a.body);
    }
    let path = g.dir.path().join("logs/shadow.jsonl");
    let mut lines: Vec<Value> = Vec::new();
    for _ in 0..100 {
        lines = std::fs::read_to_string(&path)
            .unwrap_or_default()
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect();
        if lines.len() == 3 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(lines.len(), 3, "one shadow decision per request");
    let served: Vec<Value> = log_lines(&g);
    for s in &lines {
        let t = served
            .iter()
            .find(|t| t["request_id"] == s["request_id"])
            .expect("the shadow line names a served request");
        assert_eq!(s["served"], t["decision"]["chosen"]);
        assert_eq!(s["served_version"], t["decision"]["router_version"]);
        let version = s["decision"]["router_version"].as_str().unwrap();
        assert_ne!(Some(version), s["served_version"].as_str(), "{s}");
        assert!(s["error"].is_null());
    }
    // A shadow that cannot load is a config error naming the key.
    let bad = two_models(
        &small,
        &big,
        "[routes.auto]\nmodels = [\"small\", \"big\"]\nshadow = \"no/such/scorer\"\n",
    );
    let root = root();
    let text = format!(
        "{}\n[cache]\nenabled = false\n",
        bad.replace(
            "{router}",
            &format!(
                "[router]\nencoder = {:?}\nheads = {:?}\nscorer = {:?}\n",
                root.join("models/all-MiniLM-L6-v2"),
                root.join("models/classifier"),
                root.join("models/scorer")
            )
        )
    );
    let config = Config::parse(&text).unwrap();
    let e = build_state(&ConfigSource::Environment, config)
        .unwrap_err()
        .to_string();
    assert!(
        e.contains("routes.auto.shadow") && e.contains("no/such/scorer"),
        "{e}"
    );
}
