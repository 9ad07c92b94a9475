//! Durable background jobs.
//!
//! The `jobs` table is the queue; a crossbeam channel per kind only wakes that kind's worker
//! threads (a worker also polls every second, so a lost wake-up costs at most a second).
//!
//! Invariants:
//! - A job is claimed with one `UPDATE … RETURNING` on the writer thread, so two workers never
//!   claim the same job.
//! - At start, jobs left `running` by a crash return to `queued` (a job runs to completion at least
//!   once; handlers make their effects idempotent so a re-run changes nothing twice).
//! - A kind may be exclusive per tenant: no job of that kind is claimed for a tenant while another
//!   one of the tenant runs (learn jobs never overlap).
//! - A panic in a handler is caught; the job is marked failed with the message and the worker
//!   lives on.
//! - Shutdown lets each worker finish the job in hand and claim no new one.
//!
//! Several nodes on one PostgreSQL database (docs/scale-out.md, "Jobs across nodes"):
//! - A claim takes the row `FOR UPDATE SKIP LOCKED`, so nodes claiming together take different
//!   jobs; claims of an exclusive kind take turns under an advisory lock, so one learn per tenant
//!   runs in the whole cluster.
//! - A claimed job carries a lease (`Config::job_lease`), renewed every third of it by this
//!   node's lease keeper while a worker holds the job. Every node requeues the running jobs whose
//!   lease lapsed (at start and every half lease): a node killed mid-job has its jobs run by the
//!   others. Handlers are idempotent, so a job run twice (a node that stalled past its lease)
//!   has its effects once.
//! - Enqueueing notifies every node (`LISTEN`/`NOTIFY`); the one-second poll stays as the
//!   backstop.

pub mod capture;
pub mod learn;

pub use crate::domain::{JobKind, JobStatus};
pub use crate::store::jobs::{Job, JobRow};

use crate::error::{Error, Result};
use crate::store::{jobs as queue, Db};
use crossbeam_channel::{Receiver, Sender};
use serde_json::Value;
use std::collections::{HashMap, HashSet};
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::Duration;

pub const CAPTURE: JobKind = JobKind::Capture;
pub const LEARN: JobKind = JobKind::Learn;

/// What a finished job reports.
pub struct Outcome {
    /// `Completed` or `Partial`.
    pub status: JobStatus,
    pub result: Value,
}

/// Runs jobs of one kind. Called on a worker thread (blocking calls are fine). An error marks the
/// job failed with the error's text (its source chain goes to the log).
pub trait JobHandler: Send + Sync + 'static {
    fn run(&self, job: &Job) -> Result<Outcome>;
}

/// How a kind is run.
pub struct KindSpec {
    pub kind: JobKind,
    pub workers: usize,
    pub handler: Arc<dyn JobHandler>,
}

struct KindState {
    bell: Sender<()>,
    bell_rx: Receiver<()>,
    active: AtomicUsize,
    exclusive: bool,
}

/// The job system: queue access plus the worker threads.
pub struct Jobs {
    db: Db,
    kinds: HashMap<JobKind, Arc<KindState>>,
    stop: Arc<AtomicBool>,
    threads: Mutex<Vec<JoinHandle<()>>>,
    /// PostgreSQL: how long a claim holds without renewal.
    lease: Duration,
    /// Ids of the jobs this node's workers hold (their leases are renewed).
    held: Arc<Mutex<HashSet<String>>>,
}

impl Jobs {
    /// Creates the job system for these kinds; workers start with `start`.
    pub fn new(db: Db, kinds: &[JobKind], exclusive: &[JobKind], lease: Duration) -> Jobs {
        let kinds = kinds
            .iter()
            .map(|k| {
                let (bell, bell_rx) = crossbeam_channel::bounded(1);
                (
                    *k,
                    Arc::new(KindState {
                        bell,
                        bell_rx,
                        active: AtomicUsize::new(0),
                        exclusive: exclusive.contains(k),
                    }),
                )
            })
            .collect();
        Jobs {
            db,
            kinds,
            stop: Arc::new(AtomicBool::new(false)),
            threads: Mutex::new(Vec::new()),
            lease,
            held: Default::default(),
        }
    }

    /// Returns interrupted jobs to the queue and starts the workers of each kind.
    pub fn start(&self, specs: Vec<KindSpec>) -> Result<()> {
        let requeued = self.db.write_blocking(queue::requeue_running)?;
        if requeued > 0 {
            tracing::info!(
                requeued,
                "jobs interrupted by the last shutdown were requeued"
            );
        }
        let mut threads = self.threads.lock().unwrap_or_else(|p| p.into_inner());
        if self.db.is_postgres() {
            let bells: Vec<(JobKind, Sender<()>)> = self
                .kinds
                .iter()
                .map(|(k, st)| (*k, st.bell.clone()))
                .collect();
            self.db
                .subscribe(crate::store::listen::JOBS, move |payload| {
                    for (kind, bell) in &bells {
                        // An empty payload: notifications may have been missed; wake every kind.
                        if payload.is_empty() || payload == kind.as_str() {
                            let _ = bell.try_send(());
                        }
                    }
                });
            let keeper = LeaseKeeper {
                db: self.db.clone(),
                lease: self.lease,
                held: self.held.clone(),
                stop: self.stop.clone(),
                bells: self.kinds.values().map(|k| k.bell.clone()).collect(),
            };
            threads.push(
                std::thread::Builder::new()
                    .name("engram-leases".into())
                    .spawn(move || keeper.run())
                    .map_err(crate::error::Error::internal)?,
            );
        }
        for spec in specs {
            let Some(state) = self.kinds.get(&spec.kind).cloned() else {
                continue;
            };
            for n in 0..spec.workers.max(1) {
                let db = self.db.clone();
                let stop = self.stop.clone();
                let state = state.clone();
                let handler = spec.handler.clone();
                let kind = spec.kind;
                let claim = Claim {
                    lease_ms: self.lease.as_millis() as i64,
                    held: self.held.clone(),
                };
                let handle = std::thread::Builder::new()
                    .name(format!("engram-{kind}-{n}"))
                    .spawn(move || {
                        lower_priority_by(if kind == LEARN {
                            LEARN_NICE
                        } else {
                            BACKGROUND_NICE
                        });
                        worker_loop(db, kind, state, handler, stop, claim)
                    })
                    .map_err(crate::error::Error::internal)?;
                threads.push(handle);
            }
            // Work queued before the start is picked up at once.
            self.ring(spec.kind);
        }
        Ok(())
    }

    /// Wakes a worker of `kind` (call after the transaction that enqueued the job committed).
    pub fn ring(&self, kind: JobKind) {
        if let Some(k) = self.kinds.get(&kind) {
            // A full bell already holds a wake-up: nothing is lost.
            let _ = k.bell.try_send(());
        }
    }

    /// Jobs of `kind` being run right now.
    pub fn active(&self, kind: JobKind) -> usize {
        self.kinds
            .get(&kind)
            .map(|k| k.active.load(Ordering::Relaxed))
            .unwrap_or(0)
    }

    pub fn is_exclusive(&self, kind: JobKind) -> bool {
        self.kinds.get(&kind).is_some_and(|k| k.exclusive)
    }

    /// Stops claiming, lets each worker finish its job in hand, and joins them.
    pub fn shutdown(&self) {
        self.stop.store(true, Ordering::SeqCst);
        for k in self.kinds.values() {
            // Wake every sleeper: one bell per worker is enough.
            for _ in 0..64 {
                if k.bell.try_send(()).is_err() {
                    break;
                }
            }
        }
        let threads: Vec<_> = self
            .threads
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .drain(..)
            .collect();
        for t in threads {
            let _ = t.join();
        }
    }
}

fn worker_loop(
    db: Db,
    kind: JobKind,
    state: Arc<KindState>,
    handler: Arc<dyn JobHandler>,
    stop: Arc<AtomicBool>,
    claim: Claim,
) {
    while !stop.load(Ordering::SeqCst) {
        let exclusive = state.exclusive;
        let lease_ms = claim.lease_ms;
        let claimed = db.write_background(move |c| queue::claim(c, kind, exclusive, lease_ms));
        let job = match claimed {
            Ok(Some(job)) => job,
            Ok(None) => {
                let _ = state.bell_rx.recv_timeout(Duration::from_secs(1));
                continue;
            }
            Err(e) => {
                if stop.load(Ordering::SeqCst) {
                    break;
                }
                tracing::error!(error = %e, %kind, "could not claim a job");
                std::thread::sleep(Duration::from_millis(500));
                continue;
            }
        };
        claim.hold(&job.id, true);
        state.active.fetch_add(1, Ordering::Relaxed);
        let outcome = catch_unwind(AssertUnwindSafe(|| handler.run(&job))).unwrap_or_else(|p| {
            Err(Error::Internal(format!(
                "job panicked: {}",
                crate::store::panic_text(&p)
            )))
        });
        state.active.fetch_sub(1, Ordering::Relaxed);
        let id = job.id.clone();
        let finished = match outcome {
            Ok(o) => db.write_background(move |c| queue::complete(c, &id, o.status, &o.result)),
            // A conflict with another node's concurrent write (PostgreSQL): run it again soon,
            // a bounded number of times (handlers are idempotent).
            Err(Error::Unavailable(m)) if job.attempts < MAX_ATTEMPTS => {
                tracing::info!(job = %job.id, %kind, reason = %m, "job requeued");
                std::thread::sleep(Duration::from_millis(20 * job.attempts.max(1) as u64));
                db.write_background(move |c| queue::requeue(c, &id))
            }
            Err(e) => {
                tracing::warn!(job = %job.id, %kind, error = %e, "job failed");
                let msg = e.to_string();
                db.write_background(move |c| queue::fail(c, &id, &msg))
            }
        };
        if let Err(e) = finished {
            tracing::error!(job = %job.id, error = %e, "could not record a job's end");
        }
        claim.hold(&job.id, false);
        // The next job of an exclusive kind for this tenant may now be claimable by anyone.
        if exclusive {
            let _ = state.bell.try_send(());
        }
    }
}

/// Runs of a job at most when it keeps meeting retryable conflicts (then it fails with the last).
const MAX_ATTEMPTS: i64 = 10;

/// How a worker claims: the lease it asks for and where it records the jobs it holds.
struct Claim {
    lease_ms: i64,
    held: Arc<Mutex<HashSet<String>>>,
}

impl Claim {
    fn hold(&self, id: &str, holding: bool) {
        let mut held = self.held.lock().unwrap_or_else(|p| p.into_inner());
        if holding {
            held.insert(id.to_string());
        } else {
            held.remove(id);
        }
    }
}

/// PostgreSQL: renews the leases of the jobs this node holds and requeues the jobs whose lease
/// lapsed (any node's).
struct LeaseKeeper {
    db: Db,
    lease: Duration,
    held: Arc<Mutex<HashSet<String>>>,
    stop: Arc<AtomicBool>,
    bells: Vec<Sender<()>>,
}

impl LeaseKeeper {
    fn run(self) {
        let tick = (self.lease / 6).max(Duration::from_millis(100));
        let lease_ms = self.lease.as_millis() as i64;
        let mut ticks = 0u64;
        let slice = Duration::from_millis(50);
        while !self.stop.load(Ordering::SeqCst) {
            // Slept in slices so that shutdown does not wait for a tick.
            let mut slept = Duration::ZERO;
            while slept < tick && !self.stop.load(Ordering::SeqCst) {
                std::thread::sleep(slice);
                slept += slice;
            }
            if self.stop.load(Ordering::SeqCst) {
                break;
            }
            ticks += 1;
            // Renewed every third of the lease (every second tick).
            if ticks % 2 == 0 {
                let ids: Vec<String> = self
                    .held
                    .lock()
                    .unwrap_or_else(|p| p.into_inner())
                    .iter()
                    .cloned()
                    .collect();
                if !ids.is_empty() {
                    // On the foreground lane: a renewal stuck behind a long background write
                    // would let the lease lapse under a job that is running fine.
                    if let Err(e) = self
                        .db
                        .write_blocking(move |c| queue::renew(c, &ids, lease_ms))
                    {
                        tracing::warn!(error = %e, "could not renew the leases of running jobs");
                    }
                }
            }
            // Lapsed leases are looked for every half lease.
            if ticks % 3 == 0 {
                match self.db.write_background(queue::requeue_running) {
                    Ok(0) => {}
                    Ok(n) => {
                        tracing::warn!(
                            requeued = n,
                            "jobs whose node stopped renewing their lease were requeued"
                        );
                        for b in &self.bells {
                            let _ = b.try_send(());
                        }
                    }
                    Err(e) => tracing::warn!(error = %e, "could not requeue lapsed jobs"),
                }
            }
        }
    }
}

/// How much nicer than the request path background threads run (added to the process's nice
/// value, capped at 19).
pub const BACKGROUND_NICE: i32 = 10;

/// Lowers the calling thread's scheduling priority by `BACKGROUND_NICE`.
///
/// Job workers and the indexer call this when they start: under a load that saturates the CPU,
/// acknowledging requests (HTTP handling and the writer thread, which keep normal priority) wins
/// over processing what was acknowledged. Nothing is lost by that — jobs are durable rows — and
/// the backlog drains as soon as the request rate leaves CPU to spare; at ordinary rates the
/// priority makes no difference because the CPU is not contended. Threads a background thread
/// starts (tantivy's indexing and merge threads) inherit its priority. Failing to change the
/// priority is harmless and only logged.
pub fn lower_priority() {
    lower_priority_by(BACKGROUND_NICE);
}

/// Learn workers run nicer still than the other background threads: what they compile is already
/// searchable, while capture processing (which makes events searchable) and indexing are what
/// freshness waits for. Measured at half the maximum capture rate, learn at the same priority
/// took half a core from capture processing and the backlog grew by ~1,000 events a second.
pub const LEARN_NICE: i32 = 19;

/// Lowers the calling thread's scheduling priority by `by` (the result capped at 19).
pub fn lower_priority_by(by: i32) {
    let tid = rustix::thread::gettid();
    let current = rustix::process::getpriority_process(Some(tid)).unwrap_or(0);
    let nice = (current + by).min(19);
    if let Err(e) = rustix::process::setpriority_process(Some(tid), nice) {
        tracing::debug!(error = %e, "could not lower a background thread's priority");
    }
}
