//! Streamed invocations (`stream: true`): the turn runs on its own task and reports its text
//! deltas and tool calls as `TurnUpdate`s as they happen, then `Done` with the response object or
//! `Failed` (`api` frames them as SSE, docs/api.md "Registry family").
//!
//! Invariants: a receiver that goes away (the client disconnected) cancels the model call and
//! any tool call in flight by dropping the work, and the turn is still recorded with what was
//! produced so far (status `cancelled`).

use super::invoke::TurnUpdate;
use super::turn::{converse, finish, timeout_error, End, Progress, Turnkit};
use super::Note;
use crate::app::AppState;
use crate::limits::Reservation;
use std::sync::Arc;
use tokio::sync::mpsc;

/// Starts the turn on its own task; returns its updates.
pub(super) fn stream(
    state: Arc<AppState>,
    kit: Turnkit,
    reservation: Reservation,
) -> mpsc::Receiver<TurnUpdate> {
    let (out, updates) = mpsc::channel::<TurnUpdate>(64);
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
        let last = match (end, body) {
            (_, Err(e)) => TurnUpdate::Failed(e),
            (End::Completed | End::Cancelled, Ok(b)) => TurnUpdate::Done(b),
            (End::Failed(e), Ok(_)) => TurnUpdate::Failed(e.into_error()),
            (End::TimedOut, Ok(_)) => TurnUpdate::Failed(timeout_error(kit.timeout_secs)),
        };
        let _ = out.send(last).await;
    });
    updates
}

async fn forward(
    out: &mpsc::Sender<TurnUpdate>,
    note: Note,
    streamed: &mut String,
) -> std::result::Result<(), mpsc::error::SendError<TurnUpdate>> {
    let update = match note {
        Note::Delta(d) => {
            streamed.push_str(&d);
            TurnUpdate::Chunk(d)
        }
        Note::Tool(item) => TurnUpdate::Tool(item),
    };
    out.send(update).await
}
