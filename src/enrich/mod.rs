//! Enrichment: fills the columns the proxy leaves empty (device, bot, channel, campaign, geo,
//! cookieless sessions) and applies the privacy controls, in the pipeline, never in the
//! request path.
//!
//! The proxy queues a raw event: full path, query, referrer and IP. [`Enricher::enrich`] reads
//! what it needs from them first (campaign parameters, geo), then redacts and anonymises, so
//! only the redacted forms reach the store.

pub mod bots;
pub mod campaign;
pub mod geo;
pub mod privacy;
pub mod referrer;
pub mod route;
pub mod useragent;

use crate::config::{IpHandling, Settings};
use crate::event::{Event, PrivacyMode, Source};
use ipnet::IpNet;
use std::collections::HashMap;
use std::net::IpAddr;
use uuid::Uuid;

#[derive(Debug, thiserror::Error)]
pub enum EnrichError {
    #[error("failed to load the user-agent rules: {0}")]
    UserAgent(#[from] useragent::UaError),
    #[error("enrich.geo_db: {0}")]
    Geo(#[from] geo::GeoError),
}

/// The enrichment stage. Single-threaded: it lives on the pipeline thread and keeps its caches
/// without locks.
pub struct Enricher {
    ua: useragent::UaAnalyzer,
    geo: Option<geo::Geo>,
    redactor: privacy::Redactor,
    ip: IpHandling,
    bot_networks: Vec<IpNet>,
    site_domains: Vec<String>,
    sessions: Sessionizer,
}

impl Enricher {
    /// Load the UA and bot rules and open the geo database, if one is configured.
    pub fn new(s: &Settings) -> Result<Self, EnrichError> {
        let geo = match &s.enrich.geo_db {
            Some(p) => Some(geo::Geo::open(p)?),
            None => None,
        };
        Ok(Enricher {
            ua: useragent::UaAnalyzer::new(s.enrich.ua_cache_size)?,
            geo,
            redactor: privacy::Redactor::new(&s.privacy.redact_params, s.privacy.redact_values),
            ip: s.privacy.ip,
            bot_networks: s.enrich.bot_networks.clone(),
            site_domains: s.enrich.site_domains.clone(),
            sessions: Sessionizer::new(s.identity.session_timeout.as_micros() as i64),
        })
    }

    /// Distinct user agents in the parse cache.
    pub fn ua_cache_len(&self) -> usize {
        self.ua.cache_len()
    }

    /// Fill in `e`'s derived columns and apply the privacy settings. Fields a producer already
    /// set (a server-side event's own `utm_source`, say) are kept.
    pub fn enrich(&mut self, e: &mut Event) {
        let ip: Option<IpAddr> = e.ip.as_deref().and_then(|s| s.parse().ok());
        self.traffic_source(e);
        self.device_and_bot(e, ip);
        // Geo, from the full address, before it is anonymised.
        if let (Some(g), Some(ip)) = (&self.geo, ip) {
            let loc = g.lookup(ip);
            e.country = loc.country;
            e.region = loc.region;
            e.city = loc.city;
        }
        // Sessions of cookieless visitors, which have no session cookie.
        if e.hints.privacy == PrivacyMode::Cookieless && e.session_id.is_none() {
            if let Some(v) = e.visitor_id {
                let fp = e.query.as_deref().and_then(campaign::fingerprint);
                e.session_id = Some(self.sessions.session(v, e.ts_us, fp));
            }
        }
        self.redact_and_anonymise(e, ip);
        scrub_controls(e);
    }

    /// Campaign and channel, from the raw query and referrer.
    fn traffic_source(&self, e: &mut Event) {
        let c = e.query.as_deref().map(campaign::parse).unwrap_or_default();
        fill(&mut e.utm_source, c.source.as_ref());
        fill(&mut e.utm_medium, c.medium.as_ref());
        fill(&mut e.utm_campaign, c.campaign.as_ref());
        fill(&mut e.utm_term, c.term.as_ref());
        fill(&mut e.utm_content, c.content.as_ref());
        if e.click_id.is_none() {
            e.click_id_type = c.click_id_type.map(str::to_string);
            e.click_id = c.click_id.clone();
        }
        let ref_host = e.referrer.as_deref().and_then(referrer::host);
        let internal = ref_host
            .as_deref()
            .is_some_and(|h| referrer::is_internal(h, e.host.as_deref(), &self.site_domains));
        if e.channel.is_none() {
            // Navigation inside the site is not a traffic source: no channel, unless the
            // link itself carries campaign parameters.
            e.channel = if internal && c.is_empty() {
                None
            } else {
                let external = ref_host.as_deref().filter(|_| !internal);
                Some(referrer::channel(&c, external).to_string())
            };
        }
        if e.referrer_host.is_none() {
            e.referrer_host = ref_host;
        }
    }

    /// Device and bot, from the UA (cached) and the request's own signals. An event a backend
    /// sent about a person (server, import) without a UA says nothing about a device, and is
    /// not a bot for lacking one.
    fn device_and_bot(&mut self, e: &mut Event, ip: Option<IpAddr>) {
        let from_client = matches!(e.source, Some(Source::Proxy | Source::Browser));
        if from_client || e.user_agent.is_some() {
            let ua_text = e.user_agent.as_deref().unwrap_or("");
            let info = self.ua.analyze(ua_text);
            let d = &info.device;
            e.browser = d.browser.clone();
            e.browser_version = d.browser_version.clone();
            e.os = d.os.clone();
            e.device_type = Some(d.device_type.as_str().to_string());
            let reason = info
                .bot
                .clone()
                .or_else(|| bots::check_request(&e.hints.signals, ua_text).map(str::to_string))
                .or_else(|| ip.and_then(|ip| bots::check_ip(ip, &self.bot_networks)));
            if reason.is_some() {
                e.device_type = Some(useragent::DeviceType::Bot.as_str().to_string());
            }
            e.is_bot = Some(reason.is_some());
            e.bot_reason = reason;
        } else {
            e.is_bot = Some(false);
        }
    }

    /// Privacy: redact the path, query and referrer (and derive the route from the redacted
    /// path), then anonymise the IP (`ip`, the full address) and, for anonymous events, drop
    /// every identifier.
    fn redact_and_anonymise(&self, e: &mut Event, ip: Option<IpAddr>) {
        if let Some(p) = e.path.as_deref() {
            let p = self.redactor.path(p);
            e.route = Some(route::route(&p));
            if let std::borrow::Cow::Owned(p) = p {
                e.path = Some(p);
            }
        }
        if let Some(q) = e.query.as_deref() {
            if let std::borrow::Cow::Owned(q) = self.redactor.query(q) {
                e.query = Some(q);
            }
        }
        if let Some(r) = e.referrer.as_deref() {
            if let std::borrow::Cow::Owned(r) = self.redactor.url(r) {
                e.referrer = Some(r);
            }
        }
        e.ip = match e.hints.privacy {
            PrivacyMode::Anonymous => None,
            _ => ip
                .and_then(|ip| privacy::anonymise_ip(ip, self.ip))
                .map(|ip| ip.to_string()),
        };
        if e.hints.privacy == PrivacyMode::Anonymous {
            // Counted, not followed: no identifiers, nothing finer than the country, and no
            // raw user agent (its parsed fields are kept).
            e.visitor_id = None;
            e.session_id = None;
            e.user_id = None;
            e.region = None;
            e.city = None;
            e.user_agent = None;
        }
    }
}

/// Control characters in any stored text become U+FFFD. The ingestion APIs refuse them in the
/// fields they validate; this catches the rest (a tab in a `User-Agent`, a Segment context
/// field, a CSV cell), so that no terminal escape or line break reaches the store, the CLI or
/// a spreadsheet. `props` is JSON, whose strings are escaped already.
fn scrub_controls(e: &mut Event) {
    fn scrub(v: &mut String) {
        if v.chars().any(char::is_control) {
            *v = v
                .chars()
                .map(|c| if c.is_control() { '\u{fffd}' } else { c })
                .collect();
        }
    }
    scrub(&mut e.name);
    scrub(&mut e.site);
    for v in [
        &mut e.user_id,
        &mut e.request_id,
        &mut e.method,
        &mut e.host,
        &mut e.path,
        &mut e.route,
        &mut e.query,
        &mut e.referrer,
        &mut e.referrer_host,
        &mut e.channel,
        &mut e.utm_source,
        &mut e.utm_medium,
        &mut e.utm_campaign,
        &mut e.utm_term,
        &mut e.utm_content,
        &mut e.click_id_type,
        &mut e.click_id,
        &mut e.user_agent,
        &mut e.browser,
        &mut e.browser_version,
        &mut e.os,
        &mut e.device_type,
        &mut e.bot_reason,
        &mut e.ip,
        &mut e.country,
        &mut e.region,
        &mut e.city,
    ]
    .into_iter()
    .flatten()
    {
        scrub(v);
    }
}

fn fill(slot: &mut Option<String>, v: Option<&String>) {
    if slot.is_none() {
        *slot = v.cloned();
    }
}

/// Sessions for cookieless visitors: a visitor's events belong to one session until
/// `timeout` passes without one, or a new campaign arrives. Kept in memory; entries older
/// than the timeout are pruned as time passes, so it holds only the active visitors.
struct Sessionizer {
    timeout_us: i64,
    open: HashMap<Uuid, OpenSession>,
    last_prune_us: i64,
}

struct OpenSession {
    id: Uuid,
    last_us: i64,
    campaign: Option<u64>,
}

impl Sessionizer {
    fn new(timeout_us: i64) -> Self {
        Sessionizer {
            timeout_us,
            open: HashMap::new(),
            last_prune_us: 0,
        }
    }

    fn session(&mut self, visitor: Uuid, ts_us: i64, campaign: Option<u64>) -> Uuid {
        if ts_us - self.last_prune_us > self.timeout_us {
            let t = self.timeout_us;
            self.open.retain(|_, s| ts_us - s.last_us <= t);
            self.last_prune_us = ts_us;
        }
        let timeout = self.timeout_us;
        let s = self.open.entry(visitor).or_insert_with(|| OpenSession {
            id: Uuid::now_v7(),
            last_us: ts_us,
            campaign,
        });
        let expired = ts_us - s.last_us > timeout;
        let new_campaign = campaign.is_some() && campaign != s.campaign;
        if expired || new_campaign {
            s.id = Uuid::now_v7();
            s.campaign = campaign;
        }
        s.last_us = s.last_us.max(ts_us);
        s.id
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn control_characters_never_reach_the_store() {
        let mut e = Event::now("x\u{1b}[2J", "t", Source::Segment);
        e.user_agent = Some("Mozilla/5.0\t(X11)".into());
        e.utm_campaign = Some("a\nb".into());
        scrub_controls(&mut e);
        assert_eq!(e.name, "x\u{fffd}[2J");
        assert_eq!(e.user_agent.as_deref(), Some("Mozilla/5.0\u{fffd}(X11)"));
        assert_eq!(e.utm_campaign.as_deref(), Some("a\u{fffd}b"));
    }

    #[test]
    fn cookieless_sessions() {
        let mut s = Sessionizer::new(30 * 60 * 1_000_000);
        let v = Uuid::new_v4();
        let min = 60 * 1_000_000;
        let a = s.session(v, 0, None);
        assert_eq!(a, s.session(v, 29 * min, None));
        assert_eq!(a, s.session(v, 58 * min, None), "the timeout slides");
        let b = s.session(v, 89 * min, None);
        assert_ne!(a, b, "31 idle minutes start a new session");
        let c = s.session(v, 90 * min, Some(7));
        assert_ne!(b, c, "a campaign starts a new session");
        assert_eq!(c, s.session(v, 91 * min, Some(7)));
        assert_eq!(c, s.session(v, 92 * min, None));
        assert_ne!(c, s.session(Uuid::new_v4(), 92 * min, None));
        // Pruning keeps only visitors seen within the timeout.
        s.session(Uuid::new_v4(), 200 * min, None);
        assert_eq!(s.open.len(), 1);
    }
}
