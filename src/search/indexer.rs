//! The indexer thread: the only owner of `IndexWriter`s (one per tenant with recent writes).
//!
//! It takes queued ops, applies each to its tenant's writer and commits every dirty writer when
//! 5,000 ops are pending, 200 ms after the first pending op, on a `Flush`, or at shutdown; then it
//! reloads those tenants' readers and answers flush waiters. Writers idle for a minute are closed
//! (a writer holds a few threads and a memory arena), so the thread count follows active tenants,
//! not all tenants.

use super::schema::{self, Fields};
use super::{IndexOp, SearchDoc, Shared};
use crossbeam_channel::{Receiver, RecvTimeoutError, Sender};
use std::collections::HashMap;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tantivy::indexer::IndexWriterOptions;
use tantivy::{doc, IndexWriter, TantivyDocument, Term};

/// Commit after this many pending operations…
const COMMIT_EVERY_OPS: usize = 5_000;
/// …or this long after the first pending one.
const COMMIT_DELAY: Duration = Duration::from_millis(200);
/// Writers unused this long are closed.
const WRITER_IDLE: Duration = Duration::from_secs(60);
const WRITER_HEAP: usize = 48 * 1024 * 1024;

struct Writer {
    writer: IndexWriter,
    dirty: bool,
    last_used: Instant,
}

struct State {
    shared: Arc<Shared>,
    fields: Fields,
    writers: HashMap<String, Writer>,
    /// Upserts waiting for their embeddings (embedded as one batch: one request to an external
    /// provider), added before any other operation or commit so the order of operations holds.
    upserts: Vec<SearchDoc>,
}

/// Upserts embedded together at most.
const EMBED_BATCH: usize = crate::embed::EXTERNAL_BATCH;

impl State {
    fn writer(&mut self, tenant_id: &str) -> Option<&mut Writer> {
        if !self.writers.contains_key(tenant_id) {
            let t = match self.shared.tenant_or_create(tenant_id) {
                Ok(t) => t,
                Err(e) => {
                    tracing::error!(error = %e, tenant = tenant_id, "cannot open a tenant index");
                    return None;
                }
            };
            let options = IndexWriterOptions::builder()
                .num_worker_threads(1)
                .num_merge_threads(1)
                .memory_budget_per_thread(WRITER_HEAP)
                .build();
            match t.index.writer_with_options(options) {
                Ok(writer) => {
                    self.writers.insert(
                        tenant_id.to_string(),
                        Writer {
                            writer,
                            dirty: false,
                            last_used: Instant::now(),
                        },
                    );
                }
                Err(e) => {
                    tracing::error!(error = %e, tenant = tenant_id, "cannot open an index writer");
                    self.shared.failed.store(true, Ordering::Relaxed);
                    return None;
                }
            }
        }
        let w = self.writers.get_mut(tenant_id)?;
        w.dirty = true;
        w.last_used = Instant::now();
        Some(w)
    }

    fn document(&self, d: &SearchDoc, vector: Option<&[f32]>) -> TantivyDocument {
        let f = &self.fields;
        let key = schema::doc_key(&d.doc_id);
        let mut document = doc!(
            f.tenant => d.tenant_id.as_str(),
            f.doc_id => d.doc_id.as_str(),
            f.kind => d.kind,
            f.section => d.section,
            f.text => d.text.as_str(),
            f.text_en => d.text.as_str(),
            f.created => d.created_ms,
            f.confidence => d.confidence.clamp(0.0, 1.0),
            f.salience => d.salience.clamp(0.0, 1.0),
            f.tokens => d.tokens,
            f.text_hash => schema::hash64(&d.text),
            f.section_no => schema::section_no(d.section),
            f.doc_key => key,
            f.recency => schema::recency_key(d.created_ms, key),
        );
        let (prefix, value) = schema::id_code(&d.doc_id).unwrap_or((0, 0));
        document.add_u64(f.id_prefix, prefix);
        document.add_u64(f.id_hi, (value >> 64) as u64);
        document.add_u64(f.id_lo, value as u64);
        if let Some(a) = &d.agent_id {
            document.add_text(f.agent, a);
        }
        if let Some(s) = &d.session_id {
            document.add_text(f.tenant_session, schema::tenant_session(&d.tenant_id, s));
        }
        for t in &d.tags {
            document.add_text(f.tags, t);
        }
        if let Some(v) = vector {
            document.add_bytes(f.vec, &crate::embed::quantize(v));
        }
        document
    }

    /// Embeds the waiting upserts and adds them. A provider that fails (after its retries) leaves
    /// them searchable by words alone, and says so in the log and in health.
    fn add_upserts(&mut self) {
        if self.upserts.is_empty() {
            return;
        }
        let docs = std::mem::take(&mut self.upserts);
        let texts: Vec<&str> = docs.iter().map(|d| d.text.as_str()).collect();
        let vectors = match self.shared.embedder.embed_batch(&texts) {
            Ok(v) => v,
            Err(e) => {
                tracing::error!(error = %e, documents = docs.len(),
                    "embedding failed; these documents are indexed for keyword search only");
                self.shared
                    .embed_failures
                    .fetch_add(docs.len() as u64, Ordering::Relaxed);
                vec![None; docs.len()]
            }
        };
        let doc_id_field = self.fields.doc_id;
        for (d, v) in docs.iter().zip(vectors) {
            let document = self.document(d, v.as_deref());
            if let Some(w) = self.writer(&d.tenant_id) {
                w.writer
                    .delete_term(Term::from_field_text(doc_id_field, &d.doc_id));
                if let Err(e) = w.writer.add_document(document) {
                    tracing::error!(error = %e, "could not index a document");
                }
            }
        }
    }

    /// Applies one op; returns a flush waiter, if it was a flush. Upserts wait in `upserts` until
    /// a batch is full or another op (or a commit) comes, so operations still apply in order.
    fn apply(&mut self, op: IndexOp) -> Option<Sender<()>> {
        let doc_id_field = self.fields.doc_id;
        let op = match op {
            IndexOp::Upsert(d) => {
                self.upserts.push(*d);
                if self.upserts.len() >= EMBED_BATCH {
                    self.add_upserts();
                }
                return None;
            }
            other => other,
        };
        self.add_upserts();
        match op {
            IndexOp::Upsert(_) => {}
            IndexOp::DeleteDoc { tenant_id, doc_id } => {
                if self.shared.tenant(&tenant_id).is_some() {
                    if let Some(w) = self.writer(&tenant_id) {
                        w.writer
                            .delete_term(Term::from_field_text(doc_id_field, &doc_id));
                    }
                }
            }
            IndexOp::Delete { doc_id } => {
                // Only indexes that hold the id (committed) or may hold it (an open writer with
                // uncommitted adds): a term lookup per tenant, not a writer per tenant.
                let term = Term::from_field_text(doc_id_field, &doc_id);
                for tenant_id in self.shared.tenant_ids() {
                    let holds = self.writers.contains_key(&tenant_id)
                        || self
                            .shared
                            .tenant(&tenant_id)
                            .is_some_and(|t| t.reader.searcher().doc_freq(&term).unwrap_or(1) > 0);
                    if !holds {
                        continue;
                    }
                    if let Some(w) = self.writer(&tenant_id) {
                        w.writer
                            .delete_term(Term::from_field_text(doc_id_field, &doc_id));
                    }
                }
            }
            IndexOp::DeleteSession {
                tenant_id,
                session_id,
            } => {
                let term = Term::from_field_text(
                    self.fields.tenant_session,
                    &schema::tenant_session(&tenant_id, &session_id),
                );
                if self.shared.tenant(&tenant_id).is_some() {
                    if let Some(w) = self.writer(&tenant_id) {
                        w.writer.delete_term(term);
                    }
                }
            }
            IndexOp::DeleteTenant { tenant_id } => {
                if self.shared.tenant(&tenant_id).is_some() {
                    if let Some(w) = self.writer(&tenant_id) {
                        if let Err(e) = w.writer.delete_all_documents() {
                            tracing::error!(error = %e, "could not clear a tenant index");
                        }
                    }
                }
            }
            IndexOp::DeleteAll => {
                for tenant_id in self.shared.tenant_ids() {
                    if let Some(w) = self.writer(&tenant_id) {
                        if let Err(e) = w.writer.delete_all_documents() {
                            tracing::error!(error = %e, "could not clear a tenant index");
                        }
                    }
                }
            }
            IndexOp::Flush(reply) => return Some(reply),
        }
        None
    }

    /// Commits every dirty writer and reloads its reader.
    fn commit(&mut self) {
        self.add_upserts();
        let mut ok = true;
        for (tenant_id, w) in self.writers.iter_mut().filter(|(_, w)| w.dirty) {
            w.dirty = false;
            match w.writer.commit() {
                Ok(_) => {
                    if let Some(t) = self.shared.tenant(tenant_id) {
                        if let Err(e) = t.reader.reload() {
                            tracing::error!(error = %e, "search reader reload failed");
                        }
                    }
                }
                Err(e) => {
                    ok = false;
                    tracing::error!(error = %e, tenant = %tenant_id, "search index commit failed");
                }
            }
        }
        *self
            .shared
            .last_commit_at
            .lock()
            .unwrap_or_else(|p| p.into_inner()) = Some(crate::time::now_rfc3339());
        self.shared.failed.store(!ok, Ordering::Relaxed);
    }

    fn close_idle(&mut self, all: bool) {
        let idle: Vec<String> = self
            .writers
            .iter()
            .filter(|(_, w)| !w.dirty && (all || w.last_used.elapsed() >= WRITER_IDLE))
            .map(|(t, _)| t.clone())
            .collect();
        for t in idle {
            if let Some(w) = self.writers.remove(&t) {
                if let Err(e) = w.writer.wait_merging_threads() {
                    tracing::warn!(error = %e, tenant = %t, "index merge did not finish");
                }
            }
        }
    }
}

pub(super) fn run(shared: Arc<Shared>, rx: Receiver<IndexOp>) {
    let mut st = State {
        fields: shared.fields,
        shared,
        writers: HashMap::new(),
        upserts: Vec::new(),
    };
    let mut pending = 0usize;
    let mut first_pending: Option<Instant> = None;
    let mut waiters: Vec<Sender<()>> = Vec::new();
    // Ops taken since the last commit: they leave `shared.pending` only once committed, so
    // health never calls a document searchable before it is (`api::health`, searchableSeq).
    let mut uncommitted = 0u64;
    loop {
        let timeout = match first_pending {
            Some(t) => COMMIT_DELAY.saturating_sub(t.elapsed()),
            None if !st.writers.is_empty() => WRITER_IDLE,
            None => Duration::from_secs(3600),
        };
        let mut disconnected = false;
        match rx.recv_timeout(timeout) {
            Ok(op) => {
                let mut next = Some(op);
                // Take what else is queued without waiting.
                while let Some(op) = next.take() {
                    uncommitted += 1;
                    match st.apply(op) {
                        Some(w) => waiters.push(w),
                        None => {
                            pending += 1;
                            first_pending.get_or_insert_with(Instant::now);
                        }
                    }
                    if pending < COMMIT_EVERY_OPS {
                        next = rx.try_recv().ok();
                    }
                }
            }
            Err(RecvTimeoutError::Timeout) => {}
            Err(RecvTimeoutError::Disconnected) => disconnected = true,
        }
        let due = pending >= COMMIT_EVERY_OPS
            || first_pending.is_some_and(|t| t.elapsed() >= COMMIT_DELAY)
            || !waiters.is_empty()
            || disconnected;
        if due && (pending > 0 || !waiters.is_empty() || disconnected) {
            st.commit();
            st.shared.pending.fetch_sub(uncommitted, Ordering::Relaxed);
            st.shared.committed.fetch_add(uncommitted, Ordering::SeqCst);
            uncommitted = 0;
            pending = 0;
            first_pending = None;
            for w in waiters.drain(..) {
                let _ = w.send(());
            }
        }
        if disconnected {
            break;
        }
        if first_pending.is_none() {
            st.close_idle(false);
        }
    }
    st.close_idle(true);
}
