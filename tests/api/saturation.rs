//! Saturation has an end: past `--max-backlog` unprocessed events capture answers 503
//! `unavailable` with `Retry-After`, health shows it, and capture resumes by itself once
//! processing has caught up.

use crate::support::{wait_for, TestServer};
use serde_json::{json, Value};
use std::time::Duration;

fn batch(n: usize, tag: &str) -> Value {
    let events: Vec<Value> = (0..n)
        .map(|i| {
            json!({"type": "message", "sessionId": format!("{tag}-{}", i % 7),
                   "payload": {"role": "user", "content": format!("{tag} event {i}")}})
        })
        .collect();
    json!({"events": events})
}

#[tokio::test]
async fn past_the_backlog_limit_capture_answers_503_and_recovers() {
    let srv = TestServer::start_with(|c| {
        c.max_backlog = 50;
        c.auto_learn_every = 0;
    })
    .await;
    let (s, b) = srv.post("/v1/capture/batch", batch(200, "burst")).await;
    assert_eq!(s, 202, "{b}");
    // The burst is counted at once: the next capture is refused.
    let resp = srv
        .req(reqwest::Method::POST, "/v1/capture")
        .json(&json!({"type": "message", "sessionId": "s", "payload": {"content": "one more"}}))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 503);
    assert!(resp.headers().get("retry-after").is_some());
    let b: Value = resp.json().await.unwrap();
    assert_eq!(b["error"]["code"], "unavailable", "{b}");
    let (_, h) = crate::support::send(srv.http.get(srv.url("/v1/health"))).await;
    let cap = &h["data"]["subsystems"]["workers"]["capture"];
    assert_eq!(cap["maxBacklog"], 50, "{h}");
    // Processing catches up; capture resumes on its own.
    wait_for("capture to resume", Duration::from_secs(60), || async {
        let (s, _) = srv
            .post(
                "/v1/capture",
                json!({"type": "message", "sessionId": "s", "payload": {"content": "after"}}),
            )
            .await;
        (s == 202).then_some(())
    })
    .await;
    let (_, h) = crate::support::send(srv.http.get(srv.url("/v1/health"))).await;
    assert_eq!(
        h["data"]["subsystems"]["workers"]["capture"]["saturated"], false,
        "{h}"
    );
    srv.shutdown().await;
}
