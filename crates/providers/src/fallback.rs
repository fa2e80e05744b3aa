//! The fallback loop: the route's targets in order, retries per target with backoff, a
//! circuit breaker per target, one deadline over everything. It returns the first answer,
//! or a typed error that carries every attempt's own error.
//!
//! The loop never falls back once a stream has produced its first chunk: a [`Reply::Stream`]
//! is returned as soon as the upstream has committed to answering, and what happens after
//! that is the caller's to relay.

use std::sync::Arc;
use std::time::{Duration, Instant};

use serde_json::Value;

use crate::{AttemptError, Breaker, ErrorClass, Permit, Provider, Reply, RetryPolicy};

/// One model the loop may try.
#[derive(Debug, Clone)]
pub struct Target<'a> {
    /// The gateway's name for the model (logs, metrics, the breaker).
    pub model: &'a str,
    /// The id the upstream knows it by (`model` of the request body sent).
    pub upstream_model: &'a str,
    pub provider: &'a Provider,
    pub breaker: Arc<Breaker>,
}

/// One try of one target.
#[derive(Debug, Clone, PartialEq)]
pub struct Attempt {
    pub model: String,
    /// 200 for the answer that was served; the upstream's status on an HTTP error.
    pub status: Option<u16>,
    pub latency: Duration,
    /// `None` when this attempt answered.
    pub error: Option<AttemptError>,
}

/// What the loop reports as it goes (metrics live with the caller).
pub trait Observer: Send + Sync {
    /// An attempt ended: `outcome` is `ok` or the error class; `latency` is `None` when no
    /// request was sent (open breaker).
    fn attempt(&self, model: &str, outcome: &'static str, latency: Option<Duration>);
}

/// An observer that records nothing.
#[derive(Debug, Clone, Copy, Default)]
pub struct Quiet;

impl Observer for Quiet {
    fn attempt(&self, _: &str, _: &'static str, _: Option<Duration>) {}
}

/// The answer and how it was reached.
#[derive(Debug)]
pub struct Success {
    pub model: String,
    pub reply: Reply,
    /// Every attempt, the successful one last.
    pub attempts: Vec<Attempt>,
    /// For a stream, the breaker's permit for the answering target: a stream can still
    /// break after its first chunk, so whoever relays it records how it ended (a whole
    /// answer was recorded as a success already).
    pub pending: Option<Permit>,
}

/// Why no target answered. Each variant carries every attempt, in order.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum FallbackError {
    /// The upstream said the request itself is bad (400, 413, 422): another model would
    /// refuse it too, so the loop stopped.
    #[error("the upstream refused the request: {}", last_message(.attempts))]
    Refused { status: u16, attempts: Vec<Attempt> },
    #[error("the deadline of {} ms passed", .deadline.as_millis())]
    Deadline {
        deadline: Duration,
        attempts: Vec<Attempt>,
    },
    /// Every target's circuit breaker was open: nothing was sent.
    #[error("every target's circuit breaker is open")]
    AllOpen { attempts: Vec<Attempt> },
    /// Every target was tried and failed.
    #[error("every target failed: {}", messages(.attempts))]
    Exhausted { attempts: Vec<Attempt> },
}

impl FallbackError {
    pub fn attempts(&self) -> &[Attempt] {
        match self {
            Self::Refused { attempts, .. }
            | Self::Deadline { attempts, .. }
            | Self::AllOpen { attempts }
            | Self::Exhausted { attempts } => attempts,
        }
    }

    pub fn into_attempts(self) -> Vec<Attempt> {
        match self {
            Self::Refused { attempts, .. }
            | Self::Deadline { attempts, .. }
            | Self::AllOpen { attempts }
            | Self::Exhausted { attempts } => attempts,
        }
    }
}

fn messages(attempts: &[Attempt]) -> String {
    let all: Vec<&str> = attempts
        .iter()
        .filter_map(|a| a.error.as_ref().map(|e| e.message.as_str()))
        .collect();
    all.join("; ")
}

fn last_message(attempts: &[Attempt]) -> &str {
    attempts
        .iter()
        .rev()
        .find_map(|a| a.error.as_ref().map(|e| e.message.as_str()))
        .unwrap_or("")
}

/// The loop's settings for one request.
#[derive(Debug, Clone, Copy)]
pub struct Plan<'a> {
    pub retry: &'a RetryPolicy,
    pub deadline: Instant,
    /// The whole budget `deadline` was set from, for the error message.
    pub budget: Duration,
    pub stream: bool,
}

/// Tries `targets` in order until one answers.
pub async fn run(
    targets: &[Target<'_>],
    mut request: Value,
    plan: Plan<'_>,
    observer: &dyn Observer,
) -> Result<Success, FallbackError> {
    let mut attempts = Vec::new();
    let mut sent_any = false;
    for target in targets {
        // The one request body, re-pointed at each target in turn (cloned only per send).
        if let Some(obj) = request.as_object_mut() {
            obj.insert(
                "model".into(),
                Value::String(target.upstream_model.to_owned()),
            );
        }
        match try_target(target, &request, plan, observer, &mut attempts).await {
            TargetResult::Answered(reply, pending) => {
                return Ok(Success {
                    model: target.model.to_owned(),
                    reply,
                    attempts,
                    pending,
                });
            }
            TargetResult::Failed { sent } => sent_any |= sent,
            TargetResult::Refused(status) => {
                return Err(FallbackError::Refused { status, attempts });
            }
            TargetResult::Deadline => {
                return Err(FallbackError::Deadline {
                    deadline: plan.budget,
                    attempts,
                });
            }
        }
    }
    if !sent_any && !targets.is_empty() {
        return Err(FallbackError::AllOpen { attempts });
    }
    Err(FallbackError::Exhausted { attempts })
}

enum TargetResult {
    Answered(Reply, Option<Permit>),
    /// Give up on this target; `sent` says whether any request went out.
    Failed {
        sent: bool,
    },
    Refused(u16),
    Deadline,
}

/// One target with its retries.
async fn try_target(
    target: &Target<'_>,
    request: &Value,
    plan: Plan<'_>,
    observer: &dyn Observer,
    attempts: &mut Vec<Attempt>,
) -> TargetResult {
    let mut sent = false;
    for retry in 0..=plan.retry.max_retries {
        let now = Instant::now();
        if now >= plan.deadline {
            return TargetResult::Deadline;
        }
        let Some(permit) = target.breaker.try_acquire() else {
            observer.attempt(target.model, ErrorClass::BreakerOpen.as_str(), None);
            attempts.push(failed(target, Duration::ZERO, breaker_open(target.model)));
            return TargetResult::Failed { sent };
        };
        sent = true;
        let call = target.provider.chat(request.clone(), plan.stream);
        let result = match tokio::time::timeout(plan.deadline - now, call).await {
            Ok(r) => r,
            Err(_) => Err(AttemptError::new(
                ErrorClass::Timeout,
                format!("{}: the request deadline passed", target.model),
            )),
        };
        let latency = now.elapsed();
        let e = match result {
            Ok(reply) => {
                let pending = match reply {
                    Reply::Stream { .. } => Some(permit),
                    Reply::Full { .. } => {
                        permit.record(true);
                        None
                    }
                };
                observer.attempt(target.model, "ok", Some(latency));
                attempts.push(Attempt {
                    model: target.model.to_owned(),
                    status: Some(200),
                    latency,
                    error: None,
                });
                return TargetResult::Answered(reply, pending);
            }
            Err(e) => e,
        };
        permit.record(!e.counts_against_target());
        observer.attempt(target.model, e.class.as_str(), Some(latency));
        tracing::warn!(model = %target.model, class = e.class.as_str(), error = %e.message, "upstream attempt failed");
        let (retryable, falls_back, status) = (e.retryable(), e.falls_back(), e.status);
        let delay = plan.retry.delay(retry, e.retry_after);
        attempts.push(failed(target, latency, e));
        if !falls_back {
            return TargetResult::Refused(status.unwrap_or(400));
        }
        if !retryable || retry == plan.retry.max_retries {
            break;
        }
        // A wait the target asks for beyond the cap, or past the deadline, is not spent
        // here: the next target is tried at once.
        let left = plan.deadline.saturating_duration_since(Instant::now());
        match delay {
            Some(delay) if delay < left => tokio::time::sleep(delay).await,
            _ => break,
        }
    }
    TargetResult::Failed { sent }
}

fn failed(target: &Target<'_>, latency: Duration, error: AttemptError) -> Attempt {
    Attempt {
        model: target.model.to_owned(),
        status: error.status,
        latency,
        error: Some(error),
    }
}

fn breaker_open(model: &str) -> AttemptError {
    AttemptError::new(
        ErrorClass::BreakerOpen,
        format!("{model}: circuit breaker open"),
    )
}
