//! Write combining: concurrent requests of one kind are stored by one writer closure.
//!
//! The database writer already shares one COMMIT among concurrent writes, but each write still
//! pays its own savepoint and whatever rows it keeps per write (a job row, usage counters, a
//! session row…). A `WriteCombiner` queues each item as a write of its own in the writer's
//! foreground lane; when the writer forms a group, a combined write takes over the writes of the
//! same combiner queued right behind it (`PendingWrite::absorb`) and hands all their items to ONE
//! call of the group-write function, which can share those rows among the items. Capture requests
//! (`capture::combiner`) and invocation turns (`runtime::recorder`) use it.
//!
//! Invariants:
//! - A caller is answered only after the write holding its item committed.
//! - Only writes queued back to back are combined, so the order of writes is kept.
//! - A combined write weighs at most `max_weight` (the first item always goes), so one write
//!   stays short.
//! - The group-write function returns one result per item, in item order. A failed group write
//!   fails every item of the group; nothing of it is stored.

use super::writer::{run_caught, settle};
use super::Conn;
use crate::error::{Error, Result};
use crate::store::{Db, PendingWrite, QueuedWrite};
use tokio::sync::oneshot;

/// How a combiner groups and writes its items.
pub struct GroupWrite<I, R> {
    /// Named in the error log of a failed group.
    pub what: &'static str,
    /// A group stops growing once its items weigh this much.
    pub max_weight: usize,
    pub weight: fn(&I) -> usize,
    /// Stores a group in the writer's transaction: one result per item, in order.
    pub write: fn(&Conn, Vec<I>) -> Result<Vec<R>>,
}

impl<I, R> Clone for GroupWrite<I, R> {
    fn clone(&self) -> Self {
        *self
    }
}

impl<I, R> Copy for GroupWrite<I, R> {}

/// Hands items to combined writes (cheap to share).
pub struct WriteCombiner<I, R> {
    db: Db,
    how: GroupWrite<I, R>,
}

fn shutting_down() -> Error {
    Error::Unavailable("the server is shutting down".into())
}

impl<I: Send + 'static, R: Send + 'static> WriteCombiner<I, R> {
    /// A combiner of writes described by `how`; its `what` names it (writes of combiners with
    /// the same item types and name are combined).
    pub fn new(db: Db, how: GroupWrite<I, R>) -> WriteCombiner<I, R> {
        WriteCombiner { db, how }
    }

    /// Stores one item; resolves after its transaction committed.
    pub async fn submit(&self, item: I) -> Result<R> {
        let (reply, rx) = oneshot::channel();
        let weight = (self.how.weight)(&item);
        self.db.submit_write(Box::new(Combined {
            how: self.how,
            weight,
            items: vec![item],
            replies: vec![reply],
            results: None,
        }))?;
        rx.await.map_err(|_| shutting_down())?
    }
}

/// Items of one combiner written by one call of its group-write function.
struct Combined<I, R> {
    how: GroupWrite<I, R>,
    weight: usize,
    items: Vec<I>,
    replies: Vec<oneshot::Sender<Result<R>>>,
    results: Option<Result<Vec<R>>>,
}

impl<I: Send + 'static, R: Send + 'static> PendingWrite for Combined<I, R> {
    fn apply(&mut self, conn: &Conn) -> bool {
        let items = std::mem::take(&mut self.items);
        let n = items.len();
        let write = self.how.write;
        let r = run_caught(|| write(conn, items)).and_then(|results| {
            if results.len() == n {
                Ok(results)
            } else {
                Err(Error::Internal(format!(
                    "{} group write returned {} results for {n} items",
                    self.how.what,
                    results.len()
                )))
            }
        });
        let ok = r.is_ok();
        self.results = Some(r);
        ok
    }

    fn complete(self: Box<Self>, commit: std::result::Result<(), String>) {
        let what = self.how.what;
        match settle(commit, self.results) {
            Ok(results) => {
                for (reply, r) in self.replies.into_iter().zip(results) {
                    let _ = reply.send(Ok(r));
                }
            }
            Err(e) => {
                if !self.replies.is_empty() {
                    tracing::error!(error = %e, items = self.replies.len(), what, "group write failed");
                }
                for reply in self.replies {
                    let _ = reply.send(Err(e.clone()));
                }
            }
        }
    }

    fn absorb(&mut self, next: &mut QueuedWrite) -> bool {
        let Some(other) = next.as_any().downcast_mut::<Combined<I, R>>() else {
            return false;
        };
        if other.how.what != self.how.what
            || self.weight + other.weight > self.how.max_weight
            || other.items.is_empty()
        {
            return false;
        }
        self.weight += other.weight;
        self.items.append(&mut other.items);
        self.replies.append(&mut other.replies);
        true
    }

    fn as_any(&mut self) -> &mut dyn std::any::Any {
        self
    }

    fn absorbed(&self) -> bool {
        self.replies.is_empty()
    }
}
