//! From a featurised prompt to the policy's candidates: each model's predicted quality
//! and expected cost, by one rule for every caller.
//!
//! - quality: the scorer's prediction for the model it is scored as, else the model's
//!   configured prior, else [`DEFAULT_QUALITY_PRIOR`];
//! - output tokens: the scorer's prediction (the model's per-task mean, else the mean over
//!   every model), else the configured default, else [`DEFAULT_OUTPUT_TOKENS`]; never more
//!   than the client's `max_tokens`;
//! - cost: with a price, input tokens × input price + output tokens × output price; without
//!   one, the mean observed cost of the model's answers to that task.

use switchyard_core::policy::Candidate;
use switchyard_core::pricing::{Price, PriceTable};
use switchyard_scorer::{PromptFeatures, Scorer};

use crate::error::RouterError;

/// Quality assumed for a model the scorer cannot predict and no prior is configured for.
pub const DEFAULT_QUALITY_PRIOR: f64 = 0.5;

/// Output tokens assumed when neither the scorer nor the config says.
pub const DEFAULT_OUTPUT_TOKENS: f64 = 256.0;

/// A model the router may choose, and what is known of it beyond the scorer.
#[derive(Debug, Clone, PartialEq)]
pub struct CandidateSpec {
    pub model: String,
    /// The scorer's model whose prediction stands in for this one (`None`: not scored).
    pub scored_as: Option<String>,
    /// USD per 1M tokens; `None`: the observed cost of its answers.
    pub price: Option<Price>,
    pub quality_prior: Option<f64>,
    pub output_tokens: Option<f64>,
    pub context_window: Option<u64>,
}

impl CandidateSpec {
    /// A model the scorer knows, predicted as itself.
    pub fn scored(model: &str, price: Option<Price>) -> Self {
        Self {
            model: model.to_owned(),
            scored_as: Some(model.to_owned()),
            price,
            quality_prior: None,
            output_tokens: None,
            context_window: None,
        }
    }
}

/// Each candidate's predicted quality and expected cost for one prompt's features; the
/// router's rule (module docs), also used by `eval routing` on pre-featurised prompts.
pub fn predict_candidates(
    scorer: &Scorer,
    features: &PromptFeatures,
    input_tokens: u64,
    max_output_tokens: Option<u64>,
    specs: &[CandidateSpec],
) -> Result<Vec<Candidate>, RouterError> {
    let mut scored: Vec<String> = specs.iter().filter_map(|s| s.scored_as.clone()).collect();
    scored.sort();
    scored.dedup();
    let predictions = scorer.predict(features, Some(&scored))?;
    let mut missing = Vec::new();
    let mut out = Vec::with_capacity(specs.len());
    for spec in specs {
        let predicted = spec
            .scored_as
            .as_ref()
            .and_then(|like| predictions.iter().find(|p| &p.model == like));
        let quality = predicted
            .map(|p| p.quality)
            .or(spec.quality_prior)
            .unwrap_or(DEFAULT_QUALITY_PRIOR);
        let mut output = predicted
            .and_then(|p| p.output_tokens)
            .or(spec.output_tokens)
            .unwrap_or(DEFAULT_OUTPUT_TOKENS);
        if let Some(cap) = max_output_tokens {
            output = output.min(cap as f64);
        }
        let cost = match spec.price {
            Some(price) => Some(price.cost(input_tokens as f64, output)),
            None => predicted.and_then(|p| p.observed_cost_usd),
        };
        match cost {
            Some(cost_usd) => out.push(Candidate {
                model: spec.model.clone(),
                quality,
                cost_usd,
                context_window: spec.context_window,
            }),
            None => missing.push(spec.model.clone()),
        }
    }
    if missing.is_empty() {
        Ok(out)
    } else {
        Err(RouterError::NoCost(missing))
    }
}

/// Every model the scorer knows that can be costed (a price in `prices`, or observed costs
/// in its training data), each predicted as itself: the candidates when a caller names none.
pub fn known_candidates(scorer: &Scorer, prices: &PriceTable) -> Vec<CandidateSpec> {
    scorer
        .models
        .iter()
        .filter(|(id, m)| prices.0.contains_key(*id) || m.usage.cost_usd.overall.n > 0)
        .map(|(id, _)| CandidateSpec::scored(id, prices.0.get(id).copied()))
        .collect()
}

/// The named models, each predicted as itself and priced from `prices` when listed there;
/// an error names any model the scorer does not know.
pub fn named_candidates(
    scorer: &Scorer,
    models: &[String],
    prices: &PriceTable,
) -> Result<Vec<CandidateSpec>, RouterError> {
    scorer.check_known(models.iter().map(String::as_str))?;
    Ok(models
        .iter()
        .map(|m| CandidateSpec::scored(m, prices.0.get(m).copied()))
        .collect())
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use switchyard_core::{EncoderInfo, TaskClass, Truncation};
    use switchyard_scorer::{
        EXTRA_FEATURES, QualityConfig, ScoredModel, ScorerManifest, TrainingRow, Usage, fit_all,
    };

    use super::*;

    fn feats(x: f64) -> Vec<f64> {
        let mut v = vec![x, -x];
        v.resize(2 + EXTRA_FEATURES, 0.0);
        v
    }

    /// "big" succeeds nearly always and has token data; "small" only for x > 0.3 and has
    /// only observed costs.
    fn scorer() -> Scorer {
        let rows: Vec<TrainingRow> = (0..200)
            .map(|i| {
                let x = f64::from(i) / 100.0 - 1.0;
                let scores = [("big", x > -0.8), ("small", x > 0.3)]
                    .map(|(m, ok)| (m.to_owned(), f64::from(u8::from(ok))));
                TrainingRow {
                    features: feats(x),
                    scores: scores.into(),
                }
            })
            .collect();
        let config = QualityConfig::default();
        let mut models = BTreeMap::new();
        for (m, quality) in fit_all(&rows, &config).unwrap() {
            let mut usage = Usage::default();
            if m == "small" {
                usage.cost_usd.add(TaskClass::Chat, 0.001);
            } else {
                usage.output_tokens.add(TaskClass::Chat, 300.0);
            }
            models.insert(m, ScoredModel { quality, usage });
        }
        let encoder = EncoderInfo {
            id: "enc".into(),
            dim: 2,
            max_tokens: 256,
            weights_sha256: "ab".repeat(32),
            truncation: Truncation::Head,
        };
        let manifest = ScorerManifest::new(encoder, "cd".repeat(32), config, 2 + EXTRA_FEATURES);
        Scorer::new(manifest, None, models)
    }

    fn prompt(x: f64) -> PromptFeatures {
        PromptFeatures {
            features: feats(x),
            task: TaskClass::Chat,
        }
    }

    const PRICE: Price = Price {
        input_per_mtok: 10.0,
        output_per_mtok: 30.0,
    };

    #[test]
    fn quality_tokens_and_cost_follow_one_rule() {
        let s = scorer();
        let unscored = CandidateSpec {
            model: "mine".into(),
            scored_as: None,
            price: Some(PRICE),
            quality_prior: None,
            output_tokens: None,
            context_window: Some(8192),
        };
        let specs = [
            CandidateSpec::scored("big", Some(PRICE)),
            CandidateSpec::scored("small", None),
            // A model of the user's own, predicted as "small" but priced.
            CandidateSpec {
                model: "alias".into(),
                scored_as: Some("small".into()),
                ..unscored.clone()
            },
            unscored.clone(),
            CandidateSpec {
                model: "prior".into(),
                quality_prior: Some(0.9),
                output_tokens: Some(50.0),
                ..unscored
            },
        ];
        let c = predict_candidates(&s, &prompt(0.9), 1000, None, &specs).unwrap();
        let get = |m: &str| c.iter().find(|x| x.model == m).unwrap();
        // Priced: input × price + predicted output (the model's own 300) × price.
        assert!((get("big").cost_usd - (1000.0 * 10.0 + 300.0 * 30.0) / 1e6).abs() < 1e-12);
        // No price: the observed cost.
        assert!((get("small").cost_usd - 0.001).abs() < 1e-12);
        // Scored as "small": its quality, but its own price and the pooled 300 tokens.
        assert_eq!(get("alias").quality, get("small").quality);
        assert!((get("alias").cost_usd - get("big").cost_usd).abs() < 1e-12);
        // Not scored: the default prior and default output tokens; or the configured ones.
        assert_eq!(get("mine").quality, DEFAULT_QUALITY_PRIOR);
        let default_cost = (1000.0 * 10.0 + DEFAULT_OUTPUT_TOKENS * 30.0) / 1e6;
        assert!((get("mine").cost_usd - default_cost).abs() < 1e-12);
        assert_eq!(get("mine").context_window, Some(8192));
        assert_eq!(get("prior").quality, 0.9);
        assert!((get("prior").cost_usd - (1000.0 * 10.0 + 50.0 * 30.0) / 1e6).abs() < 1e-12);

        // max_tokens caps the expected output.
        let capped = predict_candidates(&s, &prompt(0.9), 1000, Some(10), &specs[..1]).unwrap();
        assert!((capped[0].cost_usd - (1000.0 * 10.0 + 10.0 * 30.0) / 1e6).abs() < 1e-12);
    }

    #[test]
    fn uncostable_and_unknown_models_are_named() {
        let s = scorer();
        let err = predict_candidates(
            &s,
            &prompt(0.0),
            10,
            None,
            &[CandidateSpec::scored("big", None)],
        )
        .unwrap_err()
        .to_string();
        assert!(err.contains("big") && err.contains("price"), "{err}");
        let err = named_candidates(&s, &["gpt-9".into()], &PriceTable::default())
            .unwrap_err()
            .to_string();
        assert!(err.contains("gpt-9") && err.contains("big, small"), "{err}");
        let known = known_candidates(&s, &PriceTable::default());
        assert_eq!(
            known.len(),
            1,
            "only the model with observed costs: {known:?}"
        );
        assert_eq!(known[0].model, "small");
    }
}
