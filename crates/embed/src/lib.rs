//! Switchyard's sentence encoder.
//!
//! A BERT-family model (all-MiniLM-L6-v2 by default): tokenise with truncation at the
//! model's limit, run the encoder, mean-pool over each input's tokens and L2-normalise. On
//! the CPU the forward pass runs on Switchyard's own kernels (`cpu`: AVX-512 / AVX2 GEMM
//! microkernels chosen at run time, no padding); candle loads the weights and runs the
//! model on CUDA, and remains the reference the kernels are tested against. [`SentenceEncoder`] is the synchronous model;
//! [`EmbedWorker`] runs it on its own thread behind a bounded, batching queue and is what
//! servers should use. This is the only crate that knows candle and tokenizers.

mod cpu;
mod device;
mod encoder;
mod error;
pub mod heads;
mod source;
mod worker;

pub use cpu::Isa;
pub use device::resolve_device;
pub use encoder::{CpuKernels, Encoded, SentenceEncoder, clip};
pub use error::{EncodeError, LoadError};
pub use source::{ModelFiles, ModelSource, hub_file, sha256_file};
pub use worker::{EmbedWorker, WorkerConfig};
