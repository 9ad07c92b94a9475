//! The search feed of PostgreSQL nodes (`schema.postgres.sql`, between `nodes:begin` and
//! `nodes:end`; docs/scale-out.md, "Search on every node").
//!
//! Triggers add the ids of the memories and artifacts every statement changes to `index_feed`,
//! in the changing transaction. A node reads the feed by snapshot: the rows of the transactions
//! that committed after its last read (`since`, not visible in it) and before this one (`until`,
//! visible in it). Identity order is not commit order — a transaction may take a lower `seq` and
//! commit after one with a higher — so "after the last `seq` read" could skip a row for good;
//! two snapshots cannot. The rows name documents, not operations: the reader indexes each
//! document's current state (`pack_rows::index_rows`), so rows read twice or out of order
//! change nothing.

use super::sql::params;
use super::Conn;
use crate::error::Result;

/// The database's current snapshot (as text) and its clock (ms since the epoch).
pub fn now(conn: &Conn) -> Result<(String, i64)> {
    Ok(conn
        .prepare_cached(
            "SELECT CAST(pg_current_snapshot() AS TEXT),
                    CAST(extract(epoch FROM clock_timestamp()) * 1000 AS BIGINT)",
        )?
        .query_row([], |r| Ok((r.get(0)?, r.get(1)?)))?)
}

/// A row of the feed: the key it is read in (`xid` as text, `seq`), its tenant and document.
#[derive(Clone, Debug)]
pub struct Change {
    pub xid: String,
    pub seq: i64,
    pub tenant_id: String,
    pub doc_id: String,
}

/// Rows of transactions that committed after snapshot `since` and before `until`, after the
/// key `after` (the last row of the previous page; `None` for the first page), at most `limit`,
/// in key order.
pub fn changes(
    conn: &Conn,
    since: &str,
    until: &str,
    after: Option<(&str, i64)>,
    limit: i64,
) -> Result<Vec<Change>> {
    let (after_xid, after_seq) = after.unwrap_or(("0", -1));
    let mut stmt = conn.prepare_cached(
        "SELECT CAST(xid AS TEXT), seq, tenant_id, doc_id FROM index_feed
         WHERE xid >= pg_snapshot_xmin(CAST(CAST(?1 AS TEXT) AS pg_snapshot))
           AND (xid, seq) > (CAST(CAST(?3 AS TEXT) AS xid8), ?4)
           AND NOT pg_visible_in_snapshot(xid, CAST(CAST(?1 AS TEXT) AS pg_snapshot))
           AND pg_visible_in_snapshot(xid, CAST(CAST(?2 AS TEXT) AS pg_snapshot))
         ORDER BY xid, seq LIMIT ?5",
    )?;
    let rows = stmt.query_map(params![since, until, after_xid, after_seq, limit], |r| {
        Ok(Change {
            xid: r.get(0)?,
            seq: r.get(1)?,
            tenant_id: r.get(2)?,
            doc_id: r.get(3)?,
        })
    })?;
    Ok(rows.collect::<super::sql::Result<_>>()?)
}

/// Deletes feed rows older than `keep_secs`; returns how many.
pub fn prune(conn: &Conn, keep_secs: i64) -> Result<usize> {
    Ok(conn
        .prepare_cached(
            "DELETE FROM index_feed WHERE at < now() - CAST(?1 AS BIGINT) * interval '1 second'",
        )?
        .execute([keep_secs])?)
}

/// The database's identity (`meta.instance_id`, given one when it has none), so a node can tell
/// that its index was built from another database.
pub fn database_id(conn: &Conn) -> Result<String> {
    if let Some(id) = super::meta_get(conn, "instance_id")? {
        return Ok(id);
    }
    let id = crate::ids::new("db");
    conn.execute(
        "INSERT INTO meta(key, value) VALUES ('instance_id', ?1) ON CONFLICT (key) DO NOTHING",
        [&id],
    )?;
    Ok(super::meta_get(conn, "instance_id")?.unwrap_or(id))
}
