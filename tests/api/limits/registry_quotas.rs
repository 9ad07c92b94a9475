//! The invocations and agents quotas end to end through the registry routes: an exhausted quota
//! answers 429 `quota_exceeded` in the registry body with `retry_after`, `/v1/usage` reports the
//! same counters, test keys count apart and the count survives a restart.

use super::{add_key, tenant};
use crate::support::*;
use engram::plans::Plan;
use reqwest::Method;
use serde_json::{json, Value};

async fn deploy(srv: &TestServer, key: &str, name: &str) -> (u16, Value) {
    send(srv.req_as(key, Method::POST, "/v1/agents/deploy").json(
        &json!({"name": name, "instruction": "Answer briefly.", "model": "offline-echo",
                          "script": [{"match": ".", "reply": "pong"}]}),
    ))
    .await
}

async fn invoke(srv: &TestServer, key: &str, agent: &str) -> (u16, Value, Option<u64>) {
    let resp = srv
        .req_as(key, Method::POST, &format!("/v1/agents/{agent}/invoke"))
        .json(&json!({"message": "ping"}))
        .send()
        .await
        .expect("sent");
    let retry = resp
        .headers()
        .get("retry-after")
        .map(|v| v.to_str().unwrap().parse().unwrap());
    let (s, b) = json_of(resp).await;
    (s, b, retry)
}

#[tokio::test]
async fn invocations_and_agents_stop_at_their_quotas() {
    let srv = TestServer::start_at("2031-03-14T10:30:00Z").await;
    let t = tenant(
        &srv,
        Plan::Free,
        Some(json!({"invocationsPerMonth": 2, "agents": 1})),
    )
    .await;
    let (s, b) = deploy(&srv, &t.key, "pinger").await;
    assert_eq!(s, 201, "{b}");
    let agent = b["agent_id"].as_str().unwrap().to_string();
    let (s, b) = deploy(&srv, &t.key, "second").await;
    assert_eq!(
        (s, b["error"].as_str()),
        (429, Some("quota_exceeded")),
        "{b}"
    );

    for _ in 0..2 {
        let (s, b, _) = invoke(&srv, &t.key, &agent).await;
        assert_eq!(s, 200, "{b}");
        assert_eq!(b["content"], "pong");
    }
    let (s, b, retry) = invoke(&srv, &t.key, &agent).await;
    assert_eq!(s, 429, "{b}");
    assert_eq!(b["error"], "quota_exceeded");
    let retry = retry.expect("Retry-After");
    assert_eq!(b["retry_after"], retry);
    let now = srv.clock().now();
    let until_reset = (engram::time::month_bounds(now).1 - now).num_seconds() as u64;
    assert!(retry.abs_diff(until_reset) <= 2, "{retry} vs {until_reset}");
    assert_eq!(b["details"]["quota"], "invocations");
    assert_eq!(b["details"]["limit"], 2);
    assert_eq!(b["details"]["remaining"], 0);

    let (s, u) = send(srv.req_as(&t.key, Method::GET, "/v1/usage")).await;
    assert_eq!(s, 200, "{u}");
    assert_eq!(u["invocations_used"], 2);
    assert_eq!(u["invocations_limit"], 2);

    // A test key of the tenant counts its own invocations.
    let test_key = add_key(&srv, &t, "test").await;
    let (s, b, _) = invoke(&srv, &test_key, &agent).await;
    assert_eq!(s, 200, "{b}");

    // A restart (on the same clock) keeps the count.
    let at = srv.clock().now();
    let dir = srv.shutdown().await;
    let srv = TestServer::start_in(dir, |c| c.clock.set(at).unwrap()).await;
    let (s, b, _) = invoke(&srv, &t.key, &agent).await;
    assert_eq!(
        (s, b["error"].as_str()),
        (429, Some("quota_exceeded")),
        "{b}"
    );
    // The month turns: invocations are allowed again.
    srv.clock()
        .set(engram::time::parse("2031-04-01T00:00:01Z").unwrap())
        .unwrap();
    let (s, b, _) = invoke(&srv, &t.key, &agent).await;
    assert_eq!(s, 200, "{b}");
    assert!(
        b["timestamp"].as_str().unwrap().starts_with("2031-04-01"),
        "{b}"
    );
    srv.shutdown().await;
}
