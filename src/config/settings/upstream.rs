//! `[upstream]`: the site tollgate forwards to, and how.

use super::file::UpstreamSection;
use super::Problems;
use std::time::Duration;

#[derive(Debug, Clone)]
pub struct Upstream {
    /// The URL as given, for messages.
    pub url: String,
    pub tls: bool,
    pub host: String,
    pub port: u16,
    /// `host[:port]` as a `Host` header value, used when `preserve_host` is off.
    pub authority: String,
    pub preserve_host: bool,
    pub connect_timeout: Duration,
    pub read_timeout: Duration,
    pub write_timeout: Duration,
    pub idle_timeout: Duration,
    pub pool_size: usize,
    pub verify_tls: bool,
}

pub(super) fn validate(u: &UpstreamSection, p: &mut Problems) -> Option<Upstream> {
    let upstream = parse_upstream(&u.url).map_err(|m| p.report("url", m));
    if u.connect_timeout_ms == 0 {
        p.report("connect_timeout_ms", "must be at least 1");
    }
    if u.read_timeout_ms == 0 {
        p.report("read_timeout_ms", "must be at least 1");
    }
    Some(Upstream {
        url: u.url.clone(),
        preserve_host: u.preserve_host,
        connect_timeout: Duration::from_millis(u.connect_timeout_ms),
        read_timeout: Duration::from_millis(u.read_timeout_ms),
        write_timeout: Duration::from_millis(u.write_timeout_ms.max(1)),
        idle_timeout: Duration::from_secs(u.idle_timeout_secs),
        pool_size: u.pool_size,
        verify_tls: u.verify_tls,
        ..upstream.ok()?
    })
}

/// Parse `http://host[:port][/]` or `https://…`. The host is resolved later, at start-up.
pub fn parse_upstream(s: &str) -> Result<Upstream, String> {
    const HINT: &str = "expected http://host:port or https://host";
    if s.is_empty() {
        return Err(format!(
            "is required ({HINT}); set it in the file, with TOLLGATE_UPSTREAM, or --upstream"
        ));
    }
    let uri: http::Uri = s
        .parse()
        .map_err(|_| format!("{s:?} is not a URL ({HINT})"))?;
    let tls = match uri.scheme_str() {
        Some("http") => false,
        Some("https") => true,
        Some(other) => return Err(format!("{s:?} has scheme {other:?} ({HINT})")),
        None => return Err(format!("{s:?} is not a URL ({HINT})")),
    };
    let host = uri
        .host()
        .ok_or_else(|| format!("{s:?} has no host ({HINT})"))?
        .trim_start_matches('[')
        .trim_end_matches(']')
        .to_string();
    if !matches!(uri.path(), "" | "/") || uri.query().is_some() {
        return Err(format!(
            "{s:?} has a path; tollgate forwards every path as it is, so give only the origin ({HINT})"
        ));
    }
    let default_port = if tls { 443 } else { 80 };
    let port = uri.port_u16().unwrap_or(default_port);
    let authority = uri.authority().map(|a| a.to_string()).unwrap_or_default();
    Ok(Upstream {
        url: s.to_string(),
        tls,
        host,
        port,
        authority,
        preserve_host: true,
        connect_timeout: Duration::from_secs(1),
        read_timeout: Duration::from_secs(60),
        write_timeout: Duration::from_secs(60),
        idle_timeout: Duration::from_secs(60),
        pool_size: 128,
        verify_tls: true,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn upstream_urls() {
        let u = parse_upstream("https://shop.example").unwrap();
        assert!(u.tls);
        assert_eq!((u.host.as_str(), u.port), ("shop.example", 443));
        let u = parse_upstream("http://[::1]:3000/").unwrap();
        assert_eq!((u.host.as_str(), u.port), ("::1", 3000));
        assert!(parse_upstream("localhost:3000").is_err());
        assert!(parse_upstream("ftp://x").is_err());
        assert!(parse_upstream("http://x/app").is_err());
    }
}
