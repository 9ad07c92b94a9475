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
use crate::error::FieldError;
use crate::error::{Error, Result};
use crate::fields::Fields;
use crate::http::{Ctx, Reply};
use crate::store::events::Stored;
use serde::Serialize;
use serde_json::Value;

/// A stored event's line in a batch's `results`.
#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct StoredItem<'a> {
    index: usize,
    event_id: &'a str,
    status: &'static str,
    salience_score: f64,
    trace_id: &'a str,
    job_id: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    reason: Option<String>,
}

/// A refused event's line in a batch's `results`.
#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct InvalidItem<'a> {
    index: usize,
    event_id: Option<&'a str>,
    status: &'static str,
    error: ItemError<'a>,
}

#[derive(Serialize)]
struct ItemError<'a> {
    code: &'static str,
    message: String,
    details: &'a [FieldError],
}

#[derive(Serialize)]
#[serde(untagged)]
enum BatchItem<'a> {
    Stored(StoredItem<'a>),
    Invalid(InvalidItem<'a>),
}

#[derive(Serialize)]
struct BatchSummary {
    total: usize,
    ingested: u64,
    duplicates: u64,
    errors: u64,
}

/// The data of a batch's 202.
#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct BatchReply<'a> {
    batch_id: String,
    job_id: Option<&'a str>,
    queued: u64,
    errors: u64,
    total: usize,
    summary: BatchSummary,
    results: Vec<BatchItem<'a>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    searchable: Option<bool>,
}

fn status_of(s: &Stored) -> &'static str {
    if s.duplicate {
        "duplicate"
    } else {
        "ingested"
    }
}

fn duplicate_reason(s: &Stored) -> Option<String> {
    s.duplicate.then(|| {
        format!(
            "idempotencyKey was already used by event {}; nothing new was stored",
            s.event_id
        )
    })
}

/// The data of a single capture's 202, serialised straight to text (the hot path of capture).
#[derive(Serialize)]
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
        reason: duplicate_reason(s),
        salience_score: s.salience,
        status: status_of(s),
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
    let mut f = Fields::new(&body);
    match f.raw("events") {
        None => f.error("events", "is required"),
        Some(Value::Array(a)) if a.is_empty() => f.error(
            "events",
            format!("must hold 1 to {MAX_BATCH} events, got none"),
        ),
        Some(Value::Array(a)) if a.len() > MAX_BATCH => f.error(
            "events",
            format!("must hold 1 to {MAX_BATCH} events, got {}", a.len()),
        ),
        Some(Value::Array(_)) => {}
        Some(_) => f.error("events", "must be an array of events"),
    }
    f.finish()?;
    // Checked above: taken out rather than copied (a batch may be megabytes).
    let Some(Value::Array(events)) = body.remove("events") else {
        return Err(Error::Internal("a checked batch lost its events".into()));
    };
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
    let results = report
        .items
        .iter()
        .enumerate()
        .map(|(index, item)| match item {
            ItemOutcome::Stored(s) => BatchItem::Stored(StoredItem {
                index,
                event_id: &s.event_id,
                status: status_of(s),
                salience_score: s.salience,
                trace_id: &s.trace_id,
                job_id: s.job_id.as_deref(),
                reason: duplicate_reason(s),
            }),
            ItemOutcome::Invalid(details) => BatchItem::Invalid(InvalidItem {
                index,
                event_id: None,
                status: "error",
                error: ItemError {
                    code: "validation_error",
                    message: format!(
                        "events[{index}]: {}",
                        Error::invalid(details.clone()).public_message()
                    ),
                    details,
                },
            }),
        })
        .collect();
    Ok(Reply::accepted(BatchReply {
        batch_id: crate::ids::new("batch"),
        job_id: report.job_id.as_deref(),
        queued: report.ingested,
        errors: report.errors,
        total,
        summary: BatchSummary {
            total,
            ingested: report.ingested,
            duplicates: report.duplicates,
            errors: report.errors,
        },
        results,
        searchable,
    }))
}
