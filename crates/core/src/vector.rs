//! Small dense-vector kernels shared by the heads, the scorer's clusters and the cache's
//! verifier.

/// Dot product in eight independent lanes, so the compiler can vectorise it (a plain
/// `sum()` of products is a serial chain of float adds, which it may not reorder).
/// Inlined where it is called, so it runs at the caller's optimisation level.
#[inline]
pub fn dot(a: &[f32], b: &[f32]) -> f32 {
    dot_lanes(a, b)
}

#[inline(always)]
fn dot_lanes(a: &[f32], b: &[f32]) -> f32 {
    let mut acc = [0f32; 8];
    let (ca, cb) = (a.chunks_exact(8), b.chunks_exact(8));
    let tail: f32 = ca
        .remainder()
        .iter()
        .zip(cb.remainder())
        .map(|(x, y)| x * y)
        .sum();
    for (x, y) in ca.zip(cb) {
        for i in 0..8 {
            acc[i] += x[i] * y[i];
        }
    }
    acc.iter().sum::<f32>() + tail
}

/// `a` dotted with each of four vectors, `a` fetched from memory once for all four (the
/// cache's verifier judges four candidates against each weight row; after the first dot the
/// row is in L1).
///
/// On x86-64 CPUs with AVX2 the same code runs compiled for 256-bit registers (chosen at run
/// time: the default build targets plain x86-64, whose 128-bit SSE2 halves the throughput).
/// Same operations in the same order, so the result is bit-for-bit the same either way.
pub fn dot4(a: &[f32], b: [&[f32]; 4]) -> [f32; 4] {
    #[cfg(target_arch = "x86_64")]
    if std::arch::is_x86_feature_detected!("avx2") {
        // SAFETY: `dot4_avx2` needs only AVX2, and the CPU was just seen to have it.
        #[allow(unsafe_code)]
        return unsafe { dot4_avx2(a, b) };
    }
    dot4_lanes(a, b)
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2")]
fn dot4_avx2(a: &[f32], b: [&[f32]; 4]) -> [f32; 4] {
    dot4_lanes(a, b)
}

#[inline(always)]
fn dot4_lanes(a: &[f32], b: [&[f32]; 4]) -> [f32; 4] {
    // Four plain calls, not `b.map(..)`: a closure would be compiled outside the AVX2
    // context and take the loop with it.
    [
        dot_wide(a, b[0]),
        dot_wide(a, b[1]),
        dot_wide(a, b[2]),
        dot_wide(a, b[3]),
    ]
}

/// `dot` with 32 lanes: four independent vector accumulators, so the adds overlap instead
/// of each waiting for the last (the verifier's rows are ~1,000 long).
#[inline(always)]
fn dot_wide(a: &[f32], b: &[f32]) -> f32 {
    // The shorter length for both, so the two remainders line up.
    let n = a.len().min(b.len());
    let (a, b) = (&a[..n], &b[..n]);
    let mut acc = [0f32; 32];
    let (ca, cb) = (a.chunks_exact(32), b.chunks_exact(32));
    let tail = dot_lanes(ca.remainder(), cb.remainder());
    for (x, y) in ca.zip(cb) {
        for i in 0..32 {
            acc[i] += x[i] * y[i];
        }
    }
    acc.iter().sum::<f32>() + tail
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn matches_the_plain_sum() {
        for n in [0, 1, 7, 8, 9, 384, 777] {
            let a: Vec<f32> = (0..n).map(|i| (i as f32 * 0.37).sin()).collect();
            let b: Vec<f32> = (0..n).map(|i| (i as f32 * 0.11).cos()).collect();
            let plain: f32 = a.iter().zip(&b).map(|(x, y)| x * y).sum();
            assert!((dot(&a, &b) - plain).abs() < 1e-3, "n={n}");
        }
    }

    #[test]
    fn dot4_uses_the_shorter_length() {
        let a = [1.0f32; 40];
        let short = [2.0f32; 35];
        let long = [1.0f32; 40];
        assert_eq!(
            dot4(&a, [&short, &long, &long, &long]),
            [70.0, 40.0, 40.0, 40.0]
        );
    }

    #[test]
    fn dot4_dispatch_is_exact() {
        let a: Vec<f32> = (0..777).map(|i| (i as f32 * 0.37).sin()).collect();
        let b: Vec<Vec<f32>> = (0..4)
            .map(|k| (0..777).map(|i| ((i + k) as f32 * 0.11).cos()).collect())
            .collect();
        let four = [&b[0][..], &b[1][..], &b[2][..], &b[3][..]];
        assert_eq!(dot4(&a, four), dot4_lanes(&a, four));
    }

    #[test]
    fn dot4_matches_four_dots() {
        for n in [0, 3, 8, 13, 776] {
            let a: Vec<f32> = (0..n).map(|i| (i as f32 * 0.37).sin()).collect();
            let bs: Vec<Vec<f32>> = (0..4)
                .map(|k| (0..n).map(|i| ((i + k) as f32 * 0.11).cos()).collect())
                .collect();
            let got = dot4(&a, [&bs[0], &bs[1], &bs[2], &bs[3]]);
            for (g, b) in got.iter().zip(&bs) {
                assert!((g - dot(&a, b)).abs() < 1e-3, "n={n}");
            }
        }
    }
}
