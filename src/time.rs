//! Time in the formats the API uses: RFC 3339 UTC text (with milliseconds, so text order is time
//! order) in bodies and storage, epoch seconds in rate-limit headers.

use chrono::{DateTime, Datelike, SecondsFormat, TimeZone, Utc};

pub fn now() -> DateTime<Utc> {
    Utc::now()
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
