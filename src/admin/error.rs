//! API errors: client errors say what was wrong; internal errors say "internal error" to the
//! client and log the detail.

use crate::store::{QueryError, StoreError};
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
    /// 421: the `Host` is not one this admin listener answers to.
    #[error("{0}")]
    Misdirected(String),
    /// 415: a content type or content coding the route does not take.
    #[error("{0}")]
    UnsupportedMediaType(String),
    /// 429 with `Retry-After`: too many failed sign-ins.
    #[error("{message}")]
    TooManyRequests {
        message: String,
        retry_after_secs: u64,
    },
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

impl From<StoreError> for ApiError {
    fn from(e: StoreError) -> Self {
        ApiError::Internal(e.to_string())
    }
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
        let mut retry_after = None;
        let (status, kind, msg) = match self {
            ApiError::BadRequest(m) => (StatusCode::BAD_REQUEST, "invalid", m),
            ApiError::Forbidden(m) => (StatusCode::FORBIDDEN, "refused", m),
            ApiError::NotFound(m) => (StatusCode::NOT_FOUND, "not_found", m),
            ApiError::Unauthorized(m) => (StatusCode::UNAUTHORIZED, "unauthorized", m),
            ApiError::TooLarge(m) => (StatusCode::PAYLOAD_TOO_LARGE, "too_large", m),
            ApiError::Misdirected(m) => (StatusCode::MISDIRECTED_REQUEST, "misdirected", m),
            ApiError::UnsupportedMediaType(m) => (
                StatusCode::UNSUPPORTED_MEDIA_TYPE,
                "unsupported_media_type",
                m,
            ),
            ApiError::TooManyRequests {
                message,
                retry_after_secs,
            } => {
                retry_after = Some(retry_after_secs);
                (StatusCode::TOO_MANY_REQUESTS, "throttled", message)
            }
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
        let mut resp = (
            status,
            Json(serde_json::json!({ "error": msg, "kind": kind })),
        )
            .into_response();
        if let Some(secs) = retry_after {
            resp.headers_mut()
                .insert(axum::http::header::RETRY_AFTER, secs.into());
        }
        resp
    }
}
