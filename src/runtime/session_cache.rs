//! The recent messages of active sessions, kept in memory so a turn does not read its session's
//! history back from SQLite.
//!
//! An entry holds what `store::sessions::recent_messages` would return for the session (the
//! newest messages down to the one that crosses the history budget, at most
//! `MAX_HISTORY_MESSAGES`), each with its `seq`.
//!
//! Invariants:
//! - The cache only ever holds committed messages: a turn's messages are added after the write
//!   holding them committed (`record`), merged by `seq`, so turns committed in one order and
//!   reported in another still end up in `seq` order.
//! - A miss is loaded from the database while the lock is held, so a turn that commits during
//!   the load either is in the loaded rows or is added after the entry exists; a turn reported
//!   for a session that has no entry is skipped (the next miss reads it from the database).
//! - Turns are only recorded through `runtime::recorder`, and an agent's history is only deleted
//!   with the agent (whose id is never reused), so an entry never goes stale while its agent
//!   exists. Entries of a deleted agent are never read again and age out.
//! - At most `MAX_SESSIONS` entries; when full, the least recently used one is dropped.
//! - Several nodes on one PostgreSQL database would each hold a copy that misses the turns the
//!   others record, so there the cache is off (`pass_through`): every turn reads its history.

use super::history::{HISTORY_TOKEN_BUDGET, MAX_HISTORY_MESSAGES};
use crate::error::Result;
use crate::store::sessions::StoredMessage;
use std::collections::HashMap;
use std::sync::Mutex;

/// Most sessions kept (an entry is at most the history budget's worth of messages).
const MAX_SESSIONS: usize = 4096;

type Key = (String, String, String);

struct Entry {
    /// (seq, message), oldest first.
    messages: Vec<(i64, StoredMessage)>,
    last_used: u64,
}

#[derive(Default)]
struct Inner {
    entries: HashMap<Key, Entry>,
    clock: u64,
}

/// Recent messages of sessions, by (tenant, agent, session).
#[derive(Default)]
pub struct SessionCache {
    inner: Mutex<Inner>,
    /// Nothing is kept: every lookup loads (PostgreSQL nodes, whose sessions other nodes write).
    pass_through: bool,
}

impl SessionCache {
    /// A cache that keeps nothing (see the module docs).
    pub fn pass_through() -> SessionCache {
        SessionCache {
            pass_through: true,
            ..Default::default()
        }
    }

    /// Forgets every session of a tenant (its data was reset or deleted).
    pub fn forget_tenant(&self, tenant: &str) {
        let mut inner = self.inner.lock().unwrap_or_else(|e| e.into_inner());
        inner.entries.retain(|(t, _, _), _| t != tenant);
    }

    /// The session's recent messages (oldest first), from memory or else from `load` (called
    /// with the lock held; it returns messages with their `seq`, oldest first).
    pub fn get_or_load(
        &self,
        tenant: &str,
        agent: &str,
        session: &str,
        load: impl FnOnce() -> Result<Vec<(i64, StoredMessage)>>,
    ) -> Result<Vec<StoredMessage>> {
        if self.pass_through {
            let mut messages = load()?;
            trim(&mut messages);
            return Ok(messages.into_iter().map(|(_, m)| m).collect());
        }
        let mut inner = self.inner.lock().unwrap_or_else(|e| e.into_inner());
        inner.clock += 1;
        let now = inner.clock;
        let key = (tenant.to_string(), agent.to_string(), session.to_string());
        if let Some(e) = inner.entries.get_mut(&key) {
            e.last_used = now;
            return Ok(e.messages.iter().map(|(_, m)| m.clone()).collect());
        }
        let mut messages = load()?;
        trim(&mut messages);
        let out = messages.iter().map(|(_, m)| m.clone()).collect();
        if inner.entries.len() >= MAX_SESSIONS {
            let oldest = inner
                .entries
                .iter()
                .min_by_key(|(_, e)| e.last_used)
                .map(|(k, _)| k.clone());
            if let Some(k) = oldest {
                inner.entries.remove(&k);
            }
        }
        inner.entries.insert(
            key,
            Entry {
                messages,
                last_used: now,
            },
        );
        Ok(out)
    }

    /// Adds a committed turn's messages (each with its `seq`) to the session's entry, if it has
    /// one.
    pub fn record(
        &self,
        tenant: &str,
        agent: &str,
        session: &str,
        added: Vec<(i64, StoredMessage)>,
    ) {
        let mut inner = self.inner.lock().unwrap_or_else(|e| e.into_inner());
        let key = (tenant.to_string(), agent.to_string(), session.to_string());
        let Some(e) = inner.entries.get_mut(&key) else {
            return;
        };
        for (seq, m) in added {
            // Usually the newest; a turn reported late goes to its place.
            let at = e.messages.partition_point(|(s, _)| *s < seq);
            if e.messages.get(at).is_some_and(|(s, _)| *s == seq) {
                continue;
            }
            e.messages.insert(at, (seq, m));
        }
        trim(&mut e.messages);
    }
}

/// Keeps what `recent_messages` would read: the newest messages until their stored tokens pass
/// the history budget (that one included), at most `MAX_HISTORY_MESSAGES`.
fn trim(messages: &mut Vec<(i64, StoredMessage)>) {
    let mut used = 0u64;
    let mut keep = 0;
    for (_, m) in messages.iter().rev() {
        if keep == MAX_HISTORY_MESSAGES {
            break;
        }
        keep += 1;
        used += m.tokens;
        if used > HISTORY_TOKEN_BUDGET {
            break;
        }
    }
    let drop = messages.len() - keep;
    messages.drain(..drop);
}

#[cfg(test)]
mod tests {
    use super::*;

    fn m(seq: i64, tokens: u64) -> (i64, StoredMessage) {
        (
            seq,
            StoredMessage {
                role: if seq % 2 == 0 { "user" } else { "assistant" }.into(),
                content: format!("m{seq}"),
                tokens,
            },
        )
    }

    #[test]
    fn merges_by_seq_and_keeps_the_budget() {
        let c = SessionCache::default();
        let got = c.get_or_load("t", "a", "s", || Ok(vec![m(1, 10), m(2, 10)]));
        assert_eq!(got.unwrap().len(), 2);
        // Reported out of order: ends up in seq order, repeats ignored.
        c.record("t", "a", "s", vec![m(5, 10), m(6, 10)]);
        c.record("t", "a", "s", vec![m(3, 10), m(4, 10), m(2, 10)]);
        let got = c.get_or_load("t", "a", "s", || panic!("cached")).unwrap();
        let names: Vec<_> = got.iter().map(|m| m.content.as_str()).collect();
        assert_eq!(names, ["m1", "m2", "m3", "m4", "m5", "m6"]);
        // Sessions without an entry are not recorded.
        c.record("t", "a", "other", vec![m(7, 10)]);
        let got = c.get_or_load("t", "a", "other", || Ok(Vec::new())).unwrap();
        assert!(got.is_empty());
        // Old messages beyond the budget are dropped (the one crossing it stays).
        c.record("t", "a", "s", vec![m(8, HISTORY_TOKEN_BUDGET)]);
        let got = c.get_or_load("t", "a", "s", || panic!("cached")).unwrap();
        assert_eq!(got.len(), 2);
    }
}
