//! Switchyard's sentence encoder.
//!
//! A BERT-family model (all-MiniLM-L6-v2 by default) run with candle: tokenise with
//! per-batch padding and truncation at the model's limit, run the encoder, mean-pool over
//! the attention mask and L2-normalise. [`SentenceEncoder`] is the synchronous model;
//! [`EmbedWorker`] runs it on its own thread behind a bounded, batching queue and is what
//! servers should use. This is the only crate that knows candle and tokenizers.

mod device;
mod encoder;
mod error;
pub mod heads;
mod source;
mod worker;

pub use device::resolve_device;
pub use encoder::{Encoded, SentenceEncoder, clip};
pub use error::{EncodeError, LoadError};
pub use source::{ModelFiles, ModelSource, hub_file, sha256_file};
pub use worker::{EmbedWorker, WorkerConfig};
