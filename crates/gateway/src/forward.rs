//! The gateway's side of the fallback loop (`switchyard_providers::fallback`): the plan's
//! models as targets, attempts counted in the metrics, and the loop's typed outcome as the
//! log's attempts and the client's error.

use std::time::{Duration, Instant};

use serde_json::Value;
use switchyard_providers::ErrorClass;
use switchyard_providers::fallback::{self, FallbackError, Observer, Success, Target};

use crate::error::{ApiError, ErrorKind};
use crate::metrics::Metrics;
use crate::state::{AppState, Runtime};
use crate::traffic::Attempt;

/// Counts attempts and upstream latency per model.
struct Counted<'a>(&'a Metrics);

impl Observer for Counted<'_> {
    fn attempt(&self, model: &str, outcome: &'static str, latency: Option<Duration>) {
        self.0
            .attempt(model, outcome, latency.map(|l| l.as_secs_f64()));
    }
}

/// Tries `order` until a model answers. The attempts go into `attempts` either way.
pub async fn forward(
    state: &AppState,
    runtime: &Runtime,
    order: &[String],
    request: Value,
    stream: bool,
    started: Instant,
    attempts: &mut Vec<Attempt>,
) -> Result<Success, ApiError> {
    let targets: Vec<Target<'_>> = order
        .iter()
        .filter_map(|model| {
            let m = runtime.models.get(model)?;
            Some(Target {
                model,
                upstream_model: &m.upstream_model,
                provider: runtime.providers.get(&m.provider)?,
                breaker: state.breaker(model, runtime.breaker),
            })
        })
        .collect();
    let plan = fallback::Plan {
        retry: &runtime.retry,
        deadline: started + runtime.deadline,
        budget: runtime.deadline,
        stream,
    };
    match fallback::run(&targets, request, plan, &Counted(&state.metrics)).await {
        Ok(success) => {
            attempts.extend(success.attempts.iter().map(logged));
            Ok(success)
        }
        Err(e) => {
            attempts.extend(e.attempts().iter().map(logged));
            Err(client_error(&e, order, runtime))
        }
    }
}

fn logged(a: &fallback::Attempt) -> Attempt {
    Attempt {
        model: a.model.clone(),
        status: a.status,
        latency_ms: a.latency.as_secs_f64() * 1e3,
        error_class: a.error.as_ref().map(|e| e.class),
        error: a.error.as_ref().map(|e| e.message.clone()),
    }
}

/// What the client is told. Upstream error texts stay in the log (they can carry an
/// upstream's internals); the client gets each attempt's model, class and status.
fn client_error(e: &FallbackError, order: &[String], runtime: &Runtime) -> ApiError {
    match e {
        FallbackError::Refused { status, attempts } => {
            let why = attempts.last().and_then(|a| a.error.as_ref());
            let message = why.map_or_else(String::new, |w| w.message.clone());
            ApiError::new(
                ErrorKind::UpstreamRefused(*status),
                format!("the upstream refused the request: {message}"),
            )
        }
        FallbackError::Deadline { deadline, attempts } => {
            let tried = summary(attempts);
            let after = if tried.is_empty() {
                String::new()
            } else {
                format!(" after: {tried}")
            };
            ApiError::new(
                ErrorKind::DeadlineExceeded,
                format!(
                    "the request deadline of {} ms passed{after}",
                    deadline.as_millis()
                ),
            )
        }
        FallbackError::AllOpen { .. } => ApiError::new(
            ErrorKind::Unavailable,
            format!(
                "every model for this request is failing (circuit breakers open: {}); retry later",
                order.join(", ")
            ),
        )
        .retry_after(runtime.breaker.open_for.as_secs().max(1)),
        FallbackError::Exhausted { attempts } => ApiError::new(
            ErrorKind::UpstreamFailed,
            format!("every model failed: {}", summary(attempts)),
        ),
    }
}

/// `model: class (HTTP status)` per failed attempt.
fn summary(attempts: &[fallback::Attempt]) -> String {
    let parts: Vec<String> = attempts
        .iter()
        .filter_map(|a| {
            let e = a.error.as_ref()?;
            let status = e
                .status
                .map_or_else(String::new, |s| format!(" (HTTP {s})"));
            Some(format!("{}: {}{status}", a.model, describe(e.class)))
        })
        .collect();
    parts.join("; ")
}

fn describe(class: ErrorClass) -> &'static str {
    match class {
        ErrorClass::Connect => "cannot connect",
        ErrorClass::Timeout => "timed out",
        ErrorClass::RateLimited => "rate limited",
        ErrorClass::ServerError => "server error",
        ErrorClass::ClientError => "refused",
        ErrorClass::Malformed => "malformed response",
        ErrorClass::Stalled => "stalled",
        ErrorClass::Reset => "connection reset",
        ErrorClass::BreakerOpen => "circuit breaker open",
    }
}
