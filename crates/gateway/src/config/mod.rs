//! The gateway's TOML configuration: types with defaults for everything, validation whose
//! errors name the key path, and the configuration used when there is no file at all.
//!
//! The annotated example is `switchyard.example.toml` at the repository root.
//!
//! One file per section; this module only gathers them. Each section reads with
//! `deny_unknown_fields`, and every error names its key path ([`ConfigError`]).

pub mod cache;
pub mod de;
pub mod error;
pub mod learn;
pub mod log;
pub mod models;
pub mod reliability;
pub mod root;
pub mod router;
pub mod server;
pub mod state;
pub mod telemetry;
pub mod tenants;

pub use cache::{CacheBackend, CacheConfig, DEFAULT_VERIFIER};
pub use error::ConfigError;
pub use learn::LearnConfig;
pub use log::LogConfig;
pub use models::{
    DEFAULT_LOCAL_GGUF, LOCAL_MODEL_ID, ModelConfig, ProviderConfig, RouteConfig, RoutePolicy,
};
pub use reliability::{BreakerSection, RetryConfig};
pub use root::Config;
pub use router::RouterConfig;
pub use server::ServerConfig;
pub use state::{StateConfig, WhenDown};
pub use telemetry::TelemetryConfig;
pub use tenants::TenantConfig;
