//! Encoder options shared by every subcommand that embeds text.

use std::path::PathBuf;

use clap::Args;
use switchyard_core::{DeviceSpec, ROUTING_TRUNCATION};
use switchyard_embed::{LoadError, ModelSource, SentenceEncoder};

#[derive(Debug, Clone, Args)]
pub struct EncoderArgs {
    /// Sentence encoder: a model directory (config.json, tokenizer.json, model.safetensors)
    /// or a Hugging Face hub id such as sentence-transformers/all-MiniLM-L6-v2 (`hf:` forces
    /// a hub id). The default directory is filled by `bash models/fetch.sh`.
    #[arg(
        long,
        env = "SWITCHYARD_MODEL",
        default_value = "models/all-MiniLM-L6-v2",
        value_name = "DIR|HUB_ID"
    )]
    pub model: String,

    /// Where to run the encoder: auto, cpu, cuda or cuda:N. `auto` uses CUDA device 0 when
    /// the binary was built with `--features cuda` and a GPU is present.
    #[arg(
        long,
        env = "SWITCHYARD_DEVICE",
        default_value = "auto",
        value_name = "DEVICE"
    )]
    pub device: DeviceSpec,
}

impl EncoderArgs {
    /// The encoder as `--model` names it (for a config file's `[router] encoder`).
    pub fn encoder_source(&self) -> String {
        self.model.clone()
    }

    /// The encoder as sentence-transformers runs it (`embed`, `/v1/embeddings`).
    pub fn load(&self) -> Result<SentenceEncoder, LoadError> {
        SentenceEncoder::load(&ModelSource::parse(&self.model), self.device)
    }

    /// The encoder as the router runs it: long prompts keep their head and their tail,
    /// where the question usually is. Classifier heads and scorers are trained on these.
    pub fn load_for_routing(&self) -> Result<SentenceEncoder, LoadError> {
        Ok(self.load()?.with_truncation(ROUTING_TRUNCATION))
    }
}

/// The embedding cache shared by every command that trains or evaluates.
#[derive(Debug, Clone, Args)]
pub struct CacheArgs {
    /// Embedding cache directory (keyed by encoder checksum, truncation and text hash), so
    /// retraining and re-evaluating never embed a prompt twice.
    #[arg(
        long,
        env = "SWITCHYARD_CACHE_DIR",
        default_value = ".cache/embeddings"
    )]
    pub cache_dir: PathBuf,
}
