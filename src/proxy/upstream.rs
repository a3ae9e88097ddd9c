//! The upstream: its addresses, resolved off the request path, and the peer for each request.
//!
//! `HttpPeer::new` with a host name does a blocking DNS lookup and panics when it fails, so we
//! resolve at start-up and refresh in a background thread, and give Pingora a `SocketAddr`.

use crate::config::Upstream;
use pingora::upstreams::peer::{HttpPeer, PeerOptions};
use std::net::{SocketAddr, ToSocketAddrs};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, RwLock};
use std::time::Duration;
use tracing::warn;

pub struct UpstreamTarget {
    cfg: Upstream,
    addrs: RwLock<Arc<Vec<SocketAddr>>>,
    next: AtomicUsize,
}

#[derive(Debug, thiserror::Error)]
#[error("cannot resolve upstream host {host:?} of {url}: {reason} (check upstream.url, or that DNS works on this machine)")]
pub struct ResolveError {
    host: String,
    url: String,
    reason: String,
}

impl UpstreamTarget {
    /// Resolve `cfg`'s host now; fail if it has no address.
    pub fn resolve(cfg: Upstream) -> Result<Arc<Self>, ResolveError> {
        let addrs = lookup(&cfg)?;
        Ok(Arc::new(UpstreamTarget {
            cfg,
            addrs: RwLock::new(Arc::new(addrs)),
            next: AtomicUsize::new(0),
        }))
    }

    /// Re-resolve every `every` in a background thread, keeping the old addresses on failure.
    pub fn spawn_refresh(self: &Arc<Self>, every: Duration) {
        if self.cfg.host.parse::<std::net::IpAddr>().is_ok() {
            return;
        }
        let me = Arc::downgrade(self);
        let _ = std::thread::Builder::new()
            .name("tollgate-dns".into())
            .spawn(move || loop {
                std::thread::sleep(every);
                let Some(me) = me.upgrade() else { return };
                match lookup(&me.cfg) {
                    Ok(a) => {
                        if let Ok(mut g) = me.addrs.write() {
                            *g = Arc::new(a);
                        }
                    }
                    Err(error) => {
                        warn!(%error, "Upstream DNS refresh failed; keeping old addresses.")
                    }
                }
            });
    }

    /// The peer for one request: the next address, round-robin, with the configured timeouts.
    pub fn peer(&self) -> Box<HttpPeer> {
        let addrs = self
            .addrs
            .read()
            .map(|g| g.clone())
            .unwrap_or_else(|p| p.into_inner().clone());
        let addr = addrs[self.next.fetch_add(1, Ordering::Relaxed) % addrs.len()];
        let c = &self.cfg;
        // The SNI is only sent over TLS; for plain HTTP an empty one costs no allocation.
        let sni = if c.tls { c.host.clone() } else { String::new() };
        let mut peer = HttpPeer::new(addr, c.tls, sni);
        set_timeouts(&mut peer.options, c);
        peer.options.verify_cert = c.verify_tls;
        peer.options.verify_hostname = c.verify_tls;
        Box::new(peer)
    }

    /// How many addresses the upstream host has now.
    pub fn addr_count(&self) -> usize {
        self.addrs.read().map_or(1, |g| g.len())
    }

    pub fn config(&self) -> &Upstream {
        &self.cfg
    }
}

/// The configured upstream timeouts on a peer's options.
pub fn set_timeouts(o: &mut PeerOptions, c: &Upstream) {
    o.connection_timeout = Some(c.connect_timeout);
    o.total_connection_timeout = Some(c.connect_timeout * 2);
    o.read_timeout = Some(c.read_timeout);
    o.write_timeout = Some(c.write_timeout);
    o.idle_timeout = Some(c.idle_timeout);
}

fn lookup(cfg: &Upstream) -> Result<Vec<SocketAddr>, ResolveError> {
    let err = |reason: String| ResolveError {
        host: cfg.host.clone(),
        url: cfg.url.clone(),
        reason,
    };
    let addrs: Vec<SocketAddr> = (cfg.host.as_str(), cfg.port)
        .to_socket_addrs()
        .map_err(|e| err(e.to_string()))?
        .collect();
    if addrs.is_empty() {
        return Err(err("no addresses".into()));
    }
    Ok(addrs)
}
