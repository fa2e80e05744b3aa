//! Why the router cannot decide or load.

use switchyard_core::policy::PolicyError;
use switchyard_embed::heads::HeadsError;
use switchyard_scorer::ScorerError;

#[derive(Debug, thiserror::Error)]
pub enum RouterError {
    #[error("classifier heads: {0}")]
    Heads(#[from] HeadsError),
    #[error("scorer: {0}")]
    Scorer(#[from] ScorerError),
    #[error(transparent)]
    Policy(#[from] PolicyError),
    #[error(
        "no price and no observed cost for {}: add them to the price table (USD per 1M input and output tokens)",
        .0.join(", ")
    )]
    NoCost(Vec<String>),
    #[error("the embeddings ({embeddings}) and texts ({texts}) differ in number")]
    Mismatch { embeddings: usize, texts: usize },
}
