//! `[identity]`: the cookies and headers that identify visitors, sessions and requests.

use super::file::IdentitySection;
use super::{is_token_byte, Problems};
use http::HeaderName;
use std::time::Duration;

#[derive(Debug, Clone)]
pub struct Identity {
    pub visitor_cookie: String,
    pub session_cookie: String,
    pub session_timeout: Duration,
    pub visitor_max_age: Duration,
    pub cookie_domain: Option<String>,
    pub request_id_header: HeaderName,
    pub visitor_id_header: HeaderName,
    pub session_id_header: HeaderName,
    pub incoming_visitor_header: Option<HeaderName>,
    pub user_header: HeaderName,
    pub event_header: HeaderName,
}

pub(super) fn validate(id: &IdentitySection, p: &mut Problems) -> Option<Identity> {
    for (key, name) in [
        ("visitor_cookie", &id.visitor_cookie),
        ("session_cookie", &id.session_cookie),
    ] {
        if name.is_empty() || !name.bytes().all(is_token_byte) {
            p.report(
                key,
                format!("{name:?} is not a valid cookie name (letters, digits, `_`, `-`)"),
            );
        }
    }
    if id.session_timeout_mins == 0 {
        p.report("session_timeout_mins", "must be at least 1");
    }
    let mut header = |key: &str, v: &str| match HeaderName::from_bytes(v.as_bytes()) {
        Ok(h) => Some(h),
        Err(_) => {
            p.report(key, format!("{v:?} is not a valid HTTP header name"));
            None
        }
    };
    let request_id_header = header("request_id_header", &id.request_id_header);
    let visitor_id_header = header("visitor_id_header", &id.visitor_id_header);
    let session_id_header = header("session_id_header", &id.session_id_header);
    let user_header = header("user_header", &id.user_header);
    let event_header = header("event_header", &id.event_header);
    let incoming_visitor_header = if id.incoming_visitor_header.is_empty() {
        Some(None)
    } else {
        header("incoming_visitor_header", &id.incoming_visitor_header).map(Some)
    };
    Some(Identity {
        visitor_cookie: id.visitor_cookie.clone(),
        session_cookie: id.session_cookie.clone(),
        session_timeout: Duration::from_secs(id.session_timeout_mins * 60),
        visitor_max_age: Duration::from_secs(id.visitor_max_age_days.min(400) * 86_400),
        cookie_domain: Some(id.cookie_domain.clone()).filter(|d| !d.is_empty()),
        request_id_header: request_id_header?,
        visitor_id_header: visitor_id_header?,
        session_id_header: session_id_header?,
        incoming_visitor_header: incoming_visitor_header?,
        user_header: user_header?,
        event_header: event_header?,
    })
}
