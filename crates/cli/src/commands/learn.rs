//! `switchyard learn`: the learner beside the gateway — retrains the router on the traffic
//! log and promotes what the off-policy gate accepts.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::Context;
use clap::Args;
use switchyard_embed::heads::ClassifierHeads;
use switchyard_embed::{ModelSource, SentenceEncoder};
use switchyard_learn::{
    CycleReport, CycleSetup, LearnPlan, LearnerLease, Verdict, Watch, WatchVerdict,
};
use switchyard_scorer::Scorer;

use super::model_args::CacheArgs;
use super::progress;
use super::router::{GatewayArgs, admin_call};

/// Improve the router on the gateway's own traffic, safely.
///
/// Runs beside `switchyard serve` (its own process: serving latency is untouched), reading
/// the traffic log and feedback of the config's `[log] dir`. Whenever `[learn] every` new
/// requests with feedback have arrived (checked every `[learn] interval_s`), one cycle:
/// import the traffic with feedback → train a candidate scorer on it (and `[learn]
/// priors`) → judge it off-policy against the serving router on the requests it was not
/// fitted on (doubly robust quality gain with a bootstrap interval, effective sample size)
/// → the gate refuses a candidate whose estimate rests on fewer than
/// `min_effective_sample_size` effective requests or whose whole interval lies below
/// `-tolerance`; otherwise it is promoted through the gateway's POST /admin/router (with
/// `[state]`, every replica follows). Each cycle is a line of `WORK_DIR/learn.jsonl`: data
/// counts, estimates with intervals, the decision and why.
///
/// Example: SWITCHYARD_ADMIN_KEY=... switchyard learn --config switchyard.toml --url http://127.0.0.1:8080
#[derive(Debug, Args)]
pub struct LearnArgs {
    /// The gateway's config file (its `[log]`, `[router]`, routes, models and `[learn]`).
    #[arg(long)]
    pub config: PathBuf,

    /// Run one cycle now, whatever the count of new feedback, and exit.
    #[arg(long)]
    pub once: bool,

    /// Decide but never promote (the decision is still logged).
    #[arg(long)]
    pub dry_run: bool,

    #[command(flatten)]
    pub gateway: GatewayArgs,

    #[command(flatten)]
    pub cache: CacheArgs,

    /// Bootstrap resamples for the off-policy intervals.
    #[arg(long, default_value_t = 500)]
    pub bootstrap: usize,

    /// Seed of the bootstrap and the training splits.
    #[arg(long, default_value_t = 17)]
    pub seed: u64,
}

/// What the learner holds between cycles.
struct Learner {
    plan: LearnPlan,
    encoder: SentenceEncoder,
    heads: ClassifierHeads,
    serving: Scorer,
    /// Where the serving scorer is (what a rollback promotes again).
    serving_dir: PathBuf,
    cycles: usize,
    /// The last promotion, until its live quality has been judged.
    watch: Option<Watch>,
}

pub fn run(args: &LearnArgs) -> anyhow::Result<ExitCode> {
    let config = switchyard_gateway::Config::load(&args.config)?;
    let plan = LearnPlan::from_config(&config)
        .with_context(|| format!("{}: cannot learn", args.config.display()))?;
    let encoder = SentenceEncoder::load(&ModelSource::parse(&plan.encoder), plan.device)?
        .with_truncation(switchyard_core::ROUTING_TRUNCATION);
    let heads = ClassifierHeads::load(&plan.heads_dir, encoder.info())?;
    let serving = Scorer::load(&plan.scorer_dir, encoder.info())?;
    let serving_dir = plan.scorer_dir.clone();
    let mut learner = Learner {
        plan,
        encoder,
        heads,
        serving,
        serving_dir,
        cycles: 0,
        watch: None,
    };
    let lease = lease(&config)?;
    let mut seen = 0;
    let mut waiting = false;
    loop {
        if let Some(lease) = &lease
            && !lease.held()
        {
            anyhow::ensure!(
                !args.once,
                "another learner holds the lease in the shared state ([state] url); it acts, this one would wait"
            );
            if !waiting {
                tracing::info!("another learner holds the lease; waiting to take over");
                waiting = true;
            }
            std::thread::sleep(std::time::Duration::from_secs(
                learner.plan.settings.interval_s,
            ));
            continue;
        }
        waiting = false;
        let labelled = switchyard_learn::labelled(&learner.plan.log_dir)?;
        if learner.watch.is_some() {
            learner.check_watch(args)?;
        } else if args.once || labelled >= seen + learner.plan.settings.every {
            seen = labelled;
            learner.cycle(args)?;
        }
        if args.once {
            return Ok(ExitCode::SUCCESS);
        }
        std::thread::sleep(std::time::Duration::from_secs(
            learner.plan.settings.interval_s,
        ));
    }
}

/// With shared state (`[state] url` or `SWITCHYARD_REDIS_URL`), the lease that lets one
/// learner act among several.
fn lease(config: &switchyard_gateway::Config) -> anyhow::Result<Option<LearnerLease>> {
    let url = config.state.url.clone().or_else(|| {
        std::env::var("SWITCHYARD_REDIS_URL")
            .ok()
            .filter(|u| !u.is_empty())
    });
    let Some(url) = url else {
        return Ok(None);
    };
    let options = switchyard_state::StateOptions {
        url,
        prefix: config.state.key_prefix.clone(),
        timeout: std::time::Duration::from_millis(config.state.timeout_ms),
        ids_ttl: std::time::Duration::from_secs(config.state.ids_ttl_s),
    };
    let lease = LearnerLease::start(options).context("state.url")?;
    tracing::info!(
        holder = lease.holder(),
        "competing for the learner's lease in the shared state"
    );
    Ok(Some(lease))
}

impl Learner {
    /// One cycle: train, judge, log, and promote what the gate accepts.
    fn cycle(&mut self, args: &LearnArgs) -> anyhow::Result<()> {
        self.cycles += 1;
        let work = self.plan.settings.work_dir.clone();
        let setup = CycleSetup {
            log_dir: &self.plan.log_dir,
            work_dir: &work,
            heads_dir: &self.plan.heads_dir,
            cache_dir: &args.cache.cache_dir,
            encoder: &self.encoder,
            heads: &self.heads,
            models: &self.plan.models,
            prices: &self.plan.prices,
            policy: self.plan.policy,
            bootstrap: args.bootstrap,
            seed: args.seed,
            gate: self.plan.gate,
            priors: &self.plan.settings.priors,
        };
        let (report, candidate) =
            switchyard_learn::run_cycle(&setup, self.cycles, &self.serving, &progress::Bars)?;
        let promoted = match (&report.verdict, args.dry_run) {
            (Verdict::Promote, false) => Some(self.promote(&report.candidate_dir, &args.gateway)?),
            _ => None,
        };
        if let Some((version, previous)) = &promoted {
            self.watch_promotion(
                version,
                previous.as_deref(),
                &report.candidate_dir,
                args.seed,
            )?;
        }
        let promoted = promoted.map(|(v, _)| v);
        let line = serde_json::json!({"report": &report, "promoted_version": promoted, "dry_run": args.dry_run});
        switchyard_learn::append_log(&work.join("learn.jsonl"), &line)?;
        print_cycle(&report, promoted.as_deref())?;
        if promoted.is_some() {
            self.serving = candidate;
        }
        Ok(())
    }

    /// Serves the scorer in `dir` through the gateway's admin endpoint; returns its version
    /// and the one it replaced.
    fn promote(
        &self,
        dir: &Path,
        gateway: &GatewayArgs,
    ) -> anyhow::Result<(String, Option<String>)> {
        let dir = std::path::absolute(dir)?;
        let body = admin_call(
            gateway,
            "/admin/router",
            Some(serde_json::json!({"scorer": dir})),
        )?;
        let version = body["router_version"].as_str().unwrap_or_default();
        Ok((
            version.to_owned(),
            body["previous"].as_str().map(str::to_owned),
        ))
    }

    /// Starts watching `version`, promoted over `previous`: the previous router's live
    /// quality now is the bar. The candidate in `dir` serves from now on.
    fn watch_promotion(
        &mut self,
        version: &str,
        previous: Option<&str>,
        dir: &Path,
        seed: u64,
    ) -> anyhow::Result<()> {
        let previous_dir = std::mem::replace(&mut self.serving_dir, dir.to_path_buf());
        let Some(previous) = previous else {
            return Ok(());
        };
        let records = switchyard_learn::watch::labelled_records(&self.plan.log_dir)?;
        let (_, baseline) = switchyard_learn::watch::live_quality(&records, previous, seed);
        self.watch = Some(Watch {
            version: version.to_owned(),
            previous: previous.to_owned(),
            previous_dir,
            baseline,
            requests: self.plan.settings.watch_requests,
        });
        Ok(())
    }

    /// Judges the watched promotion's live quality; rolls back when it is below the
    /// previous router's interval.
    fn check_watch(&mut self, args: &LearnArgs) -> anyhow::Result<()> {
        let Some(watch) = self.watch.clone() else {
            return Ok(());
        };
        let records = switchyard_learn::watch::labelled_records(&self.plan.log_dir)?;
        let (served, live) =
            switchyard_learn::watch::live_quality(&records, &watch.version, args.seed);
        let verdict = watch.judge(served, &live, self.plan.settings.tolerance);
        if matches!(verdict, WatchVerdict::Waiting { .. }) {
            return Ok(());
        }
        let mut rolled_back = None;
        if matches!(verdict, WatchVerdict::RollBack { .. }) && !args.dry_run {
            let (version, _) = self.promote(&watch.previous_dir, &args.gateway)?;
            self.serving = Scorer::load(&watch.previous_dir, self.encoder.info())?;
            self.serving_dir = watch.previous_dir.clone();
            rolled_back = Some(version);
        }
        let line = serde_json::json!({"watched": &watch, "verdict": &verdict, "live": live,
                                      "rolled_back_to": rolled_back});
        let log = self.plan.settings.work_dir.join("learn.jsonl");
        switchyard_learn::append_log(&log, &line)?;
        let said = serde_json::to_string(&verdict)?;
        writeln!(
            std::io::stdout().lock(),
            "watch of {}: {said}",
            watch.version
        )?;
        self.watch = None;
        Ok(())
    }
}

fn print_cycle(r: &CycleReport, promoted: Option<&str>) -> anyhow::Result<()> {
    let decision = match (&r.verdict, promoted) {
        (Verdict::Promote, Some(v)) => format!("promoted as {v}"),
        (Verdict::Promote, None) => "would promote (dry run)".to_owned(),
        (Verdict::Refuse { why }, _) => format!("refused: {why}"),
    };
    writeln!(
        std::io::stdout().lock(),
        "cycle {}: {} requests with feedback; quality gain {:+.4} [{:+.4}, {:+.4}], {:.0} effective; {decision}",
        r.cycle,
        r.records,
        r.gain.value,
        r.gain.ci95[0],
        r.gain.ci95[1],
        r.estimate.effective_sample_size,
    )?;
    Ok(())
}
