//! The RouterDC repository's open 7B set: one JSON file per benchmark, each a list of
//! `{question, scores: {model: 0..1}}`. No costs.

use std::path::Path;

use indicatif::ProgressBar;
use switchyard_core::{RECORD_VERSION, RoutingRecord};

use super::{ImportError, ImportReport, file_stem, files_with_ext, read_json};
use crate::taxonomy;

pub(super) fn import(
    path: &Path,
    progress: &ProgressBar,
    report: &mut ImportReport,
) -> Result<(), ImportError> {
    let files = files_with_ext(path, "json")?;
    progress.set_length(files.len() as u64);
    for file in files {
        let bench = file_stem(&file);
        progress.set_message(bench.clone());
        let rows = read_json(&file)?;
        let rows = rows
            .as_array()
            .ok_or_else(|| ImportError::format(&file, None, "expected a JSON array"))?;
        let task = taxonomy::task_of_benchmark(&bench);
        for (index, row) in rows.iter().enumerate() {
            report.rows_read += 1;
            let Some(question) = row["question"].as_str().filter(|q| !q.trim().is_empty()) else {
                report.skip("empty question");
                continue;
            };
            let Some(scores) = row["scores"].as_object() else {
                report.skip("no scores");
                continue;
            };
            let outcomes = super::outcomes_from_scores(scores, report);
            report.push(RoutingRecord {
                v: RECORD_VERSION,
                id: format!("open7b/{bench}/{index}"),
                source: format!("open7b:{bench}"),
                task,
                prompt: Some(question.to_owned()),
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
