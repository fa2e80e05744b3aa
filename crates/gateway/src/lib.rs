//! Switchyard's gateway: an OpenAI-compatible HTTP front door that routes `auto` requests
//! with the learned router, forwards them with retries, fallback and circuit breakers,
//! explains every decision in headers, enforces tenants' budgets and rate limits, exports
//! Prometheus metrics and writes a traffic log that retraining reads.
//!
//! Layout: [`config`] (TOML, validation with key paths), [`state`] (what is loaded once and
//! what a reload swaps), [`plan`] (request → ordered models), [`chat`] (forwarding,
//! streaming, accounting), [`app`] (the axum routes and `serve`), [`tenants`], [`shared`] (limits, ids and promotions shared
//! by replicas on Redis), [`metrics`],
//! [`traffic`], [`error`] (OpenAI's error shape).

pub mod app;
pub mod cache;
pub mod chat;
pub mod config;
pub mod error;
pub mod forward;
#[cfg(test)]
mod fuzz;
pub mod judge;
pub mod metrics;
pub mod plan;
pub mod request;
pub mod server;
pub mod shadow;
pub mod shared;
pub mod state;
pub mod stream;
pub mod telemetry;
pub mod tenants;
pub mod trace;
pub mod traffic;

pub use app::{ConfigSource, app, build_state, load_config, preflight, reload};
pub use config::{Config, ConfigError};
pub use server::{serve, serve_on_threads, shutdown_signal};
