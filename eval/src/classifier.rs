//! Classifier evaluation: task accuracy, macro-F1, per-class precision/recall, confusion
//! matrix, expected calibration error; difficulty Spearman and MAE.

use std::io::Write;

use switchyard_core::TaskClass;
use switchyard_core::metrics::{
    Confusion, expected_calibration_error, mean_absolute_error, spearman,
};
use switchyard_embed::heads::Classification;

/// Per-class scores as reported.
#[derive(Debug, Clone, serde::Serialize)]
pub struct ClassRow {
    pub class: TaskClass,
    pub precision: f64,
    pub recall: f64,
    pub f1: f64,
    pub support: usize,
}

/// The full report.
#[derive(Debug, Clone, serde::Serialize)]
pub struct ClassifierReport {
    pub task_examples: usize,
    pub accuracy: f64,
    pub macro_f1: f64,
    pub expected_calibration_error: f64,
    pub per_class: Vec<ClassRow>,
    /// `confusion[truth][predicted]`, classes in `labels` order.
    pub confusion: Vec<Vec<usize>>,
    pub labels: Vec<TaskClass>,
    pub difficulty_examples: usize,
    pub difficulty_spearman: Option<f64>,
    pub difficulty_mae: Option<f64>,
}

/// One evaluated prompt: its labels and what the heads said.
#[derive(Debug, Clone)]
pub struct Labelled<'a> {
    pub task: Option<TaskClass>,
    pub difficulty: Option<f64>,
    pub predicted: &'a Classification,
}

pub fn evaluate(items: &[Labelled<'_>]) -> ClassifierReport {
    let labels = TaskClass::ALL.to_vec();
    let with_task: Vec<(TaskClass, &Classification)> = items
        .iter()
        .filter_map(|i| i.task.map(|t| (t, i.predicted)))
        .collect();
    let confusion = Confusion::new(
        labels.len(),
        with_task.iter().map(|(t, p)| (t.index(), p.task.index())),
    );
    let calibration: Vec<(f64, bool)> = with_task
        .iter()
        .map(|(t, p)| {
            let confidence = p
                .task_probs
                .iter()
                .map(|(_, q)| f64::from(*q))
                .fold(0.0, f64::max);
            (confidence, p.task == *t)
        })
        .collect();
    let per_class = labels
        .iter()
        .map(|&class| {
            let s = confusion.class_scores(class.index());
            ClassRow {
                class,
                precision: s.precision,
                recall: s.recall,
                f1: s.f1,
                support: s.support,
            }
        })
        .collect();
    let (truth, predicted): (Vec<f64>, Vec<f64>) = items
        .iter()
        .filter_map(|i| i.difficulty.map(|d| (d, f64::from(i.predicted.difficulty))))
        .unzip();
    let has_difficulty = truth.len() >= 2;
    ClassifierReport {
        task_examples: with_task.len(),
        accuracy: confusion.accuracy(),
        macro_f1: confusion.macro_f1(),
        expected_calibration_error: expected_calibration_error(&calibration, 10),
        per_class,
        confusion: confusion.counts,
        labels,
        difficulty_examples: truth.len(),
        difficulty_spearman: has_difficulty.then(|| spearman(&predicted, &truth)),
        difficulty_mae: has_difficulty.then(|| mean_absolute_error(&predicted, &truth)),
    }
}

/// Writes the report as a readable table.
pub fn render(report: &ClassifierReport, out: &mut impl Write) -> std::io::Result<()> {
    writeln!(out, "task: {} prompts", report.task_examples)?;
    writeln!(
        out,
        "  accuracy {:.4}   macro-F1 {:.4}   ECE {:.4}",
        report.accuracy, report.macro_f1, report.expected_calibration_error
    )?;
    writeln!(
        out,
        "  {:<12} {:>9} {:>9} {:>9} {:>8}",
        "class", "precision", "recall", "F1", "support"
    )?;
    for row in &report.per_class {
        writeln!(
            out,
            "  {:<12} {:>9.4} {:>9.4} {:>9.4} {:>8}",
            row.class.as_str(),
            row.precision,
            row.recall,
            row.f1,
            row.support
        )?;
    }
    writeln!(out, "  confusion (rows: truth, columns: predicted)")?;
    let short: Vec<String> = report
        .labels
        .iter()
        .map(|l| l.as_str().chars().take(6).collect())
        .collect();
    writeln!(
        out,
        "  {:<12} {}",
        "",
        short.iter().map(|s| format!("{s:>7}")).collect::<String>()
    )?;
    for (label, row) in report.labels.iter().zip(&report.confusion) {
        writeln!(
            out,
            "  {:<12} {}",
            label.as_str(),
            row.iter().map(|n| format!("{n:>7}")).collect::<String>()
        )?;
    }
    match (report.difficulty_spearman, report.difficulty_mae) {
        (Some(rho), Some(mae)) => writeln!(
            out,
            "difficulty: {} prompts   Spearman {:.4}   MAE {:.4}",
            report.difficulty_examples, rho, mae
        )?,
        _ => writeln!(out, "difficulty: no prompts with outcomes")?,
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use switchyard_core::DifficultyBucket;

    fn predicted(task: TaskClass, confidence: f32, difficulty: f32) -> Classification {
        Classification {
            task,
            task_probs: TaskClass::ALL
                .iter()
                .map(|&c| {
                    (
                        c,
                        if c == task {
                            confidence
                        } else {
                            (1.0 - confidence) / 7.0
                        },
                    )
                })
                .collect(),
            difficulty,
            difficulty_bucket: DifficultyBucket::Medium,
        }
    }

    #[test]
    fn report_counts_what_it_sees() {
        let p = [
            predicted(TaskClass::Code, 0.9, 0.1),
            predicted(TaskClass::Math, 0.6, 0.5),
            predicted(TaskClass::Code, 0.7, 0.9),
        ];
        let items = [
            Labelled {
                task: Some(TaskClass::Code),
                difficulty: Some(0.0),
                predicted: &p[0],
            },
            Labelled {
                task: Some(TaskClass::Math),
                difficulty: Some(0.4),
                predicted: &p[1],
            },
            Labelled {
                task: Some(TaskClass::Math),
                difficulty: Some(1.0),
                predicted: &p[2],
            },
        ];
        let r = evaluate(&items);
        assert_eq!(r.task_examples, 3);
        assert!((r.accuracy - 2.0 / 3.0).abs() < 1e-9);
        assert_eq!(
            r.confusion[TaskClass::Math.index()][TaskClass::Code.index()],
            1
        );
        assert_eq!(r.difficulty_spearman, Some(1.0));
        let mut table = Vec::new();
        render(&r, &mut table).unwrap();
        let table = String::from_utf8(table).unwrap();
        assert!(
            table.contains("macro-F1") && table.contains("Spearman 1.0000"),
            "{table}"
        );
    }
}
