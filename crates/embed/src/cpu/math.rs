//! The encoder's element-wise and row-wise work — exact-erf GELU, layer norm, the
//! attention softmax — written as plain Rust the compiler vectorises,
//! compiled once per [`Isa`] and chosen at run time.
//!
//! `exp` and `erf` are polynomial approximations built from `+`, `×`, `floor` and bit
//! casts only, so a loop over a slice becomes SIMD code: `exp` has a relative error of about
//! 2·10⁻⁷ (Cephes' `expf`), `erf` an absolute error under 5·10⁻⁷ (Abramowitz & Stegun
//! 7.1.26: 1.5·10⁻⁷, plus `f32` rounding) — a few units in the last place near ±1, which
//! leaves the embeddings equal to candle's (libm `erf`) to cosine 1 − 10⁻⁸.

#![expect(
    unsafe_code,
    reason = "calling the copies compiled with `#[target_feature]`, after run-time detection"
)]

use super::Isa;

/// Compiles `$body` three times — baseline, AVX2+FMA, AVX-512 — and picks one by `isa`.
macro_rules! per_isa {
    ($(#[$meta:meta])* $vis:vis fn $name:ident($($arg:ident: $ty:ty),* $(,)?) $body:block) => {
        $(#[$meta])*
        $vis fn $name(isa: Isa, $($arg: $ty),*) {
            #[inline(always)]
            fn generic($($arg: $ty),*) $body

            #[cfg(target_arch = "x86_64")]
            #[target_feature(enable = "avx512f,avx512bw,avx512dq,avx512vl,avx2,fma")]
            fn avx512($($arg: $ty),*) {
                generic($($arg),*)
            }

            #[cfg(target_arch = "x86_64")]
            #[target_feature(enable = "avx2,fma")]
            fn avx2($($arg: $ty),*) {
                generic($($arg),*)
            }

            match isa {
                #[cfg(target_arch = "x86_64")]
                // SAFETY: `Isa::Avx512` is only chosen when the CPU reports AVX-512F.
                Isa::Avx512 => unsafe { avx512($($arg),*) },
                #[cfg(target_arch = "x86_64")]
                // SAFETY: `Isa::Avx2` is only chosen when the CPU reports AVX2 and FMA.
                Isa::Avx2 => unsafe { avx2($($arg),*) },
                _ => generic($($arg),*),
            }
        }
    };
}

/// `e^x` for `f32`, branch-free (Cephes `expf`): `x = n·ln 2 + r`, a degree-6 polynomial
/// in `r`, and `2^n` put into the exponent bits. Inputs below -87.3 give ~0, above 88.3 clamp.
#[inline(always)]
pub(crate) fn exp(x: f32) -> f32 {
    let x = x.clamp(-87.3, 88.3);
    let n = (x * std::f32::consts::LOG2_E + 0.5).floor();
    let r = x - n * 0.693_359_4 + n * 2.121_944_4e-4;
    let mut p = 1.987_569_1e-4;
    p = p * r + 1.398_2e-3;
    p = p * r + 8.333_452e-3;
    p = p * r + 4.166_579_6e-2;
    p = p * r + 1.666_666_5e-1;
    p = p * r + 0.5;
    let p = p * r * r + r + 1.0;
    // `n` is a whole number in [-126, 127]: adding 1.5·2²³ puts it in the low mantissa bits
    // (an integer conversion in integer-free, vectorisable operations), then it becomes the
    // biased exponent of `2^n`.
    let bits = (n + 12_582_912.0)
        .to_bits()
        .wrapping_sub(0x4B40_0000)
        .wrapping_add(127)
        << 23;
    let scale = f32::from_bits(bits);
    p * scale
}

/// `erf(x)`, absolute error under 5·10⁻⁷ (Abramowitz & Stegun 7.1.26 on `|x|`, sign restored).
#[inline(always)]
pub(crate) fn erf(x: f32) -> f32 {
    let a = x.abs();
    let t = 1.0 / (1.0 + 0.327_591_1 * a);
    let mut p = 1.061_405_4;
    p = p * t - 1.453_152;
    p = p * t + 1.421_413_7;
    p = p * t - 0.284_496_72;
    p = p * t + 0.254_829_6;
    let y = 1.0 - p * t * exp(-a * a);
    y.copysign(x)
}

/// Exact (erf) GELU: `x/2 · (1 + erf(x/√2))`.
#[inline(always)]
pub(crate) fn gelu(x: f32) -> f32 {
    0.5 * x * (1.0 + erf(x * std::f32::consts::FRAC_1_SQRT_2))
}

/// Sum with 16 independent lanes, which the compiler keeps in vector registers.
#[inline(always)]
fn sum(x: &[f32]) -> f32 {
    let mut lanes = [0.0f32; 16];
    let chunks = x.chunks_exact(16);
    let tail: f32 = chunks.remainder().iter().sum();
    for c in chunks {
        for (l, &v) in lanes.iter_mut().zip(c) {
            *l += v;
        }
    }
    lanes.iter().sum::<f32>() + tail
}

per_isa! {
    /// GELU on every value, in place.
    pub(crate) fn gelu_in_place(x: &mut [f32]) {
        for v in x {
            *v = gelu(*v);
        }
    }
}

per_isa! {
    /// Layer norm of each `gamma.len()`-wide row of `x`, in place.
    pub(crate) fn layer_norm(x: &mut [f32], gamma: &[f32], beta: &[f32], eps: f32) {
        let width = gamma.len();
        let inv_width = 1.0 / width as f32;
        for row in x.chunks_exact_mut(width) {
            let mean = sum(row) * inv_width;
            let mut lanes = [0.0f32; 16];
            let chunks = row.chunks_exact(16);
            let mut var: f32 = chunks.remainder().iter().map(|v| (v - mean) * (v - mean)).sum();
            for c in chunks {
                for (l, &v) in lanes.iter_mut().zip(c) {
                    *l += (v - mean) * (v - mean);
                }
            }
            var = (var + lanes.iter().sum::<f32>()) * inv_width;
            let scale = 1.0 / (var + eps).sqrt();
            for ((v, &g), &b) in row.iter_mut().zip(gamma).zip(beta) {
                *v = (*v - mean) * scale * g + b;
            }
        }
    }
}

/// Maximum with 16 independent lanes.
#[inline(always)]
fn max(x: &[f32]) -> f32 {
    let mut lanes = [f32::NEG_INFINITY; 16];
    let chunks = x.chunks_exact(16);
    let tail = chunks
        .remainder()
        .iter()
        .fold(f32::NEG_INFINITY, |m, &v| m.max(v));
    for c in chunks {
        for (l, &v) in lanes.iter_mut().zip(c) {
            *l = l.max(v);
        }
    }
    lanes.iter().fold(tail, |m, &v| m.max(v))
}

per_isa! {
    /// Softmax over the first `width` values of each `stride`-long row of `x`, in place.
    pub(crate) fn softmax_rows(x: &mut [f32], width: usize, stride: usize) {
        for row in x.chunks_exact_mut(stride) {
            let live = &mut row[..width];
            let top = max(live);
            for v in live.iter_mut() {
                *v = exp(*v - top);
            }
            let norm = 1.0 / sum(live);
            for v in live.iter_mut() {
                *v *= norm;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exp_is_accurate_to_float_rounding() {
        let mut worst = 0.0f64;
        for i in -8700..=8800 {
            let x = i as f32 / 100.0;
            let want = f64::from(x).exp();
            worst = worst.max(((f64::from(exp(x)) - want) / want).abs());
        }
        assert!(worst < 5e-7, "worst relative error {worst}");
    }

    /// erf in f64 by its Maclaurin series (|x| ≤ 3) or continued fraction (beyond).
    fn erf64(x: f64) -> f64 {
        let a = x.abs();
        let v = if a <= 3.0 {
            let (mut term, mut total, mut n) = (a, a, 0.0);
            while term.abs() > 1e-17 {
                n += 1.0;
                term *= -a * a / n;
                total += term / (2.0 * n + 1.0);
            }
            total * 2.0 / std::f64::consts::PI.sqrt()
        } else {
            let mut f = 0.0;
            for k in (1..60).rev() {
                f = f64::from(k) / 2.0 / (a + f);
            }
            1.0 - (-a * a).exp() / std::f64::consts::PI.sqrt() / (a + f)
        };
        v.copysign(x)
    }

    #[test]
    fn erf_and_gelu_are_accurate_to_float_rounding() {
        let (mut erf_worst, mut gelu_worst) = (0.0f64, 0.0f64);
        for i in -10_000..=10_000 {
            let x = i as f32 / 1000.0;
            erf_worst = erf_worst.max((f64::from(erf(x)) - erf64(f64::from(x))).abs());
            let want = 0.5 * f64::from(x) * (1.0 + erf64(f64::from(x) / 2f64.sqrt()));
            gelu_worst = gelu_worst.max((f64::from(gelu(x)) - want).abs() / (1.0 + want.abs()));
        }
        assert!(erf_worst < 5e-7, "erf worst absolute error {erf_worst}");
        assert!(gelu_worst < 1e-6, "gelu worst error {gelu_worst}");
    }

    #[test]
    fn every_isa_computes_the_same_layer_norm_and_gelu() {
        let gamma: Vec<f32> = (0..40).map(|i| 1.0 + i as f32 / 100.0).collect();
        let beta: Vec<f32> = (0..40).map(|i| i as f32 / 50.0 - 0.3).collect();
        let input: Vec<f32> = (0..120)
            .map(|i| ((i * 37) % 101) as f32 / 10.0 - 5.0)
            .collect();
        let mut want = input.clone();
        for row in want.chunks_exact_mut(40) {
            let mean = row.iter().map(|&v| f64::from(v)).sum::<f64>() / 40.0;
            let var = row
                .iter()
                .map(|&v| (f64::from(v) - mean).powi(2))
                .sum::<f64>()
                / 40.0;
            for (j, v) in row.iter_mut().enumerate() {
                let y = (f64::from(*v) - mean) / (var + 1e-12).sqrt();
                *v = (y * f64::from(gamma[j]) + f64::from(beta[j])) as f32;
            }
        }
        for isa in Isa::supported() {
            let mut got = input.clone();
            layer_norm(isa, &mut got, &gamma, &beta, 1e-12);
            for (g, w) in got.iter().zip(&want) {
                assert!((g - w).abs() < 1e-5, "{isa}: {g} vs {w}");
            }
            let mut g = input.clone();
            gelu_in_place(isa, &mut g);
            for (g, &x) in g.iter().zip(&input) {
                assert!(
                    (g - gelu(x)).abs() <= 1e-6 * (1.0 + x.abs()),
                    "{isa} gelu({x})"
                );
            }
        }
    }

    #[test]
    fn softmax_rows_sum_to_one_and_skip_the_padding() {
        let mut x: Vec<f32> = (0..3 * 21).map(|i| ((i * 13) % 17) as f32 - 8.0).collect();
        let original = x.clone();
        for isa in Isa::supported() {
            x.copy_from_slice(&original);
            softmax_rows(isa, &mut x, 19, 21);
            for (row, orig) in x.chunks_exact(21).zip(original.chunks_exact(21)) {
                let total: f64 = orig[..19].iter().map(|&v| f64::from(v).exp()).sum();
                for (g, &o) in row[..19].iter().zip(orig) {
                    let want = f64::from(o).exp() / total;
                    assert!((f64::from(*g) - want).abs() < 1e-6, "{isa}: {g} vs {want}");
                }
                assert_eq!(&row[19..], &orig[19..], "{isa}: the padding is left alone");
            }
        }
    }
}
