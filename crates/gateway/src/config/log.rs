//! `[log]`: the traffic log (directory, rotation, what it captures).

use std::path::PathBuf;

use serde::Deserialize;

use super::de::yes;

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LogConfig {
    #[serde(default = "yes")]
    pub enabled: bool,
    /// Holds `traffic.jsonl` (rotated to `traffic-<time>.jsonl`) and `feedback.jsonl`.
    #[serde(default = "LogConfig::default_dir")]
    pub dir: PathBuf,
    /// With `false`, records hold only the prompt's sha256.
    #[serde(default = "yes")]
    pub log_prompts: bool,
    /// Also log each answer's text (what `switchyard label --judge` grades). Off by default.
    #[serde(default)]
    pub log_answers: bool,
    /// Rotate when the file reaches this size ...
    #[serde(default = "LogConfig::default_max_bytes")]
    pub max_bytes: u64,
    /// ... or this age.
    #[serde(default = "LogConfig::default_max_age")]
    pub max_age_s: u64,
}

impl LogConfig {
    fn default_dir() -> PathBuf {
        "logs".into()
    }
    fn default_max_bytes() -> u64 {
        64 * 1024 * 1024
    }
    fn default_max_age() -> u64 {
        86_400
    }
}

impl Default for LogConfig {
    fn default() -> Self {
        Self {
            enabled: true,
            dir: Self::default_dir(),
            log_prompts: true,
            log_answers: false,
            max_bytes: Self::default_max_bytes(),
            max_age_s: Self::default_max_age(),
        }
    }
}
