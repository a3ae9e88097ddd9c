//! Enrichment throughput, in events per second on one core: the pipeline's per-event work
//! (campaign and channel, UA parse and bot rules, geo, cookieless sessions, redaction, IP
//! truncation). `cargo bench --bench enrich`.
//!
//! - `warm`: the UA cache already holds every user agent, as on a site whose visitors'
//!   browsers repeat (they do: a few hundred UAs cover most traffic);
//! - `cold`: every event's UA is new to a fresh enricher, the worst case (a bot flood with
//!   random UAs).
//!
//! The events mix 1,000 real browser UAs (tests/fixtures/ua/browsers.txt) with referrers,
//! campaign queries, secrets to redact and IPs that hit a geo database built for the bench.

#[path = "../tests/common/mmdb.rs"]
#[allow(dead_code)]
mod mmdb;

use criterion::{criterion_group, criterion_main, BatchSize, Criterion, Throughput};
use std::hint::black_box;
use tollgate::config::Settings;
use tollgate::enrich::Enricher;
use tollgate::event::{Event, PrivacyMode, Source};

const N: usize = 1_000;

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

fn events() -> Vec<Event> {
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

fn settings(geo: &std::path::Path) -> Settings {
    let mut s = Settings::defaults("http://127.0.0.1:1").expect("defaults");
    s.enrich.geo_db = Some(geo.to_path_buf());
    s
}

fn bench(c: &mut Criterion) {
    let dir = tempfile::tempdir().unwrap();
    let geo = dir.path().join("city.mmdb");
    let entries: Vec<mmdb::Entry> = (0..4)
        .map(|i| mmdb::Entry {
            net: format!("203.0.{i}.0/24").parse().unwrap(),
            country: ["DE", "FR", "JP", "US"][i],
            region: Some("Region"),
            city: Some("City"),
        })
        .collect();
    mmdb::write_city_db(&geo, &entries).unwrap();
    let s = settings(&geo);
    let evs = events();
    assert_eq!(evs.len(), N, "fixture has fewer than {N} UAs");

    let mut g = c.benchmark_group("enrich");
    g.throughput(Throughput::Elements(N as u64));
    g.sample_size(20);

    let mut warm = Enricher::new(&s).unwrap();
    for e in evs.clone() {
        let mut e = e;
        warm.enrich(&mut e);
    }
    g.bench_function("warm", |b| {
        b.iter_batched_ref(
            || evs.clone(),
            |batch| {
                for e in batch.iter_mut() {
                    warm.enrich(black_box(e));
                }
            },
            BatchSize::LargeInput,
        )
    });
    g.bench_function("cold", |b| {
        b.iter_batched_ref(
            || (Enricher::new(&s).unwrap(), evs.clone()),
            |(en, batch)| {
                for e in batch.iter_mut() {
                    en.enrich(black_box(e));
                }
            },
            BatchSize::PerIteration,
        )
    });
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
