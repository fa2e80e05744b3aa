//! `switchyard train classifier`: fit the task and difficulty heads.

use std::io::Write;
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;
use clap::{Args, Subcommand};
use switchyard_training::classifier::TrainConfig;
use switchyard_training::train::{Phases, TrainRequest, train_classifier};

use super::model_args::EncoderArgs;
use super::progress;

/// Train Switchyard's learned components.
#[derive(Debug, Subcommand)]
pub enum TrainCommand {
    Classifier(ClassifierArgs),
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

    /// Embedding cache directory (keyed by encoder checksum and text hash).
    #[arg(
        long,
        env = "SWITCHYARD_CACHE_DIR",
        default_value = ".cache/embeddings"
    )]
    pub cache_dir: PathBuf,

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

struct Bars;

impl Phases for Bars {
    fn phase(&self, name: &str) -> indicatif::ProgressBar {
        progress::bar(0, name)
    }
}

pub fn run(command: &TrainCommand) -> anyhow::Result<ExitCode> {
    let TrainCommand::Classifier(args) = command;
    let encoder = args.encoder.load().context("cannot load the encoder")?;
    let request = TrainRequest {
        data: args.data.clone(),
        exclude_sources: args.exclude_sources.clone(),
        out: args.out.clone(),
        cache_dir: args.cache_dir.clone(),
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
    let (report, _) = train_classifier(&request, &encoder, &Bars)?;
    let mut out = std::io::stdout().lock();
    if args.json {
        serde_json::to_writer_pretty(&mut out, &report)?;
        writeln!(out)?;
        return Ok(ExitCode::SUCCESS);
    }
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
    writeln!(out, "wrote {}", args.out.display())?;
    Ok(ExitCode::SUCCESS)
}
