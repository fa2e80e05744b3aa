//! `--prices FILE`: USD per 1M tokens per model, on top of the built-in table.

use std::path::Path;

use anyhow::Context;
use switchyard_core::pricing::PriceTable;

/// The built-in prices, overridden and extended by `file` when given. The file is JSON:
/// `{"model-id": {"input_per_mtok": 0.15, "output_per_mtok": 0.6}, ...}`.
pub fn load(file: Option<&Path>) -> anyhow::Result<PriceTable> {
    let mut table = PriceTable::builtin();
    if let Some(path) = file {
        let text = fs_err::read_to_string(path)?;
        let de = &mut serde_json::Deserializer::from_str(&text);
        let extra: PriceTable = serde_path_to_error::deserialize(de).with_context(|| {
            format!(
                "{}: expected {{\"model\": {{\"input_per_mtok\": N, \"output_per_mtok\": N}}}}",
                path.display()
            )
        })?;
        extra
            .validate()
            .with_context(|| format!("{}", path.display()))?;
        table.0.extend(extra.0);
    }
    Ok(table)
}
