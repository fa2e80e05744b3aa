//! `switchyard eval classifier`: measure the heads on labelled routing records.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;
use clap::{Args, Subcommand, ValueEnum};
use switchyard_embed::heads::ClassifierHeads;
use switchyard_eval::classifier::{Labelled, evaluate, render};
use switchyard_training::cache::EmbeddingCache;
use switchyard_training::classifier::SplitMix;
use switchyard_training::data::{Split, embed_all, load_examples};
use switchyard_training::train::RELATIVE_SCORE_SOURCES;

use super::model_args::EncoderArgs;
use super::progress;

/// Evaluate Switchyard's learned components.
#[derive(Debug, Subcommand)]
pub enum EvalCommand {
    Classifier(EvalClassifierArgs),
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

    /// Embedding cache directory.
    #[arg(
        long,
        env = "SWITCHYARD_CACHE_DIR",
        default_value = ".cache/embeddings"
    )]
    pub cache_dir: PathBuf,

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
    let EvalCommand::Classifier(args) = command;
    let encoder = args.encoder.load().context("cannot load the encoder")?;
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
    let mut cache = EmbeddingCache::open(&args.cache_dir, encoder.info()).with_context(|| {
        format!(
            "cannot open the embedding cache {}",
            args.cache_dir.display()
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
