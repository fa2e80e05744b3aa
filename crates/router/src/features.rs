//! The scorer's input for a prompt: the classifier heads' task probabilities and
//! difficulty on its embedding, and its estimated length, laid out by
//! [`switchyard_scorer::features`]. `train scorer` and every routing path call
//! [`featurize`], so training and serving features cannot drift apart.

use switchyard_embed::heads::{Classification, ClassifierHeads};
use switchyard_scorer::{PromptFeatures, features};

use crate::error::RouterError;

/// A prompt as the router sees it: what the heads said, and the scorer's features.
#[derive(Debug, Clone, PartialEq)]
pub struct RouteFeatures {
    pub classification: Classification,
    pub prompt: PromptFeatures,
    /// The length feature's input: [`switchyard_core::tokens::estimate`] of the text.
    pub estimated_tokens: u64,
}

/// Features of many prompts at once (the heads classify in one batch). `texts[i]` is the
/// text `embeddings[i]` embeds: the routed text, never the whole chat.
pub fn featurize(
    heads: &ClassifierHeads,
    embeddings: &[Vec<f32>],
    texts: &[&str],
) -> Result<Vec<RouteFeatures>, RouterError> {
    if embeddings.len() != texts.len() {
        return Err(RouterError::Mismatch {
            embeddings: embeddings.len(),
            texts: texts.len(),
        });
    }
    let classes = heads.classify(embeddings)?;
    Ok(classes
        .into_iter()
        .zip(embeddings)
        .zip(texts)
        .map(|((classification, embedding), text)| {
            let estimated_tokens = switchyard_core::tokens::estimate(text);
            let probs: Vec<f32> = classification.task_probs.iter().map(|(_, p)| *p).collect();
            let prompt = PromptFeatures {
                features: features(
                    embedding,
                    &probs,
                    classification.difficulty,
                    estimated_tokens as usize,
                ),
                task: classification.task,
            };
            RouteFeatures {
                classification,
                prompt,
                estimated_tokens,
            }
        })
        .collect())
}
