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

#[test]
fn aggregation_larger_than_memory_limit_spills() {
    // Three million groups: a hash table of well over 32 MiB, which DuckDB partitions and
    // spills. (A count(DISTINCT ...) of that size cannot spill: see `big_aggregation`.)
    let dir = tempfile::tempdir().unwrap();
    let options = StoreOptions {
        memory_limit: 32 << 20,
        ..StoreOptions::default()
    };
    let store = Store::open_with(dir.path(), &options).unwrap();
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
