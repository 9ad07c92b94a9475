//! The `jobs` table as a queue: enqueue inside a caller's write, claim, complete, fail, count.

use super::sql::{params, OptionalExtension};
use super::Conn;
use crate::domain::{JobKind, JobStatus};
use crate::error::Result;
use crate::ids;
use crate::time::now_rfc3339;
use serde_json::Value;

/// A claimed job.
#[derive(Clone, Debug)]
pub struct Job {
    pub id: String,
    pub tenant_id: String,
    pub kind: JobKind,
    pub input: Value,
    pub attempts: i64,
}

/// A job as stored (for status routes).
#[derive(Clone, Debug)]
pub struct JobRow {
    pub id: String,
    pub tenant_id: String,
    pub kind: JobKind,
    pub status: JobStatus,
    pub input: Value,
    pub result: Option<Value>,
    pub error: Option<String>,
    pub attempts: i64,
    pub created_at: String,
    pub started_at: Option<String>,
    pub finished_at: Option<String>,
}

/// Enqueues a job within the caller's transaction; returns its id. Ring the kind's bell after the
/// commit.
pub fn enqueue(conn: &Conn, tenant_id: &str, kind: JobKind, input: &Value) -> Result<String> {
    let id = ids::new("job");
    enqueue_with_id(conn, &id, tenant_id, kind, input)?;
    Ok(id)
}

/// `enqueue` with an id chosen by the caller (e.g. one already shown to a client).
pub fn enqueue_with_id(
    conn: &Conn,
    id: &str,
    tenant_id: &str,
    kind: JobKind,
    input: &Value,
) -> Result<()> {
    let mut stmt = conn.prepare_cached(
        "INSERT INTO jobs(id, tenant_id, kind, status, input, created_at)
         VALUES (?1, ?2, ?3, 'queued', ?4, ?5)",
    )?;
    stmt.execute(params![
        id,
        tenant_id,
        kind.as_str(),
        input.to_string(),
        now_rfc3339()
    ])?;
    if conn.is_postgres() {
        // Delivered to every node's listener when the transaction commits.
        conn.prepare_cached("SELECT pg_notify(?1, ?2)")?
            .query_row(params![super::listen::JOBS, kind.as_str()], |_| Ok(()))?;
    }
    Ok(())
}

/// Milliseconds since the epoch by the database's clock (PostgreSQL), the clock leases are
/// measured by, so nodes whose clocks differ still agree on when a lease lapsed.
const PG_NOW_MS: &str = "CAST(extract(epoch FROM clock_timestamp()) * 1000 AS BIGINT)";

/// Key of the transaction-level advisory lock under which PostgreSQL nodes claim jobs of an
/// exclusive kind (the check that no job of the tenant runs and the claim are then one step
/// across nodes).
const EXCLUSIVE_CLAIM_LOCK: i64 = 0x656e_6772_616d_0003;

/// Claims the oldest queued job of `kind`. With `exclusive`, tenants that already have a running
/// job of this kind are skipped. On PostgreSQL the claim carries a lease of `lease_ms` (renewed by
/// `renew` while the job runs), the row is taken with `FOR UPDATE SKIP LOCKED` so nodes claiming
/// at once take different jobs, and claims of an exclusive kind take turns across nodes (an
/// advisory lock held to the end of the transaction).
pub fn claim(conn: &Conn, kind: JobKind, exclusive: bool, lease_ms: i64) -> Result<Option<Job>> {
    let map = |r: &super::sql::Row<'_>| {
        let input: String = r.get(3)?;
        let id: String = r.get(0)?;
        Ok(Job {
            kind: super::spelled(r, 2, "jobs", &id)?,
            id,
            tenant_id: r.get(1)?,
            input: serde_json::from_str(&input).unwrap_or(Value::Null),
            attempts: r.get(4)?,
        })
    };
    if conn.is_postgres() {
        if exclusive {
            conn.prepare_cached(&format!(
                "SELECT pg_advisory_xact_lock({EXCLUSIVE_CLAIM_LOCK})"
            ))?
            .query_row([], |_| Ok(()))?;
        }
        let running_elsewhere = if exclusive {
            "AND NOT EXISTS (SELECT 1 FROM jobs r WHERE r.kind = ?1 AND r.status = 'running'
                             AND r.tenant_id = j.tenant_id)"
        } else {
            ""
        };
        let sql = format!(
            "WITH next AS (SELECT j.tenant_id, j.seq FROM jobs j
                           WHERE j.kind = ?1 AND j.status = 'queued' {running_elsewhere}
                           ORDER BY j.seq LIMIT 1 FOR UPDATE SKIP LOCKED)
             UPDATE jobs SET status = 'running', started_at = ?2, attempts = jobs.attempts + 1,
                             lease_until = {PG_NOW_MS} + ?3
             FROM next WHERE jobs.tenant_id = next.tenant_id AND jobs.seq = next.seq
             RETURNING jobs.id, jobs.tenant_id, jobs.kind, jobs.input, jobs.attempts"
        );
        let mut stmt = conn.prepare_cached(&sql)?;
        return Ok(stmt
            .query_row(params![kind.as_str(), now_rfc3339(), lease_ms], map)
            .optional()?);
    }
    let sql = if exclusive {
        "UPDATE jobs SET status = 'running', started_at = ?2, attempts = attempts + 1
         WHERE seq = (SELECT j.seq FROM jobs j
                      WHERE j.kind = ?1 AND j.status = 'queued'
                        AND NOT EXISTS (SELECT 1 FROM jobs r WHERE r.kind = ?1
                                        AND r.status = 'running' AND r.tenant_id = j.tenant_id)
                      ORDER BY j.seq LIMIT 1)
         RETURNING id, tenant_id, kind, input, attempts"
    } else {
        "UPDATE jobs SET status = 'running', started_at = ?2, attempts = attempts + 1
         WHERE seq = (SELECT seq FROM jobs WHERE kind = ?1 AND status = 'queued'
                      ORDER BY seq LIMIT 1)
         RETURNING id, tenant_id, kind, input, attempts"
    };
    let mut stmt = conn.prepare_cached(sql)?;
    Ok(stmt
        .query_row(params![kind.as_str(), now_rfc3339()], map)
        .optional()?)
}

/// Extends the leases of running jobs `ids` (this node's, PostgreSQL) by `lease_ms` from now;
/// returns how many were still running.
pub fn renew(conn: &Conn, ids: &[String], lease_ms: i64) -> Result<usize> {
    let mut stmt = conn.prepare_cached(&format!(
        "UPDATE jobs SET lease_until = {PG_NOW_MS} + ?2 WHERE id = ?1 AND status = 'running'"
    ))?;
    let mut n = 0;
    for id in ids {
        n += stmt.execute(params![id, lease_ms])?;
    }
    Ok(n)
}

pub fn complete(conn: &Conn, id: &str, status: JobStatus, result: &Value) -> Result<()> {
    conn.prepare_cached(
        "UPDATE jobs SET status = ?2, result = ?3, error = NULL, finished_at = ?4,
                         lease_until = NULL
         WHERE id = ?1",
    )?
    .execute(params![
        id,
        status.as_str(),
        result.to_string(),
        now_rfc3339()
    ])?;
    Ok(())
}

pub fn fail(conn: &Conn, id: &str, error: &str) -> Result<()> {
    conn.prepare_cached(
        "UPDATE jobs SET status = 'failed', error = ?2, finished_at = ?3, lease_until = NULL
         WHERE id = ?1",
    )?
    .execute(params![id, error, now_rfc3339()])?;
    Ok(())
}

/// Returns a claimed job to the queue (its run met a conflict it can retry: nothing of it was
/// kept, or what was is idempotent).
pub fn requeue(conn: &Conn, id: &str) -> Result<()> {
    conn.prepare_cached(
        "UPDATE jobs SET status = 'queued', started_at = NULL, lease_until = NULL
         WHERE id = ?1 AND status = 'running'",
    )?
    .execute([id])?;
    Ok(())
}

/// Returns jobs whose run was cut short to the queue. SQLite (one server, called at its start):
/// every job left `running` by a crash or a stop. PostgreSQL (called at start and then
/// periodically by every node): the running jobs whose lease lapsed — their node died or lost
/// the database — and only those: the others are in another live node's hands.
pub fn requeue_running(conn: &Conn) -> Result<usize> {
    if conn.is_postgres() {
        return Ok(conn
            .prepare_cached(&format!(
                "UPDATE jobs SET status = 'queued', started_at = NULL, lease_until = NULL
                 WHERE status = 'running' AND (lease_until IS NULL OR lease_until < {PG_NOW_MS})"
            ))?
            .execute([])?);
    }
    Ok(conn.execute(
        "UPDATE jobs SET status = 'queued', started_at = NULL WHERE status = 'running'",
        [],
    )?)
}

pub fn get(conn: &Conn, tenant_id: &str, id: &str) -> Result<Option<JobRow>> {
    Ok(conn
        .query_row(
            "SELECT id, tenant_id, kind, status, input, result, error, attempts, created_at,
                    started_at, finished_at
             FROM jobs WHERE id = ?1 AND tenant_id = ?2",
            [id, tenant_id],
            |r| {
                let input: String = r.get(4)?;
                let result: Option<String> = r.get(5)?;
                let id: String = r.get(0)?;
                Ok(JobRow {
                    kind: super::spelled(r, 2, "jobs", &id)?,
                    status: super::spelled(r, 3, "jobs", &id)?,
                    id,
                    tenant_id: r.get(1)?,
                    input: serde_json::from_str(&input).unwrap_or(Value::Null),
                    result: result.and_then(|s| serde_json::from_str(&s).ok()),
                    error: r.get(6)?,
                    attempts: r.get(7)?,
                    created_at: r.get(8)?,
                    started_at: r.get(9)?,
                    finished_at: r.get(10)?,
                })
            },
        )
        .optional()?)
}

/// Number of jobs of `kind` in `status` (all tenants; for health).
pub fn count(conn: &Conn, kind: JobKind, status: JobStatus) -> Result<u64> {
    let mut stmt =
        conn.prepare_cached("SELECT count(*) FROM jobs WHERE kind = ?1 AND status = ?2")?;
    Ok(stmt.query_row([kind.as_str(), status.as_str()], |r| r.get::<i64>(0))? as u64)
}

/// Whether `tenant_id` has a job of `kind` waiting to be claimed.
pub fn has_queued(conn: &Conn, tenant_id: &str, kind: JobKind) -> Result<bool> {
    let mut stmt = conn.prepare_cached(
        "SELECT EXISTS(SELECT 1 FROM jobs WHERE kind = ?1 AND status = 'queued' AND tenant_id = ?2)",
    )?;
    Ok(stmt.query_row([kind.as_str(), tenant_id], |r| r.get(0))?)
}

/// The oldest `limit` queued jobs of `kind` of a tenant: (id, input), oldest first.
pub fn queued_inputs(
    conn: &Conn,
    tenant_id: &str,
    kind: JobKind,
    limit: i64,
) -> Result<Vec<(String, Value)>> {
    let mut stmt = conn.prepare_cached(
        "SELECT id, input FROM jobs WHERE kind = ?1 AND status = 'queued' AND tenant_id = ?2
         ORDER BY seq LIMIT ?3",
    )?;
    let rows = stmt.query_map(params![kind.as_str(), tenant_id, limit], |r| {
        let input: String = r.get(1)?;
        Ok((
            r.get::<String>(0)?,
            serde_json::from_str(&input).unwrap_or(Value::Null),
        ))
    })?;
    Ok(rows.collect::<super::sql::Result<_>>()?)
}

/// Completes a job another job's run did the work of, if it is still queued: `true` when it
/// was (it is now completed, its result naming `by`), `false` when a worker claimed it meanwhile.
pub fn take_over(conn: &Conn, job_id: &str, by: &str, at: &str) -> Result<bool> {
    let mut stmt = conn.prepare_cached(
        "UPDATE jobs SET status = 'completed', attempts = attempts + 1, started_at = ?3,
                         finished_at = ?3, result = ?2
         WHERE id = ?1 AND status = 'queued'",
    )?;
    let result = serde_json::json!({"processedBy": by}).to_string();
    Ok(stmt.execute(params![job_id, result, at])? == 1)
}

/// Tenants with events not yet learned and no queued or running job of `kind`, by id.
pub fn tenants_with_unlearned_events(conn: &Conn, kind: JobKind) -> Result<Vec<String>> {
    let mut stmt = conn.prepare_cached(
        "SELECT t.id FROM tenants t
         WHERE EXISTS (SELECT 1 FROM events e WHERE e.tenant_id = t.id AND e.learned_at IS NULL)
           AND NOT EXISTS (SELECT 1 FROM jobs j WHERE j.kind = ?1
                           AND j.status IN ('queued', 'running') AND j.tenant_id = t.id)
         ORDER BY t.id",
    )?;
    let rows = stmt.query_map([kind.as_str()], |r| r.get(0))?;
    Ok(rows.collect::<super::sql::Result<_>>()?)
}
