//! `switchyard embed`: stdin lines (plain text or JSONL with a `text` field) to JSONL
//! embeddings on stdout, in input order.

use std::process::ExitCode;

use anyhow::Context;
use clap::Args;

use super::lines::{Processed, process_stdin};
use super::model_args::EncoderArgs;

/// Embed text read from stdin, one input per line.
///
/// Each line is plain text, or a JSON object whose `text` field holds the text (a line whose
/// first non-blank character is `{` is read as JSON). Each output line is
/// {"text": ..., "embedding": [...]} in input order. A line that cannot be embedded (invalid
/// UTF-8, malformed JSON, no `text`, empty text) gets {"line": N, "error": ...} in its place,
/// a message on stderr, and the exit status becomes 1; the other lines are still embedded.
/// Texts longer than the model's limit (256 tokens for all-MiniLM-L6-v2) are truncated,
/// with a note on stderr.
///
/// Example: echo "How do I reset my password?" | switchyard embed
#[derive(Debug, Args)]
pub struct EmbedArgs {
    #[command(flatten)]
    pub encoder: EncoderArgs,

    /// Lines embedded per model call; larger batches are faster per line.
    #[arg(long, default_value_t = 64, value_parser = clap::value_parser!(u16).range(1..=4096))]
    pub batch: u16,
}

pub fn run(args: &EmbedArgs) -> anyhow::Result<ExitCode> {
    let encoder = args.encoder.load().context("cannot load the encoder")?;
    let max_tokens = encoder.info().max_tokens;
    process_stdin("text", usize::from(args.batch), |texts| {
        let encoded = encoder.encode(texts).context("the encoder failed")?;
        Ok(texts
            .iter()
            .zip(encoded)
            .map(|(text, e)| -> Processed {
                let note = e.truncated.then(|| {
                    format!("longer than {max_tokens} tokens; embedded its first {max_tokens} tokens only")
                });
                (serde_json::json!({"text": text, "embedding": e.embedding}), note)
            })
            .collect())
    })
}
