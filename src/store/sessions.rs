//! Storage of agent invocations: sessions, their messages (the history sent back to the model),
//! the `invocations` log, and what one finished turn writes.
//!
//! Invariants:
//! - Every function takes the tenant first and every query filters on it, so an agent, session or
//!   connector of another tenant is simply not found.
//! - A turn is recorded by `record_turn` in one write closure: session row, messages, invocation
//!   row, the agent's `invocation_count`, the usage counters and the memory events commit together
//!   or not at all.

use super::usage;
use crate::error::Result;
use rusqlite::{params, Connection, OptionalExtension};
use serde_json::Value;

/// What invocation needs of an agent row.
#[derive(Clone, Debug)]
pub struct AgentRow {
    pub id: String,
    pub project_id: Option<String>,
    pub name: String,
    pub model: String,
    pub instruction: String,
    pub timeout_secs: u64,
    /// The offline model's rules (`script` at deploy), as stored JSON.
    pub script: Option<Value>,
}

/// Loads an agent of this tenant by id or slug; deleted agents are not found.
pub fn load_agent(
    conn: &Connection,
    tenant_id: &str,
    id_or_slug: &str,
) -> Result<Option<AgentRow>> {
    let mut stmt = conn.prepare_cached(
        "SELECT id, project_id, name, model, instruction, timeout_secs, script_json
           FROM agents
          WHERE tenant_id = ?1 AND (id = ?2 OR slug = ?2) AND status != 'deleted'
          ORDER BY id = ?2 DESC LIMIT 1",
    )?;
    let row = stmt
        .query_row(params![tenant_id, id_or_slug], |r| {
            let script: Option<String> = r.get(6)?;
            Ok(AgentRow {
                id: r.get(0)?,
                project_id: r.get(1)?,
                name: r.get(2)?,
                model: r.get(3)?,
                instruction: r.get(4)?,
                timeout_secs: r.get::<_, i64>(5)?.max(1) as u64,
                script: script.and_then(|s| serde_json::from_str(&s).ok()),
            })
        })
        .optional()?;
    Ok(row)
}

/// A connector the agent may use as an MCP server.
#[derive(Clone, Debug)]
pub struct ConnectorRow {
    pub id: String,
    pub slug: String,
    pub name: String,
    pub mcp_url: String,
}

/// The connectors of a project, in creation order.
pub fn project_connectors(
    conn: &Connection,
    tenant_id: &str,
    project_id: &str,
) -> Result<Vec<ConnectorRow>> {
    let mut stmt = conn.prepare_cached(
        "SELECT id, slug, name, mcp_url FROM connectors
          WHERE tenant_id = ?1 AND project_id = ?2 ORDER BY created_at, id",
    )?;
    let rows = stmt
        .query_map(params![tenant_id, project_id], |r| {
            Ok(ConnectorRow {
                id: r.get(0)?,
                slug: r.get(1)?,
                name: r.get(2)?,
                mcp_url: r.get(3)?,
            })
        })?
        .collect::<rusqlite::Result<Vec<_>>>()?;
    Ok(rows)
}

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

/// Texts the agent saw or said in its other sessions, most recent first: the memory the
/// invocation falls back on when no synthesized pack is available.
pub fn recent_agent_memory(
    conn: &Connection,
    tenant_id: &str,
    agent_id: &str,
    exclude_session: &str,
    limit: usize,
) -> Result<Vec<String>> {
    let mut stmt = conn.prepare_cached(
        "SELECT payload FROM events
          WHERE tenant_id = ?1 AND agent_id = ?2 AND session_id != ?3
          ORDER BY seq DESC LIMIT ?4",
    )?;
    let rows = stmt
        .query_map(
            params![tenant_id, agent_id, exclude_session, limit as i64],
            |r| r.get::<_, String>(0),
        )?
        .collect::<rusqlite::Result<Vec<_>>>()?;
    Ok(rows
        .iter()
        .filter_map(|p| serde_json::from_str::<Value>(p).ok())
        .filter_map(|v| event_text(&v))
        .collect())
}

/// The human-readable text of an event payload written by `record_turn`.
fn event_text(payload: &Value) -> Option<String> {
    if let Some(c) = payload.get("content").and_then(Value::as_str) {
        let role = payload.get("role").and_then(Value::as_str).unwrap_or("");
        return Some(if role.is_empty() {
            c.to_string()
        } else {
            format!("{role}: {c}")
        });
    }
    if let Some(t) = payload.get("tool").and_then(Value::as_str) {
        let out = payload.get("result").and_then(Value::as_str).unwrap_or("");
        return Some(format!("tool {t} returned: {out}"));
    }
    None
}

/// One event of a turn, stored for the memory (captured like any other event).
#[derive(Clone, Debug)]
pub struct TurnEvent {
    pub kind: &'static str,
    pub payload: Value,
}

/// Everything one finished (or cut short) invocation writes.
#[derive(Clone, Debug)]
pub struct Turn {
    pub request_id: String,
    pub trace_id: String,
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
    pub events: Vec<TurnEvent>,
    pub created_at: String,
}

/// Writes a turn; call inside one `db.write` closure.
pub fn record_turn(conn: &Connection, t: &Turn) -> Result<Vec<String>> {
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
    insert_events(conn, t)
}

/// Stores the turn's memory events (`metadata.agentId`, the session id); returns their ids.
fn insert_events(conn: &Connection, t: &Turn) -> Result<Vec<String>> {
    let mut ids = Vec::with_capacity(t.events.len());
    if t.events.is_empty() {
        return Ok(ids);
    }
    let mut stmt = conn.prepare_cached(
        "INSERT INTO events
             (id, tenant_id, session_id, agent_id, type, payload, metadata, salience, trace_id,
              mode, created_at)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, 0.5, ?8, ?9, ?10)",
    )?;
    let metadata = serde_json::json!({
        "agentId": t.agent_id,
        "source": "invoke",
        "requestId": t.request_id,
    })
    .to_string();
    for e in &t.events {
        let id = crate::ids::new("evt");
        stmt.execute(params![
            id,
            t.tenant_id,
            t.session_id,
            t.agent_id,
            e.kind,
            e.payload.to_string(),
            metadata,
            t.trace_id,
            t.mode,
            t.created_at
        ])?;
        ids.push(id);
    }
    let now = crate::time::now();
    usage::incr(
        conn,
        &t.tenant_id,
        t.mode,
        usage::EVENTS,
        t.events.len() as i64,
        now,
    )?;
    Ok(ids)
}
