//! Why the gateway cannot start, reload or promote a router: one typed error whose
//! messages name the config key or file at fault and say what to do.

use crate::config::ConfigError;

#[derive(Debug, thiserror::Error)]
pub enum StartupError {
    /// A config key that does not resolve (names its key path).
    #[error(transparent)]
    Config(#[from] ConfigError),
    /// The encoder, heads or scorer of `[router]` (or a promoted scorer) do not load.
    #[error("{0}")]
    Router(String),
    /// The traffic log's directory cannot be used.
    #[error("{0}")]
    Log(String),
    /// The cache's settings do not resolve (a backend without a URL, a missing key variable).
    #[error("{0}")]
    Cache(String),
    /// The shared state's URL is invalid.
    #[error("{0}")]
    SharedState(String),
    /// The OTLP exporter cannot start.
    #[error("{0}")]
    Telemetry(String),
    /// A reload asked of a gateway started without a config file.
    #[error("no config file to reload (started without --config)")]
    NoConfigFile,
    /// A promotion asked of a gateway without the learned router.
    #[error("the learned router is not loaded ([router] enabled = false)")]
    NoRouter,
}
