//! Turn recording: the turns of concurrent invocations are written by one writer closure.
//!
//! The database writer already shares one COMMIT among concurrent writes, but each turn written
//! on its own still pays its own savepoint, session upsert, `invocation_count` update, ten usage
//! counter upserts and a capture job for its events. The recorder queues finished turns and hands
//! everything queued to ONE write (`store::sessions::record_turns`): the turns of a group share
//! those rows, and their memory events share one capture job per tenant.
//!
//! Invariants:
//! - A turn's caller is answered only after the write holding the turn committed, so the reply
//!   of an invocation is sent only once the turn (and its memory events) are durable, and the
//!   next turn of the session sees it in its history.
//! - At most `IN_FLIGHT` group writes are outstanding; turns arriving meanwhile form the next
//!   group, so a group grows with the load and an idle server adds no delay.
//! - A group holds at most `MAX_GROUP_TURNS` turns (one write stays short).
//! - A failed group write fails every turn of the group; nothing of it is stored.

use crate::error::{Error, Result};
use crate::store::sessions::{self, Turn, TurnWritten};
use crate::store::Db;
use std::sync::Arc;
use tokio::sync::{mpsc, oneshot, Semaphore};

/// Group writes outstanding at once (one being written, one ready behind it).
const IN_FLIGHT: usize = 2;
/// Most turns one group write stores.
const MAX_GROUP_TURNS: usize = 256;

struct Pending {
    turn: Turn,
    reply: oneshot::Sender<Result<TurnWritten>>,
}

/// Hands finished turns to combined writes (cheap to share).
pub struct Recorder {
    tx: mpsc::UnboundedSender<Pending>,
}

impl Recorder {
    /// Starts the recording task on the current tokio runtime. It ends when the recorder is
    /// dropped.
    pub fn new(db: Db) -> Recorder {
        let (tx, rx) = mpsc::unbounded_channel();
        tokio::spawn(run(db, rx));
        Recorder { tx }
    }

    /// Records one turn; resolves after its transaction committed with what was written.
    pub async fn record(&self, turn: Turn) -> Result<TurnWritten> {
        let (reply, rx) = oneshot::channel();
        self.tx
            .send(Pending { turn, reply })
            .map_err(|_| shutting_down())?;
        rx.await.map_err(|_| shutting_down())?
    }
}

fn shutting_down() -> Error {
    Error::Unavailable("the server is shutting down".into())
}

fn copy_error(e: &Error) -> Error {
    match e {
        Error::Unavailable(m) => Error::Unavailable(m.clone()),
        other => Error::Internal(other.to_string()),
    }
}

async fn run(db: Db, mut rx: mpsc::UnboundedReceiver<Pending>) {
    let slots = Arc::new(Semaphore::new(IN_FLIGHT));
    loop {
        let Ok(permit) = slots.clone().acquire_owned().await else {
            return;
        };
        let Some(first) = rx.recv().await else {
            return;
        };
        let mut group = vec![first];
        while group.len() < MAX_GROUP_TURNS {
            match rx.try_recv() {
                Ok(p) => group.push(p),
                Err(_) => break,
            }
        }
        let (turns, replies): (Vec<Turn>, Vec<_>) =
            group.into_iter().map(|p| (p.turn, p.reply)).unzip();
        let db = db.clone();
        tokio::spawn(async move {
            let written = db.write(move |c| sessions::record_turns(c, turns)).await;
            drop(permit);
            match written {
                Ok(stored) => {
                    for (reply, n) in replies.into_iter().zip(stored) {
                        let _ = reply.send(Ok(n));
                    }
                }
                Err(e) => {
                    tracing::error!(error = %e, turns = replies.len(), "turn group write failed");
                    for reply in replies {
                        let _ = reply.send(Err(copy_error(&e)));
                    }
                }
            }
        });
    }
}
