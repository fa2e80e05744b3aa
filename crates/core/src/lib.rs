//! Switchyard's core: the types, traits and errors every other crate shares.
//!
//! This crate has no heavy dependencies (no candle, axum, qdrant or reqwest) so that
//! everything above it can depend on it cheaply, and so that the routing logic it will
//! hold stays pure and easy to test.

pub mod cache;
pub mod device;
pub mod embed;
pub mod input;
pub mod metrics;
pub mod policy;
pub mod pricing;
pub mod record;
pub mod rng;
pub mod task;
pub mod tokens;
pub mod vector;

pub use cache::{
    CacheCandidate, CacheEntry, CacheError, CacheFuture, CacheScope, Invalidate, SemanticCache,
};
pub use device::{DeviceSpec, ParseDeviceError};
pub use embed::{
    EmbedError, Embedder, EmbeddingFuture, EncoderInfo, ROUTING_TRUNCATION, Truncation,
    validate_inputs,
};
pub use input::{LineError, text_from_line};
pub use record::{
    DataFile, LabelSource, Logged, Outcome, RECORD_VERSION, RecordError, RecordMessage,
    RoutingRecord, read_records,
};
pub use task::{DifficultyBucket, DifficultyCuts, TaskClass};
