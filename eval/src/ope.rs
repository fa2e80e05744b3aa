//! Off-policy evaluation: what a candidate router would have achieved on logged traffic
//! that another router served, from the one outcome logged per request.
//!
//! Each logged request `i` was answered by model `a_i`, which the serving router chose with
//! probability `p_i` (its logged propensity), and scored `r_i` (feedback or a judge). The
//! candidate, a deterministic policy, would choose `π(x_i)`. With `w_i = [π(x_i) = a_i] / p_i`:
//!
//! - **IPS** (inverse propensity): `mean(w_i · r_i)` — unbiased when every choice the
//!   candidate makes had a non-zero logged probability, noisy when propensities are small;
//! - **SNIPS** (self-normalised): `Σ w_i r_i / Σ w_i` — slightly biased, much steadier;
//! - **DR** (doubly robust): `mean(q̂(x_i, π(x_i)) + w_i (r_i − q̂(x_i, a_i)))`, with `q̂` the
//!   candidate's own predicted quality: unbiased if either the propensities or `q̂` are right.
//!
//! In DR the weight is clipped at [`MAX_WEIGHT`] (a request the serving router chose with
//! probability under 5% counts as if 5%): a little bias for much less variance, the usual
//! trade when exploration is a few percent spread over many models. Cost is estimated the
//! same ways. Intervals are percentile bootstraps over requests. The
//! effective sample size `(Σ w)² / Σ w²` says how many logged requests the estimate really
//! rests on; below [`MIN_ESS`] the report warns that overlap is too thin to trust it.

use std::path::{Path, PathBuf};

use indicatif::ProgressBar;
use serde::Serialize;
use switchyard_core::policy::{Candidate, Constraints, Policy, decide};
use switchyard_core::pricing::PriceTable;
use switchyard_core::read_records;
use switchyard_embed::SentenceEncoder;
use switchyard_embed::heads::ClassifierHeads;
use switchyard_router::{CandidateSpec, DEFAULT_QUALITY_PRIOR, predict_candidates};
use switchyard_scorer::Scorer;
use switchyard_training::classifier::SplitMix;
use switchyard_training::scorer::{LoadedPrompt, RoutedPrompt, ScorerTrainError, featurise};

use crate::route_eval::{Estimate, RouteEvalError};

/// The largest importance weight DR uses.
pub const MAX_WEIGHT: f64 = 20.0;

/// Below this effective sample size the estimate is flagged as unreliable.
pub const MIN_ESS: f64 = 30.0;

/// One logged request, as the estimators need it.
#[derive(Debug, Clone, PartialEq)]
pub struct LoggedChoice {
    /// Index of the model that answered.
    pub served: usize,
    /// The probability the serving router gave it.
    pub propensity: f64,
    /// Its score.
    pub reward: f64,
    /// What the answer cost.
    pub cost: f64,
    /// Index of the model the candidate would choose.
    pub target: usize,
    /// The candidate's predicted quality and cost for every model.
    pub predicted: Vec<(f64, f64)>,
}

/// Estimates of one quantity (quality or cost) under the candidate.
#[derive(Debug, Clone, Serialize)]
pub struct Estimates {
    pub ips: Estimate,
    pub snips: Estimate,
    pub dr: Estimate,
}

#[derive(Debug, Clone, Serialize)]
pub struct OpeReport {
    /// Logged requests with a score and a propensity.
    pub requests: usize,
    /// Of those, where the candidate agrees with the served model.
    pub agreeing: usize,
    pub effective_sample_size: f64,
    /// What the serving router achieved (on-policy means).
    pub logged_quality: Estimate,
    pub logged_cost: Estimate,
    pub quality: Estimates,
    pub cost: Estimates,
    /// DR quality of the candidate minus the logged quality.
    pub quality_gain: Estimate,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub warning: Option<String>,
}

/// Point estimates over the requests in `sample`: logged quality and cost, then IPS,
/// SNIPS and DR of quality and of cost.
fn point(logged: &[LoggedChoice], sample: &[usize]) -> [f64; 8] {
    let n = sample.len().max(1) as f64;
    let mut s = [0.0; 9];
    for &i in sample {
        let l = &logged[i];
        let w = if l.target == l.served {
            1.0 / l.propensity
        } else {
            0.0
        };
        let (q_target, c_target) = l.predicted[l.target];
        let (q_served, c_served) = l.predicted[l.served];
        s[0] += l.reward;
        s[1] += l.cost;
        s[2] += w * l.reward;
        s[3] += w * l.cost;
        s[4] += w;
        let clipped = w.min(MAX_WEIGHT);
        s[5] += q_target + clipped * (l.reward - q_served);
        s[6] += c_target + clipped * (l.cost - c_served);
    }
    let w_sum = s[4].max(f64::MIN_POSITIVE);
    // Scores lie in [0, 1] and costs are never negative, so a candidate's mean does too:
    // IPS and DR can overshoot (a rare choice's large weight, a prediction far from the
    // outcome), and an estimate outside the possible range is clipped to it.
    let unit = |v: f64| v.clamp(0.0, 1.0);
    [
        s[0] / n,
        s[1] / n,
        unit(s[2] / n),
        s[2] / w_sum,
        unit(s[5] / n),
        (s[3] / n).max(0.0),
        s[3] / w_sum,
        (s[6] / n).max(0.0),
    ]
}

/// Runs the estimators with `bootstrap` resamples.
pub fn evaluate(logged: &[LoggedChoice], bootstrap: usize, seed: u64) -> OpeReport {
    let all: Vec<usize> = (0..logged.len()).collect();
    let full = point(logged, &all);
    let mut rng = SplitMix::new(seed);
    let mut draws: Vec<[f64; 8]> = Vec::with_capacity(bootstrap);
    for _ in 0..bootstrap {
        if logged.is_empty() {
            break;
        }
        let sample: Vec<usize> = (0..logged.len())
            .map(|_| (rng.next_u64() % logged.len() as u64) as usize)
            .collect();
        draws.push(point(logged, &sample));
    }
    let est = |k: usize| Estimate {
        value: full[k],
        ci95: crate::route_eval::percentile_ci(draws.iter().map(|d| d[k]).collect()),
    };
    let gain = Estimate {
        value: full[4] - full[0],
        ci95: crate::route_eval::percentile_ci(draws.iter().map(|d| d[4] - d[0]).collect()),
    };
    let weights: Vec<f64> = logged
        .iter()
        .map(|l| {
            if l.target == l.served {
                1.0 / l.propensity
            } else {
                0.0
            }
        })
        .collect();
    let (w1, w2) = weights
        .iter()
        .fold((0.0, 0.0), |(a, b), w| (a + w, b + w * w));
    let ess = if w2 > 0.0 { w1 * w1 / w2 } else { 0.0 };
    let warning = (ess < MIN_ESS).then(|| {
        format!(
            "effective sample size {ess:.1} < {MIN_ESS}: the candidate rarely chooses what was served, so IPS/SNIPS rest on few requests; DR leans on the candidate's own predictions. Explore more (routes.NAME.explore) or log longer before trusting this"
        )
    });
    OpeReport {
        requests: logged.len(),
        agreeing: logged.iter().filter(|l| l.target == l.served).count(),
        effective_sample_size: ess,
        logged_quality: est(0),
        logged_cost: est(1),
        quality: Estimates {
            ips: est(2),
            snips: est(3),
            dr: est(4),
        },
        cost: Estimates {
            ips: est(5),
            snips: est(6),
            dr: est(7),
        },
        quality_gain: gain,
        warning,
    }
}

/// DR quality of one router minus another's on the same logged requests (`a` and `b`
/// hold each router's choices for the same requests in the same order), with a paired
/// percentile bootstrap: whether a candidate beats the router that serves, both judged
/// off-policy, rather than against the logged mean (which includes exploration, and on
/// older traffic earlier routers).
pub fn dr_difference(
    a: &[LoggedChoice],
    b: &[LoggedChoice],
    bootstrap: usize,
    seed: u64,
) -> Estimate {
    let n = a.len().min(b.len());
    let all: Vec<usize> = (0..n).collect();
    let diff = |sample: &[usize]| point(a, sample)[4] - point(b, sample)[4];
    let mut rng = SplitMix::new(seed);
    let draws: Vec<f64> = (0..if n == 0 { 0 } else { bootstrap })
        .map(|_| {
            let sample: Vec<usize> = (0..n)
                .map(|_| (rng.next_u64() % n as u64) as usize)
                .collect();
            diff(&sample)
        })
        .collect();
    Estimate {
        value: diff(&all),
        ci95: crate::route_eval::percentile_ci(draws),
    }
}

/// A logged request with its prompt's features: what the estimators read from traffic.
#[derive(Debug, Clone)]
pub struct LoggedRequest {
    pub prompt: RoutedPrompt,
    /// The model that answered, its propensity, score and cost.
    pub model: String,
    pub propensity: f64,
    pub reward: f64,
    pub cost: f64,
}

/// Reads traffic records (`datasets import --from traffic`), one request each (repeats of
/// a prompt are separate requests), keeping those with a score, a cost and a propensity,
/// and featurises them as the router does. Returns them and how many were left out.
pub fn load_logged(
    files: &[PathBuf],
    encoder: &SentenceEncoder,
    heads: &ClassifierHeads,
    cache_dir: &Path,
    progress: &ProgressBar,
) -> Result<(Vec<LoggedRequest>, usize), ScorerTrainError> {
    let mut loaded = Vec::new();
    let mut served = Vec::new();
    let mut skipped = 0;
    for file in files {
        for record in read_records(file)? {
            let Some(logged) = record.logged.as_ref() else {
                skipped += 1;
                continue;
            };
            let outcome = record.outcomes.get(&logged.model);
            let (Some(p), Some(score), Some(cost)) = (
                logged.propensity.filter(|p| *p > 0.0),
                outcome.and_then(|o| o.score),
                outcome.and_then(|o| o.cost_usd),
            ) else {
                skipped += 1;
                continue;
            };
            served.push((logged.model.clone(), p, score, cost));
            loaded.push(LoadedPrompt {
                id: record.id.clone(),
                family: "traffic".to_owned(),
                text: record.text().to_owned(),
                outcomes: record.outcomes.clone(),
            });
        }
    }
    let prompts = featurise(loaded, encoder, heads, cache_dir, progress)?;
    let requests = prompts
        .into_iter()
        .zip(served)
        .map(
            |(prompt, (model, propensity, reward, cost))| LoggedRequest {
                prompt,
                model,
                propensity,
                reward,
                cost,
            },
        )
        .collect();
    Ok((requests, skipped))
}

/// The router's candidates for `models`: scored by name where the scorer knows the model,
/// else at the neutral prior.
pub fn specs(scorer: &Scorer, models: &[String], prices: &PriceTable) -> Vec<CandidateSpec> {
    models
        .iter()
        .map(|m| {
            let price = prices.0.get(m).copied();
            if scorer.models.contains_key(m) {
                CandidateSpec::scored(m, price)
            } else {
                CandidateSpec {
                    model: m.clone(),
                    scored_as: None,
                    price,
                    quality_prior: Some(DEFAULT_QUALITY_PRIOR),
                    output_tokens: None,
                    context_window: None,
                }
            }
        })
        .collect()
}

/// Each model's predicted (quality, cost) for one featurised prompt, in `models` order.
pub fn predict_row(
    scorer: &Scorer,
    prompt: &RoutedPrompt,
    specs: &[CandidateSpec],
) -> Result<Vec<(f64, f64)>, RouteEvalError> {
    let cands = predict_candidates(scorer, &prompt.features, prompt.input_tokens, None, specs)?;
    Ok(specs
        .iter()
        .map(|s| {
            cands
                .iter()
                .find(|c| c.model == s.model)
                .map_or((DEFAULT_QUALITY_PRIOR, 0.0), |c| (c.quality, c.cost_usd))
        })
        .collect())
}

/// What the candidate `scorer` under `policy` would have chosen for each logged request
/// whose model is among `models`.
pub fn choices(
    scorer: &Scorer,
    requests: &[&LoggedRequest],
    models: &[String],
    prices: &PriceTable,
    policy: Policy,
) -> Result<Vec<LoggedChoice>, RouteEvalError> {
    let specs = specs(scorer, models, prices);
    let mut out = Vec::with_capacity(requests.len());
    for r in requests {
        let Some(served) = models.iter().position(|m| *m == r.model) else {
            continue;
        };
        let predicted = predict_row(scorer, &r.prompt, &specs)?;
        let cands: Vec<Candidate> = predicted
            .iter()
            .zip(models)
            .map(|(&(quality, cost_usd), m)| Candidate {
                model: m.clone(),
                quality,
                cost_usd,
                context_window: None,
            })
            .collect();
        let d = decide(&cands, &Constraints::default(), policy)?;
        out.push(LoggedChoice {
            served,
            propensity: r.propensity,
            reward: r.reward,
            cost: r.cost,
            target: models.iter().position(|m| *m == d.chosen).unwrap_or(0),
            predicted,
        });
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A world of two models: model 1 is right on "odd" prompts, model 0 on none. The
    /// logging policy picks uniformly; the candidate always picks model 1.
    fn logged(n: usize) -> Vec<LoggedChoice> {
        let mut rng = SplitMix::new(7);
        (0..n)
            .map(|i| {
                let served = (rng.next_u64() % 2) as usize;
                let reward = if served == 1 && i % 2 == 1 { 1.0 } else { 0.0 };
                LoggedChoice {
                    served,
                    propensity: 0.5,
                    reward,
                    cost: [0.001, 0.002][served],
                    target: 1,
                    predicted: vec![(0.0, 0.001), (0.3, 0.002)],
                }
            })
            .collect()
    }

    #[test]
    fn estimators_recover_the_candidates_value() {
        let report = evaluate(&logged(4000), 200, 1);
        // The truth: model 1 scores 0.5 on average and costs 0.002.
        for (name, e) in [
            ("ips", &report.quality.ips),
            ("snips", &report.quality.snips),
            ("dr", &report.quality.dr),
        ] {
            assert!((e.value - 0.5).abs() < 0.04, "{name}: {e:?}");
            assert!(e.ci95[0] <= 0.5 && 0.5 <= e.ci95[1] + 0.01, "{name}: {e:?}");
        }
        assert!((report.cost.snips.value - 0.002).abs() < 1e-9);
        assert!((report.logged_quality.value - 0.25).abs() < 0.03);
        assert!(
            report.quality_gain.ci95[0] > 0.0,
            "{:?}",
            report.quality_gain
        );
        assert!(report.warning.is_none());
        assert!((report.effective_sample_size - report.agreeing as f64).abs() < 1e-6);
    }

    #[test]
    fn estimates_stay_within_what_a_score_and_a_cost_can_be() {
        // Rare choices (weight 20) that scored 1 where the model predicted 0.9 for itself:
        // unclipped, IPS and DR would read 2.0 and 2.9.
        let rare: Vec<LoggedChoice> = (0..50)
            .map(|_| LoggedChoice {
                served: 1,
                propensity: 0.05,
                reward: 1.0,
                cost: 0.001,
                target: 1,
                predicted: vec![(0.1, 0.001), (0.9, 0.001)],
            })
            .collect();
        let report = evaluate(&rare, 50, 1);
        for e in [
            &report.quality.ips,
            &report.quality.dr,
            &report.quality.snips,
        ] {
            assert!((0.0..=1.0).contains(&e.value), "{e:?}");
            assert!(e.ci95[0] >= 0.0 && e.ci95[1] <= 1.0, "{e:?}");
        }
        // A prediction far above the cost seen would push DR's cost below zero.
        let mut cheap = rare.clone();
        for l in &mut cheap {
            l.predicted = vec![(0.1, 0.0), (0.9, 0.01)];
        }
        assert!(evaluate(&cheap, 20, 1).cost.dr.value >= 0.0);
    }

    #[test]
    fn thin_overlap_warns() {
        let mut few = logged(40);
        for l in &mut few {
            l.target = 0;
            l.served = 1;
        }
        few[0].served = 0;
        let report = evaluate(&few, 50, 1);
        assert_eq!(report.agreeing, 1);
        assert!(
            report
                .warning
                .as_deref()
                .is_some_and(|w| w.contains("effective sample size"))
        );
    }
}
