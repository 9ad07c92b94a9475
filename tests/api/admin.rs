//! The operator API: only with a configured token (404 otherwise; tenant keys never work there);
//! tenants created with the server's default plan, listed, deleted; one tenant's data reset
//! (keys kept unless asked) from the database, the index and the caches; everything reset.

use crate::support::{send, TestServer};
use reqwest::Method;
use serde_json::{json, Value};

const TOKEN: &str = "operator-token-0123456789";

async fn server() -> TestServer {
    TestServer::start_with(|c| {
        c.admin_token = Some(TOKEN.into());
        c.auto_learn_every = 0;
    })
    .await
}

async fn admin(srv: &TestServer, m: Method, path: &str, body: Value) -> (u16, Value) {
    send(srv.req_as(TOKEN, m, path).json(&body)).await
}

#[tokio::test]
async fn without_a_token_the_routes_do_not_exist_and_tenant_keys_never_work() {
    let srv = TestServer::start().await;
    let (s, _) = send(srv.req(Method::GET, "/v1/admin/tenants")).await;
    assert_eq!(s, 404);
    srv.shutdown().await;
    let srv = server().await;
    let (s, _) = send(srv.req(Method::GET, "/v1/admin/tenants")).await;
    assert_eq!(s, 401, "a tenant's admin key is not the operator token");
    let (s, _) = send(srv.http.get(srv.url("/v1/admin/tenants"))).await;
    assert_eq!(s, 401);
    let (s, b) = admin(&srv, Method::GET, "/v1/admin/tenants", json!({})).await;
    assert_eq!(s, 200, "{b}");
    assert_eq!(b["data"]["total"], 1);
    srv.shutdown().await;
}

#[tokio::test]
async fn tenants_are_created_with_the_default_plan_listed_and_deleted() {
    let srv = server().await;
    let (s, b) = admin(
        &srv,
        Method::POST,
        "/v1/admin/tenants",
        json!({"name": "ci-1"}),
    )
    .await;
    assert_eq!(s, 201, "{b}");
    assert_eq!(
        b["data"]["tenant"]["plan"], "pro",
        "the server's default plan"
    );
    // Every bad field is named in one answer, and nothing is created.
    let (s, bad) = admin(
        &srv,
        Method::POST,
        "/v1/admin/tenants",
        json!({"name": " ", "plan": "platinum", "email": 5}),
    )
    .await;
    assert_eq!(s, 422, "{bad}");
    let fields: Vec<&str> = bad["error"]["details"]
        .as_array()
        .expect("details")
        .iter()
        .map(|d| d["field"].as_str().unwrap())
        .collect();
    assert_eq!(fields, vec!["name", "plan", "email"], "{bad}");
    let id = b["data"]["tenant"]["id"].as_str().unwrap().to_string();
    let key = b["data"]["key"].as_str().unwrap().to_string();
    let (s, _) = send(srv.req_as(&key, Method::GET, "/v1/me")).await;
    assert_eq!(s, 200);
    let (s, b) = admin(
        &srv,
        Method::POST,
        "/v1/admin/tenants",
        json!({"name": "ci-2", "plan": "free"}),
    )
    .await;
    assert_eq!(
        (s, b["data"]["tenant"]["plan"].as_str()),
        (201, Some("free"))
    );
    let (s, b) = admin(
        &srv,
        Method::POST,
        "/v1/admin/tenants",
        json!({"name": "x", "plan": "gold"}),
    )
    .await;
    assert_eq!(s, 422, "{b}");
    let (_, b) = admin(&srv, Method::GET, "/v1/admin/tenants", json!({})).await;
    assert_eq!(b["data"]["total"], 3);
    let (s, b) = admin(
        &srv,
        Method::DELETE,
        &format!("/v1/admin/tenants/{id}"),
        json!({}),
    )
    .await;
    assert_eq!(s, 200, "{b}");
    let (s, _) = send(srv.req_as(&key, Method::GET, "/v1/me")).await;
    assert_eq!(s, 401, "its keys went with it");
    let (s, _) = admin(
        &srv,
        Method::DELETE,
        &format!("/v1/admin/tenants/{id}"),
        json!({}),
    )
    .await;
    assert_eq!(s, 404);
    // The first-start tenant is reset, never deleted.
    let (_, me) = srv.get("/v1/me").await;
    let boot = me["tenant_id"].as_str().unwrap();
    let (s, _) = admin(
        &srv,
        Method::DELETE,
        &format!("/v1/admin/tenants/{boot}"),
        json!({}),
    )
    .await;
    assert_eq!(s, 409);
    srv.shutdown().await;
}

#[tokio::test]
async fn a_reset_empties_memory_search_and_agents_but_keeps_keys_unless_asked() {
    let srv = server().await;
    let (_, b) = admin(
        &srv,
        Method::POST,
        "/v1/admin/tenants",
        json!({"name": "ci"}),
    )
    .await;
    let id = b["data"]["tenant"]["id"].as_str().unwrap().to_string();
    let key = b["data"]["key"].as_str().unwrap().to_string();
    let as_tenant = |m: Method, path: &str, body: Value| {
        let rb = srv.req_as(&key, m, path).json(&body);
        async move { send(rb).await }
    };
    let (s, b) = as_tenant(
        Method::POST,
        "/v1/capture?wait=searchable",
        json!({"type": "message", "sessionId": "s1", "payload": {"content": "the llama password is mango"}}),
    )
    .await;
    assert_eq!(
        (s, b["data"]["searchable"].as_bool()),
        (202, Some(true)),
        "{b}"
    );
    let (s, _) = as_tenant(
        Method::POST,
        "/v1/agents/deploy",
        json!({"name": "a1", "instruction": "x", "model": "offline"}),
    )
    .await;
    assert_eq!(s, 201);
    let (_, b) = as_tenant(
        Method::POST,
        "/v1/synthesize",
        json!({"query": "llama password"}),
    )
    .await;
    assert!(b["data"]["entries"].to_string().contains("mango"));
    // Another tenant's data is untouched by the reset.
    let (s, _) = srv
        .post(
            "/v1/capture?wait=searchable",
            json!({"type": "message", "sessionId": "s1", "payload": {"content": "the owl password is kiwi"}}),
        )
        .await;
    assert_eq!(s, 202);

    let (s, b) = admin(
        &srv,
        Method::POST,
        &format!("/v1/admin/tenants/{id}/reset"),
        json!({}),
    )
    .await;
    assert_eq!(
        (s, b["data"]["keysKept"].as_bool()),
        (200, Some(true)),
        "{b}"
    );
    let (s, b) = as_tenant(Method::GET, "/v1/events", json!({})).await;
    assert_eq!(
        (s, b["data"]["items"].as_array().map(Vec::len)),
        (200, Some(0)),
        "{b}"
    );
    let (_, b) = as_tenant(
        Method::POST,
        "/v1/synthesize",
        json!({"query": "llama password"}),
    )
    .await;
    assert!(!b["data"]["entries"].to_string().contains("mango"), "{b}");
    let (_, b) = as_tenant(Method::GET, "/v1/agents", json!({})).await;
    assert_eq!(b["agents"].as_array().map(Vec::len), Some(0), "{b}");
    let (_, b) = srv
        .post("/v1/synthesize", json!({"query": "owl password"}))
        .await;
    assert!(b["data"]["entries"].to_string().contains("kiwi"), "{b}");
    // The tenant works on after the reset.
    let (s, _) = as_tenant(
        Method::POST,
        "/v1/capture",
        json!({"type": "message", "sessionId": "s2", "payload": {"content": "fresh start"}}),
    )
    .await;
    assert_eq!(s, 202);
    // Asked to, the keys go too.
    let (s, _) = admin(
        &srv,
        Method::POST,
        &format!("/v1/admin/tenants/{id}/reset"),
        json!({"keys": false}),
    )
    .await;
    assert_eq!(s, 200);
    let (s, _) = as_tenant(Method::GET, "/v1/me", json!({})).await;
    assert_eq!(s, 401);
    // Reset everything: other tenants go, the first-start tenant and key stay, emptied.
    let (s, b) = admin(&srv, Method::POST, "/v1/admin/reset", json!({})).await;
    assert_eq!(s, 200, "{b}");
    let (_, b) = admin(&srv, Method::GET, "/v1/admin/tenants", json!({})).await;
    assert_eq!(b["data"]["total"], 1);
    let (s, b) = srv
        .post("/v1/synthesize", json!({"query": "owl password"}))
        .await;
    assert_eq!(s, 200);
    assert!(!b["data"]["entries"].to_string().contains("kiwi"), "{b}");
    srv.shutdown().await;
}

#[tokio::test]
async fn the_cli_creates_resets_and_deletes_tenants_too() {
    let srv = server().await;
    let data = srv.data_dir().display().to_string();
    let (ok, out, err) =
        crate::support::run_cli(&["tenants", "create", "--data-dir", &data, "--name", "cli"]);
    assert!(ok, "{err}");
    let key = out
        .lines()
        .find(|l| l.starts_with("hk_"))
        .expect("a key")
        .trim()
        .to_string();
    let (s, me) = send(srv.req_as(&key, Method::GET, "/v1/me")).await;
    assert_eq!(s, 200, "{me}");
    let id = me["tenant_id"].as_str().unwrap().to_string();
    let (_, b) = admin(&srv, Method::GET, "/v1/admin/tenants", json!({})).await;
    let plan = b["data"]["tenants"]
        .as_array()
        .unwrap()
        .iter()
        .find(|t| t["id"] == id.as_str())
        .unwrap()["plan"]
        .clone();
    assert_eq!(plan, "pro", "the default plan, as serve uses");
    // The CLI's default follows ENGRAM_DEFAULT_PLAN, the variable behind `serve --default-plan`;
    // --plan wins; a bad plan is named.
    for (env, args, expected) in [
        (Some("developer"), vec![], "developer"),
        (Some("developer"), vec!["--plan", "free"], "free"),
        (None, vec!["--plan", "enterprise"], "enterprise"),
    ] {
        let name = format!("cli-{expected}");
        let mut argv = vec!["tenants", "create", "--data-dir", &data, "--name", &name];
        argv.extend(args);
        let vars: Vec<(&str, &str)> = env
            .map(|p| ("ENGRAM_DEFAULT_PLAN", p))
            .into_iter()
            .collect();
        let (ok, _, err) = crate::support::run_cli_env(&argv, &vars);
        assert!(ok, "{err}");
        let (_, b) = admin(&srv, Method::GET, "/v1/admin/tenants", json!({})).await;
        let created = b["data"]["tenants"]
            .as_array()
            .unwrap()
            .iter()
            .find(|t| t["name"] == name.as_str())
            .cloned()
            .unwrap();
        assert_eq!(created["plan"], expected, "{env:?} {argv:?}");
    }
    let (ok, _, err) = crate::support::run_cli_env(
        &["tenants", "create", "--data-dir", &data, "--name", "x"],
        &[("ENGRAM_DEFAULT_PLAN", "gold")],
    );
    assert!(
        !ok && err.contains("unknown plan 'gold' (expected free, developer, pro or enterprise)"),
        "{err}"
    );
    let (s, _) = send(
        srv.req_as(&key, Method::POST, "/v1/capture")
            .json(&json!({"type": "message", "sessionId": "s", "payload": {"content": "hi"}})),
    )
    .await;
    assert_eq!(s, 202);
    let (ok, _, err) = crate::support::run_cli(&[
        "tenants",
        "reset",
        "--data-dir",
        &data,
        &id,
        "--seed",
        "seed.ndjson",
    ]);
    assert!(!ok && err.contains("--seed goes with --all"), "{err}");
    let (ok, _, err) = crate::support::run_cli(&["tenants", "reset", "--data-dir", &data, &id]);
    assert!(ok, "{err}");
    let (s, b) = send(srv.req_as(&key, Method::GET, "/v1/events")).await;
    assert_eq!(
        (s, b["data"]["items"].as_array().map(Vec::len)),
        (200, Some(0)),
        "{b}"
    );
    let (ok, _, err) = crate::support::run_cli(&["tenants", "delete", "--data-dir", &data, &id]);
    assert!(ok, "{err}");
    let (ok, _, err) = crate::support::run_cli(&["tenants", "delete", "--data-dir", &data, &id]);
    assert!(!ok && err.contains("no tenant"), "{err}");
    srv.shutdown().await;
}
