//! Small dense-vector kernels shared by the heads, the scorer's clusters and the cache's
//! verifier.

/// Dot product in eight independent lanes, so the compiler can vectorise it (a plain
/// `sum()` of products is a serial chain of float adds, which it may not reorder).
pub fn dot(a: &[f32], b: &[f32]) -> f32 {
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

/// `a` dotted with each of four vectors in one pass, so `a` is read once for all four
/// (the cache's verifier judges four candidates against each weight row).
pub fn dot4(a: &[f32], b: [&[f32]; 4]) -> [f32; 4] {
    let n = b.iter().map(|v| v.len()).fold(a.len(), usize::min);
    let whole = n - n % 8;
    let mut acc = [[0f32; 8]; 4];
    for start in (0..whole).step_by(8) {
        let x = &a[start..start + 8];
        for (acc, v) in acc.iter_mut().zip(&b) {
            let y = &v[start..start + 8];
            for i in 0..8 {
                acc[i] += x[i] * y[i];
            }
        }
    }
    let mut out = [0f32; 4];
    for ((o, acc), v) in out.iter_mut().zip(&acc).zip(&b) {
        *o = acc.iter().sum::<f32>()
            + a[whole..n]
                .iter()
                .zip(&v[whole..n])
                .map(|(x, y)| x * y)
                .sum::<f32>();
    }
    out
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
