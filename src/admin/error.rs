//! API errors: client errors say what was wrong; internal errors say "internal error" to the
//! client and log the detail.

use crate::store::QueryError;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;
use tracing::error;

#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    #[error("{0}")]
    BadRequest(String),
    #[error("{0}")]
    Forbidden(String),
    #[error("{0}")]
    Internal(String),
    #[error("{0}")]
    NotFound(String),
    #[error("{0}")]
    Unauthorized(String),
    #[error("{0}")]
    TooLarge(String),
    /// Retry later: the store is busy or failing, or tollgate is stopping.
    #[error("{0}")]
    Unavailable(String),
    /// Too many at once: a 429.
    #[error("{0}")]
    TooMany(String),
    /// The work ran past its deadline and was stopped: a 504.
    #[error("{0}")]
    Timeout(String),
}

impl From<QueryError> for ApiError {
    fn from(e: QueryError) -> Self {
        match e {
            QueryError::Refused(_) => ApiError::Forbidden(e.to_string()),
            QueryError::Invalid(m) => ApiError::BadRequest(m),
            QueryError::Interrupted => ApiError::Unavailable(e.to_string()),
            QueryError::Internal(m) => ApiError::Internal(m),
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let (status, kind, msg) = match self {
            ApiError::BadRequest(m) => (StatusCode::BAD_REQUEST, "invalid", m),
            ApiError::Forbidden(m) => (StatusCode::FORBIDDEN, "refused", m),
            ApiError::NotFound(m) => (StatusCode::NOT_FOUND, "not_found", m),
            ApiError::Unauthorized(m) => (StatusCode::UNAUTHORIZED, "unauthorized", m),
            ApiError::TooLarge(m) => (StatusCode::PAYLOAD_TOO_LARGE, "too_large", m),
            ApiError::Unavailable(m) => (StatusCode::SERVICE_UNAVAILABLE, "unavailable", m),
            ApiError::TooMany(m) => (StatusCode::TOO_MANY_REQUESTS, "busy", m),
            ApiError::Timeout(m) => (StatusCode::GATEWAY_TIMEOUT, "timeout", m),
            ApiError::Internal(m) => {
                error!(error = %m, "Admin request failed.");
                (
                    StatusCode::INTERNAL_SERVER_ERROR,
                    "internal",
                    "internal error".to_string(),
                )
            }
        };
        (
            status,
            Json(serde_json::json!({ "error": msg, "kind": kind })),
        )
            .into_response()
    }
}
