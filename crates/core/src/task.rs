//! The fixed task taxonomy every classifier head, scorer feature and report uses.
//! `datasets/README.md` documents which benchmark maps to which class.

use std::fmt;
use std::str::FromStr;

/// What a prompt asks for.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, serde::Serialize, serde::Deserialize,
)]
#[serde(rename_all = "snake_case")]
pub enum TaskClass {
    /// Write, fix or explain code.
    Code,
    /// Arithmetic, algebra, word problems, proofs.
    Math,
    /// Logic, commonsense and multi-step inference that is not arithmetic.
    Reasoning,
    /// Academic and professional subject questions (science, law, medicine, ...).
    Knowledge,
    /// Short factual lookups and trivia.
    FactualQa,
    /// Creative and professional writing, role-play.
    Writing,
    /// Summarise, extract, rewrite, translate or classify a given text.
    Transform,
    /// Open-ended advice, explanations, brainstorming.
    Chat,
}

impl TaskClass {
    /// Every class, in the fixed order used for head outputs and manifests.
    pub const ALL: [Self; 8] = [
        Self::Code,
        Self::Math,
        Self::Reasoning,
        Self::Knowledge,
        Self::FactualQa,
        Self::Writing,
        Self::Transform,
        Self::Chat,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Code => "code",
            Self::Math => "math",
            Self::Reasoning => "reasoning",
            Self::Knowledge => "knowledge",
            Self::FactualQa => "factual_qa",
            Self::Writing => "writing",
            Self::Transform => "transform",
            Self::Chat => "chat",
        }
    }

    /// Position in [`TaskClass::ALL`].
    pub fn index(self) -> usize {
        Self::ALL.iter().position(|&c| c == self).unwrap_or(0)
    }
}

impl fmt::Display for TaskClass {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "unknown task {given:?}; expected one of code, math, reasoning, knowledge, factual_qa, writing, transform, chat"
)]
pub struct ParseTaskError {
    pub given: String,
}

impl FromStr for TaskClass {
    type Err = ParseTaskError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::ALL
            .into_iter()
            .find(|c| c.as_str() == s)
            .ok_or_else(|| ParseTaskError {
                given: s.to_owned(),
            })
    }
}

/// How hard a prompt is, bucketed from a difficulty in [0, 1].
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum DifficultyBucket {
    Easy,
    Medium,
    Hard,
}

/// The cut points between buckets: `d < easy_below` is easy, `d >= hard_from` is hard.
#[derive(Debug, Clone, Copy, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct DifficultyCuts {
    pub easy_below: f64,
    pub hard_from: f64,
}

impl DifficultyCuts {
    pub fn bucket(&self, difficulty: f64) -> DifficultyBucket {
        if difficulty < self.easy_below {
            DifficultyBucket::Easy
        } else if difficulty >= self.hard_from {
            DifficultyBucket::Hard
        } else {
            DifficultyBucket::Medium
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_round_trip_and_indices_are_dense() {
        for (i, class) in TaskClass::ALL.into_iter().enumerate() {
            assert_eq!(class.index(), i);
            assert_eq!(class.as_str().parse(), Ok(class));
            let json = serde_json::to_string(&class).unwrap();
            assert_eq!(json, format!("\"{}\"", class.as_str()));
        }
        assert!("poetry".parse::<TaskClass>().is_err());
    }

    #[test]
    fn buckets_follow_the_cuts() {
        let cuts = DifficultyCuts {
            easy_below: 0.2,
            hard_from: 0.6,
        };
        assert_eq!(cuts.bucket(0.0), DifficultyBucket::Easy);
        assert_eq!(cuts.bucket(0.2), DifficultyBucket::Medium);
        assert_eq!(cuts.bucket(0.59), DifficultyBucket::Medium);
        assert_eq!(cuts.bucket(0.6), DifficultyBucket::Hard);
    }
}
