//! `switchyard datasets import`: routing sources to routing-record JSONL.

use std::collections::BTreeMap;
use std::io::Write;
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;
use clap::{Args, Subcommand, ValueEnum};
use switchyard_training::import::{self, Source};

use super::output::AtomicOutput;
use super::progress;

/// Work with routing datasets.
#[derive(Debug, Subcommand)]
pub enum DatasetsCommand {
    Import(ImportArgs),
}

/// Import a routing source as routing records (JSONL; format in datasets/README.md).
///
/// Writes to stdout, or atomically to --out. Shows progress on stderr and ends with a
/// summary: rows read, records written, models, tasks, and rows skipped with the reason.
///
/// Example: switchyard datasets import --from routerbench ../shared/datasets/routing/routerbench --out rb.jsonl
#[derive(Debug, Args)]
pub struct ImportArgs {
    /// Which source format PATH holds.
    #[arg(long = "from", value_enum)]
    pub from: SourceArg,

    /// The source's folder (as in ../shared/datasets/routing/<source>) or, for routerbench and
    /// open7b, one of its data files. For `traffic`: one or more traffic logs
    /// (logs/traffic*.jsonl), oldest first.
    #[arg(required = true, value_name = "PATH")]
    pub paths: Vec<PathBuf>,

    /// For `--from traffic`: feedback files (logs/feedback.jsonl) joined to the logs by
    /// request id; the score becomes the outcome's score.
    #[arg(long, value_name = "FILE")]
    pub feedback: Vec<PathBuf>,

    /// For `--from traffic`: judge labels (logs/labels.jsonl from `switchyard label`), used
    /// where the requesting tenant gave no feedback.
    #[arg(long, value_name = "FILE")]
    pub labels: Vec<PathBuf>,

    /// For `--from traffic`: keep only requests that got feedback or a judge label
    /// (training needs scores).
    #[arg(long)]
    pub require_feedback: bool,

    /// Write here instead of stdout (written to a temporary file, then renamed).
    #[arg(long, short)]
    pub out: Option<PathBuf>,
}

#[derive(Debug, Clone, Copy, ValueEnum)]
pub enum SourceArg {
    Routerbench,
    Routeprofile,
    Llmrouter,
    Alpacaeval,
    Open7b,
    /// MMLU-Pro questions with 33 models' results (GPT-4o, Gemini, Llama, Qwen, ...).
    Mmlupro,
    /// RouterArena prompts with real token counts and USD costs.
    Routerarena,
    /// The gateway's traffic log, joined with feedback.
    Traffic,
}

impl SourceArg {
    fn benchmark(self) -> Option<Source> {
        Some(match self {
            SourceArg::Routerbench => Source::RouterBench,
            SourceArg::Routeprofile => Source::RouteProfile,
            SourceArg::Llmrouter => Source::LlmRouter,
            SourceArg::Alpacaeval => Source::AlpacaEval,
            SourceArg::Open7b => Source::Open7b,
            SourceArg::Mmlupro => Source::MmluPro,
            SourceArg::Routerarena => Source::RouterArena,
            SourceArg::Traffic => return None,
        })
    }
}

pub fn run(command: &DatasetsCommand) -> anyhow::Result<ExitCode> {
    match command {
        DatasetsCommand::Import(args) => import_cmd(args),
    }
}

fn import_cmd(args: &ImportArgs) -> anyhow::Result<ExitCode> {
    let Some(source) = args.from.benchmark() else {
        return import_traffic(args);
    };
    let [path] = args.paths.as_slice() else {
        anyhow::bail!(
            "--from {}: give one folder or data file (got {} paths)",
            source.name(),
            args.paths.len()
        );
    };
    anyhow::ensure!(
        args.feedback.is_empty() && args.labels.is_empty() && !args.require_feedback,
        "--feedback, --labels and --require-feedback apply only to --from traffic"
    );
    let bar = progress::bar(0, &format!("importing {}", source.name()));
    let report = import::import(source, path, &bar)?;
    let mut out = AtomicOutput::new(args.out.as_deref())?;
    for record in &report.records {
        serde_json::to_writer(&mut out, record)?;
        out.write_all(b"\n")?;
    }
    out.commit().context("cannot write the records")?;

    let mut tasks: BTreeMap<String, usize> = BTreeMap::new();
    for r in &report.records {
        *tasks
            .entry(r.task.map_or("(none)".to_owned(), |t| t.to_string()))
            .or_default() += 1;
    }
    let mut summary = std::io::stderr().lock();
    writeln!(
        summary,
        "{}: {} rows read, {} records written, {} models",
        source.name(),
        report.rows_read,
        report.records.len(),
        report.models.len()
    )?;
    writeln!(
        summary,
        "  tasks: {}",
        tasks
            .iter()
            .map(|(t, n)| format!("{t} {n}"))
            .collect::<Vec<_>>()
            .join(", ")
    )?;
    if report.skipped.is_empty() {
        writeln!(summary, "  nothing skipped")?;
    }
    for (reason, n) in &report.skipped {
        writeln!(summary, "  skipped {n}: {reason}")?;
    }
    Ok(ExitCode::SUCCESS)
}

/// Traffic logs joined with feedback → routing records.
fn import_traffic(args: &ImportArgs) -> anyhow::Result<ExitCode> {
    let (records, stats) = switchyard_gateway::traffic::to_records(
        &args.paths,
        &args.feedback,
        &args.labels,
        args.require_feedback,
    )?;
    let mut out = AtomicOutput::new(args.out.as_deref())?;
    for record in &records {
        serde_json::to_writer(&mut out, record)?;
        out.write_all(b"\n")?;
    }
    out.commit().context("cannot write the records")?;
    let mut summary = std::io::stderr().lock();
    writeln!(
        summary,
        "traffic: {} requests read, {} records written ({} with feedback)",
        stats.requests, stats.records, stats.with_feedback
    )?;
    for (n, why) in [
        (stats.skipped_failed, "the request failed"),
        (stats.skipped_cached, "answered from the cache"),
        (
            stats.skipped_no_prompt,
            "the prompt was not logged (log_prompts = false)",
        ),
        (
            stats.skipped_no_feedback,
            "no feedback (--require-feedback)",
        ),
        (
            stats.feedback_unmatched,
            "feedback for requests not in these logs (ignored)",
        ),
    ] {
        if n > 0 {
            writeln!(summary, "  skipped {n}: {why}")?;
        }
    }
    Ok(ExitCode::SUCCESS)
}
