//! The gate: whether a candidate router may replace the serving one, from its off-policy
//! evidence.

use serde::Serialize;
use switchyard_eval::route_eval::Estimate;

/// When a candidate may replace the serving router.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct Gate {
    /// Refuse when the off-policy estimate rests on fewer effective requests than this.
    pub min_effective_sample_size: f64,
    /// Refuse when the whole 95% interval of the candidate's DR quality gain over the
    /// serving router lies below `-tolerance`: clearly worse. A tie goes in (the candidate
    /// is fitted on more evidence), and refusing on a noisy negative point stalls learning.
    pub tolerance: f64,
}

impl Default for Gate {
    fn default() -> Self {
        Self {
            min_effective_sample_size: 0.0,
            tolerance: 0.0,
        }
    }
}

/// The gate's decision, with its reason.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(tag = "decision", rename_all = "snake_case")]
pub enum Verdict {
    Promote,
    Refuse { why: String },
}

impl Gate {
    /// Judges a candidate by its DR quality gain over the serving router and the
    /// effective sample size of that estimate.
    pub fn judge(&self, gain: &Estimate, effective_sample_size: f64) -> Verdict {
        if effective_sample_size < self.min_effective_sample_size {
            return Verdict::Refuse {
                why: format!(
                    "the estimate rests on {effective_sample_size:.1} effective requests, under the minimum {}: explore more, or wait for more traffic",
                    self.min_effective_sample_size
                ),
            };
        }
        if gain.ci95[1] < -self.tolerance {
            return Verdict::Refuse {
                why: format!(
                    "clearly worse: its quality gain {:+.4} has the interval [{:+.4}, {:+.4}], below -{}",
                    gain.value, gain.ci95[0], gain.ci95[1], self.tolerance
                ),
            };
        }
        Verdict::Promote
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn est(value: f64, lo: f64, hi: f64) -> Estimate {
        Estimate {
            value,
            ci95: [lo, hi],
        }
    }

    #[test]
    fn the_gate_refuses_only_the_clearly_worse_and_the_thinly_evidenced() {
        let gate = Gate {
            min_effective_sample_size: 30.0,
            tolerance: 0.01,
        };
        assert_eq!(gate.judge(&est(0.02, 0.0, 0.05), 100.0), Verdict::Promote);
        // A noisy negative point whose interval reaches above -tolerance is a tie: in.
        assert_eq!(gate.judge(&est(-0.05, -0.2, 0.0), 100.0), Verdict::Promote);
        assert_eq!(
            gate.judge(&est(-0.05, -0.2, -0.005), 100.0),
            Verdict::Promote
        );
        let worse = gate.judge(&est(-0.05, -0.2, -0.02), 100.0);
        assert!(
            matches!(&worse, Verdict::Refuse { why } if why.contains("clearly worse")),
            "{worse:?}"
        );
        let thin = gate.judge(&est(0.1, 0.05, 0.2), 12.0);
        assert!(
            matches!(&thin, Verdict::Refuse { why } if why.contains("12.0 effective")),
            "{thin:?}"
        );
        // The default is the simulator's historical rule: refuse when the interval is below 0.
        let d = Gate::default();
        assert_eq!(d.judge(&est(-0.01, -0.03, 0.0), 0.0), Verdict::Promote);
        assert!(matches!(
            d.judge(&est(-0.01, -0.03, -0.001), 0.0),
            Verdict::Refuse { .. }
        ));
    }
}
