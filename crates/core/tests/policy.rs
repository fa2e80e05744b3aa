//! The routing policy: examples for each rule, and properties over random candidates.

#![allow(clippy::unwrap_used, clippy::expect_used, reason = "tests fail loudly")]

use std::collections::{BTreeMap, BTreeSet};

use proptest::prelude::*;
use switchyard_core::policy::{
    Candidate, Constraints, Exclusion, Policy, PolicyError, Rule, Target, Tunable, ValidationRow,
    calibrate, decide, operating_point,
};

fn c(model: &str, quality: f64, cost_usd: f64) -> Candidate {
    Candidate {
        model: model.into(),
        quality,
        cost_usd,
        context_window: None,
    }
}

fn pool() -> Vec<Candidate> {
    vec![
        c("small", 0.55, 0.001),
        c("medium", 0.75, 0.01),
        c("large", 0.9, 0.1),
    ]
}

fn none() -> Constraints {
    Constraints::default()
}

#[test]
fn threshold_picks_the_cheapest_good_enough_model() {
    let d = decide(&pool(), &none(), Policy::Threshold { tau: 0.7 }).unwrap();
    assert_eq!(d.chosen, "medium");
    assert_eq!(d.rule, Rule::CheapestAboveThreshold);
    let order: Vec<&str> = d.ranked.iter().map(|r| r.model.as_str()).collect();
    assert_eq!(
        order,
        ["medium", "large", "small"],
        "runners-up are the fallback order"
    );

    let d = decide(&pool(), &none(), Policy::Threshold { tau: 0.95 }).unwrap();
    assert_eq!(
        (d.chosen.as_str(), d.rule),
        ("large", Rule::BestBelowThreshold)
    );
}

#[test]
fn tradeoff_and_budget() {
    // λ = 1: utilities 0.549, 0.74, 0.8 → large; λ = 5: 0.545, 0.70, 0.4 → medium.
    assert_eq!(
        decide(&pool(), &none(), Policy::Tradeoff { lambda: 1.0 })
            .unwrap()
            .chosen,
        "large"
    );
    assert_eq!(
        decide(&pool(), &none(), Policy::Tradeoff { lambda: 5.0 })
            .unwrap()
            .chosen,
        "medium"
    );
    let d = decide(&pool(), &none(), Policy::Budget { max_cost_usd: 0.02 }).unwrap();
    assert_eq!(
        (d.chosen.as_str(), d.rule),
        ("medium", Rule::BestWithinBudget)
    );
    let d = decide(
        &pool(),
        &none(),
        Policy::Budget {
            max_cost_usd: 0.0001,
        },
    )
    .unwrap();
    assert_eq!(
        (d.chosen.as_str(), d.rule),
        ("small", Rule::CheapestOverBudget)
    );
}

#[test]
fn constraints_apply_first_and_are_reported() {
    let mut candidates = pool();
    candidates[2].context_window = Some(1000);
    let constraints = Constraints {
        required_tokens: 4000,
        allowed: Some(["small", "large"].into_iter().map(String::from).collect()),
        unavailable: BTreeSet::new(),
    };
    let d = decide(&candidates, &constraints, Policy::Threshold { tau: 0.7 }).unwrap();
    assert_eq!(d.chosen, "small", "medium not allowed, large too small");
    assert_eq!(d.excluded["medium"], Exclusion::NotAllowed);
    assert_eq!(d.excluded["large"], Exclusion::ContextTooSmall);

    let all_down = Constraints {
        unavailable: ["small", "medium", "large"]
            .into_iter()
            .map(String::from)
            .collect(),
        ..Constraints::default()
    };
    let err = decide(&pool(), &all_down, Policy::Threshold { tau: 0.5 }).unwrap_err();
    assert!(matches!(err, PolicyError::AllExcluded(_)));
    assert!(err.to_string().contains("large (unavailable)"), "{err}");
    assert_eq!(
        decide(&[], &none(), Policy::Threshold { tau: 0.5 }),
        Err(PolicyError::NoCandidates)
    );
    let nan = [c("broken", f64::NAN, 0.0), c("ok", 0.1, 0.0)];
    let d = decide(&nan, &none(), Policy::Threshold { tau: 0.5 }).unwrap();
    assert_eq!(
        (d.chosen.as_str(), d.excluded["broken"]),
        ("ok", Exclusion::InvalidPrediction)
    );
}

#[test]
fn calibration_meets_each_kind_of_target() {
    // Prompts where the small model is predicted to be good on some and bad on others.
    let rows: Vec<ValidationRow> = (0..20)
        .map(|i| {
            let q = f64::from(i) / 20.0;
            ValidationRow {
                candidates: vec![c("small", q, 0.001), c("large", 0.9, 0.1)],
                observed: BTreeMap::new(),
            }
        })
        .collect();
    let op = calibrate(
        &rows,
        Tunable::Threshold,
        "large",
        Target::StrongShare(0.25),
    )
    .unwrap();
    assert!(op.strong_share <= 0.25 && op.strong_share >= 0.2, "{op:?}");
    let op = calibrate(&rows, Tunable::Tradeoff, "large", Target::MeanCost(0.03)).unwrap();
    assert!(op.mean_cost_usd <= 0.03, "{op:?}");
    let op = calibrate(&rows, Tunable::Threshold, "large", Target::MeanQuality(0.8)).unwrap();
    assert!(op.mean_quality >= 0.8, "{op:?}");
    assert!(
        calibrate(
            &rows,
            Tunable::Threshold,
            "large",
            Target::MeanQuality(0.99)
        )
        .is_none()
    );
}

fn candidates() -> impl Strategy<Value = Vec<Candidate>> {
    prop::collection::vec(
        (0.0f64..=1.0, 0.0f64..1.0, prop::option::of(100u64..10_000)),
        1..8,
    )
    .prop_map(|v| {
        v.into_iter()
            .enumerate()
            .map(|(i, (quality, cost_usd, context_window))| Candidate {
                model: format!("m{i}"),
                quality,
                cost_usd,
                context_window,
            })
            .collect()
    })
}

fn policies() -> impl Strategy<Value = Policy> {
    prop_oneof![
        (0.0f64..=1.0).prop_map(|tau| Policy::Threshold { tau }),
        (0.0f64..100.0).prop_map(|lambda| Policy::Tradeoff { lambda }),
        (0.0f64..1.0).prop_map(|max_cost_usd| Policy::Budget { max_cost_usd }),
        (0.0f64..1.0).prop_map(|margin| Policy::Margin { margin }),
    ]
}

proptest! {
    #[test]
    fn decisions_respect_constraints_and_rank_every_eligible_model(
        candidates in candidates(),
        policy in policies(),
        required in 0u64..12_000,
        blocked in prop::collection::btree_set(0usize..8, 0..4),
    ) {
        let constraints = Constraints {
            required_tokens: required,
            allowed: None,
            unavailable: blocked.iter().map(|i| format!("m{i}")).collect(),
        };
        let eligible: Vec<&Candidate> = candidates
            .iter()
            .filter(|c| !constraints.unavailable.contains(&c.model))
            .filter(|c| c.context_window.is_none_or(|w| w >= required))
            .collect();
        match decide(&candidates, &constraints, policy) {
            Err(_) => prop_assert!(eligible.is_empty()),
            Ok(d) => {
                prop_assert_eq!(&d.chosen, &d.ranked[0].model);
                prop_assert_eq!(d.ranked.len(), eligible.len());
                prop_assert_eq!(d.ranked.len() + d.excluded.len(), candidates.len());
                let chosen = eligible.iter().find(|c| c.model == d.chosen).unwrap();
                match policy {
                    Policy::Threshold { tau } => {
                        let good: Vec<_> = eligible.iter().filter(|c| c.quality >= tau).collect();
                        if good.is_empty() {
                            prop_assert!(eligible.iter().all(|c| c.quality <= chosen.quality));
                        } else {
                            prop_assert!(chosen.quality >= tau);
                            prop_assert!(good.iter().all(|c| c.cost_usd >= chosen.cost_usd));
                        }
                    }
                    Policy::Tradeoff { lambda } => {
                        let u = |c: &Candidate| c.quality - lambda * c.cost_usd;
                        prop_assert!(eligible.iter().all(|c| u(c) <= u(chosen) + 1e-12));
                    }
                    Policy::Budget { max_cost_usd } => {
                        let fits: Vec<_> = eligible.iter().filter(|c| c.cost_usd <= max_cost_usd).collect();
                        if fits.is_empty() {
                            prop_assert!(eligible.iter().all(|c| c.cost_usd >= chosen.cost_usd));
                        } else {
                            prop_assert!(chosen.cost_usd <= max_cost_usd);
                            prop_assert!(fits.iter().all(|c| c.quality <= chosen.quality));
                        }
                    }
                    Policy::Margin { margin } => {
                        let best = eligible.iter().map(|c| c.quality).fold(f64::NEG_INFINITY, f64::max);
                        prop_assert!(chosen.quality >= best - margin);
                        let near = eligible.iter().filter(|c| c.quality >= best - margin);
                        prop_assert!(near.into_iter().all(|c| c.cost_usd >= chosen.cost_usd));
                    }
                }
            }
        }
    }

    #[test]
    fn a_higher_threshold_never_lowers_quality_or_cost(
        rows in prop::collection::vec(candidates(), 1..20),
        a in 0.0f64..=1.0,
        b in 0.0f64..=1.0,
    ) {
        let rows: Vec<ValidationRow> = rows
            .into_iter()
            .map(|candidates| ValidationRow {
                candidates: candidates.into_iter().map(|c| Candidate { context_window: None, ..c }).collect(),
                observed: BTreeMap::new(),
            })
            .collect();
        let (lo, hi) = if a <= b { (a, b) } else { (b, a) };
        let p_lo = operating_point(&rows, Policy::Threshold { tau: lo }, "m0");
        let p_hi = operating_point(&rows, Policy::Threshold { tau: hi }, "m0");
        // Per prompt, raising τ can only move the choice to a model predicted at least as
        // good (the cheapest above a higher bar clears the lower bar too).
        prop_assert!(p_hi.mean_quality >= p_lo.mean_quality - 1e-9);
    }
}
