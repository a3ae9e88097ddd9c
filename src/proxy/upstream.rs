//! The upstream: its addresses, resolved off the request path, and the peer for each request.
//!
//! Resolved at start-up and refreshed in a background thread, so that no request waits on DNS;
//! the workers' pools ([`super::pool`]) connect to [`UpstreamTarget::next_addr`].

use crate::config::Upstream;
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

    /// The address for the next connection: round-robin over the resolved addresses (shared by
    /// every worker, so that each spreads its connections too).
    pub fn next_addr(&self) -> SocketAddr {
        let i = self.next.fetch_add(1, Ordering::Relaxed);
        let addrs = self.addrs.read().unwrap_or_else(|p| p.into_inner());
        addrs[i % addrs.len()]
    }

    /// How many addresses the upstream host has now.
    pub fn addr_count(&self) -> usize {
        self.addrs.read().map_or(1, |g| g.len())
    }

    pub fn config(&self) -> &Upstream {
        &self.cfg
    }
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
