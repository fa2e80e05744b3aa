//! RouterBench CSVs (`<bench>_{train,test}.csv`): one row per prompt, a 0/1 score column
//! per model and `<model>|total_cost` in USD. The prompt cell is a Python list of strings.

use std::collections::{BTreeMap, HashSet};
use std::path::Path;

use indicatif::ProgressBar;
use switchyard_core::{Outcome, RECORD_VERSION, RoutingRecord};

use super::{ImportError, ImportReport, files_with_ext, score_of};
use crate::{pyliteral, taxonomy};

const NOT_MODELS: &[&str] = &[
    "",
    "sample_id",
    "prompt",
    "eval_name",
    "oracle_model_to_route_to",
];

pub(super) fn import(
    path: &Path,
    progress: &ProgressBar,
    report: &mut ImportReport,
) -> Result<(), ImportError> {
    let files = files_with_ext(path, "csv")?;
    progress.set_length(files.len() as u64);
    let mut seen = HashSet::new();
    for file in files {
        progress.set_message(super::file_stem(&file));
        let mut reader =
            csv::Reader::from_path(&file).map_err(|e| ImportError::format(&file, None, e))?;
        let headers = reader
            .headers()
            .map_err(|e| ImportError::format(&file, None, e))?
            .clone();
        let col = |name: &str| headers.iter().position(|h| h == name);
        let (Some(prompt_col), Some(eval_col), Some(id_col)) =
            (col("prompt"), col("eval_name"), col("sample_id"))
        else {
            return Err(ImportError::Layout {
                path: file.clone(),
                expected: "RouterBench columns sample_id, prompt, eval_name".into(),
            });
        };
        let models: Vec<(usize, String, Option<usize>)> = headers
            .iter()
            .enumerate()
            .filter(|(_, h)| !h.contains('|') && !NOT_MODELS.contains(h))
            .map(|(i, h)| (i, h.to_owned(), col(&format!("{h}|total_cost"))))
            .collect();
        for (row_index, row) in reader.records().enumerate() {
            let row =
                row.map_err(|e| ImportError::format(&file, format!("row {}", row_index + 2), e))?;
            report.rows_read += 1;
            let cell = |i: usize| row.get(i).unwrap_or("");
            let prompt = match pyliteral::parse(cell(prompt_col)) {
                Ok(serde_json::Value::Array(parts)) => parts
                    .iter()
                    .filter_map(|p| p.as_str())
                    .collect::<Vec<_>>()
                    .join("\n\n"),
                Ok(serde_json::Value::String(s)) => s,
                _ => cell(prompt_col).to_owned(),
            };
            if prompt.trim().is_empty() {
                report.skip("empty prompt");
                continue;
            }
            let eval_name = cell(eval_col);
            let id = format!("routerbench/{}/{}", super::file_stem(&file), cell(id_col));
            if !seen.insert(id.clone()) {
                report.skip("sample_id repeated within one file");
                continue;
            }
            let mut outcomes = BTreeMap::new();
            for (i, model, cost_col) in &models {
                let Ok(score) = score_of(&serde_json::Value::String(cell(*i).to_owned())) else {
                    report.skip("model cell without a 0..1 score");
                    continue;
                };
                let cost_usd = cost_col
                    .and_then(|c| cell(c).parse::<f64>().ok())
                    .filter(|c| *c >= 0.0);
                outcomes.insert(
                    model.clone(),
                    Outcome {
                        score: Some(score),
                        cost_usd,
                        ..Outcome::default()
                    },
                );
            }
            report.push(RoutingRecord {
                v: RECORD_VERSION,
                id,
                source: format!("routerbench:{eval_name}"),
                task: taxonomy::task_of_benchmark(eval_name),
                prompt: Some(prompt),
                messages: None,
                outcomes,
                task_predicted: false,
                logged: None,
            });
        }
        progress.inc(1);
    }
    Ok(())
}
