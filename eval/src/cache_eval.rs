//! The cache evaluation: what a semantic cache trades, measured on labelled pairs.
//!
//! Every pair's `text_a` is stored in a real cache store (Qdrant Edge in a scratch
//! directory), each in a scope of its own, and `text_b` is looked up through the same
//! exact-then-nearest path the gateway uses; the candidate is judged once and the verdict
//! swept over thresholds for each method (cosine, cosine + guard, guard + verifier). A hit on
//! a duplicate (label 1) is a correct answer; a hit on a non-duplicate is a wrong answer
//! served to a user.

use std::collections::BTreeMap;
use std::sync::Arc;

use switchyard_cache::{Cache, CacheScope, CacheSettings, Judgement, Method, SemanticCache};
use switchyard_training::classifier::SplitMix;

/// One pair as the evaluation sees it: the judged candidate for `text_b`.
#[derive(Debug, Clone, Copy)]
pub struct Judged {
    pub label: bool,
    /// `true` when the exact path answered (same text, whitespace aside).
    pub exact: bool,
    pub judgement: Option<Judgement>,
}

impl Judged {
    fn score(&self, method: Method) -> Option<f32> {
        if self.exact {
            return Some(1.0);
        }
        self.judgement.and_then(|j| j.score(method))
    }
}

#[derive(Debug, Clone, Copy, PartialEq, serde::Serialize)]
pub struct Row {
    pub method: Method,
    pub threshold: f32,
    pub hits: usize,
    /// Hits on duplicates / duplicates.
    pub recall: f64,
    /// Hits on non-duplicates / non-duplicates.
    pub false_hit_rate: f64,
    /// Correct hits / hits (1 when there are no hits).
    pub precision: f64,
    pub f1: f64,
}

#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct Recommended {
    pub method: Method,
    pub threshold: f32,
    pub precision: f64,
    pub recall: f64,
    pub false_hit_rate: f64,
    /// Bootstrap 95% intervals (pairs resampled).
    pub precision_ci: [f64; 2],
    pub recall_ci: [f64; 2],
    /// Whether the target precision was reached at all; when not, the most precise
    /// threshold is reported.
    pub meets_target: bool,
}

#[derive(Debug, Clone, serde::Serialize)]
pub struct CacheReport {
    pub pairs: usize,
    pub duplicates: usize,
    pub target_precision: f64,
    pub rows: Vec<Row>,
    pub recommended: Recommended,
    /// The best operating point of every method at the target precision.
    pub per_method: BTreeMap<String, Recommended>,
    /// Mean milliseconds per lookup through the store (exact path + vector search + judge).
    pub lookup_ms: f64,
    pub backend: String,
}

fn row(judged: &[Judged], idx: &[usize], method: Method, threshold: f32) -> Row {
    let (mut tp, mut fp, mut pos) = (0usize, 0usize, 0usize);
    for &i in idx {
        let j = &judged[i];
        pos += usize::from(j.label);
        if j.score(method).is_some_and(|s| s >= threshold) {
            if j.label {
                tp += 1;
            } else {
                fp += 1;
            }
        }
    }
    let neg = idx.len() - pos;
    let ratio = |a: usize, b: usize, empty: f64| if b == 0 { empty } else { a as f64 / b as f64 };
    let recall = ratio(tp, pos, 0.0);
    let precision = ratio(tp, tp + fp, 1.0);
    Row {
        method,
        threshold,
        hits: tp + fp,
        recall,
        false_hit_rate: ratio(fp, neg, 0.0),
        precision,
        f1: if precision + recall == 0.0 {
            0.0
        } else {
            2.0 * precision * recall / (precision + recall)
        },
    }
}

/// The threshold with the most recall at precision ≥ target (else the most precise one).
fn pick(rows: &[Row], method: Method, target: f64) -> Option<(Row, bool)> {
    let of_method = rows.iter().filter(|r| r.method == method && r.hits > 0);
    let meeting = of_method
        .clone()
        .filter(|r| r.precision >= target)
        .max_by(|a, b| {
            a.recall
                .total_cmp(&b.recall)
                .then(b.threshold.total_cmp(&a.threshold))
        });
    match meeting {
        Some(r) => Some((*r, true)),
        None => of_method
            .max_by(|a, b| a.precision.total_cmp(&b.precision))
            .map(|r| (*r, false)),
    }
}

fn bootstrap(judged: &[Judged], chosen: &Row, rounds: usize, seed: u64) -> ([f64; 2], [f64; 2]) {
    let mut rng = SplitMix::new(seed);
    let n = judged.len();
    let (mut ps, mut rs) = (Vec::with_capacity(rounds), Vec::with_capacity(rounds));
    for _ in 0..rounds {
        let idx: Vec<usize> = (0..n)
            .map(|_| (rng.next_u64() % n as u64) as usize)
            .collect();
        let r = row(judged, &idx, chosen.method, chosen.threshold);
        ps.push(r.precision);
        rs.push(r.recall);
    }
    let ci = |mut v: Vec<f64>| -> [f64; 2] {
        v.sort_by(f64::total_cmp);
        let at = |q: f64| v[((v.len() - 1) as f64 * q).round() as usize];
        [at(0.025), at(0.975)]
    };
    (ci(ps), ci(rs))
}

/// Sweeps the judged pairs into the report.
pub fn report(
    judged: &[Judged],
    thresholds: &[f32],
    default_method: Method,
    target_precision: f64,
    lookup_ms: f64,
    backend: &str,
) -> Option<CacheReport> {
    let all: Vec<usize> = (0..judged.len()).collect();
    let rows: Vec<Row> = Method::ALL
        .into_iter()
        .flat_map(|m| thresholds.iter().map(move |&t| (m, t)))
        .map(|(m, t)| row(judged, &all, m, t))
        .collect();
    let mut per_method = BTreeMap::new();
    for m in Method::ALL {
        if let Some((r, meets)) = pick(&rows, m, target_precision) {
            let (precision_ci, recall_ci) = bootstrap(judged, &r, 1000, 17);
            per_method.insert(
                m.name().to_owned(),
                Recommended {
                    method: m,
                    threshold: r.threshold,
                    precision: r.precision,
                    recall: r.recall,
                    false_hit_rate: r.false_hit_rate,
                    precision_ci,
                    recall_ci,
                    meets_target: meets,
                },
            );
        }
    }
    let recommended = per_method.get(default_method.name())?.clone();
    Some(CacheReport {
        pairs: judged.len(),
        duplicates: judged.iter().filter(|j| j.label).count(),
        target_precision,
        rows,
        recommended,
        per_method,
        lookup_ms,
        backend: backend.to_owned(),
    })
}

/// Stores every `a` (each pair in its own tenant scope) and judges the best candidate for
/// every `b`. `vectors_a[i]` / `vectors_b[i]` are the pair's embeddings.
pub async fn judge_pairs(
    cache: &Cache,
    pairs: &[(String, String, bool)],
    vectors_a: &[Vec<f32>],
    vectors_b: &[Vec<f32>],
    progress: &indicatif::ProgressBar,
) -> Result<(Vec<Judged>, f64), switchyard_cache::CacheError> {
    let scope = |i: usize| CacheScope {
        tenant: format!("pair-{i}"),
        route: "eval".into(),
        fingerprint: "-".into(),
    };
    progress.set_length(2 * pairs.len() as u64);
    progress.set_message("storing text_a");
    for (i, ((a, _, _), v)) in pairs.iter().zip(vectors_a).enumerate() {
        cache
            .insert(scope(i), a, v.clone(), String::new(), "eval")
            .await?;
        progress.inc(1);
    }
    progress.set_message("looking up text_b");
    let store: &dyn SemanticCache = cache.backend();
    let now = switchyard_cache::now_ms();
    let started = std::time::Instant::now();
    let mut out = Vec::with_capacity(pairs.len());
    for (i, ((_, b, label), v)) in pairs.iter().zip(vectors_b).enumerate() {
        let s = scope(i);
        let exact = store
            .exact(&s, &switchyard_cache::exact_key(b), now)
            .await?
            .is_some();
        let query = switchyard_cache::Lexical::of(b);
        let judgement = store
            .nearest(&s, v, 1, now)
            .await?
            .first()
            .map(|c| cache.judge(&query, v, c));
        out.push(Judged {
            label: *label,
            exact,
            judgement,
        });
        progress.inc(1);
    }
    let lookup_ms = started.elapsed().as_secs_f64() * 1e3 / pairs.len().max(1) as f64;
    progress.finish_and_clear();
    Ok((out, lookup_ms))
}

/// A cache for the evaluation: the given store, verifier method so every signal is computed.
pub fn eval_cache(
    store: Arc<dyn SemanticCache>,
    verifier: Option<Arc<switchyard_cache::Verifier>>,
) -> Result<Cache, switchyard_cache::CacheError> {
    let method = if verifier.is_some() {
        Method::Verifier
    } else {
        Method::Guard
    };
    Cache::new(
        store,
        verifier,
        CacheSettings {
            method,
            capacity: u64::MAX,
            ..CacheSettings::default()
        },
    )
}

/// A readable table: for each method, the recommended point and a few thresholds.
pub fn render(report: &CacheReport, out: &mut impl std::io::Write) -> std::io::Result<()> {
    writeln!(
        out,
        "{} pairs ({} duplicates), store {}, {:.2} ms per lookup",
        report.pairs, report.duplicates, report.backend, report.lookup_ms
    )?;
    writeln!(
        out,
        "{:<9} {:>9} {:>7} {:>9} {:>10} {:>7}",
        "method", "threshold", "recall", "precision", "false-hit", "F1"
    )?;
    for r in &report.rows {
        let picked = report
            .per_method
            .get(r.method.name())
            .is_some_and(|p| p.threshold == r.threshold);
        let twentieth = (r.threshold * 20.0 - (r.threshold * 20.0).round()).abs() < 1e-4;
        if picked || twentieth {
            writeln!(
                out,
                "{:<9} {:>9.2} {:>7.3} {:>9.3} {:>10.4} {:>7.3}{}",
                r.method.name(),
                r.threshold,
                r.recall,
                r.precision,
                r.false_hit_rate,
                r.f1,
                if picked { "  <- best at target" } else { "" }
            )?;
        }
    }
    writeln!(out)?;
    for p in report.per_method.values() {
        writeln!(
            out,
            "{:<9} at precision >= {:.2}: threshold {:.2}, precision {:.3} [{:.3}, {:.3}], recall {:.3} [{:.3}, {:.3}]{}",
            p.method.name(),
            report.target_precision,
            p.threshold,
            p.precision,
            p.precision_ci[0],
            p.precision_ci[1],
            p.recall,
            p.recall_ci[0],
            p.recall_ci[1],
            if p.meets_target {
                ""
            } else {
                "  (target not reached: most precise point)"
            }
        )?;
    }
    let r = &report.recommended;
    writeln!(
        out,
        "\nrecommended: method = \"{}\", threshold = {:.2}",
        r.method.name(),
        r.threshold
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn j(label: bool, cosine: f32, p: Option<f32>) -> Judged {
        Judged {
            label,
            exact: false,
            judgement: Some(Judgement {
                cosine,
                veto: None,
                probability: p,
            }),
        }
    }

    #[test]
    fn rows_count_hits_by_label() {
        let judged = [
            j(true, 0.95, Some(0.9)),
            j(true, 0.85, Some(0.6)),
            j(false, 0.92, Some(0.2)),
            j(false, 0.5, Some(0.1)),
        ];
        let all: Vec<usize> = (0..4).collect();
        let r = row(&judged, &all, Method::Cosine, 0.9);
        assert_eq!(
            (r.hits, r.recall, r.precision, r.false_hit_rate),
            (2, 0.5, 0.5, 0.5)
        );
        let r = row(&judged, &all, Method::Verifier, 0.5);
        assert_eq!((r.hits, r.recall, r.precision), (2, 1.0, 1.0));
        let rep = report(&judged, &[0.5, 0.9], Method::Verifier, 0.9, 0.0, "test").unwrap();
        assert_eq!(rep.recommended.threshold, 0.5);
        assert!(rep.recommended.meets_target);
        assert!(
            !rep.per_method["cosine"].meets_target || rep.per_method["cosine"].precision >= 0.9
        );
    }
}
