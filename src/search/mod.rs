//! Full-text search over a tenant's memories and artifacts (tantivy), one index per tenant.
//!
//! Layout: `index/<tenant>/` holds that tenant's own tantivy index, opened at start (readers) and
//! written by the indexer thread (writers opened on demand, closed when idle). Chosen by measurement
//! (`examples/synth_bench.rs --layout`, 1,000,000 documents over 10 tenants, Zipf vocabulary,
//! 2 cores, tantivy 0.27, one thread, top 10): the same tenant's queries took p50 1.33 ms on one
//! shared index (`tenant AND …`: it decodes every tenant's postings, and the filter also disables
//! block-WAND) against p50 0.10 ms on an index of that tenant alone, 13× less. In the same run the
//! tenant's own raw search cost stayed put (p50 0.170 → 0.179 ms) when nine other tenants'
//! 900,000 documents were added.
//!
//! Invariants:
//! - Every document carries its tenant and lives in that tenant's index; every query runs on the
//!   caller's tenant index only, and every hit is re-checked against SQLite with its tenant id
//!   before it is shown (`pack`), so a misplaced document can never leak.
//! - One indexer thread owns all `IndexWriter`s. Others submit `IndexOp`s; the indexer applies them
//!   and commits in batches (by count or 200 ms after the first pending op), then reloads the
//!   readers it touched, so a document is searchable well within a second of its submission.
//! - SQLite is the source of truth: the index can always be rebuilt from it. The marker file
//!   `index/engram-index.json` is written only after a complete rebuild; without it (first start,
//!   an older layout, a crash mid-rebuild) or with an unreadable tenant index, `needs_rebuild` is set.

pub use crate::index_doc as docs;
pub use crate::index_doc::{IndexOp, SearchDoc};
pub mod feed;
mod indexer;
pub mod pack;
pub mod pack_text;
pub mod query;
pub mod rebuild;
pub mod schema;
pub mod stable;
pub mod vectors;

use crate::error::{Error, Result};
use crossbeam_channel::Sender;
use schema::Fields;
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock, RwLock};
use std::thread::JoinHandle;
use std::time::Duration;
use tantivy::{Index, IndexReader, ReloadPolicy, Searcher};

const MARKER: &str = "engram-index.json";
/// The marker's content: the layout, its version and the embedding model the vectors come from.
fn marker_text(model_id: &str) -> String {
    serde_json::json!({"layout": "per-tenant", "version": 4, "embeddingModel": model_id})
        .to_string()
}

#[derive(Clone, Debug)]
pub struct SearchStats {
    pub documents: u64,
    pub segments: usize,
    pub last_commit_at: Option<String>,
    pub pending: u64,
    /// Operations submitted since the start, and how many of them a commit has made searchable
    /// (operations are applied in submission order).
    pub submitted: u64,
    pub committed: u64,
    pub healthy: bool,
    pub embedding_model: String,
    pub embed_failures: u64,
    /// The index follows the search feed (PostgreSQL): `submitted` and `committed` count feed
    /// rounds (the next round to start, rounds done), and an idle indexer says nothing about
    /// what is searchable.
    pub follows_feed: bool,
    pub feed: Option<feed::FollowerStats>,
}

/// A tenant's index and its reader.
pub struct TenantIndex {
    pub index: Index,
    pub reader: IndexReader,
    /// Opened fast-field columns of its segments.
    pub columns: query::ColumnCache,
    /// Loaded embedding vectors of its segments.
    pub vectors: vectors::VectorCache,
    /// BM25 statistics of its live documents (`stable`).
    pub stats: stable::StatsCache,
}

pub(crate) struct Shared {
    root: PathBuf,
    fields: Fields,
    tenants: RwLock<HashMap<String, Arc<TenantIndex>>>,
    last_commit_at: Mutex<Option<String>>,
    pending: AtomicU64,
    submitted: AtomicU64,
    committed: AtomicU64,
    failed: AtomicBool,
    embedder: crate::embed::Embedder,
    /// Documents indexed without a vector because the embedding provider failed.
    embed_failures: AtomicU64,
}

/// The search index handle (cheap to clone).
#[derive(Clone)]
pub struct Search {
    pub fields: Fields,
    shared: Arc<Shared>,
    ops: Arc<Mutex<Option<Sender<IndexOp>>>>,
    indexer: Arc<Mutex<Option<JoinHandle<()>>>>,
    permits: Arc<OnceLock<Arc<tokio::sync::Semaphore>>>,
    /// PostgreSQL: the follower of the search feed, which alone changes the index
    /// (`feed`); writers' own operations are dropped.
    follower: Arc<OnceLock<Arc<feed::Follower>>>,
    /// The index was missing, of an older layout or unreadable and was created empty: rebuild it
    /// from SQLite (`rebuild::rebuild` writes the marker when done).
    pub needs_rebuild: bool,
}

/// A tenant id as a directory name: kept when it is plain (`ten_…`), hex-encoded otherwise.
fn tenant_dir_name(tenant_id: &str) -> String {
    let plain = !tenant_id.is_empty()
        && tenant_id.len() <= 128
        && !tenant_id.starts_with('x')
        && tenant_id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-');
    if plain {
        tenant_id.to_string()
    } else {
        let mut s = String::from("x");
        for b in tenant_id.bytes() {
            s.push_str(&format!("{b:02x}"));
        }
        s
    }
}

fn tenant_of_dir_name(name: &str) -> Option<String> {
    match name.strip_prefix('x') {
        Some(hex) => {
            let bytes: Option<Vec<u8>> = (0..hex.len())
                .step_by(2)
                .map(|i| {
                    hex.get(i..i + 2)
                        .and_then(|h| u8::from_str_radix(h, 16).ok())
                })
                .collect();
            bytes.and_then(|b| String::from_utf8(b).ok())
        }
        None => Some(name.to_string()),
    }
}

fn open_reader(index: &Index) -> tantivy::Result<IndexReader> {
    index
        .reader_builder()
        .reload_policy(ReloadPolicy::Manual)
        .try_into()
}

/// Opens every tenant index under `root`; `Err` if any is unreadable.
fn open_all(root: &Path) -> std::result::Result<HashMap<String, Arc<TenantIndex>>, String> {
    let mut out = HashMap::new();
    let entries = std::fs::read_dir(root).map_err(|e| e.to_string())?;
    for entry in entries {
        let entry = entry.map_err(|e| e.to_string())?;
        if !entry.file_type().map(|t| t.is_dir()).unwrap_or(false) {
            continue;
        }
        let name = entry.file_name().to_string_lossy().into_owned();
        let tenant = tenant_of_dir_name(&name).ok_or_else(|| format!("stray directory {name}"))?;
        let index = Index::open_in_dir(entry.path()).map_err(|e| format!("{name}: {e}"))?;
        if index.schema() != schema::build() {
            return Err(format!("{name}: schema differs from this binary's"));
        }
        schema::register_tokenizers(&index);
        let reader = open_reader(&index).map_err(|e| format!("{name}: {e}"))?;
        out.insert(
            tenant,
            Arc::new(TenantIndex {
                index,
                reader,
                columns: Default::default(),
                vectors: Default::default(),
                stats: Default::default(),
            }),
        );
    }
    Ok(out)
}

impl Shared {
    pub(crate) fn tenant(&self, tenant_id: &str) -> Option<Arc<TenantIndex>> {
        self.tenants
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .get(tenant_id)
            .cloned()
    }

    pub(crate) fn tenant_ids(&self) -> Vec<String> {
        let mut ids: Vec<String> = self
            .tenants
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .keys()
            .cloned()
            .collect();
        ids.sort();
        ids
    }

    /// The tenant's index, created (empty) if it does not exist yet.
    pub(crate) fn tenant_or_create(&self, tenant_id: &str) -> Result<Arc<TenantIndex>> {
        if let Some(t) = self.tenant(tenant_id) {
            return Ok(t);
        }
        let dir = self.root.join(tenant_dir_name(tenant_id));
        std::fs::create_dir_all(&dir)
            .map_err(|e| Error::Internal(format!("cannot create {}: {e}", dir.display())))?;
        let d = tantivy::directory::MmapDirectory::open(&dir).map_err(Error::internal)?;
        let index = Index::open_or_create(d, schema::build()).map_err(Error::internal)?;
        schema::register_tokenizers(&index);
        let reader = open_reader(&index).map_err(Error::internal)?;
        let t = Arc::new(TenantIndex {
            index,
            reader,
            columns: Default::default(),
            vectors: Default::default(),
            stats: Default::default(),
        });
        self.tenants
            .write()
            .unwrap_or_else(|p| p.into_inner())
            .insert(tenant_id.to_string(), t.clone());
        Ok(t)
    }
}

impl Search {
    /// Opens (or creates) the index root `dir` and starts the indexer thread. An unreadable or
    /// outdated index, or one whose vectors come from another embedding model, is wiped and
    /// `needs_rebuild` set.
    pub fn open(dir: &Path, embedder: crate::embed::Embedder) -> Result<Search> {
        std::fs::create_dir_all(dir)
            .map_err(|e| Error::Internal(format!("cannot create {}: {e}", dir.display())))?;
        let marker = std::fs::read_to_string(dir.join(MARKER)).unwrap_or_default();
        let marker_ok = marker.trim() == marker_text(embedder.model_id());
        if !marker_ok && !marker.is_empty() {
            tracing::warn!(index = %marker.trim(), wanted = %marker_text(embedder.model_id()),
                "search index was built differently (layout or embedding model); rebuilding it");
        }
        let opened = if marker_ok {
            open_all(dir)
        } else {
            Err("no complete index".to_string())
        };
        let (tenants, needs_rebuild) = match opened {
            Ok(t) => (t, false),
            Err(e) => {
                if marker_ok {
                    tracing::warn!(error = %e, dir = %dir.display(), "search index unreadable; recreating it");
                }
                std::fs::remove_dir_all(dir).ok();
                std::fs::create_dir_all(dir).map_err(Error::internal)?;
                (HashMap::new(), true)
            }
        };
        let fields = Fields::from_schema(&schema::build());
        let shared = Arc::new(Shared {
            root: dir.to_path_buf(),
            fields,
            tenants: RwLock::new(tenants),
            last_commit_at: Mutex::new(None),
            pending: AtomicU64::new(0),
            submitted: AtomicU64::new(0),
            committed: AtomicU64::new(0),
            failed: AtomicBool::new(false),
            embedder,
            embed_failures: AtomicU64::new(0),
        });
        let (tx, rx) = crossbeam_channel::unbounded();
        let handle = {
            let shared = shared.clone();
            std::thread::Builder::new()
                .name("engram-indexer".into())
                .spawn(move || {
                    crate::jobs::lower_priority();
                    indexer::run(shared, rx)
                })
                .map_err(Error::internal)?
        };
        Ok(Search {
            fields,
            shared,
            ops: Arc::new(Mutex::new(Some(tx))),
            indexer: Arc::new(Mutex::new(Some(handle))),
            permits: Arc::new(OnceLock::new()),
            follower: Arc::new(OnceLock::new()),
            needs_rebuild,
        })
    }

    pub fn dir(&self) -> &Path {
        &self.shared.root
    }

    /// The embedding provider of this index (queries are embedded with it too).
    pub fn embedder(&self) -> &crate::embed::Embedder {
        &self.shared.embedder
    }

    /// A searcher over the tenant's index (`None`: the tenant has nothing indexed).
    pub fn searcher(&self, tenant_id: &str) -> Option<(Searcher, Arc<TenantIndex>)> {
        self.shared
            .tenant(tenant_id)
            .map(|t| (t.reader.searcher(), t))
    }

    /// The semaphore bounding concurrent searches (sized on first use).
    pub fn permits(&self, concurrency: usize) -> Arc<tokio::sync::Semaphore> {
        self.permits
            .get_or_init(|| Arc::new(tokio::sync::Semaphore::new(concurrency.max(1))))
            .clone()
    }

    /// Queues an index operation (applied by the indexer thread). On a node that follows the
    /// search feed (PostgreSQL) only a flush is taken: the index changes only as the feed says
    /// (`feed`), so every node holds the same documents.
    pub fn submit(&self, op: IndexOp) {
        if self.follower.get().is_some() {
            if let IndexOp::Flush(done) = op {
                self.flush_blocking();
                let _ = done.send(());
            }
            return;
        }
        self.apply(op);
    }

    /// Queues an index operation for the indexer, follower or not (rebuilds and the follower).
    pub(crate) fn apply(&self, op: IndexOp) {
        let guard = self.ops.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(tx) = guard.as_ref() {
            self.shared.pending.fetch_add(1, Ordering::Relaxed);
            self.shared.submitted.fetch_add(1, Ordering::SeqCst);
            if tx.send(op).is_err() {
                self.shared.pending.fetch_sub(1, Ordering::Relaxed);
                self.shared.submitted.fetch_sub(1, Ordering::SeqCst);
            }
        }
    }

    /// Makes every write committed before the call searchable here, then returns (blocking):
    /// commits what is queued, or on a feed follower waits for a feed round that starts after
    /// the call.
    pub fn flush_blocking(&self) {
        match self.follower.get() {
            Some(f) => f.wait_round(Duration::from_secs(120)),
            None => self.commit_blocking(),
        }
    }

    /// Commits what is queued for the indexer; returns once it is searchable (blocking).
    pub(crate) fn commit_blocking(&self) {
        let (tx, rx) = crossbeam_channel::bounded(1);
        self.apply(IndexOp::Flush(tx));
        let _ = rx.recv_timeout(Duration::from_secs(120));
    }

    pub(crate) fn install_follower(&self, f: Arc<feed::Follower>) {
        let _ = self.follower.set(f);
    }

    /// The feed follower (PostgreSQL nodes).
    pub fn follower(&self) -> Option<&Arc<feed::Follower>> {
        self.follower.get()
    }

    /// `flush_blocking` for async callers.
    pub async fn flush(&self) {
        let s = self.clone();
        let _ = tokio::task::spawn_blocking(move || s.flush_blocking()).await;
    }

    /// Forgets that the index is complete (a rebuild begins: if it does not finish, the next
    /// start rebuilds again).
    pub fn mark_incomplete(&self) -> Result<()> {
        match std::fs::remove_file(self.shared.root.join(MARKER)) {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => Err(Error::Internal(format!(
                "cannot remove the index marker: {e}"
            ))),
            _ => Ok(()),
        }
    }

    /// Records that the index is complete (after a rebuild): later starts trust it.
    pub fn mark_complete(&self) -> Result<()> {
        std::fs::write(
            self.shared.root.join(MARKER),
            marker_text(self.shared.embedder.model_id()),
        )
        .map_err(|e| Error::Internal(format!("cannot write the index marker: {e}")))
    }

    pub fn stats(&self) -> SearchStats {
        let tenants: Vec<Arc<TenantIndex>> = self
            .shared
            .tenants
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .values()
            .cloned()
            .collect();
        let (mut documents, mut segments) = (0u64, 0usize);
        for t in tenants {
            let s = t.reader.searcher();
            documents += s.num_docs();
            segments += s.segment_readers().len();
        }
        // A feed follower's progress is counted in rounds: what is processed now is searchable
        // once the next round to start is done (`app::Searchable`).
        let (pending, submitted, committed) = match self.follower.get() {
            Some(f) => {
                let (next, done) = f.tickets();
                (self.shared.pending.load(Ordering::Relaxed), next, done)
            }
            None => (
                self.shared.pending.load(Ordering::Relaxed),
                self.shared.submitted.load(Ordering::SeqCst),
                self.shared.committed.load(Ordering::SeqCst),
            ),
        };
        SearchStats {
            documents,
            segments,
            last_commit_at: self
                .shared
                .last_commit_at
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .clone(),
            pending,
            submitted,
            committed,
            embedding_model: self.shared.embedder.model_id().to_string(),
            embed_failures: self.shared.embed_failures.load(Ordering::Relaxed),
            follows_feed: self.follower.get().is_some(),
            feed: self.follower.get().map(|f| f.stats()),
            healthy: !self.shared.failed.load(Ordering::Relaxed)
                && self
                    .indexer
                    .lock()
                    .map(|h| h.as_ref().is_some_and(|h| !h.is_finished()))
                    .unwrap_or(false),
        }
    }

    /// Commits what is pending and stops the feed follower and the indexer.
    pub fn close(&self) {
        if let Some(f) = self.follower.get() {
            f.stop();
        }
        self.ops.lock().unwrap_or_else(|p| p.into_inner()).take();
        let handle = self
            .indexer
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .take();
        if let Some(h) = handle {
            let _ = h.join();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tenant_dir_names_round_trip() {
        for t in ["ten_01JABC", "weird/../id", "x-starts-with-x", ""] {
            let name = tenant_dir_name(t);
            assert!(!name.contains('/') && !name.contains('.'));
            assert_eq!(tenant_of_dir_name(&name).as_deref(), Some(t));
        }
    }
}
