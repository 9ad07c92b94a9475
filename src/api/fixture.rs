//! The operator API's fixture routes (docs/api.md "Operator API"): the request journal
//! (`/v1/admin/requests`) and injected faults (`/v1/admin/faults`). The state lives in
//! `crate::fixture`; these handlers check the operator token and render it.

use crate::api::admin::operator;
use crate::error::{Error, Result};
use crate::fixture::faults::Fault;
use crate::fixture::journal::{self, Filter};
use crate::http::{Ctx, Reply};
use serde::Serialize;
use serde_json::Value;

/// The journal's entries (rendered by `fixture::journal`, with bodies redacted there).
#[derive(Serialize)]
struct RequestList {
    requests: Vec<Value>,
    total: usize,
    capacity: usize,
    bodies: bool,
}

#[derive(Serialize)]
struct RequestsCleared {
    cleared: usize,
}

/// The injected faults (each rendered by `Fault::to_json`).
#[derive(Serialize)]
struct FaultList {
    total: usize,
    faults: Vec<Value>,
}

#[derive(Serialize)]
struct FaultsDeleted {
    deleted: usize,
}

#[derive(Serialize)]
struct FaultDeleted<'a> {
    id: &'a str,
    deleted: bool,
}

/// `GET /v1/admin/requests?limit=&method=&route=&status=&tenant=`: most recent first.
pub async fn list_requests(ctx: Ctx) -> Result<Reply> {
    operator(&ctx)?;
    let j = &ctx.state.fixture.journal;
    let limit = ctx
        .query
        .int("limit", 1, journal::MAX_LIMIT as i64)?
        .unwrap_or(100) as usize;
    let text = |k: &str| {
        ctx.query
            .get(k)
            .map(str::trim)
            .filter(|v| !v.is_empty())
            .map(str::to_string)
    };
    let status = match text("status") {
        None => None,
        Some(s) => Some(
            s.parse()
                .map_err(|m: String| Error::bad_query("status", m))?,
        ),
    };
    let filter = Filter {
        limit,
        method: text("method"),
        route: text("route").map(|r| {
            let t = r.trim_end_matches('/');
            if t.is_empty() {
                "/".to_string()
            } else {
                t.to_string()
            }
        }),
        status,
        tenant: text("tenant"),
    };
    let (requests, matched) = j.read(&filter);
    Ok(Reply::ok(RequestList {
        requests,
        total: matched,
        capacity: j.capacity(),
        bodies: j.keeps_bodies(),
    }))
}

/// `DELETE /v1/admin/requests`.
pub async fn clear_requests(ctx: Ctx) -> Result<Reply> {
    operator(&ctx)?;
    let cleared = ctx.state.fixture.journal.clear();
    Ok(Reply::ok(RequestsCleared { cleared }))
}

/// `POST /v1/admin/faults` → 201 with the fault.
pub async fn create_fault(ctx: Ctx) -> Result<Reply> {
    operator(&ctx)?;
    let body = ctx.json_object(false)?;
    let fault = Fault::parse(&body)?;
    let created = ctx.state.fixture.faults.add(fault)?;
    Ok(Reply::created(created))
}

/// `GET /v1/admin/faults`: in the order they are tried.
pub async fn list_faults(ctx: Ctx) -> Result<Reply> {
    operator(&ctx)?;
    let faults = ctx.state.fixture.faults.list();
    Ok(Reply::ok(FaultList {
        total: faults.len(),
        faults,
    }))
}

/// `DELETE /v1/admin/faults`: all of them.
pub async fn delete_faults(ctx: Ctx) -> Result<Reply> {
    operator(&ctx)?;
    let deleted = ctx.state.fixture.faults.delete(None);
    Ok(Reply::ok(FaultsDeleted { deleted }))
}

/// `DELETE /v1/admin/faults/{id}`.
pub async fn delete_fault(ctx: Ctx) -> Result<Reply> {
    operator(&ctx)?;
    let id = ctx.param(0).to_string();
    if ctx.state.fixture.faults.delete(Some(&id)) == 0 {
        return Err(Error::not_found("fault"));
    }
    Ok(Reply::ok(FaultDeleted {
        id: &id,
        deleted: true,
    }))
}
