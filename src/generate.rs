//! A synthetic, realistic dataset for tests and benchmarks: `tollgate generate`.
//!
//! Visitors with a device and a country make sessions over the last `days` days. Each session
//! comes from a source (direct, search, Facebook posts and ads, Google Ads, a newsletter,
//! referrals), views pages from a long tail (thousands of products and blog posts, Zipf-like),
//! calls the site's API (with realistic latencies and some errors), and sometimes registers
//! (a server event that ties the visitor to a user) and buys (with a category). Some
//! registrations happen in a later session, some people come back on a second device, and a
//! few visitors are bots. The same seed always gives the same events.
//!
//! Events are written straight into the store, already enriched, as the pipeline would have
//! written them.

use crate::event::{Event, Source};
use crate::store::{Store, StoreError};
use uuid::Uuid;

/// What to generate.
#[derive(Debug, Clone)]
pub struct Spec {
    pub events: u64,
    pub days: u32,
    pub seed: u64,
    /// The newest event's time, UTC microseconds (usually now).
    pub end_us: i64,
    pub site: String,
}

/// A small, fast, seedable generator (SplitMix64); statistical quality is ample here.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// Uniform in [0, 1).
    fn f(&mut self) -> f64 {
        (self.next() >> 11) as f64 / (1u64 << 53) as f64
    }

    fn below(&mut self, n: u64) -> u64 {
        self.next() % n.max(1)
    }

    fn chance(&mut self, p: f64) -> bool {
        self.f() < p
    }

    /// An index into `weights`, proportionally.
    fn pick(&mut self, weights: &[f64]) -> usize {
        let total: f64 = weights.iter().sum();
        let mut x = self.f() * total;
        for (i, w) in weights.iter().enumerate() {
            if x < *w {
                return i;
            }
            x -= w;
        }
        weights.len() - 1
    }

    /// 1..=n, with rank r about 1/r as likely (a long tail).
    fn zipf(&mut self, n: u64) -> u64 {
        // Inverse of the continuous 1/x distribution on [1, n+1).
        let x = ((n as f64 + 1.0).ln() * self.f()).exp();
        (x as u64).clamp(1, n)
    }

    /// Exponentially distributed with this mean.
    fn exp(&mut self, mean: f64) -> f64 {
        -mean * (1.0 - self.f()).ln()
    }

    fn uuid(&mut self) -> Uuid {
        let b = ((self.next() as u128) << 64) | self.next() as u128;
        uuid::Builder::from_random_bytes(b.to_be_bytes()).into_uuid()
    }
}

/// (device_type, browser, os, user agent, weight)
const DEVICES: &[(&str, &str, &str, &str, f64)] = &[
    ("desktop", "Chrome", "Windows", "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/131.0.0.0 Safari/537.36", 30.0),
    ("mobile", "Mobile Safari", "iOS", "Mozilla/5.0 (iPhone; CPU iPhone OS 18_1 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/18.1 Mobile/15E148 Safari/604.1", 25.0),
    ("mobile", "Chrome Mobile", "Android", "Mozilla/5.0 (Linux; Android 14; Pixel 8) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/131.0.0.0 Mobile Safari/537.36", 18.0),
    ("desktop", "Safari", "Mac OS X", "Mozilla/5.0 (Macintosh; Intel Mac OS X 10_15_7) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/18.1 Safari/605.1.15", 10.0),
    ("desktop", "Firefox", "Linux", "Mozilla/5.0 (X11; Linux x86_64; rv:133.0) Gecko/20100101 Firefox/133.0", 5.0),
    ("desktop", "Edge", "Windows", "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/131.0.0.0 Safari/537.36 Edg/131.0.0.0", 6.0),
    ("tablet", "Mobile Safari", "iOS", "Mozilla/5.0 (iPad; CPU OS 18_1 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/18.1 Mobile/15E148 Safari/604.1", 4.0),
    ("tablet", "Samsung Internet", "Android", "Mozilla/5.0 (Linux; Android 13; SM-X710) AppleWebKit/537.36 (KHTML, like Gecko) SamsungBrowser/26.0 Chrome/122.0.0.0 Safari/537.36", 2.0),
];

const BOTS: &[(&str, &str)] = &[
    (
        "Googlebot",
        "Mozilla/5.0 (compatible; Googlebot/2.1; +http://www.google.com/bot.html)",
    ),
    (
        "bingbot",
        "Mozilla/5.0 (compatible; bingbot/2.0; +http://www.bing.com/bingbot.htm)",
    ),
    (
        "AhrefsBot",
        "Mozilla/5.0 (compatible; AhrefsBot/7.0; +http://ahrefs.com/robot/)",
    ),
    ("curl", "curl/8.5.0"),
];

const COUNTRIES: &[(&str, f64)] = &[
    ("US", 30.0),
    ("DE", 14.0),
    ("GB", 10.0),
    ("FR", 8.0),
    ("IN", 7.0),
    ("BR", 5.0),
    ("CA", 5.0),
    ("NL", 4.0),
    ("JP", 4.0),
    ("ES", 3.0),
    ("IT", 3.0),
    ("PL", 2.0),
    ("SE", 2.0),
    ("AU", 2.0),
    ("MX", 1.0),
];

/// Where a session comes from. Campaign names are completed per session.
struct Origin {
    channel: &'static str,
    referrer: Option<&'static str>,
    source: Option<&'static str>,
    medium: Option<&'static str>,
    campaign: Option<&'static str>,
    click_id: Option<&'static str>,
    weight: f64,
}

const fn origin(
    channel: &'static str,
    referrer: Option<&'static str>,
    utm: Option<(&'static str, &'static str, &'static str)>,
    click_id: Option<&'static str>,
    weight: f64,
) -> Origin {
    let (source, medium, campaign) = match utm {
        Some((s, m, c)) => (Some(s), Some(m), Some(c)),
        None => (None, None, None),
    };
    Origin {
        channel,
        referrer,
        source,
        medium,
        campaign,
        click_id,
        weight,
    }
}

const ORIGINS: &[Origin] = &[
    origin("Direct", None, None, None, 30.0),
    origin("Organic Search", Some("www.google.com"), None, None, 22.0),
    origin("Organic Search", Some("www.bing.com"), None, None, 3.0),
    origin(
        "Organic Social",
        Some("l.facebook.com"),
        Some(("facebook", "social", "post")),
        None,
        9.0,
    ),
    origin(
        "Paid Social",
        Some("l.facebook.com"),
        Some(("facebook", "paid_social", "ads")),
        Some("fbclid"),
        6.0,
    ),
    origin(
        "Organic Social",
        Some("l.instagram.com"),
        Some(("instagram", "social", "post")),
        None,
        4.0,
    ),
    origin(
        "Paid Search",
        Some("www.google.com"),
        Some(("google", "cpc", "ads")),
        Some("gclid"),
        10.0,
    ),
    origin(
        "Email",
        None,
        Some(("newsletter", "email", "weekly")),
        None,
        6.0,
    ),
    origin("Referral", Some("news.ycombinator.com"), None, None, 3.0),
    origin("Referral", Some("www.reddit.com"), None, None, 3.0),
    origin("Referral", Some("dpreview.com"), None, None, 4.0),
];

const CAMPAIGN_THEMES: &[&str] = &[
    "cameras",
    "lenses",
    "summer_sale",
    "black_friday",
    "tripods",
];
const CATEGORIES: &[&str] = &["cameras", "lenses", "tripods", "bags", "memory"];
const PLANS: &[&str] = &["free", "plus", "pro"];

/// One visitor's fixed traits.
struct Visitor {
    id: Uuid,
    device: usize,
    bot: Option<usize>,
    country: &'static str,
    user: Option<String>,
}

/// Builds events into a buffer, with strictly increasing times within a session.
struct Gen<'a> {
    rng: Rng,
    spec: &'a Spec,
    out: Vec<Event>,
    users: u64,
    /// Registered users who may come back on a second device.
    returning: Vec<String>,
}

impl Gen<'_> {
    fn event(
        &mut self,
        v: &Visitor,
        session: Uuid,
        name: &str,
        ts_us: i64,
        source: Source,
    ) -> Event {
        let mut e = Event {
            event_id: self.rng.uuid(),
            ts_us,
            received_at_us: ts_us,
            site: self.spec.site.clone(),
            name: name.into(),
            source: Some(source),
            visitor_id: Some(v.id),
            session_id: Some(session),
            user_id: v.user.clone(),
            host: Some("shop.example".into()),
            country: Some(v.country.into()),
            ..Default::default()
        };
        match v.bot {
            Some(b) => {
                e.browser = Some(BOTS[b].0.into());
                e.user_agent = Some(BOTS[b].1.into());
                e.device_type = Some("bot".into());
                e.is_bot = Some(true);
                e.bot_reason = Some("ua".into());
            }
            None => {
                let d = DEVICES[v.device];
                e.device_type = Some(d.0.into());
                e.browser = Some(d.1.into());
                e.os = Some(d.2.into());
                e.user_agent = Some(d.3.into());
                e.is_bot = Some(false);
            }
        }
        e
    }

    fn page(&mut self) -> String {
        match self
            .rng
            .pick(&[12.0, 8.0, 40.0, 18.0, 4.0, 2.0, 5.0, 3.0, 4.0, 4.0])
        {
            0 => "/".into(),
            1 => "/products".into(),
            2 => format!("/product/{}", self.rng.zipf(2000)),
            3 => format!("/blog/post-{}", self.rng.zipf(800)),
            4 => "/pricing".into(),
            5 => "/about".into(),
            6 => "/cart".into(),
            7 => "/checkout".into(),
            8 => "/register".into(),
            _ => "/search".into(),
        }
    }

    /// An API call made by the page at `path`, at `ts`.
    fn api_call(&mut self, v: &Visitor, session: Uuid, path: &str, ts: i64) -> Event {
        let (method, p, route, base_ms, fail) = if let Some(id) = path.strip_prefix("/product/") {
            (
                "GET",
                format!("/api/products/{id}"),
                "/api/products/:id",
                18.0,
                0.005,
            )
        } else if path == "/search" {
            ("GET", "/api/search".into(), "/api/search", 120.0, 0.04)
        } else if path == "/cart" || path == "/checkout" {
            ("POST", "/api/cart".into(), "/api/cart", 45.0, 0.01)
        } else {
            ("GET", "/api/session".into(), "/api/session", 6.0, 0.002)
        };
        let mut e = self.event(v, session, "api_call", ts, Source::Proxy);
        e.method = Some(method.into());
        e.path = Some(p);
        e.route = Some(route.into());
        let status = if self.rng.chance(fail) {
            500
        } else if self.rng.chance(0.02) {
            404
        } else {
            200
        };
        e.status = Some(status);
        // A long right tail: mostly near the base, sometimes many times slower.
        let ms =
            base_ms * (0.5 + self.rng.exp(0.6)) * if self.rng.chance(0.02) { 8.0 } else { 1.0 };
        e.duration_ms = Some((ms * 1000.0).round() / 1000.0);
        e.bytes_out = Some(200 + self.rng.below(8000));
        e
    }

    /// One session of `v` from `start_us`: its page views (and their API calls), then, for a
    /// person, its conversions.
    fn session(&mut self, v: &mut Visitor, start_us: i64, returning_session: bool) {
        let session = self.rng.uuid();
        let o = if returning_session {
            &ORIGINS[0] // came back directly
        } else {
            &ORIGINS[self
                .rng
                .pick(&ORIGINS.iter().map(|o| o.weight).collect::<Vec<_>>())]
        };
        let campaign = o.campaign.map(|c| {
            let theme = CAMPAIGN_THEMES[self.rng.pick(&[5.0, 3.0, 2.0, 2.0, 1.0])];
            format!("{c}_{theme}")
        });
        let pages = if self.rng.chance(0.4) {
            1
        } else {
            2 + self.rng.exp(4.0) as u64
        }
        .min(60);
        let mut ts = start_us;
        let mut visited_register = false;
        let mut visited_checkout = false;
        for i in 0..pages {
            let path = if i == 0 && campaign.is_some() && self.rng.chance(0.5) {
                format!("/product/{}", self.rng.zipf(50))
            } else {
                self.page()
            };
            visited_register |= path == "/register";
            visited_checkout |= path == "/checkout";
            let mut e = self.event(v, session, "page_view", ts, Source::Proxy);
            e.method = Some("GET".into());
            e.status = Some(200);
            e.duration_ms = Some(((5.0 + self.rng.exp(25.0)) * 1000.0).round() / 1000.0);
            e.route = Some(path.clone());
            if i == 0 {
                self.attribute(&mut e, o, &campaign);
            } else {
                e.referrer_host = Some("shop.example".into());
            }
            e.path = Some(path.clone());
            let api_calls = if v.bot.is_some() {
                0
            } else {
                self.rng.below(3)
            };
            self.out.push(e);
            for k in 0..api_calls {
                let call = self.api_call(v, session, &path, ts + 1_000 * (k as i64 + 1) + 137);
                self.out.push(call);
            }
            ts += (self.rng.exp(40.0) * 1e6) as i64 + 2_000_000;
        }
        if v.bot.is_some() {
            return;
        }
        self.conversions(v, session, ts, visited_register, visited_checkout);
    }

    /// The traffic source of a session's first page view `e`: channel, referrer, campaign
    /// parameters and click id, from its origin `o` and `campaign` (the completed name).
    fn attribute(&mut self, e: &mut Event, o: &Origin, campaign: &Option<String>) {
        e.channel = Some(o.channel.into());
        e.referrer_host = o.referrer.map(Into::into);
        e.referrer = o.referrer.map(|h| format!("https://{h}/"));
        e.utm_source = o.source.map(Into::into);
        e.utm_medium = o.medium.map(Into::into);
        e.utm_campaign = campaign.clone();
        if o.source.is_some() && self.rng.chance(0.3) {
            e.utm_content = Some(format!("creative_{}", self.rng.below(4)));
        }
        if o.medium == Some("cpc") {
            e.utm_term = Some(
                ["camera", "mirrorless camera", "lens 50mm"][self.rng.below(3) as usize].into(),
            );
        }
        if let Some(c) = o.click_id {
            e.click_id_type = Some(c.into());
            e.click_id = Some(format!("{:016x}", self.rng.next()));
        }
    }

    /// Conversions, as server events right after the session's pages (which ended at `ts`):
    /// registering (likelier after visiting /register), purchasing (likelier after /checkout),
    /// a newsletter click.
    fn conversions(
        &mut self,
        v: &mut Visitor,
        session: Uuid,
        mut ts: i64,
        visited_register: bool,
        visited_checkout: bool,
    ) {
        let registers =
            v.user.is_none() && (visited_register && self.rng.chance(0.5) || self.rng.chance(0.03));
        if registers {
            self.users += 1;
            let user = format!("user-{:06}", self.users);
            v.user = Some(user.clone());
            let mut e = self.event(v, session, "registered", ts, Source::Server);
            e.props = Some(
                serde_json::json!({"plan": PLANS[self.rng.pick(&[6.0, 3.0, 1.0])]}).to_string(),
            );
            self.out.push(e);
            ts += 1_000_000;
            if self.rng.chance(0.1) {
                self.returning.push(user);
            }
        }
        if (visited_checkout && self.rng.chance(0.6)) || (v.user.is_some() && self.rng.chance(0.05))
        {
            let mut e = self.event(v, session, "purchased", ts, Source::Server);
            let value = 20 + self.rng.below(1500);
            e.props = Some(
                serde_json::json!({"category": CATEGORIES[self.rng.pick(&[4.0, 3.0, 1.0, 1.0, 1.0])], "value": value})
                    .to_string(),
            );
            self.out.push(e);
        }
        if self.rng.chance(0.15) {
            let mut e = self.event(
                v,
                session,
                "newsletter_click",
                ts + 500_000,
                Source::Browser,
            );
            let button = ["header", "footer", "popup"][self.rng.below(3) as usize];
            e.props = Some(serde_json::json!({ "button": button }).to_string());
            self.out.push(e);
        }
    }

    fn visitor(&mut self) {
        let span = i64::from(self.spec.days) * 86_400_000_000;
        let start = self.spec.end_us - span;
        let bot = self
            .rng
            .chance(0.03)
            .then(|| self.rng.below(BOTS.len() as u64) as usize);
        // Some registered people come back on a second device, signed in.
        let user = if bot.is_none() && !self.returning.is_empty() && self.rng.chance(0.05) {
            let i = self.rng.below(self.returning.len() as u64) as usize;
            Some(self.returning.swap_remove(i))
        } else {
            None
        };
        let mut v = Visitor {
            id: self.rng.uuid(),
            device: self
                .rng
                .pick(&DEVICES.iter().map(|d| d.4).collect::<Vec<_>>()),
            bot,
            country: COUNTRIES[self
                .rng
                .pick(&COUNTRIES.iter().map(|c| c.1).collect::<Vec<_>>())]
            .0,
            user,
        };
        let sessions = 1 + self.rng.exp(0.8) as u64;
        let mut t = start + (self.rng.f() * span as f64) as i64;
        for i in 0..sessions.min(20) {
            if t >= self.spec.end_us {
                break;
            }
            // Visitors who looked at the register page often come back within a day.
            let back_directly = i > 0 && self.rng.chance(0.5);
            self.session(&mut v, t, back_directly);
            t += (self.rng.exp(2.0 * 86_400.0) * 1e6) as i64 + 1_800_000_000;
        }
    }
}

/// Generate `spec.events` events into the store, in batches. Returns how many were written.
pub fn generate(store: &mut Store, spec: &Spec) -> Result<u64, StoreError> {
    let mut g = Gen {
        rng: Rng(spec.seed),
        spec,
        out: Vec::with_capacity(120_000),
        users: 0,
        returning: Vec::new(),
    };
    let mut written = 0u64;
    while written < spec.events {
        while g.out.len() < 100_000 {
            g.visitor();
        }
        // Sessions that started just before the end would run past it: not yet happened.
        g.out.retain(|e| e.ts_us <= spec.end_us);
        let take = (spec.events - written).min(g.out.len() as u64) as usize;
        // The cut is at an exact count, even inside a visitor.
        let batch: Vec<Event> = g.out.drain(..take).collect();
        let seq = store.next_seq()?;
        store.append(seq, &batch)?;
        written += batch.len() as u64;
    }
    Ok(written)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_same_seed_gives_the_same_events() {
        let spec = Spec {
            events: 0,
            days: 7,
            seed: 42,
            end_us: 1_800_000_000_000_000,
            site: "t".into(),
        };
        let run = || {
            let mut g = Gen {
                rng: Rng(spec.seed),
                spec: &spec,
                out: Vec::new(),
                users: 0,
                returning: Vec::new(),
            };
            for _ in 0..200 {
                g.visitor();
            }
            g.out
        };
        let (a, b) = (run(), run());
        assert_eq!(a, b);
        assert!(a.iter().any(|e| e.name == "registered"));
        assert!(a.iter().any(|e| e.is_bot == Some(true)));
        assert!(a.iter().all(|e| e.ts_us <= spec.end_us + 86_400_000_000));
    }

    /// A store in `dir` with `events` generated events over ten days up to now, a visitor at
    /// a time (not yet ordered by time).
    fn generated(dir: &std::path::Path, events: u64) -> Store {
        let mut store = Store::open(dir).unwrap();
        let spec = Spec {
            events,
            days: 10,
            seed: 7,
            end_us: crate::event::now_us(),
            site: "t".into(),
        };
        assert_eq!(generate(&mut store, &spec).unwrap(), events);
        store
    }

    /// Ordering by time spills to disk within `store.memory_limit`: 100M generated events ran
    /// out of the default 512 MiB when the rows were numbered by a window over every column,
    /// and then when two threads sorted them. Here 300,000 events in 96 MiB, which the window
    /// ran out of. (600,000 in 96 MiB still run out: the sort's own need grows with the rows.)
    #[test]
    fn ordering_by_time_stays_within_the_memory_limit() {
        let dir = tempfile::tempdir().unwrap();
        let options = crate::store::StoreOptions {
            memory_limit: 96 << 20,
            threads: 2,
            ..Default::default()
        };
        drop(generated(dir.path(), 300_000));
        let mut store = Store::open_with(dir.path(), &options).unwrap();
        store.order_by_time().unwrap();
        let conn = store.reader().unwrap();
        let (n, ordered): (i64, bool) = conn
            .query_row(
                "SELECT count(*), bool_and(ts >= prev_ts AND seq = prev_seq + 1) FROM (SELECT ts, \
                   seq, lag(ts) OVER (ORDER BY rowid) AS prev_ts, \
                   lag(seq) OVER (ORDER BY rowid) AS prev_seq FROM events)",
                [],
                |r| Ok((r.get(0)?, r.get(1)?)),
            )
            .unwrap();
        assert_eq!((n, ordered), (300_000, true));
    }

    /// A generated store ordered by time holds the same events, laid out in time order with
    /// their `seq`s numbered again in it over the same range, and the same derived tables; and
    /// it goes on taking events.
    #[test]
    fn a_generated_store_is_laid_out_in_time_order() {
        let dir = tempfile::tempdir().unwrap();
        let mut store = generated(dir.path(), 20_000);
        let conn = store.reader().unwrap();
        let facts = |conn: &duckdb::Connection| -> (i64, i64, i64, String, String, i64) {
            conn.query_row(
                "SELECT count(*), min(seq), max(seq), \
                   (SELECT CAST(sum(hash(event_id, ts, name, visitor_id)) AS VARCHAR) FROM events), \
                   (SELECT CAST(sum(hash(session_id, first_ts, pageviews)) AS VARCHAR) FROM sessions), \
                   (SELECT count(*) FROM identities) FROM events",
                [],
                |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?, r.get(4)?, r.get(5)?)),
            )
            .unwrap()
        };
        // In time order: `ts` never goes back along the table's rows, nor along `seq`.
        let ordered = |conn: &duckdb::Connection| -> bool {
            conn.query_row(
                "SELECT bool_and(ts >= prev_ts AND seq > prev_seq) FROM (SELECT ts, seq, \
                   lag(ts) OVER (ORDER BY rowid) AS prev_ts, lag(seq) OVER (ORDER BY rowid) AS prev_seq \
                   FROM events) WHERE prev_ts IS NOT NULL",
                [],
                |r| r.get(0),
            )
            .unwrap()
        };
        let before = facts(&conn);
        assert!(!ordered(&conn), "a visitor at a time is not in time order");
        drop(conn);
        store.order_by_time().unwrap();
        let conn = store.reader().unwrap();
        assert_eq!(facts(&conn), before);
        assert!(ordered(&conn));
        assert_eq!(before.2 - before.1 + 1, before.0, "seqs are contiguous");
        let seq = store.next_seq().unwrap();
        assert_eq!(seq, before.2 + 1);
        let mut e = crate::event::Event::now("page_view", "t", crate::event::Source::Proxy);
        e.session_id = Some(Uuid::now_v7());
        store.append(seq, &[e]).unwrap();
        assert_eq!(facts(&conn).0, before.0 + 1);
    }
}
