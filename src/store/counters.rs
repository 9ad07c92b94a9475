//! Shared counters that many writes bump (usage counters, novelty counts), applied at the end of
//! a PostgreSQL writer transaction in one fixed order.
//!
//! On PostgreSQL several nodes write the same counter rows (a tenant's `events` counter this
//! month, the novelty count of a common event shape). Bumped where each write happens to do it,
//! a row stays locked from its bump until the commit, and two nodes' groups that bump the same
//! rows in different orders deadlock: PostgreSQL breaks the cycle only after `deadlock_timeout`
//! (1 s by default), aborting a whole group. Seen in a two-node run under load as capture
//! processing stalling for ~1 s at a time (docs/scale-out.md, "Counters").
//!
//! So on the PostgreSQL writer, inside a group (`begin`), a bump is only recorded here. Before the
//! commit, `apply` sums the group's bumps per counter and writes them with one statement per table,
//! rows in key order: every transaction takes counter-row locks last, in the same global order, and
//! holds them only for the last round trips before its commit. Reads inside the group add the
//! recorded bumps (`pending`), so a write sees the counts of the writes before it in its group.
//!
//! On SQLite (one writer, no row locks) and on connections outside the writer's groups, a bump is
//! written at once: `record` returns `false` and the caller writes it itself.
//!
//! Invariants:
//! - A write whose savepoint is rolled back loses its bumps too (`mark` / `rollback_to`).
//! - A counter's summed bump of zero writes nothing.

use super::sql::{Backend, Conn};
use crate::error::Result;
use serde_json::{json, Value};
use std::collections::BTreeMap;

/// One counter row. The order of the variants and fields is the order rows are locked in.
#[derive(Clone, PartialEq, Eq, PartialOrd, Ord, Debug)]
pub(in crate::store) enum Counter {
    /// `event_signatures.seen`: events of a signature that processing has finished with.
    Seen { tenant: String, signature: i64 },
    /// `novelty_pending.n`: events of a signature stored but not processed yet.
    Pending { tenant: String, signature: i64 },
    /// `usage_counters.value`.
    Usage {
        tenant: String,
        mode: String,
        metric: String,
        bucket: String,
    },
}

/// The bumps a PostgreSQL writer group has recorded, in the order they were made.
pub(in crate::store) type Log = Vec<(Counter, i64)>;

fn log_of<'c>(conn: &Conn<'c>) -> Option<&'c std::cell::RefCell<Option<Log>>> {
    match conn.0 {
        Backend::Pg(pg) => Some(&pg.deferred),
        Backend::Sqlite(_) => None,
    }
}

/// Starts recording bumps (the PostgreSQL writer, at `BEGIN`).
pub(in crate::store) fn begin(conn: &Conn) {
    if let Some(log) = log_of(conn) {
        *log.borrow_mut() = Some(Vec::new());
    }
}

/// Whether bumps on `conn` are recorded (a PostgreSQL writer group) rather than written at once.
pub(in crate::store) fn recording(conn: &Conn) -> bool {
    log_of(conn).is_some_and(|log| log.borrow().is_some())
}

/// Records a bump when `conn` is `recording`; `false` (nothing done) when the caller must write
/// it itself.
pub(in crate::store) fn record(conn: &Conn, counter: Counter, n: i64) -> bool {
    match log_of(conn).map(|l| l.borrow_mut()).as_deref_mut() {
        Some(Some(log)) => {
            log.push((counter, n));
            true
        }
        _ => false,
    }
}

/// The recorded (not yet written) bumps of `counter`.
pub(in crate::store) fn pending(conn: &Conn, counter: &Counter) -> i64 {
    log_of(conn)
        .and_then(|log| {
            log.borrow()
                .as_ref()
                .map(|l| l.iter().filter(|(c, _)| c == counter).map(|(_, n)| n).sum())
        })
        .unwrap_or(0)
}

/// Where a write's bumps start (before its savepoint).
pub(in crate::store) fn mark(conn: &Conn) -> usize {
    log_of(conn)
        .and_then(|log| log.borrow().as_ref().map(Vec::len))
        .unwrap_or(0)
}

/// Drops the bumps recorded since `mark` (the write's savepoint was rolled back).
pub(in crate::store) fn rollback_to(conn: &Conn, mark: usize) {
    if let Some(Some(log)) = log_of(conn).map(|l| l.borrow_mut()).as_deref_mut() {
        log.truncate(mark);
    }
}

/// Stops recording and drops what was recorded (the group rolled back).
pub(in crate::store) fn discard(conn: &Conn) {
    if let Some(log) = log_of(conn) {
        *log.borrow_mut() = None;
    }
}

/// Stops recording and writes the recorded bumps, summed per counter, in key order (before the
/// group's `COMMIT`).
pub(in crate::store) fn apply(conn: &Conn) -> Result<()> {
    let Some(log) = log_of(conn).and_then(|l| l.borrow_mut().take()) else {
        return Ok(());
    };
    let mut sums: BTreeMap<Counter, i64> = BTreeMap::new();
    for (c, n) in log {
        *sums.entry(c).or_default() += n;
    }
    let (mut seen, mut pending, mut usage) = (Vec::new(), Vec::new(), Vec::new());
    for (c, n) in sums.into_iter().filter(|(_, n)| *n != 0) {
        match c {
            Counter::Seen { tenant, signature } => seen.push(json!([tenant, signature, n])),
            Counter::Pending { tenant, signature } => pending.push(json!([tenant, signature, n])),
            Counter::Usage {
                tenant,
                mode,
                metric,
                bucket,
            } => usage.push(json!([tenant, mode, metric, bucket, n])),
        }
    }
    // `jsonb_array_elements` yields the rows in array order, i.e. key order.
    let rows = "jsonb_array_elements(CAST(CAST(?1 AS TEXT) AS jsonb)) AS r(v)";
    if !seen.is_empty() {
        conn.execute(
            &format!(
                "INSERT INTO event_signatures AS s (tenant_id, signature, seen)
                 SELECT r.v->>0, CAST(r.v->>1 AS BIGINT), CAST(r.v->>2 AS BIGINT) FROM {rows}
                 ON CONFLICT(tenant_id, signature) DO UPDATE SET seen = s.seen + excluded.seen"
            ),
            [Value::Array(seen).to_string()],
        )?;
    }
    if !pending.is_empty() {
        // A count that reached zero (all its events processed) leaves the table, as on SQLite.
        let settled: Vec<(String, i64)> = conn
            .prepare_cached(&format!(
                "INSERT INTO novelty_pending AS p (tenant_id, signature, n)
                 SELECT r.v->>0, CAST(r.v->>1 AS BIGINT), CAST(r.v->>2 AS BIGINT) FROM {rows}
                 ON CONFLICT(tenant_id, signature) DO UPDATE SET n = p.n + excluded.n
                 RETURNING tenant_id, signature, n"
            ))?
            .query_map([Value::Array(pending).to_string()], |r| {
                Ok((r.get::<String>(0)?, r.get::<i64>(1)?, r.get::<i64>(2)?))
            })?
            .filter_map(|r| match r {
                Ok((t, s, n)) if n <= 0 => Some(Ok((t, s))),
                Ok(_) => None,
                Err(e) => Some(Err(e)),
            })
            .collect::<super::sql::Result<_>>()?;
        let mut delete = conn.prepare_cached(
            "DELETE FROM novelty_pending WHERE tenant_id = ?1 AND signature = ?2 AND n <= 0",
        )?;
        for (t, s) in settled {
            delete.execute(super::sql::params![t, s])?;
        }
    }
    if !usage.is_empty() {
        conn.execute(
            &format!(
                "INSERT INTO usage_counters AS u (tenant_id, mode, metric, bucket, value)
                 SELECT r.v->>0, r.v->>1, r.v->>2, r.v->>3, CAST(r.v->>4 AS BIGINT) FROM {rows}
                 ON CONFLICT(tenant_id, mode, metric, bucket)
                 DO UPDATE SET value = u.value + excluded.value"
            ),
            [Value::Array(usage).to_string()],
        )?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::super::{novelty, tenants, usage, Db};
    use super::*;
    use crate::error::Error;
    use crate::plans::Plan;

    /// A new database in the test PostgreSQL cluster (`ENGRAM_TEST_DATABASE_URL`, started by
    /// `scripts/test.sh`), opened as a node opens it.
    fn pg_db() -> Db {
        let base = std::env::var("ENGRAM_TEST_DATABASE_URL").expect(
            "ENGRAM_TEST_DATABASE_URL is not set: run ./scripts/test.sh (it starts a throwaway \
             PostgreSQL cluster)",
        );
        let name = format!("engram_unit_counters_{}", std::process::id());
        let admin = super::super::sql::PgConn::connect(&base).expect("PostgreSQL reachable");
        admin
            .batch(&format!("DROP DATABASE IF EXISTS {name}"))
            .expect("an old database dropped");
        admin
            .batch(&format!("CREATE DATABASE {name}"))
            .expect("database created");
        let mut url = url::Url::parse(&base).expect("a URL");
        url.set_path(&name);
        Db::open_postgres(url.as_str(), 2).expect("opened")
    }

    /// In a writer group on PostgreSQL, bumps are written at the end, a later write of the group
    /// reads the earlier ones, and a write that fails loses its own bumps but not the others'.
    #[test]
    fn group_bumps_are_read_back_written_once_and_dropped_with_a_failed_write() {
        let db = pg_db();
        let tenant = db
            .write_blocking(|c| tenants::create(c, "t", Plan::Free))
            .unwrap()
            .id;
        let at = crate::time::now();
        let t = tenant.clone();
        let (inside, seen) = db
            .write_blocking(move |c| {
                assert!(recording(c));
                usage::incr(c, &t, "live", usage::EVENTS, 3, at)?;
                usage::incr(c, &t, "live", usage::EVENTS, 4, at)?;
                novelty::add_pending(c, &t, 42, 5)?;
                novelty::settle(c, &t, 42, 2)?;
                // Not written yet, but read back as if it were.
                let inside = usage::get(c, &t, "live", usage::EVENTS, usage::ALL_TIME)?;
                Ok((inside, novelty::seen(c, &t, 42)?))
            })
            .unwrap();
        assert_eq!((inside, seen), (7, 5));
        // A write that bumps, then fails: its savepoint and its bumps go.
        let t = tenant.clone();
        let failed = db.write_blocking(move |c| {
            usage::incr(c, &t, "live", usage::EVENTS, 100, at)?;
            novelty::add_pending(c, &t, 42, 100)?;
            Err::<(), _>(Error::validation("n", "refused on purpose"))
        });
        assert!(failed.is_err());
        // Outside a group (a reader connection) the rows hold exactly the committed bumps.
        let t = tenant.clone();
        let (events, month, seen, pending) = db
            .read_blocking(move |c| {
                assert!(!recording(c));
                let month = usage::month_bucket(at);
                Ok((
                    usage::get(c, &t, "live", usage::EVENTS, usage::ALL_TIME)?,
                    usage::get(c, &t, "live", usage::EVENTS, &month)?,
                    novelty::seen(c, &t, 42)?,
                    c.test_column::<i64>(
                        "SELECT n FROM novelty_pending WHERE tenant_id = ?1",
                        &[&t],
                    )?,
                ))
            })
            .unwrap();
        assert_eq!((events, month, seen), (7, 7, 5));
        assert_eq!(pending, vec![3]);
        // Settling the rest empties the pending count, and its row goes.
        let t = tenant.clone();
        db.write_blocking(move |c| novelty::settle(c, &t, 42, 3))
            .unwrap();
        let t = tenant.clone();
        let (seen, pending) = db
            .read_blocking(move |c| {
                Ok((
                    novelty::seen(c, &t, 42)?,
                    c.test_column::<i64>(
                        "SELECT n FROM novelty_pending WHERE tenant_id = ?1",
                        &[&t],
                    )?,
                ))
            })
            .unwrap();
        assert_eq!(seen, 5);
        assert!(pending.is_empty(), "{pending:?}");
        db.close();
    }
}
