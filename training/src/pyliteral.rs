//! A parser for Python literal syntax (`repr()` of dicts, lists, strings and numbers), which
//! several benchmark dumps store inside JSON or CSV cells instead of JSON.

use serde_json::{Map, Number, Value};

/// Why a Python literal did not parse, with the byte offset.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid Python literal at byte {at}: {what}")]
pub struct PyLiteralError {
    pub at: usize,
    pub what: String,
}

/// Parses `repr()` output of dicts, lists, tuples, strings, numbers, `True`, `False`,
/// `None`, `nan` and `inf` into JSON (`nan`/`inf` become null; tuples become arrays).
pub fn parse(text: &str) -> Result<Value, PyLiteralError> {
    let mut p = Parser {
        s: text.as_bytes(),
        text,
        i: 0,
    };
    let value = p.value()?;
    p.ws();
    if p.i != p.s.len() {
        return Err(p.err("trailing characters"));
    }
    Ok(value)
}

struct Parser<'a> {
    s: &'a [u8],
    text: &'a str,
    i: usize,
}

impl Parser<'_> {
    fn err(&self, what: &str) -> PyLiteralError {
        PyLiteralError {
            at: self.i,
            what: what.to_owned(),
        }
    }

    fn ws(&mut self) {
        while self.i < self.s.len() && self.s[self.i].is_ascii_whitespace() {
            self.i += 1;
        }
    }

    fn peek(&self) -> Option<u8> {
        self.s.get(self.i).copied()
    }

    fn value(&mut self) -> Result<Value, PyLiteralError> {
        self.ws();
        match self.peek() {
            Some(b'{') => self.dict(),
            Some(b'[') => self.seq(b']'),
            Some(b'(') => self.seq(b')'),
            Some(b'\'' | b'"') => self.string().map(Value::String),
            Some(b'b' | b'r' | b'u') if matches!(self.s.get(self.i + 1), Some(b'\'' | b'"')) => {
                let raw = self.peek() == Some(b'r');
                self.i += 1;
                if raw {
                    self.raw_string().map(Value::String)
                } else {
                    self.string().map(Value::String)
                }
            }
            Some(_) => self.word(),
            None => Err(self.err("unexpected end")),
        }
    }

    fn dict(&mut self) -> Result<Value, PyLiteralError> {
        self.i += 1;
        let mut map = Map::new();
        loop {
            self.ws();
            if self.peek() == Some(b'}') {
                self.i += 1;
                return Ok(Value::Object(map));
            }
            let key = match self.value()? {
                Value::String(s) => s,
                other => other.to_string(),
            };
            self.ws();
            if self.peek() != Some(b':') {
                return Err(self.err("expected ':'"));
            }
            self.i += 1;
            let value = self.value()?;
            map.insert(key, value);
            self.ws();
            match self.peek() {
                Some(b',') => self.i += 1,
                Some(b'}') => {}
                _ => return Err(self.err("expected ',' or '}'")),
            }
        }
    }

    fn seq(&mut self, close: u8) -> Result<Value, PyLiteralError> {
        self.i += 1;
        let mut items = Vec::new();
        loop {
            self.ws();
            if self.peek() == Some(close) {
                self.i += 1;
                return Ok(Value::Array(items));
            }
            items.push(self.value()?);
            self.ws();
            match self.peek() {
                Some(b',') => self.i += 1,
                Some(c) if c == close => {}
                _ => return Err(self.err("expected ',' or a closing bracket")),
            }
        }
    }

    fn raw_string(&mut self) -> Result<String, PyLiteralError> {
        let quote = self.s[self.i];
        let start = self.i + 1;
        let mut j = start;
        while j < self.s.len() {
            if self.s[j] == b'\\' {
                j += 2;
                continue;
            }
            if self.s[j] == quote {
                self.i = j + 1;
                return Ok(self.text[start..j].to_owned());
            }
            j += 1;
        }
        Err(self.err("unterminated string"))
    }

    fn string(&mut self) -> Result<String, PyLiteralError> {
        let quote = self.s[self.i];
        self.i += 1;
        let mut out = String::new();
        let mut run = self.i;
        while self.i < self.s.len() {
            let c = self.s[self.i];
            if c == quote {
                out.push_str(&self.text[run..self.i]);
                self.i += 1;
                return Ok(out);
            }
            if c != b'\\' {
                self.i += 1;
                continue;
            }
            out.push_str(&self.text[run..self.i]);
            let esc = *self
                .s
                .get(self.i + 1)
                .ok_or_else(|| self.err("dangling escape"))?;
            self.i += 2;
            match esc {
                b'n' => out.push('\n'),
                b't' => out.push('\t'),
                b'r' => out.push('\r'),
                b'0' => out.push('\0'),
                b'a' => out.push('\u{7}'),
                b'b' => out.push('\u{8}'),
                b'f' => out.push('\u{c}'),
                b'v' => out.push('\u{b}'),
                b'\\' | b'\'' | b'"' => out.push(char::from(esc)),
                b'\n' => {}
                b'x' => out.push(self.hex_char(2)?),
                b'u' => out.push(self.hex_char(4)?),
                b'U' => out.push(self.hex_char(8)?),
                _ => {
                    // Python keeps unknown escapes verbatim.
                    out.push('\\');
                    self.i -= 1;
                }
            }
            run = self.i;
        }
        Err(self.err("unterminated string"))
    }

    fn hex_char(&mut self, digits: usize) -> Result<char, PyLiteralError> {
        let hex = self
            .text
            .get(self.i..self.i + digits)
            .ok_or_else(|| self.err("short escape"))?;
        let code = u32::from_str_radix(hex, 16).map_err(|_| self.err("bad hex escape"))?;
        self.i += digits;
        Ok(char::from_u32(code).unwrap_or(char::REPLACEMENT_CHARACTER))
    }

    fn word(&mut self) -> Result<Value, PyLiteralError> {
        let start = self.i;
        while self.i < self.s.len()
            && !b",:]})".contains(&self.s[self.i])
            && !self.s[self.i].is_ascii_whitespace()
        {
            self.i += 1;
        }
        let word = &self.text[start..self.i];
        match word {
            "True" => Ok(Value::Bool(true)),
            "False" => Ok(Value::Bool(false)),
            "None" | "nan" | "inf" | "-inf" | "NaN" => Ok(Value::Null),
            _ => {
                if let Ok(n) = word.parse::<i64>() {
                    return Ok(Value::Number(n.into()));
                }
                word.parse::<f64>()
                    .ok()
                    .and_then(Number::from_f64)
                    .map(Value::Number)
                    .ok_or_else(|| PyLiteralError {
                        at: start,
                        what: format!("unknown token {word:?}"),
                    })
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn parses_reprs() {
        assert_eq!(
            parse("['a \\'quoted\\' word']").unwrap(),
            json!(["a 'quoted' word"])
        );
        assert_eq!(
            parse(r#"{'m1': 0.0, "m2": 1, 'x': {'ok': True, 'n': None, 'r': "it's"}}"#).unwrap(),
            json!({"m1": 0.0, "m2": 1, "x": {"ok": true, "n": null, "r": "it's"}})
        );
        assert_eq!(
            parse("(1, -2.5e3, nan)").unwrap(),
            json!([1, -2500.0, null])
        );
        assert_eq!(
            parse(r"'tab\there\nline \x41\u00e9'").unwrap(),
            json!("tab\there\nline Aé")
        );
        assert_eq!(parse("'naïve ☃'").unwrap(), json!("naïve ☃"));
        assert_eq!(parse("[]").unwrap(), json!([]));
    }

    #[test]
    fn rejects_broken_input() {
        assert!(parse("{'a': }").is_err());
        assert!(parse("['unterminated]").is_err());
        assert!(parse("[1, 2] extra").is_err());
        assert!(parse("").is_err());
    }
}
