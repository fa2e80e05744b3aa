//! End to end: `switchyard route` with the committed heads and scorer, and `switchyard
//! eval routing` training a scorer on generated records and checking it against the
//! baselines, with the real encoder.

#![allow(
    clippy::expect_used,
    clippy::unwrap_used,
    reason = "test helpers fail loudly"
)]

#[path = "eval_loop.rs"]
mod eval_loop;

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

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

fn switchyard(args: &[&str]) -> Output {
    let root = root();
    assert!(
        root.join("models/all-MiniLM-L6-v2/model.safetensors")
            .is_file(),
        "encoder weights missing: run `bash models/fetch.sh`"
    );
    Command::new(env!("CARGO_BIN_EXE_switchyard"))
        .args(args)
        .current_dir(&root)
        .env_remove("SWITCHYARD_MODEL")
        .env_remove("SWITCHYARD_HEADS")
        .env_remove("SWITCHYARD_SCORER")
        .stdin(Stdio::null())
        .output()
        .unwrap()
}

#[test]
fn route_explains_its_decision() {
    let out = switchyard(&[
        "route",
        "Write a Python function that merges two sorted lists.",
        "--candidates",
        "gpt-4-1106-preview,mistralai/mixtral-8x7b-chat,gpt-3.5-turbo-1106",
        "--json",
    ]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    let d: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let ranked = d["ranked"].as_array().unwrap();
    assert_eq!(ranked.len(), 3);
    assert_eq!(d["chosen"], ranked[0]["model"]);
    assert_eq!(d["task"], "code");
    assert!((0.0..=1.0).contains(&d["difficulty"].as_f64().unwrap()));
    for r in ranked {
        assert!((0.0..=1.0).contains(&r["quality"].as_f64().unwrap()));
        assert!(r["cost_usd"].as_f64().unwrap() > 0.0);
    }

    // A zero budget leaves only "cheapest over budget"; an unavailable model sits out.
    let out = switchyard(&[
        "route",
        "Write a Python function that merges two sorted lists.",
        "--candidates",
        "gpt-4-1106-preview,mistralai/mixtral-8x7b-chat,gpt-3.5-turbo-1106",
        "--policy",
        "budget:0",
        "--unavailable",
        "mistralai/mixtral-8x7b-chat",
        "--json",
    ]);
    assert!(out.status.success());
    let d: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(d["rule"], "cheapest_over_budget");
    assert_eq!(d["excluded"]["mistralai/mixtral-8x7b-chat"], "unavailable");

    // The human-readable form names the choice and the rule.
    let out = switchyard(&["route", "Tell me a joke about trains."]);
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(text.contains("→") && text.contains("rank"), "{text}");
}

#[test]
fn route_rejects_bad_arguments_clearly() {
    let out = switchyard(&["route", "hi", "--policy", "cheapest"]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2));
    assert!(stderr.contains("threshold:0.7"), "{stderr}");

    let out = switchyard(&["route", "hi", "--candidates", "gpt-9,gpt-4-1106-preview"]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(
        stderr.contains("does not know gpt-9") && stderr.contains("claude-v2"),
        "{stderr}"
    );

    let out = switchyard(&["route", "   "]);
    assert!(String::from_utf8_lossy(&out.stderr).contains("the prompt is empty"));
}

/// Records where "cheap" answers arithmetic correctly and fails proofs; "strong" answers
/// everything at ten times the cost.
fn write_records(path: &Path, offset: usize, n: usize) {
    let mut f = std::fs::File::create(path).unwrap();
    for i in offset..offset + n {
        let (a, b) = (i % 97 + 3, i % 89 + 11);
        let easy = i % 2 == 0;
        let prompt = if easy {
            format!("What is {a} plus {b}?")
        } else {
            format!(
                "Prove that there are infinitely many primes of the form {a}k + 1, and explain each step of the argument rigorously (case {b})."
            )
        };
        let outcome = |score: bool, cost: f64| {
            serde_json::json!({"score": f64::from(u8::from(score)), "cost_usd": cost,
                "input_tokens": null, "output_tokens": null, "latency_ms": null})
        };
        let record = serde_json::json!({
            "v": 1, "id": format!("gen-{i}"), "source": "generated", "task": null,
            "prompt": prompt,
            "outcomes": {"cheap": outcome(easy, 0.0001), "strong": outcome(true, 0.001)},
        });
        writeln!(f, "{record}").unwrap();
    }
}

#[test]
fn eval_routing_trains_a_scorer_and_beats_the_baselines() {
    let tmp = tempfile::tempdir().unwrap();
    let (train, test) = (
        tmp.path().join("train.jsonl"),
        tmp.path().join("test.jsonl"),
    );
    write_records(&train, 0, 300);
    write_records(&test, 1000, 120);
    let plot = tmp.path().join("curve.png");
    let cache = tmp.path().join("cache");
    let out = switchyard(&[
        "eval",
        "routing",
        "--train",
        train.to_str().unwrap(),
        "--test",
        test.to_str().unwrap(),
        "--strong",
        "strong",
        "--weak",
        "cheap",
        "--bootstrap",
        "100",
        "--cache-dir",
        cache.to_str().unwrap(),
        "--plot",
        plot.to_str().unwrap(),
        "--json",
    ]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    let r: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    for key in ["aiq", "apgr", "cpt50", "cpt80", "baselines", "curve"] {
        assert!(r.get(key).is_some(), "missing {key}");
    }
    assert_eq!(r["test_prompts"], 120);
    let aiq = r["aiq"]["value"].as_f64().unwrap();
    let random = r["baselines"]["random"].as_f64().unwrap();
    assert!(aiq > random + 0.1, "router {aiq} vs random {random}");
    assert!(r["apgr"].as_f64().unwrap() > 0.65, "{}", r["pair"]);
    let png = std::fs::read(&plot).unwrap();
    assert_eq!(&png[..4], b"\x89PNG");

    // Models the scorer never saw: a clear error naming them.
    let out = switchyard(&[
        "eval",
        "routing",
        "--train",
        train.to_str().unwrap(),
        "--test",
        test.to_str().unwrap(),
        "--candidates",
        "cheap,gpt-9",
        "--cache-dir",
        cache.to_str().unwrap(),
    ]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(stderr.contains("does not know gpt-9"), "{stderr}");
}

/// A scorer trained on a gateway's own model names (as from its traffic) is accepted by
/// `config check` although the config's `quality_like` stand-ins are models it never saw:
/// the models it knows are scored by their own names, and the check names which are which.
#[test]
fn config_check_accepts_a_scorer_that_knows_the_models_by_their_own_names() {
    let tmp = tempfile::tempdir().unwrap();
    let (data, scorer) = (tmp.path().join("traffic.jsonl"), tmp.path().join("scorer"));
    write_records(&data, 0, 200);
    let cache = tmp.path().join("cache");
    let out = switchyard(&[
        "train",
        "scorer",
        "--data",
        data.to_str().unwrap(),
        "--out",
        scorer.to_str().unwrap(),
        "--cache-dir",
        cache.to_str().unwrap(),
    ]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let config = tmp.path().join("switchyard.toml");
    std::fs::write(
        &config,
        format!(
            "[router]\nscorer = {scorer:?}\n[log]\nenabled = false\n[cache]\nenabled = false\n\
             [providers.p]\nkind = \"openai\"\nbase_url = \"http://127.0.0.1:9/v1\"\n\
             [models.cheap]\nprovider = \"p\"\ninput_per_mtok = 0.1\noutput_per_mtok = 0.1\nquality_like = \"mistralai/mixtral-8x7b-chat\"\n\
             [models.strong]\nprovider = \"p\"\ninput_per_mtok = 1.0\noutput_per_mtok = 1.0\nquality_like = \"gpt-4-1106-preview\"\n\
             [models.mine]\nprovider = \"p\"\ninput_per_mtok = 0.0\noutput_per_mtok = 0.0\nquality = 0.4\n\
             [routes.auto]\nmodels = [\"cheap\", \"strong\", \"mine\"]\npolicy = \"threshold:0.7\"\n"
        ),
    )
    .unwrap();
    let out = switchyard(&["config", "check", config.to_str().unwrap()]);
    let (stdout, stderr) = (
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr),
    );
    assert!(out.status.success(), "{stderr}");
    assert!(
        stdout.contains("cheap: scored by the router (it knows this model)"),
        "{stdout}"
    );
    assert!(
        stdout.contains("mine: not known to the router: fixed quality prior 0.4"),
        "{stdout}"
    );
}

/// `eval cache --queries` on a traffic log counts as the gateway does: per tenant and
/// route scope, without rejected requests or those that bypassed the cache, at the logged
/// costs.
#[test]
fn eval_cache_replays_a_traffic_log_per_scope_at_logged_costs() {
    let dir = tempfile::tempdir().unwrap();
    let line = |tenant: &str, status: u16, cache: &str, cost: Option<f64>| {
        serde_json::json!({
            "v": 1, "request_id": "chatcmpl-sy-x", "time": "2026-12-03T00:00:00Z",
            "tenant": tenant, "route": "auto", "requested": "auto",
            "prompt": "What is the capital of France?", "status": status,
            "error": if status == 200 { serde_json::Value::Null } else { "refused".into() },
            "cache": cache, "cost_usd": cost,
        })
        .to_string()
    };
    let log = [
        line("a", 200, "miss", Some(0.001)),
        line("b", 200, "miss", Some(0.002)),
        line("a", 200, "miss", Some(0.001)),
        line("a", 429, "bypass", None),
        line("a", 200, "bypass", Some(0.004)),
        line("a", 200, "hit", None),
    ]
    .join("\n");
    let path = dir.path().join("traffic.jsonl");
    std::fs::write(&path, log).unwrap();
    let cache = dir.path().join("embeddings");
    let out = switchyard(&[
        "eval",
        "cache",
        "--queries",
        path.to_str().unwrap(),
        "--method",
        "cosine",
        "--cache-dir",
        cache.to_str().unwrap(),
        "--json",
    ]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let r: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(r["queries"], 4, "{r}");
    // Tenant b's first ask is a miss in its own scope; a's repeats hit.
    assert_eq!(r["exact_hits"], 2, "{r}");
    let mean = (0.001 + 0.002 + 0.001) / 3.0;
    let total = r["total_usd"].as_f64().unwrap();
    assert!((total - (0.004 + mean)).abs() < 1e-12, "{r}");
    let saved = r["saved_usd"].as_f64().unwrap();
    assert!((saved - (0.001 + mean)).abs() < 1e-12, "{r}");
    assert_eq!(r["skipped"]["the request was rejected or failed"], 1);
    assert_eq!(
        r["skipped"]["the request bypassed the cache (no-cache, a route that opts out, or the cache off)"],
        1
    );
}

/// `switchyard calibrate` fits a cost target on the validation split and stores it with the
/// scorer; a route that sets that target passes `config check`, one that sets a target
/// never calibrated is refused with what to run.
#[test]
fn calibrate_stores_a_target_that_routes_can_use() {
    let tmp = tempfile::tempdir().unwrap();
    let (data, scorer) = (tmp.path().join("records.jsonl"), tmp.path().join("scorer"));
    write_records(&data, 0, 300);
    let cache = tmp.path().join("cache");
    let (data_s, scorer_s, cache_s) = (
        data.to_str().unwrap(),
        scorer.to_str().unwrap(),
        cache.to_str().unwrap(),
    );
    let out = switchyard(&[
        "train",
        "scorer",
        "--data",
        data_s,
        "--out",
        scorer_s,
        "--cache-dir",
        cache_s,
    ]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    // Half the prompts are hard: every one to "strong" costs 0.001, none 0.0001.
    let out = switchyard(&[
        "calibrate",
        "--model-dir",
        scorer_s,
        "--data",
        data_s,
        "--target",
        "cost:0.0006",
        "--cache-dir",
        cache_s,
    ]);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(stdout.contains("cost:0.0006: threshold:"), "{stdout}");
    let stored: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(scorer.join("calibration.json")).unwrap())
            .unwrap();
    let fitted = &stored["targets"]["cost:0.0006"];
    assert!(fitted["cost_usd"].as_f64().unwrap() <= 0.0006, "{fitted}");
    assert!(
        fitted["quality"].as_f64().unwrap() > 0.9,
        "hard prompts go to strong: {fitted}"
    );
    assert_eq!(fitted["measured"], true);
    let config = |target: &str| {
        let path = tmp.path().join("switchyard.toml");
        std::fs::write(
            &path,
            format!(
                "[router]\nscorer = {scorer:?}\n[log]\nenabled = false\n[cache]\nenabled = false\n\
                 [providers.p]\nkind = \"openai\"\nbase_url = \"http://127.0.0.1:9/v1\"\n\
                 [models.cheap]\nprovider = \"p\"\ninput_per_mtok = 0.1\noutput_per_mtok = 0.1\n\
                 [models.strong]\nprovider = \"p\"\ninput_per_mtok = 1.0\noutput_per_mtok = 1.0\n\
                 [routes.auto]\nmodels = [\"cheap\", \"strong\"]\ntarget = \"{target}\"\n"
            ),
        )
        .unwrap();
        switchyard(&["config", "check", path.to_str().unwrap()])
    };
    let ok = config("cost:0.0006");
    assert!(
        ok.status.success(),
        "{}",
        String::from_utf8_lossy(&ok.stderr)
    );
    let missing = config("quality:0.3");
    let stderr = String::from_utf8_lossy(&missing.stderr);
    assert!(!missing.status.success());
    assert!(
        stderr.contains("routes.auto.target")
            && stderr.contains("switchyard calibrate --target quality:0.3"),
        "{stderr}"
    );
}

/// A dozen prompts (a new deployment's first feedback) train a scorer instead of being
/// refused: one configuration, means shrunk toward the prior.
#[test]
fn train_scorer_learns_from_a_handful_of_prompts() {
    let tmp = tempfile::tempdir().unwrap();
    let (data, scorer) = (tmp.path().join("few.jsonl"), tmp.path().join("scorer"));
    write_records(&data, 0, 12);
    let cache = tmp.path().join("cache");
    let out = switchyard(&[
        "train",
        "scorer",
        "--data",
        data.to_str().unwrap(),
        "--out",
        scorer.to_str().unwrap(),
        "--cache-dir",
        cache.to_str().unwrap(),
        "--prior-weight",
        "10",
        "--json",
    ]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let report: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(report["candidates"].as_array().unwrap().len(), 1);
    let manifest: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(scorer.join("manifest.json")).unwrap())
            .unwrap();
    let strong = manifest["models"]["strong"]["mean_score"].as_f64().unwrap();
    assert!(
        strong < 0.95 && strong > 0.5,
        "always right, shrunk toward 0.5: {strong}"
    );
}

/// Logged traffic mixed with benchmark records counts --traffic-weight times.
#[test]
fn train_scorer_weighs_traffic_against_benchmarks() {
    let tmp = tempfile::tempdir().unwrap();
    let bench = tmp.path().join("bench.jsonl");
    write_records(&bench, 0, 200);
    // The deployment's own traffic: "cheap" answered every one of its prompts well.
    let traffic = tmp.path().join("traffic.jsonl");
    let lines: Vec<String> = (0..40)
        .map(|i| {
            serde_json::json!({"id": format!("traffic/{i}"), "source": "traffic:default",
                "prompt": format!("Summarise ticket number {i} for the support team."),
                "outcomes": {"cheap": {"score": 1.0, "cost_usd": 0.0001}}})
            .to_string()
        })
        .collect();
    std::fs::write(&traffic, lines.join("\n")).unwrap();
    let cache = tmp.path().join("cache");
    let mean_of_cheap = |weight: &str| {
        let out_dir = tmp.path().join(format!("scorer-{weight}"));
        let out = switchyard(&[
            "train",
            "scorer",
            "--data",
            bench.to_str().unwrap(),
            traffic.to_str().unwrap(),
            "--out",
            out_dir.to_str().unwrap(),
            "--cache-dir",
            cache.to_str().unwrap(),
            "--traffic-weight",
            weight,
            "--prior-weight",
            "0",
        ]);
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let m: serde_json::Value =
            serde_json::from_str(&std::fs::read_to_string(out_dir.join("manifest.json")).unwrap())
                .unwrap();
        m["models"]["cheap"]["mean_score"].as_f64().unwrap()
    };
    let (once, tenfold) = (mean_of_cheap("1"), mean_of_cheap("10"));
    assert!(
        tenfold > once + 0.1,
        "weight 1: {once}, weight 10: {tenfold}"
    );
}
