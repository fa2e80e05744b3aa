//! Prompt clusters: spherical k-means over training embeddings, and each prompt's soft
//! membership of every cluster as extra features.
//!
//! A linear model on the raw embedding captures global directions ("harder maths is
//! further this way"); models' strengths are often local instead (one benchmark's
//! few-shot format, one kind of coding task). Soft memberships let the same linear model
//! learn a per-cluster quality for each model — what a kNN router does, from a few dozen
//! centroids instead of every training prompt.

use serde::{Deserialize, Serialize};
use switchyard_core::vector::dot;

/// Centroids (unit length) and the softmax temperature of the memberships.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Clusters {
    pub temperature: f32,
    pub centroids: Vec<Vec<f32>>,
}

impl Clusters {
    /// Softmax over cosine similarity / temperature, one value per cluster.
    pub fn memberships(&self, embedding: &[f32]) -> Vec<f64> {
        let sims: Vec<f64> = self
            .centroids
            .iter()
            .map(|c| f64::from(dot(c, embedding) / self.temperature))
            .collect();
        let max = sims.iter().copied().fold(f64::NEG_INFINITY, f64::max);
        let exps: Vec<f64> = sims.iter().map(|s| (s - max).exp()).collect();
        let total: f64 = exps.iter().sum();
        exps.into_iter().map(|e| e / total).collect()
    }
}

fn normalise(v: &mut [f32]) {
    let norm = dot(v, v).sqrt();
    if norm > 0.0 {
        v.iter_mut().for_each(|x| *x /= norm);
    }
}

/// Spherical k-means (cosine) with k-means++ seeding; deterministic for a seed.
pub fn fit_kmeans(points: &[&[f32]], k: usize, seed: u64, iterations: usize) -> Clusters {
    let mut rng = seed ^ 0x9E37_79B9_7F4A_7C15;
    let mut next = move || {
        rng = rng.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = rng;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        (z ^ (z >> 31)) as f64 / u64::MAX as f64
    };
    let k = k.min(points.len());
    let mut centroids: Vec<Vec<f32>> = Vec::with_capacity(k);
    if let Some(first) = points.get((next() * points.len() as f64) as usize % points.len().max(1)) {
        centroids.push(first.to_vec());
    }
    // k-means++: each next centroid with probability ∝ distance² to the nearest chosen one.
    let mut nearest: Vec<f32> = points
        .iter()
        .map(|p| 2.0 - 2.0 * centroids.first().map_or(0.0, |c| dot(c, p)))
        .collect();
    while centroids.len() < k {
        let total: f64 = nearest.iter().map(|&d| f64::from(d.max(0.0))).sum();
        let mut target = next() * total;
        let mut chosen = points.len() - 1;
        for (i, &d) in nearest.iter().enumerate() {
            target -= f64::from(d.max(0.0));
            if target <= 0.0 {
                chosen = i;
                break;
            }
        }
        let c = points[chosen].to_vec();
        for (n, p) in nearest.iter_mut().zip(points) {
            *n = n.min(2.0 - 2.0 * dot(&c, p));
        }
        centroids.push(c);
    }
    let dim = points.first().map_or(0, |p| p.len());
    for _ in 0..iterations {
        let mut sums = vec![vec![0.0f32; dim]; centroids.len()];
        for p in points {
            let best = centroids
                .iter()
                .enumerate()
                .max_by(|a, b| dot(a.1, p).total_cmp(&dot(b.1, p)))
                .map_or(0, |(i, _)| i);
            sums[best].iter_mut().zip(*p).for_each(|(s, x)| *s += x);
        }
        for (c, mut s) in centroids.iter_mut().zip(sums) {
            if s.iter().any(|x| *x != 0.0) {
                normalise(&mut s);
                *c = s;
            }
        }
    }
    Clusters {
        temperature: 0.05,
        centroids,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_separated_groups_and_memberships_sum_to_one() {
        let mut pts: Vec<Vec<f32>> = Vec::new();
        for i in 0..60 {
            let e = (i % 10) as f32 * 0.01;
            let mut v = match i % 3 {
                0 => vec![1.0, e, 0.0],
                1 => vec![e, 1.0, 0.0],
                _ => vec![0.0, e, 1.0],
            };
            normalise(&mut v);
            pts.push(v);
        }
        let refs: Vec<&[f32]> = pts.iter().map(Vec::as_slice).collect();
        let c = fit_kmeans(&refs, 3, 1, 10);
        assert_eq!(c.centroids.len(), 3);
        let m = c.memberships(&[1.0, 0.0, 0.0]);
        assert!((m.iter().sum::<f64>() - 1.0).abs() < 1e-9);
        assert!(m.iter().copied().fold(0.0, f64::max) > 0.99, "{m:?}");
        // Same seed, same clusters.
        assert_eq!(fit_kmeans(&refs, 3, 1, 10), c);
    }
}
