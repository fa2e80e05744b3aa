//! Exploration: a share of a route's requests goes to a model other than the policy's
//! pick, so that a model the scorer predicts poorly can still be observed and its estimate
//! recover. The rule, and the probability it gives every model:
//!
//! - with probability `1 − rate` the request keeps the policy's pick (`greedy`);
//! - with probability `rate` it draws among the *eligible* candidates (those the policy
//!   ranked: allowed, available, within the context window; under a `budget:` policy only
//!   those within the budget), each with weight `1 / √(1 + n)`, where `n` is the scorer's
//!   evidence for the model (its training samples; 0 for a model it does not score). Models
//!   the router knows least are tried most.
//!
//! The served model's propensity is `(1 − rate)·[m = greedy] + rate·w(m) / Σw`, logged with
//! the decision; off-policy evaluation divides by it. A draw that lands on the greedy model
//! is not counted as exploring.

use switchyard_core::policy::{Decision, Policy};

/// What exploration may use for one request.
#[derive(Debug, Clone, Copy)]
pub struct Explore {
    /// Share of requests that draw, in [0, 1].
    pub rate: f64,
}

/// Each eligible model with its exploration weight, in ranked order.
fn pool(decision: &Decision, evidence: &dyn Fn(&str) -> usize) -> Vec<(String, f64)> {
    let budget = match decision.policy {
        Policy::Budget { max_cost_usd } => Some(max_cost_usd),
        _ => None,
    };
    decision
        .ranked
        .iter()
        .filter(|r| budget.is_none_or(|b| r.cost_usd <= b) || r.model == decision.chosen)
        .map(|r| {
            let n = evidence(&r.model) as f64;
            (r.model.clone(), 1.0 / (1.0 + n).sqrt())
        })
        .collect()
}

impl Explore {
    /// Applies the rule to `decision` with two uniform draws in [0, 1): `explore_draw`
    /// decides whether to explore, `pick_draw` which model. Sets `propensity` (and, when
    /// another model was drawn, `explored`, `greedy`, and moves that model to the front of
    /// `ranked`, so the rest stay the fallback order).
    pub fn apply(
        self,
        decision: &mut Decision,
        evidence: &dyn Fn(&str) -> usize,
        explore_draw: f64,
        pick_draw: f64,
    ) {
        let rate = self.rate.clamp(0.0, 1.0);
        let pool = pool(decision, evidence);
        let total: f64 = pool.iter().map(|(_, w)| w).sum();
        let greedy = decision.chosen.clone();
        let share = |model: &str| {
            pool.iter()
                .find(|(m, _)| m == model)
                .map_or(0.0, |(_, w)| w / total)
        };
        let chosen = if rate > 0.0 && explore_draw < rate && total > 0.0 {
            let mut left = pick_draw * total;
            pool.iter()
                .find(|(_, w)| {
                    left -= w;
                    left < 0.0
                })
                .or(pool.last())
                .map_or(greedy.clone(), |(m, _)| m.clone())
        } else {
            greedy.clone()
        };
        let greedy_part = if chosen == greedy { 1.0 - rate } else { 0.0 };
        decision.propensity = Some(greedy_part + rate * share(&chosen));
        if chosen != greedy {
            if let Some(i) = decision.ranked.iter().position(|r| r.model == chosen) {
                let first = decision.ranked.remove(i);
                decision.ranked.insert(0, first);
            }
            decision.chosen = chosen;
            decision.explored = true;
            decision.greedy = Some(greedy);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use switchyard_core::policy::{Candidate, Constraints, decide};

    fn decision(policy: Policy) -> Decision {
        let candidates: Vec<Candidate> = [
            ("big", 0.9, 0.01),
            ("mid", 0.7, 0.002),
            ("small", 0.5, 0.0005),
        ]
        .iter()
        .map(|&(m, q, c)| Candidate {
            model: m.into(),
            quality: q,
            cost_usd: c,
            context_window: None,
        })
        .collect();
        decide(&candidates, &Constraints::default(), policy).unwrap()
    }

    fn evidence(model: &str) -> usize {
        match model {
            "big" => 99,
            "mid" => 0,
            _ => 3,
        }
    }

    #[test]
    fn no_rate_keeps_the_pick_with_propensity_one() {
        let mut d = decision(Policy::Threshold { tau: 0.6 });
        let before = d.clone();
        Explore { rate: 0.0 }.apply(&mut d, &evidence, 0.0, 0.5);
        assert_eq!(d.chosen, before.chosen);
        assert_eq!(d.propensity, Some(1.0));
        assert!(!d.explored && d.greedy.is_none());
    }

    #[test]
    fn draws_follow_the_weights_and_propensities_sum_to_one() {
        let explore = Explore { rate: 0.2 };
        let (w_big, w_mid, w_small) = (0.1, 1.0, 0.5);
        let total = w_big + w_mid + w_small;
        // Exhaust the pick draw over a grid: each model's share of draws is its weight.
        let mut seen = std::collections::BTreeMap::<String, (usize, f64)>::new();
        let steps = 10_000;
        for i in 0..steps {
            let mut d = decision(Policy::Threshold { tau: 0.6 });
            explore.apply(&mut d, &evidence, 0.0, (i as f64 + 0.5) / steps as f64);
            let e = seen.entry(d.chosen.clone()).or_default();
            e.0 += 1;
            e.1 = d.propensity.unwrap();
            assert_eq!(
                d.ranked[0].model, d.chosen,
                "the drawn model is tried first"
            );
            assert_eq!(d.ranked.len(), 3, "the others stay as fallbacks");
        }
        let share = |m: &str| seen[m].0 as f64 / steps as f64;
        assert!((share("big") - w_big / total).abs() < 1e-3);
        assert!((share("mid") - w_mid / total).abs() < 1e-3, "{seen:?}");
        // The threshold policy picks mid (cheapest ≥ 0.6): its propensity adds 1 − rate.
        let p = |m: &str| seen[m].1;
        assert!((p("mid") - (0.8 + 0.2 * w_mid / total)).abs() < 1e-12);
        assert!((p("big") - 0.2 * w_big / total).abs() < 1e-12);
        assert!((p("mid") + p("big") + p("small") - 1.0).abs() < 1e-12);
        let big = (0..100)
            .map(|i| {
                let mut d = decision(Policy::Threshold { tau: 0.6 });
                explore.apply(&mut d, &evidence, 0.0, f64::from(i) / 100.0);
                d
            })
            .find(|d| d.chosen == "big")
            .unwrap();
        assert!(big.explored && big.greedy.as_deref() == Some("mid"));
        let mut d = decision(Policy::Threshold { tau: 0.6 });
        explore.apply(&mut d, &evidence, 0.5, 0.01);
        assert!(!d.explored && d.chosen == "mid", "0.5 ≥ rate: no exploring");
    }

    #[test]
    fn a_budget_policy_explores_only_within_the_budget() {
        let explore = Explore { rate: 1.0 };
        for i in 0..100 {
            let mut d = decision(Policy::Budget {
                max_cost_usd: 0.003,
            });
            explore.apply(&mut d, &evidence, 0.0, f64::from(i) / 100.0);
            assert_ne!(d.chosen, "big", "big costs more than the budget");
        }
    }
}
