//! Crash safety of learning: `kill -9` of the real binary right after a learn was accepted, then a
//! restart. The interrupted job runs again to completion, and the result is the same as an
//! uninterrupted run: no identity stored twice, nothing left to change.

use super::*;
use crate::support::*;
use engram::compiler::trajectories::generate;
use serde_json::{json, Value};
use std::collections::HashSet;
use std::time::Duration;

const KEY: &str = "hx_live_LearnCrash0123456789abcdefghijKLMNOPQ";

async fn call(
    http: &reqwest::Client,
    base: &str,
    m: reqwest::Method,
    path: &str,
    body: Option<Value>,
) -> (u16, Value) {
    let mut rb = http.request(m, format!("{base}{path}")).bearer_auth(KEY);
    if let Some(b) = body {
        rb = rb.json(&b);
    }
    send(rb).await
}

#[tokio::test]
async fn kill_9_during_learn_then_restart_completes_it_idempotently() {
    let dir = tempfile::tempdir().unwrap();
    let env = [
        ("ENGRAM_BOOTSTRAP_KEY", KEY),
        ("ENGRAM_AUTO_LEARN_EVERY", "0"),
        ("ENGRAM_AUTO_LEARN_SWEEP_SECS", "0"),
        ("ENGRAM_DISABLE_LIMITS", "true"),
    ];
    let http = client();
    let child = ChildServer::start(dir.path(), &env);
    let base = child.base.clone();
    let base = if base.starts_with("http") {
        base
    } else {
        format!("http://{base}")
    };
    let items: Vec<Value> = generate(&small_spec(21))
        .iter()
        .flat_map(engram::compiler::trajectories::capture_items)
        .collect();
    for chunk in items.chunks(1000) {
        let (s, b) = call(
            &http,
            &base,
            reqwest::Method::POST,
            "/v1/capture/batch",
            Some(json!({"events": chunk})),
        )
        .await;
        assert_eq!(s, 202, "{b}");
    }
    let (s, b) = call(
        &http,
        &base,
        reqwest::Method::POST,
        "/v1/learn",
        Some(json!({"scope": "full"})),
    )
    .await;
    assert_eq!(s, 202, "{b}");
    let job = b["data"]["jobId"].as_str().unwrap().to_string();
    tokio::task::spawn_blocking(move || child.kill())
        .await
        .unwrap();

    let child = ChildServer::start(dir.path(), &env);
    let base = child.base.clone();
    let base = if base.starts_with("http") {
        base
    } else {
        format!("http://{base}")
    };
    let done = wait_for(
        "the interrupted learn to finish",
        Duration::from_secs(60),
        || {
            let (http, base, job) = (http.clone(), base.clone(), job.clone());
            async move {
                let (_, b) = call(
                    &http,
                    &base,
                    reqwest::Method::GET,
                    &format!("/v1/learn/{job}"),
                    None,
                )
                .await;
                (b["data"]["status"] == "completed").then_some(b)
            }
        },
    )
    .await;
    assert!(done["data"]["artifacts"].is_object(), "{done}");
    let (s, again) = call(
        &http,
        &base,
        reqwest::Method::POST,
        "/v1/learn?wait=true",
        Some(json!({"scope": "full"})),
    )
    .await;
    assert_eq!(s, 200, "{again}");
    assert_eq!(again["data"]["artifacts"]["created"], 0, "{again}");
    assert_eq!(again["data"]["artifacts"]["updated"], 0, "{again}");
    let (_, list) = call(
        &http,
        &base,
        reqwest::Method::GET,
        "/v1/artifacts?limit=100",
        None,
    )
    .await;
    let items = list["data"]["items"].as_array().unwrap();
    assert!(!items.is_empty());
    let mut seen = HashSet::new();
    for a in items.iter().filter(|a| a["status"] != "superseded") {
        let id = format!("{}|{}", a["type"], a["signature"]);
        assert!(seen.insert(id.clone()), "{id} stored twice");
    }
    tokio::task::spawn_blocking(move || child.kill())
        .await
        .unwrap();
}
