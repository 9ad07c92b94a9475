//! The database of a data dir opened by a one-off command (the CLI).

use super::conn::{open_connection, Conn};
use super::schema::migrate;
use crate::error::{Error, Result};
use rusqlite::Connection;
use std::path::Path;

/// The database of a data dir opened by a one-off command (the CLI), beside a server that may be
/// running on the same file: its transactions are IMMEDIATE, so they wait for the server's writer.
pub struct Direct {
    conn: Connection,
}

impl Direct {
    /// The connection, for reads.
    pub fn conn(&self) -> Conn<'_> {
        Conn(&self.conn)
    }

    /// Runs `f` in one IMMEDIATE transaction and commits it (nothing is written if `f` fails).
    pub fn transaction<T>(&mut self, f: impl FnOnce(&Conn) -> Result<T>) -> Result<T> {
        let tx = self
            .conn
            .transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)?;
        let v = f(&Conn(&tx))?;
        tx.commit()?;
        Ok(v)
    }

    /// Writes a consistent copy of the database to `to`, which must not exist (`VACUUM INTO`).
    pub fn backup_to(&self, to: &Path) -> Result<()> {
        self.conn
            .execute("VACUUM INTO ?1", [to.to_string_lossy().as_ref()])?;
        Ok(())
    }
}

/// Opens the database file of a data dir for a one-off command (CLI), creating and migrating it.
pub fn open_direct(data_dir: &Path) -> Result<Direct> {
    std::fs::create_dir_all(data_dir).map_err(|e| {
        Error::Internal(format!(
            "cannot create data dir {}: {e}",
            data_dir.display()
        ))
    })?;
    let mut conn = open_connection(&data_dir.join("engram.db"))?;
    migrate(&mut conn)?;
    Ok(Direct { conn })
}
