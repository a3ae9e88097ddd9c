//! The admin token: required on every admin route except health, the static dashboard files
//! and the Segment endpoints (which have write keys), once `server.admin_token` is set.
//!
//! A client sends `Authorization: Bearer <token>`; the dashboard logs in once with
//! `POST /api/login` and then sends an HttpOnly, SameSite=Strict cookie, so another site can
//! neither read it nor make the browser send it along.

use super::{AdminState, ApiError};
use axum::extract::{Request, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde::Deserialize;
use std::sync::Arc;

/// The dashboard's login cookie.
pub const COOKIE: &str = "tollgate_admin";

/// Paths open without a token.
fn is_open(path: &str) -> bool {
    matches!(path, "/" | "/healthz" | "/readyz" | "/api/login")
        || path.starts_with("/assets/")
        || path.starts_with("/v1/")
}

/// Compare in time independent of where the first difference is.
fn same(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// The token a request carries, from the bearer header or the login cookie.
fn presented(headers: &HeaderMap) -> Option<String> {
    if let Some(v) = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
    {
        return v.strip_prefix("Bearer ").map(|t| t.trim().to_string());
    }
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|c| cookie::Cookie::parse(c.trim().to_string()).ok())
        .find(|c| c.name() == COOKIE)
        .map(|c| c.value().to_string())
}

/// Middleware: let the request through when no token is configured, the path is open, or the
/// request carries the token.
pub async fn require_token(
    State(st): State<Arc<AdminState>>,
    req: Request,
    next: Next,
) -> Response {
    let Some(token) = &st.admin_token else {
        return next.run(req).await;
    };
    if is_open(req.uri().path()) {
        return next.run(req).await;
    }
    match presented(req.headers()) {
        Some(t) if same(t.as_bytes(), token.as_bytes()) => next.run(req).await,
        Some(_) => ApiError::Unauthorized("wrong admin token".into()).into_response(),
        None => ApiError::Unauthorized(
            "this admin API needs the admin token: send `Authorization: Bearer <token>` \
             (server.admin_token)"
                .into(),
        )
        .into_response(),
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Login {
    token: String,
}

/// `POST /api/login {"token": "…"}`: set the dashboard's cookie when the token is right.
pub async fn login(
    State(st): State<Arc<AdminState>>,
    body: Result<Json<Login>, axum::extract::rejection::JsonRejection>,
) -> Result<Response, ApiError> {
    let Json(login) = body.map_err(|e| ApiError::BadRequest(e.body_text()))?;
    let Some(token) = &st.admin_token else {
        return Ok((StatusCode::OK, Json(serde_json::json!({"ok": true}))).into_response());
    };
    if !same(login.token.as_bytes(), token.as_bytes()) {
        return Err(ApiError::Unauthorized("wrong admin token".into()));
    }
    let cookie = cookie::Cookie::build((COOKIE, login.token))
        .path("/")
        .http_only(true)
        .same_site(cookie::SameSite::Strict)
        .build();
    Ok((
        StatusCode::OK,
        [(header::SET_COOKIE, cookie.to_string())],
        Json(serde_json::json!({"ok": true})),
    )
        .into_response())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_from_header_or_cookie() {
        let mut h = HeaderMap::new();
        h.insert(
            header::COOKIE,
            "a=b; tollgate_admin=s3cret".parse().unwrap(),
        );
        assert_eq!(presented(&h).as_deref(), Some("s3cret"));
        h.insert(header::AUTHORIZATION, "Bearer t0ken".parse().unwrap());
        assert_eq!(presented(&h).as_deref(), Some("t0ken"));
        assert!(same(b"abc", b"abc") && !same(b"abc", b"abd") && !same(b"abc", b"ab"));
        assert!(is_open("/assets/app.js") && !is_open("/api/query") && !is_open("/metrics"));
    }
}
