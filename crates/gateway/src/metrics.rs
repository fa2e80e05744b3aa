//! Prometheus metrics through `prometheus-client`: every family is registered once, at
//! start, and updated lock-free through its typed handle; `/metrics` renders the registry
//! in the OpenMetrics text format.
//!
//! Names (counters get `_total` from the library): `switchyard_requests_total`,
//! `switchyard_attempts_total`, `switchyard_fallbacks_total`, `switchyard_tokens_total`,
//! `switchyard_cost_usd_total`, `switchyard_rejected_total`,
//! `switchyard_cache_lookups_total`, `switchyard_cache_stores_total`,
//! `switchyard_request_duration_seconds`, `switchyard_routing_duration_seconds`,
//! `switchyard_upstream_duration_seconds`, `switchyard_breaker_open`,
//! `switchyard_stream_breaks_total` (streams that broke after their first chunk),
//! `switchyard_connections_refused_total`, `switchyard_shared_state_up`,
//! `switchyard_shared_state_errors_total`.

use std::sync::atomic::AtomicU64;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::{Metric, Registry};

/// Seconds.
const BUCKETS: [f64; 14] = [
    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0,
];

/// The content type of [`Metrics::render`].
pub const CONTENT_TYPE: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RequestLabels {
    route: String,
    model: String,
    status: String,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RouteLabel {
    route: String,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ModelLabel {
    model: String,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ModelOutcome {
    model: String,
    outcome: String,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ModelKind {
    model: String,
    kind: String,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct Reason {
    reason: String,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct Outcome {
    outcome: String,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct Op {
    op: String,
}

type Histograms<L> = Family<L, Histogram, fn() -> Histogram>;

fn histogram() -> Histogram {
    Histogram::new(BUCKETS)
}

/// The gateway's metrics: one handle per family.
#[derive(Debug)]
pub struct Metrics {
    registry: Registry,
    requests: Family<RequestLabels, Counter>,
    attempts: Family<ModelOutcome, Counter>,
    fallbacks: Family<RouteLabel, Counter>,
    tokens: Family<ModelKind, Counter>,
    cost_usd: Family<ModelLabel, Counter<f64, AtomicU64>>,
    rejected: Family<Reason, Counter>,
    cache_lookups: Family<Outcome, Counter>,
    cache_stores: Family<Outcome, Counter>,
    request_duration: Histograms<RouteLabel>,
    routing_duration: Histograms<RouteLabel>,
    upstream_duration: Histograms<ModelLabel>,
    breaker_open: Family<ModelLabel, Gauge>,
    stream_breaks: Family<ModelOutcome, Counter>,
    connections_refused: Counter,
    shared_state_up: Gauge,
    shared_state_errors: Family<Op, Counter>,
}

/// A metric's name and help text.
type Named = (&'static str, &'static str);

/// `switchyard_shared_state_up`.
const SHARED_STATE_UP: Named = (
    "switchyard_shared_state_up",
    "1 while the shared state (Redis, [state]) answers; 0 while limits fall back",
);

/// `switchyard_shared_state_errors`.
const SHARED_STATE_ERRORS: Named = (
    "switchyard_shared_state_errors",
    "Failed calls to the shared state (Redis), by operation",
);

/// `switchyard_connections_refused`.
const CONNECTIONS_REFUSED: Named = (
    "switchyard_connections_refused",
    "Connections refused at once because server.max_connections were open",
);

/// `switchyard_stream_breaks`.
const STREAM_BREAKS: Named = (
    "switchyard_stream_breaks",
    "Streams that broke after their first chunk, by model and error class",
);

/// `switchyard_requests`.
const REQUESTS: Named = (
    "switchyard_requests",
    "Requests by route, serving model and HTTP status",
);

/// `switchyard_attempts`.
const ATTEMPTS: Named = (
    "switchyard_attempts",
    "Upstream attempts by model and outcome (ok or an error class)",
);

/// `switchyard_fallbacks`.
const FALLBACKS: Named = (
    "switchyard_fallbacks",
    "Requests served by a model other than the first choice",
);

/// `switchyard_tokens`.
const TOKENS: Named = (
    "switchyard_tokens",
    "Tokens by model and kind (prompt, completion)",
);

/// `switchyard_cost_usd`.
const COST_USD: Named = (
    "switchyard_cost_usd",
    "Cost in USD by model, from upstream usage and the price table",
);

/// `switchyard_rejected`.
const REJECTED: Named = (
    "switchyard_rejected",
    "Requests refused before routing, by reason",
);

/// `switchyard_cache_lookups`.
const CACHE_LOOKUPS: Named = (
    "switchyard_cache_lookups",
    "Cache lookups by outcome (hit, semantic_hit, miss, error)",
);

/// `switchyard_cache_stores`.
const CACHE_STORES: Named = (
    "switchyard_cache_stores",
    "Answers stored in the cache, by outcome (ok, error)",
);

/// `switchyard_request_duration_seconds`.
const REQUEST_DURATION: Named = (
    "switchyard_request_duration_seconds",
    "Whole-request latency by route (to the last byte)",
);

/// `switchyard_routing_duration_seconds`.
const ROUTING_DURATION: Named = (
    "switchyard_routing_duration_seconds",
    "Embedding, classification, scoring and policy by route",
);

/// `switchyard_upstream_duration_seconds`.
const UPSTREAM_DURATION: Named = (
    "switchyard_upstream_duration_seconds",
    "Upstream attempt latency by model (to the response or first chunk)",
);

/// `switchyard_breaker_open`.
const BREAKER_OPEN: Named = (
    "switchyard_breaker_open",
    "1 while a model's circuit breaker is open",
);

impl Default for Metrics {
    fn default() -> Self {
        let mut registry = Registry::default();
        let r = &mut registry;
        let shared_state_up = registered(r, SHARED_STATE_UP, Gauge::default());
        let shared_state_errors = registered(r, SHARED_STATE_ERRORS, Family::default());
        let connections_refused = registered(r, CONNECTIONS_REFUSED, Counter::default());
        let stream_breaks = registered(r, STREAM_BREAKS, Family::default());
        let requests = registered(r, REQUESTS, Family::default());
        let attempts = registered(r, ATTEMPTS, Family::default());
        let fallbacks = registered(r, FALLBACKS, Family::default());
        let tokens = registered(r, TOKENS, Family::default());
        let cost_usd = registered(r, COST_USD, Family::default());
        let rejected = registered(r, REJECTED, Family::default());
        let cache_lookups = registered(r, CACHE_LOOKUPS, Family::default());
        let cache_stores = registered(r, CACHE_STORES, Family::default());
        let request_duration = registered(r, REQUEST_DURATION, histograms());
        let routing_duration = registered(r, ROUTING_DURATION, histograms());
        let upstream_duration = registered(r, UPSTREAM_DURATION, histograms());
        let breaker_open = registered(r, BREAKER_OPEN, Family::default());
        Self {
            registry,
            requests,
            attempts,
            fallbacks,
            tokens,
            cost_usd,
            rejected,
            cache_lookups,
            cache_stores,
            request_duration,
            routing_duration,
            upstream_duration,
            breaker_open,
            stream_breaks,
            connections_refused,
            shared_state_up,
            shared_state_errors,
        }
    }
}

/// Registers `metric` under its name and help text, and returns it.
fn registered<M: Metric + Clone>(r: &mut Registry, (name, help): Named, metric: M) -> M {
    r.register(name, help, metric.clone());
    metric
}

/// Histograms by label with the gateway's buckets.
fn histograms<L>() -> Histograms<L>
where
    L: Clone + std::hash::Hash + Eq,
{
    Histograms::new_with_constructor(histogram as fn() -> Histogram)
}

impl Metrics {
    pub fn shared_state_up(&self, up: bool) {
        self.shared_state_up.set(i64::from(up));
    }

    pub fn shared_state_error(&self, op: &str) {
        let labels = Op { op: op.to_owned() };
        self.shared_state_errors.get_or_create(&labels).inc();
    }

    pub fn connection_refused(&self) {
        self.connections_refused.inc();
    }

    /// A stream broke after its first chunk (the client saw an error event, not `[DONE]`).
    pub fn stream_broken(&self, model: &str, class: &str) {
        let labels = ModelOutcome {
            model: model.to_owned(),
            outcome: class.to_owned(),
        };
        self.stream_breaks.get_or_create(&labels).inc();
    }

    /// A finished request and how long it took.
    pub fn request(&self, route: &str, model: &str, status: u16, seconds: f64) {
        let labels = RequestLabels {
            route: route.to_owned(),
            model: model.to_owned(),
            status: status.to_string(),
        };
        self.requests.get_or_create(&labels).inc();
        self.request_duration
            .get_or_create(&RouteLabel {
                route: labels.route,
            })
            .observe(seconds);
    }

    pub fn fallback(&self, route: &str) {
        let route = route.to_owned();
        self.fallbacks.get_or_create(&RouteLabel { route }).inc();
    }

    /// Tokens the upstream reported and what they cost.
    pub fn usage(&self, model: &str, prompt: u64, completion: u64) {
        for (kind, n) in [("prompt", prompt), ("completion", completion)] {
            let labels = ModelKind {
                model: model.to_owned(),
                kind: kind.to_owned(),
            };
            self.tokens.get_or_create(&labels).inc_by(n);
        }
    }

    pub fn cost(&self, model: &str, usd: f64) {
        let model = model.to_owned();
        self.cost_usd
            .get_or_create(&ModelLabel { model })
            .inc_by(usd);
    }

    /// An upstream attempt; `seconds` is `None` when nothing was sent (open breaker).
    pub fn attempt(&self, model: &str, outcome: &str, seconds: Option<f64>) {
        let labels = ModelOutcome {
            model: model.to_owned(),
            outcome: outcome.to_owned(),
        };
        self.attempts.get_or_create(&labels).inc();
        if let Some(s) = seconds {
            let model = labels.model;
            self.upstream_duration
                .get_or_create(&ModelLabel { model })
                .observe(s);
        }
    }

    pub fn routing(&self, route: &str, seconds: f64) {
        let route = route.to_owned();
        self.routing_duration
            .get_or_create(&RouteLabel { route })
            .observe(seconds);
    }

    pub fn rejected(&self, reason: &str) {
        let reason = reason.to_owned();
        self.rejected.get_or_create(&Reason { reason }).inc();
    }

    pub fn cache_lookup(&self, outcome: &str) {
        let outcome = outcome.to_owned();
        self.cache_lookups.get_or_create(&Outcome { outcome }).inc();
    }

    pub fn cache_store(&self, outcome: &str) {
        let outcome = outcome.to_owned();
        self.cache_stores.get_or_create(&Outcome { outcome }).inc();
    }

    pub fn breaker_open(&self, model: &str, open: bool) {
        let model = model.to_owned();
        self.breaker_open
            .get_or_create(&ModelLabel { model })
            .set(i64::from(open));
    }

    /// The exposition text ([`CONTENT_TYPE`]).
    pub fn render(&self) -> String {
        let mut out = String::new();
        if let Err(e) = prometheus_client::encoding::text::encode(&mut out, &self.registry) {
            tracing::error!(error = %e, "cannot encode the metrics");
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_counters_histograms_and_escaped_labels() {
        let m = Metrics::default();
        m.request("auto", "small", 200, 0.003);
        m.request("auto", "small", 200, 0.5);
        m.request("a\"b", "-", 400, 0.003);
        m.cost("small", 0.25);
        m.breaker_open("big", true);
        let text = m.render();
        let has = |s: &str| assert!(text.contains(s), "{s} not in\n{text}");
        has("switchyard_requests_total{route=\"auto\",model=\"small\",status=\"200\"} 2");
        has("switchyard_request_duration_seconds_bucket{le=\"0.005\",route=\"auto\"} 1");
        has("switchyard_request_duration_seconds_count{route=\"auto\"} 2");
        has("route=\"a\\\"b\"");
        has("switchyard_cost_usd_total{model=\"small\"} 0.25");
        has("switchyard_breaker_open{model=\"big\"} 1");
        has("# EOF");
    }
}
