//! PostgreSQL: binary `COPY` into a session-local staging table, then
//! `INSERT … ON CONFLICT (event_id) DO NOTHING`, in one transaction per batch.

use super::{ForgetRequest, Outcome, Range, Sink};
use crate::store::Record;
use crate::store::Subject;
use async_trait::async_trait;
use bytes::{BufMut, BytesMut};
use std::error::Error as _;
use std::time::{Duration, SystemTime};
use tokio_postgres::binary_copy::BinaryCopyInWriter;
use tokio_postgres::types::{IsNull, ToSql, Type, WrongType};
use tokio_postgres::{Client, NoTls};

/// The column list, in the order values are copied.
const COLUMNS: &str = "seq, event_id, ts, received_at, site, name, source, visitor_id, \
    session_id, user_id, request_id, method, host, path, route, query, status, duration_ms, \
    bytes_out, referrer, referrer_host, channel, utm_source, utm_medium, utm_campaign, utm_term, \
    utm_content, click_id_type, click_id, user_agent, browser, browser_version, os, device_type, \
    is_bot, bot_reason, ip, country, region, city, props";

/// The table tollgate creates when it is missing, with its indexes; `docs/warehouses.md`
/// shows it too.
pub fn create_table(table: &str) -> String {
    let short = table.rsplit('.').next().unwrap_or(table);
    format!(
        "CREATE TABLE IF NOT EXISTS {table} (
    seq bigint NOT NULL,
    event_id uuid PRIMARY KEY,
    ts timestamptz NOT NULL,
    received_at timestamptz NOT NULL,
    site text NOT NULL,
    name text NOT NULL,
    source text,
    visitor_id uuid,
    session_id uuid,
    user_id text,
    request_id text,
    method text,
    host text,
    path text,
    route text,
    query text,
    status integer,
    duration_ms double precision,
    bytes_out bigint,
    referrer text,
    referrer_host text,
    channel text,
    utm_source text,
    utm_medium text,
    utm_campaign text,
    utm_term text,
    utm_content text,
    click_id_type text,
    click_id text,
    user_agent text,
    browser text,
    browser_version text,
    os text,
    device_type text,
    is_bot boolean,
    bot_reason text,
    ip text,
    country text,
    region text,
    city text,
    props jsonb
);
CREATE INDEX IF NOT EXISTS {short}_ts_idx ON {table} (ts);
CREATE INDEX IF NOT EXISTS {short}_visitor_idx ON {table} (visitor_id, ts);
CREATE INDEX IF NOT EXISTS {short}_site_name_ts_idx ON {table} (site, name, ts);"
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
            .prepare(&format!("SELECT {COLUMNS} FROM {} LIMIT 0", self.table))
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
                "COPY tollgate_staging ({COLUMNS}) FROM STDIN (FORMAT binary)"
            ))
            .await?;
        let writer = BinaryCopyInWriter::new(sink, types);
        futures_util::pin_mut!(writer);
        for r in records {
            let e = &r.event;
            let ts = at(e.ts_us);
            let received_at = at(e.received_at_us);
            let source = e.source.map(|s| s.as_str());
            let status = e.status.map(i32::from);
            let bytes_out = e.bytes_out.map(|b| b as i64);
            let props = Json(e.props.as_deref());
            let values: [&(dyn ToSql + Sync); 41] = [
                &r.seq,
                &e.event_id,
                &ts,
                &received_at,
                &e.site,
                &e.name,
                &source,
                &e.visitor_id,
                &e.session_id,
                &e.user_id,
                &e.request_id,
                &e.method,
                &e.host,
                &e.path,
                &e.route,
                &e.query,
                &status,
                &e.duration_ms,
                &bytes_out,
                &e.referrer,
                &e.referrer_host,
                &e.channel,
                &e.utm_source,
                &e.utm_medium,
                &e.utm_campaign,
                &e.utm_term,
                &e.utm_content,
                &e.click_id_type,
                &e.click_id,
                &e.user_agent,
                &e.browser,
                &e.browser_version,
                &e.os,
                &e.device_type,
                &e.is_bot,
                &e.bot_reason,
                &e.ip,
                &e.country,
                &e.region,
                &e.city,
                &props,
            ];
            writer.as_mut().write(&values).await?;
        }
        writer.finish().await?;
        tx.execute(
            &format!(
                "INSERT INTO {table} ({COLUMNS}) SELECT {COLUMNS} FROM tollgate_staging
                 ON CONFLICT (event_id) DO NOTHING"
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
        let res = match &request.subject {
            Subject::Visitor(v) => {
                client
                    .execute(
                        &format!("DELETE FROM {} WHERE visitor_id = $1", self.table),
                        &[v],
                    )
                    .await
            }
            Subject::User(u) => {
                client
                    .execute(
                        &format!("DELETE FROM {} WHERE user_id = $1", self.table),
                        &[u],
                    )
                    .await
            }
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
