//! Full-text search over a tenant's memories and artifacts (tantivy).
//!
//! Invariants:
//! - Every document carries its tenant; every query is `tenant AND (user query)`.
//! - One indexer thread owns the `IndexWriter`. Others submit `IndexOp`s; the indexer applies them
//!   and commits in batches (by count or after a short delay), then reloads the reader, so a
//!   document is searchable well within a second of its submission.
//! - SQLite is the source of truth: the index can always be rebuilt from it.

pub mod docs;
pub mod rebuild;
pub mod schema;

use crate::error::{Error, Result};
use crossbeam_channel::{Receiver, Sender};
use schema::Fields;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};
use tantivy::{doc, Index, IndexReader, IndexWriter, ReloadPolicy, Term};

/// Commit after this many pending operations…
const COMMIT_EVERY_OPS: usize = 5_000;
/// …or this long after the first pending one.
const COMMIT_DELAY: Duration = Duration::from_millis(200);
const WRITER_HEAP: usize = 64 * 1024 * 1024;

/// One searchable item.
#[derive(Clone, Debug)]
pub struct SearchDoc {
    pub tenant_id: String,
    /// `mem_…` or `art_…`.
    pub doc_id: String,
    /// `episodic`, `semantic` or `artifact`.
    pub kind: &'static str,
    /// The synthesize section: procedures failures decisions facts causal context.
    pub section: &'static str,
    pub agent_id: Option<String>,
    pub session_id: Option<String>,
    pub tags: Vec<String>,
    pub text: String,
    pub created_ms: u64,
    pub confidence: f64,
    pub salience: f64,
}

pub enum IndexOp {
    /// Adds a document, replacing any with the same `doc_id`.
    Upsert(Box<SearchDoc>),
    Delete {
        doc_id: String,
    },
    /// Removes every document of a tenant's session.
    DeleteSession {
        tenant_id: String,
        session_id: String,
    },
    /// Removes everything (before a rebuild).
    DeleteAll,
    /// Commits what is pending and answers once it is searchable.
    Flush(Sender<()>),
}

#[derive(Clone, Debug)]
pub struct SearchStats {
    pub documents: u64,
    pub segments: usize,
    pub last_commit_at: Option<String>,
    pub pending: u64,
    pub healthy: bool,
}

struct Shared {
    last_commit_at: Mutex<Option<String>>,
    pending: AtomicU64,
    failed: AtomicBool,
}

/// The search index handle (cheap to clone).
#[derive(Clone)]
pub struct Search {
    pub fields: Fields,
    reader: IndexReader,
    ops: Arc<Mutex<Option<Sender<IndexOp>>>>,
    indexer: Arc<Mutex<Option<JoinHandle<()>>>>,
    shared: Arc<Shared>,
    dir: PathBuf,
    /// The index was missing or unreadable and was created empty: rebuild it from SQLite.
    pub needs_rebuild: bool,
}

fn open_index(dir: &Path) -> Result<(Index, bool)> {
    std::fs::create_dir_all(dir)
        .map_err(|e| Error::Internal(format!("cannot create {}: {e}", dir.display())))?;
    let schema = schema::build();
    let fresh = !dir.join("meta.json").exists();
    let opened = tantivy::directory::MmapDirectory::open(dir)
        .map_err(|e| e.to_string())
        .and_then(|d| Index::open_or_create(d, schema.clone()).map_err(|e| e.to_string()));
    match opened {
        Ok(index) => Ok((index, fresh)),
        Err(e) => {
            tracing::warn!(error = %e, dir = %dir.display(), "search index unreadable; recreating it");
            std::fs::remove_dir_all(dir).ok();
            std::fs::create_dir_all(dir).map_err(Error::internal)?;
            let d = tantivy::directory::MmapDirectory::open(dir).map_err(Error::internal)?;
            Ok((
                Index::open_or_create(d, schema).map_err(Error::internal)?,
                true,
            ))
        }
    }
}

impl Search {
    /// Opens (or creates) the index in `dir` and starts the indexer thread.
    pub fn open(dir: &Path) -> Result<Search> {
        let (index, fresh) = open_index(dir)?;
        schema::register_tokenizers(&index);
        let fields = Fields::from_schema(&index.schema());
        let writer: IndexWriter = index
            .writer(WRITER_HEAP)
            .map_err(|e| Error::Internal(format!("search index writer: {e}")))?;
        let reader = index
            .reader_builder()
            .reload_policy(ReloadPolicy::Manual)
            .try_into()
            .map_err(|e| Error::Internal(format!("search index reader: {e}")))?;
        let (tx, rx) = crossbeam_channel::unbounded();
        let shared = Arc::new(Shared {
            last_commit_at: Mutex::new(None),
            pending: AtomicU64::new(0),
            failed: AtomicBool::new(false),
        });
        let handle = {
            let reader: IndexReader = Clone::clone(&reader);
            let shared = shared.clone();
            std::thread::Builder::new()
                .name("engram-indexer".into())
                .spawn(move || indexer_loop(writer, reader, fields, rx, shared))
                .map_err(Error::internal)?
        };
        Ok(Search {
            fields,
            reader,
            ops: Arc::new(Mutex::new(Some(tx))),
            indexer: Arc::new(Mutex::new(Some(handle))),
            shared,
            dir: dir.to_path_buf(),
            needs_rebuild: fresh,
        })
    }

    pub fn reader(&self) -> &IndexReader {
        &self.reader
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Queues an index operation (applied by the indexer thread).
    pub fn submit(&self, op: IndexOp) {
        let guard = self.ops.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(tx) = guard.as_ref() {
            self.shared.pending.fetch_add(1, Ordering::Relaxed);
            if tx.send(op).is_err() {
                self.shared.pending.fetch_sub(1, Ordering::Relaxed);
            }
        }
    }

    /// Commits everything submitted so far; returns once it is searchable (blocking).
    pub fn flush_blocking(&self) {
        let (tx, rx) = crossbeam_channel::bounded(1);
        self.submit(IndexOp::Flush(tx));
        let _ = rx.recv_timeout(Duration::from_secs(60));
    }

    /// `flush_blocking` for async callers.
    pub async fn flush(&self) {
        let s = self.clone();
        let _ = tokio::task::spawn_blocking(move || s.flush_blocking()).await;
    }

    pub fn stats(&self) -> SearchStats {
        let searcher = self.reader.searcher();
        SearchStats {
            documents: searcher.num_docs(),
            segments: searcher.segment_readers().len(),
            last_commit_at: self
                .shared
                .last_commit_at
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .clone(),
            pending: self.shared.pending.load(Ordering::Relaxed),
            healthy: !self.shared.failed.load(Ordering::Relaxed)
                && self
                    .indexer
                    .lock()
                    .map(|h| h.as_ref().is_some_and(|h| !h.is_finished()))
                    .unwrap_or(false),
        }
    }

    /// Commits what is pending and stops the indexer.
    pub fn close(&self) {
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

fn apply(writer: &mut IndexWriter, f: &Fields, op: IndexOp) -> Option<Sender<()>> {
    match op {
        IndexOp::Upsert(d) => {
            writer.delete_term(Term::from_field_text(f.doc_id, &d.doc_id));
            let mut document = doc!(
                f.tenant => d.tenant_id.as_str(),
                f.doc_id => d.doc_id.as_str(),
                f.kind => d.kind,
                f.section => d.section,
                f.text => d.text.as_str(),
                f.created => d.created_ms,
                f.confidence => d.confidence,
                f.salience => d.salience,
            );
            if let Some(a) = &d.agent_id {
                document.add_text(f.agent, a);
            }
            if let Some(s) = &d.session_id {
                document.add_text(f.tenant_session, schema::tenant_session(&d.tenant_id, s));
            }
            for t in &d.tags {
                document.add_text(f.tags, t);
            }
            if let Err(e) = writer.add_document(document) {
                tracing::error!(error = %e, "could not index a document");
            }
            None
        }
        IndexOp::Delete { doc_id } => {
            writer.delete_term(Term::from_field_text(f.doc_id, &doc_id));
            None
        }
        IndexOp::DeleteSession {
            tenant_id,
            session_id,
        } => {
            writer.delete_term(Term::from_field_text(
                f.tenant_session,
                &schema::tenant_session(&tenant_id, &session_id),
            ));
            None
        }
        IndexOp::DeleteAll => {
            if let Err(e) = writer.delete_all_documents() {
                tracing::error!(error = %e, "could not clear the index");
            }
            None
        }
        IndexOp::Flush(reply) => Some(reply),
    }
}

fn indexer_loop(
    mut writer: IndexWriter,
    reader: IndexReader,
    fields: Fields,
    rx: Receiver<IndexOp>,
    shared: Arc<Shared>,
) {
    let mut pending = 0usize;
    let mut first_pending: Option<Instant> = None;
    let mut waiters: Vec<Sender<()>> = Vec::new();
    loop {
        let timeout = match first_pending {
            Some(t) => COMMIT_DELAY.saturating_sub(t.elapsed()),
            None => Duration::from_secs(3600),
        };
        let mut disconnected = false;
        match rx.recv_timeout(timeout) {
            Ok(op) => {
                shared.pending.fetch_sub(1, Ordering::Relaxed);
                if let Some(w) = apply(&mut writer, &fields, op) {
                    waiters.push(w);
                } else {
                    pending += 1;
                    first_pending.get_or_insert_with(Instant::now);
                }
                // Take what else is queued without waiting.
                while pending < COMMIT_EVERY_OPS {
                    match rx.try_recv() {
                        Ok(op) => {
                            shared.pending.fetch_sub(1, Ordering::Relaxed);
                            if let Some(w) = apply(&mut writer, &fields, op) {
                                waiters.push(w);
                            } else {
                                pending += 1;
                            }
                        }
                        Err(_) => break,
                    }
                }
            }
            Err(crossbeam_channel::RecvTimeoutError::Timeout) => {}
            Err(crossbeam_channel::RecvTimeoutError::Disconnected) => disconnected = true,
        }
        let due = pending >= COMMIT_EVERY_OPS
            || first_pending.is_some_and(|t| t.elapsed() >= COMMIT_DELAY)
            || !waiters.is_empty()
            || disconnected;
        if due && (pending > 0 || !waiters.is_empty()) {
            match writer.commit() {
                Ok(_) => {
                    if let Err(e) = reader.reload() {
                        tracing::error!(error = %e, "search reader reload failed");
                    }
                    *shared
                        .last_commit_at
                        .lock()
                        .unwrap_or_else(|p| p.into_inner()) = Some(crate::time::now_rfc3339());
                    shared.failed.store(false, Ordering::Relaxed);
                }
                Err(e) => {
                    shared.failed.store(true, Ordering::Relaxed);
                    tracing::error!(error = %e, "search index commit failed");
                }
            }
            pending = 0;
            first_pending = None;
            for w in waiters.drain(..) {
                let _ = w.send(());
            }
        }
        if disconnected {
            break;
        }
    }
    let _ = writer.wait_merging_threads();
}
