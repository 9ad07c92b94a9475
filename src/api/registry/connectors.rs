//! Connectors: the public catalogue (`GET /v1/connectors/registry`, any registry scope) and a
//! project's private MCP connectors (docs/api.md "Registry family").
//!
//! Project connectors follow the project rules of `projects.rs`: only members see them (others
//! get 404); listing needs `projects:read` or `connectors:manage`; registering and deleting need
//! `connectors:manage` and the DEVELOPER role or higher in the project. `mcp_url` must be an
//! absolute http(s) URL that the outbound policy allows (docs/security.md); the slug comes from the name and is unique within the project (409).

use super::projects::{member_view, read_view, require_project_role};
use crate::auth::{Role, Scope};
use crate::catalog;
use crate::error::{Error, Result};
use crate::fields::Fields;
use crate::http::{Ctx, Reply};
use crate::store::connectors::{self, Connector};
use serde::Serialize;
use serde_json::Value;

/// A project's connector.
#[derive(Serialize)]
struct ConnectorOut<'a> {
    id: &'a str,
    slug: &'a str,
    name: &'a str,
    mcp_url: &'a str,
    category: Option<&'a str>,
    project_id: &'a str,
    status: &'a str,
    created_at: &'a str,
}

impl<'a> From<&'a Connector> for ConnectorOut<'a> {
    fn from(c: &'a Connector) -> ConnectorOut<'a> {
        ConnectorOut {
            id: &c.id,
            slug: &c.slug,
            name: &c.name,
            mcp_url: &c.mcp_url,
            category: c.category.as_deref(),
            project_id: &c.project_id,
            status: &c.status,
            created_at: &c.created_at,
        }
    }
}

#[derive(Serialize)]
struct ConnectorList<'a> {
    connectors: Vec<ConnectorOut<'a>>,
    total: usize,
}

/// An entry of the public catalogue.
#[derive(Serialize)]
struct CatalogueEntryOut<'a> {
    slug: &'a str,
    name: &'a str,
    category: &'a str,
    status: &'a str,
    mcp_url: Option<&'a str>,
}

impl<'a> From<&'a catalog::Entry> for CatalogueEntryOut<'a> {
    fn from(e: &'a catalog::Entry) -> CatalogueEntryOut<'a> {
        CatalogueEntryOut {
            slug: &e.slug,
            name: &e.name,
            category: &e.category,
            status: &e.status,
            mcp_url: e.mcp_url.as_deref(),
        }
    }
}

#[derive(Serialize)]
struct CatalogueList<'a> {
    connectors: Vec<CatalogueEntryOut<'a>>,
    total: usize,
}

#[derive(Serialize)]
struct ConnectorDeleted<'a> {
    message: &'static str,
    id: &'a str,
}

pub async fn catalogue(ctx: Ctx) -> Result<Reply> {
    let p = ctx.principal()?;
    p.require_any(&Scope::REGISTRY)?;
    let category = ctx.query.get("category").map(|s| s.trim().to_string());
    let entries = ctx
        .state
        .db
        .read(move |c| catalog::list(c, category.as_deref()))
        .await?;
    Ok(Reply::ok(CatalogueList {
        connectors: entries.iter().map(CatalogueEntryOut::from).collect(),
        total: entries.len(),
    }))
}

pub async fn list(ctx: Ctx) -> Result<Reply> {
    let p = ctx.principal()?.clone();
    p.require_any(&[Scope::ProjectsRead, Scope::ConnectorsManage])?;
    let project_id = ctx.param(0).to_string();
    let view = read_view(&ctx.state, &p, &project_id).await?;
    let items = ctx
        .state
        .db
        .read(move |c| connectors::list_for_project(c, &p.tenant_id, &view.project.id))
        .await?;
    Ok(Reply::ok(ConnectorList {
        connectors: items.iter().map(ConnectorOut::from).collect(),
        total: items.len(),
    }))
}

pub async fn create(ctx: Ctx) -> Result<Reply> {
    let p = ctx.principal()?.clone();
    p.require(Scope::ConnectorsManage)?;
    let body = ctx.json_object(false)?;
    let mut f = Fields::new(&body);
    let name = f.string("name", true, 1, 64);
    if let Some(n) = &name {
        if crate::store::agents::slugify(n).is_empty() {
            f.error(
                "name",
                "must contain at least one ASCII letter or digit (the slug is made of them)",
            );
        }
    }
    let mcp_url = match f.raw("mcp_url") {
        None => {
            f.error("mcp_url", "is required (an absolute http or https URL)");
            None
        }
        Some(Value::String(s)) => match ctx.state.config.outbound.check_registration(s).await {
            Ok(u) => Some(u),
            Err(refusal) => {
                f.error("mcp_url", refusal.to_string());
                None
            }
        },
        Some(_) => {
            f.error(
                "mcp_url",
                "must be a string (an absolute http or https URL)",
            );
            None
        }
    };
    let category = f.string("category", false, 0, 64);
    f.finish()?;
    let (name, mcp_url) = (name.unwrap_or_default(), mcp_url.unwrap_or_default());
    let project_id = ctx.param(0).to_string();
    let created = ctx
        .state
        .db
        .write(move |c| {
            let view = member_view(c, &p, &project_id)?;
            require_project_role(&view, Role::Developer, "registering connectors")?;
            connectors::insert(
                c,
                &p.tenant_id,
                &project_id,
                &name,
                &mcp_url,
                category.as_deref(),
            )
        })
        .await?;
    Ok(Reply::created(ConnectorOut::from(&created)))
}

pub async fn delete(ctx: Ctx) -> Result<Reply> {
    let p = ctx.principal()?.clone();
    p.require(Scope::ConnectorsManage)?;
    let project_id = ctx.param(0).to_string();
    let connector_id = ctx.param(1).to_string();
    ctx.state
        .db
        .write(move |c| {
            let view = member_view(c, &p, &project_id)?;
            require_project_role(&view, Role::Developer, "deleting connectors")?;
            if connectors::delete(c, &p.tenant_id, &project_id, &connector_id)? {
                Ok(())
            } else {
                Err(Error::not_found("connector"))
            }
        })
        .await?;
    Ok(Reply::ok(ConnectorDeleted {
        message: "Connector deleted successfully",
        id: ctx.param(1),
    }))
}
