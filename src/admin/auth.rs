//! The admin token: required on every admin route except health, the static dashboard files,
//! sign-in and sign-out, and the Segment endpoints (which have write keys), once
//! `server.admin_token` is set.
//!
//! An API client sends `Authorization: Bearer <token>`. The dashboard signs in once with
//! `POST /api/login`, which mints a random session id (`session.rs`) and sets it as an
//! HttpOnly, SameSite=Strict cookie with an expiry (`Secure` when the browser came over HTTPS
//! through a trusted proxy); the token itself never goes into a cookie. A wrong token, at
//! sign-in or as a bearer, counts against the client's budget of failed attempts; a client over
//! budget gets 429 before its token is even compared.

use super::guard::Client;
use super::{ApiError, Security};
use axum::extract::{Request, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use axum::{Extension, Json, Router};
use serde::Deserialize;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// The dashboard's session cookie.
pub const COOKIE: &str = "tollgate_admin";

pub fn routes(security: Arc<Security>) -> Router {
    Router::new()
        .route("/api/login", post(login))
        .route("/api/logout", post(logout))
        .with_state(security)
}

/// Paths open without a token.
fn is_open(path: &str) -> bool {
    matches!(
        path,
        "/" | "/healthz" | "/readyz" | "/api/login" | "/api/logout"
    ) || path.starts_with("/assets/")
        || path.starts_with("/v1/")
}

/// Compare in time independent of where the first difference is.
fn same(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// What a request offers as proof.
#[derive(Debug, PartialEq, Eq)]
enum Credential {
    Bearer(String),
    /// An `Authorization` header of another scheme.
    OtherScheme,
    Session(String),
    Nothing,
}

/// The bearer header wins over the session cookie.
fn credential(headers: &HeaderMap) -> Credential {
    if let Some(v) = headers.get(header::AUTHORIZATION) {
        let v = String::from_utf8_lossy(v.as_bytes());
        return match v.strip_prefix("Bearer ") {
            Some(t) => Credential::Bearer(t.trim().to_string()),
            None => Credential::OtherScheme,
        };
    }
    session_id(headers).map_or(Credential::Nothing, Credential::Session)
}

/// The session id in the request's cookie, if any.
fn session_id(headers: &HeaderMap) -> Option<String> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|c| cookie::Cookie::parse(c.trim().to_string()).ok())
        .find(|c| c.name() == COOKIE)
        .map(|c| c.value().to_string())
}

fn throttled(wait: Duration) -> ApiError {
    let secs = wait.as_secs() + u64::from(wait.subsec_nanos() > 0);
    ApiError::TooManyRequests {
        message: format!("too many failed sign-ins: try again in {secs} s"),
        retry_after_secs: secs.max(1),
    }
}

/// Check `given` against the token, within the client's budget of failed attempts.
fn verify(st: &Security, client: &Client, token: &str, given: &str) -> Result<(), ApiError> {
    let throttle = &st.throttle;
    let now = Instant::now();
    throttle.check(client.ip, now).map_err(throttled)?;
    if same(given.as_bytes(), token.as_bytes()) {
        Ok(())
    } else {
        throttle.fail(client.ip, now);
        Err(ApiError::Unauthorized("wrong admin token".into()))
    }
}

/// Middleware: let the request through when no token is configured, the path is open, or the
/// request carries the token or a live session.
pub async fn require_token(State(st): State<Arc<Security>>, req: Request, next: Next) -> Response {
    let Some(token) = &st.token else {
        return next.run(req).await;
    };
    if is_open(req.uri().path()) {
        return next.run(req).await;
    }
    let client = req
        .extensions()
        .get::<Client>()
        .cloned()
        .unwrap_or_default();
    let refused = match credential(req.headers()) {
        Credential::Bearer(t) => match verify(&st, &client, token, &t) {
            Ok(()) => return next.run(req).await,
            Err(e) => e,
        },
        Credential::Session(id) if st.sessions.check(&id, Instant::now()) => {
            return next.run(req).await
        }
        Credential::Session(_) => ApiError::Unauthorized(
            "the dashboard session has expired or was signed out: sign in again".into(),
        ),
        Credential::OtherScheme | Credential::Nothing => ApiError::Unauthorized(
            "this admin API needs the admin token: send `Authorization: Bearer <token>` \
             (server.admin_token)"
                .into(),
        ),
    };
    refused.into_response()
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Login {
    token: String,
}

/// The session cookie, or with `None` the header that deletes it.
fn cookie(id: Option<&str>, ttl: Duration, secure: bool) -> String {
    let max_age = if id.is_some() {
        ttl.as_secs() as i64
    } else {
        0
    };
    cookie::Cookie::build((COOKIE, id.unwrap_or("").to_string()))
        .path("/")
        .http_only(true)
        .same_site(cookie::SameSite::Strict)
        .secure(secure)
        .max_age(cookie::time::Duration::seconds(max_age))
        .build()
        .to_string()
}

/// `POST /api/login {"token": "…"}`: when the token is right, start a session and set its
/// cookie. Without a configured token there is nothing to sign in to, and no cookie.
async fn login(
    State(st): State<Arc<Security>>,
    Extension(client): Extension<Client>,
    body: Result<Json<Login>, axum::extract::rejection::JsonRejection>,
) -> Result<Response, ApiError> {
    let Some(token) = &st.token else {
        let _ = body.map_err(|e| ApiError::BadRequest(e.body_text()))?;
        return Ok((StatusCode::OK, Json(serde_json::json!({"ok": true}))).into_response());
    };
    let now = Instant::now();
    st.throttle.check(client.ip, now).map_err(throttled)?;
    let Json(login) = body.map_err(|e| ApiError::BadRequest(e.body_text()))?;
    verify(&st, &client, token, &login.token)?;
    let sessions = &st.sessions;
    let id = sessions
        .create(now)
        .map_err(|e| ApiError::Internal(format!("no randomness for a session id: {e}")))?;
    Ok((
        StatusCode::OK,
        [(
            header::SET_COOKIE,
            cookie(Some(&id), sessions.ttl(), client.https),
        )],
        Json(serde_json::json!({"ok": true, "expires_in": sessions.ttl().as_secs()})),
    )
        .into_response())
}

/// `POST /api/logout`: end the session in the cookie, if any, and delete the cookie.
async fn logout(
    State(st): State<Arc<Security>>,
    Extension(client): Extension<Client>,
    headers: HeaderMap,
) -> Response {
    if let Some(id) = session_id(&headers) {
        st.sessions.remove(&id);
    }
    (
        StatusCode::OK,
        [(
            header::SET_COOKIE,
            cookie(None, st.sessions.ttl(), client.https),
        )],
        Json(serde_json::json!({"ok": true})),
    )
        .into_response()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn credentials_from_header_or_cookie() {
        let mut h = HeaderMap::new();
        assert_eq!(credential(&h), Credential::Nothing);
        h.insert(header::COOKIE, "a=b; tollgate_admin=0fe1".parse().unwrap());
        assert_eq!(credential(&h), Credential::Session("0fe1".into()));
        h.insert(header::AUTHORIZATION, "Bearer t0ken".parse().unwrap());
        assert_eq!(credential(&h), Credential::Bearer("t0ken".into()));
        h.insert(header::AUTHORIZATION, "Basic dTpw".parse().unwrap());
        assert_eq!(credential(&h), Credential::OtherScheme);
        assert!(same(b"abc", b"abc") && !same(b"abc", b"abd") && !same(b"abc", b"ab"));
        assert!(is_open("/assets/app.js") && !is_open("/api/query") && !is_open("/metrics"));
        let c = cookie(Some("0fe1"), Duration::from_secs(3600), true);
        for part in [
            "tollgate_admin=0fe1",
            "HttpOnly",
            "SameSite=Strict",
            "Secure",
            "Path=/",
            "Max-Age=3600",
        ] {
            assert!(c.contains(part), "{c}");
        }
        assert!(!cookie(Some("x"), Duration::from_secs(1), false).contains("Secure"));
        assert!(cookie(None, Duration::from_secs(1), false).contains("Max-Age=0"));
    }
}
