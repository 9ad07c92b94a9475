//! Jobs and artifact lifecycle: wait and poll, serialised learns, tenant isolation, versions, supersession, deprecate and restore, forgetting sessions.

use super::*;
use crate::support::*;
use engram::compiler::trajectories::{generate, Spec};
use reqwest::Method;
use serde_json::json;
use std::time::Duration;

#[tokio::test]
async fn wait_poll_and_serialised_concurrent_learns() {
    let srv = server().await;
    capture(
        &srv,
        &srv.key,
        &generate(&Spec {
            deploy: 10,
            migrate: 5,
            release: 5,
            noise: 5,
            ..Spec::default()
        }),
    )
    .await;
    // Without waiting: 202 with a job to poll.
    let (s, b) = srv.post("/v1/learn", json!({"scope": "full"})).await;
    assert_eq!(s, 202, "{b}");
    assert_eq!(b["data"]["status"], "queued");
    assert_eq!(b["data"]["jobId"], b["data"]["runId"]);
    let id = b["data"]["jobId"].as_str().unwrap().to_string();
    let done = wait_for("learn job to finish", Duration::from_secs(30), || async {
        let (s, b) = srv.get(&format!("/v1/learn/{id}")).await;
        assert_eq!(s, 200, "{b}");
        (b["data"]["status"] == "completed").then_some(b)
    })
    .await;
    assert!(
        done["data"]["artifacts"]["created"].as_u64().unwrap() > 0,
        "{done}"
    );
    // Prefer: wait=N waits too.
    let resp = srv
        .req(Method::POST, "/v1/learn")
        .header("Prefer", "respond-async, wait=20")
        .json(&json!({"scope": "full"}))
        .send()
        .await
        .unwrap();
    assert_eq!(
        resp.headers()
            .get("preference-applied")
            .and_then(|v| v.to_str().ok()),
        Some("wait=20")
    );
    let (s, b) = json_of(resp).await;
    assert_eq!(s, 200, "{b}");
    assert_eq!(b["data"]["status"], "completed");
    assert_eq!(b["data"]["artifacts"]["created"], 0);

    // Concurrent learns of one tenant run one after another.
    let posts = (0..4).map(|_| srv.post("/v1/learn", json!({"scope": "full"})));
    let ids: Vec<String> = futures_util::future::join_all(posts)
        .await
        .into_iter()
        .map(|(s, b)| {
            assert_eq!(s, 202, "{b}");
            b["data"]["jobId"].as_str().unwrap().to_string()
        })
        .collect();
    let mut spans = Vec::new();
    for id in &ids {
        let b = wait_for("concurrent learn", Duration::from_secs(30), || async {
            let (_, b) = srv.get(&format!("/v1/learn/{id}")).await;
            (b["data"]["status"] == "completed").then_some(b)
        })
        .await;
        spans.push((
            b["data"]["startedAt"].as_str().unwrap().to_string(),
            b["data"]["finishedAt"].as_str().unwrap().to_string(),
        ));
    }
    spans.sort();
    for w in spans.windows(2) {
        assert!(w[0].1 <= w[1].0, "learn runs overlapped: {spans:?}");
    }
}

#[tokio::test]
async fn tenants_never_see_each_others_knowledge() {
    let srv = server().await;
    capture(&srv, &srv.key, &generate(&small_spec(5))).await;
    let r = learn(&srv, &srv.key, json!({})).await;
    let job_a = r["jobId"].as_str().unwrap().to_string();
    let arts = all_artifacts(&srv, &srv.key, "").await;
    assert!(!arts.is_empty());
    let id = arts[0]["id"].as_str().unwrap().to_string();

    let key_b = srv.create_tenant("other", engram::plans::Plan::Pro).await;
    let rb = learn(&srv, &key_b, json!({"scope": "full"})).await;
    assert_eq!(rb["artifacts"]["created"], 0, "{rb}");
    assert!(all_artifacts(&srv, &key_b, "").await.is_empty());
    for (m, p) in [
        (Method::GET, format!("/v1/artifacts/{id}")),
        (Method::DELETE, format!("/v1/artifacts/{id}")),
        (Method::GET, format!("/v1/learn/{job_a}")),
    ] {
        let (s, b) = send(srv.req_as(&key_b, m, &p)).await;
        assert_eq!(s, 404, "{p}: {b}");
    }
    let (s, _) = send(
        srv.req_as(&key_b, Method::PATCH, &format!("/v1/artifacts/{id}"))
            .json(&json!({"status": "deprecated"})),
    )
    .await;
    assert_eq!(s, 404);
    // B's own events never feed A's artifacts: A's evidence is unchanged after B learns.
    capture(&srv, &key_b, &generate(&small_spec(6))).await;
    learn(&srv, &key_b, json!({})).await;
    let (_, again) = srv.get(&format!("/v1/artifacts/{id}")).await;
    assert_eq!(again["data"]["version"], arts[0]["version"]);
    assert_eq!(again["data"]["evidenceCount"], arts[0]["evidenceCount"]);
}

#[tokio::test]
async fn versions_supersession_deprecation_and_restore() {
    let srv = server().await;
    let forward = ["vault read", "openssl genrsa", "vault write"];
    capture_runs(&srv, "f", 3, &forward).await;
    learn(
        &srv,
        &srv.key,
        json!({"options": {"artifactTypes": ["task_schema"]}}),
    )
    .await;
    let arts = all_artifacts(&srv, &srv.key, "type=task_schema").await;
    assert_eq!(arts.len(), 1, "{arts:?}");
    let v1 = arts[0].clone();
    assert_eq!(v1["version"], 1);
    assert_eq!(v1["evidenceCount"], 3);
    let id = v1["id"].as_str().unwrap().to_string();

    // More of the same: an update, version 2.
    capture_runs(&srv, "g", 1, &forward).await;
    let r = learn(
        &srv,
        &srv.key,
        json!({"options": {"artifactType": "task_schema"}}),
    )
    .await;
    assert_eq!(r["artifacts"]["updated"], 1, "{r}");
    let (_, v2) = srv.get(&format!("/v1/artifacts/{id}")).await;
    assert_eq!(v2["data"]["version"], 2);
    assert_eq!(v2["data"]["evidenceCount"], 4);
    assert_eq!(v2["data"]["content"]["steps"], v1["content"]["steps"]);

    // Deprecate and restore; only active artifacts stay in the search index. Capture jobs index
    // episodic memories in the background: wait until they are done so counts only move by us.
    wait_for("capture processing", Duration::from_secs(30), || async {
        let (_, b) = srv.get("/v1/events?limit=100").await;
        let items = b["data"]["items"].as_array().unwrap().clone();
        items
            .iter()
            .all(|e| e["status"] == "processed")
            .then_some(())
    })
    .await;
    srv.state().search.flush().await;
    let docs = || srv.state().search.stats().documents;
    let before = docs();
    let (s, d) = srv.delete(&format!("/v1/artifacts/{id}")).await;
    assert_eq!(s, 200, "{d}");
    assert_eq!(d["data"]["status"], "deprecated");
    assert_eq!(d["data"]["isActive"], false);
    assert_eq!(docs(), before - 1, "a deprecated artifact leaves the index");
    let dep = all_artifacts(&srv, &srv.key, "status=deprecated").await;
    assert_eq!(dep.len(), 1);
    let (s, p) = send(
        srv.req(Method::PATCH, &format!("/v1/artifacts/{id}"))
            .json(&json!({"status": "active"})),
    )
    .await;
    assert_eq!(s, 200, "{p}");
    assert_eq!(p["data"]["status"], "active");
    assert_eq!(docs(), before, "a restored artifact is indexed again");
    assert!(all_artifacts(&srv, &srv.key, "status=deprecated")
        .await
        .is_empty());

    // Contradicting evidence: most runs now go the other way round → superseded + successor.
    let backward = ["vault write", "openssl genrsa", "vault read"];
    capture_runs(&srv, "h", 6, &backward).await;
    let r = learn(&srv, &srv.key, json!({})).await;
    assert!(r["artifacts"]["created"].as_u64().unwrap() >= 1, "{r}");
    let (_, old) = srv.get(&format!("/v1/artifacts/{id}")).await;
    assert_eq!(old["data"]["status"], "superseded", "{old}");
    let next = old["data"]["supersededBy"].as_str().unwrap().to_string();
    let (_, new) = srv.get(&format!("/v1/artifacts/{next}")).await;
    assert_eq!(new["data"]["status"], "active");
    assert_eq!(new["data"]["version"], 3);
    assert_eq!(new["data"]["signature"], old["data"]["signature"]);
    assert_eq!(new["data"]["metadata"]["supersedes"], id.as_str());
    assert_eq!(new["data"]["content"]["steps"][0], "vault write");
    // A superseded artifact cannot be restored.
    let (s, _) = send(
        srv.req(Method::PATCH, &format!("/v1/artifacts/{id}"))
            .json(&json!({"status": "active"})),
    )
    .await;
    assert_eq!(s, 409);
    let sup = all_artifacts(&srv, &srv.key, "status=superseded").await;
    assert_eq!(sup.len(), 1);

    // Forgetting sessions removes their evidence: with every run forgotten, nothing supports it.
    for p in [
        "f-0", "f-1", "f-2", "g-0", "h-0", "h-1", "h-2", "h-3", "h-4", "h-5",
    ] {
        let (s, b) = srv.delete(&format!("/v1/sessions/{p}")).await;
        assert_eq!(s, 200, "{b}");
    }
    wait_for(
        "forgotten evidence deprecates the artifact",
        Duration::from_secs(30),
        || async {
            let (_, a) = srv.get(&format!("/v1/artifacts/{next}")).await;
            (a["data"]["status"] == "deprecated").then_some(())
        },
    )
    .await;
}
