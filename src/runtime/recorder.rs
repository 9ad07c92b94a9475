//! Turn recording: the turns of concurrent invocations are written by one writer closure.
//!
//! The database writer already shares one COMMIT among concurrent writes, but each turn written
//! on its own still pays its own savepoint, session upsert, `invocation_count` update, ten usage
//! counter upserts and a capture job for its events. The recorder queues finished turns and hands
//! everything queued to ONE write (`store::sessions::record_turns`): the turns of a group share
//! those rows, and their memory events share one capture job per tenant.
//!
//! The reply of an invocation is sent only once the write holding its turn (and its memory
//! events) committed, so the next turn of the session sees it in its history. Grouping, bounds
//! and failure handling are `store::combine`'s; a group holds at most `MAX_GROUP_TURNS` turns.

use crate::error::Result;
use crate::store::combine::{GroupWrite, WriteCombiner};
use crate::store::sessions::{self, Turn, TurnWritten};
use crate::store::Db;

/// Most turns one group write stores.
const MAX_GROUP_TURNS: usize = 256;

/// Hands finished turns to combined writes (cheap to share).
pub struct Recorder(WriteCombiner<Turn, TurnWritten>);

impl Recorder {
    /// Records turns through combined writes.
    pub fn new(db: Db) -> Recorder {
        Recorder(WriteCombiner::new(
            db,
            GroupWrite {
                what: "turn",
                max_weight: MAX_GROUP_TURNS,
                weight: |_| 1,
                write: sessions::record_turns,
            },
        ))
    }

    /// Records one turn; resolves after its transaction committed with what was written.
    pub async fn record(&self, turn: Turn) -> Result<TurnWritten> {
        self.0.submit(turn).await
    }
}
