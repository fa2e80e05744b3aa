//! Errors of loading and running the encoder. Every loading error names the file or the
//! model id it concerns and says what to do next.

use std::path::PathBuf;

#[derive(Debug, thiserror::Error)]
pub enum LoadError {
    #[error(
        "model directory {path} does not exist; run `bash models/fetch.sh` to fetch the default \
         encoder, or pass --model with a directory holding config.json, tokenizer.json and \
         model.safetensors"
    )]
    DirNotFound { path: PathBuf },
    #[error(
        "{path} is missing: a model directory needs config.json, tokenizer.json and model.safetensors"
    )]
    MissingFile { path: PathBuf },
    #[error("cannot read {path}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{path} is not a valid BERT config: {reason}")]
    InvalidConfig { path: PathBuf, reason: String },
    #[error(
        "{path} describes a {found:?} model; Switchyard's encoder runs BERT-family models \
         (model_type \"bert\"), e.g. sentence-transformers/all-MiniLM-L6-v2"
    )]
    UnsupportedArchitecture { path: PathBuf, found: String },
    #[error("{path} is not a usable tokenizer: {reason}")]
    Tokenizer { path: PathBuf, reason: String },
    #[error("{path} cannot be loaded as the model's weights (truncated or wrong model?): {reason}")]
    Weights { path: PathBuf, reason: String },
    #[error(
        "device `cuda` was requested but this build has no CUDA support; rebuild with \
         `cargo build --release --features cuda` or use --device cpu"
    )]
    CudaNotCompiled,
    #[error(
        "CUDA device {ordinal} cannot be opened: {reason}; use --device cpu or another ordinal"
    )]
    CudaUnavailable { ordinal: usize, reason: String },
    #[error(
        "cannot fetch {file} of {model_id} from the Hugging Face hub ({reason}). The hub may be \
         unreachable from here: download the model elsewhere and pass --model DIR with its \
         directory (config.json, tokenizer.json, model.safetensors) instead"
    )]
    Hub {
        model_id: String,
        file: String,
        reason: String,
    },
    #[error(
        "{model_id} looks like a Hugging Face hub id, but this build has no hub support; pass \
         --model DIR with a local model directory, or rebuild with `cargo build --release \
         --features hub`"
    )]
    HubNotCompiled { model_id: String },
    #[error(
        "SWITCHYARD_ENCODER_KERNELS={value:?} is not a kernel choice: use auto, avx512, avx2, \
         portable or candle{detail}"
    )]
    Kernels { value: String, detail: String },
}

/// Running the encoder failed. Bad input is rejected before this point (see
/// `switchyard_core::validate_inputs`), so these are tokenizer or device failures.
#[derive(Debug, thiserror::Error)]
pub enum EncodeError {
    #[error("tokenisation failed: {0}")]
    Tokenize(String),
    #[error("model forward pass failed: {0}")]
    Model(#[from] candle_core::Error),
    #[error(
        "token id {id} is outside the model's vocabulary of {size}: the tokenizer does not \
         belong to these weights; use the tokenizer.json shipped with the model"
    )]
    OutOfVocabulary { id: usize, size: usize },
    #[error("an input of {tokens} tokens is longer than the model's {limit} positions")]
    TooLong { tokens: usize, limit: usize },
}
