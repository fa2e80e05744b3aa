//! `[providers.*]`, `[models.*]` and `[routes.*]`: upstreams, the models clients name,
//! and routes choosing among them.

use std::path::PathBuf;

use serde::Deserialize;
use switchyard_core::policy::Policy;
use switchyard_providers::ProviderKind;

use super::de::{parsed, parsed_opt, yes};
use super::error::ConfigError;

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ProviderConfig {
    pub kind: ProviderKind,
    /// Default: OpenAI's or Anthropic's public API.
    pub base_url: Option<String>,
    /// The environment variable that holds the API key (never the key itself).
    pub api_key_env: Option<String>,
    #[serde(default = "ProviderConfig::default_connect")]
    pub connect_timeout_ms: u64,
    #[serde(default = "ProviderConfig::default_first_byte")]
    pub first_byte_timeout_ms: u64,
    #[serde(default = "ProviderConfig::default_idle")]
    pub idle_timeout_ms: u64,
    /// kind = "local": the GGUF file.
    pub model: Option<PathBuf>,
    /// kind = "local": a tokenizer.json (default: built from the GGUF's vocabulary).
    pub tokenizer: Option<PathBuf>,
    /// kind = "local": worker threads, each with its own copy of the weights (default 1).
    pub workers: Option<usize>,
    /// kind = "local": requests that may wait for a worker before 429 (default 16).
    pub queue: Option<usize>,
}

impl ProviderConfig {
    fn default_connect() -> u64 {
        5_000
    }
    fn default_first_byte() -> u64 {
        60_000
    }
    fn default_idle() -> u64 {
        30_000
    }

    pub fn new(kind: ProviderKind, base_url: Option<String>, api_key_env: Option<String>) -> Self {
        Self {
            kind,
            base_url,
            api_key_env,
            connect_timeout_ms: Self::default_connect(),
            first_byte_timeout_ms: Self::default_first_byte(),
            idle_timeout_ms: Self::default_idle(),
            model: None,
            tokenizer: None,
            workers: None,
            queue: None,
        }
    }

    pub fn resolved_base_url(&self) -> String {
        self.base_url.clone().unwrap_or_else(|| match self.kind {
            ProviderKind::Openai => "https://api.openai.com/v1".into(),
            ProviderKind::Anthropic => "https://api.anthropic.com/v1".into(),
            ProviderKind::Local => String::new(),
        })
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ModelConfig {
    pub provider: String,
    /// The id the upstream knows (default: this model's id).
    pub upstream_model: Option<String>,
    /// USD per 1M input tokens (default: the built-in price table, else 0).
    pub input_per_mtok: Option<f64>,
    /// USD per 1M output tokens.
    pub output_per_mtok: Option<f64>,
    /// A model the scorer knows whose predicted quality stands in for this one's
    /// (default: this model's id, when the scorer knows it).
    pub quality_like: Option<String>,
    /// A fixed quality prior in [0, 1] for models the scorer cannot predict.
    pub quality: Option<f64>,
    /// Expected output tokens when the scorer has no estimate (default 256).
    pub output_tokens: Option<f64>,
    /// Prompt + completion tokens the model accepts.
    pub context_window: Option<u64>,
}

/// How a route chooses.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum RoutePolicy {
    /// The learned router: scorer predictions and this policy.
    Learned(Policy),
    /// The configured order, first healthy model first (no encoder needed).
    Order,
}

impl std::str::FromStr for RoutePolicy {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        if s.trim() == "order" {
            Ok(Self::Order)
        } else {
            s.parse()
                .map(Self::Learned)
                .map_err(|e| format!("{e}, or order"))
        }
    }
}

impl std::fmt::Display for RoutePolicy {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Learned(p) => p.fmt(f),
            Self::Order => f.write_str("order"),
        }
    }
}

/// The local model's id in the configuration without a file.
pub const LOCAL_MODEL_ID: &str = "smollm2-135m-instruct";

/// Where `bash models/fetch.sh local-llm` puts it.
pub const DEFAULT_LOCAL_GGUF: &str = "models/smollm2-135m-instruct/SmolLM2-135M-Instruct.Q4_1.gguf";

pub fn default_policy() -> RoutePolicy {
    RoutePolicy::Learned(Policy::Threshold { tau: 0.7 })
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RouteConfig {
    /// The models this route may choose (and fall back to).
    pub models: Vec<String>,
    /// `threshold:TAU`, `tradeoff:LAMBDA`, `budget:USD`, `margin:M`, or `order`.
    #[serde(default = "default_policy", deserialize_with = "parsed")]
    pub policy: RoutePolicy,
    /// This route's semantic-hit threshold (default: `[cache] threshold`).
    pub cache_threshold: Option<f32>,
    /// Set `false` to never cache this route.
    #[serde(default = "yes")]
    pub cache: bool,
    /// Share of this route's requests that explore: they go to a model drawn among the
    /// eligible ones, weighted toward those the scorer knows least (README, "Learning from
    /// your traffic"). 0 (the default) never explores.
    #[serde(default)]
    pub explore: f64,
    /// Most USD per UTC day that explored requests may spend on this route; once reached,
    /// the route stops exploring until the next day. Unset: no cap.
    pub explore_daily_usd: Option<f64>,
    /// A scorer directory (trained on the configured heads) whose decision for every
    /// request of this route is computed off the request path and logged beside the served
    /// one, in `<log.dir>/shadow.jsonl`, to compare before promoting it.
    pub shadow: Option<PathBuf>,
    /// An outcome to meet instead of a raw parameter: `cost:USD` (mean per request),
    /// `quality:Q` (mean) or `strong-share:S` (share of calls to the strongest model).
    /// The policy fitted for it by `switchyard calibrate` (stored with the router) replaces
    /// `policy`.
    #[serde(default, deserialize_with = "parsed_opt")]
    pub target: Option<switchyard_router::calibration::Target>,
}

/// A provider's own settings: a local one names its GGUF file, a remote one has an
/// http(s) URL and non-zero timeouts.
pub fn validate_provider(name: &str, p: &ProviderConfig) -> Result<(), ConfigError> {
    if p.kind == ProviderKind::Local {
        if p.model.is_none() {
            return Err(ConfigError::new(
                format!("providers.{name}.model"),
                "kind = \"local\" needs model = \"path/to/model.gguf\"",
            ));
        }
        if p.workers == Some(0) {
            return Err(ConfigError::new(
                format!("providers.{name}.workers"),
                "must be ≥ 1",
            ));
        }
        return Ok(());
    }
    let url = p.resolved_base_url();
    if !(url.starts_with("http://") || url.starts_with("https://")) {
        return Err(ConfigError::new(
            format!("providers.{name}.base_url"),
            format!("{url:?} must start with http:// or https://"),
        ));
    }
    for (key, ms) in [
        ("connect_timeout_ms", p.connect_timeout_ms),
        ("first_byte_timeout_ms", p.first_byte_timeout_ms),
        ("idle_timeout_ms", p.idle_timeout_ms),
    ] {
        if ms == 0 {
            return Err(ConfigError::new(
                format!("providers.{name}.{key}"),
                "must be > 0",
            ));
        }
    }
    Ok(())
}
