//! Switchyard's learned router, in one place: the gateway's `auto` routes, `POST
//! /v1/route`, `switchyard route`, `eval routing` and the feature extraction of `train
//! scorer` all go through it, so a prompt gets the same features when the scorer is
//! trained as when it serves, and the same request gets the same decision everywhere.
//!
//! - [`features`]: embedding → classifier heads → the scorer's feature vector;
//! - [`Router`]: heads + scorer with a version; [`Router::candidates`] predicts each
//!   candidate's quality and expected cost, [`Router::route`] applies the policy.

pub mod calibration;
pub mod candidates;
pub mod error;
pub mod explore;
pub mod features;

use std::collections::BTreeSet;
use std::path::Path;
use std::time::Instant;

use sha2::{Digest, Sha256};
use switchyard_core::EncoderInfo;
use switchyard_core::policy::{Candidate, Constraints, Decision, Policy, decide};
use switchyard_embed::heads::ClassifierHeads;
use switchyard_scorer::{PromptFeatures, Scorer, ScorerError};

pub use candidates::{
    CandidateSpec, DEFAULT_OUTPUT_TOKENS, DEFAULT_QUALITY_PRIOR, known_candidates,
    named_candidates, predict_candidates,
};
pub use error::RouterError;
pub use explore::Explore;
pub use features::{RouteFeatures, featurize};

/// One request as the router sees it.
#[derive(Debug, Clone)]
pub struct RouteInput<'a> {
    /// The routed text's embedding (the router's truncation).
    pub embedding: &'a [f32],
    /// The text the router embeds (the last user message): its length is a feature.
    pub prompt: &'a str,
    /// Prompt tokens of the whole request, for cost and context windows (real or estimated).
    pub input_tokens: u64,
    /// The client's output cap (`max_tokens`), when it set one.
    pub max_output_tokens: Option<u64>,
    pub candidates: &'a [CandidateSpec],
    /// Models that cannot serve now (open breakers, `--unavailable`).
    pub unavailable: BTreeSet<String>,
    pub policy: Policy,
}

/// A decision and the time its two stages took.
#[derive(Debug, Clone, PartialEq)]
pub struct Routed {
    pub decision: Decision,
    /// The heads and the feature vector.
    pub classify_ms: f64,
    /// The scorer, costs and the policy.
    pub score_ms: f64,
}

fn ms(since: Instant) -> f64 {
    since.elapsed().as_secs_f64() * 1e3
}

/// The learned router: classifier heads and a scorer trained on their outputs.
#[derive(Debug)]
pub struct Router {
    heads: ClassifierHeads,
    scorer: Scorer,
    version: String,
    /// Policies fitted to targets (`calibration.json` beside the scorer).
    calibration: calibration::Calibration,
}

impl Router {
    /// Pairs heads and scorer, refusing a scorer trained on other heads' outputs.
    pub fn new(
        heads: ClassifierHeads,
        scorer: Scorer,
        heads_dir: &Path,
    ) -> Result<Self, RouterError> {
        scorer.check_heads(heads.weights_sha256(), heads_dir)?;
        let version = version_of(&heads, &scorer);
        Ok(Self {
            heads,
            scorer,
            version,
            calibration: calibration::Calibration::default(),
        })
    }

    /// Loads heads and scorer trained on features of `encoder`.
    pub fn load(
        heads_dir: &Path,
        scorer_dir: &Path,
        encoder: &EncoderInfo,
    ) -> Result<Self, RouterError> {
        let heads = ClassifierHeads::load(heads_dir, encoder)?;
        let scorer = Scorer::load(scorer_dir, encoder)?;
        let mut router = Self::new(heads, scorer, heads_dir)?;
        router.calibration = calibration::Calibration::load(scorer_dir).map_err(|reason| {
            RouterError::Scorer(ScorerError::Invalid {
                path: scorer_dir.join(calibration::CALIBRATION_FILE),
                reason,
            })
        })?;
        Ok(router)
    }

    /// The policies fitted to targets for this router.
    pub fn calibration(&self) -> &calibration::Calibration {
        &self.calibration
    }

    /// A router with these heads and another scorer (a shadow, a candidate), refusing a
    /// scorer trained on other heads' outputs.
    pub fn with_scorer(&self, scorer: Scorer, heads_dir: &Path) -> Result<Self, RouterError> {
        Self::new(self.heads.clone(), scorer, heads_dir)
    }

    /// 16 hex digits identifying the heads and the scorer together; logged with every
    /// decision, so an outcome can be traced to the router that chose.
    pub fn version(&self) -> &str {
        &self.version
    }

    pub fn scorer(&self) -> &Scorer {
        &self.scorer
    }

    pub fn heads(&self) -> &ClassifierHeads {
        &self.heads
    }

    /// How many training samples the scorer had for `spec` (0 when it does not score it):
    /// exploration tries the least-known models most.
    pub fn evidence(&self, spec: &CandidateSpec) -> usize {
        spec.scored_as
            .as_ref()
            .and_then(|m| self.scorer.models.get(m))
            .map_or(0, |m| m.quality.samples)
    }

    /// The scorer's view of one prompt.
    pub fn features(&self, embedding: &[f32], prompt: &str) -> Result<RouteFeatures, RouterError> {
        let mut all = featurize(&self.heads, &[embedding.to_vec()], &[prompt])?;
        Ok(all.remove(0))
    }

    /// Each candidate's predicted quality and expected cost for a featurised prompt.
    pub fn candidates(
        &self,
        features: &PromptFeatures,
        input_tokens: u64,
        max_output_tokens: Option<u64>,
        specs: &[CandidateSpec],
    ) -> Result<Vec<Candidate>, RouterError> {
        predict_candidates(
            &self.scorer,
            features,
            input_tokens,
            max_output_tokens,
            specs,
        )
    }

    /// The decision for one request: features, candidates, constraints, policy.
    pub fn route(&self, input: &RouteInput<'_>) -> Result<Routed, RouterError> {
        let started = Instant::now();
        let features = self.features(input.embedding, input.prompt)?;
        let classify_ms = ms(started);
        let started = Instant::now();
        let candidates = self.candidates(
            &features.prompt,
            input.input_tokens,
            input.max_output_tokens,
            input.candidates,
        )?;
        let constraints = Constraints {
            required_tokens: input.input_tokens + input.max_output_tokens.unwrap_or(0),
            allowed: None,
            unavailable: input.unavailable.clone(),
        };
        let mut decision = decide(&candidates, &constraints, input.policy)?;
        decision.task = Some(features.classification.task);
        decision.difficulty = Some(f64::from(features.classification.difficulty));
        decision.router_version = Some(self.version.clone());
        Ok(Routed {
            decision,
            classify_ms,
            score_ms: ms(started),
        })
    }
}

fn version_of(heads: &ClassifierHeads, scorer: &Scorer) -> String {
    let mut h = Sha256::new();
    h.update(heads.weights_sha256().as_bytes());
    // Plain data with string keys in sorted maps: serialisation is deterministic.
    h.update(serde_json::to_vec(&scorer.manifest).unwrap_or_default());
    h.update(serde_json::to_vec(&scorer.models).unwrap_or_default());
    h.update(serde_json::to_vec(&scorer.clusters).unwrap_or_default());
    h.finalize()
        .iter()
        .take(8)
        .map(|b| format!("{b:02x}"))
        .collect()
}
