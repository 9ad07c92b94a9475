//! Auto-learn (every N processed events and the periodic sweep) and the capture queue in
//! `/v1/health`.

use super::{ev, wait_processed};
use crate::support::*;
use serde_json::{json, Value};
use std::time::Duration;

#[tokio::test]
async fn auto_learn_is_enqueued_every_n_events_and_by_the_sweep() {
    let srv = TestServer::start_with(|c| {
        c.auto_learn_every = 5;
        c.auto_learn_sweep = Duration::ZERO;
    })
    .await;
    let learn_jobs = |srv: &TestServer| {
        let db = srv.state().db.clone();
        async move {
            db.read(|c| {
                c.test_column::<String>(
                    "SELECT input FROM jobs WHERE kind = 'learn' ORDER BY seq",
                    &[],
                )
            })
            .await
            .unwrap()
        }
    };
    for i in 0..4 {
        let (s, _) = srv.post("/v1/capture", ev("auto", &format!("e{i}"))).await;
        assert_eq!(s, 202);
    }
    wait_processed(&srv, &srv.key, 4).await;
    assert!(learn_jobs(&srv).await.is_empty());
    let (s, _) = srv.post("/v1/capture", ev("auto", "e4")).await;
    assert_eq!(s, 202);
    wait_processed(&srv, &srv.key, 5).await;
    let jobs = learn_jobs(&srv).await;
    assert_eq!(jobs.len(), 1, "{jobs:?}");
    let input: Value = serde_json::from_str(&jobs[0]).unwrap();
    assert_eq!(input, json!({"scope": "incremental", "trigger": "auto"}));
    srv.shutdown().await;

    // The sweep: no per-N trigger, a short period.
    let srv = TestServer::start_with(|c| {
        c.auto_learn_every = 0;
        c.auto_learn_sweep = Duration::from_millis(100);
    })
    .await;
    let (s, _) = srv.post("/v1/capture", ev("sweep", "e")).await;
    assert_eq!(s, 202);
    let jobs = wait_for("a sweep learn job", Duration::from_secs(20), || async {
        let jobs = learn_jobs(&srv).await;
        (!jobs.is_empty()).then_some(jobs)
    })
    .await;
    let input: Value = serde_json::from_str(&jobs[0]).unwrap();
    assert_eq!(input["trigger"], "sweep");
    assert_eq!(input["scope"], "incremental");
}

#[tokio::test]
async fn health_reports_the_capture_queue() {
    let srv = TestServer::start().await;
    let (s, _) = srv.post("/v1/capture", ev("h", "x")).await;
    assert_eq!(s, 202);
    wait_processed(&srv, &srv.key, 1).await;
    let (s, b) = send(srv.http.get(srv.url("/v1/health"))).await;
    assert_eq!(s, 200, "{b}");
    let q = &b["data"]["subsystems"]["workers"]["queues"]["capture"];
    assert_eq!(q["waiting"], 0, "{b}");
    assert_eq!(q["failed"], 0, "{b}");
}
