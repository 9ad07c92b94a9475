//! WAL checkpoints off the writer thread.
//!
//! With SQLite's default auto-checkpoint, the commit that pushes the WAL past 1000 pages copies
//! the WAL into the database file and fsyncs it — on the single writer thread, so every caller
//! queued behind that commit waits for the copy and the fsync. The writer connection therefore
//! runs with `wal_autocheckpoint = 0`, and this thread, on its own connection, checkpoints instead.
//!
//! Invariants:
//! - Durability is unchanged: a commit is durable once its frames are in the WAL
//!   (`synchronous = NORMAL`); checkpointing only moves committed frames into the main file.
//! - The periodic checkpoint is PASSIVE: it never takes the write lock and never waits on readers,
//!   so it cannot stall the writer. Once it has copied every frame, the writer's next transaction
//!   starts the WAL over from the beginning (and `journal_size_limit` trims the file).
//! - Under a steady stream of commits this thread never catches up completely (each pass ends
//!   behind the frames written while it ran), and SQLite starts the WAL over only once every
//!   frame has been copied. So the writer closes the gap itself (`CatchUp`): once the WAL file
//!   passes `CATCH_UP_AT_BYTES`, between two groups and at most every `CATCH_UP_EVERY`, it runs a
//!   PASSIVE checkpoint that only has the few frames this thread has not copied yet; its next
//!   transaction then starts the WAL over. That pause (copying the last frames and one fsync of
//!   the main file) is 5–30 ms on ext4, where a RESTART checkpoint of a large WAL held the write
//!   lock — and every request behind it — for 100–250 ms (the capture p99 of ~100 ms under wrk).
//! - SQLite syncs the main file only at the end of a checkpoint that copies every frame. Under
//!   load this thread's passes never do, so everything they copied stayed unsynced until the
//!   writer's catch-up, whose one fsync then flushed it all: 25–50 ms with a 256 MB WAL, 100 ms
//!   with 1 GB, every two seconds at full capture load — the capture p99 of 17 ms under wrk.
//!   After an incomplete pass this thread therefore flushes the main file and the WAL itself, so
//!   the catch-up's syncs find only what the last few groups wrote.
//! - The WAL is measured by the frames it holds (`WalUse`, published by this thread after each
//!   pass), not by its file's size: the file is not trimmed when the WAL starts over (truncating a
//!   file of hundreds of megabytes took the writer 15–35 ms, and regrowing it allocates blocks,
//!   whose journal commits stall the writer's appends), so a started-over WAL reuses its blocks.
//!   Once no commit has come for `IDLE_TRIM_AFTER`, this thread truncates the file
//!   (`TRUNCATE` checkpoint), so an idle server does not keep a large WAL file.
//! - The WAL stays bounded even when readers keep every reset from happening: past
//!   `RESTART_AT_BYTES` a RESTART checkpoint (which holds the write lock, at most `BUSY_WAIT`
//!   waiting for readers) follows the PASSIVE one. It is a last resort, not the regular path.
//! - The thread ends when its stop channel is dropped or signalled (`Db::close`, or the `Db` going
//!   away).

use crossbeam_channel::{Receiver, RecvTimeoutError};
use rusqlite::Connection;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// How often the checkpointer looks at the WAL.
const PERIOD: Duration = Duration::from_millis(100);
/// Longest a checkpoint waits for a lock.
const BUSY_WAIT: Duration = Duration::from_millis(50);
/// WAL use past which a RESTART checkpoint is forced (last resort; see the module docs).
const RESTART_AT_BYTES: u64 = 1024 * 1024 * 1024;
/// WAL use past which the writer closes the checkpoint gap itself (`CatchUp`). Each catch-up
/// costs the writer one fsync of the main file, so it comes about once every few seconds under
/// the heaviest capture load rather than several times a second.
pub const CATCH_UP_AT_BYTES: u64 = 256 * 1024 * 1024;
/// Least time between two catch-up checkpoints of the writer (a reader may have kept the last
/// one from resetting the WAL).
const CATCH_UP_EVERY: Duration = Duration::from_millis(250);
/// Size the WAL file is trimmed to when it starts over (`PRAGMA journal_size_limit`): above what
/// the WAL reaches between two catch-ups, so the file is not truncated under load (see the
/// module docs); the idle trim shrinks it.
pub const JOURNAL_SIZE_LIMIT: i64 = 384 * 1024 * 1024;

/// A server idle this long (no commit) gets its WAL file truncated.
const IDLE_TRIM_AFTER: Duration = Duration::from_secs(2);
/// WAL files larger than this are truncated when the server is idle.
const IDLE_TRIM_ABOVE_BYTES: u64 = 4 * 1024 * 1024;

/// Most bytes of frames the writer's catch-up copies itself: when the checkpointer's last pass
/// left more behind (a long read transaction keeps it from copying further), the writer does not
/// try, since the WAL could not start over anyway and the copy would stall every request.
const CATCH_UP_GAP_BYTES: u64 = 2 * 1024 * 1024;

/// How much of the WAL holds frames and how much of that the checkpointer has copied, in bytes,
/// as it last saw them (shared with the writer's `CatchUp`).
#[derive(Clone, Default)]
pub struct WalUse(Arc<[AtomicU64; 3]>);

impl WalUse {
    /// Bytes of frames in the WAL.
    pub fn bytes(&self) -> u64 {
        self.0[0].load(Ordering::Relaxed)
    }

    /// Bytes of frames not yet copied into the main file.
    pub fn behind(&self) -> u64 {
        self.bytes()
            .saturating_sub(self.0[1].load(Ordering::Relaxed))
    }

    fn set(&self, bytes: u64, copied: u64) {
        self.0[1].store(copied, Ordering::Relaxed);
        self.0[0].store(bytes, Ordering::Relaxed);
        self.0[2].fetch_add(1, Ordering::Release);
    }

    /// Counts the checkpointer's passes: the gap is smallest right after one.
    fn passes(&self) -> u64 {
        self.0[2].load(Ordering::Acquire)
    }
}

/// Pragmas of the writer connection: no checkpoints of its own, a bounded WAL file.
pub fn writer_pragmas(conn: &Connection) -> rusqlite::Result<()> {
    conn.execute_batch(&format!(
        "PRAGMA wal_autocheckpoint = 0; PRAGMA journal_size_limit = {JOURNAL_SIZE_LIMIT};"
    ))
}

/// Runs checkpoints for the database at `path` until `stop` is signalled or dropped, publishing
/// the WAL's use to `wal_use`; `commits` (the writer's count) tells it when the server is idle.
pub fn run(
    conn: Connection,
    path: PathBuf,
    stop: Receiver<()>,
    wal_use: WalUse,
    commits: Arc<AtomicU64>,
) {
    let wal = wal_path(&path);
    // A RESTART checkpoint holds the write lock while it waits for readers: keep that wait short
    // so the writer is never stalled for long (a busy attempt is simply retried later).
    if let Err(e) = conn.busy_timeout(BUSY_WAIT) {
        tracing::warn!(error = %e, "cannot set the checkpointer's busy timeout");
    }
    let frame_bytes = conn
        .query_row("PRAGMA page_size", [], |r| r.get::<_, i64>(0))
        .map(|p| p.max(512) as u64)
        .unwrap_or(4096)
        + 24;
    let (mut seen_commits, mut quiet_since) = (commits.load(Ordering::Relaxed), Instant::now());
    loop {
        match stop.recv_timeout(PERIOD) {
            Err(RecvTimeoutError::Timeout) => {}
            Ok(()) | Err(RecvTimeoutError::Disconnected) => return,
        }
        // PASSIVE first in every case: it copies without the write lock, so a RESTART that
        // follows (and holds the write lock) has little left to copy and only waits for readers.
        let (frames, copied) = match checkpoint(&conn, "PASSIVE") {
            Ok(f) => f,
            Err(e) => {
                tracing::warn!(error = %e, "WAL checkpoint failed");
                continue;
            }
        };
        if copied > 0 && copied < frames {
            // What an incomplete pass copied stays unsynced until a complete checkpoint — the
            // writer's catch-up — unless flushed here (see the module docs).
            flush(&path);
            flush(&wal);
        }
        wal_use.set(frames * frame_bytes, copied * frame_bytes);
        if frames * frame_bytes > RESTART_AT_BYTES {
            if let Err(e) = checkpoint(&conn, "RESTART") {
                tracing::warn!(error = %e, "WAL RESTART checkpoint failed");
            }
        }
        let now_commits = commits.load(Ordering::Relaxed);
        if now_commits != seen_commits {
            (seen_commits, quiet_since) = (now_commits, Instant::now());
        } else if quiet_since.elapsed() >= IDLE_TRIM_AFTER
            && std::fs::metadata(&wal).map(|m| m.len()).unwrap_or(0) > IDLE_TRIM_ABOVE_BYTES
        {
            match checkpoint(&conn, "TRUNCATE") {
                Ok(_) => wal_use.set(0, 0),
                Err(e) => tracing::debug!(error = %e, "idle WAL truncation did not run"),
            }
        }
    }
}

/// Flushes a file's data to disk (what a checkpoint's sync would do later, done early).
fn flush(path: &Path) {
    if let Err(e) = std::fs::File::open(path).and_then(|f| f.sync_data()) {
        tracing::debug!(error = %e, path = %path.display(), "flush failed");
    }
}

/// One checkpoint; returns the frames in the WAL and how many of them are copied into the main
/// file. A PASSIVE one with no new frames returns without syncing anything, so the periodic call
/// costs next to nothing while the database is idle.
fn checkpoint(conn: &Connection, mode: &str) -> rusqlite::Result<(u64, u64)> {
    conn.query_row(&format!("PRAGMA wal_checkpoint({mode})"), [], |r| {
        let busy: i64 = r.get(0)?;
        let log: i64 = r.get(1)?;
        let done: i64 = r.get(2)?;
        if busy != 0 || done < log {
            tracing::debug!(mode, busy, log, done, "WAL checkpoint incomplete");
        }
        Ok((log.max(0) as u64, done.max(0) as u64))
    })
}

/// The writer's side of keeping the WAL bounded (see the module docs). Call `after_group` on
/// the writer thread after each group's callers have been answered.
pub struct CatchUp {
    wal_use: WalUse,
    /// The checkpointer's pass this catch-up last looked at.
    seen_pass: u64,
    last_run: Instant,
}

impl CatchUp {
    pub fn new(wal_use: WalUse) -> CatchUp {
        let long_ago = Instant::now()
            .checked_sub(CATCH_UP_EVERY)
            .unwrap_or_else(Instant::now);
        CatchUp {
            wal_use,
            seen_pass: 0,
            last_run: long_ago,
        }
    }

    pub fn after_group(&mut self, conn: &Connection) {
        // Right after a pass of the checkpointer, when the frames left to copy are fewest.
        let pass = self.wal_use.passes();
        if pass == self.seen_pass {
            return;
        }
        self.seen_pass = pass;
        if self.last_run.elapsed() < CATCH_UP_EVERY
            || self.wal_use.bytes() <= CATCH_UP_AT_BYTES
            || self.wal_use.behind() > CATCH_UP_GAP_BYTES
        {
            return;
        }
        self.last_run = Instant::now();
        // Busy (the checkpointer is mid-pass) is fine: it is simply tried again later.
        let started = Instant::now();
        let done = checkpoint(conn, "PASSIVE");
        tracing::debug!(
            ms = started.elapsed().as_secs_f64() * 1000.0,
            ok = done.is_ok(),
            "writer catch-up checkpoint"
        );
        match done {
            // The next write transaction starts the WAL over: it is (about to be) empty.
            Ok((frames, copied)) if copied >= frames => self.wal_use.set(0, 0),
            Ok(_) => {}
            Err(e) => tracing::debug!(error = %e, "writer catch-up checkpoint did not run"),
        }
    }
}

pub fn wal_path(db: &Path) -> PathBuf {
    let mut wal = db.to_path_buf().into_os_string();
    wal.push("-wal");
    PathBuf::from(wal)
}

#[cfg(test)]
mod tests {
    use crate::store::{meta_get, meta_set, Db};
    use std::time::{Duration, Instant};

    /// The writer never checkpoints, so the main file only grows when the checkpointer copies
    /// the WAL into it; what was written stays readable, and `close` leaves no WAL behind.
    #[test]
    fn checkpointer_moves_committed_pages_into_the_main_file() {
        let dir = tempfile::tempdir().expect("temp dir");
        let path = dir.path().join("engram.db");
        let db = Db::open(&path, 1).expect("open");
        let size = || std::fs::metadata(&path).map(|m| m.len()).unwrap_or(0);
        let before = size();
        let big = "x".repeat(400_000);
        db.write_blocking(move |c| meta_set(c, "bulk", &big))
            .expect("write");
        let deadline = Instant::now() + Duration::from_secs(20);
        while size() < before + 400_000 {
            assert!(
                Instant::now() < deadline,
                "the checkpointer did not copy the WAL into the main file"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
        let read = db
            .read_blocking(|c| meta_get(c, "bulk"))
            .expect("read")
            .expect("value");
        assert_eq!(read.len(), 400_000);
        db.close();
        let wal = std::fs::metadata(super::wal_path(&path)).map(|m| m.len());
        assert_eq!(wal.unwrap_or(0), 0, "a clean close truncates the WAL");
    }

    /// Under load the WAL file is not trimmed when it starts over; once no commit has come for a
    /// while the checkpointer truncates it, so an idle server keeps no large WAL file.
    #[test]
    fn an_idle_server_gets_its_wal_file_truncated() {
        let dir = tempfile::tempdir().expect("temp dir");
        let path = dir.path().join("engram.db");
        let db = Db::open(&path, 1).expect("open");
        let wal = || {
            std::fs::metadata(super::wal_path(&path))
                .map(|m| m.len())
                .unwrap_or(0)
        };
        for i in 0..8 {
            let big = "x".repeat(1_000_000);
            db.write_blocking(move |c| meta_set(c, &format!("bulk{i}"), &big))
                .expect("write");
        }
        assert!(wal() > super::IDLE_TRIM_ABOVE_BYTES, "{}", wal());
        let deadline = Instant::now() + super::IDLE_TRIM_AFTER + Duration::from_secs(20);
        while wal() > 0 {
            assert!(
                Instant::now() < deadline,
                "the idle WAL was not truncated: {}",
                wal()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
        let read = db.read_blocking(|c| meta_get(c, "bulk7")).expect("read");
        assert_eq!(read.map(|v| v.len()), Some(1_000_000));
        db.close();
    }

    /// The writer connection does not checkpoint on its own.
    #[test]
    fn writer_connection_has_auto_checkpoint_off() {
        let dir = tempfile::tempdir().expect("temp dir");
        let db = Db::open(&dir.path().join("engram.db"), 1).expect("open");
        let pages: i64 = db
            .write_blocking(|c| Ok(c.query_row("PRAGMA wal_autocheckpoint", [], |r| r.get(0))?))
            .expect("pragma");
        assert_eq!(pages, 0);
        db.close();
    }
}
