//! The `capture` job kind: turns the events one capture request stored into episodic memories.
//!
//! A job's input is the `seq` range of its events (`{"firstSeq", "lastSeq", "count"}`). The job
//! reads the range's unprocessed events, renders their memory text off the writer thread, then in
//! ONE write: marks each event processed (skipping events forgotten meanwhile), inserts its memory,
//! counts `events_processed`, enqueues auto-learn when due, and hands the new memories to the
//! indexer.
//!
//! Invariants:
//! - Exactly once: an event gets a memory only in the write that flips its `processed_at` from
//!   NULL, and the memory id is derived from the event id (`INSERT OR IGNORE`), so a re-run after a
//!   crash creates nothing twice.
//! - Index operations are submitted from inside the writer closure, so they reach the indexer in
//!   the same order as the writes (a forgotten session's delete can never be overtaken by an upsert
//!   of one of its memories).
//! - A re-run (attempt > 1) re-submits the range's existing memories to the index: the crash may
//!   have come between the SQLite commit and the index commit.

use super::{Job, JobHandler, KindSpec, Outcome};
use crate::app::AppState;
use crate::capture::{autolearn, render};
use crate::search::IndexOp;
use crate::store::{events, memories, usage};
use serde_json::json;
use std::sync::{Arc, Weak};

struct Handler {
    // Weak: the handler lives in worker threads owned by the state itself.
    state: Weak<AppState>,
}

struct Prepared {
    seq: i64,
    mode: String,
    memory: memories::NewEpisodic,
}

impl JobHandler for Handler {
    fn run(&self, job: &Job) -> Result<Outcome, String> {
        let state = self
            .state
            .upgrade()
            .ok_or_else(|| "the server is shutting down".to_string())?;
        let range = |k: &str| {
            job.input
                .get(k)
                .and_then(serde_json::Value::as_i64)
                .ok_or_else(|| format!("capture job input lacks {k}"))
        };
        let (first, last) = (range("firstSeq")?, range("lastSeq")?);
        let tenant = job.tenant_id.clone();
        let rows = {
            let tenant = tenant.clone();
            state
                .db
                .read_blocking(|c| events::unprocessed_in_range(c, &tenant, first, last))
                .map_err(|e| e.to_string())?
        };
        let prepared: Vec<Prepared> = rows
            .iter()
            .map(|e| Prepared {
                seq: e.seq,
                mode: e.mode.clone(),
                memory: memories::NewEpisodic {
                    id: memories::episodic_id(&e.id),
                    agent_id: e.agent_id.clone(),
                    session_id: e.session_id.clone(),
                    event_id: e.id.clone(),
                    event_type: e.event_type.clone(),
                    content: render::memory_text(&e.event_type, &e.payload_json()),
                    salience: e.salience,
                    created_at: e.created_at.clone(),
                },
            })
            .collect();
        drop(rows);
        let rerun = job.attempts > 1;
        let every = state.config.auto_learn_every;
        let search = state.search.clone();
        let (processed, learn_job) = state
            .db
            .write_blocking(move |c| {
                let now = crate::time::now();
                let at = crate::time::rfc3339(now);
                let mut per_mode: Vec<(String, i64)> = Vec::new();
                let mut done: Vec<&str> = Vec::new();
                for p in &prepared {
                    if !events::mark_processed(c, p.seq, &at)? {
                        continue;
                    }
                    if memories::insert_episodic(c, &tenant, &p.memory)? {
                        search.submit(IndexOp::Upsert(Box::new(p.memory.search_doc(&tenant))));
                    }
                    match per_mode.iter_mut().find(|(m, _)| *m == p.mode) {
                        Some((_, n)) => *n += 1,
                        None => per_mode.push((p.mode.clone(), 1)),
                    }
                    done.push(p.memory.id.as_str());
                }
                if rerun {
                    // Memories this job stored before the crash may have missed the index.
                    let existing: Vec<String> = c
                        .prepare_cached(
                            "SELECT m.id FROM events e JOIN memories m
                               ON m.tenant_id = e.tenant_id AND m.event_id = e.id
                             WHERE e.seq BETWEEN ?1 AND ?2 AND e.tenant_id = ?3",
                        )?
                        .query_map(rusqlite::params![first, last, tenant], |r| r.get(0))?
                        .collect::<rusqlite::Result<_>>()?;
                    for id in existing.iter().filter(|id| !done.contains(&id.as_str())) {
                        if let Some(m) = memories::get(c, &tenant, id)? {
                            search.submit(IndexOp::Upsert(Box::new(m.search_doc())));
                        }
                    }
                }
                let processed: i64 = per_mode.iter().map(|(_, n)| n).sum();
                let before = autolearn::processed_total(c, &tenant)?;
                for (mode, n) in &per_mode {
                    usage::incr(c, &tenant, mode, usage::EVENTS_PROCESSED, *n, now)?;
                }
                let learn = autolearn::on_processed(c, &tenant, before, processed, every)?;
                Ok((processed, learn))
            })
            .map_err(|e| e.to_string())?;
        if learn_job.is_some() {
            state.jobs.ring(super::LEARN);
        }
        Ok(Outcome {
            status: "completed",
            result: json!({
                "eventsProcessed": processed,
                "memoriesCreated": processed,
                "learnJobId": learn_job,
            }),
        })
    }
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
