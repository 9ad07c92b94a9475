//! The `meta` table: a few named values of the whole database (the vault key's fingerprint).

use super::sql::OptionalExtension;
use super::Conn;
use crate::error::Result;

/// Reads one value of the `meta` table.
pub fn meta_get(conn: &Conn, key: &str) -> Result<Option<String>> {
    Ok(conn
        .query_row("SELECT value FROM meta WHERE key = ?1", [key], |r| r.get(0))
        .optional()?)
}

pub fn meta_set(conn: &Conn, key: &str, value: &str) -> Result<()> {
    conn.execute(
        "INSERT INTO meta(key, value) VALUES (?1, ?2)
         ON CONFLICT(key) DO UPDATE SET value = excluded.value",
        [key, value],
    )?;
    Ok(())
}
