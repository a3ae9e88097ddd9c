//! Visitor, session and request identity: cookies in, headers upstream, cookies out.
//!
//! Runs in the request path, so it does only constant work: one pass over the `Cookie` headers,
//! at most three UUIDs (or one hash, in cookieless mode), and a few header writes. The privacy
//! mode ([`consent`]) decides how much of it happens: an opted-out request gets no visitor or
//! session at all, a cookieless one a hashed visitor id and no cookies.

use super::consent::{self, Salt};
use super::head::RequestHead;
use super::signing::CookieKey;
use crate::config::{Identity, Settings};
use crate::enrich::campaign;
use crate::event::PrivacyMode;
use cookie::Cookie;
use http::HeaderName;
use std::io::Write;
use std::net::IpAddr;
use uuid::Uuid;

/// The identity of one request.
#[derive(Debug, Clone)]
pub struct Ids {
    pub request_id: RequestId,
    pub mode: PrivacyMode,
    /// `None` for an opted-out request.
    pub visitor: Option<Uuid>,
    /// The visitor cookie must be (re)issued: it was missing, malformed, or differs from the
    /// configured identity header. Only in [`PrivacyMode::Identified`].
    pub set_visitor: bool,
    /// `None` unless identified by cookies; cookieless sessions are formed in the pipeline.
    pub session: Option<Uuid>,
    /// Fingerprint of the campaign that started the session, kept in the session cookie so
    /// that a new campaign starts a new session.
    pub session_campaign: Option<u64>,
}

/// Longest accepted incoming request id.
const MAX_REQUEST_ID: usize = 128;

/// A request id as text, kept inline: the client's, or a new UUIDv7.
#[derive(Clone, Copy)]
pub struct RequestId {
    len: u8,
    bytes: [u8; MAX_REQUEST_ID],
}

impl RequestId {
    /// `v` if it is a [`valid_request_id`].
    pub fn parse(v: &[u8]) -> Option<RequestId> {
        if !valid_request_id(v) {
            return None;
        }
        let mut id = RequestId {
            len: v.len() as u8,
            bytes: [0; MAX_REQUEST_ID],
        };
        id.bytes[..v.len()].copy_from_slice(v);
        Some(id)
    }

    /// A new UUIDv7.
    pub fn mint() -> RequestId {
        let mut id = RequestId {
            len: uuid::fmt::Hyphenated::LENGTH as u8,
            bytes: [0; MAX_REQUEST_ID],
        };
        Uuid::now_v7().hyphenated().encode_lower(&mut id.bytes);
        id
    }

    pub fn as_str(&self) -> &str {
        // Only ASCII gets in (valid_request_id, or a UUID).
        std::str::from_utf8(&self.bytes[..self.len as usize]).unwrap_or("")
    }
}

impl std::ops::Deref for RequestId {
    type Target = str;
    fn deref(&self) -> &str {
        self.as_str()
    }
}

impl std::fmt::Debug for RequestId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        self.as_str().fmt(f)
    }
}

impl PartialEq<&str> for RequestId {
    fn eq(&self, other: &&str) -> bool {
        self.as_str() == *other
    }
}

/// The configured names of the identity headers tollgate sets, made once from static text
/// (leaked once per proxy, a few bytes), so that a clone per request copies nothing and touches
/// no counter that other threads share.
#[derive(Debug, Clone)]
pub struct Names {
    pub request_id: HeaderName,
    pub visitor_id: HeaderName,
    pub session_id: HeaderName,
}

impl Names {
    pub fn new(cfg: &Identity) -> Names {
        let leak = |n: &HeaderName| {
            HeaderName::from_static(Box::leak(n.as_str().to_owned().into_boxed_str()))
        };
        Names {
            request_id: leak(&cfg.request_id_header),
            visitor_id: leak(&cfg.visitor_id_header),
            session_id: leak(&cfg.session_id_header),
        }
    }
}

/// True for 1 to 128 characters of `[A-Za-z0-9._:-]`.
pub fn valid_request_id(v: &[u8]) -> bool {
    (1..=MAX_REQUEST_ID).contains(&v.len())
        && v.iter()
            .all(|b| b.is_ascii_alphanumeric() || b"._:-".contains(b))
}

/// The secrets identity needs: the cookieless salt and the visitor cookie's key.
pub struct Keys {
    pub salt: Salt,
    pub cookie: CookieKey,
}

/// Read the identity of `req`, minting what is missing, malformed or not signed by `keys`.
/// `client_ip` and `ts_us` feed the cookieless hash.
pub fn resolve(
    req: &RequestHead,
    s: &Settings,
    keys: &Keys,
    client_ip: Option<IpAddr>,
    ts_us: i64,
) -> Ids {
    let cfg = &s.identity;
    let request_id = req
        .headers
        .get(&cfg.request_id_header)
        .and_then(|v| RequestId::parse(v.as_bytes()))
        .unwrap_or_else(RequestId::mint);

    // The visitor cookie's signature is checked only where the cookie is read (identified
    // mode): an HMAC per request, spared in the other modes.
    let (mut visitor_cookie, mut cookie_session, mut has_consent) = (None, None, false);
    for value in req.headers.get_all(http::header::COOKIE) {
        let Ok(text) = value.to_str() else { continue };
        for c in Cookie::split_parse(text).flatten() {
            if c.name() == cfg.visitor_cookie {
                visitor_cookie = c.value_raw();
            } else if c.name() == cfg.session_cookie {
                cookie_session = parse_session(c.value());
            } else if consent::is_consent(&s.privacy, c.name(), c.value()) {
                has_consent = true;
            }
        }
    }
    let mode = consent::mode(req, &s.privacy, has_consent);
    let mut ids = Ids {
        request_id,
        mode,
        visitor: None,
        set_visitor: false,
        session: None,
        session_campaign: None,
    };
    match mode {
        PrivacyMode::Anonymous => {}
        PrivacyMode::Cookieless => {
            let ua = req
                .headers
                .get(http::header::USER_AGENT)
                .map_or(&[][..], |v| v.as_bytes());
            ids.visitor =
                Some(
                    keys.salt
                        .visitor_id(consent::day_of(ts_us), &s.site_id, client_ip, ua),
                );
        }
        PrivacyMode::Identified => {
            let header_visitor = cfg
                .incoming_visitor_header
                .as_ref()
                .and_then(|h| req.headers.get(h))
                .and_then(|v| v.to_str().ok())
                .and_then(parse_uuid);
            let cookie_visitor = visitor_cookie.and_then(|v| keys.cookie.verify(v));
            let (visitor, set_visitor) = match (header_visitor, cookie_visitor) {
                (Some(h), c) => (h, c != Some(h)),
                (None, Some(c)) => (c, false),
                (None, None) => (Uuid::new_v4(), true),
            };
            // A landing with campaign parameters other than the session's starts a new
            // session; a page without any keeps the session and its campaign.
            let now = req.uri.query().and_then(campaign::fingerprint);
            let (session, fp) = match cookie_session {
                Some((sid, fp)) if now.is_none() || now == fp => (sid, fp),
                _ => (Uuid::now_v7(), now),
            };
            ids.visitor = Some(visitor);
            ids.set_visitor = set_visitor;
            ids.session = Some(session);
            ids.session_campaign = fp;
        }
    }
    ids
}

/// `<uuid>` or `<uuid>.<16 hex digits of campaign fingerprint>`.
fn parse_session(v: &str) -> Option<(Uuid, Option<u64>)> {
    let (id, fp) = match v.trim().split_once('.') {
        Some((id, fp)) => (id, Some(u64::from_str_radix(fp, 16).ok()?)),
        None => (v, None),
    };
    Some((parse_uuid(id)?, fp))
}

/// A cookie value is trusted only when it is a well-formed, non-nil UUID.
fn parse_uuid(s: &str) -> Option<Uuid> {
    Uuid::try_parse(s.trim()).ok().filter(|u| !u.is_nil())
}

/// The longest text [`write_cookies`] writes.
pub fn cookies_len(cfg: &Identity) -> usize {
    // name=value and the attributes, with room for a 20-digit Max-Age.
    let attrs = "; HttpOnly; SameSite=Lax; Secure; Path=/; Domain=; Max-Age=".len()
        + 20
        + cfg.cookie_domain.as_ref().map_or(0, String::len);
    let visitor = cfg.visitor_cookie.len() + 1 + super::signing::VALUE_LEN + attrs;
    let session = cfg.session_cookie.len() + 1 + 36 + 1 + 16 + attrs;
    visitor + session
}

/// The `Set-Cookie` values an identified request gets, written at the end of `out`: the
/// visitor cookie when it must be (re)issued, and the session cookie, whose expiry slides with
/// every response. Returns the ends of each within `out` (`None` when not issued).
///
/// The text is what the `cookie` crate writes for `Path=/`, `Max-Age`, `SameSite=Lax`,
/// `HttpOnly`, `Secure` on HTTPS and the configured domain (see the tests).
pub fn write_cookies(
    out: &mut Vec<u8>,
    ids: &Ids,
    cfg: &Identity,
    key: &CookieKey,
    secure: bool,
) -> (Option<usize>, Option<usize>) {
    if ids.mode != PrivacyMode::Identified {
        return (None, None);
    }
    let mut visitor = None;
    if let (true, Some(v)) = (ids.set_visitor, ids.visitor) {
        write_cookie(
            out,
            &cfg.visitor_cookie,
            |out| key.sign_into(&v, out),
            cfg.visitor_max_age.as_secs(),
            cfg,
            secure,
        );
        visitor = Some(out.len());
    }
    let mut session = None;
    if let Some(sid) = ids.session {
        let value = |out: &mut Vec<u8>| {
            let _ = match ids.session_campaign {
                Some(fp) => write!(out, "{sid}.{fp:016x}"),
                None => write!(out, "{sid}"),
            };
        };
        write_cookie(
            out,
            &cfg.session_cookie,
            value,
            cfg.session_timeout.as_secs(),
            cfg,
            secure,
        );
        session = Some(out.len());
    }
    (visitor, session)
}

fn write_cookie(
    out: &mut Vec<u8>,
    name: &str,
    value: impl FnOnce(&mut Vec<u8>),
    max_age_secs: u64,
    cfg: &Identity,
    secure: bool,
) {
    out.extend_from_slice(name.as_bytes());
    out.push(b'=');
    value(out);
    out.extend_from_slice(b"; HttpOnly; SameSite=Lax");
    if secure {
        out.extend_from_slice(b"; Secure");
    }
    out.extend_from_slice(b"; Path=/");
    if let Some(d) = &cfg.cookie_domain {
        out.extend_from_slice(b"; Domain=");
        out.extend_from_slice(d.strip_prefix('.').unwrap_or(d).as_bytes());
    }
    let _ = write!(out, "; Max-Age={}", max_age_secs as i64);
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Consent;
    use crate::proxy::forwarded;
    use crate::proxy::head::ResponseHead;
    use crate::proxy::texts::Texts;
    use cookie::SameSite;

    /// What the proxy adds to a response for `ids`, over HTTPS when `secure`.
    fn respond(resp: &mut ResponseHead, s: &Settings, ids: &Ids, secure: bool) {
        let mut r = req("/", &[]);
        if secure {
            r.headers
                .insert("x-forwarded-proto", http::HeaderValue::from_static("https"));
        }
        let nets = ["127.0.0.0/8".parse().unwrap()];
        let fwd = forwarded::compute("127.0.0.1".parse().ok(), &r, &nets);
        let texts = Texts::build(&r, ids, &fwd, s, &keys().cookie, false);
        texts.add_response_headers(resp, &Names::new(&s.identity));
    }

    /// The cookie as the `cookie` crate writes it (what tollgate used before writing its own).
    fn cookie_crate(
        name: &str,
        value: String,
        max_age: u64,
        cfg: &Identity,
        secure: bool,
    ) -> String {
        let mut c = Cookie::build((name.to_string(), value))
            .path("/")
            .max_age(cookie::time::Duration::seconds(max_age as i64))
            .same_site(SameSite::Lax)
            .http_only(true)
            .secure(secure);
        if let Some(d) = &cfg.cookie_domain {
            c = c.domain(d.clone());
        }
        c.build().to_string()
    }

    #[test]
    fn cookies_are_written_as_the_cookie_crate_writes_them() {
        let mut s = settings();
        for domain in [None, Some("shop.test"), Some(".shop.test")] {
            s.identity.cookie_domain = domain.map(str::to_string);
            for secure in [false, true] {
                for campaign in [None, Some(0x00ab_cdef_0123_4567_u64)] {
                    let mut ids = resolve_with(&s, &req("/", &[]));
                    ids.session_campaign = campaign;
                    assert!(ids.set_visitor);
                    let mut resp = crate::proxy::head::response(200, &[]);
                    respond(&mut resp, &s, &ids, secure);
                    let (v, sid) = (ids.visitor.unwrap(), ids.session.unwrap());
                    let sid_value = match campaign {
                        Some(fp) => format!("{sid}.{fp:016x}"),
                        None => sid.to_string(),
                    };
                    let cfg = &s.identity;
                    assert_eq!(
                        set_cookies(&resp),
                        [
                            cookie_crate(
                                "tg_vid",
                                keys().cookie.sign(&v),
                                cfg.visitor_max_age.as_secs(),
                                cfg,
                                secure
                            ),
                            cookie_crate(
                                "tg_sid",
                                sid_value,
                                cfg.session_timeout.as_secs(),
                                cfg,
                                secure
                            ),
                        ]
                    );
                    let mut buf = Vec::new();
                    write_cookies(&mut buf, &ids, cfg, &keys().cookie, secure);
                    assert!(buf.len() <= cookies_len(cfg));
                }
            }
        }
    }

    fn settings() -> Settings {
        Settings::defaults("http://127.0.0.1:1").unwrap()
    }

    fn req(uri: &str, headers: &[(&str, &str)]) -> RequestHead {
        crate::proxy::head::request("GET", uri, headers)
    }

    fn keys() -> &'static Keys {
        static KEYS: std::sync::OnceLock<Keys> = std::sync::OnceLock::new();
        KEYS.get_or_init(|| Keys {
            salt: Salt::load(None, 0),
            cookie: CookieKey::ephemeral(),
        })
    }

    fn resolve_with(s: &Settings, r: &RequestHead) -> Ids {
        resolve(r, s, keys(), "203.0.113.5".parse().ok(), 1_000)
    }

    /// A visitor cookie as tollgate issues it.
    fn signed(v: Uuid) -> String {
        keys().cookie.sign(&v)
    }

    fn set_cookies(resp: &ResponseHead) -> Vec<String> {
        resp.headers
            .get_all("set-cookie")
            .iter()
            .map(|v| v.to_str().unwrap().to_string())
            .collect()
    }

    #[test]
    fn request_ids() {
        assert!(valid_request_id(b"abc-123_x.y:z"));
        assert!(!valid_request_id(b""));
        assert!(!valid_request_id(b"has space"));
        assert!(!valid_request_id(&[b'a'; 129]));
        let s = settings();
        let ids = resolve_with(&s, &req("/", &[("x-request-id", "keep-me.1")]));
        assert_eq!(ids.request_id, "keep-me.1");
        let ids = resolve_with(&s, &req("/", &[("x-request-id", "bad id!")]));
        assert!(Uuid::parse_str(&ids.request_id).is_ok());
    }

    #[test]
    fn cookies_are_read_and_tampering_replaced() {
        let s = settings();
        let v = Uuid::new_v4();
        let sid = Uuid::now_v7();
        let ids = resolve_with(
            &s,
            &req(
                "/",
                &[(
                    "cookie",
                    &format!("a=b; tg_vid={}; tg_sid={sid}", signed(v)),
                )],
            ),
        );
        assert_eq!(
            (ids.visitor, ids.session, ids.set_visitor),
            (Some(v), Some(sid), false)
        );

        let ids = resolve_with(&s, &req("/", &[("cookie", "tg_vid=not-a-uuid")]));
        assert!(ids.set_visitor);
        assert_ne!(ids.visitor.unwrap().to_string(), "not-a-uuid");
        // A well-formed id without tollgate's signature is replaced like garbage: nobody can
        // take on a visitor id they learned.
        let ids = resolve_with(&s, &req("/", &[("cookie", &format!("tg_vid={v}"))]));
        assert!(ids.set_visitor);
        assert_ne!(ids.visitor, Some(v));
    }

    #[test]
    fn identity_header_wins_when_valid() {
        let mut s = settings();
        s.identity.incoming_visitor_header = Some(http::HeaderName::from_static("x-client-id"));
        let h = Uuid::new_v4();
        let ids = resolve_with(&s, &req("/", &[("x-client-id", &h.to_string())]));
        assert_eq!((ids.visitor, ids.set_visitor), (Some(h), true));
        let ids = resolve_with(&s, &req("/", &[("x-client-id", "nope")]));
        assert_ne!(ids.visitor, Some(h));
    }

    #[test]
    fn set_cookie_is_appended() {
        let s = settings();
        let mut resp = crate::proxy::head::response(200, &[]);
        resp.headers
            .append("set-cookie", http::HeaderValue::from_static("app=1"));
        let ids = resolve_with(&s, &req("/", &[]));
        respond(&mut resp, &s, &ids, false);
        let all = set_cookies(&resp);
        assert_eq!(all.len(), 3);
        assert_eq!(all[0], "app=1");
        assert!(all[1].starts_with("tg_vid=") && all[1].contains("Max-Age=34560000"));
        assert!(all[2].starts_with("tg_sid=") && all[2].contains("Max-Age=1800"));
        assert!(all[2].contains("HttpOnly") && all[2].contains("SameSite=Lax"));
    }

    #[test]
    fn a_new_campaign_starts_a_new_session() {
        let s = settings();
        let sid = Uuid::now_v7();
        let cookie = |v: &str| format!("tg_sid={v}");
        // No campaign: the session goes on.
        let ids = resolve_with(&s, &req("/p", &[("cookie", &cookie(&sid.to_string()))]));
        assert_eq!(ids.session, Some(sid));
        // A campaign landing: new session, remembered in the cookie.
        let ids = resolve_with(
            &s,
            &req(
                "/p?utm_source=fb&utm_medium=social",
                &[("cookie", &cookie(&sid.to_string()))],
            ),
        );
        assert_ne!(ids.session, Some(sid));
        let fp = ids.session_campaign.expect("campaign fingerprint");
        let mut resp = crate::proxy::head::response(200, &[]);
        respond(&mut resp, &s, &ids, false);
        let value = format!("{}.{fp:016x}", ids.session.unwrap());
        assert!(set_cookies(&resp)
            .iter()
            .any(|c| c.starts_with(&format!("tg_sid={value};"))));
        // The same campaign again (a reload), or no campaign: same session.
        let same = resolve_with(
            &s,
            &req(
                "/p?utm_medium=social&utm_source=fb",
                &[("cookie", &cookie(&value))],
            ),
        );
        assert_eq!(same.session, ids.session);
        let plain = resolve_with(&s, &req("/q", &[("cookie", &cookie(&value))]));
        assert_eq!(
            (plain.session, plain.session_campaign),
            (ids.session, Some(fp))
        );
        // Another campaign, or a click id: new session.
        let other = resolve_with(&s, &req("/p?gclid=abc", &[("cookie", &cookie(&value))]));
        assert_ne!(other.session, ids.session);
    }

    #[test]
    fn privacy_modes() {
        let mut s = settings();
        let v = Uuid::new_v4();
        let with_cookie = format!("tg_vid={}", signed(v));
        // Opt-out signals: no ids, no cookies.
        for h in [("sec-gpc", "1"), ("dnt", "1")] {
            let ids = resolve_with(&s, &req("/", &[h, ("cookie", &with_cookie)]));
            assert_eq!(ids.mode, PrivacyMode::Anonymous);
            assert_eq!((ids.visitor, ids.session), (None, None));
            let mut resp = crate::proxy::head::response(200, &[]);
            respond(&mut resp, &s, &ids, false);
            assert!(set_cookies(&resp).is_empty());
            assert!(resp.headers.get("x-request-id").is_some());
        }
        // Honouring can be switched off.
        s.privacy.honor_dnt = false;
        let ids = resolve_with(&s, &req("/", &[("dnt", "1")]));
        assert_eq!(ids.mode, PrivacyMode::Identified);

        // Consent gating: cookieless until the consent cookie is there.
        s.privacy.consent = Some(Consent {
            name: "consent".into(),
            value: Some("yes".into()),
        });
        let ua = ("user-agent", "Mozilla/5.0 test");
        let a = resolve_with(&s, &req("/", &[ua, ("cookie", &with_cookie)]));
        assert_eq!(a.mode, PrivacyMode::Cookieless);
        assert_ne!(a.visitor, Some(v), "the cookie is not read without consent");
        assert_eq!(a.session, None);
        assert_eq!(a.visitor, resolve_with(&s, &req("/x", &[ua])).visitor);
        let no = resolve_with(&s, &req("/", &[ua, ("cookie", "consent=no")]));
        assert_eq!(no.mode, PrivacyMode::Cookieless);
        let yes = resolve_with(
            &s,
            &req(
                "/",
                &[ua, ("cookie", &format!("consent=yes; {with_cookie}"))],
            ),
        );
        assert_eq!((yes.mode, yes.visitor), (PrivacyMode::Identified, Some(v)));
        let mut resp = crate::proxy::head::response(200, &[]);
        respond(&mut resp, &s, &a, false);
        assert!(set_cookies(&resp).is_empty());
    }
}
