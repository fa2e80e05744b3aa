//! `switchyard eval cache`: hit rate against wrong answers on labelled pairs, or the hit
//! rate and saving of a query stream replayed through the cache.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;

use anyhow::Context;
use clap::{Args, ValueEnum};
use switchyard_cache::{Cache, CacheSettings, EdgeCache, Method, SemanticCache, Verifier};
use switchyard_eval::cache_eval::{CacheReport, Judged, eval_cache, judge_pairs, render, report};
use switchyard_eval::cache_replay::{self, PlainCost, read_queries};
use switchyard_eval::plot::plot_cache;
use switchyard_training::cache::EmbeddingCache;
use switchyard_training::classifier::SplitMix;
use switchyard_training::data::{Split, embed_all};
use switchyard_training::pairs::{Pair, load_pairs};

use super::model_args::{CacheArgs, EncoderArgs};
use super::progress;

/// Evaluate the semantic cache: hit rate on true duplicates against wrong answers.
///
/// With --pairs: every pair's text_a is stored in a real Qdrant Edge store (a scratch
/// directory; each pair in its own scope), text_b is looked up through the gateway's path
/// (exact key, then the nearest entry), and the candidate is judged by three methods —
/// cosine alone, cosine with the lexical guard, and the guard with the learned verifier.
/// For every threshold it reports recall (hits on duplicates), the false-hit rate (hits on
/// non-duplicates), precision and F1, and recommends the threshold with the most recall at
/// --target-precision, with bootstrap 95% intervals.
///
/// The committed verifier was trained on the train split of qqp_pairs.json, MRPC and
/// STS-B; --split test (the default) keeps only the pairs it never saw (chosen by a hash
/// of the pair). Use --split all for pair files it was not trained on.
///
/// With --queries: replays prompts in order through the cache (--method, --threshold),
/// storing each miss, and reports the cumulative hit rate and the money saved.
///
/// Example: switchyard eval cache --pairs qqp_pairs.json --plot cache.png
///
/// Example: switchyard eval cache --queries prompts.jsonl --threshold 0.8
#[derive(Debug, Args)]
pub struct EvalCacheArgs {
    /// Labelled pairs: {text_a, text_b, label} JSON/JSONL, {origin, similar}, MRPC .txt or
    /// STS-B .tsv.
    #[arg(long, required_unless_present = "queries", conflicts_with = "queries")]
    pub pairs: Option<PathBuf>,

    /// Which pairs to evaluate on (see above).
    #[arg(long, value_enum, default_value = "test")]
    pub split: PairSplit,

    /// Thresholds to sweep, FROM:TO:STEP. They apply to cosine for the cosine and guard
    /// methods and to the verifier's probability for the verifier (whose useful range
    /// reaches 0.99 and beyond, hence the fine default step).
    #[arg(long, default_value = "0.30:0.999:0.001", value_parser = parse_range)]
    pub thresholds: Thresholds,

    /// The precision the recommended threshold must reach.
    #[arg(long, default_value_t = 0.90)]
    pub target_precision: f64,

    /// The method to recommend a threshold for (and to replay --queries with).
    #[arg(long, default_value = "verifier", value_parser = parse_method)]
    pub method: Method,

    /// The trained verifier.
    #[arg(long, default_value = "models/cache-verifier/verifier.json")]
    pub verifier: PathBuf,

    /// Evaluate on at most this many pairs (seeded subsample); 0 = all.
    #[arg(long, default_value_t = 0)]
    pub max_pairs: usize,

    /// Replay these prompts (JSONL with "prompt" or "text", optional "cost_usd"; routing
    /// records work too; or the gateway's traffic log, replayed per tenant and route scope
    /// at the logged costs, leaving out what the cache never saw) instead of evaluating
    /// pairs.
    #[arg(long)]
    pub queries: Option<PathBuf>,

    /// The threshold for --queries (default: the method's built-in default).
    #[arg(long)]
    pub threshold: Option<f32>,

    /// Price per 1M input tokens for queries without "cost_usd" (USD).
    #[arg(long, default_value_t = 2.5)]
    pub price_in: f64,

    /// Price per 1M output tokens for queries without "cost_usd" (USD).
    #[arg(long, default_value_t = 10.0)]
    pub price_out: f64,

    /// Output tokens assumed per answer for queries without "cost_usd".
    #[arg(long, default_value_t = 300)]
    pub output_tokens: u64,

    /// Write a PNG plot (precision–recall per method, or the cumulative hit rate).
    #[arg(long)]
    pub plot: Option<PathBuf>,

    /// Also write every evaluated pair with its verdict (JSONL: text_a, text_b, label,
    /// exact, cosine, veto, probability), e.g. for a peer cache on the same pairs
    /// (eval/bench/cache_peer.sh).
    #[arg(long)]
    pub export_pairs: Option<PathBuf>,

    /// Print JSON instead of a table.
    #[arg(long)]
    pub json: bool,

    #[command(flatten)]
    pub cache: CacheArgs,

    #[command(flatten)]
    pub encoder: EncoderArgs,
}

#[derive(Debug, Clone, Copy, ValueEnum)]
pub enum PairSplit {
    Test,
    Validation,
    All,
}

#[derive(Debug, Clone)]
pub struct Thresholds(pub Vec<f32>);

fn parse_range(s: &str) -> Result<Thresholds, String> {
    let parts: Vec<&str> = s.split(':').collect();
    let [from, to, step] = parts[..] else {
        return Err(format!("{s:?}: expected FROM:TO:STEP, e.g. 0.80:0.99:0.01"));
    };
    let num = |x: &str| {
        x.trim()
            .parse::<f64>()
            .map_err(|_| format!("{x:?} is not a number"))
    };
    let (from, to, step) = (num(from)?, num(to)?, num(step)?);
    if !(0.0..=1.0).contains(&from) || !(0.0..=1.0).contains(&to) || from > to || step <= 0.0 {
        return Err(format!("{s:?}: need 0 <= FROM <= TO <= 1 and STEP > 0"));
    }
    let n = ((to - from) / step + 1e-9).floor() as usize;
    Ok(Thresholds(
        (0..=n)
            .map(|i| ((from + i as f64 * step) * 1e4).round() as f32 / 1e4)
            .collect(),
    ))
}

fn parse_method(s: &str) -> Result<Method, String> {
    s.parse()
}

fn runtime() -> anyhow::Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .context("cannot start the async runtime")
}

/// The verifier, checked against the encoder; without one, only the verifier method fails.
fn load_verifier(
    args: &EvalCacheArgs,
    encoder: &switchyard_embed::SentenceEncoder,
) -> anyhow::Result<Option<Arc<Verifier>>> {
    match Verifier::load(&args.verifier) {
        Ok(v) => {
            v.check_encoder(encoder.info())?;
            Ok(Some(Arc::new(v)))
        }
        Err(e) if args.method == Method::Verifier => Err(e.into()),
        Err(_) => Ok(None),
    }
}

/// The labelled pairs of `path` in --split, at most --max-pairs of them (seeded).
fn eval_pairs(args: &EvalCacheArgs, path: &Path) -> anyhow::Result<Vec<Pair>> {
    let mut pairs = load_pairs(path)?;
    pairs.retain(|p| match args.split {
        PairSplit::Test => p.split() == Split::Test,
        PairSplit::Validation => p.split() == Split::Validation,
        PairSplit::All => true,
    });
    if args.max_pairs > 0 && pairs.len() > args.max_pairs {
        SplitMix::new(17).shuffle(&mut pairs);
        pairs.truncate(args.max_pairs);
    }
    anyhow::ensure!(
        !pairs.is_empty(),
        "{}: no pairs in the {:?} split (use --split all for a file the verifier was not trained on)",
        path.display(),
        args.split
    );
    Ok(pairs)
}

/// One JSON line per pair: its texts, label, and what the cache made of it.
fn export_pairs(
    path: &Path,
    triples: &[(String, String, bool)],
    judged: &[Judged],
) -> anyhow::Result<()> {
    let mut lines = String::new();
    for (p, j) in triples.iter().zip(judged) {
        let line = serde_json::json!({
            "text_a": p.0, "text_b": p.1, "label": u8::from(p.2), "exact": j.exact,
            "cosine": j.judgement.map(|x| x.cosine),
            "veto": j.judgement.and_then(|x| x.veto),
            "probability": j.judgement.and_then(|x| x.probability),
        });
        lines.push_str(&line.to_string());
        lines.push('\n');
    }
    fs_err::write(path, lines)?;
    Ok(())
}

fn print_report(rep: &CacheReport, args: &EvalCacheArgs) -> anyhow::Result<()> {
    let mut out = std::io::stdout().lock();
    if args.json {
        serde_json::to_writer_pretty(&mut out, rep)?;
        writeln!(out)?;
        return Ok(());
    }
    render(rep, &mut out)?;
    if let Some(plot) = &args.plot {
        writeln!(out, "plot: {}", plot.display())?;
    }
    Ok(())
}

pub fn run(args: &EvalCacheArgs) -> anyhow::Result<ExitCode> {
    anyhow::ensure!(
        (0.0..=1.0).contains(&args.target_precision),
        "--target-precision must be between 0 and 1"
    );
    let encoder = args
        .encoder
        .load_for_routing()
        .context("cannot load the encoder")?;
    let verifier = load_verifier(args, &encoder)?;
    let mut emb =
        EmbeddingCache::open(&args.cache.cache_dir, encoder.info()).with_context(|| {
            format!(
                "cannot open the embedding cache {}",
                args.cache.cache_dir.display()
            )
        })?;
    let scratch = tempfile::tempdir().context("cannot create a scratch directory")?;
    let store: Arc<dyn SemanticCache> = Arc::new(EdgeCache::open(scratch.path(), encoder.info())?);
    if let Some(queries) = &args.queries {
        return replay(args, queries, &encoder, &mut emb, store, verifier);
    }
    let Some(path) = &args.pairs else {
        anyhow::bail!("give --pairs FILE or --queries FILE");
    };
    let pairs = eval_pairs(args, path)?;
    let texts: Vec<&str> = pairs
        .iter()
        .flat_map(|p| [p.a.as_str(), p.b.as_str()])
        .collect();
    let vectors = embed_all(&texts, &encoder, &mut emb, &progress::bar(0, "embedding"))?;
    let (va, vb): (Vec<Vec<f32>>, Vec<Vec<f32>>) = vectors
        .chunks_exact(2)
        .map(|c| (c[0].clone(), c[1].clone()))
        .unzip();
    let cache = eval_cache(Arc::clone(&store), verifier)?;
    let triples: Vec<(String, String, bool)> = pairs
        .iter()
        .map(|p| (p.a.clone(), p.b.clone(), p.label))
        .collect();
    let bar = progress::bar(0, "cache");
    let (judged, lookup_ms) = runtime()?.block_on(judge_pairs(&cache, &triples, &va, &vb, &bar))?;
    if let Some(export) = &args.export_pairs {
        export_pairs(export, &triples, &judged)?;
    }
    let Some(rep) = report(
        &judged,
        &args.thresholds.0,
        args.method,
        args.target_precision,
        lookup_ms,
        store.backend(),
    ) else {
        anyhow::bail!(
            "the {} method served no pair at any threshold: widen --thresholds",
            args.method.name()
        );
    };
    if let Some(plot) = &args.plot {
        plot_cache(&rep, plot)?;
    }
    print_report(&rep, args)?;
    Ok(ExitCode::SUCCESS)
}

/// The cache the replay runs: --method at --threshold (the method's default without one),
/// unbounded.
fn replay_cache(
    args: &EvalCacheArgs,
    store: Arc<dyn SemanticCache>,
    verifier: Option<Arc<Verifier>>,
) -> anyhow::Result<Cache> {
    let threshold = args.threshold.unwrap_or(match args.method {
        Method::Verifier => switchyard_cache::DEFAULT_VERIFIER_THRESHOLD,
        _ => switchyard_cache::DEFAULT_COSINE_THRESHOLD,
    });
    let settings = CacheSettings {
        method: args.method,
        threshold,
        capacity: u64::MAX,
        ..CacheSettings::default()
    };
    Ok(Cache::new(store, verifier, settings)?)
}

fn replay(
    args: &EvalCacheArgs,
    path: &Path,
    encoder: &switchyard_embed::SentenceEncoder,
    emb: &mut EmbeddingCache,
    store: Arc<dyn SemanticCache>,
    verifier: Option<Arc<Verifier>>,
) -> anyhow::Result<ExitCode> {
    let plain = PlainCost {
        price_in: args.price_in,
        price_out: args.price_out,
        output_tokens: args.output_tokens,
    };
    let (queries, skipped) = read_queries(path, &plain)?;
    anyhow::ensure!(!queries.is_empty(), "{}: no queries", path.display());
    let texts: Vec<&str> = queries.iter().map(|q| q.prompt.as_str()).collect();
    let vectors = embed_all(&texts, encoder, emb, &progress::bar(0, "embedding"))?;
    let cache = replay_cache(args, store, verifier)?;
    let bar = progress::bar(queries.len() as u64, "replay");
    let r = cache_replay::replay(&queries, vectors, &cache, skipped, &|| bar.inc(1))?;
    bar.finish_and_clear();
    if let Some(plot) = &args.plot {
        let points: Vec<(f64, f64)> = r
            .curve
            .iter()
            .map(|p| (p.queries as f64, p.hit_rate))
            .collect();
        switchyard_eval::plot::plot_hit_rate(&points, plot)?;
    }
    let mut out = std::io::stdout().lock();
    if args.json {
        serde_json::to_writer_pretty(&mut out, &r)?;
        writeln!(out)?;
    } else {
        r.print(&mut out)?;
    }
    Ok(ExitCode::SUCCESS)
}
