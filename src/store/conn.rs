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

#[cfg(test)]
mod tests {
    use crate::store::{jobs, open_direct, tenants};

    /// A value this binary does not know, written by hand or by a newer binary, is an error that
    /// names the table, the row and the column; it never becomes a default (a `free` plan, a
    /// `VIEWER` role, or no scopes, which would mean the role's permissions).
    #[test]
    fn an_unknown_spelling_in_a_row_is_an_error_naming_row_and_column() {
        let dir = tempfile::tempdir().unwrap();
        let mut db = open_direct(dir.path()).unwrap();
        let t = db
            .transaction(|c| tenants::create(c, "t", crate::plans::Plan::Pro))
            .unwrap();
        let raw = db.conn().sqlite();
        raw.execute(
            "UPDATE tenants SET plan = 'platinum' WHERE id = ?1",
            [&t.id],
        )
        .unwrap();
        let e = tenants::get(&db.conn(), &t.id).unwrap_err().to_string();
        assert!(
            e.contains(&format!("tenants row {}, column plan", t.id)) && e.contains("platinum"),
            "{e}"
        );
        raw.execute(
            "INSERT INTO jobs(id, tenant_id, kind, status, input, created_at)
             VALUES ('job_x', ?1, 'compile', 'queued', '{}', '2026-01-01T00:00:00.000Z')",
            [&t.id],
        )
        .unwrap();
        let e = jobs::get(&db.conn(), &t.id, "job_x")
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("jobs row job_x, column kind: unknown job kind 'compile'"),
            "{e}"
        );
        raw.execute("UPDATE jobs SET kind = 'learn', status = 'paused'", [])
            .unwrap();
        let e = jobs::get(&db.conn(), &t.id, "job_x")
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("column status: unknown job status 'paused'"),
            "{e}"
        );
    }
}
