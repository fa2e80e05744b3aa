//! Deserialising helpers shared by the sections: values read through `FromStr`, defaults.

use serde::Deserialize;

/// A field read from its string form through `FromStr`; the parse error names the problem
/// and `Config::parse` adds the key path.
pub fn parsed<'de, D, T>(de: D) -> Result<T, D::Error>
where
    D: serde::Deserializer<'de>,
    T: std::str::FromStr,
    T::Err: std::fmt::Display,
{
    let text = String::deserialize(de)?;
    text.parse()
        .map_err(|e| serde::de::Error::custom(format!("{text:?}: {e}")))
}

/// [`parsed`] for an optional value.
pub fn parsed_opt<'de, D, T>(de: D) -> Result<Option<T>, D::Error>
where
    D: serde::Deserializer<'de>,
    T: std::str::FromStr,
    T::Err: std::fmt::Display,
{
    parsed(de).map(Some)
}

pub fn yes() -> bool {
    true
}
