//! The synchronous sentence encoder: tokenise, run BERT, mean-pool, normalise.

use std::path::Path;

use candle_core::{Device, Tensor};
use candle_nn::VarBuilder;
use candle_transformers::models::bert::{BertModel, Config as BertConfig, DTYPE};
use switchyard_core::{DeviceSpec, EncoderInfo, Truncation};
use tokenizers::{Encoding, Tokenizer};

use crate::cpu::{CpuBert, Dims, Isa, Sequence};
use crate::source::{ModelFiles, ModelSource, sha256_file};
use crate::{EncodeError, LoadError, resolve_device};

/// Inputs are sorted by token length and run through the model in chunks of at most this
/// many, so a long input never makes dozens of short ones pay for its padding.
const MAX_FORWARD_BATCH: usize = 32;

/// One embedded input.
#[derive(Debug, Clone, PartialEq)]
pub struct Encoded {
    /// L2-normalised embedding.
    pub embedding: Vec<f32>,
    /// Tokens the model saw, special tokens included (after truncation).
    pub tokens: usize,
    /// Whether the input was cut at the model's maximum length.
    pub truncated: bool,
}

/// Which implementation runs the model on the CPU (CUDA always runs candle's).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum CpuKernels {
    /// Switchyard's own kernels with the widest instruction set the CPU has; candle's
    /// implementation for a model they do not run (an activation other than exact GELU).
    #[default]
    Auto,
    /// Switchyard's own kernels with this instruction set.
    Isa(Isa),
    /// candle's BERT implementation (the reference the own kernels are tested against).
    Candle,
}

impl CpuKernels {
    /// The choice in `SWITCHYARD_ENCODER_KERNELS` (`auto`, `avx512`, `avx2`, `portable`,
    /// `candle`), [`CpuKernels::Auto`] when unset.
    pub fn from_env() -> Result<Self, LoadError> {
        match std::env::var("SWITCHYARD_ENCODER_KERNELS") {
            Ok(value) => Self::parse(&value),
            Err(_) => Ok(Self::Auto),
        }
    }

    /// Parses a kernel choice and checks that this CPU runs it.
    pub fn parse(value: &str) -> Result<Self, LoadError> {
        let err = |detail: String| LoadError::Kernels {
            value: value.to_owned(),
            detail,
        };
        match value.trim().to_ascii_lowercase().as_str() {
            "" | "auto" => Ok(Self::Auto),
            "candle" => Ok(Self::Candle),
            name => {
                let isa = Isa::parse(name).ok_or_else(|| err(String::new()))?;
                let supported = Isa::supported();
                if supported.contains(&isa) {
                    Ok(Self::Isa(isa))
                } else {
                    let names: Vec<String> = supported.iter().map(ToString::to_string).collect();
                    Err(err(format!(" (this CPU runs {})", names.join(", "))))
                }
            }
        }
    }
}

/// The forward pass in use.
enum Model {
    Candle(BertModel),
    Own(CpuBert),
}

/// A loaded BERT-family sentence encoder. Not thread-safe to share across many callers
/// efficiently; use [`crate::EmbedWorker`] in servers.
pub struct SentenceEncoder {
    model: Model,
    tokenizer: Tokenizer,
    device: Device,
    pad_id: u32,
    info: EncoderInfo,
}

impl std::fmt::Debug for SentenceEncoder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SentenceEncoder")
            .field("info", &self.info)
            .field("device", &self.device)
            .field("kernels", &self.kernels())
            .finish_non_exhaustive()
    }
}

impl SentenceEncoder {
    /// Loads a model from a directory or a hub id on the requested device, with the CPU
    /// kernels `SWITCHYARD_ENCODER_KERNELS` names (see [`CpuKernels::from_env`]).
    pub fn load(source: &ModelSource, device: DeviceSpec) -> Result<Self, LoadError> {
        Self::load_with(source, device, CpuKernels::from_env()?)
    }

    /// [`Self::load`] with an explicit choice of CPU kernels.
    pub fn load_with(
        source: &ModelSource,
        device: DeviceSpec,
        kernels: CpuKernels,
    ) -> Result<Self, LoadError> {
        let files = source.resolve()?;
        Self::from_files_with(source.id(), &files, device, kernels)
    }

    pub fn from_files(
        id: String,
        files: &ModelFiles,
        device: DeviceSpec,
    ) -> Result<Self, LoadError> {
        Self::from_files_with(id, files, device, CpuKernels::from_env()?)
    }

    pub fn from_files_with(
        id: String,
        files: &ModelFiles,
        device: DeviceSpec,
        kernels: CpuKernels,
    ) -> Result<Self, LoadError> {
        let raw = read_json(&files.config)?;
        let config = bert_config(&files.config, raw.clone())?;
        let max_tokens = max_tokens(files, &config)?;
        let tokenizer = read_tokenizer(&files.tokenizer)?;
        let device = resolve_device(device)?;
        let weights_err = |reason: String| LoadError::Weights {
            path: files.weights.clone(),
            reason,
        };
        let vb = mmap_weights(&files.weights, &device).map_err(|e| weights_err(e.to_string()))?;
        let model = match own_kernels(&device, kernels, &raw) {
            Some((dims, isa)) => CpuBert::load(vb, dims, isa).map(Model::Own),
            None => BertModel::load(vb, &config).map(Model::Candle),
        }
        .map_err(|e| weights_err(e.to_string()))?;
        let info = EncoderInfo {
            id,
            dim: config.hidden_size,
            max_tokens,
            weights_sha256: sha256_file(&files.weights)?,
            truncation: Truncation::Head,
        };
        let encoder = Self {
            model,
            tokenizer,
            device,
            pad_id: u32::try_from(config.pad_token_id).unwrap_or(0),
            info,
        };
        tracing::info!(
            model = %encoder.info.id,
            dim = encoder.info.dim,
            max_tokens,
            kernels = %encoder.kernels(),
            "encoder loaded"
        );
        Ok(encoder)
    }

    /// What runs the forward pass: `candle` or the own kernels' instruction set
    /// (`avx512`, `avx2`, `portable`).
    pub fn kernels(&self) -> String {
        match &self.model {
            Model::Candle(_) => "candle".to_owned(),
            Model::Own(bert) => bert.isa().to_string(),
        }
    }

    pub fn info(&self) -> &EncoderInfo {
        &self.info
    }

    pub fn device(&self) -> &Device {
        &self.device
    }

    /// The same encoder keeping other tokens of over-long inputs (see [`Truncation`]).
    /// The choice is part of [`EncoderInfo`], so artifacts record and check it.
    #[must_use]
    pub fn with_truncation(mut self, truncation: Truncation) -> Self {
        self.info.truncation = truncation;
        self
    }

    /// Embeds `texts`, returning one [`Encoded`] per input in input order.
    pub fn encode(&self, texts: &[&str]) -> Result<Vec<Encoded>, EncodeError> {
        self.encode_as(texts, self.info.truncation)
    }

    /// [`Self::encode`] with another truncation for this call only (the gateway serves
    /// `/v1/embeddings` with sentence-transformers' head truncation from the router's
    /// encoder).
    pub fn encode_as(
        &self,
        texts: &[&str],
        truncation: Truncation,
    ) -> Result<Vec<Encoded>, EncodeError> {
        let clipped: Vec<std::borrow::Cow<'_, str>> = texts
            .iter()
            .map(|t| clip(t, self.info.max_tokens, truncation))
            .collect();
        let encodings = self
            .tokenizer
            .encode_batch(
                clipped.iter().map(AsRef::as_ref).collect::<Vec<&str>>(),
                true,
            )
            .map_err(|e| EncodeError::Tokenize(e.to_string()))?;
        let inputs: Vec<Tokens> = encodings
            .iter()
            .map(|e| truncate(e, self.info.max_tokens, truncation))
            .collect();
        let mut order: Vec<usize> = (0..inputs.len()).collect();
        order.sort_by_key(|&i| inputs[i].ids.len());
        let mut out: Vec<Option<Encoded>> = vec![None; inputs.len()];
        for chunk in order.chunks(MAX_FORWARD_BATCH) {
            let batch: Vec<&Tokens> = chunk.iter().map(|&i| &inputs[i]).collect();
            let vectors = self.forward(&batch)?;
            for ((&i, embedding), input) in chunk.iter().zip(vectors).zip(batch) {
                out[i] = Some(Encoded {
                    embedding,
                    tokens: input.ids.len(),
                    truncated: input.truncated,
                });
            }
        }
        Ok(out.into_iter().flatten().collect())
    }

    /// Embeddings only, for callers that need no token statistics.
    pub fn embed(&self, texts: &[&str]) -> Result<Vec<Vec<f32>>, EncodeError> {
        Ok(self
            .encode(texts)?
            .into_iter()
            .map(|e| e.embedding)
            .collect())
    }

    /// One forward pass over a chunk of inputs.
    fn forward(&self, batch: &[&Tokens]) -> Result<Vec<Vec<f32>>, EncodeError> {
        match &self.model {
            Model::Candle(model) => self.forward_candle(model, batch),
            Model::Own(bert) => {
                let seqs: Vec<Sequence<'_>> = batch
                    .iter()
                    .map(|t| Sequence {
                        ids: &t.ids,
                        type_ids: &t.type_ids,
                    })
                    .collect();
                bert.forward(&seqs)
            }
        }
    }

    /// One padded candle forward pass over inputs of similar length.
    fn forward_candle(
        &self,
        model: &BertModel,
        batch: &[&Tokens],
    ) -> Result<Vec<Vec<f32>>, EncodeError> {
        let rows = batch.len();
        let width = batch.iter().map(|t| t.ids.len()).max().unwrap_or(0);
        let mut ids = vec![self.pad_id; rows * width];
        let mut type_ids = vec![0u32; rows * width];
        let mut mask = vec![0u32; rows * width];
        for (row, input) in batch.iter().enumerate() {
            let start = row * width;
            let len = input.ids.len();
            ids[start..start + len].copy_from_slice(&input.ids);
            type_ids[start..start + len].copy_from_slice(&input.type_ids);
            mask[start..start + len].fill(1);
        }
        let ids = Tensor::from_vec(ids, (rows, width), &self.device)?;
        let type_ids = Tensor::from_vec(type_ids, (rows, width), &self.device)?;
        let mask = Tensor::from_vec(mask, (rows, width), &self.device)?;
        let hidden = model.forward(&ids, &type_ids, Some(&mask))?;
        let pooled = mean_pool(&hidden, &mask)?;
        Ok(l2_normalize(&pooled)?.to_vec2::<f32>()?)
    }
}

/// Bytes of text kept per token the model can see, on each side of an over-long input
/// ([`clip`]). WordPiece turns any word longer than 100 characters into one `[UNK]`, so
/// real text needs far fewer than this per token.
const BYTES_PER_TOKEN_BOUND: usize = 128;

/// The part of `text` tokenisation needs: the model sees at most `max_tokens` tokens (the
/// first ones, or the first and last ones for [`Truncation::HeadTail`]), so a multi-megabyte
/// prompt is cut to a window of `max_tokens · 128` bytes at its start and, for head-tail,
/// one at its end, before the tokenizer walks it. The tokens kept are the same as from the
/// whole text; the time is bounded whatever the input's size.
pub fn clip(text: &str, max_tokens: usize, truncation: Truncation) -> std::borrow::Cow<'_, str> {
    let window = max_tokens.saturating_mul(BYTES_PER_TOKEN_BOUND);
    let sides = match truncation {
        Truncation::Head => 1,
        Truncation::HeadTail { .. } => 2,
    };
    if text.len() <= window.saturating_mul(sides) {
        return text.into();
    }
    let head = &text[..floor_char_boundary(text, window)];
    match truncation {
        Truncation::Head => head.into(),
        Truncation::HeadTail { .. } => {
            let tail = &text[ceil_char_boundary(text, text.len() - window)..];
            format!("{head}\n{tail}").into()
        }
    }
}

fn floor_char_boundary(s: &str, mut i: usize) -> usize {
    while !s.is_char_boundary(i) {
        i -= 1;
    }
    i
}

fn ceil_char_boundary(s: &str, mut i: usize) -> usize {
    while !s.is_char_boundary(i) {
        i += 1;
    }
    i
}

/// One input's token ids after truncation.
#[derive(Debug)]
struct Tokens {
    ids: Vec<u32>,
    type_ids: Vec<u32>,
    truncated: bool,
}

/// Cuts an untruncated encoding to `max_tokens`, keeping its leading and trailing special
/// tokens ([CLS] … [SEP]) and the content tokens `truncation` chooses.
fn truncate(encoding: &Encoding, max_tokens: usize, truncation: Truncation) -> Tokens {
    let ids = encoding.get_ids();
    let type_ids = encoding.get_type_ids();
    if ids.len() <= max_tokens {
        return Tokens {
            ids: ids.to_vec(),
            type_ids: type_ids.to_vec(),
            truncated: false,
        };
    }
    let special = encoding.get_special_tokens_mask();
    let lead = special.iter().take_while(|&&s| s == 1).count();
    let trail = special.iter().rev().take_while(|&&s| s == 1).count();
    let content = lead..ids.len() - trail;
    let room = max_tokens.saturating_sub(lead + trail);
    let (head_end, tail_start) = truncation.keep(content.len(), room);
    let keep = |v: &[u32]| -> Vec<u32> {
        let c = &v[content.clone()];
        v[..lead]
            .iter()
            .chain(&c[..head_end])
            .chain(&c[tail_start..])
            .chain(&v[content.end..])
            .copied()
            .collect()
    };
    Tokens {
        ids: keep(ids),
        type_ids: keep(type_ids),
        truncated: true,
    }
}

/// Mean of the token vectors where the attention mask is 1: (rows, width, dim) → (rows, dim).
fn mean_pool(hidden: &Tensor, mask: &Tensor) -> candle_core::Result<Tensor> {
    let mask = mask.to_dtype(hidden.dtype())?.unsqueeze(2)?;
    let summed = hidden.broadcast_mul(&mask)?.sum(1)?;
    let counts = mask.sum(1)?.clamp(1e-9f32, f32::MAX)?;
    summed.broadcast_div(&counts)
}

/// Row-wise L2 normalisation with sentence-transformers' epsilon.
fn l2_normalize(x: &Tensor) -> candle_core::Result<Tensor> {
    let norms = x.sqr()?.sum_keepdim(1)?.sqrt()?.clamp(1e-12f32, f32::MAX)?;
    x.broadcast_div(&norms)
}

#[expect(
    unsafe_code,
    reason = "memory-mapping the weights is unsafe only if the file changes while mapped; \
              model files are read-only inputs and the mapping saves a 90 MB copy"
)]
fn mmap_weights(path: &Path, device: &Device) -> candle_core::Result<VarBuilder<'static>> {
    // SAFETY: see the reason above; the mapping lives as long as the VarBuilder's tensors.
    unsafe { VarBuilder::from_mmaped_safetensors(&[path], DTYPE, device) }
}

fn read_json(path: &Path) -> Result<serde_json::Value, LoadError> {
    let text = fs_err::read_to_string(path).map_err(|source| LoadError::Io {
        path: path.to_path_buf(),
        source,
    })?;
    serde_json::from_str(&text).map_err(|e| LoadError::InvalidConfig {
        path: path.to_path_buf(),
        reason: e.to_string(),
    })
}

/// The own kernels' dimensions and instruction set, or `None` for candle: on CUDA, when
/// asked for, or for a model they do not run (logged).
fn own_kernels(
    device: &Device,
    kernels: CpuKernels,
    config: &serde_json::Value,
) -> Option<(Dims, Isa)> {
    let isa = match kernels {
        _ if !device.is_cpu() => return None,
        CpuKernels::Candle => return None,
        CpuKernels::Auto => Isa::detect(),
        CpuKernels::Isa(isa) => isa,
    };
    match Dims::from_config(config) {
        Ok(dims) => Some((dims, isa)),
        Err(reason) => {
            tracing::info!(%reason, "the encoder runs on candle's kernels");
            None
        }
    }
}

fn bert_config(path: &Path, value: serde_json::Value) -> Result<BertConfig, LoadError> {
    let model_type = value.get("model_type").and_then(|v| v.as_str());
    let architectures: Vec<&str> = value
        .get("architectures")
        .and_then(|v| v.as_array())
        .map(|a| a.iter().filter_map(|v| v.as_str()).collect())
        .unwrap_or_default();
    let is_bert = match model_type {
        Some(t) => t == "bert",
        None => architectures.iter().any(|a| a.starts_with("Bert")),
    };
    if !is_bert {
        return Err(LoadError::UnsupportedArchitecture {
            path: path.to_path_buf(),
            found: model_type
                .map(str::to_owned)
                .or_else(|| architectures.first().map(|a| (*a).to_owned()))
                .unwrap_or_else(|| "unknown".to_owned()),
        });
    }
    serde_json::from_value(value).map_err(|e| LoadError::InvalidConfig {
        path: path.to_path_buf(),
        reason: e.to_string(),
    })
}

/// The input limit: sentence-transformers' `max_seq_length` when the model has one, else
/// the model's position-embedding count.
fn max_tokens(files: &ModelFiles, config: &BertConfig) -> Result<usize, LoadError> {
    let from_sentence_config = match &files.sentence_config {
        Some(path) => read_json(path)?
            .get("max_seq_length")
            .and_then(|v| v.as_u64())
            .and_then(|n| usize::try_from(n).ok()),
        None => None,
    };
    Ok(from_sentence_config
        .unwrap_or(config.max_position_embeddings)
        .min(config.max_position_embeddings))
}

/// Loads the tokenizer and removes whatever padding and truncation it ships with (the
/// MiniLM `tokenizer.json` pads everything to 128 and cuts at 128): batches are padded to
/// their longest input, and [`truncate`] cuts at the model's limit.
fn read_tokenizer(path: &Path) -> Result<Tokenizer, LoadError> {
    let err = |reason: String| LoadError::Tokenizer {
        path: path.to_path_buf(),
        reason,
    };
    let mut tokenizer = Tokenizer::from_file(path).map_err(|e| err(e.to_string()))?;
    tokenizer.with_padding(None);
    tokenizer
        .with_truncation(None)
        .map_err(|e| err(e.to_string()))?;
    Ok(tokenizer)
}
