//! `[learn]`: what `switchyard learn` does — which route it improves, when a cycle runs,
//! what a candidate must show to be promoted, where it keeps its work and its log.

use std::path::PathBuf;

use serde::Deserialize;

use super::error::ConfigError;

/// The learner's settings (used by `switchyard learn`, never by the gateway itself).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LearnConfig {
    /// The route whose router is retrained (its models, prices and policy).
    #[serde(default = "LearnConfig::default_route")]
    pub route: String,
    /// A cycle runs once this many new requests with feedback have been logged.
    #[serde(default = "LearnConfig::default_every")]
    pub every: usize,
    /// How often the learner looks at the traffic log, in seconds.
    #[serde(default = "LearnConfig::default_interval")]
    pub interval_s: u64,
    /// A candidate is refused when its off-policy estimate rests on fewer effective
    /// requests than this.
    #[serde(default = "LearnConfig::default_min_ess")]
    pub min_effective_sample_size: f64,
    /// A candidate is refused when the whole 95% interval of its quality gain over the
    /// serving router lies below minus this.
    #[serde(default)]
    pub tolerance: f64,
    /// After a promotion, the requests with feedback the new router must serve before its
    /// live quality is compared with the previous router's interval (below it: rollback).
    #[serde(default = "LearnConfig::default_watch")]
    pub watch_requests: usize,
    /// Where the learner writes the imported traffic, its candidates and `learn.jsonl`.
    #[serde(default = "LearnConfig::default_work_dir")]
    pub work_dir: PathBuf,
    /// Routing records (e.g. benchmark imports) trained on beside the traffic.
    #[serde(default)]
    pub priors: Vec<PathBuf>,
}

impl LearnConfig {
    fn default_route() -> String {
        "auto".into()
    }
    fn default_every() -> usize {
        200
    }
    fn default_interval() -> u64 {
        60
    }
    fn default_min_ess() -> f64 {
        30.0
    }
    fn default_watch() -> usize {
        100
    }
    fn default_work_dir() -> PathBuf {
        PathBuf::from("learn")
    }
}

impl LearnConfig {
    /// Checks the values the types allow but the learner cannot use.
    pub fn validate(&self) -> Result<(), ConfigError> {
        if self.every == 0 {
            return Err(ConfigError::new("learn.every", "must be ≥ 1"));
        }
        if self.watch_requests == 0 {
            return Err(ConfigError::new("learn.watch_requests", "must be ≥ 1"));
        }
        if self.interval_s == 0 {
            return Err(ConfigError::new("learn.interval_s", "must be ≥ 1"));
        }
        for (key, v) in [
            ("min_effective_sample_size", self.min_effective_sample_size),
            ("tolerance", self.tolerance),
        ] {
            if !(v.is_finite() && v >= 0.0) {
                return Err(ConfigError::new(
                    format!("learn.{key}"),
                    "must be a number ≥ 0",
                ));
            }
        }
        Ok(())
    }
}

impl Default for LearnConfig {
    fn default() -> Self {
        Self {
            route: Self::default_route(),
            every: Self::default_every(),
            interval_s: Self::default_interval(),
            min_effective_sample_size: Self::default_min_ess(),
            tolerance: 0.0,
            watch_requests: Self::default_watch(),
            work_dir: Self::default_work_dir(),
            priors: Vec::new(),
        }
    }
}

#[cfg(test)]
mod tests {
    use crate::config::Config;

    #[test]
    fn learn_settings_that_cannot_work_name_their_key() {
        for (text, key) in [
            ("[learn]\nevery = 0\n", "learn.every"),
            ("[learn]\ninterval_s = 0\n", "learn.interval_s"),
            ("[learn]\ntolerance = -0.1\n", "learn.tolerance"),
            (
                "[learn]\nmin_effective_sample_size = -1\n",
                "learn.min_effective_sample_size",
            ),
        ] {
            let e = Config::parse(text).unwrap_err();
            assert_eq!(e.path, key, "{text}: {e}");
        }
        let ok = Config::parse("[learn]\nroute = \"auto\"\nevery = 50\n").unwrap();
        assert_eq!(ok.learn.every, 50);
    }
}
