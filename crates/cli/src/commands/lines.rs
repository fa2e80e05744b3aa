//! The shared loop of line-oriented commands (`embed`, `classify`): read stdin lines (plain
//! text or JSONL with a named field), process good lines in batches, and write one JSON
//! line per input line, in order. A bad line gets `{"line": N, "error": ...}` in its place
//! and a message on stderr, the rest goes on, and the exit status becomes 1.

use std::io::{BufRead, BufWriter, Write};
use std::process::ExitCode;

use anyhow::Context;
use serde::Serialize;
use switchyard_core::text_from_line;

/// What processing one good line produced: its output object and an optional note for
/// stderr (e.g. "truncated").
pub type Processed = (serde_json::Value, Option<String>);

#[derive(Serialize)]
struct LineFailure<'a> {
    line: usize,
    error: &'a str,
}

/// A line read from stdin: its number and its text, or why it has none.
type Pending = (usize, Result<String, String>);

pub fn process_stdin(
    field: &str,
    batch: usize,
    mut work: impl FnMut(&[&str]) -> anyhow::Result<Vec<Processed>>,
) -> anyhow::Result<ExitCode> {
    let stdin = std::io::stdin().lock();
    let mut out = BufWriter::new(std::io::stdout().lock());
    let mut pending: Vec<Pending> = Vec::new();
    let (mut failed, mut total) = (0usize, 0usize);
    for (index, line) in stdin.split(b'\n').enumerate() {
        let line = line.context("cannot read stdin")?;
        total += 1;
        pending.push((
            index + 1,
            text_from_line(&line, field).map_err(|e| e.to_string()),
        ));
        if pending.len() >= batch {
            failed += flush(&mut pending, &mut out, &mut work)?;
        }
    }
    failed += flush(&mut pending, &mut out, &mut work)?;
    out.flush().context("cannot write to stdout")?;
    if failed > 0 {
        tracing::warn!("{failed} of {total} lines could not be processed; see their error objects");
        return Ok(ExitCode::from(1));
    }
    Ok(ExitCode::SUCCESS)
}

/// Processes the good lines of `pending` in one call and writes every line's result in
/// order. Returns how many lines failed.
fn flush(
    pending: &mut Vec<Pending>,
    out: &mut impl Write,
    work: &mut impl FnMut(&[&str]) -> anyhow::Result<Vec<Processed>>,
) -> anyhow::Result<usize> {
    let texts: Vec<&str> = pending
        .iter()
        .filter_map(|(_, t)| t.as_deref().ok())
        .collect();
    let mut results = if texts.is_empty() {
        Vec::new()
    } else {
        work(&texts)?
    }
    .into_iter();
    let mut failed = 0;
    for (line, text) in pending.drain(..) {
        match text {
            Ok(_) => {
                let (value, note) = results
                    .next()
                    .context("internal: fewer results than inputs")?;
                if let Some(note) = note {
                    tracing::warn!("line {line}: {note}");
                }
                serde_json::to_writer(&mut *out, &value)?;
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
