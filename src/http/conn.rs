//! Connection hygiene (docs/security.md §"Connections"): how many connections are open, which are
//! idle, which have a client that stopped reading, and closing them.
//!
//! Invariants:
//! - At most `limit` client connections are open. Past it the accept loop stops accepting (new
//!   connections wait in the kernel's backlog) and asks the longest-idle connections to close, so
//!   a flood of idle connections cannot keep a new request (a health check, say) out.
//! - A connection with no request in flight closes after the idle timeout (at most a quarter of
//!   it late), counted from the end of its last response (HTTP/2 pings do not keep it open).
//! - A response the client stops reading is abandoned after the write-stall timeout; once the
//!   server is shutting down, a client that stops reading its response or sending its request
//!   body for `SHUTDOWN_STALL` loses its connection — stalled clients never hold shutdown for the
//!   whole grace period.
//! - A request is in flight from the moment its handler starts until its response body has been
//!   written (or dropped), so a long stream is never mistaken for an idle connection.

use std::collections::HashMap;
use std::io;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::sync::{watch, Notify, OwnedSemaphorePermit, Semaphore};

/// How long a client that stopped reading or sending may hold a request once shutdown has begun.
pub const SHUTDOWN_STALL: Duration = Duration::from_secs(2);

/// Milliseconds since the first call (a cheap, monotonic clock for per-connection timestamps).
fn now_ms() -> u64 {
    static BASE: OnceLock<Instant> = OnceLock::new();
    // Start at 1 so that 0 can mean "never".
    BASE.get_or_init(Instant::now).elapsed().as_millis() as u64 + 1
}

/// The state of one connection, shared by its I/O, its requests and its watchdog.
#[derive(Default)]
pub struct Track {
    inflight: AtomicUsize,
    /// When the connection last became idle (no request in flight).
    idle_since: AtomicU64,
    /// When a write first found the client's receive window full (0 = not blocked).
    write_blocked_since: AtomicU64,
    /// When a request started waiting for more of its body (0 = not waiting).
    body_wait_since: AtomicU64,
    /// When the connection was asked to close to make room (0 = not asked).
    evicted_at: AtomicU64,
    wake: Notify,
}

impl Track {
    fn new() -> Track {
        let t = Track::default();
        t.idle_since.store(now_ms(), Ordering::Relaxed);
        t
    }

    /// Marks a request in flight until the returned guard drops.
    pub fn request(self: &Arc<Self>) -> InflightGuard {
        self.inflight.fetch_add(1, Ordering::AcqRel);
        InflightGuard(self.clone())
    }

    /// Marks the start (`true`) or end of a wait for more of a request body: once shutdown has
    /// begun, a wait longer than `SHUTDOWN_STALL` closes the connection.
    pub fn waiting_for_body(&self, waiting: bool) {
        self.body_wait_since
            .store(if waiting { now_ms() } else { 0 }, Ordering::Relaxed);
    }

    fn is_idle(&self) -> bool {
        self.inflight.load(Ordering::Acquire) == 0
    }

    fn evict(&self) {
        self.evicted_at.store(now_ms(), Ordering::Release);
        self.wake.notify_one();
    }

    fn is_evicted(&self) -> bool {
        self.evicted_at.load(Ordering::Acquire) != 0
    }
}

/// Holds a request in flight (kept inside the response body, so it ends when the body is done).
pub struct InflightGuard(Arc<Track>);

impl Drop for InflightGuard {
    fn drop(&mut self) {
        // The watchdog is not woken here (a wake per request would cost a task switch per
        // request): while requests are in flight it re-checks every `BUSY_RECHECK` of the idle
        // timeout, so an idle connection closes at most that much late.
        self.0.idle_since.store(now_ms(), Ordering::Relaxed);
        self.0.inflight.fetch_sub(1, Ordering::AcqRel);
    }
}

/// How long a connection asked to make room has to close before another is asked.
const EVICTION_GRACE: Duration = Duration::from_secs(1);

/// While a connection is busy its watchdog re-checks after this fraction of the idle timeout.
const BUSY_RECHECK: u32 = 4;

/// Timeouts a connection's watchdog enforces.
#[derive(Clone, Copy, Debug)]
pub struct Timeouts {
    pub idle: Duration,
    pub write_stall: Duration,
}

/// Why a watchdog closed its connection.
#[derive(Debug, PartialEq, Eq)]
pub enum Closed {
    Idle,
    Evicted,
    WriteStalled,
    /// Shutdown began and the client stopped sending its request body.
    BodyStalled,
}

/// Waits until the connection should be closed. The caller drops the connection when it returns.
pub async fn watchdog(
    track: Arc<Track>,
    t: Timeouts,
    mut stopping: watch::Receiver<bool>,
) -> Closed {
    loop {
        let shutting_down = *stopping.borrow();
        let now = now_ms();
        let stall_limit = if shutting_down {
            SHUTDOWN_STALL.min(t.write_stall)
        } else {
            t.write_stall
        };
        let blocked = track.write_blocked_since.load(Ordering::Relaxed);
        if blocked != 0 && now.saturating_sub(blocked) >= stall_limit.as_millis() as u64 {
            return Closed::WriteStalled;
        }
        let body_wait = track.body_wait_since.load(Ordering::Relaxed);
        if shutting_down
            && body_wait != 0
            && now.saturating_sub(body_wait) >= SHUTDOWN_STALL.as_millis() as u64
        {
            return Closed::BodyStalled;
        }
        let mut next = if blocked != 0 {
            Duration::from_millis((blocked + stall_limit.as_millis() as u64).saturating_sub(now))
        } else if shutting_down {
            SHUTDOWN_STALL / 4
        } else {
            // Re-check for a stall, or for the end of the last request, at least this often.
            stall_limit.min(t.idle / BUSY_RECHECK)
        };
        if track.is_idle() {
            if track.is_evicted() {
                return Closed::Evicted;
            }
            let idle_for = now.saturating_sub(track.idle_since.load(Ordering::Relaxed));
            let idle_ms = t.idle.as_millis() as u64;
            if idle_for >= idle_ms {
                return Closed::Idle;
            }
            next = next.min(Duration::from_millis(idle_ms - idle_for));
        }
        let next = next.max(Duration::from_millis(10));
        tokio::select! {
            _ = tokio::time::sleep(next) => {}
            _ = track.wake.notified() => {}
            changed = stopping.changed(), if !shutting_down => {
                if changed.is_err() {
                    // The server is gone; the connection goes with it.
                    return Closed::Evicted;
                }
            }
        }
    }
}

/// A stream that records when the client stops taking what is written to it.
pub struct Tracked<S> {
    inner: S,
    track: Arc<Track>,
}

impl<S> Tracked<S> {
    pub fn new(inner: S, track: Arc<Track>) -> Tracked<S> {
        Tracked { inner, track }
    }

    fn note<T>(&self, p: &Poll<T>) {
        let t = &self.track.write_blocked_since;
        if p.is_pending() {
            if t.load(Ordering::Relaxed) == 0 {
                t.store(now_ms(), Ordering::Relaxed);
            }
        } else if t.load(Ordering::Relaxed) != 0 {
            t.store(0, Ordering::Relaxed);
        }
    }
}

impl<S: AsyncRead + Unpin> AsyncRead for Tracked<S> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_read(cx, buf)
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for Tracked<S> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let p = Pin::new(&mut self.inner).poll_write(cx, buf);
        self.note(&p);
        p
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let p = Pin::new(&mut self.inner).poll_write_vectored(cx, bufs);
        self.note(&p);
        p
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let p = Pin::new(&mut self.inner).poll_flush(cx);
        self.note(&p);
        p
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}

/// The open connections and the cap on them.
pub struct Connections {
    limit: usize,
    permits: Arc<Semaphore>,
    open: Mutex<HashMap<u64, Arc<Track>>>,
    next_id: AtomicU64,
    /// Whether the "limit reached" line was logged for the current episode.
    saturated: AtomicBool,
}

/// A slot for one connection: frees its place (and forgets its track) when dropped.
pub struct Slot {
    id: u64,
    pub track: Arc<Track>,
    owner: Arc<Connections>,
    _permit: OwnedSemaphorePermit,
}

impl Drop for Slot {
    fn drop(&mut self) {
        self.owner
            .open
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .remove(&self.id);
    }
}

impl Connections {
    pub fn new(limit: usize) -> Arc<Connections> {
        let limit = limit.max(1);
        Arc::new(Connections {
            limit,
            permits: Arc::new(Semaphore::new(limit)),
            open: Mutex::new(HashMap::new()),
            next_id: AtomicU64::new(1),
            saturated: AtomicBool::new(false),
        })
    }

    pub fn limit(&self) -> usize {
        self.limit
    }

    pub fn open_count(&self) -> usize {
        self.limit - self.permits.available_permits()
    }

    /// Waits for room for one more connection. At the cap it asks the longest-idle connection
    /// to close (logging once per episode), then waits for a place to free up.
    pub async fn reserve(self: &Arc<Self>) -> Slot {
        let permit = match self.permits.clone().try_acquire_owned() {
            Ok(p) => {
                if self.saturated.load(Ordering::Relaxed) && self.open_count() * 10 < self.limit * 9
                {
                    self.saturated.store(false, Ordering::Relaxed);
                    tracing::info!(
                        open = self.open_count(),
                        limit = self.limit,
                        "open connections are below the limit again"
                    );
                }
                p
            }
            Err(_) => {
                if !self.saturated.swap(true, Ordering::Relaxed) {
                    tracing::warn!(
                        limit = self.limit,
                        "connection limit reached: closing the longest-idle connections; new \
                         connections wait until one closes (raise --max-connections or the \
                         open-file limit if this is regular load)"
                    );
                }
                loop {
                    self.evict_longest_idle();
                    tokio::select! {
                        p = self.permits.clone().acquire_owned() => {
                            break p.expect("the semaphore is never closed");
                        }
                        _ = tokio::time::sleep(Duration::from_millis(100)) => {}
                    }
                }
            }
        };
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        let track = Arc::new(Track::new());
        self.open
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert(id, track.clone());
        Slot {
            id,
            track,
            owner: self.clone(),
            _permit: permit,
        }
    }

    /// Asks the longest-idle connection to close, unless one asked less than `EVICTION_GRACE`
    /// ago is still closing: one eviction frees the one place a waiting connection needs, and
    /// asking more at once (on a loaded machine, where closing takes a while) would at last reach
    /// a connection just accepted whose first request has not started yet, cutting it.
    fn evict_longest_idle(&self) {
        let open = self.open.lock().unwrap_or_else(|p| p.into_inner());
        let now = now_ms();
        let grace = EVICTION_GRACE.as_millis() as u64;
        let closing = open.values().any(|t| {
            let at = t.evicted_at.load(Ordering::Relaxed);
            at != 0 && now.saturating_sub(at) < grace
        });
        if closing {
            return;
        }
        // Idle times are in milliseconds, and a flood opens many connections in one: ties go to
        // the connection opened first (ids rise), never to whichever the map happens to yield.
        let oldest = open
            .iter()
            .filter(|(_, t)| t.is_idle() && !t.is_evicted())
            .min_by_key(|(id, t)| (t.idle_since.load(Ordering::Relaxed), **id))
            .map(|(_, t)| t);
        if let Some(t) = oldest {
            t.evict();
        }
    }
}

/// The connection cap when the operator sets none: what the open-file limit leaves after the
/// database, the search index and the outbound connections are served.
pub fn default_limit(read_pool: u32) -> usize {
    let nofile = rustix::process::getrlimit(rustix::process::Resource::Nofile)
        .current
        .unwrap_or(1 << 20);
    let nofile = usize::try_from(nofile).unwrap_or(usize::MAX);
    let reserve = (nofile / 4).max(64) + read_pool as usize;
    nofile.saturating_sub(reserve).clamp(16, 16_384)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn an_idle_connection_is_closed_after_the_idle_timeout() {
        let track = Arc::new(Track::new());
        let (_tx, rx) = watch::channel(false);
        let t = Timeouts {
            idle: Duration::from_millis(50),
            write_stall: Duration::from_secs(30),
        };
        let r = tokio::time::timeout(Duration::from_secs(5), watchdog(track, t, rx)).await;
        assert_eq!(r.unwrap(), Closed::Idle);
    }

    #[tokio::test]
    async fn a_request_in_flight_keeps_the_connection_open() {
        let track = Arc::new(Track::new());
        let guard = track.request();
        let (_tx, rx) = watch::channel(false);
        let t = Timeouts {
            idle: Duration::from_millis(20),
            write_stall: Duration::from_secs(30),
        };
        let dog = tokio::spawn(watchdog(track.clone(), t, rx));
        tokio::time::sleep(Duration::from_millis(150)).await;
        assert!(!dog.is_finished(), "closed while a request was in flight");
        drop(guard);
        let r = tokio::time::timeout(Duration::from_secs(5), dog).await;
        assert_eq!(r.unwrap().unwrap(), Closed::Idle);
    }

    #[tokio::test]
    async fn a_stalled_writer_is_cut_quickly_once_shutdown_begins() {
        let track = Arc::new(Track::new());
        let _guard = track.request();
        track.write_blocked_since.store(now_ms(), Ordering::Relaxed);
        let (tx, rx) = watch::channel(false);
        let t = Timeouts {
            idle: Duration::from_secs(60),
            write_stall: Duration::from_secs(60),
        };
        let dog = tokio::spawn(watchdog(track, t, rx));
        tokio::time::sleep(Duration::from_millis(50)).await;
        assert!(!dog.is_finished());
        tx.send(true).unwrap();
        let r = tokio::time::timeout(Duration::from_secs(5), dog).await;
        assert_eq!(r.unwrap().unwrap(), Closed::WriteStalled);
    }

    #[tokio::test]
    async fn a_stalled_body_is_cut_once_shutdown_begins() {
        let track = Arc::new(Track::new());
        let _guard = track.request();
        track.waiting_for_body(true);
        let (tx, rx) = watch::channel(false);
        let t = Timeouts {
            idle: Duration::from_secs(60),
            write_stall: Duration::from_secs(60),
        };
        let dog = tokio::spawn(watchdog(track, t, rx));
        tokio::time::sleep(Duration::from_millis(50)).await;
        assert!(!dog.is_finished(), "cut before shutdown");
        tx.send(true).unwrap();
        let r = tokio::time::timeout(Duration::from_secs(10), dog).await;
        assert_eq!(r.unwrap().unwrap(), Closed::BodyStalled);
    }

    /// Waits (at most 5 s) until `track`'s connection is asked to close.
    async fn asked_to_leave(track: &Track) {
        tokio::time::timeout(Duration::from_secs(5), async {
            while !track.is_evicted() {
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
        })
        .await
        .expect("the connection was asked to leave");
    }

    #[tokio::test]
    async fn at_the_cap_the_longest_idle_connection_is_asked_to_leave() {
        let conns = Connections::new(2);
        let a = conns.reserve().await;
        let b = conns.reserve().await;
        let _busy = b.track.request();
        assert_eq!(conns.open_count(), 2);
        let c = {
            let conns = conns.clone();
            tokio::spawn(async move { conns.reserve().await })
        };
        // `a` is idle, `b` is busy: only `a` is asked to leave.
        asked_to_leave(&a.track).await;
        assert!(!b.track.is_evicted());
        drop(a);
        let c = tokio::time::timeout(Duration::from_secs(5), c)
            .await
            .unwrap()
            .unwrap();
        assert_eq!(conns.open_count(), 2);
        drop(c);
        assert_eq!(conns.open_count(), 1);
    }

    #[tokio::test]
    async fn one_connection_is_asked_to_leave_at_a_time() {
        let conns = Connections::new(2);
        let a = conns.reserve().await;
        let b = conns.reserve().await;
        // Idle since the same millisecond: the one opened first is asked.
        let t = a.track.idle_since.load(Ordering::Relaxed);
        b.track.idle_since.store(t, Ordering::Relaxed);
        let c = {
            let conns = conns.clone();
            tokio::spawn(async move { conns.reserve().await })
        };
        asked_to_leave(&a.track).await;
        // `a` has not closed yet; three re-checks pass and `b`, idle too, is left alone.
        tokio::time::sleep(Duration::from_millis(350)).await;
        assert!(
            !b.track.is_evicted(),
            "a second connection was asked while one was closing"
        );
        drop(a);
        let c = tokio::time::timeout(Duration::from_secs(5), c)
            .await
            .unwrap()
            .unwrap();
        assert!(!b.track.is_evicted());
        drop((b, c));
    }
}
