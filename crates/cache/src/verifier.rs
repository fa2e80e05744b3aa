//! The learned hit verifier: P(the stored prompt and the new one ask the same thing),
//! from features of the pair, applied to the top few vector candidates before a semantic
//! hit is served.
//!
//! Plain cosine over sentence embeddings cannot tell "same topic" from "same question":
//! on Quora Question Pairs no cosine threshold reaches 95% precision. The verifier sees
//! where the two embeddings differ (|u − v|), where they agree (u ⊙ v), the cosine,
//! lexical signals the encoder blurs (numbers, quotes, identifiers, negation, overlap,
//! length, word order, question words), and where the pair lies (u + v: the topic, so the
//! bar for "same question" can differ between topics) — the sentence-pair classifier
//! features of Conneau et al. 2017 (InferSent; u + v is the symmetric form of its u, v)
//! plus the guard's. The model — a logistic regression (linfa) or a one-hidden-layer MLP
//! (candle), whichever finds more duplicates at 90% precision on validation pairs — is
//! trained by `switchyard train verifier`; at run time it is a few dot products.

use std::path::Path;

use switchyard_core::EncoderInfo;
use switchyard_core::vector::{dot, dot4};

use crate::guard::{Lexical, pair_signals};

/// How many lexical signals follow the embedding features.
pub const LEXICAL_SIGNALS: usize = 10;

/// The layout of the feature vector, recorded in the artifact and checked on load.
pub const FEATURE_LAYOUT: &str = "abs_diff[d] ++ product[d] ++ cosine ++ lexical[10] ++ sum[d]";

pub fn cosine(u: &[f32], v: &[f32]) -> f32 {
    let (nu, nv) = (dot(u, u).sqrt(), dot(v, v).sqrt());
    if nu == 0.0 || nv == 0.0 {
        0.0
    } else {
        dot(u, v) / (nu * nv)
    }
}

/// How many features `pair_features` gives for embeddings of dimension `dim`.
pub const fn feature_count(dim: usize) -> usize {
    3 * dim + 1 + LEXICAL_SIGNALS
}

/// The verifier's input for a pair of prompts and their embeddings. Symmetric in the pair.
pub fn pair_features(u: &[f32], v: &[f32], a: &Lexical, b: &Lexical) -> Vec<f32> {
    let mut f = Vec::with_capacity(feature_count(u.len()));
    f.extend(u.iter().zip(v).map(|(x, y)| (x - y).abs()));
    f.extend(u.iter().zip(v).map(|(x, y)| x * y));
    f.push(cosine(u, v));
    f.extend(pair_signals(a, b));
    f.extend(u.iter().zip(v).map(|(x, y)| x + y));
    f
}

/// Where the training pairs came from.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct PairSource {
    pub name: String,
    pub pairs: usize,
    pub positives: usize,
}

/// The artifact's description: what it was trained on and how well it did.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct VerifierManifest {
    pub kind: String,
    pub encoder: EncoderInfo,
    pub feature_layout: String,
    pub features: usize,
    pub trained_on: Vec<PairSource>,
    /// The held-out split rule, so evaluation can use exactly the pairs training did not.
    pub holdout: String,
    /// The chosen model and its hyperparameters, e.g. `logistic(alpha=0.1)`.
    pub model: String,
    /// Validation metrics (held-out pairs), e.g. `auc`, `accuracy`.
    pub validation: std::collections::BTreeMap<String, f64>,
    pub created: String,
}

/// A trained verifier.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct Verifier {
    pub manifest: VerifierManifest,
    /// Per-feature mean and standard deviation of the training pairs.
    pub mean: Vec<f32>,
    pub scale: Vec<f32>,
    pub model: VerifierModel,
}

/// The classifier over standardised features; both end in a sigmoid.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum VerifierModel {
    /// Logistic regression (linfa).
    Logistic { weights: Vec<f32>, bias: f32 },
    /// One hidden ReLU layer (candle): `w1` is hidden × features, row-major.
    Mlp {
        hidden: usize,
        w1: Vec<f32>,
        b1: Vec<f32>,
        w2: Vec<f32>,
        b2: f32,
    },
}

impl VerifierModel {
    pub fn name(&self) -> String {
        match self {
            Self::Logistic { .. } => "logistic".into(),
            Self::Mlp { hidden, .. } => format!("mlp({hidden})"),
        }
    }

    fn fits(&self, n: usize) -> bool {
        match self {
            Self::Logistic { weights, .. } => weights.len() == n,
            Self::Mlp {
                hidden, w1, b1, w2, ..
            } => w1.len() == hidden * n && b1.len() == *hidden && w2.len() == *hidden,
        }
    }

    /// The logits for several standardised feature vectors, one pass over the weights.
    pub fn logits(&self, zs: &[Vec<f32>]) -> Vec<f32> {
        match self {
            Self::Logistic { .. } => zs.iter().map(|z| self.logit(z)).collect(),
            Self::Mlp { w1, b1, w2, b2, .. } => {
                let n = zs.first().map_or(1, |z| z.len().max(1));
                let mut out = vec![*b2; zs.len()];
                // Four candidates per pass over the weights (a lookup judges four).
                for (group, acc) in zs.chunks(4).zip(out.chunks_mut(4)) {
                    let z = |k: usize| group.get(k).unwrap_or(&group[0]).as_slice();
                    let four = [z(0), z(1), z(2), z(3)];
                    for ((row, b), w) in w1.chunks_exact(n).zip(b1).zip(w2) {
                        let d = dot4(row, four);
                        for (a, d) in acc.iter_mut().zip(d) {
                            *a += (d + b).max(0.0) * w;
                        }
                    }
                }
                out
            }
        }
    }

    /// The logit for standardised features `z`.
    pub fn logit(&self, z: &[f32]) -> f32 {
        match self {
            Self::Logistic { weights, bias } => dot(z, weights) + bias,
            Self::Mlp { w1, b1, w2, b2, .. } => {
                let n = z.len().max(1);
                w1.chunks_exact(n)
                    .zip(b1)
                    .zip(w2)
                    .map(|((row, b), out)| (dot(row, z) + b).max(0.0) * out)
                    .sum::<f32>()
                    + b2
            }
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum VerifierError {
    #[error("{path}: {message}")]
    Load { path: String, message: String },
    #[error(
        "the verifier was trained on embeddings from {trained} but this gateway runs {running}; \
         retrain it with `switchyard train verifier` or turn the verifier off"
    )]
    Encoder { trained: String, running: String },
}

impl Verifier {
    pub fn load(path: &Path) -> Result<Self, VerifierError> {
        let err = |message: String| VerifierError::Load {
            path: path.display().to_string(),
            message,
        };
        let text = std::fs::read_to_string(path).map_err(|e| {
            err(format!(
                "{e}; the default verifier ships in models/cache-verifier/ (train one with \
                 `switchyard train verifier`)"
            ))
        })?;
        let v: Self = serde_json::from_str(&text).map_err(|e| err(e.to_string()))?;
        let n = v.manifest.features;
        if v.mean.len() != n || v.scale.len() != n || !v.model.fits(n) {
            return Err(err(format!(
                "the mean, scale or {} weights do not match {n} features",
                v.model.name()
            )));
        }
        if v.manifest.feature_layout != FEATURE_LAYOUT || n != feature_count(v.manifest.encoder.dim)
        {
            return Err(err(format!(
                "feature layout {:?} with {n} features is not this build's {FEATURE_LAYOUT:?}; \
                 retrain it with `switchyard train verifier`",
                v.manifest.feature_layout
            )));
        }
        Ok(v)
    }

    /// Refuses an encoder other than the one the verifier was trained on.
    pub fn check_encoder(&self, running: &EncoderInfo) -> Result<(), VerifierError> {
        let trained = &self.manifest.encoder;
        if trained.weights_sha256 == running.weights_sha256 && trained.dim == running.dim {
            Ok(())
        } else {
            Err(VerifierError::Encoder {
                trained: trained.describe(),
                running: running.describe(),
            })
        }
    }

    /// P(same question) for a pair's features (`pair_features`).
    pub fn probability(&self, features: &[f32]) -> f32 {
        sigmoid(self.model.logit(&self.standardise(features)))
    }

    /// `probability` for several pairs at once (a lookup's candidates): the MLP's weights
    /// are read once for all of them, which is what a lookup's latency is made of.
    pub fn probabilities(&self, features: &[Vec<f32>]) -> Vec<f32> {
        let z: Vec<Vec<f32>> = features.iter().map(|f| self.standardise(f)).collect();
        self.model.logits(&z).into_iter().map(sigmoid).collect()
    }

    fn standardise(&self, features: &[f32]) -> Vec<f32> {
        features
            .iter()
            .zip(&self.mean)
            .zip(&self.scale)
            .map(|((x, m), s)| (x - m) / s)
            .collect()
    }
}

fn sigmoid(x: f32) -> f32 {
    1.0 / (1.0 + (-x).exp())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn features_are_symmetric_and_sized() {
        let u = [0.6, 0.8, 0.0];
        let v = [0.0, 0.6, 0.8];
        let (a, b) = (Lexical::of("is it 3"), Lexical::of("is it not 4"));
        let f1 = pair_features(&u, &v, &a, &b);
        let f2 = pair_features(&v, &u, &b, &a);
        assert_eq!(f1, f2);
        assert_eq!(f1.len(), feature_count(3));
        assert!((f1[6] - 0.48).abs() < 1e-6, "cosine {}", f1[6]);
    }

    #[test]
    fn batched_logits_match_one_at_a_time() {
        let n = 5;
        let model = VerifierModel::Mlp {
            hidden: 3,
            w1: (0..15).map(|i| (i as f32 * 0.7).sin()).collect(),
            b1: vec![0.1, -0.2, 0.05],
            w2: vec![0.5, -1.0, 2.0],
            b2: -0.3,
        };
        for count in [1, 4, 6] {
            let zs: Vec<Vec<f32>> = (0..count)
                .map(|k| (0..n).map(|i| ((k * n + i) as f32 * 0.3).cos()).collect())
                .collect();
            let batched = model.logits(&zs);
            assert_eq!(batched.len(), count);
            for (z, b) in zs.iter().zip(&batched) {
                assert!((model.logit(z) - b).abs() < 1e-5, "{count} candidates");
            }
        }
    }
}
