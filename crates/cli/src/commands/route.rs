//! `switchyard route "PROMPT"`: the routing decision for one prompt, and why.

use std::io::{Read, Write};
use std::path::PathBuf;
use std::process::ExitCode;
use std::str::FromStr;

use anyhow::Context;
use clap::Args;
use switchyard_core::policy::{Decision, Policy};
use switchyard_core::tokens::estimate_messages;
use switchyard_embed::heads::Classification;
use switchyard_router::{RouteInput, Router, known_candidates, named_candidates};

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

    /// The client's output cap (`max_tokens`): bounds the expected output and the context
    /// the request needs, as in a chat request.
    #[arg(long)]
    pub max_tokens: Option<u64>,

    /// Print the decision as JSON (the `decision` of `POST /v1/route` for the same request).
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
    let prompt = read_prompt(&args.prompt)?;
    let encoder = args
        .encoder
        .load_for_routing()
        .context("cannot load the encoder")?;
    let router = Router::load(&args.heads, &args.scorer, encoder.info())?;
    let prices = super::prices::load(args.prices.as_deref())?;
    // Without an explicit list, models with no price and no observed cost sit out.
    let candidates = if args.candidates.is_empty() {
        known_candidates(router.scorer(), &prices)
    } else {
        named_candidates(router.scorer(), &args.candidates, &prices)?
    };
    anyhow::ensure!(
        !candidates.is_empty(),
        "no candidate model has a price or an observed cost; pass --prices FILE"
    );
    let embedding = encoder
        .embed(&[prompt.as_str()])
        .context("the encoder failed")?
        .remove(0);
    // The prompt is routed as the gateway routes a chat of one user message with this text.
    let input_tokens = estimate_messages([prompt.as_str()]);
    let decision = router
        .route(&RouteInput {
            embedding: &embedding,
            prompt: &prompt,
            input_tokens,
            max_output_tokens: args.max_tokens,
            candidates: &candidates,
            unavailable: args.unavailable.iter().cloned().collect(),
            policy: args.policy.0,
        })?
        .decision;
    let mut out = std::io::stdout().lock();
    if args.json {
        serde_json::to_writer_pretty(&mut out, &decision)?;
        writeln!(out)?;
        return Ok(ExitCode::SUCCESS);
    }
    let class = router.features(&embedding, &prompt)?.classification;
    print_decision(&mut out, &decision, &class, input_tokens)?;
    Ok(ExitCode::SUCCESS)
}

fn read_prompt(arg: &str) -> anyhow::Result<String> {
    let prompt = if arg == "-" {
        let mut text = String::new();
        std::io::stdin()
            .read_to_string(&mut text)
            .context("cannot read the prompt from stdin")?;
        text
    } else {
        arg.to_owned()
    };
    anyhow::ensure!(
        !prompt.trim().is_empty(),
        "the prompt is empty: pass it as an argument, or `-` to read stdin"
    );
    Ok(prompt)
}

fn print_decision(
    out: &mut impl Write,
    decision: &Decision,
    class: &Classification,
    input_tokens: u64,
) -> anyhow::Result<()> {
    let task_p = class
        .task_probs
        .iter()
        .find(|(t, _)| *t == class.task)
        .map_or(0.0, |(_, p)| *p);
    writeln!(
        out,
        "task {} (p={task_p:.2}), difficulty {:.2} ({}), ~{input_tokens} prompt tokens, router {}",
        class.task,
        class.difficulty,
        serde_json::to_string(&class.difficulty_bucket)?.trim_matches('"'),
        decision.router_version.as_deref().unwrap_or("-")
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
    Ok(())
}
