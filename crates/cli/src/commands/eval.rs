//! `switchyard eval classifier` (the heads on labelled records) and `switchyard eval
//! routing` (the learned router against baselines on a cost–quality curve); `eval cache`
//! is in `eval_cache`.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::Context;
use clap::{Args, Subcommand, ValueEnum};
use switchyard_embed::SentenceEncoder;
use switchyard_embed::heads::ClassifierHeads;
use switchyard_embed::sha256_file;
use switchyard_eval::classifier::{Labelled, evaluate, render};
use switchyard_eval::plot::plot_routing;
use switchyard_eval::route_eval::{
    EvalRequest, RoutingReport, SweptPolicy, evaluate as evaluate_routing, render as render_routing,
};
use switchyard_scorer::Scorer;
use switchyard_training::cache::EmbeddingCache;
use switchyard_training::classifier::SplitMix;
use switchyard_training::data::{Split, embed_all, load_examples};
use switchyard_training::scorer::{
    RoutedPrompt, ScorerRequest, default_grid, featurise, load_routed, train_scorer,
};
use switchyard_training::train::RELATIVE_SCORE_SOURCES;

use super::model_args::{CacheArgs, EncoderArgs};
use super::progress;

/// Evaluate Switchyard's learned components.
#[derive(Debug, Subcommand)]
pub enum EvalCommand {
    Classifier(EvalClassifierArgs),
    Routing(EvalRoutingArgs),
    Cache(super::eval_cache::EvalCacheArgs),
    Loop(super::sim::EvalLoopArgs),
}

/// Evaluate routing: the scorer + policy against single models, random mixing, the oracle
/// and a kNN router, on prompts with recorded outcomes.
///
/// For each test prompt the scorer predicts every candidate's quality and cost; the policy
/// parameter is swept and each setting is scored with what the chosen model actually did.
/// Reports RouterBench's AIQ (area under the non-decreasing convex hull of the cost–quality
/// points, cost normalised over the single models' range) with a bootstrap 95% interval,
/// the paired differences to the best single model and to kNN, and with --strong/--weak,
/// RouteLLM's APGR and CPT(50%)/CPT(80%).
///
/// The scorer is the committed one in models/scorer, or --model-dir DIR, or one trained
/// here on --train files. When the scorer was trained on the test file, only its held-out
/// test split is used (--split auto). The kNN baseline's neighbours are the --train files'
/// training split, else the test file's; k is chosen on the validation split.
///
/// Example, the committed scorer on the held-out RouterBench split, with a plot:
///
/// switchyard eval routing --test routerbench.jsonl --plot rb.png
///
/// Example, a strong/weak pair:
///
/// switchyard eval routing --test routerbench.jsonl --strong gpt-4-1106-preview --weak mistralai/mixtral-8x7b-chat
///
/// Example, leave one source out:
///
/// switchyard eval routing --train llmrouter.jsonl --test routeprofile.jsonl --candidates a,b,c --prices p.json
#[derive(Debug, Args)]
pub struct EvalRoutingArgs {
    /// Routing records with outcomes (score and cost) to evaluate on.
    #[arg(long, required_unless_present = "traffic")]
    pub test: Option<PathBuf>,

    /// Off-policy evaluation instead: logged traffic (`datasets import --from traffic
    /// --feedback ...`) served by another router; estimates the quality and cost the scorer
    /// (--model-dir) would have had under --route-policy, next to what the serving router
    /// had (IPS, SNIPS, doubly robust; bootstrap intervals; effective sample size).
    /// Repeatable.
    #[arg(long, conflicts_with = "test")]
    pub traffic: Vec<PathBuf>,

    /// With --traffic: the policy the candidate would serve with (the route's).
    #[arg(long, default_value = "threshold:0.7")]
    pub route_policy: String,

    /// Train a scorer on these record files first (their train/validation splits), instead
    /// of loading one. Repeatable.
    #[arg(long, num_args = 1.., conflicts_with = "model_dir")]
    pub train: Vec<PathBuf>,

    /// A trained scorer directory (default: the committed models/scorer).
    #[arg(long, env = "SWITCHYARD_SCORER")]
    pub model_dir: Option<PathBuf>,

    /// Candidate models, comma-separated (default: every model in the test file, or the
    /// --strong/--weak pair).
    #[arg(long, value_delimiter = ',')]
    pub candidates: Vec<String>,

    /// The strong model of a pair, for RouteLLM's APGR and CPT.
    #[arg(long, requires = "weak")]
    pub strong: Option<String>,

    /// The weak model of a pair.
    #[arg(long, requires = "strong")]
    pub weak: Option<String>,

    /// Which policy parameter to sweep.
    #[arg(long, value_enum, default_value = "tradeoff")]
    pub policy: PolicyArg,

    /// Which test prompts: `auto` = the held-out test split when the scorer was trained on
    /// the test file, else all of them; `validation` = the validation split, for tuning a
    /// policy or comparing scorers without touching the test split.
    #[arg(long, value_enum, default_value = "auto")]
    pub split: RoutingSplitArg,

    /// Model prices (JSON: {"model": {"input_per_mtok": N, "output_per_mtok": N}}) for
    /// records without a cost and for expected cost; added to the built-in table.
    #[arg(long)]
    pub prices: Option<PathBuf>,

    /// Bootstrap resamples for the confidence intervals.
    #[arg(long, default_value_t = 1000)]
    pub bootstrap: usize,

    /// Seed of the bootstrap.
    #[arg(long, default_value_t = 17)]
    pub seed: u64,

    /// Write a PNG of quality against cost with the baselines.
    #[arg(long, value_name = "FILE.png")]
    pub plot: Option<PathBuf>,

    /// Directory with the classifier heads (features of the scorer).
    #[arg(long, env = "SWITCHYARD_HEADS", default_value = "models/classifier")]
    pub heads: PathBuf,

    #[command(flatten)]
    pub cache: CacheArgs,

    /// Print JSON (keys aiq, apgr, cpt50, cpt80, baselines, curve, ...) instead of a table.
    #[arg(long)]
    pub json: bool,

    #[command(flatten)]
    pub encoder: EncoderArgs,
}

#[derive(Debug, Clone, Copy, ValueEnum)]
pub enum PolicyArg {
    Tradeoff,
    Threshold,
    Margin,
}

impl PolicyArg {
    pub fn swept(self) -> SweptPolicy {
        match self {
            Self::Tradeoff => SweptPolicy::Tradeoff,
            Self::Threshold => SweptPolicy::Threshold,
            Self::Margin => SweptPolicy::Margin,
        }
    }
}

#[derive(Debug, Clone, Copy, ValueEnum)]
pub enum RoutingSplitArg {
    Auto,
    Test,
    Validation,
    All,
}

/// Evaluate the task and difficulty heads on routing records.
///
/// Reports task accuracy, macro-F1, per-class precision/recall, the confusion matrix and the
/// expected calibration error, and difficulty Spearman and MAE. By default only the held-out
/// test split is used (prompts training never saw, chosen by prompt hash); use --split all
/// for data that training did not use at all, e.g. a source left out with
/// `train classifier --exclude-source`.
///
/// Example: switchyard eval classifier --data rb.jsonl --split all --heads /tmp/heads-without-rb
#[derive(Debug, Args)]
pub struct EvalClassifierArgs {
    /// Routing-record JSONL files (repeat the flag for several).
    #[arg(long, required = true, num_args = 1..)]
    pub data: Vec<PathBuf>,

    /// Directory with the trained heads.
    #[arg(long, env = "SWITCHYARD_HEADS", default_value = "models/classifier")]
    pub heads: PathBuf,

    /// Which prompts to evaluate on.
    #[arg(long, value_enum, default_value = "test")]
    pub split: SplitArg,

    /// Only records of this source family (e.g. routerbench). Repeatable.
    #[arg(long)]
    pub source: Vec<String>,

    /// At most this many prompts per task class (seeded subsample); 0 = all.
    #[arg(long, default_value_t = 200)]
    pub max_per_class: usize,

    #[command(flatten)]
    pub cache: CacheArgs,

    /// Print JSON instead of a table.
    #[arg(long)]
    pub json: bool,

    #[command(flatten)]
    pub encoder: EncoderArgs,
}

#[derive(Debug, Clone, Copy, ValueEnum)]
pub enum SplitArg {
    Test,
    Validation,
    All,
}

pub fn run(command: &EvalCommand) -> anyhow::Result<ExitCode> {
    match command {
        EvalCommand::Classifier(args) => run_classifier(args),
        EvalCommand::Routing(args) => run_routing(args),
        EvalCommand::Cache(args) => super::eval_cache::run(args),
        EvalCommand::Loop(args) => super::sim::run(args),
    }
}

/// The scorer to evaluate: the one in --model-dir (default models/scorer), or one trained
/// into `scratch` on --train.
fn routing_scorer(
    args: &EvalRoutingArgs,
    encoder: &SentenceEncoder,
    heads: &ClassifierHeads,
    scratch: &Path,
) -> anyhow::Result<Scorer> {
    if args.train.is_empty() {
        let dir = args
            .model_dir
            .clone()
            .unwrap_or_else(|| PathBuf::from("models/scorer"));
        let scorer = Scorer::load(&dir, encoder.info())?;
        scorer.check_heads(heads.weights_sha256(), &args.heads)?;
        return Ok(scorer);
    }
    let request = ScorerRequest {
        data: args.train.clone(),
        exclude_sources: vec![],
        heads_dir: args.heads.clone(),
        out: scratch.join("scorer"),
        cache_dir: args.cache.cache_dir.clone(),
        grid: default_grid(),
        prior_weight: None,
        traffic_weight: 1,
    };
    let (report, scorer) = train_scorer(&request, encoder, heads, &progress::Bars)?;
    tracing::info!(
        family = %report.chosen.family,
        validation_brier = report.candidates.iter().map(|c| c.validation_brier).fold(f64::INFINITY, f64::min),
        "trained a scorer on --train"
    );
    Ok(scorer)
}

/// Which split of the test file to evaluate on: with --split auto, the held-out test split
/// when the scorer was trained on this file, else all of it.
fn test_split(
    args: &EvalRoutingArgs,
    scorer: &Scorer,
    test: &Path,
) -> anyhow::Result<Option<Split>> {
    let test_sha = sha256_file(test)?;
    let trained_on_test = scorer
        .manifest
        .training_data
        .iter()
        .any(|d| d.sha256 == test_sha);
    let only = match args.split {
        RoutingSplitArg::Auto => trained_on_test.then_some(Split::Test),
        RoutingSplitArg::Test => Some(Split::Test),
        RoutingSplitArg::Validation => Some(Split::Validation),
        RoutingSplitArg::All => None,
    };
    if trained_on_test && only.is_none() {
        tracing::warn!(
            "the scorer was trained on this test file's train split: --split all overstates the router"
        );
    }
    Ok(only)
}

/// The test file's prompts (featurised) and the models it scores, and the --train files'
/// prompts when given (the kNN baseline's neighbours).
type RoutingPrompts = (
    Vec<RoutedPrompt>,
    BTreeSet<String>,
    Option<Vec<RoutedPrompt>>,
);

fn routing_prompts(
    args: &EvalRoutingArgs,
    test: &Path,
    encoder: &SentenceEncoder,
    heads: &ClassifierHeads,
) -> anyhow::Result<RoutingPrompts> {
    let cache = &args.cache.cache_dir;
    let (loaded, _) = load_routed(std::slice::from_ref(&test.to_path_buf()))?;
    let test_models: BTreeSet<String> = loaded
        .iter()
        .flat_map(|p| p.outcomes.keys().cloned())
        .collect();
    let test_all = featurise(
        loaded,
        encoder,
        heads,
        cache,
        &progress::bar(0, "embedding test"),
    )?;
    let neighbours = if args.train.is_empty() {
        None
    } else {
        let (loaded, _) = load_routed(&args.train)?;
        let bar = progress::bar(0, "embedding train");
        Some(featurise(loaded, encoder, heads, cache, &bar)?)
    };
    Ok((test_all, test_models, neighbours))
}

/// --candidates, else the --strong/--weak pair, else every model the test file scores.
fn routing_candidates(args: &EvalRoutingArgs, test_models: BTreeSet<String>) -> Vec<String> {
    if !args.candidates.is_empty() {
        return args.candidates.clone();
    }
    match (&args.strong, &args.weak) {
        (Some(s), Some(w)) => vec![s.clone(), w.clone()],
        _ => test_models.into_iter().collect(),
    }
}

fn print_routing(report: &RoutingReport, only: Option<Split>, json: bool) -> anyhow::Result<()> {
    let mut out = std::io::stdout().lock();
    if json {
        serde_json::to_writer_pretty(&mut out, report)?;
        std::io::Write::write_all(&mut out, b"\n")?;
        return Ok(());
    }
    let label = match only {
        Some(Split::Test) => Some("held-out test"),
        Some(Split::Validation) => Some("validation"),
        Some(Split::Train) => Some("train"),
        None => None,
    };
    render_routing(report, label, &mut out)?;
    Ok(())
}

fn run_routing(args: &EvalRoutingArgs) -> anyhow::Result<ExitCode> {
    let encoder = args
        .encoder
        .load_for_routing()
        .context("cannot load the encoder")?;
    let heads = ClassifierHeads::load(&args.heads, encoder.info())?;
    let prices = super::prices::load(args.prices.as_deref())?;
    let scratch = tempfile::tempdir()?;
    let scorer = routing_scorer(args, &encoder, &heads, scratch.path())?;
    let Some(test) = args.test.as_ref() else {
        let traffic = super::eval_traffic::TrafficEval {
            traffic: &args.traffic,
            cache_dir: &args.cache.cache_dir,
            candidates: &args.candidates,
            route_policy: &args.route_policy,
            bootstrap: args.bootstrap,
            seed: args.seed,
            json: args.json,
        };
        return super::eval_traffic::run(&traffic, &encoder, &heads, &prices, &scorer);
    };
    let only = test_split(args, &scorer, test)?;
    let (test_all, test_models, neighbours) = routing_prompts(args, test, &encoder, &heads)?;
    let pool = neighbours.as_ref().unwrap_or(&test_all);
    let request = EvalRequest {
        test: test_all
            .iter()
            .filter(|p| only.is_none_or(|s| p.split == s))
            .collect(),
        train: in_split(pool, Split::Train),
        validation: in_split(pool, Split::Validation),
        candidates: routing_candidates(args, test_models),
        pair: args.strong.clone().zip(args.weak.clone()),
        prices,
        policy: args.policy.swept(),
        bootstrap: args.bootstrap,
        seed: args.seed,
    };
    let report = evaluate_routing(&scorer, &request)?;
    if let Some(path) = &args.plot {
        plot_routing(&report, path)?;
        tracing::info!(path = %path.display(), "wrote the plot");
    }
    print_routing(&report, only, args.json)?;
    Ok(ExitCode::SUCCESS)
}

fn in_split(prompts: &[RoutedPrompt], split: Split) -> Vec<&RoutedPrompt> {
    prompts.iter().filter(|p| p.split == split).collect()
}

fn run_classifier(args: &EvalClassifierArgs) -> anyhow::Result<ExitCode> {
    let encoder = args
        .encoder
        .load_for_routing()
        .context("cannot load the encoder")?;
    let heads = ClassifierHeads::load(&args.heads, encoder.info())?;
    let (examples, _) = load_examples(&args.data)?;
    let mut examples: Vec<_> = examples
        .into_iter()
        .filter(|e| match args.split {
            SplitArg::Test => e.split == Split::Test,
            SplitArg::Validation => e.split == Split::Validation,
            SplitArg::All => true,
        })
        .filter(|e| args.source.is_empty() || args.source.contains(&e.family))
        .filter(|e| e.task.is_some() || e.difficulty.is_some())
        .collect();
    let mut rng = SplitMix::new(17);
    rng.shuffle(&mut examples);
    if args.max_per_class > 0 {
        let mut seen = std::collections::HashMap::new();
        examples.retain(|e| {
            let n = seen.entry(e.task).or_insert(0usize);
            *n += 1;
            *n <= args.max_per_class
        });
    }
    anyhow::ensure!(
        !examples.is_empty(),
        "no labelled records in the chosen split and sources"
    );
    let mut cache =
        EmbeddingCache::open(&args.cache.cache_dir, encoder.info()).with_context(|| {
            format!(
                "cannot open the embedding cache {}",
                args.cache.cache_dir.display()
            )
        })?;
    let texts: Vec<&str> = examples.iter().map(|e| e.text.as_str()).collect();
    let vectors = embed_all(&texts, &encoder, &mut cache, &progress::bar(0, "embedding"))?;
    let predicted = heads.classify(&vectors)?;
    let items: Vec<Labelled<'_>> = examples
        .iter()
        .zip(&predicted)
        .map(|(e, p)| Labelled {
            task: e.task,
            difficulty: e
                .difficulty
                .filter(|_| !RELATIVE_SCORE_SOURCES.contains(&e.family.as_str())),
            predicted: p,
        })
        .collect();
    let report = evaluate(&items);
    let mut out = std::io::stdout().lock();
    if args.json {
        serde_json::to_writer_pretty(&mut out, &report)?;
        std::io::Write::write_all(&mut out, b"\n")?;
    } else {
        render(&report, &mut out)?;
    }
    Ok(ExitCode::SUCCESS)
}
