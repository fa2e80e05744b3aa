//! A llama-family decoder over a GGUF file, for the local provider.
//!
//! The same network as candle-transformers' `quantized_llama` (pre-norm blocks of grouped
//! query attention with rotary positions and a SwiGLU MLP, tied or separate output head),
//! built here so that each weight matrix can be given the kernel that suits its format:
//! Q4_1 matrices keep their 4-bit blocks and run [`super::q4_1`]'s product, a Q8_0 output
//! head [`super::q8_0`]'s, every other format candle's own. (candle's GGUF loader decides
//! the kernel from the tensor type alone, and its Q4_1 product is scalar code.)

use std::io::{Read, Seek};

use candle_core::quantized::{GgmlDType, QMatMul, QTensor, gguf_file};
use candle_core::{DType, Device, IndexOp, Module, Result, Tensor};

use super::q4_1::Q4_1Weights;
use super::q8_0::Q8_0Weights;

/// Longest context the rotary tables cover.
pub const MAX_SEQ_LEN: usize = 4096;

struct Layer {
    attention_norm: Tensor,
    /// q, k and v.
    qkv: Projections,
    wo: QMatMul,
    ffn_norm: Tensor,
    /// The MLP's gate and up projections.
    gate_up: Projections,
    down: QMatMul,
    kv: KvCache,
}

/// One layer's keys and values so far, `[position][kv head][head_dim]`: a token's entries
/// are appended in place (the cache used to be re-concatenated, and repeated for every
/// query head, on each generated token).
#[derive(Default)]
struct KvCache {
    keys: Vec<f32>,
    values: Vec<f32>,
    len: usize,
}

impl KvCache {
    /// Makes `positions` the cached length before positions `positions..` are added (0 starts
    /// a new sequence; less than the cached length rewinds).
    fn rewind(&mut self, positions: usize, width: usize) -> Result<()> {
        if positions > self.len {
            candle_core::bail!(
                "position {positions} is past the {} cached positions",
                self.len
            );
        }
        self.len = positions;
        self.keys.truncate(positions * width);
        self.values.truncate(positions * width);
        Ok(())
    }

    /// Appends positions given as `[position][kv head][head_dim]`.
    fn extend(&mut self, keys: &[f32], values: &[f32], width: usize) {
        self.keys.extend_from_slice(keys);
        self.values.extend_from_slice(values);
        self.len += keys.len() / width.max(1);
    }

    /// The cached keys and values as `(1, kv_heads, len, head_dim)` tensors.
    fn tensors(&self, kv_heads: usize, head_dim: usize) -> Result<(Tensor, Tensor)> {
        let shape = (1, self.len, kv_heads, head_dim);
        let k = Tensor::from_slice(&self.keys, shape, &Device::Cpu)?.transpose(1, 2)?;
        let v = Tensor::from_slice(&self.values, shape, &Device::Cpu)?.transpose(1, 2)?;
        Ok((k, v))
    }

    /// Attention of one position's queries (`[head][head_dim]`) over every cached position:
    /// per head, softmax(q·k / √d) weighted sum of the values of its key/value head.
    fn attend(&self, q: &[f32], heads: usize, kv_heads: usize, head_dim: usize) -> Vec<f32> {
        let group = heads / kv_heads;
        let width = kv_heads * head_dim;
        let scale = 1.0 / (head_dim as f32).sqrt();
        let mut out = vec![0f32; heads * head_dim];
        let mut weights = vec![0f32; self.len];
        for (h, (q, out)) in q
            .chunks_exact(head_dim)
            .zip(out.chunks_exact_mut(head_dim))
            .enumerate()
        {
            let offset = (h / group) * head_dim;
            let mut max = f32::NEG_INFINITY;
            for (p, w) in weights.iter_mut().enumerate() {
                let k = &self.keys[p * width + offset..p * width + offset + head_dim];
                *w = switchyard_core::vector::dot(q, k) * scale;
                max = max.max(*w);
            }
            let mut sum = 0f32;
            for w in &mut weights {
                *w = (*w - max).exp();
                sum += *w;
            }
            let inverse = 1.0 / sum;
            for (p, &w) in weights.iter().enumerate() {
                let v = &self.values[p * width + offset..p * width + offset + head_dim];
                let w = w * inverse;
                for (o, v) in out.iter_mut().zip(v) {
                    *o += w * v;
                }
            }
        }
        out
    }
}

/// Interleaved rotary positions in place on `[head][head_dim]` values at one position:
/// pairs `(2i, 2i + 1)` turned by angle `i` of that position (candle's `rope_i`).
fn rope_in_place(x: &mut [f32], head_dim: usize, cos: &[f32], sin: &[f32]) {
    for head in x.chunks_exact_mut(head_dim) {
        for (pair, (c, s)) in head.chunks_exact_mut(2).zip(cos.iter().zip(sin)) {
            let (a, b) = (pair[0], pair[1]);
            pair[0] = a * c - b * s;
            pair[1] = a * s + b * c;
        }
    }
}

/// The decoder's weights and its key/value cache.
pub struct Llama {
    embeddings: Tensor,
    hidden: usize,
    layers: Vec<Layer>,
    norm: Tensor,
    output: QMatMul,
    heads: usize,
    kv_heads: usize,
    head_dim: usize,
    eps: f32,
    cos: Tensor,
    sin: Tensor,
    /// The same tables as plain rows, for one generated position at a time.
    cos_rows: Vec<f32>,
    sin_rows: Vec<f32>,
}

impl std::fmt::Debug for Llama {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Llama")
            .field("layers", &self.layers.len())
            .field("hidden", &self.hidden)
            .field("heads", &self.heads)
            .field("kv_heads", &self.kv_heads)
            .finish_non_exhaustive()
    }
}

/// Reads one tensor. Q4_1 ones are wrapped for [`super::q4_1`]'s product; Q5_0 and Q5_1,
/// which candle also dots in scalar code, are converted to Q8_0 (every weight of a block kept
/// to within 1/254 of the block's range; costs the Q8_0 size in memory).
fn read_tensor<R: Read + Seek>(
    content: &gguf_file::Content,
    reader: &mut R,
    name: &str,
) -> Result<QTensor> {
    let Some(info) = content.tensor_infos.get(name) else {
        candle_core::bail!("the GGUF has no tensor {name}");
    };
    match info.ggml_dtype {
        GgmlDType::Q4_1 => {
            let data = read_bytes(content, reader, info)?;
            Q4_1Weights::qtensor(data, info.shape.clone())
        }
        GgmlDType::Q5_0 | GgmlDType::Q5_1 => {
            let t = content.tensor(reader, name, &Device::Cpu)?;
            QTensor::quantize(&t.dequantize(&Device::Cpu)?, GgmlDType::Q8_0)
        }
        _ => content.tensor(reader, name, &Device::Cpu),
    }
}

/// A tensor's bytes as stored.
fn read_bytes<R: Read + Seek>(
    content: &gguf_file::Content,
    reader: &mut R,
    info: &gguf_file::TensorInfo,
) -> Result<Vec<u8>> {
    let dtype = info.ggml_dtype;
    let bytes = info.shape.elem_count() / dtype.block_size() * dtype.type_size();
    reader.seek(std::io::SeekFrom::Start(
        content.tensor_data_offset + info.offset,
    ))?;
    let mut data = vec![0u8; bytes];
    reader.read_exact(&mut data)?;
    Ok(data)
}

/// Projections of the same input. When all are Q4_1 matrices of the same width their rows
/// are stacked into one matrix: one product per token instead of several, so the activations
/// are quantized once and the thread pool is woken once.
enum Projections {
    Stacked { matmul: QMatMul, widths: Vec<usize> },
    Separate(Vec<QMatMul>),
}

impl Projections {
    fn load<R: Read + Seek>(
        content: &gguf_file::Content,
        reader: &mut R,
        names: &[String],
    ) -> Result<Self> {
        let mut infos = Vec::with_capacity(names.len());
        for name in names {
            match content.tensor_infos.get(name) {
                Some(info) => infos.push(info),
                None => candle_core::bail!("the GGUF has no tensor {name}"),
            }
        }
        let stackable = infos.iter().all(|i| {
            i.ggml_dtype == GgmlDType::Q4_1
                && i.shape.rank() == 2
                && i.shape.dims()[1] == infos[0].shape.dims()[1]
        });
        if !stackable {
            let mut separate = Vec::with_capacity(names.len());
            for name in names {
                separate.push(QMatMul::from_qtensor(read_tensor(content, reader, name)?)?);
            }
            return Ok(Self::Separate(separate));
        }
        let mut data = Vec::new();
        let mut widths = Vec::with_capacity(infos.len());
        for info in &infos {
            // Rows are outputs, so stacking the matrices stacks their outputs.
            data.extend(read_bytes(content, reader, info)?);
            widths.push(info.shape.dims()[0]);
        }
        let rows = widths.iter().sum::<usize>();
        let columns = infos[0].shape.dims()[1];
        let matmul = QMatMul::from_qtensor(Q4_1Weights::qtensor(data, (rows, columns))?)?;
        Ok(Self::Stacked { matmul, widths })
    }

    /// Each projection of `x`, in the order loaded.
    fn forward(&self, x: &Tensor) -> Result<Vec<Tensor>> {
        match self {
            Self::Separate(matmuls) => matmuls.iter().map(|m| m.forward(x)).collect(),
            Self::Stacked { matmul, widths } => {
                let y = matmul.forward(x)?;
                let mut start = 0;
                widths
                    .iter()
                    .map(|&w| {
                        let part = y.narrow(candle_core::D::Minus1, start, w);
                        start += w;
                        part
                    })
                    .collect()
            }
        }
    }
}

impl Llama {
    pub fn from_gguf<R: Read + Seek>(content: &gguf_file::Content, reader: &mut R) -> Result<Self> {
        let meta = |key: &str| match content.metadata.get(&format!("llama.{key}")) {
            Some(v) => Ok(v),
            None => candle_core::bail!("the GGUF has no llama.{key}"),
        };
        let heads = meta("attention.head_count")?.to_u32()? as usize;
        let kv_heads = meta("attention.head_count_kv")?.to_u32()? as usize;
        let blocks = meta("block_count")?.to_u32()? as usize;
        let hidden = meta("embedding_length")?.to_u32()? as usize;
        let rope_dim = meta("rope.dimension_count")?.to_u32()? as usize;
        let eps = meta("attention.layer_norm_rms_epsilon")?.to_f32()?;
        let freq_base = meta("rope.freq_base")
            .and_then(|v| v.to_f32())
            .unwrap_or(10_000.0);
        if heads == 0
            || kv_heads == 0
            || !heads.is_multiple_of(kv_heads)
            || !hidden.is_multiple_of(heads)
        {
            candle_core::bail!(
                "unsupported attention shape: {heads} heads, {kv_heads} kv heads, width {hidden}"
            );
        }
        if rope_dim != hidden / heads {
            // Partial rotary embeddings (rotating only part of each head) are not built here.
            candle_core::bail!(
                "unsupported rotary embedding: {rope_dim} of {} dimensions per head",
                hidden / heads
            );
        }
        let (cos, sin) = rotary_tables(rope_dim, freq_base)?;
        let mut tensor = |name: &str| read_tensor(content, reader, name);
        let embeddings_q = tensor("token_embd.weight")?;
        let embeddings = embeddings_q.dequantize(&Device::Cpu)?;
        let norm = tensor("output_norm.weight")?.dequantize(&Device::Cpu)?;
        // A separate output head, or the embeddings tied to it. A Q8_0 one (SmolLM2's) runs
        // [`super::q8_0`]'s product: it is read in full for every generated token.
        let output_name = match content.tensor_infos.contains_key("output.weight") {
            true => "output.weight",
            false => "token_embd.weight",
        };
        let output = match content.tensor_infos.get(output_name) {
            Some(info) if info.ggml_dtype == GgmlDType::Q8_0 => {
                Q8_0Weights::qtensor(read_bytes(content, reader, info)?, info.shape.clone())?
            }
            _ if output_name == "token_embd.weight" => embeddings_q,
            _ => tensor(output_name)?,
        };
        let mut layers = Vec::with_capacity(blocks);
        for i in 0..blocks {
            let name = |part: &str| format!("blk.{i}.{part}.weight");
            let qkv = Projections::load(
                content,
                reader,
                &[name("attn_q"), name("attn_k"), name("attn_v")],
            )?;
            let gate_up = Projections::load(content, reader, &[name("ffn_gate"), name("ffn_up")])?;
            let mut matmul =
                |part: &str| QMatMul::from_qtensor(read_tensor(content, reader, &name(part))?);
            layers.push(Layer {
                qkv,
                gate_up,
                wo: matmul("attn_output")?,
                down: matmul("ffn_down")?,
                attention_norm: read_tensor(content, reader, &name("attn_norm"))?
                    .dequantize(&Device::Cpu)?,
                ffn_norm: read_tensor(content, reader, &name("ffn_norm"))?
                    .dequantize(&Device::Cpu)?,
                kv: KvCache::default(),
            });
        }
        Ok(Self {
            embeddings,
            hidden,
            layers,
            norm,
            output: QMatMul::from_qtensor(output)?,
            heads,
            kv_heads,
            head_dim: hidden / heads,
            eps,
            cos_rows: cos.flatten_all()?.to_vec1()?,
            sin_rows: sin.flatten_all()?.to_vec1()?,
            cos,
            sin,
        })
    }

    /// Forgets the key/value cache (a new conversation starts at position 0).
    pub fn clear_kv_cache(&mut self) {
        for layer in &mut self.layers {
            layer.kv = KvCache::default();
        }
    }

    /// Logits for the last of `tokens` (shape `(1, seq)`), which sit at positions
    /// `index_pos..index_pos + seq` after the cached ones.
    pub fn forward(&mut self, tokens: &Tensor, index_pos: usize) -> Result<Tensor> {
        let (batch, seq) = tokens.dims2()?;
        if index_pos + seq > MAX_SEQ_LEN {
            candle_core::bail!(
                "context of {} tokens is longer than {MAX_SEQ_LEN}",
                index_pos + seq
            );
        }
        let mask = match seq {
            1 => None,
            // Built per prompt, not cached: a cache keyed by prompt length would keep a
            // seq × seq mask for every length a long-running worker ever saw.
            _ => Some(candle_transformers::utils::build_causal_mask(
                seq,
                index_pos,
                &Device::Cpu,
            )?),
        };
        if batch != 1 {
            candle_core::bail!("the decoder runs one sequence at a time, not {batch}");
        }
        let mut x = self
            .embeddings
            .index_select(&tokens.flatten_all()?, 0)?
            .reshape((batch, seq, self.hidden))?;
        let cos = self.cos.narrow(0, index_pos, seq)?;
        let sin = self.sin.narrow(0, index_pos, seq)?;
        let (heads, kv_heads, head_dim, eps) = (self.heads, self.kv_heads, self.head_dim, self.eps);
        let width = kv_heads * head_dim;
        let half = head_dim / 2;
        let angles = index_pos * half..(index_pos + 1) * half;
        for layer in &mut self.layers {
            let h = candle_nn::ops::rms_norm(&x, &layer.attention_norm, eps)?;
            let [q, k, v] = <[Tensor; 3]>::try_from(layer.qkv.forward(&h)?)
                .map_err(|_| candle_core::Error::Msg("q, k and v expected".into()))?;
            layer.kv.rewind(index_pos, width)?;
            let attention = if seq == 1 {
                // One generated token: plain loops over the cache, no tensor operations (each
                // costs an allocation, and candle's softmax a hand-off to its thread pool).
                let values = |t: Tensor| -> Result<Vec<f32>> { t.flatten_all()?.to_vec1() };
                let (mut q, mut k, v) = (values(q)?, values(k)?, values(v)?);
                let (cos, sin) = (
                    &self.cos_rows[angles.clone()],
                    &self.sin_rows[angles.clone()],
                );
                rope_in_place(&mut q, head_dim, cos, sin);
                rope_in_place(&mut k, head_dim, cos, sin);
                layer.kv.extend(&k, &v, width);
                let out = layer.kv.attend(&q, heads, kv_heads, head_dim);
                Tensor::from_vec(out, (batch, seq, self.hidden), &Device::Cpu)?
            } else {
                let split = |t: Tensor, n: usize| {
                    t.reshape((batch, seq, n, head_dim))?
                        .transpose(1, 2)?
                        .contiguous()
                };
                let (q, k, v) = (split(q, heads)?, split(k, kv_heads)?, split(v, kv_heads)?);
                let q = candle_nn::rotary_emb::rope_i(&q, &cos, &sin)?;
                let k = candle_nn::rotary_emb::rope_i(&k, &cos, &sin)?;
                // Into the cache as [position][kv head][head_dim], then attend over all of it.
                let rows = |t: &Tensor| -> Result<Vec<f32>> {
                    t.transpose(1, 2)?.contiguous()?.flatten_all()?.to_vec1()
                };
                layer.kv.extend(&rows(&k)?, &rows(&v)?, width);
                let (k, v) = layer.kv.tensors(kv_heads, head_dim)?;
                let k = candle_transformers::utils::repeat_kv(k.contiguous()?, heads / kv_heads)?;
                let v = candle_transformers::utils::repeat_kv(v.contiguous()?, heads / kv_heads)?;
                let scores = (q.matmul(&k.t()?)? / (head_dim as f64).sqrt())?;
                let scores = match &mask {
                    None => scores,
                    Some(mask) => {
                        let blocked = Tensor::new(f32::NEG_INFINITY, &Device::Cpu)?
                            .broadcast_as(scores.shape())?;
                        mask.broadcast_as(scores.shape())?
                            .where_cond(&blocked, &scores)?
                    }
                };
                candle_nn::ops::softmax_last_dim(&scores)?
                    .matmul(&v.contiguous()?)?
                    .transpose(1, 2)?
                    .reshape((batch, seq, self.hidden))?
            };
            x = (layer.wo.forward(&attention)? + x)?;
            let h = candle_nn::ops::rms_norm(&x, &layer.ffn_norm, eps)?;
            let [gate, up] = <[Tensor; 2]>::try_from(layer.gate_up.forward(&h)?)
                .map_err(|_| candle_core::Error::Msg("gate and up expected".into()))?;
            let gated = (candle_nn::ops::silu(&gate)? * up)?;
            x = (layer.down.forward(&gated)? + x)?;
        }
        let x = candle_nn::ops::rms_norm(&x, &self.norm, eps)?;
        self.output.forward(&x.i((.., seq - 1, ..))?)
    }
}

/// cos and sin of position × frequency, `(MAX_SEQ_LEN, rope_dim / 2)`.
fn rotary_tables(rope_dim: usize, freq_base: f32) -> Result<(Tensor, Tensor)> {
    let inverse: Vec<f32> = (0..rope_dim)
        .step_by(2)
        .map(|i| 1.0 / freq_base.powf(i as f32 / rope_dim as f32))
        .collect();
    let inverse = Tensor::new(inverse.as_slice(), &Device::Cpu)?;
    let angles = Tensor::arange(0, MAX_SEQ_LEN as u32, &Device::Cpu)?
        .to_dtype(DType::F32)?
        .reshape((MAX_SEQ_LEN, 1))?
        .broadcast_mul(&inverse.reshape((1, rope_dim / 2))?)?;
    Ok((angles.cos()?, angles.sin()?))
}
