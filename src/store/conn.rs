//! SQLite connections: how one is opened (pragmas, WAL verified); and how rows are read into
//! domain values (either backend). `Conn`, the connection read and write closures receive, is in
//! `sql`.

use super::sql::{self, Row};
use crate::error::{Error, Result};
use r2d2_sqlite::SqliteConnectionManager;
use rusqlite::{Connection, OpenFlags};
use std::path::Path;
use std::time::Duration;

pub type ReadPool = r2d2::Pool<SqliteConnectionManager>;

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
pub(crate) fn spelled<T>(r: &Row<'_>, idx: usize, table: &str, key: &str) -> sql::Result<T>
where
    T: std::str::FromStr<Err = String>,
{
    let text: String = r.get(idx)?;
    text.parse::<T>().map_err(|e| {
        sql::Error::Conversion(format!(
            "{table} row {key}, column {}: {e}",
            r.column_name(idx)
        ))
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
