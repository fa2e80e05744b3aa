//! Training the task and difficulty heads (defined in `switchyard_embed::heads`) with candle
//! on frozen embeddings: seeded initialisation and shuffling, AdamW, class-weighted cross
//! entropy for the task, squared error on the sigmoid output for difficulty, early
//! stopping on the validation split with the best epoch's weights kept.

use std::collections::HashMap;

use candle_core::{D, DType, Device, Tensor};
use candle_nn::{Module, Optimizer, VarBuilder, VarMap};
use indicatif::ProgressBar;
use switchyard_core::TaskClass;
use switchyard_core::metrics::Confusion;
use switchyard_embed::heads::{DifficultyHead, TaskHead, TaskHeadKind};

/// Hyper-parameters; the defaults are what the committed heads were trained with.
#[derive(Debug, Clone, Copy, serde::Serialize)]
pub struct TrainConfig {
    pub seed: u64,
    pub max_epochs: usize,
    /// Epochs without a better validation score before stopping.
    pub patience: usize,
    pub batch_size: usize,
    pub learning_rate: f64,
    pub weight_decay: f64,
    pub mlp_hidden: usize,
    /// Class weights ∝ frequency^-power (0 = none, 1 = fully balanced).
    pub class_weight_power: f64,
}

impl Default for TrainConfig {
    fn default() -> Self {
        Self {
            seed: 17,
            max_epochs: 60,
            patience: 6,
            batch_size: 128,
            learning_rate: 3e-3,
            weight_decay: 1e-4,
            mlp_hidden: 256,
            class_weight_power: 0.0,
        }
    }
}

pub use switchyard_core::rng::SplitMix;

/// Re-initialises every variable deterministically (sorted by name): weights uniform in
/// ±1/sqrt(fan_in), biases zero.
pub(crate) fn seed_vars(varmap: &VarMap, rng: &mut SplitMix) -> candle_core::Result<()> {
    let data = varmap
        .data()
        .lock()
        .map_err(|_| candle_core::Error::Msg("var map poisoned".into()))?;
    let mut names: Vec<&String> = data.keys().collect();
    names.sort();
    for name in names {
        let var = &data[name];
        let dims = var.dims().to_vec();
        let values: Vec<f32> = if name.ends_with("bias") {
            vec![0.0; var.elem_count()]
        } else {
            let fan_in = dims.last().copied().unwrap_or(1) as f32;
            let bound = 1.0 / fan_in.sqrt();
            (0..var.elem_count())
                .map(|_| rng.symmetric() * bound)
                .collect()
        };
        var.set(&Tensor::from_vec(values, dims, var.device())?)?;
    }
    Ok(())
}

fn adamw(varmap: &VarMap, config: &TrainConfig) -> candle_core::Result<candle_nn::AdamW> {
    candle_nn::AdamW::new(
        varmap.all_vars(),
        candle_nn::ParamsAdamW {
            lr: config.learning_rate,
            weight_decay: config.weight_decay,
            ..Default::default()
        },
    )
}

pub(crate) fn snapshot(varmap: &VarMap) -> candle_core::Result<HashMap<String, Tensor>> {
    let data = varmap
        .data()
        .lock()
        .map_err(|_| candle_core::Error::Msg("var map poisoned".into()))?;
    data.iter()
        .map(|(k, v)| Ok((k.clone(), v.as_tensor().copy()?)))
        .collect()
}

pub(crate) fn restore(
    varmap: &VarMap,
    weights: &HashMap<String, Tensor>,
) -> candle_core::Result<()> {
    let data = varmap
        .data()
        .lock()
        .map_err(|_| candle_core::Error::Msg("var map poisoned".into()))?;
    for (k, v) in data.iter() {
        if let Some(w) = weights.get(k) {
            v.set(w)?;
        }
    }
    Ok(())
}

/// Rows of `x` selected by `idx`, as one tensor.
pub(crate) fn rows(x: &Tensor, idx: &[usize]) -> candle_core::Result<Tensor> {
    let idx: Vec<u32> = idx.iter().map(|&i| i as u32).collect();
    x.index_select(&Tensor::new(idx.as_slice(), x.device())?, 0)
}

/// Labelled embeddings for one head.
#[derive(Debug)]
pub struct HeadData {
    pub x: Tensor,
    pub task: Vec<u32>,
}

impl HeadData {
    pub fn new(embeddings: &[&[f32]], labels: Vec<u32>) -> candle_core::Result<Self> {
        let dim = embeddings.first().map_or(0, |e| e.len());
        let flat: Vec<f32> = embeddings.iter().flat_map(|e| e.iter().copied()).collect();
        Ok(Self {
            x: Tensor::from_vec(flat, (embeddings.len(), dim), &Device::Cpu)?,
            task: labels,
        })
    }

    fn len(&self) -> usize {
        self.task.len()
    }
}

/// The outcome of training one task head.
#[derive(Debug)]
pub struct TaskTraining {
    pub kind: TaskHeadKind,
    pub weights: HashMap<String, Tensor>,
    pub validation_macro_f1: f64,
    pub validation_accuracy: f64,
    pub epochs: usize,
}

/// Trains a task head of `kind`; keeps the epoch with the best validation macro-F1.
pub fn train_task_head(
    kind: TaskHeadKind,
    train: &HeadData,
    val: &HeadData,
    config: &TrainConfig,
    progress: &ProgressBar,
) -> candle_core::Result<TaskTraining> {
    let classes = TaskClass::ALL.len();
    let dim = train.x.dim(1)?;
    let varmap = VarMap::new();
    let vb = VarBuilder::from_varmap(&varmap, DType::F32, &Device::Cpu);
    let head = TaskHead::new(kind, dim, classes, vb)?;
    let mut rng = SplitMix::new(config.seed);
    seed_vars(&varmap, &mut rng)?;

    // Class weights ∝ frequency^-power, normalised to mean 1 over the examples, so small
    // classes count without letting a handful of seeds dominate.
    let mut counts = vec![0usize; classes];
    for &t in &train.task {
        counts[t as usize] += 1;
    }
    let raw: Vec<f32> = counts
        .iter()
        .map(|&c| {
            if c == 0 {
                0.0
            } else {
                (c as f32).powf(-(config.class_weight_power as f32))
            }
        })
        .collect();
    let mean: f32 =
        train.task.iter().map(|&t| raw[t as usize]).sum::<f32>() / train.len().max(1) as f32;
    let class_weight: Vec<f32> = raw.iter().map(|w| w / mean.max(1e-12)).collect();

    let mut opt = adamw(&varmap, config)?;
    let mut order: Vec<usize> = (0..train.len()).collect();
    let mut best: Option<(f64, f64, usize, HashMap<String, Tensor>)> = None;
    let mut since_best = 0;
    progress.set_length(config.max_epochs as u64);
    for epoch in 1..=config.max_epochs {
        rng.shuffle(&mut order);
        for batch in order.chunks(config.batch_size) {
            let x = rows(&train.x, batch)?;
            let targets: Vec<u32> = batch.iter().map(|&i| train.task[i]).collect();
            let weights: Vec<f32> = targets.iter().map(|&t| class_weight[t as usize]).collect();
            let targets = Tensor::new(targets.as_slice(), &Device::Cpu)?;
            let weights = Tensor::new(weights.as_slice(), &Device::Cpu)?;
            let log_probs = candle_nn::ops::log_softmax(&head.forward(&x)?, D::Minus1)?;
            let picked = log_probs.gather(&targets.unsqueeze(1)?, 1)?.squeeze(1)?;
            let loss = (picked * weights)?.mean_all()?.neg()?;
            opt.backward_step(&loss)?;
        }
        let (f1, accuracy) = evaluate_task(&head, val)?;
        progress.inc(1);
        progress.set_message(format!("epoch {epoch}: validation macro-F1 {f1:.4}"));
        if best.as_ref().is_none_or(|b| f1 > b.0) {
            best = Some((f1, accuracy, epoch, snapshot(&varmap)?));
            since_best = 0;
        } else {
            since_best += 1;
            if since_best >= config.patience {
                break;
            }
        }
    }
    let (validation_macro_f1, validation_accuracy, epochs, weights) =
        best.ok_or_else(|| candle_core::Error::Msg("no training epochs ran".into()))?;
    restore(&varmap, &weights)?;
    Ok(TaskTraining {
        kind,
        weights,
        validation_macro_f1,
        validation_accuracy,
        epochs,
    })
}

fn evaluate_task(head: &TaskHead, data: &HeadData) -> candle_core::Result<(f64, f64)> {
    let predicted = head.forward(&data.x)?.argmax(D::Minus1)?.to_vec1::<u32>()?;
    let confusion = Confusion::new(
        TaskClass::ALL.len(),
        data.task
            .iter()
            .zip(&predicted)
            .map(|(&t, &p)| (t as usize, p as usize)),
    );
    Ok((confusion.macro_f1(), confusion.accuracy()))
}

/// The outcome of training the difficulty head.
#[derive(Debug)]
pub struct DifficultyTraining {
    pub weights: HashMap<String, Tensor>,
    pub validation_mae: f64,
    pub epochs: usize,
}

/// Trains the difficulty head on (embedding, difficulty in [0,1]) pairs; keeps the epoch
/// with the lowest validation mean absolute error.
pub fn train_difficulty_head(
    train_x: &Tensor,
    train_y: &[f32],
    val_x: &Tensor,
    val_y: &[f32],
    config: &TrainConfig,
    progress: &ProgressBar,
) -> candle_core::Result<DifficultyTraining> {
    let dim = train_x.dim(1)?;
    let varmap = VarMap::new();
    let vb = VarBuilder::from_varmap(&varmap, DType::F32, &Device::Cpu);
    let head = DifficultyHead::new(dim, vb)?;
    let mut rng = SplitMix::new(config.seed ^ 0xD1FF);
    seed_vars(&varmap, &mut rng)?;
    let mut opt = adamw(&varmap, config)?;
    let y_val = Tensor::new(val_y, &Device::Cpu)?;
    let mut order: Vec<usize> = (0..train_y.len()).collect();
    let mut best: Option<(f64, usize, HashMap<String, Tensor>)> = None;
    let mut since_best = 0;
    progress.set_length(config.max_epochs as u64);
    for epoch in 1..=config.max_epochs {
        rng.shuffle(&mut order);
        for batch in order.chunks(config.batch_size) {
            let x = rows(train_x, batch)?;
            let y: Vec<f32> = batch.iter().map(|&i| train_y[i]).collect();
            let y = Tensor::new(y.as_slice(), &Device::Cpu)?;
            let pred = candle_nn::ops::sigmoid(&head.logits(&x)?)?.squeeze(1)?;
            let loss = (pred - y)?.sqr()?.mean_all()?;
            opt.backward_step(&loss)?;
        }
        let pred = candle_nn::ops::sigmoid(&head.logits(val_x)?)?.squeeze(1)?;
        let mae = f64::from((pred - &y_val)?.abs()?.mean_all()?.to_scalar::<f32>()?);
        progress.inc(1);
        progress.set_message(format!("epoch {epoch}: validation MAE {mae:.4}"));
        if best.as_ref().is_none_or(|b| mae < b.0) {
            best = Some((mae, epoch, snapshot(&varmap)?));
            since_best = 0;
        } else {
            since_best += 1;
            if since_best >= config.patience {
                break;
            }
        }
    }
    let (validation_mae, epochs, weights) =
        best.ok_or_else(|| candle_core::Error::Msg("no training epochs ran".into()))?;
    Ok(DifficultyTraining {
        weights,
        validation_mae,
        epochs,
    })
}
