//! Capture pipeline tests: validation, idempotency, batches, processing into memories, reads,
//! forgetting sessions, metrics, tenant isolation, crash safety and the official SDK.

mod autolearn;
mod crash;
mod isolation;
mod metrics;
mod sdk;

use crate::support::*;
use reqwest::Method;
use serde_json::{json, Value};
use std::time::Duration;

fn ev(session: &str, content: &str) -> Value {
    json!({"type": "message", "sessionId": session, "payload": {"role": "user", "content": content}})
}

/// Every event of the tenant (all pages), oldest first.
pub async fn all_events(srv: &TestServer, key: &str, query: &str) -> Vec<Value> {
    all_pages(&srv.base, key, "/v1/events", query).await
}

/// Every memory of the tenant (all pages), oldest first.
pub async fn all_memories(srv: &TestServer, key: &str, query: &str) -> Vec<Value> {
    all_pages(&srv.base, key, "/v1/memories", query).await
}

/// Every item of a listing route of the server at `base` (all pages), oldest first.
pub async fn all_pages(base: &str, key: &str, route: &str, query: &str) -> Vec<Value> {
    let http = client();
    let mut out = Vec::new();
    let mut cursor: Option<String> = None;
    for _ in 0..10_000 {
        let mut url = format!("{base}{route}?limit=100&order=asc{query}");
        if let Some(c) = &cursor {
            url.push_str(&format!("&cursor={c}"));
        }
        let (s, b) = send(http.get(&url).bearer_auth(key)).await;
        assert_eq!(s, 200, "{b}");
        out.extend(b["data"]["items"].as_array().unwrap().iter().cloned());
        if b["data"]["hasMore"] != true {
            return out;
        }
        cursor = b["data"]["nextCursor"].as_str().map(str::to_string);
    }
    panic!("too many pages");
}

/// Waits until the tenant has `expected` events and all of them are processed.
pub async fn wait_processed(srv: &TestServer, key: &str, expected: usize) {
    wait_for("events processed", Duration::from_secs(60), || async {
        let events = all_events(srv, key, "").await;
        (events.len() == expected && events.iter().all(|e| e["status"] == "processed"))
            .then_some(())
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

async fn event_count(srv: &TestServer) -> usize {
    all_events(srv, &srv.key, "").await.len()
}

fn assert_field_error(status: u16, body: &Value, field: &str) {
    assert_eq!(status, 422, "{field}: {body}");
    assert_eq!(body["ok"], false, "{body}");
    assert_eq!(body["error"]["code"], "validation_error", "{body}");
    let details = body["error"]["details"].as_array().expect("details");
    assert!(
        details.iter().any(|d| d["field"] == field),
        "expected an error naming {field}: {body}"
    );
}

#[tokio::test]
async fn every_validation_error_names_its_field_and_stores_nothing() {
    let srv = TestServer::start().await;
    let long = "x".repeat(257);
    let cases: Vec<(Value, &str)> = vec![
        (json!({"sessionId": "s", "payload": {}}), "type"),
        (json!({"type": 7, "sessionId": "s", "payload": {}}), "type"),
        (
            json!({"type": "nope", "sessionId": "s", "payload": {}}),
            "type",
        ),
        (json!({"type": "message", "payload": {}}), "sessionId"),
        (
            json!({"type": "message", "sessionId": "", "payload": {}}),
            "sessionId",
        ),
        (
            json!({"type": "message", "sessionId": long, "payload": {}}),
            "sessionId",
        ),
        (
            json!({"type": "message", "sessionId": 12, "payload": {}}),
            "sessionId",
        ),
        (json!({"type": "message", "sessionId": "s"}), "payload"),
        (
            json!({"type": "message", "sessionId": "s", "payload": "text"}),
            "payload",
        ),
        (
            json!({"type": "message", "sessionId": "s", "payload": [1]}),
            "payload",
        ),
        (
            json!({"type": "message", "sessionId": "s", "payload": {}, "metadata": "m"}),
            "metadata",
        ),
        (
            json!({"type": "message", "sessionId": "s", "payload": {}, "metadata": {"agentId": 5}}),
            "metadata.agentId",
        ),
        (
            json!({"type": "message", "sessionId": "s", "payload": {}, "metadata": {"agentId": ""}}),
            "metadata.agentId",
        ),
        (
            json!({"type": "message", "sessionId": "s", "payload": {}, "idempotencyKey": ""}),
            "idempotencyKey",
        ),
        (
            json!({"type": "message", "sessionId": "s", "payload": {}, "idempotencyKey": long}),
            "idempotencyKey",
        ),
        (
            json!({"type": "message", "sessionId": "s", "payload": {}, "idempotencyKey": 3}),
            "idempotencyKey",
        ),
        (json!(["not", "an", "object"]), "body"),
    ];
    for (body, field) in cases {
        let (s, b) = srv.post("/v1/capture", body).await;
        assert_field_error(s, &b, field);
    }
    // Several problems at once are all reported.
    let (s, b) = srv
        .post("/v1/capture", json!({"type": "x", "payload": 1}))
        .await;
    assert_eq!(s, 422);
    let fields: Vec<&str> = b["error"]["details"]
        .as_array()
        .unwrap()
        .iter()
        .map(|d| d["field"].as_str().unwrap())
        .collect();
    assert_eq!(fields, ["type", "sessionId", "payload"], "{b}");
    // Malformed JSON.
    let (s, b) = send(
        srv.req(Method::POST, "/v1/capture")
            .header("content-type", "application/json")
            .body("{\"type\": "),
    )
    .await;
    assert_field_error(s, &b, "body");
    // Boundaries that are valid: 256 characters, every documented type.
    let max = "y".repeat(256);
    for t in [
        "message",
        "tool_call",
        "tool_result",
        "file_edit",
        "test_run",
        "command_exec",
        "browser_action",
        "api_result",
        "outcome",
        "observation",
        "file_change",
        "decision",
        "error",
        "state_change",
        "feedback",
    ] {
        let (s, b) = srv
            .post(
                "/v1/capture",
                json!({"type": t, "sessionId": max, "payload": {"k": t},
                       "metadata": {"agentId": max}, "idempotencyKey": format!("{t}-{}", "k".repeat(255 - t.len()))}),
            )
            .await;
        assert_eq!(s, 202, "{t}: {b}");
    }
    assert_eq!(event_count(&srv).await, 15);
}

#[tokio::test]
async fn batch_stores_valid_events_and_reports_invalid_ones() {
    let srv = TestServer::start().await;
    let (s, b) = srv
        .post(
            "/v1/capture/batch",
            json!({"events": [
                ev("b-1", "first"),
                {"type": "bogus", "sessionId": "b-1", "payload": {}},
                ev("b-1", "third"),
                "not an object",
                {"type": "message", "sessionId": "b-1"},
            ]}),
        )
        .await;
    assert_eq!(s, 202, "{b}");
    let d = &b["data"];
    assert!(d["batchId"].as_str().unwrap().starts_with("batch_"));
    assert_eq!(d["queued"], 2);
    assert_eq!(d["errors"], 3);
    assert_eq!(d["total"], 5);
    assert_eq!(
        d["summary"],
        json!({"total": 5, "ingested": 2, "duplicates": 0, "errors": 3})
    );
    let results = d["results"].as_array().unwrap();
    assert_eq!(results.len(), 5);
    for (i, r) in results.iter().enumerate() {
        assert_eq!(r["index"], i, "{r}");
    }
    assert_eq!(results[0]["status"], "ingested");
    assert_eq!(results[2]["status"], "ingested");
    assert_eq!(results[1]["status"], "error");
    assert!(results[1]["eventId"].is_null());
    assert_eq!(results[1]["error"]["code"], "validation_error");
    assert_eq!(results[1]["error"]["details"][0]["field"], "type");
    assert_eq!(results[3]["error"]["details"][0]["field"], "event");
    assert_eq!(results[4]["error"]["details"][0]["field"], "payload");
    let events = all_events(&srv, &srv.key, "").await;
    let ids: Vec<&str> = events.iter().map(|e| e["id"].as_str().unwrap()).collect();
    assert_eq!(
        ids,
        [
            results[0]["eventId"].as_str().unwrap(),
            results[2]["eventId"].as_str().unwrap()
        ]
    );
    assert_eq!(events[0]["payload"]["content"], "first");
    wait_processed(&srv, &srv.key, 2).await;

    // One event may hold at most 1 MiB even inside a (16 MiB) batch.
    let big = "z".repeat(1024 * 1024 + 10);
    let (s, b) = srv
        .post(
            "/v1/capture/batch",
            json!({"events": [ev("b-2", &big), ev("b-2", "small")]}),
        )
        .await;
    assert_eq!(s, 202, "{b}");
    assert_eq!(b["data"]["results"][0]["status"], "error");
    assert_eq!(
        b["data"]["results"][0]["error"]["details"][0]["field"],
        "payload"
    );
    assert_eq!(b["data"]["results"][1]["status"], "ingested");
    // A single capture over 1 MiB is refused before it is read.
    let (s, b) = srv.post("/v1/capture", ev("b-2", &big)).await;
    assert_eq!(s, 413, "{b}");
    assert_eq!(all_events(&srv, &srv.key, "").await.len(), 3);
}

#[tokio::test]
async fn whole_batch_errors_store_nothing() {
    let srv = TestServer::start().await;
    let too_many: Vec<Value> = (0..1001).map(|i| ev("big", &format!("e{i}"))).collect();
    for (body, what) in [
        (json!({"events": []}), "empty"),
        (json!({"events": too_many}), "1001"),
        (json!({}), "missing"),
        (json!({"events": {"type": "message"}}), "not an array"),
        (json!({"events": null}), "null"),
    ] {
        let (s, b) = srv.post("/v1/capture/batch", body).await;
        assert_field_error(s, &b, "events");
        assert!(
            b["error"]["message"].as_str().unwrap().contains("events"),
            "{what}: {b}"
        );
    }
    let (s, b) = srv.post("/v1/capture/batch", json!([1, 2])).await;
    assert_field_error(s, &b, "body");
    assert_eq!(event_count(&srv).await, 0);
    // Exactly 1000 is fine.
    let thousand: Vec<Value> = (0..1000).map(|i| ev("big", &format!("e{i}"))).collect();
    let (s, b) = srv
        .post("/v1/capture/batch", json!({"events": thousand}))
        .await;
    assert_eq!(s, 202, "{b}");
    assert_eq!(b["data"]["summary"]["ingested"], 1000);
    wait_processed(&srv, &srv.key, 1000).await;
    let memories = all_memories(&srv, &srv.key, "&kind=episodic").await;
    assert_eq!(memories.len(), 1000);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_identical_idempotent_requests_store_one_event() {
    let srv = TestServer::start().await;
    let body = json!({"type": "message", "sessionId": "idem", "payload": {"content": "once"},
                      "idempotencyKey": "same-key"});
    let mut tasks = Vec::new();
    for _ in 0..50 {
        let rb = srv.req(Method::POST, "/v1/capture").json(&body);
        tasks.push(tokio::spawn(send(rb)));
    }
    let mut ids = std::collections::BTreeSet::new();
    let (mut ingested, mut dups) = (0, 0);
    for t in tasks {
        let (s, b) = t.await.unwrap();
        assert_eq!(s, 202, "{b}");
        ids.insert(b["data"]["eventId"].as_str().unwrap().to_string());
        match b["data"]["status"].as_str().unwrap() {
            "ingested" => ingested += 1,
            "duplicate" => {
                dups += 1;
                assert!(b["data"]["reason"].as_str().is_some(), "{b}");
            }
            other => panic!("status {other}"),
        }
    }
    assert_eq!((ids.len(), ingested, dups), (1, 1, 49));
    let events = all_events(&srv, &srv.key, "").await;
    assert_eq!(events.len(), 1);
    assert_eq!(
        events[0]["id"].as_str().unwrap(),
        ids.iter().next().unwrap()
    );

    // Within one batch, and across batch and single capture, the same key is one event.
    let (s, b) = srv
        .post(
            "/v1/capture/batch",
            json!({"events": [
                {"type": "message", "sessionId": "idem", "payload": {"n": 1}, "idempotencyKey": "k2"},
                {"type": "message", "sessionId": "idem", "payload": {"n": 2}, "idempotencyKey": "k2"},
                {"type": "message", "sessionId": "idem", "payload": {"n": 3}, "idempotencyKey": "same-key"},
            ]}),
        )
        .await;
    assert_eq!(s, 202, "{b}");
    let r = &b["data"]["results"];
    assert_eq!(
        b["data"]["summary"],
        json!({"total": 3, "ingested": 1, "duplicates": 2, "errors": 0})
    );
    assert_eq!(r[0]["status"], "ingested");
    assert_eq!(r[1]["status"], "duplicate");
    assert_eq!(r[1]["eventId"], r[0]["eventId"]);
    assert_eq!(
        r[2]["eventId"].as_str().unwrap(),
        ids.iter().next().unwrap()
    );
    assert_eq!(event_count(&srv).await, 2);
    wait_processed(&srv, &srv.key, 2).await;
    assert_eq!(all_memories(&srv, &srv.key, "").await.len(), 2);
}

#[tokio::test]
async fn events_and_memories_filter_and_page_with_cursors() {
    let srv = TestServer::start().await;
    let mut batch = Vec::new();
    for i in 0..7 {
        let session = if i % 2 == 0 { "even" } else { "odd" };
        let t = if i < 3 { "observation" } else { "message" };
        batch.push(
            json!({"type": t, "sessionId": session, "payload": {"content": format!("item {i}")},
                          "metadata": {"agentId": if i == 6 { "agent-b" } else { "agent-a" }}}),
        );
    }
    let (s, b) = srv
        .post("/v1/capture/batch", json!({"events": batch}))
        .await;
    assert_eq!(s, 202, "{b}");
    let ids: Vec<String> = b["data"]["results"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["eventId"].as_str().unwrap().to_string())
        .collect();
    wait_processed(&srv, &srv.key, 7).await;

    // Newest first by default, three per page.
    let mut seen = Vec::new();
    let mut path = "/v1/events?limit=3".to_string();
    for page in 0..3 {
        let (s, b) = srv.get(&path).await;
        assert_eq!(s, 200, "{b}");
        let items = b["data"]["items"].as_array().unwrap();
        assert_eq!(b["data"]["events"], b["data"]["items"]);
        seen.extend(items.iter().map(|e| e["id"].as_str().unwrap().to_string()));
        assert_eq!(b["data"]["hasMore"], page < 2, "{b}");
        if page < 2 {
            path = format!(
                "/v1/events?limit=3&cursor={}",
                b["data"]["nextCursor"].as_str().unwrap()
            );
        }
    }
    let mut expected = ids.clone();
    expected.reverse();
    assert_eq!(seen, expected);

    let odd = all_events(&srv, &srv.key, "&sessionId=odd").await;
    assert_eq!(odd.len(), 3);
    assert!(odd.iter().all(|e| e["sessionId"] == "odd"));
    let obs = all_events(&srv, &srv.key, "&type=observation").await;
    assert_eq!(obs.len(), 3);
    let b_agent = all_events(&srv, &srv.key, "&agentId=agent-b").await;
    assert_eq!(b_agent.len(), 1);
    assert_eq!(b_agent[0]["id"], ids[6].as_str());
    assert_eq!(
        all_events(&srv, &srv.key, "&sessionId=even&type=message")
            .await
            .len(),
        2
    );

    let mems = all_memories(&srv, &srv.key, "&agentId=agent-a").await;
    assert_eq!(mems.len(), 6);
    assert!(mems.iter().all(|m| m["kind"] == "episodic"));
    assert_eq!(
        all_memories(&srv, &srv.key, "&kind=semantic").await.len(),
        0
    );
    let (s, b) = srv.get("/v1/memories?limit=2").await;
    assert_eq!(s, 200);
    assert_eq!(b["data"]["memories"].as_array().unwrap().len(), 2);
    assert_eq!(b["data"]["hasMore"], true);

    for bad in [
        "/v1/events?limit=0",
        "/v1/events?limit=101",
        "/v1/events?limit=abc",
        "/v1/events?type=nope",
        "/v1/events?cursor=mem_123",
        "/v1/events?order=sideways",
        "/v1/memories?kind=procedural",
        "/v1/memories?cursor=evt_1",
    ] {
        let (s, b) = srv.get(bad).await;
        assert_eq!(s, 400, "{bad}: {b}");
        assert_eq!(b["error"]["code"], "validation_error", "{bad}");
    }
    let (s, _) = srv.get("/v1/events/evt_00000000000000000000000000").await;
    assert_eq!(s, 404);
    let (s, _) = srv.get("/v1/memories/mem_00000000000000000000000000").await;
    assert_eq!(s, 404);
}

#[tokio::test]
async fn forgetting_a_session_removes_its_events_memories_and_index_entries() {
    let srv = TestServer::start().await;
    let mut batch: Vec<Value> = (0..5)
        .map(|i| ev("forget-me", &format!("secret {i}")))
        .collect();
    batch.extend((0..3).map(|i| ev("keep-me", &format!("keep {i}"))));
    let (s, b) = srv
        .post("/v1/capture/batch", json!({ "events": batch }))
        .await;
    assert_eq!(s, 202, "{b}");
    wait_processed(&srv, &srv.key, 8).await;
    srv.state().search.flush().await;
    let docs_before = srv.state().search.stats().documents;
    assert_eq!(docs_before, 8);
    // Listed by session (episodic memories are found through their events), oldest first.
    let kept = all_memories(&srv, &srv.key, "&sessionId=keep-me").await;
    let contents: Vec<&str> = kept.iter().filter_map(|m| m["content"].as_str()).collect();
    assert_eq!(contents.len(), 3, "{kept:?}");
    for (i, c) in contents.iter().enumerate() {
        assert!(c.contains(&format!("keep {i}")), "{c}");
    }
    assert!(kept.iter().all(|m| m["sessionId"] == "keep-me"), "{kept:?}");
    assert_eq!(
        all_memories(&srv, &srv.key, "&sessionId=forget-me")
            .await
            .len(),
        5
    );

    let (s, b) = srv.delete("/v1/sessions/forget-me").await;
    assert_eq!(s, 200, "{b}");
    assert_eq!(b["data"]["eventsDeleted"], 5);
    assert_eq!(b["data"]["memoriesDeleted"], 5);
    assert_eq!(srv.state().search.stats().documents, 3);
    assert!(all_events(&srv, &srv.key, "&sessionId=forget-me")
        .await
        .is_empty());
    assert!(all_memories(&srv, &srv.key, "&sessionId=forget-me")
        .await
        .is_empty());
    assert_eq!(all_events(&srv, &srv.key, "").await.len(), 3);
    assert_eq!(all_memories(&srv, &srv.key, "").await.len(), 3);
    let (s, _) = srv.delete("/v1/sessions/forget-me").await;
    assert_eq!(s, 404);
    // A capture into the forgotten session later is a fresh start.
    let (s, _) = srv.post("/v1/capture", ev("forget-me", "new")).await;
    assert_eq!(s, 202);
    wait_processed(&srv, &srv.key, 4).await;
}

#[tokio::test]
async fn scopes_are_enforced() {
    let srv = TestServer::start().await;
    let reader = srv.create_key(&["read"]).await;
    let writer = srv.create_key(&["write"]).await;
    let (s, b) = send(
        srv.req_as(&reader, Method::POST, "/v1/capture")
            .json(&ev("s", "x")),
    )
    .await;
    assert_eq!(s, 403, "{b}");
    let (s, _) = send(
        srv.req_as(&reader, Method::POST, "/v1/capture/batch")
            .json(&json!({"events": [ev("s", "x")]})),
    )
    .await;
    assert_eq!(s, 403);
    let (s, _) = send(srv.req_as(&reader, Method::DELETE, "/v1/sessions/s")).await;
    assert_eq!(s, 403);
    let (s, _) = send(
        srv.req_as(&writer, Method::POST, "/v1/capture")
            .json(&ev("s", "x")),
    )
    .await;
    assert_eq!(s, 202);
    for path in ["/v1/events", "/v1/memories", "/v1/usage-metrics"] {
        let (s, _) = send(srv.req_as(&writer, Method::GET, path)).await;
        assert_eq!(s, 403, "{path}");
        let (s, _) = send(srv.req_as(&reader, Method::GET, path)).await;
        assert_eq!(s, 200, "{path}");
    }
    let (s, _) = send(srv.http.post(srv.url("/v1/capture")).json(&ev("s", "x"))).await;
    assert_eq!(s, 401);
}
