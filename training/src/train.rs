//! `train classifier` end to end: records → examples → cached embeddings → heads →
//! held-out metrics → artifact (heads.safetensors + manifest.json).

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};

use candle_core::{Device, Tensor};
use indicatif::ProgressBar;
use switchyard_core::metrics::{Confusion, mean_absolute_error, spearman};
use switchyard_core::{DifficultyCuts, TaskClass};
use switchyard_embed::SentenceEncoder;
use switchyard_embed::heads::{
    HEADS_FORMAT_VERSION, HEADS_WEIGHTS_FILE, HeadsManifest, MANIFEST_FILE, TaskHeadKind,
};

use crate::cache::EmbeddingCache;
use crate::classifier::{HeadData, SplitMix, TrainConfig, train_difficulty_head, train_task_head};
use crate::data::{Example, Split, embed_all, load_examples};

/// Difficulty buckets: thirds of the [0, 1] scale.
pub const DIFFICULTY_CUTS: DifficultyCuts = DifficultyCuts {
    easy_below: 1.0 / 3.0,
    hard_from: 2.0 / 3.0,
};

/// Sources whose scores are preferences against a reference model rather than
/// correctness; their "difficulty" measures the reference, not the prompt, so the
/// difficulty head does not train on them.
pub const RELATIVE_SCORE_SOURCES: &[&str] = &["alpacaeval"];

/// Most training examples per task class (seeded subsample, seeds always kept), and per
/// split for the rest:
/// keeps the 16k MMLU-style prompts from drowning the rest and bounds embedding time (the
/// difficulty head trains on the same prompts, those with correctness outcomes).
const PER_CLASS_TRAIN_CAP: usize = 1000;
const PER_CLASS_EVAL_CAP: usize = 200;
/// Most prompts with outcomes the difficulty head trains (or validates) on.
const DIFFICULTY_CAP: usize = 20_000;

/// What to train on and where to write.
#[derive(Debug, Clone)]
pub struct TrainRequest {
    pub data: Vec<PathBuf>,
    /// Source families (`routerbench`, `seed`, ...) to leave out entirely.
    pub exclude_sources: Vec<String>,
    pub out: PathBuf,
    pub cache_dir: PathBuf,
    pub config: TrainConfig,
}

/// One row of the final metrics table.
#[derive(Debug, Clone, serde::Serialize)]
pub struct HeadReport {
    pub kind: TaskHeadKind,
    pub validation_macro_f1: f64,
    pub validation_accuracy: f64,
    pub epochs: usize,
}

/// Everything `train classifier` reports.
#[derive(Debug, Clone, serde::Serialize)]
pub struct TrainReport {
    pub examples: BTreeMap<String, usize>,
    pub candidates: Vec<HeadReport>,
    pub chosen: TaskHeadKind,
    pub test_task_macro_f1: f64,
    pub test_task_accuracy: f64,
    pub test_examples: usize,
    /// Held-out F1 per task class.
    pub test_class_f1: BTreeMap<TaskClass, f64>,
    pub difficulty_validation_mae: f64,
    pub test_difficulty_spearman: f64,
    pub test_difficulty_mae: f64,
    pub test_difficulty_examples: usize,
}

#[derive(Debug, thiserror::Error)]
pub enum TrainError {
    #[error(transparent)]
    Records(#[from] switchyard_core::RecordError),
    #[error(transparent)]
    Embed(#[from] crate::data::EmbedAllError),
    #[error("training failed: {0}")]
    Candle(#[from] candle_core::Error),
    #[error("{}", path.display())]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("not enough labelled data: {0}")]
    NotEnoughData(String),
    #[error("the trained heads cannot be reloaded: {0}")]
    Heads(#[from] switchyard_embed::heads::HeadsError),
}

/// Progress bars for each phase, provided by the caller (hidden in tests).
pub trait Phases {
    fn phase(&self, name: &str) -> ProgressBar;
}

fn with_difficulty<'a>(items: &[&'a Example]) -> Vec<&'a Example> {
    items
        .iter()
        .copied()
        .filter(|e| e.difficulty.is_some() && !RELATIVE_SCORE_SOURCES.contains(&e.family.as_str()))
        .collect()
}

fn cap_per_class<'a>(
    examples: Vec<&'a Example>,
    cap: usize,
    rng: &mut SplitMix,
) -> Vec<&'a Example> {
    let mut by_class: BTreeMap<TaskClass, Vec<&Example>> = BTreeMap::new();
    for e in examples {
        if let Some(t) = e.task {
            by_class.entry(t).or_default().push(e);
        }
    }
    let mut out = Vec::new();
    for (_, mut items) in by_class {
        rng.shuffle(&mut items);
        // Hand-labelled seeds are few and clean: keep them all, fill up with the rest.
        items.sort_by_key(|e| e.family != "seed");
        items.truncate(cap);
        out.extend(items);
    }
    out
}

pub fn train_classifier(
    request: &TrainRequest,
    encoder: &SentenceEncoder,
    phases: &dyn Phases,
) -> Result<(TrainReport, HeadsManifest), TrainError> {
    let (examples, data_files) = load_examples(&request.data)?;
    let examples: Vec<Example> = examples
        .into_iter()
        .filter(|e| !request.exclude_sources.contains(&e.family))
        .collect();
    let mut rng = SplitMix::new(request.config.seed);
    let in_split = |split: Split| examples.iter().filter(move |e| e.split == split);
    let task_train = cap_per_class(
        in_split(Split::Train).collect(),
        PER_CLASS_TRAIN_CAP,
        &mut rng,
    );
    let task_val = cap_per_class(
        in_split(Split::Validation).collect(),
        PER_CLASS_EVAL_CAP,
        &mut rng,
    );
    let task_test = cap_per_class(
        in_split(Split::Test).collect(),
        PER_CLASS_EVAL_CAP,
        &mut rng,
    );
    // The difficulty head learns from every prompt with outcomes (up to a cap), not only
    // the class-capped task sample: it needs the spread of outcomes, not class balance.
    // The held-out measurement stays on the class-capped test sample.
    let mut all_with_difficulty = |split: Split| {
        let mut items = with_difficulty(&in_split(split).collect::<Vec<_>>());
        rng.shuffle(&mut items);
        items.truncate(DIFFICULTY_CAP);
        items
    };
    let diff_train = all_with_difficulty(Split::Train);
    let diff_val = all_with_difficulty(Split::Validation);
    let diff_test = with_difficulty(&task_test);
    if task_train.len() < 50 || task_val.is_empty() || diff_train.len() < 50 || diff_val.is_empty()
    {
        return Err(TrainError::NotEnoughData(format!(
            "{} task-labelled training prompts ({} validation), {} with outcomes ({} validation); need at least 50 of each kind in training",
            task_train.len(),
            task_val.len(),
            diff_train.len(),
            diff_val.len()
        )));
    }

    // Embed everything once, through the cache.
    let all: Vec<&Example> = [
        &task_train,
        &task_val,
        &task_test,
        &diff_train,
        &diff_val,
        &diff_test,
    ]
    .into_iter()
    .flatten()
    .copied()
    .collect();
    let texts: Vec<&str> = all.iter().map(|e| e.text.as_str()).collect();
    let mut cache = EmbeddingCache::open(&request.cache_dir, encoder.info()).map_err(|source| {
        TrainError::Io {
            path: request.cache_dir.clone(),
            source,
        }
    })?;
    let vectors = embed_all(&texts, encoder, &mut cache, &phases.phase("embedding"))?;
    let by_id: HashMap<&str, &[f32]> = all
        .iter()
        .map(|e| e.id.as_str())
        .zip(vectors.iter().map(Vec::as_slice))
        .collect();
    let head_data = |items: &[&Example]| -> candle_core::Result<HeadData> {
        let x: Vec<&[f32]> = items.iter().map(|e| by_id[e.id.as_str()]).collect();
        let y = items
            .iter()
            .map(|e| e.task.map_or(0, |t| t.index() as u32))
            .collect();
        HeadData::new(&x, y)
    };
    let (train, val) = (head_data(&task_train)?, head_data(&task_val)?);

    // Task head: linear vs MLP, keep the better on validation.
    let config = &request.config;
    let linear = train_task_head(
        TaskHeadKind::Linear,
        &train,
        &val,
        config,
        &phases.phase("task head (linear)"),
    )?;
    let mlp = train_task_head(
        TaskHeadKind::Mlp {
            hidden: config.mlp_hidden,
        },
        &train,
        &val,
        config,
        &phases.phase("task head (mlp)"),
    )?;
    let candidates: Vec<HeadReport> = [&linear, &mlp]
        .iter()
        .map(|t| HeadReport {
            kind: t.kind,
            validation_macro_f1: t.validation_macro_f1,
            validation_accuracy: t.validation_accuracy,
            epochs: t.epochs,
        })
        .collect();
    let chosen = if mlp.validation_macro_f1 > linear.validation_macro_f1 {
        mlp
    } else {
        linear
    };

    // Difficulty head.
    let tensor_of = |items: &[&Example]| -> candle_core::Result<(Tensor, Vec<f32>)> {
        let flat: Vec<f32> = items
            .iter()
            .flat_map(|e| by_id[e.id.as_str()].iter().copied())
            .collect();
        let dim = encoder.info().dim;
        let y = items
            .iter()
            .map(|e| e.difficulty.unwrap_or(0.0) as f32)
            .collect();
        Ok((Tensor::from_vec(flat, (items.len(), dim), &Device::Cpu)?, y))
    };
    let (dx_train, dy_train) = tensor_of(&diff_train)?;
    let (dx_val, dy_val) = tensor_of(&diff_val)?;
    let difficulty = train_difficulty_head(
        &dx_train,
        &dy_train,
        &dx_val,
        &dy_val,
        config,
        &phases.phase("difficulty head"),
    )?;

    // Save, then reload through the inference path and measure on the held-out split, so
    // the reported numbers are the shipped artifact's.
    let mut weights = chosen.weights.clone();
    weights.extend(difficulty.weights.clone());
    fs_err::create_dir_all(&request.out).map_err(|source| TrainError::Io {
        path: request.out.clone(),
        source,
    })?;
    candle_core::safetensors::save(&weights, request.out.join(HEADS_WEIGHTS_FILE))?;
    let mut manifest = HeadsManifest {
        format_version: HEADS_FORMAT_VERSION,
        encoder: encoder.info().clone(),
        labels: TaskClass::ALL.to_vec(),
        task_head: chosen.kind,
        difficulty_cuts: DIFFICULTY_CUTS,
        training_data: data_files,
        metrics: serde_json::Value::Null,
        seed: config.seed,
        created_at: now_rfc3339(),
    };
    write_manifest(&request.out, &manifest)?;
    let heads = switchyard_embed::heads::ClassifierHeads::load(&request.out, encoder.info())?;

    let test_vectors: Vec<Vec<f32>> = task_test
        .iter()
        .map(|e| by_id[e.id.as_str()].to_vec())
        .collect();
    let predicted = heads.classify(&test_vectors)?;
    let confusion = Confusion::new(
        TaskClass::ALL.len(),
        task_test
            .iter()
            .zip(&predicted)
            .map(|(e, p)| (e.task.map_or(0, TaskClass::index), p.task.index())),
    );
    let diff_vectors: Vec<Vec<f32>> = diff_test
        .iter()
        .map(|e| by_id[e.id.as_str()].to_vec())
        .collect();
    let diff_pred: Vec<f64> = heads
        .classify(&diff_vectors)?
        .iter()
        .map(|c| f64::from(c.difficulty))
        .collect();
    let diff_true: Vec<f64> = diff_test
        .iter()
        .map(|e| e.difficulty.unwrap_or(0.0))
        .collect();

    let mut counts = BTreeMap::new();
    counts.insert("task_train".to_owned(), task_train.len());
    counts.insert("task_validation".to_owned(), task_val.len());
    counts.insert("task_test".to_owned(), task_test.len());
    counts.insert("difficulty_train".to_owned(), diff_train.len());
    counts.insert("difficulty_validation".to_owned(), diff_val.len());
    counts.insert("difficulty_test".to_owned(), diff_test.len());
    let report = TrainReport {
        examples: counts,
        candidates,
        chosen: chosen.kind,
        test_task_macro_f1: confusion.macro_f1(),
        test_task_accuracy: confusion.accuracy(),
        test_examples: task_test.len(),
        test_class_f1: TaskClass::ALL
            .iter()
            .map(|&c| (c, confusion.class_scores(c.index()).f1))
            .collect(),
        difficulty_validation_mae: difficulty.validation_mae,
        test_difficulty_spearman: spearman(&diff_pred, &diff_true),
        test_difficulty_mae: mean_absolute_error(&diff_pred, &diff_true),
        test_difficulty_examples: diff_test.len(),
    };
    manifest.metrics = serde_json::to_value(&report).unwrap_or(serde_json::Value::Null);
    write_manifest(&request.out, &manifest)?;
    Ok((report, manifest))
}

fn write_manifest(dir: &Path, manifest: &HeadsManifest) -> Result<(), TrainError> {
    let path = dir.join(MANIFEST_FILE);
    let text = serde_json::to_string_pretty(manifest).unwrap_or_default();
    fs_err::write(&path, text + "\n").map_err(|source| TrainError::Io { path, source })
}

/// The current UTC time as RFC 3339, without a date-time dependency.
pub fn now_rfc3339() -> String {
    let secs = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    let days = (secs / 86_400) as i64;
    let rem = secs % 86_400;
    // Civil-from-days (H. Hinnant).
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!(
        "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}Z",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60
    )
}
