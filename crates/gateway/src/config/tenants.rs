//! `[tenants.*]`: API keys, allow-lists and limits per tenant.

use serde::Deserialize;

use super::de::yes;

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TenantConfig {
    /// sha256 (hex) of the tenant's API key: `printf %s "$KEY" | sha256sum`.
    pub key_sha256: String,
    /// Models the tenant may pin or be routed to (default: all).
    pub models: Option<Vec<String>>,
    /// Routes the tenant may use (default: all).
    pub routes: Option<Vec<String>>,
    /// Tokens (prompt + completion) per UTC day.
    pub daily_tokens: Option<u64>,
    /// USD per UTC day.
    pub daily_usd: Option<f64>,
    /// Requests per minute.
    pub rpm: Option<u32>,
    /// Set `false` so this tenant's requests never explore (always the policy's pick).
    #[serde(default = "yes")]
    pub explore: bool,
}
