//! The writer thread: one connection that applies every write of the server in group commits,
//! fed by two lanes (foreground for requests, background for jobs). See `store` for the
//! invariants; `combine` adds writes that merge with the ones queued behind them.

use super::{checkpoint, counters, Conn};
use crate::error::{Error, Result};
use crossbeam_channel::Receiver;
use rusqlite::Connection;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

/// A group commit (with the checkpoint catch-up after it) this long is logged at debug level.
const SLOW_GROUP: Duration = Duration::from_millis(5);
/// Most write operations one group commit takes.
const MAX_GROUP: usize = 512;
/// Longest a background write waits while foreground writes keep the writer busy.
const BACKGROUND_MAX_WAIT: Duration = Duration::from_millis(100);
/// While both lanes have work, the background lane gets this much writer time per unit of
/// foreground time, on top of the time the writer would have spent waiting for work.
const BACKGROUND_SHARE: f64 = 1.0;
/// Most writer time the background lane can bank (so a long quiet spell does not let a burst of
/// background writes hold requests back) and most it can owe.
const BACKGROUND_MAX_CREDIT: Duration = Duration::from_millis(20);
const BACKGROUND_MAX_DEBT: Duration = Duration::from_millis(100);

/// The background lane's claim on the writer's time (see the module docs of `store`): it earns
/// the time the writer waited for work and `BACKGROUND_SHARE` of the time foreground groups took,
/// and spends the time its own groups took. A held background write may join a group while the
/// claim is not negative. Under a steady stream of requests the writer is rarely quiet for
/// `FOREGROUND_QUIET`, and without a claim on the gaps between groups processing got one write
/// per `BACKGROUND_MAX_WAIT` (~1,300 events/s), far below half the capture rate.
#[derive(Default)]
struct Share {
    /// Seconds of writer time owed to the background lane (negative: it ran ahead).
    credit: f64,
}

impl Share {
    fn may_run(&self) -> bool {
        self.credit >= 0.0
    }

    fn waited(&mut self, idle: Duration) {
        self.add(idle.as_secs_f64());
    }

    fn ran(&mut self, took: Duration, background: bool) {
        if background {
            self.add(-took.as_secs_f64());
        } else {
            self.add(took.as_secs_f64() * BACKGROUND_SHARE);
        }
    }

    fn add(&mut self, secs: f64) {
        self.credit = (self.credit + secs).clamp(
            -BACKGROUND_MAX_DEBT.as_secs_f64(),
            BACKGROUND_MAX_CREDIT.as_secs_f64(),
        );
    }
}
/// Foreground writes count as flowing until none came for this long.
const FOREGROUND_QUIET: Duration = Duration::from_millis(2);

/// A write waiting in one of the writer's lanes.
pub(crate) type QueuedWrite = Box<dyn PendingWrite>;

/// One queued write: runs inside a savepoint, answers after the commit.
pub(crate) trait PendingWrite: Send {
    /// Runs the operation; `false` if it failed (its savepoint is then rolled back).
    fn apply(&mut self, conn: &Conn) -> bool;
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

pub(super) struct Op<F, T> {
    pub(super) f: Option<F>,
    pub(super) result: Option<Result<T>>,
    pub(super) reply: tokio::sync::oneshot::Sender<Result<T>>,
}

impl<F, T> PendingWrite for Op<F, T>
where
    F: FnOnce(&Conn) -> Result<T> + Send + 'static,
    T: Send + 'static,
{
    fn apply(&mut self, conn: &Conn) -> bool {
        let f = self.f.take().expect("applied once");
        let r = run_caught(|| f(conn));
        let ok = r.is_ok();
        self.result = Some(r);
        ok
    }

    fn as_any(&mut self) -> &mut dyn std::any::Any {
        self
    }

    fn complete(self: Box<Self>, commit: std::result::Result<(), String>) {
        let _ = self.reply.send(settle(commit, self.result));
    }
}

/// Runs a write's closure, turning a panic into an error (the writer thread lives on).
pub(super) fn run_caught<T>(f: impl FnOnce() -> Result<T>) -> Result<T> {
    catch_unwind(AssertUnwindSafe(f)).unwrap_or_else(|p| {
        Err(Error::Internal(format!(
            "panic in write: {}",
            panic_text(&p)
        )))
    })
}

/// What the caller of a write gets once its group's commit is known: its own result if the
/// commit succeeded, its own error if it failed (its savepoint was rolled back), else the
/// commit's error.
pub(super) fn settle<T>(
    commit: std::result::Result<(), String>,
    result: Option<Result<T>>,
) -> Result<T> {
    match (commit, result) {
        (Ok(()), Some(r)) => r,
        (_, Some(Err(e))) => Err(e),
        (Err(e), Some(Ok(_))) => Err(Error::Internal(format!("commit failed: {e}"))),
        (_, None) => Err(Error::Internal("write was not applied".into())),
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

/// The writer's two queues (see the module docs).
#[derive(Clone)]
pub(super) struct Lanes<T> {
    pub(super) fg: T,
    pub(super) bg: T,
}

#[derive(Clone, Copy)]
pub(super) enum Lane {
    Foreground,
    Background,
}

/// A background write the writer has taken off its lane but not yet run, and since when it waits.
type Held = Option<(QueuedWrite, std::time::Instant)>;

/// Blocks until a write is queued in either lane, then fills `group` (see the module docs).
/// Returns `None` once both lanes are closed and empty, else whether the group holds a
/// background write (always its last).
fn next_group(
    rx: &Lanes<Receiver<QueuedWrite>>,
    held: &mut Held,
    last_fg: &mut std::time::Instant,
    share: &Share,
    group: &mut Vec<QueuedWrite>,
) -> Option<bool> {
    use std::time::Instant;
    if held.is_none() {
        if let Ok(op) = rx.bg.try_recv() {
            *held = Some((op, Instant::now()));
        }
    }
    if held.is_some()
        && rx.fg.is_empty()
        && last_fg.elapsed() < FOREGROUND_QUIET
        && !share.may_run()
    {
        // Foreground writes are flowing and the background lane has had its share: wait for the
        // next foreground write, or until the held background write may run.
        let wait = FOREGROUND_QUIET.saturating_sub(last_fg.elapsed());
        if let Ok(op) = rx.fg.recv_timeout(wait) {
            group.push(op);
        }
    } else if held.is_none() && rx.fg.is_empty() {
        crossbeam_channel::select! {
            recv(rx.fg) -> op => match op {
                Ok(op) => group.push(op),
                Err(_) => match rx.bg.recv() {
                    Ok(op) => *held = Some((op, Instant::now())),
                    Err(_) => return None,
                },
            },
            recv(rx.bg) -> op => match op {
                Ok(op) => *held = Some((op, Instant::now())),
                Err(_) => match rx.fg.recv() {
                    Ok(op) => group.push(op),
                    Err(_) => return None,
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
        .is_some_and(|(_, since)| share.may_run() || since.elapsed() >= BACKGROUND_MAX_WAIT);
    let quiet = last_fg.elapsed() >= FOREGROUND_QUIET;
    if !group.is_empty() {
        *last_fg = Instant::now();
    }
    if (group.is_empty() && quiet) || due {
        if let Some((op, _)) = held.take() {
            group.push(op);
            return Some(true);
        }
    }
    Some(false)
}

/// The writer's connection: SQLite (with its checkpoint catch-up) or PostgreSQL.
pub(super) enum WriterConn {
    Sqlite(Connection, checkpoint::CatchUp),
    Pg(Box<super::sql::PgConn>),
}

impl WriterConn {
    fn conn(&self) -> Conn<'_> {
        match self {
            WriterConn::Sqlite(c, _) => Conn::sqlite_of(c),
            WriterConn::Pg(c) => Conn::pg_of(c),
        }
    }
}

pub(super) fn writer_loop(
    mut conn: WriterConn,
    rx: Lanes<Receiver<QueuedWrite>>,
    commits: Arc<AtomicU64>,
) {
    let mut group: Vec<QueuedWrite> = Vec::with_capacity(MAX_GROUP + 1);
    let mut held: Held = None;
    let mut last_fg = std::time::Instant::now();
    let mut share = Share::default();
    loop {
        let waiting = std::time::Instant::now();
        let Some(background) = next_group(&rx, &mut held, &mut last_fg, &share, &mut group) else {
            break;
        };
        share.waited(waiting.elapsed());
        if group.is_empty() {
            continue;
        }
        commit_group(&mut conn, &mut group, background, &commits, &mut share);
    }
    // Checkpoint so the WAL does not outlive a clean shutdown.
    if let WriterConn::Sqlite(c, _) = &conn {
        let _ = c.execute_batch("PRAGMA wal_checkpoint(TRUNCATE);");
    }
}

/// Runs `group` in one transaction, answers its callers, and gives the checkpoint catch-up its
/// turn; counts the time against the background lane's share when `background`.
fn commit_group(
    conn: &mut WriterConn,
    group: &mut Vec<QueuedWrite>,
    background: bool,
    commits: &AtomicU64,
    share: &mut Share,
) {
    let started = std::time::Instant::now();
    let writes = group.len();
    let outcome = run_group(&conn.conn(), group);
    let ran = started.elapsed();
    share.ran(ran, background);
    if outcome.is_ok() {
        commits.fetch_add(1, Ordering::Relaxed);
    } else if let Err(e) = &outcome {
        tracing::error!(error = %e, ops = group.len(), "group commit failed");
    }
    for op in group.drain(..) {
        op.complete(outcome.clone());
    }
    let caught = std::time::Instant::now();
    if let WriterConn::Sqlite(c, catch_up) = conn {
        catch_up.after_group(c);
    }
    let caught = caught.elapsed();
    if ran + caught >= SLOW_GROUP {
        tracing::debug!(
            group_ms = ran.as_secs_f64() * 1000.0,
            catch_up_ms = caught.as_secs_f64() * 1000.0,
            writes,
            background,
            "slow group commit"
        );
    }
}

fn run_group(conn: &Conn, group: &mut [QueuedWrite]) -> std::result::Result<(), String> {
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
    let begin = if conn.is_postgres() {
        "BEGIN"
    } else {
        "BEGIN IMMEDIATE"
    };
    conn.execute_batch(begin).map_err(|e| e.to_string())?;
    // PostgreSQL: shared counters are bumped at the end, in one order (`counters`).
    counters::begin(conn);
    let rollback = || {
        counters::discard(conn);
        let _ = conn.execute_batch("ROLLBACK");
    };
    for op in group.iter_mut().filter(|op| !op.absorbed()) {
        if let Err(e) = conn.execute_batch("SAVEPOINT op") {
            rollback();
            return Err(e.to_string());
        }
        let mark = counters::mark(conn);
        let ok = op.apply(conn);
        let end = if ok {
            conn.execute_batch("RELEASE op")
        } else {
            counters::rollback_to(conn, mark);
            conn.execute_batch("ROLLBACK TO op; RELEASE op")
        };
        if let Err(e) = end {
            rollback();
            return Err(e.to_string());
        }
    }
    if let Err(e) = counters::apply(conn) {
        rollback();
        return Err(e.to_string());
    }
    conn.execute_batch("COMMIT").map_err(|e| {
        rollback();
        e.to_string()
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn noop() -> QueuedWrite {
        let (reply, _rx) = tokio::sync::oneshot::channel::<Result<()>>();
        Box::new(Op {
            f: Some(|_: &Conn| Ok(())),
            result: None,
            reply,
        })
    }

    /// The writer's lane policy: foreground writes go first; a background write joins a group
    /// when no foreground write is flowing, when the lane's claim on the writer's time (`Share`)
    /// is not negative, or once it has waited `BACKGROUND_MAX_WAIT`.
    #[test]
    fn background_writes_yield_to_foreground_writes_for_a_bounded_time() {
        use std::time::Instant;
        let (fg_tx, fg) = crossbeam_channel::unbounded();
        let (bg_tx, bg) = crossbeam_channel::unbounded();
        let rx = Lanes { fg, bg };
        let mut held: Held = None;
        let mut last_fg = Instant::now();
        // The background lane has used its share of the writer's time.
        let mut share = Share::default();
        share.ran(Duration::from_millis(50), true);
        let mut group = Vec::new();
        // Both lanes have work: the group takes the foreground writes, the background one waits.
        fg_tx.send(noop()).unwrap();
        fg_tx.send(noop()).unwrap();
        bg_tx.send(noop()).unwrap();
        assert!(next_group(&rx, &mut held, &mut last_fg, &share, &mut group).is_some());
        assert_eq!(group.len(), 2);
        assert!(held.is_some(), "the background write is held back");
        group.clear();
        // Foreground writes keep coming: a fresh background write still waits.
        fg_tx.send(noop()).unwrap();
        assert!(next_group(&rx, &mut held, &mut last_fg, &share, &mut group).is_some());
        assert_eq!(group.len(), 1);
        assert!(held.is_some());
        group.clear();
        // Once it has waited long enough it joins the next group.
        if let Some((_, since)) = held.as_mut() {
            *since = Instant::now() - BACKGROUND_MAX_WAIT;
        }
        fg_tx.send(noop()).unwrap();
        assert!(next_group(&rx, &mut held, &mut last_fg, &share, &mut group).is_some());
        assert_eq!(group.len(), 2);
        assert!(held.is_none());
        group.clear();
        // With no foreground write for a while, a background write runs at once.
        bg_tx.send(noop()).unwrap();
        last_fg = Instant::now() - FOREGROUND_QUIET;
        assert!(next_group(&rx, &mut held, &mut last_fg, &share, &mut group).is_some());
        assert_eq!(group.len(), 1);
        assert!(held.is_none() && rx.bg.is_empty());
        group.clear();
        // Time the writer spent waiting for work, or foreground groups ran, is owed to the
        // background lane: then a background write joins the next group at once, foreground
        // writes flowing or not.
        share.waited(Duration::from_millis(60));
        assert!(share.may_run());
        bg_tx.send(noop()).unwrap();
        fg_tx.send(noop()).unwrap();
        last_fg = Instant::now();
        assert_eq!(
            next_group(&rx, &mut held, &mut last_fg, &share, &mut group),
            Some(true)
        );
        assert_eq!(group.len(), 2);
        group.clear();
        // Running it spends the claim: the next one waits again.
        share.ran(Duration::from_millis(30), true);
        assert!(!share.may_run());
        // Closed and empty lanes end the writer.
        drop((fg_tx, bg_tx));
        assert!(next_group(&rx, &mut held, &mut last_fg, &share, &mut group).is_none());
    }
}
