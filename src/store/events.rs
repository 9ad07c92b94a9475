//! Captured events: storing requests' events with idempotency, reading them back, forgetting a
//! session.
//!
//! Invariants:
//! - `insert_group` runs inside one writer closure: the idempotency check-then-insert is race free
//!   because every write goes through the single writer thread, and a key repeated within one
//!   request or group finds the row inserted a moment earlier in the same transaction.
//! - Event ids are generated on the writer thread in insertion order, so id order is `seq` order and
//!   a cursor can be an event id.
//! - A tenant's events stored by one group write get consecutive `seq` values (the group is
//!   stored tenant by tenant and nothing else writes in between): their capture job addresses them
//!   as a `seq` range.

use super::sql::{params, OptionalExtension, Row};
use super::Conn;
use crate::domain::{EventType, KeyMode};
use crate::error::{Error, Result};
use crate::ids;
use crate::store::{novelty, usage};
use chrono::{DateTime, Utc};
use serde_json::{json, Value};
use std::collections::HashMap;

/// A validated event about to be stored.
#[derive(Clone, Debug)]
pub struct NewEvent {
    pub event_type: &'static str,
    pub session_id: String,
    pub agent_id: Option<String>,
    /// The payload object as JSON text.
    pub payload: String,
    /// The metadata object as JSON text.
    pub metadata: Option<String>,
    pub idempotency_key: Option<String>,
    /// Salience before novelty (`capture::salience::base`).
    pub base_salience: f64,
    /// Novelty signature (`capture::salience::signature`).
    pub signature: i64,
}

/// What happened to one event of `insert_batch`.
#[derive(Clone, Debug)]
pub struct Stored {
    pub event_id: String,
    pub duplicate: bool,
    pub salience: f64,
    pub trace_id: String,
    /// The job processing the event (for a duplicate: the original's).
    pub job_id: Option<String>,
}

/// The result of storing one request's events.
#[derive(Clone, Debug, Default)]
pub struct BatchWrite {
    pub stored: Vec<Stored>,
    pub ingested: u64,
    pub duplicates: u64,
    /// The capture job of the newly stored events (when `ingested > 0`).
    pub job_id: Option<String>,
}

/// One request's validated events, to be stored by `insert_group`.
#[derive(Clone, Debug)]
pub struct GroupItem {
    pub tenant_id: String,
    pub mode: &'static str,
    pub events: Vec<NewEvent>,
    /// Events of the request that failed validation (counted as errors).
    pub invalid: u64,
    /// When the request arrived (the server's clock): its events' `created_at` and the usage
    /// buckets they count in.
    pub at: DateTime<Utc>,
}

/// Stores one request's events; see `insert_group`.
pub fn insert_batch(
    conn: &Conn,
    tenant_id: &str,
    mode: &'static str,
    events: Vec<NewEvent>,
    invalid: u64,
    now: DateTime<Utc>,
) -> Result<BatchWrite> {
    let item = GroupItem {
        tenant_id: tenant_id.to_string(),
        mode,
        events,
        invalid,
        at: now,
    };
    Ok(insert_group(conn, vec![item])?.remove(0))
}

/// Stores the events of several requests in the caller's transaction and returns one
/// `BatchWrite` per item, in item order. Idempotent repeats (also within and across the items)
/// store nothing and return the original. Each tenant's new events get one capture job (their
/// `seq` range is contiguous: items are stored tenant by tenant), and the usage counters are
/// bumped once per tenant and mode.
pub fn insert_group(conn: &Conn, items: Vec<GroupItem>) -> Result<Vec<BatchWrite>> {
    // One time for the group: the latest of its requests' (they arrived within milliseconds).
    let Some(now) = items.iter().map(|i| i.at).max() else {
        return Ok(Vec::new());
    };
    let created_at = crate::time::rfc3339(now);
    let mut order: Vec<usize> = (0..items.len()).collect();
    order.sort_by(|a, b| items[*a].tenant_id.cmp(&items[*b].tenant_id));
    let mut results: Vec<BatchWrite> = vec![BatchWrite::default(); items.len()];
    let mut items: Vec<Option<GroupItem>> = items.into_iter().map(Some).collect();
    let tenant_of = |items: &[Option<GroupItem>], i: usize| {
        items[i]
            .as_ref()
            .map(|it| it.tenant_id.clone())
            .unwrap_or_default()
    };
    let mut i = 0;
    while i < order.len() {
        let tenant = tenant_of(&items, order[i]);
        let mut j = i;
        while j < order.len() && tenant_of(&items, order[j]) == tenant {
            j += 1;
        }
        let job_id = ids::new("job");
        let mut t = TenantWrite::default();
        let mut st = Statements::new(conn)?;
        for &idx in &order[i..j] {
            if let Some(item) = items[idx].take() {
                results[idx] = t.insert(conn, &mut st, &tenant, &job_id, item, &created_at)?;
            }
        }
        t.finish(conn, &tenant, &job_id, now)?;
        i = j;
    }
    Ok(results)
}

/// The statements `TenantWrite::insert` runs, prepared once per tenant of a group.
struct Statements<'c> {
    find_idem: super::sql::Stmt<'c>,
    insert: super::sql::Stmt<'c>,
}

impl<'c> Statements<'c> {
    fn new(conn: &'c Conn) -> Result<Statements<'c>> {
        Ok(Statements {
            find_idem: conn.prepare_cached(
                "SELECT id, salience, trace_id, job_id FROM events
                 WHERE tenant_id = ?1 AND idempotency_key = ?2",
            )?,
            // SQLite: one row at a time, its seq from last_insert_rowid (cheaper than
            // RETURNING). PostgreSQL inserts a write's rows together (`TenantWrite::flush`).
            insert: conn.prepare_cached(
                "INSERT INTO events(id, tenant_id, session_id, agent_id, type, payload, metadata,
                                    idempotency_key, salience, trace_id, job_id, mode, created_at)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13)",
            )?,
        })
    }
}

/// What one tenant's part of a group write has done so far.
#[derive(Default)]
struct TenantWrite {
    /// signature -> (the tenant's count so far, new events of it in this write)
    sig_counts: HashMap<i64, (i64, i64)>,
    first_seq: i64,
    last_seq: i64,
    ingested: u64,
    /// (mode, metric, amount)
    counters: Vec<(&'static str, String, i64)>,
    /// PostgreSQL: new events waiting for one multi-row insert (`flush`), and their
    /// idempotency keys (a key repeated within the write finds its first event here).
    rows: Vec<Value>,
    keys: HashMap<String, Stored>,
}

/// Rows per multi-row insert on PostgreSQL.
const INSERT_CHUNK: usize = 1_000;

impl TenantWrite {
    fn count(&mut self, mode: &'static str, metric: &str, n: i64) {
        if n == 0 {
            return;
        }
        match self
            .counters
            .iter_mut()
            .find(|(m, name, _)| *m == mode && name == metric)
        {
            Some((_, _, v)) => *v += n,
            None => self.counters.push((mode, metric.to_string(), n)),
        }
    }

    fn insert(
        &mut self,
        conn: &Conn,
        st: &mut Statements<'_>,
        tenant_id: &str,
        job_id: &str,
        item: GroupItem,
        created_at: &str,
    ) -> Result<BatchWrite> {
        let mut out = BatchWrite {
            stored: Vec::with_capacity(item.events.len()),
            ..Default::default()
        };
        for e in item.events {
            if let Some(key) = &e.idempotency_key {
                if let Some(first) = self.keys.get(key) {
                    let mut original = first.clone();
                    original.duplicate = true;
                    out.duplicates += 1;
                    out.stored.push(original);
                    continue;
                }
                let original = st
                    .find_idem
                    .query_row(params![tenant_id, key], |r| {
                        Ok(Stored {
                            event_id: r.get(0)?,
                            duplicate: true,
                            salience: r.get(1)?,
                            trace_id: r.get(2)?,
                            job_id: r.get(3)?,
                        })
                    })
                    .optional()?;
                if let Some(original) = original {
                    out.duplicates += 1;
                    out.stored.push(original);
                    continue;
                }
            }
            // The first event of a signature in this write learns the tenant's count; the new
            // events are counted in memory and added to the pending counts in `finish`.
            let count = match self.sig_counts.get_mut(&e.signature) {
                Some((count, new)) => {
                    *count += 1;
                    *new += 1;
                    *count
                }
                None => {
                    let count = novelty::seen(conn, tenant_id, e.signature)? + 1;
                    self.sig_counts.insert(e.signature, (count, 1));
                    count
                }
            };
            let salience = crate::salience::with_novelty(e.base_salience, count);
            let id = ids::new("evt");
            let trace_id = ids::new("trace");
            let stored = Stored {
                event_id: id.clone(),
                duplicate: false,
                salience,
                trace_id: trace_id.clone(),
                job_id: Some(job_id.to_string()),
            };
            if conn.is_postgres() {
                // One round trip per event is what bounds capture on PostgreSQL: the rows go in
                // together (`flush`).
                if let Some(key) = &e.idempotency_key {
                    self.keys.insert(key.clone(), stored.clone());
                }
                self.rows.push(json!({
                    "id": id, "tenant_id": tenant_id, "session_id": e.session_id,
                    "agent_id": e.agent_id, "type": e.event_type, "payload": e.payload,
                    "metadata": e.metadata, "idempotency_key": e.idempotency_key,
                    "salience": salience, "trace_id": trace_id, "job_id": job_id,
                    "mode": item.mode, "created_at": created_at,
                }));
            } else {
                let args = params![
                    id,
                    tenant_id,
                    e.session_id,
                    e.agent_id,
                    e.event_type,
                    e.payload,
                    e.metadata,
                    e.idempotency_key,
                    salience,
                    trace_id,
                    job_id,
                    item.mode,
                    created_at,
                ];
                st.insert.execute(args)?;
                let seq = conn.last_insert_rowid().unwrap_or_default();
                if self.ingested == 0 {
                    self.first_seq = seq;
                }
                self.last_seq = seq;
            }
            self.ingested += 1;
            out.ingested += 1;
            self.count(item.mode, &usage::event_type_metric(e.event_type), 1);
            out.stored.push(stored);
        }
        let n = |v: u64| v as i64;
        self.count(item.mode, usage::EVENTS, n(out.ingested));
        self.count(item.mode, usage::EVENTS_DUPLICATE, n(out.duplicates));
        self.count(item.mode, usage::EVENTS_ERROR, n(item.invalid));
        if out.ingested > 0 {
            out.job_id = Some(job_id.to_string());
        }
        Ok(out)
    }

    /// PostgreSQL: inserts the waiting rows, `INSERT_CHUNK` per statement (one JSON array of
    /// rows each), and learns their `seq` range.
    fn flush(&mut self, conn: &Conn) -> Result<()> {
        let rows = std::mem::take(&mut self.rows);
        let mut insert = conn.prepare_cached(
            "INSERT INTO events(id, tenant_id, session_id, agent_id, type, payload, metadata,
                                idempotency_key, salience, trace_id, job_id, mode, created_at)
             SELECT r.id, r.tenant_id, r.session_id, r.agent_id, r.type, r.payload, r.metadata,
                    r.idempotency_key, r.salience, r.trace_id, r.job_id, r.mode, r.created_at
             FROM jsonb_to_recordset(CAST(CAST(?1 AS TEXT) AS jsonb)) AS r(
                 id text, tenant_id text, session_id text, agent_id text, type text,
                 payload text, metadata text, idempotency_key text, salience float8,
                 trace_id text, job_id text, mode text, created_at text)
             RETURNING seq",
        )?;
        for chunk in rows.chunks(INSERT_CHUNK) {
            let json = Value::Array(chunk.to_vec()).to_string();
            let seqs = insert.query_map([json], |r| r.get::<i64>(0))?;
            for seq in seqs {
                let seq = seq?;
                if self.first_seq == 0 || seq < self.first_seq {
                    self.first_seq = seq;
                }
                self.last_seq = self.last_seq.max(seq);
            }
        }
        Ok(())
    }

    /// Novelty counts, the capture job and the usage counters of the tenant's part.
    fn finish(
        &mut self,
        conn: &Conn,
        tenant_id: &str,
        job_id: &str,
        now: DateTime<Utc>,
    ) -> Result<()> {
        if !self.rows.is_empty() {
            self.flush(conn)?;
        }
        for (sig, (_, new)) in &self.sig_counts {
            novelty::add_pending(conn, tenant_id, *sig, *new)?;
        }
        if self.ingested > 0 {
            let input = json!({"firstSeq": self.first_seq, "lastSeq": self.last_seq,
                               "count": self.ingested});
            super::jobs::enqueue_with_id(
                conn,
                job_id,
                tenant_id,
                crate::domain::JobKind::Capture,
                &input,
            )?;
        }
        let counters: Vec<(&str, &str, i64)> = self
            .counters
            .iter()
            .map(|(mode, metric, n)| (*mode, metric.as_str(), *n))
            .collect();
        usage::incr_all(conn, tenant_id, &counters, now)?;
        Ok(())
    }
}

/// A stored event.
#[derive(Clone, Debug)]
pub struct EventRow {
    pub seq: i64,
    pub id: String,
    pub tenant_id: String,
    pub session_id: String,
    pub agent_id: Option<String>,
    pub event_type: EventType,
    pub payload: String,
    pub metadata: Option<String>,
    pub idempotency_key: Option<String>,
    pub salience: f64,
    pub trace_id: String,
    pub job_id: Option<String>,
    pub mode: KeyMode,
    pub created_at: String,
    pub processed_at: Option<String>,
    pub learned_at: Option<String>,
}

const COLUMNS: &str = "seq, id, tenant_id, session_id, agent_id, type, payload, metadata, \
                       idempotency_key, salience, trace_id, job_id, mode, created_at, processed_at, \
                       learned_at";

fn from_row(r: &Row<'_>) -> super::sql::Result<EventRow> {
    let id: String = r.get(1)?;
    Ok(EventRow {
        event_type: super::spelled(r, 5, "events", &id)?,
        mode: super::spelled(r, 12, "events", &id)?,
        seq: r.get(0)?,
        id,
        tenant_id: r.get(2)?,
        session_id: r.get(3)?,
        agent_id: r.get(4)?,
        payload: r.get(6)?,
        metadata: r.get(7)?,
        idempotency_key: r.get(8)?,
        salience: r.get(9)?,
        trace_id: r.get(10)?,
        job_id: r.get(11)?,
        created_at: r.get(13)?,
        processed_at: r.get(14)?,
        learned_at: r.get(15)?,
    })
}

impl EventRow {
    pub fn payload_json(&self) -> Value {
        serde_json::from_str(&self.payload).unwrap_or(Value::Null)
    }

    pub fn metadata_json(&self) -> Value {
        self.metadata
            .as_deref()
            .and_then(|m| serde_json::from_str(m).ok())
            .unwrap_or(Value::Null)
    }
}

pub fn get(conn: &Conn, tenant_id: &str, id: &str) -> Result<Option<EventRow>> {
    let mut stmt = conn.prepare_cached(&format!(
        "SELECT {COLUMNS} FROM events WHERE id = ?1 AND tenant_id = ?2"
    ))?;
    Ok(stmt.query_row([id, tenant_id], from_row).optional()?)
}

/// Unprocessed events of a tenant in a `seq` range (what a capture job works on).
pub fn unprocessed_in_range(
    conn: &Conn,
    tenant_id: &str,
    first_seq: i64,
    last_seq: i64,
) -> Result<Vec<EventRow>> {
    let mut stmt = conn.prepare_cached(&format!(
        "SELECT {COLUMNS} FROM events
         WHERE seq BETWEEN ?1 AND ?2 AND tenant_id = ?3 AND processed_at IS NULL ORDER BY seq"
    ))?;
    let rows = stmt.query_map(params![first_seq, last_seq, tenant_id], from_row)?;
    Ok(rows.collect::<super::sql::Result<_>>()?)
}

/// The ids of a tenant's events in a `seq` range, processed or not.
pub fn ids_in_range(conn: &Conn, tenant_id: &str, first: i64, last: i64) -> Result<Vec<String>> {
    let mut stmt = conn
        .prepare_cached("SELECT id FROM events WHERE seq BETWEEN ?1 AND ?2 AND tenant_id = ?3")?;
    let rows = stmt.query_map(params![first, last, tenant_id], |r| r.get::<String>(0))?;
    Ok(rows.collect::<super::sql::Result<_>>()?)
}

/// Marks a tenant's unprocessed events in `first..=last` processed; returns their `seq`s (events
/// forgotten or processed meanwhile are not among them).
pub fn mark_processed(
    conn: &Conn,
    tenant_id: &str,
    first: i64,
    last: i64,
    at: &str,
) -> Result<Vec<i64>> {
    let mut stmt = conn.prepare_cached(
        "UPDATE events SET processed_at = ?4
         WHERE seq BETWEEN ?1 AND ?2 AND tenant_id = ?3 AND processed_at IS NULL
         RETURNING seq",
    )?;
    let rows = stmt.query_map(params![first, last, tenant_id, at], |r| r.get(0))?;
    Ok(rows.collect::<super::sql::Result<_>>()?)
}

/// Listing order.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Order {
    /// Newest first (the default).
    Desc,
    Asc,
}

/// Filters of `GET /v1/events`.
#[derive(Clone, Debug)]
pub struct Filter {
    pub session_id: Option<String>,
    pub agent_id: Option<String>,
    pub event_type: Option<String>,
    pub limit: usize,
    /// The last id of the previous page.
    pub cursor: Option<String>,
    pub order: Order,
}

/// Where a page starts, from a cursor id: `(seq, inclusive)`. An id that no longer exists (its
/// session was forgotten) still works: ids are ordered like `seq`, so the nearest id on the far
/// side of it marks the spot.
fn cursor_bound(
    conn: &Conn,
    table: &str,
    tenant_id: &str,
    cursor: &str,
    order: Order,
) -> Result<Option<(i64, bool)>> {
    let exact: Option<i64> = conn
        .prepare_cached(&format!(
            "SELECT seq FROM {table} WHERE id = ?1 AND tenant_id = ?2"
        ))?
        .query_row([cursor, tenant_id], |r| r.get(0))
        .optional()?;
    if let Some(seq) = exact {
        return Ok(Some((seq, false)));
    }
    let sql = match order {
        Order::Desc => format!("SELECT seq FROM {table} WHERE id < ?1 ORDER BY id DESC LIMIT 1"),
        Order::Asc => format!("SELECT seq FROM {table} WHERE id > ?1 ORDER BY id ASC LIMIT 1"),
    };
    let near: Option<i64> = conn
        .prepare_cached(&sql)?
        .query_row([cursor], |r| r.get(0))
        .optional()?;
    Ok(near.map(|s| (s, true)))
}

/// Builds the `seq` condition of a page; `None` when the cursor lies past the end.
pub(crate) fn page_condition(
    conn: &Conn,
    table: &str,
    tenant_id: &str,
    cursor: Option<&str>,
    order: Order,
) -> Result<Option<String>> {
    let Some(c) = cursor else {
        return Ok(Some(String::new()));
    };
    Ok(
        cursor_bound(conn, table, tenant_id, c, order)?.map(|(seq, inclusive)| {
            let op = match (order, inclusive) {
                (Order::Desc, false) => "<",
                (Order::Desc, true) => "<=",
                (Order::Asc, false) => ">",
                (Order::Asc, true) => ">=",
            };
            format!(" AND seq {op} {seq}")
        }),
    )
}

/// A page of a tenant's events and whether more follow.
pub fn list(conn: &Conn, tenant_id: &str, f: &Filter) -> Result<(Vec<EventRow>, bool)> {
    if let Some(session) = f.session_id.as_deref() {
        return list_split(conn, tenant_id, Split::Session(session), f);
    }
    if let Some(agent) = f.agent_id.as_deref() {
        return list_split(conn, tenant_id, Split::Agent(agent), f);
    }
    list_page(
        conn,
        "events",
        COLUMNS,
        tenant_id,
        &[
            ("session_id", f.session_id.as_deref()),
            ("agent_id", f.agent_id.as_deref()),
            ("type", f.event_type.as_deref()),
        ],
        (f.cursor.as_deref(), f.order, f.limit),
        from_row,
    )
}

/// A keyset page (by `seq`) of a tenant's rows of `table`, filtered by column equality (or by a
/// condition, when the "column" holds one with `{}` where the value goes), and whether more rows
/// follow. Shared by the event and memory listings.
pub(crate) fn list_page<T>(
    conn: &Conn,
    table: &str,
    columns: &str,
    tenant_id: &str,
    filters: &[(&str, Option<&str>)],
    (cursor, order, limit): (Option<&str>, Order, usize),
    from_row: impl FnMut(&super::sql::Row<'_>) -> super::sql::Result<T>,
) -> Result<(Vec<T>, bool)> {
    let Some(page) = page_condition(conn, table, tenant_id, cursor, order)? else {
        return Ok((Vec::new(), false));
    };
    let mut sql = format!("SELECT {columns} FROM {table} WHERE tenant_id = ?1");
    let mut args: Vec<&str> = vec![tenant_id];
    for (column, value) in filters {
        if let Some(v) = value {
            args.push(v);
            let at = format!("?{}", args.len());
            if column.contains("{}") {
                sql.push_str(&format!(" AND {}", column.replace("{}", &at)));
            } else {
                sql.push_str(&format!(" AND {column} = {at}"));
            }
        }
    }
    sql.push_str(&page);
    sql.push_str(match order {
        Order::Desc => " ORDER BY seq DESC",
        Order::Asc => " ORDER BY seq ASC",
    });
    sql.push_str(&format!(" LIMIT {}", limit + 1));
    let mut stmt = conn.prepare_cached(&sql)?;
    let mut rows: Vec<T> = stmt
        .query_map(super::sql::params_from_iter(args), from_row)?
        .collect::<super::sql::Result<_>>()?;
    let more = rows.len() > limit;
    rows.truncate(limit);
    Ok((rows, more))
}

/// A listing by an index that holds processed events only (see `schema.sql`).
enum Split<'a> {
    Session(&'a str),
    Agent(&'a str),
}

/// `list` of one session or agent: its processed events come from the session or agent index,
/// its unprocessed ones from `events_pending`; each part yields at most a page, in order, and the
/// page is the first of their union.
fn list_split(
    conn: &Conn,
    tenant_id: &str,
    split: Split<'_>,
    f: &Filter,
) -> Result<(Vec<EventRow>, bool)> {
    let Some(page) = page_condition(conn, "events", tenant_id, f.cursor.as_deref(), f.order)?
    else {
        return Ok((Vec::new(), false));
    };
    let (index, column, value, rest) = match split {
        Split::Session(v) => (
            "events_session",
            "session_id",
            v,
            [
                ("agent_id", f.agent_id.as_deref()),
                ("type", f.event_type.as_deref()),
            ],
        ),
        Split::Agent(v) => (
            "events_agent",
            "agent_id",
            v,
            [("type", f.event_type.as_deref()), ("session_id", None)],
        ),
    };
    let mut args: Vec<&str> = vec![tenant_id, value];
    let mut filters = String::new();
    for (column, value) in rest {
        if let Some(v) = value {
            args.push(v);
            filters.push_str(&format!(" AND {column} = ?{}", args.len()));
        }
    }
    let dir = match f.order {
        Order::Desc => "DESC",
        Order::Asc => "ASC",
    };
    let n = f.limit + 1;
    let sql = format!(
        "SELECT * FROM (SELECT {COLUMNS} FROM events INDEXED BY {index}
                        WHERE tenant_id = ?1 AND {column} = ?2 AND processed_at IS NOT NULL
                        {filters}{page} ORDER BY seq {dir} LIMIT {n}) AS done
         UNION ALL
         SELECT * FROM (SELECT {COLUMNS} FROM events INDEXED BY events_pending
                        WHERE tenant_id = ?1 AND processed_at IS NULL AND {column} = ?2
                        {filters}{page} ORDER BY seq {dir} LIMIT {n}) AS pending
         ORDER BY seq {dir} LIMIT {n}"
    );
    let mut stmt = conn.prepare_cached(&sql)?;
    let mut rows: Vec<EventRow> = stmt
        .query_map(super::sql::params_from_iter(args), from_row)?
        .collect::<super::sql::Result<_>>()?;
    let more = rows.len() > f.limit;
    rows.truncate(f.limit);
    Ok((rows, more))
}

/// Deletes a tenant's session's events; returns how many. The novelty counts of its unprocessed
/// events are settled first: forgetting a session never lowers a count (`novelty`).
/// How many of the tenant's events `ids` are stored and not processed yet (forgotten ones count
/// as done).
pub fn count_unprocessed(conn: &Conn, tenant_id: &str, ids: &[String]) -> Result<u64> {
    let mut n = 0u64;
    let mut stmt = conn.prepare_cached(
        "SELECT processed_at IS NULL FROM events WHERE id = ?1 AND tenant_id = ?2",
    )?;
    for id in ids {
        let pending: Option<bool> = stmt
            .query_row([id.as_str(), tenant_id], |r| r.get(0))
            .optional()?;
        n += u64::from(pending == Some(true));
    }
    Ok(n)
}

/// The capture watermarks: the highest event seq stored, and the highest seq up to which every
/// event is processed.
pub fn watermarks(conn: &Conn) -> Result<(i64, i64)> {
    let captured: i64 =
        conn.query_row("SELECT coalesce(MAX(seq), 0) FROM events", [], |r| r.get(0))?;
    let first_pending: Option<i64> = conn.query_row(
        "SELECT MIN(seq) FROM events INDEXED BY events_pending WHERE processed_at IS NULL",
        [],
        |r| r.get(0),
    )?;
    Ok((captured, first_pending.map_or(captured, |s| s - 1)))
}

/// Events stored but not processed yet, across tenants, counted up to `limit` (the count stops
/// there, so it costs at most `limit` index entries).
pub fn count_pending(conn: &Conn, limit: u64) -> Result<u64> {
    let n: i64 = conn.query_row(
        "SELECT COUNT(*) FROM (SELECT 1 FROM events INDEXED BY events_pending
                               WHERE processed_at IS NULL LIMIT ?1) AS pending",
        [limit.min(i64::MAX as u64) as i64],
        |r| r.get(0),
    )?;
    Ok(n.max(0) as u64)
}

pub fn delete_session(conn: &Conn, tenant_id: &str, session_id: &str) -> Result<usize> {
    let unprocessed: Vec<i64> = conn
        .prepare_cached(
            "SELECT type, payload FROM events INDEXED BY events_pending
             WHERE tenant_id = ?1 AND processed_at IS NULL AND session_id = ?2",
        )?
        .query_map([tenant_id, session_id], |r| {
            Ok(novelty::signature_of(
                &r.get::<String>(0)?,
                &r.get::<String>(1)?,
            ))
        })?
        .collect::<super::sql::Result<_>>()?;
    novelty::settle_all(conn, tenant_id, &unprocessed)?;
    let processed = conn.execute(
        "DELETE FROM events INDEXED BY events_session
         WHERE tenant_id = ?1 AND session_id = ?2 AND processed_at IS NOT NULL",
        [tenant_id, session_id],
    )?;
    let pending = conn.execute(
        "DELETE FROM events INDEXED BY events_pending
         WHERE tenant_id = ?1 AND processed_at IS NULL AND session_id = ?2",
        [tenant_id, session_id],
    )?;
    Ok(processed + pending)
}

/// Validates a cursor's form before it reaches SQL (`evt_…`).
pub fn check_cursor(prefix: &str, cursor: &str) -> Result<()> {
    let ok = cursor
        .strip_prefix(prefix)
        .and_then(|s| s.strip_prefix('_'))
        .is_some_and(|rest| !rest.is_empty() && rest.chars().all(|c| c.is_ascii_alphanumeric()));
    if ok {
        Ok(())
    } else {
        Err(Error::bad_query(
            "cursor",
            format!("must be an id from a previous page ({prefix}_…)"),
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::{novelty, Db};

    fn event(session: &str, agent: &str, content: &str) -> NewEvent {
        crate::capture::validate(json!({
            "type": "message",
            "sessionId": session,
            "payload": {"role": "user", "content": content},
            "metadata": {"agentId": agent},
        }))
        .expect("valid event")
    }

    fn filter(session: Option<&str>, agent: Option<&str>, limit: usize, order: Order) -> Filter {
        Filter {
            session_id: session.map(str::to_string),
            agent_id: agent.map(str::to_string),
            event_type: None,
            limit,
            cursor: None,
            order,
        }
    }

    /// Every page of a listing, following cursors.
    fn all_pages(conn: &Conn, tenant: &str, mut f: Filter) -> Vec<String> {
        let mut ids = Vec::new();
        loop {
            let (rows, more) = list(conn, tenant, &f).expect("list");
            ids.extend(rows.iter().map(|r| r.id.clone()));
            if !more {
                return ids;
            }
            f.cursor = ids.last().cloned();
        }
    }

    /// Session and agent listings read processed events from their partial indexes and
    /// unprocessed ones from `events_pending`: pages interleave both in order, across cursors.
    #[test]
    fn session_and_agent_listings_merge_processed_and_pending_events() {
        let dir = tempfile::tempdir().unwrap();
        let db = Db::open(&dir.path().join("engram.db"), 1).unwrap();
        let ids = db
            .write_blocking(|c| {
                let t = crate::store::tenants::create(c, "t", crate::plans::Plan::Pro)?;
                let events = (0..9)
                    .map(|i| {
                        event(
                            if i % 3 == 2 { "other" } else { "s" },
                            "a",
                            &format!("e{i}"),
                        )
                    })
                    .collect();
                let w = insert_batch(c, &t.id, "live", events, 0, crate::time::now())?;
                // Another tenant with the same session and agent names, processed and not: none
                // of its events may show up in the first tenant's listings.
                let other = crate::store::tenants::create(c, "other", crate::plans::Plan::Pro)?;
                let theirs = (0..4).map(|i| event("s", "a", &format!("x{i}"))).collect();
                insert_batch(c, &other.id, "live", theirs, 0, crate::time::now())?;
                let their_first: i64 = c.query_row(
                    "SELECT min(seq) FROM events WHERE tenant_id = ?1",
                    [&other.id],
                    |r| r.get(0),
                )?;
                mark_processed(
                    c,
                    &other.id,
                    their_first,
                    their_first + 1,
                    "2026-01-01T00:00:00.000Z",
                )?;
                // Process every second event of the first six (a capture job does this).
                let seqs: Vec<i64> = c
                    .prepare("SELECT seq FROM events WHERE tenant_id = ?1 ORDER BY seq")?
                    .query_map([&t.id], |r| r.get(0))?
                    .collect::<crate::store::sql::Result<_>>()?;
                for s in seqs.iter().take(6).step_by(2) {
                    mark_processed(c, &t.id, *s, *s, "2026-01-01T00:00:00.000Z")?;
                }
                let ids: Vec<String> = w.stored.iter().map(|s| s.event_id.clone()).collect();
                Ok((t.id, ids))
            })
            .unwrap();
        let (tenant, ids) = ids;
        let in_session: Vec<String> = ids
            .iter()
            .enumerate()
            .filter(|(i, _)| i % 3 != 2)
            .map(|(_, id)| id.clone())
            .collect();
        let mut newest_first = in_session.clone();
        newest_first.reverse();
        let t = tenant.clone();
        let (asc, desc, agent_all) = db
            .read_blocking(move |c| {
                Ok((
                    all_pages(c, &t, filter(Some("s"), None, 2, Order::Asc)),
                    all_pages(c, &t, filter(Some("s"), Some("a"), 4, Order::Desc)),
                    all_pages(c, &t, filter(None, Some("a"), 3, Order::Asc)),
                ))
            })
            .unwrap();
        assert_eq!(asc, in_session);
        assert_eq!(desc, newest_first);
        assert_eq!(agent_all, ids);
        db.close();
    }

    /// Novelty counts survive a restart with unprocessed events, processing moves them to
    /// `event_signatures` without changing them, and forgetting a session never lowers them.
    #[test]
    fn novelty_counts_cover_unprocessed_events_across_restarts_and_forgetting() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("engram.db");
        let sig = event("s", "a", "same text").signature;
        let seen = |db: &Db, tenant: &str| {
            let t = tenant.to_string();
            db.write_blocking(move |c| novelty::seen(c, &t, sig))
                .unwrap()
        };
        let db = Db::open(&path, 1).unwrap();
        let (tenant, saliences) = db
            .write_blocking(move |c| {
                let t = crate::store::tenants::create(c, "t", crate::plans::Plan::Pro)?;
                let events = vec![event("s", "a", "same text"), event("s", "a", "same text")];
                let w = insert_batch(c, &t.id, "live", events, 0, crate::time::now())?;
                Ok((
                    t.id,
                    w.stored.iter().map(|s| s.salience).collect::<Vec<_>>(),
                ))
            })
            .unwrap();
        assert!(
            saliences[0] > saliences[1],
            "a repeat is less novel: {saliences:?}"
        );
        assert_eq!(seen(&db, &tenant), 2);
        let other = db
            .write_blocking(|c| {
                Ok(crate::store::tenants::create(c, "other", crate::plans::Plan::Pro)?.id)
            })
            .unwrap();
        assert_eq!(seen(&db, &other), 0, "counts are per tenant");
        db.close();
        // Restart: the two unprocessed events are counted again from the events table.
        let db = Db::open(&path, 1).unwrap();
        assert_eq!(seen(&db, &tenant), 2);
        let t = tenant.clone();
        db.write_blocking(move |c| {
            let w = insert_batch(
                c,
                &t,
                "live",
                vec![event("s", "a", "same text")],
                0,
                crate::time::now(),
            )?;
            // Processing the first event settles its count.
            let first: i64 = c.query_row("SELECT min(seq) FROM events", [], |r| r.get(0))?;
            mark_processed(c, &t, first, first, "2026-01-01T00:00:00.000Z")?;
            novelty::settle_all(c, &t, &[sig])?;
            Ok(w)
        })
        .unwrap();
        assert_eq!(seen(&db, &tenant), 3);
        let t = tenant.clone();
        let deleted = db
            .write_blocking(move |c| delete_session(c, &t, "s"))
            .unwrap();
        assert_eq!(deleted, 3);
        assert_eq!(
            seen(&db, &tenant),
            3,
            "forgetting a session keeps its counts"
        );
        db.close();
        let db = Db::open(&path, 1).unwrap();
        assert_eq!(seen(&db, &tenant), 3);
        db.close();
    }
}
