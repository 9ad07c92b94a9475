//! Usage counters: one row per (tenant, mode, metric, bucket). Usage routes, metrics, quotas and
//! the plan's limits all read the same counters, so their figures agree.
//!
//! Buckets: `T` (all time), `M2026-11` (calendar month, UTC), `D2026-11-23` (day),
//! `H2026-11-23T10` (hour), `N2026-11-23T10:31` (minute). `incr` bumps every bucket of a moment in
//! the caller's transaction; callers aggregate (one `incr` per request or job, not per item).
//! `mode` is `live` or `test`: test keys count separately.

use super::sql::{params, OptionalExtension};
use super::Conn;
use crate::error::Result;
use chrono::{DateTime, Utc};

/// Events ingested (stored new; not duplicates or invalid ones). Also the monthly quota's count.
pub const EVENTS: &str = "events";
pub const EVENTS_DUPLICATE: &str = "events_duplicate";
pub const EVENTS_ERROR: &str = "events_error";
pub const EVENTS_PROCESSED: &str = "events_processed";
pub const SYNTHESES: &str = "syntheses";
pub const SYNTHESIS_TOKENS: &str = "synthesis_tokens";
/// Sum of compression ratios × 1000 (integer counters; divide by `syntheses` × 1000 for the mean).
pub const SYNTHESIS_COMPRESSION_MILLI: &str = "synthesis_compression_milli";
pub const COMPILATIONS: &str = "compilations";
pub const ARTIFACTS_CREATED: &str = "artifacts_created";
pub const ARTIFACTS_UPDATED: &str = "artifacts_updated";
pub const INVOCATIONS: &str = "invocations";
pub const INVOCATION_TOKENS: &str = "invocation_tokens";
pub const REQUESTS: &str = "requests";

/// Per-event-type counters are `events_type:<type>`.
pub fn event_type_metric(event_type: &str) -> String {
    format!("events_type:{event_type}")
}

pub fn month_bucket(t: DateTime<Utc>) -> String {
    t.format("M%Y-%m").to_string()
}
pub fn day_bucket(t: DateTime<Utc>) -> String {
    t.format("D%Y-%m-%d").to_string()
}
pub fn hour_bucket(t: DateTime<Utc>) -> String {
    t.format("H%Y-%m-%dT%H").to_string()
}
pub fn minute_bucket(t: DateTime<Utc>) -> String {
    t.format("N%Y-%m-%dT%H:%M").to_string()
}
pub const ALL_TIME: &str = "T";

/// Adds `n` to `metric` in every bucket of `at` (all time, month, day, hour, minute).
pub fn incr(
    conn: &Conn,
    tenant_id: &str,
    mode: &str,
    metric: &str,
    n: i64,
    at: DateTime<Utc>,
) -> Result<()> {
    incr_all(conn, tenant_id, &[(mode, metric, n)], at)
}

/// `incr` for several (mode, metric, amount) counters at once: the buckets of `at` are worked
/// out once.
pub fn incr_all(
    conn: &Conn,
    tenant_id: &str,
    counters: &[(&str, &str, i64)],
    at: DateTime<Utc>,
) -> Result<()> {
    if counters.iter().all(|(_, _, n)| *n == 0) {
        return Ok(());
    }
    let buckets = [
        ALL_TIME.to_string(),
        month_bucket(at),
        day_bucket(at),
        hour_bucket(at),
        minute_bucket(at),
    ];
    if super::counters::recording(conn) {
        // A PostgreSQL writer group: the bumps are written at its end, in key order (`counters`).
        for (mode, metric, n) in counters.iter().filter(|(_, _, n)| *n != 0) {
            for bucket in &buckets {
                let counter = usage_counter(tenant_id, mode, metric, bucket);
                super::counters::record(conn, counter, *n);
            }
        }
        return Ok(());
    }
    let mut stmt = conn.prepare_cached(
        "INSERT INTO usage_counters AS u (tenant_id, mode, metric, bucket, value)
         VALUES (?1, ?2, ?3, ?4, ?5)
         ON CONFLICT(tenant_id, mode, metric, bucket) DO UPDATE SET value = u.value + excluded.value",
    )?;
    for (mode, metric, n) in counters.iter().filter(|(_, _, n)| *n != 0) {
        for bucket in &buckets {
            stmt.execute(params![tenant_id, mode, metric, bucket, n])?;
        }
    }
    Ok(())
}

/// One counter's value (0 when never counted).
pub fn get(conn: &Conn, tenant_id: &str, mode: &str, metric: &str, bucket: &str) -> Result<i64> {
    let mut stmt = conn.prepare_cached(
        "SELECT value FROM usage_counters
         WHERE tenant_id = ?1 AND mode = ?2 AND metric = ?3 AND bucket = ?4",
    )?;
    let stored: i64 = stmt
        .query_row(params![tenant_id, mode, metric, bucket], |r| r.get(0))
        .optional()?
        .unwrap_or(0);
    let recorded = if super::counters::recording(conn) {
        super::counters::pending(conn, &usage_counter(tenant_id, mode, metric, bucket))
    } else {
        0
    };
    Ok(stored + recorded)
}

fn usage_counter(
    tenant_id: &str,
    mode: &str,
    metric: &str,
    bucket: &str,
) -> super::counters::Counter {
    super::counters::Counter::Usage {
        tenant: tenant_id.to_string(),
        mode: mode.to_string(),
        metric: metric.to_string(),
        bucket: bucket.to_string(),
    }
}

/// Values of `metric` for buckets in `[from, to]` (bucket names compare in time order within one
/// granularity), ascending.
pub fn range(
    conn: &Conn,
    tenant_id: &str,
    mode: &str,
    metric: &str,
    from_bucket: &str,
    to_bucket: &str,
) -> Result<Vec<(String, i64)>> {
    let mut stmt = conn.prepare_cached(
        "SELECT bucket, value FROM usage_counters
         WHERE tenant_id = ?1 AND mode = ?2 AND metric = ?3 AND bucket >= ?4 AND bucket <= ?5
         ORDER BY bucket",
    )?;
    let rows = stmt.query_map(
        params![tenant_id, mode, metric, from_bucket, to_bucket],
        |r| Ok((r.get(0)?, r.get(1)?)),
    )?;
    Ok(rows.collect::<super::sql::Result<_>>()?)
}

/// Every metric with a prefix in one bucket (e.g. all `events_type:` counters this month).
pub fn by_prefix(
    conn: &Conn,
    tenant_id: &str,
    mode: &str,
    prefix: &str,
    bucket: &str,
) -> Result<Vec<(String, i64)>> {
    let mut stmt = conn.prepare_cached(
        "SELECT metric, value FROM usage_counters
         WHERE tenant_id = ?1 AND mode = ?2 AND bucket = ?4 AND metric >= ?3 AND metric < ?3 || x'7f'
         ORDER BY metric",
    )?;
    let rows = stmt.query_map(params![tenant_id, mode, prefix, bucket], |r| {
        Ok((r.get(0)?, r.get(1)?))
    })?;
    Ok(rows.collect::<super::sql::Result<_>>()?)
}

/// Drops minute buckets older than `keep_from` (minute counters are only needed for recent
/// series and the current minute). Hour and coarser buckets are kept.
pub fn prune_minutes(conn: &Conn, keep_from: DateTime<Utc>) -> Result<usize> {
    Ok(conn.execute(
        "DELETE FROM usage_counters WHERE bucket >= 'N' AND bucket < ?1",
        [minute_bucket(keep_from)],
    )?)
}

/// Every counter of a tenant and mode in buckets `from..=to` of one granularity (bucket names
/// start with `prefix`): (bucket, metric, value).
pub fn in_buckets(
    conn: &Conn,
    tenant: &str,
    mode: &str,
    prefix: char,
    from: &str,
    to: &str,
) -> Result<Vec<(String, String, i64)>> {
    let mut stmt = conn.prepare_cached(
        "SELECT bucket, metric, value FROM usage_counters
         WHERE tenant_id = ?1 AND mode = ?2 AND bucket >= ?3 AND bucket <= ?4 AND bucket >= ?5
           AND bucket < ?6",
    )?;
    // The prefix bounds keep the range inside one granularity's buckets.
    let lo = prefix.to_string();
    let hi = ((prefix as u8) + 1) as char;
    let rows = stmt.query_map(params![tenant, mode, from, to, lo, hi.to_string()], |r| {
        Ok((r.get(0)?, r.get(1)?, r.get(2)?))
    })?;
    Ok(rows.collect::<super::sql::Result<_>>()?)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_in_every_bucket() {
        let dir = tempfile::tempdir().unwrap();
        let db = crate::store::open_direct(dir.path()).unwrap();
        let conn = db.conn();
        let t = crate::store::tenants::create(&conn, "t", crate::plans::Plan::Free).unwrap();
        let at = crate::time::now();
        incr(&conn, &t.id, "live", EVENTS, 3, at).unwrap();
        incr(&conn, &t.id, "live", EVENTS, 2, at).unwrap();
        incr(&conn, &t.id, "test", EVENTS, 7, at).unwrap();
        incr(&conn, &t.id, "live", &event_type_metric("message"), 4, at).unwrap();
        assert_eq!(get(&conn, &t.id, "live", EVENTS, ALL_TIME).unwrap(), 5);
        assert_eq!(
            get(&conn, &t.id, "live", EVENTS, &month_bucket(at)).unwrap(),
            5
        );
        assert_eq!(
            get(&conn, &t.id, "test", EVENTS, &minute_bucket(at)).unwrap(),
            7
        );
        let types = by_prefix(&conn, &t.id, "live", "events_type:", ALL_TIME).unwrap();
        assert_eq!(types, vec![("events_type:message".to_string(), 4)]);
        let h = hour_bucket(at);
        assert_eq!(
            range(&conn, &t.id, "live", EVENTS, &h, &h).unwrap().len(),
            1
        );
    }
}
