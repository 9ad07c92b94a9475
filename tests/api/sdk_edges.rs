//! The SDK's edges: memory routes without the `/v1` prefix, the tested SDK version announced in
//! a header, `artifactTypes: []` meaning every type, and `--learn-wait-secs` for fixtures whose
//! code calls the SDK's learn() and then reads artifacts.

use crate::support::{send, TestServer};
use reqwest::Method;
use serde_json::json;
use std::time::Duration;

#[tokio::test]
async fn memory_routes_answer_without_the_prefix_and_announce_the_tested_sdk() {
    let srv = TestServer::start().await;
    let resp = srv
        .http
        .post(srv.url("/capture"))
        .bearer_auth(&srv.key)
        .json(&json!({"type": "message", "sessionId": "s", "payload": {"content": "hi"}}))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 202);
    assert_eq!(
        resp.headers()["x-hippocortex-latest-sdk-python"],
        engram::api::TESTED_SDK_PYTHON
    );
    let (s, _) = send(
        srv.req(Method::POST, "/synthesize")
            .json(&json!({"query": "hi"})),
    )
    .await;
    assert_eq!(s, 200);
    // Registry routes keep their prefix.
    let (s, _) = send(srv.req(Method::GET, "/me")).await;
    assert_eq!(s, 404);
    let resp = srv.req(Method::GET, "/v1/me").send().await.unwrap();
    assert!(resp
        .headers()
        .get("x-hippocortex-latest-sdk-python")
        .is_none());
    srv.shutdown().await;
}

#[tokio::test]
async fn learn_waits_when_the_operator_says_so_and_an_empty_type_list_means_all() {
    let srv = TestServer::start_with(|c| {
        c.learn_wait = Duration::from_secs(30);
        c.auto_learn_every = 0;
    })
    .await;
    for i in 0..6 {
        let (s, b) = srv
            .post(
                "/v1/capture",
                json!({"type": "message", "sessionId": format!("s{}", i % 2),
                       "payload": {"role": "user", "content": format!("deploy the api service step {i}")}}),
            )
            .await;
        assert_eq!(s, 202, "{b}");
    }
    let (s, b) = srv
        .post("/v1/learn", json!({"options": {"artifactTypes": []}}))
        .await;
    // Waited: the job's real result, not `queued`.
    assert_eq!(s, 200, "{b}");
    assert_ne!(b["data"]["status"], "queued", "{b}");
    // The request can still say not to wait.
    let (s, b) = send(
        srv.req(Method::POST, "/v1/learn?wait=false")
            .json(&json!({})),
    )
    .await;
    assert_eq!(
        (s, b["data"]["status"].as_str()),
        (202, Some("queued")),
        "{b}"
    );
    srv.shutdown().await;
}
