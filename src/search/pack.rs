//! Context packs: the ranked candidates of a search, packed greedily into a token budget.
//!
//! Invariants:
//! - `used ≤ limit`, always: an entry is included only if its whole token count (cl100k_base,
//!   counted when it was indexed, of exactly the text shown) fits in what is left; an entry that
//!   does not fit is dropped and the next, smaller ones are still considered.
//! - Only what SQLite says is current is shown: every included entry is re-read by (tenant, id)
//!   and dropped from the candidates when its row is gone, not `active`, or now below
//!   `minConfidence` — so a deprecated or superseded artifact leaves packs the moment its status
//!   changes, before the index commit catches up. Its text comes from that row too; when it is
//!   no longer the indexed text (hash differs) its tokens are counted again. The packing is then
//!   redone with what was learned, until it is stable.
//! - Deterministic: candidates arrive in a total order (`query`), and packing is a pure function
//!   of that order and the budget.
//!
//! Candidates considered: the best-ranked matches holding about 1.25 × the budget in tokens (or
//! all matches, if fewer). `source tokens` are the tokens of every candidate considered
//! (included or dropped); `compressionRatio = source tokens / used` (0 when nothing was packed).

use super::query::{self, Candidate, Spec};
use crate::app::AppState;
use crate::error::{Error, Result};
use serde_json::Value;
use std::collections::{HashMap, HashSet};
use std::sync::Arc;

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
}

/// Candidates a budget starts with (about what holds 1.25 × the budget in ~30-token entries;
/// `gather` grows it when they hold too few tokens) and at most gathers. Top-K cost grows with K
/// (block-WAND prunes less), but a second search costs more than a larger first one: measured on
/// the benchmark corpus (short memories), a start of budget / 40 needed a second round for most
/// requests.
fn first_limit(max_tokens: u32) -> usize {
    (max_tokens as usize / 25).clamp(10, MAX_CANDIDATES)
}
const MAX_CANDIDATES: usize = 5_000;

/// Ranked candidates holding at least 1.25 × the budget in tokens (or every match): a few rounds
/// of a growing top-K, so a small budget does not pay for collecting thousands of hits.
fn gather(
    searcher: &tantivy::Searcher,
    tenant: &super::TenantIndex,
    fields: &super::schema::Fields,
    spec: &Spec,
    max_tokens: u32,
) -> tantivy::Result<Vec<Candidate>> {
    let want = max_tokens as u64 * 5 / 4;
    let mut k = first_limit(max_tokens);
    for _ in 0..4 {
        let (cands, more) = query::search(searcher, tenant, fields, spec, k)?;
        let sum: u64 = cands.iter().map(|c| c.tokens).sum();
        if !more || sum >= want || k >= MAX_CANDIDATES {
            return Ok(cands);
        }
        let factor = (want as f64 / sum.max(1) as f64).ceil().clamp(2.0, 64.0);
        k = ((k as f64 * factor) as usize).min(MAX_CANDIDATES);
    }
    query::search(searcher, tenant, fields, spec, k).map(|(c, _)| c)
}

/// Greedy packing of the candidates (in rank order, with token counts `tokens`) minus
/// `excluded`: (included indexes, dropped count, source tokens, used tokens).
fn pack_indexes(
    tokens: &[u64],
    limit: u64,
    excluded: &HashSet<usize>,
) -> (Vec<usize>, usize, u64, u64) {
    let (mut included, mut dropped, mut source, mut used) = (Vec::new(), 0usize, 0u64, 0u64);
    for (i, &t) in tokens.iter().enumerate() {
        if excluded.contains(&i) || t == 0 {
            continue;
        }
        source += t;
        if used + t <= limit {
            used += t;
            included.push(i);
        } else {
            dropped += 1;
        }
    }
    (included, dropped, source, used)
}

/// A hit as SQLite has it now.
struct Current {
    confidence: f64,
    /// Artifact type or memory kind.
    detail_type: String,
    evidence_count: i64,
    event_id: Option<String>,
    session_id: Option<String>,
    /// The text shown: a memory's content, an artifact's readable rendering.
    content: String,
}

/// What SQLite says of hits now, in the order of `doc_ids` (`None`: gone, of another tenant,
/// inactive or below the confidence floor). Two statements (memories, artifacts) over a JSON
/// array of ids, in one read transaction when both run: measured, one statement per id spent most of its time
/// taking and releasing SQLite's shared lock. The ids drive the join (`CROSS JOIN` fixes the
/// loop order, `+tenant_id` keeps the planner off the tenant index, which would scan the tenant).
fn current_rows(
    conn: &rusqlite::Connection,
    tenant_id: &str,
    doc_ids: &[String],
    min_confidence: f64,
) -> Result<Vec<Option<Current>>> {
    let mut found: HashMap<String, (String, Current)> = HashMap::with_capacity(doc_ids.len());
    let (arts, mems): (Vec<&String>, Vec<&String>) =
        doc_ids.iter().partition(|id| id.starts_with("art_"));
    // One transaction (one snapshot) when both statements run; a lone statement is its own.
    let both = !arts.is_empty() && !mems.is_empty();
    if both {
        conn.execute_batch("BEGIN")?;
    }
    let result = (|| -> Result<()> {
        if !arts.is_empty() {
            let ids = serde_json::to_string(&arts).map_err(Error::internal)?;
            let mut stmt = conn.prepare_cached(
                "SELECT a.id, a.status, a.confidence, a.type, a.evidence_count, a.title,
                        a.content_json
                 FROM json_each(?1) AS j CROSS JOIN artifacts AS a ON a.id = j.value
                 WHERE +a.tenant_id = ?2",
            )?;
            let mut rows = stmt.query(rusqlite::params![ids, tenant_id])?;
            while let Some(r) = rows.next()? {
                let (kind, title, json): (String, String, String) =
                    (r.get(3)?, r.get(5)?, r.get(6)?);
                let content = serde_json::from_str(&json).unwrap_or(Value::Null);
                found.insert(
                    r.get(0)?,
                    (
                        r.get(1)?,
                        Current {
                            confidence: r.get(2)?,
                            content: super::docs::render_artifact(&kind, &title, &content),
                            detail_type: kind,
                            evidence_count: r.get(4)?,
                            event_id: None,
                            session_id: None,
                        },
                    ),
                );
            }
        }
        if !mems.is_empty() {
            let ids = serde_json::to_string(&mems).map_err(Error::internal)?;
            let mut stmt = conn.prepare_cached(
                "SELECT m.id, m.status, m.confidence, m.kind,
                        json_array_length(m.source_events_json), m.event_id, m.session_id, m.content
                 FROM json_each(?1) AS j CROSS JOIN memories AS m ON m.id = j.value
                 WHERE +m.tenant_id = ?2",
            )?;
            let mut rows = stmt.query(rusqlite::params![ids, tenant_id])?;
            while let Some(r) = rows.next()? {
                found.insert(
                    r.get(0)?,
                    (
                        r.get(1)?,
                        Current {
                            confidence: r.get(2)?,
                            detail_type: r.get(3)?,
                            evidence_count: r.get::<_, Option<i64>>(4)?.unwrap_or(0).max(1),
                            event_id: r.get(5)?,
                            session_id: r.get(6)?,
                            content: r.get(7)?,
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
    let cands = gather(
        &searcher,
        &tenant_index,
        &state.search.fields,
        &spec,
        req.max_tokens,
    )
    .map_err(|e| Error::Internal(format!("search failed: {e}")))?;

    // Token counts as indexed; replaced by a fresh count when SQLite's text has changed since.
    let mut tokens: Vec<u64> = cands.iter().map(|c| c.tokens).collect();
    let mut excluded: HashSet<usize> = HashSet::new();
    let mut settled: HashMap<usize, PackEntry> = HashMap::new();
    let limit = req.max_tokens as u64;
    for round in 0..=MAX_ROUNDS {
        let (included, dropped, source, _) = pack_indexes(&tokens, limit, &excluded);
        let fresh: Vec<usize> = included
            .iter()
            .copied()
            .filter(|i| !settled.contains_key(i))
            .collect();
        if fresh.is_empty() || round == MAX_ROUNDS {
            // Keep what was validated (on the last round a subset of a pack within the budget).
            for i in &included {
                if let Some(e) = settled.remove(i) {
                    pack.used += e.tokens;
                    pack.entries.push(e);
                }
            }
            pack.dropped = dropped;
            pack.source_tokens = source;
            break;
        }
        let (t, min_conf) = (tenant_id.to_string(), req.min_confidence);
        let ids: Vec<String> = fresh.iter().map(|&i| cands[i].doc_id.clone()).collect();
        let rows = state
            .db
            .read_blocking(move |c| current_rows(c, &t, &ids, min_conf))?;
        for (i, row) in fresh.into_iter().zip(rows) {
            let Some(cur) = row else {
                excluded.insert(i);
                continue;
            };
            let c = &cands[i];
            if super::schema::hash64(&cur.content) != c.text_hash {
                // Changed since it was indexed (the update is on its way to the index).
                tokens[i] = super::docs::count_tokens(&cur.content);
            }
            let section = super::schema::SECTIONS
                .get(c.section_no as usize)
                .copied()
                .unwrap_or("context");
            settled.insert(
                i,
                PackEntry {
                    section,
                    source_type: if c.doc_id.starts_with("art_") {
                        "artifact"
                    } else {
                        "memory"
                    },
                    source_id: c.doc_id.clone(),
                    content: cur.content,
                    confidence: (cur.confidence * 1000.0).round() / 1000.0,
                    tokens: tokens[i],
                    detail_type: cur.detail_type,
                    evidence_count: cur.evidence_count,
                    event_id: cur.event_id,
                    session_id: cur.session_id,
                },
            );
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
