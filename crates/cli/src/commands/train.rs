//! `switchyard train classifier` (task and difficulty heads) and `switchyard train scorer`
//! (per-model quality, output length and cost) and `switchyard train verifier` (the
//! semantic cache's hit verifier).

use std::io::Write;
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;
use clap::{Args, Subcommand};
use switchyard_embed::heads::ClassifierHeads;
use switchyard_training::classifier::TrainConfig;
use switchyard_training::scorer::{ScorerReport, ScorerRequest, default_grid, train_scorer};
use switchyard_training::train::{TrainReport, TrainRequest, train_classifier};
use switchyard_training::verifier::{VerifierRequest, train_verifier};

use super::model_args::{CacheArgs, EncoderArgs};
use super::progress;

/// Train Switchyard's learned components.
#[derive(Debug, Subcommand)]
pub enum TrainCommand {
    Classifier(ClassifierArgs),
    Scorer(ScorerArgs),
    Verifier(VerifierArgs),
}

/// Train the semantic cache's hit verifier on labelled sentence pairs.
///
/// Reads pair files ({text_a, text_b, label} JSON or JSONL, GPTCache {origin, similar},
/// MRPC .txt, STS-B .tsv), splits every pair by a hash of its texts into train / validation
/// / held-out test (80/10/10), embeds the texts through the cache, and fits on standardised
/// pair features (|u-v|, u*v, cosine, lexical signals) a logistic regression (linfa) for
/// each L2 strength and a one-hidden-layer MLP (candle), keeping the one that finds most
/// duplicates at 90% precision on validation pairs. Writes verifier.json (weights and
/// manifest) to --out. `switchyard eval cache --split test` measures it on pairs it never saw.
///
/// Example: switchyard train verifier --pairs qqp_pairs.json --pairs msr_paraphrase_train.txt --out models/cache-verifier
#[derive(Debug, Args)]
pub struct VerifierArgs {
    /// Pair files (repeat the flag for several).
    #[arg(long, required = true, num_args = 1..)]
    pub pairs: Vec<PathBuf>,

    /// Where to write verifier.json (created if missing).
    #[arg(long)]
    pub out: PathBuf,

    /// L2 strengths to try (comma-separated).
    #[arg(long, value_delimiter = ',', default_value = "0.1,10")]
    pub alpha: Vec<f64>,

    /// Most L-BFGS iterations per fit.
    #[arg(long, default_value_t = 300)]
    pub max_iterations: u64,

    /// At most this many training pairs per file (a seeded subsample); 0 = all.
    #[arg(long, default_value_t = 0)]
    pub max_train_pairs: usize,

    /// Hidden width of the MLP candidate (0: logistic regression only).
    #[arg(long, default_value_t = 256)]
    pub mlp_hidden: usize,

    /// MLPs from this many seeds, averaged; each gets mlp-hidden / mlp-seeds hidden units,
    /// so the verifier costs the same per lookup.
    #[arg(long, default_value_t = 4, value_parser = clap::value_parser!(u16).range(1..=64))]
    pub mlp_seeds: u16,

    #[command(flatten)]
    pub cache: CacheArgs,

    /// Print the report as JSON instead of a table.
    #[arg(long)]
    pub json: bool,

    #[command(flatten)]
    pub encoder: EncoderArgs,
}

/// Train the quality scorer: per candidate model, predicted quality of its answer.
///
/// Reads routing-record JSONL files with outcomes (from `switchyard datasets import`),
/// merges records of the same prompt, embeds prompts through the cache and classifies
/// them with the heads in --heads, then fits one model per candidate with each
/// configuration of two linfa families (logistic regression on score >= 0.5, elastic-net
/// regression on the score), keeps the one with the lowest validation Brier score, learns
/// each model's output tokens and observed cost per task, and writes manifest.json +
/// weights.json to --out. Train / validation / test is the same prompt-hash split as the
/// classifier's: `switchyard eval routing` measures on the test split.
///
/// Logged traffic (`datasets import --from traffic`) trains the same way, alone or with
/// benchmark files: a model seen on few prompts, or known to no benchmark, is shrunk toward
/// a prior of 0.5 (--prior-weight) instead of refused. Under 50 training prompts the one
/// default configuration is fitted without a comparison.
///
/// Example: switchyard train scorer --data routerbench.jsonl --data llmrouter.jsonl --out models/scorer
#[derive(Debug, Args)]
pub struct ScorerArgs {
    /// Routing-record JSONL files with outcomes (repeat the flag for several).
    #[arg(long, required = true, num_args = 1..)]
    pub data: Vec<PathBuf>,

    /// Where to write the scorer (created if missing).
    #[arg(long)]
    pub out: PathBuf,

    /// Classifier heads whose task probabilities and difficulty are features.
    #[arg(long, default_value = "models/classifier")]
    pub heads: PathBuf,

    /// Leave out every record of this source family (leave-source-out experiments).
    /// Repeatable.
    #[arg(long = "exclude-source")]
    pub exclude_sources: Vec<String>,

    /// Pseudo-count of the prior 0.5 in each model's mean score. Default: 10 when the data
    /// has logged traffic, else 0.
    #[arg(long, value_name = "N")]
    pub prior_weight: Option<f64>,

    /// Mixed with benchmark files, each logged-traffic prompt counts this many times.
    #[arg(long, value_name = "W", default_value_t = 1)]
    pub traffic_weight: usize,

    #[command(flatten)]
    pub cache: CacheArgs,

    /// Print the report as JSON instead of a table.
    #[arg(long)]
    pub json: bool,

    #[command(flatten)]
    pub encoder: EncoderArgs,
}

/// Train the task and difficulty heads on frozen encoder embeddings.
///
/// Reads routing-record JSONL files (from `switchyard datasets import` and
/// datasets/seeds/task_seeds.jsonl), splits prompts by hash into train / validation /
/// held-out test (80/10/10), embeds them through an on-disk cache, trains a linear and an
/// MLP task head and keeps the better on validation, trains the difficulty head, and writes
/// heads.safetensors + manifest.json to --out. Ends with a metrics table on the held-out split.
///
/// Example: switchyard train classifier --data rb.jsonl --data datasets/seeds/task_seeds.jsonl --out models/classifier
#[derive(Debug, Args)]
pub struct ClassifierArgs {
    /// Routing-record JSONL files to train on (repeat the flag for several).
    #[arg(long, required = true, num_args = 1..)]
    pub data: Vec<PathBuf>,

    /// Where to write the heads (created if missing).
    #[arg(long)]
    pub out: PathBuf,

    /// Leave out every record of this source family (e.g. routerbench), for
    /// leave-one-source-out evaluation. Repeatable.
    #[arg(long = "exclude-source")]
    pub exclude_sources: Vec<String>,

    #[command(flatten)]
    pub cache: CacheArgs,

    /// Seed for initialisation, shuffling and subsampling.
    #[arg(long, default_value_t = 17)]
    pub seed: u64,

    /// Most training epochs per head (early stopping usually ends sooner).
    #[arg(long, default_value_t = TrainConfig::default().max_epochs)]
    pub epochs: usize,

    /// Epochs without a better validation score before stopping.
    #[arg(long, default_value_t = TrainConfig::default().patience)]
    pub patience: usize,

    /// AdamW learning rate.
    #[arg(long, default_value_t = TrainConfig::default().learning_rate)]
    pub lr: f64,

    /// AdamW weight decay.
    #[arg(long, default_value_t = TrainConfig::default().weight_decay)]
    pub weight_decay: f64,

    /// Hidden width of the MLP task head.
    #[arg(long, default_value_t = TrainConfig::default().mlp_hidden)]
    pub hidden: usize,

    /// Class weights ∝ frequency^-power in the task loss (0 = none, 1 = balanced).
    #[arg(long, default_value_t = TrainConfig::default().class_weight_power)]
    pub class_weight_power: f64,

    /// Print the report as JSON instead of a table.
    #[arg(long)]
    pub json: bool,

    #[command(flatten)]
    pub encoder: EncoderArgs,
}

pub fn run(command: &TrainCommand) -> anyhow::Result<ExitCode> {
    match command {
        TrainCommand::Classifier(args) => run_classifier(args),
        TrainCommand::Scorer(args) => run_scorer(args),
        TrainCommand::Verifier(args) => run_verifier(args),
    }
}

fn run_verifier(args: &VerifierArgs) -> anyhow::Result<ExitCode> {
    anyhow::ensure!(
        args.alpha.iter().all(|a| a.is_finite() && *a >= 0.0),
        "--alpha: every L2 strength must be a non-negative number"
    );
    let encoder = args
        .encoder
        .load_for_routing()
        .context("cannot load the encoder")?;
    let request = VerifierRequest {
        pairs: args.pairs.clone(),
        cache_dir: args.cache.cache_dir.clone(),
        alphas: args.alpha.clone(),
        max_iterations: args.max_iterations,
        max_train_pairs: args.max_train_pairs,
        mlp_hidden: args.mlp_hidden,
        mlp_seeds: usize::from(args.mlp_seeds),
    };
    let (verifier, report) = train_verifier(&request, &encoder, &progress::bar(0, "verifier"))?;
    fs_err::create_dir_all(&args.out)?;
    let path = args.out.join("verifier.json");
    fs_err::write(&path, serde_json::to_string(&verifier)?)?;
    let mut out = std::io::stdout().lock();
    if args.json {
        serde_json::to_writer_pretty(&mut out, &report)?;
        writeln!(out)?;
        return Ok(ExitCode::SUCCESS);
    }
    writeln!(out, "training pairs: {}", report.train_pairs)?;
    writeln!(
        out,
        "{:<26} {:>8} {:>14} {:>20}",
        "validation", "AUC", "best accuracy", "recall @ P>=0.90"
    )?;
    let rows = report
        .grid
        .iter()
        .map(|(n, m)| (n.as_str(), m))
        .chain([("cosine alone", &report.cosine_validation)]);
    for (name, m) in rows {
        writeln!(
            out,
            "{name:<26} {:>8.4} {:>14.4} {:>20.4}",
            m["auc"], m["best_accuracy"], m["recall_at_precision_0.90"]
        )?;
    }
    writeln!(out, "chosen: {}", report.chosen)?;
    writeln!(out, "wrote {}", path.display())?;
    Ok(ExitCode::SUCCESS)
}

fn run_scorer(args: &ScorerArgs) -> anyhow::Result<ExitCode> {
    let encoder = args
        .encoder
        .load_for_routing()
        .context("cannot load the encoder")?;
    let heads = ClassifierHeads::load(&args.heads, encoder.info())?;
    let request = ScorerRequest {
        data: args.data.clone(),
        exclude_sources: args.exclude_sources.clone(),
        heads_dir: args.heads.clone(),
        out: args.out.clone(),
        cache_dir: args.cache.cache_dir.clone(),
        grid: default_grid(),
        prior_weight: args.prior_weight,
        traffic_weight: args.traffic_weight,
    };
    let (report, scorer) = train_scorer(&request, &encoder, &heads, &progress::Bars)?;
    let mut out = std::io::stdout().lock();
    if args.json {
        serde_json::to_writer_pretty(&mut out, &report)?;
        writeln!(out)?;
        return Ok(ExitCode::SUCCESS);
    }
    print_scorer_report(&report, &mut out)?;
    writeln!(
        out,
        "wrote {} ({} models)",
        args.out.display(),
        scorer.models.len()
    )?;
    Ok(ExitCode::SUCCESS)
}

/// The validation table (Brier per configuration, overall and per source), the choice
/// and the held-out test figure.
fn print_scorer_report(report: &ScorerReport, out: &mut impl Write) -> std::io::Result<()> {
    writeln!(
        out,
        "prompts: {}; models: {}",
        report
            .prompts
            .iter()
            .map(|(k, v)| format!("{k} {v}"))
            .collect::<Vec<_>>()
            .join(", "),
        report.models
    )?;
    let sources: Vec<&String> = report
        .candidates
        .first()
        .map(|c| c.validation_brier_by_source.keys().collect())
        .unwrap_or_default();
    write!(
        out,
        "{:<48} {:>9}",
        "configuration (validation Brier)", "all"
    )?;
    for s in &sources {
        write!(out, " {s:>12}")?;
    }
    writeln!(out, " {:>8}", "fit s")?;
    for c in &report.candidates {
        let name = match c.config.clusters {
            0 => c.config.family.to_string(),
            k => format!("{} + {k} clusters", c.config.family),
        };
        write!(out, "{name:<56} {:>9.4}", c.validation_brier)?;
        for s in &sources {
            write!(
                out,
                " {:>12.4}",
                c.validation_brier_by_source.get(*s).unwrap_or(&f64::NAN)
            )?;
        }
        writeln!(out, " {:>8.1}", c.fit_seconds)?;
    }
    writeln!(
        out,
        "chosen: {} with {} clusters",
        report.chosen.family, report.chosen.clusters
    )?;
    writeln!(
        out,
        "held-out test Brier {:.4} (each model's mean: {:.4})",
        report.test_brier, report.test_brier_model_mean
    )?;
    Ok(())
}

fn run_classifier(args: &ClassifierArgs) -> anyhow::Result<ExitCode> {
    let encoder = args
        .encoder
        .load_for_routing()
        .context("cannot load the encoder")?;
    let request = TrainRequest {
        data: args.data.clone(),
        exclude_sources: args.exclude_sources.clone(),
        out: args.out.clone(),
        cache_dir: args.cache.cache_dir.clone(),
        config: TrainConfig {
            seed: args.seed,
            max_epochs: args.epochs,
            patience: args.patience,
            learning_rate: args.lr,
            weight_decay: args.weight_decay,
            mlp_hidden: args.hidden,
            class_weight_power: args.class_weight_power,
            ..TrainConfig::default()
        },
    };
    let (report, _) = train_classifier(&request, &encoder, &progress::Bars)?;
    let mut out = std::io::stdout().lock();
    if args.json {
        serde_json::to_writer_pretty(&mut out, &report)?;
        writeln!(out)?;
        return Ok(ExitCode::SUCCESS);
    }
    print_classifier_report(&report, &mut out)?;
    writeln!(out, "wrote {}", args.out.display())?;
    Ok(ExitCode::SUCCESS)
}

/// The task-head comparison on validation, the choice, and the held-out test figures.
fn print_classifier_report(report: &TrainReport, out: &mut impl Write) -> anyhow::Result<()> {
    writeln!(
        out,
        "examples: {}",
        report
            .examples
            .iter()
            .map(|(k, v)| format!("{k} {v}"))
            .collect::<Vec<_>>()
            .join(", ")
    )?;
    writeln!(
        out,
        "{:<22} {:>16} {:>14} {:>7}",
        "task head", "val macro-F1", "val accuracy", "epochs"
    )?;
    for c in &report.candidates {
        let name = serde_json::to_string(&c.kind)?;
        writeln!(
            out,
            "{:<22} {:>16.4} {:>14.4} {:>7}",
            name, c.validation_macro_f1, c.validation_accuracy, c.epochs
        )?;
    }
    writeln!(out, "chosen: {}", serde_json::to_string(&report.chosen)?)?;
    writeln!(
        out,
        "{:<40} {:>10}",
        "held-out test (never trained on)", "value"
    )?;
    writeln!(
        out,
        "{:<40} {:>10.4}",
        format!("task macro-F1 (n={})", report.test_examples),
        report.test_task_macro_f1
    )?;
    writeln!(
        out,
        "{:<40} {:>10.4}",
        "task accuracy", report.test_task_accuracy
    )?;
    for (class, f1) in &report.test_class_f1 {
        writeln!(out, "{:<40} {:>10.4}", format!("  F1 {class}"), f1)?;
    }
    writeln!(
        out,
        "{:<40} {:>10.4}",
        format!(
            "difficulty Spearman (n={})",
            report.test_difficulty_examples
        ),
        report.test_difficulty_spearman
    )?;
    writeln!(
        out,
        "{:<40} {:>10.4}",
        "difficulty MAE", report.test_difficulty_mae
    )?;
    Ok(())
}
