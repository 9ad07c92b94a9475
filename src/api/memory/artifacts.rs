//! Artifacts: `GET /v1/artifacts` (filters, sort, offset or opaque cursor), `GET /v1/artifacts/{id}`,
//! `DELETE /v1/artifacts/{id}` (deprecate) and `PATCH /v1/artifacts/{id}` (`{"status":
//! "deprecated"|"active"}`). Status changes move the artifact out of or back into the search
//! index before the answer is sent. Another tenant's id answers 404.

use super::wire::ArtifactOut;
use crate::auth::Scope;
use crate::compiler::TYPES;
use crate::domain::ArtifactStatus;
use crate::error::{Error, Result};
use crate::fields::Fields;
use crate::http::{Ctx, Reply};
use crate::store::artifacts::{self, Filter};
use serde::Serialize;

/// A page of `GET /v1/artifacts`: the rows under `items` and `artifacts` (both SDKs' names).
#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct ArtifactPage<'a> {
    items: &'a [ArtifactOut<'a>],
    artifacts: &'a [ArtifactOut<'a>],
    total: i64,
    limit: i64,
    offset: i64,
    has_more: bool,
    pagination: ArtifactPagination,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct ArtifactPagination {
    has_more: bool,
    cursor: Option<String>,
    total: i64,
}

const STATUSES: [&str; 3] = ["active", "deprecated", "superseded"];
const SORTS: [&str; 4] = ["createdAt", "updatedAt", "confidence", "evidenceCount"];
const CURSOR_PREFIX: &str = "cur_";

fn cursor_offset(c: &str) -> Result<i64> {
    c.strip_prefix(CURSOR_PREFIX)
        .and_then(|n| i64::from_str_radix(n, 36).ok())
        .filter(|n| *n >= 0)
        .ok_or_else(|| Error::bad_query("cursor", "is not a cursor this server issued"))
}

fn cursor_for(offset: i64) -> String {
    // Base 36 keeps cursors short and obviously opaque.
    let mut n = offset;
    let mut digits = Vec::new();
    loop {
        digits.push(std::char::from_digit((n % 36) as u32, 36).expect("digit"));
        n /= 36;
        if n == 0 {
            break;
        }
    }
    format!("{CURSOR_PREFIX}{}", digits.iter().rev().collect::<String>())
}

pub async fn list(ctx: Ctx) -> Result<Reply> {
    let p = ctx.principal()?;
    p.require(Scope::Read)?;
    let q = &ctx.query;
    let mut f = Filter {
        artifact_type: q.one_of("type", &TYPES)?,
        status: q.one_of("status", &STATUSES)?,
        sort: q
            .one_of("sort", &SORTS)?
            .unwrap_or_else(|| "createdAt".into()),
        desc: q.one_of("order", &["asc", "desc"])?.as_deref() != Some("asc"),
        limit: q.int("limit", 1, 100)?.unwrap_or(50),
        offset: q.int("offset", 0, i64::MAX / 2)?.unwrap_or(0),
    };
    if let Some(c) = q.get("cursor") {
        f.offset = cursor_offset(c)?;
    }
    let tenant = p.tenant_id.clone();
    let filter = f.clone();
    let (rows, total) = ctx
        .state
        .db
        .read(move |c| artifacts::list(c, &tenant, &filter))
        .await?;
    let items: Vec<ArtifactOut> = rows.iter().map(ArtifactOut::from).collect();
    let next = f.offset + items.len() as i64;
    let has_more = next < total;
    let cursor = has_more.then(|| cursor_for(next));
    Ok(Reply::ok(ArtifactPage {
        items: &items,
        artifacts: &items,
        total,
        limit: f.limit,
        offset: f.offset,
        has_more,
        pagination: ArtifactPagination {
            has_more,
            cursor,
            total,
        },
    }))
}

pub async fn get(ctx: Ctx) -> Result<Reply> {
    let p = ctx.principal()?;
    p.require(Scope::Read)?;
    let (tenant, id) = (p.tenant_id.clone(), ctx.param(0).to_string());
    let row = ctx
        .state
        .db
        .read(move |c| artifacts::get(c, &tenant, &id))
        .await?
        .ok_or_else(|| Error::not_found("artifact"))?;
    Ok(Reply::ok(ArtifactOut::from(&row)))
}

async fn set_status(ctx: &Ctx, status: ArtifactStatus) -> Result<Reply> {
    let p = ctx.principal()?;
    let (tenant, id) = (p.tenant_id.clone(), ctx.param(0).to_string());
    let search = ctx.state.search.clone();
    let row = ctx
        .state
        .db
        .write(move |c| {
            let now = crate::time::now_rfc3339();
            match artifacts::set_status(c, &tenant, &id, status, &now)? {
                Some((row, op)) => {
                    // Submitted inside the write so a later recompile's upsert is ordered after it.
                    search.submit(op);
                    Ok(Some(row))
                }
                None => Ok(None),
            }
        })
        .await?
        .ok_or_else(|| Error::not_found("artifact"))?;
    ctx.state.search.flush().await;
    Ok(Reply::ok(ArtifactOut::from(&row)))
}

pub async fn delete(ctx: Ctx) -> Result<Reply> {
    ctx.principal()?.require(Scope::Write)?;
    set_status(&ctx, ArtifactStatus::Deprecated).await
}

pub async fn patch(ctx: Ctx) -> Result<Reply> {
    ctx.principal()?.require(Scope::Write)?;
    let body = ctx.json_object(false)?;
    let mut f = Fields::new(&body);
    if f.raw("status").is_none() {
        f.error("status", "is required");
    }
    let status = match f.one_of("status", &["deprecated", "active"], "deprecated") {
        "active" => ArtifactStatus::Active,
        _ => ArtifactStatus::Deprecated,
    };
    f.finish()?;
    set_status(&ctx, status).await
}
