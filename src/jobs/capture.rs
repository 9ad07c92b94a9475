//! The `capture` job kind: turns the events capture requests stored into episodic memories.
//!
//! A job's input is the `seq` range of the events one request stored (`{"firstSeq", "lastSeq",
//! "count"}`). A worker that claims a job also takes over up to `COALESCE_JOBS` more small queued
//! capture jobs of the same tenant (oldest first, up to `COALESCE_EVENTS` events): under a stream
//! of single-event captures this turns thousands of tiny jobs into a few bulk ones. It reads the
//! events, renders their memory text off the writer thread, then writes in chunks of at most
//! `CHUNK_EVENTS` events (short writes keep capture latency low while jobs run). Each chunk's
//! write takes over its extra jobs (only those still queued — another worker may have claimed
//! one) and marks them completed, marks each event processed (skipping events forgotten
//! meanwhile; this puts it in the session and agent indexes), inserts its memory, settles its
//! novelty count (`store::novelty`), counts `events_processed`, enqueues auto-learn when due, and
//! hands the new memories to the indexer. Its writes use the writer's background lane.
//!
//! Invariants:
//! - Exactly once: an event gets a memory only in the write that flips its `processed_at` from
//!   NULL, and the memory id is derived from the event id (`INSERT OR IGNORE`), so a re-run after a
//!   crash creates nothing twice. A coalesced job is completed in the same transaction that
//!   processed its events.
//! - Index operations are submitted from inside the writer closure, so they reach the indexer in
//!   the same order as the writes (a forgotten session's delete can never be overtaken by an upsert
//!   of one of its memories).
//! - A re-run (attempt > 1) re-submits the range's existing memories to the index: the crash may
//!   have come between the SQLite commit and the index commit.

use super::{Job, JobHandler, KindSpec, Outcome};
use crate::app::AppState;
use crate::capture::{autolearn, render};
use crate::domain::{JobKind, JobStatus, KeyMode};
use crate::error::{Error, Result};
use crate::search::IndexOp;
use crate::store::{events, jobs, memories, novelty, usage, Conn};
use serde_json::{json, Value};
use std::sync::{Arc, Weak};

/// Most extra queued jobs one run takes over.
const COALESCE_JOBS: i64 = 256;
/// Stop taking extra jobs past this many events.
const COALESCE_EVENTS: i64 = 2_000;
/// Only jobs this small are taken over (a big batch job is worth a worker of its own).
const COALESCE_MAX_JOB: i64 = 64;
/// Most events one processing write handles.
const CHUNK_EVENTS: usize = 64;
/// A small job waits this long before reading, so the jobs of captures arriving meanwhile can be
/// taken over: under load, far fewer (and larger) processing writes and commits; when idle, a
/// memory is at most this much later.
const LINGER: std::time::Duration = std::time::Duration::from_millis(3);

struct Handler {
    // Weak: the handler lives in worker threads owned by the state itself.
    state: Weak<AppState>,
}

struct Prepared {
    seq: i64,
    mode: KeyMode,
    /// Novelty signature (`capture::salience::signature`).
    signature: i64,
    memory: memories::PreparedEpisodic,
}

/// A job's event range.
struct Range {
    job_id: String,
    first: i64,
    last: i64,
    count: i64,
}

fn range_of(job_id: &str, input: &Value) -> Result<Range> {
    let get = |k: &str| {
        input
            .get(k)
            .and_then(Value::as_i64)
            .ok_or_else(|| Error::Internal(format!("capture job input lacks {k}")))
    };
    let (first, last) = (get("firstSeq")?, get("lastSeq")?);
    Ok(Range {
        job_id: job_id.to_string(),
        first,
        last,
        count: get("count").unwrap_or(last - first + 1),
    })
}

/// Other queued capture jobs of the tenant, oldest first, within the coalescing bounds.
fn queued_siblings(conn: &Conn, tenant: &str, budget: i64) -> Result<Vec<Range>> {
    let mut out = Vec::new();
    let mut events = 0;
    for (id, input) in jobs::queued_inputs(conn, tenant, JobKind::Capture, COALESCE_JOBS)? {
        let Ok(range) = range_of(&id, &input) else {
            continue; // a malformed job fails on its own when a worker claims it
        };
        if range.count > COALESCE_MAX_JOB {
            continue;
        }
        if events + range.count > budget {
            break;
        }
        events += range.count;
        out.push(range);
    }
    Ok(out)
}

fn prepare(tenant: &str, rows: Vec<events::EventRow>) -> Vec<Prepared> {
    rows.into_iter()
        .map(|e| {
            let payload = e.payload_json();
            let signature = novelty::signature_of_value(e.event_type.as_str(), &payload);
            Prepared {
                seq: e.seq,
                signature,
                memory: memories::NewEpisodic {
                    id: memories::episodic_id(&e.id),
                    content: render::memory_text(
                        e.event_type.as_str(),
                        &payload,
                        Some(&e.created_at),
                    ),
                    agent_id: e.agent_id,
                    session_id: e.session_id,
                    event_id: e.id,
                    event_type: e.event_type.as_str().to_string(),
                    salience: e.salience,
                    created_at: e.created_at,
                }
                .prepare(tenant),
                mode: e.mode,
            }
        })
        .collect()
}

impl JobHandler for Handler {
    fn run(&self, job: &Job) -> Result<Outcome> {
        let state = self
            .state
            .upgrade()
            .ok_or_else(|| Error::Unavailable("the server is shutting down".into()))?;
        let own = range_of(&job.id, &job.input)?;
        let (first, last) = (own.first, own.last);
        if own.count <= COALESCE_MAX_JOB {
            std::thread::sleep(LINGER);
        }
        let tenant = job.tenant_id.clone();
        // Read this job's events and those of queued siblings (rendered here, off the writer).
        let (own_rows, siblings) = {
            let tenant = tenant.clone();
            let budget = COALESCE_EVENTS - own.count;
            state.db.read_blocking(|c| {
                let own_rows = events::unprocessed_in_range(c, &tenant, first, last)?;
                let mut siblings = Vec::new();
                for r in queued_siblings(c, &tenant, budget)? {
                    let rows = events::unprocessed_in_range(c, &tenant, r.first, r.last)?;
                    siblings.push((r.job_id, rows));
                }
                Ok((own_rows, siblings))
            })?
        };
        // Chunks: this job's events split by size; the taken-over jobs whole, packed together.
        let mut chunks: Vec<Chunk> = Vec::new();
        let mut own_prepared = prepare(&tenant, own_rows);
        while !own_prepared.is_empty() {
            let rest = own_prepared.split_off(own_prepared.len().min(CHUNK_EVENTS));
            chunks.push(Chunk {
                jobs: Vec::new(),
                events: std::mem::replace(&mut own_prepared, rest),
            });
        }
        for (id, rows) in siblings {
            let fits = chunks
                .last()
                .is_some_and(|c| !c.jobs.is_empty() && c.events.len() + rows.len() <= CHUNK_EVENTS);
            if !fits {
                chunks.push(Chunk {
                    jobs: Vec::new(),
                    events: Vec::new(),
                });
            }
            let chunk = chunks.last_mut().expect("a chunk");
            chunk.jobs.push((id, rows.len()));
            chunk.events.extend(prepare(&tenant, rows));
        }
        let rerun = job.attempts > 1;
        let mut processed = 0;
        let mut taken = 0;
        let mut learn_jobs = Vec::new();
        for (n, chunk) in chunks.into_iter().enumerate() {
            let every = state.config.auto_learn_every;
            let search = state.search.clone();
            let (job_id, tenant) = (job.id.clone(), tenant.clone());
            let reindex = rerun && n == 0;
            let (p, t, learn) = state.db.write_background(move |c| {
                let r = write_chunk(c, &tenant, &job_id, chunk, every, &search)?;
                if reindex {
                    reindex_range(c, &tenant, first, last, &search)?;
                }
                Ok(r)
            })?;
            processed += p;
            taken += t;
            learn_jobs.extend(learn);
        }
        if !learn_jobs.is_empty() {
            state.jobs.ring(super::LEARN);
        }
        Ok(Outcome {
            status: JobStatus::Completed,
            result: json!({
                "eventsProcessed": processed,
                "jobsCoalesced": taken,
                "learnJobIds": learn_jobs,
            }),
        })
    }
}

/// Events processed in one write, with the extra jobs (id, event count) they belong to.
struct Chunk {
    jobs: Vec<(String, usize)>,
    events: Vec<Prepared>,
}

/// One processing write (see the module docs). Returns (events processed, jobs taken over, the
/// auto-learn job enqueued).
fn write_chunk(
    c: &Conn,
    tenant: &str,
    job_id: &str,
    mut chunk: Chunk,
    every: u64,
    search: &crate::search::Search,
) -> Result<(i64, i64, Option<String>)> {
    let now = crate::time::now();
    let at = crate::time::rfc3339(now);
    // Events of jobs another worker claimed meanwhile are left to it.
    let own = chunk.events.len() - chunk.jobs.iter().map(|(_, n)| n).sum::<usize>();
    let mut batch: Vec<usize> = (0..own).collect();
    let mut offset = own;
    let mut taken = 0;
    for (id, n) in &chunk.jobs {
        if jobs::take_over(c, id, job_id, &at)? {
            taken += 1;
            batch.extend(offset..offset + n);
        }
        offset += n;
    }
    // Mark runs of consecutive events with one statement each; only the events it really
    // flipped (not forgotten or processed meanwhile) get a memory.
    let events_of = &mut chunk.events;
    batch.sort_by_key(|i| events_of[*i].seq);
    let mut per_mode: Vec<(KeyMode, i64)> = Vec::new();
    let mut signatures: Vec<i64> = Vec::with_capacity(batch.len());
    let mut start = 0;
    while start < batch.len() {
        let mut end = start + 1;
        while end < batch.len() && events_of[batch[end]].seq == events_of[batch[end - 1]].seq + 1 {
            end += 1;
        }
        let run = &batch[start..end];
        let (first, last) = (events_of[run[0]].seq, events_of[run[run.len() - 1]].seq);
        for seq in events::mark_processed(c, tenant, first, last, &at)? {
            let Ok(k) = run.binary_search_by_key(&seq, |i| events_of[*i].seq) else {
                continue;
            };
            let p = &mut events_of[run[k]];
            signatures.push(p.signature);
            if memories::insert_episodic(c, tenant, &p.memory)? {
                if let Some(doc) = p.memory.doc.take() {
                    search.submit(IndexOp::Upsert(Box::new(doc)));
                }
            }
            match per_mode.iter_mut().find(|(m, _)| *m == p.mode) {
                Some((_, n)) => *n += 1,
                None => per_mode.push((p.mode, 1)),
            }
        }
        start = end;
    }
    novelty::settle_all(c, tenant, &signatures)?;
    let processed: i64 = per_mode.iter().map(|(_, n)| n).sum();
    let before = autolearn::processed_total(c, tenant)?;
    for (mode, n) in &per_mode {
        usage::incr(c, tenant, mode.as_str(), usage::EVENTS_PROCESSED, *n, now)?;
    }
    let learn = autolearn::on_processed(c, tenant, before, processed, every)?;
    Ok((processed, taken, learn))
}

/// Re-submits the memories of a range's events to the index (after a crash; upserts replace).
fn reindex_range(
    c: &Conn,
    tenant: &str,
    first: i64,
    last: i64,
    search: &crate::search::Search,
) -> Result<()> {
    let ids: Vec<String> = events::ids_in_range(c, tenant, first, last)?
        .iter()
        .map(|id| memories::episodic_id(id))
        .collect();
    for id in ids {
        if let Some(m) = memories::get(c, tenant, &id)? {
            search.submit(IndexOp::Upsert(Box::new(m.search_doc())));
        }
    }
    Ok(())
}

/// How `capture` jobs run on this server.
pub fn spec(state: &Arc<AppState>) -> KindSpec {
    KindSpec {
        kind: super::CAPTURE,
        workers: state.config.capture_workers,
        handler: Arc::new(Handler {
            state: Arc::downgrade(state),
        }),
    }
}
