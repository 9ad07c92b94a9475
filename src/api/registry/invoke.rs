//! `POST /v1/agents/{id}/invoke` (docs/api.md "Registry family"): validates the request, takes an invocation from the
//! monthly quota, and hands the turn to `runtime::invoke`.

use crate::auth::Scope;
use crate::error::Result;
use crate::fields::Fields;
use crate::http::{sse, Ctx, Reply};
use crate::limits::Quota;
use crate::runtime::invoke::{Caller, Invocation, InvokeInput, TurnUpdate};
use serde::Serialize;
use serde_json::{Map, Value};
use tokio::sync::mpsc;

/// Largest accepted `message` (characters).
const MAX_MESSAGE_CHARS: usize = 128 * 1024;

/// Parses the body; every problem is reported with its field.
pub fn parse(body: &Map<String, Value>) -> Result<InvokeInput> {
    let mut f = Fields::new(body);
    // `message`, or the older `input`.
    let field = match (f.raw("message"), f.raw("input")) {
        (None, Some(_)) => "input",
        _ => "message",
    };
    let message = match f.raw(field) {
        None => {
            f.error("message", "required");
            String::new()
        }
        Some(Value::String(s)) if s.trim().is_empty() => {
            f.error(field, "must not be empty");
            String::new()
        }
        Some(Value::String(s)) if s.chars().count() > MAX_MESSAGE_CHARS => {
            f.error(
                field,
                format!("must be at most {MAX_MESSAGE_CHARS} characters"),
            );
            String::new()
        }
        Some(Value::String(s)) => s.clone(),
        Some(_) => {
            f.error(field, "must be a string");
            String::new()
        }
    };
    let session_id = match f.raw("session_id") {
        None => None,
        Some(Value::String(s)) if !s.is_empty() && s.chars().count() <= 256 => Some(s.clone()),
        Some(Value::String(_)) => {
            f.error("session_id", "must be 1–256 characters");
            None
        }
        Some(_) => {
            f.error("session_id", "must be a string");
            None
        }
    };
    let stream = match f.raw("stream") {
        None => false,
        Some(Value::Bool(b)) => *b,
        Some(_) => {
            f.error("stream", "must be a boolean");
            false
        }
    };
    let timeout = match f.raw("timeout") {
        None => None,
        Some(v) => match v.as_u64() {
            Some(t) if (5..=300).contains(&t) => Some(t),
            _ => {
                f.error(
                    "timeout",
                    "must be an integer number of seconds from 5 to 300",
                );
                None
            }
        },
    };
    f.finish()?;
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
    let invocation = crate::runtime::invoke::invoke(
        ctx.state.clone(),
        caller,
        ctx.param(0).to_string(),
        input,
        reservation,
    )
    .await?;
    Ok(match invocation {
        Invocation::Done(body) => Reply::ok(body),
        Invocation::Stream(updates) => sse_reply(updates),
    })
}

/// The data of an `event: chunk` frame: text the model produced.
#[derive(Serialize)]
struct ChunkFrame<'a> {
    delta: &'a str,
}

/// A streamed turn as SSE: `event: chunk` (`{"delta"}`), `event: tool`, then `event: done` with
/// the response object or `event: error` in the registry error format, then `data: [DONE]`
/// (docs/api.md "Registry family"). A client that goes away drops the updates' receiver, which
/// cancels the turn (it is still recorded).
fn sse_reply(mut updates: mpsc::Receiver<TurnUpdate>) -> Reply {
    let (out, body) = sse::channel_body(64);
    tokio::spawn(async move {
        loop {
            let update = tokio::select! {
                u = updates.recv() => u,
                _ = out.closed() => return,
            };
            let Some(update) = update else { return };
            let (frame, last) = match update {
                TurnUpdate::Chunk(d) => (sse::frame("chunk", &ChunkFrame { delta: &d }), false),
                TurnUpdate::Tool(item) => (sse::frame("tool", &item), false),
                TurnUpdate::Done(b) => (sse::frame("done", &b), true),
                TurnUpdate::Failed(e) => (sse::frame("error", &e.registry_body()), true),
            };
            if out.send(frame).await.is_err() {
                return;
            }
            if last {
                let _ = out.send(sse::done_marker()).await;
                return;
            }
        }
    });
    Reply::stream(body, "text/event-stream").header(
        hyper::header::CACHE_CONTROL,
        hyper::header::HeaderValue::from_static("no-cache"),
    )
}
