//! A tenant as NDJSON and back (docs/api.md "Export and import"): every row of every table that
//! belongs to it, one record a line, in an order that import can replay.
//!
//! The stream: a header `{"kind":"engram-export","format":1,"schemaVersion":N,"tenantId":…,
//! "vaultKey":…}`, then one record per row `{"kind":"<kind>", <column>: <value>, …}` table by
//! table (`TABLES`, parents before children), then `{"kind":"end","records":N}`.
//!
//! Invariants:
//! - Export reads one snapshot (a single read transaction), so the stream is consistent even
//!   while the tenant is being written.
//! - Columns are written in the table's order with their stored values: text as strings, numbers
//!   as numbers, JSON-text columns (`*_json`, `payload`, `metadata`, `input`, `result`, `tags`) as
//!   the JSON they hold, blobs (vault nonces and ciphertexts) as lower-case hex. `tenant_id` is
//!   implied and the internal `seq` is left out; rows keep their order, so ids, versions and
//!   orderings survive. Keys are exported as their hashes, vault values as ciphertext only.
//! - Export → import → export gives the same bytes.
//! - Import runs in one write operation: all of a tenant or nothing. It refuses a tenant that
//!   exists (409), a record whose kind or field is unknown or that breaks a constraint (naming the
//!   line), a stream without its end record, a newer schema, and vault items encrypted under
//!   another master key than this server's.
//! - A job that was running when exported is imported as queued (nothing runs it any more), and a
//!   waiting capture job is pointed at the seqs its events got here (seqs are per database).
//!   An export of a tenant at rest (nothing waiting) round-trips byte for byte.

use super::sql::Value as SqlValue;
use super::Conn;
use crate::error::{Error, Result};
use serde_json::{json, Map, Value};
use std::collections::BTreeMap;

pub const FORMAT: &str = "engram-export";
pub const FORMAT_VERSION: u64 = 1;

/// One exported table: its record kind, and the order its rows are written and replayed in.
struct Table {
    kind: &'static str,
    table: &'static str,
    order: &'static str,
    /// Has an internal `seq` (its rowid), left out of records.
    seq: bool,
}

const fn t(kind: &'static str, table: &'static str, order: &'static str, seq: bool) -> Table {
    Table {
        kind,
        table,
        order,
        seq,
    }
}

/// Parents before children, so import satisfies every foreign key as it goes. Rows go in
/// creation order (an order both backends hold: PostgreSQL has no rowid).
const TABLES: &[Table] = &[
    t("tenant", "tenants", "created_at, id", false),
    t("developer", "developers", "created_at, id", false),
    t("project", "projects", "created_at, id", false),
    t("member", "project_members", "invited_at, id", false),
    t("key", "api_keys", "created_at, id", false),
    t("agent", "agents", "created_at, id", false),
    t("connector", "connectors", "created_at, id", false),
    t("session", "agent_sessions", "agent_id, id", false),
    t("message", "agent_messages", "seq", true),
    t("invocation", "invocations", "created_at, id", false),
    t("job", "jobs", "seq", true),
    t("event", "events", "seq", true),
    t("event_signature", "event_signatures", "signature", false),
    t("memory", "memories", "seq", true),
    t("artifact", "artifacts", "seq", true),
    t(
        "artifact_version",
        "artifact_versions",
        "artifact_id, version",
        false,
    ),
    t("vault", "vaults", "created_at, id", false),
    t("vault_item", "vault_items", "created_at, id", false),
    t("vault_audit", "vault_audit", "seq", true),
    t("usage", "usage_counters", "mode, metric, bucket", false),
];

/// The kinds of records, in stream order.
pub fn kinds() -> impl Iterator<Item = &'static str> {
    TABLES.iter().map(|t| t.kind)
}

#[derive(Clone, Copy, PartialEq)]
enum ColKind {
    Plain,
    Json,
    Blob,
}

struct Column {
    /// The column's name in the table.
    name: String,
    /// Its name in a record: the same, except that a column called `kind` (jobs, memories) is
    /// `<record kind>_kind`, since `kind` names the record.
    field: String,
    kind: ColKind,
}

fn json_column(name: &str) -> bool {
    name.ends_with("_json") || matches!(name, "payload" | "metadata" | "input" | "result" | "tags")
}

/// The exported columns of a table, in table order.
fn columns(conn: &Conn, table: &Table) -> Result<Vec<Column>> {
    // Both schemas list a table's columns in the same order.
    let mut stmt = if conn.is_postgres() {
        conn.prepare(&format!(
            "SELECT 0, column_name::text, data_type::text FROM information_schema.columns
             WHERE table_schema = 'public' AND table_name = '{}' ORDER BY ordinal_position",
            table.table
        ))?
    } else {
        conn.prepare(&format!("PRAGMA table_info({})", table.table))?
    };
    let rows = stmt.query_map([], |r| Ok((r.get::<String>(1)?, r.get::<String>(2)?)))?;
    let mut out = Vec::new();
    for row in rows {
        let (name, decl) = row?;
        let implied =
            (name == "tenant_id" && table.table != "tenants") || (table.seq && name == "seq");
        if implied {
            continue;
        }
        let kind = if decl.eq_ignore_ascii_case("BLOB") || decl == "bytea" {
            ColKind::Blob
        } else if json_column(&name) {
            ColKind::Json
        } else {
            ColKind::Plain
        };
        let field = if name == "kind" {
            format!("{}_kind", table.kind)
        } else {
            name.clone()
        };
        out.push(Column { name, field, kind });
    }
    Ok(out)
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn unhex(s: &str) -> Option<Vec<u8>> {
    if s.len() % 2 != 0 {
        return None;
    }
    (0..s.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(s.get(i..i + 2)?, 16).ok())
        .collect()
}

fn to_json(v: SqlValue, kind: ColKind) -> Value {
    match v {
        SqlValue::Null => Value::Null,
        SqlValue::Int(i) => json!(i),
        SqlValue::Real(f) => json!(f),
        SqlValue::Text(text) => match kind {
            ColKind::Json => serde_json::from_str(&text).unwrap_or(Value::String(text)),
            _ => Value::String(text),
        },
        SqlValue::Blob(b) => Value::String(hex(&b)),
    }
}

/// The database's schema version (`PRAGMA user_version`, or PostgreSQL's `meta.schema_version`).
fn schema_version(conn: &Conn) -> Result<i64> {
    if conn.is_postgres() {
        let v: String = conn.query_row(
            "SELECT value FROM meta WHERE key = 'schema_version'",
            [],
            |r| r.get(0),
        )?;
        return v
            .parse()
            .map_err(|_| Error::Internal(format!("meta.schema_version is '{v}'")));
    }
    Ok(conn.query_row("PRAGMA user_version", [], |r| r.get(0))?)
}

/// What the header says about where an export came from.
pub struct Header {
    pub tenant_id: String,
    pub schema_version: i64,
    /// The fingerprint of the master key its vault items are encrypted under.
    pub vault_key: Option<String>,
}

/// The fingerprint of the master key this database's vault is encrypted under (recorded at
/// every server start), if any.
fn vault_fingerprint(conn: &Conn) -> Result<Option<String>> {
    crate::store::meta_get(conn, crate::store::vault::FINGERPRINT_META)
}

/// How many records an export of the tenant holds (for progress).
pub fn record_count(conn: &Conn, tenant_id: &str) -> Result<u64> {
    let mut n = 0i64;
    for table in TABLES {
        let filter = if table.table == "tenants" {
            "id"
        } else {
            "tenant_id"
        };
        n += conn.query_row(
            &format!("SELECT count(*) FROM {} WHERE {filter} = ?1", table.table),
            [tenant_id],
            |r| r.get::<i64>(0),
        )?;
    }
    Ok(n.max(0) as u64)
}

/// Writes tenant `tenant_id` as NDJSON lines (each ending in `\n`) to `out`; answers the number
/// of records (header and end line not counted). Run on a read connection: the whole export is
/// one snapshot.
pub fn export(
    conn: &Conn,
    tenant_id: &str,
    out: &mut dyn FnMut(String) -> Result<()>,
) -> Result<u64> {
    // One snapshot for the whole export.
    conn.execute_batch(if conn.is_postgres() {
        "BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY"
    } else {
        "BEGIN"
    })?;
    let result = export_in_snapshot(conn, tenant_id, out);
    let _ = conn.execute_batch("COMMIT");
    result
}

fn export_in_snapshot(
    snapshot: &Conn,
    tenant_id: &str,
    out: &mut dyn FnMut(String) -> Result<()>,
) -> Result<u64> {
    if !crate::store::tenants::exists(snapshot, tenant_id)? {
        return Err(Error::not_found("tenant"));
    }
    let vault_key = vault_fingerprint(snapshot)?;
    let schema = schema_version(snapshot)?;
    let header = json!({
        "kind": FORMAT,
        "format": FORMAT_VERSION,
        "schemaVersion": schema,
        "tenantId": tenant_id,
        "vaultKey": vault_key,
    });
    out(format!(
        "{}\n",
        ordered(
            &header,
            &["kind", "format", "schemaVersion", "tenantId", "vaultKey"]
        )
    ))?;
    let mut records = 0u64;
    for table in TABLES {
        let cols = columns(snapshot, table)?;
        let list = cols
            .iter()
            .map(|c| format!("\"{}\"", c.name))
            .collect::<Vec<_>>()
            .join(", ");
        let filter = if table.table == "tenants" {
            "id"
        } else {
            "tenant_id"
        };
        let mut stmt = snapshot.prepare(&format!(
            "SELECT {list} FROM {} WHERE {filter} = ?1 ORDER BY {}",
            table.table, table.order
        ))?;
        let mut rows = stmt.query([tenant_id])?;
        while let Some(row) = rows.next()? {
            let mut line = String::with_capacity(256);
            line.push_str("{\"kind\":");
            line.push_str(&Value::String(table.kind.into()).to_string());
            for (i, c) in cols.iter().enumerate() {
                line.push(',');
                line.push_str(&Value::String(c.field.clone()).to_string());
                line.push(':');
                line.push_str(&to_json(row.get::<SqlValue>(i)?, c.kind).to_string());
            }
            line.push_str("}\n");
            out(line)?;
            records += 1;
        }
    }
    out(format!("{{\"kind\":\"end\",\"records\":{records}}}\n"))?;
    Ok(records)
}

/// A JSON object's text with its keys in the given order.
fn ordered(v: &Value, keys: &[&str]) -> String {
    let parts: Vec<String> = keys
        .iter()
        .map(|k| format!("{}:{}", Value::String((*k).into()), v[*k]))
        .collect();
    format!("{{{}}}", parts.join(","))
}

/// Reads the header line of an export.
pub fn parse_header(line: &str) -> Result<Header> {
    let bad = |m: &str| Error::validation("line 1", m);
    let v: Value = serde_json::from_str(line).map_err(|e| {
        bad(&format!(
            "is not JSON ({e}); an export starts with its header"
        ))
    })?;
    if v["kind"] != FORMAT {
        return Err(bad(&format!(
            "is not an engram export header (kind must be \"{FORMAT}\")"
        )));
    }
    match v["format"].as_u64() {
        Some(FORMAT_VERSION) => {}
        other => {
            return Err(bad(&format!(
                "has export format {other:?}; this engram reads format {FORMAT_VERSION}"
            )))
        }
    }
    let tenant_id = v["tenantId"]
        .as_str()
        .filter(|s| !s.is_empty())
        .ok_or_else(|| bad("has no tenantId"))?
        .to_string();
    let schema_version = v["schemaVersion"]
        .as_i64()
        .ok_or_else(|| bad("has no schemaVersion"))?;
    Ok(Header {
        tenant_id,
        schema_version,
        vault_key: v["vaultKey"].as_str().map(str::to_string),
    })
}

/// What an import created.
#[derive(Debug, Default)]
pub struct Imported {
    pub tenant_id: String,
    pub records: u64,
    pub by_kind: BTreeMap<String, u64>,
    /// Events not processed yet (their capture jobs were imported queued).
    pub unprocessed_events: u64,
    /// Jobs waiting to run, by kind.
    pub queued_jobs: BTreeMap<crate::domain::JobKind, u64>,
}

/// Recreates a tenant from an export's lines (`(line number, text)`, the header included) with
/// its ids; `progress(records)` is called every thousand records. Run on the writer: one write
/// operation, so a failure leaves nothing behind.
pub fn import<'a>(
    conn: &Conn,
    lines: impl IntoIterator<Item = (usize, &'a str)>,
    progress: &mut dyn FnMut(u64),
) -> Result<Imported> {
    let current = schema_version(conn)?;
    let vault_key = vault_fingerprint(conn)?;
    let mut lines = lines.into_iter().filter(|(_, l)| !l.trim().is_empty());
    let (_, first) = lines
        .next()
        .ok_or_else(|| Error::validation("body", "is empty; an export starts with its header"))?;
    let header = parse_header(first)?;
    if header.schema_version > current {
        return Err(Error::validation(
            "schemaVersion",
            format!(
                "the export was written by a newer engram (schema {}; this one has {current}): import it with that version or newer",
                header.schema_version
            ),
        ));
    }
    if crate::store::tenants::exists(conn, &header.tenant_id)? {
        return Err(Error::Conflict(format!(
            "tenant {} exists on this server; delete it first (DELETE /v1/admin/tenants/{}) or import elsewhere",
            header.tenant_id, header.tenant_id
        )));
    }
    let mut specs: BTreeMap<&str, (&Table, Vec<Column>)> = BTreeMap::new();
    for table in TABLES {
        specs.insert(table.kind, (table, columns(conn, table)?));
    }
    let mut done = Imported {
        tenant_id: header.tenant_id.clone(),
        ..Imported::default()
    };
    let mut ended = false;
    for (n, line) in lines {
        let at = format!("line {n}");
        if ended {
            return Err(Error::validation(&at, "comes after the end record"));
        }
        let record: Map<String, Value> = match serde_json::from_str(line) {
            Ok(Value::Object(m)) => m,
            Ok(_) => return Err(Error::validation(&at, "is not a JSON object")),
            Err(e) => return Err(Error::validation(&at, format!("is not JSON: {e}"))),
        };
        let kind = record.get("kind").and_then(Value::as_str).unwrap_or("");
        if kind == "end" {
            let said = record.get("records").and_then(Value::as_u64);
            if said != Some(done.records) {
                return Err(Error::validation(
                    &at,
                    format!(
                        "the end record says {said:?} records, {} came before it: the stream is damaged",
                        done.records
                    ),
                ));
            }
            ended = true;
            continue;
        }
        let Some((table, cols)) = specs.get(kind) else {
            return Err(Error::validation(
                &at,
                format!(
                    "has kind {:?}; known kinds: {}",
                    kind,
                    kinds().collect::<Vec<_>>().join(", ")
                ),
            ));
        };
        if done.records == 0 && kind != "tenant" {
            return Err(Error::validation(
                &at,
                "the first record after the header must be the tenant",
            ));
        }
        if kind == "tenant" {
            if done.records != 0 {
                return Err(Error::validation(
                    &at,
                    "a second tenant record; an export holds one tenant",
                ));
            }
            if record.get("id").and_then(Value::as_str) != Some(header.tenant_id.as_str()) {
                return Err(Error::validation(
                    &at,
                    "the tenant's id is not the header's tenantId",
                ));
            }
        }
        if kind == "vault_item" && (header.vault_key.is_none() || header.vault_key != vault_key) {
            return Err(Error::Conflict(format!(
                "the export's vault items are encrypted under the master key with fingerprint {} but this server's key has fingerprint {}: give this server (or `engram import`) the exporting server's key (ENGRAM_VAULT_KEY, or its vault.key) to import them",
                header.vault_key.as_deref().unwrap_or("(none)"),
                vault_key.as_deref().unwrap_or("(none)")
            )));
        }
        insert(conn, table, cols, &record, &header.tenant_id, &at)?;
        done.records += 1;
        if done.records % 1000 == 0 {
            progress(done.records);
        }
        *done.by_kind.entry(kind.to_string()).or_default() += 1;
        if kind == "event" && record.get("processed_at").is_none_or_null() {
            done.unprocessed_events += 1;
        }
    }
    if !ended {
        return Err(Error::validation(
            "body",
            "ends without the end record: the export was cut short",
        ));
    }
    if done.records == 0 {
        return Err(Error::validation("body", "holds no tenant record"));
    }
    // Jobs that were running when exported wait for a worker here.
    conn.execute(
        "UPDATE jobs SET status = 'queued', started_at = NULL WHERE tenant_id = ?1 AND status = 'running'",
        [&header.tenant_id],
    )?;
    // A waiting capture job names its events by seq range, and seqs are this database's own:
    // point it at where its events landed.
    conn.execute(
        "UPDATE jobs SET input = '{\"firstSeq\":' || r.lo || ',\"lastSeq\":' || r.hi
                                 || ',\"count\":' || r.n || '}'
         FROM (SELECT job_id, min(seq) AS lo, max(seq) AS hi, count(*) AS n
               FROM events WHERE tenant_id = ?1 AND job_id IS NOT NULL GROUP BY job_id) AS r
         WHERE jobs.tenant_id = ?1 AND jobs.kind = 'capture' AND jobs.status = 'queued'
           AND jobs.id = r.job_id",
        [&header.tenant_id],
    )?;
    let mut stmt = conn.prepare(
        "SELECT kind, COUNT(*) FROM jobs WHERE tenant_id = ?1 AND status = 'queued' GROUP BY kind",
    )?;
    for row in stmt.query_map([&header.tenant_id], |r| {
        let kind: crate::domain::JobKind = super::spelled(r, 0, "jobs", &header.tenant_id)?;
        Ok((kind, r.get::<i64>(1)?))
    })? {
        let (k, n) = row?;
        done.queued_jobs.insert(k, n as u64);
    }
    if done.unprocessed_events > 0 {
        crate::store::novelty::refill_pending(conn)?;
    }
    Ok(done)
}

/// `import` of an export's whole text, its lines numbered from 1.
pub fn import_text(conn: &Conn, text: &str, progress: &mut dyn FnMut(u64)) -> Result<Imported> {
    import(
        conn,
        text.lines().enumerate().map(|(i, l)| (i + 1, l)),
        progress,
    )
}

trait Nullish {
    fn is_none_or_null(&self) -> bool;
}

impl Nullish for Option<&Value> {
    fn is_none_or_null(&self) -> bool {
        matches!(self, None | Some(Value::Null))
    }
}

/// Inserts one record into its table; every field must be a column of it.
fn insert(
    conn: &Conn,
    table: &Table,
    cols: &[Column],
    record: &Map<String, Value>,
    tenant_id: &str,
    at: &str,
) -> Result<()> {
    let mut names: Vec<&str> = Vec::with_capacity(record.len() + 1);
    let mut values: Vec<SqlValue> = Vec::with_capacity(record.len() + 1);
    if table.table != "tenants" {
        names.push("tenant_id");
        values.push(SqlValue::Text(tenant_id.to_string()));
    }
    for (field, v) in record {
        if field == "kind" {
            continue;
        }
        let Some(col) = cols.iter().find(|c| &c.field == field) else {
            return Err(Error::validation(
                at,
                format!("a {} record has no field {field:?}", table.kind),
            ));
        };
        let sql =
            match (col.kind, v) {
                (_, Value::Null) => SqlValue::Null,
                (ColKind::Json, v) => SqlValue::Text(v.to_string()),
                (ColKind::Blob, Value::String(s)) => SqlValue::Blob(unhex(s).ok_or_else(|| {
                    Error::validation(at, format!("{field} must be lower-case hex"))
                })?),
                (ColKind::Blob, _) => {
                    return Err(Error::validation(
                        at,
                        format!("{field} must be a hex string"),
                    ))
                }
                (ColKind::Plain, Value::String(s)) => SqlValue::Text(s.clone()),
                (ColKind::Plain, Value::Bool(b)) => SqlValue::Int(i64::from(*b)),
                (ColKind::Plain, Value::Number(n)) => match n.as_i64() {
                    Some(i) => SqlValue::Int(i),
                    None => SqlValue::Real(n.as_f64().unwrap_or(0.0)),
                },
                (ColKind::Plain, _) => {
                    return Err(Error::validation(
                        at,
                        format!("{field} must be a string, a number or null"),
                    ))
                }
            };
        names.push(col.name.as_str());
        values.push(sql);
    }
    let placeholders = (1..=names.len())
        .map(|i| format!("?{i}"))
        .collect::<Vec<_>>()
        .join(", ");
    let list = names
        .iter()
        .map(|n| format!("\"{n}\""))
        .collect::<Vec<_>>()
        .join(", ");
    let sql = format!(
        "INSERT INTO {} ({list}) VALUES ({placeholders})",
        table.table
    );
    let mut stmt = conn.prepare_cached(&sql)?;
    stmt.execute(super::sql::params_from_iter(values))
        .map_err(|e| constraint_error(e, at, table.kind))?;
    Ok(())
}

/// A failed insert, said in terms of the record: a taken id or key is a conflict, anything else
/// is a bad record.
fn constraint_error(e: super::sql::Error, at: &str, kind: &str) -> Error {
    let msg = e.to_string();
    if e.is_unique_violation() || msg.contains("PRIMARY KEY") {
        Error::Conflict(format!(
            "{at}: this {kind} record's id or key is already in use on this server ({msg})"
        ))
    } else if msg.contains("constraint failed") || msg.contains("datatype mismatch") {
        Error::validation(at, format!("the {kind} record is not valid here: {msg}"))
    } else {
        Error::from(e)
    }
}
