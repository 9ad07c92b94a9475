//! Registry family (API.md §3) and API keys: projects and members, agents, connectors and the
//! catalogue, usage, me, the permission model and tenant isolation. Submodules hold the
//! permission matrix, agents, connectors, API keys and cross-tenant isolation; this file holds
//! the shared helpers and the project, member and usage tests.

mod agents;
mod connectors;
mod isolation;
mod keys;
mod matrix;

use crate::support::*;
use engram::auth::{Role, Scopes};
use engram::plans::Plan;
use reqwest::Method;
use serde_json::{json, Value};
use std::time::Duration;

/// The tenant of the server's bootstrap key.
async fn tenant_of(srv: &TestServer) -> String {
    let (s, me) = srv.get("/v1/me").await;
    assert_eq!(s, 200, "{me}");
    me["tenant_id"].as_str().expect("tenant id").to_string()
}

/// A developer of `tenant` with `role`, and a key of theirs with `scopes` (empty = the role).
async fn developer(
    srv: &TestServer,
    tenant: &str,
    role: Role,
    email: &str,
    scopes: Scopes,
) -> (String, String) {
    let (t, e) = (tenant.to_string(), email.to_string());
    srv.state()
        .db
        .write(move |c| {
            let d = engram::store::tenants::create_developer(
                c,
                &t,
                "Test Developer",
                &e,
                None,
                role,
                "active",
            )?;
            let key = engram::store::keys::generate("hk", "live");
            engram::store::keys::insert(c, &t, &d.id, "test", scopes, &key, None)?;
            Ok((d.id, key))
        })
        .await
        .expect("developer created")
}

async fn call(
    srv: &TestServer,
    key: &str,
    method: Method,
    path: &str,
    body: Option<Value>,
) -> (u16, Value) {
    let mut rb = srv.req_as(key, method, path);
    if let Some(b) = body {
        rb = rb.json(&b);
    }
    send(rb).await
}

/// Creates a project with `key`; returns its id.
async fn create_project(srv: &TestServer, key: &str, name: &str) -> String {
    let (s, b) = call(
        srv,
        key,
        Method::POST,
        "/v1/projects",
        Some(json!({"name": name})),
    )
    .await;
    assert_eq!(s, 201, "{b}");
    b["id"].as_str().expect("project id").to_string()
}

/// Invites `email` with `role` using `key`; asserts 201 and returns the member.
async fn invite(srv: &TestServer, key: &str, project: &str, email: &str, role: &str) -> Value {
    let (s, b) = call(
        srv,
        key,
        Method::POST,
        &format!("/v1/projects/{project}/members"),
        Some(json!({"email": email, "role": role})),
    )
    .await;
    assert_eq!(s, 201, "{b}");
    b
}

/// Registers a connector named `name` with `key`; asserts 201 and returns it.
async fn connector(srv: &TestServer, key: &str, project: &str, name: &str) -> Value {
    let (s, b) = call(
        srv,
        key,
        Method::POST,
        &format!("/v1/projects/{project}/connectors"),
        Some(json!({"name": name, "mcp_url": "https://mcp.example.org/", "category": "Data"})),
    )
    .await;
    assert_eq!(s, 201, "{b}");
    b
}

fn agent_body(name: &str) -> Value {
    json!({"name": name, "instruction": "Answer briefly.", "model": "offline-echo"})
}

/// Deploys an agent named `name` with `key`; returns its id.
async fn deploy(srv: &TestServer, key: &str, name: &str) -> String {
    let (s, b) = call(
        srv,
        key,
        Method::POST,
        "/v1/agents/deploy",
        Some(agent_body(name)),
    )
    .await;
    assert_eq!(s, 201, "{b}");
    b["agent_id"].as_str().expect("agent id").to_string()
}

/// The first `details` entry of a registry 400, after checking the body's shape.
fn bad_field(status: u16, body: &Value) -> String {
    assert_eq!(status, 400, "{body}");
    assert_eq!(body["error"], "bad_request", "{body}");
    assert!(body["message"].is_string(), "{body}");
    body["details"][0]["field"]
        .as_str()
        .unwrap_or_default()
        .to_string()
}

#[tokio::test]
async fn projects_create_list_get_and_members() {
    let srv = TestServer::start().await;
    let tenant = tenant_of(&srv).await;
    let (s, b) = srv
        .post(
            "/v1/projects",
            json!({"name": "Clinical Assistant", "description": "triage"}),
        )
        .await;
    assert_eq!(s, 201, "{b}");
    let id = b["id"].as_str().unwrap().to_string();
    assert!(id.starts_with("proj_"));
    assert_eq!(b["role"], "OWNER");
    assert_eq!(b["member_count"], 1);
    assert_eq!(b["members"][0]["role"], "OWNER");
    assert_eq!(b["members"][0]["status"], "active");

    // Validation names the field; nothing is created.
    let (s, b) = srv.post("/v1/projects", json!({})).await;
    assert_eq!(bad_field(s, &b), "name");
    let (s, b) = srv
        .post("/v1/projects", json!({"name": "x".repeat(101)}))
        .await;
    assert_eq!(bad_field(s, &b), "name");
    let (s, b) = srv
        .post("/v1/projects", json!({"name": "ok", "description": 5}))
        .await;
    assert_eq!(bad_field(s, &b), "description");

    let (s, b) = srv.get("/v1/projects").await;
    assert_eq!(s, 200);
    assert_eq!(
        b["projects"],
        json!([{"id": id, "name": "Clinical Assistant", "role": "OWNER", "member_count": 1,
                "description": "triage", "created_by": b["projects"][0]["created_by"],
                "created_at": b["projects"][0]["created_at"], "updated_at": b["projects"][0]["updated_at"]}])
    );

    // Invite a new email: it becomes an invited developer of the tenant.
    let m = invite(&srv, &srv.key, &id, " Doctor@Hospital.org ", "DEVELOPER").await;
    assert!(m["id"].as_str().unwrap().starts_with("mem_"));
    assert_eq!(m["project_id"], id.as_str());
    assert_eq!(m["email"], "doctor@hospital.org");
    assert_eq!(m["role"], "DEVELOPER");
    assert_eq!(m["status"], "invited");
    assert!(engram::time::parse(m["invited_at"].as_str().unwrap()).is_some());
    let dev_id = m["developer_id"].as_str().unwrap().to_string();
    let (t, d) = (tenant.clone(), dev_id.clone());
    let dev = srv
        .state()
        .db
        .read(move |c| engram::store::tenants::get_developer(c, &t, &d))
        .await
        .unwrap()
        .expect("the invited email is a developer now");
    assert_eq!(
        (dev.status.as_str(), dev.role),
        ("invited", Role::Developer)
    );

    // Already a member (email compared without case): 409.
    let (s, b) = srv
        .post(
            &format!("/v1/projects/{id}/members"),
            json!({"email": "DOCTOR@hospital.org", "role": "VIEWER"}),
        )
        .await;
    assert_eq!((s, b["error"].as_str()), (409, Some("conflict")), "{b}");
    // Bad emails and roles, one by one.
    for (body, field) in [
        (json!({"role": "VIEWER"}), "email"),
        (json!({"email": "not-an-email", "role": "VIEWER"}), "email"),
        (json!({"email": "a@b", "role": "VIEWER"}), "email"),
        (json!({"email": 42, "role": "VIEWER"}), "email"),
        (json!({"email": "x@example.org"}), "role"),
        (json!({"email": "x@example.org", "role": "KING"}), "role"),
    ] {
        let (s, b) = srv
            .post(&format!("/v1/projects/{id}/members"), body.clone())
            .await;
        assert_eq!(bad_field(s, &b), field, "{body}");
    }

    let (s, b) = srv.get(&format!("/v1/projects/{id}")).await;
    assert_eq!(s, 200);
    assert_eq!(b["member_count"], 2);
    assert_eq!(b["members"].as_array().unwrap().len(), 2);
    let (s, b) = srv.get(&format!("/v1/projects/{id}/members")).await;
    assert_eq!(s, 200);
    assert_eq!(b["members"][1]["email"], "doctor@hospital.org");

    // Remove: gone, then 404.
    let mid = m["id"].as_str().unwrap();
    let (s, b) = srv
        .delete(&format!("/v1/projects/{id}/members/{mid}"))
        .await;
    assert_eq!(s, 200, "{b}");
    let (s, _) = srv
        .delete(&format!("/v1/projects/{id}/members/{mid}"))
        .await;
    assert_eq!(s, 404);
    let (_, b) = srv.get(&format!("/v1/projects/{id}")).await;
    assert_eq!(b["member_count"], 1);
    // The last OWNER stays.
    let owner = b["members"][0]["id"].as_str().unwrap();
    let (s, b) = srv
        .delete(&format!("/v1/projects/{id}/members/{owner}"))
        .await;
    assert_eq!((s, b["error"].as_str()), (409, Some("conflict")), "{b}");
    srv.shutdown().await;
}

#[tokio::test]
async fn invite_rules_follow_the_project_role() {
    let srv = TestServer::start().await;
    let tenant = tenant_of(&srv).await;
    let project = create_project(&srv, &srv.key, "rules").await;
    // A tenant ADMIN who is an ADMIN of the project.
    let (_, admin) = developer(
        &srv,
        &tenant,
        Role::Admin,
        "admin@example.org",
        Scopes::EMPTY,
    )
    .await;
    invite(&srv, &srv.key, &project, "admin@example.org", "ADMIN").await;
    // Only an OWNER may invite an OWNER.
    let path = format!("/v1/projects/{project}/members");
    let (s, b) = call(
        &srv,
        &admin,
        Method::POST,
        &path,
        Some(json!({"email": "boss@example.org", "role": "OWNER"})),
    )
    .await;
    assert_eq!((s, b["error"].as_str()), (403, Some("forbidden")), "{b}");
    let m = invite(&srv, &admin, &project, "peer@example.org", "ADMIN").await;
    assert_eq!(m["role"], "ADMIN");
    let owner2 = invite(&srv, &srv.key, &project, "boss@example.org", "OWNER").await;
    // An ADMIN cannot remove an OWNER; an OWNER can (another OWNER remains).
    let o2 = owner2["id"].as_str().unwrap();
    let (s, _) = call(&srv, &admin, Method::DELETE, &format!("{path}/{o2}"), None).await;
    assert_eq!(s, 403);
    let (s, _) = srv.delete(&format!("{path}/{o2}")).await;
    assert_eq!(s, 200);

    // A tenant ADMIN who is not a member administers the project as an ADMIN: it reads it and
    // invites (not an OWNER), though the project is not among its listed memberships.
    let (_, lead) = developer(
        &srv,
        &tenant,
        Role::Admin,
        "lead@example.org",
        Scopes::EMPTY,
    )
    .await;
    let (s, b) = call(
        &srv,
        &lead,
        Method::GET,
        &format!("/v1/projects/{project}"),
        None,
    )
    .await;
    assert_eq!((s, b["role"].as_str()), (200, Some("ADMIN")), "{b}");
    invite(&srv, &lead, &project, "x@example.org", "VIEWER").await;
    let owner_invite = json!({"email": "y2@example.org", "role": "OWNER"});
    let (s, _) = call(&srv, &lead, Method::POST, &path, Some(owner_invite)).await;
    assert_eq!(s, 403);
    let (_, b) = call(&srv, &lead, Method::GET, "/v1/projects", None).await;
    assert_eq!(b["projects"], json!([]));
    // A DEVELOPER (tenant role) lacks members:invite while they administer no project.
    let (_, dev) = developer(
        &srv,
        &tenant,
        Role::Developer,
        "dev@example.org",
        Scopes::EMPTY,
    )
    .await;
    let (s, _) = call(
        &srv,
        &dev,
        Method::POST,
        &path,
        Some(json!({"email": "y@example.org", "role": "VIEWER"})),
    )
    .await;
    assert_eq!(s, 403);
    // Made an OWNER of the project, they get the permissions of that role there: they invite.
    invite(&srv, &srv.key, &project, "dev@example.org", "OWNER").await;
    let ok = wait_for(
        "the new role to reach the key",
        Duration::from_secs(10),
        || async {
            let (s, b) = call(
                &srv,
                &dev,
                Method::POST,
                &path,
                Some(json!({"email": "y@example.org", "role": "VIEWER"})),
            )
            .await;
            (s != 403).then_some((s, b))
        },
    )
    .await;
    assert_eq!(ok.0, 201, "{}", ok.1);
    // They see the project with their project role, and the members.
    let (_, b) = call(&srv, &dev, Method::GET, "/v1/projects", None).await;
    assert_eq!(
        (
            b["projects"][0]["id"].as_str(),
            b["projects"][0]["role"].as_str()
        ),
        (Some(project.as_str()), Some("OWNER"))
    );
    // A member can be removed by developer id too.
    let (_, b) = srv.get(&format!("/v1/projects/{project}")).await;
    let peer = b["members"]
        .as_array()
        .unwrap()
        .iter()
        .find(|m| m["email"] == "peer@example.org")
        .unwrap()
        .clone();
    let dev_id = peer["developer_id"].as_str().unwrap();
    let (s, b) = srv.delete(&format!("{path}/{dev_id}")).await;
    assert_eq!((s, b["id"].as_str()), (200, peer["id"].as_str()), "{b}");

    // A DEVELOPER who is not a member: the project does not exist for them (404), unlisted.
    let (_, outsider) = developer(
        &srv,
        &tenant,
        Role::Developer,
        "out@example.org",
        Scopes::EMPTY,
    )
    .await;
    for p in [
        format!("/v1/projects/{project}"),
        path.clone(),
        format!("/v1/projects/{project}/connectors"),
    ] {
        let (s, b) = call(&srv, &outsider, Method::GET, &p, None).await;
        assert_eq!(
            (s, b["error"].as_str()),
            (404, Some("not_found")),
            "{p}: {b}"
        );
    }
    let (s, b) = call(
        &srv,
        &outsider,
        Method::POST,
        &format!("/v1/projects/{project}/connectors"),
        Some(json!({"name": "z", "mcp_url": "https://z.example.org/"})),
    )
    .await;
    assert_eq!(s, 404, "{b}");
    let (_, b) = call(&srv, &outsider, Method::GET, "/v1/projects", None).await;
    assert_eq!(b["projects"], json!([]));
    // An invitation from a project OWNER never makes the new developer a tenant admin.
    let m = invite(&srv, &srv.key, &project, "newowner@example.org", "OWNER").await;
    let (t, d) = (
        tenant.clone(),
        m["developer_id"].as_str().unwrap().to_string(),
    );
    let dev = srv
        .state()
        .db
        .read(move |c| engram::store::tenants::get_developer(c, &t, &d))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(dev.role, Role::Developer);
    srv.shutdown().await;
}

#[tokio::test]
async fn usage_counts_this_month_per_mode() {
    // The month is the server clock's, set to mid-March: no month ends during the test.
    let srv = TestServer::start_at("2031-03-14T10:30:00Z").await;
    let tenant = tenant_of(&srv).await;
    deploy(&srv, &srv.key, "one").await;
    deploy(&srv, &srv.key, "two").await;
    let t = tenant.clone();
    let now = srv.clock().now();
    srv.state()
        .db
        .write(move |c| {
            engram::store::usage::incr(c, &t, "live", engram::store::usage::INVOCATIONS, 7, now)?;
            // Last month's invocations do not count this month.
            let (start, _) = engram::time::month_bounds(now);
            let before = start - chrono::Duration::days(3);
            engram::store::usage::incr(
                c,
                &t,
                "live",
                engram::store::usage::INVOCATIONS,
                100,
                before,
            )
        })
        .await
        .unwrap();
    let (s, u) = srv.get("/v1/usage").await;
    assert_eq!(s, 200, "{u}");
    assert_eq!(u["invocations_used"], 7);
    assert_eq!(u["invocations_limit"], 10_000);
    assert_eq!(u["agents_used"], 2);
    assert_eq!(u["agents_limit"], 100);
    assert_eq!(u["period_start"], "2031-03-01T00:00:00Z");
    assert_eq!(u["period_end"], "2031-03-31T23:59:59Z");
    // Test keys count separately.
    let (s, b) = srv
        .post("/v1/api-keys", json!({"name": "t", "mode": "test"}))
        .await;
    assert_eq!(s, 201);
    let (_, u) = call(
        &srv,
        b["data"]["key"].as_str().unwrap(),
        Method::GET,
        "/v1/usage",
        None,
    )
    .await;
    assert_eq!(
        (u["invocations_used"].as_i64(), u["agents_used"].as_i64()),
        (Some(0), Some(2))
    );
    // Enterprise: unlimited is null.
    let ent = srv.create_tenant("big", Plan::Enterprise).await;
    let (_, u) = call(&srv, &ent, Method::GET, "/v1/usage", None).await;
    assert_eq!(
        (u["invocations_limit"].clone(), u["agents_limit"].clone()),
        (Value::Null, Value::Null)
    );
    assert_eq!(u["agents_used"], 0);
    srv.shutdown().await;
}
