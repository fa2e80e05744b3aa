//! `train classifier` end to end: records → examples → cached embeddings → heads →
//! held-out metrics → artifact (heads.safetensors + manifest.json).

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};

use candle_core::{Device, Tensor};
use indicatif::ProgressBar;
use switchyard_core::metrics::{Confusion, mean_absolute_error, spearman};
use switchyard_core::{DataFile, DifficultyCuts, TaskClass};
use switchyard_embed::SentenceEncoder;
use switchyard_embed::heads::{
    ClassifierHeads, HEADS_FORMAT_VERSION, HEADS_WEIGHTS_FILE, HeadsManifest, MANIFEST_FILE,
    TaskHeadKind,
};

use crate::cache::EmbeddingCache;
use crate::classifier::{
    DifficultyTraining, HeadData, SplitMix, TaskTraining, TrainConfig, train_difficulty_head,
    train_task_head,
};
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

/// The examples each head trains, validates and is tested on.
struct Samples<'a> {
    task_train: Vec<&'a Example>,
    task_val: Vec<&'a Example>,
    task_test: Vec<&'a Example>,
    diff_train: Vec<&'a Example>,
    diff_val: Vec<&'a Example>,
    diff_test: Vec<&'a Example>,
}

impl<'a> Samples<'a> {
    /// Class-capped task samples per split; the difficulty head learns from every prompt
    /// with outcomes (up to a cap), not only the class-capped task sample: it needs the
    /// spread of outcomes, not class balance. Its held-out measurement stays on the
    /// class-capped test sample.
    fn draw(examples: &'a [Example], seed: u64) -> Result<Self, TrainError> {
        let mut rng = SplitMix::new(seed);
        let in_split = |split: Split| examples.iter().filter(move |e| e.split == split);
        let mut capped =
            |split: Split, cap: usize| cap_per_class(in_split(split).collect(), cap, &mut rng);
        let task_train = capped(Split::Train, PER_CLASS_TRAIN_CAP);
        let task_val = capped(Split::Validation, PER_CLASS_EVAL_CAP);
        let task_test = capped(Split::Test, PER_CLASS_EVAL_CAP);
        let mut all_with_difficulty = |split: Split| {
            let mut items = with_difficulty(&in_split(split).collect::<Vec<_>>());
            rng.shuffle(&mut items);
            items.truncate(DIFFICULTY_CAP);
            items
        };
        let samples = Samples {
            diff_train: all_with_difficulty(Split::Train),
            diff_val: all_with_difficulty(Split::Validation),
            diff_test: with_difficulty(&task_test),
            task_train,
            task_val,
            task_test,
        };
        samples.check()?;
        Ok(samples)
    }

    fn check(&self) -> Result<(), TrainError> {
        if self.task_train.len() < 50
            || self.task_val.is_empty()
            || self.diff_train.len() < 50
            || self.diff_val.is_empty()
        {
            return Err(TrainError::NotEnoughData(format!(
                "{} task-labelled training prompts ({} validation), {} with outcomes ({} validation); need at least 50 of each kind in training",
                self.task_train.len(),
                self.task_val.len(),
                self.diff_train.len(),
                self.diff_val.len()
            )));
        }
        Ok(())
    }

    fn all(&self) -> impl Iterator<Item = &'a Example> + '_ {
        [
            &self.task_train,
            &self.task_val,
            &self.task_test,
            &self.diff_train,
            &self.diff_val,
            &self.diff_test,
        ]
        .into_iter()
        .flatten()
        .copied()
    }

    fn counts(&self) -> BTreeMap<String, usize> {
        [
            ("task_train", self.task_train.len()),
            ("task_validation", self.task_val.len()),
            ("task_test", self.task_test.len()),
            ("difficulty_train", self.diff_train.len()),
            ("difficulty_validation", self.diff_val.len()),
            ("difficulty_test", self.diff_test.len()),
        ]
        .into_iter()
        .map(|(k, n)| (k.to_owned(), n))
        .collect()
    }
}

/// Every sampled example's embedding, by id, computed once through the cache.
struct Embeddings<'a>(HashMap<&'a str, Vec<f32>>);

impl<'a> Embeddings<'a> {
    fn compute(
        samples: &Samples<'a>,
        request: &TrainRequest,
        encoder: &SentenceEncoder,
        phases: &dyn Phases,
    ) -> Result<Self, TrainError> {
        let all: Vec<&Example> = samples.all().collect();
        let texts: Vec<&str> = all.iter().map(|e| e.text.as_str()).collect();
        let mut cache =
            EmbeddingCache::open(&request.cache_dir, encoder.info()).map_err(|source| {
                TrainError::Io {
                    path: request.cache_dir.clone(),
                    source,
                }
            })?;
        let vectors = embed_all(&texts, encoder, &mut cache, &phases.phase("embedding"))?;
        Ok(Self(
            all.iter().map(|e| e.id.as_str()).zip(vectors).collect(),
        ))
    }

    fn of(&self, e: &Example) -> &[f32] {
        self.0.get(e.id.as_str()).map_or(&[], Vec::as_slice)
    }

    fn rows(&self, items: &[&Example]) -> Vec<Vec<f32>> {
        items.iter().map(|e| self.of(e).to_vec()).collect()
    }

    fn head_data(&self, items: &[&Example]) -> candle_core::Result<HeadData> {
        let x: Vec<&[f32]> = items.iter().map(|e| self.of(e)).collect();
        let y = items
            .iter()
            .map(|e| e.task.map_or(0, |t| t.index() as u32))
            .collect();
        HeadData::new(&x, y)
    }

    /// Embeddings as a tensor and difficulties as targets.
    fn difficulty_data(
        &self,
        items: &[&Example],
        dim: usize,
    ) -> candle_core::Result<(Tensor, Vec<f32>)> {
        let flat: Vec<f32> = items
            .iter()
            .flat_map(|e| self.of(e).iter().copied())
            .collect();
        let y = items
            .iter()
            .map(|e| e.difficulty.unwrap_or(0.0) as f32)
            .collect();
        Ok((Tensor::from_vec(flat, (items.len(), dim), &Device::Cpu)?, y))
    }
}

/// Task head: linear vs MLP, the better on validation macro-F1, and both candidates' rows.
fn task_head(
    samples: &Samples<'_>,
    embeddings: &Embeddings<'_>,
    config: &TrainConfig,
    phases: &dyn Phases,
) -> Result<(TaskTraining, Vec<HeadReport>), TrainError> {
    let train = embeddings.head_data(&samples.task_train)?;
    let val = embeddings.head_data(&samples.task_val)?;
    let fit = |kind: TaskHeadKind, phase: &str| {
        train_task_head(kind, &train, &val, config, &phases.phase(phase))
    };
    let linear = fit(TaskHeadKind::Linear, "task head (linear)")?;
    let mlp = fit(
        TaskHeadKind::Mlp {
            hidden: config.mlp_hidden,
        },
        "task head (mlp)",
    )?;
    let candidates = [&linear, &mlp]
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
    Ok((chosen, candidates))
}

fn difficulty_head(
    samples: &Samples<'_>,
    embeddings: &Embeddings<'_>,
    dim: usize,
    config: &TrainConfig,
    phases: &dyn Phases,
) -> Result<DifficultyTraining, TrainError> {
    let (x_train, y_train) = embeddings.difficulty_data(&samples.diff_train, dim)?;
    let (x_val, y_val) = embeddings.difficulty_data(&samples.diff_val, dim)?;
    Ok(train_difficulty_head(
        &x_train,
        &y_train,
        &x_val,
        &y_val,
        config,
        &phases.phase("difficulty head"),
    )?)
}

/// Writes both heads' weights and a manifest without metrics yet.
fn save_heads(
    request: &TrainRequest,
    encoder: &SentenceEncoder,
    task: &TaskTraining,
    difficulty: &DifficultyTraining,
    data_files: Vec<DataFile>,
) -> Result<HeadsManifest, TrainError> {
    let mut weights = task.weights.clone();
    weights.extend(difficulty.weights.clone());
    fs_err::create_dir_all(&request.out).map_err(|source| TrainError::Io {
        path: request.out.clone(),
        source,
    })?;
    candle_core::safetensors::save(&weights, request.out.join(HEADS_WEIGHTS_FILE))?;
    let manifest = HeadsManifest {
        format_version: HEADS_FORMAT_VERSION,
        encoder: encoder.info().clone(),
        labels: TaskClass::ALL.to_vec(),
        task_head: task.kind,
        difficulty_cuts: DIFFICULTY_CUTS,
        training_data: data_files,
        metrics: serde_json::Value::Null,
        seed: request.config.seed,
        created_at: now_rfc3339(),
    };
    write_manifest(&request.out, &manifest)?;
    Ok(manifest)
}

/// The held-out test figures of the heads as saved (reloaded through the inference path,
/// so the numbers are the shipped artifact's).
fn test_report(
    heads: &ClassifierHeads,
    samples: &Samples<'_>,
    embeddings: &Embeddings<'_>,
    trained: (&TaskTraining, Vec<HeadReport>, &DifficultyTraining),
) -> Result<TrainReport, TrainError> {
    let (task, candidates, difficulty) = trained;
    let predicted = heads.classify(&embeddings.rows(&samples.task_test))?;
    let confusion = Confusion::new(
        TaskClass::ALL.len(),
        samples
            .task_test
            .iter()
            .zip(&predicted)
            .map(|(e, p)| (e.task.map_or(0, TaskClass::index), p.task.index())),
    );
    let diff_pred: Vec<f64> = heads
        .classify(&embeddings.rows(&samples.diff_test))?
        .iter()
        .map(|c| f64::from(c.difficulty))
        .collect();
    let diff_true: Vec<f64> = samples
        .diff_test
        .iter()
        .map(|e| e.difficulty.unwrap_or(0.0))
        .collect();
    Ok(TrainReport {
        examples: samples.counts(),
        candidates,
        chosen: task.kind,
        test_task_macro_f1: confusion.macro_f1(),
        test_task_accuracy: confusion.accuracy(),
        test_examples: samples.task_test.len(),
        test_class_f1: TaskClass::ALL
            .iter()
            .map(|&c| (c, confusion.class_scores(c.index()).f1))
            .collect(),
        difficulty_validation_mae: difficulty.validation_mae,
        test_difficulty_spearman: spearman(&diff_pred, &diff_true),
        test_difficulty_mae: mean_absolute_error(&diff_pred, &diff_true),
        test_difficulty_examples: samples.diff_test.len(),
    })
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
    let samples = Samples::draw(&examples, request.config.seed)?;
    let embeddings = Embeddings::compute(&samples, request, encoder, phases)?;
    let config = &request.config;
    let (task, candidates) = task_head(&samples, &embeddings, config, phases)?;
    let dim = encoder.info().dim;
    let difficulty = difficulty_head(&samples, &embeddings, dim, config, phases)?;
    let mut manifest = save_heads(request, encoder, &task, &difficulty, data_files)?;
    let heads = ClassifierHeads::load(&request.out, encoder.info())?;
    let report = test_report(
        &heads,
        &samples,
        &embeddings,
        (&task, candidates, &difficulty),
    )?;
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
