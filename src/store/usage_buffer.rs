//! An in-memory accumulator of usage counters, written to `usage_counters` in one write per
//! interval instead of one write (five upserts per metric) per request.
//!
//! Hot read-only endpoints (synthesize) would otherwise wait on the single writer thread for every
//! request only to bump a few counters. They `add` here instead; the sums are written:
//! - every `FLUSH_INTERVAL` by a background thread of `Db`,
//! - before any read of the counters that must be exact (`flush`, awaited by the usage and
//!   metrics handlers): a request that added counts and answered before such a read began is seen
//!   by it, whether its counts are still here or in a flush that is under way,
//! - at shutdown (`Db::close`, before the writer stops).
//!
//! Invariants:
//! - Counts are keyed by (tenant, mode, metric, UTC minute) and written with that minute as their
//!   moment, so they land in exactly the buckets (all time, month, day, hour, minute) an immediate
//!   `usage::incr` would have used.
//! - Flushes are serialized (`flushing`): a flush waits for one under way to commit, so "flush,
//!   then read" never reads while another flush holds counts taken from here but not yet
//!   committed.
//! - A flush whose write fails puts its counts back: they are written by a later flush.
//! - What is visible later than before: a counter read that does not `flush` first (e.g. a direct
//!   `usage::get`) can trail by up to one interval; quota checks of counters added here must
//!   `flush` first or add `pending`.

use super::Conn;
use super::{usage, Db};
use crate::error::Result;
use chrono::{DateTime, TimeZone, Utc};
use std::collections::HashMap;
use std::sync::Mutex;
use std::time::Duration;

/// How long counts may wait in memory before a background flush writes them.
pub const FLUSH_INTERVAL: Duration = Duration::from_millis(500);

#[derive(Clone, PartialEq, Eq, Hash, Debug)]
struct Key {
    tenant_id: String,
    mode: String,
    metric: &'static str,
    /// Unix minute of the counted moment.
    minute: i64,
}

type Counts = HashMap<Key, i64>;

/// Pending counter increments (see the module doc). Owned by `Db` (`Db::usage`).
#[derive(Default)]
pub struct UsageBuffer {
    counts: Mutex<Counts>,
    /// Held for the whole of a flush (take, write, commit).
    flushing: tokio::sync::Mutex<()>,
}

fn minute_start(minute: i64) -> DateTime<Utc> {
    Utc.timestamp_opt(minute * 60, 0)
        .single()
        .unwrap_or_else(crate::time::now)
}

impl UsageBuffer {
    /// Adds `n` to `metric` at moment `at` (written later; see the module doc).
    pub fn add(
        &self,
        tenant_id: &str,
        mode: &str,
        metric: &'static str,
        n: i64,
        at: DateTime<Utc>,
    ) {
        if n == 0 {
            return;
        }
        let key = Key {
            tenant_id: tenant_id.to_string(),
            mode: mode.to_string(),
            metric,
            minute: at.timestamp().div_euclid(60),
        };
        *self
            .counts
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .entry(key)
            .or_insert(0) += n;
    }

    /// Adds several metrics of one moment at once (one lock).
    pub fn add_many(
        &self,
        tenant_id: &str,
        mode: &str,
        at: DateTime<Utc>,
        metrics: &[(&'static str, i64)],
    ) {
        let minute = at.timestamp().div_euclid(60);
        let mut counts = self.counts.lock().unwrap_or_else(|p| p.into_inner());
        for &(metric, n) in metrics.iter().filter(|(_, n)| *n != 0) {
            let key = Key {
                tenant_id: tenant_id.to_string(),
                mode: mode.to_string(),
                metric,
                minute,
            };
            *counts.entry(key).or_insert(0) += n;
        }
    }

    /// What is added but not yet written for a (tenant, mode, metric) in minutes `from..=to`
    /// (Unix minutes), for callers that read a counter without flushing.
    pub fn pending(&self, tenant_id: &str, mode: &str, metric: &str, from: i64, to: i64) -> i64 {
        self.counts
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .iter()
            .filter(|(k, _)| {
                k.tenant_id == tenant_id
                    && k.mode == mode
                    && k.metric == metric
                    && (from..=to).contains(&k.minute)
            })
            .map(|(_, n)| *n)
            .sum()
    }

    fn take(&self) -> Counts {
        std::mem::take(&mut *self.counts.lock().unwrap_or_else(|p| p.into_inner()))
    }

    fn put_back(&self, taken: Counts) {
        let mut counts = self.counts.lock().unwrap_or_else(|p| p.into_inner());
        for (k, n) in taken {
            *counts.entry(k).or_insert(0) += n;
        }
    }
}

/// The write of a flush: every taken count through `usage::incr`.
fn write_counts(conn: &Conn, counts: &Counts) -> Result<()> {
    for (k, n) in counts {
        usage::incr(
            conn,
            &k.tenant_id,
            &k.mode,
            k.metric,
            *n,
            minute_start(k.minute),
        )?;
    }
    Ok(())
}

impl Db {
    /// The pending usage counters of this database.
    pub fn usage(&self) -> &UsageBuffer {
        &self.inner.usage
    }

    /// Writes every pending usage count; resolves once committed (and after any flush under way).
    pub async fn flush_usage(&self) -> Result<()> {
        let buf = self.usage();
        let _guard = buf.flushing.lock().await;
        let taken = buf.take();
        if taken.is_empty() {
            return Ok(());
        }
        let shared = std::sync::Arc::new(taken);
        let for_write = shared.clone();
        match self.write(move |c| write_counts(c, &for_write)).await {
            Ok(()) => Ok(()),
            Err(e) => {
                buf.put_back(std::sync::Arc::try_unwrap(shared).unwrap_or_else(|a| (*a).clone()));
                Err(e)
            }
        }
    }

    /// `flush_usage` for plain threads (never on a tokio worker).
    pub fn flush_usage_blocking(&self) -> Result<()> {
        let buf = self.usage();
        let _guard = buf.flushing.blocking_lock();
        let taken = buf.take();
        if taken.is_empty() {
            return Ok(());
        }
        let shared = std::sync::Arc::new(taken);
        let for_write = shared.clone();
        match self.write_blocking(move |c| write_counts(c, &for_write)) {
            Ok(()) => Ok(()),
            Err(e) => {
                buf.put_back(std::sync::Arc::try_unwrap(shared).unwrap_or_else(|a| (*a).clone()));
                Err(e)
            }
        }
    }
}

/// The background flusher: every `FLUSH_INTERVAL` until `stop` fires or is dropped.
pub(super) fn run_flusher(
    db: std::sync::Weak<super::db::Inner>,
    stop: crossbeam_channel::Receiver<()>,
) {
    loop {
        match stop.recv_timeout(FLUSH_INTERVAL) {
            Err(crossbeam_channel::RecvTimeoutError::Timeout) => {}
            _ => return,
        }
        let Some(inner) = db.upgrade() else { return };
        let db = Db { inner };
        if let Err(e) = db.flush_usage_blocking() {
            tracing::warn!(error = %e, "usage counters not written yet; retrying at the next flush");
        }
    }
}
