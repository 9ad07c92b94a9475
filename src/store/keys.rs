//! API keys: generation, format, hashing, storage and lookup.
//!
//! A key is `{hk|hx}_{live|test}_` followed by at least 32 base62 characters. Only its SHA-256 (hex)
//! is stored, with a display prefix and the last four characters.

use super::sql::{params, OptionalExtension};
use super::Conn;
use crate::domain::KeyMode;
use crate::error::{Error, Result};
use crate::ids;
use crate::perms::{Role, Scopes};
use crate::plans::Plan;
use crate::time::now_rfc3339;
use sha2::{Digest, Sha256};

/// Characters of randomness in generated keys.
const SECRET_LEN: usize = 40;

pub fn generate(style: &str, mode: &str) -> String {
    format!("{style}_{mode}_{}", ids::base62(SECRET_LEN))
}

/// `(style, mode)` of a well-formed key, e.g. `("hk", "live")`.
pub fn parse_format(key: &str) -> Option<(&'static str, &'static str)> {
    let style = match key.get(..3)? {
        "hk_" => "hk",
        "hx_" => "hx",
        _ => return None,
    };
    let rest = &key[3..];
    let (mode, secret) = if let Some(s) = rest.strip_prefix("live_") {
        ("live", s)
    } else if let Some(s) = rest.strip_prefix("test_") {
        ("test", s)
    } else {
        return None;
    };
    if secret.len() < 32 || secret.len() > 256 || !secret.bytes().all(|b| b.is_ascii_alphanumeric())
    {
        return None;
    }
    Some((style, mode))
}

pub fn hash(key: &str) -> String {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    let digest = Sha256::digest(key.as_bytes());
    let mut s = String::with_capacity(64);
    for b in digest {
        s.push(HEX[(b >> 4) as usize] as char);
        s.push(HEX[(b & 15) as usize] as char);
    }
    s
}

#[derive(Clone, Debug)]
pub struct KeyRow {
    pub id: String,
    pub tenant_id: String,
    pub developer_id: String,
    pub name: String,
    pub prefix: String,
    pub last4: String,
    pub scopes: Scopes,
    pub mode: KeyMode,
    pub created_at: String,
    pub last_used_at: Option<String>,
    pub expires_at: Option<String>,
    pub revoked_at: Option<String>,
}

const COLUMNS: &str =
    "id, tenant_id, developer_id, name, prefix, last4, scopes, mode, created_at, \
                       last_used_at, expires_at, revoked_at";

fn row_to_key(r: &super::sql::Row<'_>) -> super::sql::Result<KeyRow> {
    let id: String = r.get(0)?;
    let scopes: String = r.get(6)?;
    // An unknown scope is an error, never "no scopes" (which would mean the role's permissions).
    let scopes = Scopes::parse_list(scopes.split_whitespace()).map_err(|e| {
        super::sql::Error::Conversion(format!("api_keys row {id}, column scopes: {e}"))
    })?;
    Ok(KeyRow {
        mode: super::spelled(r, 7, "api_keys", &id)?,
        id,
        tenant_id: r.get(1)?,
        developer_id: r.get(2)?,
        name: r.get(3)?,
        prefix: r.get(4)?,
        last4: r.get(5)?,
        scopes,
        created_at: r.get(8)?,
        last_used_at: r.get(9)?,
        expires_at: r.get(10)?,
        revoked_at: r.get(11)?,
    })
}

/// Stores a key (its hash). The key must be well-formed; a duplicate is a conflict.
pub fn insert(
    conn: &Conn,
    tenant_id: &str,
    developer_id: &str,
    name: &str,
    scopes: Scopes,
    key: &str,
    expires_at: Option<&str>,
) -> Result<KeyRow> {
    let (style, mode) =
        parse_format(key).ok_or_else(|| Error::validation("key", "malformed API key"))?;
    let id = ids::new("key");
    let now = now_rfc3339();
    let prefix = format!("{style}_{mode}_");
    let last4 = key[key.len() - 4..].to_string();
    let r = conn.execute(
        "INSERT INTO api_keys(id, tenant_id, developer_id, name, key_hash, prefix, last4, scopes,
                              mode, created_at, expires_at)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11)",
        params![
            id,
            tenant_id,
            developer_id,
            name,
            hash(key),
            prefix,
            last4,
            scopes.to_list().join(" "),
            mode,
            now,
            expires_at
        ],
    );
    match r {
        Ok(_) => {}
        Err(e) if e.is_unique_violation() => {
            return Err(Error::Conflict("this API key already exists".into()))
        }
        Err(e) => return Err(e.into()),
    }
    Ok(KeyRow {
        id,
        tenant_id: tenant_id.into(),
        developer_id: developer_id.into(),
        name: name.into(),
        prefix,
        last4,
        scopes,
        mode: mode.parse().map_err(Error::Internal)?,
        created_at: now,
        last_used_at: None,
        expires_at: expires_at.map(str::to_string),
        revoked_at: None,
    })
}

/// The tenant's keys, newest first; revoked keys included when asked.
pub fn list(conn: &Conn, tenant_id: &str, include_revoked: bool) -> Result<Vec<KeyRow>> {
    let sql = format!(
        "SELECT {COLUMNS} FROM api_keys WHERE tenant_id = ?1 {} ORDER BY created_at DESC, id DESC",
        if include_revoked {
            ""
        } else {
            "AND revoked_at IS NULL"
        }
    );
    let mut stmt = conn.prepare(&sql)?;
    let rows = stmt.query_map([tenant_id], row_to_key)?;
    Ok(rows.collect::<super::sql::Result<_>>()?)
}

pub fn get(conn: &Conn, tenant_id: &str, id: &str) -> Result<Option<KeyRow>> {
    Ok(conn
        .query_row(
            &format!("SELECT {COLUMNS} FROM api_keys WHERE tenant_id = ?1 AND id = ?2"),
            [tenant_id, id],
            row_to_key,
        )
        .optional()?)
}

/// Revokes a key of the tenant; `false` when there is no such (unrevoked) key.
pub fn revoke(conn: &Conn, tenant_id: &str, id: &str) -> Result<bool> {
    let n = conn.execute(
        "UPDATE api_keys SET revoked_at = ?3 WHERE tenant_id = ?1 AND id = ?2 AND revoked_at IS NULL",
        params![tenant_id, id, now_rfc3339()],
    )?;
    Ok(n > 0)
}

/// Everything authentication needs about a key, by hash.
#[derive(Clone, Debug)]
pub struct KeyAuth {
    pub key_hash: String,
    pub key: KeyRow,
    pub role: Role,
    /// The key's developer is an OWNER or ADMIN of at least one project.
    pub project_admin: bool,
    pub plan: Plan,
    pub limits_json: Option<String>,
}

/// Whether developer `k.developer_id` administers a project (OWNER or ADMIN membership).
const PROJECT_ADMIN_SQL: &str = "EXISTS (SELECT 1 FROM project_members m
      WHERE m.tenant_id = k.tenant_id AND m.developer_id = k.developer_id
        AND m.role IN ('OWNER', 'ADMIN'))";

/// A developer's tenant role and whether they administer a project, or `None` when the
/// developer is not in the tenant.
pub fn developer_grant(
    conn: &Conn,
    tenant_id: &str,
    developer_id: &str,
) -> Result<Option<(Role, bool)>> {
    Ok(conn
        .query_row(
            "SELECT d.role, EXISTS (SELECT 1 FROM project_members m
                 WHERE m.tenant_id = d.tenant_id AND m.developer_id = d.id
                   AND m.role IN ('OWNER', 'ADMIN'))
             FROM developers d WHERE d.tenant_id = ?1 AND d.id = ?2",
            [tenant_id, developer_id],
            |r| Ok((super::spelled(r, 0, "developers", developer_id)?, r.get(1)?)),
        )
        .optional()?)
}

pub fn lookup(conn: &Conn, key_hash: &str) -> Result<Option<KeyAuth>> {
    let sql = format!(
        "SELECT {cols}, d.role, t.plan, t.limits_json, k.key_hash, {admin}
         FROM api_keys k JOIN developers d ON d.id = k.developer_id AND d.tenant_id = k.tenant_id
                         JOIN tenants t ON t.id = k.tenant_id
         WHERE k.key_hash = ?1",
        admin = PROJECT_ADMIN_SQL,
        cols = COLUMNS
            .split(", ")
            .map(|c| format!("k.{}", c.trim()))
            .collect::<Vec<_>>()
            .join(", ")
    );
    let mut stmt = conn.prepare_cached(&sql)?;
    Ok(stmt
        .query_row([key_hash], |r| {
            let key = row_to_key(r)?;
            Ok(KeyAuth {
                role: super::spelled(r, 12, "developers", &key.developer_id)?,
                plan: super::spelled(r, 13, "tenants", &key.tenant_id)?,
                key,
                limits_json: r.get(14)?,
                key_hash: r.get(15)?,
                project_admin: r.get(16)?,
            })
        })
        .optional()?)
}

/// Records use of a key (called at most about once a minute per key).
pub fn touch(conn: &Conn, id: &str, at: &str) -> Result<()> {
    conn.execute(
        "UPDATE api_keys SET last_used_at = ?2 WHERE id = ?1",
        params![id, at],
    )?;
    Ok(())
}

#[cfg(test)]
mod tests {
    /// The stored form of a key is the lowercase hex SHA-256 of the whole key.
    #[test]
    fn hash_is_lowercase_hex_sha256() {
        assert_eq!(
            super::hash("abc"),
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
    }
}
