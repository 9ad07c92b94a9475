//! Novelty counts for salience: how many events of a signature a tenant has captured.
//!
//! A capture's salience needs the count at once (it is in the 202), but writing the persistent
//! counter (`event_signatures`, one random B-tree leaf per event) on the acknowledgement path
//! would cost a page write per event. So the count has two parts:
//! - `event_signatures` counts the events that capture processing has finished with: it is
//!   bumped in the same transaction that flips their `processed_at` (`settle`), so exactly once;
//! - `temp.novelty_pending` (a TEMP table of the writer connection: memory only, no WAL) counts
//!   the events stored but not processed yet (`add_pending` at capture).
//!
//! Invariants:
//! - For every (tenant, signature): `event_signatures.seen + novelty_pending.n` = events ever
//!   captured with that signature (forgetting a session does not lower it).
//! - Both parts change inside the writer's transactions, so a rolled-back write rolls back its
//!   pending counts too.
//! - The pending part is rebuilt from the unprocessed events whenever the writer connection
//!   opens (`rebuild_pending`), so a restart or a crash loses nothing.
//! - Only the writer connection may call these functions (the TEMP table is its own).
//!
//! On PostgreSQL the pending part is an ordinary table (`novelty_pending`), changed in the same
//! transactions; `rebuild_pending` recomputes it with the table locked, so captures committing
//! meanwhile are counted exactly once. Every node bumps the same rows there, so in the writer's
//! groups both parts change at the group's end, in one global order (`counters`).

use super::counters::{self, Counter};
use super::sql::{params, OptionalExtension};
use super::Conn;
use crate::error::Result;
use crate::salience;
use std::collections::HashMap;

/// Creates the writer connection's pending table and fills it from the unprocessed events.
pub fn rebuild_pending(conn: &Conn) -> Result<()> {
    if !conn.is_postgres() {
        return refill_pending(conn);
    }
    conn.execute_batch("BEGIN")?;
    let filled = refill_pending(conn);
    conn.execute_batch(if filled.is_ok() { "COMMIT" } else { "ROLLBACK" })?;
    filled
}

/// `rebuild_pending` inside the caller's transaction (an import on the writer).
pub fn refill_pending(conn: &Conn) -> Result<()> {
    if conn.is_postgres() {
        conn.execute_batch(
            "LOCK TABLE novelty_pending IN EXCLUSIVE MODE; DELETE FROM novelty_pending;",
        )?;
    } else {
        conn.execute_batch(
            "CREATE TEMP TABLE IF NOT EXISTS novelty_pending (
                 tenant_id TEXT NOT NULL,
                 signature INTEGER NOT NULL,
                 n         INTEGER NOT NULL,
                 PRIMARY KEY (tenant_id, signature)
             ) WITHOUT ROWID;
             DELETE FROM temp.novelty_pending;",
        )?;
    }
    let counts = unprocessed_counts(conn)?;
    let mut insert = conn.prepare_cached(&format!(
        "INSERT INTO {}(tenant_id, signature, n) VALUES (?1, ?2, ?3)",
        pending(conn)
    ))?;
    for ((tenant, sig), n) in counts {
        insert.execute(params![tenant, sig, n])?;
    }
    Ok(())
}

/// SQL naming the table of pending counts (`$before` table `$after`), without building a string
/// per call: these statements run for every captured and processed event.
macro_rules! pending_sql {
    ($conn:expr, $before:literal, $after:literal) => {
        if $conn.is_postgres() {
            concat!($before, "novelty_pending", $after)
        } else {
            concat!($before, "temp.novelty_pending", $after)
        }
    };
}

/// The table of pending counts: the writer's TEMP table on SQLite, a shared one on PostgreSQL.
fn pending(conn: &Conn) -> &'static str {
    if conn.is_postgres() {
        "novelty_pending"
    } else {
        "temp.novelty_pending"
    }
}

/// The signature of a stored event (its type and payload text).
pub fn signature_of(event_type: &str, payload: &str) -> i64 {
    let payload = serde_json::from_str(payload).unwrap_or(serde_json::Value::Null);
    signature_of_value(event_type, &payload)
}

/// `signature_of` for a payload already parsed (anything but an object counts as empty).
pub fn signature_of_value(event_type: &str, payload: &serde_json::Value) -> i64 {
    match payload {
        serde_json::Value::Object(m) => salience::signature(event_type, m),
        _ => salience::signature(event_type, &serde_json::Map::new()),
    }
}

/// (tenant, signature) → number of events not processed yet.
fn unprocessed_counts(conn: &Conn) -> Result<HashMap<(String, i64), i64>> {
    let mut counts: HashMap<(String, i64), i64> = HashMap::new();
    let mut stmt = conn.prepare(&format!(
        "SELECT tenant_id, type, payload FROM events {} WHERE processed_at IS NULL",
        if conn.is_postgres() {
            ""
        } else {
            "INDEXED BY events_pending"
        }
    ))?;
    let mut rows = stmt.query([])?;
    while let Some(r) = rows.next()? {
        let tenant: String = r.get(0)?;
        let event_type: String = r.get(1)?;
        let payload: String = r.get(2)?;
        *counts
            .entry((tenant, signature_of(&event_type, &payload)))
            .or_default() += 1;
    }
    Ok(counts)
}

/// Schema version 3 moved the counts of unprocessed events out of `event_signatures` (they were
/// counted there at capture): subtracts them, so `rebuild_pending` does not count them twice.
pub fn migrate_to_pending(conn: &Conn) -> Result<()> {
    let mut sub = conn.prepare(
        "UPDATE event_signatures SET seen = max(seen - ?3, 0)
         WHERE tenant_id = ?1 AND signature = ?2",
    )?;
    for ((tenant, sig), n) in unprocessed_counts(conn)? {
        sub.execute(params![tenant, sig, n])?;
    }
    Ok(())
}

/// How many events of `signature` the tenant has captured so far (processed or not).
pub fn seen(conn: &Conn, tenant_id: &str, signature: i64) -> Result<i64> {
    let mut stmt = conn.prepare_cached(pending_sql!(
        conn,
        "SELECT coalesce((SELECT seen FROM event_signatures
                          WHERE tenant_id = ?1 AND signature = ?2), 0)
              + coalesce((SELECT n FROM ",
        " WHERE tenant_id = ?1 AND signature = ?2), 0)"
    ))?;
    let stored: i64 = stmt.query_row(params![tenant_id, signature], |r| r.get(0))?;
    if !counters::recording(conn) {
        return Ok(stored);
    }
    let (seen, pending) = counter_pair(tenant_id, signature);
    Ok(stored + counters::pending(conn, &seen) + counters::pending(conn, &pending))
}

/// The two counters of a signature on PostgreSQL (`counters`): processed, pending.
fn counter_pair(tenant_id: &str, signature: i64) -> (Counter, Counter) {
    let tenant = tenant_id.to_string();
    (
        Counter::Seen {
            tenant: tenant.clone(),
            signature,
        },
        Counter::Pending { tenant, signature },
    )
}

/// Counts `n` newly stored (unprocessed) events of `signature`.
pub fn add_pending(conn: &Conn, tenant_id: &str, signature: i64, n: i64) -> Result<()> {
    if counters::recording(conn) {
        counters::record(conn, counter_pair(tenant_id, signature).1, n);
        return Ok(());
    }
    conn.prepare_cached(pending_sql!(
        conn,
        "INSERT INTO ",
        " AS p (tenant_id, signature, n) VALUES (?1, ?2, ?3)
         ON CONFLICT(tenant_id, signature) DO UPDATE SET n = p.n + excluded.n"
    ))?
    .execute(params![tenant_id, signature, n])?;
    Ok(())
}

/// Moves `n` events of `signature` from the pending count to the persistent one (they were just
/// processed, or their session is being forgotten before they were).
pub fn settle(conn: &Conn, tenant_id: &str, signature: i64, n: i64) -> Result<()> {
    if counters::recording(conn) {
        let (seen, pending) = counter_pair(tenant_id, signature);
        counters::record(conn, seen, n);
        counters::record(conn, pending, -n);
        return Ok(());
    }
    conn.prepare_cached(
        "INSERT INTO event_signatures AS s (tenant_id, signature, seen) VALUES (?1, ?2, ?3)
         ON CONFLICT(tenant_id, signature) DO UPDATE SET seen = s.seen + excluded.seen",
    )?
    .execute(params![tenant_id, signature, n])?;
    let left: Option<i64> = conn
        .prepare_cached(pending_sql!(
            conn,
            "UPDATE ",
            " SET n = n - ?3 WHERE tenant_id = ?1 AND signature = ?2 RETURNING n"
        ))?
        .query_row(params![tenant_id, signature, n], |r| r.get(0))
        .optional()?;
    if left.is_some_and(|n| n <= 0) {
        conn.prepare_cached(pending_sql!(
            conn,
            "DELETE FROM ",
            " WHERE tenant_id = ?1 AND signature = ?2"
        ))?
        .execute(params![tenant_id, signature])?;
    }
    Ok(())
}

/// `settle` for many events: `sigs` lists one signature per event.
pub fn settle_all(conn: &Conn, tenant_id: &str, sigs: &[i64]) -> Result<()> {
    let mut counts: Vec<(i64, i64)> = Vec::new();
    let mut sorted = sigs.to_vec();
    sorted.sort_unstable();
    for s in sorted {
        match counts.last_mut() {
            Some((last, n)) if *last == s => *n += 1,
            _ => counts.push((s, 1)),
        }
    }
    for (sig, n) in counts {
        settle(conn, tenant_id, sig, n)?;
    }
    Ok(())
}

/// Drops a tenant's pending counts (its events were deleted). Only the server's writer connection
/// has them; on any other connection (the CLI) there is nothing to drop.
pub fn forget_tenant(conn: &Conn, tenant_id: &str) -> Result<()> {
    if conn.is_postgres() {
        conn.execute(
            "DELETE FROM novelty_pending WHERE tenant_id = ?1",
            [tenant_id],
        )?;
        return Ok(());
    }
    let has_table: bool = conn.query_row(
        "SELECT EXISTS (SELECT 1 FROM temp.sqlite_master WHERE name = 'novelty_pending')",
        [],
        |r| r.get(0),
    )?;
    if !has_table {
        return Ok(());
    }
    conn.execute(
        "DELETE FROM temp.novelty_pending WHERE tenant_id = ?1",
        [tenant_id],
    )?;
    Ok(())
}
