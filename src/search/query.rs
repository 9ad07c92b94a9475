//! Tenant-scoped retrieval: lenient query text → words and a vector → ranked candidates.
//!
//! Query text is never parsed as syntax: it is cut to its first 16 KiB and run through the index's
//! analyzers, giving at most 64 distinct terms per field OR'ed together, so quotes, colons, boolean
//! operators, 100 KB of text or any unicode only ever make words, and no input can make a search
//! fail. Words are matched twice: stemmed, without stop words, in `text_en` (so "painted" finds
//! "paint" and a question's "when did" adds nothing), and as written in `text` at a third of the
//! weight (exact spellings still count). A query of stop words only is matched on `text` with every
//! word. Words in more than a quarter of the tenant's documents are left out when the query has
//! rarer ones (`informative`). Filters (agent, session, tags, sections, kinds) are constant-score
//! clauses that add nothing to the score.
//!
//! Ranking (hybrid, two phases): tantivy collects the top K by BM25 (block-WAND when there is no
//! filter) and, when the query has a vector, the `VECTOR_K` documents most similar to it among
//! those passing the same filters (`vectors`; searched once per request). Over the union of both,
//! relevance is
//!
//! ```text
//! relevance = ½ · bm25 / max bm25 + ½ · max(similarity, 0) / max similarity
//! ```
//!
//! (a document only the vector side found counts 0 for BM25 and is kept only when its similarity
//! is at least `VECTOR_ONLY_FLOOR` of the best; without a query vector relevance is the plain BM25
//! score), and each candidate gets the fused score
//!
//! ```text
//! score = relevance × (0.5 + 0.5·confidence) × (0.75 + 0.25·salience) × 2^(−age / 30 days)
//! ```
//!
//! compared in log space; ties are broken by the document's stable key (a hash of its id). The
//! recency factor is computed from each document's own timestamp (age against a common reference
//! only adds a constant in log space), so the order does not depend on the clock, and similarity
//! is an integer dot product of quantised vectors: the same request on the same data gives the
//! same order on every machine. Without query text, candidates are the most recent documents
//! (`recency` key, descending), in that order.

use super::schema::{self, Fields};
use super::stable::{LiveStats, StableTop};
use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use tantivy::collector::TopDocs;
use tantivy::query::{
    AllQuery, BooleanQuery, BoostQuery, ConstScoreQuery, Occur, Query, RangeQuery, TermQuery,
    TermSetQuery,
};
use tantivy::schema::{IndexRecordOption, Value as _};
use tantivy::{DocAddress, Index, Order, Searcher, Term};

/// At most this much query text is analyzed…
const MAX_QUERY_BYTES: usize = 16 * 1024;
/// …into at most this many distinct terms.
const MAX_TERMS: usize = 64;
const HALF_LIFE_MS: f64 = 30.0 * 24.0 * 3600.0 * 1000.0;

/// What to look for in one tenant's index.
#[derive(Clone, Debug, Default)]
pub struct Spec {
    pub tenant_id: String,
    pub text: Option<String>,
    pub agent_id: Option<String>,
    pub session_id: Option<String>,
    /// Memories must carry one of these (artifacts are not filtered by tags).
    pub tags: Vec<String>,
    /// Allowed sections; empty = all.
    pub sections: Vec<String>,
    pub include_memories: bool,
    pub include_artifacts: bool,
    pub min_confidence: f64,
    /// The query text's unit vector (from the index's embedder), if it has one.
    pub vector: Option<Arc<super::vectors::QueryVector>>,
    /// The vector side's hits, kept across the searches of one request (`pack::gather` widens
    /// the BM25 side in rounds; the vector side is searched once, `VECTOR_K` deep).
    pub vector_hits: Arc<std::sync::OnceLock<(Vec<super::vectors::VectorHit>, bool)>>,
}

/// Documents the vector side collects (once per request).
const VECTOR_K: usize = 64;

/// Weight of an exact-spelling match beside its stemmed match.
const EXACT_BOOST: f32 = 0.3;
/// A document found only by similarity is a candidate when its similarity is at least this share
/// of the best one (measured on the LOCOMO dev conversations: 0.5–0.6 cost no recall, 0.7 began
/// to; without a floor every document of a small tenant is a candidate, however unrelated).
const VECTOR_ONLY_FLOOR: f32 = 0.6;

/// A ranked hit, with what packing needs from fast fields.
#[derive(Clone, Debug)]
pub struct Candidate {
    pub addr: DocAddress,
    pub doc_id: String,
    pub score: f64,
    pub doc_key: u64,
    pub tokens: u64,
    /// `schema::hash64` of the indexed text.
    pub text_hash: u64,
    pub confidence: f64,
    pub section_no: u64,
}

/// The distinct words of `text` as the index analyzes them for `field`, in order of first
/// appearance.
pub fn terms(index: &Index, field: tantivy::schema::Field, text: &str) -> Vec<Term> {
    let mut cut = text.len().min(MAX_QUERY_BYTES);
    while !text.is_char_boundary(cut) {
        cut -= 1;
    }
    let Ok(mut analyzer) = index.tokenizer_for_field(field) else {
        return Vec::new();
    };
    let mut out: Vec<Term> = Vec::new();
    let mut stream = analyzer.token_stream(&text[..cut]);
    while let Some(tok) = stream.next() {
        let term = Term::from_field_text(field, &tok.text);
        if !out.contains(&term) {
            out.push(term);
            if out.len() >= MAX_TERMS {
                break;
            }
        }
    }
    out
}

/// Drops words found in more than `COMMON_SHARE` of the tenant's documents when the query has
/// rarer ones (keeping the rarest if all are common): their BM25 weight is near zero, yet they
/// make a top-K search score nearly every document (measured on a Zipf corpus: the difference
/// between block-WAND pruning and an exhaustive union).
fn informative(stats: &LiveStats<'_>, terms: Vec<Term>) -> Vec<Term> {
    let n = stats.searcher.num_docs();
    if terms.len() < 2 || n < 1_000 {
        return terms;
    }
    let dfs: Vec<u64> = terms
        .iter()
        .map(|t| stats.live_doc_freq(t).unwrap_or(0))
        .collect();
    let limit = (n as f64 * COMMON_SHARE) as u64;
    let kept: Vec<Term> = terms
        .iter()
        .zip(&dfs)
        .filter(|(_, df)| **df <= limit)
        .map(|(t, _)| t.clone())
        .collect();
    if !kept.is_empty() {
        return kept;
    }
    let rarest = (0..terms.len()).min_by_key(|&i| (dfs[i], i)).unwrap_or(0);
    vec![terms[rarest].clone()]
}

const COMMON_SHARE: f64 = 0.25;

fn filter(q: Box<dyn Query>) -> (Occur, Box<dyn Query>) {
    (Occur::Must, Box::new(ConstScoreQuery::new(q, 0.0)))
}

fn str_terms(field: tantivy::schema::Field, values: &[&str]) -> Box<dyn Query> {
    Box::new(TermSetQuery::new(
        values.iter().map(|v| Term::from_field_text(field, v)),
    ))
}

/// The filter clauses of a spec (empty when nothing restricts the search). `with_confidence`
/// adds `minConfidence` as a range clause (otherwise it is applied after collection).
fn filters(spec: &Spec, f: &Fields, with_confidence: bool) -> Vec<(Occur, Box<dyn Query>)> {
    let mut out = Vec::new();
    let mut kinds: Vec<&str> = Vec::new();
    if spec.include_memories {
        kinds.extend(["episodic", "semantic"]);
    }
    if spec.include_artifacts {
        kinds.push("artifact");
    }
    if kinds.len() < 3 {
        out.push(filter(str_terms(f.kind, &kinds)));
    }
    if !spec.sections.is_empty() {
        let s: Vec<&str> = spec.sections.iter().map(String::as_str).collect();
        out.push(filter(str_terms(f.section, &s)));
    }
    if let Some(a) = &spec.agent_id {
        out.push(filter(Box::new(TermQuery::new(
            Term::from_field_text(f.agent, a),
            IndexRecordOption::Basic,
        ))));
    }
    if let Some(s) = &spec.session_id {
        out.push(filter(Box::new(TermQuery::new(
            Term::from_field_text(
                f.tenant_session,
                &schema::tenant_session(&spec.tenant_id, s),
            ),
            IndexRecordOption::Basic,
        ))));
    }
    if !spec.tags.is_empty() {
        // Memories with one of the tags, or any artifact.
        let t: Vec<&str> = spec.tags.iter().map(String::as_str).collect();
        let tagged: Box<dyn Query> = Box::new(BooleanQuery::new(vec![
            (Occur::Should, str_terms(f.tags, &t)),
            (Occur::Should, str_terms(f.kind, &["artifact"])),
        ]));
        out.push(filter(tagged));
    }
    if with_confidence && spec.min_confidence > 0.0 {
        out.push(filter(Box::new(RangeQuery::new(
            std::ops::Bound::Included(Term::from_field_f64(f.confidence, spec.min_confidence)),
            std::ops::Bound::Unbounded,
        ))));
    }
    if !out.is_empty() {
        // Tenant AND (…): redundant in a per-tenant index, kept as a guard on the filtered path
        // (the unfiltered path stays a pure term union for block-WAND; hits are re-checked
        // against SQLite with their tenant either way).
        out.push(filter(Box::new(TermQuery::new(
            Term::from_field_text(f.tenant, &spec.tenant_id),
            IndexRecordOption::Basic,
        ))));
    }
    out
}

/// The words of a query: stemmed terms and exact terms (weighted `EXACT_BOOST`), or, for a query
/// of stop words only, every word exactly.
#[derive(Clone, Default)]
pub struct QueryTerms {
    pub stemmed: Vec<Term>,
    pub exact: Vec<Term>,
}

impl QueryTerms {
    pub fn of(index: &Index, fields: &Fields, text: &str) -> QueryTerms {
        let stemmed = terms(index, fields.text_en, text);
        let all_exact = terms(index, fields.text, text);
        if stemmed.is_empty() {
            return QueryTerms {
                stemmed,
                exact: all_exact,
            };
        }
        let exact = all_exact
            .into_iter()
            .filter(|t| {
                let value = t.value();
                let word = value.as_str().unwrap_or_default();
                !schema::STOP_WORDS.contains(&word)
            })
            .collect();
        QueryTerms { stemmed, exact }
    }

    pub fn is_empty(&self) -> bool {
        self.stemmed.is_empty() && self.exact.is_empty()
    }
}

/// Every document passing the spec's filters, the confidence floor included.
fn filtered_all(spec: &Spec, fields: &Fields) -> Box<dyn Query> {
    let clauses = filters(spec, fields, true);
    if clauses.is_empty() {
        Box::new(AllQuery)
    } else {
        Box::new(BooleanQuery::new(clauses))
    }
}

/// The OR of term queries (a union of term scorers, boosted or not: block-WAND applies).
pub fn text_query(terms: QueryTerms) -> Box<dyn Query> {
    let boost = if terms.stemmed.is_empty() {
        1.0
    } else {
        EXACT_BOOST
    };
    let mut clauses: Vec<(Occur, Box<dyn Query>)> = terms
        .stemmed
        .into_iter()
        .map(|t| {
            let q: Box<dyn Query> = Box::new(TermQuery::new(t, IndexRecordOption::WithFreqs));
            (Occur::Should, q)
        })
        .collect();
    clauses.extend(terms.exact.into_iter().map(|t| {
        let q: Box<dyn Query> = Box::new(TermQuery::new(t, IndexRecordOption::WithFreqs));
        let q: Box<dyn Query> = if boost == 1.0 {
            q
        } else {
            Box::new(BoostQuery::new(q, boost))
        };
        (Occur::Should, q)
    }));
    if clauses.len() == 1 {
        return clauses.pop().map(|(_, q)| q).expect("one clause");
    }
    Box::new(BooleanQuery::new(clauses))
}

pub struct Columns {
    id_prefix: tantivy::columnar::Column<u64>,
    id_hi: tantivy::columnar::Column<u64>,
    id_lo: tantivy::columnar::Column<u64>,
    text_hash: tantivy::columnar::Column<u64>,
    doc_key: tantivy::columnar::Column<u64>,
    tokens: tantivy::columnar::Column<u64>,
    section_no: tantivy::columnar::Column<u64>,
    created: tantivy::columnar::Column<u64>,
    confidence: tantivy::columnar::Column<f64>,
    salience: tantivy::columnar::Column<f64>,
}

fn columns(reader: &tantivy::SegmentReader) -> tantivy::Result<Columns> {
    let ff = reader.fast_fields();
    Ok(Columns {
        id_prefix: ff.u64("id_prefix")?,
        id_hi: ff.u64("id_hi")?,
        id_lo: ff.u64("id_lo")?,
        text_hash: ff.u64("text_hash")?,
        doc_key: ff.u64("doc_key")?,
        tokens: ff.u64("tokens")?,
        section_no: ff.u64("section_no")?,
        created: ff.u64("created")?,
        confidence: ff.f64("confidence")?,
        salience: ff.f64("salience")?,
    })
}

/// The opened fast-field columns of a tenant's segments, by segment id. Opening the ten columns
/// of a segment (headers, block metadata) cost about as much as ranking the hits; a segment's
/// columns never change (deletes live apart, in its alive bitset), so they are opened once per
/// segment. Entries of segments gone from the current searcher are dropped when a new one comes.
#[derive(Default)]
pub struct ColumnCache(std::sync::Mutex<HashMap<tantivy::index::SegmentId, Arc<Columns>>>);

impl ColumnCache {
    fn get(&self, searcher: &Searcher, segment: u32) -> tantivy::Result<Arc<Columns>> {
        let reader = searcher.segment_reader(segment);
        let id = reader.segment_id();
        if let Some(c) = self.lock().get(&id) {
            return Ok(c.clone());
        }
        let cols = Arc::new(columns(reader)?);
        let mut map = self.lock();
        let live: HashSet<tantivy::index::SegmentId> = searcher
            .segment_readers()
            .iter()
            .map(|r| r.segment_id())
            .collect();
        map.retain(|k, _| live.contains(k));
        map.insert(id, cols.clone());
        Ok(cols)
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<tantivy::index::SegmentId, Arc<Columns>>> {
        self.0.lock().unwrap_or_else(|p| p.into_inner())
    }
}

/// Turns hits into candidates with their fast fields; `score` is the fused log score of the hit's
/// relevance (or 0 for a hit without one: the most-recent listing).
fn candidates(
    searcher: &Searcher,
    cache: &ColumnCache,
    fields: &Fields,
    hits: &[(Option<f64>, DocAddress)],
    min_confidence: f64,
) -> tantivy::Result<Vec<Candidate>> {
    let mut out = Vec::with_capacity(hits.len());
    let mut cols: Vec<Option<Arc<Columns>>> = Vec::new();
    cols.resize_with(searcher.segment_readers().len(), || None);
    for (relevance, addr) in hits {
        let slot = &mut cols[addr.segment_ord as usize];
        if slot.is_none() {
            *slot = Some(cache.get(searcher, addr.segment_ord)?);
        }
        let c = slot.as_ref().expect("columns loaded");
        let d = addr.doc_id;
        let confidence = c.confidence.first(d).unwrap_or(0.0);
        if confidence < min_confidence {
            continue;
        }
        let score = match relevance {
            Some(r) => {
                let salience = c.salience.first(d).unwrap_or(0.0);
                let created = c.created.first(d).unwrap_or(0) as f64;
                r.max(1e-9).ln()
                    + (0.5 + 0.5 * confidence).ln()
                    + (0.75 + 0.25 * salience).ln()
                    + std::f64::consts::LN_2 * created / HALF_LIFE_MS
            }
            None => 0.0,
        };
        let doc_id = match c.id_prefix.first(d).unwrap_or(0) {
            0 => {
                // Not an `ids::new` id: read it from the stored document.
                let stored: tantivy::TantivyDocument = searcher.doc(*addr)?;
                match stored.get_first(fields.doc_id).and_then(|v| v.as_str()) {
                    Some(id) => id.to_string(),
                    None => continue,
                }
            }
            prefix => {
                let hi = c.id_hi.first(d).unwrap_or(0) as u128;
                let lo = c.id_lo.first(d).unwrap_or(0) as u128;
                schema::id_from_code(prefix, (hi << 64) | lo)
            }
        };
        out.push(Candidate {
            addr: *addr,
            doc_id,
            text_hash: c.text_hash.first(d).unwrap_or(0),
            score,
            doc_key: c.doc_key.first(d).unwrap_or(0),
            tokens: c.tokens.first(d).unwrap_or(0),
            confidence,
            section_no: c.section_no.first(d).unwrap_or(0),
        });
    }
    Ok(out)
}

/// The top `limit` BM25 hits of `terms` under `spec`'s filters (`with_confidence`: the confidence
/// floor as a clause too), and whether the search was exhausted.
fn bm25_hits(
    stats: &LiveStats<'_>,
    columns: &ColumnCache,
    fields: &Fields,
    spec: &Spec,
    terms: &QueryTerms,
    limit: usize,
    with_confidence: bool,
) -> tantivy::Result<(Vec<(f32, DocAddress)>, bool)> {
    if terms.is_empty() {
        return Ok((Vec::new(), true));
    }
    let mut clauses = filters(spec, fields, with_confidence);
    let query: Box<dyn Query> = if clauses.is_empty() {
        text_query(terms.clone())
    } else {
        clauses.push((Occur::Must, text_query(terms.clone())));
        Box::new(BooleanQuery::new(clauses))
    };
    // Live statistics and ties by key: the same hits whatever the index's history (`stable`).
    let keys = (0..stats.searcher.segment_readers().len() as u32)
        .map(|ord| Ok(columns.get(stats.searcher, ord)?.doc_key.clone()))
        .collect::<tantivy::Result<Vec<_>>>()?;
    let hits = stats.searcher.search_with_statistics_provider(
        query.as_ref(),
        &StableTop { limit, keys },
        stats,
    )?;
    let exhausted = hits.len() < limit;
    Ok((hits, exhausted))
}

/// The top `limit` documents by similarity to the query vector among those passing the filters
/// (the confidence floor included), and whether there may be more.
fn vector_hits(
    searcher: &Searcher,
    fields: &Fields,
    spec: &Spec,
    query: &Arc<super::vectors::QueryVector>,
    segments: &[Arc<super::vectors::SegmentVectors>],
    limit: usize,
) -> tantivy::Result<(Vec<super::vectors::VectorHit>, bool)> {
    if filters(spec, fields, true).is_empty() {
        // Nothing to filter by: straight over the vector arrays (the same hits, cheaper).
        let hits = super::vectors::top_all(searcher, segments, query, limit);
        let more = hits.len() >= limit;
        return Ok((hits, more));
    }
    let filter = filtered_all(spec, fields);
    let hits = searcher.search(
        filter.as_ref(),
        &super::vectors::TopVectors {
            k: limit,
            total_docs: searcher
                .segment_readers()
                .iter()
                .map(|r| r.max_doc() as u64)
                .sum(),
            query: query.clone(),
            segments: segments.to_vec(),
        },
    )?;
    let more = hits.len() >= limit;
    Ok((hits, more))
}

/// The best `limit` candidates of `spec` in rank order (fewer when fewer match), and whether more
/// documents matched than were collected.
pub fn search(
    searcher: &Searcher,
    tenant: &super::TenantIndex,
    fields: &Fields,
    spec: &Spec,
    limit: usize,
) -> tantivy::Result<(Vec<Candidate>, bool)> {
    if !spec.include_memories && !spec.include_artifacts {
        return Ok((Vec::new(), false));
    }
    let limit = limit.max(1);
    let stats = LiveStats {
        searcher,
        cache: &tenant.stats,
    };
    let terms = match spec.text.as_deref() {
        Some(t) => {
            let q = QueryTerms::of(&tenant.index, fields, t);
            QueryTerms {
                stemmed: informative(&stats, q.stemmed),
                exact: informative(&stats, q.exact),
            }
        }
        None => QueryTerms::default(),
    };
    let vector = spec.vector.as_ref().filter(|_| spec.text.is_some());
    if terms.is_empty() && vector.is_none() {
        if spec.text.as_deref().is_some_and(|t| !t.trim().is_empty()) {
            // Text without a single word (only punctuation): nothing can match it.
            return Ok((Vec::new(), false));
        }
        return most_recent(searcher, tenant, fields, spec, limit);
    }
    // BM25, first unfiltered by confidence (block-WAND when no other filter), confidence applied
    // to the collected hits; if that leaves too few while more hits exist, filtered in the query.
    let (mut bm25, mut exhausted) =
        bm25_hits(&stats, &tenant.columns, fields, spec, &terms, limit, false)?;
    if spec.min_confidence > 0.0 && !exhausted {
        let kept = count_confident(searcher, &tenant.columns, &bm25, spec.min_confidence)?;
        if kept * 2 < limit {
            (bm25, exhausted) =
                bm25_hits(&stats, &tenant.columns, fields, spec, &terms, limit, true)?;
        }
    }
    let mut more = !exhausted;
    let Some(query) = vector else {
        let hits: Vec<(Option<f64>, DocAddress)> =
            bm25.iter().map(|(s, a)| (Some(*s as f64), *a)).collect();
        let mut out = candidates(
            searcher,
            &tenant.columns,
            fields,
            &hits,
            spec.min_confidence,
        )?;
        out.sort_by(|a, b| b.score.total_cmp(&a.score).then(a.doc_key.cmp(&b.doc_key)));
        return Ok((out, more));
    };
    let segments = tenant.vectors.segments(searcher)?;
    let (similar, vmore) = match spec.vector_hits.get() {
        Some(hits) => hits.clone(),
        None => {
            let hits = vector_hits(searcher, fields, spec, query, &segments, VECTOR_K)?;
            spec.vector_hits.get_or_init(|| hits).clone()
        }
    };
    more |= vmore && limit < VECTOR_K;
    // The union, each with both signals.
    let mut merged: HashMap<DocAddress, (f64, f64)> = HashMap::with_capacity(bm25.len() * 2);
    for (s, addr) in &bm25 {
        let sim = segments
            .get(addr.segment_ord as usize)
            .and_then(|v| v.similarity(addr.doc_id, query))
            .unwrap_or(0.0);
        merged.insert(*addr, (*s as f64, sim as f64));
    }
    // Documents only the vector side found count when they are nearly as similar as the best
    // one: the tail of a top-K by similarity is whatever is least unrelated.
    let top = similar.first().map(|h| h.similarity).unwrap_or(0.0);
    for h in similar
        .iter()
        .filter(|h| h.similarity > 0.0 && h.similarity >= VECTOR_ONLY_FLOOR * top)
    {
        merged.entry(h.addr).or_insert((0.0, h.similarity as f64));
    }
    let max_bm25 = merged.values().map(|v| v.0).fold(0.0, f64::max);
    let max_sim = merged.values().map(|v| v.1).fold(0.0, f64::max);
    let hits: Vec<(Option<f64>, DocAddress)> = merged
        .into_iter()
        .map(|(addr, (b, v))| {
            let b = if max_bm25 > 0.0 { b / max_bm25 } else { 0.0 };
            let v = if max_sim > 0.0 {
                v.max(0.0) / max_sim
            } else {
                0.0
            };
            (Some(0.5 * b + 0.5 * v), addr)
        })
        .collect();
    let mut out = candidates(
        searcher,
        &tenant.columns,
        fields,
        &hits,
        spec.min_confidence,
    )?;
    out.sort_by(|a, b| b.score.total_cmp(&a.score).then(a.doc_key.cmp(&b.doc_key)));
    Ok((out, more))
}

/// How many of `hits` reach the confidence floor.
fn count_confident(
    searcher: &Searcher,
    cache: &ColumnCache,
    hits: &[(f32, DocAddress)],
    min_confidence: f64,
) -> tantivy::Result<usize> {
    let mut n = 0;
    for (_, addr) in hits {
        let c = cache.get(searcher, addr.segment_ord)?;
        if c.confidence.first(addr.doc_id).unwrap_or(0.0) >= min_confidence {
            n += 1;
        }
    }
    Ok(n)
}

fn most_recent(
    searcher: &Searcher,
    tenant: &super::TenantIndex,
    fields: &Fields,
    spec: &Spec,
    limit: usize,
) -> tantivy::Result<(Vec<Candidate>, bool)> {
    let query = filtered_all(spec, fields);
    let hits = searcher.search(
        query.as_ref(),
        &TopDocs::with_limit(limit).order_by_fast_field::<u64>("recency", Order::Desc),
    )?;
    let more = hits.len() >= limit;
    let hits: Vec<(Option<f64>, DocAddress)> = hits.into_iter().map(|(_, a)| (None, a)).collect();
    // Already in recency order (the key is unique up to a 2^-20 collision within a millisecond).
    Ok((
        candidates(
            searcher,
            &tenant.columns,
            fields,
            &hits,
            spec.min_confidence,
        )?,
        more,
    ))
}
