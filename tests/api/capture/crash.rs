//! Crash safety: `kill -9` of the real binary during a capture load, then a restart. Every event
//! that was answered 202 must be stored and processed, and no event may get two memories.

use super::all_pages;
use crate::support::*;
use serde_json::{json, Value};
use std::collections::{BTreeSet, HashSet};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

const KEY: &str = "hx_live_CrashSafety0123456789abcdefghijKLMNOP";
/// Requests each client sends at most.
const MAX_REQUESTS: usize = 400;
const CLIENTS: usize = 8;

async fn load(
    base: String,
    client_no: usize,
    acked: Arc<Mutex<Vec<String>>>,
    stop: Arc<AtomicBool>,
) {
    let http = reqwest::Client::builder()
        .timeout(Duration::from_secs(20))
        .build()
        .unwrap();
    for i in 0..MAX_REQUESTS {
        if stop.load(Ordering::SeqCst) {
            return;
        }
        let session = format!("crash-{client_no}-{}", i % 5);
        let (url, body) = if i % 3 == 0 {
            let events: Vec<Value> = (0..20)
                .map(|j| json!({"type": "tool_call", "sessionId": session,
                                "payload": {"tool_name": "t", "input": format!("{client_no}/{i}/{j}")}}))
                .collect();
            (
                format!("{base}/v1/capture/batch"),
                json!({ "events": events }),
            )
        } else {
            (
                format!("{base}/v1/capture"),
                json!({"type": "message", "sessionId": session,
                       "payload": {"content": format!("{client_no}/{i}")},
                       "idempotencyKey": format!("c{client_no}-{i}")}),
            )
        };
        let Ok(resp) = http.post(&url).bearer_auth(KEY).json(&body).send().await else {
            return; // the server is gone
        };
        let (status, b) = json_of(resp).await;
        if status != 202 {
            return;
        }
        let d = &b["data"];
        let mut ids = Vec::new();
        if let Some(results) = d["results"].as_array() {
            ids.extend(
                results
                    .iter()
                    .filter_map(|r| r["eventId"].as_str().map(str::to_string)),
            );
        } else if let Some(id) = d["eventId"].as_str() {
            ids.push(id.to_string());
        }
        acked.lock().unwrap().extend(ids);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill_9_during_capture_load_loses_no_acknowledged_event() {
    let dir = tempfile::tempdir().unwrap();
    let env = [
        ("ENGRAM_BOOTSTRAP_KEY", KEY),
        ("ENGRAM_DISABLE_LIMITS", "true"),
        ("ENGRAM_CAPTURE_WORKERS", "1"),
        ("ENGRAM_AUTO_LEARN_EVERY", "0"),
    ];
    let child = ChildServer::start(dir.path(), &env);
    let base = child.base.clone();
    let acked = Arc::new(Mutex::new(Vec::new()));
    let stop = Arc::new(AtomicBool::new(false));
    let tasks: Vec<_> = (0..CLIENTS)
        .map(|n| tokio::spawn(load(base.clone(), n, acked.clone(), stop.clone())))
        .collect();
    wait_for(
        "acknowledged events under load",
        Duration::from_secs(60),
        || async { (acked.lock().unwrap().len() >= 600).then_some(()) },
    )
    .await;
    // SIGKILL while requests, commits and capture jobs are in flight.
    tokio::task::spawn_blocking(move || child.kill())
        .await
        .unwrap();
    stop.store(true, Ordering::SeqCst);
    for t in tasks {
        t.await.unwrap();
    }
    let acked: BTreeSet<String> = acked.lock().unwrap().iter().cloned().collect();
    assert!(acked.len() >= 600);

    let child = ChildServer::start(dir.path(), &env);
    let base = child.base.clone();
    let events = wait_for(
        "every event processed after restart",
        Duration::from_secs(120),
        || {
            let base = base.clone();
            async move {
                let events = all_pages(&base, KEY, "/v1/events", "").await;
                events
                    .iter()
                    .all(|e| e["status"] == "processed")
                    .then_some(events)
            }
        },
    )
    .await;
    let stored: HashSet<&str> = events.iter().map(|e| e["id"].as_str().unwrap()).collect();
    let missing: Vec<&String> = acked
        .iter()
        .filter(|id| !stored.contains(id.as_str()))
        .collect();
    assert!(
        missing.is_empty(),
        "{} acknowledged events were lost: {missing:?}",
        missing.len()
    );

    let memories = all_pages(&base, KEY, "/v1/memories", "&kind=episodic").await;
    let mut per_event = HashSet::new();
    for m in &memories {
        let e = m["eventId"].as_str().unwrap();
        assert!(
            per_event.insert(e.to_string()),
            "event {e} has two memories"
        );
        assert!(stored.contains(e), "memory of an unknown event {e}");
    }
    assert_eq!(memories.len(), events.len(), "one memory per event");

    let (s, h) = send(client().get(format!("{base}/v1/health"))).await;
    assert_eq!(s, 200, "{h}");
    assert_eq!(
        h["data"]["subsystems"]["workers"]["queues"]["capture"]["failed"], 0,
        "{h}"
    );
    assert!(child.terminate(), "clean shutdown after the restart");
}
