//! `[router]`: the encoder, classifier heads and scorer of the learned router.

use std::path::PathBuf;

use serde::Deserialize;
use switchyard_core::DeviceSpec;

use super::de::{parsed, yes};

/// The learned router: encoder, classifier heads and scorer (read at start only).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RouterConfig {
    /// Load the encoder and the router. Without it only `policy = "order"` routes and
    /// pinned models work, and `/v1/embeddings` is off.
    #[serde(default = "yes")]
    pub enabled: bool,
    #[serde(default = "RouterConfig::default_encoder")]
    pub encoder: String,
    #[serde(default = "RouterConfig::default_heads")]
    pub heads: PathBuf,
    #[serde(default = "RouterConfig::default_scorer")]
    pub scorer: PathBuf,
    /// auto, cpu, cuda or cuda:N.
    #[serde(default, deserialize_with = "parsed")]
    pub device: DeviceSpec,
    /// The env var holding the key for `POST /admin/router` (`switchyard router promote`);
    /// the endpoint is off without it.
    pub admin_key_env: Option<String>,
    /// Seed for the exploration draws. With one request in flight at a time the same
    /// traffic then explores the same way (simulations, tests); unset, draws are random.
    pub explore_seed: Option<u64>,
}

impl RouterConfig {
    fn default_encoder() -> String {
        "models/all-MiniLM-L6-v2".into()
    }
    fn default_heads() -> PathBuf {
        "models/classifier".into()
    }
    fn default_scorer() -> PathBuf {
        "models/scorer".into()
    }
}

impl Default for RouterConfig {
    fn default() -> Self {
        Self {
            enabled: true,
            encoder: Self::default_encoder(),
            heads: Self::default_heads(),
            scorer: Self::default_scorer(),
            device: DeviceSpec::default(),
            admin_key_env: None,
            explore_seed: None,
        }
    }
}
