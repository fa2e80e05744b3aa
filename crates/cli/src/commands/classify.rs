//! `switchyard classify`: stdin prompts to task and difficulty predictions.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;
use clap::Args;
use switchyard_embed::heads::ClassifierHeads;

use super::lines::process_stdin;
use super::model_args::EncoderArgs;

/// Classify prompts read from stdin by task and difficulty.
///
/// Each line is plain text, or a JSON object whose `prompt` field holds the prompt. Each
/// output line is {"task", "task_probs": {...}, "difficulty", "difficulty_bucket"} in input
/// order; a bad line gets {"line": N, "error": ...} and the rest goes on (exit status 1).
///
/// Example: echo "Write a haiku about rain" | switchyard classify
#[derive(Debug, Args)]
pub struct ClassifyArgs {
    /// Directory with the trained heads (manifest.json, heads.safetensors).
    #[arg(long, env = "SWITCHYARD_HEADS", default_value = "models/classifier")]
    pub heads: PathBuf,

    /// Lines processed per model call.
    #[arg(long, default_value_t = 64, value_parser = clap::value_parser!(u16).range(1..=4096))]
    pub batch: u16,

    #[command(flatten)]
    pub encoder: EncoderArgs,
}

pub fn run(args: &ClassifyArgs) -> anyhow::Result<ExitCode> {
    let encoder = args
        .encoder
        .load_for_routing()
        .context("cannot load the encoder")?;
    let heads = ClassifierHeads::load(&args.heads, encoder.info())?;
    process_stdin("prompt", usize::from(args.batch), |texts| {
        let vectors = encoder.embed(texts).context("the encoder failed")?;
        let classes = heads.classify(&vectors)?;
        Ok(classes
            .into_iter()
            .map(|c| {
                let probs: serde_json::Map<String, serde_json::Value> = c
                    .task_probs
                    .iter()
                    .map(|(t, p)| (t.to_string(), serde_json::json!(p)))
                    .collect();
                let value = serde_json::json!({
                    "task": c.task,
                    "task_probs": probs,
                    "difficulty": c.difficulty,
                    "difficulty_bucket": c.difficulty_bucket,
                });
                (value, None)
            })
            .collect())
    })
}
