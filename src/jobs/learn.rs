//! The `learn` job kind: runs the memory compiler over a tenant's events and stores what it
//! produced (artifacts, semantic memories), then marks the events learned.
//!
//! Input: the POST /v1/learn body, normalised (`scope`, `agentId`, `sessionId`, `eventIds`,
//! `options.{maxEvents, artifactTypes, minPatternStrength}`), plus `trigger` (`api` `auto`
//! `sweep` `forget`) and `mode` (the usage counters to bump; when absent, as for auto jobs, the
//! mode most of the selected events were captured with, else `live`).
//!
//! Invariants:
//! - Learn jobs of one tenant never overlap (the queue's exclusive kind), so the read-compile-write
//!   sequence below sees no concurrent learn writes.
//! - Incremental equals full: every run recompiles the artifacts from *all* events in scope up to
//!   a cutoff (the newest event at the start, or the `maxEvents`-th selected one). What
//!   `incremental` adds is only the choice of events it marks learned — and whether there is
//!   anything to do at all. So any sequence of incremental runs ends with the same artifacts as
//!   one full run over the same events.
//! - Events are streamed ordered by session: memory is bounded by the compiler's aggregates.
//! - Cost control for automatic runs: a compile costs time proportional to all events in scope,
//!   so an `auto` run (enqueued every few captured events) compiles only when the new events
//!   are at least 1/`AUTO_MIN_SHARE` of the tenant's ingested events (a usage counter: one
//!   lookup, and an upper bound of the scope); otherwise it completes as `skipped` and
//!   leaves them unlearned for the periodic sweep or a later run. Total auto-learn work thus
//!   grows like N log N, not N². API, sweep and forget runs always compile.
//! - A run is idempotent: re-running it after a crash changes nothing twice (unchanged artifacts
//!   stay unchanged).

use super::{Job, JobHandler, KindSpec, Outcome};
use crate::app::AppState;
use crate::compiler::{self, Compiler, Options};
use crate::domain::{JobStatus, KeyMode};
use crate::error::Result;
use crate::search::{IndexOp, Search};
use crate::store::learn_rows::{self, Selection};
use crate::store::{artifacts, semantic, usage, Conn, Db};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use std::collections::{BTreeMap, HashSet};
use std::sync::Arc;
use std::time::Instant;

/// A learn job's input as stored: the `POST /v1/learn` body after validation plus `trigger` and
/// `mode`; automatic and forget jobs carry fewer keys. Read back strictly: a stored input of the
/// wrong shape fails its job with the reason, it is never guessed at.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct JobInput {
    #[serde(default)]
    pub scope: LearnScope,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub agent_id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub session_id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub event_ids: Option<Vec<String>>,
    #[serde(default, skip_serializing_if = "LearnOptions::is_empty")]
    pub options: LearnOptions,
    /// `api`, `auto`, `sweep` or `forget`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub trigger: Option<String>,
    /// The caller's key mode; `None`: decided by the events.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mode: Option<KeyMode>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub forgot_session_id: Option<String>,
}

/// Which events a run compiles: those not learned yet, or all of them.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum LearnScope {
    #[default]
    Incremental,
    Full,
}

/// `options` of a learn body.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct LearnOptions {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_events: Option<i64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub artifact_types: Option<Vec<String>>,
    /// One type (older clients); joins `artifact_types`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub artifact_type: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub min_pattern_strength: Option<f64>,
}

impl LearnOptions {
    pub fn is_empty(&self) -> bool {
        *self == LearnOptions::default()
    }
}

impl JobInput {
    /// An automatic run (`trigger`: `auto` or `sweep`) over what is not learned yet.
    pub fn automatic(trigger: &str) -> JobInput {
        JobInput {
            trigger: Some(trigger.to_string()),
            ..JobInput::default()
        }
    }

    pub fn to_value(&self) -> Value {
        serde_json::to_value(self).expect("a learn input serializes")
    }
}

/// A learn job's input, as the handler uses it.
#[derive(Clone, Debug, Default)]
pub struct LearnInput {
    pub full: bool,
    pub agent_id: Option<String>,
    pub session_id: Option<String>,
    pub event_ids: Vec<String>,
    pub max_events: Option<i64>,
    pub types: Vec<String>,
    pub min_strength: f64,
    pub trigger: String,
    /// `live` or `test`; `None`: decided by the events.
    pub mode: Option<String>,
}

impl LearnInput {
    /// Reads a stored input (`JobInput`); an input of the wrong shape is an error saying why.
    pub fn from_stored(v: &Value) -> Result<LearnInput> {
        let i: JobInput = serde_json::from_value(v.clone()).map_err(|e| {
            crate::error::Error::Internal(format!("the learn job's input is malformed: {e}"))
        })?;
        let mut types = i.options.artifact_types.unwrap_or_default();
        if let Some(t) = i.options.artifact_type {
            if !types.contains(&t) {
                types.push(t);
            }
        }
        Ok(LearnInput {
            full: i.scope == LearnScope::Full,
            agent_id: i.agent_id,
            session_id: i.session_id,
            event_ids: i.event_ids.unwrap_or_default(),
            max_events: i.options.max_events,
            types,
            min_strength: i
                .options
                .min_pattern_strength
                .unwrap_or(compiler::DEFAULT_MIN_STRENGTH),
            trigger: i.trigger.unwrap_or_else(|| "api".into()),
            mode: i.mode.map(|m| m.as_str().to_string()),
        })
    }
}

/// What a learn run reports, stored as its job's result (docs/api.md "Memory family").
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct LearnResult {
    pub job_id: String,
    pub run_id: String,
    pub status: String,
    pub artifacts: ArtifactCounts,
    pub stats: LearnStats,
    /// Why an automatic run compiled nothing.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub skipped: Option<String>,
}

#[derive(Clone, Debug, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ArtifactCounts {
    pub created: u64,
    pub updated: u64,
    pub unchanged: u64,
    pub by_type: BTreeMap<String, u64>,
}

#[derive(Clone, Debug, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct LearnStats {
    pub events_processed: i64,
    pub memories_processed: u64,
    pub patterns_found: u64,
    pub compilation_ms: u64,
    /// Only when something was compiled.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub events_compiled: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sessions_compiled: Option<u64>,
}

impl LearnResult {
    /// A run with zero counts (queued, or nothing to compile).
    pub fn empty(job_id: &str, status: &str) -> LearnResult {
        LearnResult {
            job_id: job_id.to_string(),
            run_id: job_id.to_string(),
            status: status.to_string(),
            artifacts: ArtifactCounts::default(),
            stats: LearnStats::default(),
            skipped: None,
        }
    }
}

/// Events marked learned per transaction.
const MARK_CHUNK: usize = 1_000;
/// Artifacts stored per transaction.
const ARTIFACTS_PER_WRITE: usize = 16;
/// Semantic memories stored per transaction.
const FACTS_PER_WRITE: usize = 64;

/// An `auto` run compiles only when at least 1/20 of the events in scope are new.
const AUTO_MIN_SHARE: i64 = 20;

struct Plan {
    mode: String,
    /// Events in scope (learned or not).
    total: i64,
    cutoff: i64,
    selected: i64,
    more: bool,
    focus: Option<HashSet<String>>,
}

fn plan(conn: &Conn, tenant: &str, i: &LearnInput) -> Result<Option<Plan>> {
    let sel = selection(tenant, i, !i.full);
    let (count, max_seq) = learn_rows::count_and_last(conn, &sel)?;
    let Some(mut cutoff) = max_seq else {
        return Ok(None);
    };
    let mut selected = count;
    let mut more = false;
    if let Some(n) = i.max_events.filter(|n| *n < count) {
        cutoff = learn_rows::nth_seq(conn, &sel, n - 1)?;
        selected = n;
        more = true;
    }
    let automatic = i.trigger == "auto" && i.agent_id.is_none();
    let total = if automatic {
        // An automatic run is enqueued every few processed events, and most of them are skipped
        // (`AUTO_MIN_SHARE`): counting every event in scope for each would cost O(events) per
        // run, O(events²) over a tenant's life (on PostgreSQL under a steady load, these counts
        // were most of the database's CPU). The tenant's ingested-events counter is one lookup
        // and an upper bound of its events in scope (events of forgotten sessions stay counted).
        crate::capture::autolearn::ingested_total(conn, tenant)?
    } else {
        learn_rows::count_in_scope(conn, tenant, i.agent_id.as_deref())?
    };
    if automatic && selected * AUTO_MIN_SHARE < total {
        // Skipped by `run`: nothing more to read.
        return Ok(Some(Plan {
            mode: String::new(),
            total,
            cutoff,
            selected,
            more,
            focus: None,
        }));
    }
    let focus = if i.session_id.is_some() || !i.event_ids.is_empty() {
        Some(learn_rows::sessions_upto(conn, &sel, cutoff)?)
    } else {
        None
    };
    let mode = match &i.mode {
        Some(m) => m.clone(),
        None => learn_rows::main_mode(conn, &sel, cutoff)?.unwrap_or_else(|| "live".to_string()),
    };
    Ok(Some(Plan {
        mode,
        total,
        cutoff,
        selected,
        more,
        focus,
    }))
}

/// The events a learn input selects (`unlearned`: only those not learned yet).
fn selection<'a>(tenant: &'a str, i: &'a LearnInput, unlearned: bool) -> Selection<'a> {
    Selection {
        tenant,
        agent_id: i.agent_id.as_deref(),
        session_id: i.session_id.as_deref(),
        event_ids: &i.event_ids,
        unlearned,
    }
}

/// Streams the events in scope (ordered by session, then sequence) through the compiler.
fn compile(conn: &Conn, tenant: &str, i: &LearnInput, plan: &Plan) -> Result<compiler::Output> {
    let mut c = Compiler::new(Options {
        types: i.types.clone(),
        min_strength: i.min_strength,
        focus: plan.focus.clone(),
    });
    learn_rows::for_each_session(
        conn,
        tenant,
        i.agent_id.as_deref(),
        plan.cutoff,
        |session, events| c.add_session(session, events),
    )?;
    Ok(c.finish())
}

#[derive(Default)]
struct Counts {
    created: u64,
    updated: u64,
    unchanged: u64,
    by_type: BTreeMap<&'static str, u64>,
    memories: u64,
}

fn scoped(agent: Option<&str>, sig: &str) -> String {
    match agent {
        Some(a) => format!("agent:{a}|{sig}"),
        None => sig.to_string(),
    }
}

/// Runs one learn job for `tenant`; returns the job's result object.
pub fn run(
    db: &Db,
    search: &Search,
    tenant: &str,
    job_id: &str,
    input: &LearnInput,
) -> Result<(LearnResult, bool)> {
    let started = Instant::now();
    let t = tenant.to_string();
    let i = input.clone();
    let planned = db.read_blocking(|c| plan(c, &t, &i))?;
    let forget = input.trigger == "forget";
    let Some(plan) = planned.filter(|p| p.selected > 0 || forget) else {
        if forget {
            // Nothing left in scope: every compiled artifact lost its evidence.
            let (t, agent) = (tenant.to_string(), input.agent_id.clone());
            let ops = db.write_background(move |c| {
                let mut ops = Vec::new();
                let now = crate::time::now_rfc3339();
                artifacts::deprecate_unsupported(
                    c,
                    &t,
                    agent.as_deref(),
                    &HashSet::new(),
                    &now,
                    &mut ops,
                )?;
                Ok(ops)
            })?;
            ops.into_iter().for_each(|op| search.submit(op));
        }
        return Ok((LearnResult::empty(job_id, "completed"), false));
    };
    if input.trigger == "auto" && plan.selected * AUTO_MIN_SHARE < plan.total {
        let mut r = LearnResult::empty(job_id, "completed");
        r.skipped = Some(format!(
            "{} new of {} events: an automatic run waits for more, or for the sweep",
            plan.selected, plan.total
        ));
        return Ok((r, false));
    }
    let out = db.read_blocking(|c| compile(c, tenant, input, &plan))?;
    let cutoff = plan.cutoff;
    let partial = plan.more;
    let mode = plan.mode.clone();
    // Stored in slices of their own transactions, so no one write holds the writer (and the
    // requests queued behind it) for long; a crash between slices leaves a partly applied run
    // that the next run completes (applying an artifact is idempotent).
    let out = Arc::new(out);
    let agent = input.agent_id.clone();
    let keep: HashSet<(String, String)> = out
        .artifacts
        .iter()
        .map(|d| {
            let key = scoped(agent.as_deref(), &d.signature);
            (d.artifact_type.to_string(), key)
        })
        .collect();
    let touched: Vec<usize> = (0..out.artifacts.len())
        .filter(|k| out.artifacts[*k].touched)
        .collect();
    let mut counts = Counts::default();
    for slice in touched.chunks(ARTIFACTS_PER_WRITE) {
        let (out, t, agent, slice) = (
            out.clone(),
            tenant.to_string(),
            agent.clone(),
            slice.to_vec(),
        );
        let (applied, ops) = db.write_background(move |c| {
            let now = crate::time::now_rfc3339();
            let mut ops: Vec<IndexOp> = Vec::new();
            let mut applied = Vec::with_capacity(slice.len());
            for k in slice {
                let d = &out.artifacts[k];
                let key = scoped(agent.as_deref(), &d.signature);
                let a = artifacts::apply(c, &t, agent.as_deref(), &key, d, &now, &mut ops)?;
                applied.push((d.artifact_type, a));
            }
            Ok((applied, ops))
        })?;
        for (artifact_type, a) in applied {
            match a {
                artifacts::Applied::Created | artifacts::Applied::Superseded => {
                    counts.created += 1;
                    *counts.by_type.entry(artifact_type).or_default() += 1;
                }
                artifacts::Applied::Updated => {
                    counts.updated += 1;
                    *counts.by_type.entry(artifact_type).or_default() += 1;
                }
                artifacts::Applied::Unchanged => counts.unchanged += 1,
            }
        }
        ops.into_iter().for_each(|op| search.submit(op));
    }
    if !out.merged_tasks.is_empty() {
        // One task said several ways is one task: schemas and policies learned earlier under a
        // statement now merged into another are superseded by the merged task's (docs/learn.md).
        let (merged, t, agent) = (out.merged_tasks.clone(), tenant.to_string(), agent.clone());
        let ops = db.write_background(move |c| {
            let now = crate::time::now_rfc3339();
            let mut ops: Vec<IndexOp> = Vec::new();
            for (from, to) in &merged {
                let (f, n) = (scoped(agent.as_deref(), from), scoped(agent.as_deref(), to));
                artifacts::supersede_renamed(c, &t, "task_schema", (&f, &n), true, &now, &mut ops)?;
                let (f, n) = (format!("{f} | "), format!("{n} | "));
                artifacts::supersede_renamed(
                    c,
                    &t,
                    "decision_policy",
                    (&f, &n),
                    false,
                    &now,
                    &mut ops,
                )?;
            }
            Ok(ops)
        })?;
        ops.into_iter().for_each(|op| search.submit(op));
    }
    for slice in (0..out.facts.len())
        .collect::<Vec<_>>()
        .chunks(FACTS_PER_WRITE)
    {
        let (out, t, agent, slice) = (
            out.clone(),
            tenant.to_string(),
            agent.clone(),
            slice.to_vec(),
        );
        let ops = db.write_background(move |c| {
            let now = crate::time::now_rfc3339();
            let mut ops: Vec<IndexOp> = Vec::new();
            for k in slice {
                let f = &out.facts[k];
                let key = scoped(agent.as_deref(), &f.key);
                semantic::apply(c, &t, agent.as_deref(), &key, f, &now, &mut ops)?;
            }
            Ok(ops)
        })?;
        ops.into_iter().for_each(|op| search.submit(op));
    }
    counts.memories = out.facts.len() as u64;
    let (t, forget) = (
        tenant.to_string(),
        input.trigger == "forget" && input.types.is_empty(),
    );
    let (created, updated) = (counts.created as i64, counts.updated as i64);
    let ops = db.write_background(move |c| {
        let mut ops: Vec<IndexOp> = Vec::new();
        if forget {
            let now = crate::time::now_rfc3339();
            artifacts::deprecate_unsupported(c, &t, agent.as_deref(), &keep, &now, &mut ops)?;
        }
        let at = crate::time::now();
        usage::incr(c, &t, &mode, usage::COMPILATIONS, 1, at)?;
        usage::incr(c, &t, &mode, usage::ARTIFACTS_CREATED, created, at)?;
        usage::incr(c, &t, &mode, usage::ARTIFACTS_UPDATED, updated, at)?;
        Ok(ops)
    })?;
    for op in ops {
        search.submit(op);
    }
    // Events are marked learned after the artifacts are stored, in chunks of their own
    // transactions: one statement over every event would hold each touched page in the
    // savepoint journal at once. A crash in between leaves events unlearned; the next run
    // recompiles (idempotently) and marks them.
    let mut marked = 0usize;
    loop {
        let (t, i) = (tenant.to_string(), input.clone());
        let n = db.write_background(move |c| {
            let now = crate::time::now_rfc3339();
            learn_rows::mark_learned(c, &selection(&t, &i, true), cutoff, MARK_CHUNK, &now)
        })?;
        marked += n;
        if n < MARK_CHUNK {
            break;
        }
    }
    let processed = if input.full {
        out_events(&plan)
    } else {
        marked as i64
    };
    let status = if partial { "partial" } else { "completed" };
    let result = LearnResult {
        status: status.to_string(),
        artifacts: ArtifactCounts {
            created: counts.created,
            updated: counts.updated,
            unchanged: counts.unchanged,
            by_type: counts
                .by_type
                .iter()
                .map(|(k, v)| (k.to_string(), *v))
                .collect(),
        },
        stats: LearnStats {
            events_processed: processed,
            memories_processed: counts.memories,
            patterns_found: out.candidates,
            compilation_ms: started.elapsed().as_millis() as u64,
            events_compiled: Some(out.events),
            sessions_compiled: Some(out.sessions),
        },
        ..LearnResult::empty(job_id, status)
    };
    Ok((result, partial))
}

fn out_events(plan: &Plan) -> i64 {
    plan.selected
}

struct Handler {
    db: Db,
    search: Search,
}

impl JobHandler for Handler {
    fn run(&self, job: &Job) -> Result<Outcome> {
        let input = LearnInput::from_stored(&job.input)?;
        let (result, partial) = run(&self.db, &self.search, &job.tenant_id, &job.id, &input)?;
        Ok(Outcome {
            status: if partial {
                JobStatus::Partial
            } else {
                JobStatus::Completed
            },
            result: serde_json::to_value(result)?,
        })
    }
}

/// Enqueues, within the caller's transaction, the recompilation that follows forgetting a
/// session: a full learn of the tenant whose artifacts no longer supported by the remaining
/// events are deprecated. Returns the job id; ring `jobs::LEARN` after the commit.
pub fn forget_session_evidence(conn: &Conn, tenant_id: &str, session_id: &str) -> Result<String> {
    crate::store::jobs::enqueue(
        conn,
        tenant_id,
        super::LEARN,
        &JobInput {
            scope: LearnScope::Full,
            trigger: Some("forget".into()),
            forgot_session_id: Some(session_id.to_string()),
            ..JobInput::default()
        }
        .to_value(),
    )
}

/// How `learn` jobs run on this server.
pub fn spec(state: &Arc<AppState>) -> KindSpec {
    KindSpec {
        kind: super::LEARN,
        workers: state.config.learn_workers,
        handler: Arc::new(Handler {
            db: state.db.clone(),
            search: state.search.clone(),
        }),
    }
}
