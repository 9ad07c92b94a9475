//! Permission types: scopes, roles and what a role grants. A leaf module: the storage layer reads
//! and writes these values, and `auth` resolves them into a caller's permissions.

use std::fmt;
use std::str::FromStr;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Scope {
    AgentsInvoke,
    AgentsDeploy,
    ProjectsRead,
    MembersInvite,
    ConnectorsManage,
    Read,
    Write,
    Admin,
    /// Decrypting vault values (`POST /v1/vault/query/{id}/reveal`); `read` does not imply it.
    VaultReveal,
}

impl Scope {
    pub const ALL: [Scope; 9] = [
        Scope::AgentsInvoke,
        Scope::AgentsDeploy,
        Scope::ProjectsRead,
        Scope::MembersInvite,
        Scope::ConnectorsManage,
        Scope::Read,
        Scope::Write,
        Scope::Admin,
        Scope::VaultReveal,
    ];
    /// The registry family's scopes (any of them lets a key list agents).
    pub const REGISTRY: [Scope; 5] = [
        Scope::AgentsInvoke,
        Scope::AgentsDeploy,
        Scope::ProjectsRead,
        Scope::MembersInvite,
        Scope::ConnectorsManage,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Scope::AgentsInvoke => "agents:invoke",
            Scope::AgentsDeploy => "agents:deploy",
            Scope::ProjectsRead => "projects:read",
            Scope::MembersInvite => "members:invite",
            Scope::ConnectorsManage => "connectors:manage",
            Scope::Read => "read",
            Scope::Write => "write",
            Scope::Admin => "admin",
            Scope::VaultReveal => "vault:reveal",
        }
    }

    fn bit(self) -> u16 {
        1 << (self as u16)
    }
}

impl FromStr for Scope {
    type Err = String;
    fn from_str(s: &str) -> std::result::Result<Self, String> {
        Scope::ALL
            .into_iter()
            .find(|sc| sc.as_str() == s)
            .ok_or_else(|| {
                format!(
                    "unknown scope '{}' (expected one of: {})",
                    crate::error::echo(s),
                    Scope::ALL.map(|s| s.as_str()).join(", ")
                )
            })
    }
}

/// A set of scopes.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub struct Scopes(u16);

impl Scopes {
    pub const EMPTY: Scopes = Scopes(0);

    pub fn of(list: &[Scope]) -> Scopes {
        Scopes(list.iter().fold(0, |acc, s| acc | s.bit()))
    }

    pub fn parse_list<'a>(
        items: impl IntoIterator<Item = &'a str>,
    ) -> std::result::Result<Scopes, String> {
        let mut bits = 0;
        for item in items {
            bits |= item.trim().parse::<Scope>()?.bit();
        }
        Ok(Scopes(bits))
    }

    pub fn contains(self, s: Scope) -> bool {
        self.0 & s.bit() != 0
    }

    pub fn is_empty(self) -> bool {
        self.0 == 0
    }

    pub fn intersect(self, other: Scopes) -> Scopes {
        Scopes(self.0 & other.0)
    }

    pub fn is_subset_of(self, other: Scopes) -> bool {
        self.0 & !other.0 == 0
    }

    pub fn to_list(self) -> Vec<&'static str> {
        Scope::ALL
            .into_iter()
            .filter(|s| self.contains(*s))
            .map(Scope::as_str)
            .collect()
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Role {
    Viewer,
    Developer,
    Admin,
    Owner,
}

impl Role {
    pub fn as_str(self) -> &'static str {
        match self {
            Role::Owner => "OWNER",
            Role::Admin => "ADMIN",
            Role::Developer => "DEVELOPER",
            Role::Viewer => "VIEWER",
        }
    }

    /// The permissions a role grants (docs/api.md "Common rules").
    pub fn scopes(self) -> Scopes {
        use Scope::*;
        match self {
            Role::Owner | Role::Admin => Scopes::of(&Scope::ALL),
            Role::Developer => Scopes::of(&[
                AgentsInvoke,
                AgentsDeploy,
                ProjectsRead,
                ConnectorsManage,
                Read,
                Write,
            ]),
            Role::Viewer => Scopes::of(&[ProjectsRead, Read]),
        }
    }
}

impl FromStr for Role {
    type Err = String;
    fn from_str(s: &str) -> std::result::Result<Self, String> {
        match s {
            "OWNER" => Ok(Role::Owner),
            "ADMIN" => Ok(Role::Admin),
            "DEVELOPER" => Ok(Role::Developer),
            "VIEWER" => Ok(Role::Viewer),
            other => Err(format!(
                "unknown role '{}' (expected OWNER, ADMIN, DEVELOPER or VIEWER)",
                crate::error::echo(other)
            )),
        }
    }
}

impl fmt::Display for Role {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// What a developer may do: their tenant role's permissions, plus `members:invite` when they
/// administer a project (a project ADMIN or OWNER invites to that project; which project is
/// checked against their membership role on every invite).
pub fn developer_scopes(role: Role, project_admin: bool) -> Scopes {
    let scopes = role.scopes();
    if project_admin {
        Scopes(scopes.0 | Scope::MembersInvite.bit())
    } else {
        scopes
    }
}
