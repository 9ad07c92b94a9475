//! Project connectors: private MCP servers registered for one project.
//!
//! Invariants: every function takes the tenant first and only touches that tenant's rows; a
//! connector's slug comes from its name and is unique within its project (`connectors_slug`);
//! connectors go away with their project (`ON DELETE CASCADE`).

use super::sql::{params, OptionalExtension};
use super::Conn;
use crate::error::{Error, Result};
use crate::ids;
use crate::time::now_rfc3339;

#[derive(Clone, Debug)]
pub struct Connector {
    pub id: String,
    pub tenant_id: String,
    pub project_id: String,
    pub name: String,
    pub slug: String,
    pub mcp_url: String,
    pub category: Option<String>,
    pub status: String,
    pub created_at: String,
}

const COLUMNS: &str =
    "id, tenant_id, project_id, name, slug, mcp_url, category, status, created_at";

fn row_to_connector(r: &super::sql::Row<'_>) -> super::sql::Result<Connector> {
    Ok(Connector {
        id: r.get(0)?,
        tenant_id: r.get(1)?,
        project_id: r.get(2)?,
        name: r.get(3)?,
        slug: r.get(4)?,
        mcp_url: r.get(5)?,
        category: r.get(6)?,
        status: r.get(7)?,
        created_at: r.get(8)?,
    })
}

/// Registers a connector (fields already validated). Its slug taken in the project → 409.
pub fn insert(
    conn: &Conn,
    tenant_id: &str,
    project_id: &str,
    name: &str,
    mcp_url: &str,
    category: Option<&str>,
) -> Result<Connector> {
    let slug = crate::store::agents::slugify(name);
    if slug.is_empty() {
        return Err(Error::validation(
            "name",
            "must contain at least one ASCII letter or digit (the slug is made of them)",
        ));
    }
    if get_by_slug(conn, tenant_id, project_id, &slug)?.is_some() {
        return Err(Error::Conflict(format!(
            "this project already has a connector with the slug '{slug}'"
        )));
    }
    let id = ids::new("con");
    let now = now_rfc3339();
    conn.execute(
        "INSERT INTO connectors(id, tenant_id, project_id, name, slug, mcp_url, category, status,
                                created_at)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, 'registered', ?8)",
        params![id, tenant_id, project_id, name, slug, mcp_url, category, now],
    )?;
    Ok(Connector {
        id,
        tenant_id: tenant_id.into(),
        project_id: project_id.into(),
        name: name.into(),
        slug,
        mcp_url: mcp_url.into(),
        category: category.map(str::to_string),
        status: "registered".into(),
        created_at: now,
    })
}

/// A project's connectors, in the order they were registered.
pub fn list_for_project(conn: &Conn, tenant_id: &str, project_id: &str) -> Result<Vec<Connector>> {
    let mut stmt = conn.prepare_cached(&format!(
        "SELECT {COLUMNS} FROM connectors WHERE tenant_id = ?1 AND project_id = ?2
         ORDER BY created_at, id"
    ))?;
    let rows = stmt.query_map([tenant_id, project_id], row_to_connector)?;
    Ok(rows.collect::<super::sql::Result<_>>()?)
}

/// A connector of a project by id (`con_…`) or slug.
pub fn get(
    conn: &Conn,
    tenant_id: &str,
    project_id: &str,
    id_or_slug: &str,
) -> Result<Option<Connector>> {
    if !id_or_slug.starts_with("con_") {
        return get_by_slug(conn, tenant_id, project_id, id_or_slug);
    }
    let mut stmt = conn.prepare_cached(&format!(
        "SELECT {COLUMNS} FROM connectors WHERE tenant_id = ?1 AND project_id = ?2 AND id = ?3"
    ))?;
    Ok(stmt
        .query_row([tenant_id, project_id, id_or_slug], row_to_connector)
        .optional()?)
}

fn get_by_slug(
    conn: &Conn,
    tenant_id: &str,
    project_id: &str,
    slug: &str,
) -> Result<Option<Connector>> {
    let mut stmt = conn.prepare_cached(&format!(
        "SELECT {COLUMNS} FROM connectors WHERE tenant_id = ?1 AND project_id = ?2 AND slug = ?3"
    ))?;
    Ok(stmt
        .query_row([tenant_id, project_id, slug], row_to_connector)
        .optional()?)
}

/// Deletes a connector by id or slug; `false` when the project has no such connector.
pub fn delete(conn: &Conn, tenant_id: &str, project_id: &str, id_or_slug: &str) -> Result<bool> {
    let Some(c) = get(conn, tenant_id, project_id, id_or_slug)? else {
        return Ok(false);
    };
    let n = conn.execute(
        "DELETE FROM connectors WHERE tenant_id = ?1 AND project_id = ?2 AND id = ?3",
        params![tenant_id, project_id, c.id],
    )?;
    Ok(n > 0)
}
