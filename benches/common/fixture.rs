//! The events the enrichment and store benchmarks share: 1,000 page views with real browser
//! UAs (tests/fixtures/ua/browsers.txt), referrers, campaign queries, secrets to redact, and
//! IPs that hit a geo database built for the bench.

use tollgate::config::Settings;
use tollgate::event::{Event, PrivacyMode, Source};

#[path = "../../tests/common/mmdb.rs"]
#[allow(dead_code)]
mod mmdb;

/// Events in [`events`].
pub const N: usize = 1_000;

const REFERRERS: &[&str] = &[
    "",
    "https://www.google.com/",
    "https://l.facebook.com/",
    "https://shop.example/products/42",
    "https://news.ycombinator.com/item?id=1",
    "https://chatgpt.com/",
];

const QUERIES: &[&str] = &[
    "",
    "utm_source=newsletter&utm_medium=email&utm_campaign=spring",
    "gclid=Cj0KCQiA&ref=ad",
    "q=camera&page=2",
    "email=jo%40example.com&token=abc",
    "fbclid=IwAR2x",
];

pub fn events() -> Vec<Event> {
    let uas = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/fixtures/ua/browsers.txt"
    ))
    .expect("UA fixture");
    uas.lines()
        .take(N)
        .enumerate()
        .map(|(i, ua)| {
            let mut e = Event::now("page_view", "bench", Source::Proxy);
            e.host = Some("shop.example".into());
            e.path = Some(format!("/products/{i}/reviews"));
            e.query = Some(QUERIES[i % QUERIES.len()].to_string()).filter(|q| !q.is_empty());
            e.referrer = Some(REFERRERS[i % REFERRERS.len()].to_string()).filter(|r| !r.is_empty());
            e.user_agent = Some(ua.to_string());
            e.ip = Some(format!("203.0.{}.{}", i % 4, i % 250));
            e.hints.signals.page_view = true;
            e.hints.signals.accept_language = true;
            if i % 10 == 0 {
                e.hints.privacy = PrivacyMode::Cookieless;
                e.visitor_id = Some(uuid::Uuid::new_v4());
            } else {
                e.visitor_id = Some(uuid::Uuid::new_v4());
                e.session_id = Some(uuid::Uuid::now_v7());
            }
            e
        })
        .collect()
}

/// Default settings with a geo database, built in `dir`, that knows the events' IPs.
pub fn settings(dir: &std::path::Path) -> Settings {
    let geo = dir.join("city.mmdb");
    let entries: Vec<mmdb::Entry> = (0..4)
        .map(|i| mmdb::Entry {
            net: format!("203.0.{i}.0/24").parse().unwrap(),
            country: ["DE", "FR", "JP", "US"][i],
            region: Some("Region"),
            city: Some("City"),
        })
        .collect();
    mmdb::write_city_db(&geo, &entries).unwrap();
    let mut s = Settings::defaults("http://127.0.0.1:1").expect("defaults");
    s.enrich.geo_db = Some(geo.to_path_buf());
    s
}
