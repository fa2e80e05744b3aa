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
    /// Which tokens of an over-long input the encoder keeps. Part of the encoder's
    /// identity: a head trained on one kind of embedding must not read the other.
    #[serde(default)]
    pub truncation: Truncation,
}

impl EncoderInfo {
    /// "id (dim-d, weights sha256 prefix…, truncation tag)", for messages about mismatches.
    pub fn describe(&self) -> String {
        let sha: String = self.weights_sha256.chars().take(12).collect();
        format!(
            "{} ({}-d, weights sha256 {sha}…, truncation {})",
            self.id,
            self.dim,
            self.truncation.tag()
        )
    }
}

/// Which tokens of an input longer than the encoder's limit are kept.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(tag = "mode", rename_all = "snake_case")]
pub enum Truncation {
    /// The first tokens, as sentence-transformers does: `/v1/embeddings` and `embed`.
    #[default]
    Head,
    /// The first `head` tokens and as many of the last ones as fit. Routing prompts put
    /// the actual question last (few-shot examples, "the text: ... now summarise it"), so
    /// the router embeds this way (Sun et al. 2019 found head+tail best for long-text
    /// classification with BERT).
    HeadTail { head: usize },
}

/// How the router (classifier heads and scorer) embeds prompts: 64 head tokens and the
/// rest from the end.
pub const ROUTING_TRUNCATION: Truncation = Truncation::HeadTail { head: 64 };

impl Truncation {
    /// The content-token indices (special tokens excluded) kept from `len` tokens when
    /// `room` fit: `(head_end, tail_start)` — keep `[0, head_end)` and `[tail_start, len)`.
    pub fn keep(self, len: usize, room: usize) -> (usize, usize) {
        if len <= room {
            return (len, len);
        }
        match self {
            Self::Head => (room, len),
            Self::HeadTail { head } => {
                let head = head.min(room);
                (head, len - (room - head))
            }
        }
    }

    /// A short tag for file names and logs: `head` or `head64tail`.
    pub fn tag(self) -> String {
        match self {
            Self::Head => "head".to_owned(),
            Self::HeadTail { head } => format!("head{head}tail"),
        }
    }
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
    fn truncation_keeps_the_right_tokens() {
        assert_eq!(Truncation::Head.keep(10, 20), (10, 10));
        assert_eq!(Truncation::Head.keep(300, 254), (254, 300));
        let ht = Truncation::HeadTail { head: 64 };
        assert_eq!(ht.keep(100, 254), (100, 100));
        // 64 from the front, 190 from the back: 254 kept in all.
        assert_eq!(ht.keep(1000, 254), (64, 810));
        assert_eq!(
            Truncation::HeadTail { head: 500 }.keep(1000, 254),
            (254, 1000)
        );
        assert_eq!(ht.tag(), "head64tail");
        let json = serde_json::to_string(&ht).unwrap();
        assert_eq!(json, r#"{"mode":"head_tail","head":64}"#);
        assert_eq!(serde_json::from_str::<Truncation>(&json).unwrap(), ht);
    }

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
