//! RouterArena's `sub_10` split: `prompts_with_outcomes.jsonl`, one prompt per line in
//! RouterArena's answer template with `outcomes: {model: {score, input_tokens,
//! output_tokens, cost_usd}}` — real token counts and USD costs. Its 45-model price table
//! (`model_cost.json`) is in `eval/prices/routerarena.json` in the `--prices` format.

use std::path::Path;

use indicatif::ProgressBar;
use switchyard_core::{Outcome, RECORD_VERSION, RoutingRecord};

use super::{ImportError, ImportReport, read_to_string};
use crate::taxonomy;

pub(super) fn import(
    path: &Path,
    progress: &ProgressBar,
    report: &mut ImportReport,
) -> Result<(), ImportError> {
    let file = if path.is_dir() {
        path.join("prompts_with_outcomes.jsonl")
    } else {
        path.to_path_buf()
    };
    if !file.is_file() {
        return Err(ImportError::Layout {
            path: path.to_path_buf(),
            expected: "the RouterArena folder (prompts_with_outcomes.jsonl)".into(),
        });
    }
    let text = read_to_string(&file)?;
    progress.set_length(text.lines().count() as u64);
    for (i, line) in text.lines().enumerate() {
        progress.inc(1);
        if line.trim().is_empty() {
            continue;
        }
        report.rows_read += 1;
        let row: serde_json::Value = serde_json::from_str(line)
            .map_err(|e| ImportError::format(&file, format!("line {}", i + 1), e))?;
        let Some(prompt) = row["prompt"].as_str().filter(|p| !p.trim().is_empty()) else {
            report.skip("empty prompt");
            continue;
        };
        let mut outcomes = std::collections::BTreeMap::new();
        for (model, o) in row["outcomes"].as_object().into_iter().flatten() {
            // METEOR-based scores (WMT19, NarrativeQA) can stray a little outside 0..1.
            let Some(score) = o["score"].as_f64().filter(|s| s.is_finite()) else {
                report.skip("model result without a score");
                continue;
            };
            outcomes.insert(
                model.clone(),
                Outcome {
                    score: Some(score.clamp(0.0, 1.0)),
                    cost_usd: o["cost_usd"].as_f64(),
                    input_tokens: o["input_tokens"].as_u64(),
                    output_tokens: o["output_tokens"].as_u64(),
                    latency_ms: None,
                },
            );
        }
        let bench = row["benchmark"].as_str().unwrap_or("unknown");
        report.push(RoutingRecord {
            v: RECORD_VERSION,
            id: format!("routerarena/{}", row["id"].as_str().unwrap_or_default()),
            source: format!("routerarena:{bench}"),
            task: taxonomy::task_of_benchmark(bench),
            task_predicted: false,
            prompt: Some(prompt.to_owned()),
            messages: None,
            outcomes,
            logged: None,
        });
    }
    Ok(())
}
