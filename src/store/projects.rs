//! Projects and their members.
//!
//! Invariants:
//! - Every function takes the tenant first and touches only that tenant's rows; an id of another
//!   tenant behaves exactly like an id that does not exist.
//! - The creator of a project is its first member, with role OWNER and status `active`.
//! - A developer is a member of a project at most once (`project_members_unique`); inviting an
//!   existing member is a conflict.
//! - An invited email that is not yet a developer of the tenant becomes one, with status `invited`
//!   and a tenant-wide role of at most DEVELOPER: an invitation to one project never grants
//!   tenant-wide administration (API keys, inviting), and never more than the inviter holds.
//! - A project keeps at least one OWNER: removing its last OWNER is a conflict.
//! - Tenant-wide OWNERs and ADMINs act in every project of the tenant with at least their tenant
//!   role; other developers only see projects they are members of. Listings ("my projects")
//!   show memberships only.

use super::sql::{params, OptionalExtension};
use super::Conn;
use crate::error::{Error, Result};
use crate::ids;
use crate::perms::Role;
use crate::store::tenants;
use crate::time::now_rfc3339;

#[derive(Clone, Debug)]
pub struct Project {
    pub id: String,
    pub tenant_id: String,
    pub name: String,
    pub description: Option<String>,
    pub created_by: String,
    pub created_at: String,
    pub updated_at: String,
}

/// A project as seen by one developer: their role in it and how many members it has.
#[derive(Clone, Debug)]
pub struct ProjectView {
    pub project: Project,
    pub role: Role,
    pub member_count: i64,
}

#[derive(Clone, Debug)]
pub struct Member {
    pub id: String,
    pub project_id: String,
    pub developer_id: String,
    pub email: String,
    pub name: String,
    pub role: Role,
    pub status: String,
    pub invited_by: Option<String>,
    pub invited_at: String,
}

const PROJECT_COLUMNS: &str =
    "p.id, p.tenant_id, p.name, p.description, p.created_by, p.created_at, p.updated_at";

fn row_to_project(r: &super::sql::Row<'_>) -> super::sql::Result<Project> {
    Ok(Project {
        id: r.get(0)?,
        tenant_id: r.get(1)?,
        name: r.get(2)?,
        description: r.get(3)?,
        created_by: r.get(4)?,
        created_at: r.get(5)?,
        updated_at: r.get(6)?,
    })
}

const MEMBER_COLUMNS: &str = "m.id, m.project_id, m.developer_id, d.email, d.name, m.role, \
                              m.status, m.invited_by, m.invited_at";

fn row_to_member(r: &super::sql::Row<'_>) -> super::sql::Result<Member> {
    let id: String = r.get(0)?;
    Ok(Member {
        role: super::spelled(r, 5, "project_members", &id)?,
        id,
        project_id: r.get(1)?,
        developer_id: r.get(2)?,
        email: r.get(3)?,
        name: r.get(4)?,
        status: r.get(6)?,
        invited_by: r.get(7)?,
        invited_at: r.get(8)?,
    })
}

/// Creates a project with `developer_id` as its OWNER member.
pub fn create(
    conn: &Conn,
    tenant_id: &str,
    developer_id: &str,
    name: &str,
    description: Option<&str>,
) -> Result<Project> {
    let id = ids::new("proj");
    let now = now_rfc3339();
    conn.execute(
        "INSERT INTO projects(id, tenant_id, name, description, created_by, created_at, updated_at)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?6)",
        params![id, tenant_id, name, description, developer_id, now],
    )?;
    conn.execute(
        "INSERT INTO project_members(id, tenant_id, project_id, developer_id, role, status,
                                     invited_by, invited_at)
         VALUES (?1, ?2, ?3, ?4, 'OWNER', 'active', NULL, ?5)",
        params![ids::new("mem"), tenant_id, id, developer_id, now],
    )?;
    Ok(Project {
        id,
        tenant_id: tenant_id.into(),
        name: name.into(),
        description: description.map(str::to_string),
        created_by: developer_id.into(),
        created_at: now.clone(),
        updated_at: now,
    })
}

pub fn get(conn: &Conn, tenant_id: &str, id: &str) -> Result<Option<Project>> {
    let mut stmt = conn.prepare_cached(&format!(
        "SELECT {PROJECT_COLUMNS} FROM projects p WHERE p.tenant_id = ?1 AND p.id = ?2"
    ))?;
    Ok(stmt.query_row([tenant_id, id], row_to_project).optional()?)
}

/// The role of a developer in a project, `None` when not a member (or no such project).
pub fn member_role(
    conn: &Conn,
    tenant_id: &str,
    project_id: &str,
    developer_id: &str,
) -> Result<Option<Role>> {
    let mut stmt = conn.prepare_cached(
        "SELECT role, id FROM project_members
         WHERE tenant_id = ?1 AND project_id = ?2 AND developer_id = ?3",
    )?;
    Ok(stmt
        .query_row([tenant_id, project_id, developer_id], |r| {
            let id: String = r.get(1)?;
            super::spelled(r, 0, "project_members", &id)
        })
        .optional()?)
}

/// The role a developer acts with in a project: the higher of their membership role and, for
/// tenant-wide OWNERs and ADMINs, their tenant role (they administer every project of the
/// tenant). `None` for a DEVELOPER or VIEWER who is not a member.
pub fn effective_role(membership: Option<Role>, tenant_role: Role) -> Option<Role> {
    let tenant_wide = (tenant_role >= Role::Admin).then_some(tenant_role);
    membership.max(tenant_wide)
}

/// A project as seen by a developer; `None` when there is no such project in the tenant or the
/// developer has no role in it (`effective_role`): both answer 404 to the caller.
pub fn view(
    conn: &Conn,
    tenant_id: &str,
    project_id: &str,
    developer_id: &str,
    tenant_role: Role,
) -> Result<Option<ProjectView>> {
    let Some(project) = get(conn, tenant_id, project_id)? else {
        return Ok(None);
    };
    let membership = member_role(conn, tenant_id, project_id, developer_id)?;
    let Some(role) = effective_role(membership, tenant_role) else {
        return Ok(None);
    };
    let member_count = member_count(conn, tenant_id, project_id)?;
    Ok(Some(ProjectView {
        project,
        role,
        member_count,
    }))
}

pub fn member_count(conn: &Conn, tenant_id: &str, project_id: &str) -> Result<i64> {
    let mut stmt = conn.prepare_cached(
        "SELECT COUNT(*) FROM project_members WHERE tenant_id = ?1 AND project_id = ?2",
    )?;
    Ok(stmt.query_row([tenant_id, project_id], |r| r.get(0))?)
}

/// The projects a developer is a member of, oldest first, with their role and member count.
pub fn list_for_developer(
    conn: &Conn,
    tenant_id: &str,
    developer_id: &str,
) -> Result<Vec<ProjectView>> {
    let mut stmt = conn.prepare_cached(&format!(
        "SELECT {PROJECT_COLUMNS}, m.role,
                (SELECT COUNT(*) FROM project_members c
                 WHERE c.tenant_id = p.tenant_id AND c.project_id = p.id)
         FROM project_members m JOIN projects p ON p.id = m.project_id AND p.tenant_id = m.tenant_id
         WHERE m.tenant_id = ?1 AND m.developer_id = ?2
         ORDER BY p.created_at, p.id"
    ))?;
    let rows = stmt.query_map([tenant_id, developer_id], |r| {
        let project = row_to_project(r)?;
        Ok(ProjectView {
            role: super::spelled(r, 7, "project_members", &project.id)?,
            project,
            member_count: r.get(8)?,
        })
    })?;
    Ok(rows.collect::<super::sql::Result<_>>()?)
}

/// A project's members, in the order they joined.
pub fn members(conn: &Conn, tenant_id: &str, project_id: &str) -> Result<Vec<Member>> {
    let mut stmt = conn.prepare_cached(&format!(
        "SELECT {MEMBER_COLUMNS}
         FROM project_members m JOIN developers d ON d.id = m.developer_id AND d.tenant_id = m.tenant_id
         WHERE m.tenant_id = ?1 AND m.project_id = ?2
         ORDER BY m.invited_at, m.id"
    ))?;
    let rows = stmt.query_map([tenant_id, project_id], row_to_member)?;
    Ok(rows.collect::<super::sql::Result<_>>()?)
}

/// One member of a project, by membership id (`mem_…`) or developer id (`dev_…`).
pub fn get_member(
    conn: &Conn,
    tenant_id: &str,
    project_id: &str,
    member_id: &str,
) -> Result<Option<Member>> {
    let mut stmt = conn.prepare_cached(&format!(
        "SELECT {MEMBER_COLUMNS}
         FROM project_members m JOIN developers d ON d.id = m.developer_id AND d.tenant_id = m.tenant_id
         WHERE m.tenant_id = ?1 AND m.project_id = ?2 AND (m.id = ?3 OR m.developer_id = ?3)"
    ))?;
    Ok(stmt
        .query_row([tenant_id, project_id, member_id], row_to_member)
        .optional()?)
}

/// Who invites: their developer id and tenant-wide role (the cap on what a new developer gets).
pub struct Inviter<'a> {
    pub developer_id: &'a str,
    pub tenant_role: Role,
}

/// Adds `email` to a project with `role`. The email must already be validated and normalised
/// (trimmed, lower case). A developer of the tenant with that email is reused; otherwise one is
/// created with status `invited`. Already a member: 409.
pub fn invite(
    conn: &Conn,
    tenant_id: &str,
    project_id: &str,
    inviter: &Inviter<'_>,
    email: &str,
    role: Role,
) -> Result<Member> {
    let existing: Option<(String, String)> = conn
        .query_row(
            "SELECT id, name FROM developers WHERE tenant_id = ?1 AND email = ?2 COLLATE NOCASE",
            [tenant_id, email],
            |r| Ok((r.get(0)?, r.get(1)?)),
        )
        .optional()?;
    let (developer_id, name) = match existing {
        Some(found) => found,
        None => {
            let tenant_role = role.min(Role::Developer).min(inviter.tenant_role);
            let name = email.split('@').next().unwrap_or(email);
            let dev = tenants::create_developer(
                conn,
                tenant_id,
                name,
                email,
                None,
                tenant_role,
                "invited",
            )?;
            (dev.id, dev.name)
        }
    };
    if member_role(conn, tenant_id, project_id, &developer_id)?.is_some() {
        return Err(Error::Conflict(format!(
            "{email} is already a member of this project"
        )));
    }
    let id = ids::new("mem");
    let now = now_rfc3339();
    conn.execute(
        "INSERT INTO project_members(id, tenant_id, project_id, developer_id, role, status,
                                     invited_by, invited_at)
         VALUES (?1, ?2, ?3, ?4, ?5, 'invited', ?6, ?7)",
        params![
            id,
            tenant_id,
            project_id,
            developer_id,
            role.as_str(),
            inviter.developer_id,
            now
        ],
    )?;
    touch(conn, tenant_id, project_id, &now)?;
    Ok(Member {
        id,
        project_id: project_id.into(),
        developer_id,
        email: email.into(),
        name,
        role,
        status: "invited".into(),
        invited_by: Some(inviter.developer_id.into()),
        invited_at: now,
    })
}

/// Owners of a project.
pub fn owner_count(conn: &Conn, tenant_id: &str, project_id: &str) -> Result<i64> {
    let mut stmt = conn.prepare_cached(
        "SELECT COUNT(*) FROM project_members
         WHERE tenant_id = ?1 AND project_id = ?2 AND role = 'OWNER'",
    )?;
    Ok(stmt.query_row([tenant_id, project_id], |r| r.get(0))?)
}

/// Removes a membership by its id; `false` when there is no such member. Refuses to remove the
/// last OWNER (409), so a project always has someone who can manage it.
pub fn remove_member(
    conn: &Conn,
    tenant_id: &str,
    project_id: &str,
    member: &Member,
) -> Result<bool> {
    if member.role == Role::Owner && owner_count(conn, tenant_id, project_id)? <= 1 {
        return Err(Error::Conflict(
            "cannot remove the last OWNER of a project; make another member OWNER first".into(),
        ));
    }
    let n = conn.execute(
        "DELETE FROM project_members WHERE tenant_id = ?1 AND project_id = ?2 AND id = ?3",
        params![tenant_id, project_id, member.id],
    )?;
    if n > 0 {
        touch(conn, tenant_id, project_id, &now_rfc3339())?;
    }
    Ok(n > 0)
}

fn touch(conn: &Conn, tenant_id: &str, project_id: &str, now: &str) -> Result<()> {
    conn.execute(
        "UPDATE projects SET updated_at = ?3 WHERE tenant_id = ?1 AND id = ?2",
        params![tenant_id, project_id, now],
    )?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::effective_role;
    use crate::perms::Role::*;

    #[test]
    fn tenant_admins_act_in_every_project() {
        assert_eq!(effective_role(None, Owner), Some(Owner));
        assert_eq!(effective_role(None, Admin), Some(Admin));
        assert_eq!(effective_role(None, Developer), None);
        assert_eq!(effective_role(None, Viewer), None);
        assert_eq!(effective_role(Some(Viewer), Admin), Some(Admin));
        assert_eq!(effective_role(Some(Owner), Admin), Some(Owner));
        assert_eq!(effective_role(Some(Viewer), Developer), Some(Viewer));
    }
}
