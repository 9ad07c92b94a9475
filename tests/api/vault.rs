//! The vault: query and reveal as the SDKs call them, management for `admin` keys, the
//! `vault:reveal` scope, its rate limit, the audit trail, tenant isolation, values that never
//! reach disk or logs in plaintext, and key rotation.

use crate::support::{banner_key, run_cli, run_python, send, ChildServer, TestServer};
use reqwest::Method;
use serde_json::{json, Value};

async fn main_vault(srv: &TestServer, key: &str) -> String {
    let (s, b) = send(srv.req_as(key, Method::GET, "/v1/vaults")).await;
    assert_eq!(s, 200, "{b}");
    let v = &b["data"]["vaults"][0];
    assert_eq!(v["name"], "Main Vault");
    v["id"].as_str().unwrap().to_string()
}

async fn add_item(srv: &TestServer, key: &str, vault: &str, body: Value) -> Value {
    let (s, b) = send(
        srv.req_as(key, Method::POST, &format!("/v1/vaults/{vault}/items"))
            .json(&body),
    )
    .await;
    assert_eq!(s, 201, "{b}");
    b["data"].clone()
}

fn openai_item(value: &str) -> Value {
    json!({"title": "OpenAI API Key", "itemType": "api_key", "value": value,
           "serviceName": "openai", "tags": ["prod"], "description": "the production key"})
}

async fn audit(srv: &TestServer) -> Vec<Value> {
    let (s, b) = srv.get("/v1/vault/audit?limit=200").await;
    assert_eq!(s, 200, "{b}");
    b["data"]["items"].as_array().unwrap().clone()
}

#[tokio::test]
async fn query_and_reveal_as_the_sdks_call_them() {
    let srv = TestServer::start().await;
    let vault = main_vault(&srv, &srv.key).await;
    let item = add_item(&srv, &srv.key, &vault, openai_item("sk-live-123")).await;
    assert!(
        item.get("value").is_none(),
        "an item answer carries no value: {item}"
    );
    assert_eq!(item["itemType"], "api_key");
    add_item(
        &srv,
        &srv.key,
        &vault,
        json!({"title": "Staging DB password", "itemType": "password", "value": "pw", "tags": ["staging"]}),
    )
    .await;
    let id = item["id"].as_str().unwrap().to_string();
    let (s, b) = srv
        .post(
            "/v1/vault/query",
            json!({"query": "openai key", "limit": 5}),
        )
        .await;
    assert_eq!(s, 200, "{b}");
    let d = &b["data"];
    assert_eq!(
        (d["total"].as_u64(), d["query"].as_str()),
        (Some(1), Some("openai key"))
    );
    let m = &d["matches"][0];
    for (snake, camel) in [
        ("vault_id", "vaultId"),
        ("vault_name", "vaultName"),
        ("item_type", "itemType"),
        ("service_name", "serviceName"),
        ("created_at", "createdAt"),
    ] {
        assert_eq!(m[snake], m[camel], "{snake}/{camel}: {m}");
        assert!(!m[snake].is_null(), "{snake}: {m}");
    }
    assert_eq!(
        (m["id"].as_str(), m["vault_name"].as_str()),
        (Some(id.as_str()), Some("Main Vault"))
    );
    assert!(m["relevance"].as_f64().unwrap() > 0.5);
    assert!(
        !b.to_string().contains("sk-live-123"),
        "query leaked the value"
    );
    // An empty query lists everything; filters narrow it.
    let (_, b) = srv.post("/v1/vault/query", json!({"query": ""})).await;
    assert_eq!(b["data"]["total"], 2);
    let (_, b) = srv
        .post(
            "/v1/vault/query",
            json!({"query": "", "itemType": "password"}),
        )
        .await;
    assert_eq!(b["data"]["matches"][0]["title"], "Staging DB password");
    let (_, b) = srv.post("/v1/vault/query", json!({"tags": ["prod"]})).await;
    assert_eq!(b["data"]["total"], 1);
    // Reveal.
    let (s, b) = srv
        .post(&format!("/v1/vault/query/{id}/reveal"), json!({}))
        .await;
    assert_eq!(s, 200, "{b}");
    assert_eq!(b["data"]["value"], "sk-live-123");
    // A new value and metadata; the old value is gone.
    let (s, b) = send(
        srv.req(Method::PATCH, &format!("/v1/vaults/{vault}/items/{id}"))
            .json(&json!({"value": "sk-live-456", "tags": ["prod", "rotated"]})),
    )
    .await;
    assert_eq!(s, 200, "{b}");
    assert_eq!(b["data"]["tags"], json!(["prod", "rotated"]));
    let (_, b) = srv
        .post(&format!("/v1/vault/query/{id}/reveal"), json!({}))
        .await;
    assert_eq!(b["data"]["value"], "sk-live-456");
    // The official SDK, sync and async.
    let (base, key, item) = (format!("{}/v1", srv.base), srv.key.clone(), id.clone());
    let out = tokio::task::spawn_blocking(move || {
        run_python(
            "sdk_vault.py",
            &[
                ("ENGRAM_BASE_URL", &base),
                ("ENGRAM_KEY", &key),
                ("ENGRAM_ITEM", &item),
            ],
        )
    })
    .await
    .unwrap();
    let sdk: Value = serde_json::from_str(out.trim()).unwrap();
    assert_eq!(sdk["sync"]["total"], 1, "{sdk}");
    assert_eq!(sdk["sync"]["matches"][0]["vault_name"], "Main Vault");
    assert_eq!(sdk["sync"]["value"], "sk-live-456");
    assert_eq!(sdk["async"]["value"], "sk-live-456");
    // The audit trail: creates, the update and every reveal, newest first.
    let rows = audit(&srv).await;
    let actions: Vec<&str> = rows.iter().map(|r| r["action"].as_str().unwrap()).collect();
    assert_eq!(
        actions.iter().filter(|a| **a == "reveal").count(),
        4,
        "{actions:?}"
    );
    assert_eq!(
        actions.iter().filter(|a| **a == "create").count(),
        2,
        "{actions:?}"
    );
    assert!(actions.contains(&"update"));
    assert_eq!(actions[0], "reveal");
    assert!(rows[0]["keyId"].as_str().unwrap().starts_with("key_"));
    assert!(rows[0]["requestId"].as_str().unwrap().starts_with("req_"));
    // Delete the item, then the vault.
    let (s, _) = srv.delete(&format!("/v1/vaults/{vault}/items/{id}")).await;
    assert_eq!(s, 200);
    let (s, _) = srv
        .post(&format!("/v1/vault/query/{id}/reveal"), json!({}))
        .await;
    assert_eq!(s, 404);
    let (s, v) = srv
        .post("/v1/vaults", json!({"name": "CI", "sensitivity": "low"}))
        .await;
    assert_eq!(s, 201, "{v}");
    let (s, _) = srv.post("/v1/vaults", json!({"name": "CI"})).await;
    assert_eq!(s, 409);
    let ci = v["data"]["id"].as_str().unwrap();
    let (s, _) = srv.delete(&format!("/v1/vaults/{ci}")).await;
    assert_eq!(s, 200);
    srv.shutdown().await;
}

#[tokio::test]
async fn bad_input_is_refused_by_field_without_echoing_the_value() {
    let srv = TestServer::start().await;
    let vault = main_vault(&srv, &srv.key).await;
    let path = format!("/v1/vaults/{vault}/items");
    for (body, field) in [
        (json!({"itemType": "api_key", "value": "x"}), "title"),
        (json!({"title": "t", "value": "x"}), "itemType"),
        (
            json!({"title": "t", "itemType": "bogus", "value": "x"}),
            "itemType",
        ),
        (json!({"title": "t", "itemType": "token"}), "value"),
        (
            json!({"title": "t", "itemType": "token", "value": ""}),
            "value",
        ),
        (
            json!({"title": "t", "itemType": "token", "value": "x", "sensitivity": "extreme"}),
            "sensitivity",
        ),
        (
            json!({"title": "t", "itemType": "token", "value": "x", "tags": "prod"}),
            "tags",
        ),
    ] {
        let (s, b) = srv.post(&path, body.clone()).await;
        assert_eq!(s, 422, "{body}: {b}");
        assert_eq!(b["error"]["details"][0]["field"], field, "{body}: {b}");
    }
    let secret = "ZZ-NEVER-ECHOED-".repeat(5000);
    let (s, b) = srv
        .post(
            &path,
            json!({"title": "t", "itemType": "token", "value": secret}),
        )
        .await;
    assert_eq!(s, 422);
    assert!(!b.to_string().contains("ZZ-NEVER-ECHOED"), "{b}");
    for (body, field) in [
        (json!({"limit": 0}), "limit"),
        (json!({"limit": 51}), "limit"),
        (json!({"query": 5}), "query"),
        (json!({"itemType": "car"}), "itemType"),
    ] {
        let (s, b) = srv.post("/v1/vault/query", body.clone()).await;
        assert_eq!(s, 422, "{body}: {b}");
        assert_eq!(b["error"]["details"][0]["field"], field, "{b}");
    }
    let (s, _) = srv
        .post("/v1/vaults/vlt_nope/items", openai_item("x"))
        .await;
    assert_eq!(s, 404);
    srv.shutdown().await;
}

#[tokio::test]
async fn reveal_needs_its_own_scope_and_refusals_are_audited() {
    let srv = TestServer::start().await;
    let vault = main_vault(&srv, &srv.key).await;
    let item = add_item(&srv, &srv.key, &vault, openai_item("sk-1")).await;
    let id = item["id"].as_str().unwrap();
    // `read` finds the item but does not reveal it.
    let reader = srv.create_key(&["read"]).await;
    let (s, b) = send(
        srv.req_as(&reader, Method::POST, "/v1/vault/query")
            .json(&json!({"query": "openai"})),
    )
    .await;
    assert_eq!((s, b["data"]["total"].as_u64()), (200, Some(1)), "{b}");
    let (s, b) = send(
        srv.req_as(
            &reader,
            Method::POST,
            &format!("/v1/vault/query/{id}/reveal"),
        )
        .json(&json!({})),
    )
    .await;
    assert_eq!(s, 403, "{b}");
    assert!(b["error"]["message"]
        .as_str()
        .unwrap()
        .contains("vault:reveal"));
    // Management needs `admin`.
    let (s, _) = send(srv.req_as(&reader, Method::GET, "/v1/vaults")).await;
    assert_eq!(s, 403);
    // A key given the scope reveals; a key created without scopes by an OWNER inherits it.
    let revealer = srv.create_key(&["vault:reveal"]).await;
    let (s, b) = send(
        srv.req_as(
            &revealer,
            Method::POST,
            &format!("/v1/vault/query/{id}/reveal"),
        )
        .json(&json!({})),
    )
    .await;
    assert_eq!((s, b["data"]["value"].as_str()), (200, Some("sk-1")), "{b}");
    let inherits = srv.create_key(&[]).await;
    let (s, _) = send(
        srv.req_as(
            &inherits,
            Method::POST,
            &format!("/v1/vault/query/{id}/reveal"),
        )
        .json(&json!({})),
    )
    .await;
    assert_eq!(s, 200);
    let rows = audit(&srv).await;
    let denied: Vec<&Value> = rows
        .iter()
        .filter(|r| r["action"] == "reveal_denied")
        .collect();
    assert_eq!(denied.len(), 1, "{rows:?}");
    assert_eq!(denied[0]["itemId"], id);
    assert!(denied[0]["reason"]
        .as_str()
        .unwrap()
        .contains("vault:reveal"));
    srv.shutdown().await;
}

#[tokio::test]
async fn reveals_have_their_own_rate_limit_per_key() {
    let srv = TestServer::start_with(|c| c.vault_reveals_per_minute = 3).await;
    let vault = main_vault(&srv, &srv.key).await;
    let item = add_item(&srv, &srv.key, &vault, openai_item("sk-rl")).await;
    let path = format!("/v1/vault/query/{}/reveal", item["id"].as_str().unwrap());
    for _ in 0..3 {
        let (s, b) = srv.post(&path, json!({})).await;
        assert_eq!(s, 200, "{b}");
    }
    let resp = srv
        .req(Method::POST, &path)
        .json(&json!({}))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 429);
    assert!(resp.headers().get("retry-after").is_some());
    // Other requests of the key are not limited by it; another key has its own reveal bucket.
    let (s, _) = srv.post("/v1/vault/query", json!({})).await;
    assert_eq!(s, 200);
    let other = srv.create_key(&[]).await;
    let (s, _) = send(srv.req_as(&other, Method::POST, &path).json(&json!({}))).await;
    assert_eq!(s, 200);
    let rows = audit(&srv).await;
    assert!(rows
        .iter()
        .any(|r| r["action"] == "reveal_denied" && r["reason"] == "reveal rate limit"));
    srv.shutdown().await;
}

#[tokio::test]
async fn another_tenant_sees_nothing_of_the_vault() {
    let srv = TestServer::start().await;
    let vault = main_vault(&srv, &srv.key).await;
    let item = add_item(&srv, &srv.key, &vault, openai_item("sk-iso")).await;
    let id = item["id"].as_str().unwrap();
    let other = srv.create_tenant("other", engram::plans::Plan::Pro).await;
    let (s, b) = send(
        srv.req_as(&other, Method::POST, "/v1/vault/query")
            .json(&json!({"query": "openai"})),
    )
    .await;
    assert_eq!((s, b["data"]["total"].as_u64()), (200, Some(0)), "{b}");
    let their_vault = main_vault(&srv, &other).await;
    assert_ne!(their_vault, vault);
    for (m, path) in [
        (Method::POST, format!("/v1/vault/query/{id}/reveal")),
        (Method::GET, format!("/v1/vaults/{vault}/items")),
        (Method::PATCH, format!("/v1/vaults/{vault}/items/{id}")),
        (Method::DELETE, format!("/v1/vaults/{vault}/items/{id}")),
        (Method::DELETE, format!("/v1/vaults/{vault}")),
        (Method::POST, format!("/v1/vaults/{vault}/items")),
    ] {
        let body = if m == Method::POST && path.ends_with("/items") {
            openai_item("x")
        } else {
            json!({"title": "hijack"})
        };
        let (s, b) = send(srv.req_as(&other, m.clone(), &path).json(&body)).await;
        assert_eq!(s, 404, "{m} {path}: {b}");
    }
    // Still there, unchanged, for its owner.
    let (s, b) = srv
        .post(&format!("/v1/vault/query/{id}/reveal"), json!({}))
        .await;
    assert_eq!((s, b["data"]["value"].as_str()), (200, Some("sk-iso")));
    srv.shutdown().await;
}

/// Every file under `dir`, recursively, with its bytes.
fn files(dir: &std::path::Path) -> Vec<(std::path::PathBuf, Vec<u8>)> {
    let mut out = Vec::new();
    for e in std::fs::read_dir(dir).unwrap().flatten() {
        let p = e.path();
        if p.is_dir() {
            out.extend(files(&p));
        } else if let Ok(b) = std::fs::read(&p) {
            out.push((p, b));
        }
    }
    out
}

#[tokio::test]
async fn a_planted_secret_never_reaches_the_data_dir_or_the_log_and_survives_rotation() {
    let dir = tempfile::tempdir().unwrap();
    let secret = format!("PLANTED-{}", engram::ids::base62(24));
    let child = ChildServer::start(dir.path(), &[("ENGRAM_LOG", "debug")]);
    let key = banner_key(&child.stderr_text()).expect("first-start key");
    let http = crate::support::client();
    let call = |m: Method, path: &str, body: Value| {
        http.request(m, child.url(path))
            .bearer_auth(&key)
            .json(&body)
    };
    let (s, b) = send(call(Method::GET, "/v1/vaults", json!({}))).await;
    assert_eq!(s, 200, "{b}");
    let vault = b["data"]["vaults"][0]["id"].as_str().unwrap().to_string();
    let (s, b) = send(call(
        Method::POST,
        &format!("/v1/vaults/{vault}/items"),
        json!({"title": "Planted", "itemType": "token", "value": secret, "description": "canary"}),
    ))
    .await;
    assert_eq!(s, 201, "{b}");
    let id = b["data"]["id"].as_str().unwrap().to_string();
    let reveal = format!("/v1/vault/query/{id}/reveal");
    let (s, b) = send(call(Method::POST, &reveal, json!({}))).await;
    assert_eq!(
        (s, b["data"]["value"].as_str()),
        (200, Some(secret.as_str()))
    );
    // Memory and search see nothing of it.
    for (path, body) in [
        (
            "/v1/capture",
            json!({"type": "message", "sessionId": "s1", "payload": {"content": "where is the planted canary token"}}),
        ),
        ("/v1/synthesize", json!({"query": "planted canary token"})),
    ] {
        let (s, b) = send(call(Method::POST, path, body)).await;
        assert!(s < 300, "{path}: {b}");
        assert!(!b.to_string().contains(&secret));
    }
    let logs = child.stderr_text();
    assert!(logs.contains("request done"), "debug logs were captured");
    assert!(!logs.contains(&secret), "the plaintext reached the log");
    assert!(child.terminate());
    let needle = secret.as_bytes();
    for (path, bytes) in files(dir.path()) {
        assert!(
            !bytes.windows(needle.len()).any(|w| w == needle),
            "the plaintext is in {}",
            path.display()
        );
    }

    // Rotation: a new key, the same value; the old key no longer opens the vault.
    let data = dir.path().display().to_string();
    let old_key = std::fs::read_to_string(dir.path().join("vault.key")).unwrap();
    let (ok, _, err) = run_cli(&["vault", "rotate-key", "--data-dir", &data]);
    assert!(ok, "{err}");
    assert!(err.contains("re-encrypted 1 vault value"), "{err}");
    let new_key = std::fs::read_to_string(dir.path().join("vault.key")).unwrap();
    assert_ne!(old_key.trim(), new_key.trim());
    let again = ChildServer::start(dir.path(), &[]);
    let (s, b) = send(
        http.post(again.url(&reveal))
            .bearer_auth(&key)
            .json(&json!({})),
    )
    .await;
    assert_eq!(
        (s, b["data"]["value"].as_str()),
        (200, Some(secret.as_str())),
        "{b}"
    );
    assert!(again.terminate());
    // Started with the wrong key, the server refuses rather than fail every reveal.
    let wrong = "ab".repeat(32);
    let out = std::process::Command::new(crate::support::engram_bin())
        .args(["serve", "--listen", "127.0.0.1:0", "--data-dir", &data])
        .envs(
            crate::support::test_database_blocking(dir.path()).map(|u| ("ENGRAM_DATABASE_URL", u)),
        )
        .env("ENGRAM_VAULT_KEY", &wrong)
        .env_remove("ENGRAM_BOOTSTRAP_KEY")
        .output()
        .unwrap();
    assert!(!out.status.success());
    let text = String::from_utf8_lossy(&out.stderr);
    assert!(
        text.contains("vault key") && text.contains("fingerprint"),
        "{text}"
    );
}
