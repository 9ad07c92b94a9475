//! The permission matrix: every registry route (and the API-key routes), called with a key of
//! each scope alone and a key of each role, against the expected status.
//!
//! Scope-only keys belong to the tenant OWNER (a member of the project with role OWNER), so
//! only their scope decides. Role keys have no scopes (the role's permissions) and belong to a
//! developer whose tenant role and project role are that role.

use super::*;

const SCOPES: [&str; 8] = [
    "agents:invoke",
    "agents:deploy",
    "projects:read",
    "members:invite",
    "connectors:manage",
    "read",
    "write",
    "admin",
];
const REGISTRY: &[&str] = &[
    "agents:invoke",
    "agents:deploy",
    "projects:read",
    "members:invite",
    "connectors:manage",
];
const ROLES: [Role; 4] = [Role::Owner, Role::Admin, Role::Developer, Role::Viewer];
const ALL_ROLES: &[Role] = &ROLES;
const BUILDERS: &[Role] = &[Role::Owner, Role::Admin, Role::Developer];
const ADMINS: &[Role] = &[Role::Owner, Role::Admin];

/// One route: the status on success, the single scopes that grant it, the roles that may use it.
struct Case {
    route: &'static str,
    ok: u16,
    scopes: &'static [&'static str],
    roles: &'static [Role],
}

const CASES: &[Case] = &[
    Case {
        route: "GET /v1/projects",
        ok: 200,
        scopes: &["projects:read"],
        roles: ALL_ROLES,
    },
    Case {
        route: "POST /v1/projects",
        ok: 201,
        scopes: &["agents:deploy", "connectors:manage"],
        roles: BUILDERS,
    },
    Case {
        route: "GET /v1/projects/{id}",
        ok: 200,
        scopes: &["projects:read"],
        roles: ALL_ROLES,
    },
    Case {
        route: "GET /v1/projects/{id}/members",
        ok: 200,
        scopes: &["projects:read"],
        roles: ALL_ROLES,
    },
    Case {
        route: "POST /v1/projects/{id}/members",
        ok: 201,
        scopes: &["members:invite"],
        roles: ADMINS,
    },
    Case {
        route: "DELETE /v1/projects/{id}/members/{member}",
        ok: 200,
        scopes: &["members:invite"],
        roles: ADMINS,
    },
    Case {
        route: "GET /v1/projects/{id}/connectors",
        ok: 200,
        scopes: &["projects:read", "connectors:manage"],
        roles: ALL_ROLES,
    },
    Case {
        route: "POST /v1/projects/{id}/connectors",
        ok: 201,
        scopes: &["connectors:manage"],
        roles: BUILDERS,
    },
    Case {
        route: "DELETE /v1/projects/{id}/connectors/{connector}",
        ok: 200,
        scopes: &["connectors:manage"],
        roles: BUILDERS,
    },
    Case {
        route: "GET /v1/connectors/registry",
        ok: 200,
        scopes: REGISTRY,
        roles: ALL_ROLES,
    },
    Case {
        route: "POST /v1/agents/deploy",
        ok: 201,
        scopes: &["agents:deploy"],
        roles: BUILDERS,
    },
    Case {
        route: "GET /v1/agents",
        ok: 200,
        scopes: REGISTRY,
        roles: ALL_ROLES,
    },
    Case {
        route: "GET /v1/agents/{id}",
        ok: 200,
        scopes: REGISTRY,
        roles: ALL_ROLES,
    },
    Case {
        route: "DELETE /v1/agents/{id}",
        ok: 200,
        scopes: &["agents:deploy"],
        roles: BUILDERS,
    },
    Case {
        route: "GET /v1/usage",
        ok: 200,
        scopes: &SCOPES,
        roles: ALL_ROLES,
    },
    Case {
        route: "GET /v1/me",
        ok: 200,
        scopes: &SCOPES,
        roles: ALL_ROLES,
    },
    Case {
        route: "POST /v1/api-keys",
        ok: 201,
        scopes: &["admin"],
        roles: ADMINS,
    },
    Case {
        route: "GET /v1/api-keys",
        ok: 200,
        scopes: &["admin"],
        roles: ADMINS,
    },
];

/// What a matrix key holds: one scope alone, or a role (a key without scopes).
#[derive(Debug)]
enum Grant {
    Scope(&'static str),
    Role(Role),
}

impl Grant {
    fn allows(&self, case: &Case) -> bool {
        match self {
            Grant::Scope(s) => case.scopes.contains(s),
            Grant::Role(r) => case.roles.contains(r),
        }
    }
}

/// Fixtures the calls act on; mutating calls get fresh ones made with the owner key.
struct World<'a> {
    srv: &'a TestServer,
    project: String,
    agent: String,
    n: std::cell::Cell<usize>,
}

impl World<'_> {
    fn fresh(&self) -> usize {
        self.n.set(self.n.get() + 1);
        self.n.get()
    }

    /// Calls `route` with `key`, after creating what the call needs with the owner key.
    async fn call(&self, route: &str, key: &str) -> (u16, Value) {
        let srv = self.srv;
        let p = &self.project;
        let n = self.fresh();
        let (method, path, body) = match route {
            "GET /v1/projects" => (Method::GET, "/v1/projects".to_string(), None),
            "POST /v1/projects" => (
                Method::POST,
                "/v1/projects".into(),
                Some(json!({"name": format!("project {n}")})),
            ),
            "GET /v1/projects/{id}" => (Method::GET, format!("/v1/projects/{p}"), None),
            "GET /v1/projects/{id}/members" => {
                (Method::GET, format!("/v1/projects/{p}/members"), None)
            }
            "POST /v1/projects/{id}/members" => (
                Method::POST,
                format!("/v1/projects/{p}/members"),
                Some(json!({"email": format!("guest{n}@example.org"), "role": "VIEWER"})),
            ),
            "DELETE /v1/projects/{id}/members/{member}" => {
                let m = invite(
                    srv,
                    &srv.key,
                    p,
                    &format!("leaver{n}@example.org"),
                    "VIEWER",
                )
                .await;
                let id = m["id"].as_str().expect("member id").to_string();
                (
                    Method::DELETE,
                    format!("/v1/projects/{p}/members/{id}"),
                    None,
                )
            }
            "GET /v1/projects/{id}/connectors" => {
                (Method::GET, format!("/v1/projects/{p}/connectors"), None)
            }
            "POST /v1/projects/{id}/connectors" => (
                Method::POST,
                format!("/v1/projects/{p}/connectors"),
                Some(json!({"name": format!("db {n}"), "mcp_url": "https://mcp.example.org/"})),
            ),
            "DELETE /v1/projects/{id}/connectors/{connector}" => {
                let c = connector(srv, &srv.key, p, &format!("old {n}")).await;
                let id = c["id"].as_str().expect("connector id").to_string();
                (
                    Method::DELETE,
                    format!("/v1/projects/{p}/connectors/{id}"),
                    None,
                )
            }
            "GET /v1/connectors/registry" => (Method::GET, "/v1/connectors/registry".into(), None),
            "POST /v1/agents/deploy" => (
                Method::POST,
                "/v1/agents/deploy".into(),
                Some(agent_body(&format!("agent {n}"))),
            ),
            "GET /v1/agents" => (Method::GET, "/v1/agents".into(), None),
            "GET /v1/agents/{id}" => (Method::GET, format!("/v1/agents/{}", self.agent), None),
            "DELETE /v1/agents/{id}" => {
                let id = deploy(srv, &srv.key, &format!("doomed {n}")).await;
                (Method::DELETE, format!("/v1/agents/{id}"), None)
            }
            "GET /v1/usage" => (Method::GET, "/v1/usage".into(), None),
            "GET /v1/me" => (Method::GET, "/v1/me".into(), None),
            "POST /v1/api-keys" => (
                Method::POST,
                "/v1/api-keys".into(),
                Some(json!({"name": format!("k{n}")})),
            ),
            "GET /v1/api-keys" => (Method::GET, "/v1/api-keys".into(), None),
            other => panic!("no call for {other}"),
        };
        let mut rb = srv.req_as(key, method, &path);
        if let Some(b) = body {
            rb = rb.json(&b);
        }
        send(rb).await
    }
}

#[tokio::test]
async fn every_route_by_scope_and_by_role() {
    // Enterprise: no rate limit or agent limit interferes with the ~250 calls.
    let srv = TestServer::start_with(|c| c.default_plan = Plan::Enterprise).await;
    let tenant = tenant_of(&srv).await;
    let project = create_project(&srv, &srv.key, "matrix").await;
    let agent = deploy(&srv, &srv.key, "fixture agent").await;
    let world = World {
        srv: &srv,
        project: project.clone(),
        agent,
        n: std::cell::Cell::new(0),
    };

    let mut principals: Vec<(Grant, String)> = Vec::new();
    for scope in SCOPES {
        principals.push((Grant::Scope(scope), srv.create_key(&[scope]).await));
    }
    for role in ROLES {
        let email = format!("{}@example.org", role.as_str().to_lowercase());
        let (_, key) = developer(&srv, &tenant, role, &email, Scopes::EMPTY).await;
        let m = invite(&srv, &srv.key, &project, &email, role.as_str()).await;
        assert_eq!(m["role"], role.as_str());
        principals.push((Grant::Role(role), key));
    }

    let mut failures = Vec::new();
    for case in CASES {
        for (who, key) in &principals {
            let (status, body) = world.call(case.route, key).await;
            let expected = if who.allows(case) { case.ok } else { 403 };
            if status != expected {
                failures.push(format!(
                    "{} as {who:?}: {status} (expected {expected}) {body}",
                    case.route
                ));
            } else if status == 403 {
                let code = if case.route.contains("/v1/api-keys") {
                    &body["error"]["code"]
                } else {
                    &body["error"]
                };
                if code != "forbidden" {
                    failures.push(format!("{} as {who:?}: 403 body {body}", case.route));
                }
            }
        }
    }
    assert!(
        failures.is_empty(),
        "{} mismatches:\n{}",
        failures.len(),
        failures.join("\n")
    );
    srv.shutdown().await;
}
