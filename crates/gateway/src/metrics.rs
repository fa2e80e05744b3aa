//! Prometheus metrics in the text exposition format, without a metrics framework: a few
//! labelled counters and histograms behind one mutex (updates are a map lookup and an add).

use std::collections::BTreeMap;
use std::fmt::Write;
use std::sync::Mutex;

/// Seconds.
const BUCKETS: [f64; 14] = [
    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0,
];

type Labels = Vec<(&'static str, String)>;

#[derive(Debug, Default, Clone)]
struct Histogram {
    counts: [u64; BUCKETS.len()],
    sum: f64,
    count: u64,
}

#[derive(Debug, Default)]
struct Inner {
    counters: BTreeMap<(&'static str, Labels), f64>,
    histograms: BTreeMap<(&'static str, Labels), Histogram>,
    gauges: BTreeMap<(&'static str, Labels), f64>,
}

#[derive(Debug, Default)]
pub struct Metrics {
    inner: Mutex<Inner>,
}

const HELP: &[(&str, &str, &str)] = &[
    (
        "switchyard_requests_total",
        "counter",
        "Requests by route, serving model and HTTP status.",
    ),
    (
        "switchyard_attempts_total",
        "counter",
        "Upstream attempts by model and outcome (ok or an error class).",
    ),
    (
        "switchyard_fallbacks_total",
        "counter",
        "Requests served by a model other than the first choice.",
    ),
    (
        "switchyard_tokens_total",
        "counter",
        "Tokens by model and kind (prompt, completion).",
    ),
    (
        "switchyard_cost_usd_total",
        "counter",
        "Cost in USD by model, from upstream usage and the price table.",
    ),
    (
        "switchyard_request_duration_seconds",
        "histogram",
        "Whole-request latency by route (to the last byte).",
    ),
    (
        "switchyard_routing_duration_seconds",
        "histogram",
        "Embedding, classification, scoring and policy by route.",
    ),
    (
        "switchyard_upstream_duration_seconds",
        "histogram",
        "Upstream attempt latency by model (to the response or first chunk).",
    ),
    (
        "switchyard_breaker_open",
        "gauge",
        "1 while a model's circuit breaker is open.",
    ),
    (
        "switchyard_rejected_total",
        "counter",
        "Requests refused before routing, by reason.",
    ),
    (
        "switchyard_cache_lookups_total",
        "counter",
        "Cache lookups by outcome (hit, semantic_hit, miss, error).",
    ),
    (
        "switchyard_cache_stores_total",
        "counter",
        "Answers stored in the cache, by outcome (ok, error).",
    ),
];

impl Metrics {
    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        self.inner
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    pub fn add(&self, name: &'static str, labels: Labels, value: f64) {
        *self.lock().counters.entry((name, labels)).or_default() += value;
    }

    pub fn observe(&self, name: &'static str, labels: Labels, seconds: f64) {
        let mut inner = self.lock();
        let h = inner.histograms.entry((name, labels)).or_default();
        for (i, b) in BUCKETS.iter().enumerate() {
            if seconds <= *b {
                h.counts[i] += 1;
            }
        }
        h.sum += seconds;
        h.count += 1;
    }

    pub fn set(&self, name: &'static str, labels: Labels, value: f64) {
        self.lock().gauges.insert((name, labels), value);
    }

    /// The exposition text.
    pub fn render(&self) -> String {
        let inner = self.lock();
        let mut out = String::new();
        for (name, kind, help) in HELP {
            let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} {kind}");
            let series = inner
                .counters
                .iter()
                .chain(inner.gauges.iter())
                .filter(|((n, _), _)| n == name);
            for ((_, labels), v) in series {
                let _ = writeln!(out, "{name}{} {v}", fmt_labels(labels, None));
            }
            for ((_, labels), h) in inner.histograms.iter().filter(|((n, _), _)| n == name) {
                for (b, c) in BUCKETS.iter().zip(h.counts) {
                    let _ = writeln!(
                        out,
                        "{name}_bucket{} {c}",
                        fmt_labels(labels, Some(&b.to_string()))
                    );
                }
                let _ = writeln!(
                    out,
                    "{name}_bucket{} {}",
                    fmt_labels(labels, Some("+Inf")),
                    h.count
                );
                let _ = writeln!(out, "{name}_sum{} {}", fmt_labels(labels, None), h.sum);
                let _ = writeln!(out, "{name}_count{} {}", fmt_labels(labels, None), h.count);
            }
        }
        out
    }
}

fn fmt_labels(labels: &Labels, le: Option<&str>) -> String {
    let mut parts: Vec<String> = labels
        .iter()
        .map(|(k, v)| {
            format!(
                "{k}=\"{}\"",
                v.replace('\\', "\\\\")
                    .replace('"', "\\\"")
                    .replace('\n', "\\n")
            )
        })
        .collect();
    if let Some(le) = le {
        parts.push(format!("le=\"{le}\""));
    }
    if parts.is_empty() {
        String::new()
    } else {
        format!("{{{}}}", parts.join(","))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_counters_and_histograms() {
        let m = Metrics::default();
        m.add(
            "switchyard_requests_total",
            vec![("route", "auto".into()), ("status", "200".into())],
            1.0,
        );
        m.add(
            "switchyard_requests_total",
            vec![("route", "auto".into()), ("status", "200".into())],
            1.0,
        );
        m.observe(
            "switchyard_request_duration_seconds",
            vec![("route", "a\"b".into())],
            0.003,
        );
        let text = m.render();
        assert!(
            text.contains("switchyard_requests_total{route=\"auto\",status=\"200\"} 2"),
            "{text}"
        );
        assert!(text.contains(
            "switchyard_request_duration_seconds_bucket{route=\"a\\\"b\",le=\"0.0025\"} 0"
        ));
        assert!(text.contains(
            "switchyard_request_duration_seconds_bucket{route=\"a\\\"b\",le=\"0.005\"} 1"
        ));
        assert!(text.contains("switchyard_request_duration_seconds_count{route=\"a\\\"b\"} 1"));
    }
}
