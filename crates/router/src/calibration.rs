//! Calibrated policies: a route may ask for an outcome (`target = "cost:0.0005"`, mean USD
//! per request; `quality:0.6`, mean quality; `strong-share:0.3`, the share of calls to
//! the strongest model) instead of a raw policy parameter. `switchyard calibrate` finds the
//! parameter that meets it on validation data or recent traffic and stores it with the
//! router, in the scorer directory's `calibration.json`; the router reads it when it
//! loads, so a promoted router brings its own calibration.

use std::collections::BTreeMap;
use std::path::Path;

use serde::{Deserialize, Serialize};
use switchyard_core::policy::Policy;

pub const CALIBRATION_FILE: &str = "calibration.json";

/// What a route asks its policy to achieve.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub enum Target {
    /// Mean cost per request, USD, at most.
    Cost(f64),
    /// Mean quality, at least.
    Quality(f64),
    /// Share of requests sent to the strongest model, at most.
    StrongShare(f64),
}

impl std::str::FromStr for Target {
    type Err = String;

    /// `cost:USD`, `quality:Q` or `strong-share:S`.
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let (kind, value) = s
            .split_once(':')
            .ok_or_else(|| format!("{s:?}: expected cost:USD, quality:Q or strong-share:S"))?;
        let v: f64 = value
            .trim()
            .parse()
            .map_err(|_| format!("{s:?}: {value:?} is not a number"))?;
        let unit = (0.0..=1.0).contains(&v);
        match kind.trim() {
            "cost" if v.is_finite() && v >= 0.0 => Ok(Self::Cost(v)),
            "quality" if unit => Ok(Self::Quality(v)),
            "strong-share" if unit => Ok(Self::StrongShare(v)),
            "cost" | "quality" | "strong-share" => Err(format!(
                "{s:?}: cost takes a non-negative USD amount, quality and strong-share a number in [0, 1]"
            )),
            other => Err(format!(
                "{s:?}: unknown target {other:?}; use cost:USD, quality:Q or strong-share:S"
            )),
        }
    }
}

impl std::fmt::Display for Target {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Cost(v) => write!(f, "cost:{v}"),
            Self::Quality(v) => write!(f, "quality:{v}"),
            Self::StrongShare(v) => write!(f, "strong-share:{v}"),
        }
    }
}

/// One fitted target.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Fitted {
    /// The policy that meets the target on the data (`threshold:0.62`, ...).
    pub policy: String,
    /// What it achieved there: mean cost, mean quality, share of the strongest model.
    pub cost_usd: f64,
    pub quality: f64,
    pub strong_share: f64,
    /// The data it was fitted on and how many prompts.
    pub data: String,
    pub prompts: usize,
    /// Whether the costs and qualities were the data's own outcomes (`true`) or the
    /// router's predictions (recent traffic has one outcome per prompt).
    pub measured: bool,
}

/// Every target fitted for one router, keyed by the target as written.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Calibration {
    pub targets: BTreeMap<String, Fitted>,
}

impl Calibration {
    /// The calibration in `dir`, or an empty one when there is none.
    pub fn load(dir: &Path) -> Result<Self, String> {
        let path = dir.join(CALIBRATION_FILE);
        if !path.is_file() {
            return Ok(Self::default());
        }
        let text = fs_err::read_to_string(&path).map_err(|e| e.to_string())?;
        serde_json::from_str(&text).map_err(|e| format!("{}: {e}", path.display()))
    }

    pub fn save(&self, dir: &Path) -> Result<(), String> {
        let text = serde_json::to_string_pretty(self).map_err(|e| e.to_string())?;
        fs_err::write(dir.join(CALIBRATION_FILE), text + "\n").map_err(|e| e.to_string())
    }

    /// The policy fitted for `target`.
    pub fn policy(&self, target: Target) -> Result<Policy, String> {
        let fitted = self.targets.get(&target.to_string()).ok_or_else(|| {
            format!(
                "the router has no calibration for {target}: run `switchyard calibrate --target {target} --model-dir SCORER ...` (it writes {CALIBRATION_FILE} into the scorer directory); calibrated: {}",
                if self.targets.is_empty() {
                    "none".to_owned()
                } else {
                    self.targets.keys().cloned().collect::<Vec<_>>().join(", ")
                }
            )
        })?;
        fitted.policy.parse()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn targets_parse_print_and_refuse_nonsense() {
        for s in ["cost:0.0005", "quality:0.6", "strong-share:0.3"] {
            assert_eq!(s.parse::<Target>().unwrap().to_string(), s);
        }
        for bad in ["cost", "cost:-1", "quality:2", "speed:3", "strong-share:x"] {
            assert!(bad.parse::<Target>().is_err(), "{bad}");
        }
    }

    #[test]
    fn saved_calibrations_come_back_and_name_what_is_missing() {
        let dir = tempfile::tempdir().unwrap();
        assert!(Calibration::load(dir.path()).unwrap().targets.is_empty());
        let mut c = Calibration::default();
        c.targets.insert(
            "cost:0.001".into(),
            Fitted {
                policy: "threshold:0.62".into(),
                cost_usd: 0.0009,
                quality: 0.7,
                strong_share: 0.2,
                data: "val.jsonl".into(),
                prompts: 300,
                measured: true,
            },
        );
        c.save(dir.path()).unwrap();
        let back = Calibration::load(dir.path()).unwrap();
        assert_eq!(back, c);
        assert_eq!(
            back.policy("cost:0.001".parse().unwrap()).unwrap(),
            Policy::Threshold { tau: 0.62 }
        );
        let e = back.policy(Target::Quality(0.5)).unwrap_err();
        assert!(
            e.contains("switchyard calibrate --target quality:0.5") && e.contains("cost:0.001"),
            "{e}"
        );
    }
}
