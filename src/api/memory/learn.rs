//! Learn: `POST /v1/learn` enqueues a compile job and answers 202 at once, or — with `?wait=true`
//! or `Prefer: wait=N` — waits for it (up to N seconds, default 30) and answers 200 with the real
//! counts, after the index made the new artifacts searchable. `GET /v1/learn/{jobId}` reports the
//! same shape at any time. The body is validated completely before anything is enqueued.

use crate::auth::Scope;
use crate::compiler::TYPES;
use crate::error::{Error, Result};
use crate::fields::Fields;
use crate::http::{Ctx, Reply};
use crate::jobs::learn::{JobInput, LearnOptions, LearnResult, LearnScope};
use crate::jobs::{self, JobRow, JobStatus};
use crate::store::jobs as queue;
use serde::Serialize;
use serde_json::{Map, Value};
use std::time::{Duration, Instant};

const MAX_ID_CHARS: usize = 256;
const MAX_EVENT_IDS: usize = 1000;
const DEFAULT_WAIT: u64 = 30;
const MAX_WAIT: u64 = 300;

/// A validated `POST /v1/learn` body: the job's input without `trigger` and `mode`.
pub fn from_body(body: &Map<String, Value>) -> Result<JobInput> {
    let mut f = Fields::new(body);
    let agent_id = f.id("agentId", MAX_ID_CHARS);
    let session_id = f.id("sessionId", MAX_ID_CHARS);
    let event_ids = match f.raw("eventIds") {
        None => None,
        Some(Value::Array(a)) if a.is_empty() => {
            f.error("eventIds", "must not be empty");
            None
        }
        Some(Value::Array(a)) if a.len() > MAX_EVENT_IDS => {
            f.error("eventIds", format!("at most {MAX_EVENT_IDS} ids"));
            None
        }
        Some(Value::Array(a)) => {
            let mut ids = Vec::new();
            for (n, v) in a.iter().enumerate() {
                match v.as_str() {
                    Some(s) if !s.is_empty() && s.len() <= MAX_ID_CHARS => ids.push(s.to_string()),
                    _ => f.error(&format!("eventIds[{n}]"), "must be a non-empty string id"),
                }
            }
            Some(ids)
        }
        Some(_) => {
            f.error("eventIds", "must be an array of event ids");
            None
        }
    };
    let scope = match f.one_of("scope", &["incremental", "full"], "incremental") {
        "full" => LearnScope::Full,
        _ => LearnScope::Incremental,
    };
    let mut options = LearnOptions::default();
    if let Some(mut o) = f.object("options") {
        options.max_events = match o.raw("maxEvents") {
            None => None,
            Some(v) => match v.as_i64() {
                Some(n) if (1..=10_000_000).contains(&n) => Some(n),
                _ => {
                    o.error("maxEvents", "must be an integer between 1 and 10000000");
                    None
                }
            },
        };
        let mut types: Vec<String> = Vec::new();
        match o.raw("artifactTypes") {
            // An empty list means every type, as no list does (the SDK sends `[]`).
            None => {}
            Some(Value::Array(a)) => {
                for (n, v) in a.iter().enumerate() {
                    if let Some(t) = artifact_type(&mut o, v, &format!("artifactTypes[{n}]")) {
                        if !types.contains(&t) {
                            types.push(t);
                        }
                    }
                }
            }
            Some(_) => o.error("artifactTypes", "must be an array of artifact types"),
        }
        if let Some(v) = o.raw("artifactType") {
            if let Some(t) = artifact_type(&mut o, v, "artifactType") {
                if !types.contains(&t) {
                    types.push(t);
                }
            }
        }
        options.artifact_types = (!types.is_empty()).then_some(types);
        options.min_pattern_strength = o.number(
            "minPatternStrength",
            0.0,
            1.0,
            "must be a number between 0 and 1",
        );
        f.merge(o);
    }
    f.finish()?;
    Ok(JobInput {
        scope,
        agent_id,
        session_id,
        event_ids,
        options,
        ..JobInput::default()
    })
}

fn artifact_type(f: &mut Fields<'_>, v: &Value, field: &str) -> Option<String> {
    match v.as_str() {
        Some(t) if TYPES.contains(&t) => Some(t.to_string()),
        _ => {
            f.error(field, format!("must be one of {}", TYPES.join(", ")));
            None
        }
    }
}

/// How long the caller asked to wait: `?wait=true|false|N` or `Prefer: wait=N`; without either,
/// the operator's `--learn-wait-secs` (0: answer at once).
fn wait_for(ctx: &Ctx) -> Result<Option<Duration>> {
    let asked = asked_wait(ctx)?;
    if asked.is_some() || ctx.query.get("wait").is_some() {
        return Ok(asked);
    }
    let default = ctx.state.config.learn_wait;
    Ok((!default.is_zero()).then(|| default.min(Duration::from_secs(MAX_WAIT))))
}

fn asked_wait(ctx: &Ctx) -> Result<Option<Duration>> {
    if let Some(v) = ctx.query.get("wait") {
        return match v {
            "true" | "1" | "yes" => Ok(Some(Duration::from_secs(DEFAULT_WAIT))),
            "false" | "0" | "no" => Ok(None),
            _ => Err(Error::bad_query(
                "wait",
                format!("must be true or false, got '{v}'"),
            )),
        };
    }
    // RFC 7240: preferences are comma separated; a malformed one is ignored.
    for h in ctx.headers.get_all("prefer") {
        let Ok(h) = h.to_str() else { continue };
        for pref in h.split([',', ';']) {
            let pref = pref.trim();
            if let Some(n) = pref.strip_prefix("wait=") {
                if let Ok(n) = n.trim().trim_matches('"').parse::<u64>() {
                    return Ok(Some(Duration::from_secs(n.min(MAX_WAIT))));
                }
            }
        }
    }
    Ok(None)
}

/// A learn job as the routes answer it: its run's result (zero counts until it has one) with
/// the job's status, times, trigger and error.
#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
pub struct LearnJobOut<'a> {
    /// Its `status` is the job's.
    #[serde(flatten)]
    result: LearnResult,
    created_at: &'a str,
    started_at: Option<&'a str>,
    finished_at: Option<&'a str>,
    trigger: Option<&'a Value>,
    #[serde(skip_serializing_if = "Option::is_none")]
    error: Option<LearnError<'a>>,
}

#[derive(Serialize)]
struct LearnError<'a> {
    code: &'static str,
    message: &'a str,
}

impl<'a> From<&'a JobRow> for LearnJobOut<'a> {
    fn from(row: &'a JobRow) -> LearnJobOut<'a> {
        let status = row.status.as_str();
        let stored = row
            .result
            .as_ref()
            .map(|r| serde_json::from_value(r.clone()));
        let mut result = match stored {
            Some(Ok(r)) => r,
            Some(Err(e)) => {
                tracing::warn!(job = %row.id, "a learn job's stored result is unreadable: {e}");
                LearnResult::empty(&row.id, status)
            }
            None => LearnResult::empty(&row.id, status),
        };
        result.status = status.to_string();
        LearnJobOut {
            result,
            created_at: &row.created_at,
            started_at: row.started_at.as_deref(),
            finished_at: row.finished_at.as_deref(),
            trigger: row.input.get("trigger").filter(|t| !t.is_null()),
            error: row.error.as_deref().map(|message| LearnError {
                code: "learn_failed",
                message,
            }),
        }
    }
}

fn finished(status: JobStatus) -> bool {
    matches!(
        status,
        JobStatus::Completed | JobStatus::Partial | JobStatus::Failed
    )
}

pub async fn learn(ctx: Ctx) -> Result<Reply> {
    let p = ctx.principal()?;
    p.require(Scope::Write)?;
    let body = ctx.json_object(true)?;
    let wait = wait_for(&ctx)?;
    let mut input = from_body(&body)?;
    input.trigger = Some("api".into());
    input.mode = Some(p.mode.parse().map_err(Error::Internal)?);
    let input = input.to_value();
    let tenant = p.tenant_id.clone();
    let state = ctx.state.clone();
    let job_id = {
        let (tenant, input) = (tenant.clone(), input.clone());
        state
            .db
            .write(move |c| queue::enqueue(c, &tenant, jobs::LEARN, &input))
            .await?
    };
    state.jobs.ring(jobs::LEARN);
    let Some(wait) = wait else {
        return Ok(Reply::accepted(LearnResult::empty(&job_id, "queued")));
    };
    let deadline = Instant::now() + wait;
    let mut pause = Duration::from_millis(5);
    loop {
        let (t, id) = (tenant.clone(), job_id.clone());
        let row = state
            .db
            .read(move |c| queue::get(c, &t, &id))
            .await?
            .ok_or_else(|| Error::Internal("a learn job vanished".into()))?;
        if finished(row.status) {
            state.search.flush().await;
            let applied = format!("wait={}", wait.as_secs());
            let mut reply = Reply::ok(LearnJobOut::from(&row));
            if let Ok(v) = hyper::header::HeaderValue::from_str(&applied) {
                reply = reply.header(
                    hyper::header::HeaderName::from_static("preference-applied"),
                    v,
                );
            }
            return Ok(reply);
        }
        if Instant::now() >= deadline {
            return Ok(Reply::accepted(LearnJobOut::from(&row)));
        }
        tokio::time::sleep(pause.min(deadline.saturating_duration_since(Instant::now()))).await;
        pause = (pause * 2).min(Duration::from_millis(100));
    }
}

pub async fn learn_status(ctx: Ctx) -> Result<Reply> {
    let p = ctx.principal()?;
    p.require_any(&[Scope::Read, Scope::Write])?;
    let (tenant, id) = (p.tenant_id.clone(), ctx.param(0).to_string());
    let row = ctx
        .state
        .db
        .read(move |c| queue::get(c, &tenant, &id))
        .await?
        .filter(|r| r.kind == jobs::LEARN)
        .ok_or_else(|| Error::not_found("learn job"))?;
    Ok(Reply::ok(LearnJobOut::from(&row)))
}
