//! Switchyard's quality scorer: for each candidate model, the predicted quality of its
//! answer to a prompt, from features of the prompt (its embedding, task probabilities,
//! difficulty, length). This is the only crate that knows linfa.
//!
//! Status: the first model family (per-model L2-regularised logistic regression on
//! "score ≥ 0.5", shrunk toward the model's mean when it has few samples). Still to come
//! (issue 4): a second family compared on validation, output-token prediction, artifacts
//! with a manifest, and the committed default scorer.

use std::collections::BTreeMap;

use linfa::prelude::*;
use linfa_logistic::{FittedLogisticRegression, LogisticRegression};
use ndarray::{Array1, Array2};

/// Builds the scorer's feature vector for one prompt.
pub fn features(
    embedding: &[f32],
    task_probs: &[f32],
    difficulty: f32,
    prompt_tokens: usize,
) -> Vec<f64> {
    embedding
        .iter()
        .chain(task_probs)
        .map(|&x| f64::from(x))
        .chain([f64::from(difficulty), (prompt_tokens as f64).ln_1p() / 8.0])
        .collect()
}

/// One training prompt: its features and what each model scored on it.
#[derive(Debug, Clone)]
pub struct TrainingRow {
    pub features: Vec<f64>,
    pub scores: BTreeMap<String, f64>,
}

/// Fitting settings.
#[derive(Debug, Clone, Copy)]
pub struct ScorerConfig {
    /// L2 strength of the logistic regression.
    pub alpha: f64,
    /// Pseudo-count toward the model's mean score: prediction =
    /// (n·model + k·mean) / (n + k), so sparse models stay near their average.
    pub shrinkage: f64,
    pub max_iterations: u64,
}

impl Default for ScorerConfig {
    fn default() -> Self {
        Self {
            alpha: 1.0,
            shrinkage: 20.0,
            max_iterations: 200,
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum ScorerError {
    #[error("no training rows")]
    Empty,
    #[error("feature vectors must all have {expected} values, row {row} has {got}")]
    Shape {
        expected: usize,
        row: usize,
        got: usize,
    },
    #[error("fitting the model for {model} failed: {reason}")]
    Fit { model: String, reason: String },
}

#[derive(Debug)]
struct ModelQuality {
    /// None when the model's outcomes are all one class: the mean is all we know.
    fitted: Option<FittedLogisticRegression<f64, bool>>,
    mean: f64,
    samples: usize,
}

/// Predicted quality per model.
#[derive(Debug)]
pub struct QualityScorer {
    dim: usize,
    config: ScorerConfig,
    models: BTreeMap<String, ModelQuality>,
}

impl QualityScorer {
    /// Fits one model per candidate seen in `rows`.
    pub fn fit(rows: &[TrainingRow], config: ScorerConfig) -> Result<Self, ScorerError> {
        let dim = rows.first().ok_or(ScorerError::Empty)?.features.len();
        if let Some((row, r)) = rows
            .iter()
            .enumerate()
            .find(|(_, r)| r.features.len() != dim)
        {
            return Err(ScorerError::Shape {
                expected: dim,
                row,
                got: r.features.len(),
            });
        }
        let mut per_model: BTreeMap<&str, Vec<(usize, f64)>> = BTreeMap::new();
        for (i, row) in rows.iter().enumerate() {
            for (model, &score) in &row.scores {
                per_model.entry(model).or_default().push((i, score));
            }
        }
        let mut models = BTreeMap::new();
        for (model, samples) in per_model {
            let mean = samples.iter().map(|(_, s)| s).sum::<f64>() / samples.len() as f64;
            let labels: Array1<bool> = samples.iter().map(|(_, s)| *s >= 0.5).collect();
            let fitted = if labels.iter().all(|&l| l) || labels.iter().all(|&l| !l) {
                None
            } else {
                let mut x = Array2::zeros((samples.len(), dim));
                for (r, (i, _)) in samples.iter().enumerate() {
                    for (c, v) in rows[*i].features.iter().enumerate() {
                        x[[r, c]] = *v;
                    }
                }
                let fitted = LogisticRegression::default()
                    .alpha(config.alpha)
                    .max_iterations(config.max_iterations)
                    .fit(&Dataset::new(x, labels))
                    .map_err(|e| ScorerError::Fit {
                        model: model.to_owned(),
                        reason: e.to_string(),
                    })?;
                Some(fitted)
            };
            models.insert(
                model.to_owned(),
                ModelQuality {
                    fitted,
                    mean,
                    samples: samples.len(),
                },
            );
        }
        Ok(Self {
            dim,
            config,
            models,
        })
    }

    /// The models this scorer knows, with their training counts.
    pub fn models(&self) -> BTreeMap<&str, usize> {
        self.models
            .iter()
            .map(|(m, q)| (m.as_str(), q.samples))
            .collect()
    }

    /// Predicted quality in [0, 1] of each known model's answer to the prompt.
    pub fn predict(&self, features: &[f64]) -> Result<BTreeMap<String, f64>, ScorerError> {
        if features.len() != self.dim {
            return Err(ScorerError::Shape {
                expected: self.dim,
                row: 0,
                got: features.len(),
            });
        }
        let x = Array2::from_shape_vec((1, self.dim), features.to_vec()).map_err(|e| {
            ScorerError::Fit {
                model: "(input)".into(),
                reason: e.to_string(),
            }
        })?;
        Ok(self
            .models
            .iter()
            .map(|(model, q)| {
                let p = match &q.fitted {
                    None => q.mean,
                    Some(f) => {
                        let p_pos = f.predict_probabilities(&x)[0];
                        if f.labels().pos.class {
                            p_pos
                        } else {
                            1.0 - p_pos
                        }
                    }
                };
                let n = q.samples as f64;
                let k = self.config.shrinkage;
                (model.clone(), (n * p + k * q.mean) / (n + k))
            })
            .collect())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// "strong" is right when feature 0 is positive, "weak" only when it is very positive;
    /// "rare" has three samples, "flat" is always right.
    fn rows() -> Vec<TrainingRow> {
        (0..400)
            .map(|i| {
                let x = (f64::from(i) - 200.0) / 100.0;
                let mut scores = BTreeMap::new();
                scores.insert("strong".to_owned(), f64::from(u8::from(x > -0.5)));
                scores.insert("weak".to_owned(), f64::from(u8::from(x > 1.0)));
                scores.insert("flat".to_owned(), 1.0);
                if i % 150 == 0 {
                    scores.insert("rare".to_owned(), f64::from(u8::from(i == 0)));
                }
                TrainingRow {
                    features: vec![x, 1.0 - x],
                    scores,
                }
            })
            .collect()
    }

    #[test]
    fn learns_who_answers_what_and_shrinks_sparse_models() {
        let scorer = QualityScorer::fit(&rows(), ScorerConfig::default()).unwrap();
        assert_eq!(scorer.models()["rare"], 3);
        let easy = scorer.predict(&[1.5, -0.5]).unwrap();
        let hard = scorer.predict(&[-1.5, 2.5]).unwrap();
        assert!(
            easy["strong"] > 0.8 && hard["strong"] < 0.3,
            "{easy:?} {hard:?}"
        );
        assert!(easy["weak"] > hard["weak"]);
        assert!(easy["strong"] > easy["weak"] - 0.2);
        assert!(
            (easy["flat"] - 1.0).abs() < 1e-9,
            "one-class models predict their mean"
        );
        // Three samples: the prediction stays near the mean (1/3) either way.
        assert!((easy["rare"] - 1.0 / 3.0).abs() < 0.1 && (hard["rare"] - 1.0 / 3.0).abs() < 0.1);
        assert!(scorer.predict(&[1.0]).is_err());
    }

    #[test]
    fn bad_training_data_is_an_error() {
        assert!(matches!(
            QualityScorer::fit(&[], ScorerConfig::default()),
            Err(ScorerError::Empty)
        ));
        let mut rows = rows();
        rows[7].features.push(0.0);
        let err = QualityScorer::fit(&rows, ScorerConfig::default()).unwrap_err();
        assert!(err.to_string().contains("row 7"), "{err}");
    }

    #[test]
    fn features_have_a_fixed_layout() {
        let f = features(&[0.5, -0.5], &[0.25, 0.75], 0.4, 100);
        assert_eq!(f.len(), 6);
        assert_eq!(&f[..4], &[0.5, -0.5, 0.25, 0.75]);
    }
}
