//! The runtime layer: what the gateway is built from its config and holds while it
//! serves — the resolved runtime ([`resolved`]), the encoder's thread ([`stack`]), the
//! state every request shares ([`state`]), the semantic cache ([`cache`]), trace export
//! ([`telemetry`]), and its life: start, reload, promotion ([`lifecycle`]), routers shared between replicas
//! ([`routers`]).

pub mod cache;
pub mod error;
pub mod lifecycle;
pub mod resolved;
pub mod routers;
pub mod stack;
pub mod state;
pub mod telemetry;

pub use error::StartupError;
pub use lifecycle::{
    ConfigSource, build_state, check, load_config, offline_runtime, preflight, promote, reload,
};
pub use resolved::{Capture, EdgeSettings, ModelRuntime, RouteRuntime, Runtime};
pub use stack::{RouterStack, resolve_gguf};
pub use state::{AppState, ExploreDraws, ExploreSpend};
