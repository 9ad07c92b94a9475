//! Prefixed, time-ordered, URL-safe identifiers (`evt_01J…`).
//!
//! An id is its prefix, `_`, and 26 Crockford base32 characters: 48 bits of milliseconds since the
//! epoch followed by 80 random bits (the ULID layout). Within one process ids are strictly
//! increasing: a second id in the same millisecond increments the random part, so sorting ids as
//! text sorts them by creation and cursors can be plain ids.

use rand::RngCore;
use std::sync::Mutex;
use std::time::{SystemTime, UNIX_EPOCH};

const CROCKFORD: &[u8; 32] = b"0123456789ABCDEFGHJKMNPQRSTVWXYZ";

static LAST: Mutex<(u64, u128)> = Mutex::new((0, 0));

fn next_value() -> u128 {
    let ms = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0);
    let mut last = LAST.lock().unwrap_or_else(|p| p.into_inner());
    let rand_mask: u128 = (1u128 << 80) - 1;
    let (ms, random) = if ms <= last.0 {
        // Same (or an earlier, after a clock step back) millisecond: keep order by counting up.
        let r = (last.1 + 1) & rand_mask;
        let ms = if r == 0 { last.0 + 1 } else { last.0 };
        (ms, r)
    } else {
        let mut bytes = [0u8; 16];
        rand::thread_rng().fill_bytes(&mut bytes);
        // Leave headroom so increments within one millisecond do not wrap.
        (ms, (u128::from_le_bytes(bytes) & rand_mask) >> 1)
    };
    *last = (ms, random);
    ((ms as u128) << 80) | random
}

/// A new id with the given prefix (without the underscore), e.g. `new("evt")`.
pub fn new(prefix: &str) -> String {
    let mut v = next_value();
    let mut chars = [0u8; 26];
    for c in chars.iter_mut().rev() {
        *c = CROCKFORD[(v & 31) as usize];
        v >>= 5;
    }
    let mut s = String::with_capacity(prefix.len() + 27);
    s.push_str(prefix);
    s.push('_');
    s.push_str(std::str::from_utf8(&chars).expect("ascii"));
    s
}

/// Random base62 text of `len` characters (API key secrets).
pub fn base62(len: usize) -> String {
    const ALPHABET: &[u8] = b"0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz";
    let mut rng = rand::thread_rng();
    (0..len)
        .map(|_| {
            // 62 * 4 = 248: rejection sampling keeps the distribution uniform.
            loop {
                let b = (rng.next_u32() & 0xff) as u8;
                if b < 248 {
                    return ALPHABET[(b % 62) as usize] as char;
                }
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    #[test]
    fn ids_are_prefixed_and_increasing() {
        let mut prev = super::new("evt");
        assert!(prev.starts_with("evt_") && prev.len() == 30);
        for _ in 0..10_000 {
            let next = super::new("evt");
            assert!(next > prev, "{next} <= {prev}");
            prev = next;
        }
    }
}
