//! Rebuilding the index from SQLite (the source of truth): `engram reindex`, and at start when the
//! index is missing or unreadable. Active memories and active artifacts are indexed; superseded
//! and deprecated ones are not. Documents are built by the same `docs` functions live indexing
//! uses, so a rebuilt index answers exactly as the live one did; the completion marker is written
//! only once everything is committed.

use super::{docs, IndexOp, Search};
use crate::error::Result;
use crate::store::Db;
use std::path::Path;

const PAGE: i64 = 5_000;

/// Clears the index and re-adds (re-embeds) every active memory and artifact; returns the
/// document count. `progress(done, total)` is called as pages are indexed. Blocking: call from a
/// plain thread or `spawn_blocking`.
pub fn rebuild(db: &Db, search: &Search, progress: impl Fn(u64, u64)) -> Result<u64> {
    search.mark_incomplete()?;
    search.submit(IndexOp::DeleteAll);
    let expected = db.read_blocking(crate::store::pack_rows::active_documents)?;
    progress(0, expected);
    let mut total = 0u64;
    let mut after = 0i64;
    loop {
        let page = db.read_blocking(|c| {
            let mut stmt = c.prepare_cached(
                "SELECT seq, tenant_id, id, kind, agent_id, session_id, tags_json, content,
                        created_at, confidence, salience
                 FROM memories WHERE seq > ?1 AND status = 'active' ORDER BY seq LIMIT ?2",
            )?;
            let rows = stmt.query_map([after, PAGE], |r| {
                let tags: String = r.get(6)?;
                Ok((
                    r.get::<_, i64>(0)?,
                    docs::memory_doc(
                        &r.get::<_, String>(1)?,
                        &r.get::<_, String>(2)?,
                        &r.get::<_, String>(3)?,
                        r.get::<_, Option<String>>(4)?.as_deref(),
                        r.get::<_, Option<String>>(5)?.as_deref(),
                        serde_json::from_str(&tags).unwrap_or_default(),
                        &r.get::<_, String>(7)?,
                        &r.get::<_, String>(8)?,
                        r.get(9)?,
                        r.get(10)?,
                    ),
                ))
            })?;
            Ok(rows.collect::<rusqlite::Result<Vec<_>>>()?)
        })?;
        if page.is_empty() {
            break;
        }
        after = page.last().map(|(s, _)| *s).unwrap_or(after);
        total += page.len() as u64;
        for (_, d) in page {
            search.submit(IndexOp::Upsert(Box::new(d)));
        }
        // Wait for the page (embedding is the slow part) so progress reports what is indexed.
        search.flush_blocking();
        progress(total, expected.max(total));
    }
    let artifacts = db.read_blocking(|c| {
        let mut stmt = c.prepare(
            "SELECT tenant_id, id, type, agent_id, title, content_json, updated_at, confidence
             FROM artifacts WHERE status = 'active' ORDER BY seq",
        )?;
        let rows = stmt.query_map([], |r| {
            let content: String = r.get(5)?;
            Ok(docs::artifact_doc(
                &r.get::<_, String>(0)?,
                &r.get::<_, String>(1)?,
                &r.get::<_, String>(2)?,
                r.get::<_, Option<String>>(3)?.as_deref(),
                &r.get::<_, String>(4)?,
                &serde_json::from_str(&content).unwrap_or_default(),
                &r.get::<_, String>(6)?,
                r.get(7)?,
            ))
        })?;
        Ok(rows.collect::<rusqlite::Result<Vec<_>>>()?)
    })?;
    total += artifacts.len() as u64;
    for d in artifacts {
        search.submit(IndexOp::Upsert(Box::new(d)));
    }
    search.flush_blocking();
    progress(total, total);
    search.mark_complete()?;
    Ok(total)
}

/// `engram reindex`: rebuilds the index of a data dir (with no server running on it), embedding
/// with `embedder` (which the index then records).
pub async fn rebuild_data_dir(
    data_dir: &Path,
    embedder: crate::embed::Embedder,
    progress: impl Fn(u64, u64) + Send + 'static,
) -> Result<u64> {
    let data_dir = data_dir.to_path_buf();
    tokio::task::spawn_blocking(move || {
        let cfg = crate::config::Config::for_data_dir(&data_dir);
        let db = Db::open(&cfg.db_path(), 2)?;
        let search = Search::open(&cfg.index_dir(), embedder)?;
        let n = rebuild(&db, &search, progress);
        search.close();
        db.close();
        n
    })
    .await
    .map_err(crate::error::Error::internal)?
}
