//! Switchyard's gateway: an OpenAI-compatible HTTP front door that routes `auto` requests
//! with the learned router, forwards them with retries, fallback and circuit breakers,
//! explains every decision in headers, enforces tenants' budgets and rate limits, exports
//! Prometheus metrics and writes a traffic log that retraining reads.
//!
//! The crate is built in layers; a module imports only from layers below it (checked by
//! `tests/house.rs` at the workspace root):
//!
//! 1. foundation: [`config`] (TOML, validation with key paths), [`metrics`], [`traffic`]
//!    (the traffic log's records and files);
//! 2. [`limits`]: tenants, allow-lists, budgets and rate limits, shared state on Redis,
//!    with their own typed errors;
//! 3. [`error`]: OpenAI's error shape, and every library error's conversion into it;
//! 4. [`runtime`]: the resolved config, the router stack, providers, the cache, start-up,
//!    reloads and promotions;
//! 5. [`pipeline`]: a chat request's steps, the fallback loop, streaming, the trace;
//! 6. [`edge`]: the axum handlers, the server, errors as responses.

pub mod config;
pub mod edge;
pub mod error;
#[cfg(test)]
mod fuzz;
pub mod limits;
pub mod metrics;
pub mod pipeline;
pub mod runtime;
pub mod traffic;

pub use config::{Config, ConfigError};
pub use edge::app::app;
pub use edge::server::{serve, serve_on_threads, shutdown_signal};
pub use runtime::{ConfigSource, StartupError, build_state, load_config, preflight, reload};
