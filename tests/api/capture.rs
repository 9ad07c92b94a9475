//! Capture pipeline tests: validation, idempotency, batches, processing into memories, reads,
//! forgetting sessions, metrics, tenant isolation, crash safety and the official SDK.

use crate::support::*;
use reqwest::Method;
use serde_json::{json, Value};
use std::time::Duration;

#[allow(dead_code)]
fn ev(session: &str, content: &str) -> Value {
    json!({"type": "message", "sessionId": session, "payload": {"role": "user", "content": content}})
}

/// Waits until every event of the tenant is processed (`/v1/events` shows none queued).
async fn wait_processed(srv: &TestServer, key: &str, expected: usize) {
    wait_for("events processed", Duration::from_secs(30), || async {
        let mut done = 0;
        let mut cursor: Option<String> = None;
        loop {
            let path = match &cursor {
                Some(c) => format!("/v1/events?limit=100&cursor={c}"),
                None => "/v1/events?limit=100".to_string(),
            };
            let (s, b) = send(srv.req_as(key, Method::GET, &path)).await;
            assert_eq!(s, 200, "{b}");
            let items = b["data"]["items"].as_array().unwrap();
            done += items.iter().filter(|e| e["status"] == "processed").count();
            if b["data"]["hasMore"] != true {
                break;
            }
            cursor = b["data"]["nextCursor"].as_str().map(str::to_string);
        }
        (done >= expected).then_some(())
    })
    .await;
}

#[tokio::test]
async fn capture_round_trip_becomes_an_episodic_memory() {
    let srv = TestServer::start().await;
    let (s, b) = srv
        .post(
            "/v1/capture",
            json!({"type": "command_exec", "sessionId": "s-1",
                   "payload": {"command": "cargo test", "exitCode": 101, "stderr": "boom"},
                   "metadata": {"agentId": "deploy-bot", "source": "api"},
                   "idempotencyKey": "idem-1"}),
        )
        .await;
    assert_eq!(s, 202, "{b}");
    let d = &b["data"];
    assert_eq!(d["status"], "ingested");
    assert_eq!(d["idempotencyKey"], "idem-1");
    let id = d["eventId"].as_str().unwrap().to_string();
    assert!(id.starts_with("evt_"));
    assert!(d["traceId"].as_str().unwrap().starts_with("trace_"));
    assert!(d["jobId"].as_str().unwrap().starts_with("job_"));
    let sal = d["salienceScore"].as_f64().unwrap();
    assert!((0.0..=1.0).contains(&sal), "{sal}");

    wait_processed(&srv, &srv.key, 1).await;
    let (s, e) = srv.get(&format!("/v1/events/{id}")).await;
    assert_eq!(s, 200, "{e}");
    let e = &e["data"];
    assert_eq!(e["type"], "command_exec");
    assert_eq!(e["sessionId"], "s-1");
    assert_eq!(e["agentId"], "deploy-bot");
    assert_eq!(e["payload"]["exitCode"], 101);
    assert_eq!(e["metadata"]["source"], "api");
    assert_eq!(e["salienceScore"].as_f64().unwrap(), sal);
    let mem_id = e["memoryId"].as_str().unwrap().to_string();
    let (s, m) = srv.get(&format!("/v1/memories/{mem_id}")).await;
    assert_eq!(s, 200, "{m}");
    assert_eq!(m["data"]["kind"], "episodic");
    assert_eq!(m["data"]["eventId"], id.as_str());
    assert_eq!(m["data"]["agentId"], "deploy-bot");
    let content = m["data"]["content"].as_str().unwrap();
    assert!(
        content.contains("cargo test") && content.contains("101"),
        "{content}"
    );
}
