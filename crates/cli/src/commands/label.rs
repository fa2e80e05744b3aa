//! `switchyard label --judge MODEL`: grade logged answers without feedback with a judge
//! model (the library side is `switchyard_gateway::pipeline::judge`).

use std::path::PathBuf;
use std::process::ExitCode;

use clap::Args;
use switchyard_gateway::pipeline::judge::{JudgeRequest, label};
use switchyard_gateway::traffic::{FEEDBACK_FILE, LABELS_FILE};
use switchyard_gateway::{ConfigSource, load_config};

/// Grade logged answers that got no feedback with a judge model, for training.
///
/// Reads the traffic logs in the config's `[log] dir` (answers are logged with
/// `log_answers = true`), skips requests that have feedback or a grade already, asks the
/// judge (a model of the config, called through its provider) to grade each answer from 1
/// to 10 with a fixed rubric, and appends (grade − 1) / 9 with the judge's name to
/// `labels.jsonl` as it goes: stop it any time and run it again to resume. Stops at
/// --max-requests or --max-usd (the judge's own cost). Import with
/// `datasets import --from traffic ... --labels logs/labels.jsonl`; human feedback wins.
///
/// Example: switchyard label --judge gpt-4o --config switchyard.toml --max-usd 1
#[derive(Debug, Args)]
pub struct LabelArgs {
    /// The judge: a model of the config.
    #[arg(long)]
    pub judge: String,

    /// The gateway's config (providers, models, prices, the log directory).
    #[arg(long)]
    pub config: PathBuf,

    /// Grade at most this many answers in this run.
    #[arg(long, default_value_t = 1000)]
    pub max_requests: usize,

    /// Stop once the judge's answers cost this much (USD).
    #[arg(long, default_value_t = 1.0)]
    pub max_usd: f64,
}

pub fn run(args: &LabelArgs) -> anyhow::Result<ExitCode> {
    anyhow::ensure!(args.max_usd >= 0.0, "--max-usd must be ≥ 0");
    let config = load_config(&ConfigSource::File(args.config.clone()))?;
    let dir = config.log.dir.clone();
    anyhow::ensure!(
        config.log.log_answers,
        "{}: [log] log_answers is off, so the log holds no answers to grade; set log_answers = true and serve traffic first",
        args.config.display()
    );
    let runtime = switchyard_gateway::runtime::offline_runtime(&config)
        .map_err(|e| anyhow::anyhow!("{}: {e}", args.config.display()))?;
    let mut logs = switchyard_gateway::traffic::logs_in(&dir);
    logs.retain(|p| p.is_file());
    anyhow::ensure!(!logs.is_empty(), "no traffic log in {}", dir.display());
    let feedback: Vec<PathBuf> = [dir.join(FEEDBACK_FILE)]
        .into_iter()
        .filter(|p| p.is_file())
        .collect();
    let request = JudgeRequest {
        judge: args.judge.clone(),
        logs,
        feedback,
        labels: dir.join(LABELS_FILE),
        max_requests: args.max_requests,
        max_usd: args.max_usd,
    };
    switchyard_providers::install_crypto_provider();
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    let bar = super::progress::bar(0, "grading");
    let report = rt.block_on(label(&runtime, &request, &|r| {
        bar.set_position(r.graded as u64)
    }))?;
    bar.finish_and_clear();
    let mut out = std::io::stdout().lock();
    serde_json::to_writer_pretty(&mut out, &report)?;
    std::io::Write::write_all(&mut out, b"\n")?;
    Ok(ExitCode::SUCCESS)
}
