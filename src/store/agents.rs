//! Agents of the registry: deploy (insert), list, get by id or slug, delete, invocation counts.
//!
//! Invariants:
//! - Every function takes the tenant first; another tenant's agent is indistinguishable from a
//!   missing one.
//! - A slug is derived from the name (lower-case ASCII letters and digits joined by single
//!   hyphens) and is unique per tenant (`agents_slug`). Slugs never contain `_` and ids always do
//!   (`ag_…`), so one path segment can name an agent either way without ambiguity.
//! - The plan's agent limit is checked in the same transaction as the insert, on the single
//!   writer thread, so concurrent deploys cannot overshoot it.
//! - `search_name` is the name case-folded by Rust (full Unicode), so name search is
//!   case-insensitive beyond ASCII (SQLite's `LIKE`/`lower` only fold ASCII).

use super::sql::{params, OptionalExtension};
use super::Conn;
use crate::error::{Error, Result};
use crate::ids;
use crate::time::now_rfc3339;
use serde::{Deserialize, Serialize};
use serde_json::Value;

/// A tool call the offline model makes when a script rule matches.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ScriptTool {
    /// Slug of a connector of the agent's project (or of the public catalogue).
    pub connector: String,
    /// The MCP tool name.
    pub name: String,
    /// The tool's arguments (a JSON object).
    #[serde(default = "empty_object")]
    pub arguments: Value,
}

fn empty_object() -> Value {
    Value::Object(Default::default())
}

/// One rule of an agent's script (engram extension): the first rule whose `match` regex matches
/// the user's message gives the reply (and optionally a tool call) of the offline model.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ScriptRule {
    #[serde(rename = "match")]
    pub pattern: String,
    /// The answer, or with `status` the error's message (empty: a generic one).
    #[serde(default)]
    pub reply: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tool: Option<ScriptTool>,
    /// Each model step of this rule waits this long first (counts against the agent's timeout).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub delay_ms: Option<u64>,
    /// The invocation fails with this HTTP status (400–599) instead of answering.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub status: Option<u16>,
}

#[derive(Clone, Debug)]
pub struct Agent {
    pub id: String,
    pub tenant_id: String,
    pub project_id: Option<String>,
    pub name: String,
    pub slug: String,
    pub model: String,
    pub instruction: String,
    pub description: Option<String>,
    pub category: Option<String>,
    pub tags: Vec<String>,
    pub timeout_secs: u32,
    pub public: bool,
    pub script: Option<Vec<ScriptRule>>,
    /// `active` once deployed.
    pub status: String,
    pub invocation_count: i64,
    pub created_by: Option<String>,
    pub created_at: String,
    pub updated_at: String,
}

/// A validated deploy request.
#[derive(Clone, Debug)]
pub struct NewAgent {
    pub project_id: Option<String>,
    pub name: String,
    pub model: String,
    pub instruction: String,
    pub description: Option<String>,
    pub category: Option<String>,
    pub tags: Vec<String>,
    pub timeout_secs: u32,
    pub public: bool,
    pub script: Option<Vec<ScriptRule>>,
    pub created_by: String,
}

/// The slug of a name: lower-case ASCII letters and digits, other runs become one hyphen.
/// Empty when the name has no ASCII letter or digit.
pub fn slugify(name: &str) -> String {
    let mut slug = String::with_capacity(name.len());
    for c in name.chars() {
        if c.is_ascii_alphanumeric() {
            slug.push(c.to_ascii_lowercase());
        } else if !slug.is_empty() && !slug.ends_with('-') {
            slug.push('-');
        }
    }
    while slug.ends_with('-') {
        slug.pop();
    }
    slug
}

/// Case folding used for name search (stored in `search_name` and applied to queries).
pub fn fold(s: &str) -> String {
    s.to_lowercase()
}

const COLUMNS: &str = "id, tenant_id, project_id, name, slug, model, instruction, description, \
                       category, tags_json, timeout_secs, public, script_json, status, \
                       invocation_count, created_by, created_at, updated_at";

fn row_to_agent(r: &super::sql::Row<'_>) -> super::sql::Result<Agent> {
    let tags: String = r.get(9)?;
    let script: Option<String> = r.get(12)?;
    let timeout: i64 = r.get(10)?;
    Ok(Agent {
        id: r.get(0)?,
        tenant_id: r.get(1)?,
        project_id: r.get(2)?,
        name: r.get(3)?,
        slug: r.get(4)?,
        model: r.get(5)?,
        instruction: r.get(6)?,
        description: r.get(7)?,
        category: r.get(8)?,
        tags: serde_json::from_str(&tags).unwrap_or_default(),
        timeout_secs: timeout.clamp(0, u32::MAX as i64) as u32,
        public: r.get::<i64>(11)? != 0,
        script: script.and_then(|s| serde_json::from_str(&s).ok()),
        status: r.get(13)?,
        invocation_count: r.get(14)?,
        created_by: r.get(15)?,
        created_at: r.get(16)?,
        updated_at: r.get(17)?,
    })
}

pub fn count(conn: &Conn, tenant_id: &str) -> Result<i64> {
    let mut stmt = conn.prepare_cached("SELECT COUNT(*) FROM agents WHERE tenant_id = ?1")?;
    Ok(stmt.query_row([tenant_id], |r| r.get(0))?)
}

/// Stores a new agent. `limit` is the plan's agent limit (`None` = unlimited): reached → 429
/// `quota_exceeded`. A name whose slug is taken in the tenant → 409.
pub fn insert(conn: &Conn, tenant_id: &str, new: &NewAgent, limit: Option<u64>) -> Result<Agent> {
    let slug = slugify(&new.name);
    if slug.is_empty() {
        return Err(Error::validation(
            "name",
            "must contain at least one ASCII letter or digit (the slug is made of them)",
        ));
    }
    if let Some(limit) = limit {
        let used = count(conn, tenant_id)?;
        if used as u64 >= limit {
            return Err(Error::QuotaExceeded {
                // The limit is not time-based: waiting does not free a slot, deleting an agent does.
                retry_after: 0,
                message: format!(
                    "agent limit reached: your plan allows {limit} agents and {used} are deployed; \
                     delete an agent or upgrade your plan"
                ),
                details: serde_json::json!({"resource": "agents", "limit": limit, "used": used}),
            });
        }
    }
    if let Some(existing) = get_by_slug(conn, tenant_id, &slug)? {
        return Err(Error::Conflict(format!(
            "an agent with the slug '{slug}' already exists ({}); choose another name or delete it first",
            existing.id
        )));
    }
    let id = ids::new("ag");
    let now = now_rfc3339();
    let script_json = match &new.script {
        Some(rules) => Some(serde_json::to_string(rules)?),
        None => None,
    };
    conn.execute(
        "INSERT INTO agents(id, tenant_id, project_id, name, slug, model, instruction, description,
                            category, tags_json, timeout_secs, public, script_json, status,
                            invocation_count, created_by, created_at, updated_at, search_name)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, 'active', 0, ?14, ?15,
                 ?15, ?16)",
        params![
            id,
            tenant_id,
            new.project_id,
            new.name,
            slug,
            new.model,
            new.instruction,
            new.description,
            new.category,
            serde_json::to_string(&new.tags)?,
            new.timeout_secs,
            new.public as i64,
            script_json,
            new.created_by,
            now,
            fold(&new.name),
        ],
    )?;
    Ok(Agent {
        id,
        tenant_id: tenant_id.into(),
        project_id: new.project_id.clone(),
        name: new.name.clone(),
        slug,
        model: new.model.clone(),
        instruction: new.instruction.clone(),
        description: new.description.clone(),
        category: new.category.clone(),
        tags: new.tags.clone(),
        timeout_secs: new.timeout_secs,
        public: new.public,
        script: new.script.clone(),
        status: "active".into(),
        invocation_count: 0,
        created_by: Some(new.created_by.clone()),
        created_at: now.clone(),
        updated_at: now,
    })
}

fn get_by_slug(conn: &Conn, tenant_id: &str, slug: &str) -> Result<Option<Agent>> {
    let mut stmt = conn.prepare_cached(&format!(
        "SELECT {COLUMNS} FROM agents WHERE tenant_id = ?1 AND slug = ?2"
    ))?;
    Ok(stmt.query_row([tenant_id, slug], row_to_agent).optional()?)
}

/// An agent of the tenant by id (`ag_…`) or slug (compared without ASCII case).
pub fn get(conn: &Conn, tenant_id: &str, id_or_slug: &str) -> Result<Option<Agent>> {
    if id_or_slug.starts_with("ag_") {
        let mut stmt = conn.prepare_cached(&format!(
            "SELECT {COLUMNS} FROM agents WHERE tenant_id = ?1 AND id = ?2"
        ))?;
        Ok(stmt
            .query_row([tenant_id, id_or_slug], row_to_agent)
            .optional()?)
    } else {
        // Slugs are lower case; `Sentiment-Analyzer` names the same agent.
        get_by_slug(conn, tenant_id, &id_or_slug.to_ascii_lowercase())
    }
}

/// Filters and window of a listing.
#[derive(Clone, Debug, Default)]
pub struct ListQuery {
    /// Exact category, compared case-insensitively.
    pub category: Option<String>,
    /// Substring of the name, compared case-insensitively.
    pub search: Option<String>,
    pub limit: i64,
    pub offset: i64,
}

/// One page of the tenant's agents, newest first, and the total matching the filters.
pub fn list(conn: &Conn, tenant_id: &str, q: &ListQuery) -> Result<(Vec<Agent>, i64)> {
    use super::sql::Value as Sql;
    let mut filter = String::from("tenant_id = ?1");
    let mut args: Vec<Sql> = vec![Sql::Text(tenant_id.to_string())];
    if let Some(c) = &q.category {
        args.push(Sql::Text(c.clone()));
        filter.push_str(&format!(" AND category = ?{} COLLATE NOCASE", args.len()));
    }
    if let Some(s) = &q.search {
        args.push(Sql::Text(fold(s)));
        filter.push_str(&format!(" AND instr(search_name, ?{}) > 0", args.len()));
    }
    let total: i64 = conn
        .prepare_cached(&format!("SELECT COUNT(*) FROM agents WHERE {filter}"))?
        .query_row(super::sql::params_from_iter(args.iter()), |r| r.get(0))?;
    let n = args.len();
    args.push(Sql::Int(q.limit));
    args.push(Sql::Int(q.offset));
    let mut stmt = conn.prepare_cached(&format!(
        "SELECT {COLUMNS} FROM agents WHERE {filter}
         ORDER BY created_at DESC, id DESC LIMIT ?{} OFFSET ?{}",
        n + 1,
        n + 2
    ))?;
    let rows = stmt.query_map(super::sql::params_from_iter(args.iter()), row_to_agent)?;
    Ok((rows.collect::<super::sql::Result<_>>()?, total))
}

/// Deletes an agent by id or slug with its conversation history; returns the deleted agent.
/// Its invocation records stay (they are this month's usage).
pub fn delete(conn: &Conn, tenant_id: &str, id_or_slug: &str) -> Result<Option<Agent>> {
    let Some(agent) = get(conn, tenant_id, id_or_slug)? else {
        return Ok(None);
    };
    conn.execute(
        "DELETE FROM agent_messages WHERE tenant_id = ?1 AND agent_id = ?2",
        params![tenant_id, agent.id],
    )?;
    conn.execute(
        "DELETE FROM agent_sessions WHERE tenant_id = ?1 AND agent_id = ?2",
        params![tenant_id, agent.id],
    )?;
    conn.execute(
        "DELETE FROM agents WHERE tenant_id = ?1 AND id = ?2",
        params![tenant_id, agent.id],
    )?;
    Ok(Some(agent))
}

/// Counts one invocation of an agent (by id); `false` when the agent no longer exists.
pub fn record_invocation(conn: &Conn, tenant_id: &str, id: &str) -> Result<bool> {
    let mut stmt = conn.prepare_cached(
        "UPDATE agents SET invocation_count = invocation_count + 1
         WHERE tenant_id = ?1 AND id = ?2",
    )?;
    Ok(stmt.execute([tenant_id, id])? > 0)
}

#[cfg(test)]
mod tests {
    use super::slugify;

    #[test]
    fn slugs() {
        assert_eq!(slugify("sentiment-analyzer"), "sentiment-analyzer");
        assert_eq!(slugify("  My Agent_v2!! "), "my-agent-v2");
        assert_eq!(slugify("ag_123"), "ag-123");
        assert_eq!(slugify("Café Bot"), "caf-bot");
        assert_eq!(slugify("日本語"), "");
    }
}
