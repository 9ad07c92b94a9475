//! `POST /v1/agents/{id}/invoke` (docs/api.md "Registry family"): validates the request, takes an invocation from the
//! monthly quota, and hands the turn to `runtime::invoke`.

use crate::auth::Scope;
use crate::error::{Error, FieldError, Result};
use crate::http::{Ctx, Reply};
use crate::limits::Quota;
use crate::runtime::invoke::{Caller, InvokeInput};
use serde_json::{Map, Value};

/// Largest accepted `message` (characters).
const MAX_MESSAGE_CHARS: usize = 128 * 1024;

/// Parses the body; every problem is reported with its field.
pub fn parse(body: &Map<String, Value>) -> Result<InvokeInput> {
    let mut errors = Vec::new();
    let (field, raw) = match (body.get("message"), body.get("input")) {
        (Some(m), _) if !m.is_null() => ("message", Some(m)),
        (_, Some(i)) if !i.is_null() => ("input", Some(i)),
        _ => ("message", None),
    };
    let message = match raw {
        None => {
            errors.push(FieldError::new("message", "required"));
            String::new()
        }
        Some(Value::String(s)) if s.trim().is_empty() => {
            errors.push(FieldError::new(field, "must not be empty"));
            String::new()
        }
        Some(Value::String(s)) if s.chars().count() > MAX_MESSAGE_CHARS => {
            errors.push(FieldError::new(
                field,
                format!("must be at most {MAX_MESSAGE_CHARS} characters"),
            ));
            String::new()
        }
        Some(Value::String(s)) => s.clone(),
        Some(_) => {
            errors.push(FieldError::new(field, "must be a string"));
            String::new()
        }
    };
    let session_id = match body.get("session_id") {
        None | Some(Value::Null) => None,
        Some(Value::String(s)) if !s.is_empty() && s.chars().count() <= 256 => Some(s.clone()),
        Some(Value::String(_)) => {
            errors.push(FieldError::new("session_id", "must be 1–256 characters"));
            None
        }
        Some(_) => {
            errors.push(FieldError::new("session_id", "must be a string"));
            None
        }
    };
    let stream = match body.get("stream") {
        None | Some(Value::Null) => false,
        Some(Value::Bool(b)) => *b,
        Some(_) => {
            errors.push(FieldError::new("stream", "must be a boolean"));
            false
        }
    };
    let timeout = match body.get("timeout") {
        None | Some(Value::Null) => None,
        Some(v) => match v.as_u64() {
            Some(t) if (5..=300).contains(&t) => Some(t),
            _ => {
                errors.push(FieldError::new(
                    "timeout",
                    "must be an integer number of seconds from 5 to 300",
                ));
                None
            }
        },
    };
    if !errors.is_empty() {
        return Err(Error::invalid(errors));
    }
    Ok(InvokeInput {
        message,
        session_id,
        stream,
        timeout,
    })
}

pub async fn invoke(ctx: Ctx) -> Result<Reply> {
    let p = ctx.principal()?;
    p.require(Scope::AgentsInvoke)?;
    let input = parse(&ctx.json_object(false)?)?;
    let reservation = ctx.state.limits.reserve(p, Quota::Invocations, 1)?;
    let caller = Caller {
        principal: p.clone(),
        request_id: ctx.request_id.clone(),
        started: ctx.started,
    };
    crate::runtime::invoke::invoke(
        ctx.state.clone(),
        caller,
        ctx.param(0).to_string(),
        input,
        reservation,
    )
    .await
}
