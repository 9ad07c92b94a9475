//! Rebuilding the index from SQLite (the source of truth): `engram reindex`, and at start when the
//! index is missing or unreadable. Active memories and active artifacts are indexed; superseded
//! and deprecated ones are not. Documents are built by the same `docs` functions live indexing
//! uses, so a rebuilt index answers exactly as the live one did; the completion marker is written
//! only once everything is committed.

use super::{docs, IndexOp, Search};
use crate::error::Result;
use crate::store::{pack_rows, Db};
use std::path::Path;

const PAGE: i64 = 5_000;

/// Clears the index and re-adds (re-embeds) every active memory and artifact; returns the
/// document count. `progress(done, total)` is called as pages are indexed. Blocking: call from a
/// plain thread or `spawn_blocking`.
pub fn rebuild(db: &Db, search: &Search, progress: impl Fn(u64, u64)) -> Result<u64> {
    search.mark_incomplete()?;
    search.apply(IndexOp::DeleteAll);
    let expected = db.read_blocking(crate::store::pack_rows::active_documents)?;
    let total = add_documents(db, search, None, expected, progress)?;
    search.mark_complete()?;
    Ok(total)
}

/// Indexes (adds or replaces) one tenant's active memories and artifacts, after an import;
/// returns the document count once they are searchable. Nothing is deleted first: capture
/// workers may already be indexing the tenant's new memories, and the index holds nothing else
/// of a tenant that did not exist (deleting a tenant deletes its documents). Blocking.
pub fn index_tenant(db: &Db, search: &Search, tenant_id: &str) -> Result<u64> {
    add_documents(db, search, Some(tenant_id), 0, |_, _| {})
}

/// Adds the active memories and artifacts (of one tenant or all) page by page.
fn add_documents(
    db: &Db,
    search: &Search,
    tenant: Option<&str>,
    expected: u64,
    progress: impl Fn(u64, u64),
) -> Result<u64> {
    progress(0, expected);
    let mut total = 0u64;
    let mut after = 0i64;
    loop {
        let owned = tenant.map(str::to_string);
        let page =
            db.read_blocking(|c| pack_rows::active_memories(c, owned.as_deref(), after, PAGE))?;
        let Some(last) = page.last() else {
            break;
        };
        after = last.seq;
        total += page.len() as u64;
        for m in page {
            search.apply(IndexOp::Upsert(Box::new(memory_row_doc(m))));
        }
        // Wait for the page (embedding is the slow part) so progress reports what is indexed.
        search.commit_blocking();
        progress(total, expected.max(total));
    }
    let artifacts = db.read_blocking(|c| pack_rows::active_artifacts(c, tenant))?;
    total += artifacts.len() as u64;
    for a in artifacts {
        search.apply(IndexOp::Upsert(Box::new(artifact_row_doc(a))));
    }
    search.commit_blocking();
    progress(total, total);
    Ok(total)
}

/// The search document of an active memory row.
pub(super) fn memory_row_doc(m: pack_rows::MemoryIndexRow) -> super::SearchDoc {
    docs::memory_doc(
        &m.tenant_id,
        &m.id,
        &m.kind,
        m.agent_id.as_deref(),
        m.session_id.as_deref(),
        m.tags,
        &m.content,
        &m.created_at,
        m.confidence,
        m.salience,
    )
}

/// The search document of an active artifact row.
pub(super) fn artifact_row_doc(a: pack_rows::ArtifactIndexRow) -> super::SearchDoc {
    docs::artifact_doc(
        &a.tenant_id,
        &a.id,
        &a.artifact_type,
        a.agent_id.as_deref(),
        &a.title,
        &a.content,
        &a.updated_at,
        a.confidence,
    )
}

/// `engram reindex`: rebuilds the index of a data dir (with no server running on it), embedding
/// with `embedder` (which the index then records).
pub async fn rebuild_data_dir(
    data_dir: &Path,
    database: Option<&str>,
    embedder: crate::embed::Embedder,
    progress: impl Fn(u64, u64) + Send + 'static,
) -> Result<u64> {
    let data_dir = data_dir.to_path_buf();
    let database = database.map(str::to_string);
    tokio::task::spawn_blocking(move || {
        let cfg = crate::config::Config::for_data_dir(&data_dir);
        let db = match &database {
            Some(url) => Db::open_postgres(url, 2)?,
            None => Db::open(&cfg.db_path(), 2)?,
        };
        let search = Search::open(&cfg.index_dir(), embedder)?;
        let n = if database.is_some() {
            super::feed::rebuild_offline(&db, &search, progress)
        } else {
            let n = rebuild(&db, &search, progress);
            super::feed::forget_progress(&search);
            n
        };
        search.close();
        db.close();
        n
    })
    .await
    .map_err(crate::error::Error::internal)?
}
