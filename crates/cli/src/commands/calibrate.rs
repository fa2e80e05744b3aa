//! `switchyard calibrate`: fit a route's target (mean cost, mean quality, share of the
//! strongest model) to a policy parameter and store it with the router.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;
use clap::Args;
use switchyard_embed::SentenceEncoder;
use switchyard_embed::heads::ClassifierHeads;
use switchyard_eval::calibrate::{fit, settings};
use switchyard_eval::ope;
use switchyard_eval::route_eval::{Actual, Predicted};
use switchyard_router::calibration::{Calibration, Fitted, Target};
use switchyard_scorer::Scorer;
use switchyard_training::data::Split;
use switchyard_training::scorer::{RoutedPrompt, featurise, load_routed};

use super::eval::PolicyArg;
use super::model_args::{CacheArgs, EncoderArgs};
use super::progress;

/// Fit a route's target (mean cost, mean quality or strong-model share) to a policy parameter.
///
/// Fits it on validation data or recent traffic and stores it with the router
/// (calibration.json in the scorer directory) for routes that set `target = "..."` instead
/// of a raw policy.
///
/// With --data (routing records with every candidate's outcome) the prompts of the
/// validation split are used and each setting is measured with the real outcomes. With
/// --traffic (imported traffic) each setting is measured with the router's own predicted
/// quality and cost, since traffic has one outcome per prompt. The rule's parameter is
/// swept; for cost:USD and strong-share:S the setting with the best quality within the cap
/// is kept, for quality:Q the cheapest that reaches it.
///
/// Example: switchyard calibrate --model-dir models/scorer --data routerbench.jsonl --target cost:0.002 --rule threshold
#[derive(Debug, Args)]
pub struct CalibrateArgs {
    /// cost:USD (mean per request, at most), quality:Q (mean, at least) or strong-share:S
    /// (share of calls to the strongest model, at most).
    #[arg(long)]
    pub target: Target,

    /// The router's scorer directory; calibration.json is written here.
    #[arg(long, default_value = "models/scorer")]
    pub model_dir: PathBuf,

    /// Routing records with outcomes (their validation split is used).
    #[arg(long, required_unless_present = "traffic", conflicts_with = "traffic")]
    pub data: Vec<PathBuf>,

    /// Imported traffic (`datasets import --from traffic`): measured with predictions.
    #[arg(long)]
    pub traffic: Vec<PathBuf>,

    /// Which policy rule to fit.
    #[arg(long, value_enum, default_value = "threshold")]
    pub rule: PolicyArg,

    /// The route's models, comma-separated (default: every model the data has).
    #[arg(long, value_delimiter = ',')]
    pub candidates: Vec<String>,

    /// The strongest model, for strong-share (default: the one with the best quality).
    #[arg(long)]
    pub strong: Option<String>,

    /// Model prices (JSON, USD per 1M tokens), as for `eval routing`.
    #[arg(long)]
    pub prices: Option<PathBuf>,

    #[arg(long, default_value = "models/classifier")]
    pub heads: PathBuf,

    #[command(flatten)]
    pub cache: CacheArgs,

    #[command(flatten)]
    pub encoder: EncoderArgs,
}

pub fn run(args: &CalibrateArgs) -> anyhow::Result<ExitCode> {
    let encoder = args
        .encoder
        .load_for_routing()
        .context("cannot load the encoder")?;
    let heads = ClassifierHeads::load(&args.heads, encoder.info())?;
    let scorer = Scorer::load(&args.model_dir, encoder.info())?;
    scorer.check_heads(heads.weights_sha256(), &args.heads)?;
    let prices = super::prices::load(args.prices.as_deref())?;
    let (prompts, measured, data) = load_prompts(args, &encoder, &heads)?;
    let models = candidate_models(args, &prompts);
    let specs = ope::specs(&scorer, &models, &prices);
    let chosen = calibration_prompts(&prompts, &models, measured);
    anyhow::ensure!(
        chosen.len() >= 10,
        "only {} prompts to calibrate on (validation prompts with every candidate's outcome, or traffic with feedback); give more data",
        chosen.len()
    );
    let predicted: Predicted = chosen
        .iter()
        .map(|p| ope::predict_row(&scorer, p, &specs))
        .collect::<Result<_, _>>()?;
    let actual = measured.then(|| actual_outcomes(&chosen, &predicted, &models));
    let strongest = strongest(args, &models, &predicted, actual.as_deref())?;
    let all = settings(
        &predicted,
        actual.as_deref(),
        &models,
        strongest,
        args.rule.swept(),
    )?;
    let best = fit(&all, args.target).map_err(anyhow::Error::msg)?;
    let mut calibration = Calibration::load(&args.model_dir).map_err(anyhow::Error::msg)?;
    calibration.targets.insert(
        args.target.to_string(),
        Fitted {
            policy: best.policy.to_string(),
            cost_usd: best.cost_usd,
            quality: best.quality,
            strong_share: best.strong_share,
            data,
            prompts: chosen.len(),
            measured,
        },
    );
    calibration
        .save(&args.model_dir)
        .map_err(anyhow::Error::msg)?;
    let mut out = std::io::stdout().lock();
    std::io::Write::write_fmt(
        &mut out,
        format_args!(
            "{}: {} on {} prompts ({}): mean cost ${:.6}, quality {:.4}, {} share {:.3}; stored in {}\n",
            args.target,
            best.policy,
            chosen.len(),
            if measured { "measured" } else { "predicted" },
            best.cost_usd,
            best.quality,
            models[strongest],
            best.strong_share,
            args.model_dir
                .join(switchyard_router::calibration::CALIBRATION_FILE)
                .display()
        ),
    )?;
    Ok(ExitCode::SUCCESS)
}

/// The prompts to calibrate on, whether their outcomes are measured (`--data`: records with
/// every outcome) rather than predicted (`--traffic`), and the files named, for the record.
fn load_prompts(
    args: &CalibrateArgs,
    encoder: &SentenceEncoder,
    heads: &ClassifierHeads,
) -> anyhow::Result<(Vec<RoutedPrompt>, bool, String)> {
    let bar = progress::bar(0, "featurising");
    let names = |files: &[PathBuf]| {
        files
            .iter()
            .map(|p| p.display().to_string())
            .collect::<Vec<_>>()
            .join(", ")
    };
    if args.traffic.is_empty() {
        let (loaded, _) = load_routed(&args.data)?;
        let all = featurise(loaded, encoder, heads, &args.cache.cache_dir, &bar)?;
        return Ok((all, true, names(&args.data)));
    }
    let (logged, _) = ope::load_logged(&args.traffic, encoder, heads, &args.cache.cache_dir, &bar)?;
    let prompts = logged.into_iter().map(|l| l.prompt).collect();
    Ok((prompts, false, names(&args.traffic)))
}

/// `--candidates`, else every model with an outcome in the data.
fn candidate_models(args: &CalibrateArgs, prompts: &[RoutedPrompt]) -> Vec<String> {
    if !args.candidates.is_empty() {
        return args.candidates.clone();
    }
    let mut models: Vec<String> = prompts
        .iter()
        .flat_map(|p| p.outcomes.keys().cloned())
        .collect();
    models.sort();
    models.dedup();
    models
}

/// Measured data: the validation prompts with every candidate's score; traffic: all of it.
fn calibration_prompts<'a>(
    prompts: &'a [RoutedPrompt],
    models: &[String],
    measured: bool,
) -> Vec<&'a RoutedPrompt> {
    prompts
        .iter()
        .filter(|p| {
            !measured
                || (p.split == Split::Validation
                    && models
                        .iter()
                        .all(|m| p.outcomes.get(m).is_some_and(|o| o.score.is_some())))
        })
        .collect()
}

/// What each candidate scored and cost on each prompt (a record without a cost is priced
/// as the router would price it).
fn actual_outcomes(
    chosen: &[&RoutedPrompt],
    predicted: &Predicted,
    models: &[String],
) -> Vec<Actual> {
    chosen
        .iter()
        .zip(predicted)
        .map(|(p, row)| Actual {
            score: models
                .iter()
                .map(|m| p.outcomes[m].score.unwrap_or(0.0))
                .collect(),
            cost: models
                .iter()
                .zip(row)
                .map(|(m, &(_, c))| p.outcomes[m].cost_usd.unwrap_or(c))
                .collect(),
        })
        .collect()
}

/// The model `--strong` names, else the one with the best mean quality.
fn strongest(
    args: &CalibrateArgs,
    models: &[String],
    predicted: &Predicted,
    actual: Option<&[Actual]>,
) -> anyhow::Result<usize> {
    if let Some(s) = &args.strong {
        return models.iter().position(|m| m == s).with_context(|| {
            format!(
                "--strong {s} is not among the candidates ({})",
                models.join(", ")
            )
        });
    }
    let mean = |m: usize| -> f64 {
        match actual {
            Some(a) => a.iter().map(|x| x.score[m]).sum(),
            None => predicted.iter().map(|row| row[m].0).sum(),
        }
    };
    Ok((0..models.len())
        .max_by(|&a, &b| mean(a).total_cmp(&mean(b)))
        .unwrap_or(0))
}
