//! Events into DuckDB's own data chunks: the writer's append path.
//!
//! Each value is written once, straight into the vectors of a DuckDB data chunk (2,048 rows),
//! which the appender then takes whole (`Appender::append_data_chunk`, patched into duckdb-rs:
//! `vendor/README.md`). The path before built Arrow arrays and had duckdb-rs copy them into
//! such a chunk value by value: two copies of every value, and the Arrow arrays' allocations.
//!
//! The vectors' layouts are DuckDB's (`duckdb.h`): `BIGINT` and `TIMESTAMP` an `i64`
//! (microseconds), `INTEGER` an `i32`, `DOUBLE` an `f64`, `BOOLEAN` a byte, `UUID` a
//! `hugeint_t` (the UUID's 128 bits, big-endian, with the top bit flipped so that it sorts as
//! a signed number), text through `duckdb_unsafe_vector_assign_string_element_len` (which
//! copies it, without checking that it is UTF-8: a `&str` is).

use super::StoreError;
use crate::event::{Event, Field, Kind, COLUMNS};
use duckdb::core::{DataChunkHandle, LogicalTypeHandle, LogicalTypeId};
use duckdb::ffi;
use duckdb::Connection;
use std::os::raw::c_char;

/// Append `(seq, event)` rows to `table`, which has the `events` columns in [`COLUMNS`]'
/// order, in one appender, a chunk of `duckdb_vector_size()` rows at a time.
pub fn append(conn: &Connection, table: &str, rows: &[(i64, &Event)]) -> Result<(), StoreError> {
    if rows.is_empty() {
        return Ok(());
    }
    let types: Vec<LogicalTypeHandle> = COLUMNS.iter().map(|c| logical_type(c.kind())).collect();
    let chunk = DataChunkHandle::new(&types);
    let size = unsafe { ffi::duckdb_vector_size() } as usize;
    let mut app = conn.appender(table)?;
    for part in rows.chunks(size) {
        // SAFETY: `chunk` was made from `COLUMNS`' types, so column `i` is `COLUMNS[i]`'s,
        // and it holds `size` rows, at least `part.len()`. Reset, every vector is flat and
        // writable again.
        unsafe {
            ffi::duckdb_data_chunk_reset(chunk.get_ptr());
            for (i, c) in COLUMNS.iter().enumerate() {
                let v = ffi::duckdb_data_chunk_get_vector(chunk.get_ptr(), i as u64);
                fill(v, &c.field, part);
            }
        }
        chunk.set_len(part.len());
        app.append_data_chunk(&chunk)?;
    }
    app.flush()?;
    Ok(())
}

/// The DuckDB type of a store column of `kind`, as the table declares it (`JSON` is
/// `VARCHAR` with DuckDB's alias: the same type, so the appender does not cast the text, and
/// does not parse it as JSON again either: `props` is always written by serde_json, in
/// `ingest::draft` and for generated events).
fn logical_type(kind: Kind) -> LogicalTypeHandle {
    let id = match kind {
        Kind::BigInt => LogicalTypeId::Bigint,
        Kind::Int => LogicalTypeId::Integer,
        Kind::Double => LogicalTypeId::Double,
        Kind::Bool => LogicalTypeId::Boolean,
        Kind::Timestamp => LogicalTypeId::Timestamp,
        Kind::Text | Kind::Json => LogicalTypeId::Varchar,
        Kind::Uuid => LogicalTypeId::Uuid,
    };
    let mut t = LogicalTypeHandle::from(id);
    if kind == Kind::Json {
        t.set_alias("JSON");
    }
    t
}

/// Write `field` of each row into vector `v`, from row 0.
///
/// # Safety
/// `v` is a flat, writable vector of `field`'s type with room for `rows.len()` rows.
unsafe fn fill(v: ffi::duckdb_vector, field: &Field, rows: &[(i64, &Event)]) {
    let events = rows.iter().map(|(_, e)| *e);
    match field {
        Field::Seq => put(v, rows.iter().map(|(s, _)| Some(*s))),
        Field::BigInt(a) | Field::Timestamp(a) => put(v, events.map(a.get)),
        Field::Int(a) => put(v, events.map(a.get)),
        Field::Double(a) => put(v, events.map(a.get)),
        Field::Bool(a) => put(v, events.map(a.get)),
        Field::Uuid(a) => put(
            v,
            events.map(|e| (a.get)(e).map(|u| i128::from_be_bytes(u.into_bytes()) ^ i128::MIN)),
        ),
        Field::Text(a) | Field::Json(a) => {
            // A null's slot is an empty `string_t` (all zeros), not what the last chunk left
            // there, a pointer into its freed string heap: DuckDB skips null rows, but nothing
            // stale is left for anything that does not.
            let slots = ffi::duckdb_vector_get_data(v) as *mut ffi::duckdb_string_t;
            let mut nulls = Nulls::new(v);
            for (i, s) in events.map(a.get).enumerate() {
                match s {
                    // A `&str` is UTF-8 already: DuckDB's check (10 % of the writer's
                    // time in `perf`) is skipped.
                    Some(s) => ffi::duckdb_unsafe_vector_assign_string_element_len(
                        v,
                        i as u64,
                        s.as_ptr() as *const c_char,
                        s.len() as u64,
                    ),
                    None => {
                        slots.add(i).write_unaligned(std::mem::zeroed());
                        nulls.set(i);
                    }
                }
            }
        }
    }
}

/// Write fixed-width values into vector `v`, from row 0 (a null's slot is left as it is).
///
/// # Safety
/// `v`'s values are `T`s, with room for every value of `values`.
unsafe fn put<T: Copy>(v: ffi::duckdb_vector, values: impl Iterator<Item = Option<T>>) {
    let data = ffi::duckdb_vector_get_data(v) as *mut T;
    let mut nulls = Nulls::new(v);
    for (i, x) in values.enumerate() {
        match x {
            Some(x) => data.add(i).write_unaligned(x),
            None => nulls.set(i),
        }
    }
}

/// A vector's validity mask, made writable at its first null.
struct Nulls {
    v: ffi::duckdb_vector,
    mask: *mut u64,
}

impl Nulls {
    fn new(v: ffi::duckdb_vector) -> Nulls {
        Nulls {
            v,
            mask: std::ptr::null_mut(),
        }
    }

    /// Mark row `i` null.
    ///
    /// # Safety
    /// `i` is below the vector's size.
    unsafe fn set(&mut self, i: usize) {
        if self.mask.is_null() {
            ffi::duckdb_vector_ensure_validity_writable(self.v);
            self.mask = ffi::duckdb_vector_get_validity(self.v);
        }
        *self.mask.add(i / 64) &= !(1u64 << (i % 64));
    }
}
