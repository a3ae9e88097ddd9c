//! The writer's cost per event: enrichment plus the store's commit, one core, on a store on
//! disk that keeps growing as the bench runs (checkpoints included). `cargo bench --bench store`.
//!
//! - `proxy_5000`: a commit of 5,000 proxy events, already enriched, with its fold into
//!   `sessions` (less than a row group: through DuckDB's write-ahead log, and again at the next
//!   checkpoint);
//! - `proxy_122880`: the same, 122,880 events (a whole DuckDB row group) in one commit;
//! - `proxy_5000_new_sessions`: `proxy_5000` where every event starts a session of its own (a
//!   first visit each, as a flood without cookies makes): the most rows the fold inserts;
//! - `proxy_staged_122880`: as the writer commits under steady traffic: 122,880 events
//!   (`pipeline.batch_size`) staged 4,096 at a time in one transaction, committed, then folded
//!   into `sessions` in a transaction of their own;
//! - `proxy_enrich_staged_122880`: the same with their enrichment (warm UA cache): the
//!   pipeline's whole cost per proxy event under steady traffic;
//! - `keyed_1000`: an ingestion submission of 1,000 events whose ids their sender chose (a
//!   `messageId` each), checked against the deduplication keys and recorded;
//! - `minted_1000`: the same without keys of their own (tollgate minted the ids).
//!
//! The time is the process's CPU time (user and system, every thread: DuckDB's too) while the
//! commit runs, not the wall clock: the figure is what the writer costs a core per event, and
//! waiting for the disk is not in it. Preparing each batch is not counted.

#[path = "common/fixture.rs"]
mod fixture;

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use fixture::{events, settings};
use std::time::Duration;
use tollgate::enrich::Enricher;
use tollgate::event::Event;
use tollgate::store::Store;

/// One of DuckDB's row groups: `pipeline.batch_size`.
const ROW_GROUP: usize = 122_880;

/// `n` events cycled from the fixture, each with a new id.
fn batch(template: &[Event], n: usize, keyed: bool) -> Vec<Event> {
    template
        .iter()
        .cycle()
        .take(n)
        .map(|e| {
            let mut e = e.clone();
            e.event_id = uuid::Uuid::now_v7();
            e.hints.keyed = keyed;
            e
        })
        .collect()
}

/// [`batch`], every event a first visit: a new visitor with a new session.
fn first_visits(template: &[Event], n: usize) -> Vec<Event> {
    let mut events = batch(template, n, false);
    for e in &mut events {
        e.visitor_id = Some(uuid::Uuid::now_v7());
        e.session_id = Some(uuid::Uuid::now_v7());
    }
    events
}

/// The CPU time this process has used, every thread.
fn cpu_now() -> Duration {
    let mut t = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: a valid clock id and a pointer to a timespec we own.
    let rc = unsafe { libc::clock_gettime(libc::CLOCK_PROCESS_CPUTIME_ID, &mut t) };
    assert_eq!(rc, 0, "clock_gettime(CLOCK_PROCESS_CPUTIME_ID)");
    Duration::new(t.tv_sec as u64, t.tv_nsec as u32)
}

/// `iters` runs of `routine` on what `setup` makes, timed in CPU time, `setup` left out.
fn cpu_time<T>(iters: u64, mut setup: impl FnMut() -> T, mut routine: impl FnMut(T)) -> Duration {
    let mut total = Duration::ZERO;
    for _ in 0..iters {
        let input = setup();
        let start = cpu_now();
        routine(input);
        total += cpu_now() - start;
    }
    total
}

fn bench(c: &mut Criterion) {
    let dir = tempfile::tempdir().unwrap();
    let s = settings(dir.path());
    let mut enricher = Enricher::new(&s).unwrap();
    let raw = events();
    let mut enriched = raw.clone();
    for e in &mut enriched {
        enricher.enrich(e);
    }
    let mut store = Store::open_with(&dir.path().join("data"), &s.store.duckdb).unwrap();
    let mut seq = store.next_seq().unwrap();

    let mut g = c.benchmark_group("store");
    // `proxy_122880` is a whole row group in one commit: DuckDB writes it to the file
    // directly, compressed, instead of through its write-ahead log. `firsts`: every event a
    // first visit.
    for (name, n, samples, firsts) in [
        ("proxy_5000", 5_000, 20, false),
        ("proxy_122880", ROW_GROUP, 10, false),
        ("proxy_5000_new_sessions", 5_000, 20, true),
    ] {
        g.sample_size(samples);
        g.throughput(Throughput::Elements(n as u64));
        g.bench_function(name, |b| {
            b.iter_custom(|iters| {
                cpu_time(
                    iters,
                    || {
                        if firsts {
                            first_visits(&enriched, n)
                        } else {
                            batch(&enriched, n, false)
                        }
                    },
                    |events| {
                        store.append(seq, &events).unwrap();
                        seq += events.len() as i64;
                    },
                )
            })
        });
    }
    // The writer under steady traffic: a row group of events staged 4,096 at a time in one
    // transaction, committed, then folded into `sessions` in a transaction of its own;
    // `proxy_enrich_staged_122880` with their enrichment (warm UA cache).
    g.sample_size(10);
    g.throughput(Throughput::Elements(ROW_GROUP as u64));
    for (name, template, enrich) in [
        ("proxy_staged_122880", &enriched, false),
        ("proxy_enrich_staged_122880", &raw, true),
    ] {
        g.bench_function(name, |b| {
            b.iter_custom(|iters| {
                cpu_time(
                    iters,
                    || batch(template, ROW_GROUP, false),
                    |mut events| {
                        for chunk in events.chunks_mut(4096) {
                            if enrich {
                                chunk.iter_mut().for_each(|e| enricher.enrich(e));
                            }
                            store.stage(seq, chunk).unwrap();
                            seq += chunk.len() as i64;
                        }
                        store.commit_staged().unwrap();
                        store.fold_pending().unwrap();
                    },
                )
            })
        });
    }
    g.throughput(Throughput::Elements(1_000));
    for (name, keyed) in [("keyed_1000", true), ("minted_1000", false)] {
        g.bench_function(name, |b| {
            b.iter_custom(|iters| {
                cpu_time(
                    iters,
                    || batch(&enriched, 1_000, keyed),
                    |events| {
                        let written = store.append_new(seq, &[&events]).unwrap()[0];
                        assert_eq!(written, events.len());
                        seq += written as i64;
                    },
                )
            })
        });
    }
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
