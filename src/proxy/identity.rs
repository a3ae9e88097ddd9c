//! Visitor, session and request identity: cookies in, headers upstream, cookies out.
//!
//! Runs in the request path, so it does only constant work: one pass over the `Cookie` headers,
//! at most three UUIDs, and a few header writes.

use crate::config::Identity;
use cookie::{Cookie, SameSite};
use pingora::http::{RequestHeader, ResponseHeader};
use uuid::Uuid;

/// The identity of one request.
#[derive(Debug, Clone)]
pub struct Ids {
    pub request_id: String,
    pub visitor: Uuid,
    /// The visitor cookie must be (re)issued: it was missing, malformed, or differs from the
    /// configured identity header.
    pub set_visitor: bool,
    pub session: Uuid,
}

/// Longest accepted incoming request id.
const MAX_REQUEST_ID: usize = 128;

/// True for 1 to 128 characters of `[A-Za-z0-9._:-]`.
pub fn valid_request_id(v: &[u8]) -> bool {
    (1..=MAX_REQUEST_ID).contains(&v.len())
        && v.iter()
            .all(|b| b.is_ascii_alphanumeric() || b"._:-".contains(b))
}

/// Read the identity of `req`, minting what is missing or malformed.
pub fn resolve(req: &RequestHeader, cfg: &Identity) -> Ids {
    let request_id = req
        .headers
        .get(&cfg.request_id_header)
        .map(|v| v.as_bytes())
        .filter(|v| valid_request_id(v))
        // valid_request_id admits only ASCII
        .map(|v| String::from_utf8_lossy(v).into_owned())
        .unwrap_or_else(|| Uuid::now_v7().to_string());

    let (mut cookie_visitor, mut cookie_session) = (None, None);
    for value in req.headers.get_all(http::header::COOKIE) {
        let Ok(text) = value.to_str() else { continue };
        for c in Cookie::split_parse(text).flatten() {
            if c.name() == cfg.visitor_cookie {
                cookie_visitor = parse_uuid(c.value());
            } else if c.name() == cfg.session_cookie {
                cookie_session = parse_uuid(c.value());
            }
        }
    }
    let header_visitor = cfg
        .incoming_visitor_header
        .as_ref()
        .and_then(|h| req.headers.get(h))
        .and_then(|v| v.to_str().ok())
        .and_then(parse_uuid);

    let (visitor, set_visitor) = match (header_visitor, cookie_visitor) {
        (Some(h), c) => (h, c != Some(h)),
        (None, Some(c)) => (c, false),
        (None, None) => (Uuid::new_v4(), true),
    };
    let session = cookie_session.unwrap_or_else(Uuid::now_v7);
    Ids {
        request_id,
        visitor,
        set_visitor,
        session,
    }
}

/// A cookie value is trusted only when it is a well-formed, non-nil UUID.
fn parse_uuid(s: &str) -> Option<Uuid> {
    Uuid::try_parse(s.trim()).ok().filter(|u| !u.is_nil())
}

/// Headers the upstream gets, so the backend can tie its own records to this visitor.
pub fn add_upstream_headers(req: &mut RequestHeader, ids: &Ids, cfg: &Identity) {
    // insert_header only fails on invalid values; ours are UUIDs and validated ids.
    let _ = req.insert_header(cfg.request_id_header.clone(), &ids.request_id);
    let _ = req.insert_header(cfg.visitor_id_header.clone(), ids.visitor.to_string());
    let _ = req.insert_header(cfg.session_id_header.clone(), ids.session.to_string());
}

/// Echo the request id and append tollgate's cookies, after any `Set-Cookie` of the upstream.
///
/// The session cookie is re-issued on every response: that is what makes its expiry slide.
pub fn add_response_headers(resp: &mut ResponseHeader, ids: &Ids, cfg: &Identity, secure: bool) {
    let _ = resp.insert_header(cfg.request_id_header.clone(), &ids.request_id);
    let session = build_cookie(
        &cfg.session_cookie,
        ids.session.to_string(),
        cfg.session_timeout.as_secs(),
        cfg,
        secure,
    );
    if ids.set_visitor {
        let visitor = build_cookie(
            &cfg.visitor_cookie,
            ids.visitor.to_string(),
            cfg.visitor_max_age.as_secs(),
            cfg,
            secure,
        );
        let _ = resp.append_header(http::header::SET_COOKIE, visitor);
    }
    let _ = resp.append_header(http::header::SET_COOKIE, session);
}

fn build_cookie(
    name: &str,
    value: String,
    max_age_secs: u64,
    cfg: &Identity,
    secure: bool,
) -> String {
    let mut c = Cookie::build((name.to_string(), value))
        .path("/")
        .max_age(cookie::time::Duration::seconds(max_age_secs as i64))
        .same_site(SameSite::Lax)
        .http_only(true)
        .secure(secure);
    if let Some(d) = &cfg.cookie_domain {
        c = c.domain(d.clone());
    }
    c.build().to_string()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Settings;

    fn cfg() -> Identity {
        Settings::defaults("http://127.0.0.1:1").unwrap().identity
    }

    fn req(headers: &[(&str, &str)]) -> RequestHeader {
        let mut r = RequestHeader::build("GET", b"/", None).unwrap();
        for (k, v) in headers {
            r.append_header(k.to_string(), *v).unwrap();
        }
        r
    }

    #[test]
    fn request_ids() {
        assert!(valid_request_id(b"abc-123_x.y:z"));
        assert!(!valid_request_id(b""));
        assert!(!valid_request_id(b"has space"));
        assert!(!valid_request_id(&[b'a'; 129]));
        let ids = resolve(&req(&[("x-request-id", "keep-me.1")]), &cfg());
        assert_eq!(ids.request_id, "keep-me.1");
        let ids = resolve(&req(&[("x-request-id", "bad id!")]), &cfg());
        assert!(Uuid::parse_str(&ids.request_id).is_ok());
    }

    #[test]
    fn cookies_are_read_and_tampering_replaced() {
        let v = Uuid::new_v4();
        let s = Uuid::now_v7();
        let ids = resolve(
            &req(&[("cookie", &format!("a=b; tg_vid={v}; tg_sid={s}"))]),
            &cfg(),
        );
        assert_eq!((ids.visitor, ids.session, ids.set_visitor), (v, s, false));

        let ids = resolve(&req(&[("cookie", "tg_vid=not-a-uuid")]), &cfg());
        assert!(ids.set_visitor);
        assert_ne!(ids.visitor.to_string(), "not-a-uuid");
    }

    #[test]
    fn identity_header_wins_when_valid() {
        let mut c = cfg();
        c.incoming_visitor_header = Some(http::HeaderName::from_static("x-client-id"));
        let h = Uuid::new_v4();
        let ids = resolve(&req(&[("x-client-id", &h.to_string())]), &c);
        assert_eq!((ids.visitor, ids.set_visitor), (h, true));
        let ids = resolve(&req(&[("x-client-id", "nope")]), &c);
        assert_ne!(ids.visitor, h);
    }

    #[test]
    fn set_cookie_is_appended() {
        let mut resp = ResponseHeader::build(200, None).unwrap();
        resp.append_header("set-cookie", "app=1").unwrap();
        let ids = resolve(&req(&[]), &cfg());
        add_response_headers(&mut resp, &ids, &cfg(), false);
        let all: Vec<_> = resp
            .headers
            .get_all("set-cookie")
            .iter()
            .map(|v| v.to_str().unwrap().to_string())
            .collect();
        assert_eq!(all.len(), 3);
        assert_eq!(all[0], "app=1");
        assert!(all[1].starts_with("tg_vid=") && all[1].contains("Max-Age=34560000"));
        assert!(all[2].starts_with("tg_sid=") && all[2].contains("Max-Age=1800"));
        assert!(all[2].contains("HttpOnly") && all[2].contains("SameSite=Lax"));
    }
}
