//! The vault (docs/api.md "Vault"): `POST /v1/vault/query`, `POST /v1/vault/query/{id}/reveal`,
//! vault and item management for `admin` keys, and the audit trail.
//!
//! Invariants:
//! - A value leaves the server only in a reveal's answer. Query, listings, item answers, errors
//!   and logs carry metadata only; values never enter the search index or synthesize.
//! - Query matches metadata only (title, service, tags, description, type), each match in both
//!   spellings (snake_case for the Python SDK, camelCase for the JS SDK).
//! - Reveal needs `vault:reveal` (checked here, not before routing, so a refusal is audited),
//!   has its own rate limit per key, and every reveal and refused reveal leaves an audit row, as
//!   do creating, changing and deleting items.
//! - Every tenant has a "Main Vault" from its first use of the vault.

use super::wire::CursorPage;
use crate::auth::{Principal, Scope};
use crate::error::{Error, Result};
use crate::fields::Fields;
use crate::http::{Ctx, Reply};
use crate::store::vault::{self as store, Audit, Item, ItemFields, Sealed, Vault};
use serde::Serialize;
use serde_json::Value;

const ITEM_TYPES: [&str; 6] = [
    "api_key",
    "password",
    "token",
    "certificate",
    "ssh_key",
    "other",
];
const SENSITIVITIES: [&str; 4] = ["low", "medium", "high", "critical"];
const MAX_VALUE_BYTES: usize = 64 * 1024;
const MAX_TAGS: usize = 20;

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct VaultOut<'a> {
    id: &'a str,
    name: &'a str,
    description: Option<&'a str>,
    sensitivity: &'a str,
    item_count: i64,
    created_at: &'a str,
}

impl<'a> From<&'a Vault> for VaultOut<'a> {
    fn from(v: &'a Vault) -> VaultOut<'a> {
        VaultOut {
            id: &v.id,
            name: &v.name,
            description: v.description.as_deref(),
            sensitivity: &v.sensitivity,
            item_count: v.item_count,
            created_at: &v.created_at,
        }
    }
}

/// An item's description (never its value).
#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct ItemOut<'a> {
    id: &'a str,
    vault_id: &'a str,
    vault_name: &'a str,
    title: &'a str,
    item_type: &'a str,
    service_name: Option<&'a str>,
    tags: &'a [String],
    description: Option<&'a str>,
    sensitivity: &'a str,
    created_at: &'a str,
    updated_at: &'a str,
}

impl<'a> From<&'a Item> for ItemOut<'a> {
    fn from(i: &'a Item) -> ItemOut<'a> {
        ItemOut {
            id: &i.id,
            vault_id: &i.vault_id,
            vault_name: &i.vault_name,
            title: &i.title,
            item_type: &i.item_type,
            service_name: i.service_name.as_deref(),
            tags: &i.tags,
            description: i.description.as_deref(),
            sensitivity: &i.sensitivity,
            created_at: &i.created_at,
            updated_at: &i.updated_at,
        }
    }
}

/// A query match in both spellings the SDKs read.
#[derive(Serialize)]
struct MatchOut<'a> {
    id: &'a str,
    vault_id: &'a str,
    #[serde(rename = "vaultId")]
    vault_id_camel: &'a str,
    vault_name: &'a str,
    #[serde(rename = "vaultName")]
    vault_name_camel: &'a str,
    title: &'a str,
    item_type: &'a str,
    #[serde(rename = "itemType")]
    item_type_camel: &'a str,
    service_name: Option<&'a str>,
    #[serde(rename = "serviceName")]
    service_name_camel: Option<&'a str>,
    tags: &'a [String],
    sensitivity: &'a str,
    description: Option<&'a str>,
    created_at: &'a str,
    #[serde(rename = "createdAt")]
    created_at_camel: &'a str,
    relevance: f64,
}

impl<'a> MatchOut<'a> {
    fn new(i: &'a Item, relevance: f64) -> MatchOut<'a> {
        MatchOut {
            id: &i.id,
            vault_id: &i.vault_id,
            vault_id_camel: &i.vault_id,
            vault_name: &i.vault_name,
            vault_name_camel: &i.vault_name,
            title: &i.title,
            item_type: &i.item_type,
            item_type_camel: &i.item_type,
            service_name: i.service_name.as_deref(),
            service_name_camel: i.service_name.as_deref(),
            tags: &i.tags,
            sensitivity: &i.sensitivity,
            description: i.description.as_deref(),
            created_at: &i.created_at,
            created_at_camel: &i.created_at,
            relevance,
        }
    }
}

#[derive(Serialize)]
struct Matches<'a> {
    matches: Vec<MatchOut<'a>>,
    total: usize,
    query: &'a str,
}

#[derive(Serialize)]
struct Revealed<'a> {
    value: &'a str,
    title: &'a str,
    id: &'a str,
}

#[derive(Serialize)]
struct VaultList<'a> {
    vaults: Vec<VaultOut<'a>>,
    total: usize,
}

#[derive(Serialize)]
struct ItemList<'a> {
    items: Vec<ItemOut<'a>>,
    total: usize,
}

#[derive(Serialize)]
struct Deleted {
    id: String,
    deleted: bool,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct AuditOut<'a> {
    id: &'a str,
    item_id: Option<&'a str>,
    action: &'a str,
    key_id: Option<&'a str>,
    request_id: Option<&'a str>,
    ip: Option<&'a str>,
    reason: Option<&'a str>,
    at: &'a str,
}

fn audit_row(
    ctx: &Ctx,
    p: &Principal,
    item_id: Option<&str>,
    action: &str,
    reason: Option<&str>,
) -> Audit {
    Audit {
        id: crate::ids::new("vau"),
        item_id: item_id.map(str::to_string),
        action: action.to_string(),
        key_id: Some(p.key_id.clone()),
        request_id: Some(ctx.request_id.clone()),
        ip: Some(ctx.peer.to_string()),
        reason: reason.map(str::to_string),
        at: crate::time::now_rfc3339(),
    }
}

/// Writes an audit row on its own (a refused reveal, whose request changes nothing else).
async fn record(ctx: &Ctx, tenant: &str, a: Audit) -> Result<()> {
    let tenant = tenant.to_string();
    ctx.state
        .db
        .write(move |c| store::audit(c, &tenant, &a))
        .await
}

/// Lower-case words of `s` (letters and digits).
fn words(s: &str) -> Vec<String> {
    s.split(|c: char| !c.is_alphanumeric())
        .filter(|w| !w.is_empty())
        .map(str::to_lowercase)
        .collect()
}

/// How well an item's metadata matches the query words, 0–1 (0: no word matches). A word found
/// in the title or service counts fully, elsewhere half; a word matches a metadata word it
/// starts (so "open" finds "openai").
fn relevance(i: &Item, query: &[String]) -> f64 {
    if query.is_empty() {
        return 1.0;
    }
    let strong: Vec<String> = words(&i.title)
        .into_iter()
        .chain(words(i.service_name.as_deref().unwrap_or("")))
        .collect();
    let weak: Vec<String> = i
        .tags
        .iter()
        .flat_map(|t| words(t))
        .chain(words(i.description.as_deref().unwrap_or("")))
        .chain(words(&i.item_type.replace('_', " ")))
        .chain(words(&i.item_type))
        .collect();
    let hit = |pool: &[String], q: &str| pool.iter().any(|w| w.starts_with(q));
    let score: f64 = query
        .iter()
        .map(|q| {
            if hit(&strong, q) {
                1.0
            } else if hit(&weak, q) {
                0.5
            } else {
                0.0
            }
        })
        .sum();
    (score / query.len() as f64 * 1000.0).round() / 1000.0
}

fn string_list(f: &mut Fields<'_>, field: &str) -> Option<Vec<String>> {
    match f.given(field) {
        None | Some(Value::Null) => None,
        Some(Value::Array(a)) if a.len() <= MAX_TAGS => {
            let mut out = Vec::new();
            for (i, v) in a.iter().enumerate() {
                match v.as_str() {
                    Some(s) if !s.trim().is_empty() && s.chars().count() <= 50 => {
                        if !out.iter().any(|x: &String| x == s.trim()) {
                            out.push(s.trim().to_string());
                        }
                    }
                    _ => f.error(
                        &format!("{field}[{i}]"),
                        "must be a string of 1 to 50 characters",
                    ),
                }
            }
            Some(out)
        }
        Some(_) => {
            f.error(
                field,
                format!("must be an array of at most {MAX_TAGS} strings"),
            );
            None
        }
    }
}

fn one_of(f: &mut Fields<'_>, field: &str, allowed: &[&str]) -> Option<String> {
    match f.given(field) {
        None | Some(Value::Null) => None,
        Some(Value::String(s)) if allowed.contains(&s.as_str()) => Some(s.clone()),
        Some(_) => {
            f.error(field, format!("must be one of {}", allowed.join(", ")));
            None
        }
    }
}

/// An optional text field: `Some(None)` when sent as null, `None` when absent.
fn text(f: &mut Fields<'_>, field: &str, max: usize) -> Option<Option<String>> {
    match f.given(field) {
        None => None,
        Some(Value::Null) => Some(None),
        Some(Value::String(s)) if s.chars().count() <= max => {
            Some(Some(s.trim().to_string()).filter(|s| !s.is_empty()))
        }
        Some(_) => {
            f.error(
                field,
                format!("must be a string of at most {max} characters"),
            );
            None
        }
    }
}

/// The value of an item: a non-empty string of at most `MAX_VALUE_BYTES` (never echoed).
fn value_field(f: &mut Fields<'_>, required: bool) -> Option<String> {
    match f.given("value") {
        None | Some(Value::Null) if required => {
            f.error("value", "is required");
            None
        }
        None | Some(Value::Null) => None,
        Some(Value::String(s)) if !s.is_empty() && s.len() <= MAX_VALUE_BYTES => Some(s.clone()),
        Some(_) => {
            f.error(
                "value",
                format!("must be a string of 1 to {MAX_VALUE_BYTES} bytes"),
            );
            None
        }
    }
}

pub async fn query(ctx: Ctx) -> Result<Reply> {
    let p = ctx.principal()?.clone();
    p.require(Scope::Read)?;
    let body = ctx.json_object(true)?;
    let mut f = Fields::new(&body);
    let q = match f.given("query") {
        None | Some(Value::Null) => String::new(),
        Some(Value::String(s)) if s.chars().count() <= 1000 => s.clone(),
        Some(_) => {
            f.error("query", "must be a string of at most 1000 characters");
            String::new()
        }
    };
    let limit = match f.given("limit") {
        None | Some(Value::Null) => 20,
        Some(v) => match v.as_u64() {
            Some(n @ 1..=50) => n as usize,
            _ => {
                f.error("limit", "must be an integer from 1 to 50");
                20
            }
        },
    };
    let tags = string_list(&mut f, "tags").unwrap_or_default();
    let item_type = one_of(&mut f, "itemType", &ITEM_TYPES)
        .or_else(|| one_of(&mut f, "item_type", &ITEM_TYPES));
    f.finish()?;
    let tenant = p.tenant_id.clone();
    let items = ctx
        .state
        .db
        .read(move |c| store::list_items(c, &tenant, None))
        .await?;
    let qwords = words(&q);
    let mut scored: Vec<(f64, &Item)> = items
        .iter()
        .filter(|i| item_type.as_deref().map_or(true, |t| i.item_type == t))
        .filter(|i| tags.iter().all(|t| i.tags.contains(t)))
        .map(|i| (relevance(i, &qwords), i))
        .filter(|(r, _)| *r > 0.0)
        .collect();
    // Best first; among equals, newest first.
    scored.sort_by(|a, b| {
        b.0.total_cmp(&a.0)
            .then_with(|| b.1.created_at.cmp(&a.1.created_at))
            .then_with(|| b.1.id.cmp(&a.1.id))
    });
    let total = scored.len();
    let matches = scored
        .into_iter()
        .take(limit)
        .map(|(r, i)| MatchOut::new(i, r))
        .collect();
    Ok(Reply::ok(Matches {
        matches,
        total,
        query: &q,
    }))
}

pub async fn reveal(ctx: Ctx) -> Result<Reply> {
    let p = ctx.principal()?.clone();
    let item_id = ctx.param(0).to_string();
    let tenant = p.tenant_id.clone();
    // A refusal is on record before it is answered.
    let deny = |reason: &'static str, err: Error| {
        let row = audit_row(&ctx, &p, Some(&item_id), "reveal_denied", Some(reason));
        let tenant = tenant.clone();
        let ctx = &ctx;
        async move {
            record(ctx, &tenant, row).await?;
            Err::<Reply, Error>(err)
        }
    };
    if let Err(e) = p.require(Scope::VaultReveal) {
        return deny("missing the vault:reveal permission", e).await;
    }
    if let Err(e) = ctx.state.limits.reveal(&p) {
        return deny("reveal rate limit", e).await;
    }
    let (t, id) = (tenant.clone(), item_id.clone());
    let found = ctx
        .state
        .db
        .read(move |c| store::get_sealed(c, &t, &id))
        .await?;
    let Some((item, sealed)) = found else {
        return deny("no such item", Error::not_found("vault item")).await;
    };
    let Some(value) = ctx
        .state
        .vault
        .open(&tenant, &item.id, &sealed.nonce, &sealed.ciphertext)
    else {
        let err = Error::Internal(format!(
            "vault item {} of tenant {tenant} does not decrypt with the current vault key",
            item.id
        ));
        return deny("the value could not be decrypted", err).await;
    };
    // The value is answered only once its reveal is on record.
    record(
        &ctx,
        &tenant,
        audit_row(&ctx, &p, Some(&item.id), "reveal", None),
    )
    .await?;
    Ok(Reply::ok(Revealed {
        value: &value,
        title: &item.title,
        id: &item.id,
    }))
}

pub async fn create_vault(ctx: Ctx) -> Result<Reply> {
    let p = ctx.principal()?.clone();
    p.require(Scope::Admin)?;
    let body = ctx.json_object(false)?;
    let mut f = Fields::new(&body);
    let name = match f.given("name") {
        Some(Value::String(s)) if !s.trim().is_empty() && s.chars().count() <= 100 => {
            s.trim().to_string()
        }
        _ => {
            f.error("name", "is required: a string of 1 to 100 characters");
            String::new()
        }
    };
    let description = text(&mut f, "description", 1000).flatten();
    let sensitivity =
        one_of(&mut f, "sensitivity", &SENSITIVITIES).unwrap_or_else(|| "medium".into());
    f.finish()?;
    let v = ctx
        .state
        .db
        .write(move |c| {
            store::ensure_main(c, &p.tenant_id)?;
            store::create(c, &p.tenant_id, &name, description.as_deref(), &sensitivity)
        })
        .await?;
    Ok(Reply::created(VaultOut::from(&v)))
}

pub async fn list_vaults(ctx: Ctx) -> Result<Reply> {
    let p = ctx.principal()?.clone();
    p.require(Scope::Admin)?;
    let vaults = ctx
        .state
        .db
        .write(move |c| {
            store::ensure_main(c, &p.tenant_id)?;
            store::list(c, &p.tenant_id)
        })
        .await?;
    Ok(Reply::ok(VaultList {
        vaults: vaults.iter().map(VaultOut::from).collect(),
        total: vaults.len(),
    }))
}

pub async fn delete_vault(ctx: Ctx) -> Result<Reply> {
    let p = ctx.principal()?.clone();
    p.require(Scope::Admin)?;
    let id = ctx.param(0).to_string();
    let a = audit_row(
        &ctx,
        &p,
        None,
        "delete",
        Some("vault deleted with its items"),
    );
    let vid = id.clone();
    let done = ctx
        .state
        .db
        .write(move |c| {
            let items = store::list_items(c, &p.tenant_id, Some(&vid))?;
            if !store::delete(c, &p.tenant_id, &vid)? {
                return Ok(false);
            }
            for i in items {
                let mut row = a.clone();
                row.id = crate::ids::new("vau");
                row.item_id = Some(i.id);
                store::audit(c, &p.tenant_id, &row)?;
            }
            Ok(true)
        })
        .await?;
    if !done {
        return Err(Error::not_found("vault"));
    }
    Ok(Reply::ok(Deleted { id, deleted: true }))
}

/// Validated item fields of a create (`required`) or a patch.
fn item_fields(f: &mut Fields<'_>, required: bool) -> ItemFields {
    let title = match f.given("title") {
        Some(Value::String(s)) if !s.trim().is_empty() && s.chars().count() <= 200 => {
            Some(s.trim().to_string())
        }
        None | Some(Value::Null) if !required => None,
        _ => {
            f.error("title", "must be a string of 1 to 200 characters");
            None
        }
    };
    let item_type =
        one_of(f, "itemType", &ITEM_TYPES).or_else(|| one_of(f, "item_type", &ITEM_TYPES));
    if required && item_type.is_none() && !f.errors.iter().any(|e| e.field.starts_with("item")) {
        f.error(
            "itemType",
            format!("is required: one of {}", ITEM_TYPES.join(", ")),
        );
    }
    let service_name = match text(f, "serviceName", 100) {
        Some(v) => Some(v),
        None => text(f, "service_name", 100),
    };
    ItemFields {
        title,
        item_type,
        service_name,
        tags: string_list(f, "tags"),
        description: text(f, "description", 1000),
        sensitivity: one_of(f, "sensitivity", &SENSITIVITIES),
    }
}

pub async fn create_item(ctx: Ctx) -> Result<Reply> {
    let p = ctx.principal()?.clone();
    p.require(Scope::Admin)?;
    let body = ctx.json_object(false)?;
    let mut f = Fields::new(&body);
    let fields = item_fields(&mut f, true);
    let value = value_field(&mut f, true);
    f.finish()?;
    let vault_id = ctx.param(0).to_string();
    let id = crate::ids::new("vit");
    let (nonce, ciphertext) = ctx
        .state
        .vault
        .seal(&p.tenant_id, &id, &value.unwrap_or_default());
    let sealed = Sealed { nonce, ciphertext };
    let a = audit_row(&ctx, &p, Some(&id), "create", None);
    let item = ctx
        .state
        .db
        .write(move |c| {
            store::ensure_main(c, &p.tenant_id)?;
            store::get(c, &p.tenant_id, &vault_id)?.ok_or_else(|| Error::not_found("vault"))?;
            let item = store::insert_item(c, &p.tenant_id, &vault_id, &id, &fields, &sealed)?;
            store::audit(c, &p.tenant_id, &a)?;
            Ok(item)
        })
        .await?;
    Ok(Reply::created(ItemOut::from(&item)))
}

pub async fn list_items(ctx: Ctx) -> Result<Reply> {
    let p = ctx.principal()?.clone();
    p.require(Scope::Admin)?;
    let vault_id = ctx.param(0).to_string();
    let items = ctx
        .state
        .db
        .read(move |c| {
            store::get(c, &p.tenant_id, &vault_id)?.ok_or_else(|| Error::not_found("vault"))?;
            store::list_items(c, &p.tenant_id, Some(&vault_id))
        })
        .await?;
    Ok(Reply::ok(ItemList {
        items: items.iter().map(ItemOut::from).collect(),
        total: items.len(),
    }))
}

pub async fn patch_item(ctx: Ctx) -> Result<Reply> {
    let p = ctx.principal()?.clone();
    p.require(Scope::Admin)?;
    let body = ctx.json_object(false)?;
    let mut f = Fields::new(&body);
    let fields = item_fields(&mut f, false);
    let value = value_field(&mut f, false);
    f.finish()?;
    let (vault_id, item_id) = (ctx.param(0).to_string(), ctx.param(1).to_string());
    let sealed = value.map(|v| {
        let (nonce, ciphertext) = ctx.state.vault.seal(&p.tenant_id, &item_id, &v);
        Sealed { nonce, ciphertext }
    });
    let reason = if sealed.is_some() {
        "value and metadata"
    } else {
        "metadata"
    };
    let a = audit_row(&ctx, &p, Some(&item_id), "update", Some(reason));
    let item = ctx
        .state
        .db
        .write(move |c| {
            match store::get_item(c, &p.tenant_id, &item_id)? {
                Some(i) if i.vault_id == vault_id => {}
                _ => return Ok(None),
            }
            let item = store::update_item(c, &p.tenant_id, &item_id, &fields, sealed.as_ref())?;
            store::audit(c, &p.tenant_id, &a)?;
            Ok(item)
        })
        .await?
        .ok_or_else(|| Error::not_found("vault item"))?;
    Ok(Reply::ok(ItemOut::from(&item)))
}

pub async fn delete_item(ctx: Ctx) -> Result<Reply> {
    let p = ctx.principal()?.clone();
    p.require(Scope::Admin)?;
    let (vault_id, item_id) = (ctx.param(0).to_string(), ctx.param(1).to_string());
    let a = audit_row(&ctx, &p, Some(&item_id), "delete", None);
    let id = item_id.clone();
    let done = ctx
        .state
        .db
        .write(move |c| {
            match store::get_item(c, &p.tenant_id, &id)? {
                Some(i) if i.vault_id == vault_id => {}
                _ => return Ok(false),
            }
            store::delete_item(c, &p.tenant_id, &id)?;
            store::audit(c, &p.tenant_id, &a)?;
            Ok(true)
        })
        .await?;
    if !done {
        return Err(Error::not_found("vault item"));
    }
    Ok(Reply::ok(Deleted {
        id: item_id,
        deleted: true,
    }))
}

pub async fn audit(ctx: Ctx) -> Result<Reply> {
    let p = ctx.principal()?.clone();
    p.require(Scope::Admin)?;
    let limit = ctx.query.int("limit", 1, 200)?.unwrap_or(50) as usize;
    let item_id = ctx.query.get("itemId").map(str::to_string);
    let cursor = ctx.query.get("cursor").map(str::to_string);
    let mut rows = ctx
        .state
        .db
        .read(move |c| {
            store::audit_page(
                c,
                &p.tenant_id,
                item_id.as_deref(),
                cursor.as_deref(),
                limit,
            )
        })
        .await?;
    let more = rows.len() > limit;
    rows.truncate(limit);
    let next = rows.last().filter(|_| more).map(|a| a.id.as_str());
    let items = rows
        .iter()
        .map(|a| AuditOut {
            id: &a.id,
            item_id: a.item_id.as_deref(),
            action: &a.action,
            key_id: a.key_id.as_deref(),
            request_id: a.request_id.as_deref(),
            ip: a.ip.as_deref(),
            reason: a.reason.as_deref(),
            at: &a.at,
        })
        .collect::<Vec<_>>();
    Ok(Reply::ok(CursorPage::new(&items, None, limit, more, next)))
}
