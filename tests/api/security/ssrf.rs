//! SSRF: a tenant's connector URL never makes engram call loopback, private, link-local or
//! metadata addresses, in any spelling, unless the operator allowed the destination; what the
//! remote side answered is never relayed; redirects are not followed; credentials never leave.

use super::raw::Target;
use crate::support::{send, TestServer};
use reqwest::Method;
use serde_json::{json, Value};
use std::time::Duration;

async fn tenant_of(srv: &TestServer) -> String {
    let (s, me) = srv.get("/v1/me").await;
    assert_eq!(s, 200, "{me}");
    me["tenant_id"].as_str().unwrap().to_string()
}

async fn project(srv: &TestServer) -> String {
    let (s, p) = srv.post("/v1/projects", json!({"name": "ssrf"})).await;
    assert_eq!(s, 201, "{p}");
    p["id"].as_str().unwrap().to_string()
}

/// Every spelling of "this machine" an attacker tried, aimed at `port`.
fn spellings(port: u16, engram_port: u16) -> Vec<String> {
    vec![
        format!("http://127.0.0.1:{port}/mcp"),
        format!("http://localhost:{port}/mcp"),
        format!("http://2130706433:{port}/mcp"),
        format!("http://127.1:{port}/mcp"),
        format!("http://0x7f000001:{port}/mcp"),
        format!("http://0177.0.0.1:{port}/mcp"),
        format!("http://0.0.0.0:{port}/mcp"),
        format!("http://0:{port}/mcp"),
        format!("http://[::1]:{port}/mcp"),
        format!("http://[::ffff:127.0.0.1]:{port}/mcp"),
        format!("http://[::ffff:7f00:1]:{port}/mcp"),
        format!("HTTP://127.0.0.1:{port}/mcp"),
        format!("http:/127.0.0.1:{port}/mcp"),
        format!("http:\\\\127.0.0.1:{port}/mcp"),
        format!("http://user:pass@127.0.0.1:{port}/mcp"),
        format!("http://127.0.0.1:{engram_port}/v1/health"),
        "http://169.254.169.254/latest/meta-data/".to_string(),
        "http://[fd00:ec2::254]/latest/meta-data/".to_string(),
        "http://10.0.0.1/mcp".to_string(),
        "http://192.168.0.1/mcp".to_string(),
        "http://100.64.0.1/mcp".to_string(),
    ]
}

#[tokio::test]
async fn registration_refuses_every_spelling_of_an_internal_address() {
    let target = Target::start(200, None).await;
    let srv = TestServer::start().await;
    let project = project(&srv).await;
    let path = format!("/v1/projects/{project}/connectors");
    for (i, url) in spellings(target.port, srv.state().bound.port())
        .into_iter()
        .enumerate()
    {
        let (s, b) = srv
            .post(&path, json!({"name": format!("c{i}"), "mcp_url": url}))
            .await;
        assert_eq!(s, 400, "{url} was accepted: {b}");
        assert_eq!(b["details"][0]["field"], "mcp_url", "{url}: {b}");
        let msg = b["message"].as_str().unwrap();
        assert!(
            msg.contains("address") || msg.contains("credentials"),
            "{url}: the reason is named: {msg}"
        );
    }
    // A public URL is still accepted.
    let (s, b) = srv
        .post(
            &path,
            json!({"name": "public", "mcp_url": "https://mcp.example.org/mcp"}),
        )
        .await;
    assert_eq!(s, 201, "{b}");
    assert_eq!(target.count(), 0, "registration must not call anything");
    srv.shutdown().await;
}

/// Stores connectors directly (as rows written before the policy existed, or names that
/// resolved elsewhere at registration would be) and invokes an agent of their project.
async fn invoke_with_stored_connectors(srv: &TestServer, urls: &[String]) -> Value {
    let tenant = tenant_of(srv).await;
    let project = project(srv).await;
    {
        let (t, p, urls) = (tenant.clone(), project.clone(), urls.to_vec());
        srv.state()
            .db
            .write(move |c| {
                for (i, u) in urls.iter().enumerate() {
                    engram::store::connectors::insert(c, &t, &p, &format!("stored {i}"), u, None)?;
                }
                Ok(())
            })
            .await
            .unwrap();
    }
    let (s, a) = send(srv.req(Method::POST, "/v1/agents/deploy").json(&json!({
        "name": "ssrf agent", "instruction": "test", "model": "offline", "project_id": project,
    })))
    .await;
    assert_eq!(s, 201, "{a}");
    let agent = a["agent_id"].as_str().unwrap().to_string();
    let (s, body) = send(
        srv.req(Method::POST, &format!("/v1/agents/{agent}/invoke"))
            .json(&json!({"message": "hello"})),
    )
    .await;
    assert_eq!(s, 200, "{body}");
    body
}

#[tokio::test]
async fn stored_internal_urls_are_refused_at_connect_and_reach_nothing() {
    let target = Target::start(403, None).await;
    let srv = TestServer::start().await;
    let urls = spellings(target.port, srv.state().bound.port());
    let body = invoke_with_stored_connectors(&srv, &urls).await;
    let errors = body["connector_errors"]
        .as_array()
        .expect("connector errors");
    assert_eq!(errors.len(), urls.len(), "{body}");
    for e in errors {
        let text = e["error"].as_str().unwrap();
        assert!(
            text.contains("address") || text.contains("credentials"),
            "refused by the policy, saying why: {text}"
        );
        for internal in ["rmcp", "reqwest", "hyper", "Transport", "Error"] {
            assert!(!text.contains(internal), "an internal name in: {text}");
        }
    }
    // Give a stray connection time to arrive, then check none did.
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert_eq!(
        target.count(),
        0,
        "the target was reached: {:?}",
        target.heads()
    );
    srv.shutdown().await;
}

#[tokio::test]
async fn an_allowed_destination_is_called_but_its_answer_is_not_relayed() {
    let forbidden = Target::start(403, None).await;
    let redirect = Target::start(302, Some("http://169.254.169.254/latest/meta-data/")).await;
    let (fp, rp) = (forbidden.port, redirect.port);
    let srv = TestServer::start_with(move |cfg| {
        cfg.outbound
            .allow
            .push(format!("127.0.0.1:{fp}").parse().unwrap());
        cfg.outbound
            .allow
            .push(format!("localhost:{rp}").parse().unwrap());
    })
    .await;
    let project = project(&srv).await;
    let path = format!("/v1/projects/{project}/connectors");
    // Allowed: exactly the destinations the operator named, nothing next to them.
    for (i, (url, ok)) in [
        (format!("http://127.0.0.1:{fp}/mcp"), true),
        (format!("http://localhost:{rp}/mcp"), true),
        // An address entry allows that address however it is named; a name entry that name.
        (format!("http://localhost:{fp}/mcp"), true),
        (format!("http://127.0.0.1:{rp}/mcp"), false),
        (format!("http://127.0.0.1:{}/mcp", fp + 1), false),
        (format!("http://user:pw@127.0.0.1:{fp}/mcp"), false),
    ]
    .into_iter()
    .enumerate()
    {
        let (s, b) = srv
            .post(&path, json!({"name": format!("n{i}"), "mcp_url": url}))
            .await;
        assert_eq!(s == 201, ok, "{url}: {b}");
    }
    // Credentials in a stored URL are refused at connect, never forwarded.
    let body = invoke_with_stored_connectors(
        &srv,
        &[
            format!("http://127.0.0.1:{fp}/mcp"),
            format!("http://admin:hunter2@127.0.0.1:{fp}/mcp"),
            format!("http://localhost:{rp}/mcp"),
        ],
    )
    .await;
    let text = body["connector_errors"].to_string();
    assert!(text.contains("HTTP 403"), "{text}");
    assert!(
        text.contains("HTTP 302") && text.contains("redirects"),
        "{text}"
    );
    assert!(text.contains("credentials"), "{text}");
    for leak in [
        "INTERNAL-ONLY",
        "hunter2",
        "rmcp",
        "reqwest",
        "Transport",
        "Whatever",
    ] {
        assert!(!text.contains(leak), "'{leak}' leaked: {text}");
    }
    assert!(forbidden.count() >= 1 && redirect.count() >= 1);
    for head in forbidden.heads() {
        assert!(
            !head.to_ascii_lowercase().contains("authorization"),
            "credentials were forwarded: {head}"
        );
    }
    srv.shutdown().await;
}

#[tokio::test]
async fn allow_private_outbound_opens_every_address() {
    let target = Target::start(404, None).await;
    let srv = TestServer::start_with(|cfg| cfg.outbound.allow_private = true).await;
    let project = project(&srv).await;
    let (s, b) = srv
        .post(
            &format!("/v1/projects/{project}/connectors"),
            json!({"name": "lan", "mcp_url": format!("http://127.0.0.1:{}/mcp", target.port)}),
        )
        .await;
    assert_eq!(s, 201, "{b}");
    srv.shutdown().await;
}
