//! Validated, internal configuration types: what the rest of tollgate reads. Each section of
//! the file is validated by the module of its name, into its part of [`Settings`];
//! [`validate`] puts the parts together.

mod capture;
mod console;
mod enrich;
mod identity;
mod ingest;
mod inject;
mod pipeline;
mod privacy;
mod server;
pub(super) mod sinks;
mod site;
mod store;
mod upstream;

pub use capture::{Capture, PathPattern, Rule};
pub use console::Console;
pub use enrich::Enrich;
pub use identity::Identity;
pub use ingest::Ingest;
pub use inject::Inject;
pub use pipeline::Pipeline;
pub use privacy::{Consent, IpHandling, Privacy};
pub use sinks::{without_password, FileFormat, SinkSettings, SinkTarget};
pub use site::parse_timezone;
pub use store::{StoreOptions, StoreSettings};
pub use upstream::{parse_upstream, Upstream};

use super::file::{self, FileConfig};
use super::problems::Problems;
use ipnet::IpNet;
use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;
use std::time::Duration;

#[derive(Debug, Clone)]
pub struct Settings {
    /// `server.listen`: the proxy listener.
    pub listen: SocketAddr,
    /// `server.admin`: the admin listener (dashboard, API, metrics, health).
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
    pub store: StoreSettings,
    pub console: Console,
    pub sinks: Vec<SinkSettings>,
}

/// Validate `f` into [`Settings`]: each section by its own module, under its own name, and all
/// of them before giving up, so that one run reports every problem. Returns `None` only when a
/// problem was reported.
///
/// No check spans two sections. One that had to (a key whose meaning depends on another
/// section) would go here, after the sections, and say so.
pub(super) fn validate(f: &FileConfig, p: &mut Problems) -> Option<Settings> {
    let before = p.count();
    // Each section has its module, its field in `f` and its key all of one name.
    macro_rules! validate {
        ($($section:ident),*) => {
            $(let $section = $section::validate(&f.$section, &mut p.under(stringify!($section)));)*
        };
    }
    // server, upstream, identity, site and privacy yield `None` when their section has a
    // problem (an address, a URL, a header name, a time zone or an IP mode that does not
    // parse); the others always yield their part, leaving out what has a problem.
    validate!(server, upstream, identity, capture, pipeline, site, privacy);
    validate!(enrich, ingest, inject, store, console, sinks);
    if p.count() > before {
        return None;
    }
    let (server, site, s) = (server?, site?, &f.server);
    Some(Settings {
        listen: server.listen,
        admin: server.admin,
        admin_token: server.admin_token,
        admin_hosts: server.admin_hosts,
        admin_session_ttl: Duration::from_secs(s.admin_session_mins * 60),
        admin_max_connections: s.admin_max_connections,
        admin_header_timeout: Duration::from_secs(s.admin_header_timeout_secs),
        data_dir: PathBuf::from(&s.data_dir),
        threads: server::threads(s),
        work_stealing: s.work_stealing,
        keepalive_secs: s.keepalive_secs,
        keepalive_requests: s.keepalive_requests,
        shutdown_grace_secs: s.shutdown_grace_secs,
        trusted_proxies: server.trusted_proxies,
        header_timeout: Duration::from_secs(s.header_timeout_secs),
        max_connections: s.max_connections,
        upstream: upstream?,
        identity: identity?,
        capture,
        pipeline,
        site_id: site.id,
        timezone: site.timezone,
        privacy: privacy?,
        enrich,
        ingest,
        inject,
        store,
        console,
        sinks,
    })
}

/// A byte allowed in the cookie names tollgate accepts.
fn is_token_byte(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b == b'_' || b == b'-' || b == b'.'
}

/// The list `key` of IP addresses and CIDR networks; `example` is a network for the message.
fn nets(list: &[String], key: &str, example: &str, p: &mut Problems) -> Vec<IpNet> {
    let mut nets = Vec::new();
    for (i, n) in list.iter().enumerate() {
        match parse_net(n) {
            Some(n) => nets.push(n),
            None => p.item(key, i).here(format!(
                "{n:?} is not an IP address or CIDR (expected e.g. {example})"
            )),
        }
    }
    nets
}

/// An IP address or a CIDR network.
fn parse_net(s: &str) -> Option<IpNet> {
    let s = s.trim();
    s.parse::<IpNet>()
        .ok()
        .or_else(|| s.parse::<IpAddr>().ok().map(IpNet::from))
}
