//! The events quota end to end: capture and batch count each event, an exhausted quota answers
//! 429 `quota_exceeded` with the seconds until the month resets, a batch that would cross it
//! stores nothing and says how many remain, test keys count apart, usage metrics report the same
//! figures, and a restart keeps them.

use super::{add_key, tenant};
use crate::support::*;
use engram::plans::Plan;
use reqwest::Method;
use serde_json::{json, Value};

fn ev(i: usize) -> Value {
    json!({"type": "message", "sessionId": "quota", "payload": {"role": "user", "content": format!("event {i}")}})
}

async fn capture(srv: &TestServer, key: &str, i: usize) -> (u16, Value, Option<u64>) {
    let resp = srv
        .req_as(key, Method::POST, "/v1/capture")
        .json(&ev(i))
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

async fn batch(srv: &TestServer, key: &str, from: usize, n: usize) -> (u16, Value) {
    let events: Vec<Value> = (from..from + n).map(ev).collect();
    send(
        srv.req_as(key, Method::POST, "/v1/capture/batch")
            .json(&json!({ "events": events })),
    )
    .await
}

async fn stored_events(srv: &TestServer, key: &str) -> usize {
    let (s, b) = send(srv.req_as(key, Method::GET, "/v1/events?limit=100")).await;
    assert_eq!(s, 200, "{b}");
    b["data"]["items"].as_array().unwrap().len()
}

async fn quota_of(srv: &TestServer, key: &str) -> Value {
    let (s, b) = send(srv.req_as(key, Method::GET, "/v1/usage-metrics")).await;
    assert_eq!(s, 200, "{b}");
    b["data"].clone()
}

#[tokio::test]
async fn capture_stops_at_the_events_quota() {
    let srv = TestServer::start_at("2031-03-14T10:30:00Z").await;
    let t = tenant(&srv, Plan::Free, Some(json!({"eventsPerMonth": 4}))).await;
    for i in 0..4 {
        let (s, b, _) = capture(&srv, &t.key, i).await;
        assert_eq!(s, 202, "event {i}: {b}");
    }
    let (s, b, retry) = capture(&srv, &t.key, 4).await;
    assert_eq!(s, 429, "{b}");
    assert_eq!(b["ok"], false);
    let e = &b["error"];
    assert_eq!(e["code"], "quota_exceeded");
    assert_eq!(e["details"]["limit"], 4);
    assert_eq!(e["details"]["used"], 4);
    assert_eq!(e["details"]["remaining"], 0);
    let retry = retry.expect("Retry-After");
    assert_eq!(e["retryAfter"], retry);
    assert_eq!(e["details"]["retryAfter"], retry);
    let now = srv.clock().now();
    let until_reset = (engram::time::month_bounds(now).1 - now).num_seconds() as u64;
    assert!(retry.abs_diff(until_reset) <= 2, "{retry} vs {until_reset}");
    assert_eq!(e["details"]["resetAt"], "2031-04-01T00:00:00.000Z");
    assert_eq!(stored_events(&srv, &t.key).await, 4);

    let q = quota_of(&srv, &t.key).await;
    assert_eq!(q["quota"]["eventsLimit"], 4);
    assert_eq!(q["quota"]["eventsUsed"], 4);
    assert_eq!(q["quota"]["eventsRemaining"], 0);
    assert!(q["usage"]["requestsThisMinute"].as_u64().unwrap() >= 6);

    // A test key of the same tenant has its own count.
    let test_key = add_key(&srv, &t, "test").await;
    let (s, b, _) = capture(&srv, &test_key, 100).await;
    assert_eq!(s, 202, "{b}");
    let q = quota_of(&srv, &test_key).await;
    assert_eq!(q["quota"]["eventsUsed"], 1);

    // Another tenant is not affected.
    let other = tenant(&srv, Plan::Free, Some(json!({"eventsPerMonth": 4}))).await;
    assert_eq!(capture(&srv, &other.key, 0).await.0, 202);

    // The count survives a restart (on the same clock).
    let at = srv.clock().now();
    let dir = srv.shutdown().await;
    let srv = TestServer::start_in(dir, |c| c.clock.set(at).unwrap()).await;
    let (s, b, _) = capture(&srv, &t.key, 5).await;
    assert_eq!(s, 429, "{b}");
    assert_eq!(b["error"]["details"]["used"], 4);

    // A new month, a whole quota.
    srv.clock()
        .set(engram::time::parse("2031-04-01T00:00:01Z").unwrap())
        .unwrap();
    let (s, b, _) = capture(&srv, &t.key, 6).await;
    assert_eq!(s, 202, "{b}");
    let q = quota_of(&srv, &t.key).await;
    assert_eq!(q["quota"]["eventsUsed"], 1);
    srv.shutdown().await;
}

#[tokio::test]
async fn a_batch_that_would_cross_the_quota_stores_nothing() {
    let srv = TestServer::start().await;
    let t = tenant(&srv, Plan::Free, Some(json!({"eventsPerMonth": 5}))).await;
    let (s, b) = batch(&srv, &t.key, 0, 3).await;
    assert_eq!(s, 202, "{b}");
    assert_eq!(b["data"]["summary"]["ingested"], 3);

    let (s, b) = batch(&srv, &t.key, 3, 3).await;
    assert_eq!(s, 429, "{b}");
    let e = &b["error"];
    assert_eq!(e["code"], "quota_exceeded");
    assert_eq!(e["details"]["remaining"], 2);
    assert_eq!(e["details"]["requested"], 3);
    let msg = e["message"].as_str().unwrap();
    assert!(
        msg.contains("only 2") && msg.contains("nothing was stored"),
        "{msg}"
    );
    assert_eq!(stored_events(&srv, &t.key).await, 3);

    // What remains can still be used, by a batch or single events.
    let (s, b) = batch(&srv, &t.key, 3, 2).await;
    assert_eq!(s, 202, "{b}");
    assert_eq!(stored_events(&srv, &t.key).await, 5);
    let (s, b, _) = capture(&srv, &t.key, 9).await;
    assert_eq!(s, 429, "{b}");
    srv.shutdown().await;
}

#[tokio::test]
async fn concurrent_batches_cannot_both_cross_the_quota() {
    let srv = TestServer::start().await;
    let t = tenant(&srv, Plan::Free, Some(json!({"eventsPerMonth": 10}))).await;
    // Six batches of 4 at once: at most two fit into 10.
    let results =
        futures_util::future::join_all((0..6).map(|i| batch(&srv, &t.key, i * 4, 4))).await;
    let accepted = results.iter().filter(|(s, _)| *s == 202).count();
    let refused = results.iter().filter(|(s, _)| *s == 429).count();
    assert_eq!((accepted, refused), (2, 4), "{results:?}");
    assert_eq!(stored_events(&srv, &t.key).await, 8);
    srv.shutdown().await;
}

#[tokio::test]
async fn the_official_sdk_sees_both_refusals() {
    let srv = TestServer::start().await;
    let rate = tenant(
        &srv,
        Plan::Free,
        Some(json!({"requestsPerMinute": 1, "burst": 2})),
    )
    .await;
    let quota = tenant(&srv, Plan::Free, Some(json!({"eventsPerMonth": 1}))).await;
    let base = format!("{}/v1", srv.base);
    let (rk, qk) = (rate.key.clone(), quota.key.clone());
    let out = tokio::task::spawn_blocking(move || {
        run_python(
            "sdk_limits.py",
            &[
                ("ENGRAM_BASE_URL", base.as_str()),
                ("ENGRAM_RATE_KEY", rk.as_str()),
                ("ENGRAM_QUOTA_KEY", qk.as_str()),
            ],
        )
    })
    .await
    .unwrap();
    let out: Value = serde_json::from_str(out.trim()).expect("one JSON line");
    assert_eq!(out["rate_ok"], 2, "{out}");
    assert_eq!(out["rate"]["code"], "rate_limited");
    assert_eq!(out["rate"]["status"], 429);
    let retry = out["rate"]["details"]["retryAfter"]
        .as_u64()
        .expect("retryAfter");
    assert!((50..=60).contains(&retry), "{out}");
    assert_eq!(out["quota_ok"], 1, "{out}");
    assert_eq!(out["quota"]["code"], "quota_exceeded");
    assert_eq!(out["quota"]["status"], 429);
    assert_eq!(out["quota"]["details"]["remaining"], 0);
    assert_eq!(out["quota"]["details"]["limit"], 1);
    srv.shutdown().await;
}
