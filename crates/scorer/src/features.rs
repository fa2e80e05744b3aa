//! The scorer's input: one fixed-layout feature vector per prompt.

/// Layout, in order: the embedding (`dim` values), the task probabilities (8, in
/// [`switchyard_core::TaskClass::ALL`] order), the predicted difficulty, and
/// `ln(1 + prompt tokens) / 8` (so a 3,000-token prompt is ≈ 1).
pub fn features(
    embedding: &[f32],
    task_probs: &[f32],
    difficulty: f32,
    prompt_tokens: usize,
) -> Vec<f64> {
    embedding
        .iter()
        .chain(task_probs)
        .map(|&x| f64::from(x))
        .chain([f64::from(difficulty), (prompt_tokens as f64).ln_1p() / 8.0])
        .collect()
}

/// Features past the embedding: task probabilities, difficulty, length.
pub const EXTRA_FEATURES: usize = switchyard_core::TaskClass::ALL.len() + 2;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn features_have_a_fixed_layout() {
        let f = features(&[0.5, -0.5], &[0.25; 8], 0.4, 100);
        assert_eq!(f.len(), 2 + EXTRA_FEATURES);
        assert_eq!(&f[..3], &[0.5, -0.5, 0.25]);
        assert!((f[10] - f64::from(0.4f32)).abs() < 1e-12);
        assert!((f[11] - 101f64.ln() / 8.0).abs() < 1e-12);
    }
}
