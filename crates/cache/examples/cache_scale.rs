//! The embedded cache at scale: insert throughput, index-build time, lookup latency
//! p50/p99 and recall@1 before, during and after the index build, resident memory, and
//! what the verifier adds per lookup — with exact search (a flat scan over the same
//! vectors, in the same process) as the peer and the recall reference.
//!
//!   cargo run --release -p switchyard-cache --example cache_scale -- \
//!       --entries 100000 [--queries 1000] [--vectors FILE.emb] [--verifier FILE] [--dir DIR]
//!
//! One size per process, so that resident memory is the size's own; `eval/bench/cache_scale.sh`
//! runs 10k, 100k and 1M and writes `eval/results/cache-scale.json`. Prints one JSON object.
//!
//! Vectors: the real sentence embeddings of an embedding-cache file (`--vectors`, records of
//! 16-byte key + dim × f32, as `switchyard train` writes them), extended beyond its size by
//! perturbed copies (cosine ≈ 0.9 to their source); without it, synthetic clusters. Queries
//! are near-duplicates of stored entries (cosine ≈ 0.95), as a cache sees them.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::print_stdout,
    clippy::print_stderr,
    clippy::panic,
    reason = "a benchmark program: it stops on bad arguments with a message"
)]

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Instant;

use serde_json::json;
use switchyard_cache::{
    Cache, CacheEntry, CacheScope, CacheSettings, EdgeCache, Method, SemanticCache, Verifier,
    exact_key,
};
use switchyard_core::EncoderInfo;

const DIM: usize = 384;

struct Args {
    entries: usize,
    queries: usize,
    vectors: Option<PathBuf>,
    verifier: PathBuf,
    dir: Option<PathBuf>,
    ef: Option<usize>,
}

fn args() -> Args {
    let mut a = Args {
        entries: 10_000,
        queries: 1_000,
        vectors: None,
        verifier: PathBuf::from("models/cache-verifier/verifier.json"),
        dir: None,
        ef: None,
    };
    let mut it = std::env::args().skip(1);
    while let Some(flag) = it.next() {
        let mut value = || it.next().unwrap_or_else(|| panic!("{flag} needs a value"));
        match flag.as_str() {
            "--entries" => a.entries = value().parse().expect("--entries: a count"),
            "--queries" => a.queries = value().parse().expect("--queries: a count"),
            "--vectors" => a.vectors = Some(value().into()),
            "--verifier" => a.verifier = value().into(),
            "--dir" => a.dir = Some(value().into()),
            "--ef" => a.ef = Some(value().parse().expect("--ef: a beam width")),
            "--help" | "-h" => {
                println!(
                    "cache_scale --entries N [--queries Q] [--vectors FILE.emb] [--verifier FILE] [--dir DIR] [--ef BEAM]"
                );
                std::process::exit(0);
            }
            other => panic!("unknown argument {other} (see --help)"),
        }
    }
    a
}

/// splitmix64: deterministic and dependency-free.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }
    fn uniform(&mut self) -> f32 {
        ((self.next() >> 40) as f32 + 0.5) / (1u64 << 24) as f32
    }
    fn gaussian(&mut self) -> f32 {
        let (u, v) = (self.uniform(), self.uniform());
        (-2.0 * u.ln()).sqrt() * (std::f32::consts::TAU * v).cos()
    }
    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }
}

fn normalised(mut v: Vec<f32>) -> Vec<f32> {
    let n = v.iter().map(|a| a * a).sum::<f32>().sqrt().max(1e-12);
    v.iter_mut().for_each(|a| *a /= n);
    v
}

/// `v` moved to cosine ≈ `cos` from where it was, in a random direction.
fn perturbed(v: &[f32], cos: f32, rng: &mut Rng) -> Vec<f32> {
    let noise = normalised((0..v.len()).map(|_| rng.gaussian()).collect());
    let s = (1.0 - cos * cos).sqrt() / cos;
    normalised(v.iter().zip(&noise).map(|(a, b)| a + s * b).collect())
}

fn read_embeddings(path: &Path, limit: usize) -> Vec<Vec<f32>> {
    let bytes = std::fs::read(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    let record = 16 + DIM * 4;
    bytes
        .chunks_exact(record)
        .take(limit)
        .map(|r| {
            normalised(
                r[16..]
                    .chunks_exact(4)
                    .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]))
                    .collect(),
            )
        })
        .collect()
}

fn dataset(args: &Args, rng: &mut Rng) -> (Vec<Vec<f32>>, &'static str) {
    let (base, source) = match &args.vectors {
        Some(p) => (read_embeddings(p, args.entries), "real embeddings"),
        None => {
            let centres = (args.entries / 50).max(1);
            let c: Vec<Vec<f32>> = (0..centres)
                .map(|_| normalised((0..DIM).map(|_| rng.gaussian()).collect()))
                .collect();
            let v = (0..args.entries)
                .map(|i| perturbed(&c[i % centres], 0.8, rng))
                .collect();
            (v, "synthetic clusters")
        }
    };
    let n = base.len();
    let mut all = base;
    while all.len() < args.entries {
        let src = rng.below(n);
        let v = perturbed(&all[src], 0.9, rng);
        all.push(v);
    }
    let source = if all.len() > n && args.vectors.is_some() {
        "real embeddings, extended by perturbed copies"
    } else {
        source
    };
    (all, source)
}

/// A prompt per entry with no digits in it, so that the guard lets every candidate through
/// to the verifier (a number would differ and veto it first).
fn text(i: usize) -> String {
    let topics = [
        "python", "rust", "tax", "travel", "history", "cooking", "finance",
    ];
    let mut tag = String::new();
    let mut k = i;
    loop {
        tag.push(char::from(b'a' + (k % 26) as u8));
        k /= 26;
        if k == 0 {
            break;
        }
    }
    format!(
        "How do I get started with {} when I only have a weekend and no prior experience, project {tag}?",
        topics[i % topics.len()]
    )
}

fn scope() -> CacheScope {
    CacheScope {
        tenant: "acme".into(),
        route: "auto".into(),
        fingerprint: "fp".into(),
    }
}

fn entry(i: usize) -> CacheEntry {
    let now = switchyard_cache::now_ms();
    CacheEntry {
        id: uuid_of(i),
        scope: scope(),
        exact_key: exact_key(&text(i)),
        text: text(i),
        response: format!("{{\"answer\": {i}}}"),
        model: "m".into(),
        created_ms: now,
        expires_ms: now + 86_400_000,
        last_hit_ms: now,
    }
}

fn uuid_of(i: usize) -> String {
    format!("00000000-0000-4000-8000-{i:012x}")
}

/// Exact top-1 by a flat scan.
fn exact_top1(stored: &[Vec<f32>], q: &[f32]) -> usize {
    let mut best = (0, f32::MIN);
    for (i, v) in stored.iter().enumerate() {
        let d: f32 = v.iter().zip(q).map(|(a, b)| a * b).sum();
        if d > best.1 {
            best = (i, d);
        }
    }
    best.0
}

#[derive(Default)]
struct Latencies(Vec<f64>);

impl Latencies {
    fn summary(&mut self) -> serde_json::Value {
        if self.0.is_empty() {
            return json!(null);
        }
        self.0.sort_by(f64::total_cmp);
        let q = |p: f64| self.0[((self.0.len() - 1) as f64 * p).round() as usize];
        json!({"n": self.0.len(), "p50_ms": q(0.5), "p99_ms": q(0.99), "max_ms": q(1.0)})
    }
}

/// Bytes on disk under `dir`, by top-level entry (Qdrant's WAL, the segments, the journal).
fn disk_mb(dir: &Path) -> serde_json::Value {
    fn size(p: &Path) -> u64 {
        match std::fs::symlink_metadata(p) {
            Ok(m) if m.is_dir() => std::fs::read_dir(p)
                .map(|d| d.flatten().map(|e| size(&e.path())).sum())
                .unwrap_or(0),
            Ok(m) => m.len(),
            Err(_) => 0,
        }
    }
    let mb = |p: &Path| size(p) as f64 / (1024.0 * 1024.0);
    json!({
        "total_mb": mb(dir),
        "qdrant_wal_mb": mb(&dir.join("shard/wal")),
        "segments_mb": mb(&dir.join("shard/segments")),
        "journal_mb": mb(&dir.join("journal.cbor")),
    })
}

fn rss_mb() -> serde_json::Value {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    let field = |name: &str| {
        status
            .lines()
            .find(|l| l.starts_with(name))
            .and_then(|l| l.split_whitespace().nth(1))
            .and_then(|kb| kb.parse::<f64>().ok())
            .map(|kb| kb / 1024.0)
    };
    json!({"rss_mb": field("VmRSS:"), "peak_rss_mb": field("VmHWM:")})
}

/// Nearest-entry lookups through the trait (scope filter, payload and vector returned):
/// latencies and whether each top-1 was the exact top-1.
async fn lookups(store: &EdgeCache, queries: &[(Vec<f32>, usize)]) -> (Latencies, usize, usize) {
    let mut lat = Latencies::default();
    let mut right = 0;
    for (q, truth) in queries {
        let t = Instant::now();
        let found = store.nearest(&scope(), q, 4, 0).await.unwrap();
        lat.0.push(t.elapsed().as_secs_f64() * 1e3);
        if found.first().map(|c| c.entry.id.as_str()) == Some(uuid_of(*truth).as_str()) {
            right += 1;
        }
    }
    (lat, right, queries.len())
}

/// Runs `optimize` (an index build) while looking up `queries` in turn, one every 5 ms;
/// the lookups' latencies and the build's seconds.
async fn build_with_lookups(store: &EdgeCache, queries: &[(Vec<f32>, usize)]) -> (Latencies, f64) {
    let building = Arc::new(AtomicBool::new(true));
    let t = Instant::now();
    let builder = {
        let store = store.clone();
        let building = Arc::clone(&building);
        tokio::spawn(async move {
            let r = store.optimize().await;
            building.store(false, Ordering::SeqCst);
            r
        })
    };
    let mut during = Latencies::default();
    let mut k = 0;
    while building.load(Ordering::SeqCst) {
        let (q, _) = &queries[k % queries.len()];
        let t = Instant::now();
        store.nearest(&scope(), q, 4, 0).await.unwrap();
        during.0.push(t.elapsed().as_secs_f64() * 1e3);
        k += 1;
        tokio::time::sleep(std::time::Duration::from_millis(5)).await;
    }
    builder.await.unwrap().unwrap();
    (during, t.elapsed().as_secs_f64())
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    let args = args();
    let mut rng = Rng(42);
    let t = Instant::now();
    let (stored, source) = dataset(&args, &mut rng);
    let n = stored.len();
    eprintln!(
        "{n} vectors ({source}) in {:.1} s",
        t.elapsed().as_secs_f64()
    );
    let queries: Vec<(Vec<f32>, usize)> = (0..args.queries)
        .map(|_| {
            let j = rng.below(n);
            perturbed(&stored[j], 0.95, &mut rng)
        })
        .map(|q| {
            let truth = exact_top1(&stored, &q);
            (q, truth)
        })
        .collect();

    // The exact peer: a flat scan over the same vectors.
    let mut flat = Latencies::default();
    for (q, _) in queries.iter().take(200) {
        let t = Instant::now();
        std::hint::black_box(exact_top1(&stored, q));
        flat.0.push(t.elapsed().as_secs_f64() * 1e3);
    }

    let tmp = tempfile::tempdir_in(args.dir.clone().unwrap_or_else(std::env::temp_dir)).unwrap();
    let encoder = EncoderInfo {
        id: "bench".into(),
        dim: DIM,
        max_tokens: 256,
        weights_sha256: "bench".into(),
        truncation: Default::default(),
    };
    let mut store = EdgeCache::open(tmp.path(), &encoder).unwrap();
    if let Some(ef) = args.ef {
        store = store.with_search_ef(ef);
    }
    let settings = |method: Method| CacheSettings {
        method,
        threshold: 0.0,
        capacity: u64::MAX,
        ..CacheSettings::default()
    };
    let shared: Arc<dyn SemanticCache> = Arc::new(store.clone());
    let cosine_cache = Cache::new(Arc::clone(&shared), None, settings(Method::Cosine)).unwrap();

    // Single inserts (one upsert, one WAL append each), then bulk batches.
    let singles = n.min(2_000);
    let t = Instant::now();
    for (i, v) in stored.iter().enumerate().take(singles) {
        let e = entry(i);
        store.insert(e, v.clone()).await.unwrap();
    }
    let single_rate = singles as f64 / t.elapsed().as_secs_f64();
    let t = Instant::now();
    let mut i = singles;
    while i < n {
        let end = (i + 1_000).min(n);
        let batch = (i..end).map(|k| (entry(k), stored[k].clone())).collect();
        store.insert_batch(batch).await.unwrap();
        i = end;
    }
    let bulk = n - singles;
    let bulk_rate = if bulk > 0 {
        bulk as f64 / t.elapsed().as_secs_f64()
    } else {
        0.0
    };
    eprintln!("inserted: {single_rate:.0}/s one by one, {bulk_rate:.0}/s in batches of 1,000");

    // Before the index: every segment is searched exactly.
    let before_q = if n > 200_000 {
        100
    } else {
        args.queries.min(300)
    };
    let (mut before, before_right, before_n) = lookups(&store, &queries[..before_q]).await;
    eprintln!("before the index: {}", before.summary());

    // The build, with lookups going on beside it.
    let (mut during, build_s) = build_with_lookups(&store, &queries).await;
    let (points, indexed) = store.counts();
    eprintln!("index built in {build_s:.1} s ({indexed} of {points} vectors indexed)");

    let (mut after, after_right, after_n) = lookups(&store, &queries).await;
    eprintln!("after the index: {}", after.summary());

    // The whole lookup (exact path, nearest 4, guard, score, touch on a hit), by method.
    let verifier = Verifier::load(&args.verifier).ok().map(Arc::new);
    let mut by_method = serde_json::Map::new();
    let mut methods = vec![("cosine", cosine_cache)];
    if let Some(v) = &verifier {
        methods.push((
            "verifier",
            Cache::new(
                Arc::clone(&shared),
                Some(Arc::clone(v)),
                settings(Method::Verifier),
            )
            .unwrap(),
        ));
    } else {
        eprintln!(
            "no verifier at {}: its cost is not measured",
            args.verifier.display()
        );
    }
    for (name, cache) in &methods {
        let mut lat = Latencies::default();
        for (j, (q, _)) in queries.iter().enumerate() {
            // A paraphrase, so that the exact path misses and the candidates are judged.
            let asked = format!("Please tell me: {}", text(queries[j].1));
            let t = Instant::now();
            std::hint::black_box(cache.lookup(&scope(), &asked, q, None, None).await.unwrap());
            lat.0.push(t.elapsed().as_secs_f64() * 1e3);
        }
        by_method.insert((*name).into(), lat.summary());
    }

    // What judging the candidates costs per lookup, by method (the verifier's own cost).
    let mut judge_us = serde_json::Map::new();
    let sample: Vec<_> = {
        let mut v = Vec::new();
        for (j, (q, _)) in queries.iter().enumerate().take(300) {
            let found = store.nearest(&scope(), q, 4, 0).await.unwrap();
            v.push((
                format!("Please tell me: {}", text(queries[j].1)),
                q.clone(),
                found,
            ));
        }
        v
    };
    for (name, cache) in &methods {
        let mut lat = Latencies::default();
        for (asked, q, candidates) in &sample {
            let t = Instant::now();
            let lexical = switchyard_cache::Lexical::of(asked);
            std::hint::black_box(cache.judge_all(&lexical, q, candidates));
            lat.0.push(t.elapsed().as_secs_f64() * 1e6);
        }
        let mut s = lat.summary();
        if let Some(o) = s.as_object_mut() {
            // These are microseconds.
            for k in ["p50_ms", "p99_ms", "max_ms"] {
                if let Some(v) = o.remove(k) {
                    o.insert(k.replace("_ms", "_us"), v);
                }
            }
        }
        judge_us.insert((*name).into(), s);
    }

    // Steady state between maintenance passes: `INDEX_EVERY` more entries inserted one by
    // one and not yet indexed (the gateway indexes every minute or after that many
    // inserts), so lookups search the index plus an exact tail.
    let tail = switchyard_cache::INDEX_EVERY as usize;
    for k in 0..tail {
        let v = perturbed(&stored[rng.below(n)], 0.9, &mut rng);
        store.insert(entry(n + k), v).await.unwrap();
    }
    let tail_queries: Vec<_> = queries.iter().take(300).cloned().collect();
    let (mut with_tail, _, _) = lookups(&store, &tail_queries).await;
    eprintln!("with an unindexed tail of {tail}: {}", with_tail.summary());
    // The maintenance pass that indexes that tail, as the gateway runs it, with lookups
    // beside it.
    let (mut during_tail, tail_build_s) = build_with_lookups(&store, &tail_queries).await;
    eprintln!(
        "tail indexed in {tail_build_s:.1} s; lookups meanwhile: {}",
        during_tail.summary()
    );

    let report = json!({
        "entries": n,
        "search_ef": args.ef.unwrap_or(switchyard_cache::edge::SEARCH_EF),
        "dim": DIM,
        "vectors": source,
        "queries": args.queries,
        "insert_per_s": {"one_by_one": single_rate, "batches_of_1000": bulk_rate},
        "index_build_s": build_s,
        "indexed_vectors": indexed,
        "lookup_before_index": before.summary(),
        "recall_at_1_before_index": before_right as f64 / before_n as f64,
        "lookup_during_build": during.summary(),
        "lookup": after.summary(),
        "recall_at_1": after_right as f64 / after_n as f64,
        "exact_flat_scan": flat.summary(),
        "unindexed_tail": tail,
        "lookup_with_unindexed_tail": with_tail.summary(),
        "tail_build_s": tail_build_s,
        "lookup_during_tail_build": during_tail.summary(),
        "full_lookup_by_method": by_method,
        "judge_4_candidates_by_method": judge_us,
        "memory": rss_mb(),
        // After the build's flush: the journal is empty; Qdrant Edge 0.7 never truncates its WAL.
        "disk": disk_mb(tmp.path()),
        // Included in the RSS above: this program's own copy of the vectors (the exact peer).
        "reference_copy_mb": (n * DIM * 4) as f64 / (1024.0 * 1024.0),
    });
    println!("{report}");
}
