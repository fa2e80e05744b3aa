//! `[server]`: the listening address, body and time limits, connection caps.

use std::net::SocketAddr;

use serde::Deserialize;

use super::de::{parsed, yes};
use super::error::ConfigError;

fn default_listen() -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], 8080))
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ServerConfig {
    /// HOST:PORT, e.g. 127.0.0.1:8080.
    #[serde(default = "default_listen", deserialize_with = "parsed")]
    pub listen: SocketAddr,
    /// Larger request bodies get 413.
    #[serde(default = "ServerConfig::default_max_body")]
    pub max_body_bytes: usize,
    /// Overall deadline for one request, retries and fallbacks included.
    #[serde(default = "ServerConfig::default_deadline")]
    pub deadline_ms: u64,
    /// Event loops serving connections, each a single-threaded runtime on its own thread
    /// with its own listening socket on the same address (`SO_REUSEPORT`); 0 = one per
    /// CPU core. See [`crate::serve_on_threads`].
    #[serde(default)]
    pub io_threads: usize,
    /// How long a connection may take to send a request's headers, counted from when it
    /// is ready for one: a new connection, or a keep-alive connection after its last
    /// answer (so this is also the idle keep-alive timeout). Then it is closed.
    #[serde(default = "ServerConfig::default_header_timeout")]
    pub header_timeout_ms: u64,
    /// How long a request's body may take to arrive once its headers are in (408 after).
    #[serde(default = "ServerConfig::default_body_timeout")]
    pub body_timeout_ms: u64,
    /// Open client connections at most; beyond, new ones get a 503 and are closed at
    /// once. 0 = three quarters of the process's open-file limit (`ulimit -n`), so the
    /// gateway keeps descriptors for its upstreams, cache and log.
    #[serde(default)]
    pub max_connections: usize,
    /// Whether `GET /v1/models` needs a tenant's key when tenants are configured (as
    /// OpenAI's does). `/health` and `/ready` never do.
    #[serde(default = "yes")]
    pub models_need_key: bool,
    /// Whether `GET /metrics` needs a tenant's key when tenants are configured. Off by
    /// default: Prometheus scrapes it from inside the network; bind or firewall
    /// accordingly, or turn this on.
    #[serde(default)]
    pub metrics_need_key: bool,
}

impl ServerConfig {
    fn default_max_body() -> usize {
        4 * 1024 * 1024
    }
    fn default_deadline() -> u64 {
        300_000
    }
    fn default_header_timeout() -> u64 {
        30_000
    }
    fn default_body_timeout() -> u64 {
        60_000
    }

    /// `max_connections`, with 0 resolved from the open-file limit.
    pub fn connection_cap(&self) -> usize {
        match self.max_connections {
            0 => open_file_limit().map_or(768, |n| (n / 4 * 3).clamp(64, 1 << 20)),
            n => n,
        }
    }

    pub fn validate(&self) -> Result<(), ConfigError> {
        if self.io_threads > 1024 {
            return Err(ConfigError::new(
                "server.io_threads",
                "must be at most 1024 (0 = one per CPU core)",
            ));
        }
        for (key, value) in [
            ("max_body_bytes", self.max_body_bytes as u64),
            ("deadline_ms", self.deadline_ms),
            ("header_timeout_ms", self.header_timeout_ms),
            ("body_timeout_ms", self.body_timeout_ms),
        ] {
            if value == 0 {
                return Err(ConfigError::new(format!("server.{key}"), "must be > 0"));
            }
        }
        Ok(())
    }
}

/// The soft limit on open files, from `/proc/self/limits` (Linux); `None` elsewhere.
fn open_file_limit() -> Option<usize> {
    let limits = std::fs::read_to_string("/proc/self/limits").ok()?;
    let line = limits.lines().find(|l| l.starts_with("Max open files"))?;
    line.split_whitespace().nth(3)?.parse().ok()
}

impl Default for ServerConfig {
    fn default() -> Self {
        Self {
            listen: default_listen(),
            max_body_bytes: Self::default_max_body(),
            deadline_ms: Self::default_deadline(),
            io_threads: 0,
            header_timeout_ms: Self::default_header_timeout(),
            body_timeout_ms: Self::default_body_timeout(),
            max_connections: 0,
            models_need_key: true,
            metrics_need_key: false,
        }
    }
}
