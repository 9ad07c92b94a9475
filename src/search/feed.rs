//! A PostgreSQL node's index follows the search feed (`store::feed`; docs/scale-out.md, "Search on
//! every node").
//!
//! On PostgreSQL the local index is a cache of the database that every node keeps alike: nothing
//! a node writes goes to its index directly (`Search::submit` drops content operations once a
//! follower is installed); every node, the writing one included, indexes what the feed says
//! changed, so caught-up nodes hold the same documents and give the same packs.
//!
//! Invariants:
//! - A round takes the database's snapshot, reads the feed rows of the transactions that
//!   committed since the previous round's snapshot, indexes the current state of each named
//!   document (active: added or replaced; gone or not active: deleted), commits, and only then
//!   counts as done. A caller that committed a write and then calls `flush` waits for a round
//!   that starts after its call (`ticket`), so its write is searchable on this node when `flush`
//!   returns.
//! - Rounds run when a feed notification arrives and at least every `POLL`.
//! - The progress file (`engram-feed.json` beside the index) records the database, the last
//!   round's snapshot and the database's clock at that round. A node starts from it; without it,
//!   for another database, or when it is older than `STALE` (the feed keeps `KEEP` and some of
//!   what the node missed may be pruned), the node rebuilds its index from the tables — taking
//!   the snapshot before reading them, so whatever commits during the rebuild is read from the
//!   feed after it — and reports the rebuild's progress in `/v1/health`.
//! - Deleted rows and status changes are also checked when a pack is assembled (`pack` re-reads
//!   every hit), so a forgotten session or deprecated artifact leaves every node's packs at once,
//!   before the feed reaches their indexes.

use super::{IndexOp, Search};
use crate::error::{Error, Result};
use crate::store::{feed, pack_rows, Db};
use crossbeam_channel::{Receiver, Sender};
use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

/// Longest wait between two rounds without a notification.
const POLL: Duration = Duration::from_millis(250);
/// Feed rows read per statement.
const PAGE: i64 = 5_000;
/// A round that takes this long is logged (the documents it brought are that late on this node).
const SLOW_ROUND: Duration = Duration::from_millis(500);
/// Feed rows are kept this long (any node prunes older ones)…
pub const KEEP: Duration = Duration::from_secs(3_600);
/// …so a node whose last round is older than this rebuilds instead of reading the feed.
const STALE: Duration = Duration::from_secs(1_800);
/// How often a node prunes the feed.
const PRUNE_EVERY: Duration = Duration::from_secs(60);
/// The progress file, in the index directory.
const PROGRESS: &str = "engram-feed.json";

#[derive(Default)]
struct Rounds {
    started: u64,
    done: u64,
}

/// The follower: its thread, its rounds and what health shows of it.
pub struct Follower {
    rounds: Mutex<Rounds>,
    finished: Condvar,
    wake: Sender<()>,
    wake_rx: Receiver<()>,
    stop: AtomicBool,
    thread: Mutex<Option<JoinHandle<()>>>,
    /// A rebuild in progress: documents indexed and expected.
    rebuild: Mutex<Option<(u64, u64)>>,
    /// The database clock (ms) at the last completed round's snapshot.
    last_round_db_ms: AtomicU64,
    /// Documents the feed made this node add, replace or delete since its start.
    applied: AtomicU64,
}

/// What `/v1/health` shows of the follower.
#[derive(Clone, Debug)]
pub struct FollowerStats {
    pub rebuilding: Option<(u64, u64)>,
    pub rounds: u64,
    pub applied: u64,
    /// The database clock at the snapshot of the last completed round (ms since the epoch).
    pub last_round_db_ms: u64,
}

impl Follower {
    /// Wakes the follower for a round now.
    pub fn wake(&self) {
        let _ = self.wake.try_send(());
    }

    /// Waits (at most `limit`) for a round that starts after this call to complete.
    pub fn wait_round(&self, limit: Duration) {
        let deadline = Instant::now() + limit;
        let mut rounds = self.rounds.lock().unwrap_or_else(|p| p.into_inner());
        let ticket = rounds.started + 1;
        self.wake();
        while rounds.done < ticket && !self.stop.load(Ordering::SeqCst) {
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return;
            }
            rounds = self
                .finished
                .wait_timeout(rounds, left.min(POLL))
                .unwrap_or_else(|p| p.into_inner())
                .0;
        }
    }

    /// Rounds (started + 1, done): the first is the round that will see what is committed now.
    pub(super) fn tickets(&self) -> (u64, u64) {
        let r = self.rounds.lock().unwrap_or_else(|p| p.into_inner());
        (r.started + 1, r.done)
    }

    pub fn stats(&self) -> FollowerStats {
        FollowerStats {
            rebuilding: *self.rebuild.lock().unwrap_or_else(|p| p.into_inner()),
            rounds: self.rounds.lock().unwrap_or_else(|p| p.into_inner()).done,
            applied: self.applied.load(Ordering::Relaxed),
            last_round_db_ms: self.last_round_db_ms.load(Ordering::Relaxed),
        }
    }

    /// Stops the follower's thread (after its round in hand) and waits for it.
    pub fn stop(&self) {
        self.stop.store(true, Ordering::SeqCst);
        self.wake();
        self.finished.notify_all();
        if let Some(t) = self.thread.lock().unwrap_or_else(|p| p.into_inner()).take() {
            let _ = t.join();
        }
    }
}

/// Where a node's index stands in the feed.
#[derive(serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "camelCase")]
struct Progress {
    database: String,
    snapshot: String,
    db_ms: i64,
}

fn progress_path(search: &Search) -> PathBuf {
    search.dir().join(PROGRESS)
}

fn read_progress(search: &Search) -> Option<Progress> {
    let text = std::fs::read_to_string(progress_path(search)).ok()?;
    serde_json::from_str(&text).ok()
}

fn write_progress(search: &Search, p: &Progress) -> Result<()> {
    let path = progress_path(search);
    let tmp = path.with_extension("json.tmp");
    let text = serde_json::to_string(p).map_err(Error::internal)?;
    std::fs::write(&tmp, text)
        .and_then(|_| std::fs::rename(&tmp, &path))
        .map_err(|e| Error::Internal(format!("cannot write {}: {e}", path.display())))
}

/// Rebuilds the index of a stopped PostgreSQL node (`engram reindex`) and records the feed
/// position it is complete to, so the node's next start continues from there instead of
/// rebuilding again. Blocking.
pub fn rebuild_offline(db: &Db, search: &Search, progress: impl Fn(u64, u64)) -> Result<u64> {
    let database = db.write_blocking(feed::database_id)?;
    let (snapshot, db_ms) = db.read_blocking(feed::now)?;
    forget_progress(search);
    let n = super::rebuild::rebuild(db, search, progress)?;
    write_progress(
        search,
        &Progress {
            database,
            snapshot,
            db_ms,
        },
    )?;
    Ok(n)
}

/// Whether the index records a position in a PostgreSQL feed (it was built by a PostgreSQL node).
pub fn has_progress(search: &Search) -> bool {
    progress_path(search).exists()
}

/// Forgets where the index stood in a feed (an index rebuilt from SQLite, or from the tables by
/// a command, is not known to follow any feed position).
pub fn forget_progress(search: &Search) {
    let _ = std::fs::remove_file(progress_path(search));
}

/// Installs a follower on `search` and starts its thread: it rebuilds the index first when it
/// cannot continue from its progress file, then follows the feed. Blocking (call from a plain
/// thread or `spawn_blocking`).
pub fn follow(db: &Db, search: &Search) -> Result<Arc<Follower>> {
    let database = db.write_blocking(feed::database_id)?;
    let (snapshot, db_ms) = db.read_blocking(feed::now)?;
    let rebuild_reason = match read_progress(search) {
        _ if search.needs_rebuild => Some("the index is missing or incomplete".to_string()),
        None => Some("the index has no feed position".to_string()),
        Some(p) if p.database != database => Some(format!(
            "the index was built from another database ({})",
            p.database
        )),
        Some(p) if db_ms - p.db_ms > STALE.as_millis() as i64 => Some(format!(
            "the index is {} s behind the feed, which keeps {} s",
            (db_ms - p.db_ms) / 1000,
            KEEP.as_secs()
        )),
        Some(_) => None,
    };
    let (wake, wake_rx) = crossbeam_channel::bounded(1);
    let follower = Arc::new(Follower {
        rounds: Mutex::new(Rounds::default()),
        finished: Condvar::new(),
        wake,
        wake_rx,
        stop: AtomicBool::new(false),
        thread: Mutex::new(None),
        rebuild: Mutex::new(rebuild_reason.as_ref().map(|_| (0, 0))),
        last_round_db_ms: AtomicU64::new(0),
        applied: AtomicU64::new(0),
    });
    search.install_follower(follower.clone());
    {
        let f = Arc::downgrade(&follower);
        db.subscribe(crate::store::listen::FEED, move |_| {
            if let Some(f) = f.upgrade() {
                f.wake();
            }
        });
    }
    let start = match rebuild_reason {
        Some(reason) => {
            tracing::warn!(%reason, "rebuilding this node's search index from PostgreSQL");
            forget_progress(search);
            Start::Rebuild(snapshot)
        }
        None => Start::From(
            read_progress(search)
                .map(|p| p.snapshot)
                .unwrap_or(snapshot),
        ),
    };
    let run = Run {
        db: db.clone(),
        search: search.clone(),
        follower: follower.clone(),
        database,
    };
    let handle = std::thread::Builder::new()
        .name("engram-feed".into())
        .spawn(move || run.run(start))
        .map_err(Error::internal)?;
    *follower.thread.lock().unwrap_or_else(|p| p.into_inner()) = Some(handle);
    Ok(follower)
}

enum Start {
    /// Rebuild from the tables, then read the feed from this snapshot (taken before).
    Rebuild(String),
    From(String),
}

struct Run {
    db: Db,
    search: Search,
    follower: Arc<Follower>,
    database: String,
}

impl Run {
    fn run(self, start: Start) {
        let mut since = match start {
            Start::From(s) => s,
            Start::Rebuild(s) => {
                let f = self.follower.clone();
                let done = super::rebuild::rebuild(&self.db, &self.search, move |done, total| {
                    *f.rebuild.lock().unwrap_or_else(|p| p.into_inner()) = Some((done, total));
                });
                match done {
                    Ok(n) => tracing::info!(documents = n, "search index rebuilt from PostgreSQL"),
                    Err(e) => {
                        // The marker is not written: the next start rebuilds again.
                        tracing::error!(error = %e, "the search index rebuild failed");
                    }
                }
                *self
                    .follower
                    .rebuild
                    .lock()
                    .unwrap_or_else(|p| p.into_inner()) = None;
                s
            }
        };
        let mut last_saved = Instant::now() - PRUNE_EVERY;
        let mut last_pruned = Instant::now();
        let mut failures = 0u32;
        while !self.follower.stop.load(Ordering::SeqCst) {
            let _ = self.follower.wake_rx.recv_timeout(POLL);
            if self.follower.stop.load(Ordering::SeqCst) {
                break;
            }
            let ticket = {
                let mut r = self
                    .follower
                    .rounds
                    .lock()
                    .unwrap_or_else(|p| p.into_inner());
                r.started += 1;
                r.started
            };
            match self.round(&since) {
                Ok((until, db_ms, changed)) => {
                    failures = 0;
                    since = until;
                    self.follower
                        .last_round_db_ms
                        .store(db_ms.max(0) as u64, Ordering::Relaxed);
                    // Saved when something changed, and now and then so a restart within
                    // `STALE` continues from here.
                    if changed > 0 || last_saved.elapsed() >= PRUNE_EVERY {
                        let p = Progress {
                            database: self.database.clone(),
                            snapshot: since.clone(),
                            db_ms,
                        };
                        if let Err(e) = write_progress(&self.search, &p) {
                            tracing::warn!(error = %e, "cannot save the feed position");
                        }
                        last_saved = Instant::now();
                    }
                }
                Err(e) => {
                    failures += 1;
                    if failures == 1 || failures % 40 == 0 {
                        tracing::warn!(error = %e, "cannot read the search feed; retrying");
                    }
                }
            }
            {
                let mut r = self
                    .follower
                    .rounds
                    .lock()
                    .unwrap_or_else(|p| p.into_inner());
                r.done = r.done.max(ticket);
            }
            self.follower.finished.notify_all();
            if last_pruned.elapsed() >= PRUNE_EVERY {
                last_pruned = Instant::now();
                let keep = KEEP.as_secs() as i64;
                if let Err(e) = self.db.write_background(move |c| feed::prune(c, keep)) {
                    tracing::warn!(error = %e, "cannot prune the search feed");
                }
            }
        }
    }

    /// One round: returns the snapshot it read up to, the database clock then, and how many
    /// documents it indexed or deleted (they are committed when it returns).
    fn round(&self, since: &str) -> Result<(String, i64, u64)> {
        let started = Instant::now();
        let (until, db_ms) = self.db.read_blocking(feed::now)?;
        let mut after: Option<(String, i64)> = None;
        let mut changed = 0u64;
        loop {
            let (s, u, a) = (since.to_string(), until.clone(), after.clone());
            let page = self.db.read_blocking(move |c| {
                feed::changes(c, &s, &u, a.as_ref().map(|(x, n)| (x.as_str(), *n)), PAGE)
            })?;
            let Some(last) = page.last() else {
                break;
            };
            after = Some((last.xid.clone(), last.seq));
            let full = page.len() as i64 == PAGE;
            changed += self.apply(page)?;
            if !full {
                break;
            }
        }
        let applied = started.elapsed();
        if changed > 0 {
            self.search.commit_blocking();
            self.follower.applied.fetch_add(changed, Ordering::Relaxed);
        }
        let took = started.elapsed();
        if took >= SLOW_ROUND {
            tracing::warn!(
                documents = changed,
                read_and_apply_ms = applied.as_millis() as u64,
                commit_ms = (took - applied).as_millis() as u64,
                "slow search feed round"
            );
        }
        Ok((until, db_ms, changed))
    }

    /// Indexes the current state of the documents the rows name; returns how many.
    fn apply(&self, page: Vec<feed::Change>) -> Result<u64> {
        let mut by_tenant: BTreeMap<String, Vec<String>> = BTreeMap::new();
        for c in page {
            by_tenant.entry(c.tenant_id).or_default().push(c.doc_id);
        }
        let mut n = 0u64;
        for (tenant, mut ids) in by_tenant {
            ids.sort();
            ids.dedup();
            let (t, wanted) = (tenant.clone(), ids.clone());
            let (memories, artifacts) = self
                .db
                .read_blocking(move |c| pack_rows::index_rows(c, &t, &wanted))?;
            let mut live = std::collections::HashSet::new();
            for m in memories {
                live.insert(m.id.clone());
                self.search
                    .apply(IndexOp::Upsert(Box::new(super::rebuild::memory_row_doc(m))));
            }
            for a in artifacts {
                live.insert(a.id.clone());
                self.search
                    .apply(IndexOp::Upsert(Box::new(super::rebuild::artifact_row_doc(
                        a,
                    ))));
            }
            for id in ids {
                if !live.contains(&id) {
                    self.search.apply(IndexOp::DeleteDoc {
                        tenant_id: tenant.clone(),
                        doc_id: id,
                    });
                }
                n += 1;
            }
        }
        Ok(n)
    }
}
