//! AlpacaEval: 805 open-ended prompts (`prompts.jsonl`) and, per model, the judge's
//! preference against the GPT-4-1106 reference (`preferences_weighted_alpaca_eval_gpt4_turbo.csv`,
//! 1 = reference wins, 2 = model wins). Score = preference − 1: the judge's probability that
//! the model beats the reference. `NullModel` and `gpt4_gamed` are deliberate cheats and are
//! dropped; repeated (prompt, model) rows keep the first. Tasks come from the documented
//! keyword rule in `taxonomy::task_of_instruction`.

use std::collections::{BTreeMap, HashMap};
use std::path::Path;

use indicatif::ProgressBar;
use switchyard_core::{Outcome, RECORD_VERSION, RoutingRecord};

use super::{ImportError, ImportReport, read_to_string};
use crate::taxonomy;

const DROPPED_MODELS: &[&str] = &["NullModel", "gpt4_gamed"];
const PREFERENCES: &str = "preferences_weighted_alpaca_eval_gpt4_turbo.csv";

pub(super) fn import(
    path: &Path,
    progress: &ProgressBar,
    report: &mut ImportReport,
) -> Result<(), ImportError> {
    let prompts_path = path.join("prompts.jsonl");
    let prefs_path = path.join(PREFERENCES);
    if !prompts_path.is_file() || !prefs_path.is_file() {
        return Err(ImportError::Layout {
            path: path.to_path_buf(),
            expected: format!("the AlpacaEval folder (prompts.jsonl, {PREFERENCES})"),
        });
    }
    let mut prompts: BTreeMap<u64, (String, String)> = BTreeMap::new();
    for (i, line) in read_to_string(&prompts_path)?.lines().enumerate() {
        if line.trim().is_empty() {
            continue;
        }
        let row: serde_json::Value = serde_json::from_str(line)
            .map_err(|e| ImportError::format(&prompts_path, format!("line {}", i + 1), e))?;
        let (Some(id), Some(text)) = (row["id"].as_u64(), row["instruction"].as_str()) else {
            return Err(ImportError::format(
                &prompts_path,
                format!("line {}", i + 1),
                "needs `id` and `instruction`",
            ));
        };
        let dataset = row["dataset"].as_str().unwrap_or("unknown").to_owned();
        prompts.insert(id, (text.to_owned(), dataset));
    }
    let mut outcomes: HashMap<u64, BTreeMap<String, Outcome>> = HashMap::new();
    let mut reader = csv::Reader::from_path(&prefs_path)
        .map_err(|e| ImportError::format(&prefs_path, None, e))?;
    for (i, row) in reader.records().enumerate() {
        let row = row.map_err(|e| ImportError::format(&prefs_path, format!("row {}", i + 2), e))?;
        if i % 1000 == 0 {
            progress.tick();
        }
        let (Some(prompt_id), Some(model), Some(pref)) = (
            row.get(0).and_then(|s| s.parse::<u64>().ok()),
            row.get(1),
            row.get(3).and_then(|s| s.parse::<f64>().ok()),
        ) else {
            report.skip("preference row without prompt_id, model and a numeric preference");
            continue;
        };
        if DROPPED_MODELS.contains(&model) {
            report.skip("deliberate cheat model (NullModel, gpt4_gamed)");
            continue;
        }
        if !prompts.contains_key(&prompt_id) {
            report.skip("preference for an unknown prompt id");
            continue;
        }
        let per_prompt = outcomes.entry(prompt_id).or_default();
        if per_prompt.contains_key(model) {
            report.skip("repeated (prompt, model) row");
            continue;
        }
        let score = (pref - 1.0).clamp(0.0, 1.0);
        per_prompt.insert(
            model.to_owned(),
            Outcome {
                score: Some(score),
                ..Outcome::default()
            },
        );
    }
    progress.set_length(prompts.len() as u64);
    for (id, (text, dataset)) in prompts {
        progress.inc(1);
        report.rows_read += 1;
        if text.trim().is_empty() {
            report.skip("empty instruction");
            continue;
        }
        report.push(RoutingRecord {
            v: RECORD_VERSION,
            id: format!("alpacaeval/{id}"),
            source: format!("alpacaeval:{dataset}"),
            task: Some(taxonomy::task_of_instruction(&text)),
            prompt: Some(text),
            messages: None,
            outcomes: outcomes.remove(&id).unwrap_or_default(),
            task_predicted: false,
            logged: None,
        });
    }
    Ok(())
}
