//! The gateway's side of the fallback loop (`switchyard_providers::fallback`): the plan's
//! models as targets, attempts counted in the metrics, and the loop's typed outcome as the
//! log's attempts and the client's error.

use std::sync::Arc;
use std::time::{Duration, Instant};

use serde_json::Value;
use switchyard_providers::fallback::{self, Observer, Success, Target};

use crate::error::{ApiError, ForwardFailure};
use crate::metrics::Metrics;
use crate::runtime::{AppState, ModelRuntime, Runtime};
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
    order: &[Arc<ModelRuntime>],
    request: Value,
    stream: bool,
    started: Instant,
    attempts: &mut Vec<Attempt>,
) -> Result<Success, ApiError> {
    let targets: Vec<Target<'_>> = order
        .iter()
        .map(|m| Target {
            model: &m.id,
            upstream_model: &m.upstream_model,
            provider: &m.client,
            breaker: state.breaker(&m.id, runtime.breaker),
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
            let ids: Vec<String> = order.iter().map(|m| m.id.clone()).collect();
            Err(ApiError::from(ForwardFailure {
                error: &e,
                order: &ids,
                breaker_open_s: runtime.breaker.open_for.as_secs(),
            }))
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
