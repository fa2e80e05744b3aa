//! RouteProfile: `route_data/routing_test_data.json`, 12 tasks × 50 queries, each with a
//! Python-literal `model_performance` holding every model's tokens and score; prices in
//! `profile_data/candidate_models.json` (USD per 1M input and output tokens).

use std::collections::BTreeMap;
use std::path::Path;

use indicatif::ProgressBar;
use switchyard_core::{Outcome, RECORD_VERSION, RoutingRecord};

use super::{ImportError, ImportReport, read_json, score_of};
use crate::{pyliteral, taxonomy};

pub(super) fn import(
    path: &Path,
    progress: &ProgressBar,
    report: &mut ImportReport,
) -> Result<(), ImportError> {
    let root = if path.is_file() {
        path.parent().and_then(Path::parent).unwrap_or(path)
    } else {
        path
    };
    let data_path = if path.is_file() {
        path.to_path_buf()
    } else {
        root.join("route_data/routing_test_data.json")
    };
    let prices_path = root.join("profile_data/candidate_models.json");
    if !data_path.is_file() || !prices_path.is_file() {
        return Err(ImportError::Layout {
            path: path.to_path_buf(),
            expected: "the RouteProfile folder (route_data/routing_test_data.json, profile_data/candidate_models.json)".into(),
        });
    }
    let prices = read_json(&prices_path)?;
    let rows = read_json(&data_path)?;
    let rows = rows
        .as_array()
        .ok_or_else(|| ImportError::format(&data_path, None, "expected a JSON array"))?;
    progress.set_length(rows.len() as u64);
    for (index, row) in rows.iter().enumerate() {
        progress.inc(1);
        report.rows_read += 1;
        let at = || format!("record {index}");
        let task_name = row["task_name"].as_str().unwrap_or("unknown");
        let Some(query) = row["query"].as_str().filter(|q| !q.trim().is_empty()) else {
            report.skip("empty query");
            continue;
        };
        let performance = match &row["model_performance"] {
            serde_json::Value::String(s) => {
                pyliteral::parse(s).map_err(|e| ImportError::format(&data_path, at(), e))?
            }
            other => other.clone(),
        };
        let Some(performance) = performance.as_object() else {
            report.skip("no model_performance");
            continue;
        };
        let mut outcomes = BTreeMap::new();
        for (model, perf) in performance {
            let Ok(score) = score_of(&perf["task_performance"]) else {
                report.skip("model without a 0..1 task_performance");
                continue;
            };
            let input_tokens = perf["prompt_tokens"].as_u64();
            let output_tokens = perf["completion_tokens"].as_u64();
            let price = |key: &str| prices[model.as_str()][key].as_f64();
            let cost_usd = match (
                input_tokens,
                output_tokens,
                price("input_price"),
                price("output_price"),
            ) {
                (Some(i), Some(o), Some(pi), Some(po)) => {
                    Some((i as f64 * pi + o as f64 * po) / 1e6)
                }
                _ => None,
            };
            outcomes.insert(
                model.clone(),
                Outcome {
                    score: Some(score),
                    cost_usd,
                    input_tokens,
                    output_tokens,
                    latency_ms: None,
                },
            );
        }
        report.push(RoutingRecord {
            v: RECORD_VERSION,
            id: format!("routeprofile/{task_name}/{index}"),
            source: format!("routeprofile:{task_name}"),
            task: taxonomy::task_of_benchmark(task_name),
            prompt: Some(query.to_owned()),
            messages: None,
            outcomes,
            task_predicted: false,
            logged: None,
        });
    }
    Ok(())
}
