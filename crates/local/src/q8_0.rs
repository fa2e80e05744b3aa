//! Q8_0 weights with a SIMD matrix product, for the output head.
//!
//! SmolLM2's GGUF keeps its token embeddings, which double as the output head, in Q8_0: a
//! 49,152 × 576 matrix read in full for every generated token, as many bytes as a third of
//! the Q4_1 layers. candle's Q8_0 product converts each block's f16 scale in a function
//! call and re-quantizes the activations in its own block type; this one shares the Q4_1
//! kernel's 8-bit activations and splits the columns the same way. Each output is
//! `Σ_blocks d_w·d_a·Σ(q_w·q_a)`; with AVX2 a block's 32 signed products are `vpsignb` +
//! `vpmaddubsw` + `vpmaddwd` (llama.cpp's method), elsewhere the same sum in plain Rust.

#![expect(
    unsafe_code,
    reason = "the Q8_0 product uses AVX2 intrinsics (runtime-detected) and unchecked SIMD loads; each unsafe block says why its pointers are in bounds"
)]

use candle_core::quantized::GgmlDType;

use super::blocks::{BLOCK, BlockFormat, BlockWeights, Q8Rows, f16_to_f32, one_row};

/// Bytes per block: f16 scale `d`, then 32 signed 8-bit values; x = d·q.
const BLOCK_BYTES: usize = 34;

/// The Q8_0 format: [`BLOCK_BYTES`]-byte blocks, this module's product.
pub struct Q8_0;

/// A Q8_0 matrix as stored in the GGUF.
pub type Q8_0Weights = BlockWeights<Q8_0>;

/// One weight row · one quantized activation row, in plain Rust.
fn dot_portable(w: &[u8], qs: &[i8], ds: &[[f32; 2]]) -> f32 {
    let mut total = 0f32;
    for ((block, a), [da, _]) in w
        .chunks_exact(BLOCK_BYTES)
        .zip(qs.chunks_exact(BLOCK))
        .zip(ds)
    {
        let d = f16_to_f32(u16::from_le_bytes([block[0], block[1]]));
        let sum: i32 = block[2..]
            .iter()
            .zip(a)
            .map(|(&q, &a)| i32::from(q as i8) * i32::from(a))
            .sum();
        total += d * da * sum as f32;
    }
    total
}

/// One block's 32 products as 8 float partial sums, and the block's scale.
///
/// # Safety
/// AVX2 and F16C; `block` points at 34 readable bytes.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma,f16c")]
#[inline]
unsafe fn block_products(
    block: *const u8,
    a: std::arch::x86_64::__m256i,
) -> (std::arch::x86_64::__m256, f32) {
    use std::arch::x86_64::*;
    // SAFETY: 34 readable bytes at `block` (the caller's contract); unaligned loads.
    let (scale, w) = unsafe {
        (
            std::ptr::read_unaligned(block.cast::<u16>()),
            _mm256_loadu_si256(block.add(2).cast::<__m256i>()),
        )
    };
    // vpmaddubsw multiplies unsigned by signed bytes: |w| × (a with w's sign). |w| ≤ 128 and
    // |a| ≤ 127, so a pair's sum fits in i16.
    let pairs = _mm256_maddubs_epi16(_mm256_sign_epi8(w, w), _mm256_sign_epi8(a, w));
    let products = _mm256_madd_epi16(pairs, _mm256_set1_epi16(1));
    let d = _mm_cvtss_f32(_mm_cvtph_ps(_mm_cvtsi32_si128(i32::from(scale))));
    (_mm256_cvtepi32_ps(products), d)
}

/// [`dot_portable`] with AVX2, two blocks per step into independent sums.
///
/// # Safety
/// The CPU must have AVX2, FMA and F16C; `w` must hold `qs.len() / 32` blocks and `ds` as
/// many entries (checked by the caller).
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma,f16c")]
unsafe fn dot_avx2(w: &[u8], qs: &[i8], ds: &[[f32; 2]]) -> f32 {
    use std::arch::x86_64::*;
    let (mut even, mut odd) = (_mm256_setzero_ps(), _mm256_setzero_ps());
    let step = |b: usize, acc: __m256| {
        // SAFETY: block b spans w[34b..34b + 34] and qs[32b..32b + 32], in bounds by the
        // caller's contract.
        let (products, d) = unsafe {
            let a = _mm256_loadu_si256(qs.as_ptr().add(b * BLOCK).cast::<__m256i>());
            block_products(w.as_ptr().add(b * BLOCK_BYTES), a)
        };
        _mm256_fmadd_ps(products, _mm256_set1_ps(d * ds[b][0]), acc)
    };
    let blocks = ds.len();
    let mut b = 0;
    while b + 2 <= blocks {
        even = step(b, even);
        odd = step(b + 1, odd);
        b += 2;
    }
    if b < blocks {
        even = step(b, even);
    }
    super::blocks::horizontal_sum(_mm256_add_ps(even, odd))
}

impl BlockFormat for Q8_0 {
    const DTYPE: GgmlDType = GgmlDType::Q8_0;
    const NAME: &'static str = "Q8_0";
    const BLOCK_BYTES: usize = BLOCK_BYTES;

    fn product(
        weights: &[u8],
        (m, k, n): (usize, usize, usize),
        row_bytes: usize,
        acts: &Q8Rows,
        dst: &mut [f32],
    ) {
        #[cfg(target_arch = "x86_64")]
        let simd = super::blocks::has_avx2();
        // The output head sees one row (the last position); a prompt's rows go one at a time.
        for (row, out) in dst.chunks_mut(n).take(m).enumerate() {
            let qs = &acts.qs[row * k..(row + 1) * k];
            let ds = &acts.ds[row * (k / BLOCK)..(row + 1) * (k / BLOCK)];
            one_row(out, |col| {
                let w = &weights[col * row_bytes..(col + 1) * row_bytes];
                #[cfg(target_arch = "x86_64")]
                if simd {
                    // SAFETY: the features were detected; w, qs and ds all hold k / 32 blocks.
                    return unsafe { dot_avx2(w, qs, ds) };
                }
                dot_portable(w, qs, ds)
            });
        }
    }

    fn dequantize_into(data: &[u8], out: &mut Vec<f32>) {
        for block in data.chunks_exact(BLOCK_BYTES) {
            let d = f16_to_f32(u16::from_le_bytes([block[0], block[1]]));
            out.extend(block[2..].iter().map(|&q| d * f32::from(q as i8)));
        }
    }

    /// Q8_0 blocks for `xs` (whole blocks; a tail shorter than a block is dropped).
    fn quantize(xs: &[f32]) -> Vec<u8> {
        let mut data = Vec::with_capacity(xs.len() / BLOCK * BLOCK_BYTES);
        for x in xs.chunks_exact(BLOCK) {
            let amax = x.iter().fold(0f32, |a, v| a.max(v.abs()));
            let d = amax / 127.0;
            let inverse = if d > 0.0 { 1.0 / d } else { 0.0 };
            data.extend(half::f16::from_f32(d).to_bits().to_le_bytes());
            data.extend(x.iter().map(|v| (v * inverse).round() as i8 as u8));
        }
        data
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::blocks::matmul;
    use candle_core::quantized::QMatMul;
    use candle_core::{Device, Module, Tensor};

    use crate::blocks::test_values as values;
    use candle_core::quantized::QTensor;

    #[test]
    fn matmul_matches_the_dequantized_product_and_candles_q8_0() {
        let (k, n) = (576, 203);
        let xs = values(k * n, 7);
        let weights = Q8_0::quantize(&xs);
        let mut w = Vec::new();
        Q8_0::dequantize_into(&weights, &mut w);
        // Our blocks are candle's: the same bytes read by candle's own Q8_0 type agree.
        let ours =
            QMatMul::from_qtensor(Q8_0Weights::qtensor(weights.clone(), (n, k)).unwrap()).unwrap();
        let candle = QMatMul::from_qtensor(
            QTensor::quantize(
                &Tensor::from_slice(&xs, (n, k), &Device::Cpu).unwrap(),
                GgmlDType::Q8_0,
            )
            .unwrap(),
        )
        .unwrap();
        for m in [1, 3] {
            let lhs = values(m * k, 11 + m as u64);
            let mut got = vec![f32::NAN; m * n];
            matmul::<Q8_0>(&weights, (m, k, n), &lhs, &mut got).unwrap();
            // Exactly what the kernel computes: dequantized weights times the activations as
            // quantized to 8 bits, summed in f64.
            let acts = Q8Rows::quantize(&lhs);
            let scale = got.iter().fold(0f32, |a, v| a.max(v.abs()));
            for row in 0..m {
                for col in 0..n {
                    let exact: f64 = (0..k)
                        .map(|t| {
                            let a =
                                acts.ds[(row * k + t) / BLOCK][0] * f32::from(acts.qs[row * k + t]);
                            f64::from(a) * f64::from(w[col * k + t])
                        })
                        .sum();
                    let g = got[row * n + col];
                    assert!(
                        (f64::from(g) - exact).abs() <= 1e-4 * f64::from(scale),
                        "m {m}, row {row}, col {col}: {g} vs {exact}"
                    );
                }
            }
            let input = Tensor::from_slice(&lhs, (m, k), &Device::Cpu).unwrap();
            let run = |matmul: &QMatMul| -> Vec<f32> {
                let out = matmul.forward(&input).unwrap();
                out.flatten_all().unwrap().to_vec1().unwrap()
            };
            for (x, y) in run(&ours).iter().zip(&run(&candle)) {
                // candle rounds the activations to its own f16-scaled blocks.
                assert!((x - y).abs() <= 0.01 * scale, "{x} vs candle {y}");
            }
        }
    }

    #[cfg(target_arch = "x86_64")]
    #[test]
    fn simd_and_portable_dots_agree() {
        if !super::super::blocks::has_avx2() {
            eprintln!("skipped: this CPU has no AVX2/FMA/F16C");
            return;
        }
        for k in [576, 1536, 32 * 7] {
            let weights = Q8_0::quantize(&values(k, 4));
            let acts = Q8Rows::quantize(&values(k, 5));
            let portable = dot_portable(&weights, &acts.qs, &acts.ds);
            // SAFETY: features detected above; one row of k / 32 blocks each.
            let simd = unsafe { dot_avx2(&weights, &acts.qs, &acts.ds) };
            assert!(
                (simd - portable).abs() <= 1e-4 * portable.abs().max(1.0),
                "k {k}: {simd} vs {portable}"
            );
        }
    }
}
