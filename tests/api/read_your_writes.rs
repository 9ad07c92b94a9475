//! Read your writes: `?wait=searchable` on capture and batch answers once the events can be found,
//! and health's `capturedSeq` / `searchableSeq` say when everything captured is searchable.

use crate::support::{send, wait_for, TestServer};
use reqwest::Method;
use serde_json::{json, Value};
use std::time::Duration;

#[tokio::test]
async fn capture_then_synthesize_back_to_back_finds_the_event_every_time() {
    let srv = TestServer::start_with(|c| c.auto_learn_every = 0).await;
    for i in 0..200 {
        let word = format!("zebra{i}quokka");
        let (s, b) = send(
            srv.req(Method::POST, "/v1/capture?wait=searchable")
                .json(&json!({"type": "message", "sessionId": format!("ryw-{}", i % 5),
                              "payload": {"role": "user", "content": format!("the secret word is {word}")}})),
        )
        .await;
        assert_eq!(s, 202, "{b}");
        assert_eq!(b["data"]["searchable"], true, "{b}");
        let (s, b) = srv.post("/v1/synthesize", json!({"query": word})).await;
        assert_eq!(s, 200, "{b}");
        assert!(
            b["data"]["entries"].to_string().contains(&word),
            "round {i}: {b}"
        );
    }
    srv.shutdown().await;
}

#[tokio::test]
async fn batches_wait_too_and_health_reports_the_watermarks() {
    let srv = TestServer::start_with(|c| c.auto_learn_every = 0).await;
    let events: Vec<Value> = (0..50)
        .map(|i| json!({"type": "message", "sessionId": "b",
                        "payload": {"role": "user", "content": format!("batch item {i} walrus{i}x")}}))
        .collect();
    let (s, b) = send(
        srv.req(Method::POST, "/v1/capture/batch?wait=searchable&timeout=30")
            .json(&json!({"events": events})),
    )
    .await;
    assert_eq!(s, 202, "{b}");
    assert_eq!(b["data"]["searchable"], true, "{b}");
    let (_, b) = srv
        .post("/v1/synthesize", json!({"query": "walrus49x"}))
        .await;
    assert!(
        b["data"]["entries"].to_string().contains("walrus49x"),
        "{b}"
    );
    let search = wait_for(
        "health to show everything searchable",
        Duration::from_secs(10),
        || async {
            let (_, h) = send(srv.http.get(srv.url("/v1/health"))).await;
            let s = h["data"]["subsystems"]["search"].clone();
            (s["capturedSeq"].as_i64() >= Some(50) && s["capturedSeq"] == s["searchableSeq"])
                .then_some(s)
        },
    )
    .await;
    assert!(search["searchableSeq"].as_i64().unwrap() >= 50, "{search}");
    // Without the parameter nothing waits and nothing is said; a wrong value is a 400.
    let (s, b) = srv
        .post(
            "/v1/capture",
            json!({"type": "message", "sessionId": "b", "payload": {"content": "x"}}),
        )
        .await;
    assert_eq!(s, 202);
    assert!(b["data"].get("searchable").is_none(), "{b}");
    let (s, b) = send(
        srv.req(Method::POST, "/v1/capture?wait=true")
            .json(&json!({"type": "message", "sessionId": "b", "payload": {"content": "x"}})),
    )
    .await;
    assert_eq!(s, 400, "{b}");
    srv.shutdown().await;
}
