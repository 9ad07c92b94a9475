//! Learn: `POST /v1/learn` enqueues a compile job and answers 202 at once, or — with `?wait=true`
//! or `Prefer: wait=N` — waits for it (up to N seconds, default 30) and answers 200 with the real
//! counts, after the index made the new artifacts searchable. `GET /v1/learn/{jobId}` reports the
//! same shape at any time. The body is validated completely before anything is enqueued.

use crate::auth::Scope;
use crate::compiler::TYPES;
use crate::error::{Error, FieldError, Result};
use crate::http::{Ctx, Reply};
use crate::jobs::{self, learn::empty_result, JobRow, JobStatus};
use crate::store::jobs as queue;
use serde_json::{json, Map, Value};
use std::time::{Duration, Instant};

const MAX_ID_CHARS: usize = 256;
const MAX_EVENT_IDS: usize = 1000;
const DEFAULT_WAIT: u64 = 30;
const MAX_WAIT: u64 = 300;

fn id_field(body: &Map<String, Value>, key: &str, errors: &mut Vec<FieldError>) -> Value {
    match body.get(key) {
        None | Some(Value::Null) => Value::Null,
        Some(Value::String(s)) if !s.is_empty() && s.chars().count() <= MAX_ID_CHARS => json!(s),
        Some(Value::String(_)) => {
            errors.push(FieldError::new(key, "must be 1 to 256 characters long"));
            Value::Null
        }
        Some(_) => {
            errors.push(FieldError::new(key, "must be a string"));
            Value::Null
        }
    }
}

fn artifact_type(v: &Value, field: &str, errors: &mut Vec<FieldError>) -> Option<String> {
    match v.as_str() {
        Some(t) if TYPES.contains(&t) => Some(t.to_string()),
        _ => {
            errors.push(FieldError::new(
                field,
                format!("must be one of {}", TYPES.join(", ")),
            ));
            None
        }
    }
}

/// Validates a learn body and returns the normalised job input (without trigger and mode).
pub fn validate(body: &Map<String, Value>) -> Result<Value> {
    let mut errors = Vec::new();
    let agent = id_field(body, "agentId", &mut errors);
    let session = id_field(body, "sessionId", &mut errors);
    let mut event_ids = Value::Null;
    match body.get("eventIds") {
        None | Some(Value::Null) => {}
        Some(Value::Array(a)) if a.is_empty() => {
            errors.push(FieldError::new("eventIds", "must not be empty"))
        }
        Some(Value::Array(a)) if a.len() > MAX_EVENT_IDS => errors.push(FieldError::new(
            "eventIds",
            format!("at most {MAX_EVENT_IDS} ids"),
        )),
        Some(Value::Array(a)) => {
            let mut ids = Vec::new();
            for (n, v) in a.iter().enumerate() {
                match v.as_str() {
                    Some(s) if !s.is_empty() && s.len() <= MAX_ID_CHARS => ids.push(json!(s)),
                    _ => errors.push(FieldError::new(
                        format!("eventIds[{n}]"),
                        "must be a non-empty string id",
                    )),
                }
            }
            event_ids = Value::Array(ids);
        }
        Some(_) => errors.push(FieldError::new("eventIds", "must be an array of event ids")),
    }
    let scope = match body.get("scope") {
        None | Some(Value::Null) => "incremental",
        Some(Value::String(s)) if s == "incremental" || s == "full" => s.as_str(),
        Some(_) => {
            errors.push(FieldError::new("scope", "must be one of incremental, full"));
            "incremental"
        }
    };
    let mut options = Map::new();
    match body.get("options") {
        None | Some(Value::Null) => {}
        Some(Value::Object(o)) => {
            match o.get("maxEvents") {
                None | Some(Value::Null) => {}
                Some(v) => match v.as_i64() {
                    Some(n) if (1..=10_000_000).contains(&n) => {
                        options.insert("maxEvents".into(), json!(n));
                    }
                    _ => errors.push(FieldError::new(
                        "options.maxEvents",
                        "must be an integer between 1 and 10000000",
                    )),
                },
            }
            let mut types: Vec<String> = Vec::new();
            match o.get("artifactTypes") {
                // An empty list means every type, as no list does (the SDK sends `[]`).
                None | Some(Value::Null) => {}
                Some(Value::Array(a)) => {
                    for (n, v) in a.iter().enumerate() {
                        if let Some(t) =
                            artifact_type(v, &format!("options.artifactTypes[{n}]"), &mut errors)
                        {
                            if !types.contains(&t) {
                                types.push(t);
                            }
                        }
                    }
                }
                Some(_) => errors.push(FieldError::new(
                    "options.artifactTypes",
                    "must be an array of artifact types",
                )),
            }
            match o.get("artifactType") {
                None | Some(Value::Null) => {}
                Some(v) => {
                    if let Some(t) = artifact_type(v, "options.artifactType", &mut errors) {
                        if !types.contains(&t) {
                            types.push(t);
                        }
                    }
                }
            }
            if !types.is_empty() {
                options.insert("artifactTypes".into(), json!(types));
            }
            match o.get("minPatternStrength") {
                None | Some(Value::Null) => {}
                Some(v) => match v.as_f64() {
                    Some(x) if (0.0..=1.0).contains(&x) => {
                        options.insert("minPatternStrength".into(), json!(x));
                    }
                    _ => errors.push(FieldError::new(
                        "options.minPatternStrength",
                        "must be a number between 0 and 1",
                    )),
                },
            }
        }
        Some(_) => errors.push(FieldError::new("options", "must be an object")),
    }
    if !errors.is_empty() {
        return Err(Error::invalid(errors));
    }
    Ok(json!({
        "scope": scope,
        "agentId": agent,
        "sessionId": session,
        "eventIds": event_ids,
        "options": options,
    }))
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

/// The API shape of a learn job as stored.
pub fn job_json(row: &JobRow) -> Value {
    let status = row.status.as_str();
    let mut v = match &row.result {
        Some(r) if r.is_object() => r.clone(),
        _ => empty_result(&row.id, status),
    };
    v["status"] = json!(status);
    v["createdAt"] = json!(row.created_at);
    v["startedAt"] = json!(row.started_at);
    v["finishedAt"] = json!(row.finished_at);
    v["trigger"] = row.input.get("trigger").cloned().unwrap_or(Value::Null);
    if let Some(e) = &row.error {
        v["error"] = json!({"code": "learn_failed", "message": e});
    }
    v
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
    let mut input = validate(&body)?;
    input["trigger"] = json!("api");
    input["mode"] = json!(p.mode);
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
        return Ok(Reply::accepted(empty_result(&job_id, "queued")));
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
            let mut reply = Reply::ok(job_json(&row));
            if let Ok(v) = hyper::header::HeaderValue::from_str(&applied) {
                reply = reply.header(
                    hyper::header::HeaderName::from_static("preference-applied"),
                    v,
                );
            }
            return Ok(reply);
        }
        if Instant::now() >= deadline {
            return Ok(Reply::accepted(job_json(&row)));
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
    Ok(Reply::ok(job_json(&row)))
}
