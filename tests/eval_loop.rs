//! End to end: `switchyard eval loop` on a small world written here from the committed task
//! seeds — the real binary serving over loopback, feedback, import, retraining, off-policy
//! evaluation and promotion — and the router it learns beating the one it started from.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use serde_json::{Value, json};

use super::root;

/// Two models no benchmark has: "cheap" fails every math and writing prompt and answers
/// the rest; "dear" answers everything at 100× the price.
fn world(dir: &Path) -> (PathBuf, PathBuf) {
    let seeds = std::fs::read_to_string(root().join("datasets/seeds/task_seeds.jsonl")).unwrap();
    let mut text = String::new();
    for line in seeds.lines() {
        let seed: Value = serde_json::from_str(line).unwrap();
        let hard = matches!(seed["task"].as_str(), Some("math" | "writing"));
        let record = json!({
            "id": seed["id"], "source": "world", "prompt": seed["prompt"],
            "outcomes": {
                "cheap": {"score": if hard { 0.0 } else { 1.0 }},
                "dear": {"score": 1.0},
            },
        });
        text.push_str(&record.to_string());
        text.push('\n');
    }
    let world = dir.join("world.jsonl");
    std::fs::write(&world, text).unwrap();
    let prices = dir.join("prices.json");
    std::fs::write(
        &prices,
        r#"{"cheap": {"input_per_mtok": 0.1, "output_per_mtok": 0.1},
            "dear": {"input_per_mtok": 10.0, "output_per_mtok": 10.0}}"#,
    )
    .unwrap();
    (world, prices)
}

#[test]
fn the_loop_learns_a_world_through_the_real_gateway() {
    let root = root();
    assert!(
        root.join("models/all-MiniLM-L6-v2/model.safetensors")
            .is_file(),
        "encoder weights missing: run `bash models/fetch.sh`"
    );
    let dir = tempfile::tempdir().unwrap();
    let (world, prices) = world(dir.path());
    let out = dir.path().join("loop");
    let output = Command::new(env!("CARGO_BIN_EXE_switchyard"))
        .args(["eval", "loop", "--unknown-models", "--json"])
        .args(["--requests", "300", "--rounds", "2", "--explore", "0.2"])
        .args(["--holdout", "0.3", "--bootstrap", "100"])
        .arg("--world")
        .arg(&world)
        .arg("--prices")
        .arg(&prices)
        .arg("--out")
        .arg(&out)
        .arg("--cache-dir")
        .arg(dir.path().join("embeddings"))
        .current_dir(&root)
        .env_remove("SWITCHYARD_MODEL")
        .stdin(Stdio::null())
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(output.status.success(), "{stderr}");
    let report: Value = serde_json::from_slice(&output.stdout).unwrap();
    assert_eq!(report["requests"], 300);
    assert_eq!(report["models"], json!(["user/cheap", "user/dear"]));
    let rounds = report["rounds"].as_array().unwrap();
    assert_eq!(rounds.len(), 2);
    for r in rounds {
        let share = r["explored_share"].as_f64().unwrap();
        assert!(share > 0.0 && share < 0.3, "explored {share}");
    }
    assert!(report["promotions"].as_u64().unwrap() >= 1, "{report}");
    // The start knows nothing (neutral priors: always the cheapest); the loop learns which
    // prompts need the dear model.
    let gain = &report["holdout"]["differences"]["final - start"];
    assert!(gain["value"].as_f64().unwrap() > 0.0, "{report}");
    let quality = |r: &Value| r["served_quality"].as_f64().unwrap();
    assert!(quality(&rounds[1]) > quality(&rounds[0]), "{report}");
    // The final router is left usable as a scorer directory.
    assert!(out.join("final/manifest.json").is_file());
    let logged = std::fs::read_to_string(out.join("logs/traffic.jsonl")).unwrap();
    assert_eq!(logged.lines().count(), 300);
    the_cli_works_on_the_loops_traffic(&root, dir.path(), &out);
    the_learner_decides_on_the_loops_traffic(&root, dir.path(), &out);
}

/// A gateway config over the loop's two models whose `auto` route has `policy`, with a
/// `[learn]` section working in `work`.
fn learner_config(logs: &Path, work: &Path, policy: &str) -> String {
    format!(
        r#"[log]
dir = {logs:?}

[providers.world]
kind = "openai"
base_url = "http://127.0.0.1:9/v1"

[models."user/cheap"]
provider = "world"
input_per_mtok = 0.1
output_per_mtok = 0.1
quality = 0.5

[models."user/dear"]
provider = "world"
input_per_mtok = 10.0
output_per_mtok = 10.0
quality = 0.5

[routes.auto]
models = ["user/cheap", "user/dear"]
policy = "{policy}"

[learn]
work_dir = {work:?}
min_effective_sample_size = 5
"#
    )
}

/// `switchyard learn --once --dry-run` on the log the loop's gateway wrote: one cycle over
/// every request with feedback, its evidence and decision in learn.jsonl; a route without
/// the learned policy is refused, naming its key.
fn the_learner_decides_on_the_loops_traffic(root: &Path, dir: &Path, out: &Path) {
    let work = dir.join("learner");
    let config = |policy: &str| learner_config(&out.join("logs"), &work, policy);
    let learn = |text: String| {
        let path = dir.join("learner.toml");
        std::fs::write(&path, text).unwrap();
        Command::new(env!("CARGO_BIN_EXE_switchyard"))
            .args([
                "learn",
                "--once",
                "--dry-run",
                "--bootstrap",
                "100",
                "--config",
            ])
            .arg(&path)
            .arg("--cache-dir")
            .arg(dir.join("embeddings"))
            .current_dir(root)
            .env_remove("SWITCHYARD_MODEL")
            .output()
            .unwrap()
    };
    let ran = learn(config("margin:0.02"));
    let stdout = String::from_utf8_lossy(&ran.stdout);
    assert!(
        ran.status.success(),
        "{}",
        String::from_utf8_lossy(&ran.stderr)
    );
    assert!(
        stdout.starts_with("cycle 1: 300 requests with feedback"),
        "{stdout}"
    );
    let log = std::fs::read_to_string(work.join("learn.jsonl")).unwrap();
    let line: Value = serde_json::from_str(log.lines().next().unwrap()).unwrap();
    let report = &line["report"];
    assert_eq!(report["records"], 300, "{line}");
    assert!(
        matches!(report["decision"].as_str(), Some("promote" | "refuse")),
        "{line}"
    );
    let gain = &report["gain"];
    let (lo, hi) = (
        gain["ci95"][0].as_f64().unwrap(),
        gain["ci95"][1].as_f64().unwrap(),
    );
    assert!(lo <= gain["value"].as_f64().unwrap() && gain["value"].as_f64().unwrap() <= hi);
    assert_eq!(
        line["promoted_version"],
        Value::Null,
        "a dry run promotes nothing"
    );
    assert!(work.join("cycle-1/manifest.json").is_file());

    let refused = learn(config("order"));
    let stderr = String::from_utf8_lossy(&refused.stderr);
    assert!(!refused.status.success());
    assert!(stderr.contains("routes.auto.policy"), "{stderr}");
}

/// `eval routing` and `calibrate` on the traffic a loop left in `out` (embeddings cached in
/// `dir`).
fn the_cli_works_on_the_loops_traffic(root: &Path, dir: &Path, out: &Path) {
    // The same traffic, evaluated off-policy from the CLI: the final router against the
    // routers that served it.
    let user_prices = dir.join("user-prices.json");
    std::fs::write(
        &user_prices,
        r#"{"user/cheap": {"input_per_mtok": 0.1, "output_per_mtok": 0.1},
            "user/dear": {"input_per_mtok": 10.0, "output_per_mtok": 10.0}}"#,
    )
    .unwrap();
    // Runs `switchyard ARGS` on the loop's imported traffic and final router.
    let on_traffic = |args: &[&str]| {
        Command::new(env!("CARGO_BIN_EXE_switchyard"))
            .args(args)
            .arg("--traffic")
            .arg(out.join("traffic.jsonl"))
            .arg("--model-dir")
            .arg(out.join("final"))
            .arg("--prices")
            .arg(&user_prices)
            .arg("--cache-dir")
            .arg(dir.join("embeddings"))
            .current_dir(root)
            .output()
            .unwrap()
    };
    let ope = on_traffic(&[
        "eval",
        "routing",
        "--json",
        "--bootstrap",
        "100",
        "--route-policy",
        "margin:0.02",
    ]);
    assert!(
        ope.status.success(),
        "{}",
        String::from_utf8_lossy(&ope.stderr)
    );
    let r: Value = serde_json::from_slice(&ope.stdout).unwrap();
    assert_eq!(r["requests"], 300, "{r}");
    for key in ["ips", "snips", "dr"] {
        let q = r["quality"][key]["value"].as_f64().unwrap();
        assert!((0.0..=1.5).contains(&q), "{key}: {r}");
    }
    assert!(r["effective_sample_size"].as_f64().unwrap() > 0.0);

    // Calibrated on that traffic (predicted outcomes): a share of calls to the dear model,
    // stored beside the final router and marked as not measured.
    let calibrated = on_traffic(&["calibrate", "--target", "strong-share:0.5"]);
    let stdout = String::from_utf8_lossy(&calibrated.stdout);
    assert!(
        calibrated.status.success(),
        "{}",
        String::from_utf8_lossy(&calibrated.stderr)
    );
    assert!(stdout.contains("(predicted)"), "{stdout}");
    let stored: Value =
        serde_json::from_str(&std::fs::read_to_string(out.join("final/calibration.json")).unwrap())
            .unwrap();
    let fitted = &stored["targets"]["strong-share:0.5"];
    assert_eq!(fitted["measured"], false, "{fitted}");
    assert!(fitted["prompts"].as_u64().unwrap() >= 10, "{fitted}");
    let share = fitted["strong_share"].as_f64().unwrap();
    assert!((0.0..=1.0).contains(&share), "{fitted}");
}

#[test]
fn a_world_too_small_to_split_is_refused_clearly() {
    let dir = tempfile::tempdir().unwrap();
    let (world, prices) = world(dir.path());
    let output = Command::new(env!("CARGO_BIN_EXE_switchyard"))
        .args(["eval", "loop", "--holdout", "0.995", "--max-prompts", "30"])
        .arg("--world")
        .arg(&world)
        .arg("--prices")
        .arg(&prices)
        .current_dir(root())
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(!output.status.success());
    assert!(stderr.contains("at least 10 of each"), "{stderr}");
}

#[test]
fn a_world_without_costs_or_prices_names_the_models_to_price() {
    let dir = tempfile::tempdir().unwrap();
    let (world, _) = world(dir.path());
    let output = Command::new(env!("CARGO_BIN_EXE_switchyard"))
        .args(["eval", "loop"])
        .arg("--world")
        .arg(&world)
        .current_dir(root())
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(!output.status.success());
    assert!(
        stderr.contains("only 0 prompts have a score and a cost for every model (cheap, dear)")
            && stderr.contains("no price for cheap, dear: give them with --prices FILE"),
        "{stderr}"
    );
}
