//! Importers: each routing source in `../shared/datasets/routing` (and later the traffic
//! log) to routing records. Model ids are kept as the source writes them; costs are kept
//! where the source has them, or computed from its token counts × its price table.

mod alpacaeval;
mod llmrouter;
mod mmlupro;
mod open7b;
mod routeprofile;
mod routerarena;
mod routerbench;

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

use indicatif::ProgressBar;
use switchyard_core::{Outcome, RoutingRecord};

/// A routing data source this build can import.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Source {
    RouterBench,
    RouteProfile,
    LlmRouter,
    AlpacaEval,
    Open7b,
    MmluPro,
    RouterArena,
}

impl Source {
    pub const ALL: [Self; 7] = [
        Self::RouterBench,
        Self::RouteProfile,
        Self::LlmRouter,
        Self::AlpacaEval,
        Self::Open7b,
        Self::MmluPro,
        Self::RouterArena,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Self::RouterBench => "routerbench",
            Self::RouteProfile => "routeprofile",
            Self::LlmRouter => "llmrouter",
            Self::AlpacaEval => "alpacaeval",
            Self::Open7b => "open7b",
            Self::MmluPro => "mmlupro",
            Self::RouterArena => "routerarena",
        }
    }
}

/// What an import produced and what it had to leave out.
#[derive(Debug, Default)]
pub struct ImportReport {
    pub records: Vec<RoutingRecord>,
    /// Source rows looked at.
    pub rows_read: usize,
    /// Rows (or per-model cells) left out, by reason.
    pub skipped: BTreeMap<String, usize>,
    pub models: BTreeSet<String>,
}

impl ImportReport {
    fn skip(&mut self, reason: &str) {
        *self.skipped.entry(reason.to_owned()).or_default() += 1;
    }

    fn push(&mut self, record: RoutingRecord) {
        self.models.extend(record.outcomes.keys().cloned());
        self.records.push(record);
    }
}

/// A source file that could not be imported.
#[derive(Debug, thiserror::Error)]
pub enum ImportError {
    #[error("{}: cannot read", path.display())]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{}{}: {message}", path.display(), location.as_ref().map(|l| format!(" ({l})")).unwrap_or_default())]
    Format {
        path: PathBuf,
        /// Line, row or record index, when known.
        location: Option<String>,
        message: String,
    },
    #[error("{}: expected {expected}; pass the source's folder from ../shared/datasets/routing", path.display())]
    Layout { path: PathBuf, expected: String },
}

impl ImportError {
    fn format(path: &Path, location: impl Into<Option<String>>, message: impl ToString) -> Self {
        Self::Format {
            path: path.to_path_buf(),
            location: location.into(),
            message: message.to_string(),
        }
    }
}

/// Imports `path` (the source's folder, or one of its data files) as `source`.
pub fn import(
    source: Source,
    path: &Path,
    progress: &ProgressBar,
) -> Result<ImportReport, ImportError> {
    let mut report = ImportReport::default();
    match source {
        Source::RouterBench => routerbench::import(path, progress, &mut report)?,
        Source::RouteProfile => routeprofile::import(path, progress, &mut report)?,
        Source::LlmRouter => llmrouter::import(path, progress, &mut report)?,
        Source::AlpacaEval => alpacaeval::import(path, progress, &mut report)?,
        Source::Open7b => open7b::import(path, progress, &mut report)?,
        Source::MmluPro => mmlupro::import(path, progress, &mut report)?,
        Source::RouterArena => routerarena::import(path, progress, &mut report)?,
    }
    progress.finish_and_clear();
    Ok(report)
}

/// A source that is one JSONL file: `name` in the folder `path` (or `path` itself), each
/// non-empty line parsed and turned into a record by `record_of` (which counts what it
/// skips). A line that is not JSON is an error naming it.
fn import_jsonl(
    path: &Path,
    name: &str,
    source: &str,
    progress: &ProgressBar,
    report: &mut ImportReport,
    record_of: impl Fn(&serde_json::Value, &mut ImportReport) -> Option<RoutingRecord>,
) -> Result<(), ImportError> {
    let file = if path.is_dir() {
        path.join(name)
    } else {
        path.to_path_buf()
    };
    if !file.is_file() {
        return Err(ImportError::Layout {
            path: path.to_path_buf(),
            expected: format!("the {source} folder ({name})"),
        });
    }
    let text = read_to_string(&file)?;
    progress.set_length(text.lines().count() as u64);
    for (i, line) in text.lines().enumerate() {
        progress.inc(1);
        if line.trim().is_empty() {
            continue;
        }
        report.rows_read += 1;
        let row: serde_json::Value = serde_json::from_str(line)
            .map_err(|e| ImportError::format(&file, format!("line {}", i + 1), e))?;
        if let Some(record) = record_of(&row, report) {
            report.push(record);
        }
    }
    Ok(())
}

fn read_to_string(path: &Path) -> Result<String, ImportError> {
    fs_err::read_to_string(path).map_err(|source| ImportError::Io {
        path: path.to_path_buf(),
        source,
    })
}

fn read_json(path: &Path) -> Result<serde_json::Value, ImportError> {
    serde_json::from_str(&read_to_string(path)?).map_err(|e| ImportError::format(path, None, e))
}

/// The files of `dir` ending in `ext`, sorted, or `path` itself when it is a file.
fn files_with_ext(path: &Path, ext: &str) -> Result<Vec<PathBuf>, ImportError> {
    if path.is_file() {
        return Ok(vec![path.to_path_buf()]);
    }
    let entries = fs_err::read_dir(path).map_err(|source| ImportError::Io {
        path: path.to_path_buf(),
        source,
    })?;
    let mut files: Vec<PathBuf> = entries
        .filter_map(Result::ok)
        .map(|e| e.path())
        .filter(|p| p.extension().is_some_and(|e| e == ext))
        .collect();
    files.sort();
    if files.is_empty() {
        return Err(ImportError::Layout {
            path: path.to_path_buf(),
            expected: format!("a folder with .{ext} files"),
        });
    }
    Ok(files)
}

fn file_stem(path: &Path) -> String {
    path.file_stem()
        .map(|s| s.to_string_lossy().into_owned())
        .unwrap_or_default()
}

/// A score cell as a number in [0, 1], or why not.
fn score_of(value: &serde_json::Value) -> Result<f64, &'static str> {
    let score = match value {
        serde_json::Value::Number(n) => n.as_f64().ok_or("score is not a number")?,
        serde_json::Value::Bool(b) => f64::from(u8::from(*b)),
        serde_json::Value::String(s) => s.trim().parse().map_err(|_| "score is not a number")?,
        serde_json::Value::Null => return Err("score missing"),
        _ => return Err("score is not a number"),
    };
    if (0.0..=1.0).contains(&score) {
        Ok(score)
    } else {
        Err("score outside [0, 1]")
    }
}

/// Per-model scores (a JSON object of model → score) as outcomes; cells that are not a
/// score in [0, 1] are skipped and counted.
fn outcomes_from_scores(
    scores: &serde_json::Map<String, serde_json::Value>,
    report: &mut ImportReport,
) -> BTreeMap<String, Outcome> {
    let mut outcomes = BTreeMap::new();
    for (model, score) in scores {
        match score_of(score) {
            Ok(score) => {
                outcomes.insert(
                    model.clone(),
                    Outcome {
                        score: Some(score),
                        ..Outcome::default()
                    },
                );
            }
            Err(_) => report.skip("model without a 0..1 score"),
        }
    }
    outcomes
}
