//! `switchyard eval routing --traffic FILE --model-dir CANDIDATE`: off-policy evaluation
//! of a candidate router on logged traffic (the estimators are in `switchyard_eval::ope`).

use std::collections::BTreeSet;
use std::io::Write;
use std::process::ExitCode;

use switchyard_core::policy::Policy;
use switchyard_core::pricing::PriceTable;
use switchyard_embed::SentenceEncoder;
use switchyard_embed::heads::ClassifierHeads;
use switchyard_eval::ope::{self, LoggedRequest, OpeReport};
use switchyard_eval::route_eval::Estimate;
use switchyard_scorer::Scorer;

use super::progress;

/// What `eval routing --traffic` was asked (the traffic half of `EvalRoutingArgs`).
#[derive(Debug)]
pub struct TrafficEval<'a> {
    pub traffic: &'a [std::path::PathBuf],
    pub cache_dir: &'a std::path::Path,
    pub candidates: &'a [String],
    pub route_policy: &'a str,
    pub bootstrap: usize,
    pub seed: u64,
    pub json: bool,
}

pub fn run(
    args: &TrafficEval<'_>,
    encoder: &SentenceEncoder,
    heads: &ClassifierHeads,
    prices: &PriceTable,
    scorer: &Scorer,
) -> anyhow::Result<ExitCode> {
    let policy: Policy = args
        .route_policy
        .parse()
        .map_err(|e: String| anyhow::anyhow!("--route-policy: {e}"))?;
    let (logged, skipped) = ope::load_logged(
        args.traffic,
        encoder,
        heads,
        args.cache_dir,
        &progress::bar(0, "featurising traffic"),
    )?;
    anyhow::ensure!(
        !logged.is_empty(),
        "no logged request with a score, a cost and a propensity in {} ({skipped} left out): import the traffic with --feedback, from a gateway that logs propensities",
        args.traffic
            .iter()
            .map(|p| p.display().to_string())
            .collect::<Vec<_>>()
            .join(", ")
    );
    let models: Vec<String> = if args.candidates.is_empty() {
        let set: BTreeSet<&str> = logged.iter().map(|l| l.model.as_str()).collect();
        set.into_iter().map(str::to_owned).collect()
    } else {
        args.candidates.to_vec()
    };
    let requests: Vec<&LoggedRequest> = logged.iter().collect();
    let choices = ope::choices(scorer, &requests, &models, prices, policy)?;
    let report = ope::evaluate(&choices, args.bootstrap, args.seed);
    let mut out = std::io::stdout().lock();
    if args.json {
        serde_json::to_writer_pretty(&mut out, &report)?;
        writeln!(out)?;
    } else {
        render(&mut out, &report, skipped)?;
    }
    Ok(ExitCode::SUCCESS)
}

fn render(out: &mut impl Write, r: &OpeReport, skipped: usize) -> std::io::Result<()> {
    let show = |e: &Estimate| format!("{:.4} [{:.4}, {:.4}]", e.value, e.ci95[0], e.ci95[1]);
    let show_usd = |e: &Estimate| format!("${:.6} [{:.6}, {:.6}]", e.value, e.ci95[0], e.ci95[1]);
    writeln!(
        out,
        "{} logged requests ({skipped} without score, cost or propensity left out); the candidate agrees with {} of them; effective sample size {:.1}",
        r.requests, r.agreeing, r.effective_sample_size
    )?;
    writeln!(out, "{:<22} {:<28} cost per request", "", "quality")?;
    writeln!(
        out,
        "{:<22} {:<28} {}",
        "serving router",
        show(&r.logged_quality),
        show_usd(&r.logged_cost)
    )?;
    for (name, q, c) in [
        ("candidate, IPS", &r.quality.ips, &r.cost.ips),
        ("candidate, SNIPS", &r.quality.snips, &r.cost.snips),
        ("candidate, DR", &r.quality.dr, &r.cost.dr),
    ] {
        writeln!(out, "{name:<22} {:<28} {}", show(q), show_usd(c))?;
    }
    writeln!(
        out,
        "{:<22} {}",
        "DR gain in quality",
        show(&r.quality_gain)
    )?;
    if let Some(w) = &r.warning {
        writeln!(out, "warning: {w}")?;
    }
    Ok(())
}
