//! The `Embedder` seam: how the rest of Switchyard turns text into vectors without
//! knowing which encoder, device or batching strategy sits behind it.

use std::future::Future;
use std::pin::Pin;

/// What an encoder is, as recorded in trained artifacts' manifests and checked on load.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct EncoderInfo {
    /// A stable name: the model directory's name or the hub id.
    pub id: String,
    /// Embedding dimension.
    pub dim: usize,
    /// Longest input in tokens (special tokens included); longer inputs are truncated.
    pub max_tokens: usize,
    /// sha256 of the weights file, so artifacts can refuse a different encoder.
    pub weights_sha256: String,
}

/// Why an embedding could not be produced.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum EmbedError {
    /// Input `index` of the request is empty or only whitespace.
    #[error("input {index} is empty or only whitespace; there is nothing to embed")]
    EmptyInput { index: usize },
    /// The request held no inputs at all.
    #[error("no inputs given")]
    NoInputs,
    /// The encoder's queue is full: the caller should back off and retry (HTTP 429/503).
    #[error("the encoder queue is full ({capacity} requests waiting); retry shortly")]
    QueueFull { capacity: usize },
    /// The encoder worker has stopped; nothing more can be embedded by this instance.
    #[error("the encoder worker has stopped")]
    WorkerStopped,
    /// The model failed while running (a bug or a device failure, not bad input).
    #[error("encoder inference failed: {0}")]
    Inference(String),
}

/// A boxed future of embeddings, so `Embedder` stays object-safe.
pub type EmbeddingFuture = Pin<Box<dyn Future<Output = Result<Vec<Vec<f32>>, EmbedError>> + Send>>;

/// Turns texts into L2-normalised vectors of `info().dim` floats, one per text, in order.
pub trait Embedder: Send + Sync {
    fn info(&self) -> &EncoderInfo;

    /// Embeds `texts` without blocking the async runtime.
    fn embed(&self, texts: Vec<String>) -> EmbeddingFuture;
}

/// Checks a request before it reaches a model: at least one input, none blank.
pub fn validate_inputs(texts: &[String]) -> Result<(), EmbedError> {
    if texts.is_empty() {
        return Err(EmbedError::NoInputs);
    }
    match texts.iter().position(|t| t.trim().is_empty()) {
        Some(index) => Err(EmbedError::EmptyInput { index }),
        None => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn validation_names_the_blank_input() {
        let texts = vec!["a".to_owned(), " \t\n".to_owned(), String::new()];
        assert_eq!(
            validate_inputs(&texts),
            Err(EmbedError::EmptyInput { index: 1 })
        );
        assert_eq!(validate_inputs(&[]), Err(EmbedError::NoInputs));
        assert_eq!(validate_inputs(&["ok".to_owned()]), Ok(()));
    }
}
