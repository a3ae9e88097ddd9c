//! Per-client token buckets for the browser endpoint (`<collect_prefix>/e`): each client IP may
//! send `ingest.collect_rate` events a second on average, `ingest.collect_burst` at once.
//!
//! Keyed by the client address (an IPv6 client by its /64, which one household or phone
//! usually gets whole). Memory is bounded: the table is sharded, and a full shard forgets the
//! clients whose buckets have refilled, or, under a flood from many addresses, all of them.
//! The limit is there to make one client cheap, not to stop a distributed flood; the queue's
//! bounds do that.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::Mutex;
use std::time::{Duration, Instant};

const SHARDS: usize = 16;
/// Clients tracked per shard at most: 16 × 4,096 ≈ 65k clients, a few MiB.
const PER_SHARD: usize = 4096;

/// The limiter. Shared by the proxy threads.
pub struct RateLimiter {
    /// Tokens per second.
    rate: f64,
    burst: f64,
    shards: [Mutex<HashMap<IpAddr, Bucket>>; SHARDS],
}

#[derive(Debug, Clone, Copy)]
struct Bucket {
    tokens: f64,
    at: Instant,
}

impl RateLimiter {
    /// `rate` tokens a second, `burst` at most.
    pub fn new(rate: u32, burst: u32) -> Self {
        RateLimiter {
            rate: f64::from(rate),
            burst: f64::from(burst.max(1)),
            shards: std::array::from_fn(|_| Mutex::new(HashMap::new())),
        }
    }

    /// Take `n` tokens for `ip`. `Err` is how long until they would be there: the request is
    /// refused, and nothing is taken.
    pub fn take(&self, ip: IpAddr, n: u32, now: Instant) -> Result<(), Duration> {
        let key = key(ip);
        let shard = &self.shards[shard_of(&key)];
        let mut map = shard.lock().unwrap_or_else(|e| e.into_inner());
        if map.len() >= PER_SHARD && !map.contains_key(&key) {
            let (rate, burst) = (self.rate, self.burst);
            map.retain(|_, b| refill(b, now, rate, burst) < burst);
            if map.len() >= PER_SHARD {
                map.clear();
            }
        }
        let b = map.entry(key).or_insert(Bucket {
            tokens: self.burst,
            at: now,
        });
        b.tokens = refill(b, now, self.rate, self.burst);
        b.at = now;
        let need = f64::from(n);
        if b.tokens >= need {
            b.tokens -= need;
            Ok(())
        } else {
            let missing = need.min(self.burst) - b.tokens;
            Err(Duration::from_secs_f64((missing / self.rate).max(0.001)))
        }
    }
}

/// Tokens in `b` at `now`.
fn refill(b: &Bucket, now: Instant, rate: f64, burst: f64) -> f64 {
    let secs = now.saturating_duration_since(b.at).as_secs_f64();
    (b.tokens + secs * rate).min(burst)
}

/// An IPv6 client is its /64.
fn key(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V4(_) => ip,
        IpAddr::V6(v6) => {
            let s = v6.segments();
            IpAddr::from([s[0], s[1], s[2], s[3], 0, 0, 0, 0])
        }
    }
}

fn shard_of(ip: &IpAddr) -> usize {
    use std::hash::{Hash, Hasher};
    let mut h = std::collections::hash_map::DefaultHasher::new();
    ip.hash(&mut h);
    h.finish() as usize % SHARDS
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn buckets_refill_at_the_rate() {
        let l = RateLimiter::new(10, 20);
        let ip: IpAddr = "203.0.113.7".parse().unwrap();
        let t0 = Instant::now();
        assert!(l.take(ip, 20, t0).is_ok());
        let wait = l.take(ip, 1, t0).unwrap_err();
        assert!(wait <= Duration::from_millis(101), "{wait:?}");
        assert!(l.take(ip, 5, t0 + Duration::from_millis(500)).is_ok());
        assert!(l.take(ip, 1, t0 + Duration::from_millis(500)).is_err());
        // Another client has its own bucket; an IPv6 client is its /64.
        assert!(l.take("203.0.113.8".parse().unwrap(), 20, t0).is_ok());
        let a: IpAddr = "2001:db8:1:2::1".parse().unwrap();
        let b: IpAddr = "2001:db8:1:2:ffff::9".parse().unwrap();
        assert!(l.take(a, 20, t0).is_ok());
        assert!(l.take(b, 1, t0).is_err());
    }

    #[test]
    fn memory_is_bounded() {
        let l = RateLimiter::new(1, 1);
        let t0 = Instant::now();
        for i in 0..(SHARDS * PER_SHARD * 3) as u32 {
            let _ = l.take(IpAddr::from(i.to_be_bytes()), 1, t0);
        }
        let total: usize = l.shards.iter().map(|s| s.lock().unwrap().len()).sum();
        assert!(total <= SHARDS * PER_SHARD, "{total}");
    }
}
