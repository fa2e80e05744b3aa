//! `switchyard calibrate`: the policy parameter that meets a target (mean cost, mean
//! quality, or share of the strongest model) on a set of prompts, measured with their real
//! outcomes when every candidate has one, else with the router's own predictions.

use switchyard_core::policy::Policy;
use switchyard_router::calibration::Target;

use crate::route_eval::{Actual, Predicted, RouteEvalError, SweptPolicy, sweep};

/// One parameter setting's mean cost, quality and share of the strongest model.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Setting {
    pub policy: Policy,
    pub cost_usd: f64,
    pub quality: f64,
    pub strong_share: f64,
}

fn policy_of(rule: SweptPolicy, parameter: f64) -> Policy {
    match rule {
        SweptPolicy::Tradeoff => Policy::Tradeoff { lambda: parameter },
        SweptPolicy::Threshold => Policy::Threshold { tau: parameter },
        SweptPolicy::Margin => Policy::Margin { margin: parameter },
    }
}

/// Every setting of `rule` over the prompts: measured on `actual` when given, else on the
/// predictions themselves.
pub fn settings(
    predicted: &Predicted,
    actual: Option<&[Actual]>,
    models: &[String],
    strongest: usize,
    rule: SweptPolicy,
) -> Result<Vec<Setting>, RouteEvalError> {
    let (params, choices) = sweep(predicted, models, rule)?;
    let n = predicted.len().max(1) as f64;
    Ok(params
        .iter()
        .zip(&choices)
        .map(|(&p, chosen)| {
            let (mut cost, mut quality, mut strong) = (0.0, 0.0, 0.0);
            for (i, &m) in chosen.iter().enumerate() {
                let (q, c) = match actual {
                    Some(a) => (a[i].score[m], a[i].cost[m]),
                    None => predicted[i][m],
                };
                cost += c;
                quality += q;
                strong += f64::from(u8::from(m == strongest));
            }
            Setting {
                policy: policy_of(rule, p),
                cost_usd: cost / n,
                quality: quality / n,
                strong_share: strong / n,
            }
        })
        .collect())
}

/// The setting that meets `target` best: the highest quality within a cost or share cap,
/// or the lowest cost at a quality floor.
pub fn fit(settings: &[Setting], target: Target) -> Result<Setting, String> {
    let best_quality = |a: &&Setting, b: &&Setting| {
        a.quality
            .total_cmp(&b.quality)
            .then(b.cost_usd.total_cmp(&a.cost_usd))
    };
    let found = match target {
        Target::Cost(cap) => settings
            .iter()
            .filter(|s| s.cost_usd <= cap)
            .max_by(best_quality),
        Target::StrongShare(cap) => settings
            .iter()
            .filter(|s| s.strong_share <= cap)
            .max_by(best_quality),
        Target::Quality(floor) => settings
            .iter()
            .filter(|s| s.quality >= floor)
            .min_by(|a, b| a.cost_usd.total_cmp(&b.cost_usd)),
    };
    found.copied().ok_or_else(|| {
        let lo = settings.iter().map(|s| s.cost_usd).fold(f64::INFINITY, f64::min);
        let hi = settings.iter().map(|s| s.quality).fold(0.0, f64::max);
        let share = settings.iter().map(|s| s.strong_share).fold(f64::INFINITY, f64::min);
        format!(
            "no setting meets {target} on this data: the cheapest costs ${lo:.6} per request, the best reaches quality {hi:.4}, the fewest strong calls is a share of {share:.3}"
        )
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// "cheap" is right on even prompts, "dear" always, at 10× the cost; predictions know it.
    fn data() -> (Predicted, Vec<Actual>) {
        let predicted = (0..100)
            .map(|i| {
                vec![
                    (f64::from(u8::from(i % 2 == 0)) * 0.9 + 0.05, 0.001),
                    (0.95, 0.01),
                ]
            })
            .collect();
        let actual = (0..100)
            .map(|i| Actual {
                score: vec![f64::from(u8::from(i % 2 == 0)), 1.0],
                cost: vec![0.001, 0.01],
            })
            .collect();
        (predicted, actual)
    }

    #[test]
    fn targets_pick_the_setting_that_meets_them() {
        let (p, a) = data();
        let models = ["cheap".to_owned(), "dear".to_owned()];
        let s = settings(&p, Some(&a), &models, 1, SweptPolicy::Threshold).unwrap();
        // Half the prompts need the dear model: quality 1 costs 0.0055 on average.
        let q = fit(&s, Target::Quality(1.0)).unwrap();
        assert!((q.cost_usd - 0.0055).abs() < 1e-12, "{q:?}");
        let c = fit(&s, Target::Cost(0.002)).unwrap();
        assert!(
            c.cost_usd <= 0.002 && (c.quality - 0.5).abs() < 1e-12,
            "{c:?}"
        );
        let share = fit(&s, Target::StrongShare(0.5)).unwrap();
        assert!(
            share.strong_share <= 0.5 && (share.quality - 1.0).abs() < 1e-12,
            "{share:?}"
        );
        let e = fit(&s, Target::Cost(0.0001)).unwrap_err();
        assert!(e.contains("cheapest costs $0.001000"), "{e}");
    }
}
