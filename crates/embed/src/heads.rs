//! Classifier heads on frozen sentence embeddings: a softmax head for the task class and a
//! regression head for difficulty. The modules are defined here once and used both by
//! training (switchyard-training builds them over a `VarMap`) and at inference, where they
//! are loaded from `heads.safetensors` with a `manifest.json` that must match the encoder.

use std::path::{Path, PathBuf};

use candle_core::{DType, Device, Tensor};
use candle_nn::{Linear, Module, VarBuilder};
use serde::{Deserialize, Serialize};
use switchyard_core::vector::dot;
use switchyard_core::{DifficultyBucket, DifficultyCuts, EncoderInfo, TaskClass};

/// Version of the heads artifact layout (`manifest.json` + `heads.safetensors`).
pub const HEADS_FORMAT_VERSION: u32 = 1;
pub const HEADS_WEIGHTS_FILE: &str = "heads.safetensors";
pub const MANIFEST_FILE: &str = "manifest.json";

/// The task head's shape.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum TaskHeadKind {
    Linear,
    Mlp { hidden: usize },
}

/// Task logits from an embedding.
#[derive(Debug, Clone)]
pub enum TaskHead {
    Linear(Linear),
    Mlp { hidden: Linear, out: Linear },
}

impl TaskHead {
    pub fn new(
        kind: TaskHeadKind,
        dim: usize,
        classes: usize,
        vb: VarBuilder,
    ) -> candle_core::Result<Self> {
        let vb = vb.pp("task");
        Ok(match kind {
            TaskHeadKind::Linear => Self::Linear(candle_nn::linear(dim, classes, vb.pp("out"))?),
            TaskHeadKind::Mlp { hidden } => Self::Mlp {
                hidden: candle_nn::linear(dim, hidden, vb.pp("hidden"))?,
                out: candle_nn::linear(hidden, classes, vb.pp("out"))?,
            },
        })
    }
}

impl Module for TaskHead {
    fn forward(&self, x: &Tensor) -> candle_core::Result<Tensor> {
        match self {
            Self::Linear(l) => l.forward(x),
            Self::Mlp { hidden, out } => out.forward(&hidden.forward(x)?.gelu_erf()?),
        }
    }
}

/// Difficulty in [0, 1] from an embedding: a linear layer and a sigmoid.
#[derive(Debug, Clone)]
pub struct DifficultyHead(Linear);

impl DifficultyHead {
    pub fn new(dim: usize, vb: VarBuilder) -> candle_core::Result<Self> {
        Ok(Self(candle_nn::linear(
            dim,
            1,
            vb.pp("difficulty").pp("out"),
        )?))
    }

    /// Raw scores before the sigmoid, shape (rows, 1).
    pub fn logits(&self, x: &Tensor) -> candle_core::Result<Tensor> {
        self.0.forward(x)
    }
}

pub use switchyard_core::DataFile;

/// Everything needed to trust and use a heads artifact.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HeadsManifest {
    pub format_version: u32,
    pub encoder: EncoderInfo,
    pub labels: Vec<TaskClass>,
    pub task_head: TaskHeadKind,
    pub difficulty_cuts: DifficultyCuts,
    pub training_data: Vec<DataFile>,
    /// Validation and held-out metrics, as the trainer reported them.
    pub metrics: serde_json::Value,
    pub seed: u64,
    /// UTC, RFC 3339.
    pub created_at: String,
}

/// A heads artifact that cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum HeadsError {
    #[error(
        "{}: no classifier heads here; train them with `switchyard train classifier --data FILE... --out DIR` or use the committed ones in models/classifier",
        path.display()
    )]
    Missing { path: PathBuf },
    #[error("{}: {reason}", path.display())]
    Invalid { path: PathBuf, reason: String },
    #[error(
        "the classifier heads in {} were trained on encoder {trained} but the encoder in use is {using}; retrain them with `switchyard train classifier` using this encoder (--model), or load the encoder they were trained on",
        dir.display()
    )]
    EncoderMismatch {
        dir: PathBuf,
        /// "id (dim-d, weights sha…)" of the encoder the heads expect.
        trained: String,
        using: String,
    },
    #[error("classifier heads failed: {0}")]
    Model(#[from] candle_core::Error),
}

/// What the heads say about one prompt.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Classification {
    pub task: TaskClass,
    /// Probability per class, in [`HeadsManifest::labels`] order.
    pub task_probs: Vec<(TaskClass, f32)>,
    pub difficulty: f32,
    pub difficulty_bucket: DifficultyBucket,
}

/// Loaded task and difficulty heads.
#[derive(Debug, Clone)]
pub struct ClassifierHeads {
    task: DenseTaskHead,
    difficulty: Dense,
    manifest: HeadsManifest,
    /// sha256 of the weights file: scorers record it, since the heads' outputs are features.
    weights_sha256: String,
}

/// A dense layer as plain row-major weights, `y = W x + b` with `W` of shape (out, in).
///
/// Inference runs on these instead of candle ops: for one 384-d vector the heads are a few
/// hundred thousand multiply-adds, where candle's per-op dispatch and allocation would cost
/// more than the arithmetic.
#[derive(Debug, Clone)]
struct Dense {
    w: Vec<f32>,
    b: Vec<f32>,
    inputs: usize,
}

impl Dense {
    fn from_linear(l: &Linear) -> candle_core::Result<Self> {
        let (outputs, inputs) = l.weight().dims2()?;
        let w = l.weight().flatten_all()?.to_vec1::<f32>()?;
        let b = match l.bias() {
            Some(b) => b.to_vec1::<f32>()?,
            None => vec![0.0; outputs],
        };
        Ok(Self { w, b, inputs })
    }

    fn apply(&self, x: &[f32]) -> Vec<f32> {
        self.w
            .chunks_exact(self.inputs)
            .zip(&self.b)
            .map(|(row, b)| dot(row, x) + b)
            .collect()
    }
}

/// erf with fractional error below 1.2e-7 (Numerical Recipes' erfc Chebyshev fit).
fn erf(x: f32) -> f32 {
    let x = f64::from(x);
    let t = 1.0 / (1.0 + 0.5 * x.abs());
    let poly = -x * x - 1.265_512_23
        + t * (1.000_023_68
            + t * (0.374_091_96
                + t * (0.096_784_18
                    + t * (-0.186_288_06
                        + t * (0.278_868_07
                            + t * (-1.135_203_98
                                + t * (1.488_515_87 + t * (-0.822_152_23 + t * 0.170_872_77))))))));
    let erfc = t * poly.exp();
    (if x >= 0.0 { 1.0 - erfc } else { erfc - 1.0 }) as f32
}

/// The exact (erf) GELU, as `Tensor::gelu_erf`.
fn gelu(x: f32) -> f32 {
    0.5 * x * (1.0 + erf(x / std::f32::consts::SQRT_2))
}

#[derive(Debug, Clone)]
enum DenseTaskHead {
    Linear(Dense),
    Mlp { hidden: Dense, out: Dense },
}

impl DenseTaskHead {
    fn from_head(head: &TaskHead) -> candle_core::Result<Self> {
        Ok(match head {
            TaskHead::Linear(l) => Self::Linear(Dense::from_linear(l)?),
            TaskHead::Mlp { hidden, out } => Self::Mlp {
                hidden: Dense::from_linear(hidden)?,
                out: Dense::from_linear(out)?,
            },
        })
    }

    fn logits(&self, x: &[f32]) -> Vec<f32> {
        match self {
            Self::Linear(l) => l.apply(x),
            Self::Mlp { hidden, out } => {
                let h: Vec<f32> = hidden.apply(x).into_iter().map(gelu).collect();
                out.apply(&h)
            }
        }
    }
}

fn softmax(logits: &[f32]) -> Vec<f32> {
    let max = logits.iter().copied().fold(f32::NEG_INFINITY, f32::max);
    let exp: Vec<f32> = logits.iter().map(|l| (l - max).exp()).collect();
    let total: f32 = exp.iter().sum();
    exp.into_iter().map(|e| e / total).collect()
}

impl ClassifierHeads {
    /// Loads `dir/manifest.json` and `dir/heads.safetensors`, refusing heads trained for
    /// another encoder.
    pub fn load(dir: &Path, encoder: &EncoderInfo) -> Result<Self, HeadsError> {
        let manifest_path = dir.join(MANIFEST_FILE);
        let weights_path = dir.join(HEADS_WEIGHTS_FILE);
        if !manifest_path.is_file() || !weights_path.is_file() {
            return Err(HeadsError::Missing {
                path: dir.to_path_buf(),
            });
        }
        let invalid = |path: &Path, reason: String| HeadsError::Invalid {
            path: path.to_path_buf(),
            reason,
        };
        let text = fs_err::read_to_string(&manifest_path)
            .map_err(|e| invalid(&manifest_path, e.to_string()))?;
        let manifest: HeadsManifest =
            serde_json::from_str(&text).map_err(|e| invalid(&manifest_path, e.to_string()))?;
        if manifest.format_version != HEADS_FORMAT_VERSION {
            return Err(invalid(
                &manifest_path,
                format!(
                    "format version {} is not supported (this build reads {HEADS_FORMAT_VERSION})",
                    manifest.format_version
                ),
            ));
        }
        if manifest.encoder.dim != encoder.dim
            || manifest.encoder.weights_sha256 != encoder.weights_sha256
            || manifest.encoder.truncation != encoder.truncation
        {
            return Err(HeadsError::EncoderMismatch {
                dir: dir.to_path_buf(),
                trained: manifest.encoder.describe(),
                using: encoder.describe(),
            });
        }
        let device = Device::Cpu;
        let vb = VarBuilder::from_tensors(
            candle_core::safetensors::load(&weights_path, &device)
                .map_err(|e| invalid(&weights_path, e.to_string()))?,
            DType::F32,
            &device,
        );
        let task = TaskHead::new(
            manifest.task_head,
            encoder.dim,
            manifest.labels.len(),
            vb.clone(),
        )
        .map_err(|e| invalid(&weights_path, e.to_string()))?;
        let difficulty = DifficultyHead::new(encoder.dim, vb)
            .map_err(|e| invalid(&weights_path, e.to_string()))?;
        let weights_invalid = |e: candle_core::Error| invalid(&weights_path, e.to_string());
        Ok(Self {
            task: DenseTaskHead::from_head(&task).map_err(weights_invalid)?,
            difficulty: Dense::from_linear(&difficulty.0).map_err(weights_invalid)?,
            manifest,
            weights_sha256: crate::sha256_file(&weights_path)
                .map_err(|e| invalid(&weights_path, e.to_string()))?,
        })
    }

    pub fn manifest(&self) -> &HeadsManifest {
        &self.manifest
    }

    /// sha256 (hex) of the weights file these heads were loaded from.
    pub fn weights_sha256(&self) -> &str {
        &self.weights_sha256
    }

    /// Classifies L2-normalised embeddings (one per prompt).
    pub fn classify(&self, embeddings: &[Vec<f32>]) -> Result<Vec<Classification>, HeadsError> {
        let dim = self.manifest.encoder.dim;
        if let Some(bad) = embeddings.iter().find(|e| e.len() != dim) {
            return Err(HeadsError::Model(candle_core::Error::Msg(format!(
                "embeddings must be {dim}-d, got {}",
                bad.len()
            ))));
        }
        Ok(embeddings
            .iter()
            .map(|x| {
                let p = softmax(&self.task.logits(x));
                let d = self.difficulty.apply(x)[0];
                let d = 1.0 / (1.0 + (-d).exp());
                let best = p
                    .iter()
                    .enumerate()
                    .max_by(|a, b| a.1.total_cmp(b.1))
                    .map_or(0, |(i, _)| i);
                Classification {
                    task: self.manifest.labels[best],
                    task_probs: self.manifest.labels.iter().copied().zip(p).collect(),
                    difficulty: d,
                    difficulty_bucket: self.manifest.difficulty_cuts.bucket(f64::from(d)),
                }
            })
            .collect())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use candle_core::D;
    use candle_nn::VarMap;

    #[test]
    fn plain_inference_matches_candle() {
        let varmap = VarMap::new();
        let vb = VarBuilder::from_varmap(&varmap, DType::F32, &Device::Cpu);
        let head = TaskHead::new(TaskHeadKind::Mlp { hidden: 32 }, 16, 8, vb.clone()).unwrap();
        let diff = DifficultyHead::new(16, vb).unwrap();
        let x: Vec<f32> = (0..16).map(|i| ((i * 7 % 11) as f32 - 5.0) / 4.0).collect();
        let t = Tensor::from_vec(x.clone(), (1, 16), &Device::Cpu).unwrap();
        let want = candle_nn::ops::softmax(&head.forward(&t).unwrap(), D::Minus1)
            .unwrap()
            .to_vec2::<f32>()
            .unwrap();
        let got = softmax(&DenseTaskHead::from_head(&head).unwrap().logits(&x));
        for (a, b) in want[0].iter().zip(&got) {
            assert!((a - b).abs() < 1e-5, "{a} vs {b}");
        }
        let want = diff
            .logits(&t)
            .unwrap()
            .flatten_all()
            .unwrap()
            .to_vec1::<f32>()
            .unwrap();
        let got = Dense::from_linear(&diff.0).unwrap().apply(&x);
        assert!((want[0] - got[0]).abs() < 1e-5);
    }

    #[test]
    fn erf_is_accurate() {
        for (x, want) in [
            (0.0f32, 0.0f32),
            (0.5, 0.520_499_9),
            (1.0, 0.842_700_8),
            (-2.0, -0.995_322_3),
        ] {
            assert!((erf(x) - want).abs() < 1e-6, "erf({x}) = {}", erf(x));
        }
    }
}
