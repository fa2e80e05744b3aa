//! Storing an answer in the semantic cache after the client has it.

use std::sync::Arc;

use serde_json::Value;
use switchyard_cache::{Cache, CacheScope};

use crate::runtime::AppState;

/// What storing an answer in the cache needs.
#[derive(Debug)]
pub struct StoreJob {
    pub cache: Arc<Cache>,
    pub scope: CacheScope,
    pub prompt: String,
    pub vector: Vec<f32>,
}

impl StoreJob {
    /// Stores the completion in the background; the client never waits for it.
    pub fn store(self, state: &Arc<AppState>, body: &Value, model: &str) {
        if !crate::runtime::cache::storable(body) {
            return;
        }
        let (state, response, model) = (state.clone(), body.to_string(), model.to_owned());
        tokio::spawn(async move {
            let stored = self
                .cache
                .insert(self.scope, &self.prompt, self.vector, response, &model);
            let outcome = match stored.await {
                Ok(_) => "ok",
                Err(e) => {
                    tracing::warn!(error = %e, "cache store failed");
                    "error"
                }
            };
            state.metrics.cache_store(outcome);
        });
    }
}
