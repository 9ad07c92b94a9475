//! API keys over HTTP (`/v1/api-keys`, scope `admin`): create (the secret is shown only in this
//! response), list (never the secret), revoke (effective on the key's next request).
//!
//! A new key never exceeds the key that creates it: requested scopes must be a subset of the
//! creating key's effective scopes (403 otherwise), and a key requested without scopes (which
//! would mean "the developer's role") is given the creating key's scopes when that key is
//! restricted. Keys belong to the developer of the creating key, unless a tenant OWNER or ADMIN
//! names another developer of the tenant (`developerId`): that key never exceeds the creating
//! key nor that developer's own permissions.

use crate::auth::{developer_scopes, Role, Scope, Scopes};
use crate::error::{Error, Result};
use crate::fields::Fields;
use crate::http::{Ctx, Reply};
use crate::store::keys::{self, KeyRow};
use serde::Serialize;
use serde_json::{Map, Value};

/// A key as listed (never its secret; `key` only in the answer that creates it).
#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct KeyOut<'a> {
    id: &'a str,
    name: &'a str,
    prefix: &'a str,
    last4: &'a str,
    scopes: Vec<&'static str>,
    mode: &'static str,
    developer_id: &'a str,
    created_at: &'a str,
    last_used_at: Option<&'a str>,
    expires_at: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    key: Option<&'a str>,
}

impl<'a> From<&'a KeyRow> for KeyOut<'a> {
    fn from(k: &'a KeyRow) -> KeyOut<'a> {
        KeyOut {
            id: &k.id,
            name: &k.name,
            prefix: &k.prefix,
            last4: &k.last4,
            scopes: k.scopes.to_list(),
            mode: k.mode.as_str(),
            developer_id: &k.developer_id,
            created_at: &k.created_at,
            last_used_at: k.last_used_at.as_deref(),
            expires_at: k.expires_at.as_deref(),
            key: None,
        }
    }
}

#[derive(Serialize)]
struct KeyList<'a> {
    total: usize,
    keys: &'a [KeyOut<'a>],
    items: &'a [KeyOut<'a>],
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct KeyRevoked {
    id: String,
    revoked: bool,
    revoked_at: String,
}

/// A validated `POST /v1/keys` body.
struct NewKey {
    name: String,
    scopes: Scopes,
    mode: &'static str,
    style: &'static str,
    expires_at: Option<String>,
    developer: Option<String>,
}

impl NewKey {
    fn from_body(body: &Map<String, Value>) -> Result<NewKey> {
        let mut f = Fields::new(body);
        let name = match body.get("name") {
            Some(Value::String(s)) if !s.trim().is_empty() && s.len() <= 100 => {
                s.trim().to_string()
            }
            Some(Value::String(_)) => {
                f.error("name", "must be 1 to 100 characters");
                String::new()
            }
            None | Some(Value::Null) => {
                f.error("name", "is required");
                String::new()
            }
            Some(_) => {
                f.error("name", "must be a string");
                String::new()
            }
        };
        let (scope_field, scope_value) = match (body.get("scopes"), body.get("permissions")) {
            (Some(v), _) if !v.is_null() => ("scopes", Some(v)),
            (_, Some(v)) if !v.is_null() => ("permissions", Some(v)),
            _ => ("scopes", None),
        };
        let scopes = match scope_value {
            None => Scopes::EMPTY,
            Some(Value::Array(items)) => {
                let strs: Option<Vec<&str>> = items.iter().map(Value::as_str).collect();
                match strs.map(Scopes::parse_list) {
                    Some(Ok(s)) => s,
                    Some(Err(e)) => {
                        f.error(scope_field, e);
                        Scopes::EMPTY
                    }
                    None => {
                        f.error(scope_field, "must be an array of strings");
                        Scopes::EMPTY
                    }
                }
            }
            Some(_) => {
                f.error(scope_field, "must be an array of strings");
                Scopes::EMPTY
            }
        };
        let pick = |f: &mut Fields<'_>, field: &str, allowed: [&'static str; 2]| -> &'static str {
            match body.get(field) {
                None | Some(Value::Null) => allowed[0],
                Some(Value::String(s)) if allowed.contains(&s.as_str()) => {
                    if s == allowed[0] {
                        allowed[0]
                    } else {
                        allowed[1]
                    }
                }
                Some(_) => {
                    f.error(
                        field,
                        format!("must be '{}' or '{}'", allowed[0], allowed[1]),
                    );
                    allowed[0]
                }
            }
        };
        let mode = pick(&mut f, "mode", ["live", "test"]);
        let style = pick(&mut f, "style", ["hk", "hx"]);
        let expires_at = match body.get("expiresAt").or_else(|| body.get("expires_at")) {
            None | Some(Value::Null) => None,
            Some(Value::String(s)) => match crate::time::parse(s) {
                Some(t) if t > crate::time::now() => Some(crate::time::rfc3339(t)),
                Some(_) => {
                    f.error("expiresAt", "must be in the future");
                    None
                }
                None => {
                    f.error("expiresAt", "must be an RFC 3339 time");
                    None
                }
            },
            Some(_) => {
                f.error("expiresAt", "must be an RFC 3339 time string");
                None
            }
        };
        let developer = match body.get("developerId").or_else(|| body.get("developer_id")) {
            None | Some(Value::Null) => None,
            Some(Value::String(s)) if !s.trim().is_empty() && s.len() <= 64 => {
                Some(s.trim().to_string())
            }
            Some(_) => {
                f.error("developerId", "must be a developer id (dev_…)");
                None
            }
        };
        f.finish()?;
        Ok(NewKey {
            name,
            scopes,
            mode,
            style,
            expires_at,
            developer,
        })
    }
}

pub async fn create(ctx: Ctx) -> Result<Reply> {
    let p = ctx.principal()?.clone();
    p.require(Scope::Admin)?;
    let body = ctx.json_object(false)?;
    let NewKey {
        name,
        scopes,
        mode,
        style,
        expires_at,
        developer,
    } = NewKey::from_body(&body)?;
    let developer = developer.filter(|d| *d != p.developer_id);
    if developer.is_some() && p.role < Role::Admin {
        return Err(Error::Forbidden(
            "only a tenant OWNER or ADMIN creates keys for another developer".into(),
        ));
    }
    if !scopes.is_subset_of(p.scopes) {
        return Err(Error::Forbidden(
            "a key cannot have permissions its creator does not have".into(),
        ));
    }
    // A key without scopes has its developer's permissions. Created by a key that is itself
    // restricted, it would exceed that key, so it gets the creating key's permissions instead.
    let own_scopes = if scopes.is_empty() && p.scopes != p.grant {
        p.scopes
    } else {
        scopes
    };

    let key = keys::generate(style, mode);
    let secret = key.clone();
    let row = ctx
        .state
        .db
        .write(move |c| {
            let (developer_id, scopes) = match developer {
                None => (p.developer_id.clone(), own_scopes),
                Some(d) => {
                    let (role, project_admin) = keys::developer_grant(c, &p.tenant_id, &d)?
                        .ok_or_else(|| Error::not_found("developer"))?;
                    let theirs = developer_scopes(role, project_admin);
                    if !scopes.is_subset_of(theirs) {
                        return Err(Error::Forbidden(format!(
                            "a key cannot have permissions its developer does not have \
                             (their role {role} allows: {})",
                            theirs.to_list().join(", ")
                        )));
                    }
                    // Without scopes the key follows the developer's role, unless that would
                    // exceed the creating key: then it gets what both allow.
                    let scopes = if scopes.is_empty() && !theirs.is_subset_of(p.scopes) {
                        let both = theirs.intersect(p.scopes);
                        if both.is_empty() {
                            return Err(Error::Forbidden(
                                "this key and that developer share no permission to give".into(),
                            ));
                        }
                        both
                    } else {
                        scopes
                    };
                    (d, scopes)
                }
            };
            keys::insert(
                c,
                &p.tenant_id,
                &developer_id,
                &name,
                scopes,
                &secret,
                expires_at.as_deref(),
            )
        })
        .await?;
    Ok(Reply::created(KeyOut {
        key: Some(&key),
        ..KeyOut::from(&row)
    }))
}

pub async fn list(ctx: Ctx) -> Result<Reply> {
    let p = ctx.principal()?.clone();
    p.require(Scope::Admin)?;
    let rows = ctx
        .state
        .db
        .read(move |c| keys::list(c, &p.tenant_id, false))
        .await?;
    let items: Vec<KeyOut> = rows.iter().map(KeyOut::from).collect();
    Ok(Reply::ok(KeyList {
        total: items.len(),
        keys: &items,
        items: &items,
    }))
}

pub async fn revoke(ctx: Ctx) -> Result<Reply> {
    let p = ctx.principal()?.clone();
    p.require(Scope::Admin)?;
    let id = ctx.param(0).to_string();
    let key_id = id.clone();
    let done = ctx
        .state
        .db
        .write(move |c| keys::revoke(c, &p.tenant_id, &key_id))
        .await?;
    if !done {
        return Err(Error::not_found("API key"));
    }
    ctx.state.auth.evict_key_id(&id);
    Ok(Reply::ok(KeyRevoked {
        id,
        revoked: true,
        revoked_at: crate::time::now_rfc3339(),
    }))
}
