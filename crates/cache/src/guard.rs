//! Cheap lexical signals about a pair of prompts: the false-hit guard's vetoes and part
//! of the verifier's features.
//!
//! Sentence encoders place "What is 2+2?" and "What is 2+3?", or "Is X safe?" and "Is X not
//! safe?", very close together; a cache that served one for the other would be wrong in a
//! way the user never sees. These signals catch the commonest such cases outright.

use std::collections::BTreeSet;

use sha2::{Digest, Sha256};

/// Whitespace collapsed and trimmed: what the exact path hashes.
pub fn normalise(text: &str) -> String {
    text.split_whitespace().collect::<Vec<_>>().join(" ")
}

/// sha256 (hex) of the normalised text: the exact-path key.
pub fn exact_key(text: &str) -> String {
    hex(&Sha256::digest(normalise(text).as_bytes()))
}

pub(crate) fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

const NEGATIONS: [&str; 12] = [
    "not", "no", "never", "none", "nor", "cannot", "without", "neither", "nothing", "nobody",
    "nowhere", "isnt",
];

/// The lexical profile of one prompt.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Lexical {
    /// Numbers as written ("3", "3.5", "2024"), separators removed.
    pub numbers: BTreeSet<String>,
    /// Text between quotes or backticks.
    pub quoted: BTreeSet<String>,
    /// Code-like identifiers: snake_case, camelCase, dotted paths, calls.
    pub identifiers: BTreeSet<String>,
    /// Whether the prompt contains a negation word.
    pub negated: bool,
    /// The same, but not counting "or not" ("whether or not", "why or why not"), which
    /// asks both ways rather than negating: what the guard vetoes on.
    pub negated_plainly: bool,
    /// Lower-cased, whitespace removed: where the guard looks for the other prompt's
    /// quoted strings and identifiers written differently ("eBay" / "Ebay", "B.tech" /
    /// "B. tech").
    pub squashed: String,
    /// Lower-cased word tokens.
    pub words: BTreeSet<String>,
    pub chars: usize,
}

impl Lexical {
    pub fn of(text: &str) -> Self {
        let mut lex = Self {
            chars: text.chars().count(),
            quoted: quoted(text),
            squashed: squash(text),
            ..Self::default()
        };
        let mut previous = String::new();
        for raw in text.split_whitespace() {
            let token = raw.trim_matches(|c: char| !c.is_alphanumeric() && c != '_');
            if token.is_empty() {
                continue;
            }
            if is_identifier(token) {
                lex.identifiers.insert(token.to_owned());
            }
            let lower = token.to_lowercase();
            if lower.ends_with("n't") || NEGATIONS.contains(&lower.replace('\'', "").as_str()) {
                lex.negated = true;
                lex.negated_plainly |= !(lower == "not" && previous == "or");
            }
            lex.numbers.extend(numbers(token));
            previous.clone_from(&lower);
            for word in lower.split(|c: char| !c.is_alphanumeric()) {
                if !word.is_empty() {
                    lex.words.insert(word.to_owned());
                }
            }
        }
        lex
    }
}

fn squash(text: &str) -> String {
    text.chars()
        .filter(|c| !c.is_whitespace())
        .flat_map(char::to_lowercase)
        .collect()
}

/// Whether every item of `items` appears in `other`, case and spacing aside.
fn covered(items: &BTreeSet<String>, other: &Lexical) -> bool {
    items.iter().all(|i| other.squashed.contains(&squash(i)))
}

fn numbers(token: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut current = String::new();
    let chars: Vec<char> = token.chars().collect();
    for (i, &c) in chars.iter().enumerate() {
        let inner_sep = (c == '.' || c == ',')
            && !current.is_empty()
            && chars.get(i + 1).is_some_and(char::is_ascii_digit);
        if c.is_ascii_digit() {
            current.push(c);
        } else if inner_sep {
            if c == '.' {
                current.push('.');
            }
        } else if !current.is_empty() {
            out.push(std::mem::take(&mut current));
        }
    }
    if !current.is_empty() {
        out.push(current);
    }
    out
}

fn quoted(text: &str) -> BTreeSet<String> {
    let mut out = BTreeSet::new();
    for quote in ['"', '`', '“'] {
        let close = if quote == '“' { '”' } else { quote };
        let mut rest = text;
        while let Some(start) = rest.find(quote) {
            let after = &rest[start + quote.len_utf8()..];
            let Some(end) = after.find(close) else { break };
            let inner = after[..end].trim();
            if !inner.is_empty() {
                out.insert(inner.to_owned());
            }
            rest = &after[end + close.len_utf8()..];
        }
    }
    out
}

fn is_identifier(token: &str) -> bool {
    let first_lower = token.chars().next().is_some_and(|c| c.is_ascii_lowercase());
    let inner_upper = token.chars().skip(1).any(|c| c.is_ascii_uppercase());
    let snake = token.contains('_') && token.chars().any(char::is_alphabetic);
    let path = token.contains("::")
        || token.contains('.')
            && token.chars().any(char::is_alphabetic)
            && token
                .split('.')
                .all(|p| !p.is_empty() && p.chars().all(|c| c.is_alphanumeric() || c == '_'));
    snake || first_lower && inner_upper || path
}

/// Why the guard refused a semantic hit.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Veto {
    Numbers,
    Quoted,
    Identifiers,
    Negation,
}

/// The first reason the two prompts must not share an answer, if any: different numbers;
/// a quoted string or identifier of one that the other does not contain (case and spacing
/// aside); a negation in only one.
pub fn veto(a: &Lexical, b: &Lexical) -> Option<Veto> {
    if a.numbers != b.numbers {
        Some(Veto::Numbers)
    } else if !covered(&a.quoted, b) || !covered(&b.quoted, a) {
        Some(Veto::Quoted)
    } else if !covered(&a.identifiers, b) || !covered(&b.identifiers, a) {
        Some(Veto::Identifiers)
    } else if a.negated_plainly != b.negated_plainly {
        Some(Veto::Negation)
    } else {
        None
    }
}

/// Lexical features of a pair for the verifier: each in [0, 1].
pub fn pair_signals(a: &Lexical, b: &Lexical) -> [f32; 7] {
    let jaccard = |x: &BTreeSet<String>, y: &BTreeSet<String>| -> f32 {
        let union = x.union(y).count();
        if union == 0 {
            1.0
        } else {
            x.intersection(y).count() as f32 / union as f32
        }
    };
    let (short, long) = (a.chars.min(b.chars), a.chars.max(b.chars));
    [
        f32::from(u8::from(a.numbers != b.numbers)),
        f32::from(u8::from(a.quoted != b.quoted)),
        f32::from(u8::from(a.identifiers != b.identifiers)),
        f32::from(u8::from(a.negated != b.negated)),
        jaccard(&a.words, &b.words),
        if long == 0 {
            1.0
        } else {
            short as f32 / long as f32
        },
        // Words only one side has, as a share of the shorter prompt's words: a new word in
        // a short question changes it more than in a long one.
        {
            let diff = a.words.symmetric_difference(&b.words).count() as f32;
            let base = a.words.len().min(b.words.len()).max(1) as f32;
            (diff / base).min(4.0) / 4.0
        },
    ]
}

#[cfg(test)]
mod tests {
    use super::*;

    fn v(a: &str, b: &str) -> Option<Veto> {
        veto(&Lexical::of(a), &Lexical::of(b))
    }

    #[test]
    fn numbers_quotes_identifiers_and_negation_veto() {
        assert_eq!(v("What is 2+2?", "What is 2+3?"), Some(Veto::Numbers));
        assert_eq!(v("Price in 2023?", "Price in 2024?"), Some(Veto::Numbers));
        assert_eq!(v("Population 12,000", "Population 12000"), None);
        assert_eq!(v("Define \"cat\"", "Define \"dog\""), Some(Veto::Quoted));
        assert_eq!(
            v("How do I call read_to_string?", "How do I call read_line?"),
            Some(Veto::Identifiers)
        );
        assert_eq!(
            v("Is coffee safe?", "Is coffee not safe?"),
            Some(Veto::Negation)
        );
        assert_eq!(
            v("Why isn't it safe?", "Why is it safe?"),
            Some(Veto::Negation)
        );
    }

    #[test]
    fn paraphrases_pass() {
        assert_eq!(
            v(
                "How do I learn Rust fast?",
                "What is the quickest way to learn Rust?"
            ),
            None
        );
        assert_eq!(v("Top 10 films of 1999", "Best 10 movies from 1999"), None);
        // Written differently, not a different thing.
        assert_eq!(
            v(
                "Mistakes new sellers on Ebay make?",
                "Mistakes new sellers on eBay make?"
            ),
            None
        );
        assert_eq!(
            v(
                "Is dropping out of B.tech wise?",
                "Is dropping out of B. tech wise?"
            ),
            None
        );
        assert_eq!(
            v(
                "What is “error” vs “exception” in Java?",
                "What is error vs exception in Java?"
            ),
            None
        );
        assert_eq!(
            v(
                "How can I know whether or not I am a genius?",
                "How can I know if I am a genius?"
            ),
            None
        );
        // …but a negation elsewhere still counts.
        assert_eq!(
            v("Is it safe or not?", "Is it not safe?"),
            Some(Veto::Negation)
        );
    }

    #[test]
    fn numbers_parse_decimals_and_thousands() {
        assert_eq!(numbers("3.14"), vec!["3.14"]);
        assert_eq!(numbers("1,000"), vec!["1000"]);
        assert_eq!(numbers("v2-rc3"), vec!["2", "3"]);
        assert_eq!(numbers("end."), Vec::<String>::new());
    }

    #[test]
    fn exact_key_ignores_whitespace_only() {
        assert_eq!(exact_key("  hello   world\n"), exact_key("hello world"));
        assert_ne!(exact_key("Hello world"), exact_key("hello world"));
    }

    #[test]
    fn signals_are_bounded() {
        for (a, b) in [("", ""), ("a b c", "d"), ("x 1", "x 2 not")] {
            for s in pair_signals(&Lexical::of(a), &Lexical::of(b)) {
                assert!((0.0..=1.0).contains(&s), "{a:?} {b:?} {s}");
            }
        }
    }
}
