//! Errors in OpenAI's shape: `{"error": {"message", "type", "param", "code"}}`, and the
//! one place each library's error becomes one (the `From` impls at the end).
//!
//! One [`ErrorKind`] sets the HTTP status, OpenAI's `type` and `code` together, so no call
//! site chooses them separately. Server-side failures (500, 502) answer with a generic
//! message and the request id; their detail goes to the log under that id. The response
//! itself is written by the HTTP edge (`edge::response`).

use axum::http::StatusCode;
use serde_json::json;
use switchyard_core::EmbedError;
use switchyard_core::policy::{Exclusion, PolicyError};
use switchyard_providers::ErrorClass;
use switchyard_providers::fallback::{self, FallbackError};
use switchyard_router::RouterError;

use crate::limits::LimitError;

/// What went wrong, as the client is told.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorKind {
    /// 400: the request is malformed or cannot be served as asked.
    InvalidRequest,
    /// 413: the body is over `server.max_body_bytes`.
    PayloadTooLarge,
    /// 404: no such endpoint, request id or other resource.
    NotFound,
    /// 405: the endpoint exists, the method does not.
    MethodNotAllowed,
    /// 408: the request body did not arrive within `server.body_timeout_ms`.
    RequestTimeout,
    /// 404: `model` names neither a route nor a model.
    ModelNotFound,
    /// 401: a missing or unknown API key.
    InvalidApiKey,
    /// 401: an admin endpoint without the admin key.
    AdminKeyRequired,
    /// 403: an endpoint that is switched off.
    Forbidden,
    /// 422: a router offered for promotion that does not load or validate.
    UnprocessableRouter,
    /// 403: the tenant may not use this route or model.
    ModelNotAllowed,
    /// 429: the tenant's request rate.
    RateLimited,
    /// 429: the gateway's own queue (the encoder) is full.
    Overloaded,
    /// 429: the tenant's token or USD budget is spent.
    QuotaExceeded,
    /// The upstream refused the request itself (its 4xx status is passed on).
    UpstreamRefused(u16),
    /// 502: every target failed.
    UpstreamFailed,
    /// 504: the request's deadline passed.
    DeadlineExceeded,
    /// 503: something the request needs is down or off; the message says what.
    Unavailable,
    /// 500: a fault inside the gateway.
    Internal,
}

impl ErrorKind {
    pub fn status(self) -> StatusCode {
        match self {
            Self::InvalidRequest => StatusCode::BAD_REQUEST,
            Self::PayloadTooLarge => StatusCode::PAYLOAD_TOO_LARGE,
            Self::NotFound | Self::ModelNotFound => StatusCode::NOT_FOUND,
            Self::MethodNotAllowed => StatusCode::METHOD_NOT_ALLOWED,
            Self::RequestTimeout => StatusCode::REQUEST_TIMEOUT,
            Self::UnprocessableRouter => StatusCode::UNPROCESSABLE_ENTITY,
            Self::InvalidApiKey | Self::AdminKeyRequired => StatusCode::UNAUTHORIZED,
            Self::Forbidden | Self::ModelNotAllowed => StatusCode::FORBIDDEN,
            Self::RateLimited | Self::Overloaded | Self::QuotaExceeded => {
                StatusCode::TOO_MANY_REQUESTS
            }
            Self::UpstreamRefused(status) => StatusCode::from_u16(status)
                .ok()
                .filter(StatusCode::is_client_error)
                .unwrap_or(StatusCode::BAD_REQUEST),
            Self::UpstreamFailed => StatusCode::BAD_GATEWAY,
            Self::DeadlineExceeded => StatusCode::GATEWAY_TIMEOUT,
            Self::Unavailable => StatusCode::SERVICE_UNAVAILABLE,
            Self::Internal => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }

    /// OpenAI's `type`.
    pub fn openai_type(self) -> &'static str {
        match self {
            Self::InvalidRequest
            | Self::PayloadTooLarge
            | Self::NotFound
            | Self::MethodNotAllowed
            | Self::RequestTimeout
            | Self::ModelNotFound
            | Self::UnprocessableRouter
            | Self::UpstreamRefused(_) => "invalid_request_error",
            Self::InvalidApiKey | Self::AdminKeyRequired => "authentication_error",
            Self::Forbidden | Self::ModelNotAllowed => "permission_error",
            Self::RateLimited | Self::Overloaded => "rate_limit_error",
            Self::QuotaExceeded => "insufficient_quota",
            Self::UpstreamFailed | Self::DeadlineExceeded => "upstream_error",
            Self::Unavailable | Self::Internal => "server_error",
        }
    }

    /// OpenAI's `code`, where one applies.
    pub fn code(self) -> Option<&'static str> {
        match self {
            Self::ModelNotFound => Some("model_not_found"),
            Self::InvalidApiKey => Some("invalid_api_key"),
            Self::ModelNotAllowed => Some("model_not_allowed"),
            Self::RateLimited => Some("rate_limit_exceeded"),
            Self::QuotaExceeded => Some("insufficient_quota"),
            Self::UpstreamFailed => Some("upstream_failed"),
            Self::DeadlineExceeded => Some("deadline_exceeded"),
            _ => None,
        }
    }

    /// Whether the client sees only a generic message (the detail is logged).
    pub fn is_private(self) -> bool {
        matches!(self, Self::Internal)
    }
}

#[derive(Debug, Clone, PartialEq)]
pub struct ApiError {
    pub kind: ErrorKind,
    pub param: Option<String>,
    /// What the client is told (for private kinds, what the log is told).
    pub message: String,
    /// Seconds for `Retry-After`, on 429 and 503.
    pub retry_after: Option<u64>,
    /// The request this error answers, named in generic bodies.
    pub request_id: Option<String>,
}

impl ApiError {
    pub fn new(kind: ErrorKind, message: impl Into<String>) -> Self {
        Self {
            kind,
            param: None,
            message: message.into(),
            retry_after: None,
            request_id: None,
        }
    }

    pub fn invalid(message: impl Into<String>) -> Self {
        Self::new(ErrorKind::InvalidRequest, message)
    }

    /// A fault inside the gateway: the client sees a generic message, the log `detail`.
    pub fn internal(detail: impl std::fmt::Display) -> Self {
        Self::new(ErrorKind::Internal, detail.to_string())
    }

    pub fn param(mut self, param: impl Into<String>) -> Self {
        self.param = Some(param.into());
        self
    }

    pub fn retry_after(mut self, secs: u64) -> Self {
        self.retry_after = Some(secs);
        self
    }

    pub fn request_id(mut self, id: &str) -> Self {
        self.request_id = Some(id.to_owned());
        self
    }

    pub fn status(&self) -> StatusCode {
        self.kind.status()
    }

    /// The message the client sees.
    pub fn public_message(&self) -> String {
        if !self.kind.is_private() {
            return self.message.clone();
        }
        match &self.request_id {
            Some(id) => {
                format!("internal error; the gateway's log has the detail under request id {id}")
            }
            None => "internal error; the gateway's log has the detail".to_owned(),
        }
    }

    pub fn body(&self) -> serde_json::Value {
        json!({"error": {"message": self.public_message(), "type": self.kind.openai_type(),
                         "param": self.param, "code": self.kind.code()}})
    }
}

/// A JSON body as `T`, or a 400 naming the field at fault. `untagged` replaces serde's
/// unhelpful message for a value that matches none of an untagged enum's forms.
pub fn parse_body<T: serde::de::DeserializeOwned>(
    body: &serde_json::Value,
    untagged: &str,
) -> Result<T, ApiError> {
    serde_path_to_error::deserialize(body).map_err(|e| {
        let path = e.path().to_string();
        let inner = e.into_inner().to_string();
        let message = if inner.contains("untagged enum") {
            untagged.to_owned()
        } else {
            inner
        };
        let param = if path == "." { "body".to_owned() } else { path };
        ApiError::invalid(format!("{param}: {message}")).param(param)
    })
}

impl From<LimitError> for ApiError {
    fn from(e: LimitError) -> Self {
        let kind = match &e {
            LimitError::MissingKey | LimitError::InvalidKey => ErrorKind::InvalidApiKey,
            LimitError::NotAllowed { .. } => ErrorKind::ModelNotAllowed,
            LimitError::RateLimited { .. } => ErrorKind::RateLimited,
            LimitError::OverTokens { .. } | LimitError::OverUsd { .. } => ErrorKind::QuotaExceeded,
            LimitError::SharedLimitsDown
            | LimitError::SharedIdsDown
            | LimitError::SharedRoutersDown => ErrorKind::Unavailable,
            LimitError::NoSharedState => ErrorKind::Forbidden,
        };
        let api = Self::new(kind, e.to_string());
        match e.retry_after() {
            Some(secs) => api.retry_after(secs),
            None => api,
        }
    }
}

impl From<EmbedError> for ApiError {
    fn from(e: EmbedError) -> Self {
        match e {
            EmbedError::QueueFull { .. } => {
                Self::new(ErrorKind::Overloaded, e.to_string()).retry_after(1)
            }
            EmbedError::NoInputs | EmbedError::EmptyInput { .. } => Self::invalid(e.to_string()),
            other => Self::internal(other),
        }
    }
}

/// A route's router failing to decide, with what the client's answer needs.
#[derive(Debug)]
pub struct RouteFailure<'a> {
    pub error: RouterError,
    pub route: &'a str,
    /// How long open circuit breakers stay open (the Retry-After of "all down").
    pub breaker_open_s: u64,
}

/// No model can take the request: 503 when they are all down (retry later), else 400.
impl From<RouteFailure<'_>> for ApiError {
    fn from(f: RouteFailure<'_>) -> Self {
        let RouterError::Policy(PolicyError::AllExcluded(why)) = f.error else {
            return Self::internal(f.error);
        };
        let detail: Vec<String> = why
            .iter()
            .map(|(m, e)| {
                let reason = serde_json::to_string(e).unwrap_or_default();
                format!("{m}: {}", reason.trim_matches('"'))
            })
            .collect();
        let message = format!(
            "no model of route {:?} can take this request ({})",
            f.route,
            detail.join("; ")
        );
        if why.values().all(|e| *e == Exclusion::Unavailable) {
            Self::new(ErrorKind::Unavailable, message).retry_after(f.breaker_open_s.max(1))
        } else {
            Self::invalid(message)
        }
    }
}

/// Every attempt of the fallback loop failing, with what the client's answer needs.
#[derive(Debug)]
pub struct ForwardFailure<'a> {
    pub error: &'a FallbackError,
    /// The models tried, in order.
    pub order: &'a [String],
    pub breaker_open_s: u64,
}

/// What the client is told. Upstream error texts stay in the log (they can carry an
/// upstream's internals); the client gets each attempt's model, class and status.
impl From<ForwardFailure<'_>> for ApiError {
    fn from(f: ForwardFailure<'_>) -> Self {
        match f.error {
            FallbackError::Refused { status, attempts } => {
                let why = attempts.last().and_then(|a| a.error.as_ref());
                let message = why.map_or_else(String::new, |w| w.message.clone());
                Self::new(
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
                let ms = deadline.as_millis();
                let message = format!("the request deadline of {ms} ms passed{after}");
                Self::new(ErrorKind::DeadlineExceeded, message)
            }
            FallbackError::AllOpen { .. } => Self::new(
                ErrorKind::Unavailable,
                format!(
                    "every model for this request is failing (circuit breakers open: {}); retry later",
                    f.order.join(", ")
                ),
            )
            .retry_after(f.breaker_open_s.max(1)),
            FallbackError::Exhausted { attempts } => Self::new(
                ErrorKind::UpstreamFailed,
                format!("every model failed: {}", summary(attempts)),
            ),
        }
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kinds_set_status_type_and_code_together() {
        let e = ApiError::new(ErrorKind::QuotaExceeded, "spent");
        assert_eq!(e.status(), StatusCode::TOO_MANY_REQUESTS);
        assert_eq!(e.body()["error"]["type"], "insufficient_quota");
        assert_eq!(e.body()["error"]["code"], "insufficient_quota");
        let refused = ApiError::new(ErrorKind::UpstreamRefused(422), "no");
        assert_eq!(refused.status(), StatusCode::UNPROCESSABLE_ENTITY);
        // A non-4xx status from an upstream never becomes the client's status.
        let odd = ApiError::new(ErrorKind::UpstreamRefused(200), "no");
        assert_eq!(odd.status(), StatusCode::BAD_REQUEST);
    }

    #[test]
    fn internal_errors_keep_their_detail_out_of_the_body() {
        let e =
            ApiError::internal("scorer: weights of gpt-4 are NaN at /srv/models").request_id("abc");
        let body = e.body().to_string();
        assert!(
            !body.contains("/srv/models") && !body.contains("NaN"),
            "{body}"
        );
        assert!(
            body.contains("abc") && body.contains("server_error"),
            "{body}"
        );
        assert_eq!(e.status(), StatusCode::INTERNAL_SERVER_ERROR);
    }
}
