//! Streamed invocations (`stream: true`): the turn runs on its own task and its text deltas and
//! tool calls are framed as SSE (`chunk`, `tool`, then `done` with the full response, then
//! `data: [DONE]`, docs/api.md "Registry family") and flushed as they happen.
//!
//! Invariants: a client that goes away (the body is dropped, so the channel closes) cancels the
//! model call and any tool call in flight by dropping the work, and the turn is still recorded
//! with what was produced so far (status `cancelled`); failures after the stream started end it
//! with an `event: error` frame in the registry error format, then `[DONE]`.

use super::invoke::{converse, finish, timeout_error, End, Progress, Turnkit};
use super::{sse, Note};
use crate::app::AppState;
use crate::error::Error;
use crate::http::Reply;
use crate::limits::Reservation;
use serde_json::{json, Value};
use std::sync::Arc;
use tokio::sync::mpsc;

/// Starts the turn on its own task and answers with its SSE stream.
pub(super) fn stream(state: Arc<AppState>, kit: Turnkit, reservation: Reservation) -> Reply {
    let (out, body) = sse::channel_body(64);
    tokio::spawn(async move {
        let (tx, mut rx) = mpsc::unbounded_channel::<Note>();
        let mut progress = Progress::default();
        let mut client_gone = false;
        // Every delta seen, so a turn cut short records what the client was shown.
        let mut streamed = String::new();
        let end = {
            let mut work = Box::pin(converse(&state.runtime, &kit, Some(&tx), &mut progress));
            let deadline = tokio::time::sleep_until(kit.deadline.into());
            tokio::pin!(deadline);
            let end = loop {
                tokio::select! {
                    biased;
                    Some(note) = rx.recv() => {
                        if forward(&out, note, &mut streamed).await.is_err() {
                            client_gone = true;
                            break End::Cancelled;
                        }
                    }
                    r = &mut work => break match r {
                        Ok(()) => End::Completed,
                        Err(e) => End::Failed(e),
                    },
                    _ = out.closed() => {
                        client_gone = true;
                        break End::Cancelled;
                    }
                    _ = &mut deadline => break End::TimedOut,
                }
            };
            // Dropping the work cancels the upstream request and any tool call in flight.
            drop(work);
            end
        };
        // Deltas that were produced but not yet forwarded.
        while let Ok(note) = rx.try_recv() {
            if client_gone {
                if let Note::Delta(d) = note {
                    streamed.push_str(&d);
                }
            } else if forward(&out, note, &mut streamed).await.is_err() {
                client_gone = true;
            }
        }
        if !matches!(end, End::Completed) && streamed.len() > progress.text.len() {
            progress.text = streamed;
        }
        let body = finish(&state, &kit, &progress, &end, reservation).await;
        if client_gone {
            return;
        }
        let frame = match (end, body) {
            (_, Err(e)) => sse::frame("error", &error_json(&e)),
            (End::Completed | End::Cancelled, Ok(b)) => sse::frame("done", &b),
            (End::Failed(e), Ok(_)) => sse::frame("error", &error_json(&e.into_error())),
            (End::TimedOut, Ok(_)) => {
                sse::frame("error", &error_json(&timeout_error(kit.timeout_secs)))
            }
        };
        if out.send(frame).await.is_ok() {
            let _ = out.send(sse::done_marker()).await;
        }
    });
    Reply::stream(body, "text/event-stream").header(
        hyper::header::CACHE_CONTROL,
        hyper::header::HeaderValue::from_static("no-cache"),
    )
}

async fn forward(
    out: &mpsc::Sender<bytes::Bytes>,
    note: Note,
    streamed: &mut String,
) -> std::result::Result<(), mpsc::error::SendError<bytes::Bytes>> {
    let frame = match note {
        Note::Delta(d) => {
            streamed.push_str(&d);
            sse::frame("chunk", &json!({"delta": d}))
        }
        Note::Tool(item) => sse::frame("tool", &item),
    };
    out.send(frame).await
}

fn error_json(e: &Error) -> Value {
    e.registry_body()
}
