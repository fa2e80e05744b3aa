//! The routing record: one JSONL format for labelled prompts, benchmark outcomes and logged
//! traffic, so training on logged traffic is the same code path as training on benchmarks.
//! The format is documented in `datasets/README.md`; this module is its single definition.

use std::collections::BTreeMap;
use std::io::BufRead;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::TaskClass;

/// The record format version this build reads and writes.
pub const RECORD_VERSION: u32 = 1;

/// One prompt, optionally labelled with its task, with what each model did on it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RoutingRecord {
    /// Format version; absent means 1.
    #[serde(default = "default_version")]
    pub v: u32,
    /// Unique within its source, e.g. `routerbench/mbpp/mbpp.dev.92`.
    pub id: String,
    /// Where it came from, e.g. `routerbench:mbpp`, `traffic`.
    pub source: String,
    /// The task class when known.
    #[serde(default)]
    pub task: Option<TaskClass>,
    /// `task` is the router's prediction, not a label (logged traffic): classifier
    /// training does not learn from it.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub task_predicted: bool,
    /// The prompt as one string (single-turn data). Exactly one of `prompt` and `messages`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub prompt: Option<String>,
    /// The conversation (chat data). Exactly one of `prompt` and `messages`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub messages: Option<Vec<RecordMessage>>,
    /// Per model id (as the source writes it): what that model's answer scored and cost.
    #[serde(default)]
    pub outcomes: BTreeMap<String, Outcome>,
    /// How a logged request was served (records imported from traffic only).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub logged: Option<Logged>,
}

/// How the gateway served a logged request: what learning from traffic and off-policy
/// evaluation need beyond the outcome.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Logged {
    pub tenant: String,
    /// The route, or `None` for a pinned model.
    #[serde(default)]
    pub route: Option<String>,
    /// The model that answered (the record's one outcome).
    pub model: String,
    /// The probability the router gave the answering model; `None` when the router did
    /// not choose it (a pinned model, or a fallback after the chosen one failed).
    #[serde(default)]
    pub propensity: Option<f64>,
    /// The model was drawn by exploration.
    #[serde(default)]
    pub explored: bool,
    /// The router that decided (its version).
    #[serde(default)]
    pub router_version: Option<String>,
    /// Where the outcome's score came from.
    #[serde(default)]
    pub label: Option<LabelSource>,
}

/// Who scored a logged answer.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum LabelSource {
    /// Feedback from the tenant that made the request (`POST /v1/feedback`).
    Human,
    /// A judge model's grade (`switchyard label --judge MODEL`), with the judge's id.
    Judge(String),
}

fn default_version() -> u32 {
    RECORD_VERSION
}

/// A chat turn in a record.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RecordMessage {
    pub role: String,
    pub content: String,
}

/// What one model's answer to the prompt scored and cost. Unknowns are null.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Outcome {
    /// Quality in [0, 1] (1 = correct / preferred).
    pub score: Option<f64>,
    pub cost_usd: Option<f64>,
    pub input_tokens: Option<u64>,
    pub output_tokens: Option<u64>,
    pub latency_ms: Option<f64>,
}

impl RoutingRecord {
    /// The text the router sees: the prompt, or the last user message of a conversation.
    pub fn text(&self) -> &str {
        if let Some(prompt) = &self.prompt {
            return prompt;
        }
        self.messages
            .as_deref()
            .and_then(|m| m.iter().rev().find(|m| m.role == "user"))
            .map(|m| m.content.as_str())
            .unwrap_or("")
    }

    /// 1 − mean score over the models that answered, or `None` when no model has a score.
    pub fn difficulty(&self) -> Option<f64> {
        let scores: Vec<f64> = self.outcomes.values().filter_map(|o| o.score).collect();
        if scores.is_empty() {
            return None;
        }
        Some(1.0 - scores.iter().sum::<f64>() / scores.len() as f64)
    }

    /// Checks what serde cannot: versions, exactly one of prompt/messages, value ranges.
    /// Returns the offending field's path and the problem.
    pub fn validate(&self) -> Result<(), (String, String)> {
        let bad = |field: &str, msg: String| Err((field.to_owned(), msg));
        if self.v != RECORD_VERSION {
            return bad(
                "v",
                format!(
                    "version {} is not supported (this build reads {RECORD_VERSION})",
                    self.v
                ),
            );
        }
        if self.id.trim().is_empty() {
            return bad("id", "must not be empty".into());
        }
        match (&self.prompt, &self.messages) {
            (Some(_), Some(_)) => {
                return bad("prompt", "give either prompt or messages, not both".into());
            }
            (None, None) => return bad("prompt", "one of prompt or messages is required".into()),
            (None, Some(m)) if !m.iter().any(|m| m.role == "user") => {
                return bad("messages", "needs at least one user message".into());
            }
            _ => {}
        }
        if self.text().trim().is_empty() {
            return bad("prompt", "the prompt text is empty".into());
        }
        for (model, o) in &self.outcomes {
            let field = |name: &str| format!("outcomes.{model}.{name}");
            if let Some(s) = o.score
                && !(0.0..=1.0).contains(&s)
            {
                return bad(&field("score"), format!("{s} is outside [0, 1]"));
            }
            if let Some(c) = o.cost_usd
                && !(c >= 0.0 && c.is_finite())
            {
                return bad(
                    &field("cost_usd"),
                    format!("{c} is not a non-negative amount"),
                );
            }
            if let Some(l) = o.latency_ms
                && !(l >= 0.0 && l.is_finite())
            {
                return bad(
                    &field("latency_ms"),
                    format!("{l} is not a non-negative duration"),
                );
            }
        }
        Ok(())
    }
}

/// A record that could not be read, located by file, line and field.
#[derive(Debug, thiserror::Error)]
pub enum RecordError {
    #[error("{}: cannot read", path.display())]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{}:{line}: field `{field}`: {message}", path.display())]
    Invalid {
        path: PathBuf,
        line: usize,
        field: String,
        message: String,
    },
}

/// Parses and validates one JSONL line of `path`.
pub fn parse_record(path: &Path, line: usize, text: &str) -> Result<RoutingRecord, RecordError> {
    let invalid = |field: String, message: String| RecordError::Invalid {
        path: path.to_path_buf(),
        line,
        field,
        message,
    };
    let de = &mut serde_json::Deserializer::from_str(text);
    let record: RoutingRecord = serde_path_to_error::deserialize(de).map_err(|e| {
        let field = e.path().to_string();
        let field = if field == "." {
            "(record)".to_owned()
        } else {
            field
        };
        invalid(field, e.into_inner().to_string())
    })?;
    record
        .validate()
        .map_err(|(field, msg)| invalid(field, msg))?;
    Ok(record)
}

/// Reads every record of a JSONL file, skipping blank lines. Stops at the first bad line:
/// training on silently partial data is worse than an error that names the line.
pub fn read_records(path: &Path) -> Result<Vec<RoutingRecord>, RecordError> {
    let io = |source| RecordError::Io {
        path: path.to_path_buf(),
        source,
    };
    let file = std::fs::File::open(path).map_err(io)?;
    let mut records = Vec::new();
    for (i, line) in std::io::BufReader::new(file).lines().enumerate() {
        let line = line.map_err(io)?;
        if line.trim().is_empty() {
            continue;
        }
        records.push(parse_record(path, i + 1, &line)?);
    }
    Ok(records)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> Result<RoutingRecord, RecordError> {
        parse_record(Path::new("data.jsonl"), 7, text)
    }

    #[test]
    fn a_full_record_round_trips() {
        let text = r#"{"v":1,"id":"rb/mbpp/1","source":"routerbench:mbpp","task":"code","prompt":"Write a function","outcomes":{"gpt-4":{"score":1.0,"cost_usd":0.0014,"input_tokens":212,"output_tokens":96,"latency_ms":null}}}"#;
        let record = parse(text).unwrap();
        assert_eq!(record.task, Some(TaskClass::Code));
        assert_eq!(record.difficulty(), Some(0.0));
        let again = serde_json::to_string(&record).unwrap();
        assert_eq!(parse(&again).unwrap(), record);
    }

    #[test]
    fn messages_give_the_last_user_turn() {
        let record = parse(r#"{"id":"t/1","source":"traffic","task":null,"messages":[{"role":"system","content":"be brief"},{"role":"user","content":"first"},{"role":"assistant","content":"a"},{"role":"user","content":"second"}]}"#).unwrap();
        assert_eq!(record.text(), "second");
        assert_eq!(record.difficulty(), None);
    }

    #[test]
    fn errors_name_file_line_and_field() {
        let cases = [
            (
                r#"{"id":"x","source":"s","prompt":"p","outcomes":{"m":{"score":1.5}}}"#,
                "outcomes.m.score",
            ),
            (
                r#"{"id":"x","source":"s","prompt":"p","outcomes":{"m":{"score":"high"}}}"#,
                "outcomes.m.score",
            ),
            (
                r#"{"id":"x","source":"s","task":"poetry","prompt":"p"}"#,
                "task",
            ),
            (r#"{"id":"x","source":"s"}"#, "prompt"),
            (
                r#"{"id":"x","source":"s","prompt":"p","messages":[]}"#,
                "prompt",
            ),
            (
                r#"{"id":"x","source":"s","prompt":"p","colour":"red"}"#,
                "colour",
            ),
            (r#"{"v":2,"id":"x","source":"s","prompt":"p"}"#, "v"),
            (r#"{"id":"x","prompt":"p"}"#, "source"),
            (
                r#"{"id":"x","source":"s","prompt":"p","outcomes":{"m":{"cost_usd":-1}}}"#,
                "outcomes.m.cost_usd",
            ),
        ];
        for (text, field) in cases {
            let err = parse(text).unwrap_err().to_string();
            assert!(err.starts_with("data.jsonl:7: "), "{err}");
            assert!(err.contains(field), "{text} -> {err}");
        }
        assert!(
            parse("not json")
                .unwrap_err()
                .to_string()
                .starts_with("data.jsonl:7:")
        );
    }
}

/// One training data file, as artifacts' manifests record it: the file name (never a
/// machine path), its checksum and how many records it held.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DataFile {
    pub path: String,
    pub sha256: String,
    pub records: usize,
}
