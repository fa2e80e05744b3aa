//! Switchyard's quality scorer: for each candidate model, the predicted quality of its
//! answer to a prompt, its expected output length and cost, from features of the prompt
//! (its embedding, task probabilities, difficulty, length). This is the only crate that
//! knows linfa.
//!
//! - [`quality`]: the per-model quality models (two linfa families and a pooled ridge over
//!   all models, [`pooled`]) and their fitting;
//! - [`usage`]: output tokens and observed cost per model and task;
//! - [`Scorer`]: the trained artifact — load, save, predict. Turning predictions into the
//!   policy's candidates with an expected cost is the router's job (`switchyard-router`).

pub mod clusters;
pub mod features;
pub mod pooled;
pub mod quality;
pub mod usage;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use switchyard_core::{DataFile, EncoderInfo, TaskClass};

pub use clusters::{Clusters, fit_kmeans};
pub use features::{EXTRA_FEATURES, features};
pub use quality::{Family, ModelQuality, QualityConfig, QualityError, TrainingRow, fit_all};
pub use usage::{ByTask, Usage};

/// The artifact layout this build reads and writes.
pub const SCORER_FORMAT_VERSION: u32 = 1;
pub const MANIFEST_FILE: &str = "manifest.json";
pub const WEIGHTS_FILE: &str = "weights.json";

/// Everything needed to trust and use a scorer artifact (`manifest.json`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ScorerManifest {
    pub format_version: u32,
    /// The encoder (and truncation) the features were computed with.
    pub encoder: EncoderInfo,
    /// The classifier heads' manifest checksum whose task probabilities and difficulty
    /// are part of the features.
    pub heads_sha256: String,
    /// Length of the feature vector the quality models read: the prompt's features
    /// ([`features`]) followed by one membership per cluster.
    pub feature_dim: usize,
    pub quality: QualityConfig,
    /// Each model with the prompts it was trained on and its mean score.
    pub models: BTreeMap<String, ModelSummary>,
    pub training_data: Vec<DataFile>,
    /// Validation comparison of the families and held-out metrics, as the trainer wrote them.
    pub metrics: serde_json::Value,
    /// UTC, RFC 3339.
    pub created_at: String,
}

impl ScorerManifest {
    /// The manifest of a scorer built in code: no training data, metrics or per-model
    /// summaries yet (the trainer fills them in).
    pub fn new(
        encoder: EncoderInfo,
        heads_sha256: String,
        quality: QualityConfig,
        feature_dim: usize,
    ) -> Self {
        Self {
            format_version: SCORER_FORMAT_VERSION,
            encoder,
            heads_sha256,
            feature_dim,
            quality,
            models: BTreeMap::new(),
            training_data: Vec::new(),
            metrics: serde_json::Value::Null,
            created_at: String::new(),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ModelSummary {
    pub samples: usize,
    pub mean_score: f64,
    /// Answers whose output tokens the data reported.
    pub output_token_samples: usize,
    /// Answers whose cost the data reported.
    pub cost_samples: usize,
}

/// Everything learned (`weights.json`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Weights {
    pub clusters: Option<Clusters>,
    pub models: BTreeMap<String, ScoredModel>,
}

/// One model's learned parts.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ScoredModel {
    pub quality: ModelQuality,
    pub usage: Usage,
}

/// A prompt as the scorer sees it.
#[derive(Debug, Clone, PartialEq)]
pub struct PromptFeatures {
    /// See [`features`].
    pub features: Vec<f64>,
    /// The predicted task (argmax of the heads), which keys the usage tables.
    pub task: TaskClass,
}

/// One model's prediction for one prompt.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Prediction {
    pub model: String,
    pub quality: f64,
    /// Expected output tokens, when any model's data reported them.
    pub output_tokens: Option<f64>,
    /// Mean observed cost of this model's answers to prompts of this task, when known.
    pub observed_cost_usd: Option<f64>,
}

#[derive(Debug, thiserror::Error)]
pub enum ScorerError {
    #[error(
        "{}: no scorer here; train one with `switchyard train scorer --data FILE... --out DIR` or use the committed one in models/scorer",
        path.display()
    )]
    Missing { path: PathBuf },
    #[error("{}: {reason}", path.display())]
    Invalid { path: PathBuf, reason: String },
    #[error(
        "the scorer in {} was trained on features from encoder {trained} but the encoder in use is {using}; retrain it with `switchyard train scorer` using this encoder, or load the encoder it was trained on",
        dir.display()
    )]
    EncoderMismatch {
        dir: PathBuf,
        trained: String,
        using: String,
    },
    #[error(
        "the scorer was trained on the task and difficulty of other classifier heads than {heads}; retrain it with `switchyard train scorer --heads {heads}`, or use the heads it was trained with"
    )]
    HeadsMismatch { heads: String },
    #[error("feature vectors must have {expected} values, got {got}")]
    Shape { expected: usize, got: usize },
    #[error("the scorer does not know {}: it knows {}", .unknown.join(", "), .known.join(", "))]
    UnknownModels {
        unknown: Vec<String>,
        known: Vec<String>,
    },
    #[error("cannot write {}: {source}", path.display())]
    Write {
        path: PathBuf,
        source: std::io::Error,
    },
}

/// A trained scorer: manifest plus per-model weights and usage.
#[derive(Debug, Clone, PartialEq)]
pub struct Scorer {
    pub manifest: ScorerManifest,
    pub clusters: Option<Clusters>,
    pub models: BTreeMap<String, ScoredModel>,
    /// Output tokens over every model, for models whose data has none.
    pooled_output_tokens: ByTask,
}

impl Scorer {
    pub fn new(
        manifest: ScorerManifest,
        clusters: Option<Clusters>,
        models: BTreeMap<String, ScoredModel>,
    ) -> Self {
        let mut pooled = ByTask::default();
        for m in models.values() {
            for (task, mean) in &m.usage.output_tokens.by_task {
                for _ in 0..mean.n {
                    pooled.add(*task, mean.mean);
                }
            }
        }
        Self {
            manifest,
            clusters,
            models,
            pooled_output_tokens: pooled,
        }
    }

    /// Length of the prompt features callers pass ([`features`]).
    pub fn prompt_feature_dim(&self) -> usize {
        self.manifest.encoder.dim + EXTRA_FEATURES
    }

    /// The quality models' input: the prompt features, then the cluster memberships of
    /// the embedding (the first `encoder.dim` features).
    pub fn expand<'a>(&self, features: &'a [f64]) -> std::borrow::Cow<'a, [f64]> {
        match &self.clusters {
            None => std::borrow::Cow::Borrowed(features),
            Some(clusters) => {
                let dim = self.manifest.encoder.dim.min(features.len());
                let embedding: Vec<f32> = features[..dim].iter().map(|&x| x as f32).collect();
                let mut out = features.to_vec();
                out.extend(clusters.memberships(&embedding));
                std::borrow::Cow::Owned(out)
            }
        }
    }

    /// Loads `dir/manifest.json` and `dir/weights.json`, refusing a scorer trained on
    /// another encoder.
    pub fn load(dir: &Path, encoder: &EncoderInfo) -> Result<Self, ScorerError> {
        let manifest_path = dir.join(MANIFEST_FILE);
        let weights_path = dir.join(WEIGHTS_FILE);
        if !manifest_path.is_file() || !weights_path.is_file() {
            return Err(ScorerError::Missing {
                path: dir.to_path_buf(),
            });
        }
        let manifest: ScorerManifest = read_json(&manifest_path)?;
        if manifest.format_version != SCORER_FORMAT_VERSION {
            return Err(ScorerError::Invalid {
                path: manifest_path,
                reason: format!(
                    "format version {} is not supported (this build reads {SCORER_FORMAT_VERSION})",
                    manifest.format_version
                ),
            });
        }
        if manifest.encoder.dim != encoder.dim
            || manifest.encoder.weights_sha256 != encoder.weights_sha256
            || manifest.encoder.truncation != encoder.truncation
        {
            return Err(ScorerError::EncoderMismatch {
                dir: dir.to_path_buf(),
                trained: manifest.encoder.describe(),
                using: encoder.describe(),
            });
        }
        let Weights { clusters, models } = read_json(&weights_path)?;
        let bad = models.iter().find(|(_, m)| {
            m.quality
                .linear
                .as_ref()
                .is_some_and(|l| l.weights.len() != manifest.feature_dim)
        });
        if let Some((model, _)) = bad {
            return Err(ScorerError::Invalid {
                path: weights_path,
                reason: format!(
                    "the weights of {model} do not have the manifest's {} features",
                    manifest.feature_dim
                ),
            });
        }
        let expected = manifest.encoder.dim
            + EXTRA_FEATURES
            + clusters.as_ref().map_or(0, |c| c.centroids.len());
        if expected != manifest.feature_dim {
            return Err(ScorerError::Invalid {
                path: weights_path,
                reason: format!(
                    "the manifest says {} features but the encoder and clusters make {expected}",
                    manifest.feature_dim
                ),
            });
        }
        Ok(Self::new(manifest, clusters, models))
    }

    /// Writes the artifact into `dir` (created if needed).
    pub fn save(&self, dir: &Path) -> Result<(), ScorerError> {
        let write = |path: PathBuf, json: String| {
            fs_err::create_dir_all(dir)
                .and_then(|()| fs_err::write(&path, json + "\n"))
                .map_err(|source| ScorerError::Write { path, source })
        };
        write(dir.join(MANIFEST_FILE), pretty(&self.manifest))?;
        let weights = Weights {
            clusters: self.clusters.clone(),
            models: self.models.clone(),
        };
        write(dir.join(WEIGHTS_FILE), pretty(&weights))
    }

    /// Fails unless the scorer was trained on features from the heads whose weights file
    /// has checksum `heads_sha256` (the heads' outputs are part of the features).
    pub fn check_heads(&self, heads_sha256: &str, heads_dir: &Path) -> Result<(), ScorerError> {
        if self.manifest.heads_sha256 == heads_sha256 {
            Ok(())
        } else {
            Err(ScorerError::HeadsMismatch {
                heads: heads_dir.display().to_string(),
            })
        }
    }

    /// Model ids, sorted.
    pub fn model_ids(&self) -> Vec<String> {
        self.models.keys().cloned().collect()
    }

    /// Fails with the list of `wanted` models this scorer does not know.
    pub fn check_known<'a>(
        &self,
        wanted: impl IntoIterator<Item = &'a str>,
    ) -> Result<(), ScorerError> {
        let unknown: Vec<String> = wanted
            .into_iter()
            .filter(|m| !self.models.contains_key(*m))
            .map(str::to_owned)
            .collect();
        if unknown.is_empty() {
            Ok(())
        } else {
            Err(ScorerError::UnknownModels {
                unknown,
                known: self.model_ids(),
            })
        }
    }

    /// Predictions for `models` (every known model when `None`), in name order.
    pub fn predict(
        &self,
        prompt: &PromptFeatures,
        models: Option<&[String]>,
    ) -> Result<Vec<Prediction>, ScorerError> {
        if prompt.features.len() != self.prompt_feature_dim() {
            return Err(ScorerError::Shape {
                expected: self.prompt_feature_dim(),
                got: prompt.features.len(),
            });
        }
        let x = self.expand(&prompt.features);
        if let Some(models) = models {
            self.check_known(models.iter().map(String::as_str))?;
        }
        let shrinkage = self.manifest.quality.shrinkage;
        Ok(self
            .models
            .iter()
            .filter(|(id, _)| models.is_none_or(|ms| ms.contains(id)))
            .map(|(id, m)| Prediction {
                model: id.clone(),
                quality: m.quality.predict(&x, shrinkage),
                output_tokens: m
                    .usage
                    .output_tokens
                    .predict(prompt.task)
                    .or_else(|| self.pooled_output_tokens.predict(prompt.task)),
                observed_cost_usd: m.usage.cost_usd.predict(prompt.task),
            })
            .collect())
    }
}

fn read_json<T: serde::de::DeserializeOwned>(path: &Path) -> Result<T, ScorerError> {
    let invalid = |reason: String| ScorerError::Invalid {
        path: path.to_path_buf(),
        reason,
    };
    let text = fs_err::read_to_string(path).map_err(|e| invalid(e.to_string()))?;
    let de = &mut serde_json::Deserializer::from_str(&text);
    serde_path_to_error::deserialize(de)
        .map_err(|e| invalid(format!("{}: {}", e.path(), e.inner())))
}

fn pretty<T: Serialize>(value: &T) -> String {
    // Plain data with string keys: serialisation cannot fail.
    serde_json::to_string_pretty(value).unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;
    use switchyard_core::Truncation;

    fn encoder() -> EncoderInfo {
        EncoderInfo {
            id: "enc".into(),
            dim: 2,
            max_tokens: 256,
            weights_sha256: "ab".repeat(32),
            truncation: Truncation::HeadTail { head: 64 },
        }
    }

    /// The prompt features of a 2-d "embedding": [x, -x] and zeros for the rest.
    fn feats(x: f64) -> Vec<f64> {
        let mut v = vec![x, -x];
        v.resize(2 + EXTRA_FEATURES, 0.0);
        v
    }

    fn scorer() -> Scorer {
        let rows: Vec<TrainingRow> = (0..200)
            .map(|i| {
                let x = f64::from(i) / 100.0 - 1.0;
                TrainingRow {
                    features: feats(x),
                    scores: [
                        ("big".to_owned(), f64::from(u8::from(x > -0.8))),
                        ("small".to_owned(), f64::from(u8::from(x > 0.3))),
                    ]
                    .into(),
                }
            })
            .collect();
        let config = QualityConfig::default();
        let quality = fit_all(&rows, &config).unwrap();
        let mut models = BTreeMap::new();
        for (m, q) in quality {
            let mut usage = Usage::default();
            if m == "small" {
                usage.cost_usd.add(TaskClass::Chat, 0.001);
            } else {
                usage.output_tokens.add(TaskClass::Chat, 300.0);
            }
            models.insert(m, ScoredModel { quality: q, usage });
        }
        let manifest = ScorerManifest::new(encoder(), "cd".repeat(32), config, 2 + EXTRA_FEATURES);
        Scorer::new(manifest, None, models)
    }

    fn prompt(x: f64) -> PromptFeatures {
        PromptFeatures {
            features: feats(x),
            task: TaskClass::Chat,
        }
    }

    #[test]
    fn saves_loads_and_refuses_another_encoder() {
        let dir = tempfile::tempdir().unwrap();
        let s = scorer();
        s.save(dir.path()).unwrap();
        let loaded = Scorer::load(dir.path(), &encoder()).unwrap();
        assert_eq!(loaded, s);
        let other = EncoderInfo {
            truncation: Truncation::Head,
            ..encoder()
        };
        let err = Scorer::load(dir.path(), &other).unwrap_err();
        assert!(
            matches!(err, ScorerError::EncoderMismatch { .. })
                && err.to_string().contains("switchyard train scorer"),
            "{err}"
        );
        let err = Scorer::load(&dir.path().join("none"), &encoder()).unwrap_err();
        assert!(matches!(err, ScorerError::Missing { .. }), "{err}");
        // A damaged weights file names the file and the field.
        std::fs::write(
            dir.path().join(WEIGHTS_FILE),
            r#"{"clusters": null, "models": {"big": {"quality": 3}}}"#,
        )
        .unwrap();
        let err = Scorer::load(dir.path(), &encoder())
            .unwrap_err()
            .to_string();
        assert!(
            err.contains(WEIGHTS_FILE) && err.contains("models.big.quality"),
            "{err}"
        );
    }

    #[test]
    fn predicts_quality_tokens_and_observed_cost() {
        let s = scorer();
        let easy = s.predict(&prompt(0.9), None).unwrap();
        let hard = s.predict(&prompt(-0.5), None).unwrap();
        assert_eq!(easy.len(), 2);
        let q = |ps: &[Prediction], m: &str| ps.iter().find(|p| p.model == m).unwrap().quality;
        assert!(q(&easy, "small") > 0.7 && q(&hard, "small") < 0.3);
        assert!(q(&hard, "big") > q(&hard, "small"));
        // "small" has no token data: the pooled mean over models stands in.
        assert_eq!(easy[1].output_tokens, Some(300.0));
        assert_eq!(easy[1].observed_cost_usd, Some(0.001));
        assert_eq!(easy[0].observed_cost_usd, None);
    }

    #[test]
    fn refuses_features_from_other_heads() {
        let s = scorer();
        let dir = Path::new("models/classifier");
        assert!(s.check_heads(&"cd".repeat(32), dir).is_ok());
        let err = s
            .check_heads(&"ef".repeat(32), dir)
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("switchyard train scorer --heads models/classifier"),
            "{err}"
        );
    }

    #[test]
    fn unknown_models_and_bad_shapes_are_errors() {
        let s = scorer();
        let err = s
            .predict(&prompt(0.0), Some(&["big".into(), "gpt-9".into()]))
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("gpt-9") && err.contains("it knows big, small"),
            "{err}"
        );
        let mut bad = prompt(0.0);
        bad.features.push(1.0);
        assert!(matches!(
            s.predict(&bad, None),
            Err(ScorerError::Shape {
                expected: 12,
                got: 13
            })
        ));
    }
}
