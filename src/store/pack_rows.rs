//! The reads search makes: what the database says now of a pack's hits (the index may lag behind
//! a status change), the neighbouring turns of a conversational memory, and how many documents a
//! complete index holds.

use super::memories::EPISODIC_ID_OF_EVENT;
use super::Conn;
use crate::error::{Error, Result};
use std::collections::HashMap;

/// What a hit shows.
#[derive(Clone, Debug)]
pub enum Shown {
    /// A memory's content.
    Memory(String),
    /// An artifact, to be rendered by the caller.
    Artifact {
        artifact_type: String,
        title: String,
        content_json: String,
    },
}

/// A hit as the database has it now.
#[derive(Clone, Debug)]
pub struct CurrentRow {
    pub confidence: f64,
    /// Artifact type or memory kind.
    pub detail_type: String,
    pub evidence_count: i64,
    pub event_id: Option<String>,
    pub session_id: Option<String>,
    /// The event type behind an episodic memory (`message`, `tool_call`, …).
    pub event_type: Option<String>,
    pub shown: Shown,
}

/// `table AS alias`, restricted to the ids of the JSON list `?1` (of tenant `?2`), each looked up
/// by its id. SQLite: the list drives the join (`CROSS JOIN` fixes the loop order). PostgreSQL:
/// the list as an array the tenant's id index is scanned with; joined with the list as a table,
/// its planner cannot tell the list is short and scans the tenant's rows instead (docs/scale-out.md).
fn listed(conn: &Conn, table: &str, alias: &str) -> String {
    if conn.is_postgres() {
        format!(
            "(SELECT ARRAY(SELECT jsonb_array_elements_text(CAST(CAST(?1 AS TEXT) AS jsonb)))
                  AS ids) AS j
             JOIN {table} AS {alias} ON {alias}.tenant_id = ?2 AND {alias}.id = ANY(j.ids)"
        )
    } else {
        format!("json_each(?1) AS j CROSS JOIN {table} AS {alias} ON {alias}.id = j.value")
    }
}

/// The rows of `doc_ids` (memories `mem_…`, artifacts `art_…`) in that order; `None` when a row is
/// gone, of another tenant, not active or below `min_confidence`. Two statements over a JSON array
/// of ids in one read transaction (one snapshot) when both run: measured, one statement per id
/// spent most of its time taking and releasing SQLite's shared lock. The ids drive the join
/// (`CROSS JOIN` fixes the loop order; `+tenant_id` keeps the planner off the tenant index, which
/// would scan the tenant).
pub fn current_rows(
    conn: &Conn,
    tenant_id: &str,
    doc_ids: &[String],
    min_confidence: f64,
) -> Result<Vec<Option<CurrentRow>>> {
    let mut found: HashMap<String, (String, CurrentRow)> = HashMap::with_capacity(doc_ids.len());
    let (arts, mems): (Vec<&String>, Vec<&String>) =
        doc_ids.iter().partition(|id| id.starts_with("art_"));
    let both = !arts.is_empty() && !mems.is_empty();
    if both {
        conn.execute_batch("BEGIN")?;
    }
    let result = (|| -> Result<()> {
        if !arts.is_empty() {
            let ids = serde_json::to_string(&arts).map_err(Error::internal)?;
            let mut stmt = conn.prepare_cached(&format!(
                "SELECT a.id, a.status, a.confidence, a.type, a.evidence_count, a.title,
                        a.content_json
                 FROM {}
                 WHERE +a.tenant_id = ?2",
                listed(conn, "artifacts", "a")
            ))?;
            let mut rows = stmt.query(super::sql::params![ids, tenant_id])?;
            while let Some(r) = rows.next()? {
                let artifact_type: String = r.get(3)?;
                found.insert(
                    r.get(0)?,
                    (
                        r.get(1)?,
                        CurrentRow {
                            confidence: r.get(2)?,
                            detail_type: artifact_type.clone(),
                            evidence_count: r.get(4)?,
                            event_id: None,
                            session_id: None,
                            event_type: None,
                            shown: Shown::Artifact {
                                artifact_type,
                                title: r.get(5)?,
                                content_json: r.get(6)?,
                            },
                        },
                    ),
                );
            }
        }
        if !mems.is_empty() {
            let ids = serde_json::to_string(&mems).map_err(Error::internal)?;
            let mut stmt = conn.prepare_cached(&format!(
                "SELECT m.id, m.status, m.confidence, m.kind,
                        json_array_length(m.source_events_json), m.event_id, m.session_id,
                        m.content, json_extract(m.metadata, '$.eventType')
                 FROM {}
                 WHERE +m.tenant_id = ?2",
                listed(conn, "memories", "m")
            ))?;
            let mut rows = stmt.query(super::sql::params![ids, tenant_id])?;
            while let Some(r) = rows.next()? {
                found.insert(
                    r.get(0)?,
                    (
                        r.get(1)?,
                        CurrentRow {
                            confidence: r.get(2)?,
                            detail_type: r.get(3)?,
                            evidence_count: r.get::<Option<i64>>(4)?.unwrap_or(0).max(1),
                            event_id: r.get(5)?,
                            session_id: r.get(6)?,
                            shown: Shown::Memory(r.get(7)?),
                            event_type: r.get::<Option<String>>(8).ok().flatten(),
                        },
                    ),
                );
            }
        }
        Ok(())
    })();
    let end = if both {
        conn.execute_batch("COMMIT")
    } else {
        Ok(())
    };
    result?;
    end?;
    Ok(doc_ids
        .iter()
        .map(|id| {
            found.remove(id).and_then(|(status, c)| {
                (status == "active" && c.confidence >= min_confidence).then_some(c)
            })
        })
        .collect())
}

/// Where a conversation turn (an episodic memory of a `message` event) sits in its session: its
/// event's `seq`, and the `seq`s of the session's processed events just before and after it
/// (capture order). The neighbours' memory ids are resolved only when wanted
/// (`episodic_ids_at`): finding an event's id reads its row, finding its `seq` does not.
#[derive(Clone, Debug, Default)]
pub struct Around {
    pub seq: i64,
    pub prev: Option<i64>,
    pub next: Option<i64>,
}

/// `Around` of each memory of `memory_ids` that renders a `message` event of a session (others
/// are absent: only conversation turns have neighbours worth showing).
pub fn session_neighbours(
    conn: &Conn,
    tenant_id: &str,
    memory_ids: &[String],
) -> Result<HashMap<String, Around>> {
    let mut out = HashMap::new();
    if memory_ids.is_empty() {
        return Ok(out);
    }
    let ids = serde_json::to_string(memory_ids).map_err(Error::internal)?;
    // Every `seq` here comes from an index alone: the turn's from `events_id`, its neighbours'
    // from `events_session` (an episodic memory has its event's session).
    let mut stmt = conn.prepare_cached(&format!(
        "SELECT m.id, t.seq,
                (SELECT e.seq FROM events AS e INDEXED BY events_session
                  WHERE e.tenant_id = m.tenant_id AND e.session_id = m.session_id
                    AND e.processed_at IS NOT NULL AND e.seq < t.seq
                  ORDER BY e.seq DESC LIMIT 1),
                (SELECT e.seq FROM events AS e INDEXED BY events_session
                  WHERE e.tenant_id = m.tenant_id AND e.session_id = m.session_id
                    AND e.processed_at IS NOT NULL AND e.seq > t.seq
                  ORDER BY e.seq LIMIT 1)
         FROM {}
         CROSS JOIN events AS t ON t.id = m.event_id AND t.tenant_id = m.tenant_id
         WHERE +m.tenant_id = ?2 AND m.kind = 'episodic' AND m.session_id IS NOT NULL
           AND json_extract(m.metadata, '$.eventType') = 'message'",
        listed(conn, "memories", "m")
    ))?;
    let mut rows = stmt.query(super::sql::params![ids, tenant_id])?;
    while let Some(r) = rows.next()? {
        out.insert(
            r.get(0)?,
            Around {
                seq: r.get(1)?,
                prev: r.get(2)?,
                next: r.get(3)?,
            },
        );
    }
    Ok(out)
}

/// The episodic memory ids of a tenant's events at `seqs` (absent for a `seq` with no event).
pub fn episodic_ids_at(conn: &Conn, tenant_id: &str, seqs: &[i64]) -> Result<HashMap<i64, String>> {
    let mut out = HashMap::new();
    if seqs.is_empty() {
        return Ok(out);
    }
    let list = serde_json::to_string(seqs).map_err(Error::internal)?;
    let mut stmt = conn.prepare_cached(&format!(
        "SELECT e.seq, {EPISODIC_ID_OF_EVENT} FROM json_each(?1) AS j
         CROSS JOIN events AS e ON e.seq = CAST(j.value AS BIGINT)
         WHERE e.tenant_id = ?2"
    ))?;
    let mut rows = stmt.query(super::sql::params![list, tenant_id])?;
    while let Some(r) = rows.next()? {
        out.insert(r.get(0)?, r.get(1)?);
    }
    Ok(out)
}

/// How many rows the search index holds when complete: active memories and active artifacts.
pub fn active_documents(conn: &Conn) -> Result<u64> {
    let n: i64 = conn.query_row(
        "SELECT (SELECT count(*) FROM memories WHERE status = 'active')
              + (SELECT count(*) FROM artifacts WHERE status = 'active')",
        [],
        |r| r.get(0),
    )?;
    Ok(n.max(0) as u64)
}

/// An active memory as the search index needs it (`search::rebuild`).
pub struct MemoryIndexRow {
    pub seq: i64,
    pub tenant_id: String,
    pub id: String,
    pub kind: String,
    pub agent_id: Option<String>,
    pub session_id: Option<String>,
    pub tags: Vec<String>,
    pub content: String,
    pub created_at: String,
    pub confidence: f64,
    pub salience: f64,
}

/// Active memories after `after` (a seq), in seq order, at most `limit`; of one tenant or all.
pub fn active_memories(
    conn: &Conn,
    tenant: Option<&str>,
    after: i64,
    limit: i64,
) -> Result<Vec<MemoryIndexRow>> {
    let mut stmt = conn.prepare_cached(
        "SELECT seq, tenant_id, id, kind, agent_id, session_id, tags_json, content,
                created_at, confidence, salience
         FROM memories
         WHERE seq > ?1 AND status = 'active' AND (tenant_id = ?3 OR ?3 IS NULL)
         ORDER BY seq LIMIT ?2",
    )?;
    let rows = stmt.query_map(super::sql::params![after, limit, tenant], memory_index_row)?;
    Ok(rows.collect::<super::sql::Result<Vec<_>>>()?)
}

/// A `MemoryIndexRow` from `seq, tenant_id, id, kind, agent_id, session_id, tags_json, content,
/// created_at, confidence, salience`.
fn memory_index_row(r: &super::sql::Row<'_>) -> super::sql::Result<MemoryIndexRow> {
    let tags: String = r.get(6)?;
    Ok(MemoryIndexRow {
        seq: r.get(0)?,
        tenant_id: r.get(1)?,
        id: r.get(2)?,
        kind: r.get(3)?,
        agent_id: r.get(4)?,
        session_id: r.get(5)?,
        tags: serde_json::from_str(&tags).unwrap_or_default(),
        content: r.get(7)?,
        created_at: r.get(8)?,
        confidence: r.get(9)?,
        salience: r.get(10)?,
    })
}

/// An active artifact as the search index needs it.
pub struct ArtifactIndexRow {
    pub tenant_id: String,
    pub id: String,
    pub artifact_type: String,
    pub agent_id: Option<String>,
    pub title: String,
    pub content: serde_json::Value,
    pub updated_at: String,
    pub confidence: f64,
}

/// Every active artifact, in seq order; of one tenant or all.
pub fn active_artifacts(conn: &Conn, tenant: Option<&str>) -> Result<Vec<ArtifactIndexRow>> {
    let mut stmt = conn.prepare_cached(
        "SELECT tenant_id, id, type, agent_id, title, content_json, updated_at, confidence
         FROM artifacts WHERE status = 'active' AND (tenant_id = ?1 OR ?1 IS NULL)
         ORDER BY seq",
    )?;
    let rows = stmt.query_map([tenant], artifact_index_row)?;
    Ok(rows.collect::<super::sql::Result<Vec<_>>>()?)
}

/// An `ArtifactIndexRow` from `tenant_id, id, type, agent_id, title, content_json, updated_at,
/// confidence`.
fn artifact_index_row(r: &super::sql::Row<'_>) -> super::sql::Result<ArtifactIndexRow> {
    let content: String = r.get(5)?;
    Ok(ArtifactIndexRow {
        tenant_id: r.get(0)?,
        id: r.get(1)?,
        artifact_type: r.get(2)?,
        agent_id: r.get(3)?,
        title: r.get(4)?,
        content: serde_json::from_str(&content).unwrap_or_default(),
        updated_at: r.get(6)?,
        confidence: r.get(7)?,
    })
}

/// The active memories and artifacts among `doc_ids` of a tenant, as the index needs them (the
/// search feed: an id not returned is gone, of another tenant or not active, and leaves the
/// index).
pub fn index_rows(
    conn: &Conn,
    tenant_id: &str,
    doc_ids: &[String],
) -> Result<(Vec<MemoryIndexRow>, Vec<ArtifactIndexRow>)> {
    let (arts, mems): (Vec<&String>, Vec<&String>) =
        doc_ids.iter().partition(|id| id.starts_with("art_"));
    let mut memories = Vec::new();
    if !mems.is_empty() {
        let ids = serde_json::to_string(&mems).map_err(Error::internal)?;
        let mut stmt = conn.prepare_cached(&format!(
            "SELECT m.seq, m.tenant_id, m.id, m.kind, m.agent_id, m.session_id, m.tags_json,
                    m.content, m.created_at, m.confidence, m.salience
             FROM {} WHERE m.tenant_id = ?2 AND m.status = 'active'",
            listed(conn, "memories", "m")
        ))?;
        let rows = stmt.query_map(super::sql::params![ids, tenant_id], memory_index_row)?;
        memories = rows.collect::<super::sql::Result<Vec<_>>>()?;
    }
    let mut artifacts = Vec::new();
    if !arts.is_empty() {
        let ids = serde_json::to_string(&arts).map_err(Error::internal)?;
        let mut stmt = conn.prepare_cached(&format!(
            "SELECT a.tenant_id, a.id, a.type, a.agent_id, a.title, a.content_json, a.updated_at,
                    a.confidence
             FROM {} WHERE a.tenant_id = ?2 AND a.status = 'active'",
            listed(conn, "artifacts", "a")
        ))?;
        let rows = stmt.query_map(super::sql::params![ids, tenant_id], artifact_index_row)?;
        artifacts = rows.collect::<super::sql::Result<Vec<_>>>()?;
    }
    Ok((memories, artifacts))
}
