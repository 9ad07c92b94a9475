//! Artifacts: compiled knowledge (task schemas, failure playbooks, causal patterns, decision
//! policies), their versions and lifecycle.
//!
//! Invariants:
//! - Identity is (tenant, type, signature): at most one non-superseded row per identity (a unique
//!   index enforces it). Recompiling an identity updates that row (`version` + 1, the previous
//!   content kept in `artifact_versions`), leaves it alone when nothing changed, or — when the new
//!   evidence contradicts its verdict (another step order, another best recovery, another
//!   recommendation) — marks it `superseded` (with `superseded_by`) and inserts its successor.
//! - A `deprecated` row is still recompiled in place but stays deprecated until restored.
//! - Only `active` rows belong in the search index; functions here report which index changes a
//!   caller must submit after its transaction committed.
//! - Every function takes the tenant and touches only that tenant's rows.

use super::sql::{params, OptionalExtension, Row};
use super::Conn;
use crate::compiler::Draft;
use crate::domain::{ArtifactStatus, ArtifactType};
use crate::error::Result;
use crate::index_doc::{self as docs, IndexOp};
use crate::store::memories::episodic_id;
use serde_json::{json, Value};

/// A stored artifact.
#[derive(Clone, Debug)]
pub struct ArtifactRow {
    pub id: String,
    pub tenant_id: String,
    pub artifact_type: ArtifactType,
    pub signature: String,
    pub agent_id: Option<String>,
    pub title: String,
    pub status: ArtifactStatus,
    pub version: i64,
    pub confidence: f64,
    pub evidence_count: i64,
    pub token_count: i64,
    pub content: Value,
    pub source_events: Vec<String>,
    pub source_memories: Vec<String>,
    pub metadata: Value,
    pub superseded_by: Option<String>,
    pub compiled_at: String,
    pub created_at: String,
    pub updated_at: String,
}

const COLUMNS: &str =
    "id, tenant_id, type, signature, agent_id, title, status, version, confidence,
    evidence_count, token_count, content_json, source_events_json, source_memories_json,
    metadata_json, superseded_by, compiled_at, created_at, updated_at";

fn parse(s: String) -> Value {
    serde_json::from_str(&s).unwrap_or(Value::Null)
}

fn from_row(r: &Row<'_>) -> super::sql::Result<ArtifactRow> {
    let id: String = r.get(0)?;
    Ok(ArtifactRow {
        artifact_type: super::spelled(r, 2, "artifacts", &id)?,
        status: super::spelled(r, 6, "artifacts", &id)?,
        id,
        tenant_id: r.get(1)?,
        signature: r.get(3)?,
        agent_id: r.get(4)?,
        title: r.get(5)?,
        version: r.get(7)?,
        confidence: r.get(8)?,
        evidence_count: r.get(9)?,
        token_count: r.get(10)?,
        content: parse(r.get(11)?),
        source_events: serde_json::from_str(&r.get::<String>(12)?).unwrap_or_default(),
        source_memories: serde_json::from_str(&r.get::<String>(13)?).unwrap_or_default(),
        metadata: parse(r.get(14)?),
        superseded_by: r.get(15)?,
        compiled_at: r.get(16)?,
        created_at: r.get(17)?,
        updated_at: r.get(18)?,
    })
}

impl ArtifactRow {
    pub fn index_op(&self) -> IndexOp {
        IndexOp::Upsert(Box::new(docs::artifact_doc(
            &self.tenant_id,
            &self.id,
            self.artifact_type.as_str(),
            self.agent_id.as_deref(),
            &self.title,
            &self.content,
            &self.updated_at,
            self.confidence,
        )))
    }
}

/// Tokens of an artifact as a reader would get it (about four characters a token).
pub fn token_estimate(title: &str, content: &Value) -> i64 {
    let mut text = String::new();
    docs::json_text(content, &mut text);
    ((title.len() + text.len()) as i64 + 3) / 4
}

pub fn get(conn: &Conn, tenant_id: &str, id: &str) -> Result<Option<ArtifactRow>> {
    let mut stmt = conn.prepare_cached(&format!(
        "SELECT {COLUMNS} FROM artifacts WHERE tenant_id = ?1 AND id = ?2"
    ))?;
    Ok(stmt.query_row([tenant_id, id], from_row).optional()?)
}

/// The non-superseded row of an identity.
pub fn find(
    conn: &Conn,
    tenant_id: &str,
    artifact_type: &str,
    signature: &str,
) -> Result<Option<ArtifactRow>> {
    let mut stmt = conn.prepare_cached(&format!(
        "SELECT {COLUMNS} FROM artifacts
         WHERE tenant_id = ?1 AND type = ?2 AND signature = ?3 AND status != 'superseded'"
    ))?;
    Ok(stmt
        .query_row([tenant_id, artifact_type, signature], from_row)
        .optional()?)
}

/// List filters (validated by the caller).
#[derive(Clone, Debug, Default)]
pub struct Filter {
    pub artifact_type: Option<String>,
    pub status: Option<String>,
    /// `createdAt` `updatedAt` `confidence` `evidenceCount`.
    pub sort: String,
    pub desc: bool,
    pub limit: i64,
    pub offset: i64,
}

/// A page of artifacts and the total matching the filter.
pub fn list(conn: &Conn, tenant_id: &str, f: &Filter) -> Result<(Vec<ArtifactRow>, i64)> {
    let column = match f.sort.as_str() {
        "updatedAt" => "updated_at",
        "confidence" => "confidence",
        "evidenceCount" => "evidence_count",
        _ => "seq",
    };
    let dir = if f.desc { "DESC" } else { "ASC" };
    let filter = "tenant_id = ?1 AND (type = ?2 OR ?2 IS NULL) AND (status = ?3 OR ?3 IS NULL)";
    let total: i64 = conn
        .prepare_cached(&format!("SELECT count(*) FROM artifacts WHERE {filter}"))?
        .query_row(params![tenant_id, f.artifact_type, f.status], |r| r.get(0))?;
    // seq breaks ties so pages never overlap or skip.
    let mut stmt = conn.prepare_cached(&format!(
        "SELECT {COLUMNS} FROM artifacts WHERE {filter}
         ORDER BY {column} {dir}, seq {dir} LIMIT ?4 OFFSET ?5"
    ))?;
    let rows = stmt
        .query_map(
            params![tenant_id, f.artifact_type, f.status, f.limit, f.offset],
            from_row,
        )?
        .collect::<super::sql::Result<Vec<_>>>()?;
    Ok((rows, total))
}

/// Sets `deprecated` or `active`; returns the row after the change and the index change to make.
/// A superseded artifact cannot change status (`Err` names it).
pub fn set_status(
    conn: &Conn,
    tenant_id: &str,
    id: &str,
    status: ArtifactStatus,
    now: &str,
) -> Result<Option<(ArtifactRow, IndexOp)>> {
    let Some(row) = get(conn, tenant_id, id)? else {
        return Ok(None);
    };
    if row.status == ArtifactStatus::Superseded {
        return Err(crate::error::Error::Conflict(format!(
            "artifact {id} was superseded by {}; change that one instead",
            row.superseded_by.as_deref().unwrap_or("its successor")
        )));
    }
    if row.status != status {
        conn.prepare_cached(
            "UPDATE artifacts SET status = ?3, updated_at = ?4 WHERE tenant_id = ?1 AND id = ?2",
        )?
        .execute(params![tenant_id, id, status.as_str(), now])?;
    }
    let row = get(conn, tenant_id, id)?.expect("row just read");
    let op = if status == ArtifactStatus::Active {
        row.index_op()
    } else {
        IndexOp::Delete {
            doc_id: row.id.clone(),
        }
    };
    Ok(Some((row, op)))
}

/// What applying a draft did.
pub enum Applied {
    Created,
    Updated,
    Unchanged,
    /// The previous row was superseded by a new one.
    Superseded,
}

/// The part of an artifact's content that, when it changes, contradicts the old version.
fn verdict(artifact_type: &str, content: &Value) -> Value {
    match artifact_type {
        "task_schema" => content["steps"].clone(),
        "failure_playbook" => content["recoverySteps"][0]["action"].clone(),
        "decision_policy" => content["recommendation"].clone(),
        _ => Value::Null,
    }
}

/// Stores a draft under (tenant, type, `signature`), per the module's rules. Index changes are
/// appended to `ops`.
pub fn apply(
    conn: &Conn,
    tenant_id: &str,
    agent_id: Option<&str>,
    signature: &str,
    d: &Draft,
    now: &str,
    ops: &mut Vec<IndexOp>,
) -> Result<Applied> {
    let content_json = d.content.to_string();
    let sources = serde_json::to_string(&d.source_events)?;
    let memories: Vec<String> = d.source_events.iter().map(|e| episodic_id(e)).collect();
    let memories = serde_json::to_string(&memories)?;
    let tokens = token_estimate(&d.title, &d.content);
    let existing = find(conn, tenant_id, d.artifact_type, signature)?;
    let insert = |id: &str, version: i64, metadata: &Value| -> Result<()> {
        conn.prepare_cached(
            "INSERT INTO artifacts(id, tenant_id, type, signature, agent_id, title, status, version,
                 confidence, evidence_count, token_count, content_json, source_events_json,
                 source_memories_json, metadata_json, compiled_at, created_at, updated_at)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, 'active', ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14, ?15, ?15, ?15)",
        )?
        .execute(params![
            id,
            tenant_id,
            d.artifact_type,
            signature,
            agent_id,
            d.title,
            version,
            d.confidence,
            d.evidence_count as i64,
            tokens,
            content_json,
            sources,
            memories,
            metadata.to_string(),
            now
        ])?;
        Ok(())
    };
    let base_meta = json!({
        "compiledBy": crate::compiler::COMPILED_BY,
        "signature": signature,
    });
    let Some(old) = existing else {
        let id = crate::ids::new("art");
        insert(&id, 1, &base_meta)?;
        ops.push(get(conn, tenant_id, &id)?.expect("inserted").index_op());
        return Ok(Applied::Created);
    };
    // Compared as parsed from the same text on both sides, so float formatting cannot differ.
    if old.content == serde_json::from_str::<Value>(&content_json)?
        && old.confidence == d.confidence
        && old.evidence_count == d.evidence_count as i64
        && old.title == d.title
        && old.source_events == d.source_events
    {
        return Ok(Applied::Unchanged);
    }
    let contradicts = old.status == ArtifactStatus::Active
        && verdict(d.artifact_type, &old.content) != verdict(d.artifact_type, &d.content);
    if contradicts {
        let id = crate::ids::new("art");
        conn.prepare_cached(
            "UPDATE artifacts SET status = 'superseded', superseded_by = ?3, updated_at = ?4
             WHERE tenant_id = ?1 AND id = ?2",
        )?
        .execute(params![tenant_id, old.id, id, now])?;
        let mut meta = base_meta;
        meta["supersedes"] = json!(old.id);
        insert(&id, old.version + 1, &meta)?;
        ops.push(IndexOp::Delete {
            doc_id: old.id.clone(),
        });
        ops.push(get(conn, tenant_id, &id)?.expect("inserted").index_op());
        return Ok(Applied::Superseded);
    }
    conn.prepare_cached(
        "INSERT INTO artifact_versions(tenant_id, artifact_id, version, confidence,
             evidence_count, content_json, created_at) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)
         ON CONFLICT (tenant_id, artifact_id, version) DO UPDATE SET
             confidence = excluded.confidence, evidence_count = excluded.evidence_count,
             content_json = excluded.content_json, created_at = excluded.created_at",
    )?
    .execute(params![
        tenant_id,
        old.id,
        old.version,
        old.confidence,
        old.evidence_count,
        old.content.to_string(),
        old.updated_at
    ])?;
    conn.prepare_cached(
        "UPDATE artifacts SET title = ?3, version = version + 1, confidence = ?4,
             evidence_count = ?5, token_count = ?6, content_json = ?7, source_events_json = ?8,
             source_memories_json = ?9, compiled_at = ?10, updated_at = ?10
         WHERE tenant_id = ?1 AND id = ?2",
    )?
    .execute(params![
        tenant_id,
        old.id,
        d.title,
        d.confidence,
        d.evidence_count as i64,
        tokens,
        content_json,
        sources,
        memories,
        now
    ])?;
    if old.status == ArtifactStatus::Active {
        ops.push(get(conn, tenant_id, &old.id)?.expect("updated").index_op());
    }
    Ok(Applied::Updated)
}

/// Supersedes the active artifacts of `artifact_type` named under a task statement that learn
/// now merges into another (one task said several ways is one task): each whose signature is
/// `from` (`exact`) or starts with it is superseded by the non-superseded artifact whose
/// signature has `to` in its place, when that one exists. Returns how many were superseded.
#[allow(clippy::too_many_arguments)]
pub fn supersede_renamed(
    conn: &Conn,
    tenant_id: &str,
    artifact_type: &str,
    (from, to): (&str, &str),
    exact: bool,
    now: &str,
    ops: &mut Vec<IndexOp>,
) -> Result<usize> {
    let mut stmt = conn.prepare_cached(
        "SELECT id, signature FROM artifacts
         WHERE tenant_id = ?1 AND type = ?2 AND status = 'active'
           AND substr(signature, 1, length(?3)) = ?3",
    )?;
    let rows = stmt
        .query_map(params![tenant_id, artifact_type, from], |r| {
            Ok((r.get::<String>(0)?, r.get::<String>(1)?))
        })?
        .collect::<super::sql::Result<Vec<_>>>()?;
    let mut n = 0;
    for (id, sig) in rows {
        if exact && sig != from {
            continue;
        }
        let renamed = format!("{to}{}", &sig[from.len()..]);
        let Some(into) = find(conn, tenant_id, artifact_type, &renamed)? else {
            continue;
        };
        if into.id == id {
            continue;
        }
        conn.prepare_cached(
            "UPDATE artifacts SET status = 'superseded', superseded_by = ?3, updated_at = ?4
             WHERE tenant_id = ?1 AND id = ?2",
        )?
        .execute(params![tenant_id, id, into.id, now])?;
        ops.push(IndexOp::Delete { doc_id: id });
        n += 1;
    }
    Ok(n)
}

/// Deprecates the active artifacts of a scope (agent or tenant-wide) whose signatures are not in
/// `keep` — used after a session was forgotten and what remains no longer supports them.
pub fn deprecate_unsupported(
    conn: &Conn,
    tenant_id: &str,
    agent_id: Option<&str>,
    keep: &std::collections::HashSet<(String, String)>,
    now: &str,
    ops: &mut Vec<IndexOp>,
) -> Result<usize> {
    let mut stmt = conn.prepare_cached(
        "SELECT id, type, signature FROM artifacts
         WHERE tenant_id = ?1 AND status = 'active' AND agent_id IS NOT DISTINCT FROM ?2",
    )?;
    let rows = stmt
        .query_map(params![tenant_id, agent_id], |r| {
            Ok((
                r.get::<String>(0)?,
                r.get::<String>(1)?,
                r.get::<String>(2)?,
            ))
        })?
        .collect::<super::sql::Result<Vec<_>>>()?;
    let mut n = 0;
    for (id, t, sig) in rows {
        if keep.contains(&(t, sig)) {
            continue;
        }
        conn.prepare_cached(
            "UPDATE artifacts SET status = 'deprecated', updated_at = ?3
             WHERE tenant_id = ?1 AND id = ?2",
        )?
        .execute(params![tenant_id, id, now])?;
        ops.push(IndexOp::Delete { doc_id: id });
        n += 1;
    }
    Ok(n)
}

/// Active artifacts of a tenant (for metrics totals).
pub fn count_active(conn: &Conn, tenant_id: &str) -> Result<i64> {
    Ok(conn
        .prepare_cached(
            "SELECT count(*) FROM artifacts WHERE tenant_id = ?1 AND status = 'active'",
        )?
        .query_row([tenant_id], |r| r.get(0))?)
}

/// Artifacts of a tenant (for totals).
pub fn count(conn: &Conn, tenant_id: &str) -> Result<i64> {
    Ok(conn
        .prepare_cached("SELECT count(*) FROM artifacts WHERE tenant_id = ?1")?
        .query_row([tenant_id], |r| r.get(0))?)
}
