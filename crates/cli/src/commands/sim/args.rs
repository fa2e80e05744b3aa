//! The options of `switchyard eval loop`.

use std::path::PathBuf;

use clap::Args;

use super::super::model_args::{CacheArgs, EncoderArgs};

/// Simulate the learning loop: serve, log, get feedback, retrain, evaluate off-policy,
/// promote — through the real gateway on loopback — and measure what it learned.
///
/// A world upstream answers each request as the chosen model did in --world's records (a
/// stand-in text with the recorded or --output-tokens tokens, so the gateway logs the
/// world's cost); the simulator posts the recorded score as feedback for --feedback-share
/// of requests. Between rounds it imports the traffic log, trains a scorer on it, estimates
/// off-policy (doubly robust, on traffic the candidate was not fitted on) whether it beats
/// the serving router, and promotes it through POST /admin/router unless the estimate's
/// interval lies below zero (clearly worse).
///
/// At the end, on --holdout prompts never served, it reports the AIQ of the final router,
/// the starting router, a full-information router trained on every model's outcome for the
/// served prompts, one trained on as many outcomes as were served but logged uniformly at
/// random (uniform-logging: what the budget could teach at best as bandit data), kNN on
/// the logged traffic, random mixing and each model, with paired
/// bootstrap intervals; the served quality and cost; and the OPE estimate beside the
/// held-out truth.
///
/// Example, models no benchmark has, 3 rounds of 1,000 requests:
///
/// switchyard eval loop --world open7b.jsonl --prices eval/prices/open7b.json --unknown-models --requests 3000 --rounds 3 --out runs/loop --json
#[derive(Debug, Args)]
pub struct EvalLoopArgs {
    /// Routing records with every model's outcome (`datasets import`).
    #[arg(long)]
    pub world: PathBuf,

    /// Requests served in total, spread evenly over the rounds.
    #[arg(long, default_value_t = 3000)]
    pub requests: usize,

    /// Rounds: serve, then import, retrain, evaluate and maybe promote.
    #[arg(long, default_value_t = 3)]
    pub rounds: usize,

    /// The route's exploration share.
    #[arg(long, default_value_t = 0.1)]
    pub explore: f64,

    /// Share of requests that get feedback.
    #[arg(long, default_value_t = 1.0)]
    pub feedback_share: f64,

    /// Give the gateway the world's models under new names with a neutral quality prior
    /// and no quality_like, as for models no benchmark has seen.
    #[arg(long)]
    pub unknown_models: bool,

    /// Share of the world's prompts kept out of traffic, for the final comparison.
    #[arg(long, default_value_t = 0.25)]
    pub holdout: f64,

    /// At most this many world prompts (the first with every model scored).
    #[arg(long, default_value_t = 6000)]
    pub max_prompts: usize,

    /// The route's policy while serving.
    #[arg(long, default_value = "margin:0.02")]
    pub policy: String,

    /// Model prices (JSON, USD per 1M tokens) for worlds without costs.
    #[arg(long)]
    pub prices: Option<PathBuf>,

    /// Output tokens of an answer whose record has none.
    #[arg(long, default_value_t = 200)]
    pub output_tokens: u64,

    /// Requests in flight at once. At 1 a run is reproducible: the same --seed serves,
    /// explores and learns the same way; more is faster but the order of the log varies.
    #[arg(long, default_value_t = 1)]
    pub concurrency: usize,

    /// The starting scorer (default: the committed one).
    #[arg(long, default_value = "models/scorer")]
    pub start: PathBuf,

    /// Classifier heads (the scorer's features).
    #[arg(long, default_value = "models/classifier")]
    pub heads: PathBuf,

    /// Where the gateway's config, logs and each round's router go; the final router is
    /// left in DIR/final (usable as --model-dir). Default: a temporary directory.
    #[arg(long)]
    pub out: Option<PathBuf>,

    /// A strong/weak pair for APGR on the holdout.
    #[arg(long, requires = "weak")]
    pub strong: Option<String>,
    #[arg(long, requires = "strong")]
    pub weak: Option<String>,

    #[arg(long, default_value_t = 500)]
    pub bootstrap: usize,

    /// Seeds the prompts drawn, the feedback, the gateway's exploration and the split.
    #[arg(long, default_value_t = 17)]
    pub seed: u64,

    /// Draw the learning curve (held-out AIQ after each round) to this PNG.
    #[arg(long, value_name = "FILE.png")]
    pub plot: Option<PathBuf>,

    /// Print the report as JSON.
    #[arg(long)]
    pub json: bool,

    #[command(flatten)]
    pub cache: CacheArgs,

    #[command(flatten)]
    pub encoder: EncoderArgs,
}
