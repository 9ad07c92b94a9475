//! Reading request bodies (docs/security.md §"Bodies"): a size cap, a minimum rate, and a clean
//! 413 for clients that write their whole body before they read the answer.
//!
//! Invariants:
//! - A body over the route's cap is refused by its `Content-Length` before any of it is read, or
//!   as soon as a chunked body passes the cap. The rest of what the client sends is then read and
//!   thrown away in the background (at most `LINGER_BYTES`, for at most `LINGER_TIME`) while the
//!   413 goes out with `Connection: close`, so the client reads the 413 instead of a reset.
//!   A client that asked `Expect: 100-continue` is refused without being told to send.
//! - A body must start arriving within the read timeout and then arrive at `min_rate` bytes a
//!   second on average: by `t` seconds after reading began at least `min_rate × (t − timeout)`
//!   bytes must be in. A slower body is answered 408 and its connection closed.
//! - Once shutdown begins, a body still arriving may finish, but one that makes no progress for
//!   `conn::SHUTDOWN_STALL` loses its connection (the connection's watchdog sees the wait through
//!   `Track::waiting_for_body`) instead of holding shutdown for the whole grace period.

use crate::error::Error;
use crate::http::conn::Track;
use bytes::{Bytes, BytesMut};
use http_body_util::BodyExt;
use hyper::body::{Body as _, Incoming};
use std::time::{Duration, Instant};

/// The most a refused body is drained after its 413.
pub const LINGER_BYTES: u64 = 64 << 20;
/// The longest a refused body is drained after its 413.
pub const LINGER_TIME: Duration = Duration::from_secs(10);

/// The limits one body is read under.
#[derive(Clone, Copy, Debug)]
pub struct BodyLimits {
    pub cap: usize,
    pub timeout: Duration,
    /// Bytes per second (0: the whole body must arrive within `timeout`).
    pub min_rate: u64,
    /// The client sent `Expect: 100-continue`.
    pub expects_continue: bool,
}

/// Reads the whole body under `limits`. `declared` is the `Content-Length`, if any.
pub async fn read(
    mut body: Incoming,
    declared: Option<u64>,
    limits: BodyLimits,
    track: &Track,
) -> Result<Bytes, Error> {
    let too_large = Error::PayloadTooLarge { limit: limits.cap };
    if declared.is_some_and(|n| n > limits.cap as u64) {
        if !limits.expects_continue {
            linger(body);
        }
        return Err(too_large);
    }
    if body.is_end_stream() {
        return Ok(Bytes::new());
    }
    let started = Instant::now();
    let mut first: Option<Bytes> = None;
    let mut rest: Option<BytesMut> = None;
    let mut total: u64 = 0;
    loop {
        // Fast path: a frame that has already arrived needs no timer.
        let frame = match futures_util::FutureExt::now_or_never(body.frame()) {
            Some(f) => f,
            None => {
                let deadline = started + allowed_time(total, limits);
                track.waiting_for_body(true);
                let f = tokio::time::timeout_at(deadline.into(), body.frame()).await;
                track.waiting_for_body(false);
                f.map_err(|_| {
                    Error::RequestTimeout(format!(
                        "the request body arrived too slowly ({total} bytes in {} ms; this server \
                         needs it to start within {} s and then arrive at {} bytes per second)",
                        started.elapsed().as_millis(),
                        limits.timeout.as_secs(),
                        limits.min_rate
                    ))
                })?
            }
        };
        let Some(frame) = frame else { break };
        let frame = frame.map_err(|e| Error::BadRequest {
            message: format!("could not read the request body: {e}"),
            details: vec![],
        })?;
        let Ok(data) = frame.into_data() else {
            continue; // trailers
        };
        total += data.len() as u64;
        if total > limits.cap as u64 {
            linger(body);
            return Err(too_large);
        }
        match (&mut first, &mut rest) {
            (None, _) => first = Some(data),
            (Some(f), None) => {
                let mut b = BytesMut::with_capacity(f.len() + data.len());
                b.extend_from_slice(f);
                b.extend_from_slice(&data);
                rest = Some(b);
            }
            (Some(_), Some(b)) => b.extend_from_slice(&data),
        }
    }
    Ok(match (first, rest) {
        (_, Some(b)) => b.freeze(),
        (Some(f), None) => f,
        (None, None) => Bytes::new(),
    })
}

/// How long, from the start of reading, a body that has delivered `received` bytes may take to
/// deliver its next byte.
fn allowed_time(received: u64, limits: BodyLimits) -> Duration {
    if limits.min_rate == 0 {
        return limits.timeout;
    }
    limits.timeout + Duration::from_secs_f64(received as f64 / limits.min_rate as f64)
}

/// Drains a body the request was refused before reading (bounded like `linger`), so a client
/// that is still sending it reads the answer rather than a reset.
pub fn discard(body: Incoming) {
    if !body.is_end_stream() {
        linger(body);
    }
}

/// Reads and discards what is left of a refused body, within bounds, so the client's writes
/// complete and it reads the answer (lingering close).
fn linger(mut body: Incoming) {
    tokio::spawn(async move {
        let until = tokio::time::Instant::now() + LINGER_TIME;
        let mut drained: u64 = 0;
        while drained < LINGER_BYTES {
            match tokio::time::timeout_at(until, body.frame()).await {
                Ok(Some(Ok(f))) => {
                    drained += f.data_ref().map_or(0, |d| d.len() as u64);
                }
                _ => break,
            }
        }
    });
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_allowed_time_grows_with_what_arrived() {
        let l = BodyLimits {
            cap: 1 << 20,
            timeout: Duration::from_secs(10),
            min_rate: 1000,
            expects_continue: false,
        };
        assert_eq!(allowed_time(0, l), Duration::from_secs(10));
        assert_eq!(allowed_time(5000, l), Duration::from_secs(15));
        // A trickle of 1 byte every 2 s has 10.03 s after 30 bytes: it is cut long before.
        assert!(allowed_time(30, l) < Duration::from_secs(11));
    }
}
