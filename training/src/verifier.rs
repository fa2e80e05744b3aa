//! Trains the cache's hit verifier: a standardised logistic regression (linfa) on pair
//! features (`switchyard_cache::pair_features`) of labelled sentence pairs.
//!
//! Every pair is assigned a split by a hash of its two texts: train (80%) fits the model,
//! validation (10%) picks the L2 strength, test (10%) is never touched here — `switchyard
//! eval cache --split test` measures on it.

use std::collections::{BTreeMap, HashMap};
use std::path::PathBuf;

use indicatif::ProgressBar;
use linfa::prelude::*;
use linfa_logistic::LogisticRegression;
use ndarray::{Array1, Array2};
use switchyard_cache::guard::veto;
use switchyard_cache::verifier::{
    FEATURE_LAYOUT, PairSource, Verifier, VerifierManifest, VerifierModel,
};
use switchyard_cache::{Lexical, pair_features};
use switchyard_embed::SentenceEncoder;

use crate::cache::EmbeddingCache;
use crate::classifier::{SplitMix, restore, rows, seed_vars, snapshot};
use crate::data::{EmbedAllError, Split, embed_all};
use crate::pairs::{Pair, PairsError, load_pairs};

#[derive(Debug, Clone)]
pub struct VerifierRequest {
    pub pairs: Vec<PathBuf>,
    pub cache_dir: PathBuf,
    /// L2 strengths to try; the best validation AUC wins.
    pub alphas: Vec<f64>,
    pub max_iterations: u64,
    /// Hidden width of the MLP candidate; 0 = logistic regression only.
    pub mlp_hidden: usize,
    /// MLPs trained from different seeds and averaged (their logits); each has
    /// `mlp_hidden / mlp_seeds` hidden units, so the verifier's cost stays the same.
    pub mlp_seeds: usize,
    /// At most this many training pairs per file (a seeded subsample); 0 = all.
    pub max_train_pairs: usize,
}

#[derive(Debug, Clone, serde::Serialize)]
pub struct VerifierReport {
    /// Validation metrics per candidate model.
    pub grid: Vec<(String, BTreeMap<String, f64>)>,
    pub chosen: String,
    pub train_pairs: usize,
    pub validation: BTreeMap<String, f64>,
    /// The same metrics for plain cosine on the validation pairs, for comparison.
    pub cosine_validation: BTreeMap<String, f64>,
}

#[derive(Debug, thiserror::Error)]
pub enum VerifierTrainError {
    #[error(transparent)]
    Pairs(#[from] PairsError),
    #[error(transparent)]
    Embed(#[from] EmbedAllError),
    #[error("embedding cache {path}: {source}")]
    Cache {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{0}")]
    Data(String),
    #[error("logistic regression: {0}")]
    Fit(String),
}

/// Pairs with their features, ready to fit or score.
struct Featurised {
    x: Vec<Vec<f32>>,
    cosine: Vec<f32>,
    y: Vec<bool>,
    /// Whether the guard vetoes the pair: the cache never asks the verifier about it, so
    /// validation scores it as never served. (Training keeps these pairs: dropping them
    /// did no better on validation.)
    vetoed: Vec<bool>,
}

/// Scores as the cache would act on them: a vetoed pair is never served, whatever its
/// score.
fn served_scores(scores: impl IntoIterator<Item = f32>, vetoed: &[bool]) -> Vec<f32> {
    scores
        .into_iter()
        .zip(vetoed)
        .map(|(s, &v)| if v { f32::NEG_INFINITY } else { s })
        .collect()
}

fn featurise(pairs: &[&Pair], vectors: &HashMap<&str, Vec<f32>>) -> Featurised {
    let mut lex: HashMap<&str, Lexical> = HashMap::new();
    let mut out = Featurised {
        x: Vec::with_capacity(pairs.len()),
        cosine: Vec::with_capacity(pairs.len()),
        y: Vec::with_capacity(pairs.len()),
        vetoed: Vec::with_capacity(pairs.len()),
    };
    for p in pairs {
        for t in [p.a.as_str(), p.b.as_str()] {
            lex.entry(t).or_insert_with(|| Lexical::of(t));
        }
        let (u, v) = (&vectors[p.a.as_str()], &vectors[p.b.as_str()]);
        let (la, lb) = (&lex[p.a.as_str()], &lex[p.b.as_str()]);
        let f = pair_features(u, v, la, lb);
        out.vetoed.push(veto(la, lb).is_some());
        out.cosine.push(f[2 * u.len()]);
        out.x.push(f);
        out.y.push(p.label);
    }
    out
}

/// Area under the ROC curve (ties count half).
pub fn auc(scores: &[f32], labels: &[bool]) -> f64 {
    let mut idx: Vec<usize> = (0..scores.len()).collect();
    idx.sort_by(|&a, &b| scores[a].total_cmp(&scores[b]));
    let (mut rank_sum, mut i) = (0.0, 0);
    while i < idx.len() {
        let mut j = i;
        while j + 1 < idx.len() && scores[idx[j + 1]] == scores[idx[i]] {
            j += 1;
        }
        let mid = (i + j) as f64 / 2.0 + 1.0;
        rank_sum += (i..=j).filter(|&k| labels[idx[k]]).count() as f64 * mid;
        i = j + 1;
    }
    let pos = labels.iter().filter(|&&l| l).count() as f64;
    let neg = labels.len() as f64 - pos;
    if pos == 0.0 || neg == 0.0 {
        return f64::NAN;
    }
    (rank_sum - pos * (pos + 1.0) / 2.0) / (pos * neg)
}

/// AUC, best accuracy, and the recall reachable at ≥ 90% precision.
pub fn pair_metrics(scores: &[f32], labels: &[bool]) -> BTreeMap<String, f64> {
    let mut idx: Vec<usize> = (0..scores.len()).collect();
    idx.sort_by(|&a, &b| scores[b].total_cmp(&scores[a]));
    let pos = labels.iter().filter(|&&l| l).count();
    let (mut tp, mut fp) = (0usize, 0usize);
    let (mut best_acc, mut recall_at_90) = (0.0f64, 0.0f64);
    for (k, &i) in idx.iter().enumerate() {
        if labels[i] {
            tp += 1;
        } else {
            fp += 1;
        }
        let boundary = idx.get(k + 1).is_none_or(|&n| scores[n] != scores[i]);
        if !boundary {
            continue;
        }
        let tn = labels.len() - pos - fp;
        best_acc = best_acc.max((tp + tn) as f64 / labels.len() as f64);
        let precision = tp as f64 / (tp + fp) as f64;
        if precision >= 0.9 && pos > 0 {
            recall_at_90 = recall_at_90.max(tp as f64 / pos as f64);
        }
    }
    BTreeMap::from([
        ("auc".to_owned(), auc(scores, labels)),
        ("best_accuracy".to_owned(), best_acc),
        ("recall_at_precision_0.90".to_owned(), recall_at_90),
        ("pairs".to_owned(), labels.len() as f64),
    ])
}

fn standardise(rows: &[Vec<f32>]) -> (Vec<f32>, Vec<f32>) {
    let d = rows.first().map_or(0, Vec::len);
    let n = rows.len().max(1) as f64;
    let mut mean = vec![0f64; d];
    for r in rows {
        for (m, x) in mean.iter_mut().zip(r) {
            *m += f64::from(*x) / n;
        }
    }
    let mut var = vec![0f64; d];
    for r in rows {
        for ((v, x), m) in var.iter_mut().zip(r).zip(&mean) {
            *v += (f64::from(*x) - m).powi(2) / n;
        }
    }
    (
        mean.iter().map(|m| *m as f32).collect(),
        var.iter().map(|v| (v.sqrt().max(1e-6)) as f32).collect(),
    )
}

/// Every file's pairs (training pairs capped per file), what each file contributed, and
/// how many validation pairs the first file has: the distribution choices are made for.
fn load_sources(
    request: &VerifierRequest,
) -> Result<(Vec<Pair>, Vec<PairSource>, usize), VerifierTrainError> {
    let mut sources = Vec::new();
    let mut all: Vec<Pair> = Vec::new();
    let mut primary_validation = 0;
    for (i, file) in request.pairs.iter().enumerate() {
        let pairs = cap_training_pairs(load_pairs(file)?, request.max_train_pairs);
        let is_train = |p: &&Pair| p.split() == Split::Train;
        sources.push(PairSource {
            name: file
                .file_name()
                .map(|n| n.to_string_lossy().into_owned())
                .unwrap_or_default(),
            pairs: pairs.iter().filter(is_train).count(),
            positives: pairs.iter().filter(is_train).filter(|p| p.label).count(),
        });
        if i == 0 {
            primary_validation = pairs
                .iter()
                .filter(|p| p.split() == Split::Validation)
                .count();
        }
        all.extend(pairs);
    }
    Ok((all, sources, primary_validation))
}

/// At most `cap` training pairs (a seeded subsample; 0 = all), every other pair kept.
fn cap_training_pairs(pairs: Vec<Pair>, cap: usize) -> Vec<Pair> {
    let train_count = pairs.iter().filter(|p| p.split() == Split::Train).count();
    if cap == 0 || train_count <= cap {
        return pairs;
    }
    let (mut train, rest): (Vec<Pair>, Vec<Pair>) =
        pairs.into_iter().partition(|p| p.split() == Split::Train);
    SplitMix::new(17).shuffle(&mut train);
    train.truncate(cap);
    train.into_iter().chain(rest).collect()
}

/// Both texts of every pair, embedded once through the cache.
fn embed_pairs<'a>(
    pairs: &[&'a Pair],
    request: &VerifierRequest,
    encoder: &SentenceEncoder,
    progress: &ProgressBar,
) -> Result<HashMap<&'a str, Vec<f32>>, VerifierTrainError> {
    let mut cache = EmbeddingCache::open(&request.cache_dir, encoder.info()).map_err(|source| {
        VerifierTrainError::Cache {
            path: request.cache_dir.clone(),
            source,
        }
    })?;
    let texts: Vec<&str> = pairs
        .iter()
        .flat_map(|p| [p.a.as_str(), p.b.as_str()])
        .collect();
    progress.set_message("embedding pair texts");
    let vectors = embed_all(&texts, encoder, &mut cache, progress)?;
    Ok(texts.into_iter().zip(vectors).collect())
}

/// Feature means and scales, applied.
struct Standard {
    mean: Vec<f32>,
    scale: Vec<f32>,
}

impl Standard {
    fn rows(&self, rows: &[Vec<f32>]) -> Vec<Vec<f32>> {
        rows.iter()
            .map(|r| {
                r.iter()
                    .zip(&self.mean)
                    .zip(&self.scale)
                    .map(|((x, m), s)| (x - m) / s)
                    .collect()
            })
            .collect()
    }

    fn matrix(&self, rows: &[Vec<f32>]) -> Array2<f64> {
        let mut x = Array2::<f64>::zeros((rows.len(), self.mean.len()));
        for (r, row) in rows.iter().enumerate() {
            for (c, v) in row.iter().enumerate() {
                x[[r, c]] = f64::from((v - self.mean[c]) / self.scale[c]);
            }
        }
        x
    }
}

/// One logistic regression per L2 strength.
fn logistic_grid(
    tr: &Featurised,
    standard: &Standard,
    request: &VerifierRequest,
    progress: &ProgressBar,
) -> Result<Vec<(String, VerifierModel)>, VerifierTrainError> {
    let x_train = standard.matrix(&tr.x);
    let y_train: Array1<bool> = tr.y.iter().copied().collect();
    let mut candidates = Vec::new();
    for &alpha in &request.alphas {
        progress.set_message(format!("logistic alpha={alpha}"));
        let fitted = LogisticRegression::default()
            .alpha(alpha)
            .max_iterations(request.max_iterations)
            .fit(&Dataset::new(x_train.clone(), y_train.clone()))
            .map_err(|e| VerifierTrainError::Fit(e.to_string()))?;
        let sign = if fitted.labels().pos.class { 1.0 } else { -1.0 };
        candidates.push((
            format!("logistic(alpha={alpha})"),
            VerifierModel::Logistic {
                weights: fitted.params().iter().map(|w| (sign * w) as f32).collect(),
                bias: (sign * fitted.intercept()) as f32,
            },
        ));
        progress.inc(1);
    }
    Ok(candidates)
}

/// The MLP candidate (`mlp_seeds` members averaged), early-stopped on the first file's
/// validation pairs; `None` when `mlp_hidden` is below the number of seeds.
fn mlp_candidate(
    (tr, va): (&Featurised, &Featurised),
    standard: &Standard,
    primary_validation: usize,
    request: &VerifierRequest,
    progress: &ProgressBar,
) -> Result<Option<(String, VerifierModel)>, VerifierTrainError> {
    let seeds = request.mlp_seeds.max(1);
    if request.mlp_hidden < seeds {
        return Ok(None);
    }
    progress.set_message(format!("mlp({})", request.mlp_hidden));
    let (xt, xv) = (standard.rows(&tr.x), standard.rows(&va.x));
    let p = primary_validation;
    let members = (0..seeds)
        .map(|k| {
            progress.set_message(format!("mlp {}/{seeds}", k + 1));
            let hidden = request.mlp_hidden / seeds;
            train_mlp(
                &xt,
                &tr.y,
                &xv[..p],
                &va.y[..p],
                &va.vetoed[..p],
                hidden,
                17 + k as u64,
            )
        })
        .collect::<candle_core::Result<Vec<_>>>()
        .map_err(|e| VerifierTrainError::Fit(format!("mlp: {e}")))?;
    let name = if seeds == 1 {
        format!("mlp(hidden={})", request.mlp_hidden)
    } else {
        format!(
            "mlp(hidden={}, {seeds} seeds averaged)",
            request.mlp_hidden / seeds * seeds
        )
    };
    progress.inc(1);
    Ok(Some((name, average(members))))
}

/// The chosen candidate, its validation metrics, and every candidate's.
struct Choice {
    name: String,
    model: VerifierModel,
    metrics: BTreeMap<String, f64>,
    grid: Vec<(String, BTreeMap<String, f64>)>,
}

/// The operating point that matters is high precision: the candidate with the best recall
/// at 90% precision on the first file's validation pairs, then the best AUC there.
fn choose(
    candidates: Vec<(String, VerifierModel)>,
    va: &Featurised,
    standard: &Standard,
    primary_validation: usize,
    info: &switchyard_core::EncoderInfo,
) -> Result<Choice, VerifierTrainError> {
    let mut grid = Vec::new();
    let mut best: Option<(String, VerifierModel, BTreeMap<String, f64>)> = None;
    let key = |m: &BTreeMap<String, f64>| {
        (
            m["first_file_recall_at_precision_0.90"],
            m["first_file_auc"],
        )
    };
    for (name, model) in candidates {
        let candidate = Verifier {
            manifest: placeholder_manifest(info, standard.mean.len()),
            mean: standard.mean.clone(),
            scale: standard.scale.clone(),
            model,
        };
        let scores = served_scores(va.x.iter().map(|f| candidate.probability(f)), &va.vetoed);
        let mut metrics = pair_metrics(&scores, &va.y);
        let p = primary_validation;
        for (k, v) in pair_metrics(&scores[..p], &va.y[..p]) {
            metrics.insert(format!("first_file_{k}"), v);
        }
        grid.push((name.clone(), metrics.clone()));
        if best.as_ref().is_none_or(|b| key(&metrics) > key(&b.2)) {
            best = Some((name, candidate.model, metrics));
        }
    }
    let (name, model, metrics) =
        best.ok_or_else(|| VerifierTrainError::Data("no model was fitted".into()))?;
    Ok(Choice {
        name,
        model,
        metrics,
        grid,
    })
}

/// Loads the pairs, embeds their texts (through the cache), fits the grid and returns the
/// best verifier with its report.
pub fn train_verifier(
    request: &VerifierRequest,
    encoder: &SentenceEncoder,
    progress: &ProgressBar,
) -> Result<(Verifier, VerifierReport), VerifierTrainError> {
    let (all, sources, mut primary_validation) = load_sources(request)?;
    let in_split = |split: Split| all.iter().filter(move |p| p.split() == split).collect();
    let train: Vec<&Pair> = in_split(Split::Train);
    let validation: Vec<&Pair> = in_split(Split::Validation);
    if train.is_empty() || validation.is_empty() {
        return Err(VerifierTrainError::Data(
            "no training or validation pairs: give at least one pair file".into(),
        ));
    }
    if primary_validation == 0 {
        primary_validation = validation.len();
    }
    let both: Vec<&Pair> = train.iter().chain(&validation).copied().collect();
    let vectors = embed_pairs(&both, request, encoder, progress)?;
    let tr = featurise(&train, &vectors);
    let va = featurise(&validation, &vectors);
    let (mean, scale) = standardise(&tr.x);
    let standard = Standard { mean, scale };
    progress.set_length(request.alphas.len() as u64 + 1);
    progress.set_position(0);
    let mut candidates = logistic_grid(&tr, &standard, request, progress)?;
    candidates.extend(mlp_candidate(
        (&tr, &va),
        &standard,
        primary_validation,
        request,
        progress,
    )?);
    progress.finish_and_clear();
    let info = encoder.info();
    let choice = choose(candidates, &va, &standard, primary_validation, info)?;
    let mut verifier = Verifier {
        manifest: placeholder_manifest(info, standard.mean.len()),
        mean: standard.mean,
        scale: standard.scale,
        model: choice.model,
    };
    verifier.manifest.trained_on = sources;
    verifier.manifest.model = choice.name.clone();
    verifier.manifest.validation = choice.metrics.clone();
    Ok((
        verifier,
        VerifierReport {
            grid: choice.grid,
            chosen: choice.name,
            train_pairs: train.len(),
            validation: choice.metrics,
            cosine_validation: pair_metrics(&va.cosine, &va.y),
        },
    ))
}

/// One MLP whose logit is the mean of `members`' logits: their hidden layers side by side,
/// the output weights divided by their number.
fn average(members: Vec<VerifierModel>) -> VerifierModel {
    let n = members.len().max(1) as f32;
    let (mut hidden, mut w1, mut b1, mut w2, mut b2) = (0, Vec::new(), Vec::new(), Vec::new(), 0.0);
    for m in members {
        if let VerifierModel::Mlp {
            hidden: h,
            w1: a,
            b1: b,
            w2: c,
            b2: d,
        } = m
        {
            hidden += h;
            w1.extend(a);
            b1.extend(b);
            w2.extend(c.iter().map(|w| w / n));
            b2 += d / n;
        }
    }
    VerifierModel::Mlp {
        hidden,
        w1,
        b1,
        w2,
        b2,
    }
}

/// A one-hidden-layer MLP on standardised pair features: AdamW on the logistic loss,
/// early stopping on the validation pairs' recall at 90% precision (the operating point
/// the cache serves at), then AUC.
fn train_mlp(
    x_train: &[Vec<f32>],
    y_train: &[bool],
    x_val: &[Vec<f32>],
    y_val: &[bool],
    vetoed_val: &[bool],
    hidden: usize,
    seed: u64,
) -> candle_core::Result<VerifierModel> {
    use candle_core::{DType, Device, Module, Tensor};
    use candle_nn::{Optimizer, VarBuilder, VarMap};
    let d = x_train.first().map_or(0, Vec::len);
    let matrix = |rows: &[Vec<f32>]| {
        Tensor::from_vec(
            rows.iter().flatten().copied().collect::<Vec<f32>>(),
            (rows.len(), d),
            &Device::Cpu,
        )
    };
    let (xt, xv) = (matrix(x_train)?, matrix(x_val)?);
    let yt: Vec<f32> = y_train.iter().map(|&y| f32::from(u8::from(y))).collect();
    let varmap = VarMap::new();
    let vb = VarBuilder::from_varmap(&varmap, DType::F32, &Device::Cpu);
    let l1 = candle_nn::linear(d, hidden, vb.pp("l1"))?;
    let l2 = candle_nn::linear(hidden, 1, vb.pp("l2"))?;
    let mut rng = SplitMix::new(seed);
    seed_vars(&varmap, &mut rng)?;
    let forward = |x: &Tensor| -> candle_core::Result<Tensor> {
        l2.forward(&l1.forward(x)?.relu()?)?.squeeze(1)
    };
    let mut opt = candle_nn::AdamW::new(
        varmap.all_vars(),
        candle_nn::ParamsAdamW {
            lr: 1e-3,
            weight_decay: 1e-2,
            ..Default::default()
        },
    )?;
    let mut order: Vec<usize> = (0..x_train.len()).collect();
    let (mut best_key, mut best, mut since) = ((f64::MIN, f64::MIN), None, 0);
    for _epoch in 0..40 {
        rng.shuffle(&mut order);
        for batch in order.chunks(256) {
            let x = rows(&xt, batch)?;
            let y = Tensor::new(
                batch
                    .iter()
                    .map(|&i| yt[i])
                    .collect::<Vec<f32>>()
                    .as_slice(),
                &Device::Cpu,
            )?;
            opt.backward_step(&logistic_loss(&forward(&x)?, &y)?)?;
        }
        let scores = served_scores(forward(&xv)?.to_vec1::<f32>()?, vetoed_val);
        let m = pair_metrics(&scores, y_val);
        let key = (m["recall_at_precision_0.90"], m["auc"]);
        if key > best_key {
            (best_key, best, since) = (key, Some(snapshot(&varmap)?), 0);
        } else {
            since += 1;
            if since >= 4 {
                break;
            }
        }
    }
    if let Some(w) = &best {
        restore(&varmap, w)?;
    }
    mlp_model(&varmap, hidden)
}

/// Mean logistic loss of logits `z` against 0/1 targets `y`, in the stable form
/// softplus(z) − y·z.
fn logistic_loss(
    z: &candle_core::Tensor,
    y: &candle_core::Tensor,
) -> candle_core::Result<candle_core::Tensor> {
    let softplus = (z.relu()? + (z.abs()?.neg()?.exp()? + 1.0)?.log()?)?;
    (softplus - (y * z)?)?.mean_all()
}

/// The MLP's weights as the verifier stores them.
fn mlp_model(varmap: &candle_nn::VarMap, hidden: usize) -> candle_core::Result<VerifierModel> {
    let weights = snapshot(varmap)?;
    let get = |k: &str| -> candle_core::Result<Vec<f32>> {
        weights
            .get(k)
            .ok_or_else(|| candle_core::Error::Msg(format!("no {k}")))?
            .flatten_all()?
            .to_vec1::<f32>()
    };
    Ok(VerifierModel::Mlp {
        hidden,
        w1: get("l1.weight")?,
        b1: get("l1.bias")?,
        w2: get("l2.weight")?,
        b2: get("l2.bias")?.first().copied().unwrap_or(0.0),
    })
}

fn placeholder_manifest(info: &switchyard_core::EncoderInfo, features: usize) -> VerifierManifest {
    VerifierManifest {
        kind: "switchyard-cache-verifier".into(),
        encoder: info.clone(),
        feature_layout: FEATURE_LAYOUT.into(),
        features,
        trained_on: Vec::new(),
        holdout: "pairs whose sha256(sorted texts joined by \\n, whitespace-collapsed, \
                  lower-cased)[0] % 10 is 0 (test) or 1 (validation) are not trained on"
            .into(),
        model: String::new(),
        validation: BTreeMap::new(),
        created: chrono_free_now(),
    }
}

/// Seconds since the Unix epoch, as text (no date library in this crate).
fn chrono_free_now() -> String {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| format!("unix:{}", d.as_secs()))
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn auc_of_perfect_random_and_inverted_scores() {
        let labels = [false, false, true, true];
        assert_eq!(auc(&[0.1, 0.2, 0.8, 0.9], &labels), 1.0);
        assert_eq!(auc(&[0.9, 0.8, 0.2, 0.1], &labels), 0.0);
        assert_eq!(auc(&[0.5, 0.5, 0.5, 0.5], &labels), 0.5);
    }

    #[test]
    fn metrics_find_recall_at_precision() {
        let scores = [0.9, 0.8, 0.7, 0.6, 0.5];
        let labels = [true, true, false, true, false];
        let m = pair_metrics(&scores, &labels);
        assert!((m["recall_at_precision_0.90"] - 2.0 / 3.0).abs() < 1e-9);
        assert!((m["best_accuracy"] - 0.8).abs() < 1e-9);
    }
}
