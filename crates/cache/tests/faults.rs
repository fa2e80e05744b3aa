//! Faults of the embedded backend: a process killed with SIGKILL in the middle of a burst of
//! inserts, and a data directory that cannot be written.
//!
//! The burst runs in a child process: this test binary started again with only the
//! `burst_child` helper selected (it is `#[ignore]`d, so it never runs on its own).
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::print_stdout,
    reason = "tests; the child reports each acknowledged insert on stdout"
)]

use std::io::{BufRead, BufReader, Write};
use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::Arc;

use switchyard_cache::{Cache, CacheScope, CacheSettings, EdgeCache, Method, SemanticCache};
use switchyard_core::EncoderInfo;

const DIM: usize = 16;
const CHILD_DIR: &str = "SWITCHYARD_FAULT_CHILD_DIR";
const CHILD_START: &str = "SWITCHYARD_FAULT_CHILD_START";

fn encoder() -> EncoderInfo {
    EncoderInfo {
        id: "fault-encoder".into(),
        dim: DIM,
        max_tokens: 128,
        weights_sha256: "fff".into(),
        truncation: Default::default(),
    }
}

fn scope() -> CacheScope {
    CacheScope {
        tenant: "t".into(),
        route: "auto".into(),
        fingerprint: "fp".into(),
    }
}

/// A distinct unit vector per entry (splitmix64 of the index and dimension).
fn vector(i: usize) -> Vec<f32> {
    let mix = |x: u64| {
        let z = x.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        let z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    };
    let mut x: Vec<f32> = (0..DIM)
        .map(|d| (mix((i * DIM + d) as u64) >> 40) as f32 - (1u64 << 23) as f32)
        .collect();
    let n = x.iter().map(|a| a * a).sum::<f32>().sqrt();
    x.iter_mut().for_each(|a| *a /= n);
    x
}

fn open(dir: &Path) -> Cache {
    let store: Arc<dyn SemanticCache> = Arc::new(EdgeCache::open(dir, &encoder()).unwrap());
    let settings = CacheSettings {
        method: Method::Guard,
        threshold: 0.99,
        ..CacheSettings::default()
    };
    Cache::new(store, None, settings).unwrap()
}

fn text(i: usize) -> String {
    format!("question number {i}")
}

fn answer(i: usize) -> String {
    format!("{{\"answer\": {i}}}")
}

/// The child: inserts entries as fast as it can and reports each one once `insert`
/// returned, until it is killed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "helper: started as a child process by kill_9_during_a_burst_of_inserts_loses_nothing_acknowledged"]
async fn burst_child() {
    let Ok(dir) = std::env::var(CHILD_DIR) else {
        return;
    };
    let start: usize = std::env::var(CHILD_START).unwrap().parse().unwrap();
    let cache = open(Path::new(&dir));
    let mut out = std::io::stdout().lock();
    for i in start.. {
        cache
            .insert(scope(), &text(i), vector(i), answer(i), "m")
            .await
            .unwrap();
        writeln!(out, "ack {i}").unwrap();
        out.flush().unwrap();
    }
}

/// Starts the child, waits for `count` acknowledged inserts, kills it with SIGKILL
/// mid-burst, and returns every index it acknowledged before it died.
fn burst_then_kill(dir: &Path, start: usize, count: usize) -> Vec<usize> {
    let mut child = Command::new(std::env::current_exe().unwrap())
        .args(["burst_child", "--exact", "--ignored", "--nocapture"])
        .env(CHILD_DIR, dir)
        .env(CHILD_START, start.to_string())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut acked = Vec::new();
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    while acked.len() < count {
        let line = lines
            .next()
            .expect("the child stopped before it was killed")
            .unwrap();
        if let Some(i) = line.strip_prefix("ack ") {
            acked.push(i.parse().unwrap());
        }
    }
    child.kill().unwrap(); // SIGKILL: no destructor, no flush
    child.wait().unwrap();
    // The child went on inserting between the last line read and the kill: what it
    // acknowledged in that window is still in the pipe, and counts as acknowledged.
    for line in lines {
        let Ok(line) = line else { break };
        if let Some(i) = line.strip_prefix("ack ") {
            acked.push(i.parse().unwrap());
        }
    }
    acked
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill_9_during_a_burst_of_inserts_loses_nothing_acknowledged() {
    let dir = tempfile::tempdir().unwrap();
    let mut acknowledged = Vec::new();
    let mut next = 0;
    // Three rounds: each kill lands in a different state of the WAL and segments.
    for round in 0..3 {
        let acked = burst_then_kill(dir.path(), next, 150 + 100 * round);
        next = acked.last().unwrap() + 1_000; // past anything in flight
        acknowledged.extend(acked);

        let cache = open(dir.path());
        let stored = cache.backend().entry_count().await.unwrap();
        assert!(
            stored >= acknowledged.len() as u64,
            "round {round}: {stored} entries after reopening, {} acknowledged",
            acknowledged.len()
        );
        // Beyond those, at most the insert in flight at each kill; nothing else appears.
        assert!(
            stored <= (acknowledged.len() + round + 1) as u64,
            "round {round}: {stored} entries for {} acknowledged",
            acknowledged.len()
        );
        for &i in &acknowledged {
            let found = cache
                .lookup(&scope(), &text(i), &vector(i), None, None)
                .await
                .unwrap()
                .unwrap_or_else(|| panic!("round {round}: entry {i} was lost"));
            assert!(found.exact);
            assert_eq!(found.entry.response, answer(i), "entry {i} is intact");
            assert_eq!(found.entry.text, text(i));
        }
        // The reopened cache takes new entries and finds them by vector too.
        let fresh = 1_000_000 + round;
        cache
            .insert(scope(), &text(fresh), vector(fresh), answer(fresh), "m")
            .await
            .unwrap();
        let found = cache
            .lookup(
                &scope(),
                &format!("and what about question number {fresh}?"),
                &vector(fresh),
                None,
                None,
            )
            .await
            .unwrap()
            .expect("a semantic hit on the new entry");
        assert_eq!(found.entry.response, answer(fresh));
        acknowledged.push(fresh);
    }
}

#[test]
fn a_directory_that_cannot_be_created_is_a_clear_error() {
    let file = tempfile::NamedTempFile::new().unwrap();
    let dir = file.path().join("cache");
    let err = EdgeCache::open(&dir, &encoder()).unwrap_err().to_string();
    assert!(
        err.contains("cannot create cache directory") && err.contains(&dir.display().to_string()),
        "{err}"
    );
}
