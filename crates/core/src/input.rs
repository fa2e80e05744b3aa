//! Line-oriented input for the CLI tools (`embed`, `classify`, ...): each line of stdin is
//! either plain text or a JSON object carrying the text in a named field.

/// Why one input line could not be turned into a text. The caller adds the line number.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum LineError {
    #[error("not valid UTF-8 (first bad byte at column {column})")]
    InvalidUtf8 { column: usize },
    #[error("looks like JSON (starts with '{{') but does not parse: {reason}")]
    InvalidJson { reason: String },
    #[error("JSON object has no {field:?} field")]
    MissingField { field: String },
    #[error("JSON field {field:?} is not a string")]
    FieldNotString { field: String },
    #[error("text is empty or only whitespace; there is nothing to process")]
    Empty,
}

/// Reads the text of one input line (without its line terminator).
///
/// A line whose first non-blank character is `{` is parsed as a JSON object and its
/// `field` must be a string; any other line is taken verbatim as the text.
pub fn text_from_line(line: &[u8], field: &str) -> Result<String, LineError> {
    let line = line.strip_suffix(b"\r").unwrap_or(line);
    let text = std::str::from_utf8(line).map_err(|e| LineError::InvalidUtf8 {
        column: e.valid_up_to() + 1,
    })?;
    let text = if text.trim_start().starts_with('{') {
        let value: serde_json::Value =
            serde_json::from_str(text).map_err(|e| LineError::InvalidJson {
                reason: e.to_string(),
            })?;
        match value.get(field) {
            None => {
                return Err(LineError::MissingField {
                    field: field.to_owned(),
                });
            }
            Some(serde_json::Value::String(s)) => s.clone(),
            Some(_) => {
                return Err(LineError::FieldNotString {
                    field: field.to_owned(),
                });
            }
        }
    } else {
        text.to_owned()
    };
    if text.trim().is_empty() {
        return Err(LineError::Empty);
    }
    Ok(text)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plain_and_json_lines() {
        assert_eq!(
            text_from_line(b"hello world\r", "text"),
            Ok("hello world".into())
        );
        assert_eq!(
            text_from_line(br#"{"text": "hi \"there\"", "id": 3}"#, "text"),
            Ok("hi \"there\"".into())
        );
        assert_eq!(
            text_from_line(br#"  {"prompt": "p"}"#, "prompt"),
            Ok("p".into())
        );
    }

    #[test]
    fn each_bad_line_has_its_own_error() {
        assert_eq!(
            text_from_line(b"ab\xffcd", "text"),
            Err(LineError::InvalidUtf8 { column: 3 })
        );
        assert!(matches!(
            text_from_line(b"{\"text\": ", "text"),
            Err(LineError::InvalidJson { .. })
        ));
        assert_eq!(
            text_from_line(br#"{"body": "x"}"#, "text"),
            Err(LineError::MissingField {
                field: "text".into()
            })
        );
        assert_eq!(
            text_from_line(br#"{"text": 5}"#, "text"),
            Err(LineError::FieldNotString {
                field: "text".into()
            })
        );
        assert_eq!(text_from_line(b"   \t", "text"), Err(LineError::Empty));
        assert_eq!(
            text_from_line(br#"{"text": " "}"#, "text"),
            Err(LineError::Empty)
        );
    }
}
