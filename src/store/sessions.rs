//! Storage of agent invocations: sessions, their messages (the history sent back to the model),
//! the `invocations` log, and what one finished turn writes (including its memory events, which
//! go through the capture path's `store::events::insert_batch` like any captured event).
//!
//! Invariants:
//! - Every function takes the tenant first and every query filters on it, so an agent, session or
//!   connector of another tenant is simply not found.
//! - A turn is recorded by `record_turn` in one write closure: session row, messages, invocation
//!   row, the agent's `invocation_count`, the usage counters, the memory events and their capture
//!   job commit together or not at all.

use super::{events, usage};
use crate::error::Result;
use events::NewEvent;
use rusqlite::{params, Connection};

/// One stored message of a session.
#[derive(Clone, Debug, PartialEq)]
pub struct StoredMessage {
    pub role: String,
    pub content: String,
    pub tokens: u64,
}

/// The last `limit` user/assistant messages of a session, oldest first.
pub fn recent_messages(
    conn: &Connection,
    tenant_id: &str,
    agent_id: &str,
    session_id: &str,
    limit: usize,
) -> Result<Vec<StoredMessage>> {
    let mut stmt = conn.prepare_cached(
        "SELECT role, content, tokens FROM agent_messages
          WHERE tenant_id = ?1 AND agent_id = ?2 AND session_id = ?3
            AND role IN ('user', 'assistant')
          ORDER BY seq DESC LIMIT ?4",
    )?;
    let mut rows = stmt
        .query_map(
            params![tenant_id, agent_id, session_id, limit as i64],
            |r| {
                Ok(StoredMessage {
                    role: r.get(0)?,
                    content: r.get(1)?,
                    tokens: r.get::<_, i64>(2)?.max(0) as u64,
                })
            },
        )?
        .collect::<rusqlite::Result<Vec<_>>>()?;
    rows.reverse();
    Ok(rows)
}

/// Everything one finished (or cut short) invocation writes.
#[derive(Clone, Debug)]
pub struct Turn {
    pub request_id: String,
    pub tenant_id: String,
    pub mode: &'static str,
    pub agent_id: String,
    pub session_id: String,
    /// `completed`, `timeout`, `error` or `cancelled`.
    pub status: &'static str,
    pub user_message: String,
    pub user_tokens: u64,
    /// What the model said (possibly partial when cut short).
    pub reply: String,
    pub reply_tokens: u64,
    pub latency_ms: u64,
    pub tokens_used: u64,
    /// The turn's memory events (validated by `capture::validate`), stored by the capture path.
    pub events: Vec<NewEvent>,
    pub created_at: String,
}

/// Writes a turn; call inside one `db.write` closure. Returns how many events were stored.
pub fn record_turn(conn: &Connection, t: Turn) -> Result<u64> {
    conn.prepare_cached(
        "INSERT INTO agent_sessions (tenant_id, agent_id, id, created_at, updated_at)
         VALUES (?1, ?2, ?3, ?4, ?4)
         ON CONFLICT (tenant_id, agent_id, id) DO UPDATE SET updated_at = excluded.updated_at",
    )?
    .execute(params![t.tenant_id, t.agent_id, t.session_id, t.created_at])?;
    {
        let mut msg = conn.prepare_cached(
            "INSERT INTO agent_messages
                 (tenant_id, agent_id, session_id, role, content, tokens, created_at)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
        )?;
        msg.execute(params![
            t.tenant_id,
            t.agent_id,
            t.session_id,
            "user",
            t.user_message,
            t.user_tokens as i64,
            t.created_at
        ])?;
        if !t.reply.is_empty() {
            msg.execute(params![
                t.tenant_id,
                t.agent_id,
                t.session_id,
                "assistant",
                t.reply,
                t.reply_tokens as i64,
                t.created_at
            ])?;
        }
    }
    conn.prepare_cached(
        "INSERT INTO invocations
             (id, tenant_id, agent_id, session_id, mode, status, latency_ms, tokens_used, created_at)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9)",
    )?
    .execute(params![
        t.request_id,
        t.tenant_id,
        t.agent_id,
        t.session_id,
        t.mode,
        t.status,
        t.latency_ms as i64,
        t.tokens_used as i64,
        t.created_at
    ])?;
    conn.prepare_cached(
        "UPDATE agents SET invocation_count = invocation_count + 1 WHERE tenant_id = ?1 AND id = ?2",
    )?
    .execute(params![t.tenant_id, t.agent_id])?;
    let now = crate::time::now();
    usage::incr(conn, &t.tenant_id, t.mode, usage::INVOCATIONS, 1, now)?;
    if t.tokens_used > 0 {
        usage::incr(
            conn,
            &t.tenant_id,
            t.mode,
            usage::INVOCATION_TOKENS,
            t.tokens_used as i64,
            now,
        )?;
    }
    if t.events.is_empty() {
        return Ok(0);
    }
    let written = events::insert_batch(conn, &t.tenant_id, t.mode, t.events, 0, now)?;
    Ok(written.ingested)
}
