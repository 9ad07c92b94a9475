//! The rows learn reads and marks: the selection a learn input makes, its plan figures, the
//! session stream the compiler consumes, and the `learned_at` marks.

use super::sql::{params, OptionalExtension, ToArg};
use super::Conn;
use crate::compiler::Event;
use crate::error::Result;
use serde_json::Value;
use std::collections::HashSet;

/// The events one learn run considers.
pub struct Selection<'a> {
    pub tenant: &'a str,
    pub agent_id: Option<&'a str>,
    pub session_id: Option<&'a str>,
    /// Only these events (none: all).
    pub event_ids: &'a [String],
    /// Only events not learned yet.
    pub unlearned: bool,
}

/// The selection's SQL condition: ?1 tenant, ?2 agent, ?3 session, ?4 event ids (JSON array or
/// NULL), ?5 whether only unlearned events count.
const SELECTED: &str = "tenant_id = ?1 AND (agent_id = ?2 OR ?2 IS NULL)
     AND (session_id = ?3 OR ?3 IS NULL)
     AND (id IN (SELECT value FROM json_each(?4)) OR ?4 IS NULL)
     AND (?5 = 0 OR learned_at IS NULL)";

impl Selection<'_> {
    fn ids(&self) -> Option<String> {
        (!self.event_ids.is_empty()).then(|| Value::from(self.event_ids.to_vec()).to_string())
    }

    /// The parameters ?1..?5 of `SELECTED` (`ids` from `Selection::ids`), then `extra` as ?6.
    fn with<'p>(&'p self, ids: &'p Option<String>, extra: &'p dyn ToArg) -> [&'p dyn ToArg; 6] {
        [
            &self.tenant,
            &self.agent_id,
            &self.session_id,
            ids,
            &self.unlearned,
            extra,
        ]
    }
}

/// How many events the selection holds, and the last one's `seq`.
pub fn count_and_last(conn: &Conn, s: &Selection) -> Result<(i64, Option<i64>)> {
    let mut stmt = conn.prepare_cached(&format!(
        "SELECT count(*), max(seq) FROM events WHERE {SELECTED}"
    ))?;
    let p = params![s.tenant, s.agent_id, s.session_id, s.ids(), s.unlearned];
    Ok(stmt.query_row(p, |r| Ok((r.get(0)?, r.get(1)?)))?)
}

/// The `seq` of the selection's `n`-th event (from 0, in `seq` order).
pub fn nth_seq(conn: &Conn, s: &Selection, n: i64) -> Result<i64> {
    let mut stmt = conn.prepare_cached(&format!(
        "SELECT seq FROM events WHERE {SELECTED} ORDER BY seq LIMIT 1 OFFSET ?6"
    ))?;
    let ids = s.ids();
    Ok(stmt.query_row(s.with(&ids, &n), |r| r.get(0))?)
}

/// The sessions of the selection's events up to `cutoff`.
pub fn sessions_upto(conn: &Conn, s: &Selection, cutoff: i64) -> Result<HashSet<String>> {
    let mut stmt = conn.prepare_cached(&format!(
        "SELECT DISTINCT session_id FROM events WHERE {SELECTED} AND seq <= ?6"
    ))?;
    let ids = s.ids();
    let rows = stmt.query_map(s.with(&ids, &cutoff), |r| r.get(0))?;
    Ok(rows.collect::<super::sql::Result<_>>()?)
}

/// Events of a tenant (of one agent, if given), learned or not.
pub fn count_in_scope(conn: &Conn, tenant: &str, agent: Option<&str>) -> Result<i64> {
    let mut stmt = conn.prepare_cached(
        "SELECT count(*) FROM events WHERE tenant_id = ?1 AND (agent_id = ?2 OR ?2 IS NULL)",
    )?;
    Ok(stmt.query_row(params![tenant, agent], |r| r.get(0))?)
}

/// The key mode most of the selection's events up to `cutoff` were captured with.
pub fn main_mode(conn: &Conn, s: &Selection, cutoff: i64) -> Result<Option<String>> {
    let mut stmt = conn.prepare_cached(&format!(
        "SELECT mode FROM events WHERE {SELECTED} AND seq <= ?6
         GROUP BY mode ORDER BY count(*) DESC, mode LIMIT 1"
    ))?;
    let ids = s.ids();
    Ok(stmt
        .query_row(s.with(&ids, &cutoff), |r| r.get(0))
        .optional()?)
}

/// Marks up to `limit` of the selection's unlearned events up to `cutoff` learned (oldest
/// first); returns how many it marked.
///
/// On PostgreSQL another node's capture processing may be updating some of these rows at the
/// same moment, locking them in its own order: an event locked there is skipped (`SKIP
/// LOCKED`), so the two never wait on each other in a cycle (measured: each such deadlock cost
/// both nodes a 1 s stall). A skipped event stays unlearned and is counted new by the next run,
/// which recompiles it (a run is idempotent).
pub fn mark_learned(
    conn: &Conn,
    s: &Selection,
    cutoff: i64,
    limit: usize,
    now: &str,
) -> Result<usize> {
    let chosen = format!(
        "SELECT seq FROM events WHERE {SELECTED} AND learned_at IS NULL AND seq <= ?6
         ORDER BY seq LIMIT ?8"
    );
    // PostgreSQL: the chosen seqs as an array computed once, so the update is primary-key
    // lookups whatever the planner believes of the table (as `IN (…)`, a plan made while the
    // table looked empty joined every event of the tenant against the list: 300–900 ms a
    // statement on 10k events, holding the node's writer).
    let sql = if conn.is_postgres() {
        format!(
            "UPDATE events SET learned_at = ?7
             WHERE tenant_id = ?1 AND seq = ANY(ARRAY({chosen} FOR UPDATE SKIP LOCKED))"
        )
    } else {
        format!("UPDATE events SET learned_at = ?7 WHERE tenant_id = ?1 AND seq IN ({chosen})")
    };
    let mut stmt = conn.prepare_cached(&sql)?;
    let p = params![
        s.tenant,
        s.agent_id,
        s.session_id,
        s.ids(),
        s.unlearned,
        cutoff,
        now,
        limit as i64
    ];
    Ok(stmt.execute(p)?)
}

/// The columns `event_of` reads.
const EVENT_COLUMNS: &str = "id, session_id, agent_id, type, payload, metadata, created_at, seq";

fn event_of(r: &super::sql::Row<'_>) -> super::sql::Result<Event> {
    let payload: String = r.get(4)?;
    let metadata: Option<String> = r.get(5)?;
    Ok(Event {
        id: r.get(0)?,
        session_id: r.get(1)?,
        agent_id: r.get(2)?,
        kind: r.get(3)?,
        payload: serde_json::from_str(&payload).unwrap_or(Value::Null),
        metadata: metadata
            .and_then(|m| serde_json::from_str(&m).ok())
            .unwrap_or(Value::Null),
        created_at: r.get(6)?,
    })
}

/// Calls `f` once per session of the tenant's events up to `cutoff` (of one agent, if given),
/// in session order, with the session's events in `seq` order.
///
/// Processed events come from the session index, already in (session, seq) order (without
/// forcing it the planner may take the seq range and sort every event in memory). Events still
/// waiting for processing are not in that index: their (session, seq) keys are sorted here and
/// merged in, each row read when its turn comes. Only one session's events are in memory at once.
///
/// The two reads are not one snapshot (a read transaction held over a whole compile would keep
/// checkpoints from progressing): an event processed between them is in both, so the processed
/// stream skips the seqs already listed as pending — each event is compiled exactly once. One
/// forgotten in between is skipped.
pub fn for_each_session(
    conn: &Conn,
    tenant: &str,
    agent: Option<&str>,
    cutoff: i64,
    f: impl FnMut(&str, &[Event]),
) -> Result<()> {
    let pending = pending_keys(conn, tenant, agent, cutoff)?;
    stream_sessions(conn, tenant, agent, cutoff, pending, f)
}

/// The (session, seq) keys of the events still waiting for processing.
fn pending_keys(
    conn: &Conn,
    tenant: &str,
    agent: Option<&str>,
    cutoff: i64,
) -> Result<Vec<(String, i64)>> {
    let pending: Vec<(String, i64)> = conn
        .prepare_cached(
            "SELECT session_id, seq FROM events INDEXED BY events_pending
             WHERE tenant_id = ?1 AND processed_at IS NULL AND (agent_id = ?2 OR ?2 IS NULL)
               AND seq <= ?3",
        )?
        .query_map(params![tenant, agent, cutoff], |r| {
            Ok((r.get(0)?, r.get(1)?))
        })?
        .collect::<super::sql::Result<_>>()?;
    Ok(pending)
}

/// `for_each_session` given the pending keys read before.
fn stream_sessions(
    conn: &Conn,
    tenant: &str,
    agent: Option<&str>,
    cutoff: i64,
    mut pending: Vec<(String, i64)>,
    mut f: impl FnMut(&str, &[Event]),
) -> Result<()> {
    pending.sort_unstable();
    let listed: HashSet<i64> = pending.iter().map(|(_, q)| *q).collect();
    let mut one = conn.prepare_cached(&format!(
        "SELECT {EVENT_COLUMNS} FROM events WHERE tenant_id = ?1 AND seq = ?2"
    ))?;
    let mut stmt = conn.prepare_cached(&format!(
        "SELECT {EVENT_COLUMNS} FROM events INDEXED BY events_session
         WHERE tenant_id = ?1 AND processed_at IS NOT NULL AND (agent_id = ?2 OR ?2 IS NULL)
           AND seq <= ?3
         ORDER BY session_id, seq"
    ))?;
    let mut rows = stmt.query(params![tenant, agent, cutoff])?;
    let mut current: Vec<Event> = Vec::new();
    let mut add = |e: Event| {
        if current
            .first()
            .is_some_and(|first| first.session_id != e.session_id)
        {
            f(&current[0].session_id.clone(), &current);
            current.clear();
        }
        current.push(e);
    };
    let mut next_pending = pending.into_iter().peekable();
    while let Some(r) = rows.next()? {
        let seq: i64 = r.get(7)?;
        if listed.contains(&seq) {
            // Processed since it was listed as pending: merged in from that list.
            continue;
        }
        let e = event_of(&r.as_row())?;
        while let Some((_, p)) =
            next_pending.next_if(|(s, q)| (s.as_str(), *q) < (e.session_id.as_str(), seq))
        {
            if let Some(pe) = one.query_row(params![tenant, p], event_of).optional()? {
                add(pe);
            }
        }
        add(e);
    }
    for (_, p) in next_pending {
        if let Some(pe) = one.query_row(params![tenant, p], event_of).optional()? {
            add(pe);
        }
    }
    if let Some(first) = current.first() {
        let id = first.session_id.clone();
        f(&id, &current);
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::{events, Db};

    /// A tenant with one user message per entry of `sessions` (`step {i}` in session
    /// `sessions[i]`), none processed yet: the tenant id and the stored event ids, in order.
    fn messages(c: &Conn, sessions: &[&str]) -> Result<(String, Vec<String>)> {
        let t = crate::store::tenants::create(c, "t", crate::plans::Plan::Pro)?;
        let batch = sessions
            .iter()
            .enumerate()
            .map(|(i, s)| {
                crate::capture::validate(serde_json::json!({
                    "type": "message",
                    "sessionId": s,
                    "payload": {"role": "user", "content": format!("step {i}")},
                }))
                .expect("valid")
            })
            .collect();
        let w = events::insert_batch(c, &t.id, "live", batch, 0, crate::time::now())?;
        Ok((t.id, w.stored.into_iter().map(|s| s.event_id).collect()))
    }

    /// Learn sees every event, processed or not: each session once, its events in order.
    #[test]
    fn sessions_stream_processed_and_pending_events_together() {
        let dir = tempfile::tempdir().unwrap();
        let db = Db::open(&dir.path().join("engram.db"), 1).unwrap();
        let sessions = ["b", "a", "c", "a", "b", "a", "c", "b"];
        let (tenant, expected) = db
            .write_blocking(move |c| {
                let (tenant, ids) = messages(c, &sessions)?;
                // Events 1, 2 and 6 processed; the rest still waiting.
                let seqs: Vec<i64> = c
                    .sqlite()
                    .prepare("SELECT seq FROM events ORDER BY seq")?
                    .query_map([], |r| r.get(0))?
                    .collect::<std::result::Result<_, _>>()?;
                for k in [1, 2, 6] {
                    events::mark_processed(
                        c,
                        &tenant,
                        seqs[k],
                        seqs[k],
                        "2026-01-01T00:00:00.000Z",
                    )?;
                }
                let expected: Vec<(String, Vec<String>)> = ["a", "b", "c"]
                    .iter()
                    .map(|s| {
                        let of_s = sessions.iter().zip(&ids).filter(|(x, _)| *x == s);
                        (s.to_string(), of_s.map(|(_, id)| id.clone()).collect())
                    })
                    .collect();
                Ok((tenant, expected))
            })
            .unwrap();
        let seen = db
            .read_blocking(move |c| {
                let mut seen: Vec<(String, Vec<String>)> = Vec::new();
                for_each_session(c, &tenant, None, i64::MAX, |s, evs| {
                    seen.push((s.to_string(), evs.iter().map(|e| e.id.clone()).collect()));
                })?;
                Ok(seen)
            })
            .unwrap();
        assert_eq!(seen, expected);
        db.close();
    }

    /// An event processed between the two reads of a session stream is compiled once, not twice
    /// (it was listed as pending, then is found among the processed ones too).
    #[test]
    fn an_event_processed_while_streaming_is_seen_once() {
        let dir = tempfile::tempdir().unwrap();
        let db = Db::open(&dir.path().join("engram.db"), 1).unwrap();
        let seen = db
            .write_blocking(|c| {
                let (tenant, _) = messages(c, &["a", "b", "a", "b"])?;
                let pending = pending_keys(c, &tenant, None, i64::MAX)?;
                assert_eq!(pending.len(), 4);
                // Processing catches up before the processed rows are read.
                let (lo, hi) = (
                    pending.iter().map(|p| p.1).min().unwrap(),
                    pending.iter().map(|p| p.1).max().unwrap(),
                );
                events::mark_processed(c, &tenant, lo, hi, "2026-01-01T00:00:00.000Z")?;
                let mut seen: Vec<(String, Vec<String>)> = Vec::new();
                stream_sessions(c, &tenant, None, i64::MAX, pending, |s, evs| {
                    let texts = evs
                        .iter()
                        .map(|e| e.payload["content"].as_str().unwrap().to_string());
                    seen.push((s.to_string(), texts.collect()));
                })?;
                Ok(seen)
            })
            .unwrap();
        assert_eq!(
            seen,
            [
                (
                    "a".to_string(),
                    vec!["step 0".to_string(), "step 2".to_string()]
                ),
                (
                    "b".to_string(),
                    vec!["step 1".to_string(), "step 3".to_string()]
                ),
            ]
        );
        db.close();
    }
}
