//! Cheap lexical signals about a pair of prompts: the false-hit guard's vetoes and part
//! of the verifier's features.
//!
//! Sentence encoders place "What is 2+2?" and "What is 2+3?", or "Is X safe?" and "Is X not
//! safe?", very close together; a cache that served one for the other would be wrong in a
//! way the user never sees. These signals catch the commonest such cases outright.

use std::collections::{BTreeSet, HashMap};

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
    /// Adjacent word pairs ("convert benzene", "benzene into"), hashed: the order the
    /// words come in.
    pub bigrams: BTreeSet<u64>,
    /// The words in order, hashed (for the order of the words two prompts share).
    pub sequence: Vec<u64>,
    /// Which question words it uses (what, how, why, …), one bit each.
    pub question_words: u16,
    pub chars: usize,
}

/// Question words: "When was X discovered?" and "How was X discovered?" ask different things.
const QUESTION_WORDS: [&str; 9] = [
    "what", "how", "why", "when", "where", "who", "which", "whom", "whose",
];

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
                    lex.sequence.push(word_hash(word));
                    lex.words.insert(word.to_owned());
                }
            }
        }
        for pair in lex.sequence.windows(2) {
            lex.bigrams
                .insert(pair[0].rotate_left(17) ^ pair[1].wrapping_mul(0x9e37_79b9_7f4a_7c15));
        }
        for (bit, q) in QUESTION_WORDS.iter().enumerate() {
            if lex.words.contains(*q) {
                lex.question_words |= 1 << bit;
            }
        }
        lex
    }
}

/// A word's 64-bit hash (FNV-1a): sequences and word pairs are compared as numbers, so a
/// lookup's lexical profiles allocate no string per word pair.
fn word_hash(word: &str) -> u64 {
    word.bytes().fold(0xcbf2_9ce4_8422_2325, |h, b| {
        (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3)
    })
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

/// Shared items as a share of all items; 1 when both sets are empty.
fn jaccard<T: Ord>(x: &BTreeSet<T>, y: &BTreeSet<T>) -> f32 {
    let union = x.union(y).count();
    if union == 0 {
        1.0
    } else {
        x.intersection(y).count() as f32 / union as f32
    }
}

/// Of the pairs of words both prompts use once, the share the two put in opposite orders:
/// "convert benzene into toluene" / "convert toluene into benzene". 0 when fewer than two
/// words are shared. At most the first 24 such words (in `a`'s order) are compared, so a
/// long prompt costs linear time, not quadratic; below that cap the value is symmetric.
fn order_flips(a: &Lexical, b: &Lexical) -> f32 {
    // Each word's first position and how often it occurs.
    let positions = |seq: &[u64]| {
        let mut at: HashMap<u64, (usize, u32)> = HashMap::with_capacity(seq.len());
        for (i, &w) in seq.iter().enumerate() {
            at.entry(w).or_insert((i, 0)).1 += 1;
        }
        at
    };
    let (in_a, in_b) = (positions(&a.sequence), positions(&b.sequence));
    let shared: Vec<(usize, usize)> = a
        .sequence
        .iter()
        .enumerate()
        .filter(|(_, w)| in_a.get(w).is_some_and(|&(_, n)| n == 1))
        .filter_map(|(i, w)| match in_b.get(w) {
            Some(&(j, 1)) => Some((i, j)),
            _ => None,
        })
        .take(24)
        .collect();
    let (mut pairs, mut flips) = (0u32, 0u32);
    for (k, &(i1, j1)) in shared.iter().enumerate() {
        for &(i2, j2) in &shared[k + 1..] {
            pairs += 1;
            flips += u32::from((i1 < i2) != (j1 < j2));
        }
    }
    if pairs == 0 {
        0.0
    } else {
        flips as f32 / pairs as f32
    }
}

/// Lexical features of a pair for the verifier: each in [0, 1].
pub fn pair_signals(a: &Lexical, b: &Lexical) -> [f32; 10] {
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
        // Word order and question word: what a bag of words misses ("benzene into
        // toluene" / "toluene into benzene"; "when was" / "how was").
        jaccard(&a.bigrams, &b.bigrams),
        f32::from(u8::from(a.question_words != b.question_words)),
        order_flips(a, b),
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
    fn order_and_question_word_signals() {
        let s = |a: &str, b: &str| pair_signals(&Lexical::of(a), &Lexical::of(b));
        let swapped = s(
            "How do you convert benzene into toluene?",
            "How do you convert toluene into benzene?",
        );
        assert_eq!(swapped[4], 1.0, "same words");
        assert!(swapped[7] < 1.0, "bigrams differ");
        assert!(swapped[9] > 0.0, "benzene and toluene swap places");
        let same = s("How was IVF discovered?", "How was IVF discovered?");
        assert_eq!((same[7], same[8], same[9]), (1.0, 0.0, 0.0));
        let asked = s("How was IVF discovered?", "When was IVF discovered?");
        assert_eq!(asked[8], 1.0, "how / when");
        assert_eq!(asked[9], 0.0, "no shared word moved");
    }

    #[test]
    fn order_flips_on_long_prompts() {
        // 5,000 distinct words, the second prompt in reverse: every compared pair flips.
        let words: Vec<String> = (0..5000).map(|i| format!("w{i}")).collect();
        let forward = Lexical::of(&words.join(" "));
        let reversed: Vec<&str> = words.iter().rev().map(String::as_str).collect();
        let backward = Lexical::of(&reversed.join(" "));
        assert_eq!(order_flips(&forward, &backward), 1.0);
        assert_eq!(order_flips(&forward, &forward), 0.0);
        // A word used twice on one side is not compared.
        let twice = Lexical::of("alpha beta alpha gamma");
        assert_eq!(order_flips(&twice, &Lexical::of("gamma beta")), 1.0);
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
