//! Request-rate buckets shared by every PostgreSQL node (docs/scale-out.md, "Limits across
//! nodes"): one GCRA bucket per key and per tenant in the database (`store::shared_limits`).
//!
//! A node takes requests from a bucket a few at a time (`chunk`) and spends them locally, so a
//! busy bucket costs one database round trip per chunk, not per request. Nothing is admitted
//! that the bucket did not grant, so N nodes never admit more than the plan's figure; requests a
//! node took but has not spent yet are missing from the others for a while, at most N × chunk of
//! them, which the chunk's size keeps to a small fraction of a minute's allowance.

use super::rate::{Reading, Size};
use crate::error::Result;
use crate::store::{shared_limits, Db};
use crate::time::Clock;
use std::collections::HashMap;
use std::sync::Mutex;
use std::time::Duration;

/// Requests a node takes from a bucket at once: about a tenth of a second's worth at the plan's
/// rate, at most a tenth of the burst, at least one.
pub(super) fn chunk(size: Size) -> i64 {
    let by_rate = size.per_minute / 600;
    let by_burst = (size.burst as u64 / 10).max(1);
    by_rate.clamp(1, by_burst) as i64
}

struct Local {
    size: Size,
    /// Granted requests not spent yet.
    left: i64,
    /// The bucket's arrival time after the last grant (µs).
    tat_us: i64,
}

pub(super) struct SharedRates {
    db: Db,
    clock: Clock,
    local: Mutex<HashMap<(String, String), Local>>,
}

/// Entries kept before idle ones are dropped.
const MAX_LOCAL: usize = 100_000;

impl SharedRates {
    pub fn new(db: Db, clock: Clock) -> SharedRates {
        SharedRates {
            db,
            clock,
            local: Mutex::new(HashMap::new()),
        }
    }

    /// Takes one request from the tenant's bucket `bucket` (a key id, `tenant`, …) of `size`.
    pub fn take(&self, size: Size, tenant_id: &str, bucket: &str) -> Result<Reading> {
        if size.per_minute == 0 {
            return Ok(Reading {
                size,
                remaining: 0,
                until_full: Duration::from_secs(60),
                wait: Some(Duration::from_secs(60)),
            });
        }
        let interval = (60_000_000 / size.per_minute as i64).max(1);
        let tolerance = interval.saturating_mul(size.burst.max(1) as i64);
        let now = self.clock.now().timestamp_micros();
        // A bucket of another size (the plan changed) is a fresh one, as on one node.
        let bucket = format!("{bucket}:{}/{}", size.per_minute, size.burst);
        let key = (tenant_id.to_string(), bucket.clone());
        {
            let mut local = self.local.lock().unwrap_or_else(|p| p.into_inner());
            if let Some(l) = local.get_mut(&key) {
                if l.size == size && l.left > 0 {
                    l.left -= 1;
                    return Ok(reading(size, l.left, l.tat_us, now, interval, tolerance));
                }
            }
        }
        let (t, b, want) = (tenant_id.to_string(), bucket, chunk(size));
        let grant = self.db.shared_blocking(move |c| {
            shared_limits::take_rate(c, &t, &b, now, interval, tolerance, want)
        })?;
        if grant.granted == 0 {
            // The next request is allowed once the arrival time is within the tolerance again.
            let wait_us = (grant.tat_us - tolerance + interval - now).max(1);
            return Ok(Reading {
                size,
                remaining: 0,
                until_full: Duration::from_micros((grant.tat_us - now).max(0) as u64),
                wait: Some(Duration::from_micros(wait_us as u64)),
            });
        }
        let left = grant.granted - 1;
        let mut local = self.local.lock().unwrap_or_else(|p| p.into_inner());
        if local.len() >= MAX_LOCAL {
            // Dropping what nodes hold only ever errs on the strict side.
            local.retain(|_, l| l.left > 0);
        }
        local.insert(
            key,
            Local {
                size,
                left,
                tat_us: grant.tat_us,
            },
        );
        Ok(reading(size, left, grant.tat_us, now, interval, tolerance))
    }
}

impl SharedRates {
    /// Forgets local entries with nothing left to spend (the shared buckets stay in the
    /// database, where an idle one costs a row).
    pub fn cleanup(&self) {
        self.local
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .retain(|_, l| l.left > 0);
    }

    /// Local entries held.
    pub fn tracked(&self) -> usize {
        self.local.lock().unwrap_or_else(|p| p.into_inner()).len()
    }
}

/// A bucket's reading after a request was admitted: what this node still holds plus what the
/// shared bucket still gives.
fn reading(size: Size, held: i64, tat_us: i64, now: i64, interval: i64, tolerance: i64) -> Reading {
    let in_bucket = ((tolerance - (tat_us - now).max(0)) / interval).max(0);
    Reading {
        size,
        remaining: (held + in_bucket) as u64,
        until_full: Duration::from_micros((tat_us - now).max(0) as u64),
        wait: None,
    }
}
