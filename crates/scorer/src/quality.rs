//! Per-model predicted quality: one linear model per candidate, fitted with linfa, stored
//! as plain weights so prediction is a dot product (11 models ≈ 5 µs).
//!
//! Three families, compared on validation by the trainer:
//! - `logistic`: L2-regularised logistic regression (linfa-logistic) of P(score ≥ 0.5);
//! - `elastic_net`: elastic-net linear regression (linfa-elasticnet) of the score itself,
//!   clamped to [0, 1] — it keeps graded scores (AlpacaEval preferences, partial credit)
//!   that the logistic family reduces to pass/fail;
//! - `pooled`: one ridge regression over every model's outcomes, a part shared by all
//!   models plus a penalised deviation per model ([`crate::pooled`]) — for logged traffic,
//!   where each prompt has one model's outcome.
//!
//! Either way the prediction is shrunk toward the model's training mean with a
//! pseudo-count, so a model seen on a few prompts stays near its average.

use std::collections::BTreeMap;

use linfa::prelude::*;
use linfa_elasticnet::ElasticNet;
use linfa_logistic::LogisticRegression;
use ndarray::{Array1, Array2, ShapeBuilder};
use serde::{Deserialize, Serialize};

/// The model family and its regularisation.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(tag = "family", rename_all = "snake_case")]
pub enum Family {
    /// Logistic regression on `score ≥ 0.5` with L2 strength `alpha`.
    Logistic { alpha: f64 },
    /// Elastic-net regression on the score: `penalty` overall, `l1_ratio` of it L1.
    ElasticNet { penalty: f64, l1_ratio: f64 },
    /// One ridge regression of the score over every model's outcomes: a part all models
    /// share plus a deviation per model ([`crate::pooled`]), with L2 `shared` on the shared
    /// weights, `deviation` on each model's and `offset` on each model's intercept.
    Pooled {
        shared: f64,
        deviation: f64,
        offset: f64,
    },
}

impl Family {
    pub fn name(self) -> &'static str {
        match self {
            Self::Logistic { .. } => "logistic",
            Self::ElasticNet { .. } => "elastic_net",
            Self::Pooled { .. } => "pooled",
        }
    }
}

impl std::fmt::Display for Family {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Logistic { alpha } => write!(f, "logistic(alpha={alpha})"),
            Self::ElasticNet { penalty, l1_ratio } => {
                write!(f, "elastic_net(penalty={penalty}, l1_ratio={l1_ratio})")
            }
            Self::Pooled {
                shared,
                deviation,
                offset,
            } => write!(
                f,
                "pooled(shared={shared}, deviation={deviation}, offset={offset})"
            ),
        }
    }
}

/// Fitting settings.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct QualityConfig {
    pub family: Family,
    /// Prompt clusters whose soft memberships are added to the features (0 = none); see
    /// [`crate::clusters`].
    #[serde(default)]
    pub clusters: usize,
    /// Pseudo-count toward the model's mean score: prediction =
    /// (n·model + k·mean) / (n + k).
    pub shrinkage: f64,
    pub max_iterations: u32,
    /// Pseudo-count of `prior_mean` in each model's mean score: a model seen a few times
    /// (a user's own model, early in its traffic) starts near the prior instead of at the
    /// average of its first few outcomes. 0 = the plain mean (benchmark training).
    #[serde(default)]
    pub prior_weight: f64,
    #[serde(default = "default_prior_mean")]
    pub prior_mean: f64,
}

fn default_prior_mean() -> f64 {
    0.5
}

impl Default for QualityConfig {
    fn default() -> Self {
        Self {
            family: Family::Logistic { alpha: 1.0 },
            clusters: 0,
            shrinkage: 20.0,
            max_iterations: 200,
            prior_weight: 0.0,
            prior_mean: default_prior_mean(),
        }
    }
}

/// One training prompt: its features and what each model scored on it.
#[derive(Debug, Clone)]
pub struct TrainingRow {
    pub features: Vec<f64>,
    pub scores: BTreeMap<String, f64>,
}

#[derive(Debug, thiserror::Error)]
pub enum QualityError {
    #[error("no training rows")]
    Empty,
    #[error("feature vectors must all have {expected} values, row {row} has {got}")]
    Shape {
        expected: usize,
        row: usize,
        got: usize,
    },
    #[error("fitting the quality model for {model} failed: {reason}")]
    Fit { model: String, reason: String },
}

/// How a linear model's output becomes a quality.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Link {
    /// `1 / (1 + e^-z)`.
    Sigmoid,
    /// `z` clamped to [0, 1].
    Clamp,
}

/// One model's fitted quality predictor.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ModelQuality {
    pub samples: usize,
    /// Mean training score.
    pub mean: f64,
    /// `None` when every training score was on one side of 0.5 (logistic) or the fit was
    /// not possible: the mean is all that is known.
    pub linear: Option<Linear>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Linear {
    pub link: Link,
    pub intercept: f64,
    pub weights: Vec<f32>,
}

impl ModelQuality {
    /// Predicted quality in [0, 1], shrunk toward the mean by `shrinkage` pseudo-counts.
    pub fn predict(&self, features: &[f64], shrinkage: f64) -> f64 {
        let raw = match &self.linear {
            None => self.mean,
            Some(l) => {
                let z = l.intercept + dot(&l.weights, features);
                match l.link {
                    Link::Sigmoid => 1.0 / (1.0 + (-z).exp()),
                    Link::Clamp => z.clamp(0.0, 1.0),
                }
            }
        };
        let n = self.samples as f64;
        (n * raw + shrinkage * self.mean) / (n + shrinkage)
    }
}

/// `Σ w·x` with eight independent accumulators, so the compiler can vectorise it (a
/// single running sum must be added in order).
fn dot(weights: &[f32], x: &[f64]) -> f64 {
    let n = weights.len().min(x.len());
    let (w, x) = (&weights[..n], &x[..n]);
    let mut acc = [0.0f64; 8];
    let mut w_chunks = w.chunks_exact(8);
    let mut x_chunks = x.chunks_exact(8);
    for (wc, xc) in (&mut w_chunks).zip(&mut x_chunks) {
        for i in 0..8 {
            acc[i] += f64::from(wc[i]) * xc[i];
        }
    }
    let tail: f64 = w_chunks
        .remainder()
        .iter()
        .zip(x_chunks.remainder())
        .map(|(&w, &x)| f64::from(w) * x)
        .sum();
    acc.iter().sum::<f64>() + tail
}

/// Fits one quality model per model seen in `rows`.
pub fn fit_all(
    rows: &[TrainingRow],
    config: &QualityConfig,
) -> Result<BTreeMap<String, ModelQuality>, QualityError> {
    let dim = rows.first().ok_or(QualityError::Empty)?.features.len();
    if let Some((row, r)) = rows
        .iter()
        .enumerate()
        .find(|(_, r)| r.features.len() != dim)
    {
        return Err(QualityError::Shape {
            expected: dim,
            row,
            got: r.features.len(),
        });
    }
    let standard = Standardise::fit(rows, dim);
    if let Family::Pooled {
        shared,
        deviation,
        offset,
    } = config.family
    {
        let penalties = crate::pooled::Penalties {
            shared,
            deviation,
            offset,
        };
        return fit_pooled(rows, &standard, penalties, config);
    }
    let mut per_model: BTreeMap<&str, Vec<(usize, f64)>> = BTreeMap::new();
    for (i, row) in rows.iter().enumerate() {
        for (model, &score) in &row.scores {
            if score.is_finite() {
                per_model.entry(model).or_default().push((i, score));
            }
        }
    }
    per_model
        .into_iter()
        .map(|(model, samples)| {
            let fitted =
                fit_one(rows, &standard, &samples, config).map_err(|reason| QualityError::Fit {
                    model: model.to_owned(),
                    reason,
                })?;
            Ok((model.to_owned(), fitted))
        })
        .collect()
}

/// Per-feature mean and scale. Models are fitted on standardised features (so one
/// regularisation strength suits embedding dimensions and the length feature alike, and
/// because linfa's elastic net centres only the target) and the transform is folded back
/// into the stored weights, so prediction reads raw features.
struct Standardise {
    mean: Vec<f64>,
    scale: Vec<f64>,
}

impl Standardise {
    fn fit(rows: &[TrainingRow], dim: usize) -> Self {
        let n = rows.len().max(1) as f64;
        let mut mean = vec![0.0; dim];
        for r in rows {
            for (m, x) in mean.iter_mut().zip(&r.features) {
                *m += x / n;
            }
        }
        let mut var = vec![0.0; dim];
        for r in rows {
            for ((v, x), m) in var.iter_mut().zip(&r.features).zip(&mean) {
                *v += (x - m).powi(2) / n;
            }
        }
        let scale = var
            .into_iter()
            .map(|v| if v > 1e-12 { v.sqrt() } else { 1.0 })
            .collect();
        Self { mean, scale }
    }

    fn apply(&self, features: &[f64]) -> Vec<f64> {
        features
            .iter()
            .zip(self.mean.iter().zip(&self.scale))
            .map(|(x, (m, s))| (x - m) / s)
            .collect()
    }

    /// Weights on standardised features → (intercept shift, weights on raw features).
    fn fold(&self, weights: impl Iterator<Item = f64>) -> (f64, Vec<f32>) {
        let mut shift = 0.0;
        let raw = weights
            .zip(self.mean.iter().zip(&self.scale))
            .map(|(w, (m, s))| {
                let w = w / s;
                shift -= w * m;
                w as f32
            })
            .collect();
        (shift, raw)
    }
}

/// The pooled family: every model at once ([`crate::pooled`]).
fn fit_pooled(
    rows: &[TrainingRow],
    standard: &Standardise,
    penalties: crate::pooled::Penalties,
    config: &QualityConfig,
) -> Result<BTreeMap<String, ModelQuality>, QualityError> {
    let x: Vec<Vec<f64>> = rows.iter().map(|r| standard.apply(&r.features)).collect();
    let (observations, names) =
        crate::pooled::index_models(rows.iter().enumerate().flat_map(|(i, r)| {
            r.scores
                .iter()
                .filter(|(_, s)| s.is_finite())
                .map(move |(m, &s)| (i, m.as_str(), s))
        }));
    let fitted =
        crate::pooled::fit(&x, &observations, names.len(), penalties).map_err(|reason| {
            QualityError::Fit {
                model: names.join(", "),
                reason,
            }
        })?;
    let mut sums = vec![(0usize, 0.0f64); names.len()];
    for &(_, m, y) in &observations {
        sums[m].0 += 1;
        sums[m].1 += y;
    }
    Ok(names
        .into_iter()
        .zip(fitted.per_model)
        .zip(sums)
        .map(|((name, (intercept, weights)), (n, sum))| {
            let (shift, weights) = standard.fold(weights.into_iter());
            let quality = ModelQuality {
                samples: n,
                mean: (sum + config.prior_weight * config.prior_mean)
                    / (n as f64 + config.prior_weight),
                linear: Some(Linear {
                    link: Link::Clamp,
                    intercept: intercept + shift,
                    weights,
                }),
            };
            (name, quality)
        })
        .collect())
}

fn fit_one(
    rows: &[TrainingRow],
    standard: &Standardise,
    samples: &[(usize, f64)],
    config: &QualityConfig,
) -> Result<ModelQuality, String> {
    let sum = samples.iter().map(|(_, s)| s).sum::<f64>();
    let n = samples.len() as f64;
    let mean = (sum + config.prior_weight * config.prior_mean) / (n + config.prior_weight);
    // Column-major: linfa's elastic net runs coordinate descent over columns, and
    // contiguous columns make each step a straight dot product.
    let mut x = Array2::zeros((samples.len(), standard.mean.len()).f());
    for (r, (i, _)) in samples.iter().enumerate() {
        for (c, v) in rows[*i].features.iter().enumerate() {
            x[[r, c]] = (v - standard.mean[c]) / standard.scale[c];
        }
    }
    let linear = match config.family {
        Family::Logistic { alpha } => {
            let labels: Array1<bool> = samples.iter().map(|(_, s)| *s >= 0.5).collect();
            if labels.iter().all(|&l| l) || labels.iter().all(|&l| !l) {
                None
            } else {
                let fitted = LogisticRegression::default()
                    .alpha(alpha)
                    .max_iterations(u64::from(config.max_iterations))
                    .fit(&Dataset::new(x, labels))
                    .map_err(|e| e.to_string())?;
                // linfa picks which label is "positive"; flip the sign if it chose false.
                let sign = if fitted.labels().pos.class { 1.0 } else { -1.0 };
                let (shift, weights) = standard.fold(fitted.params().iter().map(|&w| sign * w));
                Some(Linear {
                    link: Link::Sigmoid,
                    intercept: sign * fitted.intercept() + shift,
                    weights,
                })
            }
        }
        Family::ElasticNet { penalty, l1_ratio } => {
            let targets: Array1<f64> = samples.iter().map(|(_, s)| *s).collect();
            if targets.iter().all(|&t| (t - targets[0]).abs() < 1e-12) {
                None
            } else {
                let fitted = ElasticNet::params()
                    .penalty(penalty)
                    .l1_ratio(l1_ratio)
                    .max_iterations(config.max_iterations)
                    .fit(&Dataset::new(x, targets))
                    .map_err(|e| e.to_string())?;
                let (shift, weights) = standard.fold(fitted.hyperplane().iter().copied());
                Some(Linear {
                    link: Link::Clamp,
                    intercept: fitted.intercept() + shift,
                    weights,
                })
            }
        }
        Family::Pooled { .. } => {
            return Err("the pooled family is fitted over all models at once".to_owned());
        }
    };
    Ok(ModelQuality {
        samples: samples.len(),
        mean,
        linear,
    })
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

    fn check_family(family: Family) {
        let config = QualityConfig {
            family,
            max_iterations: 1000,
            ..QualityConfig::default()
        };
        let models = fit_all(&rows(), &config).unwrap();
        assert_eq!(models["rare"].samples, 3);
        let p = |m: &str, x: f64| models[m].predict(&[x, 1.0 - x], config.shrinkage);
        assert!(
            p("strong", 1.5) > 0.8 && p("strong", -1.5) < 0.3,
            "{family}"
        );
        assert!(p("weak", 1.5) > p("weak", -1.5), "{family}");
        assert!(p("strong", 0.5) > p("weak", 0.5), "{family}");
        assert!(
            (p("flat", 0.0) - 1.0).abs() < 1e-9,
            "one-class models predict their mean"
        );
        // Three samples: the prediction stays near the mean (1/3) either way.
        for x in [-1.5, 1.5] {
            assert!(
                (p("rare", x) - 1.0 / 3.0).abs() < 0.1,
                "{family}: {}",
                p("rare", x)
            );
        }
        for x in [-100.0, 0.0, 100.0] {
            assert!((0.0..=1.0).contains(&p("strong", x)));
        }
    }

    #[test]
    fn both_families_learn_who_answers_what_and_shrink_sparse_models() {
        check_family(Family::Logistic { alpha: 1.0 });
        check_family(Family::ElasticNet {
            penalty: 0.001,
            l1_ratio: 0.1,
        });
    }

    #[test]
    fn the_pooled_family_learns_who_answers_what_and_keeps_a_rare_model_near_the_others() {
        let config = QualityConfig {
            family: Family::Pooled {
                shared: 1.0,
                deviation: 100.0,
                offset: 10.0,
            },
            shrinkage: 0.0,
            ..QualityConfig::default()
        };
        let models = fit_all(&rows(), &config).unwrap();
        assert_eq!(models["rare"].samples, 3);
        let p = |m: &str, x: f64| models[m].predict(&[x, 1.0 - x], 0.0);
        assert!(p("strong", 1.5) > 0.8 && p("strong", -1.5) < 0.3);
        assert!(p("weak", 1.5) > p("weak", -1.5));
        assert!(p("strong", 0.5) > p("weak", 0.5) + 0.2);
        assert!(p("flat", -1.5) > 0.9 && p("flat", 1.5) > 0.9);
        // Three outcomes (one right) cannot pull "rare" far from what every model shares.
        for x in [-1.5, 0.0, 1.5] {
            let others = (p("strong", x) + p("weak", x) + p("flat", x)) / 3.0;
            assert!(
                (p("rare", x) - others).abs() < 0.15,
                "{x}: {} vs {others}",
                p("rare", x)
            );
        }
    }

    #[test]
    fn elastic_net_keeps_graded_scores() {
        // Score rises smoothly with x; logistic sees only pass/fail, elastic-net the grade.
        let rows: Vec<TrainingRow> = (0..200)
            .map(|i| {
                let x = f64::from(i) / 200.0;
                TrainingRow {
                    features: vec![x],
                    scores: [("m".to_owned(), 0.2 + 0.6 * x)].into(),
                }
            })
            .collect();
        let config = QualityConfig {
            family: Family::ElasticNet {
                penalty: 1e-6,
                l1_ratio: 0.0,
            },
            shrinkage: 0.0,
            max_iterations: 5000,
            clusters: 0,
            ..QualityConfig::default()
        };
        let models = fit_all(&rows, &config).unwrap();
        let p = models["m"].predict(&[0.5], 0.0);
        assert!((p - 0.5).abs() < 0.02, "{p}");
    }

    #[test]
    fn bad_training_data_is_an_error() {
        assert!(matches!(
            fit_all(&[], &QualityConfig::default()),
            Err(QualityError::Empty)
        ));
        let mut rows = rows();
        rows[7].features.push(0.0);
        let err = fit_all(&rows, &QualityConfig::default()).unwrap_err();
        assert!(err.to_string().contains("row 7"), "{err}");
    }

    #[test]
    fn a_prior_weight_pulls_a_rarely_seen_model_toward_the_prior() {
        let rows: Vec<TrainingRow> = (0..3)
            .map(|i| TrainingRow {
                features: vec![f64::from(i)],
                scores: [("new".to_owned(), 1.0)].into(),
            })
            .collect();
        let plain = fit_all(&rows, &QualityConfig::default()).unwrap();
        assert_eq!(plain["new"].mean, 1.0, "three perfect answers");
        let config = QualityConfig {
            prior_weight: 10.0,
            prior_mean: 0.5,
            ..QualityConfig::default()
        };
        let shrunk = fit_all(&rows, &config).unwrap();
        assert!((shrunk["new"].mean - (3.0 + 5.0) / 13.0).abs() < 1e-12);
        assert!(shrunk["new"].predict(&[1.0], 20.0) < 0.7);
    }
}
