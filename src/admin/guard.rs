//! What the admin plane trusts, checked before anything else on every request:
//!
//! - **Host.** Only loopback (`localhost`, `127.0.0.0/8`, `::1`), the address the connection
//!   arrived on, and `server.admin_hosts`, any port; anything else is a 421. A page on another
//!   site that rebinds its DNS name to the admin address still sends its own name as `Host`,
//!   so it never gets an answer. An IP address as `Host` cannot be rebound (no name is
//!   resolved), which is why the connection's own address is always fine: load balancers and
//!   probes use it. `/healthz` (a constant `ok`) is exempt.
//! - **Origin.** A state-changing request (anything but GET, HEAD, OPTIONS) that a browser
//!   marks as cross-site or same-site (`Sec-Fetch-Site`), or whose `Origin` is not the admin's
//!   own, is a 403. Clients that send neither (curl, SDKs, the CLI) pass.
//! - **Content type.** Each state-changing route takes only its documented types (415 lists
//!   them), so no HTML form (`text/plain`, `application/x-www-form-urlencoded`,
//!   `multipart/form-data`) can post to it. A body without a `Content-Type` is accepted only
//!   from a client that is not a browser (no `Origin`, no `Sec-Fetch-*`).
//!
//! From a peer in `server.trusted_proxies`, `X-Forwarded-Host` must pass the Host check too and
//! is the admin's own origin, `X-Forwarded-Proto` tells whether the browser used HTTPS, and
//! `X-Forwarded-For` names the client. The result is left in the request as a [`Client`].

use super::serve::Conn;
use super::session::{Sessions, Throttle};
use super::ApiError;
use axum::extract::{Request, State};
use axum::http::{header, HeaderMap, Method};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use ipnet::IpNet;
use std::net::IpAddr;
use std::sync::Arc;

/// The admin plane's security settings and state.
pub struct Security {
    /// `server.admin_token`; `None` leaves the admin API open (loopback only).
    pub token: Option<String>,
    /// `server.admin_hosts`, as validated (lower case, IPs canonical, no port).
    pub hosts: Vec<String>,
    /// `server.trusted_proxies`.
    pub trusted_proxies: Vec<IpNet>,
    pub sessions: Sessions,
    pub throttle: Throttle,
}

impl Security {
    pub fn new(settings: &crate::config::Settings) -> Self {
        Security {
            token: settings.admin_token.clone(),
            hosts: settings.admin_hosts.clone(),
            trusted_proxies: settings.trusted_proxies.clone(),
            sessions: Sessions::new(settings.admin_session_ttl),
            throttle: Throttle::default(),
        }
    }
}

/// Who sent a request, as far as the admin plane trusts it.
#[derive(Debug, Clone, Default)]
pub struct Client {
    /// The socket peer, or behind a trusted proxy the right-most untrusted `X-Forwarded-For`.
    pub ip: Option<IpAddr>,
    /// The browser used HTTPS: a trusted proxy said `X-Forwarded-Proto: https`.
    pub https: bool,
}

/// The content types a state-changing route takes; `None` for routes that read no body.
pub fn content_types(path: &str) -> Option<&'static [&'static str]> {
    match path {
        "/api/query" | "/api/forget" | "/api/login" => Some(&["application/json"]),
        "/api/events" => Some(&["application/json", "application/x-ndjson"]),
        "/api/import" => Some(&["text/csv"]),
        p if p.starts_with("/v1/") => Some(&["application/json"]),
        _ => None,
    }
}

/// Middleware: the Host, Origin and content-type checks; then the request goes on with its
/// [`Client`].
pub async fn check(State(sec): State<Arc<Security>>, mut req: Request, next: Next) -> Response {
    let conn = req.extensions().get::<Conn>().copied();
    let from_proxy = conn.is_some_and(|c| trusted(c.peer.ip(), &sec.trusted_proxies));
    let headers = req.headers();

    // Every host the request names: Host, the request target's authority, and from a trusted
    // proxy X-Forwarded-Host (whose first value is what the browser asked for).
    let mut hosts: Vec<String> = headers
        .get_all(header::HOST)
        .iter()
        .map(|v| String::from_utf8_lossy(v.as_bytes()).into_owned())
        .collect();
    if let Some(a) = req.uri().authority() {
        hosts.push(a.to_string());
    }
    let forwarded_host = from_proxy
        .then(|| first_value(headers, "x-forwarded-host"))
        .flatten();
    if let Some(h) = &forwarded_host {
        hosts.push(h.clone());
    }
    if req.uri().path() != "/healthz" {
        for h in &hosts {
            if !host_allowed(h, conn, &sec.hosts) {
                return ApiError::Misdirected(format!(
                    "this admin listener does not answer to Host {h:?}: add the name to \
                     server.admin_hosts (loopback and the listener's own address are always \
                     accepted)"
                ))
                .into_response();
            }
        }
    }

    if !matches!(
        req.method(),
        &Method::GET | &Method::HEAD | &Method::OPTIONS
    ) {
        let own = forwarded_host.or_else(|| {
            headers
                .get(header::HOST)
                .and_then(|v| v.to_str().ok())
                .map(str::to_string)
                .or_else(|| req.uri().authority().map(|a| a.to_string()))
        });
        if let Err(e) = same_origin_only(headers, own.as_deref()) {
            return e.into_response();
        }
        if let Some(types) = content_types(req.uri().path()) {
            if let Err(e) = content_type_ok(headers, types) {
                return e.into_response();
            }
        }
    }

    let client = Client {
        ip: conn.map(|c| client_ip(c.peer.ip(), from_proxy, req.headers(), &sec.trusted_proxies)),
        https: from_proxy
            && first_value(req.headers(), "x-forwarded-proto")
                .is_some_and(|p| p.eq_ignore_ascii_case("https")),
    };
    req.extensions_mut().insert(client);
    next.run(req).await
}

fn trusted(ip: IpAddr, nets: &[IpNet]) -> bool {
    nets.iter().any(|n| n.contains(&ip))
}

/// The first comma-separated value of the first `name` header.
fn first_value(headers: &HeaderMap, name: &str) -> Option<String> {
    headers
        .get(name)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split(',').next())
        .map(|v| v.trim().to_string())
        .filter(|v| !v.is_empty())
}

/// The client behind a trusted proxy: the right-most `X-Forwarded-For` hop that is not
/// trusted itself. A header from anyone else is ignored.
fn client_ip(peer: IpAddr, from_proxy: bool, headers: &HeaderMap, nets: &[IpNet]) -> IpAddr {
    let peer = peer.to_canonical();
    if !from_proxy {
        return peer;
    }
    let hops: Vec<IpAddr> = headers
        .get_all("x-forwarded-for")
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .filter_map(|s| s.trim().parse::<IpAddr>().ok())
        .collect();
    hops.iter()
        .rev()
        .find(|ip| !trusted(**ip, nets))
        .or(hops.first())
        .copied()
        .unwrap_or(peer)
}

/// `host[:port]` split into a lower-case host (IPv6 without brackets) and the port.
fn split_host(authority: &str) -> Option<(String, Option<u16>)> {
    let a: axum::http::uri::Authority = authority.trim().parse().ok()?;
    if authority.contains('@') {
        return None;
    }
    let host = a
        .host()
        .trim_start_matches('[')
        .trim_end_matches(']')
        .trim_end_matches('.')
        .to_ascii_lowercase();
    Some((host, a.port_u16()))
}

/// Whether the admin listener answers to `authority` on `conn`.
fn host_allowed(authority: &str, conn: Option<Conn>, allowed: &[String]) -> bool {
    let Some((host, _port)) = split_host(authority) else {
        return false;
    };
    if host == "localhost" || allowed.contains(&host) {
        return true;
    }
    match host.parse::<IpAddr>() {
        Ok(ip) => {
            let ip = ip.to_canonical();
            ip.is_loopback()
                || conn.is_some_and(|c| c.local.ip().to_canonical() == ip)
                || allowed.contains(&ip.to_string())
        }
        Err(_) => false,
    }
}

/// Refuse a browser's cross-site or same-site request, and an `Origin` other than `own`.
fn same_origin_only(headers: &HeaderMap, own: Option<&str>) -> Result<(), ApiError> {
    const WHY: &str = "the admin API takes state-changing requests only from its own pages \
                       or from clients that are not browsers";
    if let Some(site) = headers.get("sec-fetch-site") {
        let site = String::from_utf8_lossy(site.as_bytes()).to_ascii_lowercase();
        if site != "same-origin" && site != "none" {
            return Err(ApiError::Forbidden(format!(
                "cross-site request refused (Sec-Fetch-Site: {site}): {WHY}"
            )));
        }
    }
    let Some(origin) = headers.get(header::ORIGIN) else {
        return Ok(());
    };
    let origin = String::from_utf8_lossy(origin.as_bytes()).into_owned();
    if own.is_some_and(|own| origin_matches(&origin, own)) {
        return Ok(());
    }
    Err(ApiError::Forbidden(format!(
        "cross-origin request refused (Origin: {origin}): {WHY}"
    )))
}

/// Whether `origin` (`scheme://host[:port]`) is the origin of a page served from `own`
/// (a `Host` value). The scheme is not compared, since a TLS-terminating proxy in front may
/// not say which it was; an absent port is the scheme's default on both sides.
fn origin_matches(origin: &str, own: &str) -> bool {
    let Some((scheme, rest)) = origin.split_once("://") else {
        return false;
    };
    let default = match scheme.to_ascii_lowercase().as_str() {
        "http" => 80,
        "https" => 443,
        _ => return false,
    };
    if rest.contains('/') {
        return false;
    }
    match (split_host(rest), split_host(own)) {
        (Some((oh, op)), Some((h, p))) => oh == h && op.unwrap_or(default) == p.unwrap_or(default),
        _ => false,
    }
}

/// The request's media type must be one of `types`; without a `Content-Type`, only a client
/// that is not a browser gets through.
fn content_type_ok(headers: &HeaderMap, types: &[&str]) -> Result<(), ApiError> {
    let expected = || types.join(", ");
    let Some(ct) = headers.get(header::CONTENT_TYPE) else {
        let browser = headers.contains_key(header::ORIGIN)
            || headers.keys().any(|k| k.as_str().starts_with("sec-fetch-"));
        if browser {
            return Err(ApiError::UnsupportedMediaType(format!(
                "no Content-Type: expected {}",
                expected()
            )));
        }
        return Ok(());
    };
    let ct = String::from_utf8_lossy(ct.as_bytes());
    let media = ct
        .split(';')
        .next()
        .unwrap_or("")
        .trim()
        .to_ascii_lowercase();
    if types.contains(&media.as_str()) {
        Ok(())
    } else {
        Err(ApiError::UnsupportedMediaType(format!(
            "Content-Type {:?} is not accepted here: expected {}",
            ct.trim(),
            expected()
        )))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn conn(local: &str) -> Option<Conn> {
        Some(Conn {
            peer: "192.0.2.9:5000".parse().unwrap(),
            local: local.parse().unwrap(),
        })
    }

    #[test]
    fn hosts() {
        let allowed = vec!["analytics.example.com".to_string(), "10.1.2.3".to_string()];
        let c = conn("10.0.0.5:9080");
        for ok in [
            "localhost",
            "localhost:9080",
            "LOCALHOST.",
            "127.0.0.1:9080",
            "127.8.9.10",
            "[::1]:9080",
            "10.0.0.5:9080",
            "analytics.example.com",
            "Analytics.Example.com:443",
            "10.1.2.3:1",
        ] {
            assert!(host_allowed(ok, c, &allowed), "{ok}");
        }
        for bad in [
            "evil.example",
            "evil.example:9080",
            "analytics.example.com.evil.example",
            "localhost.evil.example",
            "10.0.0.6:9080",
            "0.0.0.0:9080",
            "user@localhost",
            "",
        ] {
            assert!(!host_allowed(bad, c, &allowed), "{bad}");
        }
        // Over IPv4 on a dual-stack listener the local address is IPv4-mapped.
        assert!(host_allowed(
            "10.0.0.5",
            conn("[::ffff:10.0.0.5]:9080"),
            &[]
        ));
    }

    #[test]
    fn origins() {
        assert!(origin_matches("http://127.0.0.1:9080", "127.0.0.1:9080"));
        assert!(origin_matches(
            "https://analytics.example.com",
            "analytics.example.com"
        ));
        assert!(origin_matches(
            "https://analytics.example.com",
            "analytics.example.com:443"
        ));
        assert!(origin_matches("http://[::1]:9080", "[::1]:9080"));
        assert!(!origin_matches("http://127.0.0.1:3000", "127.0.0.1:9080"));
        assert!(!origin_matches("http://evil.example", "127.0.0.1:9080"));
        assert!(!origin_matches("null", "127.0.0.1:9080"));
        assert!(!origin_matches(
            "https://analytics.example.com",
            "analytics.example.com:9080"
        ));
    }

    #[test]
    fn content_types_and_browsers() {
        let h = |pairs: &[(&'static str, &'static str)]| {
            let mut m = HeaderMap::new();
            for (k, v) in pairs {
                m.insert(*k, v.parse().unwrap());
            }
            m
        };
        let json = &["application/json"][..];
        assert!(content_type_ok(
            &h(&[("content-type", "application/json; charset=utf-8")]),
            json
        )
        .is_ok());
        assert!(content_type_ok(&h(&[("content-type", "text/plain")]), json).is_err());
        assert!(
            content_type_ok(&h(&[]), json).is_ok(),
            "not a browser, no type: accepted"
        );
        assert!(content_type_ok(&h(&[("origin", "http://127.0.0.1:9080")]), json).is_err());
        assert!(content_type_ok(&h(&[("sec-fetch-mode", "no-cors")]), json).is_err());
    }
}
