//! Rate limits and monthly quotas (API.md §1 "Rate limits").
//!
//! The request pipeline calls `check` after authentication and `check_anonymous` for requests
//! without a valid key; what they return becomes the `X-RateLimit-*` headers.

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
}
