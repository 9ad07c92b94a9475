//! The pinned official SDK (`hippocortex` 1.2.1): `capture` and `capture_batch` of both the async
//! `Hippocortex` and the `SyncHippocortex` clients, and `get_metrics`, against a live server.

use super::{all_events, wait_processed};
use crate::support::*;
use serde_json::Value;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn official_sdk_captures_single_events_and_batches() {
    let srv = TestServer::start().await;
    let base = format!("{}/v1", srv.base);
    let key = srv.key.clone();
    let out = tokio::task::spawn_blocking(move || {
        run_python(
            "sdk_capture.py",
            &[
                ("ENGRAM_BASE_URL", base.as_str()),
                ("ENGRAM_KEY", key.as_str()),
                ("ENGRAM_SESSION", "sdk"),
            ],
        )
    })
    .await
    .unwrap();
    let r: Value = serde_json::from_str(out.trim()).unwrap_or_else(|e| panic!("{e}: {out}"));

    // What the SDK parsed…
    let single = &r["sync_single"];
    assert_eq!(single["status"], "ingested", "{r}");
    assert!(single["event_id"].as_str().unwrap().starts_with("evt_"));
    assert!(single["trace_id"].as_str().unwrap().starts_with("trace_"));
    assert!(single["salience_score"].as_f64().is_some());
    let batch = &r["sync_batch"];
    assert_eq!(
        (batch["total"].as_i64(), batch["ingested"].as_i64()),
        (Some(3), Some(2)),
        "{r}"
    );
    assert_eq!(
        (batch["duplicates"].as_i64(), batch["errors"].as_i64()),
        (Some(0), Some(1))
    );
    assert_eq!(batch["results"][2]["status"], "error");
    assert!(batch["results"][2]["event_id"].is_null());
    let abatch = &r["async_batch"];
    assert_eq!(abatch["ingested"], 3, "{r}");
    assert_eq!(r["async_single"]["status"], "ingested");

    // …is what the server stored.
    wait_processed(&srv, &srv.key, 7).await;
    let sync_events = all_events(&srv, &srv.key, "&sessionId=sdk-sync").await;
    assert_eq!(sync_events.len(), 3);
    assert_eq!(sync_events[0]["id"], single["event_id"]);
    assert_eq!(
        sync_events[0]["payload"]["content"],
        "Deploy the payment service"
    );
    assert_eq!(sync_events[0]["agentId"], "sdk-agent");
    assert_eq!(sync_events[0]["metadata"]["source"], "sdk-sync");
    assert_eq!(sync_events[1]["id"], batch["results"][0]["event_id"]);
    assert_eq!(sync_events[2]["payload"]["exitCode"], 1);
    let async_events = all_events(&srv, &srv.key, "&sessionId=sdk-async").await;
    assert_eq!(async_events.len(), 4);
    assert_eq!(async_events[0]["type"], "test_run");
    assert_eq!(async_events[0]["id"], r["async_single"]["event_id"]);

    // get_metrics read the real counters: by then 7 events were stored and 1 rejected.
    let m = &r["metrics"];
    assert_eq!(m["events_ingested"], 7, "{r}");
    assert_eq!(m["events_total"], 8);
    assert_eq!(m["granularity"], "hour");
    assert_eq!(m["quota_plan"], "pro");
    assert_eq!(m["quota_events_used"], 7);
    assert_eq!(m["quota_events_remaining"], 500_000 - 7);
    assert!(!m["period_start"].as_str().unwrap().is_empty());
    assert_eq!(r["raw_metrics_events"]["ingested"], 3);
}
