//! `switchyard embed`: stdin lines (plain text or JSONL with a `text` field) to JSONL
//! embeddings on stdout, in input order.

use std::io::{BufRead, BufWriter, Write};
use std::process::ExitCode;

use anyhow::Context;
use clap::Args;
use serde::Serialize;
use switchyard_core::text_from_line;

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

#[derive(Serialize)]
struct Embedded<'a> {
    text: &'a str,
    embedding: &'a [f32],
}

#[derive(Serialize)]
struct LineFailure<'a> {
    line: usize,
    error: &'a str,
}

/// A line read from stdin: its number and its text, or why it has none.
type Pending = (usize, Result<String, String>);

pub fn run(args: &EmbedArgs) -> anyhow::Result<ExitCode> {
    let encoder = args.encoder.load().context("cannot load the encoder")?;
    let stdin = std::io::stdin().lock();
    let mut out = BufWriter::new(std::io::stdout().lock());
    let mut pending: Vec<Pending> = Vec::new();
    let mut failed = 0usize;
    let mut total = 0usize;
    for (index, line) in stdin.split(b'\n').enumerate() {
        let line = line.context("cannot read stdin")?;
        total += 1;
        let number = index + 1;
        pending.push((
            number,
            text_from_line(&line, "text").map_err(|e| e.to_string()),
        ));
        if pending.len() >= usize::from(args.batch) {
            failed += flush(&encoder, &mut pending, &mut out)?;
        }
    }
    failed += flush(&encoder, &mut pending, &mut out)?;
    out.flush().context("cannot write to stdout")?;
    if failed > 0 {
        tracing::warn!("{failed} of {total} lines could not be embedded; see their error objects");
        return Ok(ExitCode::from(1));
    }
    Ok(ExitCode::SUCCESS)
}

/// Embeds the good lines of `pending` in one call and writes every line's result in order.
/// Returns how many lines failed.
fn flush(
    encoder: &switchyard_embed::SentenceEncoder,
    pending: &mut Vec<Pending>,
    out: &mut impl Write,
) -> anyhow::Result<usize> {
    let texts: Vec<&str> = pending
        .iter()
        .filter_map(|(_, t)| t.as_deref().ok())
        .collect();
    let mut encoded = if texts.is_empty() {
        Vec::new()
    } else {
        encoder.encode(&texts).context("the encoder failed")?
    }
    .into_iter();
    let mut failed = 0;
    let max_tokens = encoder.info().max_tokens;
    for (line, text) in pending.drain(..) {
        match text {
            Ok(text) => {
                let e = encoded
                    .next()
                    .context("internal: the encoder returned fewer embeddings than inputs")?;
                if e.truncated {
                    tracing::warn!(
                        "line {line}: longer than {max_tokens} tokens; embedded its first {max_tokens} tokens only"
                    );
                }
                let row = Embedded {
                    text: &text,
                    embedding: &e.embedding,
                };
                serde_json::to_writer(&mut *out, &row)?;
            }
            Err(error) => {
                failed += 1;
                tracing::warn!("line {line}: {error}");
                serde_json::to_writer(
                    &mut *out,
                    &LineFailure {
                        line,
                        error: &error,
                    },
                )?;
            }
        }
        out.write_all(b"\n")?;
    }
    Ok(failed)
}
