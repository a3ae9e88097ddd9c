//! Validated, internal configuration types: what the rest of tollgate reads.

use super::file::{FileConfig, RuleSection};
use http::Method;
use ipnet::IpNet;
use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;
use std::time::Duration;

#[derive(Debug, Clone)]
pub struct Settings {
    pub listen: SocketAddr,
    pub admin: SocketAddr,
    /// The admin token; `None` when not set (allowed on loopback only).
    pub admin_token: Option<String>,
    /// `server.admin_hosts`: lower-cased host names and IP addresses (IPv6 without brackets),
    /// without ports.
    pub admin_hosts: Vec<String>,
    pub admin_session_ttl: Duration,
    pub admin_max_connections: usize,
    pub admin_header_timeout: Duration,
    pub data_dir: PathBuf,
    /// Proxy worker threads, already resolved from 0 to the core count.
    pub threads: usize,
    /// Ignored (see `file::ServerSection::work_stealing`); kept to warn when set.
    pub work_stealing: bool,
    pub keepalive_secs: u64,
    pub keepalive_requests: u32,
    pub shutdown_grace_secs: u64,
    pub trusted_proxies: Vec<IpNet>,
    pub header_timeout: Duration,
    pub max_connections: usize,
    pub upstream: Upstream,
    pub identity: Identity,
    pub capture: Capture,
    pub pipeline: Pipeline,
    pub site_id: String,
    /// The reports' time zone.
    /// `site.timezone`: the zone reports count days in.
    pub timezone: chrono_tz::Tz,
    pub privacy: Privacy,
    pub enrich: Enrich,
    pub ingest: Ingest,
    pub inject: Inject,
    pub store: super::StoreSettings,
    pub console: Console,
    pub sinks: Vec<super::SinkSettings>,
}

/// `[console]`: the read-only SQL console's limits.
#[derive(Debug, Clone)]
pub struct Console {
    pub timeout: Duration,
    pub max_rows: usize,
    pub max_bytes: usize,
    pub max_concurrent: usize,
}

#[derive(Debug, Clone)]
pub struct Ingest {
    /// Without a trailing slash, e.g. `/_tollgate`.
    pub collect_prefix: String,
    pub collect_max_bytes: usize,
    pub collect_max_items: usize,
    /// Events per second per client IP; 0 is no limit.
    pub collect_rate: u32,
    pub collect_burst: u32,
    pub collect_max_skew: Duration,
    pub api_max_items: usize,
    /// File column → field, for CSV imports.
    pub import_map: std::collections::HashMap<String, String>,
    pub write_keys: Vec<String>,
}

/// `[inject]`: the tracker script in HTML pages.
#[derive(Debug, Clone)]
pub struct Inject {
    pub enabled: bool,
    pub exclude: Vec<PathPattern>,
    pub engagement: bool,
    pub compression_level: u32,
}

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

#[derive(Debug, Clone)]
pub struct Identity {
    pub visitor_cookie: String,
    pub session_cookie: String,
    pub session_timeout: Duration,
    pub visitor_max_age: Duration,
    pub cookie_domain: Option<String>,
    pub request_id_header: http::HeaderName,
    pub visitor_id_header: http::HeaderName,
    pub session_id_header: http::HeaderName,
    pub incoming_visitor_header: Option<http::HeaderName>,
    pub user_header: http::HeaderName,
    pub event_header: http::HeaderName,
}

#[derive(Debug, Clone)]
pub struct Capture {
    pub enabled: bool,
    pub assets: bool,
    pub api_prefixes: Vec<String>,
    pub rules: Vec<Rule>,
}

#[derive(Debug, Clone)]
pub struct Privacy {
    pub ip: IpHandling,
    pub honor_gpc: bool,
    pub honor_dnt: bool,
    pub consent: Option<Consent>,
    pub cookieless: bool,
    /// Lower-cased parameter names.
    pub redact_params: Vec<String>,
    pub redact_values: bool,
}

/// `privacy.ip`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum IpHandling {
    Keep,
    /// Keep this many leading bits of IPv4 and IPv6 addresses.
    Truncate {
        v4: u8,
        v6: u8,
    },
    Drop,
}

/// `privacy.consent_cookie`: consent is given when the cookie is present (with this value, if
/// one is set).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Consent {
    pub name: String,
    pub value: Option<String>,
}

#[derive(Debug, Clone)]
pub struct Enrich {
    pub geo_db: Option<PathBuf>,
    pub bot_networks: Vec<IpNet>,
    /// Lower-cased, without a leading dot.
    pub site_domains: Vec<String>,
    pub ua_cache_size: usize,
}

/// A validated `[[capture.rules]]` entry.
#[derive(Debug, Clone)]
pub struct Rule {
    pub name: String,
    pub method: Option<Method>,
    pub path: PathPattern,
    /// Inclusive status range.
    pub status: Option<(u16, u16)>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PathPattern {
    Any,
    Exact(String),
    Prefix(String),
    /// Segments; `None` is a `:param` that matches any one segment.
    Route(Vec<Option<String>>),
}

#[derive(Debug, Clone)]
pub struct Pipeline {
    pub queue_capacity: usize,
    pub queue_max_bytes: usize,
    pub batch_size: usize,
    pub flush_interval: Duration,
    /// Nice value of the analytics threads (0-19).
    pub background_nice: i32,
}

/// Validate `f` into [`Settings`], pushing one message per problem onto `errors`.
/// Returns `None` only when `errors` is not empty.
pub(super) fn validate(f: &FileConfig, errors: &mut Vec<String>) -> Option<Settings> {
    let before = errors.len();
    let mut err = |key: &str, msg: String| errors.push(format!("{key}: {msg}"));

    let listen = parse_addr(&f.server.listen).map_err(|m| err("server.listen", m));
    let admin = parse_addr(&f.server.admin).map_err(|m| err("server.admin", m));
    let admin_token = Some(f.server.admin_token.trim().to_string()).filter(|t| !t.is_empty());
    if let (Ok(a), None) = (&admin, &admin_token) {
        if !a.ip().is_loopback() {
            err(
                "server.admin_token",
                format!(
                    "required because server.admin ({a}) is reachable beyond this machine: \
                     set a long random token (e.g. `openssl rand -hex 32`), or bind the admin \
                     listener to 127.0.0.1"
                ),
            );
        }
    }
    if let Some(t) = &admin_token {
        if t.len() < 16 {
            err(
                "server.admin_token",
                "must be at least 16 characters (e.g. `openssl rand -hex 32`)".into(),
            );
        }
    }
    let mut admin_hosts = Vec::new();
    for (i, h) in f.server.admin_hosts.iter().enumerate() {
        match parse_admin_host(h) {
            Ok(h) => admin_hosts.push(h),
            Err(m) => err(&format!("server.admin_hosts[{i}]"), m),
        }
    }
    if !(1..=43_200).contains(&f.server.admin_session_mins) {
        err(
            "server.admin_session_mins",
            format!(
                "{} is out of range (expected 1 to 43200, 30 days)",
                f.server.admin_session_mins
            ),
        );
    }
    if f.server.admin_max_connections == 0 {
        err("server.admin_max_connections", "must be at least 1".into());
    }
    if !(1..=3600).contains(&f.server.admin_header_timeout_secs) {
        err(
            "server.admin_header_timeout_secs",
            format!(
                "{} is out of range (expected 1 to 3600)",
                f.server.admin_header_timeout_secs
            ),
        );
    }
    let timezone = parse_timezone(f.site.timezone.trim()).map_err(|m| err("site.timezone", m));
    if f.server.data_dir.trim().is_empty() {
        err("server.data_dir", "must not be empty".into());
    }
    if f.server.keepalive_secs == 0 {
        err(
            "server.keepalive_secs",
            "must be at least 1 (idle client connections would never be reused)".into(),
        );
    }
    let mut trusted = Vec::new();
    for (i, p) in f.server.trusted_proxies.iter().enumerate() {
        match parse_net(p) {
            Some(n) => trusted.push(n),
            None => err(
                &format!("server.trusted_proxies[{i}]"),
                format!("{p:?} is not an IP address or CIDR (expected e.g. 10.0.0.0/8)"),
            ),
        }
    }

    let upstream = parse_upstream(&f.upstream.url).map_err(|m| err("upstream.url", m));
    if f.upstream.connect_timeout_ms == 0 {
        err("upstream.connect_timeout_ms", "must be at least 1".into());
    }
    if f.upstream.read_timeout_ms == 0 {
        err("upstream.read_timeout_ms", "must be at least 1".into());
    }

    let id = &f.identity;
    for (key, name) in [
        ("identity.visitor_cookie", &id.visitor_cookie),
        ("identity.session_cookie", &id.session_cookie),
    ] {
        if name.is_empty() || !name.bytes().all(is_token_byte) {
            err(
                key,
                format!("{name:?} is not a valid cookie name (letters, digits, `_`, `-`)"),
            );
        }
    }
    if id.session_timeout_mins == 0 {
        err("identity.session_timeout_mins", "must be at least 1".into());
    }
    let mut header = |key: &str, v: &str| match http::HeaderName::from_bytes(v.as_bytes()) {
        Ok(h) => Some(h),
        Err(_) => {
            err(key, format!("{v:?} is not a valid HTTP header name"));
            None
        }
    };
    let request_id_header = header("identity.request_id_header", &id.request_id_header);
    let visitor_id_header = header("identity.visitor_id_header", &id.visitor_id_header);
    let session_id_header = header("identity.session_id_header", &id.session_id_header);
    let user_header = header("identity.user_header", &id.user_header);
    let event_header = header("identity.event_header", &id.event_header);
    let incoming_visitor_header = if id.incoming_visitor_header.is_empty() {
        Some(None)
    } else {
        header(
            "identity.incoming_visitor_header",
            &id.incoming_visitor_header,
        )
        .map(Some)
    };

    for (i, p) in f.capture.api_prefixes.iter().enumerate() {
        if !p.starts_with('/') {
            err(
                &format!("capture.api_prefixes[{i}]"),
                format!("{p:?} must start with `/`"),
            );
        }
    }
    let mut rules = Vec::new();
    for (i, r) in f.capture.rules.iter().enumerate() {
        if let Some(rule) = parse_rule(r, &format!("capture.rules[{i}]"), &mut err) {
            rules.push(rule);
        }
    }

    let p = &f.pipeline;
    if p.queue_capacity == 0 {
        err("pipeline.queue_capacity", "must be at least 1".into());
    }
    if p.batch_size == 0 {
        err("pipeline.batch_size", "must be at least 1".into());
    }
    if !(1..=60_000).contains(&p.flush_interval_ms) {
        err(
            "pipeline.flush_interval_ms",
            format!(
                "{} is out of range (expected 1 to 60000)",
                p.flush_interval_ms
            ),
        );
    }
    if f.site.id.trim().is_empty() {
        err("site.id", "must not be empty".into());
    }

    let pv = &f.privacy;
    let ip = match pv.ip.as_str() {
        "keep" => Some(IpHandling::Keep),
        "drop" => Some(IpHandling::Drop),
        "truncate" => Some(IpHandling::Truncate {
            v4: pv.ipv4_prefix,
            v6: pv.ipv6_prefix,
        }),
        other => {
            err(
                "privacy.ip",
                format!("{other:?} is not one of keep, truncate, drop"),
            );
            None
        }
    };
    if pv.ipv4_prefix > 32 {
        err(
            "privacy.ipv4_prefix",
            format!("{} is out of range (0 to 32)", pv.ipv4_prefix),
        );
    }
    if pv.ipv6_prefix > 128 {
        err(
            "privacy.ipv6_prefix",
            format!("{} is out of range (0 to 128)", pv.ipv6_prefix),
        );
    }
    let consent = match pv.consent_cookie.trim() {
        "" => None,
        c => {
            let (name, value) = match c.split_once('=') {
                Some((n, v)) => (n.trim(), Some(v.trim().to_string())),
                None => (c, None),
            };
            if name.is_empty() || !name.bytes().all(is_token_byte) {
                err(
                    "privacy.consent_cookie",
                    format!(
                        "{name:?} is not a valid cookie name (expected `name` or `name=value`)"
                    ),
                );
            }
            Some(Consent {
                name: name.to_string(),
                value,
            })
        }
    };

    let en = &f.enrich;
    let geo_db = match en.geo_db.trim() {
        "" => None,
        p => {
            let path = PathBuf::from(p);
            if !path.is_file() {
                err(
                    "enrich.geo_db",
                    format!("{p:?} is not a readable file (expected a GeoLite2/DB-IP .mmdb)"),
                );
            }
            Some(path)
        }
    };
    let mut bot_networks = Vec::new();
    for (i, p) in en.bot_networks.iter().enumerate() {
        match parse_net(p) {
            Some(n) => bot_networks.push(n),
            None => err(
                &format!("enrich.bot_networks[{i}]"),
                format!("{p:?} is not an IP address or CIDR (expected e.g. 192.0.2.0/24)"),
            ),
        }
    }
    let ing = &f.ingest;
    let collect_prefix = ing.collect_prefix.trim_end_matches('/').to_string();
    if !collect_prefix.starts_with('/')
        || collect_prefix.len() < 2
        || collect_prefix.contains(['?', '#', ' '])
    {
        err(
            "ingest.collect_prefix",
            format!(
                "{:?} must be a path below the root, e.g. /_tollgate",
                ing.collect_prefix
            ),
        );
    }
    for (i, k) in ing.write_keys.iter().enumerate() {
        if k.trim().is_empty() || k.contains(':') {
            err(
                &format!("ingest.write_keys[{i}]"),
                "must be non-empty and contain no `:` (it is the Basic auth user name)".into(),
            );
        }
    }
    for (key, v) in [
        ("ingest.collect_max_bytes", ing.collect_max_bytes),
        ("ingest.collect_max_items", ing.collect_max_items),
        ("ingest.api_max_items", ing.api_max_items),
        ("pipeline.queue_max_bytes", p.queue_max_bytes),
        ("server.max_connections", f.server.max_connections),
        ("console.max_rows", f.console.max_rows),
        ("console.max_bytes", f.console.max_bytes),
        ("console.max_concurrent", f.console.max_concurrent),
    ] {
        if v == 0 {
            err(key, "must be at least 1".into());
        }
    }
    for (key, v) in [
        ("server.header_timeout_secs", f.server.header_timeout_secs),
        ("console.timeout_secs", f.console.timeout_secs),
    ] {
        if v == 0 {
            err(key, "must be at least 1 (seconds)".into());
        }
    }
    if !(0..=19).contains(&p.background_nice) {
        err(
            "pipeline.background_nice",
            format!(
                "{} is out of range (expected 0, the proxy's own priority, to 19, the lowest)",
                p.background_nice
            ),
        );
    }
    if ing.collect_rate > 0 && ing.collect_burst == 0 {
        err(
            "ingest.collect_burst",
            "must be at least 1 when ingest.collect_rate is set".into(),
        );
    }
    let mut exclude = Vec::new();
    for (i, p) in f.inject.exclude_paths.iter().enumerate() {
        match parse_path(p) {
            Ok(p) => exclude.push(p),
            Err(e) => err(&format!("inject.exclude_paths[{i}]"), e),
        }
    }
    if !(1..=9).contains(&f.inject.compression_level) {
        err(
            "inject.compression_level",
            format!("{} is not between 1 and 9", f.inject.compression_level),
        );
    }
    let store = super::sinks::validate_store(&f.store, &mut err);
    let sinks = super::sinks::validate_sinks(&f.sinks, &mut err);
    let mut site_domains = Vec::new();
    for (i, d) in en.site_domains.iter().enumerate() {
        let d = d.trim().trim_start_matches('.').to_ascii_lowercase();
        if d.is_empty() || d.contains(['/', ':', ' ']) {
            err(
                &format!("enrich.site_domains[{i}]"),
                format!("{d:?} is not a domain (expected e.g. example.com)"),
            );
        } else {
            site_domains.push(d);
        }
    }

    if errors.len() > before {
        return None;
    }
    let upstream = upstream.ok()?;
    let u = &f.upstream;
    Some(Settings {
        listen: listen.ok()?,
        admin: admin.ok()?,
        admin_token,
        admin_hosts,
        admin_session_ttl: Duration::from_secs(f.server.admin_session_mins * 60),
        admin_max_connections: f.server.admin_max_connections,
        admin_header_timeout: Duration::from_secs(f.server.admin_header_timeout_secs),
        data_dir: PathBuf::from(&f.server.data_dir),
        threads: if f.server.threads == 0 {
            std::thread::available_parallelism().map_or(1, |n| n.get())
        } else {
            f.server.threads
        },
        work_stealing: f.server.work_stealing,
        keepalive_secs: f.server.keepalive_secs,
        keepalive_requests: f.server.keepalive_requests,
        shutdown_grace_secs: f.server.shutdown_grace_secs,
        trusted_proxies: trusted,
        header_timeout: Duration::from_secs(f.server.header_timeout_secs),
        max_connections: f.server.max_connections,
        upstream: Upstream {
            url: u.url.clone(),
            preserve_host: u.preserve_host,
            connect_timeout: Duration::from_millis(u.connect_timeout_ms),
            read_timeout: Duration::from_millis(u.read_timeout_ms),
            write_timeout: Duration::from_millis(u.write_timeout_ms.max(1)),
            idle_timeout: Duration::from_secs(u.idle_timeout_secs),
            pool_size: u.pool_size,
            verify_tls: u.verify_tls,
            ..upstream
        },
        identity: Identity {
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
        },
        capture: Capture {
            enabled: f.capture.enabled,
            assets: f.capture.assets,
            api_prefixes: f.capture.api_prefixes.clone(),
            rules,
        },
        pipeline: Pipeline {
            queue_capacity: p.queue_capacity,
            queue_max_bytes: p.queue_max_bytes,
            batch_size: p.batch_size,
            flush_interval: Duration::from_millis(p.flush_interval_ms),
            background_nice: p.background_nice.clamp(0, 19),
        },
        site_id: f.site.id.clone(),
        timezone: timezone.ok()?,
        privacy: Privacy {
            ip: ip?,
            honor_gpc: pv.honor_gpc,
            honor_dnt: pv.honor_dnt,
            consent,
            cookieless: pv.cookieless,
            redact_params: pv
                .redact_params
                .iter()
                .map(|s| s.to_ascii_lowercase())
                .collect(),
            redact_values: pv.redact_values,
        },
        enrich: Enrich {
            geo_db,
            bot_networks,
            site_domains,
            ua_cache_size: en.ua_cache_size,
        },
        ingest: Ingest {
            collect_prefix,
            collect_max_bytes: ing.collect_max_bytes,
            collect_max_items: ing.collect_max_items,
            collect_rate: ing.collect_rate,
            collect_burst: ing.collect_burst,
            collect_max_skew: Duration::from_secs(ing.collect_max_skew_secs),
            api_max_items: ing.api_max_items,
            import_map: ing
                .import_map
                .iter()
                .map(|(k, v)| (k.clone(), v.clone()))
                .collect(),
            write_keys: ing.write_keys.clone(),
        },
        inject: Inject {
            enabled: f.inject.enabled,
            exclude,
            engagement: f.inject.engagement,
            compression_level: f.inject.compression_level,
        },
        store,
        console: Console {
            timeout: Duration::from_secs(f.console.timeout_secs),
            max_rows: f.console.max_rows,
            max_bytes: f.console.max_bytes,
            max_concurrent: f.console.max_concurrent,
        },
        sinks,
    })
}

fn is_token_byte(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b == b'_' || b == b'-' || b == b'.'
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

fn parse_net(s: &str) -> Option<IpNet> {
    let s = s.trim();
    s.parse::<IpNet>()
        .ok()
        .or_else(|| s.parse::<IpAddr>().ok().map(IpNet::from))
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

/// A path pattern: `/exact`, `/prefix*` or `/route/:param`.
fn parse_path(p: &str) -> Result<PathPattern, String> {
    if !p.starts_with('/') {
        Err(format!("{p:?} must start with `/`"))
    } else if let Some(prefix) = p.strip_suffix('*') {
        Ok(PathPattern::Prefix(prefix.to_string()))
    } else if p.contains("/:") {
        Ok(PathPattern::Route(
            p.split('/')
                .map(|seg| (!seg.starts_with(':')).then(|| seg.to_string()))
                .collect(),
        ))
    } else {
        Ok(PathPattern::Exact(p.to_string()))
    }
}

fn parse_rule(r: &RuleSection, key: &str, err: &mut impl FnMut(&str, String)) -> Option<Rule> {
    let mut ok = true;
    if r.name.is_empty()
        || !r
            .name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"_-.:".contains(&b))
    {
        err(
            &format!("{key}.name"),
            format!(
                "{:?} is not a valid event name (letters, digits, `_ - . :`)",
                r.name
            ),
        );
        ok = false;
    }
    let method = if r.method.is_empty() {
        None
    } else {
        match Method::from_bytes(r.method.to_ascii_uppercase().as_bytes()) {
            Ok(m) => Some(m),
            Err(_) => {
                err(
                    &format!("{key}.method"),
                    format!("{:?} is not an HTTP method", r.method),
                );
                ok = false;
                None
            }
        }
    };
    let path = if r.path.is_empty() {
        PathPattern::Any
    } else {
        match parse_path(&r.path) {
            Ok(p) => p,
            Err(e) => {
                err(&format!("{key}.path"), e);
                ok = false;
                PathPattern::Any
            }
        }
    };
    let status = if r.status.is_empty() {
        None
    } else {
        match parse_status(&r.status) {
            Some(range) => Some(range),
            None => {
                err(
                    &format!("{key}.status"),
                    format!(
                        "{:?} is not a status pattern (expected 200, 2xx, or 200-299)",
                        r.status
                    ),
                );
                ok = false;
                None
            }
        }
    };
    ok.then(|| Rule {
        name: r.name.clone(),
        method,
        path,
        status,
    })
}

fn parse_status(s: &str) -> Option<(u16, u16)> {
    let valid = |n: u16| (100..=599).contains(&n);
    let s = s.trim().to_ascii_lowercase();
    if let Some(class) = s.strip_suffix("xx") {
        let c: u16 = class.parse().ok()?;
        return valid(c * 100).then_some((c * 100, c * 100 + 99));
    }
    if let Some((a, b)) = s.split_once('-') {
        let (a, b): (u16, u16) = (a.trim().parse().ok()?, b.trim().parse().ok()?);
        return (valid(a) && valid(b) && a <= b).then_some((a, b));
    }
    let n: u16 = s.parse().ok()?;
    valid(n).then_some((n, n))
}

/// An IANA time zone name such as `Europe/Berlin`.
pub fn parse_timezone(name: &str) -> Result<chrono_tz::Tz, String> {
    name.parse::<chrono_tz::Tz>().map_err(|_| {
        format!("{name:?} is not an IANA time zone (expected e.g. \"UTC\" or \"Europe/Berlin\")")
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn status_patterns() {
        assert_eq!(parse_status("2xx"), Some((200, 299)));
        assert_eq!(parse_status("201"), Some((201, 201)));
        assert_eq!(parse_status("200-204"), Some((200, 204)));
        assert_eq!(parse_status("7xx"), None);
        assert_eq!(parse_status("abc"), None);
        assert_eq!(parse_status("300-200"), None);
    }

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
