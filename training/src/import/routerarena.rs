//! RouterArena's `sub_10` split: `prompts_with_outcomes.jsonl`, one prompt per line in
//! RouterArena's answer template with `outcomes: {model: {score, input_tokens,
//! output_tokens, cost_usd}}` — real token counts and USD costs. Its 45-model price table
//! (`model_cost.json`) is in `eval/prices/routerarena.json` in the `--prices` format.

use std::path::Path;

use indicatif::ProgressBar;
use switchyard_core::{Outcome, RECORD_VERSION, RoutingRecord};

use super::{ImportError, ImportReport};
use crate::taxonomy;

pub(super) fn import(
    path: &Path,
    progress: &ProgressBar,
    report: &mut ImportReport,
) -> Result<(), ImportError> {
    let name = "prompts_with_outcomes.jsonl";
    super::import_jsonl(path, name, "RouterArena", progress, report, record_of)
}

fn record_of(row: &serde_json::Value, report: &mut ImportReport) -> Option<RoutingRecord> {
    let Some(prompt) = row["prompt"].as_str().filter(|p| !p.trim().is_empty()) else {
        report.skip("empty prompt");
        return None;
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
    Some(RoutingRecord {
        v: RECORD_VERSION,
        id: format!("routerarena/{}", row["id"].as_str().unwrap_or_default()),
        source: format!("routerarena:{bench}"),
        task: taxonomy::task_of_benchmark(bench),
        task_predicted: false,
        prompt: Some(prompt.to_owned()),
        messages: None,
        outcomes,
        logged: None,
    })
}
