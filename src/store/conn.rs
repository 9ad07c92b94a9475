//! Connections: how one is opened (pragmas, WAL verified), the `Conn` that read and write
//! closures receive, and how rows are read into domain values.

use crate::error::{Error, Result};
use r2d2_sqlite::SqliteConnectionManager;
use rusqlite::{Connection, OpenFlags};
use std::path::Path;
use std::time::Duration;

pub type ReadPool = r2d2::Pool<SqliteConnectionManager>;

/// The connection a read or write closure is given. Code outside this layer can only hand it to
/// this layer's functions: its SQL methods are private to `store`, and it names no rusqlite type
/// in its public interface (`sqlite` exists for tests and benchmarks that seed or inspect rows).
#[derive(Clone, Copy)]
pub struct Conn<'a>(pub(in crate::store) &'a Connection);

impl<'a> Conn<'a> {
    /// The underlying SQLite connection, for tests and benchmarks only: the server's own code
    /// outside `store` never calls it (a unit test checks).
    #[doc(hidden)]
    pub fn sqlite(&self) -> &'a Connection {
        self.0
    }

    pub(in crate::store) fn prepare_cached(
        &self,
        sql: &str,
    ) -> rusqlite::Result<rusqlite::CachedStatement<'a>> {
        self.0.prepare_cached(sql)
    }

    pub(in crate::store) fn prepare(&self, sql: &str) -> rusqlite::Result<rusqlite::Statement<'a>> {
        self.0.prepare(sql)
    }

    pub(in crate::store) fn execute<P: rusqlite::Params>(
        &self,
        sql: &str,
        params: P,
    ) -> rusqlite::Result<usize> {
        self.0.execute(sql, params)
    }

    pub(in crate::store) fn execute_batch(&self, sql: &str) -> rusqlite::Result<()> {
        self.0.execute_batch(sql)
    }

    pub(in crate::store) fn query_row<T, P, F>(
        &self,
        sql: &str,
        params: P,
        f: F,
    ) -> rusqlite::Result<T>
    where
        P: rusqlite::Params,
        F: FnOnce(&rusqlite::Row<'_>) -> rusqlite::Result<T>,
    {
        self.0.query_row(sql, params, f)
    }

    pub(in crate::store) fn last_insert_rowid(&self) -> i64 {
        self.0.last_insert_rowid()
    }
}

pub(super) fn apply_pragmas(conn: &Connection) -> rusqlite::Result<()> {
    conn.busy_timeout(Duration::from_millis(5000))?;
    conn.execute_batch(
        "PRAGMA synchronous = NORMAL;
         PRAGMA foreign_keys = ON;
         PRAGMA temp_store = MEMORY;
         PRAGMA cache_size = -16000;",
    )
}

/// Opens a read-write connection with the pragmas, verifying WAL mode.
pub fn open_connection(path: &Path) -> Result<Connection> {
    let conn = Connection::open_with_flags(
        path,
        OpenFlags::SQLITE_OPEN_READ_WRITE
            | OpenFlags::SQLITE_OPEN_CREATE
            | OpenFlags::SQLITE_OPEN_NO_MUTEX,
    )
    .map_err(|e| Error::Internal(format!("cannot open database {}: {e}", path.display())))?;
    apply_pragmas(&conn)?;
    let mode: String = conn.query_row("PRAGMA journal_mode = WAL", [], |r| r.get(0))?;
    if !mode.eq_ignore_ascii_case("wal") {
        return Err(Error::Internal(format!(
            "database {} refused WAL mode (journal_mode is '{mode}'); engram needs WAL",
            path.display()
        )));
    }
    Ok(conn)
}

/// Reads column `idx` of a row as a domain value (`domain`, `perms`, `plans`). A spelling this
/// binary does not know is an error naming the table, the row and the column, never a default.
pub(crate) fn spelled<T>(
    r: &rusqlite::Row<'_>,
    idx: usize,
    table: &str,
    key: &str,
) -> rusqlite::Result<T>
where
    T: std::str::FromStr<Err = String>,
{
    let text: String = r.get(idx)?;
    text.parse::<T>().map_err(|e| {
        let column = r.as_ref().column_name(idx).unwrap_or("?").to_string();
        rusqlite::Error::FromSqlConversionFailure(
            idx,
            rusqlite::types::Type::Text,
            format!("{table} row {key}, column {column}: {e}").into(),
        )
    })
}

impl From<rusqlite::Error> for Error {
    fn from(e: rusqlite::Error) -> Self {
        Error::failed("sqlite", e)
    }
}

impl From<r2d2::Error> for Error {
    fn from(e: r2d2::Error) -> Self {
        Error::failed("connection pool", e)
    }
}
