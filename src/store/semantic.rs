//! Semantic memories: facts and preferences the compiler extracted, stored in `memories` with
//! kind `semantic` and indexed in the `facts` section.
//!
//! Invariants:
//! - Identity is (tenant, `signature`) among active semantic memories: the fact's key, prefixed
//!   with `agent:<id>|` when compiled for one agent.
//! - The same value again updates the row in place (mentions, confidence, sources) or leaves it
//!   alone; another value for the key contradicts it: the old row becomes `superseded` (its
//!   metadata names the successor) and leaves the index, the new row is inserted and indexed.

use super::sql::{params, OptionalExtension};
use super::Conn;
use crate::compiler::facts::FactDraft;
use crate::error::Result;
use crate::index_doc::IndexOp;
use crate::store::memories::{self, MemoryRow};
use serde_json::{json, Value};

/// What applying a fact did.
pub enum Applied {
    Created,
    Updated,
    Unchanged,
    Superseded,
}

fn find(conn: &Conn, tenant_id: &str, signature: &str) -> Result<Option<String>> {
    Ok(conn
        .prepare_cached(
            "SELECT id FROM memories WHERE tenant_id = ?1 AND kind = 'semantic'
             AND signature = ?2 AND status = 'active' ORDER BY seq DESC LIMIT 1",
        )?
        .query_row([tenant_id, signature], |r| r.get(0))
        .optional()?)
}

fn metadata_of(row: &MemoryRow) -> Value {
    row.metadata
        .as_deref()
        .and_then(|m| serde_json::from_str(m).ok())
        .unwrap_or(Value::Null)
}

/// Stores a fact under `signature`; index changes are appended to `ops`.
pub fn apply(
    conn: &Conn,
    tenant_id: &str,
    agent_id: Option<&str>,
    signature: &str,
    f: &FactDraft,
    now: &str,
    ops: &mut Vec<IndexOp>,
) -> Result<Applied> {
    let sources = serde_json::to_string(&f.source_events)?;
    let meta = |supersedes: Option<&str>| {
        json!({
            "key": f.key,
            "value": f.value,
            "mentions": f.mentions,
            "compiledBy": crate::compiler::COMPILED_BY,
            "supersedes": supersedes,
        })
    };
    let agent = agent_id.or(f.agent_id.as_deref());
    let existing = match find(conn, tenant_id, signature)? {
        Some(id) => memories::get(conn, tenant_id, &id)?,
        None => None,
    };
    let insert = |supersedes: Option<&str>| -> Result<String> {
        let id = crate::ids::new("mem");
        conn.prepare_cached(
            "INSERT INTO memories(id, tenant_id, kind, agent_id, session_id, content, tags_json,
                 signature, confidence, salience, status, metadata, source_events_json,
                 created_at, updated_at)
             VALUES (?1, ?2, 'semantic', ?3, ?4, ?5, '[\"fact\"]', ?6, ?7, ?7, 'active', ?8, ?9, ?10, ?10)",
        )?
        .execute(params![
            id,
            tenant_id,
            agent,
            f.session_id,
            f.text,
            signature,
            f.confidence,
            meta(supersedes).to_string(),
            sources,
            now
        ])?;
        Ok(id)
    };
    let doc = |id: &str| -> Result<IndexOp> {
        let row = memories::get(conn, tenant_id, id)?.expect("stored memory");
        Ok(IndexOp::Upsert(Box::new(row.search_doc())))
    };
    let Some(old) = existing else {
        let id = insert(None)?;
        ops.push(doc(&id)?);
        return Ok(Applied::Created);
    };
    let old_meta = metadata_of(&old);
    if old_meta["value"] != json!(f.value) {
        let id = insert(Some(&old.id))?;
        let mut m = old_meta;
        m["supersededBy"] = json!(id);
        conn.prepare_cached(
            "UPDATE memories SET status = 'superseded', metadata = ?3, updated_at = ?4
             WHERE tenant_id = ?1 AND id = ?2",
        )?
        .execute(params![tenant_id, old.id, m.to_string(), now])?;
        ops.push(IndexOp::Delete {
            doc_id: old.id.clone(),
        });
        ops.push(doc(&id)?);
        return Ok(Applied::Superseded);
    }
    if old.content == f.text
        && old.confidence == f.confidence
        && old_meta["mentions"] == json!(f.mentions)
        && old.source_events == f.source_events
    {
        return Ok(Applied::Unchanged);
    }
    let mut m = meta(old_meta["supersedes"].as_str());
    m["supersedes"] = old_meta["supersedes"].clone();
    conn.prepare_cached(
        "UPDATE memories SET content = ?3, confidence = ?4, salience = ?4, metadata = ?5,
             source_events_json = ?6, session_id = ?7, updated_at = ?8
         WHERE tenant_id = ?1 AND id = ?2",
    )?
    .execute(params![
        tenant_id,
        old.id,
        f.text,
        f.confidence,
        m.to_string(),
        sources,
        f.session_id,
        now
    ])?;
    ops.push(doc(&old.id)?);
    Ok(Applied::Updated)
}
