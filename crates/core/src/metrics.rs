//! Pure evaluation metrics shared by training (model selection) and eval (reports).

/// A confusion matrix over `n` classes: `counts[truth][predicted]`.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Confusion {
    pub counts: Vec<Vec<usize>>,
}

/// Precision, recall and F1 of one class.
#[derive(Debug, Clone, Copy, PartialEq, serde::Serialize)]
pub struct ClassScores {
    pub precision: f64,
    pub recall: f64,
    pub f1: f64,
    pub support: usize,
}

impl Confusion {
    pub fn new(classes: usize, pairs: impl IntoIterator<Item = (usize, usize)>) -> Self {
        let mut counts = vec![vec![0; classes]; classes];
        for (truth, predicted) in pairs {
            if truth < classes && predicted < classes {
                counts[truth][predicted] += 1;
            }
        }
        Self { counts }
    }

    pub fn total(&self) -> usize {
        self.counts.iter().flatten().sum()
    }

    pub fn accuracy(&self) -> f64 {
        let correct: usize = (0..self.counts.len()).map(|i| self.counts[i][i]).sum();
        ratio(correct, self.total())
    }

    pub fn class_scores(&self, class: usize) -> ClassScores {
        let tp = self.counts[class][class];
        let predicted: usize = self.counts.iter().map(|row| row[class]).sum();
        let support: usize = self.counts[class].iter().sum();
        let precision = ratio(tp, predicted);
        let recall = ratio(tp, support);
        let f1 = if precision + recall > 0.0 {
            2.0 * precision * recall / (precision + recall)
        } else {
            0.0
        };
        ClassScores {
            precision,
            recall,
            f1,
            support,
        }
    }

    /// Mean F1 over the classes that occur in the truth (classes with no support are left
    /// out, so a test set without some class is not penalised for it).
    pub fn macro_f1(&self) -> f64 {
        let f1s: Vec<f64> = (0..self.counts.len())
            .map(|c| self.class_scores(c))
            .filter(|s| s.support > 0)
            .map(|s| s.f1)
            .collect();
        if f1s.is_empty() {
            0.0
        } else {
            f1s.iter().sum::<f64>() / f1s.len() as f64
        }
    }
}

fn ratio(a: usize, b: usize) -> f64 {
    if b == 0 { 0.0 } else { a as f64 / b as f64 }
}

/// Expected calibration error of the top-class confidence over `bins` equal-width bins.
/// `items` are (confidence of the predicted class, whether the prediction was right).
pub fn expected_calibration_error(items: &[(f64, bool)], bins: usize) -> f64 {
    if items.is_empty() || bins == 0 {
        return 0.0;
    }
    let mut sums = vec![(0usize, 0.0f64, 0usize); bins];
    for &(confidence, correct) in items {
        let b = ((confidence * bins as f64) as usize).min(bins - 1);
        sums[b].0 += 1;
        sums[b].1 += confidence;
        sums[b].2 += usize::from(correct);
    }
    sums.iter()
        .filter(|(n, _, _)| *n > 0)
        .map(|&(n, conf, correct)| {
            let gap = (conf / n as f64 - correct as f64 / n as f64).abs();
            gap * n as f64 / items.len() as f64
        })
        .sum()
}

/// Average ranks (ties share the mean rank), 1-based.
fn ranks(values: &[f64]) -> Vec<f64> {
    let mut order: Vec<usize> = (0..values.len()).collect();
    order.sort_by(|&a, &b| values[a].total_cmp(&values[b]));
    let mut ranks = vec![0.0; values.len()];
    let mut i = 0;
    while i < order.len() {
        let mut j = i;
        while j + 1 < order.len() && values[order[j + 1]] == values[order[i]] {
            j += 1;
        }
        let rank = (i + j) as f64 / 2.0 + 1.0;
        for &k in &order[i..=j] {
            ranks[k] = rank;
        }
        i = j + 1;
    }
    ranks
}

fn pearson(x: &[f64], y: &[f64]) -> f64 {
    let n = x.len() as f64;
    if x.len() < 2 {
        return 0.0;
    }
    let (mx, my) = (x.iter().sum::<f64>() / n, y.iter().sum::<f64>() / n);
    let cov: f64 = x.iter().zip(y).map(|(a, b)| (a - mx) * (b - my)).sum();
    let vx: f64 = x.iter().map(|a| (a - mx).powi(2)).sum();
    let vy: f64 = y.iter().map(|b| (b - my).powi(2)).sum();
    if vx == 0.0 || vy == 0.0 {
        0.0
    } else {
        cov / (vx * vy).sqrt()
    }
}

/// Spearman rank correlation (Pearson on tie-averaged ranks).
pub fn spearman(x: &[f64], y: &[f64]) -> f64 {
    pearson(&ranks(x), &ranks(y))
}

/// Mean absolute error.
pub fn mean_absolute_error(x: &[f64], y: &[f64]) -> f64 {
    if x.is_empty() {
        return 0.0;
    }
    x.iter().zip(y).map(|(a, b)| (a - b).abs()).sum::<f64>() / x.len() as f64
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn confusion_scores() {
        // truth 0: predicted 0,0,1 ; truth 1: predicted 1 ; truth 2: predicted 0
        let c = Confusion::new(3, [(0, 0), (0, 0), (0, 1), (1, 1), (2, 0)]);
        assert_eq!(c.total(), 5);
        assert!((c.accuracy() - 0.6).abs() < 1e-12);
        let s0 = c.class_scores(0);
        assert!((s0.precision - 2.0 / 3.0).abs() < 1e-12);
        assert!((s0.recall - 2.0 / 3.0).abs() < 1e-12);
        let s1 = c.class_scores(1);
        assert!((s1.precision - 0.5).abs() < 1e-12 && (s1.recall - 1.0).abs() < 1e-12);
        assert_eq!(c.class_scores(2).f1, 0.0);
        let expected = (2.0 / 3.0 + 2.0 / 3.0 + 0.0) / 3.0;
        assert!((c.macro_f1() - expected).abs() < 1e-12);
    }

    #[test]
    fn spearman_handles_ties_and_order() {
        assert!((spearman(&[1.0, 2.0, 3.0], &[10.0, 20.0, 30.0]) - 1.0).abs() < 1e-12);
        assert!((spearman(&[1.0, 2.0, 3.0], &[3.0, 2.0, 1.0]) + 1.0).abs() < 1e-12);
        assert_eq!(ranks(&[5.0, 1.0, 5.0]), vec![2.5, 1.0, 2.5]);
        assert_eq!(spearman(&[1.0, 1.0], &[1.0, 2.0]), 0.0);
    }

    #[test]
    fn calibration_error() {
        // Perfectly calibrated: 80% confident, right 4 of 5 times.
        let items = [
            (0.8, true),
            (0.8, true),
            (0.8, true),
            (0.8, true),
            (0.8, false),
        ];
        assert!(expected_calibration_error(&items, 10) < 1e-12);
        // Always 100% confident, right half the time.
        let items = [(1.0, true), (1.0, false)];
        assert!((expected_calibration_error(&items, 10) - 0.5).abs() < 1e-12);
        assert!((mean_absolute_error(&[1.0, 2.0], &[2.0, 2.0]) - 0.5).abs() < 1e-12);
    }
}
