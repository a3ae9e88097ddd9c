//! Dashboard sessions and the throttle on failed sign-ins, both in memory and bounded.
//!
//! A session id is 256 random bits from the OS, so the cookie never carries the admin token
//! and a stolen cookie stops working at its expiry, at sign-out, or when tollgate restarts.
//! Failed attempts (a wrong token at `POST /api/login`, or a wrong bearer token anywhere) are
//! counted per client and overall; over either budget, every attempt is refused with 429
//! before the token is compared, so a throttled client learns nothing.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// Most sessions held at once; beyond it the oldest is dropped.
pub const MAX_SESSIONS: usize = 1_000;

/// Failed sign-ins one client may make in a burst, then one more every `CLIENT_REFILL`.
pub const CLIENT_BURST: f64 = 5.0;
/// 5 a minute once the burst is spent.
pub const CLIENT_REFILL: Duration = Duration::from_secs(12);
/// Failed sign-ins from all non-loopback clients together in a burst, then one a second, so
/// that a guess spread over many addresses is slow too.
pub const GLOBAL_BURST: f64 = 60.0;
pub const GLOBAL_REFILL: Duration = Duration::from_secs(1);
/// Clients tracked at once; when full, clients whose budget is whole again are forgotten,
/// and if none is, all are (the global budget still holds).
pub const MAX_CLIENTS: usize = 10_000;

/// Signed-in dashboard sessions: id → expiry.
pub struct Sessions {
    ttl: Duration,
    live: Mutex<HashMap<String, Instant>>,
}

impl Sessions {
    pub fn new(ttl: Duration) -> Self {
        Sessions {
            ttl,
            live: Mutex::new(HashMap::new()),
        }
    }

    pub fn ttl(&self) -> Duration {
        self.ttl
    }

    /// A new session id (64 hex digits), valid for the TTL from `now`.
    pub fn create(&self, now: Instant) -> Result<String, getrandom::Error> {
        let mut raw = [0u8; 32];
        getrandom::fill(&mut raw)?;
        let id: String = raw.iter().map(|b| format!("{b:02x}")).collect();
        let mut live = self.live.lock().unwrap_or_else(|p| p.into_inner());
        if live.len() >= MAX_SESSIONS {
            live.retain(|_, exp| *exp > now);
        }
        if live.len() >= MAX_SESSIONS {
            if let Some(oldest) = live
                .iter()
                .min_by_key(|(_, exp)| **exp)
                .map(|(k, _)| k.clone())
            {
                live.remove(&oldest);
            }
        }
        live.insert(id.clone(), now + self.ttl);
        Ok(id)
    }

    /// Whether `id` is a live session at `now`; an expired one is removed.
    pub fn check(&self, id: &str, now: Instant) -> bool {
        let mut live = self.live.lock().unwrap_or_else(|p| p.into_inner());
        match live.get(id) {
            Some(exp) if *exp > now => true,
            Some(_) => {
                live.remove(id);
                false
            }
            None => false,
        }
    }

    /// Sign out.
    pub fn remove(&self, id: &str) {
        self.live
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .remove(id);
    }
}

/// A token bucket: `tokens` attempts left as of `at`.
#[derive(Debug, Clone, Copy)]
struct Bucket {
    tokens: f64,
    at: Instant,
}

impl Bucket {
    fn full(burst: f64, now: Instant) -> Self {
        Bucket {
            tokens: burst,
            at: now,
        }
    }

    fn refill(&mut self, burst: f64, every: Duration, now: Instant) {
        // `now` may be a little older than `at` when requests race for the lock.
        if now > self.at {
            let gained = (now - self.at).as_secs_f64() / every.as_secs_f64();
            self.tokens = (self.tokens + gained).min(burst);
            self.at = now;
        }
    }

    /// Time until one attempt is available again (zero when one is).
    fn wait(&self, every: Duration) -> Duration {
        if self.tokens >= 1.0 {
            Duration::ZERO
        } else {
            every.mul_f64(1.0 - self.tokens)
        }
    }
}

struct ThrottleState {
    clients: HashMap<IpAddr, Bucket>,
    global: Bucket,
}

/// Failed sign-ins, per client address (IPv6 by /64) and overall.
pub struct Throttle {
    state: Mutex<ThrottleState>,
}

impl Default for Throttle {
    fn default() -> Self {
        Self::new(Instant::now())
    }
}

/// The address that stands for a client: IPv6 clients usually hold a whole /64.
fn key(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V6(v6) if v6.to_ipv4_mapped().is_none() => {
            let s = v6.segments();
            IpAddr::V6(std::net::Ipv6Addr::new(s[0], s[1], s[2], s[3], 0, 0, 0, 0))
        }
        IpAddr::V6(v6) => IpAddr::V4(v6.to_ipv4_mapped().expect("checked")),
        v4 => v4,
    }
}

impl Throttle {
    pub fn new(now: Instant) -> Self {
        Throttle {
            state: Mutex::new(ThrottleState {
                clients: HashMap::new(),
                global: Bucket::full(GLOBAL_BURST, now),
            }),
        }
    }

    /// `Err(wait)` when `client` may not try now: its own budget is spent, or (for a client
    /// that is not on loopback) everyone's is. Loopback is spared the global budget so that
    /// the CLI on the same machine still works while the API is being guessed at from afar.
    pub fn check(&self, client: Option<IpAddr>, now: Instant) -> Result<(), Duration> {
        let mut st = self.state.lock().unwrap_or_else(|p| p.into_inner());
        let mut wait = Duration::ZERO;
        if let Some(ip) = client {
            if let Some(b) = st.clients.get_mut(&key(ip)) {
                b.refill(CLIENT_BURST, CLIENT_REFILL, now);
                wait = wait.max(b.wait(CLIENT_REFILL));
            }
        }
        if !client.is_some_and(|ip| ip.is_loopback()) {
            st.global.refill(GLOBAL_BURST, GLOBAL_REFILL, now);
            wait = wait.max(st.global.wait(GLOBAL_REFILL));
        }
        if wait.is_zero() {
            Ok(())
        } else {
            Err(wait)
        }
    }

    /// Count one failed attempt by `client`.
    pub fn fail(&self, client: Option<IpAddr>, now: Instant) {
        let mut st = self.state.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(ip) = client {
            let k = key(ip);
            if !st.clients.contains_key(&k) && st.clients.len() >= MAX_CLIENTS {
                st.clients.retain(|_, b| {
                    b.refill(CLIENT_BURST, CLIENT_REFILL, now);
                    b.tokens < CLIENT_BURST
                });
                if st.clients.len() >= MAX_CLIENTS {
                    st.clients.clear();
                }
            }
            let b = st
                .clients
                .entry(k)
                .or_insert_with(|| Bucket::full(CLIENT_BURST, now));
            b.refill(CLIENT_BURST, CLIENT_REFILL, now);
            b.tokens = (b.tokens - 1.0).max(0.0);
        }
        if !client.is_some_and(|ip| ip.is_loopback()) {
            st.global.refill(GLOBAL_BURST, GLOBAL_REFILL, now);
            st.global.tokens = (st.global.tokens - 1.0).max(0.0);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sessions_expire_and_are_bounded() {
        let t0 = Instant::now();
        let s = Sessions::new(Duration::from_secs(60));
        let id = s.create(t0).unwrap();
        assert_eq!(id.len(), 64);
        assert!(s.check(&id, t0 + Duration::from_secs(59)));
        assert!(!s.check(&id, t0 + Duration::from_secs(60)));
        assert!(!s.check(&id, t0), "an expired session is gone for good");
        let first = s.create(t0).unwrap();
        for i in 0..MAX_SESSIONS {
            s.create(t0 + Duration::from_millis(i as u64 + 1)).unwrap();
        }
        assert_eq!(s.live.lock().unwrap().len(), MAX_SESSIONS);
        assert!(!s.check(&first, t0), "the oldest made room");
        let other = s.create(t0).unwrap();
        s.remove(&other);
        assert!(!s.check(&other, t0));
    }

    #[test]
    fn failures_are_throttled_per_client_and_overall() {
        let t0 = Instant::now();
        let t = Throttle::new(t0);
        let a: IpAddr = "203.0.113.7".parse().unwrap();
        for _ in 0..5 {
            assert!(t.check(Some(a), t0).is_ok());
            t.fail(Some(a), t0);
        }
        let wait = t.check(Some(a), t0).unwrap_err();
        assert_eq!(wait, CLIENT_REFILL);
        // One /64 is one client.
        let v6 = |s: &str| Some(s.parse::<IpAddr>().unwrap());
        for _ in 0..5 {
            t.fail(v6("2001:db8::1"), t0);
        }
        assert!(t.check(v6("2001:db8::ffff"), t0).is_err());
        assert!(t.check(v6("2001:db8:0:1::1"), t0).is_ok());
        // 60 failures over many addresses spend the global budget, but not loopback's.
        for i in 0..50u8 {
            t.fail(Some(IpAddr::from([198, 51, 100, i])), t0);
        }
        let fresh = Some(IpAddr::from([192, 0, 2, 1]));
        assert_eq!(t.check(fresh, t0).unwrap_err(), GLOBAL_REFILL);
        assert!(t.check(Some("127.0.0.1".parse().unwrap()), t0).is_ok());
        assert!(t.check(fresh, t0 + GLOBAL_REFILL).is_ok());
        assert!(t.check(Some(a), t0 + CLIENT_REFILL).is_ok(), "refilled");
    }
}
