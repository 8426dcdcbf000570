//! The admin API's error answer: [`ApiError`] (status, code, message) and where each failure
//! below the handlers lands: store errors by kind, body and query errors as 4xx, backend
//! failures as 503.
//!
//! Every answer has the shape of [`super::wire::ErrorBody`]. Messages never carry a secret:
//! the store's and the backend's messages name things, not tokens or PINs.

use std::time::Duration;

use hyper::StatusCode;
use hyper::header::HeaderValue;

use super::backend::{BackendError, Refusal};
use super::wire::QueryError;
use crate::http::{self, BodyError, HttpResponse};
use crate::store::StoreError;

/// An error answer.
#[derive(Debug, thiserror::Error)]
#[error("{message}")]
pub struct ApiError {
    status: StatusCode,
    code: &'static str,
    message: String,
    /// `Retry-After` in seconds (429).
    retry_after: Option<u64>,
}

/// A handler's result.
pub type ApiResult<T> = Result<T, ApiError>;

impl ApiError {
    /// An answer with this status, code and message.
    pub fn new(status: StatusCode, code: &'static str, message: impl Into<String>) -> Self {
        ApiError {
            status,
            code,
            message: message.into(),
            retry_after: None,
        }
    }

    /// 400 `invalid`.
    pub fn bad_request(message: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, "invalid", message)
    }

    /// 401: no token, or one the store does not know.
    pub fn unauthorized() -> Self {
        Self::new(
            StatusCode::UNAUTHORIZED,
            "unauthorized",
            "missing or invalid admin token (Authorization: Bearer <token>)",
        )
    }

    /// 403: a read-only token asked for a change.
    pub fn read_only() -> Self {
        Self::new(
            StatusCode::FORBIDDEN,
            "forbidden",
            "this token is read-only",
        )
    }

    /// 403: a brand-limited token asked for another brand, or for something that is not any
    /// one brand's (tokens, the audit log, brands, pushes).
    pub fn other_brand(message: impl Into<String>) -> Self {
        Self::new(StatusCode::FORBIDDEN, "brand-forbidden", message)
    }

    /// 429 for a client shut out for bad tokens; `Retry-After` in whole seconds, rounded up.
    pub fn throttled(wait: Duration) -> Self {
        let secs = (wait.as_secs() + u64::from(wait.subsec_nanos() > 0)).max(1);
        ApiError {
            retry_after: Some(secs),
            ..ApiError::new(
                StatusCode::TOO_MANY_REQUESTS,
                "too-many-bad-tokens",
                format!("too many bad admin tokens from this address; retry in {secs} s"),
            )
        }
    }

    /// A request body that does not fit the route's request type (`e` names the field).
    pub fn bad_body(e: &serde_json::Error) -> Self {
        use serde_json::error::Category;
        match e.classify() {
            Category::Syntax | Category::Eof | Category::Io => {
                Self::bad_request(format!("the body is not valid JSON: {e}"))
            }
            Category::Data => Self::bad_request(format!("the body does not fit: {e}")),
        }
    }

    /// 500 for an answer that cannot be written.
    pub fn unserializable(e: &serde_json::Error) -> Self {
        tracing::error!(error = %e, "admin answer cannot be serialized");
        Self::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            "internal",
            "the answer cannot be written",
        )
    }

    /// Its status.
    pub fn status(&self) -> StatusCode {
        self.status
    }

    /// Its message (never a secret).
    pub fn message(&self) -> &str {
        &self.message
    }

    /// Its `Retry-After` in seconds, if any.
    pub fn retry_after(&self) -> Option<u64> {
        self.retry_after
    }

    /// The answer.
    pub fn response(&self) -> HttpResponse {
        let mut resp = http::json_error(self.status, self.code, &self.message);
        if let Some(secs) = self.retry_after {
            resp.headers_mut()
                .insert("retry-after", HeaderValue::from(secs));
        }
        resp
    }
}

impl From<StoreError> for ApiError {
    fn from(e: StoreError) -> Self {
        match e {
            StoreError::NotFound(m) => ApiError::new(StatusCode::NOT_FOUND, "not-found", m),
            StoreError::Conflict(m) => ApiError::new(StatusCode::CONFLICT, "conflict", m),
            StoreError::Invalid(m) => ApiError::bad_request(m),
            e @ StoreError::Unavailable(_) => ApiError::new(
                StatusCode::SERVICE_UNAVAILABLE,
                "database-unavailable",
                e.to_string(),
            ),
            e @ StoreError::Database(_) => {
                tracing::error!(error = %e, "admin request failed in the database");
                ApiError::new(
                    StatusCode::INTERNAL_SERVER_ERROR,
                    "database-error",
                    e.to_string(),
                )
            }
        }
    }
}

impl From<BodyError> for ApiError {
    fn from(e: BodyError) -> Self {
        match e {
            BodyError::TooLarge(_) => {
                ApiError::new(StatusCode::PAYLOAD_TOO_LARGE, "too-large", e.to_string())
            }
            BodyError::Read(_) => ApiError::bad_request(e.to_string()),
            BodyError::Timeout(_) => {
                ApiError::new(StatusCode::REQUEST_TIMEOUT, "body-timeout", e.to_string())
            }
        }
    }
}

impl From<QueryError> for ApiError {
    fn from(e: QueryError) -> Self {
        ApiError::bad_request(e.to_string())
    }
}

impl From<BackendError> for ApiError {
    fn from(e: BackendError) -> Self {
        ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "hsm-unavailable",
            e.to_string(),
        )
    }
}

impl From<Refusal> for ApiError {
    fn from(r: Refusal) -> Self {
        ApiError::new(StatusCode::BAD_REQUEST, "refused-assertion", r.0)
    }
}
