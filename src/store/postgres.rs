//! PostgreSQL: its schema (`schema.postgres.sql`, the same data model and version numbers as
//! `schema.sql`) and `engram migrate --to postgres://…`, which copies a SQLite data dir into an
//! empty PostgreSQL database (docs/scale-out.md, "Moving up").
//!
//! The copy goes table by table, parents first, each in the order of its key. Rows travel in
//! batches: a batch is sent with binary COPY into a temporary table, inserted from there with
//! `ON CONFLICT DO NOTHING`, and committed together with the count of rows copied so far (the
//! `copied:<table>` row of `meta`). A copy that was interrupted is resumed by running the command
//! again: it skips what the counts say is there, and a row sent twice is stored once. At the end
//! the identity sequences are moved past the copied `seq` values and every table's row count is
//! compared with the source's.
//!
//! The database must be empty, or hold a copy (complete or interrupted) of this same data dir:
//! `meta.copied_from` names the source, and a database holding anything else is refused, as is
//! one written by a newer engram (its `meta.schema_version` is above `SCHEMA_VERSION`).

use super::sql::Value;
use super::sql::{OptionalExtension, PgConn};
use super::{meta_get, meta_set, Conn, Direct, SCHEMA_VERSION};
use crate::error::{Error, Result};
use bytes::BytesMut;
use tokio_postgres::binary_copy::BinaryCopyInWriter;
use tokio_postgres::types::{to_sql_checked, IsNull, ToSql, Type};
use tokio_postgres::{Client, NoTls};

/// The PostgreSQL schema at `SCHEMA_VERSION`, whole.
pub const SCHEMA: &str = include_str!("../../schema.postgres.sql");

/// The tables, parents before children, with the order their rows are copied in: the rowid
/// for tables that have one, else the primary key.
const TABLES: &[(&str, &str)] = &[
    ("meta", "key"),
    ("tenants", "rowid"),
    ("developers", "rowid"),
    ("projects", "rowid"),
    ("project_members", "rowid"),
    ("api_keys", "rowid"),
    ("agents", "rowid"),
    ("connector_catalog", "rowid"),
    ("connectors", "rowid"),
    ("agent_sessions", "tenant_id, agent_id, id"),
    ("agent_messages", "rowid"),
    ("invocations", "rowid"),
    ("events", "rowid"),
    ("event_signatures", "tenant_id, signature"),
    ("jobs", "rowid"),
    ("memories", "rowid"),
    ("artifacts", "rowid"),
    ("artifact_versions", "tenant_id, artifact_id, version"),
    ("usage_counters", "tenant_id, mode, metric, bucket"),
    ("vaults", "rowid"),
    ("vault_items", "rowid"),
    ("vault_audit", "rowid"),
];

/// Tables whose `seq` column is an identity: after a copy, its sequence starts past the rows.
const SEQ_TABLES: &[&str] = &[
    "agent_messages",
    "events",
    "jobs",
    "memories",
    "artifacts",
    "vault_audit",
];

/// `meta` keys of the PostgreSQL database itself, never taken from the source.
const OWN_META: &[&str] = &["schema_version", "copied_from", "copy_verified_at"];

/// Rows sent per batch (one COPY and one commit) unless the command says otherwise.
pub const DEFAULT_BATCH_ROWS: usize = 5_000;

/// One table's outcome: the rows the source holds (and PostgreSQL now holds too), and how many
/// of them this run sent (the rest were there from an earlier, interrupted run).
#[derive(Debug, Clone)]
pub struct TableCopy {
    pub table: &'static str,
    pub rows: u64,
    pub sent: u64,
}

/// What `copy_to_postgres` did.
#[derive(Debug, Clone)]
pub struct CopyReport {
    /// The source's identity (its `instance_id`) as recorded in `meta.copied_from`.
    pub source: String,
    /// The database was created by this run (false: an earlier run's copy was resumed).
    pub created_schema: bool,
    pub tables: Vec<TableCopy>,
}

/// The URL with its password (if any) replaced, for messages.
pub fn redacted(url: &str) -> String {
    match url::Url::parse(url) {
        Ok(mut u) if u.password().is_some() => {
            let _ = u.set_password(Some("***"));
            u.to_string()
        }
        Ok(u) => u.to_string(),
        Err(_) => "(an unparsable URL)".to_string(),
    }
}

fn pg_error(context: &str, e: tokio_postgres::Error) -> Error {
    // `sql::Error` shows the server's own message and detail, not the client's summary.
    Error::Internal(format!("{context}: {}", super::sql::Error::Pg(e)))
}

/// Opens a connection for the server (`engram serve --database postgres://…`).
pub fn connect(url: &str) -> Result<PgConn> {
    check_url(url)?;
    PgConn::connect(url).map_err(|e| {
        Error::Internal(format!(
            "cannot connect to PostgreSQL at {}: {e}",
            redacted(url)
        ))
    })
}

fn check_url(url: &str) -> Result<()> {
    url_problem(url).map_or(Ok(()), |p| Err(Error::Internal(p)))
}

/// What is wrong with `url` as a PostgreSQL URL, if anything.
pub fn url_problem(url: &str) -> Option<String> {
    if url.starts_with("postgres://") || url.starts_with("postgresql://") {
        None
    } else {
        Some(format!(
            "a PostgreSQL URL looks like postgres://user[:password]@host[:port]/database, not '{}'",
            redacted(url)
        ))
    }
}

/// The first schema version a PostgreSQL database had.
const FIRST_VERSION: u32 = 5;

/// The SQL that upgrades a PostgreSQL database from version `to - 1` to `to` (versions count as
/// SQLite's do); `schema.postgres.sql` is the latest version whole.
fn migration(to: u32) -> String {
    match to {
        // 6: jobs carry a lease; the search feed; shared limits.
        6 => format!(
            "ALTER TABLE jobs ADD COLUMN lease_until BIGINT;\n{}",
            super::schema::part_of(SCHEMA, "nodes")
        ),
        _ => String::new(),
    }
}

/// Key of the advisory lock nodes take while they create or migrate the schema.
const SCHEMA_LOCK: i64 = 0x656e_6772_616d_0001;

/// Creates the schema in an empty database or checks an existing one's version: a database
/// written by a newer engram is refused. Nodes starting together take turns (an advisory lock).
pub fn migrate(pg: &PgConn) -> Result<()> {
    let conn = Conn::pg_of(pg);
    conn.execute_batch(&format!("SELECT pg_advisory_lock({SCHEMA_LOCK})"))?;
    let result = (|| {
        let has_meta: bool =
            conn.query_row("SELECT to_regclass('public.meta') IS NOT NULL", [], |r| {
                r.get(0)
            })?;
        if !has_meta {
            let tables: i64 = conn.query_row(
                "SELECT count(*) FROM pg_catalog.pg_tables WHERE schemaname = 'public'",
                [],
                |r| r.get(0),
            )?;
            if tables > 0 {
                return Err(Error::Internal(format!(
                    "the PostgreSQL database is not empty ({tables} tables in schema public) and \
                     holds no engram schema; give engram an empty database"
                )));
            }
            conn.execute_batch(&format!("BEGIN; {SCHEMA} COMMIT;"))?;
            return Ok(());
        }
        let version: Option<String> = conn
            .query_row(
                "SELECT value FROM meta WHERE key = 'schema_version'",
                [],
                |r| r.get(0),
            )
            .optional()?;
        match version.as_deref().and_then(|v| v.parse::<u32>().ok()) {
            Some(v) if v == SCHEMA_VERSION => Ok(()),
            Some(v) if (FIRST_VERSION..SCHEMA_VERSION).contains(&v) => {
                let mut steps = String::from("BEGIN;");
                for to in v + 1..=SCHEMA_VERSION {
                    steps.push_str(&migration(to));
                    steps.push_str(&format!(
                        ";\nUPDATE meta SET value = '{to}' WHERE key = 'schema_version';"
                    ));
                }
                steps.push_str("COMMIT;");
                conn.execute_batch(&steps)?;
                tracing::info!(from = v, to = SCHEMA_VERSION, "PostgreSQL schema migrated");
                Ok(())
            }
            Some(v) if v > SCHEMA_VERSION => Err(Error::Internal(format!(
                "the PostgreSQL database was written by a newer engram (schema version {v}; this \
                 engram knows up to {SCHEMA_VERSION}); use that engram's binary"
            ))),
            other => Err(Error::Internal(format!(
                "the PostgreSQL database has an engram meta table with schema version {other:?}, \
                 which no engram wrote"
            ))),
        }
    })();
    let _ = conn.execute_batch(&format!("SELECT pg_advisory_unlock({SCHEMA_LOCK})"));
    result
}

/// The schema version of the database (0 when it holds no engram schema yet).
pub fn schema_version(pg: &PgConn) -> Result<u32> {
    let conn = Conn::pg_of(pg);
    let has_meta: bool =
        conn.query_row("SELECT to_regclass('public.meta') IS NOT NULL", [], |r| {
            r.get(0)
        })?;
    if !has_meta {
        return Ok(0);
    }
    let v: Option<String> = conn
        .query_row(
            "SELECT value FROM meta WHERE key = 'schema_version'",
            [],
            |r| r.get(0),
        )
        .optional()?;
    Ok(v.and_then(|v| v.parse().ok()).unwrap_or(0))
}

/// Connections of the readers' pool.
pub struct Manager {
    url: String,
}

impl Manager {
    pub fn new(url: &str) -> Manager {
        Manager {
            url: url.to_string(),
        }
    }
}

impl r2d2::ManageConnection for Manager {
    type Connection = PgConn;
    type Error = super::sql::Error;

    fn connect(&self) -> std::result::Result<PgConn, super::sql::Error> {
        PgConn::connect(&self.url)
    }

    fn is_valid(&self, conn: &mut PgConn) -> std::result::Result<(), super::sql::Error> {
        conn.batch("")
    }

    fn has_broken(&self, conn: &mut PgConn) -> bool {
        conn.is_closed()
    }
}

/// Copies the SQLite database of `source` (at `SCHEMA_VERSION`, with no server on it) into the
/// PostgreSQL database at `url`, creating the schema there when it is empty, or resuming an
/// earlier copy of the same source. `progress(done, total)` is told rows as they are committed
/// (`done` counts rows an earlier run copied too). Every table's count is verified at the end.
pub fn copy_to_postgres(
    source: &mut Direct,
    url: &str,
    batch_rows: usize,
    mut progress: impl FnMut(u64, u64),
) -> Result<CopyReport> {
    if let Some(p) = url_problem(url) {
        return Err(Error::Internal(format!("--to: {p}")));
    }
    let batch_rows = batch_rows.max(1);
    let version = source.schema_version()?;
    if version != SCHEMA_VERSION {
        return Err(Error::Internal(format!(
            "the data dir's database is at schema version {version}, this engram copies version \
             {SCHEMA_VERSION}; run `engram migrate` on it first"
        )));
    }
    // The source's identity: the `instance_id` of its meta, given to it by its first copy.
    let source_id = source.transaction(|c| match meta_get(c, "instance_id")? {
        Some(id) => Ok(id),
        None => {
            let id = crate::ids::new("inst");
            meta_set(c, "instance_id", &id)?;
            Ok(id)
        }
    })?;
    let source = &*source;
    let sqlite = source.conn();
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(Error::internal)?;
    let shown = redacted(url);
    let mut client = runtime.block_on(async {
        let (client, connection) = tokio_postgres::connect(url, NoTls)
            .await
            .map_err(|e| pg_error(&format!("cannot connect to PostgreSQL at {shown}"), e))?;
        tokio::spawn(async move {
            if let Err(e) = connection.await {
                tracing::warn!(error = %e, "the PostgreSQL connection ended");
            }
        });
        Ok::<_, Error>(client)
    })?;
    let created_schema = runtime.block_on(prepare_target(&mut client, &source_id, &shown))?;

    // One read transaction: the counts and every row come from one snapshot.
    sqlite.execute_batch("BEGIN")?;
    let result = (|| {
        let mut totals = Vec::with_capacity(TABLES.len());
        for (table, _) in TABLES {
            let n: i64 =
                sqlite.query_row(&format!("SELECT count(*) FROM {table}"), [], |r| r.get(0))?;
            totals.push(n as u64);
        }
        let total: u64 = totals.iter().sum();
        let mut done = 0u64;
        let mut tables = Vec::with_capacity(TABLES.len());
        for ((table, order), rows) in TABLES.iter().zip(totals) {
            let already = runtime.block_on(copied_count(&client, table))?.min(rows);
            done += already;
            progress(done, total);
            let sent = if already < rows {
                copy_table(
                    &runtime,
                    &mut client,
                    source,
                    table,
                    order,
                    already,
                    batch_rows,
                    &mut |n| {
                        done += n;
                        progress(done, total)
                    },
                )?
            } else {
                0
            };
            tables.push(TableCopy { table, rows, sent });
        }
        Ok::<_, Error>(tables)
    })();
    let _ = sqlite.execute_batch("COMMIT");
    let tables = result?;
    runtime.block_on(finish(&mut client, &tables))?;
    Ok(CopyReport {
        source: source_id,
        created_schema,
        tables,
    })
}

/// Creates the schema in an empty database, or checks that the database holds (part of) a copy
/// of this source at this schema version. Returns whether the schema was created.
async fn prepare_target(client: &mut Client, source_id: &str, shown: &str) -> Result<bool> {
    let has_meta: bool = client
        .query_one("SELECT to_regclass('public.meta') IS NOT NULL", &[])
        .await
        .map_err(|e| pg_error("cannot read the database's tables", e))?
        .get(0);
    if !has_meta {
        let tables: i64 = client
            .query_one(
                "SELECT count(*) FROM pg_catalog.pg_tables WHERE schemaname = 'public'",
                &[],
            )
            .await
            .map_err(|e| pg_error("cannot read the database's tables", e))?
            .get(0);
        if tables > 0 {
            return Err(Error::Internal(format!(
                "the PostgreSQL database at {shown} is not empty ({tables} tables in schema public) \
                 and holds no engram schema; give an empty database"
            )));
        }
        let tx = client
            .transaction()
            .await
            .map_err(|e| pg_error("cannot begin a transaction", e))?;
        tx.batch_execute(SCHEMA)
            .await
            .map_err(|e| pg_error("cannot create the engram schema", e))?;
        tx.execute(
            "INSERT INTO meta(key, value) VALUES ('copied_from', $1)",
            &[&source_id],
        )
        .await
        .map_err(|e| pg_error("cannot record the copy's source", e))?;
        tx.commit()
            .await
            .map_err(|e| pg_error("cannot create the engram schema", e))?;
        return Ok(true);
    }
    let version = own_meta(client, "schema_version").await?;
    let version: u32 = version
        .as_deref()
        .and_then(|v| v.parse().ok())
        .ok_or_else(|| {
            Error::Internal(format!(
                "the PostgreSQL database at {shown} has a meta table without a schema version \
                 ({version:?}); it was not created by engram"
            ))
        })?;
    if version > SCHEMA_VERSION {
        return Err(Error::Internal(format!(
            "the PostgreSQL database at {shown} was written by a newer engram (schema version \
             {version}; this engram knows up to {SCHEMA_VERSION}); use that engram's binary"
        )));
    }
    if version < SCHEMA_VERSION {
        return Err(Error::Internal(format!(
            "the PostgreSQL database at {shown} is at schema version {version}, older than this \
             engram copies into ({SCHEMA_VERSION}): start this engram's server on it once (which \
             migrates it), or give an empty database"
        )));
    }
    match own_meta(client, "copied_from").await? {
        Some(from) if from == source_id => Ok(false),
        Some(from) => Err(Error::Internal(format!(
            "the PostgreSQL database at {shown} holds a copy of another data dir ({from}); \
             give an empty database"
        ))),
        None => Err(Error::Internal(format!(
            "the PostgreSQL database at {shown} already holds engram data that was not copied \
             from this data dir; give an empty database"
        ))),
    }
}

async fn own_meta(client: &Client, key: &str) -> Result<Option<String>> {
    Ok(client
        .query_opt("SELECT value FROM meta WHERE key = $1", &[&key])
        .await
        .map_err(|e| pg_error("cannot read meta", e))?
        .map(|r| r.get(0)))
}

async fn copied_count(client: &Client, table: &str) -> Result<u64> {
    Ok(own_meta(client, &format!("copied:{table}"))
        .await?
        .and_then(|v| v.parse().ok())
        .unwrap_or(0))
}

/// A column of the PostgreSQL table: its name and the type COPY sends.
struct Column {
    name: String,
    ty: Type,
}

async fn columns(client: &Client, table: &str) -> Result<Vec<Column>> {
    let rows = client
        .query(
            "SELECT column_name::text, data_type::text FROM information_schema.columns
             WHERE table_schema = 'public' AND table_name = $1 ORDER BY ordinal_position",
            &[&table],
        )
        .await
        .map_err(|e| pg_error(&format!("cannot read the columns of {table}"), e))?;
    rows.iter()
        .map(|r| {
            let name: String = r.get(0);
            let data_type: String = r.get(1);
            let ty = match data_type.as_str() {
                "bigint" => Type::INT8,
                "double precision" => Type::FLOAT8,
                "text" => Type::TEXT,
                "bytea" => Type::BYTEA,
                other => {
                    return Err(Error::Internal(format!(
                        "column {table}.{name} has type {other}, which the engram schema never uses"
                    )))
                }
            };
            Ok(Column { name, ty })
        })
        .collect()
}

/// One value on its way to COPY, already checked against its column's type.
#[derive(Debug)]
enum Cell {
    Null,
    Int(i64),
    Float(f64),
    Text(String),
    Bytes(Vec<u8>),
}

impl ToSql for Cell {
    fn to_sql(
        &self,
        ty: &Type,
        out: &mut BytesMut,
    ) -> std::result::Result<IsNull, Box<dyn std::error::Error + Sync + Send>> {
        match self {
            Cell::Null => Ok(IsNull::Yes),
            Cell::Int(v) => v.to_sql(ty, out),
            Cell::Float(v) => v.to_sql(ty, out),
            Cell::Text(v) => v.to_sql(ty, out),
            Cell::Bytes(v) => v.to_sql(ty, out),
        }
    }

    fn accepts(ty: &Type) -> bool {
        [Type::INT8, Type::FLOAT8, Type::TEXT, Type::BYTEA].contains(ty)
    }

    to_sql_checked!();
}

/// The SQLite value as a value of the PostgreSQL column, or an error naming table, row and
/// column (SQLite's columns hold what the code wrote; a mismatch means a damaged row).
fn cell(value: Value, col: &Column, table: &str, row: u64) -> Result<Cell> {
    let mismatch = |what: &str| {
        Error::Internal(format!(
            "{table} row {row} (in copy order), column {}: SQLite holds {what}, PostgreSQL's \
             column is {}",
            col.name, col.ty
        ))
    };
    Ok(match (value, &col.ty) {
        (Value::Null, _) => Cell::Null,
        (Value::Int(v), t) if *t == Type::INT8 => Cell::Int(v),
        (Value::Int(v), t) if *t == Type::FLOAT8 => Cell::Float(v as f64),
        (Value::Real(v), t) if *t == Type::FLOAT8 => Cell::Float(v),
        (Value::Text(v), t) if *t == Type::TEXT => Cell::Text(v),
        (Value::Blob(v), t) if *t == Type::BYTEA => Cell::Bytes(v),
        (Value::Int(v), _) => return Err(mismatch(&format!("the integer {v}"))),
        (Value::Real(v), _) => return Err(mismatch(&format!("the real {v}"))),
        (Value::Text(_), _) => return Err(mismatch("text")),
        (Value::Blob(_), _) => return Err(mismatch("a blob")),
    })
}

/// Sends the rows of `table` after the first `skip` (in copy order) in batches; returns how many
/// it sent. `sent(n)` is told each committed batch.
#[allow(clippy::too_many_arguments)]
fn copy_table(
    runtime: &tokio::runtime::Runtime,
    client: &mut Client,
    source: &Direct,
    table: &'static str,
    order: &str,
    skip: u64,
    batch_rows: usize,
    sent: &mut dyn FnMut(u64),
) -> Result<u64> {
    let columns = runtime.block_on(columns(client, table))?;
    let names: Vec<&str> = columns.iter().map(|c| c.name.as_str()).collect();
    let mut stmt = source.conn().prepare(&format!(
        "SELECT {} FROM {table} ORDER BY {order}",
        names.join(", ")
    ))?;
    let mut rows = stmt.query([])?;
    let mut position = 0u64;
    while position < skip && rows.next()?.is_some() {
        position += 1;
    }
    let mut batch: Vec<Vec<Cell>> = Vec::with_capacity(batch_rows);
    let mut committed = position;
    let mut finished = false;
    while !finished {
        match rows.next()? {
            Some(row) => {
                position += 1;
                let mut cells = Vec::with_capacity(columns.len());
                for (i, col) in columns.iter().enumerate() {
                    cells.push(cell(row.get::<Value>(i)?, col, table, position)?);
                }
                batch.push(cells);
            }
            None => finished = true,
        }
        if batch.len() >= batch_rows || (finished && !batch.is_empty()) {
            runtime.block_on(send_batch(client, table, &columns, &batch, position))?;
            batch.clear();
            sent(position - committed);
            committed = position;
        }
    }
    Ok(position - skip.min(position))
}

fn failed(context: &'static str) -> impl Fn(tokio_postgres::Error) -> Error {
    move |e| pg_error(context, e)
}

/// One batch in one transaction: COPY into a temporary table, insert what is not there yet, and
/// record how many rows of the table (in copy order) are now copied.
async fn send_batch(
    client: &mut Client,
    table: &str,
    columns: &[Column],
    batch: &[Vec<Cell>],
    copied: u64,
) -> Result<()> {
    let tx = client
        .transaction()
        .await
        .map_err(failed("cannot begin a transaction"))?;
    tx.batch_execute(&format!(
        "CREATE TEMP TABLE engram_stage (LIKE {table}) ON COMMIT DROP"
    ))
    .await
    .map_err(failed("cannot create the staging table"))?;
    let sink = tx
        .copy_in("COPY engram_stage FROM STDIN BINARY")
        .await
        .map_err(failed("cannot start COPY"))?;
    let types: Vec<Type> = columns.iter().map(|c| c.ty.clone()).collect();
    let writer = BinaryCopyInWriter::new(sink, &types);
    tokio::pin!(writer);
    for row in batch {
        let values: Vec<&(dyn ToSql + Sync)> =
            row.iter().map(|c| c as &(dyn ToSql + Sync)).collect();
        writer
            .as_mut()
            .write(&values)
            .await
            .map_err(|e| pg_error(&format!("cannot send rows of {table}"), e))?;
    }
    writer
        .finish()
        .await
        .map_err(|e| pg_error(&format!("cannot send rows of {table}"), e))?;
    tx.execute(
        &format!("INSERT INTO {table} SELECT * FROM engram_stage ON CONFLICT DO NOTHING"),
        &[],
    )
    .await
    .map_err(|e| pg_error(&format!("cannot insert rows of {table}"), e))?;
    tx.execute(
        "INSERT INTO meta(key, value) VALUES ($1, $2)
         ON CONFLICT (key) DO UPDATE SET value = excluded.value",
        &[&format!("copied:{table}"), &copied.to_string()],
    )
    .await
    .map_err(failed("cannot record the copy's progress"))?;
    tx.commit()
        .await
        .map_err(|e| pg_error(&format!("cannot commit rows of {table}"), e))
}

/// After the last row: identity sequences past the copied `seq` values, then every table's count
/// compared with the source's (meta: its rows other than this database's own).
async fn finish(client: &mut Client, tables: &[TableCopy]) -> Result<()> {
    for table in SEQ_TABLES {
        client
            .batch_execute(&format!(
                "SELECT setval(pg_get_serial_sequence('{table}', 'seq'),
                               coalesce((SELECT max(seq) FROM {table}), 0) + 1, false)"
            ))
            .await
            .map_err(|e| pg_error(&format!("cannot set the sequence of {table}"), e))?;
    }
    // The copied rows of memories and artifacts went through the search feed's triggers; no node
    // has an index of this database yet (a node starting on it builds one from the tables), so
    // their feed rows would only be read once more.
    client
        .batch_execute("TRUNCATE index_feed")
        .await
        .map_err(|e| pg_error("cannot empty the search feed", e))?;
    let own = OWN_META
        .iter()
        .map(|k| format!("'{k}'"))
        .collect::<Vec<_>>()
        .join(", ");
    let mut wrong = Vec::new();
    for t in tables {
        let sql = if t.table == "meta" {
            format!(
                "SELECT count(*) FROM meta WHERE key NOT IN ({own}) AND key NOT LIKE 'copied:%'"
            )
        } else {
            format!("SELECT count(*) FROM {}", t.table)
        };
        let n: i64 = client
            .query_one(&sql, &[])
            .await
            .map_err(|e| pg_error(&format!("cannot count the rows of {}", t.table), e))?
            .get(0);
        if n as u64 != t.rows {
            wrong.push(format!(
                "{}: {} rows in SQLite, {n} in PostgreSQL",
                t.table, t.rows
            ));
        }
    }
    if !wrong.is_empty() {
        return Err(Error::Internal(format!(
            "the copy does not match its source: {}",
            wrong.join("; ")
        )));
    }
    client
        .execute(
            "INSERT INTO meta(key, value) VALUES ('copy_verified_at', $1)
             ON CONFLICT (key) DO UPDATE SET value = excluded.value",
            &[&crate::time::now_rfc3339()],
        )
        .await
        .map_err(failed("cannot record the verification"))?;
    Ok(())
}
