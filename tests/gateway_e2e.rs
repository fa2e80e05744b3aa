//! The real `switchyard serve` binary end to end: the official `openai` Python client
//! against it, SIGHUP reload, feedback joined into routing records by
//! `switchyard datasets import --from traffic`, and a grep of everything the gateway wrote
//! for the upstream API key.

#![allow(
    clippy::expect_used,
    clippy::unwrap_used,
    clippy::panic,
    clippy::print_stderr,
    reason = "test helpers fail loudly and say what they skip"
)]

#[path = "../crates/gateway/tests/support/mod.rs"]
mod support;

#[path = "replicas.rs"]
mod replicas;

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde_json::{Value, json};
use support::upstream::{Mode, Upstream};

/// This package's directory: from cargo at run time (the checkout being tested), falling back
/// to the one it was compiled in. A test binary reused from a build in another checkout (a
/// shared CARGO_TARGET_DIR) would otherwise look for the models in that other checkout.
fn manifest_dir() -> std::path::PathBuf {
    std::env::var_os("CARGO_MANIFEST_DIR")
        .map_or_else(|| env!("CARGO_MANIFEST_DIR").into(), Into::into)
}

const KEY_VAR: &str = "SWITCHYARD_E2E_UPSTREAM_KEY";
const KEY: &str = "sk-e2e-canary-4f1d9c2b7a";

fn root() -> PathBuf {
    manifest_dir().join("../..")
}

/// The Python with `openai` installed: $SWITCHYARD_PYTHON, the venv scripts/test.sh makes,
/// or python3 when it has the package.
fn python_with_openai() -> Option<PathBuf> {
    let candidates = [
        std::env::var_os("SWITCHYARD_PYTHON").map(PathBuf::from),
        Some(root().join(".cache/pyenv/bin/python")),
        Some(PathBuf::from("python3")),
    ];
    candidates.into_iter().flatten().find(|p| {
        Command::new(p)
            .args(["-c", "import openai"])
            .stderr(Stdio::null())
            .status()
            .is_ok_and(|s| s.success())
    })
}

struct Server {
    child: Child,
    url: String,
    stderr: Arc<Mutex<String>>,
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn start(config: &Path) -> Server {
    let mut child = Command::new(env!("CARGO_BIN_EXE_switchyard"))
        .args(["serve", "--config"])
        .arg(config)
        .args(["--listen", "127.0.0.1:0"])
        .current_dir(root())
        .env(KEY_VAR, KEY)
        .env("RUST_LOG", "debug")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let stderr = Arc::new(Mutex::new(String::new()));
    let (tx, rx) = std::sync::mpsc::channel();
    let lines = BufReader::new(child.stderr.take().unwrap());
    let sink = stderr.clone();
    std::thread::spawn(move || {
        for line in lines.lines().map_while(Result::ok) {
            if let Some(url) = line.split("listening on ").nth(1) {
                let _ = tx.send(url.trim().to_owned());
            }
            sink.lock().unwrap().push_str(&line);
            sink.lock().unwrap().push('\n');
        }
    });
    let url = rx
        .recv_timeout(Duration::from_secs(120))
        .unwrap_or_else(|_| panic!("the gateway did not start:\n{}", stderr.lock().unwrap()));
    Server { child, url, stderr }
}

fn config_text(up: &Upstream, log_dir: &Path, extra: &str) -> String {
    let cache_dir = log_dir.with_file_name("cache");
    format!(
        r#"[log]
dir = {log_dir:?}

[cache]
path = {cache_dir:?}

[providers.mock]
kind = "openai"
base_url = "{}"
api_key_env = "{KEY_VAR}"
first_byte_timeout_ms = 2000

[models.small]
provider = "mock"
input_per_mtok = 0.2
output_per_mtok = 0.6
quality_like = "mistralai/mistral-7b-chat"

[models.large]
provider = "mock"
input_per_mtok = 5.0
output_per_mtok = 15.0
quality_like = "gpt-4-1106-preview"

[routes.auto]
models = ["small", "large"]
policy = "threshold:0.5"
{extra}"#,
        up.base_url()
    )
}

fn files_under(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            out.extend(files_under(&path));
        } else {
            out.push(path);
        }
    }
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_binary_serves_the_openai_client_reloads_logs_and_never_leaks_the_key() {
    assert!(
        root()
            .join("models/all-MiniLM-L6-v2/model.safetensors")
            .is_file(),
        "encoder weights missing: run `bash models/fetch.sh`"
    );
    let up = Upstream::start("mock").await;
    let dir = tempfile::tempdir().unwrap();
    let log_dir = dir.path().join("logs");
    let config = dir.path().join("switchyard.toml");
    std::fs::write(&config, config_text(&up, &log_dir, "")).unwrap();

    let check = Command::new(env!("CARGO_BIN_EXE_switchyard"))
        .args(["config", "check"])
        .arg(&config)
        .current_dir(root())
        .env(KEY_VAR, KEY)
        .output()
        .unwrap();
    assert!(
        check.status.success(),
        "{}",
        String::from_utf8_lossy(&check.stderr)
    );
    let check = Command::new(env!("CARGO_BIN_EXE_switchyard"))
        .args(["config", "check"])
        .arg(&config)
        .current_dir(root())
        .env_remove(KEY_VAR)
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&check.stderr);
    assert!(
        !check.status.success() && err.contains("providers.mock.api_key_env"),
        "{err}"
    );

    let server = start(&config);
    switchyard_providers::install_crypto_provider();
    let client = reqwest::Client::new();
    let url = server.url.clone();

    match python_with_openai() {
        Some(python) => {
            let out = tokio::task::spawn_blocking({
                let url = url.clone();
                let text = up.text();
                move || {
                    Command::new(python)
                        .arg(root().join("tests/python/openai_client.py"))
                        .arg(format!("{url}/v1"))
                        .arg(text)
                        .output()
                        .unwrap()
                }
            })
            .await
            .unwrap();
            assert!(
                out.status.success(),
                "openai client failed:\n{}\n{}",
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            );
            let summary: Value = serde_json::from_slice(&out.stdout).unwrap();
            assert_eq!(summary["ok"], true);
        }
        None => eprintln!(
            "SKIPPED the openai-python part: no Python with the `openai` package (bash scripts/test.sh installs one in .cache/pyenv)"
        ),
    }
    assert!(
        up.seen
            .lock()
            .unwrap()
            .iter()
            .all(|s| s.headers.contains(&format!("authorization: Bearer {KEY}"))),
        "the upstream got the key from {KEY_VAR}"
    );

    // A request, its feedback, and an upstream that echoes the key in its error.
    let body = json!({"model": "auto", "messages": [{"role": "user", "content": "What is the capital of Norway?"}]});
    let r = client
        .post(format!("{url}/v1/chat/completions"))
        .json(&body)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let id = r.headers()["x-switchyard-request-id"]
        .to_str()
        .unwrap()
        .to_owned();
    let fb = client
        .post(format!("{url}/v1/feedback"))
        .json(&json!({"request_id": id, "score": 0.9, "comment": "good"}))
        .send()
        .await
        .unwrap();
    assert_eq!(fb.status(), 200);
    up.set(Mode::EchoKey);
    // The same prompt again: without no-cache the cache would answer it.
    let r = client
        .post(format!("{url}/v1/chat/completions"))
        .header("x-switchyard-cache-control", "no-cache")
        .json(&body)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 502);
    let text = r.text().await.unwrap();
    // The client hears which model failed and how; the upstream's own text (which echoed
    // the key) stays in the log, scrubbed.
    assert!(text.contains("HTTP 401") && !text.contains(KEY), "{text}");
    up.set(Mode::Ok);

    // SIGHUP: a new model appears without a restart.
    std::fs::write(
        &config,
        config_text(&up, &log_dir, "\n[models.extra]\nprovider = \"mock\"\ninput_per_mtok = 0.0\noutput_per_mtok = 0.0\nquality = 0.5\n"),
    )
    .unwrap();
    let pid = server.child.id().to_string();
    assert!(
        Command::new("kill")
            .args(["-HUP", &pid])
            .status()
            .unwrap()
            .success()
    );
    let mut reloaded = false;
    for _ in 0..100 {
        let models: Value = client
            .get(format!("{url}/v1/models"))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        if models["data"]
            .as_array()
            .unwrap()
            .iter()
            .any(|m| m["id"] == "extra")
        {
            reloaded = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(
        reloaded,
        "SIGHUP did not reload:\n{}",
        server.stderr.lock().unwrap()
    );
    let metrics = client
        .get(format!("{url}/metrics"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(metrics.contains("switchyard_attempts_total"));

    // Stop gracefully, then turn the log + feedback into routing records.
    assert!(
        Command::new("kill")
            .args(["-TERM", &pid])
            .status()
            .unwrap()
            .success()
    );
    let mut server = server;
    let status = tokio::task::spawn_blocking(move || {
        let status = server.child.wait().unwrap();
        (status, server)
    })
    .await
    .unwrap();
    assert!(status.0.success(), "graceful stop: {:?}", status.0);
    let server = status.1;
    let records = dir.path().join("records.jsonl");
    let out = Command::new(env!("CARGO_BIN_EXE_switchyard"))
        .args(["datasets", "import", "--from", "traffic"])
        .arg(log_dir.join("traffic.jsonl"))
        .arg("--feedback")
        .arg(log_dir.join("feedback.jsonl"))
        .arg("--require-feedback")
        .arg("--out")
        .arg(&records)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let lines: Vec<Value> = std::fs::read_to_string(&records)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(lines.len(), 1, "{lines:?}");
    assert_eq!(lines[0]["prompt"], "What is the capital of Norway?");
    let outcome = lines[0]["outcomes"]
        .as_object()
        .unwrap()
        .values()
        .next()
        .unwrap()
        .clone();
    assert_eq!(outcome["score"], 0.9);
    assert_eq!(outcome["output_tokens"], 5);

    // The key never appears in anything the gateway wrote.
    let mut written = server.stderr.lock().unwrap().clone();
    written.push_str(&metrics);
    for file in files_under(&log_dir) {
        written.push_str(&std::fs::read_to_string(&file).unwrap());
    }
    assert!(
        written.contains("Incorrect API key provided"),
        "the echoing error was logged"
    );
    assert!(!written.contains(KEY), "the upstream key leaked");
}

fn config_check(config: &Path) -> (bool, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_switchyard"))
        .args(["config", "check"])
        .arg(config)
        .current_dir(root())
        .env(KEY_VAR, KEY)
        .env_remove("SWITCHYARD_QDRANT_URL")
        .output()
        .unwrap();
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn config_check_refuses_what_serve_refuses() {
    let up_url = "http://127.0.0.1:9/v1";
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("a-file");
    std::fs::write(&file, "").unwrap();
    let base = format!(
        "[router]\nenabled = false\n[providers.p]\nkind = \"openai\"\nbase_url = \"{up_url}\"\n\
         [models.m]\nprovider = \"p\"\ninput_per_mtok = 0.0\noutput_per_mtok = 0.0\n"
    );
    let cases = [
        (
            format!(
                "{base}[log]\ndir = {:?}\n[cache]\nenabled = false\n",
                file.join("logs")
            ),
            "log.dir",
        ),
        (
            // With the router on (the cache needs its encoder), as serve would start.
            format!(
                "{}[cache]\nbackend = \"qdrant\"\n[log]\nenabled = false\n",
                base.replace("[router]\nenabled = false\n", "")
            ),
            "cache.backend",
        ),
        (
            format!("[server]\ndeadline_ms = 0\n{base}"),
            "server.deadline_ms",
        ),
        (
            format!("[server]\nmax_body_bytes = 0\n{base}"),
            "server.max_body_bytes",
        ),
    ];
    for (i, (text, field)) in cases.iter().enumerate() {
        let path = dir.path().join(format!("case{i}.toml"));
        std::fs::write(&path, text).unwrap();
        let (ok, err) = config_check(&path);
        assert!(!ok && err.contains(field), "case {i} ({field}): {err}");
    }
}

/// The binary serving one model `m` from a mock upstream, router and cache off, its log in
/// the returned directory's `logs/`.
async fn serve_one_model() -> (Upstream, tempfile::TempDir, Server) {
    let up = Upstream::start("mock").await;
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("switchyard.toml");
    let text = format!(
        "[router]\nenabled = false\n[log]\ndir = {:?}\n[cache]\nenabled = false\n\
         [providers.mock]\nkind = \"openai\"\nbase_url = \"{}\"\n\
         [models.m]\nprovider = \"mock\"\ninput_per_mtok = 0.0\noutput_per_mtok = 0.0\n",
        dir.path().join("logs"),
        up.base_url()
    );
    std::fs::write(&config, text).unwrap();
    let server = start(&config);
    (up, dir, server)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_under_load_keeps_the_record_of_every_answered_request() {
    let (_up, dir, server) = serve_one_model().await;
    let log_dir = dir.path().join("logs");
    switchyard_providers::install_crypto_provider();
    let client = reqwest::Client::new();
    let answered = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let mut load = Vec::new();
    for _ in 0..8 {
        let (client, url, answered) = (client.clone(), server.url.clone(), answered.clone());
        load.push(tokio::spawn(async move {
            loop {
                let body = json!({"model": "m", "messages": [{"role": "user", "content": "hi"}]});
                let sent = client
                    .post(format!("{url}/v1/chat/completions"))
                    .json(&body)
                    .send()
                    .await;
                let Ok(r) = sent else { return };
                if r.status() != 200 || r.bytes().await.is_err() {
                    return;
                }
                answered.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
            }
        }));
    }
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let pid = server.child.id().to_string();
    assert!(
        Command::new("kill")
            .args(["-TERM", &pid])
            .status()
            .unwrap()
            .success()
    );
    for task in load {
        task.await.unwrap();
    }
    let mut server = server;
    let status = server.child.wait().unwrap();
    assert!(status.success(), "SIGTERM is a clean exit: {status}");
    let answered = answered.load(std::sync::atomic::Ordering::SeqCst);
    let logged = std::fs::read_to_string(log_dir.join("traffic.jsonl"))
        .unwrap()
        .lines()
        .filter(|l| l.contains("\"status\":200"))
        .count();
    assert!(answered > 50, "the load ran ({answered} answers)");
    assert!(
        logged >= answered,
        "{answered} requests were answered but only {logged} records were written"
    );
}

fn rss_kib(pid: u32) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .unwrap_or_default()
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.split_whitespace().next()?.parse().ok())
        .unwrap_or(0)
}

/// A short soak of the binary: 20 s of concurrent streamed and whole requests, a quarter
/// of them against a failing model that falls back. Every request must be answered, and
/// the resident memory after the run must stay near what it was once warm.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_soak_answers_everything_and_memory_stays_flat() {
    let (good, bad) = (Upstream::start("good").await, Upstream::start("bad").await);
    bad.set(Mode::Status500);
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("switchyard.toml");
    let text = format!(
        "[router]\nenabled = false\n[log]\ndir = {:?}\n[cache]\nenabled = false\n\
         [retry]\nmax_retries = 0\n[breaker]\nconsecutive_failures = 1000000\nwindow = 1000000\nerror_rate = 1.0\n\
         [providers.good]\nkind = \"openai\"\nbase_url = \"{}\"\n\
         [providers.bad]\nkind = \"openai\"\nbase_url = \"{}\"\n\
         [models.g]\nprovider = \"good\"\ninput_per_mtok = 0.0\noutput_per_mtok = 0.0\n\
         [models.b]\nprovider = \"bad\"\ninput_per_mtok = 0.0\noutput_per_mtok = 0.0\n\
         [routes.fall]\nmodels = [\"b\", \"g\"]\npolicy = \"order\"\n",
        dir.path().join("logs"),
        good.base_url(),
        bad.base_url()
    );
    std::fs::write(&config, text).unwrap();
    let server = start(&config);
    let pid = server.child.id();
    switchyard_providers::install_crypto_provider();
    let client = reqwest::Client::new();
    let run = |seconds: u64| {
        let mut tasks = Vec::new();
        for worker in 0..8u64 {
            let (client, url) = (client.clone(), server.url.clone());
            tasks.push(tokio::spawn(async move {
                let end = std::time::Instant::now() + Duration::from_secs(seconds);
                let (mut ok, mut failed) = (0u64, Vec::new());
                let mut i = worker;
                while std::time::Instant::now() < end {
                    i += 1;
                    let model = if i % 4 == 0 { "fall" } else { "g" };
                    let body = json!({"model": model, "stream": i % 2 == 0,
                                      "messages": [{"role": "user", "content": format!("soak {i}")}]});
                    let r = client
                        .post(format!("{url}/v1/chat/completions"))
                        .json(&body)
                        .send()
                        .await;
                    // Whole: the text; streamed: its last piece, then [DONE].
                    let whole = |t: &str| t.contains("Hello from good");
                    let streamed = |t: &str| t.contains("\" good\"") && t.ends_with("data: [DONE]\n\n");
                    match r {
                        Ok(r) if r.status() == 200 => match r.text().await {
                            Ok(t) if whole(&t) || streamed(&t) => ok += 1,
                            other => failed.push(format!("{other:?}")),
                        },
                        other => failed.push(format!("{other:?}")),
                    }
                }
                (ok, failed)
            }));
        }
        tasks
    };
    for t in run(5) {
        t.await.unwrap();
    }
    let warm = rss_kib(pid);
    let (mut ok, mut failed) = (0, Vec::new());
    for t in run(20) {
        let (o, f) = t.await.unwrap();
        ok += o;
        failed.extend(f);
    }
    let after = rss_kib(pid);
    eprintln!("soak: {ok} answered, RSS {warm} KiB warm → {after} KiB after 20 s");
    assert!(
        failed.is_empty(),
        "{} failed, e.g. {:?}",
        failed.len(),
        &failed[..failed.len().min(3)]
    );
    assert!(ok > 100, "{ok}");
    assert!(
        after <= warm + warm / 2 + 16 * 1024,
        "resident memory grew from {warm} KiB to {after} KiB"
    );
}

/// kill -9 under load, streams and whole answers mixed: every request whose answer the
/// client received in full (a whole body, or a stream up to `[DONE]`) has its record.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill_9_loses_no_record_of_a_complete_answer() {
    let (_up, dir, server) = serve_one_model().await;
    let log_dir = dir.path().join("logs");
    switchyard_providers::install_crypto_provider();
    let client = reqwest::Client::new();
    let complete = Arc::new(Mutex::new(Vec::<String>::new()));
    let mut load = Vec::new();
    for worker in 0..8 {
        let (client, url, complete) = (client.clone(), server.url.clone(), complete.clone());
        load.push(tokio::spawn(async move {
            for i in 0u64.. {
                let stream = (i + worker) % 2 == 0;
                let body = json!({"model": "m", "stream": stream,
                                  "messages": [{"role": "user", "content": "hi"}]});
                let Ok(r) = client
                    .post(format!("{url}/v1/chat/completions"))
                    .json(&body)
                    .send()
                    .await
                else {
                    return;
                };
                let id = r.headers().get("x-switchyard-request-id").cloned();
                let Ok(text) = r.text().await else { return };
                let whole = if stream {
                    text.ends_with("data: [DONE]\n\n")
                } else {
                    text.contains("Hello from mock")
                };
                if let (true, Some(id)) = (whole, id) {
                    complete
                        .lock()
                        .unwrap()
                        .push(id.to_str().unwrap().to_owned());
                }
            }
        }));
    }
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let pid = server.child.id().to_string();
    assert!(
        Command::new("kill")
            .args(["-KILL", &pid])
            .status()
            .unwrap()
            .success()
    );
    for task in load {
        task.await.unwrap();
    }
    let logged: std::collections::HashSet<String> =
        std::fs::read_to_string(log_dir.join("traffic.jsonl"))
            .unwrap()
            .lines()
            .filter_map(|l| serde_json::from_str::<Value>(l).ok())
            .filter_map(|r| r["request_id"].as_str().map(str::to_owned))
            .collect();
    let complete = complete.lock().unwrap();
    let missing: Vec<&String> = complete.iter().filter(|id| !logged.contains(*id)).collect();
    eprintln!(
        "kill -9: {} complete answers, {} records, {} complete answers without a record",
        complete.len(),
        logged.len(),
        missing.len()
    );
    assert!(complete.len() > 50, "the load ran ({})", complete.len());
    assert!(
        missing.is_empty(),
        "records lost for complete answers: {missing:?}"
    );
}

/// `switchyard router promote DIR` against the running binary: the key from the env var
/// the config names, a scorer swapped in, a directory without one refused before sending.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn router_promote_swaps_the_scorer_of_the_running_binary() {
    let up = Upstream::start("mock").await;
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("switchyard.toml");
    let extra = format!("\n[router]\nadmin_key_env = \"{KEY_VAR}\"\n");
    std::fs::write(&config, config_text(&up, &dir.path().join("logs"), &extra)).unwrap();
    let server = start(&config);
    let promote = |scorer: &Path, key: Option<&str>| {
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_switchyard"));
        cmd.args(["router", "promote"])
            .arg(scorer)
            .args(["--url", &server.url, "--admin-key-env", KEY_VAR])
            .current_dir(root())
            .env_remove(KEY_VAR);
        if let Some(k) = key {
            cmd.env(KEY_VAR, k);
        }
        cmd.output().unwrap()
    };
    let committed = root().join("models/scorer");
    let ok = promote(&committed, Some(KEY));
    assert!(
        ok.status.success(),
        "{}",
        String::from_utf8_lossy(&ok.stderr)
    );
    let version = String::from_utf8_lossy(&ok.stdout).trim().to_owned();
    assert_eq!(version.len(), 16, "{version:?}");
    let wrong = promote(&committed, Some("not-the-key"));
    let stderr = String::from_utf8_lossy(&wrong.stderr);
    assert!(
        !wrong.status.success() && stderr.contains("401"),
        "{stderr}"
    );
    assert!(
        !stderr.contains("not-the-key"),
        "the key is never echoed: {stderr}"
    );
    let unset = promote(&committed, None);
    let stderr = String::from_utf8_lossy(&unset.stderr);
    assert!(
        stderr.contains(KEY_VAR) && stderr.contains("not set"),
        "{stderr}"
    );
    let empty = promote(dir.path(), Some(KEY));
    let stderr = String::from_utf8_lossy(&empty.stderr);
    assert!(stderr.contains("no scorer here"), "{stderr}");
}

/// `switchyard label --judge` grades the logged answers that got no feedback through the
/// configured judge model, resumes without grading twice, and the import prefers a human's
/// feedback to the judge's grade.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_judge_grades_answers_without_feedback_and_humans_win() {
    let (up, judge) = (
        Upstream::start("mock").await,
        Upstream::start("judge 7").await,
    );
    let dir = tempfile::tempdir().unwrap();
    let logs = dir.path().join("logs");
    let extra = format!(
        "\n[providers.judging]\nkind = \"openai\"\nbase_url = \"{}\"\n\
         [models.judge]\nprovider = \"judging\"\ninput_per_mtok = 1.0\noutput_per_mtok = 1.0\n",
        judge.base_url()
    );
    let text = config_text(&up, &logs, &extra).replace("[log]\n", "[log]\nlog_answers = true\n");
    let config = dir.path().join("switchyard.toml");
    std::fs::write(&config, text).unwrap();
    let server = start(&config);
    switchyard_providers::install_crypto_provider();
    let client = reqwest::Client::new();
    let mut ids = Vec::new();
    for q in ["What is 2+2?", "Name a prime.", "Say hi."] {
        let r = client
            .post(format!("{}/v1/chat/completions", server.url))
            .json(&serde_json::json!({"model": "small", "messages": [{"role": "user", "content": q}]}))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200);
        ids.push(
            r.headers()["x-switchyard-request-id"]
                .to_str()
                .unwrap()
                .to_owned(),
        );
    }
    let fb = client
        .post(format!("{}/v1/feedback", server.url))
        .json(&serde_json::json!({"request_id": ids[0], "score": 0.1}))
        .send()
        .await
        .unwrap();
    assert_eq!(fb.status(), 200);
    drop(server);
    let label = || {
        let out = Command::new(env!("CARGO_BIN_EXE_switchyard"))
            .args(["label", "--judge", "judge", "--config"])
            .arg(&config)
            .current_dir(root())
            .env(KEY_VAR, KEY)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        serde_json::from_slice::<serde_json::Value>(&out.stdout).unwrap()
    };
    let first = label();
    assert_eq!(
        (first["graded"].as_u64(), first["with_feedback"].as_u64()),
        (Some(2), Some(1)),
        "{first}"
    );
    assert!(
        judge.last().body["messages"][1]["content"]
            .as_str()
            .unwrap()
            .contains("[Answer]\nHello from mock")
    );
    let again = label();
    assert_eq!(
        (again["graded"].as_u64(), again["already_graded"].as_u64()),
        (Some(0), Some(2)),
        "{again}"
    );
    let records = dir.path().join("records.jsonl");
    let out = Command::new(env!("CARGO_BIN_EXE_switchyard"))
        .args([
            "datasets",
            "import",
            "--from",
            "traffic",
            "--require-feedback",
        ])
        .arg(logs.join("traffic.jsonl"))
        .arg("--feedback")
        .arg(logs.join("feedback.jsonl"))
        .arg("--labels")
        .arg(logs.join("labels.jsonl"))
        .arg("--out")
        .arg(&records)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let records: Vec<serde_json::Value> = std::fs::read_to_string(&records)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(records.len(), 3);
    for r in &records {
        let score = r["outcomes"]["small"]["score"].as_f64().unwrap();
        if r["id"] == format!("traffic/{}", ids[0]) {
            assert_eq!(
                (score, &r["logged"]["label"]),
                (0.1, &serde_json::json!("human"))
            );
        } else {
            assert!((score - 6.0 / 9.0).abs() < 1e-12, "{r}");
            assert_eq!(r["logged"]["label"], serde_json::json!({"judge": "judge"}));
        }
    }
}
