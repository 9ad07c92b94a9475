//! Capture write combining: concurrent capture requests are stored by one writer closure.
//!
//! For a single-event capture the savepoint, capture job row and usage counter updates of its own
//! write are most of its cost. The combiner (`store::combine`) hands all queued requests to ONE
//! `store::events::insert_group`: the requests of a group share a savepoint, one job per tenant
//! and one counter update per tenant, mode and metric. A request is answered only after the write
//! holding its events committed (durable before 202); a group holds at most `MAX_GROUP_EVENTS`
//! events.

use crate::error::Result;
use crate::store::combine::{GroupWrite, WriteCombiner};
use crate::store::events::{self, BatchWrite, GroupItem};
use crate::store::Db;

/// Most events one group write stores.
const MAX_GROUP_EVENTS: usize = 4_000;

/// Hands capture requests to combined writes (cheap to share).
pub struct Combiner(WriteCombiner<GroupItem, BatchWrite>);

impl Combiner {
    pub fn new(db: Db) -> Combiner {
        Combiner(WriteCombiner::new(
            db,
            GroupWrite {
                what: "capture",
                max_weight: MAX_GROUP_EVENTS,
                weight: |item| item.events.len(),
                write: events::insert_group,
            },
        ))
    }

    /// Stores one request's events; resolves after their transaction committed.
    pub async fn store(&self, item: GroupItem) -> Result<BatchWrite> {
        self.0.submit(item).await
    }
}
