//! Per-model output length and observed cost, by task.
//!
//! Answers differ in length far more between tasks (a yes/no classification against a
//! story) than between prompts of one task, and the cost of an answer follows its length.
//! So each model gets a mean per predicted task class, shrunk toward the model's overall
//! mean by a pseudo-count, and an overall mean for tasks it was never seen on.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use switchyard_core::TaskClass;

/// A running mean.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize, Deserialize)]
pub struct Mean {
    pub n: usize,
    pub mean: f64,
}

impl Mean {
    pub fn add(&mut self, x: f64) {
        self.n += 1;
        self.mean += (x - self.mean) / self.n as f64;
    }
}

/// One quantity (output tokens, or observed USD per answer) for one model.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct ByTask {
    pub overall: Mean,
    pub by_task: BTreeMap<TaskClass, Mean>,
}

/// Pseudo-count pulling a task's mean toward the model's overall mean.
const TASK_SHRINKAGE: f64 = 10.0;

impl ByTask {
    pub fn add(&mut self, task: TaskClass, x: f64) {
        if x.is_finite() {
            self.overall.add(x);
            self.by_task.entry(task).or_default().add(x);
        }
    }

    /// The expected value for a prompt of `task`, or `None` when nothing was observed.
    pub fn predict(&self, task: TaskClass) -> Option<f64> {
        if self.overall.n == 0 {
            return None;
        }
        let overall = self.overall.mean;
        Some(match self.by_task.get(&task) {
            Some(t) => {
                let n = t.n as f64;
                (n * t.mean + TASK_SHRINKAGE * overall) / (n + TASK_SHRINKAGE)
            }
            None => overall,
        })
    }
}

/// What is known of a model's answers beyond their quality.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Usage {
    pub output_tokens: ByTask,
    /// Observed USD per answer, for sources that report cost but not tokens.
    pub cost_usd: ByTask,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn task_means_shrink_toward_the_model_mean() {
        let mut u = ByTask::default();
        assert_eq!(u.predict(TaskClass::Code), None);
        for _ in 0..90 {
            u.add(TaskClass::Writing, 500.0);
        }
        for _ in 0..10 {
            u.add(TaskClass::Transform, 50.0);
        }
        u.add(TaskClass::Transform, f64::NAN);
        assert_eq!(u.overall.n, 100);
        let overall = u.overall.mean;
        assert!((overall - 455.0).abs() < 1e-9);
        let writing = u.predict(TaskClass::Writing).unwrap();
        let transform = u.predict(TaskClass::Transform).unwrap();
        assert!(writing > 490.0 && writing < 500.0, "{writing}");
        // Ten samples, ten pseudo-counts: halfway to the overall mean.
        assert!(
            (transform - (50.0 + overall) / 2.0).abs() < 1e-9,
            "{transform}"
        );
        assert_eq!(u.predict(TaskClass::Code), Some(overall));
    }
}
