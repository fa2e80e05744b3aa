//! Sentence-pair files for the cache: `{text_a, text_b, label}` (JSON array or JSONL), the
//! GPTCache benchmark's `{origin, similar}` (all duplicates), MRPC's tab-separated
//! `Quality  #1 ID  #2 ID  #1 String  #2 String`, and STS-B's GLUE TSV (`sentence1`,
//! `sentence2`, `score` 0–5: ≥ 4 is a duplicate, ≤ 2.5 is not, the ambiguous middle is
//! left out).

use std::path::{Path, PathBuf};

use serde_json::Value;

use crate::data::{Split, split_of};

/// A labelled pair: would serving `a`'s answer for `b` be right?
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Pair {
    pub a: String,
    pub b: String,
    pub label: bool,
}

impl Pair {
    /// The pair's split, by a hash of both texts (order-independent).
    pub fn split(&self) -> Split {
        let (x, y) = if self.a <= self.b {
            (&self.a, &self.b)
        } else {
            (&self.b, &self.a)
        };
        split_of(&format!("{x}\n{y}"))
    }
}

#[derive(Debug, thiserror::Error)]
pub enum PairsError {
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{path}:{line}: {message}")]
    Parse {
        path: PathBuf,
        line: usize,
        message: String,
    },
}

const STSB_POSITIVE: f64 = 4.0;
const STSB_NEGATIVE: f64 = 2.5;

pub fn load_pairs(path: &Path) -> Result<Vec<Pair>, PairsError> {
    let text = std::fs::read_to_string(path).map_err(|source| PairsError::Io {
        path: path.to_owned(),
        source,
    })?;
    let text = text.trim_start_matches('\u{feff}');
    let err = |line: usize, message: String| PairsError::Parse {
        path: path.to_owned(),
        line,
        message,
    };
    let first = text.lines().next().unwrap_or_default();
    if text.trim_start().starts_with('[') {
        let items: Vec<Value> =
            serde_json::from_str(text).map_err(|e| err(e.line(), e.to_string()))?;
        items
            .iter()
            .enumerate()
            .map(|(i, v)| from_json(v).map_err(|m| err(1, format!("item {i}: {m}"))))
            .collect()
    } else if first.trim_start().starts_with('{') {
        let mut out = Vec::new();
        for (i, line) in text.lines().enumerate() {
            if line.trim().is_empty() {
                continue;
            }
            let v: Value = serde_json::from_str(line).map_err(|e| err(i + 1, e.to_string()))?;
            out.push(from_json(&v).map_err(|m| err(i + 1, m))?);
        }
        Ok(out)
    } else if first.starts_with("Quality\t") {
        tsv(text, |cols, line| {
            if cols.len() < 5 {
                return Err(err(
                    line,
                    format!("expected 5 tab-separated columns, found {}", cols.len()),
                ));
            }
            let label = match cols[0] {
                "1" => true,
                "0" => false,
                q => return Err(err(line, format!("Quality {q:?} is not 0 or 1"))),
            };
            Ok(Some(Pair {
                a: cols[3].to_owned(),
                b: cols[4].to_owned(),
                label,
            }))
        })
    } else if first.split('\t').any(|c| c == "sentence1") {
        let header: Vec<&str> = first.split('\t').collect();
        let col = |name: &str| header.iter().position(|c| *c == name);
        let (Some(s1), Some(s2), Some(sc)) = (col("sentence1"), col("sentence2"), col("score"))
        else {
            return Err(err(
                1,
                "an STS-B file needs sentence1, sentence2 and score columns".into(),
            ));
        };
        tsv(text, |cols, line| {
            let get = |i: usize| {
                cols.get(i)
                    .copied()
                    .ok_or_else(|| err(line, format!("missing column {}", header[i])))
            };
            let score: f64 = get(sc)?
                .trim()
                .parse()
                .map_err(|_| err(line, format!("score {:?} is not a number", cols.get(sc))))?;
            let label = if score >= STSB_POSITIVE {
                true
            } else if score <= STSB_NEGATIVE {
                false
            } else {
                return Ok(None);
            };
            Ok(Some(Pair {
                a: get(s1)?.to_owned(),
                b: get(s2)?.to_owned(),
                label,
            }))
        })
    } else {
        Err(err(
            1,
            "unknown pair format: expected a JSON array or JSONL of {text_a, text_b, label}, \
             {origin, similar}, an MRPC .txt or an STS-B .tsv"
                .into(),
        ))
    }
}

fn tsv(
    text: &str,
    mut row: impl FnMut(&[&str], usize) -> Result<Option<Pair>, PairsError>,
) -> Result<Vec<Pair>, PairsError> {
    let mut out = Vec::new();
    for (i, line) in text.lines().enumerate().skip(1) {
        if line.trim().is_empty() {
            continue;
        }
        let cols: Vec<&str> = line.split('\t').collect();
        out.extend(row(&cols, i + 1)?);
    }
    Ok(out)
}

fn from_json(v: &Value) -> Result<Pair, String> {
    let s = |k: &str| v.get(k).and_then(Value::as_str).map(str::to_owned);
    if let (Some(a), Some(b)) = (s("origin"), s("similar")) {
        return Ok(Pair { a, b, label: true });
    }
    let (Some(a), Some(b)) = (s("text_a"), s("text_b")) else {
        return Err("expected string fields text_a and text_b (or origin and similar)".into());
    };
    let label = match v.get("label") {
        Some(Value::Bool(b)) => *b,
        Some(Value::Number(n)) if n.as_f64() == Some(1.0) => true,
        Some(Value::Number(n)) if n.as_f64() == Some(0.0) => false,
        other => {
            return Err(format!(
                "label must be 0, 1, true or false, found {other:?}"
            ));
        }
    };
    Ok(Pair { a, b, label })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn load(name: &str, body: &str) -> Result<Vec<Pair>, PairsError> {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join(name);
        std::fs::write(&p, body).unwrap();
        load_pairs(&p)
    }

    #[test]
    fn every_format_loads() {
        let j = load("a.json", r#"[{"text_a":"x","text_b":"y","label":1}]"#).unwrap();
        assert!(j[0].label);
        let l = load(
            "a.jsonl",
            "{\"text_a\":\"x\",\"text_b\":\"y\",\"label\":false}\n",
        )
        .unwrap();
        assert!(!l[0].label);
        let g = load("m.json", r#"[{"origin":"x","similar":"y"}]"#).unwrap();
        assert!(g[0].label);
        let m = load(
            "m.txt",
            "\u{feff}Quality\t#1 ID\t#2 ID\t#1 String\t#2 String\n0\t1\t2\ta\tb\n",
        )
        .unwrap();
        assert_eq!(
            m,
            vec![Pair {
                a: "a".into(),
                b: "b".into(),
                label: false
            }]
        );
        let s = load(
            "s.tsv",
            "index\tsentence1\tsentence2\tscore\n0\ta\tb\t4.2\n1\tc\td\t3.0\n2\te\tf\t1.0\n",
        )
        .unwrap();
        assert_eq!(
            s.iter().map(|p| p.label).collect::<Vec<_>>(),
            vec![true, false]
        );
    }

    #[test]
    fn errors_name_file_and_line() {
        let e = load(
            "bad.jsonl",
            "{\"text_a\":\"x\",\"text_b\":\"y\",\"label\":1}\n{\"text_a\":1}\n",
        )
        .unwrap_err()
        .to_string();
        assert!(e.contains("bad.jsonl:2") && e.contains("text_a"), "{e}");
        let e = load("x.csv", "a,b\n").unwrap_err().to_string();
        assert!(e.contains("unknown pair format"), "{e}");
    }

    #[test]
    fn split_ignores_order() {
        let p = Pair {
            a: "one".into(),
            b: "two".into(),
            label: true,
        };
        let q = Pair {
            a: "two".into(),
            b: "one".into(),
            label: true,
        };
        assert_eq!(p.split(), q.split());
    }
}
