//! Events, memories and forgetting sessions: `GET /v1/events[/{id}]`, `GET /v1/memories[/{id}]`,
//! `DELETE /v1/sessions/{id}` (docs/api.md "Memory family").
//!
//! Lists are newest first (`order=asc` reverses), `limit` 1–100 (default 50), and `cursor` is the
//! last id of the previous page (`nextCursor`). Everything is scoped to the caller's tenant: an id
//! of another tenant answers 404.

use super::wire::{CursorPage, EventOut, MemoryOut};
use crate::auth::Scope;
use crate::error::{Error, Result};
use crate::http::{Ctx, Reply};
use crate::search::IndexOp;
use crate::store::events::{self, check_cursor, Order};
use crate::store::{memories, Conn};
use serde::Serialize;

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

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct SessionForgotten {
    session_id: String,
    deleted: bool,
    events_deleted: usize,
    memories_deleted: usize,
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

/// One page of rows (`more`: another page follows) as a `Page` of their `wire` forms; the next
/// cursor is the last row's `id`.
fn page_reply<'a, R, T: Serialize>(
    (rows, more): &'a (Vec<R>, bool),
    limit: usize,
    what: &'static str,
    wire: impl Fn(&'a R) -> T,
    id: impl Fn(&'a R) -> &'a str,
) -> Reply {
    let items: Vec<T> = rows.iter().map(wire).collect();
    let next = rows.last().filter(|_| *more).map(id);
    Reply::ok(CursorPage::new(&items, Some(what), limit, *more, next))
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
    let page = ctx.state.db.read(list).await?;
    Ok(page_reply(&page, l.limit, "events", EventOut::from, |e| {
        &e.id
    }))
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
    let memory_id = memory.as_ref().map(|m| m.id.as_str());
    Ok(Reply::ok(EventOut::with_memory(&event, memory_id)))
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
    let page = ctx.state.db.read(list).await?;
    Ok(page_reply(
        &page,
        l.limit,
        "memories",
        MemoryOut::from,
        |m| &m.id,
    ))
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
    Ok(Reply::ok(MemoryOut::from(&m)))
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
    Ok(Reply::ok(SessionForgotten {
        session_id: session,
        deleted: true,
        events_deleted,
        memories_deleted,
    }))
}
