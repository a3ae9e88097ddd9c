//! DuckDB under `store.memory_limit`: queries that need more memory than the limit spill to
//! disk and still answer, with the store locked down as `tollgate serve` opens it.

use tollgate::store::{Store, StoreOptions};

/// Rows of the big aggregation; `TOLLGATE_SPILL_ROWS` overrides it. Issue 16 ran 100M under
/// the default limit (18 s on 2 cores; 64 and 128 MiB failed with DuckDB's out-of-memory
/// error): `TOLLGATE_SPILL_ROWS=100000000 cargo test --release --test store_memory default`.
fn rows() -> u64 {
    std::env::var("TOLLGATE_SPILL_ROWS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(5_000_000)
}

/// A report-shaped query (distinct visitors and events per path, then the top paths) whose
/// hash tables are far larger than the limit.
fn big_aggregation(options: &StoreOptions) -> (i64, i64, std::time::Duration) {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open_with(dir.path(), options).unwrap();
    // As a report does: the whole limit, not the idle one.
    let _whole = store.budget().lend().unwrap();
    let n = rows();
    let t = std::time::Instant::now();
    let (paths, visitors): (i64, i64) = store
        .connection()
        .query_row(
            &format!(
                "SELECT count(*), sum(visitors)::BIGINT FROM (
                     SELECT i % 100003 AS path, count(DISTINCT i % 7000003) AS visitors, count(*)
                     FROM range({n}) t(i) GROUP BY path)"
            ),
            [],
            |r| Ok((r.get(0)?, r.get(1)?)),
        )
        .unwrap();
    (paths, visitors, t.elapsed())
}

/// A new store with `store.memory_limit` at `bytes` (and the default idle limit, or `bytes`
/// when that is less).
fn limited_to(bytes: u64) -> (tempfile::TempDir, Store) {
    let dir = tempfile::tempdir().unwrap();
    let options = StoreOptions {
        memory_limit: bytes,
        ..StoreOptions::default()
    };
    let store = Store::open_with(dir.path(), &options).unwrap();
    (dir, store)
}

#[test]
fn aggregation_larger_than_memory_limit_spills() {
    // Three million groups: a hash table of well over 32 MiB, which DuckDB partitions and
    // spills. (A count(DISTINCT ...) of that size cannot spill: see `big_aggregation`.)
    let (_dir, store) = limited_to(32 << 20);
    let _whole = store.budget().lend().unwrap();
    let (groups, temp): (i64, String) = store
        .connection()
        .query_row(
            "SELECT (SELECT count(*) FROM (
                     SELECT i % 3000017 AS k, count(*) AS c, max(i) AS m
                     FROM range(12000000) t(i) GROUP BY k)),
                 current_setting('temp_directory')",
            [],
            |r| Ok((r.get(0)?, r.get(1)?)),
        )
        .unwrap();
    assert_eq!(groups, 3_000_017);
    assert!(temp.ends_with("tollgate.duckdb.tmp"), "{temp}");
}

#[test]
fn default_limit_handles_the_same_aggregation() {
    let n = rows() as i64;
    let (paths, visitors, took) = big_aggregation(&StoreOptions::default());
    eprintln!("{n} rows under the default limit: {took:?}");
    assert_eq!((paths, visitors), (100_003.min(n), n));
}

/// The `api` report's latency percentiles over more calls than `store.memory_limit` holds at
/// once: they answer (from counts per distinct duration, which spill), where DuckDB's
/// `quantile_cont` keeps every value in memory and fails. At the default limit the same
/// happened on 100M generated events.
#[test]
fn api_percentiles_answer_over_more_calls_than_the_limit_holds() {
    let (_dir, store) = limited_to(64 << 20);
    let _whole = store.budget().lend().unwrap();
    let n = 6_000_000;
    // 200,003 distinct durations (10 µs apart, up to 2 s) on 4 routes.
    store
        .connection()
        .execute_batch(&format!(
            "INSERT INTO events (seq, event_id, ts, received_at, site, name, source, route, \
               method, status, duration_ms) \
             SELECT i, uuid(), TIMESTAMP '2026-01-05 12:00:00' + i * INTERVAL 1 MICROSECOND, \
               now(), 'shop', 'api_call', 'proxy', '/api/r' || (i % 4), 'GET', \
               CASE WHEN i % 97 = 0 THEN 503 ELSE 200 END, ((i * 7919) % 200003) / 100.0 \
             FROM range({n}) t(i)"
        ))
        .unwrap();
    let conn = store.reader().unwrap();
    let pairs =
        [("from", "2026-01-05"), ("to", "2026-01-05")].map(|(k, v)| (k.to_string(), v.to_string()));
    let api = tollgate::reports::run(&conn, "api", &pairs, Default::default())
        .unwrap_or_else(|e| panic!("api report under 64 MiB: {e}"));
    assert_eq!(api["totals"]["calls"], n);
    assert_eq!(api["totals"]["errors"], (n + 96) / 97);
    // The durations run evenly over 0 to 2,000 ms: the median is near 1,000.
    let p50 = api["totals"]["p50_ms"].as_f64().unwrap();
    assert!((p50 - 1000.0).abs() < 5.0, "p50 {p50}");
    assert_eq!(api["routes"]["rows"].as_array().unwrap().len(), 4);
}
