//! Q4_1 weights with a SIMD matrix product, plugged into candle's quantized matmul.
//!
//! candle 0.11 stores Q4_1 tensors but dots them in scalar code, so the local model used to
//! convert them to Q8_0 at load — 1.7× the bytes streamed from memory per generated token,
//! which on a small CPU is what bounds generation speed. [`Q4_1Weights`] keeps the GGUF's
//! own blocks (through [`super::blocks`], candle's [`QuantizedType`]), so a [`QMatMul`] over
//! it runs this module's product: activations are quantized to 8 bits per 32-value block (a scale `d` and
//! `s = d·Σq`, as ggml's Q8_1), and each output is
//! `Σ_blocks d_w·d_a·Σ(q_w·q_a) + m_w·s_a` — on x86-64 with AVX2 the inner sum is one
//! `vpmaddubsw` + `vpmaddwd` per block (llama.cpp's method), elsewhere the same sum in
//! plain Rust. Columns are split over candle's CPU thread pool, so `RAYON_NUM_THREADS`
//! governs it as it does candle's own kernels.
//!
//! [`QMatMul`]: candle_core::quantized::QMatMul
//! [`QuantizedType`]: candle_core::quantized::QuantizedType

#![expect(
    unsafe_code,
    reason = "the Q4_1 product uses AVX2 intrinsics (runtime-detected) and unchecked SIMD loads; each unsafe block says why its pointers are in bounds"
)]

use std::sync::Mutex;
use std::sync::atomic::{AtomicUsize, Ordering};

use candle_core::quantized::GgmlDType;

#[cfg(target_arch = "x86_64")]
use super::blocks::has_avx2;
use super::blocks::{
    BLOCK, BlockFormat, BlockWeights, Q8Rows, f16_to_f32, horizontal_sum, one_row,
};

/// Bytes per block: f16 scale `d`, f16 minimum `m`, 16 bytes of 4-bit values (value `j` in
/// the low nibble of byte `j`, value `j + 16` in its high nibble); x = d·q + m.
const BLOCK_BYTES: usize = 20;
/// Output columns per unit of work handed to a thread.
const COLUMNS_PER_TASK: usize = 16;

/// The Q4_1 format: [`BLOCK_BYTES`]-byte blocks, this module's product.
pub struct Q4_1;

/// A Q4_1 matrix as stored in the GGUF.
pub type Q4_1Weights = BlockWeights<Q4_1>;

/// One weight row (`blocks` Q4_1 blocks) · one quantized activation row, in plain Rust.
fn dot_portable(w: &[u8], qs: &[i8], ds: &[[f32; 2]]) -> f32 {
    let mut total = 0f32;
    for ((block, a), [da, sa]) in w
        .chunks_exact(BLOCK_BYTES)
        .zip(qs.chunks_exact(BLOCK))
        .zip(ds)
    {
        let d = f16_to_f32(u16::from_le_bytes([block[0], block[1]]));
        let m = f16_to_f32(u16::from_le_bytes([block[2], block[3]]));
        let mut sum = 0i32;
        for (j, &byte) in block[4..].iter().enumerate() {
            sum += i32::from(byte & 0x0f) * i32::from(a[j])
                + i32::from(byte >> 4) * i32::from(a[j + 16]);
        }
        total += d * da * sum as f32 + m * sa;
    }
    total
}

/// One Q4_1 block against 32 activations: the 8 partial integer sums as floats, the scale
/// `d` and the minimum `m`.
///
/// # Safety
/// AVX2, FMA and F16C; `block` points at 20 readable bytes, `a` at 32.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma,f16c")]
#[inline]
unsafe fn block_products(
    block: *const u8,
    a: std::arch::x86_64::__m256i,
) -> (std::arch::x86_64::__m256, f32, f32) {
    use std::arch::x86_64::*;
    let low = _mm_set1_epi8(0x0f);
    // SAFETY: 20 readable bytes at `block` (the caller's contract); unaligned loads.
    let (scales, packed) = unsafe {
        (
            std::ptr::read_unaligned(block.cast::<i32>()),
            _mm_loadu_si128(block.add(4).cast::<__m128i>()),
        )
    };
    let dm = _mm_cvtph_ps(_mm_cvtsi32_si128(scales));
    let q = _mm256_set_m128i(
        _mm_and_si128(_mm_srli_epi16(packed, 4), low),
        _mm_and_si128(packed, low),
    );
    // u4 × i8 pairs summed to i16 (|15·127·2| fits), then pairs of those to i32.
    let products = _mm256_madd_epi16(_mm256_maddubs_epi16(q, a), _mm256_set1_epi16(1));
    (
        _mm256_cvtepi32_ps(products),
        _mm_cvtss_f32(dm),
        _mm_cvtss_f32(_mm_movehdup_ps(dm)),
    )
}

/// [`dot_portable`] with AVX2: the 32 products of a block in two instructions, the scales
/// converted by F16C.
///
/// # Safety
/// The CPU must have AVX2, FMA and F16C ([`has_avx2`]); `w` must hold `qs.len() / 32` blocks
/// and `ds` as many entries (checked by the caller).
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma,f16c")]
unsafe fn dot_avx2(w: &[u8], qs: &[i8], ds: &[[f32; 2]]) -> f32 {
    use std::arch::x86_64::*;
    let mut acc = _mm256_setzero_ps();
    let mut mins = 0f32;
    for (b, [da, sa]) in ds.iter().enumerate() {
        // SAFETY: block b spans w[20b..20b + 20] and qs[32b..32b + 32], in bounds by the
        // caller's contract.
        let (products, d, m) = unsafe {
            let a = _mm256_loadu_si256(qs.as_ptr().add(b * BLOCK).cast::<__m256i>());
            block_products(w.as_ptr().add(b * BLOCK_BYTES), a)
        };
        acc = _mm256_fmadd_ps(products, _mm256_set1_ps(d * da), acc);
        mins += m * sa;
    }
    horizontal_sum(acc) + mins
}

/// [`dot_avx2`] for four weight rows at once: each activation block is loaded once for the
/// four, and the four independent sums keep the multiply units busy.
///
/// # Safety
/// As [`dot_avx2`], for each of the four rows.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma,f16c")]
unsafe fn dot4_avx2(w: [&[u8]; 4], qs: &[i8], ds: &[[f32; 2]]) -> [f32; 4] {
    use std::arch::x86_64::*;
    let mut acc = [_mm256_setzero_ps(); 4];
    let mut mins = [0f32; 4];
    for (b, [da, sa]) in ds.iter().enumerate() {
        // SAFETY: as in dot_avx2, block b of the activations and of each row is in bounds.
        let a = unsafe { _mm256_loadu_si256(qs.as_ptr().add(b * BLOCK).cast::<__m256i>()) };
        for r in 0..4 {
            // SAFETY: see above.
            let (products, d, m) = unsafe { block_products(w[r].as_ptr().add(b * BLOCK_BYTES), a) };
            acc[r] = _mm256_fmadd_ps(products, _mm256_set1_ps(d * da), acc[r]);
            mins[r] += m * sa;
        }
    }
    [0, 1, 2, 3].map(|r| horizontal_sum(acc[r]) + mins[r])
}

impl BlockFormat for Q4_1 {
    const DTYPE: GgmlDType = GgmlDType::Q4_1;
    const NAME: &'static str = "Q4_1";
    const BLOCK_BYTES: usize = BLOCK_BYTES;

    fn product(
        weights: &[u8],
        (m, k, n): (usize, usize, usize),
        row_bytes: usize,
        acts: &Q8Rows,
        dst: &mut [f32],
    ) {
        #[cfg(target_arch = "x86_64")]
        let simd = has_avx2();
        let dot = |col: usize, row: usize| {
            let w = &weights[col * row_bytes..(col + 1) * row_bytes];
            let qs = &acts.qs[row * k..(row + 1) * k];
            let ds = &acts.ds[row * (k / BLOCK)..(row + 1) * (k / BLOCK)];
            #[cfg(target_arch = "x86_64")]
            if simd {
                // SAFETY: the features were detected; w, qs and ds all hold k / 32 blocks.
                return unsafe { dot_avx2(w, qs, ds) };
            }
            dot_portable(w, qs, ds)
        };
        if m == 1 {
            one_row(&mut dst[..n], |col| dot(col, 0));
            return;
        }
        // Work items are column ranges; each range's outputs (all rows) go to its own buffer,
        // which a worker takes under an uncontended lock.
        let tasks = n.div_ceil(COLUMNS_PER_TASK);
        let mut scratch = if m == 1 {
            Vec::new()
        } else {
            vec![0f32; m * n]
        };
        let outputs: Vec<Mutex<&mut [f32]>> = if m == 1 {
            dst[..n]
                .chunks_mut(COLUMNS_PER_TASK)
                .map(Mutex::new)
                .collect()
        } else {
            scratch
                .chunks_mut(m * COLUMNS_PER_TASK)
                .map(Mutex::new)
                .collect()
        };
        let next = AtomicUsize::new(0);
        candle_core::utils::barrier_pool().execute(|_| {
            loop {
                let task = next.fetch_add(1, Ordering::Relaxed);
                let Some(out) = outputs.get(task) else { break };
                let mut out = out
                    .lock()
                    .unwrap_or_else(std::sync::PoisonError::into_inner);
                let first = task * COLUMNS_PER_TASK;
                let width = (n - first).min(COLUMNS_PER_TASK);
                let at = |c: usize, row: usize| if m == 1 { c } else { c * m + row };
                // Column-major within the task: each weight row is read once for all `m` rows.
                let mut c = 0;
                #[cfg(target_arch = "x86_64")]
                // Four weight rows at a time pays off for several activation rows (the prompt); for
                // one row (generation) it measured slower than one weight row at a time.
                while simd && m > 1 && c + 4 <= width {
                    let col = first + c;
                    let w = [0, 1, 2, 3]
                        .map(|i| &weights[(col + i) * row_bytes..(col + i + 1) * row_bytes]);
                    for row in 0..m {
                        let qs = &acts.qs[row * k..(row + 1) * k];
                        let ds = &acts.ds[row * (k / BLOCK)..(row + 1) * (k / BLOCK)];
                        // SAFETY: the features were detected; each row, qs and ds hold k / 32 blocks.
                        let four = unsafe { dot4_avx2(w, qs, ds) };
                        for (i, v) in four.into_iter().enumerate() {
                            out[at(c + i, row)] = v;
                        }
                    }
                    c += 4;
                }
                for c in c..width {
                    for row in 0..m {
                        out[at(c, row)] = dot(first + c, row);
                    }
                }
            }
        });
        drop(outputs);
        if m > 1 {
            for task in 0..tasks {
                let first = task * COLUMNS_PER_TASK;
                let width = (n - first).min(COLUMNS_PER_TASK);
                let block = &scratch[first * m..(first + width) * m];
                for c in 0..width {
                    for row in 0..m {
                        dst[row * n + first + c] = block[c * m + row];
                    }
                }
            }
        }
    }

    fn dequantize_into(data: &[u8], out: &mut Vec<f32>) {
        for block in data.chunks_exact(BLOCK_BYTES) {
            let d = f16_to_f32(u16::from_le_bytes([block[0], block[1]]));
            let m = f16_to_f32(u16::from_le_bytes([block[2], block[3]]));
            out.extend(block[4..].iter().map(|b| d * f32::from(b & 0x0f) + m));
            out.extend(block[4..].iter().map(|b| d * f32::from(b >> 4) + m));
        }
    }

    /// Q4_1 blocks for `xs` (whole blocks; a tail shorter than a block is dropped).
    fn quantize(xs: &[f32]) -> Vec<u8> {
        let mut data = Vec::with_capacity(xs.len() / BLOCK * BLOCK_BYTES);
        for x in xs.chunks_exact(BLOCK) {
            let min = x.iter().copied().fold(f32::INFINITY, f32::min);
            let max = x.iter().copied().fold(f32::NEG_INFINITY, f32::max);
            let d = (max - min) / 15.0;
            let inverse = if d > 0.0 { 1.0 / d } else { 0.0 };
            let (d16, m16) = (half::f16::from_f32(d), half::f16::from_f32(min));
            data.extend(d16.to_bits().to_le_bytes());
            data.extend(m16.to_bits().to_le_bytes());
            let q = |v: f32| ((v - min) * inverse).round().clamp(0.0, 15.0) as u8;
            data.extend((0..16).map(|j| q(x[j]) | (q(x[j + 16]) << 4)));
        }
        data
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::blocks::matmul;

    use crate::blocks::test_values as values;

    fn reference(w: &[f32], (m, k, n): (usize, usize, usize), lhs: &[f32]) -> Vec<f32> {
        let mut out = vec![0f32; m * n];
        for i in 0..m {
            for j in 0..n {
                let sum: f64 = (0..k)
                    .map(|t| f64::from(lhs[i * k + t]) * f64::from(w[j * k + t]))
                    .sum();
                out[i * n + j] = sum as f32;
            }
        }
        out
    }

    #[test]
    fn quantize_dequantize_keeps_each_value_within_half_a_step() {
        let xs = values(32 * 8, 1);
        let q = Q4_1::quantize(&xs);
        let mut back = Vec::new();
        Q4_1::dequantize_into(&q, &mut back);
        for (block, (x, y)) in xs.chunks(32).zip(back.chunks(32)).enumerate() {
            let range = x.iter().copied().fold(f32::MIN, f32::max)
                - x.iter().copied().fold(f32::MAX, f32::min);
            for (a, b) in x.iter().zip(y) {
                assert!(
                    (a - b).abs() <= range / 15.0 * 0.5 + 1e-3,
                    "block {block}: {a} vs {b}"
                );
            }
        }
    }

    #[test]
    fn matmul_matches_the_dequantized_product_for_one_and_many_rows() {
        // 203 outputs: tasks of 16 end with 11, so with several rows four-row groups and single
        // rows both run.
        let (k, n) = (576, 203);
        let weights = Q4_1::quantize(&values(k * n, 2));
        let mut w = Vec::new();
        Q4_1::dequantize_into(&weights, &mut w);
        for m in [1, 3, 17] {
            let lhs = values(m * k, 3 + m as u64);
            let mut got = vec![f32::NAN; m * n];
            matmul::<Q4_1>(&weights, (m, k, n), &lhs, &mut got).unwrap();
            // Exactly what the kernel computes: the dequantized weights times the activations
            // as quantized to 8 bits, summed in f64.
            let acts = Q8Rows::quantize(&lhs);
            let a: Vec<f32> = (0..m * k)
                .map(|t| acts.ds[t / BLOCK][0] * f32::from(acts.qs[t]))
                .collect();
            let exact = reference(&w, (m, k, n), &a);
            // And the float product: only the activations' 8-bit rounding separates it.
            let float = reference(&w, (m, k, n), &lhs);
            let scale = float.iter().fold(0f32, |a, v| a.max(v.abs()));
            for (i, ((g, e), f)) in got.iter().zip(&exact).zip(&float).enumerate() {
                assert!(
                    (g - e).abs() <= 1e-4 * scale,
                    "m {m}, output {i}: {g} vs {e}"
                );
                assert!(
                    (g - f).abs() <= 0.05 * scale,
                    "m {m}, output {i}: {g} vs float {f}"
                );
            }
            // Each row equals that row computed alone.
            for row in 0..m {
                let mut alone = vec![0f32; n];
                matmul::<Q4_1>(
                    &weights,
                    (1, k, n),
                    &lhs[row * k..(row + 1) * k],
                    &mut alone,
                )
                .unwrap();
                assert_eq!(alone, got[row * n..(row + 1) * n], "row {row} of {m}");
            }
        }
    }

    #[cfg(target_arch = "x86_64")]
    #[test]
    fn simd_and_portable_dots_agree() {
        if !has_avx2() {
            eprintln!("skipped: this CPU has no AVX2/FMA/F16C");
            return;
        }
        let k = 1536;
        let weights = Q4_1::quantize(&values(k, 4));
        let acts = Q8Rows::quantize(&values(k, 5));
        let portable = dot_portable(&weights, &acts.qs, &acts.ds);
        // SAFETY: features detected above; one row of k / 32 blocks each.
        let simd = unsafe { dot_avx2(&weights, &acts.qs, &acts.ds) };
        assert!(
            (simd - portable).abs() <= 1e-4 * portable.abs().max(1.0),
            "{simd} vs {portable}"
        );
    }
}
