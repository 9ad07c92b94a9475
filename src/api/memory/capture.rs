//! Capture: `POST /v1/capture` and `POST /v1/capture/batch` (docs/api.md "Memory family").
//!
//! Both answer 202 only after the events are committed (`capture::capture_validated`). A rejected
//! single capture stores nothing; a batch stores its valid events and reports the invalid ones, but
//! a batch whose `events` is missing, not an array, empty or over 1000 long stores nothing.
//!
//! Read your writes: with `?wait=searchable` the 202 waits until the request's events are
//! processed and the search index has committed them (at most `?timeout=` seconds, default 10,
//! at most 60), and says `"searchable": true`; past the timeout it answers anyway with
//! `"searchable": false`. Without it nothing waits.

use crate::auth::Scope;
use crate::capture::{self, ItemOutcome, MAX_BATCH};
use crate::error::{Error, Result};
use crate::http::{Ctx, Reply};
use crate::store::events::Stored;
use serde_json::{json, Value};

fn stored_json(s: &Stored) -> Value {
    json!({
        "eventId": s.event_id,
        "status": if s.duplicate { "duplicate" } else { "ingested" },
        "salienceScore": s.salience,
        "traceId": s.trace_id,
        "jobId": s.job_id,
    })
}

fn duplicate_reason(s: &Stored) -> Value {
    if s.duplicate {
        json!(format!(
            "idempotencyKey was already used by event {}; nothing new was stored",
            s.event_id
        ))
    } else {
        Value::Null
    }
}

/// The data of a single capture's 202, serialised straight to text (the hot path of capture).
#[derive(serde::Serialize)]
#[serde(rename_all = "camelCase")]
struct SingleReply<'a> {
    event_id: &'a str,
    idempotency_key: Option<&'a str>,
    job_id: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    reason: Option<String>,
    salience_score: f64,
    status: &'static str,
    trace_id: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    searchable: Option<bool>,
}

/// `?wait=searchable` (and its `?timeout=`), or `None` when the request does not wait.
fn searchable_wait(ctx: &Ctx) -> Result<Option<std::time::Duration>> {
    match ctx.query.one_of("wait", &["searchable"])? {
        None => Ok(None),
        Some(_) => {
            let secs = ctx.query.int("timeout", 0, 60)?.unwrap_or(10);
            Ok(Some(std::time::Duration::from_secs(secs as u64)))
        }
    }
}

/// Waits until the tenant's events `ids` are processed and the index has committed them, or
/// `limit` passes; whether they are searchable.
async fn wait_searchable(
    ctx: &Ctx,
    tenant: &str,
    ids: Vec<String>,
    limit: std::time::Duration,
) -> Result<bool> {
    let deadline = std::time::Instant::now() + limit;
    let mut pause = std::time::Duration::from_millis(2);
    loop {
        let (t, i) = (tenant.to_string(), ids.clone());
        let pending = ctx
            .state
            .db
            .read(move |c| crate::store::events::count_unprocessed(c, &t, &i))
            .await?;
        if pending == 0 {
            // Processed: the index ops are queued in order; a flush commits them and reloads.
            ctx.state.search.flush().await;
            return Ok(true);
        }
        let left = deadline.saturating_duration_since(std::time::Instant::now());
        if left.is_zero() {
            return Ok(false);
        }
        tokio::time::sleep(pause.min(left)).await;
        pause = (pause * 2).min(std::time::Duration::from_millis(50));
    }
}

pub async fn capture(ctx: Ctx) -> Result<Reply> {
    let principal = ctx.principal()?;
    principal.require(Scope::Write)?;
    let body = ctx.json()?;
    if !body.is_object() {
        return Err(Error::validation(
            "body",
            "must be a JSON object with type, sessionId and payload",
        ));
    }
    let wait = searchable_wait(&ctx)?;
    let event = capture::validate(body).map_err(Error::invalid)?;
    let key = event.idempotency_key.clone();
    let report = capture::capture_validated(&ctx.state, principal, vec![Ok(event)]).await?;
    let Some(ItemOutcome::Stored(s)) = report.items.first() else {
        return Err(Error::Internal("capture stored no result".into()));
    };
    let searchable = match wait {
        Some(limit) => {
            let tenant = principal.tenant_id.clone();
            Some(wait_searchable(&ctx, &tenant, vec![s.event_id.clone()], limit).await?)
        }
        None => None,
    };
    let reply = SingleReply {
        event_id: &s.event_id,
        idempotency_key: key.as_deref(),
        job_id: s.job_id.as_deref(),
        reason: duplicate_reason(s).as_str().map(str::to_string),
        salience_score: s.salience,
        status: if s.duplicate { "duplicate" } else { "ingested" },
        trace_id: &s.trace_id,
        searchable,
    };
    let text = serde_json::to_string(&reply).map_err(Error::internal)?;
    Ok(Reply::json_text(hyper::StatusCode::ACCEPTED, text))
}

pub async fn capture_batch(ctx: Ctx) -> Result<Reply> {
    let principal = ctx.principal()?;
    principal.require(Scope::Write)?;
    let mut body = ctx.json_object(false)?;
    let events = match body.remove("events") {
        None | Some(Value::Null) => return Err(Error::validation("events", "is required")),
        Some(Value::Array(a)) => a,
        Some(_) => return Err(Error::validation("events", "must be an array of events")),
    };
    if events.is_empty() {
        return Err(Error::validation(
            "events",
            format!("must hold 1 to {MAX_BATCH} events, got none"),
        ));
    }
    if events.len() > MAX_BATCH {
        return Err(Error::validation(
            "events",
            format!("must hold 1 to {MAX_BATCH} events, got {}", events.len()),
        ));
    }
    let wait = searchable_wait(&ctx)?;
    let total = events.len();
    let report = capture::capture_events(&ctx.state, principal, events).await?;
    let searchable = match wait {
        Some(limit) => {
            let ids = report
                .items
                .iter()
                .filter_map(|i| match i {
                    ItemOutcome::Stored(s) => Some(s.event_id.clone()),
                    ItemOutcome::Invalid(_) => None,
                })
                .collect();
            let tenant = principal.tenant_id.clone();
            Some(wait_searchable(&ctx, &tenant, ids, limit).await?)
        }
        None => None,
    };
    let results: Vec<Value> = report
        .items
        .iter()
        .enumerate()
        .map(|(index, item)| match item {
            ItemOutcome::Stored(s) => {
                let mut r = stored_json(s);
                r["index"] = json!(index);
                if s.duplicate {
                    r["reason"] = duplicate_reason(s);
                }
                r
            }
            ItemOutcome::Invalid(details) => {
                let err = Error::invalid(details.clone());
                json!({
                    "index": index,
                    "eventId": null,
                    "status": "error",
                    "error": {
                        "code": "validation_error",
                        "message": format!("events[{index}]: {}", err.public_message()),
                        "details": details.iter()
                            .map(|d| json!({"field": d.field, "message": d.message}))
                            .collect::<Vec<_>>(),
                    },
                })
            }
        })
        .collect();
    let mut out = json!({
        "batchId": crate::ids::new("batch"),
        "jobId": report.job_id,
        "queued": report.ingested,
        "errors": report.errors,
        "total": total,
        "summary": {
            "total": total,
            "ingested": report.ingested,
            "duplicates": report.duplicates,
            "errors": report.errors,
        },
        "results": results,
    });
    if let Some(b) = searchable {
        out["searchable"] = json!(b);
    }
    Ok(Reply::accepted(out))
}
