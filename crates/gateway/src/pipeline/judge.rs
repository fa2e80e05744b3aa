//! Judge labels: a judge model, called through the configured providers, grades logged
//! answers that got no feedback (a rubric prompt, 1–10 → 0..1), within a request and USD
//! budget, appending each grade to `labels.jsonl` as soon as it has it, so an interrupted
//! run resumes where it stopped. The import uses a judge's grade only where the requesting
//! tenant gave no feedback: human feedback always wins.

use std::collections::HashSet;
use std::io::Write;
use std::path::PathBuf;

use serde::Serialize;
use serde_json::json;
use switchyard_providers::{Provider, Reply, Usage};

use crate::runtime::Runtime;
use crate::traffic::{FeedbackRecord, LabelRecord, TrafficRecord, now_rfc3339};

/// The rubric the judge answers.
pub const RUBRIC: &str = "You are grading an AI assistant's answer to a user's request. Rate how well the answer serves the request - correct, complete and helpful - from 1 (wrong or useless) to 10 (excellent). Reply with the number only.";

/// What to grade and within what budget.
#[derive(Debug, Clone)]
pub struct JudgeRequest {
    /// The judge: a model of the config.
    pub judge: String,
    pub logs: Vec<PathBuf>,
    pub feedback: Vec<PathBuf>,
    /// Where grades go (and which requests are already graded).
    pub labels: PathBuf,
    pub max_requests: usize,
    pub max_usd: f64,
}

#[derive(Debug, Default, Clone, Serialize)]
pub struct JudgeReport {
    pub graded: usize,
    pub already_graded: usize,
    pub with_feedback: usize,
    /// Logged without an answer (`[log] log_answers` off) or without a prompt.
    pub without_answer: usize,
    /// The judge's reply held no grade from 1 to 10.
    pub unparsable: usize,
    pub failed: usize,
    pub spent_usd: f64,
    /// The request or USD budget ran out before every answer was graded.
    pub budget_reached: bool,
}

#[derive(Debug, thiserror::Error)]
pub enum JudgeError {
    #[error(
        "the judge {0:?} is not a model of this config: give one of the [models] (e.g. a strong model)"
    )]
    UnknownJudge(String),
    #[error(transparent)]
    Read(#[from] crate::traffic::ImportError),
    #[error("{}: {source}", path.display())]
    Write {
        path: PathBuf,
        source: std::io::Error,
    },
}

/// The first whole number from 1 to 10 in the judge's reply.
pub fn parse_grade(reply: &str) -> Option<u8> {
    reply
        .split(|c: char| !c.is_ascii_digit())
        .filter_map(|n| n.parse::<u8>().ok())
        .find(|n| (1..=10).contains(n))
}

/// Request ids already graded (in `labels`, if it exists) and those with feedback.
fn settled_ids(request: &JudgeRequest) -> Result<(HashSet<String>, HashSet<String>), JudgeError> {
    let mut done = HashSet::new();
    if request.labels.is_file() {
        for l in crate::traffic::read_jsonl::<LabelRecord>(&request.labels)? {
            done.insert(l.request_id);
        }
    }
    let mut fed = HashSet::new();
    for path in &request.feedback {
        for f in crate::traffic::read_jsonl::<FeedbackRecord>(path)? {
            fed.insert(f.request_id);
        }
    }
    Ok((done, fed))
}

/// The judge's reply to the rubric on one logged exchange, or `None` when the call
/// failed (or streamed).
async fn ask(
    provider: &Provider,
    upstream_model: &str,
    prompt: &str,
    answer: &str,
) -> Option<(String, Option<Usage>)> {
    let body = json!({
        "model": upstream_model,
        "temperature": 0,
        "max_tokens": 8,
        "messages": [
            {"role": "system", "content": RUBRIC},
            {"role": "user", "content": format!("[Request]\n{prompt}\n\n[Answer]\n{answer}")},
        ],
    });
    match provider.chat(body, false).await {
        Ok(Reply::Full { body, usage }) => Some((
            body["choices"][0]["message"]["content"]
                .as_str()
                .unwrap_or_default()
                .to_owned(),
            usage,
        )),
        Ok(Reply::Stream { .. }) | Err(_) => None,
    }
}

/// Counts a logged request that needs no grade (no answer logged, already graded, or
/// with feedback) and says whether it was one.
fn passed_over(
    t: &TrafficRecord,
    done: &HashSet<String>,
    fed: &HashSet<String>,
    report: &mut JudgeReport,
) -> bool {
    let counter = if t.prompt.is_none() || t.answer.is_none() {
        &mut report.without_answer
    } else if done.contains(&t.request_id) {
        &mut report.already_graded
    } else if fed.contains(&t.request_id) {
        &mut report.with_feedback
    } else {
        return false;
    };
    *counter += 1;
    true
}

/// Grades what `request` selects; `progress` is told after each answer.
pub async fn label(
    runtime: &Runtime,
    request: &JudgeRequest,
    progress: &(dyn Fn(&JudgeReport) + Sync),
) -> Result<JudgeReport, JudgeError> {
    let unknown = || JudgeError::UnknownJudge(request.judge.clone());
    let judge = runtime.models.get(&request.judge).ok_or_else(unknown)?;
    let provider = &judge.client;
    let (mut done, fed) = settled_ids(request)?;
    let write_err = |source| JudgeError::Write {
        path: request.labels.clone(),
        source,
    };
    let mut out = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(&request.labels)
        .map_err(write_err)?;
    let mut report = JudgeReport::default();
    for path in &request.logs {
        for t in crate::traffic::read_jsonl::<TrafficRecord>(path)? {
            if passed_over(&t, &done, &fed, &mut report) {
                continue;
            }
            if report.graded >= request.max_requests || report.spent_usd >= request.max_usd {
                report.budget_reached = true;
                return Ok(report);
            }
            let (prompt, answer) = (t.prompt.as_deref(), t.answer.as_deref());
            let reply = ask(
                provider,
                &judge.upstream_model,
                prompt.unwrap_or_default(),
                answer.unwrap_or_default(),
            );
            let Some((text, usage)) = reply.await else {
                report.failed += 1;
                continue;
            };
            report.spent_usd += runtime.cost_of(&request.judge, usage).unwrap_or(0.0);
            let Some(grade) = parse_grade(&text) else {
                report.unparsable += 1;
                continue;
            };
            let label = LabelRecord {
                request_id: t.request_id.clone(),
                score: f64::from(grade - 1) / 9.0,
                judge: request.judge.clone(),
                tenant: t.tenant.clone(),
                time: now_rfc3339(),
            };
            let line = serde_json::to_string(&label).unwrap_or_default() + "\n";
            out.write_all(line.as_bytes()).map_err(write_err)?;
            done.insert(t.request_id);
            report.graded += 1;
            progress(&report);
        }
    }
    Ok(report)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn grades_are_the_first_number_from_one_to_ten() {
        assert_eq!(parse_grade("7"), Some(7));
        assert_eq!(parse_grade("Score: 10/10"), Some(10));
        assert_eq!(parse_grade("0, then 11, then 4"), Some(4));
        assert_eq!(parse_grade("excellent"), None);
        assert_eq!(parse_grade("99999999999"), None);
    }
}
