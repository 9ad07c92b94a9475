//! Write combining: concurrent requests of one kind are stored by one writer closure.
//!
//! The database writer already shares one COMMIT among concurrent writes, but each write still
//! pays its own savepoint and whatever rows it keeps per write (a job row, usage counters, a
//! session row…). A `WriteCombiner` queues items and hands everything queued to ONE call of its
//! group-write function, which can share those rows among the items. Capture requests
//! (`capture::combiner`) and invocation turns (`runtime::recorder`) use it.
//!
//! Invariants:
//! - A caller is answered only after the write holding its item committed.
//! - At most `IN_FLIGHT` group writes are outstanding; items arriving meanwhile form the next
//!   group, so a group grows with the load and an idle server adds no delay.
//! - A group weighs at most `max_weight` (the first item always goes), so one write stays short.
//! - The group-write function returns one result per item, in item order. A failed group write
//!   fails every item of the group; nothing of it is stored.

use crate::error::{Error, Result};
use crate::store::Db;
use rusqlite::Connection;
use std::sync::Arc;
use tokio::sync::{mpsc, oneshot, Semaphore};

/// Group writes outstanding at once (one being written, one ready behind it).
const IN_FLIGHT: usize = 2;

struct Pending<I, R> {
    item: I,
    reply: oneshot::Sender<Result<R>>,
}

/// How a combiner groups and writes its items.
pub struct GroupWrite<I, R> {
    /// Named in the error log of a failed group.
    pub what: &'static str,
    /// A group stops growing once its items weigh this much.
    pub max_weight: usize,
    pub weight: fn(&I) -> usize,
    /// Stores a group in the writer's transaction: one result per item, in order.
    pub write: fn(&Connection, Vec<I>) -> Result<Vec<R>>,
}

/// Hands items to combined writes (cheap to share).
pub struct WriteCombiner<I, R> {
    tx: mpsc::UnboundedSender<Pending<I, R>>,
}

fn shutting_down() -> Error {
    Error::Unavailable("the server is shutting down".into())
}

impl<I: Send + 'static, R: Send + 'static> WriteCombiner<I, R> {
    /// Starts the combining task on the current tokio runtime. It ends when the combiner is
    /// dropped.
    pub fn new(db: Db, how: GroupWrite<I, R>) -> WriteCombiner<I, R> {
        let (tx, rx) = mpsc::unbounded_channel();
        tokio::spawn(run(db, how, rx));
        WriteCombiner { tx }
    }

    /// Stores one item; resolves after its transaction committed.
    pub async fn submit(&self, item: I) -> Result<R> {
        let (reply, rx) = oneshot::channel();
        self.tx
            .send(Pending { item, reply })
            .map_err(|_| shutting_down())?;
        rx.await.map_err(|_| shutting_down())?
    }
}

fn copy_error(e: &Error) -> Error {
    match e {
        Error::Unavailable(m) => Error::Unavailable(m.clone()),
        other => Error::Internal(other.to_string()),
    }
}

async fn run<I: Send + 'static, R: Send + 'static>(
    db: Db,
    how: GroupWrite<I, R>,
    mut rx: mpsc::UnboundedReceiver<Pending<I, R>>,
) {
    let slots = Arc::new(Semaphore::new(IN_FLIGHT));
    loop {
        let Ok(permit) = slots.clone().acquire_owned().await else {
            return;
        };
        let Some(first) = rx.recv().await else {
            return;
        };
        let mut weight = (how.weight)(&first.item);
        let mut group = vec![first];
        while weight < how.max_weight {
            match rx.try_recv() {
                Ok(p) => {
                    weight += (how.weight)(&p.item);
                    group.push(p);
                }
                Err(_) => break,
            }
        }
        let (items, replies): (Vec<I>, Vec<_>) =
            group.into_iter().map(|p| (p.item, p.reply)).unzip();
        let (db, write, what) = (db.clone(), how.write, how.what);
        tokio::spawn(async move {
            let written = db.write(move |c| write(c, items)).await;
            drop(permit);
            match written {
                Ok(results) => {
                    for (reply, r) in replies.into_iter().zip(results) {
                        let _ = reply.send(Ok(r));
                    }
                }
                Err(e) => {
                    tracing::error!(error = %e, items = replies.len(), what, "group write failed");
                    for reply in replies {
                        let _ = reply.send(Err(copy_error(&e)));
                    }
                }
            }
        });
    }
}
