//! End to end: the real `switchyard embed` binary, fed stdin as a user would.

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

fn model_dir() -> PathBuf {
    let dir = manifest_dir().join("../../models/all-MiniLM-L6-v2");
    assert!(
        dir.join("model.safetensors").is_file(),
        "encoder weights missing: run `bash models/fetch.sh`"
    );
    dir
}

fn switchyard(args: &[&str], stdin: &[u8]) -> Output {
    let mut child = Command::new(env!("CARGO_BIN_EXE_switchyard"))
        .args(args)
        .env_remove("SWITCHYARD_MODEL")
        .env_remove("SWITCHYARD_DEVICE")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("the binary starts");
    let mut pipe = child.stdin.take().expect("stdin");
    pipe.write_all(stdin).expect("write stdin");
    drop(pipe);
    child.wait_with_output().expect("the binary exits")
}

fn embed(stdin: &[u8]) -> (Vec<serde_json::Value>, String, Option<i32>) {
    let model = model_dir();
    let out = switchyard(
        &["embed", "--model", model.to_str().expect("utf-8 path")],
        stdin,
    );
    let lines = String::from_utf8(out.stdout)
        .expect("stdout is UTF-8")
        .lines()
        .map(|l| serde_json::from_str(l).expect("every stdout line is JSON"))
        .collect();
    (
        lines,
        String::from_utf8_lossy(&out.stderr).into_owned(),
        out.status.code(),
    )
}

#[test]
fn plain_lines_and_jsonl_are_embedded_in_order() {
    let (rows, stderr, code) = embed(
        b"How do I reset my password?\n{\"text\": \"Wie spaet ist es?\", \"id\": 7}\r\nfn main() {}\n",
    );
    assert_eq!(code, Some(0), "{stderr}");
    let texts: Vec<&str> = rows
        .iter()
        .map(|r| r["text"].as_str().expect("text"))
        .collect();
    assert_eq!(
        texts,
        [
            "How do I reset my password?",
            "Wie spaet ist es?",
            "fn main() {}"
        ]
    );
    for row in &rows {
        let v = row["embedding"].as_array().expect("embedding");
        assert_eq!(v.len(), 384);
        let norm: f64 = v.iter().map(|x| x.as_f64().expect("float").powi(2)).sum();
        assert!((norm - 1.0).abs() < 1e-4);
    }
}

#[test]
fn bad_lines_get_errors_naming_them_and_the_rest_is_embedded() {
    let huge = "x ".repeat(50_000); // 100,000 characters
    let mut stdin = Vec::new();
    stdin.extend_from_slice(b"first good line\n"); // 1
    stdin.extend_from_slice(b"\n"); // 2: empty
    stdin.extend_from_slice(b"   \t \n"); // 3: whitespace only
    stdin.extend_from_slice(b"bad \xff\xfe utf-8\n"); // 4
    stdin.extend_from_slice(b"{\"text\": \"unterminated\n"); // 5: malformed JSON
    stdin.extend_from_slice(b"{\"prompt\": \"wrong field\"}\n"); // 6
    stdin.extend_from_slice(huge.as_bytes()); // 7: 100k chars
    stdin.extend_from_slice(b"\nlast good line"); // 8, no trailing newline
    let (rows, stderr, code) = embed(&stdin);
    assert_eq!(
        code,
        Some(1),
        "failed lines make the exit status 1: {stderr}"
    );
    assert_eq!(rows.len(), 8, "one output line per input line");
    assert_eq!(rows[0]["text"], "first good line");
    for (i, fragment) in [
        (1, "empty"),
        (2, "empty"),
        (3, "UTF-8"),
        (4, "JSON"),
        (5, "\"text\""),
    ] {
        assert_eq!(rows[i]["line"], i + 1, "row {i}: {}", rows[i]);
        let err = rows[i]["error"].as_str().expect("error message");
        assert!(err.contains(fragment), "line {}: {err}", i + 1);
        assert!(stderr.contains(&format!("line {}:", i + 1)), "{stderr}");
    }
    assert_eq!(rows[6]["embedding"].as_array().map(Vec::len), Some(384));
    assert!(
        stderr.contains("line 7: longer than 256 tokens"),
        "{stderr}"
    );
    assert_eq!(rows[7]["text"], "last good line");
    assert!(
        stderr.contains("5 of 8 lines could not be processed"),
        "{stderr}"
    );
    assert!(!stderr.contains("panicked"), "{stderr}");
}

#[test]
fn a_missing_model_says_what_to_do() {
    let out = switchyard(&["embed", "--model", "./no/such/model"], b"hi\n");
    assert_eq!(out.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("models/fetch.sh"), "{stderr}");
}

#[test]
fn cuda_in_a_cpu_build_is_refused_clearly() {
    if cfg!(feature = "cuda") {
        eprintln!("skipped: this build has CUDA");
        return;
    }
    let model = model_dir();
    let out = switchyard(
        &[
            "embed",
            "--device",
            "cuda:0",
            "--model",
            model.to_str().expect("utf-8"),
        ],
        b"hi\n",
    );
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("--features cuda"));
}

#[test]
fn help_explains_every_command() {
    let top = switchyard(&["--help"], b"");
    assert!(top.status.success());
    assert!(String::from_utf8_lossy(&top.stdout).contains("embed"));
    let sub = switchyard(&["embed", "--help"], b"");
    let text = String::from_utf8_lossy(&sub.stdout);
    for needle in ["--model", "--device", "JSON", "stdin"] {
        assert!(text.contains(needle), "embed --help lacks {needle}: {text}");
    }
    let bad = switchyard(&["embed", "--device", "tpu"], b"");
    assert_eq!(bad.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&bad.stderr).contains("cuda:N"));
}

/// A hub id resolves through the Hugging Face cache layout without the network: build
/// `$HF_HOME/hub/models--org--name/{refs/main, snapshots/<rev>/...}` from the local files.
/// Hub support is the opt-in `hub` feature (`cargo test -p switchyard --features hub`).
#[cfg(feature = "hub")]
#[test]
fn a_hub_id_resolves_from_the_hub_cache_offline() {
    let hf_home = tempfile::tempdir().expect("tempdir");
    let repo = hf_home.path().join("hub/models--test-org--mini-encoder");
    let rev = "0123456789abcdef0123456789abcdef01234567";
    std::fs::create_dir_all(repo.join("refs")).expect("mkdir");
    std::fs::write(repo.join("refs/main"), rev).expect("ref");
    let snapshot = repo.join("snapshots").join(rev);
    std::fs::create_dir_all(&snapshot).expect("mkdir");
    for f in [
        "config.json",
        "tokenizer.json",
        "model.safetensors",
        "sentence_bert_config.json",
    ] {
        std::fs::copy(model_dir().join(f), snapshot.join(f)).expect("copy");
    }
    let run = |model: &str| {
        let mut child = Command::new(env!("CARGO_BIN_EXE_switchyard"))
            .args(["embed", "--model", model])
            .env("HF_HOME", hf_home.path())
            // Loopback port 9 (discard) refuses connections: nothing leaves the machine.
            .env("HF_ENDPOINT", "http://127.0.0.1:9")
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("starts");
        child
            .stdin
            .take()
            .expect("stdin")
            .write_all(b"hello hub\n")
            .expect("write");
        child.wait_with_output().expect("exits")
    };
    let out = run("test-org/mini-encoder");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let row: serde_json::Value =
        serde_json::from_slice(out.stdout.split(|b| *b == b'\n').next().expect("a line"))
            .expect("json");
    assert_eq!(row["embedding"].as_array().map(Vec::len), Some(384));

    // An id that is not cached needs the (unreachable) hub: a clear error naming the fix.
    let out = run("test-org/not-cached");
    assert_eq!(out.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("--model DIR"), "{stderr}");
}

/// Without the `hub` feature a hub id is a clear error that says how to get hub support.
#[cfg(not(feature = "hub"))]
#[test]
fn a_hub_id_without_hub_support_says_how_to_get_it() {
    let out = Command::new(env!("CARGO_BIN_EXE_switchyard"))
        .args(["embed", "--model", "test-org/mini-encoder"])
        .stdin(Stdio::null())
        .output()
        .expect("runs");
    assert_eq!(out.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("--features hub") && stderr.contains("--model DIR"),
        "{stderr}"
    );
}
