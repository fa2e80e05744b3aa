//! The pooled family: one ridge regression of the score over every model's outcomes,
//! with a part all models share and a deviation per model,
//!
//! ```text
//! score(m, x) ≈ (b + s·x) + (b_m + d_m·x)
//! ```
//!
//! The shared part learns how hard a prompt is from every outcome; each model's deviation
//! learns only where that model is better or worse than the rest, penalised harder, so a
//! model seen on few prompts predicts like the average model instead of the average of its
//! few outcomes. On logged traffic, where each prompt has one model's outcome, this is what
//! makes outcomes comparable across models: a model that was sent the hard prompts is not
//! mistaken for a weak one. Routing decisions compare models, so they depend only on the
//! deviations; the shared part is what lets those be estimated with little data.
//!
//! Fitted by block coordinate descent (backfitting): the shared part on what the deviations
//! leave, then each model's deviation on what the shared part leaves, each a ridge solve
//! with its Gram matrix factored once (Cholesky), until the coefficients stop moving. The
//! joint problem is strictly convex, so this converges to its unique minimum. Stored as one
//! linear model per model (`s + d_m`), so prediction is the same dot product as the other
//! families.

use std::collections::BTreeMap;

/// Penalties of the pooled family (on standardised features).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Penalties {
    /// L2 on the shared weights `s` (its intercept is free).
    pub shared: f64,
    /// L2 on each model's deviation weights `d_m`.
    pub deviation: f64,
    /// L2 on each model's offset `b_m`: a pseudo-count of "like the average model".
    pub offset: f64,
}

/// One outcome: row index into the features, model index, score.
pub type Observation = (usize, usize, f64);

/// The fitted coefficients on standardised features: per model, (intercept, weights) of
/// the whole prediction (shared plus deviation).
#[derive(Debug)]
pub struct Fitted {
    pub per_model: Vec<(f64, Vec<f64>)>,
    pub iterations: usize,
}

const MAX_ITERATIONS: usize = 200;
const TOLERANCE: f64 = 1e-7;

/// Fits the pooled model. `x` holds standardised feature rows; `models` is the number of
/// distinct model indices in `observations`.
pub fn fit(
    x: &[Vec<f64>],
    observations: &[Observation],
    models: usize,
    penalties: Penalties,
) -> Result<Fitted, String> {
    let dim = x.first().map_or(0, Vec::len) + 1;
    let row = |i: usize| std::iter::once(1.0).chain(x[i].iter().copied());
    let mut shared_gram = Gram::new(dim);
    let mut model_grams: Vec<Gram> = (0..models).map(|_| Gram::new(dim)).collect();
    for &(i, m, _) in observations {
        let z: Vec<f64> = row(i).collect();
        shared_gram.add(&z);
        model_grams[m].add(&z);
    }
    let shared = shared_gram.factor(0.0, penalties.shared)?;
    let per_model: Vec<Cholesky> = model_grams
        .into_iter()
        .map(|g| g.factor(penalties.offset, penalties.deviation))
        .collect::<Result<_, _>>()?;

    let mut theta_s = vec![0.0; dim];
    let mut theta_m = vec![vec![0.0; dim]; models];
    let predict = |theta: &[f64], i: usize| -> f64 { row(i).zip(theta).map(|(z, t)| z * t).sum() };
    let mut iterations = 0;
    while iterations < MAX_ITERATIONS {
        iterations += 1;
        let mut rhs = vec![0.0; dim];
        for &(i, m, y) in observations {
            let r = y - predict(&theta_m[m], i);
            for (acc, z) in rhs.iter_mut().zip(row(i)) {
                *acc += z * r;
            }
        }
        let new_s = shared.solve(rhs);
        let mut rhs_m = vec![vec![0.0; dim]; models];
        for &(i, m, y) in observations {
            let r = y - predict(&new_s, i);
            for (acc, z) in rhs_m[m].iter_mut().zip(row(i)) {
                *acc += z * r;
            }
        }
        let new_m: Vec<Vec<f64>> = per_model
            .iter()
            .zip(rhs_m)
            .map(|(c, b)| c.solve(b))
            .collect();
        let moved = max_change(&theta_s, &new_s).max(
            theta_m
                .iter()
                .zip(&new_m)
                .map(|(a, b)| max_change(a, b))
                .fold(0.0, f64::max),
        );
        theta_s = new_s;
        theta_m = new_m;
        if moved < TOLERANCE {
            break;
        }
    }
    let per_model = theta_m
        .iter()
        .map(|d| {
            let total: Vec<f64> = theta_s.iter().zip(d).map(|(s, d)| s + d).collect();
            (total[0], total[1..].to_vec())
        })
        .collect();
    Ok(Fitted {
        per_model,
        iterations,
    })
}

/// Groups `(row, model name, score)` outcomes by model: the observations with model
/// indices, and the names in index order.
pub fn index_models<'a>(
    outcomes: impl Iterator<Item = (usize, &'a str, f64)>,
) -> (Vec<Observation>, Vec<String>) {
    let mut names: BTreeMap<&str, usize> = BTreeMap::new();
    let mut observations = Vec::new();
    for (i, m, y) in outcomes {
        let next = names.len();
        let index = *names.entry(m).or_insert(next);
        observations.push((i, index, y));
    }
    let mut ordered = vec![String::new(); names.len()];
    for (name, i) in names {
        ordered[i] = name.to_owned();
    }
    (observations, ordered)
}

fn max_change(a: &[f64], b: &[f64]) -> f64 {
    a.iter()
        .zip(b)
        .map(|(a, b)| (a - b).abs())
        .fold(0.0, f64::max)
}

/// A symmetric `dim × dim` sum of outer products, lower triangle kept.
struct Gram {
    dim: usize,
    a: Vec<f64>,
}

impl Gram {
    fn new(dim: usize) -> Self {
        Self {
            dim,
            a: vec![0.0; dim * dim],
        }
    }

    fn add(&mut self, z: &[f64]) {
        for (r, &zr) in z.iter().enumerate() {
            let line = &mut self.a[r * self.dim..r * self.dim + r + 1];
            for (v, &zc) in line.iter_mut().zip(z) {
                *v += zr * zc;
            }
        }
    }

    /// Adds `first` to the intercept's diagonal and `rest` to the others', then factors.
    fn factor(mut self, first: f64, rest: f64) -> Result<Cholesky, String> {
        for d in 0..self.dim {
            self.a[d * self.dim + d] += if d == 0 { first } else { rest };
        }
        // A tiny ridge keeps an unpenalised intercept with no data factorable.
        if self.a[0] <= 0.0 {
            self.a[0] = 1e-9;
        }
        Cholesky::factor(self.dim, self.a)
    }
}

/// The lower-triangular `L` with `L·Lᵀ = A`.
struct Cholesky {
    dim: usize,
    l: Vec<f64>,
}

impl Cholesky {
    fn factor(dim: usize, mut a: Vec<f64>) -> Result<Self, String> {
        for j in 0..dim {
            let mut d = a[j * dim + j];
            for k in 0..j {
                d -= a[j * dim + k].powi(2);
            }
            if d <= 0.0 || !d.is_finite() {
                return Err(format!(
                    "the pooled ridge system is not positive definite at column {j}; raise its penalties"
                ));
            }
            let d = d.sqrt();
            a[j * dim + j] = d;
            for i in j + 1..dim {
                let mut v = a[i * dim + j];
                for k in 0..j {
                    v -= a[i * dim + k] * a[j * dim + k];
                }
                a[i * dim + j] = v / d;
            }
        }
        Ok(Self { dim, l: a })
    }

    /// `A⁻¹ b`: forward substitution with `L`, then back substitution with `Lᵀ`.
    fn solve(&self, mut b: Vec<f64>) -> Vec<f64> {
        let n = self.dim;
        for i in 0..n {
            let row = &self.l[i * n..i * n + i];
            let v = b[i] - row.iter().zip(&b[..i]).map(|(l, x)| l * x).sum::<f64>();
            b[i] = v / self.l[i * n + i];
        }
        for i in (0..n).rev() {
            let v = b[i]
                - (i + 1..n)
                    .zip(&b[i + 1..])
                    .map(|(k, x)| self.l[k * n + i] * x)
                    .sum::<f64>();
            b[i] = v / self.l[i * n + i];
        }
        b
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cholesky_solves_a_small_system() {
        let mut g = Gram::new(2);
        g.add(&[1.0, 2.0]);
        g.add(&[1.0, -1.0]);
        // A = [[2, 1], [1, 5]] + diag(0, 1) = [[2, 1], [1, 6]].
        let c = g.factor(0.0, 1.0).unwrap();
        let x = c.solve(vec![3.0, 7.0]);
        assert!((2.0 * x[0] + x[1] - 3.0).abs() < 1e-12);
        assert!((x[0] + 6.0 * x[1] - 7.0).abs() < 1e-12);
    }

    #[test]
    fn backfitting_reaches_the_joint_ridge_solution_without_penalties() {
        // Two models, one feature; every prompt answered by both: with (almost) no penalty
        // each model's line is its own least-squares fit.
        let x: Vec<Vec<f64>> = (0..50).map(|i| vec![f64::from(i) / 25.0 - 1.0]).collect();
        let mut obs = Vec::new();
        for (i, xi) in x.iter().enumerate() {
            obs.push((i, 0, 0.5 + 0.3 * xi[0]));
            obs.push((i, 1, 0.2 - 0.1 * xi[0]));
        }
        let penalties = Penalties {
            shared: 1e-9,
            deviation: 1e-9,
            offset: 1e-9,
        };
        let f = fit(&x, &obs, 2, penalties).unwrap();
        let (b0, w0) = &f.per_model[0];
        let (b1, w1) = &f.per_model[1];
        assert!(
            (b0 - 0.5).abs() < 1e-4 && (w0[0] - 0.3).abs() < 1e-4,
            "{b0} {w0:?}"
        );
        assert!(
            (b1 - 0.2).abs() < 1e-4 && (w1[0] + 0.1).abs() < 1e-4,
            "{b1} {w1:?}"
        );
    }

    #[test]
    fn a_model_sent_the_hard_prompts_is_not_mistaken_for_a_weak_one() {
        // Difficulty x: every model scores 1 - x on average; "a" is as good as "b" but got
        // only the hard prompts (x > 0.5). Its own mean is low; the pooled fit knows why.
        let x: Vec<Vec<f64>> = (0..200).map(|i| vec![f64::from(i) / 200.0]).collect();
        let mut obs = Vec::new();
        for (i, xi) in x.iter().enumerate() {
            obs.push((i, 1, 1.0 - xi[0]));
            if xi[0] > 0.5 {
                obs.push((i, 0, 1.0 - xi[0]));
            }
        }
        let penalties = Penalties {
            shared: 1e-3,
            deviation: 10.0,
            offset: 10.0,
        };
        let f = fit(&x, &obs, 2, penalties).unwrap();
        let at = |m: usize, v: f64| f.per_model[m].0 + f.per_model[m].1[0] * v;
        for v in [0.1, 0.5, 0.9] {
            assert!(
                (at(0, v) - at(1, v)).abs() < 0.02,
                "{} vs {}",
                at(0, v),
                at(1, v)
            );
        }
    }
}
