//! Saturation has an end: past `--max-backlog` events captured but not processed yet, capture
//! answers 503 `unavailable` with `Retry-After` instead of growing the backlog (and the WAL)
//! without bound, and it recovers by itself once processing has caught up.
//!
//! Invariants:
//! - The estimate is the last count of unprocessed events (`store::events::count_pending`, taken
//!   every `REFRESH`, bounded by the limit) plus every event stored since that count, so a burst
//!   is seen at once, not a refresh later.
//! - Saturation starts above the limit and ends below 90 % of it (no flapping at the edge).
//! - `/v1/health` shows the estimate, the limit and the state.

use crate::app::AppState;
use crate::error::{Error, Result};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::watch;

const REFRESH: Duration = Duration::from_millis(500);

#[derive(Default)]
pub struct Backlog {
    /// 0 = unbounded.
    max: u64,
    counted: AtomicU64,
    since: AtomicU64,
    saturated: AtomicBool,
}

impl Backlog {
    pub fn new(max: u64) -> Backlog {
        Backlog {
            max,
            ..Backlog::default()
        }
    }

    /// Events captured and not processed yet (an estimate; see the module docs).
    pub fn pending(&self) -> u64 {
        self.counted.load(Ordering::Relaxed) + self.since.load(Ordering::Relaxed)
    }

    pub fn max(&self) -> u64 {
        self.max
    }

    pub fn saturated(&self) -> bool {
        self.saturated.load(Ordering::Relaxed)
    }

    /// 503 while saturated.
    pub fn check(&self) -> Result<()> {
        if self.saturated() {
            return Err(Error::Saturated {
                retry_after: 1,
                message: format!(
                    "capture is paused: more than {} events are waiting to be processed; \
                     retry after the Retry-After delay",
                    self.max
                ),
            });
        }
        Ok(())
    }

    /// Counts `n` newly stored events.
    pub fn stored(&self, n: u64) {
        if self.max == 0 || n == 0 {
            return;
        }
        self.since.fetch_add(n, Ordering::Relaxed);
        self.settle();
    }

    fn set_count(&self, counted: u64, stored_meanwhile: u64) {
        self.counted.store(counted, Ordering::Relaxed);
        // Events stored while counting may or may not be in the count: keep them (errs high).
        self.since.store(stored_meanwhile, Ordering::Relaxed);
        self.settle();
    }

    fn settle(&self) {
        let p = self.pending();
        let was = self.saturated();
        if !was && p > self.max {
            self.saturated.store(true, Ordering::Relaxed);
            tracing::warn!(
                pending = p,
                max = self.max,
                "capture saturated: answering 503 until processing catches up"
            );
        } else if was && p * 10 < self.max * 9 {
            self.saturated.store(false, Ordering::Relaxed);
            tracing::info!(pending = p, max = self.max, "capture resumed");
        }
    }
}

/// Recounts the backlog every `REFRESH` until `stop` flips (nothing when unbounded).
pub fn start(state: Arc<AppState>, stop: watch::Receiver<bool>) {
    let max = state.backlog.max();
    if max == 0 {
        return;
    }
    super::every(REFRESH, stop, move || {
        let state = state.clone();
        async move {
            let before = state.backlog.since.swap(0, Ordering::Relaxed);
            let limit = max.saturating_mul(2);
            match state
                .db
                .read(move |c| crate::store::events::count_pending(c, limit))
                .await
            {
                Ok(n) => {
                    let meanwhile = state.backlog.since.load(Ordering::Relaxed);
                    state.backlog.set_count(n, meanwhile);
                }
                Err(e) => {
                    state.backlog.since.fetch_add(before, Ordering::Relaxed);
                    tracing::warn!(error = %e, "could not count the capture backlog");
                }
            }
        }
    });
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn saturation_starts_above_the_limit_and_ends_below_ninety_percent() {
        let b = Backlog::new(100);
        b.stored(100);
        assert!(b.check().is_ok());
        b.stored(1);
        assert!(b.check().is_err());
        b.set_count(95, 0);
        assert!(b.saturated(), "no flapping at the edge");
        b.set_count(80, 0);
        assert!(b.check().is_ok());
        let unbounded = Backlog::new(0);
        unbounded.stored(1_000_000);
        assert!(unbounded.check().is_ok());
    }
}
