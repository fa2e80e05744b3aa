//! `eval routing`: the learned router against the obvious alternatives on held-out
//! prompts, as a cost–quality curve.
//!
//! For every test prompt and candidate model the scorer predicts quality and cost; the
//! policy's parameter is swept and each setting's decisions are scored with what the chosen
//! model actually did (the record's score and cost). Baselines: every single model, random
//! mixing between the cheapest and the best single model, the oracle, and a kNN router on
//! the same embeddings. Metrics: RouterBench's AIQ and, for a strong/weak pair, RouteLLM's
//! APGR and CPT, with paired bootstrap confidence intervals.

use std::collections::BTreeMap;

use serde::Serialize;
use switchyard_core::policy::{Candidate, Constraints, Policy, decide};
use switchyard_core::pricing::PriceTable;
use switchyard_scorer::Scorer;
use switchyard_training::classifier::SplitMix;
use switchyard_training::scorer::RoutedPrompt;

use crate::routing::{Point, aiq, apgr, cpt};

/// Which policy rule the sweep varies.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum SweptPolicy {
    /// quality − λ·cost, λ from 0 (best predicted) to very large (cheapest).
    Tradeoff,
    /// Cheapest with predicted quality ≥ τ, τ over the predictions' quantiles.
    Threshold,
    /// Cheapest within m of the best predicted quality, m from 0 to 1.
    Margin,
}

#[derive(Debug, Clone)]
pub struct EvalRequest<'a> {
    pub test: Vec<&'a RoutedPrompt>,
    /// Neighbours for the kNN baseline.
    pub train: Vec<&'a RoutedPrompt>,
    /// Picks the kNN baseline's k.
    pub validation: Vec<&'a RoutedPrompt>,
    pub candidates: Vec<String>,
    /// A strong/weak pair for RouteLLM's metrics (both among the candidates).
    pub pair: Option<(String, String)>,
    pub prices: PriceTable,
    pub policy: SweptPolicy,
    pub bootstrap: usize,
    pub seed: u64,
}

#[derive(Debug, thiserror::Error)]
pub enum RouteEvalError {
    #[error(transparent)]
    Router(#[from] switchyard_router::RouterError),
    #[error(transparent)]
    Policy(#[from] switchyard_core::policy::PolicyError),
    #[error("{0}")]
    Data(String),
}

/// A value with its bootstrap 95% interval.
#[derive(Debug, Clone, Copy, Serialize)]
pub struct Estimate {
    pub value: f64,
    pub ci95: [f64; 2],
}

#[derive(Debug, Clone, Serialize)]
pub struct CurvePoint {
    /// λ (tradeoff) or τ (threshold).
    pub parameter: f64,
    pub cost: f64,
    pub quality: f64,
    /// Share of prompts sent to the pair's strong model (pair evaluations only).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub strong_share: Option<f64>,
}

#[derive(Debug, Clone, Serialize)]
pub struct SingleModel {
    pub model: String,
    pub cost: f64,
    pub quality: f64,
    pub aiq: f64,
}

#[derive(Debug, Clone, Serialize)]
pub struct PairMetrics {
    pub strong: String,
    pub weak: String,
    pub apgr: Estimate,
    pub cpt50: Option<f64>,
    pub cpt80: Option<f64>,
    pub knn_apgr: Estimate,
}

#[derive(Debug, Clone, Serialize)]
pub struct Baselines {
    pub singles: Vec<SingleModel>,
    /// The single model with the highest AIQ (quality discounted by its normalised cost).
    pub best_single: SingleModel,
    /// The single model with the highest quality: the top of the random-mixing line.
    pub strongest: SingleModel,
    /// AIQ of the convex hull of the single models (mixing them at random in any ratio,
    /// RouterBench's "zero router").
    pub singles_hull: f64,
    /// Random mixing along the line from the cheapest to the best single model.
    pub random: f64,
    pub oracle: SingleModel,
    pub knn: KnnBaseline,
}

#[derive(Debug, Clone, Serialize)]
pub struct KnnBaseline {
    pub k: usize,
    /// Validation AIQ for each k tried.
    pub validation_aiq: BTreeMap<usize, f64>,
    pub aiq: Estimate,
    pub curve: Vec<CurvePoint>,
}

/// Everything `eval routing` reports (its JSON output).
#[derive(Debug, Clone, Serialize)]
pub struct RoutingReport {
    pub test_prompts: usize,
    /// Test prompts left out because a candidate had no outcome for them.
    pub skipped_prompts: usize,
    pub candidates: Vec<String>,
    pub policy: SweptPolicy,
    pub aiq: Estimate,
    pub baselines: Baselines,
    /// Router AIQ minus the best single model's, and minus kNN's (paired bootstrap).
    pub aiq_minus_best_single: Estimate,
    pub aiq_minus_knn: Estimate,
    pub curve: Vec<CurvePoint>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub pair: Option<PairMetrics>,
    // RouteLLM's metrics at the top level too, as the JSON keys.
    pub apgr: Option<f64>,
    pub cpt50: Option<f64>,
    pub cpt80: Option<f64>,
}

/// What one prompt's candidates actually did.
#[derive(Debug, Clone)]
pub struct Actual {
    pub score: Vec<f64>,
    pub cost: Vec<f64>,
}

/// For each swept parameter, the index of the model chosen for each prompt.
pub type Choices = Vec<Vec<usize>>;

fn actual_of(
    p: &RoutedPrompt,
    candidates: &[String],
    prices: &PriceTable,
) -> Result<Option<Actual>, String> {
    let mut score = Vec::with_capacity(candidates.len());
    let mut cost = Vec::with_capacity(candidates.len());
    for m in candidates {
        let Some(o) = p.outcomes.get(m) else {
            return Ok(None);
        };
        let Some(s) = o.score else { return Ok(None) };
        let c = match (o.cost_usd, prices.0.get(m)) {
            (Some(c), _) => c,
            (None, Some(price)) => price.cost(
                o.input_tokens.unwrap_or(p.input_tokens) as f64,
                o.output_tokens.unwrap_or(0) as f64,
            ),
            (None, None) => {
                return Err(format!(
                    "the test data has no cost for {m} (prompt {}) and --prices has no price for it; add its price (USD per 1M input and output tokens) with --prices FILE",
                    p.id
                ));
            }
        };
        score.push(s);
        cost.push(c);
    }
    Ok(Some(Actual { score, cost }))
}

/// Predicted (quality, cost) per candidate for each prompt.
pub type Predicted = Vec<Vec<(f64, f64)>>;

/// Runs the policy over every prompt for each parameter value.
pub fn sweep(
    predicted: &Predicted,
    candidates: &[String],
    policy: SweptPolicy,
) -> Result<(Vec<f64>, Choices), RouteEvalError> {
    let params = parameter_grid(predicted, policy);
    let index: BTreeMap<&str, usize> = candidates
        .iter()
        .enumerate()
        .map(|(i, m)| (m.as_str(), i))
        .collect();
    let mut choices = Vec::with_capacity(params.len());
    for &param in &params {
        let rule = match policy {
            SweptPolicy::Tradeoff => Policy::Tradeoff { lambda: param },
            SweptPolicy::Threshold => Policy::Threshold { tau: param },
            SweptPolicy::Margin => Policy::Margin { margin: param },
        };
        let mut row = Vec::with_capacity(predicted.len());
        for prompt in predicted {
            let cands: Vec<Candidate> = prompt
                .iter()
                .zip(candidates)
                .map(|(&(quality, cost_usd), m)| Candidate {
                    model: m.clone(),
                    quality,
                    cost_usd,
                    context_window: None,
                })
                .collect();
            let d = decide(&cands, &Constraints::default(), rule)?;
            row.push(index.get(d.chosen.as_str()).copied().unwrap_or(0));
        }
        choices.push(row);
    }
    Ok((params, choices))
}

pub fn parameter_grid(predicted: &Predicted, policy: SweptPolicy) -> Vec<f64> {
    const STEPS: usize = 120;
    match policy {
        SweptPolicy::Margin => (0..=STEPS)
            .map(|i| (i as f64 / STEPS as f64).powi(2))
            .collect(),
        SweptPolicy::Threshold => {
            let mut qs: Vec<f64> = predicted.iter().flatten().map(|p| p.0).collect();
            qs.sort_by(f64::total_cmp);
            let mut grid: Vec<f64> = (0..=STEPS)
                .map(|i| {
                    qs.get(i * (qs.len().saturating_sub(1)) / STEPS)
                        .copied()
                        .unwrap_or(0.0)
                })
                .collect();
            grid.push(1.01);
            grid.dedup();
            grid
        }
        SweptPolicy::Tradeoff => {
            let costs: Vec<f64> = predicted
                .iter()
                .flatten()
                .map(|p| p.1)
                .filter(|c| *c > 0.0)
                .collect();
            let lo = costs.iter().copied().fold(f64::INFINITY, f64::min);
            let hi = costs.iter().copied().fold(0.0, f64::max);
            if !(lo.is_finite() && hi > 0.0) {
                return vec![0.0];
            }
            // λ·cost spans 1e-4 (quality decides) to 1e3 (cost decides) of a quality unit.
            let (a, b) = ((1e-4 / hi).log10(), (1e3 / lo).log10());
            std::iter::once(0.0)
                .chain((0..=STEPS).map(|i| 10f64.powf(a + (b - a) * i as f64 / STEPS as f64)))
                .collect()
        }
    }
}

/// Mean actual (cost, quality) of `choice` over the prompts in `sample`.
pub fn point(actual: &[Actual], choice: &[usize], sample: &[usize]) -> Point {
    let (mut c, mut q) = (0.0, 0.0);
    for &i in sample {
        c += actual[i].cost[choice[i]];
        q += actual[i].score[choice[i]];
    }
    let n = sample.len().max(1) as f64;
    Point {
        cost: c / n,
        quality: q / n,
    }
}

/// One bootstrap sample's (or the full set's) figures.
struct Figures {
    singles: Vec<Point>,
    router: Vec<Point>,
    knn: Vec<Point>,
    cost_range: (f64, f64),
}

fn figures(actual: &[Actual], router: &Choices, knn: &Choices, sample: &[usize]) -> Figures {
    let models = actual.first().map_or(0, |a| a.score.len());
    let singles: Vec<Point> = (0..models)
        .map(|m| point(actual, &vec![m; actual.len()], sample))
        .collect();
    let lo = singles.iter().map(|p| p.cost).fold(f64::INFINITY, f64::min);
    let hi = singles.iter().map(|p| p.cost).fold(0.0, f64::max);
    Figures {
        router: router.iter().map(|c| point(actual, c, sample)).collect(),
        knn: knn.iter().map(|c| point(actual, c, sample)).collect(),
        singles,
        cost_range: (lo, hi),
    }
}

fn best_single_aiq(f: &Figures) -> f64 {
    f.singles
        .iter()
        .map(|p| aiq(&[*p], f.cost_range.0, f.cost_range.1))
        .fold(0.0, f64::max)
}

pub fn percentile_ci(mut xs: Vec<f64>) -> [f64; 2] {
    xs.retain(|x| x.is_finite());
    if xs.is_empty() {
        return [f64::NAN, f64::NAN];
    }
    xs.sort_by(f64::total_cmp);
    let at = |q: f64| xs[((xs.len() - 1) as f64 * q).round() as usize];
    [at(0.025), at(0.975)]
}

/// kNN predictions: for each prompt, each candidate's mean score and cost over the `k`
/// most similar neighbours (cosine of the embeddings).
fn knn_predict(
    prompts: &[&RoutedPrompt],
    neighbours: &[(&RoutedPrompt, Actual)],
    k: usize,
) -> Predicted {
    prompts
        .iter()
        .map(|p| {
            let mut sims: Vec<(f32, usize)> = neighbours
                .iter()
                .enumerate()
                .map(|(j, (n, _))| {
                    let s: f32 = p
                        .embedding
                        .iter()
                        .zip(&n.embedding)
                        .map(|(a, b)| a * b)
                        .sum();
                    (s, j)
                })
                .collect();
            let k = k.min(sims.len()).max(1);
            sims.select_nth_unstable_by(k - 1, |a, b| b.0.total_cmp(&a.0));
            let top = &sims[..k];
            let models = neighbours.first().map_or(0, |n| n.1.score.len());
            (0..models)
                .map(|m| {
                    let q = top
                        .iter()
                        .map(|&(_, j)| neighbours[j].1.score[m])
                        .sum::<f64>();
                    let c = top
                        .iter()
                        .map(|&(_, j)| neighbours[j].1.cost[m])
                        .sum::<f64>();
                    (q / k as f64, c / k as f64)
                })
                .collect()
        })
        .collect()
}

fn all_with_outcomes<'a>(
    prompts: &[&'a RoutedPrompt],
    candidates: &[String],
    prices: &PriceTable,
) -> Result<(Vec<&'a RoutedPrompt>, Vec<Actual>), RouteEvalError> {
    let mut kept = Vec::new();
    let mut actual = Vec::new();
    for p in prompts {
        if let Some(a) = actual_of(p, candidates, prices).map_err(RouteEvalError::Data)? {
            kept.push(*p);
            actual.push(a);
        }
    }
    Ok((kept, actual))
}

/// The test prompts with every candidate's outcome, and the kNN baseline's neighbours
/// (training prompts) and validation prompts, with theirs.
struct EvalData<'a> {
    test: Vec<&'a RoutedPrompt>,
    actual: Vec<Actual>,
    neighbours: Vec<(&'a RoutedPrompt, Actual)>,
    validation: Vec<&'a RoutedPrompt>,
    validation_actual: Vec<Actual>,
}

fn eval_data<'a>(req: &EvalRequest<'a>) -> Result<EvalData<'a>, RouteEvalError> {
    let candidates = &req.candidates;
    let (test, actual) = all_with_outcomes(&req.test, candidates, &req.prices)?;
    if test.len() < 10 {
        return Err(RouteEvalError::Data(format!(
            "only {} test prompts have outcomes for every candidate ({}); pick candidates the test file scores together",
            test.len(),
            candidates.join(", ")
        )));
    }
    let (train, train_actual) = all_with_outcomes(&req.train, candidates, &req.prices)?;
    let (validation, validation_actual) =
        all_with_outcomes(&req.validation, candidates, &req.prices)?;
    if train.is_empty() {
        return Err(RouteEvalError::Data(
            "no training prompts with outcomes for every candidate: the kNN baseline has no neighbours"
                .to_owned(),
        ));
    }
    Ok(EvalData {
        test,
        actual,
        neighbours: train.into_iter().zip(train_actual).collect(),
        validation,
        validation_actual,
    })
}

/// The router's predicted (quality, cost) of every candidate on every test prompt, as it
/// would serve them.
fn router_predictions(
    scorer: &Scorer,
    specs: &[switchyard_router::CandidateSpec],
    test: &[&RoutedPrompt],
    candidates: &[String],
) -> Result<Predicted, RouteEvalError> {
    let predicted = test
        .iter()
        .map(|p| {
            let cands = switchyard_router::predict_candidates(
                scorer,
                &p.features,
                p.input_tokens,
                None,
                specs,
            )?;
            let by_model: BTreeMap<&str, (f64, f64)> = cands
                .iter()
                .map(|c| (c.model.as_str(), (c.quality, c.cost_usd)))
                .collect();
            Ok(candidates
                .iter()
                .map(|m| by_model.get(m.as_str()).copied().unwrap_or((0.0, 0.0)))
                .collect())
        })
        .collect::<Result<_, switchyard_router::RouterError>>()?;
    Ok(predicted)
}

/// kNN's k: the best validation AIQ of a few (ties to the smaller k; 10 without validation
/// prompts), and the AIQ of each k tried.
fn choose_k(
    data: &EvalData<'_>,
    candidates: &[String],
    policy: SweptPolicy,
) -> Result<(usize, BTreeMap<usize, f64>), RouteEvalError> {
    let mut validation_aiq = BTreeMap::new();
    let all: Vec<usize> = (0..data.validation.len()).collect();
    for k in [1, 3, 5, 10, 20, 50, 100] {
        if data.validation.is_empty() || k > data.neighbours.len() {
            break;
        }
        let predicted = knn_predict(&data.validation, &data.neighbours, k);
        let (_, choices) = sweep(&predicted, candidates, policy)?;
        let f = figures(&data.validation_actual, &choices, &choices, &all);
        validation_aiq.insert(k, aiq(&f.router, f.cost_range.0, f.cost_range.1));
    }
    let k = validation_aiq
        .iter()
        .max_by(|a, b| a.1.total_cmp(b.1).then(b.0.cmp(a.0)))
        .map_or(10, |(k, _)| *k);
    Ok((k, validation_aiq))
}

/// Per prompt, the cheapest model with the best score.
fn oracle_choices(actual: &[Actual]) -> Vec<usize> {
    actual
        .iter()
        .map(|a| {
            let best = a.score.iter().copied().fold(f64::NEG_INFINITY, f64::max);
            (0..a.score.len())
                .filter(|&m| a.score[m] >= best)
                .min_by(|&x, &y| a.cost[x].total_cmp(&a.cost[y]))
                .unwrap_or(0)
        })
        .collect()
}

/// The single-model baselines on the full test set.
struct SingleBaselines {
    singles: Vec<SingleModel>,
    strongest: SingleModel,
    best_single: SingleModel,
    /// AIQ of random mixing between the cheapest and the strongest model.
    random: f64,
}

fn single_baselines(
    candidates: &[String],
    full: &Figures,
) -> Result<SingleBaselines, RouteEvalError> {
    let (lo, hi) = full.cost_range;
    let singles: Vec<SingleModel> = candidates
        .iter()
        .zip(&full.singles)
        .map(|(m, p)| SingleModel {
            model: m.clone(),
            cost: p.cost,
            quality: p.quality,
            aiq: aiq(&[*p], lo, hi),
        })
        .collect();
    let none = || RouteEvalError::Data("no candidates".to_owned());
    let strongest = singles
        .iter()
        .max_by(|a, b| {
            a.quality
                .total_cmp(&b.quality)
                .then(b.cost.total_cmp(&a.cost))
        })
        .cloned()
        .ok_or_else(none)?;
    let best_single = singles
        .iter()
        .max_by(|a, b| a.aiq.total_cmp(&b.aiq))
        .cloned()
        .ok_or_else(none)?;
    let cheapest = singles
        .iter()
        .min_by(|a, b| a.cost.total_cmp(&b.cost))
        .ok_or_else(none)?;
    let at = |s: &SingleModel| Point {
        cost: s.cost,
        quality: s.quality,
    };
    let random = aiq(&[at(cheapest), at(&strongest)], lo, hi);
    Ok(SingleBaselines {
        singles,
        strongest,
        best_single,
        random,
    })
}

/// Indices of the `--strong/--weak` pair among the candidates.
fn pair_index(
    pair: Option<&(String, String)>,
    candidates: &[String],
) -> Result<Option<(usize, usize)>, RouteEvalError> {
    let find = |m: &str| {
        candidates.iter().position(|c| c == m).ok_or_else(|| {
            RouteEvalError::Data(format!("--strong/--weak model {m} is not a candidate"))
        })
    };
    pair.map(|(strong, weak)| Ok((find(strong)?, find(weak)?)))
        .transpose()
}

/// Per sweep setting: the share of `sample` sent to `strong`, and the mean quality.
fn pair_points(
    actual: &[Actual],
    choices: &Choices,
    sample: &[usize],
    strong: usize,
) -> Vec<(f64, f64)> {
    choices
        .iter()
        .map(|c| {
            let share = sample.iter().filter(|&&i| c[i] == strong).count() as f64
                / sample.len().max(1) as f64;
            (share, point(actual, c, sample).quality)
        })
        .collect()
}

/// The router's and kNN's decisions per sweep setting, and the pair if any.
struct Decisions<'c> {
    router: &'c Choices,
    knn: &'c Choices,
    pair: Option<(usize, usize)>,
}

/// Paired bootstrap over the test prompts: each figure's value on every resample.
fn bootstrap(
    actual: &[Actual],
    d: &Decisions<'_>,
    resamples: usize,
    seed: u64,
) -> BTreeMap<&'static str, Vec<f64>> {
    let n = actual.len();
    let mut rng = SplitMix::new(seed);
    let mut boot: BTreeMap<&str, Vec<f64>> = BTreeMap::new();
    for _ in 0..resamples {
        let sample: Vec<usize> = (0..n)
            .map(|_| (rng.next_u64() % n as u64) as usize)
            .collect();
        let f = figures(actual, d.router, d.knn, &sample);
        let (l, h) = f.cost_range;
        let r = aiq(&f.router, l, h);
        let kn = aiq(&f.knn, l, h);
        let b = best_single_aiq(&f);
        boot.entry("router").or_default().push(r);
        boot.entry("knn").or_default().push(kn);
        boot.entry("router-best").or_default().push(r - b);
        boot.entry("router-knn").or_default().push(r - kn);
        if let Some((s, w)) = d.pair {
            let (qs, qw) = (f.singles[s].quality, f.singles[w].quality);
            let router = apgr(&pair_points(actual, d.router, &sample, s), qw, qs);
            let knn = apgr(&pair_points(actual, d.knn, &sample, s), qw, qs);
            boot.entry("apgr").or_default().push(router);
            boot.entry("knn_apgr").or_default().push(knn);
        }
    }
    boot
}

/// The sweep's curve: each setting's parameter, cost, quality and strong-model share.
fn curve_of(
    params: &[f64],
    choices: &Choices,
    points: &[Point],
    pair: Option<(usize, usize)>,
) -> Vec<CurvePoint> {
    params
        .iter()
        .zip(choices)
        .zip(points)
        .map(|((&parameter, c), p)| CurvePoint {
            parameter,
            cost: p.cost,
            quality: p.quality,
            strong_share: pair
                .map(|(s, _)| c.iter().filter(|&&m| m == s).count() as f64 / c.len().max(1) as f64),
        })
        .collect()
}

/// RouteLLM's metrics for the strong/weak pair, on the full test set.
fn pair_metrics(
    actual: &[Actual],
    full: &Figures,
    d: &Decisions<'_>,
    names: Option<&(String, String)>,
    ci: &mut impl FnMut(&str) -> [f64; 2],
) -> Option<PairMetrics> {
    let ((s, w), (strong, weak)) = d.pair.zip(names)?;
    let all: Vec<usize> = (0..actual.len()).collect();
    let (qs, qw) = (full.singles[s].quality, full.singles[w].quality);
    let points = pair_points(actual, d.router, &all, s);
    let knn_points = pair_points(actual, d.knn, &all, s);
    Some(PairMetrics {
        strong: strong.clone(),
        weak: weak.clone(),
        apgr: Estimate {
            value: apgr(&points, qw, qs),
            ci95: ci("apgr"),
        },
        cpt50: cpt(&points, qw, qs, 0.5),
        cpt80: cpt(&points, qw, qs, 0.8),
        knn_apgr: Estimate {
            value: apgr(&knn_points, qw, qs),
            ci95: ci("knn_apgr"),
        },
    })
}

/// The oracle's baseline: its point mixed with the single models (alone, its lone point
/// would score zero below its cost).
fn oracle_baseline(actual: &[Actual], full: &Figures) -> SingleModel {
    let all: Vec<usize> = (0..actual.len()).collect();
    let oracle = point(actual, &oracle_choices(actual), &all);
    let with_singles: Vec<Point> = full.singles.iter().copied().chain([oracle]).collect();
    SingleModel {
        model: "oracle".to_owned(),
        cost: oracle.cost,
        quality: oracle.quality,
        aiq: aiq(&with_singles, full.cost_range.0, full.cost_range.1),
    }
}

/// Runs the whole evaluation.
pub fn evaluate(scorer: &Scorer, req: &EvalRequest<'_>) -> Result<RoutingReport, RouteEvalError> {
    let candidates = &req.candidates;
    if candidates.len() < 2 {
        return Err(RouteEvalError::Data(
            "routing needs at least two candidate models".to_owned(),
        ));
    }
    let specs = switchyard_router::named_candidates(scorer, candidates, &req.prices)?;
    let data = eval_data(req)?;
    let predicted = router_predictions(scorer, &specs, &data.test, candidates)?;
    let (params, router_choices) = sweep(&predicted, candidates, req.policy)?;
    let (k, validation_aiq) = choose_k(&data, candidates, req.policy)?;
    let knn_predicted = knn_predict(&data.test, &data.neighbours, k);
    let (knn_params, knn_choices) = sweep(&knn_predicted, candidates, req.policy)?;
    let decisions = Decisions {
        router: &router_choices,
        knn: &knn_choices,
        pair: pair_index(req.pair.as_ref(), candidates)?,
    };

    let actual = &data.actual;
    let all: Vec<usize> = (0..actual.len()).collect();
    let full = figures(actual, &router_choices, &knn_choices, &all);
    let (lo, hi) = full.cost_range;
    let router_aiq = aiq(&full.router, lo, hi);
    let knn_aiq = aiq(&full.knn, lo, hi);
    let best_aiq = best_single_aiq(&full);
    let singles = single_baselines(candidates, &full)?;

    let mut boot = bootstrap(actual, &decisions, req.bootstrap, req.seed);
    let mut ci = |key: &str| percentile_ci(boot.remove(key).unwrap_or_default());
    let estimate = |value: f64, ci95: [f64; 2]| Estimate { value, ci95 };
    let pair = pair_metrics(actual, &full, &decisions, req.pair.as_ref(), &mut ci);
    Ok(RoutingReport {
        test_prompts: data.test.len(),
        skipped_prompts: req.test.len() - data.test.len(),
        candidates: candidates.clone(),
        policy: req.policy,
        aiq: estimate(router_aiq, ci("router")),
        aiq_minus_best_single: estimate(router_aiq - best_aiq, ci("router-best")),
        aiq_minus_knn: estimate(router_aiq - knn_aiq, ci("router-knn")),
        curve: curve_of(&params, &router_choices, &full.router, decisions.pair),
        baselines: Baselines {
            singles: singles.singles,
            best_single: singles.best_single,
            strongest: singles.strongest,
            singles_hull: aiq(&full.singles, lo, hi),
            random: singles.random,
            oracle: oracle_baseline(actual, &full),
            knn: KnnBaseline {
                k,
                validation_aiq,
                aiq: estimate(knn_aiq, ci("knn")),
                curve: curve_of(&knn_params, &knn_choices, &full.knn, decisions.pair),
            },
        },
        apgr: pair.as_ref().map(|p| p.apgr.value),
        cpt50: pair.as_ref().and_then(|p| p.cpt50),
        cpt80: pair.as_ref().and_then(|p| p.cpt80),
        pair,
    })
}

/// `value [low, high]` to four places.
fn with_interval(e: &Estimate) -> String {
    format!("{:.4} [{:.4}, {:.4}]", e.value, e.ci95[0], e.ci95[1])
}

/// The report as a readable table.
pub fn render(
    report: &RoutingReport,
    split: Option<&str>,
    out: &mut impl std::io::Write,
) -> std::io::Result<()> {
    writeln!(
        out,
        "{} test prompts{} ({} skipped: a candidate had no outcome), {} candidates, policy {}",
        report.test_prompts,
        split.map(|s| format!(" ({s} split)")).unwrap_or_default(),
        report.skipped_prompts,
        report.candidates.len(),
        serde_json::to_string(&report.policy)
            .unwrap_or_default()
            .trim_matches('"')
    )?;
    render_singles(&report.baselines, out)?;
    writeln!(out)?;
    render_aiq(report, out)?;
    if let Some(p) = &report.pair {
        render_pair(p, out)?;
    }
    Ok(())
}

/// Each single model (cheapest first) and the oracle: cost, quality, AIQ.
fn render_singles(b: &Baselines, out: &mut impl std::io::Write) -> std::io::Result<()> {
    writeln!(
        out,
        "{:<44} {:>12} {:>9} {:>8}",
        "single model", "cost/prompt", "quality", "AIQ"
    )?;
    let mut singles = b.singles.clone();
    singles.sort_by(|x, y| x.cost.total_cmp(&y.cost));
    for s in singles.iter().chain([&b.oracle]) {
        writeln!(
            out,
            "{:<44} {:>12.6} {:>9.4} {:>8.4}",
            s.model, s.cost, s.quality, s.aiq
        )?;
    }
    Ok(())
}

/// The router's and the baselines' AIQ, and the paired differences.
fn render_aiq(report: &RoutingReport, out: &mut impl std::io::Write) -> std::io::Result<()> {
    let b = &report.baselines;
    writeln!(out, "AIQ (95% bootstrap interval)")?;
    let rows = [
        ("Switchyard router".to_owned(), with_interval(&report.aiq)),
        (
            format!("kNN router (k={})", b.knn.k),
            with_interval(&b.knn.aiq),
        ),
        (
            format!("best single ({})", b.best_single.model),
            format!("{:.4}", b.best_single.aiq),
        ),
        (
            format!("random mixing (cheapest ↔ {})", b.strongest.model),
            format!("{:.4}", b.random),
        ),
        (
            "hull of the single models".to_owned(),
            format!("{:.4}", b.singles_hull),
        ),
        ("oracle".to_owned(), format!("{:.4}", b.oracle.aiq)),
        (
            "router − best single (paired)".to_owned(),
            with_interval(&report.aiq_minus_best_single),
        ),
        (
            "router − kNN (paired)".to_owned(),
            with_interval(&report.aiq_minus_knn),
        ),
    ];
    for (name, value) in rows {
        writeln!(out, "{name:<44} {value}")?;
    }
    Ok(())
}

/// RouteLLM's metrics for the strong/weak pair.
fn render_pair(p: &PairMetrics, out: &mut impl std::io::Write) -> std::io::Result<()> {
    let pct = |x: Option<f64>| x.map_or("never".to_owned(), |v| format!("{:.1}%", v * 100.0));
    writeln!(out)?;
    writeln!(out, "pair: strong {} / weak {}", p.strong, p.weak)?;
    writeln!(out, "{:<44} {}", "APGR router", with_interval(&p.apgr))?;
    writeln!(out, "{:<44} {}", "APGR kNN", with_interval(&p.knn_apgr))?;
    writeln!(out, "{:<44} 0.5000", "APGR random")?;
    writeln!(out, "{:<44} {}", "CPT(50%) strong-call share", pct(p.cpt50))?;
    writeln!(out, "{:<44} {}", "CPT(80%) strong-call share", pct(p.cpt80))?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use switchyard_core::{EncoderInfo, Outcome, TaskClass, Truncation};
    use switchyard_scorer::{
        PromptFeatures, QualityConfig, SCORER_FORMAT_VERSION, ScoredModel, ScorerManifest,
        TrainingRow, Usage, fit_all,
    };
    use switchyard_training::data::Split;

    /// "strong" (cost 0.01) always succeeds; "cheap" (cost 0.001) only when x > 0.
    fn prompt(i: usize, x: f64, split: Split) -> RoutedPrompt {
        let outcome = |score: bool, cost: f64| Outcome {
            score: Some(f64::from(u8::from(score))),
            cost_usd: Some(cost),
            input_tokens: None,
            output_tokens: None,
            latency_ms: None,
        };
        RoutedPrompt {
            id: format!("p{i}"),
            family: "synthetic".into(),
            text: format!("prompt {i}"),
            split,
            outcomes: [
                ("cheap".to_owned(), outcome(x > 0.0, 0.001)),
                ("strong".to_owned(), outcome(true, 0.01)),
            ]
            .into(),
            features: PromptFeatures {
                features: {
                    let mut v = vec![x, -x];
                    v.resize(2 + switchyard_scorer::EXTRA_FEATURES, 0.0);
                    v
                },
                task: TaskClass::Chat,
            },
            input_tokens: 10,
            embedding: vec![x as f32, (1.0 - x * x).sqrt() as f32],
        }
    }

    fn prompts(n: usize, offset: usize, split: Split) -> Vec<RoutedPrompt> {
        (0..n)
            .map(|i| {
                let x = ((i * 7919 + offset) % 1000) as f64 / 500.0 - 1.0;
                prompt(i + offset, x, split)
            })
            .collect()
    }

    fn scorer(train: &[RoutedPrompt]) -> Scorer {
        let rows: Vec<TrainingRow> = train
            .iter()
            .map(|p| TrainingRow {
                features: p.features.features.clone(),
                scores: p.scores(),
            })
            .collect();
        let config = QualityConfig::default();
        let mut models = BTreeMap::new();
        for (m, q) in fit_all(&rows, &config).unwrap() {
            let mut usage = Usage::default();
            usage
                .cost_usd
                .add(TaskClass::Chat, if m == "cheap" { 0.001 } else { 0.01 });
            models.insert(m, ScoredModel { quality: q, usage });
        }
        let manifest = ScorerManifest {
            format_version: SCORER_FORMAT_VERSION,
            encoder: EncoderInfo {
                id: "synthetic".into(),
                dim: 2,
                max_tokens: 8,
                weights_sha256: String::new(),
                truncation: Truncation::Head,
            },
            heads_sha256: String::new(),
            feature_dim: 2 + switchyard_scorer::EXTRA_FEATURES,
            quality: config,
            models: BTreeMap::new(),
            training_data: vec![],
            metrics: serde_json::Value::Null,
            created_at: String::new(),
        };
        Scorer::new(manifest, None, models)
    }

    #[test]
    fn a_router_that_knows_beats_the_baselines() {
        let train = prompts(300, 0, Split::Train);
        let val = prompts(100, 3, Split::Validation);
        let test = prompts(200, 5, Split::Test);
        let scorer = scorer(&train);
        let request = EvalRequest {
            test: test.iter().collect(),
            train: train.iter().collect(),
            validation: val.iter().collect(),
            candidates: vec!["cheap".into(), "strong".into()],
            pair: Some(("strong".into(), "cheap".into())),
            prices: PriceTable::default(),
            policy: SweptPolicy::Tradeoff,
            bootstrap: 200,
            seed: 1,
        };
        let r = evaluate(&scorer, &request).unwrap();
        assert_eq!(r.test_prompts, 200);
        let b = &r.baselines;
        // strong: quality 1 at the top of the cost range; cheap: ~0.5 at the bottom.
        assert!((b.strongest.quality - 1.0).abs() < 1e-12);
        assert_eq!(b.strongest.model, "strong");
        assert!(b.singles_hull >= b.best_single.aiq && b.singles_hull >= b.random - 1e-12);
        assert!((b.oracle.quality - 1.0).abs() < 1e-12 && b.oracle.cost < 0.007);
        assert!(
            r.aiq.value > b.random + 0.1,
            "{} vs {}",
            r.aiq.value,
            b.random
        );
        assert!(r.aiq.value > b.best_single.aiq);
        assert!(r.aiq.value <= b.oracle.aiq + 1e-9);
        assert!(r.aiq_minus_best_single.ci95[0] > 0.0);
        assert!(r.aiq.ci95[0] <= r.aiq.value && r.aiq.value <= r.aiq.ci95[1]);
        // kNN on an embedding that encodes x also routes well.
        assert!(b.knn.aiq.value > b.random, "{:?}", b.knn);
        let pair = r.pair.as_ref().unwrap();
        // Half the prompts need the strong model: a perfect router recovers the gap
        // linearly up to a 50% strong share, then holds it (APGR 0.25 + 0.5 = 0.75).
        assert!(pair.apgr.value > 0.7, "{pair:?}");
        assert!(pair.cpt80.unwrap() <= 0.5, "{pair:?}");
        let json = serde_json::to_value(&r).unwrap();
        for key in ["aiq", "apgr", "cpt50", "cpt80", "baselines", "curve"] {
            assert!(json.get(key).is_some(), "missing {key}");
        }
        // The curve runs from all-strong (λ = 0) to all-cheap.
        let shares: Vec<f64> = r.curve.iter().filter_map(|p| p.strong_share).collect();
        assert!((shares[0] - 1.0).abs() < 1e-12 && *shares.last().unwrap() < 1e-12);

        // The other sweeps trace curves of their own, all above random mixing here.
        for policy in [SweptPolicy::Threshold, SweptPolicy::Margin] {
            let r = evaluate(
                &scorer,
                &EvalRequest {
                    policy,
                    ..request.clone()
                },
            )
            .unwrap();
            assert!(
                r.aiq.value > r.baselines.random,
                "{policy:?}: {}",
                r.aiq.value
            );
        }

        let dir = tempfile::tempdir().unwrap();
        let png = dir.path().join("curve.png");
        crate::plot::plot_routing(&r, &png).unwrap();
        let bytes = std::fs::read(&png).unwrap();
        assert_eq!(&bytes[..4], b"\x89PNG");
    }

    #[test]
    fn unknown_candidates_and_missing_costs_are_clear_errors() {
        let train = prompts(100, 0, Split::Train);
        let scorer = scorer(&train);
        let mut request = EvalRequest {
            test: train.iter().collect(),
            train: train.iter().collect(),
            validation: vec![],
            candidates: vec!["cheap".into(), "gpt-9".into()],
            pair: None,
            prices: PriceTable::default(),
            policy: SweptPolicy::Threshold,
            bootstrap: 10,
            seed: 1,
        };
        let err = evaluate(&scorer, &request).unwrap_err().to_string();
        assert!(
            err.contains("gpt-9") && err.contains("knows cheap, strong"),
            "{err}"
        );

        let mut no_cost = train.clone();
        for p in &mut no_cost {
            if let Some(o) = p.outcomes.get_mut("strong") {
                o.cost_usd = None;
            }
        }
        request.test = no_cost.iter().collect();
        request.candidates = vec!["cheap".into(), "strong".into()];
        let err = evaluate(&scorer, &request).unwrap_err().to_string();
        assert!(err.contains("strong") && err.contains("--prices"), "{err}");
    }
}
