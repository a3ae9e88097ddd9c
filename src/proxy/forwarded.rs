//! `X-Forwarded-For`/`-Proto`/`-Host` and the client's IP, trusting incoming forwarded headers
//! only from configured proxies.

use super::head::RequestHead;
use http::HeaderValue;
use ipnet::IpNet;
use std::io::Write;
use std::net::IpAddr;

/// What tollgate tells the upstream about the client. Its values are the request's own header
/// values or static ones; `X-Forwarded-For`, the one it composes, is written by [`write_xff`]
/// into the request's buffer (`texts`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Forwarded {
    /// The client as best known: the socket peer, or for a trusted proxy the right-most
    /// untrusted address in its `X-Forwarded-For`.
    pub client_ip: Option<IpAddr>,
    /// The socket peer; `None` when unknown, and then no `X-Forwarded-For` is sent.
    pub peer: Option<IpAddr>,
    /// The peer is a trusted proxy: the `X-Forwarded-For` chain it sent is kept.
    pub trusted: bool,
    pub proto: HeaderValue,
    pub host: Option<HeaderValue>,
}

const HTTP: HeaderValue = HeaderValue::from_static("http");

fn trusted(ip: IpAddr, nets: &[IpNet]) -> bool {
    nets.iter().any(|n| n.contains(&ip))
}

/// The trimmed, non-empty addresses of the incoming `X-Forwarded-For` headers, in order.
fn incoming(req: &RequestHead) -> impl DoubleEndedIterator<Item = &str> {
    req.headers
        .get_all("x-forwarded-for")
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .map(str::trim)
        .filter(|s| !s.is_empty())
}

/// A header's value as text, trimmed, if it is visible ASCII and not blank: the value itself
/// when it needs no trimming (a shared slice of the request), else a trimmed copy.
fn trimmed(v: &HeaderValue) -> Option<HeaderValue> {
    let t = v.to_str().ok()?.trim();
    if t.is_empty() {
        None
    } else if t.len() == v.len() {
        Some(v.clone())
    } else {
        HeaderValue::from_str(t).ok()
    }
}

/// Work out the forwarded headers for a request that arrived from `peer`.
pub fn compute(peer: Option<IpAddr>, req: &RequestHead, nets: &[IpNet]) -> Forwarded {
    let host = match req.headers.get(http::header::HOST) {
        Some(v) if v.to_str().is_ok() => Some(v.clone()),
        _ => req
            .uri
            .authority()
            .and_then(|a| HeaderValue::from_str(a.as_str()).ok()),
    };
    let untrusted = |client_ip| Forwarded {
        client_ip,
        peer,
        trusted: false,
        proto: HTTP,
        host: host.clone(),
    };
    let Some(peer_ip) = peer else {
        return untrusted(None);
    };
    if !trusted(peer_ip, nets) {
        return untrusted(Some(peer_ip));
    }
    // Walk from the right: the last hop we do not trust is the client.
    let client_ip = incoming(req)
        .rev()
        .filter_map(|s| s.parse::<IpAddr>().ok())
        .find(|ip| !trusted(*ip, nets))
        .or_else(|| incoming(req).next().and_then(|s| s.parse().ok()))
        .or(Some(peer_ip));
    let header = |name: &str| req.headers.get(name).and_then(trimmed);
    Forwarded {
        client_ip,
        peer,
        trusted: true,
        proto: header("x-forwarded-proto").unwrap_or(HTTP),
        host: header("x-forwarded-host").or(host),
    }
}

/// The longest [`write_xff`] writes for `req`.
pub fn xff_len(f: &Forwarded, req: &RequestHead) -> usize {
    let chain = if f.trusted {
        incoming(req).map(|s| s.len() + 2).sum()
    } else {
        0
    };
    // The longest IPv6 address is 45 characters.
    chain + 45
}

/// Write the `X-Forwarded-For` value: the trusted proxy's chain, then the peer. Returns false
/// (and writes nothing) when there is none to send.
pub fn write_xff(f: &Forwarded, req: &RequestHead, out: &mut Vec<u8>) -> bool {
    let Some(peer) = f.peer else {
        return false;
    };
    if f.trusted {
        for hop in incoming(req) {
            out.extend_from_slice(hop.as_bytes());
            out.extend_from_slice(b", ");
        }
    }
    let _ = write!(out, "{peer}");
    true
}

/// Replace the forwarded headers on the upstream request, with `xff` from [`write_xff`].
/// Spoofable headers from untrusted clients never reach the upstream.
pub fn apply(req: &mut RequestHead, f: &Forwarded, xff: Option<HeaderValue>) {
    let h = &mut req.headers;
    h.remove(http::header::FORWARDED);
    h.remove("x-real-ip");
    match xff {
        Some(v) => h.insert(X_FORWARDED_FOR, v),
        None => h.remove(X_FORWARDED_FOR),
    };
    h.insert(X_FORWARDED_PROTO, f.proto.clone());
    match &f.host {
        Some(v) => h.insert(X_FORWARDED_HOST, v.clone()),
        None => h.remove(X_FORWARDED_HOST),
    };
}

const X_FORWARDED_FOR: http::HeaderName = http::HeaderName::from_static("x-forwarded-for");
const X_FORWARDED_PROTO: http::HeaderName = http::HeaderName::from_static("x-forwarded-proto");
const X_FORWARDED_HOST: http::HeaderName = http::HeaderName::from_static("x-forwarded-host");

#[cfg(test)]
mod tests {
    use super::*;

    fn req(h: &[(&str, &str)]) -> RequestHead {
        let mut all = vec![("host", "shop.test")];
        all.extend_from_slice(h);
        crate::proxy::head::request("GET", "/", &all)
    }

    fn xff(f: &Forwarded, req: &RequestHead) -> String {
        let mut out = Vec::new();
        write_xff(f, req, &mut out);
        assert!(out.len() <= xff_len(f, req));
        String::from_utf8(out).unwrap()
    }

    #[test]
    fn untrusted_client_cannot_spoof() {
        let r = req(&[
            ("x-forwarded-for", "1.2.3.4"),
            ("x-forwarded-proto", "https"),
        ]);
        let f = compute(Some("203.0.113.9".parse().unwrap()), &r, &[]);
        assert_eq!(f.client_ip, Some("203.0.113.9".parse().unwrap()));
        assert_eq!(xff(&f, &r), "203.0.113.9");
        assert_eq!(f.proto, "http");
        assert_eq!(f.host.as_ref().unwrap(), "shop.test");
    }

    #[test]
    fn trusted_proxy_chain_is_kept() {
        let nets = vec!["10.0.0.0/8".parse().unwrap()];
        let r = req(&[
            ("x-forwarded-for", "198.51.100.7, 10.0.0.9"),
            ("x-forwarded-for", " ,10.0.0.8 "),
            ("x-forwarded-proto", " https "),
            ("x-forwarded-host", "www.shop.test"),
        ]);
        let f = compute(Some("10.0.0.2".parse().unwrap()), &r, &nets);
        assert_eq!(f.client_ip, Some("198.51.100.7".parse().unwrap()));
        assert_eq!(xff(&f, &r), "198.51.100.7, 10.0.0.9, 10.0.0.8, 10.0.0.2");
        assert_eq!(f.proto, "https");
        assert_eq!(f.host.as_ref().unwrap(), "www.shop.test");
        // No peer (not a socket): nothing to forward.
        let f = compute(None, &r, &nets);
        assert_eq!((f.client_ip, xff(&f, &r).as_str()), (None, ""));
    }
}
