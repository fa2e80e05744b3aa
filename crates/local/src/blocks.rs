//! GGUF block-quantized weights kept as stored, with Switchyard's own products, plugged into
//! candle's quantized matmul: one [`QuantizedType`] for every format whose product lives in
//! this crate ([`super::q4_1`], [`super::q8_0`]).

use std::marker::PhantomData;
use std::sync::Mutex;

use candle_core::quantized::{GgmlDType, QStorage, QTensor, QuantizedType};
use candle_core::{CpuStorage, Result, Shape};

/// Values per block (both formats).
pub const BLOCK: usize = 32;

/// What a block format provides: its layout and its kernels.
pub(super) trait BlockFormat: Send + Sync + 'static {
    const DTYPE: GgmlDType;
    const NAME: &'static str;
    /// Bytes per block of [`BLOCK`] values.
    const BLOCK_BYTES: usize;
    /// `dst[i·n + j] = lhs row i · weight row j` for `m` rows of `k` values, `n` weight rows,
    /// the sizes checked ([`matmul`]) and the activations quantized.
    fn product(
        weights: &[u8],
        mkn: (usize, usize, usize),
        row_bytes: usize,
        acts: &Q8Rows,
        dst: &mut [f32],
    );
    fn dequantize_into(data: &[u8], out: &mut Vec<f32>);
    /// Blocks for `xs` (whole blocks; a tail shorter than a block is dropped).
    fn quantize(xs: &[f32]) -> Vec<u8>;
}

/// Checks a product's sizes against `weights` in format `F` (`k` a whole number of blocks,
/// `lhs` `m × k`, `dst` at least `m × n`, `n` weight rows of `k`); returns a row's bytes.
fn check_sizes<F: BlockFormat>(
    weights: &[u8],
    (m, k, n): (usize, usize, usize),
    lhs: &[f32],
    dst: &[f32],
) -> Result<usize> {
    if !k.is_multiple_of(BLOCK) || lhs.len() != m * k || dst.len() < m * n {
        candle_core::bail!(
            "{} matmul: bad sizes (m {m}, k {k}, n {n}, lhs {}, dst {})",
            F::NAME,
            lhs.len(),
            dst.len()
        );
    }
    let row_bytes = k / BLOCK * F::BLOCK_BYTES;
    if weights.len() != n * row_bytes {
        candle_core::bail!(
            "{} matmul: {} weight bytes for {n} rows of {k}",
            F::NAME,
            weights.len()
        );
    }
    Ok(row_bytes)
}

/// `dst[i·n + j] = lhs row i · weight row j` for `m` rows of `k` values and `n` rows of
/// `weights` in format `F`: sizes checked, activations quantized to 8 bits, then `F`'s product.
pub(super) fn matmul<F: BlockFormat>(
    weights: &[u8],
    mkn: (usize, usize, usize),
    lhs: &[f32],
    dst: &mut [f32],
) -> Result<()> {
    let row_bytes = check_sizes::<F>(weights, mkn, lhs, dst)?;
    F::product(weights, mkn, row_bytes, &Q8Rows::quantize(lhs), dst);
    Ok(())
}

/// A matrix in format `F`'s block layout, rows of `k` values (weights are stored transposed:
/// one row per output).
pub struct BlockWeights<F> {
    data: Vec<u8>,
    format: PhantomData<F>,
}

impl<F: BlockFormat> BlockWeights<F> {
    /// Wraps a GGUF tensor's raw bytes as a candle [`QTensor`] of `shape`.
    pub fn qtensor(data: Vec<u8>, shape: impl Into<Shape>) -> Result<QTensor> {
        let shape = shape.into();
        let values = shape.elem_count();
        if !values.is_multiple_of(BLOCK) || data.len() != values / BLOCK * F::BLOCK_BYTES {
            candle_core::bail!(
                "{} tensor of shape {shape:?}: {} bytes for {values} values",
                F::NAME,
                data.len()
            );
        }
        let weights = Self {
            data,
            format: PhantomData,
        };
        QTensor::new(QStorage::Cpu(Box::new(weights)), shape)
    }
}

impl<F: BlockFormat> QuantizedType for BlockWeights<F> {
    fn dtype(&self) -> GgmlDType {
        F::DTYPE
    }

    fn matmul_t(&self, mkn: (usize, usize, usize), lhs: &[f32], dst: &mut [f32]) -> Result<()> {
        matmul::<F>(&self.data, mkn, lhs, dst)
    }

    fn matmul_t_f16(
        &self,
        _: (usize, usize, usize),
        _: &[half::f16],
        _: &mut [half::f16],
    ) -> Result<()> {
        candle_core::bail!("{} weights: f16 activations are not supported", F::NAME)
    }

    fn embedding(&self, ids: &[u32], rows: usize, hidden: usize) -> Result<CpuStorage> {
        let row_bytes = hidden / BLOCK * F::BLOCK_BYTES;
        let mut out = Vec::with_capacity(ids.len() * hidden);
        for &id in ids {
            let id = id as usize;
            if id >= rows || !hidden.is_multiple_of(BLOCK) {
                candle_core::bail!("{} embedding: id {id} of {rows} rows of {hidden}", F::NAME);
            }
            F::dequantize_into(&self.data[id * row_bytes..(id + 1) * row_bytes], &mut out);
        }
        Ok(CpuStorage::F32(out))
    }

    fn dequantize(&self, elem_count: usize) -> Result<CpuStorage> {
        let mut out = Vec::with_capacity(elem_count);
        F::dequantize_into(&self.data, &mut out);
        out.truncate(elem_count);
        Ok(CpuStorage::F32(out))
    }

    fn storage_size_in_bytes(&self) -> usize {
        self.data.len()
    }

    fn as_ptr(&self) -> *const u8 {
        self.data.as_ptr()
    }

    fn block_size(&self) -> usize {
        BLOCK
    }

    fn from_float(&mut self, xs: &[f32]) {
        self.data = F::quantize(xs);
    }

    fn from_float_imatrix(&mut self, xs: &[f32], _: &[f32], _: usize) {
        self.data = F::quantize(xs);
    }

    fn size(&self) -> usize {
        self.data.len()
    }
}

/// Activation rows quantized to 8 bits per block.
pub(super) struct Q8Rows {
    pub(super) qs: Vec<i8>,
    /// Per block: the scale `d` and `s = d·Σq`.
    pub(super) ds: Vec<[f32; 2]>,
}

impl Q8Rows {
    pub(super) fn quantize(xs: &[f32]) -> Self {
        let blocks = xs.len() / BLOCK;
        let mut qs = vec![0i8; blocks * BLOCK];
        let mut ds = Vec::with_capacity(blocks);
        for (x, q) in xs.chunks_exact(BLOCK).zip(qs.chunks_exact_mut(BLOCK)) {
            let amax = x.iter().fold(0f32, |a, v| a.max(v.abs()));
            let d = amax / 127.0;
            let inverse = if d > 0.0 { 1.0 / d } else { 0.0 };
            let mut sum = 0i32;
            for (q, x) in q.iter_mut().zip(x) {
                // |x·inverse| ≤ 127 by construction (NaN becomes 0).
                *q = (x * inverse).round() as i8;
                sum += i32::from(*q);
            }
            ds.push([d, d * sum as f32]);
        }
        Self { qs, ds }
    }
}

pub(super) fn f16_to_f32(bits: u16) -> f32 {
    half::f16::from_bits(bits).to_f32()
}

#[cfg(target_arch = "x86_64")]
pub(super) fn has_avx2() -> bool {
    std::arch::is_x86_feature_detected!("avx2")
        && std::arch::is_x86_feature_detected!("fma")
        && std::arch::is_x86_feature_detected!("f16c")
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2")]
#[inline]
pub(super) fn horizontal_sum(v: std::arch::x86_64::__m256) -> f32 {
    use std::arch::x86_64::*;
    let half = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
    let quarter = _mm_add_ps(half, _mm_movehl_ps(half, half));
    _mm_cvtss_f32(_mm_add_ss(quarter, _mm_movehdup_ps(quarter)))
}

/// `dst[j] = dot(j)` for every column `j`, over candle's thread pool: each thread takes one
/// contiguous share of the columns and writes its own part of `dst` (one activation row, as
/// for a generated token). A shared cursor over small tasks made the threads trade a cache
/// line per task, which cost more than the imbalance it evens out.
pub(super) fn one_row(dst: &mut [f32], dot: impl Fn(usize) -> f32 + Sync) {
    let pool = candle_core::utils::barrier_pool();
    let share = dst.len().div_ceil(pool.n_workers() + 1).max(1);
    let parts: Vec<Mutex<&mut [f32]>> = dst.chunks_mut(share).map(Mutex::new).collect();
    pool.execute(|thread| {
        let Some(part) = parts.get(thread) else {
            return;
        };
        let mut part = part
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let first = thread * share;
        for (c, out) in part.iter_mut().enumerate() {
            *out = dot(first + c);
        }
    });
}

/// Deterministic test values in [-1, 1), every 97th eight times larger (outliers).
#[cfg(test)]
pub(super) fn test_values(n: usize, seed: u64) -> Vec<f32> {
    let mut state = seed;
    (0..n)
        .map(|i| {
            state = state
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            let v = (state >> 40) as f32 / (1u64 << 24) as f32 * 2.0 - 1.0;
            if i % 97 == 0 { v * 8.0 } else { v }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::q4_1::Q4_1;
    use crate::q8_0::Q8_0;

    fn bad_sizes_are_errors<F: BlockFormat>() {
        let weights = F::quantize(&test_values(64 * 4, 6));
        let mut dst = vec![0f32; 4];
        assert!(matmul::<F>(&weights, (1, 60, 4), &[0.0; 60], &mut dst).is_err());
        assert!(matmul::<F>(&weights, (1, 64, 5), &[0.0; 64], &mut [0.0; 5]).is_err());
        assert!(matmul::<F>(&weights, (1, 64, 4), &[0.0; 63], &mut dst).is_err());
        let short = vec![0; F::BLOCK_BYTES - 1];
        let err = BlockWeights::<F>::qtensor(short, (1, 32)).unwrap_err();
        assert!(err.to_string().contains(F::NAME), "{err}");
    }

    #[test]
    fn bad_sizes_are_errors_not_panics() {
        bad_sizes_are_errors::<Q4_1>();
        bad_sizes_are_errors::<Q8_0>();
    }
}
