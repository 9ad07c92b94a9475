//! `GET /v1/usage` (this month's invocations and agents against the plan) and `GET /v1/me` (the
//! calling developer and the effective scopes of the key used).

use crate::error::{Error, Result};
use crate::http::{Ctx, Reply};
use crate::store::{agents, tenants, usage};
use serde::Serialize;

/// `GET /v1/usage`.
#[derive(Serialize)]
struct UsageOut {
    period_start: String,
    period_end: String,
    /// `null`: unlimited.
    invocations_limit: Option<u64>,
    invocations_used: i64,
    agents_limit: Option<u64>,
    agents_used: i64,
    plan: &'static str,
    mode: &'static str,
}

/// `GET /v1/me`.
#[derive(Serialize)]
struct MeOut<'a> {
    id: &'a str,
    name: &'a str,
    email: &'a str,
    company: Option<&'a str>,
    tier: &'static str,
    role: &'static str,
    tenant_id: &'a str,
    key_id: &'a str,
    mode: &'static str,
    scopes: Vec<&'static str>,
}

/// `2024-01-31T23:59:59Z`: the seed's second-precision form for period bounds.
fn second_precision(t: chrono::DateTime<chrono::Utc>) -> String {
    t.to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
}

/// This calendar month (UTC): invocations counted for the key's mode (live and test keys count
/// separately), agents of the tenant, and the plan's limits (`null` = unlimited). Any valid key
/// may read it: it shows counts, no data.
pub async fn usage(ctx: Ctx) -> Result<Reply> {
    let p = ctx.principal()?.clone();
    let now = ctx.state.config.clock.now();
    let (start, next) = crate::time::month_bounds(now);
    let limits = p.plan.limits().with_overrides(p.limits_override.as_ref());
    let (tenant_id, mode) = (p.tenant_id.clone(), p.mode);
    // Counts still in memory are written first, so every request answered before this one is in.
    ctx.state.db.flush_usage().await?;
    let (invocations, agents_used) = ctx
        .state
        .db
        .read(move |c| {
            let month = usage::month_bucket(now);
            let inv = usage::get(c, &tenant_id, mode, usage::INVOCATIONS, &month)?;
            Ok((inv, agents::count(c, &tenant_id)?))
        })
        .await?;
    Ok(Reply::ok(UsageOut {
        period_start: second_precision(start),
        period_end: second_precision(next - chrono::Duration::seconds(1)),
        invocations_limit: limits.invocations_per_month,
        invocations_used: invocations,
        agents_limit: limits.agents,
        agents_used,
        plan: p.plan.as_str(),
        mode: p.mode,
    }))
}

pub async fn me(ctx: Ctx) -> Result<Reply> {
    let p = ctx.principal()?.clone();
    let (tenant_id, dev_id) = (p.tenant_id.clone(), p.developer_id.clone());
    let dev = ctx
        .state
        .db
        .read(move |c| tenants::get_developer(c, &tenant_id, &dev_id))
        .await?
        .ok_or_else(|| Error::not_found("developer"))?;
    Ok(Reply::ok(MeOut {
        id: &dev.id,
        name: &dev.name,
        email: &dev.email,
        company: dev.company.as_deref(),
        tier: p.plan.as_str(),
        role: dev.role.as_str(),
        tenant_id: &p.tenant_id,
        key_id: &p.key_id,
        mode: p.mode,
        scopes: p.scopes.to_list(),
    }))
}
