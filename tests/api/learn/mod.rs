//! Learn tests: the compiler over HTTP on generated sessions with planted ground truth,
//! incremental equals full, determinism, every validation error, wait and poll, serialised
//! concurrent learns, tenant isolation, versions and supersession, deprecate and restore, facts,
//! forgetting a session, and the official SDK's learn/list_artifacts/get_artifact.
//! This file holds the shared helpers; the tests live in the submodules.

mod compile;
mod crash;
mod lifecycle;
mod sdk;
mod validation;

use crate::support::*;
use engram::compiler::trajectories::{capture_items, GenSession, Spec};
use reqwest::Method;
use serde_json::{json, Value};
use std::collections::BTreeMap;
use std::time::Duration;
/// A server without automatic learning, so every learn run is one the test asked for.
pub(super) async fn server() -> TestServer {
    TestServer::start_with(|c| {
        c.auto_learn_every = 0;
        c.auto_learn_sweep = Duration::ZERO;
        c.limits_enabled = false;
        // Two learn workers, so that one tenant's learns not overlapping is the queue's doing.
        c.learn_workers = 2;
    })
    .await
}

/// Captures sessions through `POST /v1/capture/batch`, up to 1000 events a request.
pub(super) async fn capture(srv: &TestServer, key: &str, sessions: &[GenSession]) {
    let items: Vec<Value> = sessions.iter().flat_map(capture_items).collect();
    for chunk in items.chunks(1000) {
        let (s, b) = send(
            srv.req_as(key, Method::POST, "/v1/capture/batch")
                .json(&json!({"events": chunk})),
        )
        .await;
        assert_eq!(s, 202, "{b}");
        assert_eq!(b["data"]["summary"]["errors"], 0, "{b}");
    }
}

pub(super) async fn learn(srv: &TestServer, key: &str, body: Value) -> Value {
    let (s, b) = send(
        srv.req_as(key, Method::POST, "/v1/learn?wait=true")
            .json(&body),
    )
    .await;
    assert_eq!(s, 200, "{b}");
    assert!(
        matches!(b["data"]["status"].as_str(), Some("completed" | "partial")),
        "{b}"
    );
    b["data"].clone()
}

/// Every artifact of the tenant (all statuses), following cursors.
pub(super) async fn all_artifacts(srv: &TestServer, key: &str, query: &str) -> Vec<Value> {
    let mut out = Vec::new();
    let mut cursor: Option<String> = None;
    for _ in 0..100 {
        let path = match &cursor {
            Some(c) => format!("/v1/artifacts?limit=100&{query}&cursor={c}"),
            None => format!("/v1/artifacts?limit=100&{query}"),
        };
        let (s, b) = send(srv.req_as(key, Method::GET, &path)).await;
        assert_eq!(s, 200, "{b}");
        out.extend(b["data"]["items"].as_array().unwrap().iter().cloned());
        cursor = b["data"]["pagination"]["cursor"]
            .as_str()
            .map(str::to_string);
        if cursor.is_none() {
            return out;
        }
    }
    panic!("pagination did not end");
}

pub(super) fn find<'a>(arts: &'a [Value], t: &str, sig_part: &str) -> &'a Value {
    arts.iter()
        .find(|a| a["type"] == t && a["signature"].as_str().unwrap().contains(sig_part))
        .unwrap_or_else(|| panic!("no {t} with {sig_part}"))
}

pub(super) fn small_spec(seed: u64) -> Spec {
    Spec {
        seed,
        deploy: 30,
        migrate: 25,
        release: 20,
        noise: 15,
        prefix: format!("t{seed}"),
    }
}

pub(super) fn by_identity(arts: &[Value]) -> BTreeMap<String, (String, u64, f64)> {
    arts.iter()
        .filter(|a| a["status"] == "active")
        .map(|a| {
            (
                format!(
                    "{}|{}",
                    a["type"].as_str().unwrap(),
                    a["signature"].as_str().unwrap()
                ),
                (
                    a["content"].to_string(),
                    a["evidenceCount"].as_u64().unwrap(),
                    a["confidence"].as_f64().unwrap(),
                ),
            )
        })
        .collect()
}

pub(super) async fn expect_422(srv: &TestServer, body: Value, field: &str) {
    let (s, b) = srv.post("/v1/learn", body.clone()).await;
    assert_eq!(s, 422, "{body} -> {b}");
    assert_eq!(b["ok"], false);
    assert_eq!(b["error"]["code"], "validation_error", "{b}");
    let details = b["error"]["details"].as_array().unwrap();
    assert!(
        details.iter().any(|d| d["field"] == field),
        "{body}: {field} not named in {b}"
    );
}

pub(super) fn run_of(session: &str, steps: &[&str]) -> Vec<Value> {
    let mut v = vec![json!({"type": "message", "sessionId": session,
        "payload": {"role": "user", "content": "Rotate the signing keys"}})];
    for s in steps {
        v.push(json!({"type": "command_exec", "sessionId": session, "payload": {"command": s, "exitCode": 0}}));
    }
    v.push(json!({"type": "outcome", "sessionId": session, "payload": {"status": "success"}}));
    v
}

pub(super) async fn capture_runs(srv: &TestServer, prefix: &str, n: usize, steps: &[&str]) {
    let events: Vec<Value> = (0..n)
        .flat_map(|i| run_of(&format!("{prefix}-{i}"), steps))
        .collect();
    let (s, b) = srv
        .post("/v1/capture/batch", json!({"events": events}))
        .await;
    assert_eq!(s, 202, "{b}");
}

pub(super) async fn semantic_memories(srv: &TestServer) -> Vec<Value> {
    let (s, b) = srv.get("/v1/memories?kind=semantic&limit=100").await;
    assert_eq!(s, 200, "{b}");
    b["data"]["items"].as_array().unwrap().clone()
}
