//! What `eval loop` measures and prints: per round and at the end.

use std::collections::BTreeMap;
use std::io::Write;

use serde::Serialize;
use switchyard_core::{Outcome, RoutingRecord};
use switchyard_eval::compare::{Comparison, compare as compare_all, knn_bandit};
use switchyard_eval::ope::{LoggedRequest, OpeReport};
use switchyard_eval::plot::{CurveLine, plot_learning};
use switchyard_eval::route_eval::{Estimate, Predicted, SweptPolicy};

use super::args::EvalLoopArgs;
use super::gateway::Served;
use super::world::{World, WorldPrompt};
use switchyard_training::scorer::RoutedPrompt;

/// What the report reads of the loop: its options, its world, the held-out prompts.
#[derive(Debug, Clone, Copy)]
pub struct Setting<'a> {
    pub args: &'a EvalLoopArgs,
    pub world: &'a World,
    pub holdout: &'a [RoutedPrompt],
}

/// One round.
#[derive(Debug, Clone, Serialize)]
pub struct Round {
    pub round: usize,
    pub requests: usize,
    /// Mean score and cost of this round's answers.
    pub served_quality: f64,
    pub served_cost_usd: f64,
    pub explored_share: f64,
    pub explored_cost_usd: f64,
    /// The candidate trained after this round, off-policy on the logged requests whose
    /// prompts it was not fitted on.
    pub ope: OpeReport,
    /// DR quality of the candidate minus the serving router's on those requests: it is
    /// promoted when positive.
    pub gain_over_serving: Estimate,
    /// The version promoted after this round, if the candidate won.
    pub promoted: Option<String>,
    /// Held-out AIQ of the router serving after this round, and of the candidate.
    pub holdout_aiq_serving: f64,
    pub holdout_aiq_candidate: f64,
    /// The candidate's true mean quality and cost on the holdout under the serving policy
    /// (what `ope.quality.dr` estimates).
    pub holdout_quality_candidate: f64,
    pub holdout_cost_candidate: f64,
}

impl Round {
    pub fn new(
        r: usize,
        batch: &[Served],
        (ope, gain_over_serving): (OpeReport, Estimate),
        promoted: Option<String>,
        holdout_aiq_serving: f64,
        holdout_aiq_candidate: f64,
        truth: (f64, f64),
    ) -> Self {
        let n = batch.len().max(1) as f64;
        let explored: Vec<&Served> = batch.iter().filter(|s| s.explored).collect();
        Self {
            round: r + 1,
            requests: batch.len(),
            served_quality: batch.iter().map(|s| s.score).sum::<f64>() / n,
            served_cost_usd: batch.iter().map(|s| s.cost).sum::<f64>() / n,
            explored_share: explored.len() as f64 / n,
            explored_cost_usd: explored.iter().map(|s| s.cost).sum(),
            ope,
            gain_over_serving,
            promoted,
            holdout_aiq_serving,
            holdout_aiq_candidate,
            holdout_quality_candidate: truth.0,
            holdout_cost_candidate: truth.1,
        }
    }
}

/// A router on the holdout: its predictions per prompt and model.
pub struct Reference {
    pub name: String,
    pub predicted: Predicted,
}

/// Served quality per dollar: the loop's, and each model's had it served every request.
#[derive(Debug, Clone, Serialize)]
pub struct ServedFigures {
    pub quality: f64,
    pub cost_usd: f64,
    pub quality_per_dollar: f64,
    pub singles: BTreeMap<String, (f64, f64, f64)>,
}

#[derive(Debug, Clone, Serialize)]
pub struct Report {
    pub world: String,
    pub models: Vec<String>,
    pub unknown_models: bool,
    pub policy: String,
    pub explore: f64,
    pub requests: usize,
    pub holdout_prompts: usize,
    pub rounds: Vec<Round>,
    pub promotions: usize,
    /// Over every request: mean quality, cost, quality per dollar; each model alone on
    /// the same requests (quality, cost, quality per dollar).
    pub served: ServedFigures,
    pub holdout: Comparison,
    /// kNN's k (best on the holdout among those tried: a generous baseline).
    pub knn_k: usize,
    pub seconds: f64,
}

impl Report {
    pub fn new(
        sim: Setting<'_>,
        rounds: Vec<Round>,
        refs: Vec<Reference>,
        served: &[Served],
        seconds: f64,
    ) -> Self {
        let args = sim.args;
        let contenders: Vec<(String, Predicted)> =
            refs.into_iter().map(|r| (r.name, r.predicted)).collect();
        let pairs = [
            ("final", "knn"),
            ("final", "start"),
            ("final", "full-information"),
            ("knn", "full-information"),
            ("final", "uniform-logging"),
            ("uniform-logging", "full-information"),
        ];
        let holdout = compare(sim, &contenders, &pairs).unwrap_or_else(|_| empty());
        let knn_k = contenders
            .iter()
            .find_map(|(n, _)| n.strip_prefix("knn@").and_then(|k| k.parse().ok()))
            .unwrap_or(0);
        Self {
            // The file name only: reports are committed, machine paths are not.
            world: args.world.file_name().map_or_else(
                || args.world.display().to_string(),
                |n| n.to_string_lossy().into_owned(),
            ),
            models: sim.world.models.clone(),
            unknown_models: args.unknown_models,
            policy: args.policy.clone(),
            explore: args.explore,
            requests: served.len(),
            holdout_prompts: sim.holdout.len(),
            promotions: rounds.iter().filter(|r| r.promoted.is_some()).count(),
            rounds,
            served: served_figures(sim.world, served),
            holdout,
            knn_k,
            seconds,
        }
    }
}

fn empty() -> Comparison {
    Comparison {
        prompts: 0,
        contenders: vec![],
        singles: vec![],
        random_aiq: Estimate {
            value: f64::NAN,
            ci95: [f64::NAN; 2],
        },
        differences: BTreeMap::new(),
        gain_shares: BTreeMap::new(),
    }
}

fn served_figures(world: &World, served: &[Served]) -> ServedFigures {
    let q: f64 = served.iter().map(|s| s.score).sum();
    let c: f64 = served.iter().map(|s| s.cost).sum();
    let n = served.len().max(1) as f64;
    let singles = world
        .models
        .iter()
        .enumerate()
        .map(|(m, name)| {
            let (q, c) = served.iter().fold((0.0, 0.0), |(q, c), s| {
                let a = &world.prompts[s.prompt].answers[m];
                (q + a.score, c + a.cost_usd)
            });
            (name.clone(), (q / n, c / n, q / c.max(f64::MIN_POSITIVE)))
        })
        .collect();
    ServedFigures {
        quality: q / n,
        cost_usd: c / n,
        quality_per_dollar: q / c.max(f64::MIN_POSITIVE),
        singles,
    }
}

/// The holdout comparison of `contenders`, with the `pairs`' differences. kNN contenders
/// are named `knn@K`; pairs name them `knn`.
pub fn compare(
    sim: Setting<'_>,
    contenders: &[(String, Predicted)],
    pairs: &[(&str, &str)],
) -> anyhow::Result<Comparison> {
    let actual: Vec<switchyard_eval::route_eval::Actual> = sim
        .holdout
        .iter()
        .map(|p| {
            let (score, cost) = sim
                .world
                .models
                .iter()
                .map(|m| {
                    let o = &p.outcomes[m];
                    (o.score.unwrap_or(0.0), o.cost_usd.unwrap_or(0.0))
                })
                .unzip();
            switchyard_eval::route_eval::Actual { score, cost }
        })
        .collect();
    let renamed: Vec<(String, Predicted)> = contenders
        .iter()
        .map(|(n, p)| {
            (
                if n.starts_with("knn@") {
                    "knn".to_owned()
                } else {
                    n.clone()
                },
                p.clone(),
            )
        })
        .collect();
    let pairs: Vec<(&str, &str)> = pairs
        .iter()
        .copied()
        .filter(|(a, b)| [a, b].iter().all(|x| renamed.iter().any(|(n, _)| n == *x)))
        .collect();
    Ok(compare_all(
        &actual,
        &sim.world.models,
        &renamed,
        &pairs,
        SweptPolicy::Tradeoff,
        sim.args.bootstrap,
        sim.args.seed,
    )?)
}

/// kNN on the logged traffic: each model's mean logged score over the `k` most similar
/// logged prompts it answered (the prior when it answered none); k is the best of a few
/// on the holdout, which favours kNN.
pub fn knn(sim: Setting<'_>, logged: &[LoggedRequest]) -> Reference {
    let models = &sim.world.models;
    let neighbours: Vec<(&[f32], usize, f64)> = logged
        .iter()
        .filter_map(|l| {
            let m = models.iter().position(|m| *m == l.model)?;
            Some((l.prompt.embedding.as_slice(), m, l.reward))
        })
        .collect();
    let queries: Vec<&[f32]> = sim.holdout.iter().map(|p| p.embedding.as_slice()).collect();
    let predict = |k: usize| -> Predicted {
        knn_bandit(&queries, &neighbours, models.len(), k)
            .into_iter()
            .zip(sim.holdout)
            .map(|(row, p)| {
                row.into_iter()
                    .zip(models)
                    .map(|(q, name)| {
                        let price = sim.world.prices[name];
                        let cost = price.cost(p.input_tokens as f64, sim.args.output_tokens as f64);
                        (q.unwrap_or(switchyard_router::DEFAULT_QUALITY_PRIOR), cost)
                    })
                    .collect()
            })
            .collect()
    };
    let best = [5, 10, 20, 50, 100]
        .into_iter()
        .map(|k| {
            let p = predict(k);
            let aiq = compare(sim, &[("knn@k".into(), p.clone())], &[])
                .map_or(f64::NEG_INFINITY, |c| c.contenders[0].aiq.value);
            (aiq, k, p)
        })
        .max_by(|a, b| a.0.total_cmp(&b.0));
    match best {
        Some((_, k, predicted)) => Reference {
            name: format!("knn@{k}"),
            predicted,
        },
        None => Reference {
            name: "knn@0".into(),
            predicted: vec![],
        },
    }
}

/// A world prompt's outcomes as routing-record outcomes.
pub fn outcomes(world: &World, p: &WorldPrompt) -> BTreeMap<String, Outcome> {
    world
        .models
        .iter()
        .zip(&p.answers)
        .map(|(m, a)| {
            (
                m.clone(),
                Outcome {
                    score: Some(a.score),
                    cost_usd: Some(a.cost_usd),
                    input_tokens: Some(a.input_tokens),
                    output_tokens: Some(a.output_tokens),
                    latency_ms: None,
                },
            )
        })
        .collect()
}

/// World prompt `i` as a routing record with every outcome (the full-information data).
pub fn record(world: &World, i: usize) -> RoutingRecord {
    let p = &world.prompts[i];
    RoutingRecord {
        v: switchyard_core::RECORD_VERSION,
        id: p.id.clone(),
        source: "world".into(),
        task: None,
        task_predicted: false,
        prompt: Some(p.text.clone()),
        messages: None,
        outcomes: outcomes(world, p),
        logged: None,
    }
}

/// Prints the report (JSON or a table) and draws the learning curve.
pub fn emit(report: &Report, args: &EvalLoopArgs) -> anyhow::Result<()> {
    if let Some(path) = &args.plot {
        plot_learning(
            &curve(report),
            "Learning from traffic: held-out AIQ of the serving router",
            path,
        )?;
    }
    let mut out = std::io::stdout().lock();
    if args.json {
        serde_json::to_writer_pretty(&mut out, report)?;
        writeln!(out)?;
        return Ok(());
    }
    write_rounds(&mut out, report)?;
    write_holdout(&mut out, report)?;
    write_served(&mut out, &report.served)
}

/// One line per round: what was served, the candidate's estimates and whether it went in.
fn write_rounds(out: &mut impl Write, report: &Report) -> std::io::Result<()> {
    writeln!(
        out,
        "{} requests over {} rounds, {} promotions, {:.0} s",
        report.requests,
        report.rounds.len(),
        report.promotions,
        report.seconds
    )?;
    writeln!(
        out,
        "{:<6} {:>8} {:>10} {:>9} {:>10} {:>22} {:>9} {:>10}",
        "round", "quality", "cost $", "explored", "vs serving", "OPE DR [95%]", "truth", "promoted"
    )?;
    for r in &report.rounds {
        let dr = &r.ope.quality.dr;
        writeln!(
            out,
            "{:<6} {:>8.4} {:>10.6} {:>8.1}% {:>+10.4} {:>8.4} [{:.4}, {:.4}] {:>9.4} {:>10}  (ESS {:.0}, SNIPS {:.4})",
            r.round,
            r.served_quality,
            r.served_cost_usd,
            r.explored_share * 100.0,
            r.gain_over_serving.value,
            dr.value,
            dr.ci95[0],
            dr.ci95[1],
            r.holdout_quality_candidate,
            r.promoted.as_deref().unwrap_or("-"),
            r.ope.effective_sample_size,
            r.ope.quality.snips.value
        )?;
    }
    Ok(())
}

/// Every router's held-out AIQ, the differences and the gain shares.
fn write_holdout(out: &mut impl Write, report: &Report) -> std::io::Result<()> {
    writeln!(
        out,
        "\nheld-out AIQ ({} prompts never served):",
        report.holdout_prompts
    )?;
    for c in &report.holdout.contenders {
        writeln!(
            out,
            "  {:<18} {:.4} [{:.4}, {:.4}]",
            c.name, c.aiq.value, c.aiq.ci95[0], c.aiq.ci95[1]
        )?;
    }
    writeln!(
        out,
        "  {:<18} {:.4}",
        "random mixing", report.holdout.random_aiq.value
    )?;
    for (name, e) in report
        .holdout
        .differences
        .iter()
        .chain(&report.holdout.gain_shares)
    {
        writeln!(
            out,
            "  {name:<32} {:+.4} [{:+.4}, {:+.4}]",
            e.value, e.ci95[0], e.ci95[1]
        )?;
    }
    Ok(())
}

/// Served quality and cost next to each single model's on the same requests.
fn write_served(out: &mut impl Write, s: &ServedFigures) -> anyhow::Result<()> {
    writeln!(
        out,
        "\nserved: quality {:.4}, cost ${:.6}/request, {:.0} quality per $",
        s.quality, s.cost_usd, s.quality_per_dollar
    )?;
    for (m, (q, c, qpd)) in &s.singles {
        writeln!(
            out,
            "  {m:<48} quality {q:.4}, cost ${c:.6}, {qpd:.0} per $"
        )?;
    }
    Ok(())
}

/// The learning curve: the serving router's held-out AIQ after each round (from the start
/// router's), with the references as horizontal lines.
fn curve(report: &Report) -> Vec<CurveLine> {
    let per_round = report.requests as f64 / report.rounds.len().max(1) as f64;
    let aiq = |name: &str| {
        report
            .holdout
            .contenders
            .iter()
            .find(|c| c.name == name)
            .map(|c| c.aiq.value)
    };
    let mut serving = Vec::new();
    if let Some(start) = aiq("start") {
        serving.push((0.0, start));
    }
    for r in &report.rounds {
        serving.push((per_round * r.round as f64, r.holdout_aiq_serving));
    }
    let mut lines = vec![CurveLine {
        name: "serving router".into(),
        points: serving,
    }];
    for name in ["full-information", "uniform-logging", "knn"] {
        if let Some(v) = aiq(name) {
            lines.push(CurveLine {
                name: format!("{name} (end)"),
                points: vec![(0.0, v)],
            });
        }
    }
    lines.push(CurveLine {
        name: "random mixing".into(),
        points: vec![(0.0, report.holdout.random_aiq.value)],
    });
    lines
}
