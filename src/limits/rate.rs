//! Request rate limiting: GCRA token buckets (governor) per API key, per tenant and per client
//! address, plus the per-tenant request count of the current minute.
//!
//! Buckets of one size share one keyed limiter, so a tenant whose effective limits change (plan
//! change, operator override) simply lands in the limiter of its new size with a fresh bucket:
//! nothing has to be rewritten and no restart is needed. Key ids (`key_…`) and tenant ids
//! (`ten_…`) never collide, so both kinds of bucket can live in one limiter.
//!
//! Memory stays bounded: every `CLEANUP_EVERY` the limiters forget buckets that are full again
//! (indistinguishable from fresh ones), limiters left empty are dropped, and a limiter that still
//! holds more than `MAX_KEYS` buckets is reset (everyone it held starts with a full bucket again,
//! which only ever errs on the generous side).

use governor::clock::Clock as _;
use governor::middleware::{StateInformationMiddleware, StateSnapshot};
use governor::state::keyed::DashMapStateStore;
use governor::{NotUntil, Quota, RateLimiter};
use std::collections::HashMap;
use std::hash::Hash;
use std::net::IpAddr;
use std::num::NonZeroU32;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, Instant};

type Keyed<K> = RateLimiter<K, DashMapStateStore<K>, RateClock, StateInformationMiddleware>;

/// The server's clock as governor reads it: monotonic time since the clock was made, moved
/// forward with it (`time::Clock::advance`), so a test can refill a bucket without waiting.
#[derive(Clone)]
struct RateClock(crate::time::Clock);

impl governor::clock::Clock for RateClock {
    type Instant = Duration;

    fn now(&self) -> Duration {
        self.0.elapsed()
    }
}

/// How often idle buckets are swept.
const CLEANUP_EVERY: Duration = Duration::from_secs(60);
/// Buckets one limiter may hold after a sweep before it is reset.
pub(super) const MAX_KEYS: usize = 100_000;

/// The size of a bucket: its refill rate and its capacity.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub(super) struct Size {
    pub per_minute: u64,
    pub burst: u32,
}

impl Size {
    /// A bucket from plan figures; `None` when requests are unlimited. A burst that is not set
    /// defaults to a minute's worth of requests.
    pub fn from_plan(per_minute: Option<u64>, burst: Option<u64>) -> Option<Size> {
        let per_minute = per_minute?;
        let burst = burst.unwrap_or(per_minute).clamp(1, u32::MAX as u64) as u32;
        Some(Size { per_minute, burst })
    }

    pub fn scaled(self, factor: u64) -> Size {
        Size {
            per_minute: self.per_minute.saturating_mul(factor),
            burst: (self.burst as u64)
                .saturating_mul(factor)
                .min(u32::MAX as u64) as u32,
        }
    }

    /// Time to earn one request back.
    fn interval(self) -> Duration {
        // per_minute ≥ 1 here (0 is handled before a limiter is built).
        Duration::from_nanos((60_000_000_000 / self.per_minute as u128).max(1) as u64)
    }
}

/// One bucket's state after a decision.
#[derive(Clone, Copy, Debug)]
pub(super) struct Reading {
    pub size: Size,
    /// Requests the next caller will find (0 when refused).
    pub remaining: u64,
    /// How long until the bucket is full again.
    pub until_full: Duration,
    /// When refused: how long until one request is allowed.
    pub wait: Option<Duration>,
}

impl Reading {
    pub fn allowed(&self) -> bool {
        self.wait.is_none()
    }
}

struct Sized {
    limiter: Keyed<String>,
    interval: Duration,
}

pub(super) struct RateLimiters {
    clock: RateClock,
    by_size: RwLock<HashMap<Size, Arc<Sized>>>,
    /// Failed authentications per client address.
    anonymous: RwLock<Keyed<IpAddr>>,
    /// Failed authentications per presented key prefix (a key sprayed from many addresses).
    prefixes: RwLock<Keyed<String>>,
    anonymous_size: Size,
    /// tenant → (minute since the epoch, requests in it).
    minutes: Mutex<HashMap<String, (u64, u64)>>,
    started: Instant,
    /// Milliseconds since `started` after which the next sweep runs.
    next_cleanup_ms: AtomicU64,
}

impl RateLimiters {
    pub fn new(anonymous_size: Size, clock: crate::time::Clock) -> RateLimiters {
        let clock = RateClock(clock);
        RateLimiters {
            anonymous: RwLock::new(keyed(anonymous_size, &clock)),
            prefixes: RwLock::new(keyed(anonymous_size, &clock)),
            anonymous_size,
            clock,
            by_size: RwLock::new(HashMap::new()),
            minutes: Mutex::new(HashMap::new()),
            started: Instant::now(),
            next_cleanup_ms: AtomicU64::new(CLEANUP_EVERY.as_millis() as u64),
        }
    }

    /// Seconds since the epoch on the server's clock.
    pub fn epoch_secs(&self) -> f64 {
        self.clock.0.now().timestamp_millis() as f64 / 1000.0
    }

    /// Takes one request from `key`'s bucket of `size`.
    pub fn take(&self, size: Size, key: &String) -> Reading {
        if size.per_minute == 0 {
            // A limit of zero requests: always refused, as if a minute had to pass.
            return Reading {
                size,
                remaining: 0,
                until_full: Duration::from_secs(60),
                wait: Some(Duration::from_secs(60)),
            };
        }
        let sized = self.sized(size);
        let outcome = sized.limiter.check_key(key);
        self.reading(size, sized.interval, outcome)
    }

    /// Takes one failed authentication from a client address's bucket.
    pub fn take_anonymous(&self, ip: IpAddr) -> Reading {
        let ip = address_key(ip);
        let size = self.anonymous_size;
        let outcome = read(&self.anonymous).check_key(&ip);
        self.reading(size, size.interval(), outcome)
    }

    /// Takes one failed authentication from the bucket of a presented key's prefix.
    pub fn take_prefix(&self, prefix: &str) -> Reading {
        let size = self.anonymous_size;
        let outcome = read(&self.prefixes).check_key(&prefix.to_string());
        self.reading(size, size.interval(), outcome)
    }

    /// Counts one request of `tenant` in the current minute.
    pub fn count_request(&self, tenant: &str) {
        let minute = self.epoch_secs() as u64 / 60;
        let mut minutes = lock(&self.minutes);
        match minutes.get_mut(tenant) {
            Some(entry) if entry.0 == minute => entry.1 += 1,
            Some(entry) => *entry = (minute, 1),
            None => {
                minutes.insert(tenant.to_string(), (minute, 1));
            }
        }
    }

    pub fn requests_this_minute(&self, tenant: &str) -> u64 {
        let minute = self.epoch_secs() as u64 / 60;
        match lock(&self.minutes).get(tenant) {
            Some(&(m, n)) if m == minute => n,
            _ => 0,
        }
    }

    /// Sweeps idle state when it is time to (one caller wins the race and does the work).
    pub fn maybe_cleanup(&self) {
        let now_ms = self.started.elapsed().as_millis() as u64;
        let due = self.next_cleanup_ms.load(Ordering::Relaxed);
        if now_ms < due {
            return;
        }
        let next = now_ms + CLEANUP_EVERY.as_millis() as u64;
        if self
            .next_cleanup_ms
            .compare_exchange(due, next, Ordering::AcqRel, Ordering::Relaxed)
            .is_ok()
        {
            self.cleanup();
        }
    }

    /// Forgets full buckets, drops empty limiters, resets overfull ones, and drops request
    /// counts of past minutes.
    pub fn cleanup(&self) {
        {
            let mut by_size = write(&self.by_size);
            by_size.retain(|size, sized| {
                sized.limiter.retain_recent();
                sized.limiter.shrink_to_fit();
                let n = sized.limiter.len();
                if n > MAX_KEYS {
                    tracing::warn!(
                        buckets = n,
                        per_minute = size.per_minute,
                        "rate limiter holds too many active buckets; resetting it"
                    );
                    return false;
                }
                n > 0
            });
        }
        self.sweep(&self.anonymous, "per-address");
        self.sweep(&self.prefixes, "per-key-prefix");
        let minute = self.epoch_secs() as u64 / 60;
        lock(&self.minutes).retain(|_, (m, _)| *m == minute);
    }

    /// Forgets the full buckets of a failed-authentication limiter; resets it when it still holds
    /// too many.
    fn sweep<K: Hash + Eq + Clone>(&self, limiter: &RwLock<Keyed<K>>, what: &str) {
        let mut l = write(limiter);
        l.retain_recent();
        l.shrink_to_fit();
        if l.len() > MAX_KEYS {
            tracing::warn!(
                buckets = l.len(),
                "{what} rate limiter holds too many active buckets; resetting it"
            );
            *l = keyed(self.anonymous_size, &self.clock);
        }
    }

    /// Buckets currently held (all sizes, addresses included): for tests and monitoring.
    pub fn tracked(&self) -> usize {
        let sized: usize = read(&self.by_size).values().map(|s| s.limiter.len()).sum();
        sized + read(&self.anonymous).len() + read(&self.prefixes).len()
    }

    fn sized(&self, size: Size) -> Arc<Sized> {
        if let Some(s) = read(&self.by_size).get(&size) {
            return s.clone();
        }
        write(&self.by_size)
            .entry(size)
            .or_insert_with(|| {
                Arc::new(Sized {
                    limiter: keyed(size, &self.clock),
                    interval: size.interval(),
                })
            })
            .clone()
    }

    fn reading(
        &self,
        size: Size,
        interval: Duration,
        outcome: Result<StateSnapshot, NotUntil<Duration>>,
    ) -> Reading {
        match outcome {
            Ok(snapshot) => {
                let remaining = snapshot.remaining_burst_capacity() as u64;
                // The bucket is `burst - remaining` requests short of full; each takes one
                // interval to earn back (an upper bound by less than one interval).
                let missing = (size.burst as u64).saturating_sub(remaining);
                Reading {
                    size,
                    remaining,
                    until_full: interval.saturating_mul(missing.min(u32::MAX as u64) as u32),
                    wait: None,
                }
            }
            Err(not_until) => {
                let wait = not_until.wait_time_from(self.clock.now());
                // Once the next request is allowed, the rest of the bucket takes burst - 1
                // more intervals.
                let rest = interval.saturating_mul(size.burst.saturating_sub(1));
                Reading {
                    size,
                    remaining: 0,
                    until_full: wait + rest,
                    wait: Some(wait),
                }
            }
        }
    }
}

fn keyed<K: Hash + Eq + Clone>(size: Size, clock: &RateClock) -> Keyed<K> {
    let burst = NonZeroU32::new(size.burst.max(1)).expect("burst is at least 1");
    let quota = Quota::with_period(size.interval())
        .expect("interval is positive")
        .allow_burst(burst);
    RateLimiter::dashmap_with_clock(quota, clock.clone())
        .with_middleware::<StateInformationMiddleware>()
}

/// IPv6 clients usually hold a whole /64: throttle the prefix, not each address in it.
fn address_key(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V4(_) => ip,
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => IpAddr::V4(v4),
            None => {
                let s = v6.segments();
                IpAddr::V6(std::net::Ipv6Addr::new(s[0], s[1], s[2], s[3], 0, 0, 0, 0))
            }
        },
    }
}

/// Whole seconds, rounded up, and at least one: what a client should wait.
pub(super) fn ceil_secs(d: Duration) -> u64 {
    (d.as_secs() + u64::from(d.subsec_nanos() > 0)).max(1)
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

fn read<T>(m: &RwLock<T>) -> std::sync::RwLockReadGuard<'_, T> {
    m.read().unwrap_or_else(|p| p.into_inner())
}

fn write<T>(m: &RwLock<T>) -> std::sync::RwLockWriteGuard<'_, T> {
    m.write().unwrap_or_else(|p| p.into_inner())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_bucket_allows_its_burst_then_refuses() {
        let r = RateLimiters::new(
            Size {
                per_minute: 60,
                burst: 3,
            },
            crate::time::Clock::default(),
        );
        let size = Size {
            per_minute: 1,
            burst: 3,
        };
        let key = "key_a".to_string();
        let got: Vec<_> = (0..4).map(|_| r.take(size, &key)).collect();
        assert_eq!(
            got.iter().map(|g| g.remaining).collect::<Vec<_>>(),
            [2, 1, 0, 0]
        );
        assert!(got[..3].iter().all(Reading::allowed));
        let refused = got[3];
        let wait = refused.wait.expect("refused");
        assert!(wait > Duration::from_secs(50) && wait <= Duration::from_secs(60));
        assert!(refused.until_full >= wait + Duration::from_secs(119));
        // Another key of the same size has its own bucket.
        assert!(r.take(size, &"key_b".to_string()).allowed());
        // A minute later (the clock moved, nobody waited) one request is earned back.
        r.clock.0.advance(Duration::from_secs(60));
        assert!(r.take(size, &key).allowed());
        assert!(!r.take(size, &key).allowed());
    }

    #[test]
    fn zero_requests_per_minute_refuses_everything() {
        let r = RateLimiters::new(
            Size {
                per_minute: 60,
                burst: 3,
            },
            crate::time::Clock::default(),
        );
        let size = Size::from_plan(Some(0), Some(5)).unwrap();
        assert!(!r.take(size, &"key_a".to_string()).allowed());
    }

    #[test]
    fn cleanup_forgets_full_buckets() {
        let r = RateLimiters::new(
            Size {
                per_minute: 60,
                burst: 3,
            },
            crate::time::Clock::default(),
        );
        // A bucket that refills in a millisecond is full again at once.
        let fast = Size {
            per_minute: 60_000,
            burst: 1,
        };
        for i in 0..100 {
            r.take(fast, &format!("key_{i}"));
        }
        assert_eq!(r.tracked(), 100);
        // Each bucket is full again a millisecond after its request: sweep until they are gone.
        let deadline = Instant::now() + Duration::from_secs(10);
        while r.tracked() > 0 {
            assert!(Instant::now() < deadline, "buckets were never forgotten");
            r.cleanup();
            std::thread::yield_now();
        }
        assert!(read(&r.by_size).is_empty());
    }

    #[test]
    fn ipv6_addresses_share_their_prefix() {
        let a: IpAddr = "2001:db8:1:2:3:4:5:6".parse().unwrap();
        let b: IpAddr = "2001:db8:1:2:ffff::1".parse().unwrap();
        assert_eq!(address_key(a), address_key(b));
        let v4: IpAddr = "::ffff:10.0.0.1".parse().unwrap();
        assert_eq!(address_key(v4), "10.0.0.1".parse::<IpAddr>().unwrap());
    }
}
