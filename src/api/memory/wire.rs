//! The memory family's record shapes (docs/api.md "Memory family"): an event, a memory and an
//! artifact as the routes answer them. The store hands over rows; these types are their wire form.

use crate::domain::ArtifactStatus;
use crate::store::artifacts::ArtifactRow;
use crate::store::events::EventRow;
use crate::store::memories::MemoryRow;
use serde::Serialize;
use serde_json::Value;
use std::collections::BTreeMap;

/// A page of a cursor-paged listing (events, memories, the vault's audit): the rows under
/// `items` — and under the listing's own name (`events`, `memories`) where both SDKs read one or
/// the other —, `nextCursor` the last row's id when another page follows.
#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
pub struct CursorPage<'a, T: Serialize> {
    items: &'a [T],
    #[serde(flatten)]
    named: BTreeMap<&'static str, &'a [T]>,
    count: usize,
    limit: usize,
    has_more: bool,
    next_cursor: Option<&'a str>,
    pagination: Pagination<'a>,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct Pagination<'a> {
    has_more: bool,
    cursor: Option<&'a str>,
}

impl<'a, T: Serialize> CursorPage<'a, T> {
    pub fn new(
        items: &'a [T],
        name: Option<&'static str>,
        limit: usize,
        has_more: bool,
        next_cursor: Option<&'a str>,
    ) -> CursorPage<'a, T> {
        CursorPage {
            items,
            named: name.map(|n| (n, items)).into_iter().collect(),
            count: items.len(),
            limit,
            has_more,
            next_cursor,
            pagination: Pagination {
                has_more,
                cursor: next_cursor,
            },
        }
    }
}

/// A JSON column's text as a value (null when absent or unreadable).
fn parsed(text: Option<&str>) -> Value {
    text.and_then(|t| serde_json::from_str(t).ok())
        .unwrap_or(Value::Null)
}

/// An event (`GET /v1/events`, `GET /v1/events/{id}`).
#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
pub struct EventOut<'a> {
    id: &'a str,
    event_id: &'a str,
    #[serde(rename = "type")]
    event_type: &'static str,
    session_id: &'a str,
    agent_id: Option<&'a str>,
    payload: Value,
    metadata: Value,
    idempotency_key: Option<&'a str>,
    salience_score: f64,
    trace_id: &'a str,
    job_id: Option<&'a str>,
    mode: &'static str,
    status: &'static str,
    created_at: &'a str,
    processed_at: Option<&'a str>,
    learned_at: Option<&'a str>,
    /// The event's episodic memory: only on `GET /v1/events/{id}`.
    #[serde(skip_serializing_if = "Option::is_none")]
    memory_id: Option<Option<&'a str>>,
}

impl<'a> From<&'a EventRow> for EventOut<'a> {
    fn from(e: &'a EventRow) -> EventOut<'a> {
        EventOut {
            id: &e.id,
            event_id: &e.id,
            event_type: e.event_type.as_str(),
            session_id: &e.session_id,
            agent_id: e.agent_id.as_deref(),
            payload: parsed(Some(&e.payload)),
            metadata: parsed(e.metadata.as_deref()),
            idempotency_key: e.idempotency_key.as_deref(),
            salience_score: e.salience,
            trace_id: &e.trace_id,
            job_id: e.job_id.as_deref(),
            mode: e.mode.as_str(),
            status: if e.processed_at.is_some() {
                "processed"
            } else {
                "queued"
            },
            created_at: &e.created_at,
            processed_at: e.processed_at.as_deref(),
            learned_at: e.learned_at.as_deref(),
            memory_id: None,
        }
    }
}

impl<'a> EventOut<'a> {
    /// The event with its episodic memory's id (null when it has none yet).
    pub fn with_memory(e: &'a EventRow, memory_id: Option<&'a str>) -> EventOut<'a> {
        EventOut {
            memory_id: Some(memory_id),
            ..EventOut::from(e)
        }
    }
}

/// A memory (`GET /v1/memories`, `GET /v1/memories/{id}`).
#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
pub struct MemoryOut<'a> {
    id: &'a str,
    kind: &'static str,
    agent_id: Option<&'a str>,
    session_id: Option<&'a str>,
    event_id: Option<&'a str>,
    content: &'a str,
    tags: &'a [String],
    confidence: f64,
    salience: f64,
    status: &'static str,
    metadata: Value,
    source_events: &'a [String],
    created_at: &'a str,
    updated_at: &'a str,
}

impl<'a> From<&'a MemoryRow> for MemoryOut<'a> {
    fn from(m: &'a MemoryRow) -> MemoryOut<'a> {
        MemoryOut {
            id: &m.id,
            kind: m.kind.as_str(),
            agent_id: m.agent_id.as_deref(),
            session_id: m.session_id.as_deref(),
            event_id: m.event_id.as_deref(),
            content: &m.content,
            tags: &m.tags,
            confidence: m.confidence,
            salience: m.salience,
            status: m.status.as_str(),
            metadata: parsed(m.metadata.as_deref()),
            source_events: &m.source_events,
            created_at: &m.created_at,
            updated_at: &m.updated_at,
        }
    }
}

/// An artifact (docs/api.md "Memory family", ARTIFACT: documented and SDK field names side by
/// side).
#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ArtifactOut<'a> {
    id: &'a str,
    #[serde(rename = "type")]
    artifact_type: &'static str,
    title: &'a str,
    status: &'static str,
    is_active: bool,
    version: i64,
    confidence: f64,
    evidence_count: i64,
    token_count: i64,
    content: &'a Value,
    signature: &'a str,
    agent_id: Option<&'a str>,
    source_events: &'a [String],
    source_memories: &'a [String],
    metadata: &'a Value,
    superseded_by: Option<&'a str>,
    compiled_at: &'a str,
    created_at: &'a str,
    updated_at: &'a str,
}

impl<'a> From<&'a ArtifactRow> for ArtifactOut<'a> {
    fn from(a: &'a ArtifactRow) -> ArtifactOut<'a> {
        ArtifactOut {
            id: &a.id,
            artifact_type: a.artifact_type.as_str(),
            title: &a.title,
            status: a.status.as_str(),
            is_active: a.status == ArtifactStatus::Active,
            version: a.version,
            confidence: a.confidence,
            evidence_count: a.evidence_count,
            token_count: a.token_count,
            content: &a.content,
            signature: &a.signature,
            agent_id: a.agent_id.as_deref(),
            source_events: &a.source_events,
            source_memories: &a.source_memories,
            metadata: &a.metadata,
            superseded_by: a.superseded_by.as_deref(),
            compiled_at: &a.compiled_at,
            created_at: &a.created_at,
            updated_at: &a.updated_at,
        }
    }
}
