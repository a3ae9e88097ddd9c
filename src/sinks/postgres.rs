//! PostgreSQL: binary `COPY` into a session-local staging table, then
//! `INSERT … ON CONFLICT (event_id) DO NOTHING`, in one transaction per batch.

use super::{ForgetRequest, Outcome, Range, Sink};
use crate::event::columns::{NAME, SITE, TS, VISITOR_ID};
use crate::event::{Field, Kind, COLUMNS, EVENT_ID};
use crate::store::Record;
use crate::store::Subject;
use async_trait::async_trait;
use bytes::{BufMut, BytesMut};
use std::error::Error as _;
use std::sync::OnceLock;
use std::time::{Duration, SystemTime};
use tokio_postgres::binary_copy::BinaryCopyInWriter;
use tokio_postgres::types::{IsNull, ToSql, Type, WrongType};
use tokio_postgres::{Client, NoTls};

/// The column list, in the order values are copied: the store's.
fn column_list() -> &'static str {
    static LIST: OnceLock<String> = OnceLock::new();
    LIST.get_or_init(|| {
        COLUMNS
            .iter()
            .map(|c| c.name)
            .collect::<Vec<_>>()
            .join(", ")
    })
}

/// PostgreSQL's type for a column.
fn pg_type(kind: Kind) -> &'static str {
    match kind {
        Kind::BigInt => "bigint",
        Kind::Int => "integer",
        Kind::Double => "double precision",
        Kind::Bool => "boolean",
        Kind::Timestamp => "timestamptz",
        Kind::Text => "text",
        Kind::Json => "jsonb",
        Kind::Uuid => "uuid",
    }
}

/// The table tollgate creates when it is missing, with its indexes; `docs/warehouses.md`
/// shows it too.
pub fn create_table(table: &str) -> String {
    let short = table.rsplit('.').next().unwrap_or(table);
    let columns: Vec<String> = COLUMNS
        .iter()
        .map(|c| {
            let constraint = if c.name == EVENT_ID {
                " PRIMARY KEY"
            } else if c.nullable {
                ""
            } else {
                " NOT NULL"
            };
            format!("    {} {}{constraint}", c.name, pg_type(c.kind()))
        })
        .collect();
    format!(
        "CREATE TABLE IF NOT EXISTS {table} (
{}
);
CREATE INDEX IF NOT EXISTS {short}_ts_idx ON {table} ({TS});
CREATE INDEX IF NOT EXISTS {short}_visitor_idx ON {table} ({VISITOR_ID}, {TS});
CREATE INDEX IF NOT EXISTS {short}_site_name_ts_idx ON {table} ({SITE}, {NAME}, {TS});",
        columns.join(",\n")
    )
}

pub struct Postgres {
    config: tokio_postgres::Config,
    table: String,
    timeout: Duration,
    /// The connection and the table's column types, once connected and the table exists.
    conn: Option<(Client, Vec<Type>)>,
}

impl Postgres {
    pub fn new(url: &str, table: &str, timeout: Duration) -> anyhow::Result<Self> {
        let mut config: tokio_postgres::Config = url
            .parse()
            .map_err(|e| anyhow::anyhow!("invalid PostgreSQL URL: {e}"))?;
        if config.get_connect_timeout().is_none() {
            config.connect_timeout(timeout.min(Duration::from_secs(5)));
        }
        config.application_name("tollgate");
        Ok(Postgres {
            config,
            table: table.to_string(),
            timeout,
            conn: None,
        })
    }

    async fn connect(&self) -> Result<(Client, Vec<Type>), String> {
        let (client, connection) = self
            .config
            .connect(NoTls)
            .await
            .map_err(|e| format!("PostgreSQL unreachable: {}", describe(&e)))?;
        tokio::spawn(async move {
            let _ = connection.await;
        });
        client
            .batch_execute(&create_table(&self.table))
            .await
            .map_err(|e| format!("creating table {}: {}", self.table, describe(&e)))?;
        let stmt = client
            .prepare(&format!(
                "SELECT {} FROM {} LIMIT 0",
                column_list(),
                self.table
            ))
            .await
            .map_err(|e| format!("reading the columns of {}: {}", self.table, describe(&e)))?;
        let types = stmt.columns().iter().map(|c| c.type_().clone()).collect();
        client
            .batch_execute(&format!(
                "CREATE TEMP TABLE IF NOT EXISTS tollgate_staging
                   (LIKE {} INCLUDING DEFAULTS) ON COMMIT DELETE ROWS",
                self.table
            ))
            .await
            .map_err(|e| format!("creating the staging table: {}", describe(&e)))?;
        Ok((client, types))
    }

    async fn copy(
        client: &mut Client,
        types: &[Type],
        table: &str,
        records: &[Record],
    ) -> Result<(), tokio_postgres::Error> {
        let tx = client.transaction().await?;
        let sink = tx
            .copy_in(&format!(
                "COPY tollgate_staging ({}) FROM STDIN (FORMAT binary)",
                column_list()
            ))
            .await?;
        let writer = BinaryCopyInWriter::new(sink, types);
        futures_util::pin_mut!(writer);
        for r in records {
            let values = COLUMNS.each_ref().map(|c| Value::of(&c.field, r));
            let refs = values.each_ref().map(|v| v as &(dyn ToSql + Sync));
            writer.as_mut().write(&refs).await?;
        }
        writer.finish().await?;
        tx.execute(
            &format!(
                "INSERT INTO {table} ({0}) SELECT {0} FROM tollgate_staging
                 ON CONFLICT ({EVENT_ID}) DO NOTHING",
                column_list()
            ),
            &[],
        )
        .await?;
        tx.commit().await
    }
}

#[async_trait]
impl Sink for Postgres {
    async fn send(&mut self, _range: Range, records: &[Record]) -> Outcome {
        if records.is_empty() {
            return Outcome::Delivered;
        }
        if self.conn.is_none() {
            match tokio::time::timeout(self.timeout, self.connect()).await {
                Ok(Ok(c)) => self.conn = Some(c),
                Ok(Err(e)) => return Outcome::Retry(e),
                Err(_) => return Outcome::Retry("PostgreSQL: connecting timed out".into()),
            }
        }
        let Some((client, types)) = self.conn.as_mut() else {
            return Outcome::Retry("PostgreSQL: not connected".into());
        };
        let res = tokio::time::timeout(
            self.timeout,
            Self::copy(client, types, &self.table, records),
        )
        .await;
        match res {
            Ok(Ok(())) => Outcome::Delivered,
            Err(_) => {
                // The connection is in an unknown state: start afresh.
                self.conn = None;
                Outcome::Retry(format!(
                    "PostgreSQL: the batch took longer than {:?}",
                    self.timeout
                ))
            }
            Ok(Err(e)) => {
                let msg = format!("PostgreSQL: {}", describe(&e));
                // Either way, start the next attempt on a fresh connection: a COPY cut short
                // leaves the session in a state not worth reasoning about, and the table may
                // have been dropped or altered (it is created again on connecting).
                self.conn = None;
                if refuses_data(&e) {
                    Outcome::Reject(msg)
                } else {
                    Outcome::Retry(msg)
                }
            }
        }
    }

    async fn forget(&mut self, request: &ForgetRequest) -> Outcome {
        match tokio::time::timeout(self.timeout, self.delete(request)).await {
            Ok(Ok(())) => Outcome::Delivered,
            Ok(Err(e)) => Outcome::Retry(e),
            Err(_) => {
                self.conn = None;
                Outcome::Retry("PostgreSQL: the delete timed out".into())
            }
        }
    }
}

impl Postgres {
    async fn delete(&mut self, request: &ForgetRequest) -> Result<(), String> {
        if self.conn.is_none() {
            self.conn = Some(self.connect().await?);
        }
        let Some((client, _)) = self.conn.as_ref() else {
            return Err("PostgreSQL: not connected".into());
        };
        let sql = format!(
            "DELETE FROM {} WHERE {} = $1",
            self.table,
            request.subject.column()
        );
        let res = match &request.subject {
            Subject::Visitor(v) => client.execute(&sql, &[v]).await,
            Subject::User(u) => client.execute(&sql, &[u]).await,
        };
        res.map(|_| ()).map_err(|e| {
            self.conn = None;
            format!("PostgreSQL: {}", describe(&e))
        })
    }
}

/// Whether `e` says the data itself does not fit the table: a value of the wrong type for a
/// column (found before sending), a data exception (class 22) or a violated constraint
/// (class 23).
fn refuses_data(e: &tokio_postgres::Error) -> bool {
    if e.source()
        .is_some_and(|s| s.downcast_ref::<WrongType>().is_some())
    {
        return true;
    }
    e.code()
        .is_some_and(|c| c.code().starts_with("22") || c.code().starts_with("23"))
}

/// The server's message when there is one (with its detail), else the client's.
fn describe(e: &tokio_postgres::Error) -> String {
    match e.as_db_error() {
        Some(db) => match db.detail() {
            Some(d) => format!("{} ({}) [{}]", db.message(), d, db.code().code()),
            None => format!("{} [{}]", db.message(), db.code().code()),
        },
        None => match e.source() {
            Some(s) => format!("{e}: {s}"),
            None => e.to_string(),
        },
    }
}

fn at(us: i64) -> SystemTime {
    if us >= 0 {
        SystemTime::UNIX_EPOCH + Duration::from_micros(us as u64)
    } else {
        SystemTime::UNIX_EPOCH - Duration::from_micros(us.unsigned_abs())
    }
}

/// One value of a row, as its column's type.
#[derive(Debug)]
enum Value<'a> {
    BigInt(Option<i64>),
    Int(Option<i32>),
    Double(Option<f64>),
    Bool(Option<bool>),
    Time(Option<SystemTime>),
    Text(Option<&'a str>),
    Json(Json<'a>),
    Uuid(Option<uuid::Uuid>),
}

impl<'a> Value<'a> {
    fn of(field: &Field, r: &'a Record) -> Value<'a> {
        let e = &r.event;
        match field {
            Field::Seq => Value::BigInt(Some(r.seq)),
            Field::BigInt(a) => Value::BigInt((a.get)(e)),
            Field::Int(a) => Value::Int((a.get)(e)),
            Field::Double(a) => Value::Double((a.get)(e)),
            Field::Bool(a) => Value::Bool((a.get)(e)),
            Field::Timestamp(a) => Value::Time((a.get)(e).map(at)),
            Field::Text(a) => Value::Text((a.get)(e)),
            Field::Json(a) => Value::Json(Json((a.get)(e))),
            Field::Uuid(a) => Value::Uuid((a.get)(e)),
        }
    }
}

impl ToSql for Value<'_> {
    fn to_sql(
        &self,
        ty: &Type,
        out: &mut BytesMut,
    ) -> Result<IsNull, Box<dyn std::error::Error + Sync + Send>> {
        match self {
            Value::BigInt(v) => v.to_sql(ty, out),
            Value::Int(v) => v.to_sql(ty, out),
            Value::Double(v) => v.to_sql(ty, out),
            Value::Bool(v) => v.to_sql(ty, out),
            Value::Time(v) => v.to_sql(ty, out),
            Value::Text(v) => v.to_sql(ty, out),
            Value::Json(v) => v.to_sql(ty, out),
            Value::Uuid(v) => v.to_sql(ty, out),
        }
    }

    /// Any type here: each value checks its own against the column in `to_sql_checked`.
    fn accepts(_: &Type) -> bool {
        true
    }

    fn to_sql_checked(
        &self,
        ty: &Type,
        out: &mut BytesMut,
    ) -> Result<IsNull, Box<dyn std::error::Error + Sync + Send>> {
        match self {
            Value::BigInt(v) => v.to_sql_checked(ty, out),
            Value::Int(v) => v.to_sql_checked(ty, out),
            Value::Double(v) => v.to_sql_checked(ty, out),
            Value::Bool(v) => v.to_sql_checked(ty, out),
            Value::Time(v) => v.to_sql_checked(ty, out),
            Value::Text(v) => v.to_sql_checked(ty, out),
            Value::Json(v) => v.to_sql_checked(ty, out),
            Value::Uuid(v) => v.to_sql_checked(ty, out),
        }
    }
}

/// JSON text sent as `jsonb` (or `json`, or text) without parsing it again.
#[derive(Debug)]
struct Json<'a>(Option<&'a str>);

impl ToSql for Json<'_> {
    fn to_sql(
        &self,
        ty: &Type,
        out: &mut BytesMut,
    ) -> Result<IsNull, Box<dyn std::error::Error + Sync + Send>> {
        let Some(s) = self.0 else {
            return Ok(IsNull::Yes);
        };
        if *ty == Type::JSONB {
            out.put_u8(1);
        }
        out.put_slice(s.as_bytes());
        Ok(IsNull::No)
    }

    fn accepts(ty: &Type) -> bool {
        matches!(*ty, Type::JSONB | Type::JSON | Type::TEXT | Type::VARCHAR)
    }

    tokio_postgres::types::to_sql_checked!();
}
