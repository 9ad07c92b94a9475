//! The vault's rows: vaults, items (metadata and ciphertext only) and the audit trail.
//!
//! Invariants: every function takes the tenant first and only touches that tenant's rows (an id
//! of another tenant is simply not found); a tenant's first vault is its "Main Vault", created on
//! first use (`ensure_main`); items and audit rows go with their tenant, items with their vault.
//! Nothing here sees a plaintext value: the caller seals and opens (`crate::vault`).

use super::sql::{params, OptionalExtension};
use super::Conn;
use crate::error::{Error, Result};
use crate::ids;
use crate::time::now_rfc3339;

pub const MAIN_VAULT: &str = "Main Vault";
/// The `meta` key holding the fingerprint of the key the vault is encrypted with.
pub const FINGERPRINT_META: &str = "vault_key_fingerprint";

#[derive(Clone, Debug)]
pub struct Vault {
    pub id: String,
    pub name: String,
    pub description: Option<String>,
    pub sensitivity: String,
    pub item_count: i64,
    pub created_at: String,
}

#[derive(Clone, Debug)]
pub struct Item {
    pub id: String,
    pub vault_id: String,
    pub vault_name: String,
    pub title: String,
    pub item_type: String,
    pub service_name: Option<String>,
    pub tags: Vec<String>,
    pub description: Option<String>,
    pub sensitivity: String,
    pub created_at: String,
    pub updated_at: String,
}

/// An item's sealed value.
pub struct Sealed {
    pub nonce: Vec<u8>,
    pub ciphertext: Vec<u8>,
}

/// The metadata of a new or changed item (validated by the caller).
#[derive(Clone, Debug, Default)]
pub struct ItemFields {
    pub title: Option<String>,
    pub item_type: Option<String>,
    pub service_name: Option<Option<String>>,
    pub tags: Option<Vec<String>>,
    pub description: Option<Option<String>>,
    pub sensitivity: Option<String>,
}

const VAULT_COLUMNS: &str = "v.id, v.name, v.description, v.sensitivity, v.created_at,
    (SELECT COUNT(*) FROM vault_items i WHERE i.tenant_id = v.tenant_id AND i.vault_id = v.id)";

fn row_to_vault(r: &super::sql::Row<'_>) -> super::sql::Result<Vault> {
    Ok(Vault {
        id: r.get(0)?,
        name: r.get(1)?,
        description: r.get(2)?,
        sensitivity: r.get(3)?,
        created_at: r.get(4)?,
        item_count: r.get(5)?,
    })
}

const ITEM_COLUMNS: &str = "i.id, i.vault_id, v.name, i.title, i.item_type, i.service_name,
    i.tags, i.description, i.sensitivity, i.created_at, i.updated_at";

fn row_to_item(r: &super::sql::Row<'_>) -> super::sql::Result<Item> {
    let tags: String = r.get(6)?;
    Ok(Item {
        id: r.get(0)?,
        vault_id: r.get(1)?,
        vault_name: r.get(2)?,
        title: r.get(3)?,
        item_type: r.get(4)?,
        service_name: r.get(5)?,
        tags: serde_json::from_str(&tags)
            .map_err(|e| super::sql::Error::Conversion(format!("vault_items column tags: {e}")))?,
        description: r.get(7)?,
        sensitivity: r.get(8)?,
        created_at: r.get(9)?,
        updated_at: r.get(10)?,
    })
}

/// The tenant's vaults, oldest first; the "Main Vault" is created when the tenant has none.
pub fn ensure_main(conn: &Conn, tenant_id: &str) -> Result<()> {
    let any: Option<String> = conn
        .query_row(
            "SELECT id FROM vaults WHERE tenant_id = ?1 LIMIT 1",
            [tenant_id],
            |r| r.get(0),
        )
        .optional()?;
    if any.is_none() {
        create(conn, tenant_id, MAIN_VAULT, None, "high")?;
    }
    Ok(())
}

pub fn create(
    conn: &Conn,
    tenant_id: &str,
    name: &str,
    description: Option<&str>,
    sensitivity: &str,
) -> Result<Vault> {
    let id = ids::new("vlt");
    let now = now_rfc3339();
    let r = conn.execute(
        "INSERT INTO vaults(id, tenant_id, name, description, sensitivity, created_at)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
        params![id, tenant_id, name, description, sensitivity, now],
    );
    match r {
        Err(e) if e.is_unique_violation() => {
            return Err(Error::Conflict(format!(
                "a vault named '{}' already exists",
                crate::error::echo(name)
            )))
        }
        r => r?,
    };
    Ok(Vault {
        id,
        name: name.into(),
        description: description.map(str::to_string),
        sensitivity: sensitivity.into(),
        item_count: 0,
        created_at: now,
    })
}

pub fn list(conn: &Conn, tenant_id: &str) -> Result<Vec<Vault>> {
    let mut stmt = conn.prepare_cached(&format!(
        "SELECT {VAULT_COLUMNS} FROM vaults v WHERE v.tenant_id = ?1 ORDER BY v.created_at, v.id"
    ))?;
    let rows = stmt.query_map([tenant_id], row_to_vault)?;
    Ok(rows.collect::<super::sql::Result<_>>()?)
}

pub fn get(conn: &Conn, tenant_id: &str, id: &str) -> Result<Option<Vault>> {
    Ok(conn
        .query_row(
            &format!("SELECT {VAULT_COLUMNS} FROM vaults v WHERE v.tenant_id = ?1 AND v.id = ?2"),
            [tenant_id, id],
            row_to_vault,
        )
        .optional()?)
}

/// Deletes a vault and its items; `false` when there is no such vault.
pub fn delete(conn: &Conn, tenant_id: &str, id: &str) -> Result<bool> {
    conn.execute(
        "DELETE FROM vault_items WHERE tenant_id = ?1 AND vault_id = ?2",
        [tenant_id, id],
    )?;
    Ok(conn.execute(
        "DELETE FROM vaults WHERE tenant_id = ?1 AND id = ?2",
        [tenant_id, id],
    )? > 0)
}

/// Stores a new item under `id` (the id its value was sealed for).
pub fn insert_item(
    conn: &Conn,
    tenant_id: &str,
    vault_id: &str,
    id: &str,
    f: &ItemFields,
    sealed: &Sealed,
) -> Result<Item> {
    let now = now_rfc3339();
    let tags = serde_json::to_string(&f.tags.clone().unwrap_or_default())?;
    conn.execute(
        "INSERT INTO vault_items(id, tenant_id, vault_id, title, item_type, service_name, tags,
                                 description, sensitivity, nonce, ciphertext, created_at, updated_at)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?12)",
        params![
            id,
            tenant_id,
            vault_id,
            f.title.as_deref().unwrap_or_default(),
            f.item_type.as_deref().unwrap_or("other"),
            f.service_name.clone().flatten(),
            tags,
            f.description.clone().flatten(),
            f.sensitivity.as_deref().unwrap_or("medium"),
            sealed.nonce,
            sealed.ciphertext,
            now
        ],
    )?;
    get_item(conn, tenant_id, id)?.ok_or_else(|| Error::Internal("inserted item vanished".into()))
}

pub fn get_item(conn: &Conn, tenant_id: &str, id: &str) -> Result<Option<Item>> {
    Ok(conn
        .query_row(
            &format!(
                "SELECT {ITEM_COLUMNS} FROM vault_items i JOIN vaults v ON v.id = i.vault_id AND v.tenant_id = i.tenant_id
                 WHERE i.tenant_id = ?1 AND i.id = ?2"
            ),
            [tenant_id, id],
            row_to_item,
        )
        .optional()?)
}

/// An item with its sealed value (for reveal).
pub fn get_sealed(conn: &Conn, tenant_id: &str, id: &str) -> Result<Option<(Item, Sealed)>> {
    let Some(item) = get_item(conn, tenant_id, id)? else {
        return Ok(None);
    };
    let sealed = conn.query_row(
        "SELECT nonce, ciphertext FROM vault_items WHERE tenant_id = ?1 AND id = ?2",
        [tenant_id, id],
        |r| {
            Ok(Sealed {
                nonce: r.get(0)?,
                ciphertext: r.get(1)?,
            })
        },
    )?;
    Ok(Some((item, sealed)))
}

/// The items of one vault, or of all the tenant's vaults, oldest first.
pub fn list_items(conn: &Conn, tenant_id: &str, vault_id: Option<&str>) -> Result<Vec<Item>> {
    let mut stmt = conn.prepare_cached(&format!(
        "SELECT {ITEM_COLUMNS} FROM vault_items i JOIN vaults v ON v.id = i.vault_id AND v.tenant_id = i.tenant_id
         WHERE i.tenant_id = ?1 AND (i.vault_id = ?2 OR ?2 IS NULL)
         ORDER BY i.created_at, i.id"
    ))?;
    let rows = stmt.query_map(params![tenant_id, vault_id], row_to_item)?;
    Ok(rows.collect::<super::sql::Result<_>>()?)
}

/// Changes an item's metadata and, when `sealed` is given, its value. `None` when not found.
pub fn update_item(
    conn: &Conn,
    tenant_id: &str,
    id: &str,
    f: &ItemFields,
    sealed: Option<&Sealed>,
) -> Result<Option<Item>> {
    let Some(old) = get_item(conn, tenant_id, id)? else {
        return Ok(None);
    };
    let tags = serde_json::to_string(f.tags.as_ref().unwrap_or(&old.tags))?;
    conn.execute(
        "UPDATE vault_items SET title = ?3, item_type = ?4, service_name = ?5, tags = ?6,
                description = ?7, sensitivity = ?8, updated_at = ?9
         WHERE tenant_id = ?1 AND id = ?2",
        params![
            tenant_id,
            id,
            f.title.as_deref().unwrap_or(&old.title),
            f.item_type.as_deref().unwrap_or(&old.item_type),
            f.service_name.clone().unwrap_or(old.service_name),
            tags,
            f.description.clone().unwrap_or(old.description),
            f.sensitivity.as_deref().unwrap_or(&old.sensitivity),
            now_rfc3339()
        ],
    )?;
    if let Some(s) = sealed {
        conn.execute(
            "UPDATE vault_items SET nonce = ?3, ciphertext = ?4 WHERE tenant_id = ?1 AND id = ?2",
            params![tenant_id, id, s.nonce, s.ciphertext],
        )?;
    }
    get_item(conn, tenant_id, id)
}

pub fn delete_item(conn: &Conn, tenant_id: &str, id: &str) -> Result<bool> {
    Ok(conn.execute(
        "DELETE FROM vault_items WHERE tenant_id = ?1 AND id = ?2",
        [tenant_id, id],
    )? > 0)
}

/// Every item's sealed value, across tenants (key rotation): (tenant, id, sealed).
pub fn all_sealed(conn: &Conn) -> Result<Vec<(String, String, Sealed)>> {
    let mut stmt = conn.prepare("SELECT tenant_id, id, nonce, ciphertext FROM vault_items")?;
    let rows = stmt.query_map([], |r| {
        Ok((
            r.get(0)?,
            r.get(1)?,
            Sealed {
                nonce: r.get(2)?,
                ciphertext: r.get(3)?,
            },
        ))
    })?;
    Ok(rows.collect::<super::sql::Result<_>>()?)
}

/// Replaces an item's sealed value (key rotation).
pub fn reseal(conn: &Conn, tenant_id: &str, id: &str, sealed: &Sealed) -> Result<()> {
    conn.execute(
        "UPDATE vault_items SET nonce = ?3, ciphertext = ?4 WHERE tenant_id = ?1 AND id = ?2",
        params![tenant_id, id, sealed.nonce, sealed.ciphertext],
    )?;
    Ok(())
}

/// How many items the vault holds, across tenants.
pub fn item_count(conn: &Conn) -> Result<i64> {
    Ok(conn.query_row("SELECT COUNT(*) FROM vault_items", [], |r| r.get(0))?)
}

/// One audit row.
#[derive(Clone, Debug)]
pub struct Audit {
    pub id: String,
    pub item_id: Option<String>,
    pub action: String,
    pub key_id: Option<String>,
    pub request_id: Option<String>,
    pub ip: Option<String>,
    pub reason: Option<String>,
    pub at: String,
}

/// Records what happened to an item (or an attempt on one).
pub fn audit(conn: &Conn, tenant_id: &str, a: &Audit) -> Result<()> {
    conn.execute(
        "INSERT INTO vault_audit(id, tenant_id, item_id, action, key_id, request_id, ip, reason, at)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9)",
        params![
            a.id, tenant_id, a.item_id, a.action, a.key_id, a.request_id, a.ip, a.reason, a.at
        ],
    )?;
    Ok(())
}

/// Audit rows, newest first, after the row `cursor` (an audit id) when given; one more than
/// `limit` is returned when there is a next page.
pub fn audit_page(
    conn: &Conn,
    tenant_id: &str,
    item_id: Option<&str>,
    cursor: Option<&str>,
    limit: usize,
) -> Result<Vec<Audit>> {
    let before: i64 = match cursor {
        None => i64::MAX,
        Some(c) => conn
            .query_row(
                "SELECT seq FROM vault_audit WHERE tenant_id = ?1 AND id = ?2",
                [tenant_id, c],
                |r| r.get(0),
            )
            .optional()?
            .ok_or_else(|| Error::bad_query("cursor", "is not an audit id of this tenant"))?,
    };
    let mut stmt = conn.prepare_cached(
        "SELECT id, item_id, action, key_id, request_id, ip, reason, at FROM vault_audit
         WHERE tenant_id = ?1 AND seq < ?2 AND (item_id = ?3 OR ?3 IS NULL)
         ORDER BY seq DESC LIMIT ?4",
    )?;
    let rows = stmt.query_map(
        params![tenant_id, before, item_id, (limit + 1) as i64],
        |r| {
            Ok(Audit {
                id: r.get(0)?,
                item_id: r.get(1)?,
                action: r.get(2)?,
                key_id: r.get(3)?,
                request_id: r.get(4)?,
                ip: r.get(5)?,
                reason: r.get(6)?,
                at: r.get(7)?,
            })
        },
    )?;
    Ok(rows.collect::<super::sql::Result<_>>()?)
}
