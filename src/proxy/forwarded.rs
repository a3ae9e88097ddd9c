//! `X-Forwarded-For`/`-Proto`/`-Host` and the client's IP, trusting incoming forwarded headers
//! only from configured proxies.

use ipnet::IpNet;
use pingora::http::RequestHeader;
use std::net::IpAddr;

/// What tollgate tells the upstream about the client.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Forwarded {
    /// The client as best known: the socket peer, or for a trusted proxy the right-most
    /// untrusted address in its `X-Forwarded-For`.
    pub client_ip: Option<IpAddr>,
    pub xff: String,
    pub proto: String,
    pub host: Option<String>,
}

fn trusted(ip: IpAddr, nets: &[IpNet]) -> bool {
    nets.iter().any(|n| n.contains(&ip))
}

/// Work out the forwarded headers for a request that arrived from `peer`.
pub fn compute(peer: Option<IpAddr>, req: &RequestHeader, nets: &[IpNet]) -> Forwarded {
    let header = |name: &str| {
        req.headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .map(str::trim)
            .filter(|v| !v.is_empty())
    };
    let host = req
        .headers
        .get(http::header::HOST)
        .and_then(|v| v.to_str().ok())
        .map(str::to_string)
        .or_else(|| req.uri.authority().map(|a| a.to_string()));
    let Some(peer) = peer else {
        return Forwarded {
            client_ip: None,
            xff: String::new(),
            proto: "http".into(),
            host,
        };
    };
    if !trusted(peer, nets) {
        return Forwarded {
            client_ip: Some(peer),
            xff: peer.to_string(),
            proto: "http".into(),
            host,
        };
    }
    let incoming: Vec<&str> = req
        .headers
        .get_all("x-forwarded-for")
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .collect();
    // Walk from the right: the last hop we do not trust is the client.
    let client_ip = incoming
        .iter()
        .rev()
        .filter_map(|s| s.parse::<IpAddr>().ok())
        .find(|ip| !trusted(*ip, nets))
        .or_else(|| incoming.first().and_then(|s| s.parse().ok()))
        .or(Some(peer));
    let mut xff = incoming.join(", ");
    if !xff.is_empty() {
        xff.push_str(", ");
    }
    xff.push_str(&peer.to_string());
    Forwarded {
        client_ip,
        xff,
        proto: header("x-forwarded-proto")
            .map(str::to_string)
            .unwrap_or_else(|| "http".into()),
        host: header("x-forwarded-host").map(str::to_string).or(host),
    }
}

/// Replace the forwarded headers on the upstream request. Spoofable headers from untrusted
/// clients never reach the upstream.
pub fn apply(req: &mut RequestHeader, f: &Forwarded) {
    req.remove_header("forwarded");
    req.remove_header("x-real-ip");
    if f.xff.is_empty() {
        req.remove_header("x-forwarded-for");
    } else {
        let _ = req.insert_header("x-forwarded-for", &f.xff);
    }
    let _ = req.insert_header("x-forwarded-proto", &f.proto);
    match &f.host {
        Some(h) => {
            let _ = req.insert_header("x-forwarded-host", h);
        }
        None => {
            req.remove_header("x-forwarded-host");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn req(h: &[(&str, &str)]) -> RequestHeader {
        let mut r = RequestHeader::build("GET", b"/", None).unwrap();
        r.insert_header("host", "shop.test").unwrap();
        for (k, v) in h {
            r.append_header(k.to_string(), *v).unwrap();
        }
        r
    }

    #[test]
    fn untrusted_client_cannot_spoof() {
        let f = compute(
            Some("203.0.113.9".parse().unwrap()),
            &req(&[
                ("x-forwarded-for", "1.2.3.4"),
                ("x-forwarded-proto", "https"),
            ]),
            &[],
        );
        assert_eq!(f.client_ip, Some("203.0.113.9".parse().unwrap()));
        assert_eq!(f.xff, "203.0.113.9");
        assert_eq!(f.proto, "http");
        assert_eq!(f.host.as_deref(), Some("shop.test"));
    }

    #[test]
    fn trusted_proxy_chain_is_kept() {
        let nets = vec!["10.0.0.0/8".parse().unwrap()];
        let f = compute(
            Some("10.0.0.2".parse().unwrap()),
            &req(&[
                ("x-forwarded-for", "198.51.100.7, 10.0.0.9"),
                ("x-forwarded-proto", "https"),
            ]),
            &nets,
        );
        assert_eq!(f.client_ip, Some("198.51.100.7".parse().unwrap()));
        assert_eq!(f.xff, "198.51.100.7, 10.0.0.9, 10.0.0.2");
        assert_eq!(f.proto, "https");
    }
}
