//! Tenants, their developers, and the first-start bootstrap.

use super::sql::{params, OptionalExtension};
use super::Conn;
use super::{keys, meta_get, meta_set};
use crate::error::{Error, Result};
use crate::ids;
use crate::perms::{Role, Scopes};
use crate::plans::Plan;
use crate::time::now_rfc3339;
use serde_json::Value;

#[derive(Clone, Debug)]
pub struct Tenant {
    pub id: String,
    pub name: String,
    pub plan: Plan,
    pub limits: Option<Value>,
    pub created_at: String,
}

fn row_to_tenant(r: &super::sql::Row<'_>) -> super::sql::Result<Tenant> {
    let id: String = r.get(0)?;
    let limits: Option<String> = r.get(3)?;
    Ok(Tenant {
        plan: super::spelled(r, 2, "tenants", &id)?,
        id,
        name: r.get(1)?,
        limits: limits.and_then(|s| serde_json::from_str(&s).ok()),
        created_at: r.get(4)?,
    })
}

pub fn create(conn: &Conn, name: &str, plan: Plan) -> Result<Tenant> {
    let id = ids::new("ten");
    let now = now_rfc3339();
    conn.execute(
        "INSERT INTO tenants(id, name, plan, created_at, updated_at) VALUES (?1, ?2, ?3, ?4, ?4)",
        params![id, name, plan.as_str(), now],
    )?;
    Ok(Tenant {
        id,
        name: name.to_string(),
        plan,
        limits: None,
        created_at: now,
    })
}

/// Whether tenant `id` exists.
pub fn exists(conn: &Conn, id: &str) -> Result<bool> {
    Ok(conn
        .query_row("SELECT 1 FROM tenants WHERE id = ?1", [id], |_| Ok(()))
        .optional()?
        .is_some())
}

pub fn get(conn: &Conn, id: &str) -> Result<Option<Tenant>> {
    Ok(conn
        .query_row(
            "SELECT id, name, plan, limits_json, created_at FROM tenants WHERE id = ?1",
            [id],
            row_to_tenant,
        )
        .optional()?)
}

pub fn list(conn: &Conn) -> Result<Vec<Tenant>> {
    let mut stmt = conn.prepare(
        "SELECT id, name, plan, limits_json, created_at FROM tenants ORDER BY created_at, id",
    )?;
    let rows = stmt.query_map([], row_to_tenant)?;
    Ok(rows.collect::<super::sql::Result<_>>()?)
}

pub fn set_plan(conn: &Conn, id: &str, plan: Plan) -> Result<()> {
    let n = conn.execute(
        "UPDATE tenants SET plan = ?2, updated_at = ?3 WHERE id = ?1",
        params![id, plan.as_str(), now_rfc3339()],
    )?;
    if n == 0 {
        return Err(Error::not_found("tenant"));
    }
    Ok(())
}

/// Replaces the operator's limit overrides (`None` clears them).
pub fn set_limits(conn: &Conn, id: &str, limits: Option<&Value>) -> Result<()> {
    let n = conn.execute(
        "UPDATE tenants SET limits_json = ?2, updated_at = ?3 WHERE id = ?1",
        params![id, limits.map(|v| v.to_string()), now_rfc3339()],
    )?;
    if n == 0 {
        return Err(Error::not_found("tenant"));
    }
    Ok(())
}

#[derive(Clone, Debug)]
pub struct Developer {
    pub id: String,
    pub tenant_id: String,
    pub name: String,
    pub email: String,
    pub company: Option<String>,
    pub role: Role,
    pub status: String,
}

pub fn create_developer(
    conn: &Conn,
    tenant_id: &str,
    name: &str,
    email: &str,
    company: Option<&str>,
    role: Role,
    status: &str,
) -> Result<Developer> {
    let id = ids::new("dev");
    conn.execute(
        "INSERT INTO developers(id, tenant_id, name, email, company, role, status, created_at)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)",
        params![
            id,
            tenant_id,
            name,
            email,
            company,
            role.as_str(),
            status,
            now_rfc3339()
        ],
    )?;
    Ok(Developer {
        id,
        tenant_id: tenant_id.into(),
        name: name.into(),
        email: email.into(),
        company: company.map(str::to_string),
        role,
        status: status.into(),
    })
}

fn row_to_developer(r: &super::sql::Row<'_>) -> super::sql::Result<Developer> {
    let id: String = r.get(0)?;
    Ok(Developer {
        role: super::spelled(r, 5, "developers", &id)?,
        id,
        tenant_id: r.get(1)?,
        name: r.get(2)?,
        email: r.get(3)?,
        company: r.get(4)?,
        status: r.get(6)?,
    })
}

pub fn get_developer(conn: &Conn, tenant_id: &str, id: &str) -> Result<Option<Developer>> {
    Ok(conn
        .query_row(
            "SELECT id, tenant_id, name, email, company, role, status FROM developers
             WHERE tenant_id = ?1 AND id = ?2",
            [tenant_id, id],
            row_to_developer,
        )
        .optional()?)
}

/// The tenant's first OWNER (the developer CLI-created keys belong to by default).
pub fn first_owner(conn: &Conn, tenant_id: &str) -> Result<Option<Developer>> {
    Ok(conn
        .query_row(
            "SELECT id, tenant_id, name, email, company, role, status FROM developers
             WHERE tenant_id = ?1 AND role = 'OWNER' ORDER BY created_at, id LIMIT 1",
            [tenant_id],
            row_to_developer,
        )
        .optional()?)
}

/// What a new tenant starts with: an OWNER developer and an admin key (shown once).
pub struct NewTenant {
    pub tenant: Tenant,
    pub owner: Developer,
    pub key_id: String,
    pub key: String,
}

/// Creates a tenant with its OWNER and an admin key. `key` is used as the key if given (it must be
/// well-formed); otherwise a new `hk_live_…` key is generated.
pub fn create_with_owner(
    conn: &Conn,
    name: &str,
    plan: Plan,
    owner_email: &str,
    key: Option<&str>,
) -> Result<NewTenant> {
    let tenant = create(conn, name, plan)?;
    let owner = create_developer(
        conn,
        &tenant.id,
        "Owner",
        owner_email,
        None,
        Role::Owner,
        "active",
    )?;
    let key = match key {
        Some(k) => {
            if keys::parse_format(k).is_none() {
                return Err(Error::validation(
                    "key",
                    "must look like hk_live_/hk_test_/hx_live_/hx_test_ followed by at least 32 base62 characters",
                ));
            }
            k.to_string()
        }
        None => keys::generate("hk", "live"),
    };
    let row = keys::insert(
        conn,
        &tenant.id,
        &owner.id,
        "admin (bootstrap)",
        Scopes::EMPTY,
        &key,
        None,
    )?;
    Ok(NewTenant {
        tenant,
        owner,
        key_id: row.id,
        key,
    })
}

/// First start: creates the default tenant, its OWNER and the admin key, once per database.
/// Returns the new tenant (with the key to print) or `None` when the database was bootstrapped
/// before.
pub fn ensure_bootstrap(
    conn: &Conn,
    plan: Plan,
    bootstrap_key: Option<&str>,
) -> Result<Option<NewTenant>> {
    if meta_get(conn, "bootstrap_tenant_id")?.is_some() {
        return Ok(None);
    }
    let created = create_with_owner(conn, "default", plan, "owner@localhost", bootstrap_key)?;
    meta_set(conn, "bootstrap_tenant_id", &created.tenant.id)?;
    meta_set(conn, "bootstrap_key_id", &created.key_id)?;
    Ok(Some(created))
}

/// The tenant created at first start.
pub fn default_tenant_id(conn: &Conn) -> Result<Option<String>> {
    meta_get(conn, "bootstrap_tenant_id")
}

/// The tenant's data tables, children first (`reset_data`). Developers, keys, the plan and the
/// limits are the tenant itself, not its data; usage counters stay too (quotas are measured by
/// them, and a reset must not refill a month's quota).
const DATA_TABLES: &[&str] = &[
    "agent_messages",
    "agent_sessions",
    "invocations",
    "agents",
    "connectors",
    "project_members",
    "projects",
    "artifact_versions",
    "artifacts",
    "memories",
    "events",
    "event_signatures",
    "jobs",
    "vault_audit",
    "vault_items",
    "vaults",
];

/// Deletes all of a tenant's data (`DATA_TABLES`) and, unless `keep_keys`, its API keys. Run on
/// the writer connection, so the novelty counts of its unprocessed events go too. Returns whether
/// the tenant exists.
pub fn reset_data(conn: &Conn, id: &str, keep_keys: bool) -> Result<bool> {
    if get(conn, id)?.is_none() {
        return Ok(false);
    }
    for table in DATA_TABLES {
        conn.execute(&format!("DELETE FROM {table} WHERE tenant_id = ?1"), [id])?;
    }
    if !keep_keys {
        conn.execute("DELETE FROM api_keys WHERE tenant_id = ?1", [id])?;
    }
    crate::store::novelty::forget_tenant(conn, id)?;
    Ok(true)
}

/// Deletes a tenant with everything it has (`ON DELETE CASCADE`; its keys and jobs explicitly,
/// as PostgreSQL's schema gives those tables no foreign key: `schema.postgres.sql`). Returns
/// whether it existed.
pub fn delete(conn: &Conn, id: &str) -> Result<bool> {
    crate::store::novelty::forget_tenant(conn, id)?;
    conn.execute("DELETE FROM api_keys WHERE tenant_id = ?1", [id])?;
    conn.execute("DELETE FROM jobs WHERE tenant_id = ?1", [id])?;
    Ok(conn.execute("DELETE FROM tenants WHERE id = ?1", [id])? > 0)
}

/// Resets everything: the tenant created at first start loses its data (its keys stay), every
/// other tenant is deleted with everything it has. Answers (the kept tenant, the deleted ones).
pub fn reset_all(conn: &Conn) -> Result<(Option<String>, Vec<String>)> {
    let keep = default_tenant_id(conn)?;
    let mut deleted = Vec::new();
    for t in list(conn)? {
        if Some(&t.id) == keep.as_ref() {
            reset_data(conn, &t.id, true)?;
        } else {
            delete(conn, &t.id)?;
            deleted.push(t.id);
        }
    }
    Ok((keep, deleted))
}
