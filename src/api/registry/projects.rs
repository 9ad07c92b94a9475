//! Projects and members (docs/api.md "Registry family").
//!
//! Permissions are checked twice: the key must carry the route's scope (its effective scopes,
//! bounded by the developer's tenant-wide role), and the developer must have a role in the
//! project — their membership role, raised to their tenant role for tenant-wide OWNERs and
//! ADMINs (who administer every project of the tenant). That project role then decides:
//! - reading a project, its members or its connectors: any member (`projects:read`);
//! - inviting and removing members: project OWNER or ADMIN (`members:invite`); only an OWNER may
//!   invite or remove an OWNER; the last OWNER cannot be removed (409);
//! - creating a project: a builder permission (`agents:deploy` or `connectors:manage`, i.e. the
//!   OWNER, ADMIN and DEVELOPER roles); the creator becomes its OWNER.
//!
//! A project of another tenant and a project a DEVELOPER or VIEWER is not a member of both answer
//! 404, so ids reveal nothing. `GET /v1/projects` lists the caller's memberships (docs/api.md "Registry family"). Membership checks and the writes they guard run in one transaction.

use crate::app::AppState;
use crate::auth::{Principal, Role, Scope};
use crate::error::{Error, Result};
use crate::fields::{self, Fields};
use crate::http::{Ctx, Reply};
use crate::store::projects::{self, Inviter, Member, ProjectView};
use crate::store::Conn;
use serde::Serialize;
use serde_json::Value;

/// A project as the caller sees it (`GET /v1/projects/{id}` and the listing).
#[derive(Serialize)]
pub(crate) struct ProjectOut<'a> {
    id: &'a str,
    name: &'a str,
    description: Option<&'a str>,
    role: &'static str,
    member_count: i64,
    created_by: &'a str,
    created_at: &'a str,
    updated_at: &'a str,
    /// With the project itself (create, get); not in listings.
    #[serde(skip_serializing_if = "Option::is_none")]
    members: Option<Vec<MemberOut<'a>>>,
}

impl<'a> ProjectOut<'a> {
    pub(crate) fn new(v: &'a ProjectView) -> ProjectOut<'a> {
        ProjectOut {
            id: &v.project.id,
            name: &v.project.name,
            description: v.project.description.as_deref(),
            role: v.role.as_str(),
            member_count: v.member_count,
            created_by: &v.project.created_by,
            created_at: &v.project.created_at,
            updated_at: &v.project.updated_at,
            members: None,
        }
    }

    fn with_members(v: &'a ProjectView, members: &'a [Member]) -> ProjectOut<'a> {
        ProjectOut {
            members: Some(members.iter().map(MemberOut::from).collect()),
            ..ProjectOut::new(v)
        }
    }
}

#[derive(Serialize)]
pub(crate) struct MemberOut<'a> {
    id: &'a str,
    project_id: &'a str,
    developer_id: &'a str,
    email: &'a str,
    name: &'a str,
    role: &'static str,
    status: &'a str,
    invited_by: Option<&'a str>,
    invited_at: &'a str,
}

impl<'a> From<&'a Member> for MemberOut<'a> {
    fn from(m: &'a Member) -> MemberOut<'a> {
        MemberOut {
            id: &m.id,
            project_id: &m.project_id,
            developer_id: &m.developer_id,
            email: &m.email,
            name: &m.name,
            role: m.role.as_str(),
            status: &m.status,
            invited_by: m.invited_by.as_deref(),
            invited_at: &m.invited_at,
        }
    }
}

#[derive(Serialize)]
struct ProjectList<'a> {
    projects: Vec<ProjectOut<'a>>,
    total: usize,
}

#[derive(Serialize)]
struct MemberList<'a> {
    members: Vec<MemberOut<'a>>,
    total: usize,
}

#[derive(Serialize)]
struct MemberRemoved<'a> {
    message: &'static str,
    id: &'a str,
    project_id: &'a str,
}

/// The project as seen by the caller, or 404 when it does not exist in the caller's tenant or
/// the caller has no role in it (the two are indistinguishable on purpose).
pub(crate) fn member_view(conn: &Conn, p: &Principal, project_id: &str) -> Result<ProjectView> {
    projects::view(conn, &p.tenant_id, project_id, &p.developer_id, p.role)?
        .ok_or_else(|| Error::not_found("project"))
}

/// `member_view` on a read connection.
pub(crate) async fn read_view(
    state: &AppState,
    p: &Principal,
    project_id: &str,
) -> Result<ProjectView> {
    let (p, id) = (p.clone(), project_id.to_string());
    state.db.read(move |c| member_view(c, &p, &id)).await
}

/// 403 unless the caller's role in the project is at least `min`.
pub(crate) fn require_project_role(view: &ProjectView, min: Role, what: &str) -> Result<()> {
    if view.role >= min {
        Ok(())
    } else {
        Err(Error::Forbidden(format!(
            "{what} needs the {} role or higher in this project; yours is {}",
            min.as_str(),
            view.role.as_str()
        )))
    }
}

pub async fn list(ctx: Ctx) -> Result<Reply> {
    let p = ctx.principal()?.clone();
    p.require(Scope::ProjectsRead)?;
    let views = ctx
        .state
        .db
        .read(move |c| projects::list_for_developer(c, &p.tenant_id, &p.developer_id))
        .await?;
    Ok(Reply::ok(ProjectList {
        projects: views.iter().map(ProjectOut::new).collect(),
        total: views.len(),
    }))
}

pub async fn create(ctx: Ctx) -> Result<Reply> {
    let p = ctx.principal()?.clone();
    p.require_any(&[Scope::AgentsDeploy, Scope::ConnectorsManage])?;
    let body = ctx.json_object(false)?;
    let mut f = Fields::new(&body);
    let name = f.string("name", true, 1, 100);
    let description = f.string("description", false, 0, 2000);
    f.finish()?;
    let name = name.unwrap_or_default();
    let (view, members) = ctx
        .state
        .db
        .write(move |c| {
            let project = projects::create(
                c,
                &p.tenant_id,
                &p.developer_id,
                &name,
                description.as_deref(),
            )?;
            let view = member_view(c, &p, &project.id)?;
            let members = projects::members(c, &p.tenant_id, &project.id)?;
            Ok((view, members))
        })
        .await?;
    Ok(Reply::created(ProjectOut::with_members(&view, &members)))
}

pub async fn get(ctx: Ctx) -> Result<Reply> {
    let p = ctx.principal()?.clone();
    p.require(Scope::ProjectsRead)?;
    let id = ctx.param(0).to_string();
    let (view, members) = ctx
        .state
        .db
        .read(move |c| {
            let view = member_view(c, &p, &id)?;
            let members = projects::members(c, &p.tenant_id, &id)?;
            Ok((view, members))
        })
        .await?;
    Ok(Reply::ok(ProjectOut::with_members(&view, &members)))
}

pub async fn list_members(ctx: Ctx) -> Result<Reply> {
    let p = ctx.principal()?.clone();
    p.require(Scope::ProjectsRead)?;
    let id = ctx.param(0).to_string();
    let members = ctx
        .state
        .db
        .read(move |c| {
            member_view(c, &p, &id)?;
            projects::members(c, &p.tenant_id, &id)
        })
        .await?;
    Ok(Reply::ok(MemberList {
        members: members.iter().map(MemberOut::from).collect(),
        total: members.len(),
    }))
}

pub async fn invite(ctx: Ctx) -> Result<Reply> {
    let p = ctx.principal()?.clone();
    p.require(Scope::MembersInvite)?;
    let body = ctx.json_object(false)?;
    let mut f = Fields::new(&body);
    let email = match f.raw("email") {
        None => {
            f.error("email", "is required");
            None
        }
        Some(Value::String(s)) => match fields::email(s) {
            Ok(e) => Some(e),
            Err(m) => {
                f.error("email", m);
                None
            }
        },
        Some(_) => {
            f.error("email", "must be a string");
            None
        }
    };
    let role = match f.raw("role") {
        None => {
            f.error("role", "is required (OWNER, ADMIN, DEVELOPER or VIEWER)");
            None
        }
        Some(Value::String(s)) => match s.trim().to_ascii_uppercase().parse::<Role>() {
            Ok(r) => Some(r),
            Err(m) => {
                f.error("role", m);
                None
            }
        },
        Some(_) => {
            f.error("role", "must be one of OWNER, ADMIN, DEVELOPER, VIEWER");
            None
        }
    };
    f.finish()?;
    let (email, role) = (email.unwrap_or_default(), role.unwrap_or(Role::Viewer));
    let project_id = ctx.param(0).to_string();
    let member = ctx
        .state
        .db
        .write(move |c| {
            let view = member_view(c, &p, &project_id)?;
            require_project_role(&view, Role::Admin, "inviting members")?;
            if role == Role::Owner && view.role != Role::Owner {
                return Err(Error::Forbidden(
                    "only an OWNER of the project may invite another OWNER".into(),
                ));
            }
            let inviter = Inviter {
                developer_id: &p.developer_id,
                tenant_role: p.role,
            };
            projects::invite(c, &p.tenant_id, &project_id, &inviter, &email, role)
        })
        .await?;
    // A project role changes what the member's keys may do (`auth::developer_scopes`).
    ctx.state.auth.evict_tenant(&ctx.principal()?.tenant_id);
    Ok(Reply::created(MemberOut::from(&member)))
}

pub async fn remove_member(ctx: Ctx) -> Result<Reply> {
    let p = ctx.principal()?.clone();
    p.require(Scope::MembersInvite)?;
    let project_id = ctx.param(0).to_string();
    let member_id = ctx.param(1).to_string();
    let removed = ctx
        .state
        .db
        .write(move |c| {
            let view = member_view(c, &p, &project_id)?;
            require_project_role(&view, Role::Admin, "removing members")?;
            let member = projects::get_member(c, &p.tenant_id, &project_id, &member_id)?
                .ok_or_else(|| Error::not_found("member"))?;
            if member.role == Role::Owner && view.role != Role::Owner {
                return Err(Error::Forbidden(
                    "only an OWNER of the project may remove an OWNER".into(),
                ));
            }
            if !projects::remove_member(c, &p.tenant_id, &project_id, &member)? {
                return Err(Error::not_found("member"));
            }
            Ok(member)
        })
        .await?;
    ctx.state.auth.evict_tenant(&ctx.principal()?.tenant_id);
    Ok(Reply::ok(MemberRemoved {
        message: "Member removed successfully",
        id: &removed.id,
        project_id: &removed.project_id,
    }))
}
