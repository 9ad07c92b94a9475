//! Monthly quotas: how much of a tenant's events and invocations allowance this calendar month
//! (UTC) is used, per mode (`live` and `test` keys count separately).
//!
//! The source of truth is `usage_counters` (month buckets), which the capture and invoke handlers
//! bump in the same transaction that stores what they count. This ledger mirrors it in memory so
//! that a reservation costs no database round trip: a figure is loaded once per (tenant, mode,
//! month) on first use, then kept current by the reservations themselves. A reservation holds its
//! units until `commit` (after the handler's transaction committed) turns them into used ones, or
//! until it is dropped. Checks and holds happen under one lock, so concurrent requests can never
//! together exceed a quota. Figures are re-read from the database now and then, but only when no
//! reservation was outstanding during the read, so the refresh never double counts.

use super::Quota;
use crate::error::{Error, Result};
use crate::store::{shared_limits, usage, Db};
use crate::time::Clock;
use chrono::{DateTime, Datelike, Utc};
use serde_json::json;
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// How old a figure may get before it is re-read from the database.
const REFRESH_AFTER: Duration = Duration::from_secs(30);

impl Quota {
    pub const ALL: [Quota; 2] = [Quota::Events, Quota::Invocations];

    /// The usage counter this quota is measured by.
    pub fn metric(self) -> &'static str {
        match self {
            Quota::Events => usage::EVENTS,
            Quota::Invocations => usage::INVOCATIONS,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Quota::Events => "events",
            Quota::Invocations => "invocations",
        }
    }
}

/// A calendar month (UTC) as a number that increases by one each month.
fn month_index(t: DateTime<Utc>) -> i64 {
    t.year() as i64 * 12 + t.month0() as i64
}

struct Figure {
    mode: &'static str,
    quota: Quota,
    month: i64,
    used: u64,
    held: u64,
    /// Bumped by every reserve, commit and release: a refresh applies only if it did not move.
    generation: u64,
    loaded_at: Instant,
    refreshing: bool,
}

type Figures = HashMap<String, Vec<Figure>>;

struct Inner {
    db: Db,
    clock: Clock,
    figures: Mutex<Figures>,
    refresh_after: Duration,
}

#[derive(Clone)]
pub(super) struct Ledger {
    inner: Arc<Inner>,
}

/// Units held by one reservation.
pub(super) struct Hold {
    inner: Arc<Inner>,
    tenant: String,
    mode: &'static str,
    quota: Quota,
    month: i64,
    n: u64,
    /// PostgreSQL: the month bucket of the shared counter the units are reserved in (the
    /// in-memory figures are not used: other nodes reserve too).
    shared_bucket: Option<String>,
}

/// A quota's state for usage reports.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct QuotaStatus {
    pub quota: Quota,
    /// `None`: unlimited.
    pub limit: Option<u64>,
    /// Used this month (committed).
    pub used: u64,
    /// `None`: unlimited.
    pub remaining: Option<u64>,
    /// When the month's quota starts over.
    pub resets_at: DateTime<Utc>,
}

impl Hold {
    /// Turns the hold into `used` consumed units (normally ≤ the held amount; more is recorded as
    /// is, since the database already counted it).
    pub fn commit(mut self, used: u64) {
        self.settle(used);
        self.n = 0;
    }

    /// Releases the held units and records `used` ones.
    fn settle(&self, used: u64) {
        if let Some(bucket) = &self.shared_bucket {
            let unused = self.n.saturating_sub(used) as i64;
            if unused > 0 {
                let k = quota_key(&self.tenant, self.mode, self.quota, bucket.clone());
                let released = self
                    .inner
                    .db
                    .shared_blocking(move |c| shared_limits::release_quota(c, &k, unused));
                if let Err(e) = released {
                    // Kept reserved: the quota errs on the strict side by these units.
                    tracing::warn!(error = %e, units = unused, "could not release quota units");
                }
            }
            return;
        }
        let mut figures = lock(&self.inner.figures);
        if let Some(f) = find(
            &mut figures,
            &self.tenant,
            self.mode,
            self.quota,
            self.month,
        ) {
            f.held = f.held.saturating_sub(self.n);
            f.used = f.used.saturating_add(used);
            f.generation += 1;
        }
    }
}

impl Drop for Hold {
    fn drop(&mut self) {
        // A hold dropped without `commit` (an error before storing): release it. `commit`
        // settles and zeroes `n`, so its drop does nothing.
        if self.n > 0 {
            self.settle(0);
        }
    }
}

impl Ledger {
    pub fn new(db: Db, clock: Clock) -> Ledger {
        Self::with_refresh(db, clock, REFRESH_AFTER)
    }

    fn with_refresh(db: Db, clock: Clock, refresh_after: Duration) -> Ledger {
        Ledger {
            inner: Arc::new(Inner {
                db,
                clock,
                figures: Mutex::new(HashMap::new()),
                refresh_after,
            }),
        }
    }

    /// Makes sure the current month's figures of (tenant, mode) are in memory (one database read
    /// the first time in a month), and refreshes stale ones in the background.
    pub async fn prepare(&self, tenant: &str, mode: &'static str) -> Result<()> {
        let month = month_index(self.inner.clock.now());
        let mut stale = Vec::new();
        let refresh_after = self.inner.refresh_after;
        let missing = {
            let mut figures = lock(&self.inner.figures);
            let mut missing = false;
            for quota in Quota::ALL {
                match find(&mut figures, tenant, mode, quota, month) {
                    None => missing = true,
                    Some(f) => {
                        if !f.refreshing && f.held == 0 && f.loaded_at.elapsed() >= refresh_after {
                            f.refreshing = true;
                            stale.push((quota, f.generation));
                        }
                    }
                }
            }
            missing
        };
        if missing {
            let loaded = self.load(tenant, mode).await?;
            self.insert(tenant, mode, month, loaded);
        }
        if !stale.is_empty() {
            let ledger = self.clone();
            let tenant = tenant.to_string();
            tokio::spawn(async move { ledger.refresh(tenant, mode, month, stale).await });
        }
        Ok(())
    }

    /// Holds `n` units of `quota`, or 429 `quota_exceeded` saying how many remain.
    pub fn reserve(
        &self,
        tenant: &str,
        mode: &'static str,
        quota: Quota,
        limit: Option<u64>,
        n: u64,
    ) -> Result<Hold> {
        let now = self.inner.clock.now();
        let month = month_index(now);
        if self.inner.db.is_postgres() {
            return self.reserve_shared(tenant, mode, quota, limit, n, now);
        }
        let present = find(&mut lock(&self.inner.figures), tenant, mode, quota, month).is_some();
        if !present {
            // Only when the request pipeline did not prepare this month's figures (a month that
            // began mid-request, or a caller outside the pipeline): one short read, once.
            let (t, m) = (tenant.to_string(), mode);
            let loaded = self.inner.db.read_blocking(|c| read_used(c, &t, m, now))?;
            self.insert(tenant, mode, month, loaded);
        }
        let mut figures = lock(&self.inner.figures);
        let f = find(&mut figures, tenant, mode, quota, month)
            .ok_or_else(|| Error::Internal("quota figure vanished".into()))?;
        if let Some(limit) = limit {
            let counted = f.used.saturating_add(f.held);
            if counted.saturating_add(n) > limit {
                return Err(exceeded(quota, limit, counted, n, now));
            }
        }
        f.held = f.held.saturating_add(n);
        f.generation += 1;
        Ok(Hold {
            inner: self.inner.clone(),
            tenant: tenant.to_string(),
            mode,
            quota,
            month,
            n,
            shared_bucket: None,
        })
    }

    /// `reserve` on PostgreSQL: the units are reserved in the counter every node shares, in one
    /// conditional update, so nodes reserving at once can never together pass the limit.
    fn reserve_shared(
        &self,
        tenant: &str,
        mode: &'static str,
        quota: Quota,
        limit: Option<u64>,
        n: u64,
        now: DateTime<Utc>,
    ) -> Result<Hold> {
        let bucket = usage::month_bucket(now);
        let hold = |n: u64, shared_bucket: Option<String>| Hold {
            inner: self.inner.clone(),
            tenant: tenant.to_string(),
            mode,
            quota,
            month: month_index(now),
            n,
            shared_bucket,
        };
        // Unlimited: nothing to reserve (the usage counter still counts what is stored).
        let Some(limit) = limit else {
            return Ok(hold(0, None));
        };
        let k = quota_key(tenant, mode, quota, bucket.clone());
        let capped = limit.min(i64::MAX as u64) as i64;
        let units = n.min(i64::MAX as u64) as i64;
        let outcome = self
            .inner
            .db
            .shared_blocking(move |c| shared_limits::reserve_quota(c, &k, units, capped))?;
        match outcome {
            Ok(_) => Ok(hold(n, Some(bucket))),
            Err(counted) => Err(exceeded(quota, limit, counted.max(0) as u64, n, now)),
        }
    }

    /// The quota's state this month (committed use; holds in flight are not counted).
    pub async fn status(
        &self,
        tenant: &str,
        mode: &'static str,
        quota: Quota,
        limit: Option<u64>,
    ) -> Result<QuotaStatus> {
        self.prepare(tenant, mode).await?;
        let now = self.inner.clock.now();
        let month = month_index(now);
        let used = find(&mut lock(&self.inner.figures), tenant, mode, quota, month)
            .map(|f| f.used)
            .unwrap_or(0);
        Ok(status_of(quota, limit, used, now))
    }

    async fn load(&self, tenant: &str, mode: &'static str) -> Result<[u64; 2]> {
        let t = tenant.to_string();
        let now = self.inner.clock.now();
        self.inner
            .db
            .read(move |c| read_used(c, &t, mode, now))
            .await
    }

    /// Adds loaded figures unless another request loaded them first, and forgets past months.
    fn insert(&self, tenant: &str, mode: &'static str, month: i64, loaded: [u64; 2]) {
        let mut figures = lock(&self.inner.figures);
        let list = figures.entry(tenant.to_string()).or_default();
        list.retain(|f| f.month >= month);
        for (quota, used) in Quota::ALL.into_iter().zip(loaded) {
            let exists = list
                .iter()
                .any(|f| f.mode == mode && f.quota == quota && f.month == month);
            if !exists {
                list.push(Figure {
                    mode,
                    quota,
                    month,
                    used,
                    held: 0,
                    generation: 0,
                    loaded_at: Instant::now(),
                    refreshing: false,
                });
            }
        }
    }

    async fn refresh(
        &self,
        tenant: String,
        mode: &'static str,
        month: i64,
        stale: Vec<(Quota, u64)>,
    ) {
        let loaded = self.load(&tenant, mode).await;
        let mut figures = lock(&self.inner.figures);
        for (quota, generation) in stale {
            let Some(f) = find(&mut figures, &tenant, mode, quota, month) else {
                continue;
            };
            f.refreshing = false;
            match &loaded {
                Ok(values) if f.generation == generation && f.held == 0 => {
                    let used = values[quota as usize];
                    if used != f.used {
                        tracing::debug!(
                            tenant = %tenant, quota = quota.as_str(), memory = f.used, stored = used,
                            "quota figure re-read from the usage counters"
                        );
                    }
                    f.used = used;
                    f.loaded_at = Instant::now();
                }
                Ok(_) => {}
                Err(e) => tracing::warn!(error = %e, "could not refresh quota figures"),
            }
        }
    }
}

fn find<'a>(
    figures: &'a mut Figures,
    tenant: &str,
    mode: &str,
    quota: Quota,
    month: i64,
) -> Option<&'a mut Figure> {
    figures
        .get_mut(tenant)?
        .iter_mut()
        .find(|f| f.mode == mode && f.quota == quota && f.month == month)
}

/// This month's committed use of every quota, in `Quota::ALL` order.
fn read_used(
    conn: &crate::store::Conn,
    tenant: &str,
    mode: &str,
    now: DateTime<Utc>,
) -> Result<[u64; 2]> {
    let bucket = usage::month_bucket(now);
    let mut out = [0u64; 2];
    for (i, quota) in Quota::ALL.into_iter().enumerate() {
        out[i] = usage::get(conn, tenant, mode, quota.metric(), &bucket)?.max(0) as u64;
    }
    Ok(out)
}

/// The quota's state, given this month's use.
pub(super) fn status_of(
    quota: Quota,
    limit: Option<u64>,
    used: u64,
    now: DateTime<Utc>,
) -> QuotaStatus {
    QuotaStatus {
        quota,
        limit,
        used,
        remaining: limit.map(|l| l.saturating_sub(used)),
        resets_at: crate::time::month_bounds(now).1,
    }
}

/// The shared counter of a tenant's quota in a month bucket (PostgreSQL).
fn quota_key(
    tenant: &str,
    mode: &'static str,
    quota: Quota,
    bucket: String,
) -> shared_limits::QuotaKey {
    shared_limits::QuotaKey {
        tenant_id: tenant.to_string(),
        mode,
        metric: quota.metric(),
        bucket,
    }
}

/// This month's use from the database (the ledger is off, or the nodes share PostgreSQL).
pub(super) async fn stored_status(
    db: &Db,
    clock: &Clock,
    tenant: &str,
    mode: &'static str,
    quota: Quota,
    limit: Option<u64>,
) -> Result<QuotaStatus> {
    let t = tenant.to_string();
    let now = clock.now();
    let postgres = db.is_postgres();
    let used = db
        .read(move |c| {
            let stored = read_used(c, &t, mode, now)?[quota as usize];
            if !postgres {
                return Ok(stored);
            }
            // PostgreSQL: what the nodes reserved, which `reserve` enforces (the stored use
            // plus units of requests in flight), once the month's counter exists.
            let k = quota_key(&t, mode, quota, usage::month_bucket(now));
            Ok(stored.max(shared_limits::reserved(c, &k)?.max(0) as u64))
        })
        .await?;
    Ok(status_of(quota, limit, used, now))
}

fn exceeded(quota: Quota, limit: u64, counted: u64, n: u64, now: DateTime<Utc>) -> Error {
    let resets_at = crate::time::month_bounds(now).1;
    let remaining = limit.saturating_sub(counted);
    let retry_after = (resets_at - now).num_seconds().max(1) as u64;
    let what = quota.as_str();
    let reset_text = crate::time::rfc3339(resets_at);
    let message = if n > 1 && remaining > 0 {
        format!(
            "this request needs {n} {what} but only {remaining} of the monthly quota of {limit} \
             remain; nothing was stored. The quota resets at {reset_text}."
        )
    } else {
        format!(
            "monthly {what} quota exhausted: {counted} of {limit} used, {remaining} remain. \
             The quota resets at {reset_text}."
        )
    };
    Error::QuotaExceeded {
        retry_after,
        message,
        details: json!({
            "quota": what,
            "limit": limit,
            "used": counted,
            "remaining": remaining,
            "requested": n,
            "resetAt": reset_text,
        }),
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::plans::Plan;

    async fn ledger(refresh_after: Duration) -> (tempfile::TempDir, Ledger, String) {
        let dir = tempfile::tempdir().unwrap();
        let db = Db::open(&dir.path().join("engram.db"), 2).unwrap();
        let t = db
            .write(|c| crate::store::tenants::create(c, "t", Plan::Free))
            .await
            .unwrap();
        // Mid-month, far from its end: nothing here races the wall clock's month.
        let clock = Clock::default();
        clock.set(at("2031-03-14T10:30:00Z")).unwrap();
        (dir, Ledger::with_refresh(db, clock, refresh_after), t.id)
    }

    fn at(s: &str) -> DateTime<Utc> {
        crate::time::parse(s).unwrap()
    }

    async fn count(l: &Ledger, tenant: &str, n: i64) {
        let t = tenant.to_string();
        let now = l.inner.clock.now();
        l.inner
            .db
            .write(move |c| usage::incr(c, &t, "live", usage::EVENTS, n, now))
            .await
            .unwrap();
    }

    fn used(l: &Ledger, tenant: &str) -> u64 {
        let month = month_index(l.inner.clock.now());
        find(
            &mut lock(&l.inner.figures),
            tenant,
            "live",
            Quota::Events,
            month,
        )
        .map(|f| f.used)
        .unwrap()
    }

    #[tokio::test]
    async fn figures_catch_up_with_counters_written_elsewhere() {
        let (_dir, l, t) = ledger(Duration::ZERO).await;
        l.prepare(&t, "live").await.unwrap();
        assert_eq!(used(&l, &t), 0);
        // Counted without a reservation (say, by an older binary): seen at the next refresh.
        count(&l, &t, 3).await;
        let deadline = Instant::now() + Duration::from_secs(10);
        while used(&l, &t) != 3 {
            assert!(Instant::now() < deadline, "the figure was never refreshed");
            l.prepare(&t, "live").await.unwrap();
            tokio::task::yield_now().await;
        }
    }

    #[tokio::test]
    async fn a_refresh_never_overwrites_a_figure_with_reservations_in_flight() {
        let (_dir, l, t) = ledger(Duration::ZERO).await;
        l.prepare(&t, "live").await.unwrap();
        let hold = l.reserve(&t, "live", Quota::Events, Some(10), 4).unwrap();
        // The handler's transaction counted the 4; its commit has not reached the ledger yet.
        count(&l, &t, 4).await;
        for _ in 0..5 {
            l.prepare(&t, "live").await.unwrap();
            tokio::task::yield_now().await;
        }
        assert_eq!(
            used(&l, &t),
            0,
            "a refresh with a hold outstanding would double count"
        );
        hold.commit(4);
        assert_eq!(used(&l, &t), 4);
        let err = l
            .reserve(&t, "live", Quota::Events, Some(10), 7)
            .err()
            .unwrap();
        assert!(matches!(err, Error::QuotaExceeded { .. }));
    }

    /// A quota is refused until its month ends, says exactly when that is, and is whole again in
    /// the next month; the clock is moved, not waited for.
    #[tokio::test]
    async fn an_exhausted_quota_comes_back_when_the_month_turns() {
        let (_dir, l, t) = ledger(REFRESH_AFTER).await;
        l.prepare(&t, "live").await.unwrap();
        l.reserve(&t, "live", Quota::Events, Some(5), 5)
            .unwrap()
            .commit(5);
        let err = l
            .reserve(&t, "live", Quota::Events, Some(5), 1)
            .err()
            .unwrap();
        let Error::QuotaExceeded {
            retry_after,
            details,
            ..
        } = err
        else {
            panic!("expected quota_exceeded, got {err}");
        };
        // 2031-03-14T10:30 to 2031-04-01T00:00: 17 days 13.5 hours (give or take the test's own
        // milliseconds).
        let expected = (17 * 24 + 13) * 3600 + 1800;
        assert!(retry_after.abs_diff(expected) <= 1, "{retry_after}");
        assert_eq!(details["resetAt"], "2031-04-01T00:00:00.000Z");
        l.inner.clock.set(at("2031-04-01T00:00:01Z")).unwrap();
        l.reserve(&t, "live", Quota::Events, Some(5), 5)
            .expect("a new month, a whole quota")
            .commit(5);
        assert!(l.reserve(&t, "live", Quota::Events, Some(5), 1).is_err());
    }
}
