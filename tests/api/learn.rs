//! Learn tests: the compiler over HTTP on generated sessions with planted ground truth,
//! incremental equals full, determinism, every validation error, wait and poll, serialised
//! concurrent learns, tenant isolation, versions and supersession, deprecate and restore, facts,
//! forgetting a session, and the official SDK's learn/list_artifacts/get_artifact.

use crate::support::*;
use engram::compiler::trajectories::{capture_items, generate, GenSession, Spec};
use reqwest::Method;
use serde_json::{json, Value};
use std::collections::BTreeMap;
use std::time::Duration;

/// A server without automatic learning, so every learn run is one the test asked for.
async fn server() -> TestServer {
    TestServer::start_with(|c| {
        c.auto_learn_every = 0;
        c.auto_learn_sweep = Duration::ZERO;
        c.limits_enabled = false;
    })
    .await
}

/// Captures sessions through `POST /v1/capture/batch`, up to 1000 events a request.
async fn capture(srv: &TestServer, key: &str, sessions: &[GenSession]) {
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

async fn learn(srv: &TestServer, key: &str, body: Value) -> Value {
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
async fn all_artifacts(srv: &TestServer, key: &str, query: &str) -> Vec<Value> {
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

fn find<'a>(arts: &'a [Value], t: &str, sig_part: &str) -> &'a Value {
    arts.iter()
        .find(|a| a["type"] == t && a["signature"].as_str().unwrap().contains(sig_part))
        .unwrap_or_else(|| panic!("no {t} with {sig_part}"))
}

fn small_spec(seed: u64) -> Spec {
    Spec {
        seed,
        deploy: 30,
        migrate: 25,
        release: 20,
        noise: 15,
        prefix: format!("t{seed}"),
    }
}

#[tokio::test]
async fn learn_recovers_the_planted_knowledge() {
    let srv = server().await;
    capture(&srv, &srv.key, &generate(&small_spec(3))).await;
    let r = learn(&srv, &srv.key, json!({})).await;
    assert!(r["artifacts"]["created"].as_u64().unwrap() >= 6, "{r}");
    assert!(r["stats"]["eventsProcessed"].as_u64().unwrap() > 500, "{r}");
    let arts = all_artifacts(&srv, &srv.key, "status=active").await;

    let deploy = find(&arts, "task_schema", "deploy payment service");
    let steps: Vec<&str> = deploy["content"]["steps"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s.as_str().unwrap())
        .collect();
    let pos = |w: &str| {
        steps
            .iter()
            .position(|s| s.contains(w))
            .unwrap_or_else(|| panic!("{w} in {steps:?}"))
    };
    assert!(pos("git pull") < pos("cargo build"));
    assert!(pos("cargo build") < pos("docker push"));
    assert!(pos("docker push") < pos("kubectl apply"));
    assert_eq!(deploy["status"], "active");
    assert_eq!(deploy["isActive"], true);
    assert_eq!(deploy["version"], 1);
    assert!(deploy["evidenceCount"].as_u64().unwrap() >= 3);
    assert!(!deploy["sourceEvents"].as_array().unwrap().is_empty());
    assert!(deploy["sourceMemories"].as_array().unwrap()[0]
        .as_str()
        .unwrap()
        .starts_with("mem_"));
    assert_eq!(
        deploy["metadata"]["compiledBy"],
        engram::compiler::COMPILED_BY
    );

    let refused = find(&arts, "failure_playbook", "connection refused");
    assert!(refused["content"]["recoverySteps"][0]["action"]
        .as_str()
        .unwrap()
        .contains("restart postgresql"));
    let token = find(&arts, "failure_playbook", "token expired");
    assert!(token["content"]["recoverySteps"][0]["action"]
        .as_str()
        .unwrap()
        .contains("cargo login"));
    let policy = find(&arts, "decision_policy", "deployment strategy");
    assert_eq!(policy["content"]["recommendation"], "blue-green");
    assert!(arts.iter().any(|a| a["type"] == "causal_pattern"
        && a["content"]["cause"] == "when dry run skipped"
        && a["content"]["effect"]
            .as_str()
            .unwrap()
            .contains("does not exist")));

    // Filters and single reads.
    let (s, b) = srv.get("/v1/artifacts?type=decision_policy").await;
    assert_eq!(s, 200);
    assert!(b["data"]["items"]
        .as_array()
        .unwrap()
        .iter()
        .all(|a| a["type"] == "decision_policy"));
    assert_eq!(b["data"]["items"], b["data"]["artifacts"]);
    let (s, one) = srv
        .get(&format!("/v1/artifacts/{}", deploy["id"].as_str().unwrap()))
        .await;
    assert_eq!(s, 200);
    assert_eq!(&one["data"], deploy);
    // Sorted by confidence, descending.
    let (_, b) = srv
        .get("/v1/artifacts?sort=confidence&order=desc&limit=100")
        .await;
    let confs: Vec<f64> = b["data"]["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| a["confidence"].as_f64().unwrap())
        .collect();
    assert!(confs.windows(2).all(|w| w[0] >= w[1]), "{confs:?}");
    // Offset pagination agrees with cursors.
    let (_, p1) = srv
        .get("/v1/artifacts?limit=2&sort=createdAt&order=asc")
        .await;
    let (_, p2) = srv
        .get("/v1/artifacts?limit=2&offset=2&sort=createdAt&order=asc")
        .await;
    let c = p1["data"]["pagination"]["cursor"].as_str().unwrap();
    let (_, p2c) = srv
        .get(&format!(
            "/v1/artifacts?limit=2&sort=createdAt&order=asc&cursor={c}"
        ))
        .await;
    assert_eq!(p2["data"]["items"], p2c["data"]["items"]);
    assert_eq!(p1["data"]["hasMore"], true);
    assert_eq!(p1["data"]["total"].as_u64().unwrap(), arts.len() as u64);

    // Usage counters saw the compilation.
    let (_, m) = srv.get("/v1/usage-metrics").await;
    assert!(
        m["data"]["usage"]["compilations"]["total"]
            .as_u64()
            .unwrap_or(0)
            >= 1,
        "{m}"
    );
}

fn by_identity(arts: &[Value]) -> BTreeMap<String, (String, u64, f64)> {
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

#[tokio::test]
async fn incremental_runs_equal_one_full_run_and_runs_are_deterministic() {
    let srv = server().await;
    let sessions = generate(&small_spec(11));
    // Tenant A learns in three incremental steps.
    for part in sessions.chunks(sessions.len() / 3 + 1) {
        capture(&srv, &srv.key, part).await;
        learn(&srv, &srv.key, json!({"scope": "incremental"})).await;
    }
    // Nothing new: an incremental run has nothing to do.
    let idle = learn(&srv, &srv.key, json!({})).await;
    assert_eq!(idle["stats"]["eventsProcessed"], 0, "{idle}");
    // A full run over the same events changes nothing: incremental already equals full.
    let full = learn(&srv, &srv.key, json!({"scope": "full"})).await;
    assert_eq!(full["artifacts"]["created"], 0, "{full}");
    assert_eq!(full["artifacts"]["updated"], 0, "{full}");
    assert!(
        full["artifacts"]["unchanged"].as_u64().unwrap() > 5,
        "{full}"
    );
    let a = by_identity(&all_artifacts(&srv, &srv.key, "").await);

    // Tenant B gets every event at once and one full run.
    let key_b = srv.create_tenant("b", engram::plans::Plan::Pro).await;
    capture(&srv, &key_b, &sessions).await;
    learn(&srv, &key_b, json!({"scope": "full"})).await;
    let b = by_identity(&all_artifacts(&srv, &key_b, "").await);
    assert_eq!(a.keys().collect::<Vec<_>>(), b.keys().collect::<Vec<_>>());
    for (k, va) in &a {
        let vb = &b[k];
        assert_eq!(va.0, vb.0, "content of {k}");
        assert_eq!(va.1, vb.1, "evidence of {k}");
        assert_eq!(va.2, vb.2, "confidence of {k}");
    }
}

async fn expect_422(srv: &TestServer, body: Value, field: &str) {
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

#[tokio::test]
async fn every_validation_error_names_its_field() {
    let srv = server().await;
    expect_422(&srv, json!([1]), "body").await;
    expect_422(&srv, json!({"agentId": 5}), "agentId").await;
    expect_422(&srv, json!({"agentId": ""}), "agentId").await;
    expect_422(&srv, json!({"sessionId": "x".repeat(257)}), "sessionId").await;
    expect_422(&srv, json!({"eventIds": "evt_1"}), "eventIds").await;
    expect_422(&srv, json!({"eventIds": []}), "eventIds").await;
    expect_422(&srv, json!({"eventIds": ["evt_1", 2]}), "eventIds[1]").await;
    expect_422(&srv, json!({"scope": "partial"}), "scope").await;
    expect_422(&srv, json!({"options": 3}), "options").await;
    expect_422(
        &srv,
        json!({"options": {"maxEvents": 0}}),
        "options.maxEvents",
    )
    .await;
    expect_422(
        &srv,
        json!({"options": {"maxEvents": "ten"}}),
        "options.maxEvents",
    )
    .await;
    expect_422(
        &srv,
        json!({"options": {"artifactType": "poem"}}),
        "options.artifactType",
    )
    .await;
    expect_422(
        &srv,
        json!({"options": {"artifactTypes": []}}),
        "options.artifactTypes",
    )
    .await;
    expect_422(
        &srv,
        json!({"options": {"artifactTypes": ["task_schema", "x"]}}),
        "options.artifactTypes[1]",
    )
    .await;
    expect_422(
        &srv,
        json!({"options": {"minPatternStrength": 1.5}}),
        "options.minPatternStrength",
    )
    .await;
    expect_422(
        &srv,
        json!({"options": {"minPatternStrength": "high"}}),
        "options.minPatternStrength",
    )
    .await;
    let (s, b) = send(srv.req(Method::POST, "/v1/learn").body("{not json")).await;
    assert_eq!(s, 422, "{b}");
    let (s, b) = send(
        srv.req(Method::POST, "/v1/learn?wait=maybe")
            .json(&json!({})),
    )
    .await;
    assert_eq!(s, 400, "{b}");
    // Nothing was enqueued by a rejected request.
    let jobs = srv
        .state()
        .db
        .read(|c| {
            Ok(
                c.query_row("SELECT count(*) FROM jobs WHERE kind = 'learn'", [], |r| {
                    r.get::<_, i64>(0)
                })?,
            )
        })
        .await
        .unwrap();
    assert_eq!(jobs, 0);

    for q in [
        "type=poem",
        "status=gone",
        "sort=name",
        "order=sideways",
        "limit=0",
        "limit=101",
        "offset=-1",
        "cursor=garbage",
        "limit=x",
    ] {
        let (s, b) = srv.get(&format!("/v1/artifacts?{q}")).await;
        assert_eq!(s, 400, "{q}: {b}");
        let field = q.split('=').next().unwrap();
        assert_eq!(b["error"]["details"][0]["field"], field, "{q}: {b}");
    }
    let (s, _) = srv.get("/v1/artifacts/art_missing").await;
    assert_eq!(s, 404);
    let (s, _) = srv.get("/v1/learn/job_missing").await;
    assert_eq!(s, 404);
    let (s, b) = send(
        srv.req(Method::PATCH, "/v1/artifacts/art_missing")
            .json(&json!({"status": "active"})),
    )
    .await;
    assert_eq!(s, 404, "{b}");
    let (s, b) = send(
        srv.req(Method::PATCH, "/v1/artifacts/art_missing")
            .json(&json!({})),
    )
    .await;
    assert_eq!(s, 422, "{b}");
    assert_eq!(b["error"]["details"][0]["field"], "status");
    let (s, b) = send(
        srv.req(Method::PATCH, "/v1/artifacts/art_missing")
            .json(&json!({"status": "superseded"})),
    )
    .await;
    assert_eq!(s, 422, "{b}");

    // Permissions: read keys cannot learn or deprecate; they can list.
    let read = srv.create_key(&["read"]).await;
    let (s, _) = send(
        srv.req_as(&read, Method::POST, "/v1/learn")
            .json(&json!({})),
    )
    .await;
    assert_eq!(s, 403);
    let (s, _) = send(srv.req_as(&read, Method::DELETE, "/v1/artifacts/art_x")).await;
    assert_eq!(s, 403);
    let (s, _) = send(srv.req_as(&read, Method::GET, "/v1/artifacts")).await;
    assert_eq!(s, 200);
}

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
    let (s, b) = send(
        srv.req(Method::POST, "/v1/learn")
            .header("Prefer", "respond-async, wait=20")
            .json(&json!({"scope": "full"})),
    )
    .await;
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

fn run_of(session: &str, steps: &[&str]) -> Vec<Value> {
    let mut v = vec![json!({"type": "message", "sessionId": session,
        "payload": {"role": "user", "content": "Rotate the signing keys"}})];
    for s in steps {
        v.push(json!({"type": "command_exec", "sessionId": session, "payload": {"command": s, "exitCode": 0}}));
    }
    v.push(json!({"type": "outcome", "sessionId": session, "payload": {"status": "success"}}));
    v
}

async fn capture_runs(srv: &TestServer, prefix: &str, n: usize, steps: &[&str]) {
    let events: Vec<Value> = (0..n)
        .flat_map(|i| run_of(&format!("{prefix}-{i}"), steps))
        .collect();
    let (s, b) = srv
        .post("/v1/capture/batch", json!({"events": events}))
        .await;
    assert_eq!(s, 202, "{b}");
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

async fn semantic_memories(srv: &TestServer) -> Vec<Value> {
    let (s, b) = srv.get("/v1/memories?kind=semantic&limit=100").await;
    assert_eq!(s, 200, "{b}");
    b["data"]["items"].as_array().unwrap().clone()
}

#[tokio::test]
async fn facts_from_messages_and_sdk_extractions_become_semantic_memories() {
    let srv = server().await;
    let events = json!({"events": [
        {"type": "message", "sessionId": "p1", "payload": {"role": "user", "content": "My favourite editor is Vim. Please open the config."}},
        {"type": "message", "sessionId": "p1", "payload": {"role": "system", "content": "extracted_memories"},
         "metadata": {"extractedMemories": ["We use Postgres for billing", "User works in the Berlin office"]}},
    ]});
    let (s, b) = srv.post("/v1/capture/batch", events).await;
    assert_eq!(s, 202, "{b}");
    let r = learn(&srv, &srv.key, json!({})).await;
    assert_eq!(r["stats"]["memoriesProcessed"], 3, "{r}");
    let list = semantic_memories(&srv).await;
    let texts: Vec<&str> = list
        .iter()
        .map(|m| m["content"].as_str().unwrap())
        .collect();
    assert!(texts.iter().any(|t| t.contains("Vim")), "{texts:?}");
    assert!(texts.iter().any(|t| t.contains("Postgres")), "{texts:?}");
    assert!(texts.iter().any(|t| t.contains("Berlin")), "{texts:?}");
    // A later contradicting statement supersedes the old one.
    let (s, _) = srv
        .post(
            "/v1/capture",
            json!({"type": "message", "sessionId": "p2",
            "payload": {"role": "user", "content": "my favourite editor is Helix"}}),
        )
        .await;
    assert_eq!(s, 202);
    learn(&srv, &srv.key, json!({})).await;
    let list = semantic_memories(&srv).await;
    let editor: Vec<&Value> = list
        .iter()
        .filter(|m| m["metadata"]["key"] == "favourite editor")
        .collect();
    assert_eq!(editor.len(), 2, "{editor:?}");
    let active: Vec<_> = editor.iter().filter(|m| m["status"] == "active").collect();
    assert_eq!(active.len(), 1);
    assert!(active[0]["content"].as_str().unwrap().contains("Helix"));
}

#[tokio::test]
async fn official_sdk_learns_lists_and_gets_artifacts() {
    let srv = server().await;
    capture(
        &srv,
        &srv.key,
        &generate(&Spec {
            deploy: 12,
            migrate: 0,
            release: 10,
            noise: 3,
            ..Spec::default()
        }),
    )
    .await;
    let base = format!("{}/v1", srv.base);
    let key = srv.key.clone();
    let out = tokio::task::spawn_blocking(move || {
        run_python(
            "sdk_learn.py",
            &[("ENGRAM_URL", &base), ("ENGRAM_KEY", &key)],
        )
    });
    let out = out.await.unwrap();
    let v: Value = serde_json::from_str(out.trim().lines().last().unwrap()).expect("json line");
    assert!(v["artifacts"].as_u64().unwrap() >= 2, "{v}");
    assert_eq!(v["got_same"], true, "{v}");
    assert_eq!(v["types_ok"], true, "{v}");
}

#[tokio::test]
async fn max_events_session_and_agent_scopes() {
    let srv = server().await;
    capture_runs(
        &srv,
        "m",
        4,
        &["vault read", "openssl genrsa", "vault write"],
    )
    .await;
    // maxEvents: a partial run that marks only that many events learned.
    let r = learn(&srv, &srv.key, json!({"options": {"maxEvents": 7}})).await;
    assert_eq!(r["status"], "partial", "{r}");
    assert_eq!(r["stats"]["eventsProcessed"], 7, "{r}");
    let r = learn(&srv, &srv.key, json!({})).await;
    assert_eq!(r["status"], "completed", "{r}");
    assert_eq!(r["stats"]["eventsProcessed"], 4 * 5 - 7, "{r}");

    // sessionId: only that session's events are marked learned.
    capture_runs(
        &srv,
        "n",
        2,
        &["vault read", "openssl genrsa", "vault write"],
    )
    .await;
    let r = learn(&srv, &srv.key, json!({"sessionId": "n-0"})).await;
    assert_eq!(r["stats"]["eventsProcessed"], 5, "{r}");
    let (_, ev) = srv.get("/v1/events?sessionId=n-1&limit=10").await;
    assert!(
        ev["data"]["items"]
            .as_array()
            .unwrap()
            .iter()
            .all(|e| e["learnedAt"].is_null()),
        "{ev}"
    );
    let (_, ev) = srv.get("/v1/events?sessionId=n-0&limit=10").await;
    assert!(
        ev["data"]["items"]
            .as_array()
            .unwrap()
            .iter()
            .all(|e| e["learnedAt"].is_string()),
        "{ev}"
    );

    // agentId: artifacts compiled from one agent's events belong to that agent.
    let events: Vec<Value> = (0..3)
        .flat_map(|i| run_of(&format!("a-{i}"), &["terraform plan", "terraform apply"]))
        .map(|mut e| {
            e["metadata"] = json!({"agentId": "ag_ops"});
            e
        })
        .collect();
    let (s, b) = srv
        .post("/v1/capture/batch", json!({"events": events}))
        .await;
    assert_eq!(s, 202, "{b}");
    let r = learn(
        &srv,
        &srv.key,
        json!({"agentId": "ag_ops", "scope": "full"}),
    )
    .await;
    assert!(r["artifacts"]["created"].as_u64().unwrap() >= 1, "{r}");
    let arts = all_artifacts(&srv, &srv.key, "type=task_schema").await;
    let scoped: Vec<_> = arts.iter().filter(|a| a["agentId"] == "ag_ops").collect();
    assert_eq!(scoped.len(), 1, "{arts:?}");
    assert_eq!(
        scoped[0]["content"]["steps"],
        json!(["terraform plan", "terraform apply"])
    );
    assert_eq!(scoped[0]["evidenceCount"], 3);
}
