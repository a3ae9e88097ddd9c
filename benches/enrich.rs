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

#[path = "common/fixture.rs"]
mod fixture;

use criterion::{criterion_group, criterion_main, BatchSize, Criterion, Throughput};
use fixture::{events, settings, N};
use std::hint::black_box;
use tollgate::enrich::Enricher;

fn bench(c: &mut Criterion) {
    let dir = tempfile::tempdir().unwrap();
    let s = settings(dir.path());
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
