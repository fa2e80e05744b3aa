//! Several routers on the same held-out prompts, every model's outcome known: each one's
//! cost–quality curve (the policy's parameter swept) and AIQ, with one paired bootstrap so
//! differences between them get intervals too. The learning-loop simulator uses it to put
//! the router it learned next to the start, a full-information router, kNN and the
//! single models.

use std::collections::BTreeMap;

use serde::Serialize;
use switchyard_training::classifier::SplitMix;

use crate::route_eval::{
    Actual, Choices, CurvePoint, Estimate, Predicted, RouteEvalError, SweptPolicy, percentile_ci,
    point, sweep,
};
use crate::routing::{Point, aiq};

/// One router's result.
#[derive(Debug, Clone, Serialize)]
pub struct Contender {
    pub name: String,
    pub aiq: Estimate,
    pub curve: Vec<CurvePoint>,
}

/// The comparison: each router, the single models, random mixing, and paired differences.
#[derive(Debug, Clone, Serialize)]
pub struct Comparison {
    pub prompts: usize,
    pub contenders: Vec<Contender>,
    /// Each model alone: (model, mean cost, mean quality, AIQ).
    pub singles: Vec<(String, f64, f64, f64)>,
    /// Random mixing between the cheapest and the strongest single model.
    pub random_aiq: Estimate,
    /// `a − b` AIQ for each requested pair `(a, b)`, keyed `"a - b"`.
    pub differences: BTreeMap<String, Estimate>,
    /// `(a − random) / (b − random)` for each requested pair, keyed `"a / b"`: the share of
    /// b's gain over random mixing that a reaches.
    pub gain_shares: BTreeMap<String, Estimate>,
}

/// AIQ of each choice set and of random mixing over the prompts in `sample`.
fn aiqs(actual: &[Actual], choices: &[Choices], sample: &[usize]) -> (Vec<f64>, f64) {
    let models = actual.first().map_or(0, |a| a.score.len());
    let singles: Vec<Point> = (0..models)
        .map(|m| point(actual, &vec![m; actual.len()], sample))
        .collect();
    let lo = singles.iter().map(|p| p.cost).fold(f64::INFINITY, f64::min);
    let hi = singles.iter().map(|p| p.cost).fold(0.0, f64::max);
    let routers = choices
        .iter()
        .map(|c| {
            let points: Vec<Point> = c.iter().map(|row| point(actual, row, sample)).collect();
            aiq(&points, lo, hi)
        })
        .collect();
    let cheapest = singles.iter().min_by(|a, b| {
        a.cost
            .total_cmp(&b.cost)
            .then(b.quality.total_cmp(&a.quality))
    });
    let strongest = singles.iter().max_by(|a, b| {
        a.quality
            .total_cmp(&b.quality)
            .then(b.cost.total_cmp(&a.cost))
    });
    let random = match (cheapest, strongest) {
        (Some(c), Some(s)) => aiq(&[*c, *s], lo, hi),
        _ => 0.0,
    };
    (routers, random)
}

/// Each requested pair as (index of a, index of b, "a - b", "a / b").
fn named_pairs(
    contenders: &[(String, Predicted)],
    pairs: &[(&str, &str)],
) -> Result<Vec<(usize, usize, String, String)>, RouteEvalError> {
    let index = |name: &str| {
        contenders
            .iter()
            .position(|(n, _)| n == name)
            .ok_or_else(|| RouteEvalError::Data(format!("no router named {name}")))
    };
    pairs
        .iter()
        .map(|(a, b)| {
            Ok((
                index(a)?,
                index(b)?,
                format!("{a} - {b}"),
                format!("{a} / {b}"),
            ))
        })
        .collect()
}

/// The routers' and random mixing's AIQs on `resamples` bootstrap resamples of the prompts.
fn bootstrap_aiqs(
    actual: &[Actual],
    choices: &[Choices],
    resamples: usize,
    seed: u64,
) -> Vec<(Vec<f64>, f64)> {
    let n = actual.len();
    let mut rng = SplitMix::new(seed);
    (0..resamples)
        .map(|_| {
            let sample: Vec<usize> = (0..n)
                .map(|_| (rng.next_u64() % n as u64) as usize)
                .collect();
            aiqs(actual, choices, &sample)
        })
        .collect()
}

/// A router's curve on every prompt: each swept parameter's mean cost and quality.
fn curve(actual: &[Actual], params: &[f64], choices: &Choices) -> Vec<CurvePoint> {
    let all: Vec<usize> = (0..actual.len()).collect();
    params
        .iter()
        .zip(choices)
        .map(|(&parameter, row)| {
            let p = point(actual, row, &all);
            CurvePoint {
                parameter,
                cost: p.cost,
                quality: p.quality,
                strong_share: None,
            }
        })
        .collect()
}

/// Each model alone: (model, mean cost, mean quality, AIQ).
fn singles(actual: &[Actual], models: &[String]) -> Vec<(String, f64, f64, f64)> {
    let all: Vec<usize> = (0..actual.len()).collect();
    let (lo, hi) = single_range(actual, &all);
    models
        .iter()
        .enumerate()
        .map(|(m, name)| {
            let p = point(actual, &vec![m; actual.len()], &all);
            (name.clone(), p.cost, p.quality, aiq(&[p], lo, hi))
        })
        .collect()
}

/// Compares `contenders` (name, predictions per prompt and model) on `actual`, with the
/// differences `pairs` asks for.
pub fn compare(
    actual: &[Actual],
    models: &[String],
    contenders: &[(String, Predicted)],
    pairs: &[(&str, &str)],
    policy: SweptPolicy,
    bootstrap: usize,
    seed: u64,
) -> Result<Comparison, RouteEvalError> {
    if actual.is_empty() {
        return Err(RouteEvalError::Data(
            "no held-out prompts to compare on".into(),
        ));
    }
    let mut params = Vec::new();
    let mut choices = Vec::new();
    for (_, predicted) in contenders {
        let (p, c) = sweep(predicted, models, policy)?;
        params.push(p);
        choices.push(c);
    }
    let pairs = named_pairs(contenders, pairs)?;
    let all: Vec<usize> = (0..actual.len()).collect();
    let (full, random) = aiqs(actual, &choices, &all);
    let boot = bootstrap_aiqs(actual, &choices, bootstrap, seed);
    let estimate = |value: f64, f: &dyn Fn(&[f64], f64) -> f64| Estimate {
        value,
        ci95: percentile_ci(boot.iter().map(|(r, rand)| f(r, *rand)).collect()),
    };
    let contenders_out = contenders
        .iter()
        .enumerate()
        .map(|(i, (name, _))| Contender {
            name: name.clone(),
            aiq: estimate(full[i], &|r, _| r[i]),
            curve: curve(actual, &params[i], &choices[i]),
        })
        .collect();
    let share = |a: f64, b: f64, r: f64| (a - r) / (b - r);
    let mut differences = BTreeMap::new();
    let mut gain_shares = BTreeMap::new();
    for (a, b, diff, ratio) in pairs {
        differences.insert(diff, estimate(full[a] - full[b], &|r, _| r[a] - r[b]));
        let value = share(full[a], full[b], random);
        gain_shares.insert(ratio, estimate(value, &|r, rand| share(r[a], r[b], rand)));
    }
    Ok(Comparison {
        prompts: actual.len(),
        contenders: contenders_out,
        singles: singles(actual, models),
        random_aiq: estimate(random, &|_, rand| rand),
        differences,
        gain_shares,
    })
}

/// kNN on logged (bandit) traffic: for each query embedding and each of `models`, the
/// mean reward over the `k` most similar logged prompts that model answered (`None` when
/// it answered none). `logged` holds (embedding, model index, reward); embeddings are
/// unit-length, so the dot product is the cosine.
pub fn knn_bandit(
    queries: &[&[f32]],
    logged: &[(&[f32], usize, f64)],
    models: usize,
    k: usize,
) -> Vec<Vec<Option<f64>>> {
    queries
        .iter()
        .map(|q| {
            let mut per_model: Vec<Vec<(f32, f64)>> = vec![Vec::new(); models];
            for (e, m, reward) in logged {
                if let Some(list) = per_model.get_mut(*m) {
                    let s: f32 = q.iter().zip(e.iter()).map(|(a, b)| a * b).sum();
                    list.push((s, *reward));
                }
            }
            per_model
                .into_iter()
                .map(|mut sims| {
                    if sims.is_empty() {
                        return None;
                    }
                    let k = k.clamp(1, sims.len());
                    sims.select_nth_unstable_by(k - 1, |a, b| b.0.total_cmp(&a.0));
                    Some(sims[..k].iter().map(|s| s.1).sum::<f64>() / k as f64)
                })
                .collect()
        })
        .collect()
}

fn single_range(actual: &[Actual], sample: &[usize]) -> (f64, f64) {
    let models = actual.first().map_or(0, |a| a.score.len());
    let costs: Vec<f64> = (0..models)
        .map(|m| point(actual, &vec![m; actual.len()], sample).cost)
        .collect();
    (
        costs.iter().copied().fold(f64::INFINITY, f64::min),
        costs.iter().copied().fold(0.0, f64::max),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Two models: "cheap" right on even prompts, "dear" always right and 10× the price.
    fn world(n: usize) -> Vec<Actual> {
        (0..n)
            .map(|i| Actual {
                score: vec![f64::from(u8::from(i % 2 == 0)), 1.0],
                cost: vec![0.001, 0.01],
            })
            .collect()
    }

    #[test]
    fn knn_on_bandit_data_averages_each_models_own_neighbours() {
        let (a, b): (&[f32], &[f32]) = (&[1.0, 0.0], &[0.0, 1.0]);
        let logged = [(a, 0, 1.0), (a, 0, 0.0), (b, 0, 1.0), (b, 1, 0.5)];
        let out = knn_bandit(&[a], &logged, 3, 2);
        assert_eq!(out[0][0], Some(0.5), "the two nearest of model 0");
        assert_eq!(out[0][1], Some(0.5), "model 1's only neighbour");
        assert_eq!(out[0][2], None, "model 2 answered nothing");
    }

    #[test]
    fn a_router_that_knows_the_world_beats_one_that_does_not() {
        let actual = world(200);
        let models = vec!["cheap".to_owned(), "dear".to_owned()];
        let knows: Predicted = (0..200)
            .map(|i| vec![(f64::from(u8::from(i % 2 == 0)), 0.001), (1.0, 0.01)])
            .collect();
        let blind: Predicted = (0..200).map(|_| vec![(0.5, 0.001), (0.5, 0.01)]).collect();
        let c = compare(
            &actual,
            &models,
            &[("knows".into(), knows), ("blind".into(), blind)],
            &[("knows", "blind"), ("blind", "knows")],
            SweptPolicy::Tradeoff,
            100,
            3,
        )
        .unwrap();
        let d = &c.differences["knows - blind"];
        assert!(d.value > 0.0 && d.ci95[0] > 0.0, "{d:?}");
        // Blind always takes the cheapest: it reaches none of the gain over random mixing.
        let s = &c.gain_shares["blind / knows"];
        assert!(s.value < 0.05, "{s:?} random {:?}", c.random_aiq);
        assert_eq!(c.singles.len(), 2);
        assert!(
            compare(
                &actual,
                &models,
                &[],
                &[("x", "y")],
                SweptPolicy::Tradeoff,
                1,
                1
            )
            .is_err()
        );
    }
}
