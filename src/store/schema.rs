//! The schema and its migrations. `schema.sql` is the latest version whole; an older database is
//! upgraded one version at a time inside one IMMEDIATE transaction, each step SQL plus an optional
//! hook; a database written by a newer binary is refused with a message saying so.

use super::{novelty, Conn};
use crate::error::{Error, Result};
use rusqlite::Connection;

/// The schema version this binary writes.
pub const SCHEMA_VERSION: u32 = 6;
const SCHEMA: &str = include_str!("../../schema.sql");

/// One schema upgrade: SQL, then optionally a hook that moves data in the same transaction.
struct Migration {
    /// The version it upgrades to (from `version - 1`).
    version: u32,
    sql: &'static str,
    after: Option<fn(&Conn) -> Result<()>>,
}

/// Upgrades from version `n - 1` to `n`, in order. `schema.sql` is the latest version whole.
const MIGRATIONS: &[Migration] = &[
    // 2: an episodic memory's id is derived from its event's id (`memories::episodic_id`), so
    // finding it by event needs no index of its own; dropping it saves an index write per event.
    Migration {
        version: 2,
        sql: "DROP INDEX IF EXISTS memories_event;",
        after: None,
    },
    // 3: an event enters the session and agent indexes when it is processed, not when it is
    // captured (their leaf writes move off the acknowledgement path); events waiting for
    // processing have their own small index. Jobs lose their tenant index (every job query
    // goes through the queue index or the id). Novelty counts of unprocessed events move out of
    // `event_signatures` (`novelty::migrate_to_pending`).
    Migration {
        version: 3,
        sql: "DROP INDEX IF EXISTS events_session;
         CREATE INDEX events_session ON events(tenant_id, session_id, seq)
             WHERE processed_at IS NOT NULL;
         DROP INDEX IF EXISTS events_agent;
         CREATE INDEX events_agent ON events(tenant_id, agent_id, seq)
             WHERE processed_at IS NOT NULL;
         CREATE INDEX events_pending ON events(tenant_id, seq) WHERE processed_at IS NULL;
         DROP INDEX IF EXISTS jobs_tenant;",
        after: Some(novelty::migrate_to_pending),
    },
    // 4: the vault: the part of schema.sql between `-- vault:begin` and `-- vault:end`.
    Migration {
        version: 4,
        sql: "",
        after: Some(add_vault),
    },
    // 5: episodic memories leave the session index (they are found by session through their
    // events), which saves processing one random index write per event.
    Migration {
        version: 5,
        sql: "DROP INDEX IF EXISTS memories_session;
         CREATE INDEX memories_session ON memories(tenant_id, session_id)
             WHERE kind = 'semantic';",
        after: None,
    },
    // 6: a claimed job's lease (PostgreSQL nodes renew it; a lapsed one returns the job to the
    // queue). The column exists on both backends so their tables stay alike.
    Migration {
        version: 6,
        sql: "ALTER TABLE jobs ADD COLUMN lease_until INTEGER;",
        after: None,
    },
];

fn add_vault(conn: &Conn) -> Result<()> {
    conn.execute_batch(schema_part("vault"))?;
    Ok(())
}

/// The part of `schema.sql` between `-- <name>:begin` and `-- <name>:end`.
fn schema_part(name: &str) -> &'static str {
    part_of(SCHEMA, name)
}

/// The part of a schema text between `-- <name>:begin` and `-- <name>:end`.
pub(super) fn part_of(schema: &'static str, name: &str) -> &'static str {
    let begin = format!("-- {name}:begin");
    let end = format!("-- {name}:end");
    let from = schema.find(&begin).expect("schema part begins");
    let to = schema[from..].find(&end).expect("schema part ends") + from;
    &schema[from..to]
}

/// Creates the schema of an empty database or migrates an older one. Refuses a newer one.
pub fn migrate(conn: &mut Connection) -> Result<()> {
    let version: u32 = conn.query_row("PRAGMA user_version", [], |r| r.get(0))?;
    if version > SCHEMA_VERSION {
        return Err(Error::Internal(format!(
            "this database has schema version {version}, written by a newer engram; this binary \
             understands up to version {SCHEMA_VERSION}. Upgrade engram or restore a backup."
        )));
    }
    if version == SCHEMA_VERSION {
        return Ok(());
    }
    let tx = conn.transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)?;
    // Re-read inside the write lock: another process may have migrated meanwhile.
    let version: u32 = tx.query_row("PRAGMA user_version", [], |r| r.get(0))?;
    if version == 0 {
        tx.execute_batch(SCHEMA)?;
    } else {
        for m in MIGRATIONS.iter().filter(|m| m.version > version) {
            tx.execute_batch(m.sql)?;
            if let Some(after) = m.after {
                after(&Conn::sqlite_of(&tx))?;
            }
            tx.execute_batch(&format!("PRAGMA user_version = {}", m.version))?;
        }
    }
    tx.commit()?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::{open_connection, Db};

    /// A version-3 database gets the vault's tables from migration 4, as schema.sql has them.
    #[test]
    fn migration_4_adds_the_vault() {
        let dir = tempfile::tempdir().expect("temp dir");
        let path = dir.path().join("engram.db");
        let mut conn = open_connection(&path).expect("open");
        migrate(&mut conn).expect("create");
        conn.execute_batch(
            "ALTER TABLE jobs DROP COLUMN lease_until;
             DROP TABLE vault_audit; DROP TABLE vault_items; DROP TABLE vaults;
             PRAGMA user_version = 3;",
        )
        .expect("back to version 3");
        migrate(&mut conn).expect("migrate");
        let version: u32 = conn
            .query_row("PRAGMA user_version", [], |r| r.get(0))
            .unwrap();
        assert_eq!(version, SCHEMA_VERSION);
        let tables: i64 = conn
            .query_row(
                "SELECT COUNT(*) FROM sqlite_master WHERE type = 'table' AND name LIKE 'vault%'",
                [],
                |r| r.get(0),
            )
            .unwrap();
        assert_eq!(tables, 3);
    }

    /// A version-4 database (episodic memories in the session index) gets the semantic-only
    /// index of migration 5, exactly as schema.sql defines it.
    #[test]
    fn migration_5_keeps_only_semantic_memories_in_the_session_index() {
        let dir = tempfile::tempdir().expect("temp dir");
        let path = dir.path().join("engram.db");
        let mut conn = open_connection(&path).expect("open");
        migrate(&mut conn).expect("create");
        let index_sql = |c: &Connection| -> String {
            c.query_row(
                "SELECT sql FROM sqlite_master WHERE name = 'memories_session'",
                [],
                |r| r.get(0),
            )
            .unwrap()
        };
        let created: u32 = conn
            .query_row("PRAGMA user_version", [], |r| r.get(0))
            .unwrap();
        assert_eq!(
            created, SCHEMA_VERSION,
            "schema.sql sets the current version"
        );
        let fresh = index_sql(&conn);
        assert!(fresh.contains("WHERE kind = 'semantic'"), "{fresh}");
        conn.execute_batch(
            "DROP INDEX memories_session;
             CREATE INDEX memories_session ON memories(tenant_id, session_id);
             ALTER TABLE jobs DROP COLUMN lease_until;
             PRAGMA user_version = 4;",
        )
        .expect("back to version 4");
        migrate(&mut conn).expect("migrate");
        let version: u32 = conn
            .query_row("PRAGMA user_version", [], |r| r.get(0))
            .unwrap();
        assert_eq!(version, SCHEMA_VERSION);
        let migrated = index_sql(&conn);
        let squash = |s: &str| s.split_whitespace().collect::<Vec<_>>().join(" ");
        assert_eq!(squash(&migrated), squash(&fresh));
    }

    #[test]
    fn version_1_database_is_migrated_and_keeps_its_rows() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("engram.db");
        let payload = r#"{"role":"user","content":"deploy the payment service"}"#;
        let sig = novelty::signature_of("message", payload);
        {
            // A version 1 database: the current schema, with what versions 2, 3, 4 and 6 changed
            // undone, and two events of one signature (one of them processed) counted the
            // version 1 way: both in event_signatures at capture.
            let mut conn = open_connection(&path).unwrap();
            migrate(&mut conn).unwrap();
            conn.execute_batch(&format!(
                "CREATE INDEX memories_event ON memories(tenant_id, event_id);
                 ALTER TABLE jobs DROP COLUMN lease_until;
                 DROP TABLE vault_audit; DROP TABLE vault_items; DROP TABLE vaults;
                 DROP INDEX events_pending;
                 DROP INDEX events_session;
                 CREATE INDEX events_session ON events(tenant_id, session_id, seq);
                 DROP INDEX events_agent;
                 CREATE INDEX events_agent ON events(tenant_id, agent_id, seq);
                 INSERT INTO tenants(id, name, plan, created_at, updated_at)
                 VALUES ('ten_old', 'old', 'pro', '2026-01-01T00:00:00Z', '2026-01-01T00:00:00Z');
                 INSERT INTO events(id, tenant_id, session_id, type, payload, salience, trace_id,
                                    created_at, processed_at)
                 VALUES ('evt_1', 'ten_old', 's', 'message', '{payload}', 0.5, 't1',
                         '2026-01-01T00:00:00Z', '2026-01-01T00:00:01Z'),
                        ('evt_2', 'ten_old', 's', 'message', '{payload}', 0.5, 't2',
                         '2026-01-01T00:00:00Z', NULL);
                 INSERT INTO event_signatures(tenant_id, signature, seen)
                 VALUES ('ten_old', {sig}, 2);
                 PRAGMA user_version = 1;"
            ))
            .unwrap();
        }
        let mut conn = open_connection(&path).unwrap();
        migrate(&mut conn).unwrap();
        let version: u32 = conn
            .query_row("PRAGMA user_version", [], |r| r.get(0))
            .unwrap();
        assert_eq!(version, SCHEMA_VERSION);
        let count = |sql: &str| -> i64 { conn.query_row(sql, [], |r| r.get(0)).unwrap() };
        assert_eq!(
            count("SELECT count(*) FROM sqlite_master WHERE name = 'memories_event'"),
            0,
            "version 2 drops memories_event"
        );
        assert_eq!(
            count("SELECT count(*) FROM sqlite_master WHERE name = 'events_pending'"),
            1,
            "version 3 adds events_pending"
        );
        assert_eq!(
            count("SELECT count(*) FROM events INDEXED BY events_session WHERE tenant_id = 'ten_old' AND session_id = 's' AND processed_at IS NOT NULL"),
            1,
            "the session index holds the processed event"
        );
        assert_eq!(
            count("SELECT seen FROM event_signatures WHERE tenant_id = 'ten_old'"),
            1,
            "version 3 keeps only processed events in event_signatures"
        );
        let tenant: String = conn
            .query_row("SELECT name FROM tenants WHERE id = 'ten_old'", [], |r| {
                r.get(0)
            })
            .unwrap();
        assert_eq!(tenant, "old");
        drop(conn);
        // The writer counts the unprocessed event again in memory: both are still seen.
        let db = Db::open(&path, 1).unwrap();
        let seen = db
            .write_blocking(move |c| novelty::seen(c, "ten_old", sig))
            .unwrap();
        assert_eq!(seen, 2);
        db.close();
    }
}
