//! The operator API `/v1/admin/*` (docs/api.md "Operator API"): tenants created, listed, deleted
//! and reset, and a reset of everything — for the person who runs engram and for CI fixtures.
//!
//! Invariants:
//! - The routes exist only when the operator set a token (`--admin-token`); otherwise they answer
//!   404 like any unknown path. The token is compared in constant time; tenant keys never work
//!   here, and failed attempts count against the caller's address like failed key logins.
//! - A reset deletes a tenant's data (memory, agents, projects, vault) from the database, the
//!   search index and the in-memory caches; developers, keys (unless `{"keys": false}`), the plan
//!   and usage counters stay. The bootstrap tenant cannot be deleted, only reset.
//! - A reset of everything on a server started with `--seed` re-imports the seed, so it returns
//!   to the seeded state (`transfer::reset_all`).

use crate::app::AppState;
use crate::domain::JobKind;
use crate::error::{Error, Result};
use crate::fields::Fields;
use crate::http::{Ctx, Reply};
use crate::plans::Plan;
use crate::search::IndexOp;
use crate::store::tenants;
use serde::Serialize;
use serde_json::Value;
use std::collections::BTreeMap;
use subtle::ConstantTimeEq;

/// 404 unless the operator token is configured and presented.
pub(crate) fn operator(ctx: &Ctx) -> Result<()> {
    check_operator(&ctx.state, &ctx.headers, &ctx.method, &ctx.path, ctx.peer)
}

/// `operator` before a request's body is read (the server checks `/v1/admin/*` routes first, so
/// a large import body is never read for a caller without the token).
pub fn check_operator(
    state: &AppState,
    headers: &hyper::HeaderMap,
    method: &hyper::Method,
    path: &str,
    peer: std::net::IpAddr,
) -> Result<()> {
    let Some(token) = state.config.admin_token.as_deref() else {
        return Err(Error::NotFound(format!("no route for {method} {path}")));
    };
    let presented = headers
        .get(hyper::header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(crate::auth::bearer_token)
        .unwrap_or("");
    if bool::from(presented.as_bytes().ct_eq(token.as_bytes())) {
        return Ok(());
    }
    state.limits.auth_failed(peer, None)?;
    Err(Error::Unauthorized(
        "the operator API needs 'Authorization: Bearer <operator token>'".into(),
    ))
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct TenantOut<'a> {
    id: &'a str,
    name: &'a str,
    plan: &'static str,
    created_at: &'a str,
}

impl<'a> From<&'a tenants::Tenant> for TenantOut<'a> {
    fn from(t: &'a tenants::Tenant) -> TenantOut<'a> {
        TenantOut {
            id: &t.id,
            name: &t.name,
            plan: t.plan.as_str(),
            created_at: &t.created_at,
        }
    }
}

/// A new tenant with its owner's first key (shown once).
#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct TenantCreated<'a> {
    tenant: TenantOut<'a>,
    key: &'a str,
    key_id: &'a str,
    owner_id: &'a str,
}

#[derive(Serialize)]
struct TenantList<'a> {
    tenants: Vec<TenantOut<'a>>,
    total: usize,
}

#[derive(Serialize)]
struct TenantDeleted<'a> {
    id: &'a str,
    deleted: bool,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct TenantReset<'a> {
    id: &'a str,
    reset: bool,
    keys_kept: bool,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct AllReset<'a> {
    reset: bool,
    tenants_deleted: usize,
    /// The tenant created at first start, reset rather than deleted (`null` if there is none).
    kept: Option<&'a str>,
    /// The tenant re-imported from the server's seed file (`serve --seed`), `null` without one.
    seeded: Option<&'a str>,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct TenantImported<'a> {
    tenant_id: &'a str,
    records: u64,
    by_kind: &'a BTreeMap<String, u64>,
    unprocessed_events: u64,
    queued_jobs: &'a BTreeMap<JobKind, u64>,
    indexed_documents: u64,
}

/// Clears what the server holds in memory and in the index for a tenant whose data went away.
async fn forget(state: &AppState, tenant_id: &str) {
    state.auth.evict_tenant(tenant_id);
    state.runtime.sessions.forget_tenant(tenant_id);
    state.search.submit(IndexOp::DeleteTenant {
        tenant_id: tenant_id.to_string(),
    });
    state.search.flush().await;
}

pub async fn create_tenant(ctx: Ctx) -> Result<Reply> {
    operator(&ctx)?;
    let body = ctx.json_object(false)?;
    let mut f = Fields::new(&body);
    let name = match f.raw("name") {
        Some(Value::String(s)) if !s.trim().is_empty() && s.chars().count() <= 100 => {
            s.trim().to_string()
        }
        _ => {
            f.error("name", "is required: a string of 1 to 100 characters");
            String::new()
        }
    };
    let plan = match f.raw("plan") {
        None => ctx.state.config.default_plan,
        Some(Value::String(s)) => s.parse::<Plan>().unwrap_or_else(|m| {
            f.error("plan", m);
            Plan::Free
        }),
        Some(_) => {
            f.error("plan", "must be a string");
            Plan::Free
        }
    };
    let email = match f.raw("email") {
        None => "owner@localhost".to_string(),
        Some(Value::String(s)) => crate::fields::email(s).unwrap_or_else(|m| {
            f.error("email", m);
            String::new()
        }),
        Some(_) => {
            f.error("email", "must be a string");
            String::new()
        }
    };
    f.finish()?;
    let created = ctx
        .state
        .db
        .write(move |c| tenants::create_with_owner(c, &name, plan, &email, None))
        .await?;
    Ok(Reply::created(TenantCreated {
        tenant: TenantOut::from(&created.tenant),
        key: &created.key,
        key_id: &created.key_id,
        owner_id: &created.owner.id,
    }))
}

pub async fn list_tenants(ctx: Ctx) -> Result<Reply> {
    operator(&ctx)?;
    let all = ctx.state.db.read(tenants::list).await?;
    Ok(Reply::ok(TenantList {
        tenants: all.iter().map(TenantOut::from).collect(),
        total: all.len(),
    }))
}

pub async fn delete_tenant(ctx: Ctx) -> Result<Reply> {
    operator(&ctx)?;
    let id = ctx.param(0).to_string();
    let tid = id.clone();
    let deleted = ctx
        .state
        .db
        .write(move |c| {
            if tenants::default_tenant_id(c)?.as_deref() == Some(tid.as_str()) {
                return Err(Error::Conflict(
                    "the tenant created at first start cannot be deleted; reset it instead".into(),
                ));
            }
            tenants::delete(c, &tid)
        })
        .await?;
    if !deleted {
        return Err(Error::not_found("tenant"));
    }
    forget(&ctx.state, &id).await;
    Ok(Reply::ok(TenantDeleted {
        id: &id,
        deleted: true,
    }))
}

pub async fn reset_tenant(ctx: Ctx) -> Result<Reply> {
    operator(&ctx)?;
    let body = ctx.json_object(true)?;
    let mut f = Fields::new(&body);
    let keep_keys = match f.raw("keys") {
        None => true,
        Some(Value::Bool(b)) => *b,
        Some(_) => {
            f.error("keys", "must be a boolean");
            true
        }
    };
    f.finish()?;
    let id = ctx.param(0).to_string();
    let tid = id.clone();
    let found = ctx
        .state
        .db
        .write(move |c| tenants::reset_data(c, &tid, keep_keys))
        .await?;
    if !found {
        return Err(Error::not_found("tenant"));
    }
    forget(&ctx.state, &id).await;
    Ok(Reply::ok(TenantReset {
        id: &id,
        reset: true,
        keys_kept: keep_keys,
    }))
}

pub async fn reset_all(ctx: Ctx) -> Result<Reply> {
    operator(&ctx)?;
    let done = crate::transfer::reset_server(&ctx.state).await?;
    Ok(Reply::ok(AllReset {
        reset: true,
        tenants_deleted: done.deleted.len(),
        kept: done.kept.as_deref(),
        seeded: done.seeded.as_ref().map(|s| s.tenant_id.as_str()),
    }))
}

/// `GET /v1/admin/tenants/{id}/export`: the tenant as NDJSON, streamed from one snapshot. A
/// failure midway ends the stream without its end record, which import then refuses.
pub async fn export_tenant(ctx: Ctx) -> Result<Reply> {
    operator(&ctx)?;
    let id = ctx.param(0).to_string();
    let check = id.clone();
    if !ctx
        .state
        .db
        .read(move |c| tenants::exists(c, &check))
        .await?
    {
        return Err(Error::not_found("tenant"));
    }
    let (tx, body) = crate::http::sse::channel_body(16);
    let db = ctx.state.db.clone();
    tokio::task::spawn_blocking(move || {
        let mut chunk = String::with_capacity(CHUNK);
        let result = db.read_blocking(|c| {
            crate::store::transfer::export(c, &id, &mut |line| {
                chunk.push_str(&line);
                if chunk.len() >= CHUNK {
                    let full = std::mem::replace(&mut chunk, String::with_capacity(CHUNK));
                    tx.blocking_send(full.into())
                        .map_err(|_| Error::Unavailable("the client went away".into()))?;
                }
                Ok(())
            })
        });
        match result {
            Ok(_) if !chunk.is_empty() => {
                let _ = tx.blocking_send(chunk.into());
            }
            Ok(_) => {}
            Err(e) => tracing::warn!(tenant = %id, error = %e, "export failed"),
        }
    });
    Ok(Reply::stream(body, "application/x-ndjson"))
}

/// Bytes an export hands to the client at a time.
const CHUNK: usize = 64 * 1024;

/// `POST /v1/admin/import`: recreates a tenant from an export (ids kept; 409 if it exists).
pub async fn import_tenant(ctx: Ctx) -> Result<Reply> {
    operator(&ctx)?;
    let text = String::from_utf8(ctx.body.to_vec())
        .map_err(|_| Error::validation("body", "is not UTF-8 text"))?;
    let (imported, indexed) = crate::transfer::import(&ctx.state, text).await?;
    Ok(Reply::created(TenantImported {
        tenant_id: &imported.tenant_id,
        records: imported.records,
        by_kind: &imported.by_kind,
        unprocessed_events: imported.unprocessed_events,
        queued_jobs: &imported.queued_jobs,
        indexed_documents: indexed,
    }))
}
