//! Classifier heads on frozen sentence embeddings: a softmax head for the task class and a
//! regression head for difficulty. The modules are defined here once and used both by
//! training (switchyard-training builds them over a `VarMap`) and at inference, where they
//! are loaded from `heads.safetensors` with a `manifest.json` that must match the encoder.

use std::path::{Path, PathBuf};

use candle_core::{D, DType, Device, Tensor};
use candle_nn::{Linear, Module, VarBuilder};
use serde::{Deserialize, Serialize};
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

/// One training data file, as recorded in the manifest.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DataFile {
    pub path: String,
    pub sha256: String,
    pub records: usize,
}

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

fn describe(e: &EncoderInfo) -> String {
    let sha: String = e.weights_sha256.chars().take(12).collect();
    format!("{} ({}-d, weights sha256 {sha}…)", e.id, e.dim)
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
#[derive(Debug)]
pub struct ClassifierHeads {
    task: TaskHead,
    difficulty: DifficultyHead,
    manifest: HeadsManifest,
    device: Device,
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
        {
            return Err(HeadsError::EncoderMismatch {
                dir: dir.to_path_buf(),
                trained: describe(&manifest.encoder),
                using: describe(encoder),
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
        Ok(Self {
            task,
            difficulty,
            manifest,
            device,
        })
    }

    pub fn manifest(&self) -> &HeadsManifest {
        &self.manifest
    }

    /// Classifies L2-normalised embeddings (one per prompt).
    pub fn classify(&self, embeddings: &[Vec<f32>]) -> Result<Vec<Classification>, HeadsError> {
        if embeddings.is_empty() {
            return Ok(Vec::new());
        }
        let dim = self.manifest.encoder.dim;
        let flat: Vec<f32> = embeddings.iter().flat_map(|e| e.iter().copied()).collect();
        if flat.len() != embeddings.len() * dim {
            return Err(HeadsError::Model(candle_core::Error::Msg(format!(
                "embeddings must be {dim}-d"
            ))));
        }
        let x = Tensor::from_vec(flat, (embeddings.len(), dim), &self.device)?;
        let probs =
            candle_nn::ops::softmax(&self.task.forward(&x)?, D::Minus1)?.to_vec2::<f32>()?;
        let difficulty = candle_nn::ops::sigmoid(&self.difficulty.logits(&x)?)?
            .flatten_all()?
            .to_vec1::<f32>()?;
        Ok(probs
            .into_iter()
            .zip(difficulty)
            .map(|(p, d)| {
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
