//! Project connectors (register, list, delete, URL validation, slug uniqueness per project) and
//! the public catalogue, including the operator's CLI.

use super::*;

#[tokio::test]
async fn project_connectors_register_list_delete() {
    let srv = TestServer::start().await;
    let tenant = tenant_of(&srv).await;
    let project = create_project(&srv, &srv.key, "data").await;
    let other = create_project(&srv, &srv.key, "other").await;
    let path = format!("/v1/projects/{project}/connectors");
    let (s, c) = srv
        .post(&path, json!({"name": "Internal DB", "mcp_url": "https://mcp.internal.org/", "category": "Data"}))
        .await;
    assert_eq!(s, 201, "{c}");
    assert!(c["id"].as_str().unwrap().starts_with("con_"));
    assert_eq!(c["slug"], "internal-db");
    assert_eq!(c["name"], "Internal DB");
    assert_eq!(c["mcp_url"], "https://mcp.internal.org/");
    assert_eq!(c["category"], "Data");
    assert_eq!(c["project_id"], project.as_str());
    assert_eq!(c["status"], "registered");
    assert!(engram::time::parse(c["created_at"].as_str().unwrap()).is_some());

    // The slug is unique per project, not per tenant.
    let (s, b) = srv
        .post(
            &path,
            json!({"name": "internal db", "mcp_url": "https://db.internal.org/mcp"}),
        )
        .await;
    assert_eq!((s, b["error"].as_str()), (409, Some("conflict")), "{b}");
    connector(&srv, &srv.key, &other, "Internal DB").await;

    for (body, field) in [
        (json!({"mcp_url": "https://x.org/"}), "name"),
        (json!({"name": "", "mcp_url": "https://x.org/"}), "name"),
        (json!({"name": "!!!", "mcp_url": "https://x.org/"}), "name"),
        (json!({"name": "a"}), "mcp_url"),
        (json!({"name": "a", "mcp_url": ""}), "mcp_url"),
        (
            json!({"name": "a", "mcp_url": "mcp.internal.org"}),
            "mcp_url",
        ),
        (json!({"name": "a", "mcp_url": "/relative"}), "mcp_url"),
        (
            json!({"name": "a", "mcp_url": "ftp://mcp.internal.org/"}),
            "mcp_url",
        ),
        (json!({"name": "a", "mcp_url": "https://"}), "mcp_url"),
        (
            json!({"name": "a", "mcp_url": "https://exa mple.org/"}),
            "mcp_url",
        ),
        (json!({"name": "a", "mcp_url": 42}), "mcp_url"),
        (
            json!({"name": "a", "mcp_url": "https://x.org/", "category": ["x"]}),
            "category",
        ),
    ] {
        let (s, b) = srv.post(&path, body.clone()).await;
        assert_eq!(bad_field(s, &b), field, "{body}");
    }

    let (s, b) = srv.get(&path).await;
    assert_eq!(s, 200);
    let list = b["connectors"].as_array().unwrap();
    assert_eq!(list.len(), 1, "rejected requests stored nothing: {b}");
    assert_eq!(list[0], c);

    // Roles: a tenant DEVELOPER who is only a VIEWER of the project may list but not register.
    let (_, dev) = developer(
        &srv,
        &tenant,
        Role::Developer,
        "dev@example.org",
        Scopes::EMPTY,
    )
    .await;
    invite(&srv, &srv.key, &project, "dev@example.org", "VIEWER").await;
    let (s, _) = call(&srv, &dev, Method::GET, &path, None).await;
    assert_eq!(s, 200);
    let (s, b) = call(
        &srv,
        &dev,
        Method::POST,
        &path,
        Some(json!({"name": "b", "mcp_url": "https://x.org/"})),
    )
    .await;
    assert_eq!((s, b["error"].as_str()), (403, Some("forbidden")), "{b}");
    let cid = c["id"].as_str().unwrap();
    let (s, _) = call(&srv, &dev, Method::DELETE, &format!("{path}/{cid}"), None).await;
    assert_eq!(s, 403);
    // Nor deploy agents into it; as a DEVELOPER of the project they may.
    let mut body = agent_body("viewer agent");
    body["project_id"] = json!(project);
    let (s, b) = call(
        &srv,
        &dev,
        Method::POST,
        "/v1/agents/deploy",
        Some(body.clone()),
    )
    .await;
    assert_eq!((s, b["error"].as_str()), (403, Some("forbidden")), "{b}");
    let (s, _) = call(
        &srv,
        &dev,
        Method::POST,
        "/v1/agents/deploy",
        Some(agent_body("no project")),
    )
    .await;
    assert_eq!(s, 201);
    let dev_project = create_project(&srv, &dev, "own").await;
    body["project_id"] = json!(dev_project);
    let (s, b) = call(&srv, &dev, Method::POST, "/v1/agents/deploy", Some(body)).await;
    assert_eq!(
        (s, b["project_id"].as_str()),
        (201, Some(dev_project.as_str())),
        "{b}"
    );

    // Delete: gone, then 404; a connector id under another project is 404.
    let (s, b) = srv
        .delete(&format!("/v1/projects/{other}/connectors/{cid}"))
        .await;
    assert_eq!(s, 404, "{b}");
    let (s, b) = srv.delete(&format!("{path}/{cid}")).await;
    assert_eq!(
        (s, b["message"].as_str()),
        (200, Some("Connector deleted successfully")),
        "{b}"
    );
    let (s, _) = srv.delete(&format!("{path}/{cid}")).await;
    assert_eq!(s, 404);
    let (_, b) = srv.get(&path).await;
    assert_eq!(b["connectors"], json!([]));
    let (s, _) = srv.get("/v1/projects/proj_nope/connectors").await;
    assert_eq!(s, 404);
    srv.shutdown().await;
}

#[tokio::test]
async fn catalogue_is_shipped_and_extended_by_the_operator() {
    let srv = TestServer::start().await;
    let (s, b) = srv.get("/v1/connectors/registry").await;
    assert_eq!(s, 200, "{b}");
    let items = b["connectors"].as_array().unwrap();
    assert!(items.len() >= 12, "{b}");
    for c in items {
        for f in ["slug", "name", "category", "status", "mcp_url"] {
            assert!(c[f].as_str().is_some_and(|v| !v.is_empty()), "{f} in {c}");
        }
        assert!(
            c["mcp_url"].as_str().unwrap().starts_with("https://"),
            "{c}"
        );
    }
    assert!(items
        .iter()
        .any(|c| c["slug"] == "github" && c["status"] == "Verified"));
    let (_, pay) = srv.get("/v1/connectors/registry?category=payments").await;
    let pay = pay["connectors"].as_array().unwrap();
    assert!(!pay.is_empty() && pay.iter().all(|c| c["category"] == "Payments"));

    // The operator adds an entry and hides a shipped one, on the live data dir.
    let dir = srv.data_dir().to_str().unwrap().to_string();
    let (ok, _, err) = run_cli(&[
        "connectors",
        "add",
        "--data-dir",
        &dir,
        "--name",
        "Epic FHIR",
        "--url",
        "https://fhir.example.org/mcp",
        "--category",
        "EHR",
    ]);
    assert!(ok, "{err}");
    let (ok, _, err) = run_cli(&["connectors", "remove", "--data-dir", &dir, "github"]);
    assert!(ok, "{err}");
    let (_, b) = srv.get("/v1/connectors/registry").await;
    let items = b["connectors"].as_array().unwrap();
    assert!(items.iter().any(|c| c
        == &json!({"slug": "epic-fhir", "name": "Epic FHIR", "category": "EHR", "status": "Verified",
                   "mcp_url": "https://fhir.example.org/mcp"})));
    assert!(!items.iter().any(|c| c["slug"] == "github"));
    let (ok, out, _) = run_cli(&["connectors", "list", "--data-dir", &dir]);
    assert!(
        ok && out.contains("epic-fhir") && !out.contains("api.githubcopilot.com"),
        "{out}"
    );
    // Bad input is refused with a message naming it.
    let (ok, _, err) = run_cli(&[
        "connectors",
        "add",
        "--data-dir",
        &dir,
        "--name",
        "Bad",
        "--url",
        "not a url",
        "--category",
        "X",
    ]);
    assert!(!ok && err.contains("url"), "{err}");
    let (ok, _, err) = run_cli(&["connectors", "remove", "--data-dir", &dir, "nope"]);
    assert!(!ok && err.contains("nope"), "{err}");

    // A restart keeps the operator's changes.
    let dir = srv.shutdown().await;
    let srv = TestServer::start_in(dir, |_| {}).await;
    let key = srv.create_tenant("t", Plan::Pro).await;
    let (_, b) = call(&srv, &key, Method::GET, "/v1/connectors/registry", None).await;
    let items = b["connectors"].as_array().unwrap();
    assert!(items.iter().any(|c| c["slug"] == "epic-fhir"));
    assert!(!items.iter().any(|c| c["slug"] == "github"));
    srv.shutdown().await;
}
