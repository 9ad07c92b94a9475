//! Helpers of the invoke tests: servers wired to the peers, deploying agents through the API,
//! invoking (plain and streamed), and reading the server's database.

use super::peers::{ModelPeer, SseReader, Wire};
use crate::support::{send, wait_for, TestServer};
use reqwest::Method;
use serde_json::{json, Value};
use std::time::Duration;

/// A server whose OpenAI-compatible and Anthropic upstreams are the given peers.
pub async fn server_with(openai: Option<&ModelPeer>, anthropic: Option<&ModelPeer>) -> TestServer {
    let o = openai.map(|p| p.base_url());
    let a = anthropic.map(|p| p.base_url());
    TestServer::start_with(move |cfg| {
        cfg.openai_base_url = o;
        cfg.anthropic_base_url = a;
        allow_loopback_connectors(cfg);
    })
    .await
}

/// The MCP peers of these tests listen on 127.0.0.1, which the outbound policy refuses unless the
/// operator allows it (`--allow-outbound 127.0.0.1`).
pub fn allow_loopback_connectors(cfg: &mut engram::config::Config) {
    cfg.outbound
        .allow
        .push("127.0.0.1".parse().expect("an address"));
}

/// Deploys an agent through the API with `key` (in a new project holding `connectors` =
/// [(name, mcp_url)] when there are any); returns its id.
pub async fn agent(
    srv: &TestServer,
    key: &str,
    model: &str,
    script: Option<Value>,
    timeout: i64,
    connectors: &[(&str, &str)],
) -> String {
    static N: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
    let n = N.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let mut body = json!({
        "name": format!("test agent {n}"),
        "instruction": "You are a careful test agent.",
        "model": model,
        "timeout": timeout,
    });
    if let Some(s) = script {
        body["script"] = s;
    }
    if !connectors.is_empty() {
        let (status, p) = send(
            srv.req_as(key, Method::POST, "/v1/projects")
                .json(&json!({"name": format!("project {n}")})),
        )
        .await;
        assert_eq!(status, 201, "{p}");
        let project = p["id"].as_str().unwrap().to_string();
        for (name, url) in connectors {
            let (status, c) = send(
                srv.req_as(
                    key,
                    Method::POST,
                    &format!("/v1/projects/{project}/connectors"),
                )
                .json(&json!({"name": name, "mcp_url": url})),
            )
            .await;
            assert_eq!(status, 201, "{c}");
        }
        body["project_id"] = json!(project);
    }
    let (status, b) = send(
        srv.req_as(key, Method::POST, "/v1/agents/deploy")
            .json(&body),
    )
    .await;
    assert_eq!(status, 201, "{b}");
    b["agent_id"].as_str().unwrap().to_string()
}

pub async fn invoke(srv: &TestServer, agent: &str, body: Value) -> (u16, Value) {
    send(
        srv.req(Method::POST, &format!("/v1/agents/{agent}/invoke"))
            .json(&body),
    )
    .await
}

/// A single-row query on the server's database.
pub async fn one<T: engram::store::sql::FromCol + Send + 'static>(
    srv: &TestServer,
    sql: &'static str,
    arg: String,
) -> Option<T> {
    srv.state()
        .db
        .read(move |c| Ok(c.test_column::<T>(sql, &[&arg])?.into_iter().next()))
        .await
        .expect("query runs")
}

pub async fn stream(srv: &TestServer, agent: &str, body: Value) -> SseReader {
    let resp = srv
        .req(Method::POST, &format!("/v1/agents/{agent}/invoke"))
        .json(&body)
        .send()
        .await
        .expect("sent");
    assert_eq!(resp.status(), 200);
    assert_eq!(
        resp.headers()["content-type"].to_str().unwrap(),
        "text/event-stream"
    );
    SseReader::new(resp)
}

/// Waits until the agent's memory (synthesize, scoped to the agent) recalls `needle` for `query`.
pub async fn wait_memory(srv: &TestServer, agent: &str, query: &str, needle: &str) {
    wait_for(
        "the turn to be captured into memory",
        Duration::from_secs(30),
        || async {
            let (status, body) = srv
                .post("/v1/synthesize", json!({"query": query, "agentId": agent}))
                .await;
            (status == 200 && body["data"]["entries"].to_string().contains(needle)).then_some(())
        },
    )
    .await;
}

pub fn system_prompt_of(wire: Wire, req: &Value) -> String {
    match wire {
        Wire::OpenAi => req["messages"][0]["content"].as_str().unwrap().to_string(),
        Wire::Anthropic => req["system"].as_str().unwrap().to_string(),
    }
}
