//! `[server]`: the listeners, who may use the admin plane, the data directory and the proxy's
//! connection limits. [`Settings`](super::Settings) holds these fields itself.

use super::file::ServerSection;
use super::{nets, Problems};
use ipnet::IpNet;
use std::net::{IpAddr, SocketAddr};

/// What `[server]` holds that needed parsing; [`validate`](super::validate) copies its plain
/// numbers into [`Settings`](super::Settings) as they are, once they are checked here.
pub(super) struct Server {
    pub listen: SocketAddr,
    pub admin: SocketAddr,
    pub admin_token: Option<String>,
    pub admin_hosts: Vec<String>,
    pub trusted_proxies: Vec<IpNet>,
}

pub(super) fn validate(s: &ServerSection, p: &mut Problems) -> Option<Server> {
    let listen = parse_addr(&s.listen).map_err(|m| p.report("listen", m));
    let admin = parse_addr(&s.admin).map_err(|m| p.report("admin", m));
    let admin_token = admin_token(s, admin.as_ref().ok(), p);
    let mut admin_hosts = Vec::new();
    for (i, h) in s.admin_hosts.iter().enumerate() {
        match parse_admin_host(h) {
            Ok(h) => admin_hosts.push(h),
            Err(m) => p.item("admin_hosts", i).here(m),
        }
    }
    admin_limits(s, p);
    if s.data_dir.trim().is_empty() {
        p.report("data_dir", "must not be empty");
    }
    if s.keepalive_secs == 0 {
        p.report(
            "keepalive_secs",
            "must be at least 1 (idle client connections would never be reused)",
        );
    }
    let trusted_proxies = nets(&s.trusted_proxies, "trusted_proxies", "10.0.0.0/8", p);
    p.at_least_one(&[("max_connections", s.max_connections)]);
    if s.header_timeout_secs == 0 {
        p.report("header_timeout_secs", "must be at least 1 (seconds)");
    }
    Some(Server {
        listen: listen.ok()?,
        admin: admin.ok()?,
        admin_token,
        admin_hosts,
        trusted_proxies,
    })
}

/// `threads`, with 0 resolved to the core count.
pub(super) fn threads(s: &ServerSection) -> usize {
    if s.threads == 0 {
        std::thread::available_parallelism().map_or(1, |n| n.get())
    } else {
        s.threads
    }
}

/// `admin_token`, trimmed; `None` when empty, which only a loopback `admin` allows.
fn admin_token(s: &ServerSection, admin: Option<&SocketAddr>, p: &mut Problems) -> Option<String> {
    let token = Some(s.admin_token.trim().to_string()).filter(|t| !t.is_empty());
    match (admin, &token) {
        (Some(a), None) if !a.ip().is_loopback() => p.report(
            "admin_token",
            format!(
                "required because server.admin ({a}) is reachable beyond this machine: \
                 set a long random token (e.g. `openssl rand -hex 32`), or bind the admin \
                 listener to 127.0.0.1"
            ),
        ),
        (_, Some(t)) if t.len() < 16 => p.report(
            "admin_token",
            "must be at least 16 characters (e.g. `openssl rand -hex 32`)",
        ),
        _ => {}
    }
    token
}

/// The admin listener's sessions, connections and header deadline.
fn admin_limits(s: &ServerSection, p: &mut Problems) {
    if !(1..=43_200).contains(&s.admin_session_mins) {
        p.report(
            "admin_session_mins",
            format!(
                "{} is out of range (expected 1 to 43200, 30 days)",
                s.admin_session_mins
            ),
        );
    }
    p.at_least_one(&[("admin_max_connections", s.admin_max_connections)]);
    if !(1..=3600).contains(&s.admin_header_timeout_secs) {
        p.report(
            "admin_header_timeout_secs",
            format!(
                "{} is out of range (expected 1 to 3600)",
                s.admin_header_timeout_secs
            ),
        );
    }
}

fn parse_addr(s: &str) -> Result<SocketAddr, String> {
    s.parse().map_err(|_| {
        format!("{s:?} is not a socket address (expected host:port, e.g. 127.0.0.1:8080)")
    })
}

/// One `server.admin_hosts` entry: a host name or an IP address, without scheme or port.
fn parse_admin_host(s: &str) -> Result<String, String> {
    const HINT: &str = "expected a host name such as analytics.example.com, or an IP address";
    let h = s.trim().trim_end_matches('.').to_ascii_lowercase();
    if let Ok(ip) = h
        .trim_start_matches('[')
        .trim_end_matches(']')
        .parse::<IpAddr>()
    {
        return Ok(ip.to_string());
    }
    if h.contains(':') {
        return Err(format!(
            "{s:?} has a scheme or a port; give the host name alone, any port is accepted ({HINT})"
        ));
    }
    let label_ok = |l: &str| {
        !l.is_empty()
            && l.len() <= 63
            && l.bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
    };
    if h.is_empty() || h.len() > 253 || !h.split('.').all(label_ok) {
        return Err(format!("{s:?} is not a host name ({HINT})"));
    }
    Ok(h)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn admin_hosts() {
        assert_eq!(
            parse_admin_host(" Analytics.Example.com. ").unwrap(),
            "analytics.example.com"
        );
        assert_eq!(parse_admin_host("[::1]").unwrap(), "::1");
        assert_eq!(parse_admin_host("10.0.0.5").unwrap(), "10.0.0.5");
        for bad in [
            "https://a.example",
            "a.example:9080",
            "*.example.com",
            "a b",
            "",
            "a/b",
        ] {
            assert!(parse_admin_host(bad).is_err(), "{bad}");
        }
    }
}
