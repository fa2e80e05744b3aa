//! The learner: what makes the router better on its own traffic, as a library the
//! `switchyard learn` command and the loop simulator (`switchyard eval loop`) both run, so
//! no rule lives only in a simulator.
//!
//! One cycle: every traffic log so far, joined with feedback, becomes routing records
//! ([`import_traffic`]); a candidate scorer is trained on them ([`train_candidate`]); it is
//! judged off-policy against the serving router on the logged requests it was not fitted
//! on ([`off_policy`]: doubly robust difference with a bootstrap interval, and the
//! effective sample size); the [`Gate`] decides; the decision and its evidence are one
//! line of `learn.jsonl` ([`append_log`]).

pub mod error;
pub mod gate;
pub mod lease;
pub mod plan;
pub mod watch;

use std::path::{Path, PathBuf};

use serde::Serialize;
use switchyard_core::policy::Policy;
use switchyard_core::pricing::PriceTable;
use switchyard_embed::SentenceEncoder;
use switchyard_embed::heads::ClassifierHeads;
use switchyard_eval::ope::{self, LoggedRequest, OpeReport};
use switchyard_eval::route_eval::Estimate;
use switchyard_scorer::{QualityConfig, Scorer};
use switchyard_training::data::Split;
use switchyard_training::scorer::{ScorerRequest, default_grid, pooled_grid, train_scorer};
use switchyard_training::train::Phases;

pub use error::LearnError;
pub use gate::{Gate, Verdict};
pub use lease::LearnerLease;
pub use plan::{LearnPlan, PlanError};
pub use watch::{Watch, WatchVerdict};

fn io_at(path: &Path) -> impl FnOnce(std::io::Error) -> LearnError + '_ {
    move |source| LearnError::Io {
        path: path.to_owned(),
        source,
    }
}

/// What a cycle needs: where the traffic is, the router's parts, how it routes.
#[derive(Debug)]
pub struct CycleSetup<'a> {
    /// The gateway's traffic log directory (`[log] dir`): its logs and `feedback.jsonl`.
    pub log_dir: &'a Path,
    /// Where the cycle writes the imported traffic and its candidates.
    pub work_dir: &'a Path,
    pub heads_dir: &'a Path,
    /// The embeddings cache (`.cache/embeddings`).
    pub cache_dir: &'a Path,
    pub encoder: &'a SentenceEncoder,
    pub heads: &'a ClassifierHeads,
    /// The models the route chooses among, and their prices.
    pub models: &'a [String],
    pub prices: &'a PriceTable,
    pub policy: Policy,
    pub bootstrap: usize,
    pub seed: u64,
    pub gate: Gate,
    /// Benchmark records trained on beside the traffic (priors for the models they know).
    pub priors: &'a [PathBuf],
}

/// Every traffic log under `log_dir` so far, joined with its feedback (requests without
/// feedback left out), written as routing records to `out`; returns how many.
pub fn import_traffic(log_dir: &Path, out: &Path) -> Result<usize, LearnError> {
    let logs = switchyard_gateway::traffic::logs_in(log_dir);
    let feedback = vec![log_dir.join(switchyard_gateway::traffic::FEEDBACK_FILE)];
    let (records, _) = switchyard_gateway::traffic::to_records(&logs, &feedback, &[], true)?;
    let mut text = String::new();
    for r in &records {
        let line = serde_json::to_string(r).map_err(|e| io_at(out)(std::io::Error::other(e)))?;
        text.push_str(&line);
        text.push('\n');
    }
    std::fs::write(out, text).map_err(io_at(out))?;
    Ok(records.len())
}

/// How many logged requests under `log_dir` have feedback (what a cycle can learn from).
pub fn labelled(log_dir: &Path) -> Result<usize, LearnError> {
    let logs = switchyard_gateway::traffic::logs_in(log_dir);
    let feedback = vec![log_dir.join(switchyard_gateway::traffic::FEEDBACK_FILE)];
    Ok(
        switchyard_gateway::traffic::to_records(&logs, &feedback, &[], true)?
            .0
            .len(),
    )
}

/// The configurations a cycle compares: logistic regression at two strengths and an
/// elastic net, without cluster features (the default grid's 48-cluster variants need more
/// data than a cycle brings and take most of the fitting time), and the pooled ridge
/// (prompt difficulty plus model ability, sharing strength across models).
pub fn cycle_grid() -> Vec<QualityConfig> {
    default_grid()
        .into_iter()
        .filter(|c| c.clusters == 0)
        .take(3)
        .chain(pooled_grid())
        .collect()
}

/// A scorer trained on the imported `traffic` (and the setup's priors), written to `out`.
pub fn train_candidate(
    setup: &CycleSetup<'_>,
    traffic: &Path,
    out: &Path,
    phases: &dyn Phases,
) -> Result<Scorer, LearnError> {
    let mut data = setup.priors.to_vec();
    data.push(traffic.to_path_buf());
    let request = ScorerRequest {
        data,
        exclude_sources: vec![],
        heads_dir: setup.heads_dir.to_path_buf(),
        out: out.to_path_buf(),
        cache_dir: setup.cache_dir.to_path_buf(),
        grid: cycle_grid(),
        prior_weight: None,
        traffic_weight: 1,
    };
    let (_, candidate) = train_scorer(&request, setup.encoder, setup.heads, phases)?;
    Ok(candidate)
}

/// The candidate off-policy on every logged request whose prompt it was not fitted on
/// (the train split is by prompt): its own estimate, and the DR difference against the
/// serving router, both judged with the candidate's predictions as the reward model
/// (fitted on the most data; a router's own predictions flatter its own choices).
pub fn off_policy(
    setup: &CycleSetup<'_>,
    traffic: &Path,
    candidate: &Scorer,
    serving: &Scorer,
    progress: &indicatif::ProgressBar,
) -> Result<(OpeReport, Estimate), LearnError> {
    let (logged, _) = ope::load_logged(
        &[traffic.to_path_buf()],
        setup.encoder,
        setup.heads,
        setup.cache_dir,
        progress,
    )?;
    let unseen: Vec<&LoggedRequest> = logged
        .iter()
        .filter(|l| l.prompt.split != Split::Train)
        .collect();
    let (models, prices, policy) = (setup.models, setup.prices, setup.policy);
    let choices = ope::choices(candidate, &unseen, models, prices, policy)?;
    let mut incumbent = ope::choices(serving, &unseen, models, prices, policy)?;
    for (i, c) in incumbent.iter_mut().zip(&choices) {
        i.predicted.clone_from(&c.predicted);
    }
    let (bootstrap, seed) = (setup.bootstrap, setup.seed);
    Ok((
        ope::evaluate(&choices, bootstrap, seed),
        ope::dr_difference(&choices, &incumbent, bootstrap, seed),
    ))
}

/// One cycle's evidence and decision: a line of `learn.jsonl`.
#[derive(Debug, Clone, Serialize)]
pub struct CycleReport {
    pub cycle: usize,
    /// Logged requests with feedback, imported.
    pub records: usize,
    pub candidate_dir: PathBuf,
    /// The candidate's own off-policy estimate (IPS, SNIPS, DR; effective sample size).
    pub estimate: OpeReport,
    /// Its DR quality gain over the serving router.
    pub gain: Estimate,
    pub gate: Gate,
    #[serde(flatten)]
    pub verdict: Verdict,
}

/// Imports, trains and judges one candidate against `serving`; the candidate is written
/// to `work_dir/cycle-N`. The caller promotes it when the verdict says so.
pub fn run_cycle(
    setup: &CycleSetup<'_>,
    cycle: usize,
    serving: &Scorer,
    phases: &dyn Phases,
) -> Result<(CycleReport, Scorer), LearnError> {
    std::fs::create_dir_all(setup.work_dir).map_err(io_at(setup.work_dir))?;
    let traffic = setup.work_dir.join("traffic.jsonl");
    let records = import_traffic(setup.log_dir, &traffic)?;
    let out = setup.work_dir.join(format!("cycle-{cycle}"));
    let candidate = train_candidate(setup, &traffic, &out, phases)?;
    let progress = phases.phase("featurising traffic");
    let (estimate, gain) = off_policy(setup, &traffic, &candidate, serving, &progress)?;
    progress.finish_and_clear();
    let verdict = setup.gate.judge(&gain, estimate.effective_sample_size);
    let report = CycleReport {
        cycle,
        records,
        candidate_dir: out,
        estimate,
        gain,
        gate: setup.gate,
        verdict,
    };
    Ok((report, candidate))
}

/// Appends `report` as one JSON line to `path` (the learner's log).
pub fn append_log(path: &Path, report: &impl Serialize) -> Result<(), LearnError> {
    use std::io::Write;
    let line = serde_json::to_string(report).map_err(|e| io_at(path)(std::io::Error::other(e)))?;
    let mut file = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)
        .map_err(io_at(path))?;
    writeln!(file, "{line}").map_err(io_at(path))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_log_gets_one_line_per_report() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("learn.jsonl");
        append_log(&path, &Verdict::Promote).unwrap();
        append_log(&path, &Verdict::Refuse { why: "x".into() }).unwrap();
        let text = std::fs::read_to_string(&path).unwrap();
        assert_eq!(
            text,
            "{\"decision\":\"promote\"}\n{\"decision\":\"refuse\",\"why\":\"x\"}\n"
        );
    }
}
