//! `train scorer` end to end: routing records → prompts with merged outcomes → cached
//! embeddings → classifier features → per-model quality models (two linfa families
//! compared on validation) and usage tables → artifact (`models/scorer`).
//!
//! The split is the same prompt-hash split as the classifier's: the scorer fits on
//! `train`, picks its family on `validation`, and never sees `test`, which `eval routing`
//! uses.

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};

use indicatif::ProgressBar;
use switchyard_core::{DataFile, Outcome, RecordError, read_records};
use switchyard_embed::SentenceEncoder;
use switchyard_embed::heads::ClassifierHeads;
use switchyard_embed::sha256_file;
use switchyard_scorer::{
    Clusters, Family, ModelSummary, PromptFeatures, QualityConfig, SCORER_FORMAT_VERSION,
    ScoredModel, Scorer, ScorerManifest, TrainingRow, Usage, fit_all, fit_kmeans,
};

use crate::cache::{EmbeddingCache, text_key};
use crate::data::{EmbedAllError, Split, embed_all, normalise, split_of};
use crate::train::{Phases, now_rfc3339};

/// One prompt with every outcome recorded for it, across files and sources.
#[derive(Debug, Clone)]
pub struct RoutedPrompt {
    pub id: String,
    /// Source family of the first record (`routerbench`, ...).
    pub family: String,
    pub text: String,
    pub split: Split,
    pub outcomes: BTreeMap<String, Outcome>,
    /// The router's view: embedding, task probabilities, difficulty, estimated length.
    pub features: PromptFeatures,
    /// Prompt tokens for cost: the data's real count when it has one, else the estimate.
    pub input_tokens: u64,
    pub embedding: Vec<f32>,
}

impl RoutedPrompt {
    /// Models with a score for this prompt and their scores.
    pub fn scores(&self) -> BTreeMap<String, f64> {
        self.outcomes
            .iter()
            .filter_map(|(m, o)| o.score.map(|s| (m.clone(), s)))
            .collect()
    }
}

/// A prompt as read from record files, before featurising.
#[derive(Debug, Clone)]
pub struct LoadedPrompt {
    pub id: String,
    pub family: String,
    pub text: String,
    pub outcomes: BTreeMap<String, Outcome>,
}

#[derive(Debug, thiserror::Error)]
pub enum ScorerTrainError {
    #[error(transparent)]
    Records(#[from] RecordError),
    #[error(transparent)]
    Embed(#[from] EmbedAllError),
    #[error(transparent)]
    Heads(#[from] switchyard_embed::heads::HeadsError),
    #[error(transparent)]
    Fit(#[from] switchyard_scorer::QualityError),
    #[error(transparent)]
    Scorer(#[from] switchyard_scorer::ScorerError),
    #[error(transparent)]
    Router(#[from] switchyard_router::RouterError),
    #[error("{}: {source}", path.display())]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("not enough data: {0}")]
    NotEnoughData(String),
}

/// Reads routing-record files, merges records of the same prompt (outcomes of every
/// model, the first record's id and source), and keeps prompts with at least one score.
pub fn load_routed(
    files: &[PathBuf],
) -> Result<(Vec<LoadedPrompt>, Vec<DataFile>), ScorerTrainError> {
    let mut index: HashMap<[u8; 16], usize> = HashMap::new();
    let mut prompts: Vec<LoadedPrompt> = Vec::new();
    let mut data_files = Vec::new();
    for file in files {
        let records = read_records(file)?;
        data_files.push(DataFile {
            path: file
                .file_name()
                .map(|n| n.to_string_lossy().into_owned())
                .unwrap_or_default(),
            sha256: sha256_file(file).map_err(|e| ScorerTrainError::Io {
                path: file.clone(),
                source: std::io::Error::other(e.to_string()),
            })?,
            records: records.len(),
        });
        for record in records {
            let scored: BTreeMap<String, Outcome> = record
                .outcomes
                .iter()
                .filter(|(_, o)| o.score.is_some_and(f64::is_finite))
                .map(|(m, o)| (m.clone(), o.clone()))
                .collect();
            if scored.is_empty() {
                continue;
            }
            let text = record.text().to_owned();
            let key = text_key(&normalise(&text));
            match index.get(&key) {
                Some(&i) => {
                    for (m, o) in scored {
                        prompts[i].outcomes.entry(m).or_insert(o);
                    }
                }
                None => {
                    index.insert(key, prompts.len());
                    let family = record.source.split(':').next().unwrap_or("").to_owned();
                    prompts.push(LoadedPrompt {
                        id: record.id,
                        family,
                        text,
                        outcomes: scored,
                    });
                }
            }
        }
    }
    Ok((prompts, data_files))
}

/// Embeds (through the cache) and featurises every prompt exactly as the router does when
/// it serves ([`switchyard_router::featurize`]): the length feature is the estimate of the
/// text, whatever the data's real token counts; those only size the cost.
pub fn featurise(
    prompts: Vec<LoadedPrompt>,
    encoder: &SentenceEncoder,
    heads: &ClassifierHeads,
    cache_dir: &Path,
    progress: &ProgressBar,
) -> Result<Vec<RoutedPrompt>, ScorerTrainError> {
    let mut cache =
        EmbeddingCache::open(cache_dir, encoder.info()).map_err(|source| ScorerTrainError::Io {
            path: cache_dir.to_path_buf(),
            source,
        })?;
    let texts: Vec<&str> = prompts.iter().map(|p| p.text.as_str()).collect();
    let vectors = embed_all(&texts, encoder, &mut cache, progress)?;
    let featurised = switchyard_router::featurize(heads, &vectors, &texts)?;
    Ok(prompts
        .into_iter()
        .zip(vectors)
        .zip(featurised)
        .map(|((prompt, embedding), routed)| {
            let LoadedPrompt {
                id,
                family,
                text,
                outcomes,
            } = prompt;
            let input_tokens = outcomes
                .values()
                .find_map(|o| o.input_tokens)
                .unwrap_or(routed.estimated_tokens);
            RoutedPrompt {
                features: routed.prompt,
                input_tokens,
                split: split_of(&text),
                embedding,
                id,
                family,
                text,
                outcomes,
            }
        })
        .collect())
}

/// What to train on and where to write.
#[derive(Debug, Clone)]
pub struct ScorerRequest {
    pub data: Vec<PathBuf>,
    /// Source families to leave out entirely (leave-source-out experiments).
    pub exclude_sources: Vec<String>,
    pub heads_dir: PathBuf,
    pub out: PathBuf,
    pub cache_dir: PathBuf,
    /// Configurations compared on validation; the best is kept.
    pub grid: Vec<QualityConfig>,
    /// Pseudo-count of the prior (0.5) in every model's mean score ([`QualityConfig`]):
    /// what lets a few logged outcomes of a model no benchmark has move its estimate
    /// without deciding it. `None`: [`TRAFFIC_PRIOR_WEIGHT`] when the data has logged
    /// traffic, else 0.
    pub prior_weight: Option<f64>,
    /// Each logged-traffic prompt counts this many times next to benchmark prompts (≥ 1):
    /// a deployment's own traffic says more about its models and users than a benchmark.
    pub traffic_weight: usize,
}

/// The prior's pseudo-count when training on logged traffic.
pub const TRAFFIC_PRIOR_WEIGHT: f64 = 10.0;

/// Below this many training prompts (or without validation prompts) the grid is not
/// compared: its first configuration without clusters is fitted, shrunk toward the prior.
pub const SMALL_DATA: usize = 50;

/// Prompt clusters whose memberships the default grid adds to the features.
pub const DEFAULT_CLUSTERS: usize = 48;

/// The default comparison: two linfa families, each at a few regularisation strengths,
/// with and without cluster-membership features.
pub fn default_grid() -> Vec<QualityConfig> {
    let logistic = [30.0, 300.0].map(|alpha| Family::Logistic { alpha });
    let elastic = [0.01, 0.03].map(|penalty| Family::ElasticNet {
        penalty,
        l1_ratio: 0.5,
    });
    [0, DEFAULT_CLUSTERS]
        .into_iter()
        .flat_map(|clusters| {
            logistic
                .into_iter()
                .chain(elastic)
                .map(move |family| QualityConfig {
                    family,
                    clusters,
                    ..QualityConfig::default()
                })
        })
        .collect()
}

/// The pooled family ([`switchyard_scorer::pooled`]) with and without cluster features,
/// at two strengths each for the shared and the per-model part: for logged traffic, where
/// each prompt has one model's outcome ([`train_scorer`] adds it to a grid without it when
/// the data has traffic). Its penalties replace the mean shrinkage (0 here).
pub fn pooled_grid() -> Vec<QualityConfig> {
    let mut grid = Vec::new();
    for clusters in [0, DEFAULT_CLUSTERS] {
        for shared in [3_000.0, 30_000.0] {
            for deviation in [3_000.0, 30_000.0] {
                grid.push(QualityConfig {
                    family: Family::Pooled {
                        shared,
                        deviation,
                        offset: 10.0,
                    },
                    clusters,
                    shrinkage: 0.0,
                    ..QualityConfig::default()
                });
            }
        }
    }
    grid
}

/// The configurations to compare: `grid` with the prior applied; on small data only the
/// first one without clusters (nothing to compare them on).
fn grid_for(
    grid: &[QualityConfig],
    prior_weight: f64,
    train: usize,
    validation: usize,
) -> Vec<QualityConfig> {
    let with_prior = grid.iter().map(|c| QualityConfig { prior_weight, ..*c });
    if train >= SMALL_DATA && validation > 0 {
        return with_prior.collect();
    }
    let mut small: Vec<QualityConfig> = with_prior.filter(|c| c.clusters == 0).take(1).collect();
    if small.is_empty() {
        small.push(QualityConfig {
            prior_weight,
            ..QualityConfig::default()
        });
    }
    small
}

/// Prompt features followed by cluster memberships.
fn expand(clusters: Option<&Clusters>, p: &RoutedPrompt) -> Vec<f64> {
    let mut x = p.features.features.clone();
    if let Some(c) = clusters {
        x.extend(c.memberships(&p.embedding));
    }
    x
}

/// One configuration's validation result.
#[derive(Debug, Clone, serde::Serialize)]
pub struct Candidate {
    pub config: QualityConfig,
    pub family: String,
    /// Mean squared error of predicted quality against the score over every
    /// (prompt, model) pair of the validation split.
    pub validation_brier: f64,
    /// The same per source family.
    pub validation_brier_by_source: BTreeMap<String, f64>,
    pub fit_seconds: f64,
}

/// What `train scorer` reports.
#[derive(Debug, Clone, serde::Serialize)]
pub struct ScorerReport {
    pub prompts: BTreeMap<String, usize>,
    pub models: usize,
    pub candidates: Vec<Candidate>,
    pub chosen: QualityConfig,
    /// Brier of the chosen scorer on the held-out test split.
    pub test_brier: f64,
    /// Brier of predicting each model's training mean: the bar a useful scorer clears.
    pub test_brier_model_mean: f64,
}

/// Mean squared error of `predict` over every scored (prompt, model) pair.
pub fn brier(
    prompts: &[&RoutedPrompt],
    predict: impl Fn(&RoutedPrompt, &str) -> Option<f64>,
) -> f64 {
    let (mut sum, mut n) = (0.0, 0usize);
    for p in prompts {
        for (model, score) in p.scores() {
            if let Some(q) = predict(p, &model) {
                sum += (q - score).powi(2);
                n += 1;
            }
        }
    }
    sum / n.max(1) as f64
}

/// The featurised prompts by split.
struct Splits<'a> {
    train: Vec<&'a RoutedPrompt>,
    validation: Vec<&'a RoutedPrompt>,
    test: Vec<&'a RoutedPrompt>,
}

impl<'a> Splits<'a> {
    fn of(routed: &'a [RoutedPrompt]) -> Self {
        let in_split = |s: Split| routed.iter().filter(|p| p.split == s).collect();
        Self {
            train: in_split(Split::Train),
            validation: in_split(Split::Validation),
            test: in_split(Split::Test),
        }
    }

    fn counts(&self) -> BTreeMap<String, usize> {
        [
            ("train".to_owned(), self.train.len()),
            ("validation".to_owned(), self.validation.len()),
            ("test".to_owned(), self.test.len()),
        ]
        .into()
    }
}

/// The grid's winner on validation, fitted on the training split.
struct Fitted {
    candidates: Vec<Candidate>,
    chosen: QualityConfig,
    quality: BTreeMap<String, switchyard_scorer::ModelQuality>,
    clusters: Option<Clusters>,
    feature_dim: usize,
}

/// Trains a scorer on `request.data`: every configuration of the grid fitted on the
/// training split and compared by validation Brier, the best kept with usage tables from
/// the training prompts, tested on the test split, saved to `request.out` and reloaded
/// through the inference path (what was reported is what ships).
pub fn train_scorer(
    request: &ScorerRequest,
    encoder: &SentenceEncoder,
    heads: &ClassifierHeads,
    phases: &dyn Phases,
) -> Result<(ScorerReport, Scorer), ScorerTrainError> {
    let (prompts, data_files) = load_routed(&request.data)?;
    let prompts: Vec<_> = prompts
        .into_iter()
        .filter(|p| !request.exclude_sources.contains(&p.family))
        .collect();
    let routed = featurise(
        prompts,
        encoder,
        heads,
        &request.cache_dir,
        &phases.phase("embedding"),
    )?;
    let splits = Splits::of(&routed);
    if splits.train.is_empty() {
        return Err(ScorerTrainError::NotEnoughData(format!(
            "no training prompt with a score among {} prompts ({} validation, {} test); import traffic with feedback (`datasets import --from traffic --feedback ...`) or add benchmark records",
            routed.len(),
            splits.validation.len(),
            splits.test.len()
        )));
    }
    let grid = effective_grid(request, &routed, &splits);
    let fitted = fit_grid(request, &grid, &splits, phases)?;
    let models = with_usage(fitted.quality, &splits.train);
    let manifest = ScorerManifest {
        format_version: SCORER_FORMAT_VERSION,
        encoder: encoder.info().clone(),
        // The heads whose outputs were features here, not whatever the directory holds now.
        heads_sha256: heads.weights_sha256().to_owned(),
        feature_dim: fitted.feature_dim,
        quality: fitted.chosen,
        models: summaries(&models),
        training_data: data_files,
        metrics: serde_json::Value::Null,
        created_at: now_rfc3339(),
    };
    let mut scorer = Scorer::new(manifest, fitted.clusters, models);
    let report = test_report(&scorer, &splits, fitted.candidates, fitted.chosen);
    scorer.manifest.metrics = serde_json::to_value(&report).unwrap_or_default();
    scorer.save(&request.out)?;
    let reloaded = Scorer::load(&request.out, encoder.info())?;
    Ok((report, reloaded))
}

/// The request's grid with the prior applied, the pooled family added for traffic, and cut
/// to one configuration on small data.
fn effective_grid(
    request: &ScorerRequest,
    routed: &[RoutedPrompt],
    splits: &Splits,
) -> Vec<QualityConfig> {
    let has_traffic = routed.iter().any(|p| p.family == "traffic");
    let prior_weight = request.prior_weight.unwrap_or(if has_traffic {
        TRAFFIC_PRIOR_WEIGHT
    } else {
        0.0
    });
    let mut grid = request.grid.clone();
    if has_traffic
        && !grid
            .iter()
            .any(|c| matches!(c.family, Family::Pooled { .. }))
    {
        grid.extend(pooled_grid());
    }
    grid_for(
        &grid,
        prior_weight,
        splits.train.len(),
        splits.validation.len(),
    )
}

/// Fits every configuration on the training split and keeps the one with the lowest
/// validation Brier.
fn fit_grid(
    request: &ScorerRequest,
    grid: &[QualityConfig],
    splits: &Splits,
    phases: &dyn Phases,
) -> Result<Fitted, ScorerTrainError> {
    let cluster_sets = cluster_sets(grid, &splits.train);
    let bar = phases.phase("fitting quality models");
    bar.set_length(grid.len() as u64);
    let mut candidates = Vec::new();
    let mut best: Option<(f64, Fitted)> = None;
    for config in grid {
        bar.set_message(format!("{} + {} clusters", config.family, config.clusters));
        let clusters = cluster_sets.get(&config.clusters).cloned().flatten();
        let rows = training_rows(request, &splits.train, clusters.as_ref());
        let started = std::time::Instant::now();
        let quality = fit_all(&rows, config)?;
        let fit_seconds = started.elapsed().as_secs_f64();
        let candidate = validate(
            config,
            &quality,
            clusters.as_ref(),
            &splits.validation,
            fit_seconds,
        );
        if best
            .as_ref()
            .is_none_or(|(b, _)| candidate.validation_brier < *b)
        {
            let fitted = Fitted {
                candidates: Vec::new(),
                chosen: *config,
                quality,
                clusters,
                feature_dim: rows.first().map_or(0, |r| r.features.len()),
            };
            best = Some((candidate.validation_brier, fitted));
        }
        candidates.push(candidate);
        bar.inc(1);
    }
    bar.finish_and_clear();
    let (_, mut best) = best.ok_or_else(|| {
        ScorerTrainError::NotEnoughData("no scorer configuration to try".to_owned())
    })?;
    best.candidates = candidates;
    Ok(best)
}

/// k-means clusters of the training embeddings for each cluster count in the grid.
fn cluster_sets(
    grid: &[QualityConfig],
    train: &[&RoutedPrompt],
) -> BTreeMap<usize, Option<Clusters>> {
    let embeddings: Vec<&[f32]> = train.iter().map(|p| p.embedding.as_slice()).collect();
    let mut sets = BTreeMap::new();
    for config in grid {
        sets.entry(config.clusters).or_insert_with(|| {
            (config.clusters > 0).then(|| fit_kmeans(&embeddings, config.clusters, 17, 20))
        });
    }
    sets
}

/// One row per training prompt (a logged-traffic prompt repeated `traffic_weight` times).
fn training_rows(
    request: &ScorerRequest,
    train: &[&RoutedPrompt],
    clusters: Option<&Clusters>,
) -> Vec<TrainingRow> {
    train
        .iter()
        .flat_map(|p| {
            let row = TrainingRow {
                features: expand(clusters, p),
                scores: p.scores(),
            };
            let repeat = if p.family == "traffic" {
                request.traffic_weight.max(1)
            } else {
                1
            };
            std::iter::repeat_n(row, repeat)
        })
        .collect()
}

/// A fitted configuration's validation Brier, overall and per source family.
fn validate(
    config: &QualityConfig,
    quality: &BTreeMap<String, switchyard_scorer::ModelQuality>,
    clusters: Option<&Clusters>,
    validation: &[&RoutedPrompt],
    fit_seconds: f64,
) -> Candidate {
    let predict = |p: &RoutedPrompt, m: &str| {
        quality
            .get(m)
            .map(|q| q.predict(&expand(clusters, p), config.shrinkage))
    };
    let mut by_source: BTreeMap<String, Vec<&RoutedPrompt>> = BTreeMap::new();
    for p in validation {
        by_source.entry(p.family.clone()).or_default().push(p);
    }
    Candidate {
        config: *config,
        family: config.family.name().to_owned(),
        validation_brier: brier(validation, predict),
        validation_brier_by_source: by_source
            .iter()
            .map(|(s, ps)| (s.clone(), brier(ps, predict)))
            .collect(),
        fit_seconds,
    }
}

/// Each model's quality model with its output-token and cost tables from the training
/// prompts.
fn with_usage(
    quality: BTreeMap<String, switchyard_scorer::ModelQuality>,
    train: &[&RoutedPrompt],
) -> BTreeMap<String, ScoredModel> {
    let mut usage: BTreeMap<String, Usage> = BTreeMap::new();
    for p in train {
        for (m, o) in &p.outcomes {
            let u = usage.entry(m.clone()).or_default();
            if let Some(t) = o.output_tokens {
                u.output_tokens.add(p.features.task, t as f64);
            }
            if let Some(c) = o.cost_usd {
                u.cost_usd.add(p.features.task, c);
            }
        }
    }
    quality
        .into_iter()
        .map(|(m, quality)| {
            let usage = usage.remove(&m).unwrap_or_default();
            (m, ScoredModel { quality, usage })
        })
        .collect()
}

/// What the manifest says of each model's data.
fn summaries(models: &BTreeMap<String, ScoredModel>) -> BTreeMap<String, ModelSummary> {
    models
        .iter()
        .map(|(m, s)| {
            (
                m.clone(),
                ModelSummary {
                    samples: s.quality.samples,
                    mean_score: s.quality.mean,
                    output_token_samples: s.usage.output_tokens.overall.n,
                    cost_samples: s.usage.cost_usd.overall.n,
                },
            )
        })
        .collect()
}

/// The report: the grid's validation results and the chosen scorer's test Brier next to
/// predicting each model's training mean.
fn test_report(
    scorer: &Scorer,
    splits: &Splits,
    candidates: Vec<Candidate>,
    chosen: QualityConfig,
) -> ScorerReport {
    let test_brier = brier(&splits.test, |p, m| {
        scorer.models.get(m).map(|s| {
            s.quality
                .predict(&scorer.expand(&p.features.features), chosen.shrinkage)
        })
    });
    let test_brier_model_mean = brier(&splits.test, |_, m| {
        scorer.models.get(m).map(|s| s.quality.mean)
    });
    ScorerReport {
        prompts: splits.counts(),
        models: scorer.models.len(),
        candidates,
        chosen,
        test_brier,
        test_brier_model_mean,
    }
}
