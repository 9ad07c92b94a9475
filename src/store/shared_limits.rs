//! Limits every PostgreSQL node shares (`schema.postgres.sql`, `rate_buckets` and
//! `quota_reserved`; docs/scale-out.md, "Limits across nodes"). Each call runs on a connection of
//! its own and commits at once (`Db::shared_blocking`), never inside the writer's transaction.

use super::sql::{params, OptionalExtension};
use super::Conn;
use crate::error::Result;

/// What a node got from a rate bucket.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Grant {
    /// Requests granted (0: the bucket is empty).
    pub granted: i64,
    /// The bucket's theoretical arrival time after the grant (µs of the nodes' clock).
    pub tat_us: i64,
}

/// Takes up to `want` requests from the GCRA bucket (`interval_us` per request, a burst of
/// `tolerance_us / interval_us`) at `now_us`; a bucket seen for the first time starts full. The
/// row is locked while the grant is computed, so nodes taking at once get disjoint requests.
pub fn take_rate(
    conn: &Conn,
    tenant_id: &str,
    bucket: &str,
    now_us: i64,
    interval_us: i64,
    tolerance_us: i64,
    want: i64,
) -> Result<Grant> {
    // A bucket whose arrival time has passed is full: its base is now. It gives the requests
    // whose arrival stays within the tolerance.
    let mut take = conn.prepare_cached(
        "WITH cur AS (SELECT GREATEST(tat_us, ?3) AS base FROM rate_buckets
                      WHERE tenant_id = ?1 AND bucket = ?2 FOR UPDATE),
              g AS (SELECT base, LEAST(?6, GREATEST((?5 - (base - ?3)) / ?4, 0)) AS n FROM cur)
         UPDATE rate_buckets AS b SET tat_us = g.base + g.n * ?4 FROM g
         WHERE b.tenant_id = ?1 AND b.bucket = ?2
         RETURNING g.n, b.tat_us",
    )?;
    let args = params![tenant_id, bucket, now_us, interval_us, tolerance_us, want];
    let read = |r: &super::sql::Row<'_>| {
        Ok(Grant {
            granted: r.get(0)?,
            tat_us: r.get(1)?,
        })
    };
    if let Some(g) = take.query_row(args, read).optional()? {
        return Ok(g);
    }
    conn.prepare_cached(
        "INSERT INTO rate_buckets(tenant_id, bucket, tat_us) VALUES (?1, ?2, 0)
         ON CONFLICT (tenant_id, bucket) DO NOTHING",
    )?
    .execute(params![tenant_id, bucket])?;
    let args = params![tenant_id, bucket, now_us, interval_us, tolerance_us, want];
    Ok(take.query_row(args, read)?)
}

/// A month's quota counter: tenant, mode, usage metric and month bucket.
#[derive(Clone, Debug)]
pub struct QuotaKey {
    pub tenant_id: String,
    pub mode: &'static str,
    pub metric: &'static str,
    pub bucket: String,
}

/// Reserves `n` units unless that would pass `limit`: `Ok(reserved after)`, or `Err(reserved
/// now)` when refused. A counter seen for the first time in its month starts at the month's
/// usage counter.
pub fn reserve_quota(
    conn: &Conn,
    k: &QuotaKey,
    n: i64,
    limit: i64,
) -> Result<std::result::Result<i64, i64>> {
    conn.prepare_cached(
        "INSERT INTO quota_reserved(tenant_id, mode, metric, bucket, reserved)
         VALUES (?1, ?2, ?3, ?4,
                 coalesce((SELECT value FROM usage_counters WHERE tenant_id = ?1 AND mode = ?2
                           AND metric = ?3 AND bucket = ?4), 0))
         ON CONFLICT (tenant_id, mode, metric, bucket) DO NOTHING",
    )?
    .execute(params![k.tenant_id, k.mode, k.metric, k.bucket])?;
    let taken: Option<i64> = conn
        .prepare_cached(
            "UPDATE quota_reserved SET reserved = reserved + ?5
             WHERE tenant_id = ?1 AND mode = ?2 AND metric = ?3 AND bucket = ?4
               AND reserved + ?5 <= ?6
             RETURNING reserved",
        )?
        .query_row(
            params![k.tenant_id, k.mode, k.metric, k.bucket, n, limit],
            |r| r.get(0),
        )
        .optional()?;
    match taken {
        Some(after) => Ok(Ok(after)),
        None => Ok(Err(reserved(conn, k)?)),
    }
}

/// Gives back `n` reserved units a request did not use.
pub fn release_quota(conn: &Conn, k: &QuotaKey, n: i64) -> Result<()> {
    conn.prepare_cached(
        "UPDATE quota_reserved SET reserved = GREATEST(reserved - ?5, 0)
         WHERE tenant_id = ?1 AND mode = ?2 AND metric = ?3 AND bucket = ?4",
    )?
    .execute(params![k.tenant_id, k.mode, k.metric, k.bucket, n])?;
    Ok(())
}

/// Units reserved this month (0 when nothing was reserved yet).
pub fn reserved(conn: &Conn, k: &QuotaKey) -> Result<i64> {
    Ok(conn
        .prepare_cached(
            "SELECT reserved FROM quota_reserved
             WHERE tenant_id = ?1 AND mode = ?2 AND metric = ?3 AND bucket = ?4",
        )?
        .query_row(params![k.tenant_id, k.mode, k.metric, k.bucket], |r| {
            r.get(0)
        })
        .optional()?
        .unwrap_or(0))
}
