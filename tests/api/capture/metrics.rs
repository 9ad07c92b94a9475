//! `GET /v1/usage-metrics`: the figures match what was captured, per key mode, and bad parameters
//! are refused naming the parameter.

use super::{ev, wait_processed};
use crate::support::*;
use reqwest::Method;
use serde_json::{json, Value};

fn series_sum(data: &Value, field: &str) -> i64 {
    data["usage"]["series"]
        .as_array()
        .unwrap()
        .iter()
        .map(|b| b[field].as_i64().unwrap())
        .sum()
}

#[tokio::test]
async fn metrics_match_what_was_captured() {
    let srv = TestServer::start().await;
    let (s, b) = srv
        .post(
            "/v1/capture/batch",
            json!({"events": [
                ev("m", "a"), ev("m", "b"), ev("m", "c"),
                {"type": "tool_call", "sessionId": "m", "payload": {"tool_name": "grep"}},
                {"type": "message", "payload": {}},
            ]}),
        )
        .await;
    assert_eq!(s, 202, "{b}");
    let once = json!({"type": "message", "sessionId": "m", "payload": {"content": "d"},
                      "idempotencyKey": "once"});
    for expected in ["ingested", "duplicate"] {
        let (s, b) = srv.post("/v1/capture", once.clone()).await;
        assert_eq!(s, 202);
        assert_eq!(b["data"]["status"], expected);
    }
    // A rejected single capture stores nothing and counts nothing.
    let (s, _) = srv.post("/v1/capture", json!({"type": "message"})).await;
    assert_eq!(s, 422);
    wait_processed(&srv, &srv.key, 5).await;

    let (s, b) = srv.get("/v1/usage-metrics").await;
    assert_eq!(s, 200, "{b}");
    let d = &b["data"];
    assert_eq!(d["plan"], "pro");
    assert_eq!(d["period"]["granularity"], "hour");
    let events = &d["usage"]["events"];
    assert_eq!(events["total"], 7, "{d}");
    assert_eq!(events["ingested"], 5);
    assert_eq!(events["duplicates"], 1);
    assert_eq!(events["errors"], 1);
    assert_eq!(events["byType"], json!({"message": 4, "tool_call": 1}));
    assert_eq!(d["usage"]["eventsThisMonth"], 5);
    assert_eq!(series_sum(d, "events"), 5);
    assert_eq!(series_sum(d, "duplicates"), 1);
    assert_eq!(series_sum(d, "errors"), 1);
    assert!(matches!(
        d["usage"]["series"].as_array().unwrap().len(),
        24 | 25
    ));
    assert_eq!(d["totals"]["events"], 5);
    assert_eq!(d["totals"]["memories"], 5);
    let q = &d["quota"];
    assert_eq!(q["plan"], "pro");
    assert_eq!(q["eventsLimit"], 500_000);
    assert_eq!(q["eventsUsed"], 5);
    assert_eq!(q["eventsRemaining"], 499_995);
    assert!(
        q["resetDate"]
            .as_str()
            .unwrap()
            .ends_with("-01T00:00:00.000Z"),
        "{q}"
    );
    assert!(d["usage"]["requestsThisMinute"].is_u64());
    assert!(d["usage"]["syntheses"]["total"].is_i64());
    assert!(d["usage"]["compilations"]["artifactsCreated"].is_i64());

    // Other periods and granularities cover the same events.
    for (query, buckets) in [
        ("period=1h&granularity=minute", 60..=61),
        ("period=7d&granularity=day", 7..=7),
        ("period=30d&granularity=hour", 720..=721),
        ("period=1h&granularity=day", 1..=1),
    ] {
        let (s, b) = srv.get(&format!("/v1/usage-metrics?{query}")).await;
        assert_eq!(s, 200, "{query}: {b}");
        let n = b["data"]["usage"]["series"].as_array().unwrap().len();
        assert!(buckets.contains(&n), "{query}: {n} buckets");
        assert_eq!(series_sum(&b["data"], "events"), 5, "{query}");
        assert_eq!(b["data"]["usage"]["events"]["ingested"], 5, "{query}");
    }
    for (query, param) in [
        ("period=2h", "period"),
        ("granularity=week", "granularity"),
        ("period=30d&granularity=minute", "granularity"),
    ] {
        let (s, b) = srv.get(&format!("/v1/usage-metrics?{query}")).await;
        assert_eq!(s, 400, "{query}: {b}");
        assert_eq!(b["error"]["details"][0]["field"], param, "{b}");
    }

    // A test key counts apart from live keys.
    let (s, b) = srv
        .post("/v1/api-keys", json!({"name": "t", "mode": "test"}))
        .await;
    assert_eq!(s, 201, "{b}");
    let test_key = b["data"]["key"].as_str().unwrap().to_string();
    let (s, _) = send(
        srv.req_as(&test_key, Method::POST, "/v1/capture")
            .json(&ev("t", "x")),
    )
    .await;
    assert_eq!(s, 202);
    let (_, b) = send(srv.req_as(&test_key, Method::GET, "/v1/usage-metrics")).await;
    assert_eq!(b["data"]["usage"]["events"]["ingested"], 1, "{b}");
    assert_eq!(b["data"]["quota"]["eventsUsed"], 1);
    let (_, b) = srv.get("/v1/usage-metrics").await;
    assert_eq!(b["data"]["usage"]["events"]["ingested"], 5);
}
