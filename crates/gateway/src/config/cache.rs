//! `[cache]`: the semantic cache (backend, method, threshold, verifier).

use std::path::PathBuf;

use serde::Deserialize;
use switchyard_cache::Method;

use super::de::{parsed, yes};

/// Where cached answers live, and when one may be served.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CacheConfig {
    /// Look answers up and store them. Needs the encoder (`[router] enabled`).
    #[serde(default = "yes")]
    pub enabled: bool,
    /// `edge` (Qdrant in-process, on disk under `path`) or `qdrant` (a server at `url`).
    /// Default: `qdrant` when `url` or `SWITCHYARD_QDRANT_URL` is set, else `edge`.
    pub backend: Option<CacheBackend>,
    /// The embedded store's directory.
    #[serde(default = "CacheConfig::default_path")]
    pub path: PathBuf,
    /// The Qdrant server's gRPC URL (port 6334). `SWITCHYARD_QDRANT_URL` is used when unset.
    pub url: Option<String>,
    /// The env var holding the Qdrant API key (never the key itself).
    pub api_key_env: Option<String>,
    #[serde(default = "CacheConfig::default_collection")]
    pub collection: String,
    /// A Qdrant cluster: the shards and the copies of each shard when Switchyard creates
    /// the collection (an existing one keeps its own).
    pub shards: Option<u32>,
    pub replication_factor: Option<u32>,
    /// `verifier` (guard + learned verifier; the default), `guard` (cosine + guard) or
    /// `cosine`.
    #[serde(default = "CacheConfig::default_method", deserialize_with = "parsed")]
    pub method: Method,
    /// Minimum score for a semantic hit: the verifier's probability, or cosine. Default:
    /// the method's operating point from `switchyard eval cache`. Routes may override it.
    pub threshold: Option<f32>,
    /// Entries are served for this long after they are stored.
    #[serde(default = "CacheConfig::default_ttl")]
    pub ttl_s: u64,
    /// Most entries kept; the least recently hit are evicted beyond it.
    #[serde(default = "CacheConfig::default_capacity")]
    pub capacity: u64,
    /// Nearest entries judged per lookup.
    #[serde(default = "CacheConfig::default_candidates")]
    pub candidates: usize,
    /// The trained hit verifier. Default: `models/cache-verifier/verifier.json`, and when
    /// that file is missing the cache is off (with a warning) rather than the start failing.
    pub verifier: Option<PathBuf>,
    /// The env var holding the key for `POST /v1/cache/invalidate`; the endpoint is off
    /// without it.
    pub admin_key_env: Option<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum CacheBackend {
    Edge,
    Qdrant,
}

/// Where the committed verifier is, relative to the repository root.
pub const DEFAULT_VERIFIER: &str = "models/cache-verifier/verifier.json";

impl CacheConfig {
    fn default_path() -> PathBuf {
        "data/cache".into()
    }
    fn default_collection() -> String {
        "switchyard-cache".into()
    }
    fn default_method() -> Method {
        Method::Verifier
    }
    fn default_ttl() -> u64 {
        86_400
    }
    fn default_capacity() -> u64 {
        100_000
    }
    fn default_candidates() -> usize {
        4
    }
}

impl Default for CacheConfig {
    fn default() -> Self {
        Self {
            enabled: true,
            backend: None,
            path: Self::default_path(),
            url: None,
            api_key_env: None,
            collection: Self::default_collection(),
            shards: None,
            replication_factor: None,
            method: Self::default_method(),
            threshold: None,
            ttl_s: Self::default_ttl(),
            capacity: Self::default_capacity(),
            candidates: Self::default_candidates(),
            verifier: None,
            admin_key_env: None,
        }
    }
}
