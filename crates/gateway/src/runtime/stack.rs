//! The encoder's thread and loading the learned router for it.

use std::path::PathBuf;

use switchyard_core::ROUTING_TRUNCATION;
use switchyard_embed::{EmbedWorker, ModelSource, SentenceEncoder, WorkerConfig};
use switchyard_router::Router;

use super::error::StartupError;

/// The encoder's thread: what `auto` routing and the semantic cache need. The learned
/// router itself lives in the [`Runtime`], so a request sees one router and the model
/// table built for it, and promoting a router is one swap.
#[derive(Debug)]
pub struct RouterStack {
    pub worker: EmbedWorker,
}

impl RouterStack {
    /// Loads the encoder and the router, checking they belong together.
    pub fn load(config: &crate::config::RouterConfig) -> Result<(Self, Router), StartupError> {
        let device = config.device;
        let encoder = SentenceEncoder::load(&ModelSource::parse(&config.encoder), device)
            .map_err(|e| StartupError::Router(format!("router.encoder: {e}")))?
            .with_truncation(ROUTING_TRUNCATION);
        let router = Router::load(&config.heads, &config.scorer, encoder.info())
            .map_err(|e| StartupError::Router(format!("router: {e}")))?;
        let worker = EmbedWorker::spawn(encoder, WorkerConfig::default())
            .map_err(|e| StartupError::Router(format!("cannot start the encoder thread: {e}")))?;
        Ok((Self { worker }, router))
    }

    /// Loads the router of `heads` and `scorer` for this encoder (a reload or a promotion).
    pub fn load_router(
        &self,
        heads: &std::path::Path,
        scorer: &std::path::Path,
    ) -> Result<Router, StartupError> {
        let info = switchyard_core::Embedder::info(&self.worker);
        Router::load(heads, scorer, info).map_err(|e| StartupError::Router(format!("router: {e}")))
    }
}

/// A GGUF path, or `hf:owner/name/file.gguf` resolved through the Hugging Face hub cache.
pub fn resolve_gguf(model: &std::path::Path) -> Result<PathBuf, String> {
    let text = model.to_string_lossy();
    let Some(id) = text.strip_prefix("hf:") else {
        return Ok(model.to_path_buf());
    };
    let mut parts = id.splitn(3, '/');
    let (Some(owner), Some(name), Some(file)) = (parts.next(), parts.next(), parts.next()) else {
        return Err(format!("{text:?}: a hub model is hf:owner/name/file.gguf"));
    };
    switchyard_embed::hub_file(&format!("{owner}/{name}"), file).map_err(|e| e.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn gguf_paths_and_hub_ids() {
        let p = std::path::Path::new("models/x.gguf");
        assert_eq!(resolve_gguf(p), Ok(p.to_path_buf()));
        let e = resolve_gguf(std::path::Path::new("hf:only-owner")).unwrap_err();
        assert!(e.contains("hf:owner/name/file.gguf"), "{e}");
    }
}
