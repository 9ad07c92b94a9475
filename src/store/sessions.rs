//! Storage of agent invocations: sessions, their messages (the history sent back to the model),
//! the `invocations` log, and what one finished turn writes (including its memory events, which
//! go through the capture path's `store::events::insert_group` like any captured event).
//!
//! Invariants:
//! - Every function takes the tenant first and every query filters on it, so an agent, session or
//!   connector of another tenant is simply not found.
//! - A turn is recorded by `record_turns` in one write closure (together with the turns that
//!   finished at the same time): session row, messages, invocation row, the agent's
//!   `invocation_count`, the usage counters, the memory events and their capture job commit
//!   together or not at all.

use super::sql::params;
use super::Conn;
use super::{events, usage};
use crate::error::Result;
use events::{GroupItem, NewEvent};
use std::collections::HashMap;

/// One stored message of a session.
#[derive(Clone, Debug, PartialEq)]
pub struct StoredMessage {
    pub role: String,
    pub content: String,
    pub tokens: u64,
}

/// The last `limit` user/assistant messages of a session with their `seq`, oldest first, read
/// newest first only
/// until their stored token counts exceed `token_budget` (the message that crosses it is still
/// included). A caller trimming to that budget gets the same result as from all `limit`
/// messages, without decoding the older ones (a stored count of 0 means "not counted" and only
/// makes the read go further back).
pub fn recent_messages(
    conn: &Conn,
    tenant_id: &str,
    agent_id: &str,
    session_id: &str,
    limit: usize,
    token_budget: u64,
) -> Result<Vec<(i64, StoredMessage)>> {
    let mut stmt = conn.prepare_cached(
        "SELECT tokens, role, content, seq FROM agent_messages
          WHERE tenant_id = ?1 AND agent_id = ?2 AND session_id = ?3
            AND role IN ('user', 'assistant')
          ORDER BY seq DESC LIMIT ?4",
    )?;
    let mut rows = stmt.query(params![tenant_id, agent_id, session_id, limit as i64])?;
    let mut out = Vec::new();
    let mut used = 0u64;
    while let Some(r) = rows.next()? {
        let tokens = r.get::<i64>(0)?.max(0) as u64;
        out.push((
            r.get(3)?,
            StoredMessage {
                role: r.get(1)?,
                content: r.get(2)?,
                tokens,
            },
        ));
        used += tokens;
        if used > token_budget {
            break;
        }
    }
    out.reverse();
    Ok(out)
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

/// What `record_turns` wrote for one turn.
#[derive(Clone, Debug, Default)]
pub struct TurnWritten {
    /// How many of its memory events were stored.
    pub events: u64,
    /// The `seq` of its user message, and of its reply when it had one.
    pub user_seq: i64,
    pub reply_seq: Option<i64>,
}

/// Writes several turns in the caller's transaction; returns what was written per turn, in
/// order. Rows shared by the turns are written once per group: a session's row
/// once, an agent's `invocation_count` once (by the number of its turns), the usage counters once
/// per tenant and mode, and the events of one tenant get one capture job
/// (`events::insert_group`).
pub fn record_turns(conn: &Conn, turns: Vec<Turn>) -> Result<Vec<TurnWritten>> {
    let turns_at = turns
        .iter()
        .filter_map(|t| crate::time::parse(&t.created_at))
        .max();
    let mut sessions: HashMap<(&str, &str, &str), &str> = HashMap::new();
    let mut agents: HashMap<(&str, &str), i64> = HashMap::new();
    // (tenant, mode) -> (invocations, tokens)
    let mut counters: HashMap<(&str, &'static str), (i64, i64)> = HashMap::new();
    let mut written = vec![TurnWritten::default(); turns.len()];
    {
        let mut msg = conn.prepare_cached(
            "INSERT INTO agent_messages
                 (tenant_id, agent_id, session_id, role, content, tokens, created_at)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)
             RETURNING seq",
        )?;
        let mut inv = conn.prepare_cached(
            "INSERT INTO invocations
                 (id, tenant_id, agent_id, session_id, mode, status, latency_ms, tokens_used,
                  created_at)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9)",
        )?;
        for (t, w) in turns.iter().zip(written.iter_mut()) {
            let key = (
                t.tenant_id.as_str(),
                t.agent_id.as_str(),
                t.session_id.as_str(),
            );
            let at = sessions.entry(key).or_insert(t.created_at.as_str());
            if t.created_at.as_str() > *at {
                *at = t.created_at.as_str();
            }
            w.user_seq = msg.query_row(
                params![
                    t.tenant_id,
                    t.agent_id,
                    t.session_id,
                    "user",
                    t.user_message,
                    t.user_tokens as i64,
                    t.created_at
                ],
                |r| r.get(0),
            )?;
            if !t.reply.is_empty() {
                w.reply_seq = Some(msg.query_row(
                    params![
                        t.tenant_id,
                        t.agent_id,
                        t.session_id,
                        "assistant",
                        t.reply,
                        t.reply_tokens as i64,
                        t.created_at
                    ],
                    |r| r.get(0),
                )?);
            }
            inv.execute(params![
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
            *agents.entry((&t.tenant_id, &t.agent_id)).or_default() += 1;
            let c = counters.entry((&t.tenant_id, t.mode)).or_default();
            c.0 += 1;
            c.1 += t.tokens_used as i64;
        }
    }
    let mut session = conn.prepare_cached(
        "INSERT INTO agent_sessions (tenant_id, agent_id, id, created_at, updated_at)
         VALUES (?1, ?2, ?3, ?4, ?4)
         ON CONFLICT (tenant_id, agent_id, id) DO UPDATE SET updated_at = excluded.updated_at",
    )?;
    for ((tenant, agent, id), at) in &sessions {
        session.execute(params![tenant, agent, id, at])?;
    }
    let mut count = conn.prepare_cached(
        "UPDATE agents SET invocation_count = invocation_count + ?3
          WHERE tenant_id = ?1 AND id = ?2",
    )?;
    for ((tenant, agent), n) in &agents {
        count.execute(params![tenant, agent, n])?;
    }
    // The latest turn's time (the server's clock, stamped when it finished).
    let now = turns_at.unwrap_or_else(crate::time::now);
    for ((tenant, mode), (n, tokens)) in &counters {
        usage::incr(conn, tenant, mode, usage::INVOCATIONS, *n, now)?;
        usage::incr(conn, tenant, mode, usage::INVOCATION_TOKENS, *tokens, now)?;
    }
    // The memory events, one group item per turn that has any.
    let mut with_events = Vec::new();
    let mut items = Vec::new();
    for (i, t) in turns.into_iter().enumerate() {
        if !t.events.is_empty() {
            with_events.push(i);
            items.push(GroupItem {
                tenant_id: t.tenant_id,
                mode: t.mode,
                events: t.events,
                invalid: 0,
                at: now,
            });
        }
    }
    if !items.is_empty() {
        for (i, batch) in with_events
            .into_iter()
            .zip(events::insert_group(conn, items)?)
        {
            written[i].events = batch.ingested;
        }
    }
    Ok(written)
}
