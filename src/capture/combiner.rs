//! Capture write combining: concurrent capture requests are stored by one writer closure.
//!
//! The database writer already shares one COMMIT among concurrent writes, but each write still
//! pays its own savepoint, capture job row and usage counter updates — for a single-event
//! capture that is most of its cost. The combiner queues requests and hands everything queued to
//! ONE write (`store::events::insert_group`): the requests of a group share a savepoint, one job
//! per tenant and one counter update per tenant, mode and metric.
//!
//! Invariants:
//! - A request is answered only after the write holding its events committed (durable before 202).
//! - At most `IN_FLIGHT` group writes are outstanding; requests arriving meanwhile form the next
//!   group, so a group grows with the load and stays small when idle (no added delay).
//! - A group holds at most `MAX_GROUP_EVENTS` events (one write stays short).
//! - A failed group write fails every request of the group; nothing of it is stored.

use crate::error::{Error, Result};
use crate::store::events::{self, BatchWrite, GroupItem};
use crate::store::Db;
use std::sync::Arc;
use tokio::sync::{mpsc, oneshot, Semaphore};

/// Group writes outstanding at once (one being written, one ready behind it).
const IN_FLIGHT: usize = 2;
/// Most events one group write stores.
const MAX_GROUP_EVENTS: usize = 4_000;

struct Pending {
    item: GroupItem,
    reply: oneshot::Sender<Result<BatchWrite>>,
}

/// Hands capture requests to combined writes (cheap to share).
pub struct Combiner {
    tx: mpsc::UnboundedSender<Pending>,
}

impl Combiner {
    /// Starts the combining task on the current tokio runtime. It ends when the combiner is
    /// dropped.
    pub fn new(db: Db) -> Combiner {
        let (tx, rx) = mpsc::unbounded_channel();
        tokio::spawn(run(db, rx));
        Combiner { tx }
    }

    /// Stores one request's events; resolves after their transaction committed.
    pub async fn store(&self, item: GroupItem) -> Result<BatchWrite> {
        let (reply, rx) = oneshot::channel();
        self.tx
            .send(Pending { item, reply })
            .map_err(|_| Error::Unavailable("the server is shutting down".into()))?;
        rx.await
            .map_err(|_| Error::Unavailable("the server is shutting down".into()))?
    }
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
        let mut events = first.item.events.len();
        let mut group = vec![first];
        while events < MAX_GROUP_EVENTS {
            match rx.try_recv() {
                Ok(p) => {
                    events += p.item.events.len();
                    group.push(p);
                }
                Err(_) => break,
            }
        }
        let (items, replies): (Vec<GroupItem>, Vec<_>) =
            group.into_iter().map(|p| (p.item, p.reply)).unzip();
        let db = db.clone();
        tokio::spawn(async move {
            let written = db
                .write(move |c| events::insert_group(c, items, crate::time::now()))
                .await;
            drop(permit);
            match written {
                Ok(results) => {
                    for (reply, r) in replies.into_iter().zip(results) {
                        let _ = reply.send(Ok(r));
                    }
                }
                Err(e) => {
                    tracing::error!(error = %e, requests = replies.len(), "capture group write failed");
                    for reply in replies {
                        let _ = reply.send(Err(copy_error(&e)));
                    }
                }
            }
        });
    }
}
