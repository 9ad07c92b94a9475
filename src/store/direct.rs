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

    /// The schema version of the database (`PRAGMA user_version`; 0 for a new, empty file).
    pub fn schema_version(&self) -> Result<u32> {
        Ok(self
            .conn
            .query_row("PRAGMA user_version", [], |r| r.get(0))?)
    }

    /// Creates the schema of an empty database or migrates an older one to `SCHEMA_VERSION`;
    /// refuses a newer one (`schema::migrate`).
    pub fn migrate(&mut self) -> Result<()> {
        migrate(&mut self.conn)
    }

    /// Writes a consistent copy of the database to `to`, which must not exist (`VACUUM INTO`).
    pub fn backup_to(&self, to: &Path) -> Result<()> {
        self.conn
            .execute("VACUUM INTO ?1", [to.to_string_lossy().as_ref()])?;
        Ok(())
    }
}

/// Opens the database file of a data dir for a one-off command (CLI), creating and migrating it.
/// A CLI that may run beside a server opens it with `open_unmigrated` instead and migrates only
/// under the data-dir lock (`crate::datadir::open_db`).
pub fn open_direct(data_dir: &Path) -> Result<Direct> {
    let mut db = open_unmigrated(data_dir)?;
    db.migrate()?;
    Ok(db)
}

/// Opens (creating if needed) the database file of a data dir as it is: no schema is created or
/// migrated; `schema_version` says whether `migrate` has work to do.
pub fn open_unmigrated(data_dir: &Path) -> Result<Direct> {
    std::fs::create_dir_all(data_dir).map_err(|e| {
        Error::Internal(format!(
            "cannot create data dir {}: {e}",
            data_dir.display()
        ))
    })?;
    Ok(Direct {
        conn: open_connection(&data_dir.join("engram.db"))?,
    })
}
