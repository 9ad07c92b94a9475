//! Rows of the global connector catalogue (`crate::catalog` decides what goes in).

use super::sql::{params, OptionalExtension};
use super::Conn;
use crate::error::Result;
use crate::time::now_rfc3339;

/// One catalogue entry.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Entry {
    pub slug: String,
    pub name: String,
    pub category: String,
    pub status: String,
    pub mcp_url: Option<String>,
    pub builtin: bool,
}

/// Inserts or refreshes the shipped entries (slug, name, category, status, MCP endpoint); rows
/// an operator wrote are left alone.
pub fn merge_builtin(conn: &Conn, entries: &[(&str, &str, &str, &str, &str)]) -> Result<()> {
    let now = now_rfc3339();
    let mut stmt = conn.prepare_cached(
        "INSERT INTO connector_catalog(slug, name, category, status, mcp_url, builtin, hidden,
                                       created_at)
         VALUES (?1, ?2, ?3, ?4, ?5, 1, 0, ?6)
         ON CONFLICT(slug) DO UPDATE SET name = excluded.name, category = excluded.category,
             status = excluded.status, mcp_url = excluded.mcp_url
         WHERE connector_catalog.builtin = 1",
    )?;
    for (slug, name, category, status, url) in entries {
        stmt.execute(params![slug, name, category, status, url, now])?;
    }
    Ok(())
}

fn row_to_entry(r: &super::sql::Row<'_>) -> super::sql::Result<Entry> {
    Ok(Entry {
        slug: r.get(0)?,
        name: r.get(1)?,
        category: r.get(2)?,
        status: r.get(3)?,
        mcp_url: r.get(4)?,
        builtin: r.get::<i64>(5)? != 0,
    })
}

/// Visible entries ordered by name, optionally of one category (case-insensitive).
pub fn list(conn: &Conn, category: Option<&str>) -> Result<Vec<Entry>> {
    let mut stmt = conn.prepare_cached(
        "SELECT slug, name, category, status, mcp_url, builtin FROM connector_catalog
         WHERE hidden = 0 AND (category = ?1 COLLATE NOCASE OR ?1 IS NULL)
         ORDER BY name COLLATE NOCASE, slug",
    )?;
    let rows = stmt.query_map([category], row_to_entry)?;
    Ok(rows.collect::<super::sql::Result<_>>()?)
}

/// A visible entry by slug.
pub fn get(conn: &Conn, slug: &str) -> Result<Option<Entry>> {
    let mut stmt = conn.prepare_cached(
        "SELECT slug, name, category, status, mcp_url, builtin FROM connector_catalog
         WHERE slug = ?1 AND hidden = 0",
    )?;
    Ok(stmt.query_row([slug], row_to_entry).optional()?)
}

/// Stores an operator entry (validated by the caller), replacing and showing any row of its slug.
pub fn put_operator(conn: &Conn, e: &Entry) -> Result<()> {
    conn.execute(
        "INSERT INTO connector_catalog(slug, name, category, status, mcp_url, builtin, hidden,
                                       created_at)
         VALUES (?1, ?2, ?3, ?4, ?5, 0, 0, ?6)
         ON CONFLICT(slug) DO UPDATE SET name = excluded.name, category = excluded.category,
             status = excluded.status, mcp_url = excluded.mcp_url, builtin = 0, hidden = 0",
        params![
            e.slug,
            e.name,
            e.category,
            e.status,
            e.mcp_url,
            now_rfc3339()
        ],
    )?;
    Ok(())
}

/// Removes an entry: a shipped one is hidden (the next merge does not restore it), an operator one
/// deleted.
pub fn remove(conn: &Conn, e: &Entry) -> Result<()> {
    if e.builtin {
        conn.execute(
            "UPDATE connector_catalog SET hidden = 1 WHERE slug = ?1",
            [&e.slug],
        )?;
    } else {
        conn.execute("DELETE FROM connector_catalog WHERE slug = ?1", [&e.slug])?;
    }
    Ok(())
}
