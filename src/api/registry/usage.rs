//! `GET /v1/usage` (this month's invocations and agents against the plan) and `GET /v1/me` (the
//! calling developer and the effective scopes of the key used).

use crate::error::{Error, Result};
use crate::http::{Ctx, Reply};
use crate::store::tenants;
use serde_json::json;

pub async fn usage(_ctx: Ctx) -> Result<Reply> {
    Err(crate::api::not_yet("usage"))
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
    Ok(Reply::ok(json!({
        "id": dev.id,
        "name": dev.name,
        "email": dev.email,
        "company": dev.company,
        "tier": p.plan.as_str(),
        "role": dev.role.as_str(),
        "tenant_id": p.tenant_id,
        "key_id": p.key_id,
        "mode": p.mode,
        "scopes": p.scopes.to_list(),
    })))
}
