//! The routing policy: given every candidate model's predicted quality and expected cost
//! for one prompt, choose a model. Pure functions, no I/O, so they are easy to test and
//! to reason about.
//!
//! Constraints apply first (allowed models, unavailable models, context window); then one
//! rule decides:
//! - `threshold`: the cheapest candidate whose predicted quality is at least τ, else the
//!   best predicted;
//! - `tradeoff`: the candidate maximising quality − λ·cost;
//! - `budget`: the best predicted quality among candidates with expected cost ≤ B, else the
//!   cheapest;
//! - `margin`: the cheapest candidate predicted within m of the best predicted quality —
//!   "pay for a stronger model only when it is predicted to be at least m better".
//!
//! The decision lists every eligible candidate in the rule's order of preference: the
//! runners-up are the fallback order.

use std::collections::{BTreeMap, BTreeSet};

use serde::{Deserialize, Serialize};

/// One model's prediction for one prompt.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Candidate {
    pub model: String,
    /// Predicted quality in [0, 1].
    pub quality: f64,
    /// Expected cost of answering, USD.
    pub cost_usd: f64,
    /// Longest prompt + answer the model takes, in tokens, when known.
    pub context_window: Option<u64>,
}

/// Hard limits applied before any rule.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Constraints {
    /// Tokens the request needs (prompt + requested output).
    pub required_tokens: u64,
    /// Only these models may serve (route or tenant allow-list); `None` = any.
    pub allowed: Option<BTreeSet<String>>,
    /// Models that cannot serve now (open circuit breaker, disabled).
    pub unavailable: BTreeSet<String>,
}

/// Why a candidate was not eligible.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Exclusion {
    NotAllowed,
    Unavailable,
    ContextTooSmall,
    /// Its prediction is not a number.
    InvalidPrediction,
}

/// The rule and its parameter.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(tag = "policy", rename_all = "snake_case")]
pub enum Policy {
    Threshold { tau: f64 },
    Tradeoff { lambda: f64 },
    Budget { max_cost_usd: f64 },
    Margin { margin: f64 },
}

impl std::str::FromStr for Policy {
    type Err = String;

    /// `threshold:0.7`, `tradeoff:500`, `budget:0.002`, `margin:0.05`.
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let (rule, value) = s
            .split_once(':')
            .ok_or_else(|| format!("{s:?}: expected RULE:VALUE, e.g. threshold:0.7"))?;
        let value: f64 = value
            .trim()
            .parse()
            .map_err(|_| format!("{s:?}: {value:?} is not a number"))?;
        if !value.is_finite() || value < 0.0 {
            return Err(format!("{s:?}: the value must be a non-negative number"));
        }
        Ok(match rule.trim() {
            "threshold" => Self::Threshold { tau: value },
            "tradeoff" => Self::Tradeoff { lambda: value },
            "budget" => Self::Budget {
                max_cost_usd: value,
            },
            "margin" => Self::Margin { margin: value },
            other => {
                return Err(format!(
                    "unknown policy {other:?}: use threshold:TAU, tradeoff:LAMBDA, budget:USD or margin:M"
                ));
            }
        })
    }
}

impl std::fmt::Display for Policy {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Threshold { tau } => write!(f, "threshold:{tau}"),
            Self::Tradeoff { lambda } => write!(f, "tradeoff:{lambda}"),
            Self::Budget { max_cost_usd } => write!(f, "budget:{max_cost_usd}"),
            Self::Margin { margin } => write!(f, "margin:{margin}"),
        }
    }
}

/// Which rule made the choice, including its fallbacks.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Rule {
    /// The cheapest candidate predicted to clear τ.
    CheapestAboveThreshold,
    /// No candidate cleared τ: the best predicted.
    BestBelowThreshold,
    /// Highest quality − λ·cost.
    BestTradeoff,
    /// Best quality within the budget.
    BestWithinBudget,
    /// Nothing fits the budget: the cheapest.
    CheapestOverBudget,
    /// The cheapest within the margin of the best predicted quality.
    CheapestWithinMargin,
}

/// An eligible candidate in the decision's order.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Ranked {
    pub model: String,
    pub quality: f64,
    pub cost_usd: f64,
}

/// The outcome of routing one prompt.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Decision {
    pub chosen: String,
    pub rule: Rule,
    pub policy: Policy,
    /// Every eligible candidate, chosen first, then the fallback order.
    pub ranked: Vec<Ranked>,
    /// Candidates left out by constraints, with the reason.
    pub excluded: BTreeMap<String, Exclusion>,
    /// The prompt's predicted task, when the caller classified it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub task: Option<crate::TaskClass>,
    /// The prompt's predicted difficulty in [0, 1], when the caller classified it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub difficulty: Option<f64>,
    /// The version of the learned router that decided (its heads and scorer), when one did.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub router_version: Option<String>,
    /// The probability that `chosen` had of being chosen, exploration included (1 when the
    /// route does not explore). Off-policy evaluation weighs logged outcomes by it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub propensity: Option<f64>,
    /// `chosen` was drawn by exploration instead of being the policy's pick, `greedy`.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub explored: bool,
    /// The policy's own pick, when exploration chose another model.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub greedy: Option<String>,
}

#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum PolicyError {
    #[error("no candidate models to route to")]
    NoCandidates,
    #[error("every candidate is excluded: {}", describe(.0))]
    AllExcluded(BTreeMap<String, Exclusion>),
}

fn describe(excluded: &BTreeMap<String, Exclusion>) -> String {
    excluded
        .iter()
        .map(|(m, e)| {
            format!(
                "{m} ({})",
                serde_json::to_string(e)
                    .unwrap_or_default()
                    .trim_matches('"')
            )
        })
        .collect::<Vec<_>>()
        .join(", ")
}

fn exclusion(c: &Candidate, constraints: &Constraints) -> Option<Exclusion> {
    if !c.quality.is_finite() || !c.cost_usd.is_finite() {
        return Some(Exclusion::InvalidPrediction);
    }
    if constraints
        .allowed
        .as_ref()
        .is_some_and(|a| !a.contains(&c.model))
    {
        return Some(Exclusion::NotAllowed);
    }
    if constraints.unavailable.contains(&c.model) {
        return Some(Exclusion::Unavailable);
    }
    if c.context_window
        .is_some_and(|w| w < constraints.required_tokens)
    {
        return Some(Exclusion::ContextTooSmall);
    }
    None
}

/// Quality first (higher), then cost (lower), then name, for a total, stable order.
fn by_quality(a: &Candidate, b: &Candidate) -> std::cmp::Ordering {
    b.quality
        .total_cmp(&a.quality)
        .then(a.cost_usd.total_cmp(&b.cost_usd))
        .then(a.model.cmp(&b.model))
}

/// Cost first (lower), then quality (higher), then name.
fn by_cost(a: &Candidate, b: &Candidate) -> std::cmp::Ordering {
    a.cost_usd
        .total_cmp(&b.cost_usd)
        .then(b.quality.total_cmp(&a.quality))
        .then(a.model.cmp(&b.model))
}

/// Routes one prompt: the eligible candidates, ordered by `policy`; the first is chosen
/// and the rest are the fallback order.
pub fn decide(
    candidates: &[Candidate],
    constraints: &Constraints,
    policy: Policy,
) -> Result<Decision, PolicyError> {
    if candidates.is_empty() {
        return Err(PolicyError::NoCandidates);
    }
    let (eligible, excluded) = eligible(candidates, constraints);
    if eligible.is_empty() {
        return Err(PolicyError::AllExcluded(excluded));
    }
    let (order, rule) = order(eligible, policy);
    let ranked: Vec<Ranked> = order
        .iter()
        .map(|c| Ranked {
            model: c.model.clone(),
            quality: c.quality,
            cost_usd: c.cost_usd,
        })
        .collect();
    Ok(Decision {
        chosen: ranked[0].model.clone(),
        rule,
        policy,
        ranked,
        excluded,
        task: None,
        difficulty: None,
        router_version: None,
        propensity: None,
        explored: false,
        greedy: None,
    })
}

/// The candidates the constraints allow, and why each other one is left out.
fn eligible<'c>(
    candidates: &'c [Candidate],
    constraints: &Constraints,
) -> (Vec<&'c Candidate>, BTreeMap<String, Exclusion>) {
    let mut excluded = BTreeMap::new();
    let mut eligible: Vec<&Candidate> = Vec::new();
    for c in candidates {
        match exclusion(c, constraints) {
            Some(reason) => {
                excluded.insert(c.model.clone(), reason);
            }
            None => eligible.push(c),
        }
    }
    (eligible, excluded)
}

/// `eligible` in `policy`'s order, and the rule that picked the first.
fn order(eligible: Vec<&Candidate>, policy: Policy) -> (Vec<&Candidate>, Rule) {
    match policy {
        Policy::Threshold { tau } => {
            let (mut above, mut below): (Vec<&Candidate>, Vec<&Candidate>) =
                eligible.iter().partition(|c| c.quality >= tau);
            above.sort_by(|a, b| by_cost(a, b));
            below.sort_by(|a, b| by_quality(a, b));
            let rule = if above.is_empty() {
                Rule::BestBelowThreshold
            } else {
                Rule::CheapestAboveThreshold
            };
            (above.into_iter().chain(below).collect(), rule)
        }
        Policy::Tradeoff { lambda } => {
            let mut all = eligible;
            let utility = |c: &Candidate| c.quality - lambda * c.cost_usd;
            all.sort_by(|a, b| utility(b).total_cmp(&utility(a)).then(by_cost(a, b)));
            (all, Rule::BestTradeoff)
        }
        Policy::Budget { max_cost_usd } => {
            let (mut fits, mut over): (Vec<&Candidate>, Vec<&Candidate>) =
                eligible.iter().partition(|c| c.cost_usd <= max_cost_usd);
            fits.sort_by(|a, b| by_quality(a, b));
            over.sort_by(|a, b| by_cost(a, b));
            let rule = if fits.is_empty() {
                Rule::CheapestOverBudget
            } else {
                Rule::BestWithinBudget
            };
            (fits.into_iter().chain(over).collect(), rule)
        }
        Policy::Margin { margin } => {
            let best = eligible
                .iter()
                .map(|c| c.quality)
                .fold(f64::NEG_INFINITY, f64::max);
            let (mut near, mut rest): (Vec<&Candidate>, Vec<&Candidate>) =
                eligible.iter().partition(|c| c.quality >= best - margin);
            near.sort_by(|a, b| by_cost(a, b));
            rest.sort_by(|a, b| by_quality(a, b));
            (
                near.into_iter().chain(rest).collect(),
                Rule::CheapestWithinMargin,
            )
        }
    }
}

/// What calibration should achieve on a validation set.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Target {
    /// At most this share (0..1) of calls to the given strongest model, as many as allowed.
    StrongShare(f64),
    /// Mean expected cost per call at most this (USD), with the best mean quality.
    MeanCost(f64),
    /// Mean quality at least this, at the lowest mean cost.
    MeanQuality(f64),
}

/// Which rule calibration tunes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Tunable {
    Threshold,
    Tradeoff,
}

/// One validation prompt: the candidates' predictions, and optionally what each model
/// actually scored (used for mean quality when present).
#[derive(Debug, Clone, PartialEq)]
pub struct ValidationRow {
    pub candidates: Vec<Candidate>,
    pub observed: BTreeMap<String, f64>,
}

/// How a policy did on a validation set.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Operating {
    pub policy: Policy,
    pub strong_share: f64,
    pub mean_cost_usd: f64,
    pub mean_quality: f64,
}

/// Runs `policy` over `rows` (no constraints) and summarises it.
pub fn operating_point(rows: &[ValidationRow], policy: Policy, strongest: &str) -> Operating {
    let (mut strong, mut cost, mut quality, mut n) = (0usize, 0.0, 0.0, 0usize);
    for row in rows {
        let Ok(d) = decide(&row.candidates, &Constraints::default(), policy) else {
            continue;
        };
        n += 1;
        strong += usize::from(d.chosen == strongest);
        cost += d.ranked[0].cost_usd;
        quality += row
            .observed
            .get(&d.chosen)
            .copied()
            .unwrap_or(d.ranked[0].quality);
    }
    let n_f = n.max(1) as f64;
    Operating {
        policy,
        strong_share: strong as f64 / n_f,
        mean_cost_usd: cost / n_f,
        mean_quality: quality / n_f,
    }
}

/// The parameter values worth trying: every distinct predicted quality for τ (plus the
/// extremes); a log grid for λ (plus 0).
fn sweep(rows: &[ValidationRow], tunable: Tunable) -> Vec<Policy> {
    match tunable {
        Tunable::Threshold => {
            let mut taus: Vec<f64> = rows
                .iter()
                .flat_map(|r| r.candidates.iter().map(|c| c.quality))
                .filter(|q| q.is_finite())
                .chain([0.0, 1.0 + 1e-9])
                .collect();
            taus.sort_by(f64::total_cmp);
            taus.dedup();
            taus.into_iter()
                .map(|tau| Policy::Threshold { tau })
                .collect()
        }
        Tunable::Tradeoff => std::iter::once(0.0)
            .chain((-40..=160).map(|k| 10f64.powf(f64::from(k) / 20.0)))
            .map(|lambda| Policy::Tradeoff { lambda })
            .collect(),
    }
}

/// Finds the parameter of `tunable` that meets `target` on `rows`, or `None` when no
/// value does.
pub fn calibrate(
    rows: &[ValidationRow],
    tunable: Tunable,
    strongest: &str,
    target: Target,
) -> Option<Operating> {
    let points: Vec<Operating> = sweep(rows, tunable)
        .into_iter()
        .map(|p| operating_point(rows, p, strongest))
        .collect();
    let better =
        |a: &Operating, b: &Operating, key: fn(&Operating) -> f64| key(a).total_cmp(&key(b));
    match target {
        Target::StrongShare(share) => points
            .into_iter()
            .filter(|p| p.strong_share <= share + 1e-12)
            .max_by(|a, b| better(a, b, |p| p.strong_share).then(better(a, b, |p| p.mean_quality))),
        Target::MeanCost(cost) => points
            .into_iter()
            .filter(|p| p.mean_cost_usd <= cost + 1e-15)
            .max_by(|a, b| {
                better(a, b, |p| p.mean_quality).then(better(b, a, |p| p.mean_cost_usd))
            }),
        Target::MeanQuality(quality) => points
            .into_iter()
            .filter(|p| p.mean_quality >= quality - 1e-12)
            .min_by(|a, b| {
                better(a, b, |p| p.mean_cost_usd).then(better(b, a, |p| p.mean_quality))
            }),
    }
}
