//! Failed-authentication limiting never refuses a valid key; the client address comes from
//! forwarding headers only behind a trusted proxy; the Bearer scheme is case-insensitive;
//! invited roles carry their permissions; keys for other developers never exceed them.

use crate::support::{run_cli, send, wait_for, TestServer};
use reqwest::Method;
use serde_json::{json, Value};
use std::time::Duration;

fn bad_key() -> String {
    engram::store::keys::generate("hk", "live")
}

async fn me_with(srv: &TestServer, auth: &str, forwarded_for: Option<&str>) -> (u16, Value) {
    let mut rb = srv
        .http
        .get(srv.url("/v1/me"))
        .header("authorization", auth);
    if let Some(f) = forwarded_for {
        rb = rb.header("x-forwarded-for", f);
    }
    send(rb).await
}

#[tokio::test]
async fn a_bad_key_spray_never_locks_out_a_valid_key() {
    let srv = TestServer::start().await;
    let bad = bad_key();
    let mut refused = 0;
    for i in 0..60 {
        let (s, _) = me_with(&srv, &format!("Bearer {bad}"), None).await;
        if s == 429 {
            refused += 1;
        }
        // Interleaved with the spray, from the same address, the valid key always works.
        if i % 10 == 9 {
            let (s, b) = me_with(&srv, &format!("Bearer {}", srv.key), None).await;
            assert_eq!(s, 200, "a valid key was refused during a spray: {b}");
        }
    }
    assert!(
        refused >= 25,
        "the spray was not limited ({refused} refusals)"
    );
    srv.shutdown().await;
}

#[tokio::test]
async fn forwarded_addresses_count_only_behind_a_trusted_proxy() {
    // Untrusted peer: X-Forwarded-For is ignored, so rotating it does not escape the limit.
    let srv = TestServer::start().await;
    let bad = bad_key();
    let mut statuses = Vec::new();
    for i in 0..40 {
        let f = format!("198.51.100.{i}");
        statuses.push(me_with(&srv, &format!("Bearer {bad}{i}"), Some(&f)).await.0);
    }
    assert!(statuses.contains(&429), "{statuses:?}");
    srv.shutdown().await;

    // Behind a trusted proxy, each client address has its own bucket.
    let srv =
        TestServer::start_with(|c| c.trusted_proxies = vec!["127.0.0.1".parse().unwrap()]).await;
    let mut first = Vec::new();
    for i in 0..40 {
        first.push(
            me_with(
                &srv,
                &format!("Bearer {}{i}", bad_key()),
                Some("203.0.113.1"),
            )
            .await
            .0,
        );
    }
    assert!(first.contains(&429), "{first:?}");
    let (s, _) = me_with(&srv, &format!("Bearer {}", bad_key()), Some("203.0.113.2")).await;
    assert_eq!(s, 401, "another client behind the proxy was throttled");
    // One key sprayed from many addresses is limited by its prefix.
    let sprayed = bad_key();
    let mut statuses = Vec::new();
    for i in 0..40 {
        let f = format!("192.0.2.{i}");
        statuses.push(me_with(&srv, &format!("Bearer {sprayed}"), Some(&f)).await);
    }
    let refused = statuses
        .iter()
        .find(|(s, _)| *s == 429)
        .expect("prefix limited");
    assert!(
        refused.1.to_string().contains("presenting this key"),
        "{}",
        refused.1
    );
    srv.shutdown().await;
}

#[tokio::test]
async fn the_bearer_scheme_is_case_insensitive() {
    let srv = TestServer::start().await;
    for scheme in ["Bearer", "bearer", "BEARER", "bEaReR"] {
        for sep in [" ", "  ", "\t"] {
            let (s, b) = me_with(&srv, &format!("{scheme}{sep}{}", srv.key), None).await;
            assert_eq!(s, 200, "'{scheme}{sep}': {b}");
        }
    }
    for bad in ["Basic x", "Bearer", "Bearerx", "Token abc"] {
        let (s, _) = me_with(&srv, bad, None).await;
        assert_eq!(s, 401, "{bad}");
    }
    srv.shutdown().await;
}

async fn project(srv: &TestServer, key: &str, name: &str) -> String {
    let (s, p) = send(
        srv.req_as(key, Method::POST, "/v1/projects")
            .json(&json!({"name": name})),
    )
    .await;
    assert_eq!(s, 201, "{p}");
    p["id"].as_str().unwrap().to_string()
}

async fn invite(
    srv: &TestServer,
    key: &str,
    project: &str,
    email: &str,
    role: &str,
) -> (u16, Value) {
    send(
        srv.req_as(
            key,
            Method::POST,
            &format!("/v1/projects/{project}/members"),
        )
        .json(&json!({"email": email, "role": role})),
    )
    .await
}

async fn key_for(srv: &TestServer, creator: &str, body: Value) -> (u16, Value) {
    send(
        srv.req_as(creator, Method::POST, "/v1/api-keys")
            .json(&body),
    )
    .await
}

#[tokio::test]
async fn an_invited_admin_invites_and_keys_never_exceed_their_developer() {
    let srv = TestServer::start().await;
    let p1 = project(&srv, &srv.key, "one").await;
    let p2 = project(&srv, &srv.key, "two").await;
    let (s, m) = invite(&srv, &srv.key, &p1, "lead@example.org", "ADMIN").await;
    assert_eq!(s, 201, "{m}");
    let lead = m["developer_id"].as_str().unwrap().to_string();
    let (s, m) = invite(&srv, &srv.key, &p1, "dev@example.org", "DEVELOPER").await;
    assert_eq!(s, 201, "{m}");
    let dev = m["developer_id"].as_str().unwrap().to_string();

    // The OWNER creates a key for the invited ADMIN: it invites to that project only.
    let (s, k) = key_for(&srv, &srv.key, json!({"name": "lead", "developerId": lead})).await;
    assert_eq!(s, 201, "{k}");
    assert_eq!(k["data"]["developerId"], lead.as_str());
    let lead_key = k["data"]["key"].as_str().unwrap().to_string();
    let (s, b) = invite(&srv, &lead_key, &p1, "new@example.org", "VIEWER").await;
    assert_eq!(s, 201, "an invited ADMIN cannot invite: {b}");
    let (s, _) = invite(&srv, &lead_key, &p2, "new2@example.org", "VIEWER").await;
    assert_eq!(s, 404, "not a member of the other project");

    // A key for a DEVELOPER never has more than a DEVELOPER.
    let (s, b) = key_for(
        &srv,
        &srv.key,
        json!({"name": "x", "developerId": dev, "scopes": ["admin"]}),
    )
    .await;
    assert_eq!(s, 403, "{b}");
    let (s, k) = key_for(&srv, &srv.key, json!({"name": "dev", "developer_id": dev})).await;
    assert_eq!(s, 201, "{k}");
    let dev_key = k["data"]["key"].as_str().unwrap().to_string();
    let (s, _) = send(srv.req_as(&dev_key, Method::GET, "/v1/api-keys")).await;
    assert_eq!(s, 403);
    let (s, b) = send(srv.req_as(&dev_key, Method::GET, "/v1/me")).await;
    assert_eq!((s, b["role"].as_str()), (200, Some("DEVELOPER")), "{b}");
    // A key cannot exceed its creator either: a restricted creator gives what both allow.
    let (s, k) = key_for(
        &srv,
        &srv.key,
        json!({"name": "r", "scopes": ["admin", "read"]}),
    )
    .await;
    assert_eq!(s, 201, "{k}");
    let restricted = k["data"]["key"].as_str().unwrap().to_string();
    let (s, k) = key_for(&srv, &restricted, json!({"name": "d2", "developerId": dev})).await;
    assert_eq!(s, 201, "{k}");
    assert_eq!(k["data"]["scopes"], json!(["read"]));
    // Only a tenant OWNER or ADMIN names another developer; unknown developers are 404.
    let (s, k) = key_for(
        &srv,
        &srv.key,
        json!({"name": "lead2", "developerId": lead}),
    )
    .await;
    assert_eq!(s, 201, "{k}");
    let (s, b) = key_for(&srv, &dev_key, json!({"name": "y", "developerId": lead})).await;
    assert_eq!(s, 403, "{b}");
    let (s, _) = key_for(
        &srv,
        &srv.key,
        json!({"name": "z", "developerId": "dev_nobody"}),
    )
    .await;
    assert_eq!(s, 404);
    let other = srv.create_tenant("other", engram::plans::Plan::Pro).await;
    let (s, _) = key_for(&srv, &other, json!({"name": "z", "developerId": dev})).await;
    assert_eq!(s, 404, "another tenant's developer");

    // The CLI does the same on the data dir.
    let data = srv.data_dir().display().to_string();
    let (ok, out, err) = run_cli(&["keys", "create", "--data-dir", &data, "--developer", &dev]);
    assert!(ok, "{err}");
    let cli_key = out.trim().to_string();
    let (s, b) = wait_for("the CLI key to work", Duration::from_secs(10), || async {
        let r = send(srv.req_as(&cli_key, Method::GET, "/v1/me")).await;
        (r.0 == 200).then_some(r)
    })
    .await;
    assert_eq!((s, b["role"].as_str()), (200, Some("DEVELOPER")), "{b}");
    let (ok, _, err) = run_cli(&[
        "keys",
        "create",
        "--data-dir",
        &data,
        "--developer",
        &dev,
        "--scopes",
        "admin",
    ]);
    assert!(!ok && err.contains("exceed"), "{err}");
    let (ok, _, err) = run_cli(&[
        "keys",
        "create",
        "--data-dir",
        &data,
        "--developer",
        "dev_x",
    ]);
    assert!(!ok && err.contains("not found"), "{err}");
    srv.shutdown().await;
}
