//! After a promotion: the live quality of the new router, from the feedback on the
//! requests it served, against the interval of the router it replaced. Below it, the
//! learner rolls back.

use std::path::{Path, PathBuf};

use serde::Serialize;
use switchyard_core::RoutingRecord;
use switchyard_core::rng::SplitMix;
use switchyard_eval::route_eval::Estimate;

use crate::error::LearnError;

/// Bootstrap resamples of a live mean.
const RESAMPLES: usize = 500;

/// Every logged request with feedback under `log_dir`.
pub fn labelled_records(log_dir: &Path) -> Result<Vec<RoutingRecord>, LearnError> {
    let logs = switchyard_gateway::traffic::logs_in(log_dir);
    let feedback = vec![log_dir.join(switchyard_gateway::traffic::FEEDBACK_FILE)];
    Ok(switchyard_gateway::traffic::to_records(&logs, &feedback, &[], true)?.0)
}

/// The mean feedback score of the requests router `version` served, with a bootstrap
/// 95% interval, and how many there were.
pub fn live_quality(records: &[RoutingRecord], version: &str, seed: u64) -> (usize, Estimate) {
    let scores: Vec<f64> = records
        .iter()
        .filter(|r| {
            r.logged
                .as_ref()
                .is_some_and(|l| l.router_version.as_deref() == Some(version))
        })
        .filter_map(|r| r.outcomes.values().next()?.score)
        .collect();
    (scores.len(), mean_interval(&scores, seed))
}

fn mean_interval(xs: &[f64], seed: u64) -> Estimate {
    let mean = |v: &[f64]| v.iter().sum::<f64>() / v.len().max(1) as f64;
    let value = mean(xs);
    if xs.len() < 2 {
        return Estimate {
            value,
            ci95: [value, value],
        };
    }
    let mut rng = SplitMix::new(seed);
    let mut means: Vec<f64> = (0..RESAMPLES)
        .map(|_| {
            let draw: Vec<f64> = (0..xs.len())
                .map(|_| xs[((rng.unit() * xs.len() as f64) as usize).min(xs.len() - 1)])
                .collect();
            mean(&draw)
        })
        .collect();
    means.sort_by(f64::total_cmp);
    let at = |q: f64| means[((q * (RESAMPLES - 1) as f64).round() as usize).min(RESAMPLES - 1)];
    Estimate {
        value,
        ci95: [at(0.025), at(0.975)],
    }
}

/// A promotion under watch: the new version, the one it replaced (and where its scorer
/// is), and that one's live quality when it was replaced.
#[derive(Debug, Clone, Serialize)]
pub struct Watch {
    pub version: String,
    pub previous: String,
    pub previous_dir: PathBuf,
    pub baseline: Estimate,
    /// Requests with feedback the new version must serve before it is judged.
    pub requests: usize,
}

/// What the watch concludes.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(tag = "watch", rename_all = "snake_case")]
pub enum WatchVerdict {
    /// Too few requests with feedback yet.
    Waiting { served: usize },
    /// As good as the previous router's interval allows: the watch ends.
    Keep { served: usize, live: f64 },
    /// Below the previous router's interval by more than the tolerance: roll back.
    RollBack {
        served: usize,
        live: f64,
        why: String,
    },
}

impl Watch {
    /// Judges the new version's live quality `(served, estimate)`.
    pub fn judge(&self, served: usize, live: &Estimate, tolerance: f64) -> WatchVerdict {
        if served < self.requests {
            return WatchVerdict::Waiting { served };
        }
        let floor = self.baseline.ci95[0] - tolerance;
        if live.value < floor {
            return WatchVerdict::RollBack {
                served,
                live: live.value,
                why: format!(
                    "live quality {:.4} over {served} requests is below the previous router's interval [{:.4}, {:.4}] (less the tolerance {tolerance})",
                    live.value, self.baseline.ci95[0], self.baseline.ci95[1]
                ),
            };
        }
        WatchVerdict::Keep {
            served,
            live: live.value,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_promotion_is_kept_or_rolled_back_by_its_live_quality() {
        let watch = Watch {
            version: "new".into(),
            previous: "old".into(),
            previous_dir: "old-dir".into(),
            baseline: Estimate {
                value: 0.7,
                ci95: [0.65, 0.75],
            },
            requests: 50,
        };
        let live = |v: f64| Estimate {
            value: v,
            ci95: [v - 0.05, v + 0.05],
        };
        assert_eq!(
            watch.judge(10, &live(0.1), 0.0),
            WatchVerdict::Waiting { served: 10 }
        );
        assert!(matches!(
            watch.judge(60, &live(0.66), 0.0),
            WatchVerdict::Keep { .. }
        ));
        assert!(matches!(
            watch.judge(60, &live(0.62), 0.05),
            WatchVerdict::Keep { .. }
        ));
        let back = watch.judge(60, &live(0.5), 0.0);
        assert!(
            matches!(&back, WatchVerdict::RollBack { why, .. } if why.contains("0.6500")),
            "{back:?}"
        );
    }

    #[test]
    fn the_live_interval_covers_the_mean_and_narrows_with_data() {
        let few: Vec<f64> = (0..20).map(|i| f64::from(i % 2)).collect();
        let many: Vec<f64> = (0..2000).map(|i| f64::from(i % 2)).collect();
        let (a, b) = (mean_interval(&few, 1), mean_interval(&many, 1));
        assert!((a.value - 0.5).abs() < 1e-9 && (b.value - 0.5).abs() < 1e-9);
        assert!(a.ci95[0] < 0.5 && a.ci95[1] > 0.5);
        assert!(b.ci95[1] - b.ci95[0] < a.ci95[1] - a.ci95[0]);
    }

    #[test]
    fn live_quality_counts_only_the_requests_the_version_served() {
        let record = |version: &str, score: f64| -> RoutingRecord {
            serde_json::from_value(serde_json::json!({
                "id": format!("traffic/{version}-{score}"), "source": "traffic:t",
                "prompt": "p", "outcomes": {"m": {"score": score}},
                "logged": {"tenant": "t", "model": "m", "router_version": version}
            }))
            .unwrap()
        };
        let records = vec![
            record("a", 1.0),
            record("a", 0.0),
            record("a", 1.0),
            record("b", 0.0),
        ];
        let (n, q) = live_quality(&records, "a", 3);
        assert_eq!(n, 3);
        assert!((q.value - 2.0 / 3.0).abs() < 1e-9, "{q:?}");
        assert_eq!(live_quality(&records, "b", 3).0, 1);
        assert_eq!(live_quality(&records, "c", 3).0, 0);
    }
}
