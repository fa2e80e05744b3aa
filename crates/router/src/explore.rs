//! Exploration: a share of a route's requests goes to a model other than the policy's
//! pick, so that a model the scorer predicts poorly can still be observed and its estimate
//! recover. The rule, and the probability it gives every model:
//!
//! - with probability `1 − rate` the request keeps the policy's pick (`greedy`);
//! - with probability `rate` it takes the pick of one of the [`DRAWS`] *perturbed
//!   decisions* that disagree with the pick (see below), over the *eligible* candidates (those the policy ranked: allowed, available, within
//!   the context window; under a `budget:` policy only those within the budget). Each
//!   perturbed decision moves every model's predicted quality by a normal draw with
//!   standard deviation `SPREAD / √(1 + n)`, where `n` is the scorer's evidence for the
//!   model (its training samples; 0 for a model it does not score), and then
//!   - half of them (even draws) run the route's own policy: Thompson sampling over the
//!     scorer's uncertainty at the route's operating point, so exploration goes to the
//!     models whose comparison with the pick is still open, not to ones clearly worse;
//!   - the other half (odd draws) take the cheapest model whose perturbed quality reaches a
//!     bar drawn uniformly between the lowest and the highest perturbed quality: a model on
//!     the cost–quality frontier some other tradeoff would pick. A retrained router is
//!     judged and calibrated along the whole frontier (`calibrate`, AIQ), and a policy that
//!     only ever explores near today's pick leaves the frontier's other models unobserved.
//!     A model dominated (no cheaper and no better than another, clearly) is never tried.
//!
//! The perturbations (and bars) come from the request's `pick_draw`. Exploring means
//! serving another model: of the perturbed decisions, those that agree with the policy's
//! pick are passed over, and which of the others is taken comes from the uniform left in
//! `explore_draw / rate`. So `rate` is the share of requests served by another model
//! whenever any perturbed decision disagrees (none does when every other model is clearly
//! worse: then the request keeps the pick with propensity 1), and the served model's
//! propensity is exactly `1 − rate` for the pick and `rate·k(m) / K` for another model,
//! `k(m)` the perturbed decisions that picked `m` and `K` those that did not pick the
//! greedy model; it is logged with the decision, and off-policy evaluation divides by it.

use switchyard_core::policy::{Candidate, Constraints, Decision, Policy, decide};
use switchyard_core::rng::SplitMix;

/// Perturbed decisions per exploring request.
pub const DRAWS: usize = 64;

/// Standard deviation of one outcome's score: a pass/fail score's is at most 0.5.
pub const SPREAD: f64 = 0.5;

/// What exploration may use for one request.
#[derive(Debug, Clone, Copy)]
pub struct Explore {
    /// Share of requests that draw, in [0, 1].
    pub rate: f64,
}

/// The eligible candidates, in ranked order, with their evidence.
fn pool(decision: &Decision, evidence: &dyn Fn(&str) -> usize) -> Vec<(Candidate, usize)> {
    let budget = match decision.policy {
        Policy::Budget { max_cost_usd } => Some(max_cost_usd),
        _ => None,
    };
    decision
        .ranked
        .iter()
        .filter(|r| budget.is_none_or(|b| r.cost_usd <= b) || r.model == decision.chosen)
        .map(|r| {
            let candidate = Candidate {
                model: r.model.clone(),
                quality: r.quality,
                cost_usd: r.cost_usd,
                context_window: None,
            };
            (candidate, evidence(&r.model))
        })
        .collect()
}

/// The pick of each of [`DRAWS`] perturbed decisions over `pool`, seeded by `seed`: the
/// route's `policy` on even draws, a uniformly drawn quality bar on odd ones.
fn picks(pool: &[(Candidate, usize)], policy: Policy, seed: u64) -> Vec<String> {
    let mut rng = SplitMix::new(seed);
    (0..DRAWS)
        .filter_map(|i| {
            let perturbed: Vec<Candidate> = pool
                .iter()
                .map(|(c, n)| Candidate {
                    quality: c.quality + rng.normal() * SPREAD / (1.0 + *n as f64).sqrt(),
                    ..c.clone()
                })
                .collect();
            let policy = if i % 2 == 0 {
                policy
            } else {
                frontier_bar(&perturbed, rng.unit())
            };
            decide(&perturbed, &Constraints::default(), policy)
                .ok()
                .map(|d| d.chosen)
        })
        .collect()
}

/// The threshold policy at a bar `u ∈ (0, 1]` of the way from the lowest to the highest
/// quality among `candidates`: it picks the cheapest model that reaches the bar.
fn frontier_bar(candidates: &[Candidate], u: f64) -> Policy {
    let (lo, hi) = candidates
        .iter()
        .map(|c| c.quality)
        .fold((f64::INFINITY, f64::NEG_INFINITY), |(lo, hi), q| {
            (lo.min(q), hi.max(q))
        });
    Policy::Threshold {
        tau: lo + u * (hi - lo),
    }
}

impl Explore {
    /// Applies the rule to `decision` with two uniform draws in [0, 1): `explore_draw`
    /// decides whether to explore (and which perturbed decision), `pick_draw` seeds the
    /// perturbations. Sets `propensity` (and, when another model was drawn, `explored`,
    /// `greedy`, and moves that model to the front of `ranked`, so the rest stay the
    /// fallback order).
    pub fn apply(
        self,
        decision: &mut Decision,
        evidence: &dyn Fn(&str) -> usize,
        explore_draw: f64,
        pick_draw: f64,
    ) {
        let rate = self.rate.clamp(0.0, 1.0);
        let greedy = decision.chosen.clone();
        if rate <= 0.0 {
            decision.propensity = Some(1.0);
            return;
        }
        let picks = picks(
            &pool(decision, evidence),
            decision.policy,
            pick_draw.to_bits(),
        );
        // Exploring means serving another model: the draws that agree with the pick are
        // passed over, so `rate` is the share of requests that go elsewhere whenever any
        // perturbed decision disagrees (and none do when every other model is clearly worse).
        let others: Vec<&String> = picks.iter().filter(|m| **m != greedy).collect();
        let chosen = if explore_draw < rate && !others.is_empty() {
            let j = ((explore_draw / rate) * others.len() as f64) as usize;
            others[j.min(others.len() - 1)].clone()
        } else {
            greedy.clone()
        };
        decision.propensity = Some(if others.is_empty() {
            1.0
        } else if chosen == greedy {
            1.0 - rate
        } else {
            rate * others.iter().filter(|m| ***m == chosen).count() as f64 / others.len() as f64
        });
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

    /// Candidates from (model, quality, cost).
    fn candidates(list: &[(&str, f64, f64)]) -> Vec<Candidate> {
        list.iter()
            .map(|&(m, q, c)| Candidate {
                model: m.into(),
                quality: q,
                cost_usd: c,
                context_window: None,
            })
            .collect()
    }

    fn decision(policy: Policy) -> Decision {
        let candidates = candidates(&[
            ("big", 0.9, 0.01),
            ("mid", 0.7, 0.002),
            ("small", 0.5, 0.0005),
        ]);
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
    fn draws_follow_the_logged_propensities_which_sum_to_one() {
        let explore = Explore { rate: 0.2 };
        for seed in [0.1, 0.37, 0.9] {
            // Exhaust the explore draw over a grid: 2,560 of 12,800 steps explore, spread
            // evenly over the K perturbed decisions that disagree with the pick (each gets
            // ⌊2560/K⌋ or ⌈2560/K⌉ steps), so each model's share of steps is its propensity
            // to within one step per perturbed decision.
            let steps = 12_800;
            let mut seen = std::collections::BTreeMap::<String, (usize, f64)>::new();
            for i in 0..steps {
                let mut d = decision(Policy::Threshold { tau: 0.6 });
                explore.apply(&mut d, &evidence, (i as f64 + 0.5) / steps as f64, seed);
                let e = seen.entry(d.chosen.clone()).or_default();
                e.0 += 1;
                e.1 = d.propensity.unwrap();
                assert_eq!(
                    d.ranked[0].model, d.chosen,
                    "the drawn model is tried first"
                );
                assert_eq!(d.ranked.len(), 3, "the others stay as fallbacks");
                assert_eq!(d.explored, d.chosen != "mid", "mid is the policy's pick");
            }
            for (m, (k, p)) in &seen {
                assert!(
                    (*k as f64 / steps as f64 - p).abs() <= DRAWS as f64 / steps as f64,
                    "{m}: {seen:?}"
                );
            }
            let explored: usize = seen
                .iter()
                .filter(|(m, _)| *m != "mid")
                .map(|(_, (k, _))| k)
                .sum();
            assert_eq!(
                explored, 2_560,
                "the rate is the share served by another model"
            );
            let total: f64 = seen.values().map(|(_, p)| p).sum();
            assert!((total - 1.0).abs() < 1e-12, "{seen:?}");
            assert!(
                seen.len() >= 2,
                "an uncertain router tries more than its pick"
            );
        }
        let mut d = decision(Policy::Threshold { tau: 0.6 });
        explore.apply(&mut d, &evidence, 0.5, 0.01);
        assert!(!d.explored && d.chosen == "mid", "0.5 ≥ rate: no exploring");
        assert!((d.propensity.unwrap() - 0.8).abs() < 1e-12);
    }

    #[test]
    fn exploration_goes_where_the_comparison_is_open() {
        // "known" is predicted far below the pick on plenty of evidence: never worth trying.
        // "new" is predicted below too, but on no evidence: tried often.
        let candidates = candidates(&[
            ("pick", 0.8, 0.001),
            ("known", 0.3, 0.001),
            ("new", 0.6, 0.001),
        ]);
        let policy = Policy::Tradeoff { lambda: 0.0 };
        let evidence = |m: &str| if m == "new" { 0 } else { 10_000 };
        let mut tried = std::collections::BTreeMap::<String, usize>::new();
        for i in 0..500 {
            let mut d = decide(&candidates, &Constraints::default(), policy).unwrap();
            Explore { rate: 1.0 }.apply(&mut d, &evidence, 0.5, f64::from(i) / 500.0);
            *tried.entry(d.chosen).or_default() += 1;
        }
        assert!(!tried.contains_key("known"), "{tried:?}");
        assert!(tried.get("new").copied().unwrap_or(0) > 100, "{tried:?}");
    }

    #[test]
    fn exploration_covers_the_frontier_not_the_dominated() {
        // Well known models: "cheap" and "best" are on the frontier, "dominated" costs as
        // much as "best" and is clearly worse. A quality-seeking route picks "best"; the
        // frontier draws still try "cheap", never "dominated".
        let candidates = candidates(&[
            ("cheap", 0.5, 0.001),
            ("best", 0.8, 0.01),
            ("dominated", 0.4, 0.01),
        ]);
        let policy = Policy::Tradeoff { lambda: 0.0 };
        let evidence = |_: &str| 10_000;
        let mut tried = std::collections::BTreeMap::<String, usize>::new();
        for i in 0..512 {
            // Every one of the 64 perturbed decisions in turn, under 8 seeds.
            let which = (f64::from(i % 64) + 0.5) / 64.0;
            let mut d = decide(&candidates, &Constraints::default(), policy).unwrap();
            Explore { rate: 1.0 }.apply(&mut d, &evidence, which, f64::from(i / 64) / 8.0);
            *tried.entry(d.chosen).or_default() += 1;
        }
        // Bars below 0.5 (a quarter of the frontier draws) pick "cheap", every other draw
        // agrees with the pick: at rate 1 every request goes to "cheap", none to "dominated".
        assert_eq!(tried.get("cheap"), Some(&512), "{tried:?}");
        assert!(!tried.contains_key("dominated"), "{tried:?}");
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
