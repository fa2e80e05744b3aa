//! Why a learner's step could not run.

use std::path::PathBuf;

use switchyard_eval::route_eval::RouteEvalError;
use switchyard_training::scorer::ScorerTrainError;

/// Why a cycle could not run.
#[derive(Debug, thiserror::Error)]
pub enum LearnError {
    #[error("reading the traffic: {0}")]
    Import(#[from] switchyard_gateway::traffic::ImportError),
    #[error("training the candidate: {0}")]
    Train(#[from] ScorerTrainError),
    #[error("judging the candidate: {0}")]
    Evaluate(#[from] RouteEvalError),
    #[error("{}: {source}", path.display())]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
}
