//! Time in the formats the API uses: RFC 3339 UTC text (with milliseconds, so text order is time
//! order) in bodies and storage, epoch seconds in rate-limit headers.

use chrono::{DateTime, Datelike, SecondsFormat, TimeZone, Utc};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

pub fn now() -> DateTime<Utc> {
    Utc::now()
}

/// The time a server acts on for quota periods, rate windows and the usage counters they read.
///
/// By default it is the wall clock. A test (or an operator rehearsing a month's end) moves it
/// forward with `advance` or `set`; it then runs on from there at the wall clock's pace. It never
/// goes back, so rate-limit buckets and "this minute" counts stay monotonic. Clones share the
/// same time.
#[derive(Clone, Debug)]
pub struct Clock {
    /// Milliseconds this clock is ahead of the wall clock.
    ahead_ms: Arc<AtomicU64>,
    /// The monotonic origin of `elapsed`.
    origin: std::time::Instant,
}

impl Default for Clock {
    fn default() -> Clock {
        Clock {
            ahead_ms: Arc::new(AtomicU64::new(0)),
            origin: std::time::Instant::now(),
        }
    }
}

impl Clock {
    /// The current time on this clock.
    pub fn now(&self) -> DateTime<Utc> {
        Utc::now() + chrono::Duration::milliseconds(self.ahead() as i64)
    }

    pub fn now_rfc3339(&self) -> String {
        rfc3339(self.now())
    }

    /// Monotonic time since this clock was made, including every advance (rate windows).
    pub fn elapsed(&self) -> std::time::Duration {
        self.origin.elapsed() + std::time::Duration::from_millis(self.ahead())
    }

    /// Moves the clock forward by `by`.
    pub fn advance(&self, by: std::time::Duration) {
        self.ahead_ms
            .fetch_add(by.as_millis() as u64, Ordering::Relaxed);
    }

    /// Moves the clock forward to `t`; an error (nothing changes) when `t` is in its past.
    pub fn set(&self, t: DateTime<Utc>) -> Result<(), String> {
        let by = t - self.now();
        match by.to_std() {
            Ok(by) => {
                self.advance(by);
                Ok(())
            }
            Err(_) => Err(format!(
                "the clock only moves forward: {} is before its time {}",
                rfc3339(t),
                rfc3339(self.now())
            )),
        }
    }

    fn ahead(&self) -> u64 {
        self.ahead_ms.load(Ordering::Relaxed)
    }
}

/// `2026-03-14T10:30:00.123Z`
pub fn rfc3339(t: DateTime<Utc>) -> String {
    t.to_rfc3339_opts(SecondsFormat::Millis, true)
}

pub fn now_rfc3339() -> String {
    rfc3339(now())
}

/// Parses RFC 3339 with any offset into UTC; `None` when malformed.
pub fn parse(s: &str) -> Option<DateTime<Utc>> {
    DateTime::parse_from_rfc3339(s)
        .ok()
        .map(|t| t.with_timezone(&Utc))
}

/// The calendar month (UTC) holding `t`: its first instant and the first instant of the next.
pub fn month_bounds(t: DateTime<Utc>) -> (DateTime<Utc>, DateTime<Utc>) {
    let start = Utc
        .with_ymd_and_hms(t.year(), t.month(), 1, 0, 0, 0)
        .single()
        .expect("valid month start");
    let (y, m) = if t.month() == 12 {
        (t.year() + 1, 1)
    } else {
        (t.year(), t.month() + 1)
    };
    let end = Utc
        .with_ymd_and_hms(y, m, 1, 0, 0, 0)
        .single()
        .expect("valid month start");
    (start, end)
}

pub fn epoch_secs() -> u64 {
    now().timestamp().max(0) as u64
}
