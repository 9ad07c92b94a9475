//! The database of a data dir opened by a one-off command (the CLI).

use super::conn::open_connection;
use super::schema::migrate;
use super::sql::PgConn;
use super::Conn;
use crate::error::{Error, Result};
use rusqlite::Connection;
use std::path::Path;

/// The database of a data dir opened by a one-off command (the CLI), beside a server that may be
/// running on the same file: its transactions are IMMEDIATE, so they wait for the server's writer.
/// Or a PostgreSQL database (`--database`), where the command's transactions run beside the
/// servers' like any other client's.
pub struct Direct {
    conn: DirectConn,
}

enum DirectConn {
    Sqlite(Connection),
    Pg(Box<PgConn>),
}

impl Direct {
    /// The connection, for reads.
    pub fn conn(&self) -> Conn<'_> {
        match &self.conn {
            DirectConn::Sqlite(c) => Conn::sqlite_of(c),
            DirectConn::Pg(c) => Conn::pg_of(c),
        }
    }

    /// Runs `f` in one IMMEDIATE transaction and commits it (nothing is written if `f` fails).
    pub fn transaction<T>(&mut self, f: impl FnOnce(&Conn) -> Result<T>) -> Result<T> {
        match &mut self.conn {
            DirectConn::Sqlite(c) => {
                let tx = c.transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)?;
                let v = f(&Conn::sqlite_of(&tx))?;
                tx.commit()?;
                Ok(v)
            }
            DirectConn::Pg(c) => {
                c.batch("BEGIN")?;
                match f(&Conn::pg_of(c)) {
                    Ok(v) => {
                        c.batch("COMMIT")?;
                        Ok(v)
                    }
                    Err(e) => {
                        let _ = c.batch("ROLLBACK");
                        Err(e)
                    }
                }
            }
        }
    }

    /// The schema version of the database (`PRAGMA user_version`, or PostgreSQL's
    /// `meta.schema_version`; 0 for a new, empty database).
    pub fn schema_version(&self) -> Result<u32> {
        match &self.conn {
            DirectConn::Sqlite(c) => Ok(c.query_row("PRAGMA user_version", [], |r| r.get(0))?),
            DirectConn::Pg(c) => super::postgres::schema_version(c),
        }
    }

    /// Creates the schema of an empty database or migrates an older one to `SCHEMA_VERSION`;
    /// refuses a newer one (`schema::migrate`, `postgres::migrate`).
    pub fn migrate(&mut self) -> Result<()> {
        match &mut self.conn {
            DirectConn::Sqlite(c) => migrate(c),
            DirectConn::Pg(c) => super::postgres::migrate(c),
        }
    }

    /// Writes a consistent copy of the database to `to`, which must not exist (`VACUUM INTO`).
    pub fn backup_to(&self, to: &Path) -> Result<()> {
        match &self.conn {
            DirectConn::Sqlite(c) => {
                c.execute("VACUUM INTO ?1", [to.to_string_lossy().as_ref()])?;
                Ok(())
            }
            DirectConn::Pg(_) => Err(Error::Internal(
                "engram backup copies a SQLite data dir; back a PostgreSQL database up with its \
                 own tools (pg_dump, or the managed service's backups): docs/scale-out.md"
                    .into(),
            )),
        }
    }
}

/// Opens a PostgreSQL database for a one-off command (creating the schema when it is empty).
pub fn open_direct_postgres(url: &str) -> Result<Direct> {
    let conn = super::postgres::connect(url)?;
    super::postgres::migrate(&conn)?;
    Ok(Direct {
        conn: DirectConn::Pg(Box::new(conn)),
    })
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
        conn: DirectConn::Sqlite(open_connection(&data_dir.join("engram.db"))?),
    })
}
