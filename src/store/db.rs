//! `Db`: the handle the server shares. It owns the writer thread, the checkpointer, the pool of
//! readers and the usage-counter flusher, and hands closures to them.

use super::conn::{apply_pragmas, open_connection, ReadPool};
use super::writer::{writer_loop, Lane, Lanes, Op, QueuedWrite, WriterConn};
use super::Conn;
use super::{checkpoint, novelty, schema, usage_buffer};
use crate::error::{Error, Result};
use crossbeam_channel::{Receiver, Sender};
use r2d2_sqlite::SqliteConnectionManager;
use rusqlite::OpenFlags;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::Duration;

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

pub(super) struct Inner {
    /// The SQLite file, or the PostgreSQL URL (password hidden).
    path: PathBuf,
    readers: Readers,
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
    pub(super) usage: usage_buffer::UsageBuffer,
    usage_stop: Mutex<Option<Sender<()>>>,
    usage_flusher: Mutex<Option<JoinHandle<()>>>,
    /// Notifications from other nodes (PostgreSQL; never started on SQLite).
    listener: Arc<super::listen::Listener>,
}

/// The pool of reading connections.
enum Readers {
    Sqlite(ReadPool),
    Pg(r2d2::Pool<super::postgres::Manager>),
}

/// The database handle shared by the server (cheap to clone).
#[derive(Clone)]
pub struct Db {
    pub(super) inner: Arc<Inner>,
}

impl Db {
    /// Opens (creating or migrating) the SQLite database at `path` and starts the writer thread.
    pub fn open(path: &Path, read_pool_size: u32) -> Result<Db> {
        let mut conn = open_connection(path)?;
        schema::migrate(&mut conn)?;
        checkpoint::writer_pragmas(&conn)?;
        novelty::rebuild_pending(&Conn::sqlite_of(&conn))?;
        let (checkpoint_stop, stop_rx) = crossbeam_channel::bounded::<()>(1);
        let commits = Arc::new(AtomicU64::new(0));
        let wal_use = checkpoint::WalUse::default();
        let checkpointer = {
            let cconn = open_connection(path)?;
            let path = path.to_path_buf();
            let (wal_use, commits) = (wal_use.clone(), commits.clone());
            std::thread::Builder::new()
                .name("engram-checkpoint".into())
                .spawn(move || checkpoint::run(cconn, path, stop_rx, wal_use, commits))
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
        let catch_up = checkpoint::CatchUp::new(wal_use);
        Db::start(
            Readers::Sqlite(readers),
            WriterConn::Sqlite(conn, catch_up),
            path.to_path_buf(),
            commits,
            Some((checkpoint_stop, checkpointer)),
        )
    }

    /// Opens (creating or migrating the schema of) the PostgreSQL database at `url` and starts
    /// the writer thread on one connection of it, with a pool of readers (docs/scale-out.md).
    pub fn open_postgres(url: &str, read_pool_size: u32) -> Result<Db> {
        let writer = super::postgres::connect(url)?;
        super::postgres::migrate(&writer)?;
        novelty::rebuild_pending(&Conn::pg_of(&writer))?;
        let readers = r2d2::Pool::builder()
            .max_size(read_pool_size.max(1))
            .min_idle(Some(1))
            .connection_timeout(Duration::from_secs(10))
            .build(super::postgres::Manager::new(url))?;
        let db = Db::start(
            Readers::Pg(readers),
            WriterConn::Pg(Box::new(writer)),
            PathBuf::from(super::postgres::redacted(url)),
            Arc::new(AtomicU64::new(0)),
            None,
        )?;
        db.inner.listener.start(url).map_err(Error::internal)?;
        Ok(db)
    }

    /// Calls `f` with the payload of each notification on `channel` (`listen::JOBS`,
    /// `listen::FEED`) from any node, and with an empty one whenever notifications may have been
    /// missed. Never called on SQLite (one server: nothing to hear from).
    pub fn subscribe(&self, channel: &'static str, f: impl Fn(&str) + Send + Sync + 'static) {
        self.inner.listener.subscribe(channel, f);
    }

    /// Starts the writer thread and the usage flusher over an opened backend.
    fn start(
        readers: Readers,
        writer_conn: WriterConn,
        path: PathBuf,
        commits: Arc<AtomicU64>,
        checkpointer: Option<(Sender<()>, JoinHandle<()>)>,
    ) -> Result<Db> {
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
        let writer = {
            let rx = rx.clone();
            let commits = commits.clone();
            std::thread::Builder::new()
                .name("engram-writer".into())
                .spawn(move || writer_loop(writer_conn, rx, commits))
                .map_err(Error::internal)?
        };
        let (checkpoint_stop, checkpointer) = match checkpointer {
            Some((stop, handle)) => (Some(stop), Some(handle)),
            None => (None, None),
        };
        let db = Db {
            inner: Arc::new(Inner {
                path,
                readers,
                writer_tx: Mutex::new(Some(tx)),
                writer_rx_len: rx,
                writer: Mutex::new(Some(writer)),
                checkpoint_stop: Mutex::new(checkpoint_stop),
                checkpointer: Mutex::new(checkpointer),
                read_waiting: AtomicUsize::new(0),
                commits,
                usage: Default::default(),
                usage_stop: Mutex::new(None),
                usage_flusher: Mutex::new(None),
                listener: Default::default(),
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

    /// Whether the database is PostgreSQL (else SQLite).
    pub fn is_postgres(&self) -> bool {
        matches!(self.inner.readers, Readers::Pg(_))
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
        F: FnOnce(&Conn) -> Result<T> + Send + 'static,
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
        F: FnOnce(&Conn) -> Result<T> + Send + 'static,
        T: Send + 'static,
    {
        self.submit(Lane::Foreground, f)?
            .await
            .map_err(|_| Error::Internal("database writer dropped a write".into()))?
    }

    /// `write` for plain threads (workers); must not be called on a tokio worker thread.
    pub fn write_blocking<T, F>(&self, f: F) -> Result<T>
    where
        F: FnOnce(&Conn) -> Result<T> + Send + 'static,
        T: Send + 'static,
    {
        self.write_waiting(Lane::Foreground, f)
    }

    /// `write_blocking` in the background lane (job workers): it yields to request writes while
    /// they keep the writer busy, for at most `BACKGROUND_MAX_WAIT` at a time.
    pub fn write_background<T, F>(&self, f: F) -> Result<T>
    where
        F: FnOnce(&Conn) -> Result<T> + Send + 'static,
        T: Send + 'static,
    {
        self.write_waiting(Lane::Background, f)
    }

    /// Queues `f` in `lane` and blocks the calling (non-tokio) thread until its commit.
    fn write_waiting<T, F>(&self, lane: Lane, f: F) -> Result<T>
    where
        F: FnOnce(&Conn) -> Result<T> + Send + 'static,
        T: Send + 'static,
    {
        self.submit(lane, f)?
            .blocking_recv()
            .map_err(|_| Error::Internal("database writer dropped a write".into()))?
    }

    /// Runs `f` with a pooled read-only connection on the blocking thread pool.
    pub async fn read<T, F>(&self, f: F) -> Result<T>
    where
        F: FnOnce(&Conn) -> Result<T> + Send + 'static,
        T: Send + 'static,
    {
        let db = self.clone();
        tokio::task::spawn_blocking(move || db.read_blocking(f))
            .await
            .map_err(|e| Error::Internal(format!("read task failed: {e}")))?
    }

    /// Runs `f` on a connection of its own whose statements commit one by one, outside the
    /// writer's transactions: PostgreSQL, for the limits every node shares
    /// (`shared_limits`: a short locked update must not wait behind queued writes). On SQLite
    /// (one server, nothing shared) it runs on the writer.
    pub fn shared_blocking<T, F>(&self, f: F) -> Result<T>
    where
        F: FnOnce(&Conn) -> Result<T> + Send + 'static,
        T: Send + 'static,
    {
        match &self.inner.readers {
            Readers::Pg(_) => self.read_blocking(f),
            Readers::Sqlite(_) => self.write_blocking(f),
        }
    }

    /// `read` for plain threads.
    pub fn read_blocking<T, F>(&self, f: F) -> Result<T>
    where
        F: FnOnce(&Conn) -> Result<T>,
    {
        self.inner.read_waiting.fetch_add(1, Ordering::Relaxed);
        match &self.inner.readers {
            Readers::Sqlite(pool) => {
                let conn = pool.get();
                self.inner.read_waiting.fetch_sub(1, Ordering::Relaxed);
                let conn = conn?;
                f(&Conn::sqlite_of(&conn))
            }
            Readers::Pg(pool) => {
                let conn = pool.get();
                self.inner.read_waiting.fetch_sub(1, Ordering::Relaxed);
                let conn = conn?;
                f(&Conn::pg_of(&conn))
            }
        }
    }

    pub fn path(&self) -> &Path {
        &self.inner.path
    }

    pub fn stats(&self) -> DbStats {
        let (state, max) = match &self.inner.readers {
            Readers::Sqlite(p) => (p.state(), p.max_size()),
            Readers::Pg(p) => (p.state(), p.max_size()),
        };
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
            max,
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
        self.inner.listener.stop();
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
