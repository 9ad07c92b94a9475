//! The capture pipeline's front half: validating events and storing them durably.
//!
//! `capture_events` is the one way events enter engram — the HTTP handlers and in-server callers
//! (agent invocation) both use it. Its invariants:
//! - Every event is validated on its own; errors name the field (docs/api.md "Memory family").
//! - The monthly event quota is reserved for the valid events before anything is written.
//! - The valid events, their capture job and the usage counters are written by one closure on the
//!   writer thread, combined with concurrent requests (`combiner`); the function returns only after
//!   that transaction committed, so an acknowledged event is durable.
//! - The capture workers are woken only after the commit.

pub mod autolearn;
pub mod backlog;
pub mod combiner;
pub mod render;
pub use crate::salience;

use crate::app::AppState;
use crate::auth::Principal;
use crate::error::{Error, FieldError, Result};
use crate::fields::Fields;
use crate::limits::Quota;
use crate::store::events::{self, NewEvent};
use serde_json::Value;
use std::sync::Arc;

/// The event types of docs/api.md "Memory family".
pub const EVENT_TYPES: [&str; 15] = [
    "message",
    "tool_call",
    "tool_result",
    "file_edit",
    "test_run",
    "command_exec",
    "browser_action",
    "api_result",
    "outcome",
    "observation",
    "file_change",
    "decision",
    "error",
    "state_change",
    "feedback",
];

/// Most events in one batch.
pub const MAX_BATCH: usize = 1000;
/// Longest `sessionId`, `idempotencyKey` and `metadata.agentId` (characters).
pub const MAX_ID_CHARS: usize = 256;
/// Largest payload plus metadata of one event (bytes of JSON), also inside a batch.
pub const MAX_EVENT_BYTES: usize = 1024 * 1024;

fn id_field(f: &mut Fields<'_>, field: &str, required: bool) -> Option<String> {
    match f.raw(field) {
        None => {
            if required {
                f.error(field, "is required");
            }
            None
        }
        Some(Value::String(s)) => {
            let n = s.chars().count();
            if n == 0 || n > MAX_ID_CHARS {
                f.error(
                    field,
                    format!("must be 1 to {MAX_ID_CHARS} characters long, got {n}"),
                );
                None
            } else {
                Some(s.clone())
            }
        }
        Some(other) => {
            f.error(field, format!("must be a string, got {}", json_type(other)));
            None
        }
    }
}

fn json_type(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

/// Validates one event (a JSON value from a request) into a `NewEvent`, or every problem found.
pub fn validate(v: Value) -> std::result::Result<NewEvent, Vec<FieldError>> {
    let mut m = match v {
        Value::Object(m) => m,
        other => {
            return Err(vec![FieldError::new(
                "event",
                format!("must be a JSON object, got {}", json_type(&other)),
            )])
        }
    };
    let mut f = Fields::new(&m);
    let event_type = match f.raw("type") {
        None => {
            f.error("type", "is required");
            None
        }
        Some(Value::String(t)) => match EVENT_TYPES.iter().find(|k| *k == t) {
            Some(k) => Some(*k),
            None => {
                f.error(
                    "type",
                    format!("must be one of {}, got '{t}'", EVENT_TYPES.join(", ")),
                );
                None
            }
        },
        Some(other) => {
            f.error(
                "type",
                format!("must be a string, got {}", json_type(other)),
            );
            None
        }
    };
    let session_id = id_field(&mut f, "sessionId", true);
    match f.raw("payload") {
        None => f.error("payload", "is required"),
        Some(Value::Object(_)) => {}
        Some(other) => f.error(
            "payload",
            format!("must be an object, got {}", json_type(other)),
        ),
    }
    let mut agent_id = None;
    match f.raw("metadata") {
        None => {}
        Some(Value::Object(md)) => match md.get("agentId") {
            None | Some(Value::Null) => {}
            Some(Value::String(a)) if (1..=MAX_ID_CHARS).contains(&a.chars().count()) => {
                agent_id = Some(a.clone())
            }
            Some(Value::String(_)) => f.error(
                "metadata.agentId",
                format!("must be 1 to {MAX_ID_CHARS} characters long"),
            ),
            Some(other) => f.error(
                "metadata.agentId",
                format!("must be a string, got {}", json_type(other)),
            ),
        },
        Some(other) => f.error(
            "metadata",
            format!("must be an object, got {}", json_type(other)),
        ),
    }
    let idempotency_key = id_field(&mut f, "idempotencyKey", false);
    if !f.errors.is_empty() {
        return Err(f.errors);
    }
    let (Some(event_type), Some(session_id)) = (event_type, session_id) else {
        return Err(f.errors);
    };
    // Valid: the payload and metadata move out of the request without a copy.
    let Some(Value::Object(payload)) = m.remove("payload") else {
        return Err(vec![FieldError::new("payload", "is required")]);
    };
    let metadata = match m.remove("metadata") {
        Some(Value::Object(mut md)) => {
            if md.get("agentId") == Some(&Value::Null) {
                md.remove("agentId");
            }
            Some(md)
        }
        _ => None,
    };
    let base_salience_of = |len: usize| salience::base(event_type, &payload, len);
    let signature = salience::signature(event_type, &payload);
    let payload_text = serde_json::to_string(&payload).unwrap_or_else(|_| "{}".into());
    let base_salience = base_salience_of(payload_text.len());
    let metadata_text = metadata.map(|md| Value::Object(md).to_string());
    let bytes = payload_text.len() + metadata_text.as_ref().map_or(0, String::len);
    if bytes > MAX_EVENT_BYTES {
        return Err(vec![FieldError::new(
            "payload",
            format!(
                "payload and metadata are {bytes} bytes; one event may have at most \
                 {MAX_EVENT_BYTES}"
            ),
        )]);
    }
    Ok(NewEvent {
        event_type,
        base_salience,
        signature,
        session_id,
        agent_id,
        payload: payload_text,
        metadata: metadata_text,
        idempotency_key,
    })
}

/// One event's outcome.
#[derive(Debug)]
pub enum ItemOutcome {
    Stored(events::Stored),
    Invalid(Vec<FieldError>),
}

/// What `capture_events` did.
#[derive(Debug)]
pub struct CaptureReport {
    /// One outcome per input event, in input order.
    pub items: Vec<ItemOutcome>,
    /// The capture job of the newly stored events (`None` when nothing new was stored).
    pub job_id: Option<String>,
    pub ingested: u64,
    pub duplicates: u64,
    pub errors: u64,
}

/// Validates and stores events for `principal`'s tenant (see the module docs). Invalid events are
/// reported in the result, not as an error; the error cases are a quota that cannot hold the
/// valid events (429, nothing stored) and storage failures.
pub async fn capture_events(
    state: &Arc<AppState>,
    principal: &Principal,
    events: Vec<Value>,
) -> Result<CaptureReport> {
    let checked = events.into_iter().map(validate).collect();
    capture_validated(state, principal, checked).await
}

/// `capture_events` for events already validated with `validate`.
pub async fn capture_validated(
    state: &Arc<AppState>,
    principal: &Principal,
    checked: Vec<std::result::Result<NewEvent, Vec<FieldError>>>,
) -> Result<CaptureReport> {
    state.backlog.check()?;
    let total = checked.len();
    let mut valid = Vec::with_capacity(total);
    let mut slots: Vec<Option<Vec<FieldError>>> = Vec::with_capacity(total);
    for c in checked {
        match c {
            Ok(e) => {
                valid.push(e);
                slots.push(None);
            }
            Err(errs) => slots.push(Some(errs)),
        }
    }
    let invalid = (total - valid.len()) as u64;
    if valid.is_empty() && invalid == 0 {
        return Ok(CaptureReport {
            items: Vec::new(),
            job_id: None,
            ingested: 0,
            duplicates: 0,
            errors: 0,
        });
    }
    let reservation = if valid.is_empty() {
        None
    } else {
        Some(
            state
                .limits
                .reserve(principal, Quota::Events, valid.len() as u64)?,
        )
    };
    let written = state
        .capture
        .store(events::GroupItem {
            tenant_id: principal.tenant_id.clone(),
            mode: principal.mode,
            events: valid,
            invalid,
            at: state.config.clock.now(),
        })
        .await?;
    if let Some(r) = reservation {
        r.commit(written.ingested);
    }
    if written.ingested > 0 {
        state.backlog.stored(written.ingested);
        state.jobs.ring(crate::jobs::CAPTURE);
    }
    let mut stored = written.stored.into_iter();
    let items = slots
        .into_iter()
        .map(|slot| match slot {
            Some(errs) => ItemOutcome::Invalid(errs),
            None => ItemOutcome::Stored(stored.next().expect("one stored result per valid event")),
        })
        .collect();
    Ok(CaptureReport {
        items,
        job_id: written.job_id,
        ingested: written.ingested,
        duplicates: written.duplicates,
        errors: invalid,
    })
}

/// The validation error of a whole request (422) from one event's problems.
pub fn invalid_error(errors: Vec<FieldError>) -> Error {
    Error::invalid(errors)
}

/// Runs `tick` every `period` (the first one a period from now) on the tokio runtime until `stop`
/// turns true or is dropped; a tick that overruns delays the next one.
pub(crate) fn every<F, Fut>(
    period: std::time::Duration,
    mut stop: tokio::sync::watch::Receiver<bool>,
    mut tick: F,
) where
    F: FnMut() -> Fut + Send + 'static,
    Fut: std::future::Future<Output = ()> + Send,
{
    tokio::spawn(async move {
        let mut ticker = tokio::time::interval_at(tokio::time::Instant::now() + period, period);
        ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                changed = stop.changed() => {
                    if changed.is_err() || *stop.borrow() {
                        break;
                    }
                }
                _ = ticker.tick() => tick().await,
            }
        }
    });
}
