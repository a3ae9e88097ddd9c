//! Which privacy mode a request gets (opt-out signals, consent gating, cookieless mode), and
//! the cookieless visitor id: a daily-rotating salted hash of IP, user agent and site.
//!
//! Runs in the request path: two header lookups, and for cookieless requests one SipHash over
//! about 200 bytes under an uncontended read lock.

use super::head::RequestHead;
use crate::config::Privacy;
use crate::event::PrivacyMode;
use siphasher::sip128::{Hasher128, SipHasher13};
use std::hash::Hasher;
use std::io::Write;
use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::sync::RwLock;
use tracing::warn;
use uuid::Uuid;

/// File in the data directory holding the current day's salt, so a restart does not split
/// every cookieless visitor in two. It holds one salt only: rotation overwrites it.
pub const SALT_FILE: &str = "cookieless.salt";

/// True when the request carries `Sec-GPC: 1` or `DNT: 1` and those are honoured.
pub fn opted_out(req: &RequestHead, cfg: &Privacy) -> bool {
    let is_one = |name: &str| {
        req.headers
            .get(name)
            .is_some_and(|v| v.as_bytes().trim_ascii() == b"1")
    };
    (cfg.honor_gpc && is_one("sec-gpc")) || (cfg.honor_dnt && is_one("dnt"))
}

/// The mode of a request, given whether it carries the consent cookie.
pub fn mode(req: &RequestHead, cfg: &Privacy, has_consent: bool) -> PrivacyMode {
    if opted_out(req, cfg) {
        PrivacyMode::Anonymous
    } else if cfg.cookieless || (cfg.consent.is_some() && !has_consent) {
        PrivacyMode::Cookieless
    } else {
        PrivacyMode::Identified
    }
}

/// Whether a cookie `name=value` is the configured consent cookie.
pub fn is_consent(cfg: &Privacy, name: &str, value: &str) -> bool {
    cfg.consent
        .as_ref()
        .is_some_and(|c| c.name == name && c.value.as_deref().is_none_or(|v| v == value.trim()))
}

/// The day number (UTC) of a timestamp in microseconds.
pub fn day_of(ts_us: i64) -> i64 {
    ts_us.div_euclid(86_400_000_000)
}

struct DaySalt {
    day: i64,
    key: [u8; 16],
}

/// The cookieless salt. It lives in memory and in [`SALT_FILE`], never in the store, and is
/// replaced by a fresh random one on the first request of each UTC day: yesterday's ids cannot
/// be recomputed, so visitors cannot be followed across days.
pub struct Salt {
    file: Option<PathBuf>,
    current: RwLock<DaySalt>,
}

impl Salt {
    /// Load today's salt from `data_dir`, or make one. With `data_dir = None` (cookieless mode
    /// unused) nothing is written.
    pub fn load(data_dir: Option<&Path>, today: i64) -> Salt {
        let file = data_dir.map(|d| d.join(SALT_FILE));
        let loaded = file
            .as_deref()
            .and_then(|f| std::fs::read_to_string(f).ok())
            .and_then(|t| parse(&t))
            .filter(|s| s.day == today);
        let current = match loaded {
            Some(s) => s,
            None => {
                let s = DaySalt::fresh(today);
                if let Some(f) = &file {
                    persist(f, &s);
                }
                s
            }
        };
        Salt {
            file,
            current: RwLock::new(current),
        }
    }

    /// The cookieless visitor id of a client on `day`: a UUIDv8 made of a keyed SipHash-1-3
    /// (128 bits) of site, IP and user agent.
    pub fn visitor_id(&self, day: i64, site: &str, ip: Option<IpAddr>, ua: &[u8]) -> Uuid {
        if let Ok(g) = self.current.read() {
            if g.day == day {
                return hash(&g.key, site, ip, ua);
            }
        }
        let mut g = match self.current.write() {
            Ok(g) => g,
            Err(poisoned) => poisoned.into_inner(),
        };
        if g.day != day {
            *g = DaySalt::fresh(day);
            if let Some(f) = self.file.clone() {
                // Once a day, off the request's back.
                let copy = DaySalt {
                    day: g.day,
                    key: g.key,
                };
                std::thread::spawn(move || persist(&f, &copy));
            }
        }
        hash(&g.key, site, ip, ua)
    }
}

impl DaySalt {
    fn fresh(day: i64) -> DaySalt {
        let mut key = [0u8; 16];
        if let Err(error) = getrandom::fill(&mut key) {
            // Never reached on Linux; a zero key would still rotate daily via the day below.
            warn!(%error, "No randomness for the cookieless salt.");
        }
        DaySalt { day, key }
    }
}

fn hash(key: &[u8; 16], site: &str, ip: Option<IpAddr>, ua: &[u8]) -> Uuid {
    let mut h = SipHasher13::new_with_key(key);
    h.write(site.as_bytes());
    h.write_u8(0);
    match ip {
        Some(IpAddr::V4(a)) => h.write(&a.octets()),
        Some(IpAddr::V6(a)) => h.write(&a.octets()),
        None => {}
    }
    h.write_u8(0);
    h.write(ua);
    Uuid::new_v8(h.finish128().as_bytes())
}

fn parse(text: &str) -> Option<DaySalt> {
    let v: serde_json::Value = serde_json::from_str(text).ok()?;
    let day = v.get("day")?.as_i64()?;
    let hex = v.get("key")?.as_str()?;
    if hex.len() != 32 {
        return None;
    }
    let mut key = [0u8; 16];
    for (i, k) in key.iter_mut().enumerate() {
        *k = u8::from_str_radix(hex.get(i * 2..i * 2 + 2)?, 16).ok()?;
    }
    Some(DaySalt { day, key })
}

/// Write atomically (temp file, then rename), readable by the owner only.
fn persist(file: &Path, s: &DaySalt) {
    use std::os::unix::fs::OpenOptionsExt;
    let hex: String = s.key.iter().map(|b| format!("{b:02x}")).collect();
    let text = serde_json::json!({ "day": s.day, "key": hex }).to_string();
    let tmp = file.with_extension("tmp");
    let res = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(&tmp)
        .and_then(|mut f| f.write_all(text.as_bytes()))
        .and_then(|()| std::fs::rename(&tmp, file));
    if let Err(error) = res {
        warn!(%error, file = %file.display(), "Cannot save the cookieless salt; a restart today will change cookieless visitor ids.");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn same_day_same_id_next_day_another() {
        let dir = tempfile::tempdir().unwrap();
        let ip: Option<IpAddr> = Some("203.0.113.9".parse().unwrap());
        let s = Salt::load(Some(dir.path()), 100);
        let a = s.visitor_id(100, "shop", ip, b"UA");
        assert_eq!(a, s.visitor_id(100, "shop", ip, b"UA"));
        assert_eq!(a.get_version_num(), 8);
        assert_ne!(a, s.visitor_id(100, "shop", ip, b"UA2"));
        assert_ne!(a, s.visitor_id(100, "blog", ip, b"UA"));
        // A restart on the same day keeps the salt.
        let s2 = Salt::load(Some(dir.path()), 100);
        assert_eq!(a, s2.visitor_id(100, "shop", ip, b"UA"));
        // The next day rotates it, in memory and on disk.
        let b = s2.visitor_id(101, "shop", ip, b"UA");
        assert_ne!(a, b);
        assert_eq!(b, s2.visitor_id(101, "shop", ip, b"UA"));
        // The rotation is saved from a background thread.
        let file = dir.path().join(SALT_FILE);
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
        while std::fs::read_to_string(&file)
            .ok()
            .and_then(|t| parse(&t))
            .is_none_or(|d| d.day != 101)
        {
            assert!(std::time::Instant::now() < deadline, "salt not saved");
            std::thread::sleep(std::time::Duration::from_millis(10));
        }
        assert_eq!(
            b,
            Salt::load(Some(dir.path()), 101).visitor_id(101, "shop", ip, b"UA")
        );
        // Going back a day does not bring the old salt back.
        assert_ne!(
            a,
            Salt::load(Some(dir.path()), 100).visitor_id(100, "shop", ip, b"UA")
        );
    }
}
