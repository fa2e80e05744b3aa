//! The traffic log: one JSON line per request in `<dir>/traffic.jsonl`, rotated by size and
//! age to `traffic-<UTC time>.jsonl`; feedback in `<dir>/feedback.jsonl`. Each record is
//! one `write` to a file opened for appending, made before the request's answer is
//! complete: once written it is the kernel's, so SIGTERM or kill -9 of the gateway loses no
//! record of an answered request (only those of requests still in flight), and there is no
//! queue to drain at exit. [`to_records`] turns logs joined with feedback into routing
//! records, so retraining on traffic is the benchmark code path.

use std::collections::BTreeMap;
use std::io::{BufRead, Write};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};
use switchyard_core::policy::Decision;
use switchyard_core::{LabelSource, Logged, Outcome, RoutingRecord};
use switchyard_providers::{ErrorClass, Usage};

pub const TRAFFIC_FILE: &str = "traffic.jsonl";
pub const FEEDBACK_FILE: &str = "feedback.jsonl";
pub const SHADOW_FILE: &str = "shadow.jsonl";
pub const LABELS_FILE: &str = "labels.jsonl";
pub const TRAFFIC_VERSION: u32 = 1;

/// One upstream attempt.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Attempt {
    pub model: String,
    /// HTTP status from the upstream, when it answered.
    pub status: Option<u16>,
    pub latency_ms: f64,
    /// `None` when the attempt succeeded.
    pub error_class: Option<ErrorClass>,
    pub error: Option<String>,
}

/// What the cache did for a request: one spelling in headers, metrics and the log.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum CacheOutcome {
    /// The same prompt in the same scope: answered from the cache.
    Hit,
    /// A paraphrase the verifier accepted: answered from the cache.
    #[serde(alias = "semantic-hit")]
    SemanticHit,
    /// Looked up, nothing to serve.
    Miss,
    /// Not looked up (the route opts out, `no-cache`, no cache, or the lookup failed).
    #[default]
    Bypass,
}

impl CacheOutcome {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Hit => "hit",
            Self::SemanticHit => "semantic_hit",
            Self::Miss => "miss",
            Self::Bypass => "bypass",
        }
    }

    /// Whether the answer came from the cache.
    pub fn served(self) -> bool {
        matches!(self, Self::Hit | Self::SemanticHit)
    }
}

/// Milliseconds spent in each stage.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Latency {
    pub embed_ms: f64,
    pub classify_ms: f64,
    pub score_ms: f64,
    pub cache_ms: f64,
    pub upstream_ms: f64,
    pub total_ms: f64,
}

/// One request, as logged.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TrafficRecord {
    pub v: u32,
    pub request_id: String,
    /// RFC 3339, UTC.
    pub time: String,
    pub tenant: String,
    /// The route, or `None` for a pinned model.
    pub route: Option<String>,
    /// What the client asked for (`auto`, a route, a model).
    pub requested: String,
    /// The last user message (what the router embeds), unless `log_prompts = false`.
    pub prompt: Option<String>,
    pub prompt_sha256: String,
    pub stream: bool,
    pub decision: Option<Decision>,
    pub attempts: Vec<Attempt>,
    /// The model that answered.
    pub model: Option<String>,
    pub usage: Option<Usage>,
    pub cost_usd: Option<f64>,
    /// `usage` (and so the cost) is estimated from the streamed text: the upstream
    /// reported none.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub usage_estimated: bool,
    /// The answer's text, with `[log] log_answers` (and `log_prompts`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub answer: Option<String>,
    pub cache: CacheOutcome,
    /// The HTTP status the client got.
    pub status: u16,
    /// Set when the client got an error (or a stream broke after it started).
    pub error: Option<String>,
    pub latency: Latency,
}

/// A judge model's grade of a logged answer (`switchyard label --judge`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LabelRecord {
    pub request_id: String,
    /// In [0, 1]: the judge's 1–10 grade, (g − 1) / 9.
    pub score: f64,
    /// The judge model (as the config names it).
    pub judge: String,
    pub tenant: String,
    pub time: String,
}

/// A shadow router's decision for a served request (`routes.NAME.shadow`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ShadowRecord {
    pub request_id: String,
    pub time: String,
    pub route: String,
    /// What the serving router chose, and its version.
    pub served: String,
    pub served_version: Option<String>,
    /// The shadow's decision (its `router_version` names it), or why it could not decide.
    pub decision: Option<Decision>,
    pub error: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct FeedbackRecord {
    pub request_id: String,
    pub score: f64,
    pub comment: Option<String>,
    pub tenant: String,
    pub time: String,
}

pub fn now_rfc3339() -> String {
    chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Millis, true)
}

/// Rotation settings.
#[derive(Debug, Clone, Copy)]
pub struct Rotation {
    pub max_bytes: u64,
    pub max_age: Duration,
}

/// Handle to the log files; clones share them.
#[derive(Debug, Clone)]
pub struct TrafficLog {
    writer: Arc<Mutex<Writer>>,
}

#[derive(Debug)]
struct Writer {
    dir: PathBuf,
    rotation: Rotation,
    current: Option<Current>,
    feedback: Option<std::fs::File>,
    shadow: Option<std::fs::File>,
}

#[derive(Debug)]
struct Current {
    file: std::fs::File,
    bytes: u64,
    opened: Instant,
}

impl TrafficLog {
    /// Creates `dir` and opens the current log, so an unwritable directory fails here, at
    /// start, rather than at the first request.
    pub fn start(dir: &Path, rotation: Rotation) -> std::io::Result<Self> {
        std::fs::create_dir_all(dir)?;
        let current = open_current(dir)?;
        Ok(Self {
            writer: Arc::new(Mutex::new(Writer {
                dir: dir.to_path_buf(),
                rotation,
                current: Some(current),
                feedback: None,
                shadow: None,
            })),
        })
    }

    /// Appends a request's record; it is in the file when this returns.
    pub fn traffic(&self, record: &TrafficRecord) {
        let line = json_line(record);
        let mut w = self.lock();
        if let Err(e) = w.write_traffic(&line) {
            tracing::error!(dir = %w.dir.display(), error = %e, "cannot write the traffic log; a record was lost");
        }
    }

    /// Appends a feedback record; it is in the file when this returns.
    pub fn feedback(&self, record: &FeedbackRecord) {
        let line = json_line(record);
        let mut w = self.lock();
        let w = &mut *w;
        if let Err(e) = append(&mut w.feedback, &w.dir.join(FEEDBACK_FILE), &line) {
            tracing::error!(dir = %w.dir.display(), error = %e, "cannot write the feedback log; a record was lost");
        }
    }

    pub fn shadow(&self, record: &ShadowRecord) {
        let line = json_line(record);
        let mut w = self.lock();
        let w = &mut *w;
        if let Err(e) = append(&mut w.shadow, &w.dir.join(SHADOW_FILE), &line) {
            tracing::error!(dir = %w.dir.display(), error = %e, "cannot write the shadow log; a record was lost");
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Writer> {
        // A write that panicked leaves at worst a partial line, which the importer reports.
        self.writer
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

fn json_line<T: Serialize>(value: &T) -> String {
    // Plain data with string keys: serialisation cannot fail.
    let mut s = serde_json::to_string(value).unwrap_or_default();
    s.push('\n');
    s
}

fn open_current(dir: &Path) -> std::io::Result<Current> {
    let file = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(dir.join(TRAFFIC_FILE))?;
    let bytes = file.metadata()?.len();
    Ok(Current {
        file,
        bytes,
        opened: Instant::now(),
    })
}

impl Writer {
    fn due(&self, len: usize) -> bool {
        self.current.as_ref().is_some_and(|c| {
            c.bytes > 0
                && (c.bytes + len as u64 > self.rotation.max_bytes
                    || c.opened.elapsed() >= self.rotation.max_age)
        })
    }

    fn rotate(&mut self) -> std::io::Result<()> {
        self.current = None;
        let stamp = chrono::Utc::now().format("%Y%m%dT%H%M%S%.3fZ");
        std::fs::rename(
            self.dir.join(TRAFFIC_FILE),
            self.dir.join(format!("traffic-{stamp}.jsonl")),
        )
    }

    fn write_traffic(&mut self, line: &str) -> std::io::Result<()> {
        if self.due(line.len()) {
            self.rotate()?;
        }
        if self.current.is_none() {
            self.current = Some(open_current(&self.dir)?);
        }
        if let Some(c) = self.current.as_mut() {
            // One write of the whole line: O_APPEND keeps lines whole.
            c.file.write_all(line.as_bytes())?;
            c.bytes += line.len() as u64;
        }
        Ok(())
    }
}

/// A bad line in a log or feedback file, located.
/// Every traffic log in `dir`, oldest first: the rotated ones (their names carry their UTC
/// time), then the current `traffic.jsonl`. A missing directory has none.
pub fn logs_in(dir: &Path) -> Vec<PathBuf> {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return Vec::new();
    };
    let mut logs: Vec<PathBuf> = entries
        .filter_map(Result::ok)
        .map(|e| e.path())
        .filter(|p| {
            p.file_name()
                .and_then(|n| n.to_str())
                .is_some_and(|n| n.starts_with("traffic-") && n.ends_with(".jsonl"))
        })
        .collect();
    logs.sort();
    logs.push(dir.join(TRAFFIC_FILE));
    logs
}

/// Appends `line` to the file at `path`, opened on first use.
fn append(file: &mut Option<std::fs::File>, path: &Path, line: &str) -> std::io::Result<()> {
    if file.is_none() {
        *file = Some(
            std::fs::OpenOptions::new()
                .create(true)
                .append(true)
                .open(path)?,
        );
    }
    match file.as_mut() {
        Some(f) => f.write_all(line.as_bytes()),
        None => Ok(()),
    }
}

#[derive(Debug, thiserror::Error)]
#[error("{}:{line}: {message}", path.display())]
pub struct ImportError {
    pub path: PathBuf,
    pub line: usize,
    pub message: String,
}

pub fn read_jsonl<T: serde::de::DeserializeOwned>(path: &Path) -> Result<Vec<T>, ImportError> {
    let err = |line, message: String| ImportError {
        path: path.to_path_buf(),
        line,
        message,
    };
    let file = std::fs::File::open(path).map_err(|e| err(0, format!("cannot open: {e}")))?;
    let mut out = Vec::new();
    for (i, line) in std::io::BufReader::new(file).lines().enumerate() {
        let line = line.map_err(|e| err(i + 1, e.to_string()))?;
        if line.trim().is_empty() {
            continue;
        }
        let de = &mut serde_json::Deserializer::from_str(&line);
        out.push(
            serde_path_to_error::deserialize(de)
                .map_err(|e| err(i + 1, format!("{}: {}", e.path(), e.inner())))?,
        );
    }
    Ok(out)
}

/// What [`to_records`] kept and skipped.
#[derive(Debug, Default, Clone, PartialEq, Eq, Serialize)]
pub struct ImportStats {
    pub requests: usize,
    pub records: usize,
    pub with_feedback: usize,
    pub skipped_failed: usize,
    /// Answered from the cache: the answer was written for another request's prompt.
    pub skipped_cached: usize,
    pub skipped_no_prompt: usize,
    pub skipped_no_feedback: usize,
    pub feedback_unmatched: usize,
}

/// Traffic logs (joined with feedback, the last score per request winning) → routing
/// records: one per served request whose prompt was logged, with the serving model's
/// outcome (score from feedback, cost, tokens, latency). With `require_feedback`, requests
/// without feedback are skipped (training needs scores).
/// One served request as a routing record, with how it was served.
fn record_of(
    t: TrafficRecord,
    model: String,
    prompt: String,
    outcome: Outcome,
    label: Option<LabelSource>,
) -> RoutingRecord {
    let decision = t.decision.as_ref();
    // The propensity is the chosen model's; a fallback answered with probability unknown.
    let chosen = decision.filter(|d| d.chosen == model);
    let propensity = chosen.and_then(|d| d.propensity);
    let explored = chosen.is_some_and(|d| d.explored);
    RoutingRecord {
        v: switchyard_core::RECORD_VERSION,
        id: format!("traffic/{}", t.request_id),
        source: format!("traffic:{}", t.tenant),
        task: decision.and_then(|d| d.task),
        task_predicted: decision.is_some_and(|d| d.task.is_some()),
        prompt: Some(prompt),
        messages: None,
        outcomes: [(model.clone(), outcome)].into_iter().collect(),
        logged: Some(Logged {
            tenant: t.tenant,
            route: t.route,
            model,
            propensity,
            explored,
            router_version: decision.and_then(|d| d.router_version.clone()),
            label,
        }),
    }
}

/// Traffic logs joined with feedback (and judge labels, which count only where the
/// requesting tenant gave no feedback) → routing records.
pub fn to_records(
    logs: &[PathBuf],
    feedback: &[PathBuf],
    labels: &[PathBuf],
    require_feedback: bool,
) -> Result<(Vec<RoutingRecord>, ImportStats), ImportError> {
    let mut judged: BTreeMap<String, LabelRecord> = BTreeMap::new();
    for path in labels {
        for l in read_jsonl::<LabelRecord>(path)? {
            judged.insert(l.request_id.clone(), l);
        }
    }
    // The latest feedback per request, with the tenant that gave it.
    let mut scores: BTreeMap<String, (String, f64)> = BTreeMap::new();
    for path in feedback {
        for f in read_jsonl::<FeedbackRecord>(path)? {
            scores.insert(f.request_id, (f.tenant, f.score));
        }
    }
    let mut stats = ImportStats::default();
    let mut records = Vec::new();
    let mut matched = std::collections::BTreeSet::new();
    for path in logs {
        for t in read_jsonl::<TrafficRecord>(path)? {
            stats.requests += 1;
            let (Some(model), true) = (t.model.clone(), t.error.is_none()) else {
                stats.skipped_failed += 1;
                continue;
            };
            if t.cache.served() {
                stats.skipped_cached += 1;
                continue;
            }
            let Some(prompt) = t.prompt.clone() else {
                stats.skipped_no_prompt += 1;
                continue;
            };
            // Only the requesting tenant's feedback counts (the gateway refuses others');
            // a judge's grade stands in where there is none.
            let human = scores
                .get(&t.request_id)
                .filter(|(tenant, _)| *tenant == t.tenant)
                .map(|(_, score)| (*score, LabelSource::Human));
            let judge = judged
                .get(&t.request_id)
                .map(|l| (l.score, LabelSource::Judge(l.judge.clone())));
            let (score, label) = human.or(judge).unzip();
            if score.is_some() {
                matched.insert(t.request_id.clone());
                stats.with_feedback += 1;
            } else if require_feedback {
                stats.skipped_no_feedback += 1;
                continue;
            }
            let outcome = Outcome {
                score,
                cost_usd: t.cost_usd,
                input_tokens: t.usage.map(|u| u.prompt_tokens),
                output_tokens: t.usage.map(|u| u.completion_tokens),
                latency_ms: Some(t.latency.upstream_ms),
            };
            records.push(record_of(t, model, prompt, outcome, label));
        }
    }
    stats.records = records.len();
    stats.feedback_unmatched = scores.keys().filter(|k| !matched.contains(*k)).count();
    Ok((records, stats))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record(id: &str, prompt: Option<&str>, model: Option<&str>) -> TrafficRecord {
        TrafficRecord {
            v: TRAFFIC_VERSION,
            request_id: id.into(),
            time: now_rfc3339(),
            tenant: "default".into(),
            route: Some("auto".into()),
            requested: "auto".into(),
            prompt: prompt.map(str::to_owned),
            prompt_sha256: "00".into(),
            stream: false,
            decision: None,
            attempts: Vec::new(),
            model: model.map(str::to_owned),
            usage: Some(Usage {
                prompt_tokens: 10,
                completion_tokens: 5,
            }),
            cost_usd: Some(0.001),
            usage_estimated: false,
            answer: None,
            cache: CacheOutcome::Bypass,
            status: if model.is_some() { 200 } else { 502 },
            error: model.is_none().then(|| "all failed".to_owned()),
            latency: Latency::default(),
        }
    }

    fn wait_for_lines(path: &Path, n: usize) -> Vec<String> {
        for _ in 0..200 {
            if let Ok(text) = std::fs::read_to_string(path) {
                let lines: Vec<String> = text.lines().map(str::to_owned).collect();
                if lines.len() >= n {
                    return lines;
                }
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        panic!("{} never reached {n} lines", path.display());
    }

    #[test]
    fn a_record_is_in_the_file_when_traffic_returns() {
        let dir = tempfile::tempdir().unwrap();
        let rotation = Rotation {
            max_bytes: 1 << 20,
            max_age: Duration::from_secs(3600),
        };
        let log = TrafficLog::start(dir.path(), rotation).unwrap();
        for i in 0..20 {
            log.traffic(&record(&format!("r{i}"), Some("hi"), Some("small")));
            let text = std::fs::read_to_string(dir.path().join(TRAFFIC_FILE)).unwrap();
            // No waiting: a process killed right now (SIGTERM, kill -9) keeps this record.
            assert_eq!(text.lines().count(), i + 1);
        }
    }

    #[test]
    fn rotates_by_size_and_imports_with_feedback() {
        let dir = tempfile::tempdir().unwrap();
        let log = TrafficLog::start(
            dir.path(),
            Rotation {
                max_bytes: 900,
                max_age: Duration::from_secs(3600),
            },
        )
        .unwrap();
        log.traffic(&record("a", Some("what is 2+2?"), Some("small")));
        log.traffic(&record("b", None, Some("small")));
        log.traffic(&record("c", Some("hello"), None));
        log.traffic(&record("d", Some("write a poem"), Some("big")));
        log.feedback(&FeedbackRecord {
            request_id: "a".into(),
            score: 1.0,
            comment: None,
            tenant: "default".into(),
            time: now_rfc3339(),
        });
        log.feedback(&FeedbackRecord {
            request_id: "zzz".into(),
            score: 0.0,
            comment: None,
            tenant: "default".into(),
            time: now_rfc3339(),
        });
        wait_for_lines(&dir.path().join(FEEDBACK_FILE), 2);
        drop(log);
        std::thread::sleep(Duration::from_millis(50));
        let mut logs: Vec<PathBuf> = std::fs::read_dir(dir.path())
            .unwrap()
            .map(|e| e.unwrap().path())
            .filter(|p| {
                p.file_name()
                    .unwrap()
                    .to_string_lossy()
                    .starts_with("traffic")
            })
            .collect();
        logs.sort();
        assert!(logs.len() >= 2, "rotated by size: {logs:?}");
        let fb = [dir.path().join(FEEDBACK_FILE)];
        let (records, stats) = to_records(&logs, &fb, &[], false).unwrap();
        assert_eq!(stats.requests, 4);
        assert_eq!(stats.skipped_no_prompt, 1);
        assert_eq!(stats.skipped_failed, 1);
        assert_eq!(stats.feedback_unmatched, 1);
        assert_eq!(records.len(), 2);
        let a = records.iter().find(|r| r.id == "traffic/a").unwrap();
        assert_eq!(a.outcomes["small"].score, Some(1.0));
        let (records, _) = to_records(&logs, &fb, &[], true).unwrap();
        assert_eq!(records.len(), 1);

        std::fs::write(dir.path().join("bad.jsonl"), "{\"v\":1}\n").unwrap();
        let e = to_records(&[dir.path().join("bad.jsonl")], &[], &[], false).unwrap_err();
        assert_eq!(e.line, 1);
        assert!(e.to_string().contains("bad.jsonl:1"), "{e}");
    }

    fn decision(chosen: &str, propensity: f64, explored: bool) -> Decision {
        let ranked = ["small", "big"]
            .map(|m| switchyard_core::policy::Ranked {
                model: m.into(),
                quality: 0.5,
                cost_usd: 0.001,
            })
            .to_vec();
        Decision {
            chosen: chosen.into(),
            rule: switchyard_core::policy::Rule::CheapestAboveThreshold,
            policy: switchyard_core::policy::Policy::Threshold { tau: 0.5 },
            ranked,
            excluded: BTreeMap::new(),
            task: Some(switchyard_core::TaskClass::Math),
            difficulty: Some(0.2),
            router_version: Some("00112233aabbccdd".into()),
            propensity: Some(propensity),
            explored,
            greedy: explored.then(|| "small".to_owned()),
        }
    }

    #[test]
    fn imports_keep_how_each_request_was_served() {
        let dir = tempfile::tempdir().unwrap();
        let mut explored = record("x", Some("what is 2+2?"), Some("big"));
        explored.decision = Some(decision("big", 0.05, true));
        // The chosen model failed and "small" answered: its probability is unknown.
        let mut fell_back = record("y", Some("what is 3+3?"), Some("small"));
        fell_back.decision = Some(decision("big", 0.95, false));
        let mut other = record("z", Some("what is 4+4?"), Some("small"));
        other.tenant = "b".into();
        let lines = [explored, fell_back, other]
            .iter()
            .map(|r| serde_json::to_string(r).unwrap() + "\n")
            .collect::<String>();
        let log = dir.path().join("t.jsonl");
        std::fs::write(&log, lines).unwrap();
        let feedback = |id: &str, tenant: &str, score: f64| FeedbackRecord {
            request_id: id.into(),
            score,
            comment: None,
            tenant: tenant.into(),
            time: now_rfc3339(),
        };
        let fb = dir.path().join("f.jsonl");
        let fbs = [
            feedback("x", "default", 0.0),
            feedback("x", "default", 1.0),
            // Another tenant's feedback on z does not count.
            feedback("z", "default", 1.0),
        ];
        std::fs::write(
            &fb,
            fbs.iter()
                .map(|f| serde_json::to_string(f).unwrap() + "\n")
                .collect::<String>(),
        )
        .unwrap();
        let (records, _) = to_records(&[log], &[fb], &[], false).unwrap();
        let by_id = |id: &str| {
            records
                .iter()
                .find(|r| r.id == format!("traffic/{id}"))
                .unwrap()
        };
        let x = by_id("x");
        let logged = x.logged.as_ref().unwrap();
        assert_eq!(logged.propensity, Some(0.05));
        assert!(logged.explored);
        assert_eq!(logged.router_version.as_deref(), Some("00112233aabbccdd"));
        assert_eq!(logged.label, Some(LabelSource::Human));
        assert_eq!(
            x.outcomes["big"].score,
            Some(1.0),
            "the latest feedback wins"
        );
        assert!(
            x.task_predicted,
            "the router's task is a prediction, not a label"
        );
        let y = by_id("y").logged.as_ref().unwrap();
        assert_eq!((y.propensity, y.explored), (None, false));
        let z = by_id("z");
        assert_eq!(z.outcomes["small"].score, None);
        assert_eq!(z.logged.as_ref().unwrap().tenant, "b");
        // The record format reads its own output back.
        let text = serde_json::to_string(x).unwrap();
        assert_eq!(&serde_json::from_str::<RoutingRecord>(&text).unwrap(), x);
    }
}
