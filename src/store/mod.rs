//! Storage: one SQLite file in WAL mode, one writer thread, a pool of readers.
//!
//! Invariants:
//! - Every connection gets the same pragmas (WAL, `synchronous=NORMAL`, `busy_timeout`,
//!   `foreign_keys`); WAL is verified at open.
//! - All writes of the server go through the single writer thread. It takes whatever write
//!   operations are queued, runs each in its own SAVEPOINT inside one `BEGIN IMMEDIATE`
//!   transaction, commits once, and only then answers every caller (group commit): a caller that
//!   got `Ok` knows its rows are committed.
//! - Writes come in two lanes. Requests use the foreground lane; job workers use the background
//!   lane (`write_background`). A group takes every queued foreground write and adds a background
//!   write only when no foreground write is waiting, or when the oldest background write has
//!   waited `BACKGROUND_MAX_WAIT`: under a load that keeps the writer busy, answering requests wins
//!   over processing (whose work is durable and catches up), yet background work never stops.
//! - No SQLite call runs on a tokio worker thread: async callers hand work to the writer thread or
//!   to `spawn_blocking` with a pooled reader.
//! - WAL checkpoints run off the writer thread (`checkpoint`): the writer connection has
//!   auto-checkpoint off and a checkpointer thread with its own connection copies the WAL. The
//!   writer only closes the last gap, between groups, when the WAL has grown large
//!   (`checkpoint::CatchUp`: a few frames, so the WAL can start over without a blocking RESTART).
//! - The schema version lives in `PRAGMA user_version`; older databases are migrated in order and
//!   a database written by a newer binary is refused.

pub mod agents;
pub mod artifacts;
pub mod checkpoint;
pub mod combine;
pub mod connectors;
pub mod events;
pub mod keys;
pub mod memories;
pub mod novelty;
pub mod pack_rows;
pub mod projects;
pub mod semantic;
pub mod sessions;
pub mod tenants;
pub mod transfer;
pub mod usage;
pub mod usage_buffer;
pub mod vault;

use crate::error::{Error, Result};
use crossbeam_channel::{Receiver, Sender};
use r2d2_sqlite::SqliteConnectionManager;
use rusqlite::{Connection, OpenFlags};
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::Duration;

/// The schema version this binary writes.
pub const SCHEMA_VERSION: u32 = 4;
const SCHEMA: &str = include_str!("../../schema.sql");
/// Upgrades from version `n - 1` to `n`, in order. `schema.sql` is the latest version whole.
const MIGRATIONS: &[(u32, &str)] = &[
    // 2: an episodic memory's id is derived from its event's id (`memories::episodic_id`), so
    // finding it by event needs no index of its own; dropping it saves an index write per event.
    (2, "DROP INDEX IF EXISTS memories_event;"),
    // 3: an event enters the session and agent indexes when it is processed, not when it is
    // captured (their leaf writes move off the acknowledgement path); events waiting for
    // processing have their own small index. Jobs lose their tenant index (every job query
    // goes through the queue index or the id). Novelty counts of unprocessed events move out of
    // `event_signatures` (`novelty::migrate_to_pending`, run after this SQL).
    (
        3,
        "DROP INDEX IF EXISTS events_session;
         CREATE INDEX events_session ON events(tenant_id, session_id, seq)
             WHERE processed_at IS NOT NULL;
         DROP INDEX IF EXISTS events_agent;
         CREATE INDEX events_agent ON events(tenant_id, agent_id, seq)
             WHERE processed_at IS NOT NULL;
         CREATE INDEX events_pending ON events(tenant_id, seq) WHERE processed_at IS NULL;
         DROP INDEX IF EXISTS jobs_tenant;",
    ),
    // 4: the vault: the part of schema.sql between `-- vault:begin` and `-- vault:end`
    // (`schema_part`), run by `migrate`.
    (4, ""),
];

/// The part of `schema.sql` between `-- <name>:begin` and `-- <name>:end`.
fn schema_part(name: &str) -> &'static str {
    let begin = format!("-- {name}:begin");
    let end = format!("-- {name}:end");
    let from = SCHEMA.find(&begin).expect("schema part begins");
    let to = SCHEMA[from..].find(&end).expect("schema part ends") + from;
    &SCHEMA[from..to]
}
/// Most write operations one group commit takes.
const MAX_GROUP: usize = 512;
/// Longest a background write waits while foreground writes keep the writer busy.
const BACKGROUND_MAX_WAIT: Duration = Duration::from_millis(100);
/// Foreground writes count as flowing until none came for this long.
const FOREGROUND_QUIET: Duration = Duration::from_millis(2);

pub type ReadPool = r2d2::Pool<SqliteConnectionManager>;

fn apply_pragmas(conn: &Connection) -> rusqlite::Result<()> {
    conn.busy_timeout(Duration::from_millis(5000))?;
    conn.execute_batch(
        "PRAGMA synchronous = NORMAL;
         PRAGMA foreign_keys = ON;
         PRAGMA temp_store = MEMORY;
         PRAGMA cache_size = -16000;",
    )
}

/// Opens a read-write connection with the pragmas, verifying WAL mode.
pub fn open_connection(path: &Path) -> Result<Connection> {
    let conn = Connection::open_with_flags(
        path,
        OpenFlags::SQLITE_OPEN_READ_WRITE
            | OpenFlags::SQLITE_OPEN_CREATE
            | OpenFlags::SQLITE_OPEN_NO_MUTEX,
    )
    .map_err(|e| Error::Internal(format!("cannot open database {}: {e}", path.display())))?;
    apply_pragmas(&conn)?;
    let mode: String = conn.query_row("PRAGMA journal_mode = WAL", [], |r| r.get(0))?;
    if !mode.eq_ignore_ascii_case("wal") {
        return Err(Error::Internal(format!(
            "database {} refused WAL mode (journal_mode is '{mode}'); engram needs WAL",
            path.display()
        )));
    }
    Ok(conn)
}

/// Creates the schema of an empty database or migrates an older one. Refuses a newer one.
pub fn migrate(conn: &mut Connection) -> Result<()> {
    let version: u32 = conn.query_row("PRAGMA user_version", [], |r| r.get(0))?;
    if version > SCHEMA_VERSION {
        return Err(Error::Internal(format!(
            "this database has schema version {version}, written by a newer engram; this binary \
             understands up to version {SCHEMA_VERSION}. Upgrade engram or restore a backup."
        )));
    }
    if version == SCHEMA_VERSION {
        return Ok(());
    }
    let tx = conn.transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)?;
    // Re-read inside the write lock: another process may have migrated meanwhile.
    let version: u32 = tx.query_row("PRAGMA user_version", [], |r| r.get(0))?;
    if version == 0 {
        tx.execute_batch(SCHEMA)?;
    } else {
        for (target, sql) in MIGRATIONS.iter().filter(|(v, _)| *v > version) {
            tx.execute_batch(sql)?;
            if *target == 3 {
                novelty::migrate_to_pending(&tx)?;
            }
            if *target == 4 {
                tx.execute_batch(schema_part("vault"))?;
            }
            tx.execute_batch(&format!("PRAGMA user_version = {target}"))?;
        }
    }
    tx.commit()?;
    Ok(())
}

/// Opens the database file of a data dir for a one-off command (CLI), creating and migrating it.
pub fn open_direct(data_dir: &Path) -> Result<Connection> {
    std::fs::create_dir_all(data_dir).map_err(|e| {
        Error::Internal(format!(
            "cannot create data dir {}: {e}",
            data_dir.display()
        ))
    })?;
    let mut conn = open_connection(&data_dir.join("engram.db"))?;
    migrate(&mut conn)?;
    Ok(conn)
}

/// A write waiting in one of the writer's lanes.
pub(crate) type QueuedWrite = Box<dyn PendingWrite>;

/// One queued write: runs inside a savepoint, answers after the commit.
pub(crate) trait PendingWrite: Send {
    /// Runs the operation; `false` if it failed (its savepoint is then rolled back).
    fn apply(&mut self, conn: &Connection) -> bool;
    /// Delivers the result once the group's commit is known.
    fn complete(self: Box<Self>, commit: std::result::Result<(), String>);
    /// Takes over `next`, the write queued right behind this one, so that one call of `apply`
    /// does both (`combine`); `next` is then left with nothing to do. The default takes nothing.
    fn absorb(&mut self, _next: &mut QueuedWrite) -> bool {
        false
    }
    /// For `absorb`: the concrete write behind the box.
    fn as_any(&mut self) -> &mut dyn std::any::Any;
    /// True once another write absorbed this one: it is not run on its own.
    fn absorbed(&self) -> bool {
        false
    }
}

struct Op<F, T> {
    f: Option<F>,
    result: Option<Result<T>>,
    reply: tokio::sync::oneshot::Sender<Result<T>>,
}

impl<F, T> PendingWrite for Op<F, T>
where
    F: FnOnce(&Connection) -> Result<T> + Send + 'static,
    T: Send + 'static,
{
    fn apply(&mut self, conn: &Connection) -> bool {
        let f = self.f.take().expect("applied once");
        let r = catch_unwind(AssertUnwindSafe(|| f(conn))).unwrap_or_else(|p| {
            Err(Error::Internal(format!(
                "panic in write: {}",
                panic_text(&p)
            )))
        });
        let ok = r.is_ok();
        self.result = Some(r);
        ok
    }

    fn as_any(&mut self) -> &mut dyn std::any::Any {
        self
    }

    fn complete(self: Box<Self>, commit: std::result::Result<(), String>) {
        let result = match (commit, self.result) {
            (Ok(()), Some(r)) => r,
            (Err(e), Some(Ok(_))) => Err(Error::Internal(format!("commit failed: {e}"))),
            (_, Some(Err(e))) => Err(e),
            (_, None) => Err(Error::Internal("write was not applied".into())),
        };
        let _ = self.reply.send(result);
    }
}

pub(crate) fn panic_text(p: &Box<dyn std::any::Any + Send>) -> String {
    if let Some(s) = p.downcast_ref::<&str>() {
        s.to_string()
    } else if let Some(s) = p.downcast_ref::<String>() {
        s.clone()
    } else {
        "unknown panic".to_string()
    }
}

/// Figures for `/v1/health`.
#[derive(Clone, Debug)]
pub struct DbStats {
    pub path: PathBuf,
    pub size_bytes: u64,
    pub wal_bytes: u64,
    pub total: u32,
    pub idle: u32,
    pub waiting: usize,
    pub max: u32,
    pub write_queue: usize,
    pub commits: u64,
    pub writer_alive: bool,
}

struct Inner {
    path: PathBuf,
    readers: ReadPool,
    /// The foreground and background lanes to the writer thread.
    writer_tx: Mutex<Option<Lanes<Sender<QueuedWrite>>>>,
    writer_rx_len: Lanes<Receiver<QueuedWrite>>,
    writer: Mutex<Option<JoinHandle<()>>>,
    /// Dropping or signalling this stops the checkpointer thread.
    checkpoint_stop: Mutex<Option<Sender<()>>>,
    checkpointer: Mutex<Option<JoinHandle<()>>>,
    read_waiting: AtomicUsize,
    commits: Arc<AtomicU64>,
    /// Usage counts waiting to be written (`usage_buffer`), and its flusher thread.
    usage: usage_buffer::UsageBuffer,
    usage_stop: Mutex<Option<Sender<()>>>,
    usage_flusher: Mutex<Option<JoinHandle<()>>>,
}

/// The database handle shared by the server (cheap to clone).
#[derive(Clone)]
pub struct Db {
    inner: Arc<Inner>,
}

impl Db {
    /// Opens (creating or migrating) the database and starts the writer thread.
    pub fn open(path: &Path, read_pool_size: u32) -> Result<Db> {
        let mut conn = open_connection(path)?;
        migrate(&mut conn)?;
        checkpoint::writer_pragmas(&conn)?;
        novelty::rebuild_pending(&conn)?;
        let (checkpoint_stop, stop_rx) = crossbeam_channel::bounded::<()>(1);
        let checkpointer = {
            let cconn = open_connection(path)?;
            let path = path.to_path_buf();
            std::thread::Builder::new()
                .name("engram-checkpoint".into())
                .spawn(move || checkpoint::run(cconn, path, stop_rx))
                .map_err(Error::internal)?
        };
        let manager = SqliteConnectionManager::file(path)
            .with_flags(OpenFlags::SQLITE_OPEN_READ_WRITE | OpenFlags::SQLITE_OPEN_NO_MUTEX)
            .with_init(|c| {
                apply_pragmas(c)?;
                // Readers map the file: point lookups (a pack re-reads its rows by id) then
                // read pages in place instead of copying them through `pread` into each
                // connection's own cache.
                c.execute_batch("PRAGMA query_only = ON; PRAGMA mmap_size = 1073741824;")
            });
        let readers = r2d2::Pool::builder()
            .max_size(read_pool_size.max(1))
            .min_idle(Some(1))
            .connection_timeout(Duration::from_secs(10))
            .build(manager)?;
        let (fg_tx, fg_rx) = crossbeam_channel::unbounded::<QueuedWrite>();
        let (bg_tx, bg_rx) = crossbeam_channel::unbounded::<QueuedWrite>();
        let (tx, rx) = (
            Lanes {
                fg: fg_tx,
                bg: bg_tx,
            },
            Lanes {
                fg: fg_rx,
                bg: bg_rx,
            },
        );
        let commits = Arc::new(AtomicU64::new(0));
        let writer = {
            let rx = rx.clone();
            let commits = commits.clone();
            let catch_up = checkpoint::CatchUp::new(path);
            std::thread::Builder::new()
                .name("engram-writer".into())
                .spawn(move || writer_loop(conn, rx, commits, catch_up))
                .map_err(Error::internal)?
        };
        let db = Db {
            inner: Arc::new(Inner {
                path: path.to_path_buf(),
                readers,
                writer_tx: Mutex::new(Some(tx)),
                writer_rx_len: rx,
                writer: Mutex::new(Some(writer)),
                checkpoint_stop: Mutex::new(Some(checkpoint_stop)),
                checkpointer: Mutex::new(Some(checkpointer)),
                read_waiting: AtomicUsize::new(0),
                commits,
                usage: Default::default(),
                usage_stop: Mutex::new(None),
                usage_flusher: Mutex::new(None),
            }),
        };
        let (usage_stop, usage_rx) = crossbeam_channel::bounded::<()>(1);
        let weak = Arc::downgrade(&db.inner);
        let flusher = std::thread::Builder::new()
            .name("engram-usage".into())
            .spawn(move || usage_buffer::run_flusher(weak, usage_rx))
            .map_err(Error::internal)?;
        *db.inner
            .usage_stop
            .lock()
            .unwrap_or_else(|p| p.into_inner()) = Some(usage_stop);
        *db.inner
            .usage_flusher
            .lock()
            .unwrap_or_else(|p| p.into_inner()) = Some(flusher);
        Ok(db)
    }

    fn sender(&self, lane: Lane) -> Result<Sender<QueuedWrite>> {
        self.inner
            .writer_tx
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .as_ref()
            .map(|l| match lane {
                Lane::Foreground => l.fg.clone(),
                Lane::Background => l.bg.clone(),
            })
            .ok_or_else(|| Error::Unavailable("the database is shutting down".into()))
    }

    /// Queues a prepared write in the foreground lane (`combine`).
    pub(crate) fn submit_write(&self, op: QueuedWrite) -> Result<()> {
        self.sender(Lane::Foreground)?
            .send(op)
            .map_err(|_| Error::Unavailable("the database writer has stopped".into()))
    }

    fn submit<T, F>(&self, lane: Lane, f: F) -> Result<tokio::sync::oneshot::Receiver<Result<T>>>
    where
        F: FnOnce(&Connection) -> Result<T> + Send + 'static,
        T: Send + 'static,
    {
        let (reply, rx) = tokio::sync::oneshot::channel();
        let op: QueuedWrite = Box::new(Op {
            f: Some(f),
            result: None,
            reply,
        });
        self.sender(lane)?
            .send(op)
            .map_err(|_| Error::Unavailable("the database writer has stopped".into()))?;
        Ok(rx)
    }

    /// Runs `f` on the writer thread in a transaction; resolves after the commit.
    pub async fn write<T, F>(&self, f: F) -> Result<T>
    where
        F: FnOnce(&Connection) -> Result<T> + Send + 'static,
        T: Send + 'static,
    {
        self.submit(Lane::Foreground, f)?
            .await
            .map_err(|_| Error::Internal("database writer dropped a write".into()))?
    }

    /// `write` for plain threads (workers); must not be called on a tokio worker thread.
    pub fn write_blocking<T, F>(&self, f: F) -> Result<T>
    where
        F: FnOnce(&Connection) -> Result<T> + Send + 'static,
        T: Send + 'static,
    {
        self.write_waiting(Lane::Foreground, f)
    }

    /// `write_blocking` in the background lane (job workers): it yields to request writes while
    /// they keep the writer busy, for at most `BACKGROUND_MAX_WAIT` at a time.
    pub fn write_background<T, F>(&self, f: F) -> Result<T>
    where
        F: FnOnce(&Connection) -> Result<T> + Send + 'static,
        T: Send + 'static,
    {
        self.write_waiting(Lane::Background, f)
    }

    /// Queues `f` in `lane` and blocks the calling (non-tokio) thread until its commit.
    fn write_waiting<T, F>(&self, lane: Lane, f: F) -> Result<T>
    where
        F: FnOnce(&Connection) -> Result<T> + Send + 'static,
        T: Send + 'static,
    {
        self.submit(lane, f)?
            .blocking_recv()
            .map_err(|_| Error::Internal("database writer dropped a write".into()))?
    }

    /// Runs `f` with a pooled read-only connection on the blocking thread pool.
    pub async fn read<T, F>(&self, f: F) -> Result<T>
    where
        F: FnOnce(&Connection) -> Result<T> + Send + 'static,
        T: Send + 'static,
    {
        let db = self.clone();
        tokio::task::spawn_blocking(move || db.read_blocking(f))
            .await
            .map_err(|e| Error::Internal(format!("read task failed: {e}")))?
    }

    /// `read` for plain threads.
    pub fn read_blocking<T, F>(&self, f: F) -> Result<T>
    where
        F: FnOnce(&Connection) -> Result<T>,
    {
        self.inner.read_waiting.fetch_add(1, Ordering::Relaxed);
        let conn = self.inner.readers.get();
        self.inner.read_waiting.fetch_sub(1, Ordering::Relaxed);
        let conn = conn?;
        f(&conn)
    }

    pub fn path(&self) -> &Path {
        &self.inner.path
    }

    pub fn stats(&self) -> DbStats {
        let state = self.inner.readers.state();
        let size = |p: &Path| std::fs::metadata(p).map(|m| m.len()).unwrap_or(0);
        let mut wal = self.inner.path.clone().into_os_string();
        wal.push("-wal");
        DbStats {
            path: self.inner.path.clone(),
            size_bytes: size(&self.inner.path),
            wal_bytes: size(Path::new(&wal)),
            total: state.connections,
            idle: state.idle_connections,
            waiting: self.inner.read_waiting.load(Ordering::Relaxed),
            max: self.inner.readers.max_size(),
            write_queue: self.inner.writer_rx_len.fg.len() + self.inner.writer_rx_len.bg.len(),
            commits: self.inner.commits.load(Ordering::Relaxed),
            writer_alive: self
                .inner
                .writer
                .lock()
                .map(|w| w.as_ref().is_some_and(|h| !h.is_finished()))
                .unwrap_or(false),
        }
    }

    /// Stops the writer after the queued writes are done. Later writes fail with 503.
    pub fn close(&self) {
        // Pending usage counts are written while the writer still runs.
        take(&self.inner.usage_stop);
        if let Some(h) = take(&self.inner.usage_flusher) {
            let _ = h.join();
        }
        if let Err(e) = self.flush_usage_blocking() {
            tracing::error!(error = %e, "usage counters could not be written at shutdown");
        }
        // The checkpointer stops first: the writer's final TRUNCATE checkpoint then runs alone.
        take(&self.inner.checkpoint_stop);
        if let Some(h) = take(&self.inner.checkpointer) {
            let _ = h.join();
        }
        take(&self.inner.writer_tx);
        if let Some(h) = take(&self.inner.writer) {
            let _ = h.join();
        }
    }
}

/// Takes the value out of a shutdown slot (a poisoned lock still yields it).
fn take<T>(slot: &Mutex<Option<T>>) -> Option<T> {
    slot.lock().unwrap_or_else(|p| p.into_inner()).take()
}

/// The writer's two queues (see the module docs).
#[derive(Clone)]
struct Lanes<T> {
    fg: T,
    bg: T,
}

#[derive(Clone, Copy)]
enum Lane {
    Foreground,
    Background,
}

/// A background write the writer has taken off its lane but not yet run, and since when it waits.
type Held = Option<(QueuedWrite, std::time::Instant)>;

/// Blocks until a write is queued in either lane, then fills `group` (see the module docs).
/// Returns false once both lanes are closed and empty.
fn next_group(
    rx: &Lanes<Receiver<QueuedWrite>>,
    held: &mut Held,
    last_fg: &mut std::time::Instant,
    group: &mut Vec<QueuedWrite>,
) -> bool {
    use std::time::Instant;
    if held.is_none() {
        if let Ok(op) = rx.bg.try_recv() {
            *held = Some((op, Instant::now()));
        }
    }
    if held.is_some() && rx.fg.is_empty() && last_fg.elapsed() < FOREGROUND_QUIET {
        // Foreground writes are flowing: wait for the next one, or until the held background
        // write may run.
        let wait = FOREGROUND_QUIET.saturating_sub(last_fg.elapsed());
        if let Ok(op) = rx.fg.recv_timeout(wait) {
            group.push(op);
        }
    } else if held.is_none() && rx.fg.is_empty() {
        crossbeam_channel::select! {
            recv(rx.fg) -> op => match op {
                Ok(op) => group.push(op),
                Err(_) => match rx.bg.recv() {
                    Ok(op) => group.push(op),
                    Err(_) => return false,
                },
            },
            recv(rx.bg) -> op => match op {
                Ok(op) => *held = Some((op, Instant::now())),
                Err(_) => match rx.fg.recv() {
                    Ok(op) => group.push(op),
                    Err(_) => return false,
                },
            },
        }
    }
    while group.len() < MAX_GROUP {
        match rx.fg.try_recv() {
            Ok(op) => group.push(op),
            Err(_) => break,
        }
    }
    let due = held
        .as_ref()
        .is_some_and(|(_, since)| since.elapsed() >= BACKGROUND_MAX_WAIT);
    let quiet = last_fg.elapsed() >= FOREGROUND_QUIET;
    if !group.is_empty() {
        *last_fg = Instant::now();
    }
    if (group.is_empty() && quiet) || due {
        if let Some((op, _)) = held.take() {
            group.push(op);
        }
    }
    true
}

fn writer_loop(
    conn: Connection,
    rx: Lanes<Receiver<QueuedWrite>>,
    commits: Arc<AtomicU64>,
    mut catch_up: checkpoint::CatchUp,
) {
    let mut group: Vec<QueuedWrite> = Vec::with_capacity(MAX_GROUP + 1);
    let mut held: Held = None;
    let mut last_fg = std::time::Instant::now();
    while next_group(&rx, &mut held, &mut last_fg, &mut group) {
        if group.is_empty() {
            continue;
        }
        let outcome = run_group(&conn, &mut group);
        if outcome.is_ok() {
            commits.fetch_add(1, Ordering::Relaxed);
        } else if let Err(e) = &outcome {
            tracing::error!(error = %e, ops = group.len(), "group commit failed");
        }
        for op in group.drain(..) {
            op.complete(outcome.clone());
        }
        catch_up.after_group(&conn);
    }
    // Checkpoint so the WAL does not outlive a clean shutdown.
    let _ = conn.execute_batch("PRAGMA wal_checkpoint(TRUNCATE);");
}

fn run_group(conn: &Connection, group: &mut [QueuedWrite]) -> std::result::Result<(), String> {
    // Writes that combine take over the ones queued right behind them (`combine`).
    let mut i = 0;
    while i < group.len() {
        let (head, tail) = group.split_at_mut(i + 1);
        let mut taken = 0;
        for next in tail.iter_mut() {
            if !head[i].absorb(next) {
                break;
            }
            taken += 1;
        }
        i += 1 + taken;
    }
    conn.execute_batch("BEGIN IMMEDIATE")
        .map_err(|e| e.to_string())?;
    for op in group.iter_mut().filter(|op| !op.absorbed()) {
        if let Err(e) = conn.execute_batch("SAVEPOINT op") {
            let _ = conn.execute_batch("ROLLBACK");
            return Err(e.to_string());
        }
        let ok = op.apply(conn);
        let end = if ok {
            conn.execute_batch("RELEASE op")
        } else {
            conn.execute_batch("ROLLBACK TO op; RELEASE op")
        };
        if let Err(e) = end {
            let _ = conn.execute_batch("ROLLBACK");
            return Err(e.to_string());
        }
    }
    conn.execute_batch("COMMIT").map_err(|e| {
        let _ = conn.execute_batch("ROLLBACK");
        e.to_string()
    })
}

/// Reads one value of the `meta` table.
pub fn meta_get(conn: &Connection, key: &str) -> Result<Option<String>> {
    use rusqlite::OptionalExtension;
    Ok(conn
        .query_row("SELECT value FROM meta WHERE key = ?1", [key], |r| r.get(0))
        .optional()?)
}

pub fn meta_set(conn: &Connection, key: &str, value: &str) -> Result<()> {
    conn.execute(
        "INSERT INTO meta(key, value) VALUES (?1, ?2)
         ON CONFLICT(key) DO UPDATE SET value = excluded.value",
        [key, value],
    )?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A version-3 database gets the vault's tables from migration 4, as schema.sql has them.
    #[test]
    fn migration_4_adds_the_vault() {
        let dir = tempfile::tempdir().expect("temp dir");
        let path = dir.path().join("engram.db");
        let mut conn = open_connection(&path).expect("open");
        migrate(&mut conn).expect("create");
        conn.execute_batch(
            "DROP TABLE vault_audit; DROP TABLE vault_items; DROP TABLE vaults;
             PRAGMA user_version = 3;",
        )
        .expect("back to version 3");
        migrate(&mut conn).expect("migrate");
        let version: u32 = conn
            .query_row("PRAGMA user_version", [], |r| r.get(0))
            .unwrap();
        assert_eq!(version, SCHEMA_VERSION);
        let tables: i64 = conn
            .query_row(
                "SELECT COUNT(*) FROM sqlite_master WHERE type = 'table' AND name LIKE 'vault%'",
                [],
                |r| r.get(0),
            )
            .unwrap();
        assert_eq!(tables, 3);
    }

    fn noop() -> QueuedWrite {
        let (reply, _rx) = tokio::sync::oneshot::channel::<Result<()>>();
        Box::new(Op {
            f: Some(|_: &Connection| Ok(())),
            result: None,
            reply,
        })
    }

    /// The writer's lane policy: foreground writes go first; a background write joins a group
    /// when no foreground write is flowing, or once it has waited `BACKGROUND_MAX_WAIT`.
    #[test]
    fn background_writes_yield_to_foreground_writes_for_a_bounded_time() {
        use std::time::Instant;
        let (fg_tx, fg) = crossbeam_channel::unbounded();
        let (bg_tx, bg) = crossbeam_channel::unbounded();
        let rx = Lanes { fg, bg };
        let mut held: Held = None;
        let mut last_fg = Instant::now();
        let mut group = Vec::new();
        // Both lanes have work: the group takes the foreground writes, the background one waits.
        fg_tx.send(noop()).unwrap();
        fg_tx.send(noop()).unwrap();
        bg_tx.send(noop()).unwrap();
        assert!(next_group(&rx, &mut held, &mut last_fg, &mut group));
        assert_eq!(group.len(), 2);
        assert!(held.is_some(), "the background write is held back");
        group.clear();
        // Foreground writes keep coming: a fresh background write still waits.
        fg_tx.send(noop()).unwrap();
        assert!(next_group(&rx, &mut held, &mut last_fg, &mut group));
        assert_eq!(group.len(), 1);
        assert!(held.is_some());
        group.clear();
        // Once it has waited long enough it joins the next group.
        if let Some((_, since)) = held.as_mut() {
            *since = Instant::now() - BACKGROUND_MAX_WAIT;
        }
        fg_tx.send(noop()).unwrap();
        assert!(next_group(&rx, &mut held, &mut last_fg, &mut group));
        assert_eq!(group.len(), 2);
        assert!(held.is_none());
        group.clear();
        // With no foreground write for a while, a background write runs at once.
        bg_tx.send(noop()).unwrap();
        last_fg = Instant::now() - FOREGROUND_QUIET;
        assert!(next_group(&rx, &mut held, &mut last_fg, &mut group));
        assert_eq!(group.len(), 1);
        assert!(held.is_none() && rx.bg.is_empty());
        group.clear();
        // Closed and empty lanes end the writer.
        drop((fg_tx, bg_tx));
        assert!(!next_group(&rx, &mut held, &mut last_fg, &mut group));
    }

    #[test]
    fn version_1_database_is_migrated_and_keeps_its_rows() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("engram.db");
        let payload = r#"{"role":"user","content":"deploy the payment service"}"#;
        let sig = novelty::signature_of("message", payload);
        {
            // A version 1 database: the current schema, with what versions 2, 3 and 4 changed
            // undone, and two events of one signature (one of them processed) counted the
            // version 1 way: both in event_signatures at capture.
            let mut conn = open_connection(&path).unwrap();
            migrate(&mut conn).unwrap();
            conn.execute_batch(&format!(
                "CREATE INDEX memories_event ON memories(tenant_id, event_id);
                 DROP TABLE vault_audit; DROP TABLE vault_items; DROP TABLE vaults;
                 DROP INDEX events_pending;
                 DROP INDEX events_session;
                 CREATE INDEX events_session ON events(tenant_id, session_id, seq);
                 DROP INDEX events_agent;
                 CREATE INDEX events_agent ON events(tenant_id, agent_id, seq);
                 INSERT INTO tenants(id, name, plan, created_at, updated_at)
                 VALUES ('ten_old', 'old', 'pro', '2026-01-01T00:00:00Z', '2026-01-01T00:00:00Z');
                 INSERT INTO events(id, tenant_id, session_id, type, payload, salience, trace_id,
                                    created_at, processed_at)
                 VALUES ('evt_1', 'ten_old', 's', 'message', '{payload}', 0.5, 't1',
                         '2026-01-01T00:00:00Z', '2026-01-01T00:00:01Z'),
                        ('evt_2', 'ten_old', 's', 'message', '{payload}', 0.5, 't2',
                         '2026-01-01T00:00:00Z', NULL);
                 INSERT INTO event_signatures(tenant_id, signature, seen)
                 VALUES ('ten_old', {sig}, 2);
                 PRAGMA user_version = 1;"
            ))
            .unwrap();
        }
        let mut conn = open_connection(&path).unwrap();
        migrate(&mut conn).unwrap();
        let version: u32 = conn
            .query_row("PRAGMA user_version", [], |r| r.get(0))
            .unwrap();
        assert_eq!(version, SCHEMA_VERSION);
        let count = |sql: &str| -> i64 { conn.query_row(sql, [], |r| r.get(0)).unwrap() };
        assert_eq!(
            count("SELECT count(*) FROM sqlite_master WHERE name = 'memories_event'"),
            0,
            "version 2 drops memories_event"
        );
        assert_eq!(
            count("SELECT count(*) FROM sqlite_master WHERE name = 'events_pending'"),
            1,
            "version 3 adds events_pending"
        );
        assert_eq!(
            count("SELECT count(*) FROM events INDEXED BY events_session WHERE tenant_id = 'ten_old' AND session_id = 's' AND processed_at IS NOT NULL"),
            1,
            "the session index holds the processed event"
        );
        assert_eq!(
            count("SELECT seen FROM event_signatures WHERE tenant_id = 'ten_old'"),
            1,
            "version 3 keeps only processed events in event_signatures"
        );
        let tenant: String = conn
            .query_row("SELECT name FROM tenants WHERE id = 'ten_old'", [], |r| {
                r.get(0)
            })
            .unwrap();
        assert_eq!(tenant, "old");
        drop(conn);
        // The writer counts the unprocessed event again in memory: both are still seen.
        let db = Db::open(&path, 1).unwrap();
        let seen = db
            .write_blocking(move |c| novelty::seen(c, "ten_old", sig))
            .unwrap();
        assert_eq!(seen, 2);
        db.close();
    }
}
