//! End to end: `switchyard classify` and `switchyard eval classifier` with the committed
//! default heads (models/classifier) and the real encoder.

#![allow(
    clippy::expect_used,
    clippy::unwrap_used,
    reason = "test helpers fail loudly"
)]

use std::io::Write;
use std::path::PathBuf;
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

fn switchyard(args: &[&str], stdin: &[u8]) -> Output {
    let root = root();
    assert!(
        root.join("models/all-MiniLM-L6-v2/model.safetensors")
            .is_file(),
        "encoder weights missing: run `bash models/fetch.sh`"
    );
    let mut child = Command::new(env!("CARGO_BIN_EXE_switchyard"))
        .args(args)
        .current_dir(&root)
        .env_remove("SWITCHYARD_MODEL")
        .env_remove("SWITCHYARD_HEADS")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    child.stdin.take().unwrap().write_all(stdin).unwrap();
    child.wait_with_output().unwrap()
}

#[test]
fn classifies_obvious_prompts_and_reports_bad_lines() {
    let input = concat!(
        "Write a python function that reverses a linked list.\n",
        "{\"prompt\": \"Natalia sold 48 clips in April and half as many in May. How many clips did she sell in total?\"}\n",
        "Translate into German: where is the train station?\n",
        "\n",
        "{\"text\": \"wrong field\"}\n",
        "Write a short poem about the sea at night.\n",
    );
    let out = switchyard(&["classify"], input.as_bytes());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    let rows: Vec<serde_json::Value> = String::from_utf8(out.stdout)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(rows.len(), 6);
    let tasks: Vec<&str> = rows
        .iter()
        .map(|r| r["task"].as_str().unwrap_or("-"))
        .collect();
    assert_eq!(
        tasks,
        ["code", "math", "transform", "-", "-", "writing"],
        "{rows:?}"
    );
    for row in [&rows[0], &rows[1], &rows[2], &rows[5]] {
        let probs = row["task_probs"].as_object().unwrap();
        assert_eq!(probs.len(), 8);
        let total: f64 = probs.values().map(|p| p.as_f64().unwrap()).sum();
        assert!((total - 1.0).abs() < 1e-3);
        let d = row["difficulty"].as_f64().unwrap();
        assert!((0.0..=1.0).contains(&d));
        assert!(["easy", "medium", "hard"].contains(&row["difficulty_bucket"].as_str().unwrap()));
    }
    assert_eq!(rows[3]["line"], 4);
    assert_eq!(rows[4]["line"], 5);
    assert!(rows[4]["error"].as_str().unwrap().contains("\"prompt\""));
    assert!(stderr.contains("line 5:"), "{stderr}");
}

#[test]
fn eval_classifier_reports_every_metric() {
    let dir = tempfile::tempdir().unwrap();
    let cache = dir.path().join("cache");
    let out = switchyard(
        &[
            "eval",
            "classifier",
            "--data",
            "datasets/seeds/task_seeds.jsonl",
            "--json",
            "--cache-dir",
            cache.to_str().unwrap(),
        ],
        b"",
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let report: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    for key in [
        "accuracy",
        "macro_f1",
        "expected_calibration_error",
        "per_class",
        "confusion",
    ] {
        assert!(report.get(key).is_some(), "missing {key}: {report}");
    }
    assert!(report["task_examples"].as_u64().unwrap() > 10);
}

#[test]
fn heads_for_another_encoder_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    let heads = root().join("models/classifier");
    for f in ["heads.safetensors", "manifest.json"] {
        std::fs::copy(heads.join(f), dir.path().join(f)).unwrap();
    }
    let manifest = std::fs::read_to_string(dir.path().join("manifest.json")).unwrap();
    let mut value: serde_json::Value = serde_json::from_str(&manifest).unwrap();
    value["encoder"]["weights_sha256"] = serde_json::json!("0".repeat(64));
    std::fs::write(dir.path().join("manifest.json"), value.to_string()).unwrap();
    let out = switchyard(
        &["classify", "--heads", dir.path().to_str().unwrap()],
        b"hi\n",
    );
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("retrain"));
}
