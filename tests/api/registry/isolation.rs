//! Tenant isolation: every registry route (and the key routes) called by one tenant with another
//! tenant's ids answers 404 and shows none of its data; lists and counts never include it; and
//! the other tenant's data is untouched afterwards.

use super::*;

#[tokio::test]
async fn another_tenants_ids_answer_404_and_leak_nothing() {
    let srv = TestServer::start_with(|c| c.default_plan = Plan::Enterprise).await;
    // Tenant B, with one of everything.
    let b_key = srv.create_tenant("victim", Plan::Enterprise).await;
    let b_project = create_project(&srv, &b_key, "Secret Project").await;
    let b_member = invite(
        &srv,
        &b_key,
        &b_project,
        "secret.person@victim.org",
        "DEVELOPER",
    )
    .await;
    let b_member = b_member["id"].as_str().unwrap().to_string();
    let b_conn = connector(&srv, &b_key, &b_project, "Secret DB").await;
    let b_conn = b_conn["id"].as_str().unwrap().to_string();
    let (s, b) = call(&srv, &b_key, Method::POST, "/v1/agents/deploy", Some(json!({
        "name": "secret-agent", "instruction": "TOP-SECRET-INSTRUCTION", "model": "m", "project_id": b_project
    }))).await;
    assert_eq!(s, 201, "{b}");
    let b_agent = b["agent_id"].as_str().unwrap().to_string();
    let (_, keys) = call(&srv, &b_key, Method::GET, "/v1/api-keys", None).await;
    let b_key_id = keys["data"]["items"][0]["id"].as_str().unwrap().to_string();

    // Tenant A (the bootstrap OWNER: every permission) aims at B's ids.
    let a = srv.key.clone();
    let secrets = ["Secret", "secret", "TOP-SECRET", "victim"];
    let p = &b_project;
    let probes: Vec<(Method, String, Option<Value>)> = vec![
        (Method::GET, format!("/v1/projects/{p}"), None),
        (Method::GET, format!("/v1/projects/{p}/members"), None),
        (
            Method::POST,
            format!("/v1/projects/{p}/members"),
            Some(json!({"email": "spy@a.org", "role": "VIEWER"})),
        ),
        (
            Method::DELETE,
            format!("/v1/projects/{p}/members/{b_member}"),
            None,
        ),
        (Method::GET, format!("/v1/projects/{p}/connectors"), None),
        (
            Method::POST,
            format!("/v1/projects/{p}/connectors"),
            Some(json!({"name": "spy", "mcp_url": "https://spy.org/"})),
        ),
        (
            Method::DELETE,
            format!("/v1/projects/{p}/connectors/{b_conn}"),
            None,
        ),
        (Method::GET, format!("/v1/agents/{b_agent}"), None),
        (Method::GET, "/v1/agents/secret-agent".to_string(), None),
        (Method::DELETE, format!("/v1/agents/{b_agent}"), None),
        (Method::DELETE, "/v1/agents/secret-agent".to_string(), None),
        (Method::DELETE, format!("/v1/api-keys/{b_key_id}"), None),
    ];
    for (method, path, body) in probes {
        let (s, resp) = call(&srv, &a, method.clone(), &path, body).await;
        assert_eq!(s, 404, "{method} {path}: {resp}");
        let text = resp.to_string();
        assert!(
            !secrets.iter().any(|x| text.contains(x)),
            "{method} {path} leaked: {text}"
        );
    }
    // Deploying into B's project is refused as an unknown project (a body field: 400).
    let mut body = agent_body("intruder");
    body["project_id"] = json!(b_project);
    let (s, resp) = call(&srv, &a, Method::POST, "/v1/agents/deploy", Some(body)).await;
    assert_eq!(bad_field(s, &resp), "project_id");

    // Lists and counts of A hold none of B's data.
    for path in [
        "/v1/projects",
        "/v1/agents",
        "/v1/agents?search=secret",
        "/v1/usage",
        "/v1/me",
        "/v1/api-keys",
    ] {
        let (s, resp) = call(&srv, &a, Method::GET, path, None).await;
        assert_eq!(s, 200, "{path}: {resp}");
        let text = resp.to_string();
        assert!(
            !secrets.iter().any(|x| text.contains(x)),
            "{path} leaked: {text}"
        );
        assert!(
            !text.contains(&b_agent) && !text.contains(p.as_str()) && !text.contains(&b_key_id),
            "{path}: {text}"
        );
    }
    let (_, u) = call(&srv, &a, Method::GET, "/v1/usage", None).await;
    assert_eq!(u["agents_used"], 0);

    // B's data is intact.
    let (s, proj) = call(
        &srv,
        &b_key,
        Method::GET,
        &format!("/v1/projects/{p}"),
        None,
    )
    .await;
    assert_eq!((s, proj["member_count"].as_i64()), (200, Some(2)), "{proj}");
    let (_, conns) = call(
        &srv,
        &b_key,
        Method::GET,
        &format!("/v1/projects/{p}/connectors"),
        None,
    )
    .await;
    assert_eq!(conns["connectors"].as_array().unwrap().len(), 1);
    let (s, agent) = call(&srv, &b_key, Method::GET, "/v1/agents/secret-agent", None).await;
    assert_eq!((s, agent["id"].as_str()), (200, Some(b_agent.as_str())));
    let (s, _) = call(&srv, &b_key, Method::GET, "/v1/me", None).await;
    assert_eq!(s, 200, "B's key was not revoked");
    srv.shutdown().await;
}
