//! Prices and expected cost: USD per million input and output tokens per model, and the
//! expected cost of a request from its input tokens and the predicted output tokens.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

/// USD per one million tokens.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Price {
    pub input_per_mtok: f64,
    pub output_per_mtok: f64,
}

impl Price {
    /// Cost in USD of `input` prompt tokens and `output` completion tokens.
    pub fn cost(&self, input: f64, output: f64) -> f64 {
        (input * self.input_per_mtok + output * self.output_per_mtok) / 1e6
    }
}

/// A model's price could not be used.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum PriceError {
    #[error(
        "no price for model {model:?}; add it to the price table (USD per 1M input and output tokens)"
    )]
    Unknown { model: String },
    #[error("price of {model:?} must be finite and non-negative, got {value}")]
    Invalid { model: String, value: f64 },
}

/// Prices by model id.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(transparent)]
pub struct PriceTable(pub BTreeMap<String, Price>);

impl PriceTable {
    /// List prices (USD per 1M tokens) of the models the default configuration knows,
    /// as the providers publish them; a config file overrides or extends them.
    pub fn builtin() -> Self {
        let entries = [
            ("gpt-4o-mini", 0.15, 0.60),
            ("gpt-4o", 2.50, 10.00),
            ("claude-3-5-haiku-latest", 0.80, 4.00),
            ("claude-3-5-sonnet-latest", 3.00, 15.00),
        ];
        Self(
            entries
                .into_iter()
                .map(|(m, i, o)| {
                    (
                        m.to_owned(),
                        Price {
                            input_per_mtok: i,
                            output_per_mtok: o,
                        },
                    )
                })
                .collect(),
        )
    }

    /// Checks every price is finite and non-negative.
    pub fn validate(&self) -> Result<(), PriceError> {
        for (model, p) in &self.0 {
            for value in [p.input_per_mtok, p.output_per_mtok] {
                if !(value.is_finite() && value >= 0.0) {
                    return Err(PriceError::Invalid {
                        model: model.clone(),
                        value,
                    });
                }
            }
        }
        Ok(())
    }

    pub fn get(&self, model: &str) -> Result<&Price, PriceError> {
        self.0.get(model).ok_or_else(|| PriceError::Unknown {
            model: model.to_owned(),
        })
    }

    /// Expected cost in USD: input tokens × input price + predicted output tokens × output price.
    pub fn expected_cost(
        &self,
        model: &str,
        input_tokens: u64,
        predicted_output_tokens: f64,
    ) -> Result<f64, PriceError> {
        Ok(self
            .get(model)?
            .cost(input_tokens as f64, predicted_output_tokens.max(0.0)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn expected_cost_is_tokens_times_price() {
        let table = PriceTable::builtin();
        let cost = table.expected_cost("gpt-4o", 1_000, 500.0).unwrap();
        assert!((cost - (1_000.0 * 2.5 + 500.0 * 10.0) / 1e6).abs() < 1e-15);
        assert_eq!(
            table.expected_cost("gpt-4o-mini", 0, -3.0).unwrap(),
            0.0,
            "negative predictions clamp to 0"
        );
        let err = table.expected_cost("mystery", 1, 1.0).unwrap_err();
        assert!(err.to_string().contains("mystery"));
        assert_eq!(table.validate(), Ok(()));
    }

    #[test]
    fn prices_round_trip_and_reject_nonsense() {
        let json = r#"{"local": {"input_per_mtok": 0, "output_per_mtok": 0}}"#;
        let table: PriceTable = serde_json::from_str(json).unwrap();
        assert_eq!(table.get("local").unwrap().cost(1e6, 1e6), 0.0);
        assert!(serde_json::from_str::<PriceTable>(r#"{"m": {"input": 1}}"#).is_err());
        let bad = PriceTable(
            [(
                "m".to_owned(),
                Price {
                    input_per_mtok: -1.0,
                    output_per_mtok: 0.0,
                },
            )]
            .into(),
        );
        assert!(matches!(bad.validate(), Err(PriceError::Invalid { .. })));
    }
}
