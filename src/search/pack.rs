//! Context packs: the ranked candidates of a search, packed greedily into a token budget.
//!
//! Invariants:
//! - `used ≤ limit`, always: an entry is included only if its whole token count (cl100k_base,
//!   counted when it was indexed, of exactly the text shown) fits in what is left; an entry that
//!   does not fit is dropped and the next, smaller ones are still considered.
//! - Only what SQLite says is current is shown: every included entry is re-read by (tenant, id)
//!   and dropped from the candidates when its row is gone, not `active`, or now below
//!   `minConfidence` — so a deprecated or superseded artifact leaves packs the moment its status
//!   changes, before the index commit catches up. The packing is then redone without it.
//! - Deterministic: candidates arrive in a total order (`query`), and packing is a pure function
//!   of that order and the budget.
//!
//! `source tokens` are the tokens of every candidate considered (included or dropped);
//! `compressionRatio = source tokens / used` (0 when nothing was packed).

use super::query::{self, Candidate, Spec};
use crate::app::AppState;
use crate::error::{Error, Result};
use rusqlite::OptionalExtension;
use serde_json::{json, Value};
use std::collections::HashSet;
use std::sync::Arc;
use tantivy::schema::Value as _;
use tantivy::TantivyDocument;

/// Re-validation rounds before the pack is settled with only validated entries.
const MAX_ROUNDS: usize = 4;

/// A synthesize request, after validation.
#[derive(Clone, Debug)]
pub struct SynthRequest {
    pub query: Option<String>,
    pub agent_id: Option<String>,
    pub session_id: Option<String>,
    pub tags: Vec<String>,
    /// Token budget, 1–128000.
    pub max_tokens: u32,
    pub min_confidence: f64,
    /// Allowed sections (empty = all).
    pub sections: Vec<String>,
    pub include_artifacts: bool,
    pub include_memories: bool,
}

impl Default for SynthRequest {
    fn default() -> Self {
        SynthRequest {
            query: None,
            agent_id: None,
            session_id: None,
            tags: Vec::new(),
            max_tokens: 4000,
            min_confidence: 0.0,
            sections: Vec::new(),
            include_artifacts: true,
            include_memories: true,
        }
    }
}

/// One packed item.
#[derive(Clone, Debug)]
pub struct PackEntry {
    pub section: &'static str,
    /// `memory` or `artifact`.
    pub source_type: &'static str,
    pub source_id: String,
    pub content: String,
    pub confidence: f64,
    pub tokens: u64,
    /// `artifactType` or `memoryType`, and the evidence behind it.
    pub detail_type: String,
    pub evidence_count: i64,
    pub event_id: Option<String>,
    pub session_id: Option<String>,
}

#[derive(Clone, Debug)]
pub struct Pack {
    pub pack_id: String,
    pub query: Option<String>,
    pub entries: Vec<PackEntry>,
    pub limit: u32,
    pub used: u64,
    pub source_tokens: u64,
    pub dropped: usize,
}

impl Pack {
    pub fn compression_ratio(&self) -> f64 {
        if self.used == 0 {
            return 0.0;
        }
        (self.source_tokens as f64 / self.used as f64 * 100.0).round() / 100.0
    }

    /// The memory-family `data` object (API.md §2, the superset of documented and SDK fields).
    pub fn to_json(&self, include_provenance: bool) -> Value {
        let entries: Vec<Value> = self
            .entries
            .iter()
            .map(|e| {
                let provenance = if include_provenance {
                    let mut p = json!({"sourceType": e.source_type, "sourceId": e.source_id,
                                       "evidenceCount": e.evidence_count});
                    let key = if e.source_type == "artifact" {
                        "artifactType"
                    } else {
                        "memoryType"
                    };
                    p[key] = json!(e.detail_type);
                    if let Some(ev) = &e.event_id {
                        p["eventId"] = json!(ev);
                    }
                    if let Some(s) = &e.session_id {
                        p["sessionId"] = json!(s);
                    }
                    vec![p]
                } else {
                    Vec::new()
                };
                json!({"section": e.section, "content": e.content, "confidence": e.confidence,
                       "tokens": e.tokens, "provenance": provenance})
            })
            .collect();
        let sections: Vec<Value> = self
            .entries
            .iter()
            .map(|e| {
                json!({"type": e.source_type, "content": e.content, "source": e.source_id,
                       "confidence": e.confidence, "section": e.section, "tokens": e.tokens})
            })
            .collect();
        json!({
            "packId": self.pack_id,
            "query": self.query,
            "entries": entries,
            "sections": sections,
            "budget": {"limit": self.limit, "used": self.used,
                       "compressionRatio": self.compression_ratio(),
                       "entriesIncluded": self.entries.len(), "entriesDropped": self.dropped},
            "totalTokens": self.used,
            "contextPack": {"entries": self.entries.len(), "estimatedTokens": self.used,
                            "maxTokens": self.limit},
        })
    }
}

/// How many candidates a budget needs considered (entries are rarely under ~8 tokens).
fn candidate_limit(max_tokens: u32) -> usize {
    (max_tokens as usize / 8).clamp(64, 5_000)
}

/// Greedy packing of `cands` (in rank order) minus `excluded`: (included indexes, dropped count,
/// source tokens, used tokens).
fn pack_indexes(
    cands: &[Candidate],
    limit: u64,
    excluded: &HashSet<usize>,
) -> (Vec<usize>, usize, u64, u64) {
    let (mut included, mut dropped, mut source, mut used) = (Vec::new(), 0usize, 0u64, 0u64);
    for (i, c) in cands.iter().enumerate() {
        if excluded.contains(&i) || c.tokens == 0 {
            continue;
        }
        source += c.tokens;
        if used + c.tokens <= limit {
            used += c.tokens;
            included.push(i);
        } else {
            dropped += 1;
        }
    }
    (included, dropped, source, used)
}

/// A hit as SQLite has it now: confidence, artifact type or memory kind, evidence count, event
/// and session of a memory.
type CurrentRow = (f64, String, i64, Option<String>, Option<String>);

/// What SQLite says of a hit now (`None`: gone, inactive or below the confidence floor).
fn current_row(
    conn: &rusqlite::Connection,
    tenant_id: &str,
    doc_id: &str,
    min_confidence: f64,
) -> Result<Option<CurrentRow>> {
    let row = if doc_id.starts_with("art_") {
        conn.prepare_cached(
            "SELECT status, confidence, type, evidence_count FROM artifacts
             WHERE tenant_id = ?1 AND id = ?2",
        )?
        .query_row([tenant_id, doc_id], |r| {
            Ok((
                r.get::<_, String>(0)?,
                r.get::<_, f64>(1)?,
                r.get::<_, String>(2)?,
                r.get::<_, i64>(3)?,
                None,
                None,
            ))
        })
        .optional()?
    } else {
        conn.prepare_cached(
            "SELECT status, confidence, kind, json_array_length(source_events_json), event_id,
                    session_id
             FROM memories WHERE tenant_id = ?1 AND id = ?2",
        )?
        .query_row([tenant_id, doc_id], |r| {
            Ok((
                r.get::<_, String>(0)?,
                r.get::<_, f64>(1)?,
                r.get::<_, String>(2)?,
                r.get::<_, Option<i64>>(3)?.unwrap_or(0).max(1),
                r.get::<_, Option<String>>(4)?,
                r.get::<_, Option<String>>(5)?,
            ))
        })
        .optional()?
    };
    Ok(row.and_then(|(status, conf, t, ev, event, session)| {
        (status == "active" && conf >= min_confidence).then_some((conf, t, ev, event, session))
    }))
}

/// Searches, ranks and packs (blocking: SQLite and tantivy calls).
pub fn synthesize_blocking(state: &AppState, tenant_id: &str, req: &SynthRequest) -> Result<Pack> {
    let spec = Spec {
        tenant_id: tenant_id.to_string(),
        text: req.query.clone(),
        agent_id: req.agent_id.clone(),
        session_id: req.session_id.clone(),
        tags: req.tags.clone(),
        sections: req.sections.clone(),
        include_memories: req.include_memories,
        include_artifacts: req.include_artifacts,
        min_confidence: req.min_confidence,
    };
    let mut pack = Pack {
        pack_id: crate::ids::new("pack"),
        query: req.query.clone(),
        entries: Vec::new(),
        limit: req.max_tokens,
        used: 0,
        source_tokens: 0,
        dropped: 0,
    };
    let Some((searcher, tenant_index)) = state.search.searcher(tenant_id) else {
        return Ok(pack);
    };
    let fields = &state.search.fields;
    let cands = query::search(
        &searcher,
        &tenant_index.index,
        fields,
        &spec,
        candidate_limit(req.max_tokens),
    )
    .map_err(|e| Error::Internal(format!("search failed: {e}")))?;

    let mut excluded: HashSet<usize> = HashSet::new();
    let mut settled: std::collections::HashMap<usize, PackEntry> = Default::default();
    let limit = req.max_tokens as u64;
    let tenant = tenant_id.to_string();
    for round in 0..=MAX_ROUNDS {
        let (included, dropped, source, used) = pack_indexes(&cands, limit, &excluded);
        let fresh: Vec<usize> = included
            .iter()
            .copied()
            .filter(|i| !settled.contains_key(i))
            .collect();
        if fresh.is_empty() || round == MAX_ROUNDS {
            // Last round: keep only what was validated (never more than the budget: a subset).
            let mut used_final = 0u64;
            for i in &included {
                if let Some(e) = settled.remove(i) {
                    used_final += e.tokens;
                    pack.entries.push(e);
                }
            }
            pack.used = used_final;
            pack.dropped = dropped;
            pack.source_tokens = source;
            debug_assert!(fresh.is_empty() || used_final <= used);
            break;
        }
        // Load the new entries' text from the index and their current state from SQLite.
        let mut docs = Vec::with_capacity(fresh.len());
        for &i in &fresh {
            let d: TantivyDocument = searcher
                .doc(cands[i].addr)
                .map_err(|e| Error::Internal(format!("stored document: {e}")))?;
            let text = |f| {
                d.get_first(f)
                    .and_then(|v| v.as_str())
                    .unwrap_or_default()
                    .to_string()
            };
            docs.push((i, text(fields.doc_id), text(fields.text)));
        }
        let min_conf = req.min_confidence;
        let t = tenant.clone();
        let ids: Vec<String> = docs.iter().map(|(_, id, _)| id.clone()).collect();
        let rows = state.db.read_blocking(move |c| {
            ids.iter()
                .map(|id| current_row(c, &t, id, min_conf))
                .collect::<Result<Vec<_>>>()
        })?;
        for ((i, doc_id, content), row) in docs.into_iter().zip(rows) {
            match row {
                None => {
                    excluded.insert(i);
                }
                Some((confidence, detail_type, evidence_count, event_id, session_id)) => {
                    let c = &cands[i];
                    let section = super::schema::SECTIONS
                        .get(c.section_no as usize)
                        .copied()
                        .unwrap_or("context");
                    settled.insert(
                        i,
                        PackEntry {
                            section,
                            source_type: if doc_id.starts_with("art_") {
                                "artifact"
                            } else {
                                "memory"
                            },
                            source_id: doc_id,
                            content,
                            confidence: (confidence * 1000.0).round() / 1000.0,
                            tokens: c.tokens,
                            detail_type,
                            evidence_count,
                            event_id,
                            session_id,
                        },
                    );
                }
            }
        }
    }
    Ok(pack)
}

/// Builds a context pack for a tenant: bounded search concurrency (a semaphore of
/// `config.search_concurrency` in front of `spawn_blocking`), then `synthesize_blocking`. Usable
/// by any caller that needs memory for a prompt (e.g. agent invocation with `agent_id` set).
/// Counts nothing: the HTTP handler records usage.
pub async fn synthesize_pack(
    state: &Arc<AppState>,
    tenant_id: &str,
    req: SynthRequest,
) -> Result<Pack> {
    let permits = state.search.permits(state.config.search_concurrency);
    let _permit = permits
        .acquire_owned()
        .await
        .map_err(|_| Error::Unavailable("search is shutting down".into()))?;
    let state = state.clone();
    let tenant = tenant_id.to_string();
    tokio::task::spawn_blocking(move || synthesize_blocking(&state, &tenant, &req))
        .await
        .map_err(Error::internal)?
}
