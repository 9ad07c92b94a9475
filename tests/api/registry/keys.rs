//! API keys as the registry uses them: scopes or permissions, modes and styles, the secret shown
//! once, the bound of the creating key and of the developer's role, revocation and expiry.

use super::*;

#[tokio::test]
async fn keys_scopes_modes_and_the_creator_bound() {
    let srv = TestServer::start().await;
    let tenant = tenant_of(&srv).await;
    // `permissions` is accepted for `scopes`; `mode` and `style` shape the key.
    let (s, b) = srv
        .post("/v1/api-keys", json!({"name": "ci", "permissions": ["agents:invoke", "read"], "mode": "test", "style": "hx"}))
        .await;
    assert_eq!(s, 201, "{b}");
    let d = &b["data"];
    let key = d["key"].as_str().unwrap().to_string();
    assert!(key.starts_with("hx_test_"), "{key}");
    assert_eq!(d["scopes"], json!(["agents:invoke", "read"]));
    assert_eq!(d["mode"], "test");
    let (s, me) = call(&srv, &key, Method::GET, "/v1/me", None).await;
    assert_eq!(s, 200);
    assert_eq!(me["scopes"], json!(["agents:invoke", "read"]));
    assert_eq!(me["tier"], "pro");
    assert!(me["id"].as_str().unwrap().starts_with("dev_"));
    for f in ["name", "email", "company"] {
        assert!(me.get(f).is_some(), "{f}");
    }
    // The secret appears only at creation.
    let (_, list) = srv.get("/v1/api-keys").await;
    let text = list.to_string();
    assert!(!text.contains(&key[8..]));
    let item = list["data"]["items"]
        .as_array()
        .unwrap()
        .iter()
        .find(|k| k["id"] == d["id"])
        .unwrap()
        .clone();
    assert_eq!(
        (item["prefix"].as_str(), item["last4"].as_str()),
        (Some("hx_test_"), Some(&key[key.len() - 4..]))
    );
    assert!(item.get("key").is_none());

    // Bad fields, one by one (memory family: 422 naming the field).
    for (body, field) in [
        (json!({"name": "x", "mode": "prod"}), "mode"),
        (json!({"name": "x", "style": "zz"}), "style"),
        (json!({"name": "x", "scopes": "read"}), "scopes"),
        (json!({"name": "x", "expiresAt": "tomorrow"}), "expiresAt"),
        (
            json!({"name": "x", "expiresAt": "2001-01-01T00:00:00Z"}),
            "expiresAt",
        ),
        (json!({}), "name"),
    ] {
        let (s, b) = srv.post("/v1/api-keys", body.clone()).await;
        assert_eq!(
            (s, b["error"]["details"][0]["field"].as_str()),
            (422, Some(field)),
            "{body}: {b}"
        );
    }

    // A restricted admin key cannot mint more than it has, and a no-scope key it creates gets its
    // scopes rather than the owner's role.
    let limited = srv.create_key(&["admin", "projects:read"]).await;
    let (s, _) = call(
        &srv,
        &limited,
        Method::POST,
        "/v1/api-keys",
        Some(json!({"name": "x", "scopes": ["write"]})),
    )
    .await;
    assert_eq!(s, 403);
    let (s, b) = call(
        &srv,
        &limited,
        Method::POST,
        "/v1/api-keys",
        Some(json!({"name": "child"})),
    )
    .await;
    assert_eq!(s, 201, "{b}");
    let child = b["data"]["key"].as_str().unwrap();
    let (_, me) = call(&srv, child, Method::GET, "/v1/me", None).await;
    assert_eq!(me["scopes"], json!(["projects:read", "admin"]));

    // A key never exceeds its developer's role, even if it was stored with more.
    let wide = Scopes::parse_list(["members:invite", "agents:deploy", "admin"]).unwrap();
    let (_, dev_key) = developer(&srv, &tenant, Role::Developer, "d@example.org", wide).await;
    let (_, me) = call(&srv, &dev_key, Method::GET, "/v1/me", None).await;
    assert_eq!(me["scopes"], json!(["agents:deploy"]));
    let (s, _) = call(&srv, &dev_key, Method::GET, "/v1/api-keys", None).await;
    assert_eq!(s, 403);
    // A key without scopes has its role's permissions.
    let (_, viewer) = developer(&srv, &tenant, Role::Viewer, "v@example.org", Scopes::EMPTY).await;
    let (_, me) = call(&srv, &viewer, Method::GET, "/v1/me", None).await;
    assert_eq!(me["scopes"], json!(["projects:read", "read"]));
    srv.shutdown().await;
}

#[tokio::test]
async fn revoked_and_expired_keys_get_401_on_registry_routes() {
    let srv = TestServer::start().await;
    let key = srv.create_key(&[]).await;
    let (s, _) = call(&srv, &key, Method::GET, "/v1/agents", None).await;
    assert_eq!(s, 200);
    let (_, list) = srv.get("/v1/api-keys").await;
    let id = list["data"]["items"]
        .as_array()
        .unwrap()
        .iter()
        .find(|k| k["last4"] == key[key.len() - 4..])
        .unwrap()["id"]
        .as_str()
        .unwrap()
        .to_string();
    let (s, b) = srv.delete(&format!("/v1/api-keys/{id}")).await;
    assert_eq!(s, 200, "{b}");
    // Effective on the very next request, on every family.
    for path in ["/v1/agents", "/v1/projects", "/v1/usage"] {
        let (s, b) = call(&srv, &key, Method::GET, path, None).await;
        assert_eq!(
            (s, b["error"].as_str()),
            (401, Some("unauthorized")),
            "{path}: {b}"
        );
        assert_eq!(b["message"], "this API key has been revoked");
    }
    // Expired (the snake_case `expires_at` is accepted too).
    let soon = engram::time::rfc3339(engram::time::now() + chrono::Duration::milliseconds(1200));
    let (s, b) = srv
        .post("/v1/api-keys", json!({"name": "brief", "expires_at": soon}))
        .await;
    assert_eq!(s, 201, "{b}");
    let brief = b["data"]["key"].as_str().unwrap().to_string();
    assert_eq!(
        b["data"]["expiresAt"]
            .as_str()
            .map(|e| engram::time::parse(e).is_some()),
        Some(true)
    );
    let b = wait_for("the key to expire", Duration::from_secs(10), || async {
        let (s, b) = call(&srv, &brief, Method::GET, "/v1/projects", None).await;
        (s == 401).then_some(b)
    })
    .await;
    assert_eq!(
        b,
        json!({"error": "unauthorized", "message": "this API key has expired"})
    );
    srv.shutdown().await;
}
