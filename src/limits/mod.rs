//! Rate limits and monthly quotas (docs/api.md "Common rules").
//!
//! The request pipeline authenticates first: a valid key is never refused for what other
//! requests from its address did. When authentication fails it calls `auth_failed`, which counts
//! the failure per client address and per presented key prefix and turns the 401 into a 429 once
//! either bucket is empty. After a successful authentication it calls `admit` (or `check`): what they return becomes the
//! `X-RateLimit-*` headers. It then calls `prepare` so the tenant's quota figures are in memory.
//! Handlers that consume a monthly quota (capture: events; invoke: invocations) call `reserve`
//! before storing and `Reservation::commit` with what was really used after their transaction
//! committed (the same transaction bumps the usage counter the quota is measured by).
//!
//! Sizes come from the tenant's plan with the operator's overrides, read from the principal on
//! every request, so `engram tenants set-plan` / `set-limits` apply as soon as the key cache sees
//! them (about two seconds), without a restart. Every key has a bucket of the plan's size; the
//! tenant as a whole has one `TENANT_FACTOR` times larger, so adding keys multiplies a tenant's
//! allowance only so far. The tighter of the two decides, and its figures fill the headers.
//! With limits disabled nothing is limited, no headers are sent and reservations are free.

mod quota;
mod rate;
mod shared;

pub use quota::QuotaStatus;

use crate::auth::Principal;
use crate::error::{Error, Result};
use crate::plans::PlanLimits;
use crate::store::Db;
use crate::time::Clock;
use rate::{ceil_secs, RateLimiters, Reading, Size};
use std::net::IpAddr;
use std::time::Duration;

/// A tenant's bucket is this many times the size of one key's bucket.
pub const TENANT_FACTOR: u64 = 4;

/// Requests without a valid key, per client address: a burst, then this many per minute.
pub const ANONYMOUS_BURST: u32 = 30;
pub const ANONYMOUS_PER_MINUTE: u64 = 30;

/// The figures behind the `X-RateLimit-*` headers of one response.
#[derive(Clone, Copy, Debug)]
pub struct RateInfo {
    /// Requests per minute of the deciding bucket.
    pub limit: u64,
    /// Requests the next request will find in the bucket.
    pub remaining: u64,
    /// Epoch seconds when the bucket is full again.
    pub reset: u64,
}

/// What `admit` decided: the header figures (also for a refusal) and the refusal, if any.
#[derive(Debug)]
pub struct Admission {
    pub info: Option<RateInfo>,
    pub result: Result<()>,
}

/// A monthly quota. The discriminants index `Quota::ALL` and the ledger's loaded figures.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Quota {
    Events = 0,
    Invocations = 1,
}

/// Units of a quota held for one request: `commit` records what was used; dropping it unused
/// releases the hold.
#[must_use]
pub struct Reservation {
    hold: Option<quota::Hold>,
}

impl Reservation {
    /// Records `used` (≤ the reserved amount) as consumed this month. Call it after the
    /// transaction that stored the units (and bumped their usage counter) committed.
    pub fn commit(self, used: u64) {
        if let Some(h) = self.hold {
            h.commit(used);
        }
    }
}

pub struct Limits {
    enabled: bool,
    /// Vault reveals per minute per key (their own bucket).
    reveals_per_minute: u64,
    db: Db,
    clock: Clock,
    rates: RateLimiters,
    /// PostgreSQL: the key and tenant buckets every node shares.
    shared: Option<shared::SharedRates>,
    ledger: quota::Ledger,
}

impl Limits {
    pub fn new(enabled: bool, reveals_per_minute: u64, db: Db, clock: Clock) -> Limits {
        Limits {
            enabled,
            reveals_per_minute,
            rates: RateLimiters::new(
                Size {
                    per_minute: ANONYMOUS_PER_MINUTE,
                    burst: ANONYMOUS_BURST,
                },
                clock.clone(),
            ),
            ledger: quota::Ledger::new(db.clone(), clock.clone()),
            shared: db
                .is_postgres()
                .then(|| shared::SharedRates::new(db.clone(), clock.clone())),
            clock,
            db,
        }
    }

    /// The time quota periods and rate windows follow.
    pub fn clock(&self) -> &Clock {
        &self.clock
    }

    pub fn enabled(&self) -> bool {
        self.enabled
    }

    /// The effective limits of the principal's tenant: its plan with the operator's overrides.
    pub fn effective(principal: &Principal) -> PlanLimits {
        principal
            .plan
            .limits()
            .with_overrides(principal.limits_override.as_ref())
    }

    /// Takes one request from the key's and the tenant's buckets.
    pub fn check(&self, principal: &Principal) -> Result<Option<RateInfo>> {
        let a = self.admit(principal);
        a.result.map(|()| a.info)
    }

    /// Takes one request from the key's and the tenant's buckets; the header figures come back
    /// also when the request is refused (a 429 carries them too).
    pub fn admit(&self, principal: &Principal) -> Admission {
        // Counted even with limits off: it is a usage figure, not a limit.
        self.rates.count_request(&principal.tenant_id);
        if !self.enabled {
            return Admission {
                info: None,
                result: Ok(()),
            };
        }
        self.rates.maybe_cleanup();
        let limits = Self::effective(principal);
        let Some(key_size) = Size::from_plan(limits.requests_per_minute, limits.burst) else {
            // Unlimited (enterprise by default): no bucket, no figures to report.
            return Admission {
                info: None,
                result: Ok(()),
            };
        };
        let key = self.take(key_size, principal, &principal.key_id);
        let key = match key {
            Ok(k) => k,
            Err(e) => return failed(e),
        };
        if !key.allowed() {
            return refusal(key, "this API key", self.rates.epoch_secs());
        }
        let tenant = self.take(
            key_size.scaled(TENANT_FACTOR),
            principal,
            &principal.tenant_id,
        );
        let tenant = match tenant {
            Ok(t) => t,
            Err(e) => return failed(e),
        };
        if !tenant.allowed() {
            return refusal(tenant, "this tenant", self.rates.epoch_secs());
        }
        // The bucket with less left decides; on a tie, the one that takes longer to refill.
        let decides = if (tenant.remaining, std::cmp::Reverse(tenant.until_full))
            < (key.remaining, std::cmp::Reverse(key.until_full))
        {
            tenant
        } else {
            key
        };
        Admission {
            info: Some(info_of(&decides, self.rates.epoch_secs())),
            result: Ok(()),
        }
    }

    /// Takes one request from a bucket of the principal's tenant: this node's (SQLite) or the
    /// one every node shares (PostgreSQL). Tenant ids and key ids never collide.
    fn take(&self, size: Size, principal: &Principal, bucket: &str) -> Result<Reading> {
        match &self.shared {
            Some(s) => s.take(size, &principal.tenant_id, bucket),
            None => Ok(self.rates.take(size, &bucket.to_string())),
        }
    }

    /// Takes one vault reveal from the key's own reveal bucket (`reveals_per_minute`, bursts of
    /// the same): 429 once it is empty.
    pub fn reveal(&self, principal: &Principal) -> Result<()> {
        if !self.enabled {
            return Ok(());
        }
        let size = Size {
            per_minute: self.reveals_per_minute,
            burst: self.reveals_per_minute.clamp(1, u32::MAX as u64) as u32,
        };
        let r = self.take(size, principal, &format!("reveal:{}", principal.key_id))?;
        match r.wait {
            None => Ok(()),
            Some(wait) => {
                let retry_after = ceil_secs(wait);
                Err(Error::RateLimited {
                    retry_after,
                    message: format!(
                        "You have exceeded this API key's vault reveal limit ({} per minute). \
                         Please retry after {retry_after} second{}.",
                        self.reveals_per_minute,
                        if retry_after == 1 { "" } else { "s" }
                    ),
                })
            }
        }
    }

    /// Counts one failed authentication from `ip` presenting a key starting with `prefix` (when
    /// the header carried one): 429 once the address's or the prefix's bucket is empty, so a
    /// spray of bad keys is slowed without touching requests that carry a valid key.
    pub fn auth_failed(&self, ip: IpAddr, prefix: Option<&str>) -> Result<()> {
        if !self.enabled {
            return Ok(());
        }
        self.rates.maybe_cleanup();
        if let Some(wait) = self.rates.take_anonymous(ip).wait {
            return Err(anonymous_error(wait, "from this address"));
        }
        if let Some(p) = prefix {
            if let Some(wait) = self.rates.take_prefix(p).wait {
                return Err(anonymous_error(wait, "presenting this key"));
            }
        }
        Ok(())
    }

    /// Loads the tenant's quota figures for this month if they are not in memory yet (one
    /// database read per tenant, mode and month), so `reserve` needs no database round trip.
    pub async fn prepare(&self, principal: &Principal) -> Result<()> {
        // PostgreSQL: quotas are reserved in the database (`reserve`), not from loaded figures.
        if !self.enabled || self.db.is_postgres() {
            return Ok(());
        }
        self.ledger
            .prepare(&principal.tenant_id, principal.mode)
            .await
    }

    /// Holds `n` units of a monthly quota, or 429 `quota_exceeded` saying how many remain.
    pub fn reserve(&self, principal: &Principal, quota: Quota, n: u64) -> Result<Reservation> {
        if !self.enabled {
            return Ok(Reservation { hold: None });
        }
        let limit = quota_limit(&Self::effective(principal), quota);
        let hold = self
            .ledger
            .reserve(&principal.tenant_id, principal.mode, quota, limit, n)?;
        Ok(Reservation { hold: Some(hold) })
    }

    /// The principal's quota this month (for `/v1/usage` and `/v1/usage-metrics`): the same
    /// figures `reserve` enforces.
    pub async fn quota_status(&self, principal: &Principal, quota: Quota) -> Result<QuotaStatus> {
        let limit = quota_limit(&Self::effective(principal), quota);
        // PostgreSQL: other nodes count too; the stored counters are the figures.
        if self.enabled && !self.db.is_postgres() {
            self.ledger
                .status(&principal.tenant_id, principal.mode, quota, limit)
                .await
        } else {
            quota::stored_status(
                &self.db,
                &self.clock,
                &principal.tenant_id,
                principal.mode,
                quota,
                limit,
            )
            .await
        }
    }

    /// Requests the tenant made in the current minute (for usage metrics).
    pub fn requests_this_minute(&self, tenant_id: &str) -> u64 {
        self.rates.requests_this_minute(tenant_id)
    }

    /// Forgets idle rate-limit state now (it also happens on its own every minute).
    pub fn cleanup(&self) {
        self.rates.cleanup();
        if let Some(s) = &self.shared {
            s.cleanup();
        }
    }

    /// Buckets currently held in memory (keys, tenants and addresses).
    pub fn tracked_buckets(&self) -> usize {
        self.rates.tracked() + self.shared.as_ref().map_or(0, |s| s.tracked())
    }
}

fn quota_limit(limits: &PlanLimits, quota: Quota) -> Option<u64> {
    match quota {
        Quota::Events => limits.events_per_month,
        Quota::Invocations => limits.invocations_per_month,
    }
}

/// The headers' figures; `epoch` is now, in seconds since the epoch on the server's clock.
fn info_of(r: &Reading, epoch: f64) -> RateInfo {
    RateInfo {
        limit: r.size.per_minute,
        remaining: r.remaining,
        reset: (epoch + r.until_full.as_secs_f64()).ceil() as u64,
    }
}

/// A bucket that could not be read (the database failed): the request is refused with the
/// failure, without figures.
fn failed(e: Error) -> Admission {
    Admission {
        info: None,
        result: Err(e),
    }
}

fn refusal(r: Reading, whose: &str, epoch: f64) -> Admission {
    let retry_after = ceil_secs(r.wait.unwrap_or(Duration::from_secs(1)));
    Admission {
        info: Some(info_of(&r, epoch)),
        result: Err(Error::RateLimited {
            retry_after,
            message: format!(
                "You have exceeded the rate limit of {whose} ({} requests per minute, bursts of \
                 {}). Please retry after {retry_after} second{}.",
                r.size.per_minute,
                r.size.burst,
                if retry_after == 1 { "" } else { "s" }
            ),
        }),
    }
}

fn anonymous_error(wait: Duration, whose: &str) -> Error {
    let retry_after = ceil_secs(wait);
    Error::RateLimited {
        retry_after,
        message: format!(
            "Too many requests without a valid API key {whose}. Please retry after \
             {retry_after} second{}.",
            if retry_after == 1 { "" } else { "s" }
        ),
    }
}
