//! Memories: the episodic memories capture jobs derive from events, and reads of every memory
//! (episodic and semantic) for the API.
//!
//! Invariants:
//! - An event has at most one episodic memory, and its id is derived from the event's id
//!   (`episodic_id`): a job re-run after a crash finds it (`ON CONFLICT DO NOTHING`) instead of making a
//!   second one, and its search document is replaced rather than duplicated.
//! - Every read is scoped by tenant.

use super::sql::{params, OptionalExtension, Row};
use super::Conn;
use crate::domain::{MemoryKind, MemoryStatus};
use crate::error::Result;
use crate::store::events::{list_page, Order};
use serde_json::json;

/// The id of the episodic memory of event `evt_X`: `mem_X`.
pub fn episodic_id(event_id: &str) -> String {
    format!("mem_{}", event_id.strip_prefix("evt_").unwrap_or(event_id))
}

/// `episodic_id` in SQL, of the event row aliased `e`.
pub(super) const EPISODIC_ID_OF_EVENT: &str =
    "('mem_' || CASE WHEN substr(e.id, 1, 4) = 'evt_' THEN substr(e.id, 5) ELSE e.id END)";

/// The ids of a session's memories (session as `{}`, tenant as `?1`): episodic ones through the
/// session's processed events, semantic ones through `memories_session`.
fn session_memory_ids() -> String {
    format!(
        "SELECT {EPISODIC_ID_OF_EVENT} FROM events AS e INDEXED BY events_session
          WHERE e.tenant_id = ?1 AND e.session_id = {{}} AND e.processed_at IS NOT NULL
         UNION ALL
         SELECT s.id FROM memories AS s INDEXED BY memories_session
          WHERE s.tenant_id = ?1 AND s.kind = 'semantic' AND s.session_id = {{}}"
    )
}

/// An episodic memory about to be stored.
#[derive(Clone, Debug)]
pub struct NewEpisodic {
    pub id: String,
    pub agent_id: Option<String>,
    pub session_id: String,
    pub event_id: String,
    pub event_type: String,
    pub content: String,
    pub salience: f64,
    pub created_at: String,
}

/// Confidence of an episodic memory: it records what was observed, not an inference.
pub const EPISODIC_CONFIDENCE: f64 = 1.0;

/// An episodic memory with its columns and search document built, ready for `insert_episodic`
/// (built off the writer thread so the writer only binds and executes).
#[derive(Clone, Debug)]
pub struct PreparedEpisodic {
    pub memory: NewEpisodic,
    tags: String,
    metadata: String,
    sources: String,
    /// Its search document: the same one `MemoryRow::search_doc` gives for the stored row
    /// (an `Option` so the writer can move it to the indexer instead of copying it).
    pub doc: Option<crate::index_doc::SearchDoc>,
}

impl NewEpisodic {
    pub fn prepare(self, tenant_id: &str) -> PreparedEpisodic {
        let doc = crate::index_doc::memory_doc(
            tenant_id,
            &self.id,
            "episodic",
            self.agent_id.as_deref(),
            Some(&self.session_id),
            vec![self.event_type.clone()],
            &self.content,
            &self.created_at,
            EPISODIC_CONFIDENCE,
            self.salience,
        );
        PreparedEpisodic {
            tags: json!([self.event_type]).to_string(),
            metadata: json!({"eventType": self.event_type}).to_string(),
            sources: json!([self.event_id]).to_string(),
            memory: self,
            doc: Some(doc),
        }
    }
}

/// Stores an episodic memory; `false` when it exists already.
pub fn insert_episodic(conn: &Conn, tenant_id: &str, p: &PreparedEpisodic) -> Result<bool> {
    let mut stmt = conn.prepare_cached(
        "INSERT INTO memories(id, tenant_id, kind, agent_id, session_id, event_id, content,
                              tags_json, confidence, salience, metadata, source_events_json,
                              created_at, updated_at)
         VALUES (?1, ?2, 'episodic', ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?12)
         ON CONFLICT DO NOTHING",
    )?;
    let m = &p.memory;
    Ok(stmt.execute(params![
        m.id,
        tenant_id,
        m.agent_id,
        m.session_id,
        m.event_id,
        m.content,
        p.tags,
        EPISODIC_CONFIDENCE,
        m.salience,
        p.metadata,
        p.sources,
        m.created_at,
    ])? == 1)
}

/// A stored memory.
#[derive(Clone, Debug)]
pub struct MemoryRow {
    pub seq: i64,
    pub id: String,
    pub tenant_id: String,
    pub kind: MemoryKind,
    pub agent_id: Option<String>,
    pub session_id: Option<String>,
    pub event_id: Option<String>,
    pub content: String,
    pub tags: Vec<String>,
    pub confidence: f64,
    pub salience: f64,
    pub status: MemoryStatus,
    pub metadata: Option<String>,
    pub source_events: Vec<String>,
    pub created_at: String,
    pub updated_at: String,
}

const COLUMNS: &str = "seq, id, tenant_id, kind, agent_id, session_id, event_id, content, \
                       tags_json, confidence, salience, status, metadata, source_events_json, \
                       created_at, updated_at";

fn from_row(r: &Row<'_>) -> super::sql::Result<MemoryRow> {
    let tags: String = r.get(8)?;
    let sources: String = r.get(13)?;
    let id: String = r.get(1)?;
    Ok(MemoryRow {
        kind: super::spelled(r, 3, "memories", &id)?,
        status: super::spelled(r, 11, "memories", &id)?,
        seq: r.get(0)?,
        id,
        tenant_id: r.get(2)?,
        agent_id: r.get(4)?,
        session_id: r.get(5)?,
        event_id: r.get(6)?,
        content: r.get(7)?,
        tags: serde_json::from_str(&tags).unwrap_or_default(),
        confidence: r.get(9)?,
        salience: r.get(10)?,
        metadata: r.get(12)?,
        source_events: serde_json::from_str(&sources).unwrap_or_default(),
        created_at: r.get(14)?,
        updated_at: r.get(15)?,
    })
}

impl MemoryRow {
    /// The search document of this memory (the one place rows become documents).
    pub fn search_doc(&self) -> crate::index_doc::SearchDoc {
        crate::index_doc::memory_doc(
            &self.tenant_id,
            &self.id,
            self.kind.as_str(),
            self.agent_id.as_deref(),
            self.session_id.as_deref(),
            self.tags.clone(),
            &self.content,
            &self.created_at,
            self.confidence,
            self.salience,
        )
    }
}

pub fn get(conn: &Conn, tenant_id: &str, id: &str) -> Result<Option<MemoryRow>> {
    let mut stmt = conn.prepare_cached(&format!(
        "SELECT {COLUMNS} FROM memories WHERE id = ?1 AND tenant_id = ?2"
    ))?;
    Ok(stmt.query_row([id, tenant_id], from_row).optional()?)
}

/// The episodic memory of an event, if it has one (found by its derived id).
pub fn by_event(conn: &Conn, tenant_id: &str, event_id: &str) -> Result<Option<MemoryRow>> {
    get(conn, tenant_id, &episodic_id(event_id))
}

/// Filters of `GET /v1/memories`.
#[derive(Clone, Debug)]
pub struct Filter {
    pub agent_id: Option<String>,
    pub kind: Option<String>,
    pub session_id: Option<String>,
    pub limit: usize,
    pub cursor: Option<String>,
    pub order: Order,
}

/// A page of a tenant's memories and whether more follow.
pub fn list(conn: &Conn, tenant_id: &str, f: &Filter) -> Result<(Vec<MemoryRow>, bool)> {
    list_page(
        conn,
        "memories",
        COLUMNS,
        tenant_id,
        &[
            ("kind", f.kind.as_deref()),
            ("agent_id", f.agent_id.as_deref()),
            (
                &format!("id IN ({})", session_memory_ids()),
                f.session_id.as_deref(),
            ),
        ],
        (f.cursor.as_deref(), f.order, f.limit),
        from_row,
    )
}

/// Deletes a tenant's session's memories; returns how many. Call it before the session's events
/// are deleted: episodic memories are found through them.
pub fn delete_session(conn: &Conn, tenant_id: &str, session_id: &str) -> Result<usize> {
    let ids = session_memory_ids().replace("{}", "?2");
    Ok(conn.execute(
        &format!("DELETE FROM memories WHERE tenant_id = ?1 AND id IN ({ids})"),
        [tenant_id, session_id],
    )?)
}

/// Number of a tenant's memories (for metrics totals).
pub fn count(conn: &Conn, tenant_id: &str) -> Result<i64> {
    Ok(conn
        .prepare_cached("SELECT count(*) FROM memories WHERE tenant_id = ?1")?
        .query_row([tenant_id], |r| r.get(0))?)
}

/// Test data: stores `(session, event type, text)` as processed events, each with its episodic
/// memory, as capture processing leaves them; returns the memory ids in order.
#[cfg(test)]
pub(crate) fn processed_turns(
    conn: &Conn,
    tenant_id: &str,
    rows: Vec<(String, &'static str, String)>,
) -> Result<Vec<String>> {
    use super::events;
    let new_events = rows
        .iter()
        .map(|(session, event_type, text)| events::NewEvent {
            event_type,
            session_id: session.clone(),
            agent_id: None,
            payload: serde_json::json!({ "content": text }).to_string(),
            metadata: None,
            idempotency_key: None,
            base_salience: 0.5,
            signature: 0,
        })
        .collect();
    let at = crate::time::now();
    let stored = events::insert_batch(conn, tenant_id, "live", new_events, 0, at)?.stored;
    events::mark_processed(conn, tenant_id, 0, i64::MAX, &crate::time::rfc3339(at))?;
    let mut ids = Vec::new();
    for ((session, event_type, text), s) in rows.into_iter().zip(stored) {
        let id = episodic_id(&s.event_id);
        let m = NewEpisodic {
            id: id.clone(),
            agent_id: None,
            session_id: session,
            event_id: s.event_id,
            event_type: event_type.to_string(),
            content: text,
            salience: 0.5,
            created_at: format!("2026-01-01T00:00:{:02}.000Z", ids.len()),
        }
        .prepare(tenant_id);
        insert_episodic(conn, tenant_id, &m)?;
        ids.push(id);
    }
    Ok(ids)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::compiler::facts::FactDraft;
    use crate::store::{semantic, tenants, Db};

    fn fact(key: &str, session: &str) -> FactDraft {
        FactDraft {
            key: key.into(),
            value: "v".into(),
            text: format!("{key} is v"),
            mentions: 1,
            confidence: 0.8,
            session_id: session.into(),
            agent_id: None,
            source_events: Vec::new(),
            superseded_values: Vec::new(),
        }
    }

    fn session_list(c: &Conn, tenant: &str, session: &str) -> Vec<(String, MemoryKind)> {
        let f = Filter {
            agent_id: None,
            kind: None,
            session_id: Some(session.into()),
            limit: 100,
            cursor: None,
            order: Order::Asc,
        };
        list(c, tenant, &f)
            .unwrap()
            .0
            .into_iter()
            .map(|m| (m.id, m.kind))
            .collect()
    }

    /// A session's memories are its episodic ones (found through its events) and its semantic
    /// ones (through the session index), in order; another session's or tenant's are not; forgetting
    /// the session deletes exactly those.
    #[test]
    fn a_sessions_memories_are_listed_and_deleted_through_its_events() {
        let dir = tempfile::tempdir().unwrap();
        let db = Db::open(&dir.path().join("engram.db"), 2).unwrap();
        db.write_blocking(|c| {
            let turns = |s: &str| {
                vec![
                    (s.to_string(), "message", format!("{s} first")),
                    ("other".to_string(), "message", format!("{s} elsewhere")),
                    (s.to_string(), "tool_call", format!("{s} second")),
                ]
            };
            let t = tenants::create(c, "t", crate::plans::Plan::Pro)?.id;
            let u = tenants::create(c, "u", crate::plans::Plan::Pro)?.id;
            let ids = processed_turns(c, &t, turns("s1"))?;
            let theirs = processed_turns(c, &u, turns("s1"))?;
            let mut ops = Vec::new();
            let now = crate::time::rfc3339(crate::time::now());
            semantic::apply(c, &t, None, "k1", &fact("k1", "s1"), &now, &mut ops)?;
            semantic::apply(c, &t, None, "k2", &fact("k2", "other"), &now, &mut ops)?;
            semantic::apply(c, &u, None, "k1", &fact("k1", "s1"), &now, &mut ops)?;

            let listed = session_list(c, &t, "s1");
            let kinds: Vec<MemoryKind> = listed.iter().map(|(_, k)| *k).collect();
            assert_eq!(
                kinds,
                vec![
                    MemoryKind::Episodic,
                    MemoryKind::Episodic,
                    MemoryKind::Semantic
                ]
            );
            assert_eq!(listed[0].0, ids[0]);
            assert_eq!(listed[1].0, ids[2]);

            assert_eq!(delete_session(c, &t, "s1")?, 3);
            assert!(session_list(c, &t, "s1").is_empty());
            assert_eq!(
                session_list(c, &t, "other").len(),
                2,
                "the other session stays"
            );
            let kept = session_list(c, &u, "s1");
            assert_eq!(kept.len(), 3, "another tenant's session stays");
            assert_eq!(kept[0].0, theirs[0]);
            Ok(())
        })
        .unwrap();
    }
}
