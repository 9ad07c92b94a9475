//! Storage: the bottom layer, and the only code that speaks SQL.
//!
//! The rest of the server reaches the database through `Db` (reads on a pooled connection,
//! writes on the writer thread) and this layer's functions, which take a `Conn`: an opaque
//! connection whose SQL methods are private to `store`. No rusqlite type appears in the interface
//! other layers use, and this layer imports none of them (only error, time, ids, plans, the
//! permission and domain types, search documents and compiler values); `layering.rs` checks both.
//!
//! # The contract a backend meets
//!
//! Two backends give the layers above these guarantees: SQLite (the default) and PostgreSQL
//! (`--database`; `postgres`, docs/scale-out.md). The record files run one SQL text on either
//! through `sql` (its statements, parameters, rows and errors):
//! - **Durable before the answer.** A write's caller gets `Ok` only after its rows are committed
//!   (group commit answers every caller after the one commit).
//! - **Idempotent under races.** Capture with a client idempotency key, the episodic memory of an
//!   event and every job step are keyed by unique constraints (`INSERT … ON CONFLICT`), so two
//!   racing writers or a re-run after a crash store one row.
//! - **Atomic quota counts.** Usage counters are incremented in the same transaction as the rows
//!   they count; the in-memory quota ledger is reloaded from them, so a refusal never disagrees with
//!   what was stored.
//! - **One learn per tenant at a time.** Learn jobs are claimed with one `UPDATE … RETURNING` that
//!   skips tenants with a running learn job; two workers never claim the same job.
//! - **Read your writes for the writer's caller.** Once `Db::write` resolved, every later read
//!   through `Db::read` sees the write (WAL readers start a fresh snapshot per transaction).
//! - **No SQL call on a tokio worker thread.** Async callers hand work to the writer thread or to
//!   `spawn_blocking` with a pooled reader.
//!
//! # SQLite specifics
//!
//! - Every connection gets the same pragmas (WAL, `synchronous=NORMAL`, `busy_timeout`,
//!   `foreign_keys`); WAL is verified at open (`conn`).
//! - All writes of the server go through the single writer thread (`writer`). It takes whatever
//!   write operations are queued, runs each in its own SAVEPOINT inside one `BEGIN IMMEDIATE`
//!   transaction, commits once, and only then answers every caller.
//! - Writes come in two lanes. Requests use the foreground lane; job workers use the background
//!   lane (`write_background`). A group takes every queued foreground write and adds a background
//!   write when no foreground write is waiting, when the background lane's claim on the writer's
//!   time is not negative (it earns the time the writer waited for work and as much time as
//!   foreground groups took, and spends what its own writes take: `writer::Share`), or when the
//!   oldest background write has waited `BACKGROUND_MAX_WAIT`. Requests go first, yet processing
//!   keeps a fair share under a steady stream of them (without it, a stream that never left the
//!   writer quiet for 2 ms held processing to one write per 100 ms and the backlog grew without
//!   bound at half the maximum capture rate).
//! - WAL checkpoints run off the writer thread (`checkpoint`): the writer connection has
//!   auto-checkpoint off and a checkpointer thread with its own connection copies the WAL. The
//!   writer only closes the last gap, between groups, when the WAL has grown large
//!   (`checkpoint::CatchUp`: a few frames, so the WAL can start over without a blocking RESTART).
//! - The schema version lives in `PRAGMA user_version`; older databases are migrated in order and
//!   a database written by a newer binary is refused (`schema`).
//!
//! Files: `sql` (`Conn` and the interface both backends share), `conn` (opening SQLite, reading
//! domain values), `schema` (SQLite's migrations), `postgres` (PostgreSQL's schema, the node
//! lock, `engram migrate --to`), `writer` (the
//! writer thread and its lanes), `combine` (writes that merge), `db` (the `Db` handle), `direct`
//! (the CLI's handle), `meta`; then one file per kind of record.

pub mod agents;
pub mod artifacts;
pub mod catalog;
pub mod checkpoint;
pub mod combine;
pub mod connectors;
mod counters;
pub mod events;
pub mod feed;
pub mod jobs;
pub mod keys;
pub mod learn_rows;
pub mod listen;
pub mod memories;
pub mod novelty;
pub mod pack_rows;
pub mod postgres;
pub mod projects;
pub mod semantic;
pub mod sessions;
pub mod shared_limits;
pub mod tenants;
pub mod transfer;
pub mod usage;
pub mod usage_buffer;
pub mod vault;

mod conn;
mod db;
mod direct;
mod meta;
mod schema;
pub mod sql;
pub(crate) mod writer;

pub(crate) use conn::spelled;
pub use conn::{open_connection, ReadPool};
pub use db::{Db, DbStats};
pub use direct::{open_direct, open_direct_postgres, open_unmigrated, Direct};
pub use meta::{meta_get, meta_set};
pub use schema::{migrate, SCHEMA_VERSION};
pub use sql::Conn;
pub(crate) use writer::{panic_text, PendingWrite, QueuedWrite};

#[cfg(test)]
mod layering;
