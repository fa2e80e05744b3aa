//! LLMRouter: `data/dcrouter_preprocessed/{train,test}.json` with a Python-literal `scores`
//! dict (0/1 per model). Task names come from the task-labelled query pools in
//! `data/example_data/query_data/`, matched on the exact query text. The price table has no
//! token counts to multiply, so costs stay null (the router prices them from its own table).

use std::collections::HashMap;
use std::path::Path;

use indicatif::ProgressBar;
use switchyard_core::{RECORD_VERSION, RoutingRecord};

use super::{ImportError, ImportReport, read_json, read_to_string};
use crate::{pyliteral, taxonomy};

pub(super) fn import(
    path: &Path,
    progress: &ProgressBar,
    report: &mut ImportReport,
) -> Result<(), ImportError> {
    let data = path.join("data/dcrouter_preprocessed");
    let pools = path.join("data/example_data/query_data");
    if !data.is_dir() || !pools.is_dir() {
        return Err(ImportError::Layout {
            path: path.to_path_buf(),
            expected:
                "the LLMRouter folder (data/dcrouter_preprocessed, data/example_data/query_data)"
                    .into(),
        });
    }
    let mut task_of_query: HashMap<String, String> = HashMap::new();
    for pool in ["default_query_train.jsonl", "default_query_test.jsonl"] {
        let pool_path = pools.join(pool);
        for (i, line) in read_to_string(&pool_path)?.lines().enumerate() {
            if line.trim().is_empty() {
                continue;
            }
            let row: serde_json::Value = serde_json::from_str(line)
                .map_err(|e| ImportError::format(&pool_path, format!("line {}", i + 1), e))?;
            if let (Some(q), Some(t)) = (row["query"].as_str(), row["task_name"].as_str()) {
                task_of_query.insert(q.to_owned(), t.to_owned());
            }
        }
    }
    for split in ["train", "test"] {
        let file = data.join(format!("{split}.json"));
        let rows = read_json(&file)?;
        let rows = rows
            .as_array()
            .ok_or_else(|| ImportError::format(&file, None, "expected a JSON array"))?;
        progress.set_length(progress.length().unwrap_or(0) + rows.len() as u64);
        for (index, row) in rows.iter().enumerate() {
            progress.inc(1);
            report.rows_read += 1;
            let Some(question) = row["question"].as_str().filter(|q| !q.trim().is_empty()) else {
                report.skip("empty question");
                continue;
            };
            let scores = match &row["scores"] {
                serde_json::Value::String(s) => pyliteral::parse(s)
                    .map_err(|e| ImportError::format(&file, format!("record {index}"), e))?,
                other => other.clone(),
            };
            let Some(scores) = scores.as_object() else {
                report.skip("no scores");
                continue;
            };
            let outcomes = super::outcomes_from_scores(scores, report);
            let task_name = task_of_query.get(question).map(String::as_str);
            if task_name.is_none() {
                report.skip("query not in the task-labelled pools (task left null)");
            }
            report.push(RoutingRecord {
                v: RECORD_VERSION,
                id: format!("llmrouter/{split}/{index}"),
                source: format!("llmrouter:{}", task_name.unwrap_or("unknown")),
                task: task_name.and_then(taxonomy::task_of_benchmark),
                prompt: Some(question.to_owned()),
                messages: None,
                outcomes,
                task_predicted: false,
                logged: None,
            });
        }
    }
    Ok(())
}
