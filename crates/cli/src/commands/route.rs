//! `switchyard route "PROMPT"`: the routing decision for one prompt, and why.

use std::io::{Read, Write};
use std::path::PathBuf;
use std::process::ExitCode;
use std::str::FromStr;

use anyhow::Context;
use clap::Args;
use switchyard_core::policy::{Constraints, Policy, decide};
use switchyard_embed::heads::ClassifierHeads;
use switchyard_scorer::{PromptFeatures, Scorer, features};
use switchyard_training::scorer::estimate_tokens;

use super::model_args::EncoderArgs;

/// Show which model Switchyard would route a prompt to, and why.
///
/// Embeds and classifies the prompt, predicts every candidate's quality (the scorer) and
/// cost (the price table, else the mean observed cost of that model's answers), and applies
/// the policy. Prints the chosen model, the rule that decided, and every candidate ranked:
/// the runners-up are the fallback order.
///
/// Policies: `threshold:TAU` — the cheapest model predicted at least TAU, else the best;
/// `tradeoff:LAMBDA` — maximise quality − LAMBDA × cost (USD); `budget:USD` — the best
/// predicted quality with expected cost at most USD; `margin:M` — the cheapest model predicted
/// within M of the best predicted quality.
///
/// Example: switchyard route "Write a Python function that merges two sorted lists" --policy threshold:0.8
#[derive(Debug, Args)]
pub struct RouteArgs {
    /// The prompt; `-` reads it from stdin.
    pub prompt: String,

    /// The rule and its parameter.
    #[arg(long, default_value = "threshold:0.7")]
    pub policy: PolicyArg,

    /// Only these models, comma-separated (default: every model the scorer knows that has a
    /// price or an observed cost).
    #[arg(long, value_delimiter = ',')]
    pub candidates: Vec<String>,

    /// Models that may not serve (e.g. down), comma-separated.
    #[arg(long, value_delimiter = ',')]
    pub unavailable: Vec<String>,

    /// Directory with the trained scorer.
    #[arg(long, env = "SWITCHYARD_SCORER", default_value = "models/scorer")]
    pub scorer: PathBuf,

    /// Directory with the classifier heads.
    #[arg(long, env = "SWITCHYARD_HEADS", default_value = "models/classifier")]
    pub heads: PathBuf,

    /// Model prices (JSON: {"model": {"input_per_mtok": N, "output_per_mtok": N}}), added
    /// to the built-in table.
    #[arg(long)]
    pub prices: Option<PathBuf>,

    /// Print the decision as JSON.
    #[arg(long)]
    pub json: bool,

    #[command(flatten)]
    pub encoder: EncoderArgs,
}

/// `threshold:0.7`, `tradeoff:500`, `budget:0.002`.
#[derive(Debug, Clone, Copy)]
pub struct PolicyArg(pub Policy);

impl FromStr for PolicyArg {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        s.parse().map(Self)
    }
}

pub fn run(args: &RouteArgs) -> anyhow::Result<ExitCode> {
    let prompt = if args.prompt == "-" {
        let mut text = String::new();
        std::io::stdin()
            .read_to_string(&mut text)
            .context("cannot read the prompt from stdin")?;
        text
    } else {
        args.prompt.clone()
    };
    anyhow::ensure!(
        !prompt.trim().is_empty(),
        "the prompt is empty: pass it as an argument, or `-` to read stdin"
    );
    let encoder = args
        .encoder
        .load_for_routing()
        .context("cannot load the encoder")?;
    let heads = ClassifierHeads::load(&args.heads, encoder.info())?;
    let scorer = Scorer::load(&args.scorer, encoder.info())?;
    scorer.check_heads(heads.weights_sha256(), &args.heads)?;
    let prices = super::prices::load(args.prices.as_deref())?;

    let embedding = encoder
        .embed(&[prompt.as_str()])
        .context("the encoder failed")?
        .remove(0);
    let class = heads.classify(std::slice::from_ref(&embedding))?.remove(0);
    let probs: Vec<f32> = class.task_probs.iter().map(|(_, p)| *p).collect();
    let input_tokens = estimate_tokens(&prompt);
    let prompt_features = PromptFeatures {
        features: features(&embedding, &probs, class.difficulty, input_tokens),
        task: class.task,
        input_tokens,
    };

    let (wanted, explicit) = if args.candidates.is_empty() {
        (scorer.model_ids(), false)
    } else {
        (args.candidates.clone(), true)
    };
    scorer.check_known(wanted.iter().map(String::as_str))?;
    // Without an explicit list, models with no price and no observed cost sit out.
    let costed: Vec<String> = if explicit {
        wanted
    } else {
        scorer.costed_models(prompt_features.task, &prices)
    };
    anyhow::ensure!(
        !costed.is_empty(),
        "no candidate model has a price or an observed cost; pass --prices FILE"
    );
    let candidates = scorer.candidates(&prompt_features, Some(&costed), &prices)?;
    let constraints = Constraints {
        unavailable: args.unavailable.iter().cloned().collect(),
        ..Constraints::default()
    };
    let mut decision = decide(&candidates, &constraints, args.policy.0)?;
    decision.task = Some(class.task);
    decision.difficulty = Some(f64::from(class.difficulty));

    let mut out = std::io::stdout().lock();
    if args.json {
        serde_json::to_writer_pretty(&mut out, &decision)?;
        writeln!(out)?;
        return Ok(ExitCode::SUCCESS);
    }
    let task_p = class
        .task_probs
        .iter()
        .find(|(t, _)| *t == class.task)
        .map_or(0.0, |(_, p)| *p);
    writeln!(
        out,
        "task {} (p={task_p:.2}), difficulty {:.2} ({}), ~{input_tokens} prompt tokens",
        class.task,
        class.difficulty,
        serde_json::to_string(&class.difficulty_bucket)?.trim_matches('"')
    )?;
    let policy = match decision.policy {
        Policy::Threshold { tau } => format!("threshold τ={tau}"),
        Policy::Tradeoff { lambda } => format!("tradeoff λ={lambda}"),
        Policy::Budget { max_cost_usd } => format!("budget ${max_cost_usd}"),
        Policy::Margin { margin } => format!("margin {margin}"),
    };
    writeln!(
        out,
        "→ {} ({policy}: {})",
        decision.chosen,
        serde_json::to_string(&decision.rule)?.trim_matches('"')
    )?;
    writeln!(
        out,
        "{:>4}  {:<44} {:>9} {:>12}",
        "rank", "model", "quality", "cost (USD)"
    )?;
    for (i, r) in decision.ranked.iter().enumerate() {
        writeln!(
            out,
            "{:>4}  {:<44} {:>9.3} {:>12.6}",
            i + 1,
            r.model,
            r.quality,
            r.cost_usd
        )?;
    }
    for (model, why) in &decision.excluded {
        writeln!(
            out,
            "      {model:<44} excluded: {}",
            serde_json::to_string(why)?.trim_matches('"')
        )?;
    }
    Ok(ExitCode::SUCCESS)
}
