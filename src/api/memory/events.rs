//! Events, memories and forgetting sessions: `GET /v1/events[/{id}]`, `GET /v1/memories[/{id}]`,
//! `DELETE /v1/sessions/{id}` (docs/api.md "Memory family").
//!
//! Lists are newest first (`order=asc` reverses), `limit` 1–100 (default 50), and `cursor` is the
//! last id of the previous page (`nextCursor`). Everything is scoped to the caller's tenant: an id
//! of another tenant answers 404.

use crate::auth::Scope;
use crate::error::{Error, Result};
use crate::http::{Ctx, Reply};
use crate::search::IndexOp;
use crate::store::events::{self, check_cursor, Order};
use crate::store::{memories, Conn};
use serde_json::{json, Value};

const DEFAULT_LIMIT: i64 = 50;
const MAX_LIMIT: i64 = 100;

fn limit_and_order(ctx: &Ctx) -> Result<(usize, Order)> {
    let limit = ctx
        .query
        .int("limit", 1, MAX_LIMIT)?
        .unwrap_or(DEFAULT_LIMIT) as usize;
    let order = match ctx.query.one_of("order", &["asc", "desc"])?.as_deref() {
        Some("asc") => Order::Asc,
        _ => Order::Desc,
    };
    Ok((limit, order))
}

fn page(items: Vec<Value>, limit: usize, more: bool, key: &str) -> Value {
    let next = if more {
        items.last().and_then(|i| i.get("id").cloned())
    } else {
        None
    };
    json!({
        "items": items,
        key: items,
        "count": items.len(),
        "limit": limit,
        "hasMore": more,
        "nextCursor": next,
        "pagination": {"hasMore": more, "cursor": next},
    })
}

fn text_param(ctx: &Ctx, name: &str) -> Result<Option<String>> {
    match ctx.query.get(name) {
        Some(v) if v.chars().count() > 256 => Err(Error::bad_query(
            name,
            "must be at most 256 characters long",
        )),
        v => Ok(v.map(str::to_string)),
    }
}

/// The query of a cursor-paged listing (events, memories): `limit`, `order`, `cursor` (an id
/// `{prefix}_…` from a previous page), `sessionId`, `agentId`, and the listing's own filter
/// `{kind_param}`, one of `kinds`.
struct Listing {
    limit: usize,
    order: Order,
    kind: Option<String>,
    cursor: Option<String>,
    session_id: Option<String>,
    agent_id: Option<String>,
}

fn listing(ctx: &Ctx, prefix: &str, kind_param: &str, kinds: &[&str]) -> Result<Listing> {
    let (limit, order) = limit_and_order(ctx)?;
    let kind = ctx.query.one_of(kind_param, kinds)?;
    let cursor = ctx.query.get("cursor").map(str::to_string);
    if let Some(c) = &cursor {
        check_cursor(prefix, c)?;
    }
    Ok(Listing {
        limit,
        order,
        kind,
        cursor,
        session_id: text_param(ctx, "sessionId")?,
        agent_id: text_param(ctx, "agentId")?,
    })
}

/// Reads one page with `list` and answers it as `{items, …}` (`page`), each row through `json`.
async fn answer_page<R: Send + 'static>(
    ctx: &Ctx,
    limit: usize,
    what: &'static str,
    list: impl FnOnce(&Conn) -> Result<(Vec<R>, bool)> + Send + 'static,
    json: fn(&R) -> Value,
) -> Result<Reply> {
    let (rows, more) = ctx.state.db.read(list).await?;
    let items = rows.iter().map(json).collect();
    Ok(Reply::ok(page(items, limit, more, what)))
}

pub async fn list_events(ctx: Ctx) -> Result<Reply> {
    let p = ctx.principal()?;
    p.require(Scope::Read)?;
    let l = listing(&ctx, "evt", "type", &crate::capture::EVENT_TYPES)?;
    let filter = events::Filter {
        session_id: l.session_id,
        agent_id: l.agent_id,
        event_type: l.kind,
        limit: l.limit,
        cursor: l.cursor,
        order: l.order,
    };
    let tenant = p.tenant_id.clone();
    let list = move |c: &Conn| events::list(c, &tenant, &filter);
    answer_page(&ctx, l.limit, "events", list, events::EventRow::to_json).await
}

pub async fn get_event(ctx: Ctx) -> Result<Reply> {
    let p = ctx.principal()?;
    p.require(Scope::Read)?;
    let (tenant, id) = (p.tenant_id.clone(), ctx.param(0).to_string());
    let found = ctx
        .state
        .db
        .read(move |c| {
            let Some(e) = events::get(c, &tenant, &id)? else {
                return Ok(None);
            };
            let memory = memories::by_event(c, &tenant, &e.id)?;
            Ok(Some((e, memory)))
        })
        .await?;
    let (event, memory) = found.ok_or_else(|| Error::not_found("event"))?;
    let mut data = event.to_json();
    data["memoryId"] = json!(memory.map(|m| m.id));
    Ok(Reply::ok(data))
}

pub async fn list_memories(ctx: Ctx) -> Result<Reply> {
    let p = ctx.principal()?;
    p.require(Scope::Read)?;
    let l = listing(&ctx, "mem", "kind", &["episodic", "semantic"])?;
    let filter = memories::Filter {
        agent_id: l.agent_id,
        session_id: l.session_id,
        kind: l.kind,
        limit: l.limit,
        cursor: l.cursor,
        order: l.order,
    };
    let tenant = p.tenant_id.clone();
    let list = move |c: &Conn| memories::list(c, &tenant, &filter);
    answer_page(
        &ctx,
        l.limit,
        "memories",
        list,
        memories::MemoryRow::to_json,
    )
    .await
}

pub async fn get_memory(ctx: Ctx) -> Result<Reply> {
    let p = ctx.principal()?;
    p.require(Scope::Read)?;
    let (tenant, id) = (p.tenant_id.clone(), ctx.param(0).to_string());
    let m = ctx
        .state
        .db
        .read(move |c| memories::get(c, &tenant, &id))
        .await?
        .ok_or_else(|| Error::not_found("memory"))?;
    Ok(Reply::ok(m.to_json()))
}

pub async fn forget_session(ctx: Ctx) -> Result<Reply> {
    let p = ctx.principal()?;
    p.require(Scope::Write)?;
    let session = ctx.param(0).to_string();
    if session.is_empty() || session.chars().count() > crate::capture::MAX_ID_CHARS {
        return Err(Error::bad_query(
            "sessionId",
            "must be 1 to 256 characters long",
        ));
    }
    let tenant = p.tenant_id.clone();
    let search = ctx.state.search.clone();
    let (events_deleted, memories_deleted) = {
        let session = session.clone();
        ctx.state
            .db
            .write(move |c| {
                let m = memories::delete_session(c, &tenant, &session)?;
                let e = events::delete_session(c, &tenant, &session)?;
                // Artifacts lose the session's evidence: a full recompile of what remains
                // updates them or deprecates what nothing supports any more.
                if e > 0 {
                    crate::jobs::learn::forget_session_evidence(c, &tenant, &session)?;
                }
                //
                // Submitted inside the write so it reaches the indexer after every upsert of
                // this session's memories made by earlier writes (see jobs::capture).
                search.submit(IndexOp::DeleteSession {
                    tenant_id: tenant.clone(),
                    session_id: session.clone(),
                });
                Ok((e, m))
            })
            .await?
    };
    if events_deleted == 0 && memories_deleted == 0 {
        return Err(Error::not_found("session"));
    }
    ctx.state.jobs.ring(crate::jobs::LEARN);
    // Answer once the index no longer returns the session's memories.
    ctx.state.search.flush().await;
    Ok(Reply::ok(json!({
        "sessionId": session,
        "deleted": true,
        "eventsDeleted": events_deleted,
        "memoriesDeleted": memories_deleted,
    })))
}
