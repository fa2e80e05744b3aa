//! The BERT encoder forward pass on Switchyard's own CPU kernels.
//!
//! Sequences are not padded: the tokens of every input in a batch are stacked into one
//! `tokens × hidden` matrix, so the dense layers (which treat tokens independently) run one
//! product for the whole batch with no wasted rows, and attention runs per sequence and head
//! over exactly that sequence's tokens. Pooling is the mean over each sequence's tokens,
//! then L2 normalisation, as sentence-transformers does.

#![expect(
    unsafe_code,
    reason = "attention tasks write disjoint blocks of one context matrix through the GEMM's \
              raw-output interface"
)]

use candle_nn::VarBuilder;
use rayon::prelude::*;
use serde::Deserialize;

use super::Isa;
use super::gemm::{Linear, Operands, Panels, SharedOut};
use super::math;
use crate::EncodeError;

/// The config fields the forward pass needs; anything else a config says (an activation
/// other than exact GELU, relative positions) sends the model to candle instead.
#[derive(Debug, Clone, Deserialize)]
pub(crate) struct Dims {
    vocab_size: usize,
    hidden_size: usize,
    num_hidden_layers: usize,
    num_attention_heads: usize,
    intermediate_size: usize,
    max_position_embeddings: usize,
    #[serde(default = "two")]
    type_vocab_size: usize,
    #[serde(default = "default_eps")]
    layer_norm_eps: f64,
    #[serde(default = "gelu")]
    hidden_act: String,
    #[serde(default = "absolute")]
    position_embedding_type: String,
}

fn two() -> usize {
    2
}
fn default_eps() -> f64 {
    1e-12
}
fn gelu() -> String {
    "gelu".to_owned()
}
fn absolute() -> String {
    "absolute".to_owned()
}

impl Dims {
    /// The dimensions, or why these kernels do not run this model.
    pub(crate) fn from_config(config: &serde_json::Value) -> Result<Self, String> {
        let dims: Self = serde_json::from_value(config.clone()).map_err(|e| e.to_string())?;
        if dims.hidden_act != "gelu" {
            return Err(format!(
                "activation {:?} (these kernels run \"gelu\")",
                dims.hidden_act
            ));
        }
        if dims.position_embedding_type != "absolute" {
            return Err(format!(
                "{:?} position embeddings",
                dims.position_embedding_type
            ));
        }
        if dims.num_attention_heads == 0
            || !dims.hidden_size.is_multiple_of(dims.num_attention_heads)
        {
            return Err("hidden_size is not a multiple of num_attention_heads".to_owned());
        }
        Ok(dims)
    }

    fn head_dim(&self) -> usize {
        self.hidden_size / self.num_attention_heads
    }
}

#[derive(Debug)]
struct Norm {
    gamma: Vec<f32>,
    beta: Vec<f32>,
}

#[derive(Debug)]
struct Layer {
    /// Query, key and value in one product; the query rows carry the 1/√head_dim scale.
    qkv: Linear,
    attn_out: Linear,
    attn_norm: Norm,
    up: Linear,
    down: Linear,
    out_norm: Norm,
}

/// One input's token ids.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Sequence<'a> {
    pub(crate) ids: &'a [u32],
    pub(crate) type_ids: &'a [u32],
}

/// A BERT encoder with its weights packed for one [`Isa`].
#[derive(Debug)]
pub(crate) struct CpuBert {
    isa: Isa,
    dims: Dims,
    eps: f32,
    words: Vec<f32>,
    positions: Vec<f32>,
    types: Vec<f32>,
    embed_norm: Norm,
    layers: Vec<Layer>,
}

/// Reads tensors under the prefix the checkpoint uses (`""` or `"bert."`).
struct Weights<'a> {
    vb: VarBuilder<'a>,
}

impl Weights<'_> {
    fn get(&self, shape: &[usize], name: &str) -> candle_core::Result<Vec<f32>> {
        self.vb.get(shape, name)?.flatten_all()?.to_vec1::<f32>()
    }

    fn linear(&self, isa: Isa, name: &str, n: usize, k: usize) -> candle_core::Result<Linear> {
        let weight = self.get(&[n, k], &format!("{name}.weight"))?;
        let bias = self.get(&[n], &format!("{name}.bias"))?;
        Ok(Linear::new(isa, &weight, &bias, n, k))
    }

    fn norm(&self, name: &str, width: usize) -> candle_core::Result<Norm> {
        Ok(Norm {
            gamma: self.get(&[width], &format!("{name}.weight"))?,
            beta: self.get(&[width], &format!("{name}.bias"))?,
        })
    }
}

impl CpuBert {
    /// Copies and packs the weights `vb` holds.
    pub(crate) fn load(vb: VarBuilder<'_>, dims: Dims, isa: Isa) -> candle_core::Result<Self> {
        let vb = if vb.contains_tensor("embeddings.word_embeddings.weight") {
            vb
        } else {
            vb.pp("bert")
        };
        let w = Weights { vb };
        let h = dims.hidden_size;
        let layers = (0..dims.num_hidden_layers)
            .map(|i| Self::load_layer(&w, &dims, isa, i))
            .collect::<candle_core::Result<Vec<_>>>()?;
        let eps = dims.layer_norm_eps as f32;
        Ok(Self {
            isa,
            eps,
            words: w.get(&[dims.vocab_size, h], "embeddings.word_embeddings.weight")?,
            positions: w.get(
                &[dims.max_position_embeddings, h],
                "embeddings.position_embeddings.weight",
            )?,
            types: w.get(
                &[dims.type_vocab_size, h],
                "embeddings.token_type_embeddings.weight",
            )?,
            embed_norm: w.norm("embeddings.LayerNorm", h)?,
            layers,
            dims,
        })
    }

    fn load_layer(w: &Weights<'_>, dims: &Dims, isa: Isa, i: usize) -> candle_core::Result<Layer> {
        let (h, inner) = (dims.hidden_size, dims.intermediate_size);
        let at = |name: &str| format!("encoder.layer.{i}.{name}");
        let scale = 1.0 / (dims.head_dim() as f32).sqrt();
        let mut weight = Vec::with_capacity(3 * h * h);
        let mut bias = Vec::with_capacity(3 * h);
        for (part, factor) in [("query", scale), ("key", 1.0), ("value", 1.0)] {
            let name = at(&format!("attention.self.{part}"));
            weight.extend(
                w.get(&[h, h], &format!("{name}.weight"))?
                    .iter()
                    .map(|v| v * factor),
            );
            bias.extend(
                w.get(&[h], &format!("{name}.bias"))?
                    .iter()
                    .map(|v| v * factor),
            );
        }
        Ok(Layer {
            qkv: Linear::new(isa, &weight, &bias, 3 * h, h),
            attn_out: w.linear(isa, &at("attention.output.dense"), h, h)?,
            attn_norm: w.norm(&at("attention.output.LayerNorm"), h)?,
            up: w.linear(isa, &at("intermediate.dense"), inner, h)?,
            down: w.linear(isa, &at("output.dense"), h, inner)?,
            out_norm: w.norm(&at("output.LayerNorm"), h)?,
        })
    }

    pub(crate) fn isa(&self) -> Isa {
        self.isa
    }

    /// Mean-pooled, L2-normalised embeddings of `batch`, in order. Runs on the rayon pool
    /// (one hand-off, so the products' per-layer splits stay inside the pool).
    pub(crate) fn forward(&self, batch: &[Sequence<'_>]) -> Result<Vec<Vec<f32>>, EncodeError> {
        let mut out = Ok(Vec::new());
        rayon::scope(|_| out = self.forward_here(batch));
        out
    }

    fn forward_here(&self, batch: &[Sequence<'_>]) -> Result<Vec<Vec<f32>>, EncodeError> {
        let lens: Vec<usize> = batch.iter().map(|s| s.ids.len()).collect();
        let tokens: usize = lens.iter().sum();
        let h = self.dims.hidden_size;
        let mut hidden = self.embed(batch)?;
        let mut qkv = vec![0.0; tokens * 3 * h];
        let mut ctx = vec![0.0; tokens * h];
        let mut mid = vec![0.0; tokens * h];
        let mut inner = Vec::new();
        for layer in &self.layers {
            layer.qkv.forward(&hidden, &mut qkv, None);
            self.attention(&qkv, &lens, &mut ctx);
            layer.attn_out.forward(&ctx, &mut mid, Some(&hidden));
            self.norm_rows(&mut mid, &layer.attn_norm);
            self.feed_forward(layer, &mid, &mut hidden, &mut inner);
            self.norm_rows(&mut hidden, &layer.out_norm);
        }
        Ok(pool(&hidden, &lens, h))
    }

    /// `out = down(GELU(up(x))) + x`. With enough tokens, each thread takes chunks of
    /// [`FFN_CHUNK`] tokens through both products, so the wide intermediate activations
    /// stay in its L2 instead of making a round trip through memory.
    /// `inner` is scratch for the unchunked path, grown on first use.
    fn feed_forward(&self, layer: &Layer, x: &[f32], out: &mut [f32], inner: &mut Vec<f32>) {
        let (h, wide) = (self.dims.hidden_size, self.dims.intermediate_size);
        let tokens = x.len() / h;
        if tokens < rayon::current_num_threads() * FFN_CHUNK {
            inner.resize(tokens * wide, 0.0);
            layer.up.forward_gelu(x, inner);
            layer.down.forward(inner, out, Some(x));
            return;
        }
        out.par_chunks_mut(FFN_CHUNK * h)
            .zip(x.par_chunks(FFN_CHUNK * h))
            .for_each_init(
                || vec![0.0f32; FFN_CHUNK * wide],
                |buf, (out, x)| {
                    let buf = &mut buf[..x.len() / h * wide];
                    layer.up.forward_here(x, buf, None, true);
                    layer.down.forward_here(buf, out, Some(x), false);
                },
            );
    }

    /// Word + position + token-type embeddings, layer-normed: `tokens × hidden`.
    fn embed(&self, batch: &[Sequence<'_>]) -> Result<Vec<f32>, EncodeError> {
        let h = self.dims.hidden_size;
        let mut out = Vec::with_capacity(batch.iter().map(|s| s.ids.len()).sum::<usize>() * h);
        for seq in batch {
            if seq.ids.len() > self.dims.max_position_embeddings {
                return Err(EncodeError::TooLong {
                    tokens: seq.ids.len(),
                    limit: self.dims.max_position_embeddings,
                });
            }
            for (pos, (&id, &ty)) in seq.ids.iter().zip(seq.type_ids).enumerate() {
                let word = table_row(&self.words, id, h)?;
                let kind = table_row(&self.types, ty, h)?;
                let place = &self.positions[pos * h..(pos + 1) * h];
                out.extend(
                    word.iter()
                        .zip(kind)
                        .zip(place)
                        .map(|((w, k), p)| w + k + p),
                );
            }
        }
        self.norm_rows(&mut out, &self.embed_norm);
        Ok(out)
    }

    fn norm_rows(&self, x: &mut [f32], norm: &Norm) {
        let isa = self.isa;
        par_rows(x, norm.gamma.len(), |rows| {
            math::layer_norm(isa, rows, &norm.gamma, &norm.beta, self.eps);
        });
    }

    /// Self-attention of every sequence and head, written into `ctx` (`tokens × hidden`).
    /// Each (sequence, head) pair is one task: its keys and values are packed as panels and
    /// both products run on the dense layers' microkernels.
    fn attention(&self, qkv: &[f32], lens: &[usize], ctx: &mut [f32]) {
        let heads = self.dims.num_attention_heads;
        let mut units = Vec::with_capacity(lens.len() * heads);
        let mut start = 0;
        for &len in lens {
            units.extend((0..heads).map(|head| (start, len, head)));
            start += len;
        }
        let out = SharedOut::new(ctx);
        units
            .par_iter()
            .for_each(|&(start, len, head)| self.attend(qkv, start, len, head, out));
    }

    /// One head over one sequence (`len` tokens from `start`); the context goes to rows
    /// `start..start + len`, columns `head * dim..(head + 1) * dim` of `ctx`.
    fn attend(&self, qkv: &[f32], start: usize, len: usize, head: usize, ctx: SharedOut) {
        let (h, dim, isa) = (self.dims.hidden_size, self.dims.head_dim(), self.isa);
        let stride = 3 * h;
        let rows = &qkv[start * stride..(start + len) * stride];
        let column = head * dim;
        let keys = Panels::pack(isa, dim, len, |c, j| rows[j * stride + h + column + c]);
        let values = Panels::pack(isa, len, dim, |j, c| rows[j * stride + 2 * h + column + c]);
        let width = len.next_multiple_of(16);
        let mut scores = vec![0.0f32; len * width];
        let queries = Operands {
            a: &rows[column..],
            lda: stride,
            rows: len,
            bias: None,
            residual: None,
            gelu: false,
            out: SharedOut::new(&mut scores),
            ldc: width,
        };
        // SAFETY: `scores` is `len` rows of `width >= len`, owned here.
        unsafe { keys.multiply(&queries, 0..keys.count()) };
        math::softmax_rows(isa, &mut scores, len, width);
        let weights = Operands {
            a: &scores,
            lda: width,
            rows: len,
            bias: None,
            residual: None,
            gelu: false,
            out: ctx.offset(start * h + column),
            ldc: h,
        };
        // SAFETY: `ctx` is `tokens × h`; this task alone writes these rows' `dim` columns
        // from `column` (every task has its own sequence and head).
        unsafe { values.multiply(&weights, 0..values.count()) };
    }
}

/// Row `id` of an embedding table `h` wide, or the error naming the id.
fn table_row(table: &[f32], id: u32, h: usize) -> Result<&[f32], EncodeError> {
    let i = usize::try_from(id).unwrap_or(usize::MAX);
    i.checked_mul(h)
        .and_then(|start| table.get(start..start + h))
        .ok_or(EncodeError::OutOfVocabulary {
            id: i,
            size: table.len() / h.max(1),
        })
}

/// Tokens per feed-forward chunk: 128 × 1536 intermediate floats (MiniLM) are 768 KiB.
const FFN_CHUNK: usize = 128;

/// Values per thread below which row-wise work stays on one thread.
const ROWS_PARALLEL_MIN: usize = 1 << 15;

/// Runs `f` over whole `width`-wide rows of `x`, split across the pool's threads when large.
fn par_rows(x: &mut [f32], width: usize, f: impl Fn(&mut [f32]) + Sync + Send) {
    let threads = rayon::current_num_threads();
    let rows = x.len() / width.max(1);
    if threads <= 1 || x.len() < ROWS_PARALLEL_MIN * 2 {
        f(x);
        return;
    }
    let per = rows.div_ceil(threads) * width;
    x.par_chunks_mut(per.max(width)).for_each(&f);
}

/// The mean of each sequence's token vectors, L2-normalised (epsilon as sentence-transformers).
fn pool(hidden: &[f32], lens: &[usize], h: usize) -> Vec<Vec<f32>> {
    let mut start = 0;
    lens.iter()
        .map(|&len| {
            let mut mean = vec![0.0f32; h];
            for row in hidden[start * h..(start + len) * h].chunks_exact(h) {
                for (m, v) in mean.iter_mut().zip(row) {
                    *m += v;
                }
            }
            start += len;
            let count = len.max(1) as f32;
            mean.iter_mut().for_each(|m| *m /= count);
            let norm = mean.iter().map(|m| m * m).sum::<f32>().sqrt().max(1e-12);
            mean.iter_mut().for_each(|m| *m /= norm);
            mean
        })
        .collect()
}
