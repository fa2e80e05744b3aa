//! The one place an [`ApiError`] becomes an HTTP response: OpenAI's error body, its
//! status, `Retry-After` where waiting helps; private details go to the log only.

use axum::http::HeaderValue;
use axum::response::{IntoResponse, Response};

use crate::error::ApiError;

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        if self.kind.is_private() {
            tracing::error!(request_id = self.request_id.as_deref().unwrap_or("-"), error = %self.message, "internal error");
        }
        let mut response = (self.status(), axum::Json(self.body())).into_response();
        if let Some(secs) = self.retry_after {
            response
                .headers_mut()
                .insert("retry-after", HeaderValue::from(secs));
        }
        response
    }
}
