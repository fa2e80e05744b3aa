//! `[retry]` and `[breaker]`: retries of an upstream and its circuit breaker.

use serde::Deserialize;

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RetryConfig {
    /// Retries of one target (after its first attempt) before falling back.
    #[serde(default = "RetryConfig::default_retries")]
    pub max_retries: u32,
    #[serde(default = "RetryConfig::default_base")]
    pub base_ms: u64,
    #[serde(default = "RetryConfig::default_max")]
    pub max_ms: u64,
}

impl RetryConfig {
    fn default_retries() -> u32 {
        2
    }
    fn default_base() -> u64 {
        100
    }
    fn default_max() -> u64 {
        5_000
    }
}

impl Default for RetryConfig {
    fn default() -> Self {
        Self {
            max_retries: Self::default_retries(),
            base_ms: Self::default_base(),
            max_ms: Self::default_max(),
        }
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BreakerSection {
    #[serde(default = "BreakerSection::default_failures")]
    pub consecutive_failures: u32,
    #[serde(default = "BreakerSection::default_window")]
    pub window: u32,
    #[serde(default = "BreakerSection::default_rate")]
    pub error_rate: f64,
    #[serde(default = "BreakerSection::default_open")]
    pub open_ms: u64,
}

impl BreakerSection {
    fn default_failures() -> u32 {
        5
    }
    fn default_window() -> u32 {
        20
    }
    fn default_rate() -> f64 {
        0.5
    }
    fn default_open() -> u64 {
        30_000
    }
}

impl Default for BreakerSection {
    fn default() -> Self {
        Self {
            consecutive_failures: Self::default_failures(),
            window: Self::default_window(),
            error_rate: Self::default_rate(),
            open_ms: Self::default_open(),
        }
    }
}
