//! MMLU-Pro with each model's 5-shot chain-of-thought result:
//! `questions_with_outcomes.jsonl`, one question per line with its options and
//! `outcomes: {model: {correct: 0|1, response_chars}}`. The prompt is the question with its
//! lettered options; output tokens are estimated from the response length (4 characters a
//! token); no costs (the router prices the models from its table).

use std::path::Path;

use indicatif::ProgressBar;
use switchyard_core::{Outcome, RECORD_VERSION, RoutingRecord, TaskClass};

use super::{ImportError, ImportReport};

/// Letters of MMLU-Pro's (up to ten) options.
const LETTERS: &str = "ABCDEFGHIJ";

pub(super) fn import(
    path: &Path,
    progress: &ProgressBar,
    report: &mut ImportReport,
) -> Result<(), ImportError> {
    let name = "questions_with_outcomes.jsonl";
    super::import_jsonl(path, name, "MMLU-Pro", progress, report, record_of)
}

fn record_of(row: &serde_json::Value, report: &mut ImportReport) -> Option<RoutingRecord> {
    let Some(question) = row["question"].as_str().filter(|q| !q.trim().is_empty()) else {
        report.skip("empty question");
        return None;
    };
    let options: Vec<&str> = row["options"]
        .as_array()
        .map(|o| o.iter().filter_map(|x| x.as_str()).collect())
        .unwrap_or_default();
    let mut prompt = question.to_owned();
    for (letter, option) in LETTERS.chars().zip(&options) {
        prompt.push_str(&format!("\n{letter}. {option}"));
    }
    let mut outcomes = std::collections::BTreeMap::new();
    for (model, o) in row["outcomes"].as_object().into_iter().flatten() {
        let Some(correct) = o["correct"].as_f64().filter(|c| (0.0..=1.0).contains(c)) else {
            report.skip("model result without a 0/1 correct");
            continue;
        };
        let output_tokens = o["response_chars"].as_u64().map(|c| c.div_ceil(4));
        outcomes.insert(
            model.clone(),
            Outcome {
                score: Some(correct),
                output_tokens,
                ..Outcome::default()
            },
        );
    }
    let src = row["src"].as_str().unwrap_or("unknown");
    // TheoremQA and SciBench questions are worked calculations; STEMEZ ones are mostly
    // recall and reasoning over a subject.
    let task = if src.starts_with("theoremQA") || src.starts_with("scibench") {
        TaskClass::Math
    } else {
        TaskClass::Knowledge
    };
    let id = row["question_id"].as_u64().unwrap_or_default();
    Some(RoutingRecord {
        v: RECORD_VERSION,
        id: format!("mmlupro/{id}"),
        source: format!("mmlupro:{}", row["category"].as_str().unwrap_or("unknown")),
        task: Some(task),
        task_predicted: false,
        prompt: Some(prompt),
        messages: None,
        outcomes,
        logged: None,
    })
}
