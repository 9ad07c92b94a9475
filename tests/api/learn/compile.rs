//! What learning produces: planted knowledge recovered, incremental equals full, facts, scopes.

use super::*;
use engram::compiler::trajectories::generate;
use serde_json::{json, Value};

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

#[tokio::test]
async fn incremental_runs_equal_one_full_run_and_runs_are_deterministic() {
    let srv = server().await;
    let mut sessions = generate(&small_spec(11));
    // The thirteen families too: argument variants, forks, causes in edits.
    sessions.extend(engram::compiler::families::generate(9002, 8, 8));
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
    // Learn right behind the capture, while processing runs: every event compiled exactly once.
    let full_b = learn(&srv, &key_b, json!({"scope": "full"})).await;
    let n: usize = sessions.iter().map(|s| s.events.len()).sum();
    assert_eq!(full_b["stats"]["eventsCompiled"], n, "{full_b}");
    let b = by_identity(&all_artifacts(&srv, &key_b, "").await);
    assert_eq!(a.keys().collect::<Vec<_>>(), b.keys().collect::<Vec<_>>());
    for (k, va) in &a {
        let vb = &b[k];
        assert_eq!(va.0, vb.0, "content of {k}");
        assert_eq!(va.1, vb.1, "evidence of {k}");
        assert_eq!(va.2, vb.2, "confidence of {k}");
    }
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

/// Enqueues a learn job as capture's auto-learn or sweep does, and waits for its result.
async fn background_learn(srv: &TestServer, trigger: &str) -> Value {
    // Every memory-family envelope (errors included) names the caller's tenant in `meta`.
    let tenant = {
        let (_, me) = srv.get("/v1/learn/none").await;
        me["meta"]["tenantId"].as_str().unwrap().to_string()
    };
    let input = json!({"scope": "incremental", "trigger": trigger});
    let id = srv
        .state()
        .db
        .write(move |c| engram::store::jobs::enqueue(c, &tenant, engram::jobs::LEARN, &input))
        .await
        .unwrap();
    srv.state().jobs.ring(engram::jobs::LEARN);
    wait_for("background learn", Duration::from_secs(30), || async {
        let (_, b) = srv.get(&format!("/v1/learn/{id}")).await;
        (b["data"]["status"] == "completed").then(|| b["data"].clone())
    })
    .await
}

#[tokio::test]
async fn automatic_runs_wait_for_enough_new_events_and_the_sweep_does_not() {
    let srv = server().await;
    capture_runs(
        &srv,
        "big",
        30,
        &["vault read", "openssl genrsa", "vault write"],
    )
    .await;
    let first = background_learn(&srv, "auto").await;
    assert!(first.get("skipped").is_none(), "{first}");
    assert_eq!(first["stats"]["eventsProcessed"], 150, "{first}");
    // One new run (5 events) is under 1/20 of 155: an automatic run leaves it for later…
    capture_runs(
        &srv,
        "late",
        1,
        &["vault read", "openssl genrsa", "vault write"],
    )
    .await;
    let auto = background_learn(&srv, "auto").await;
    assert!(auto["skipped"].is_string(), "{auto}");
    assert_eq!(auto["stats"]["eventsProcessed"], 0, "{auto}");
    // …and the sweep compiles it.
    let sweep = background_learn(&srv, "sweep").await;
    assert_eq!(sweep["stats"]["eventsProcessed"], 5, "{sweep}");
    assert_eq!(sweep["artifacts"]["updated"], 1, "{sweep}");
}

#[tokio::test]
async fn min_pattern_strength_and_artifact_types_are_honoured() {
    let srv = server().await;
    capture(&srv, &srv.key, &generate(&small_spec(8))).await;
    let strict = learn(
        &srv,
        &srv.key,
        json!({"scope": "full", "options": {"minPatternStrength": 0.999}}),
    )
    .await;
    assert_eq!(strict["artifacts"]["created"], 0, "{strict}");
    assert!(
        strict["stats"]["patternsFound"].as_u64().unwrap() > 0,
        "{strict}"
    );
    let only = learn(
        &srv,
        &srv.key,
        json!({"scope": "full", "options": {"minPatternStrength": 0.0, "artifactType": "failure_playbook"}}),
    )
    .await;
    assert!(only["artifacts"]["created"].as_u64().unwrap() > 0, "{only}");
    let arts = all_artifacts(&srv, &srv.key, "").await;
    assert!(
        arts.iter().all(|a| a["type"] == "failure_playbook"),
        "{arts:?}"
    );
    // Every stored confidence is at or above the threshold it was created with.
    let normal = learn(&srv, &srv.key, json!({"scope": "full"})).await;
    assert!(
        normal["artifacts"]["created"].as_u64().unwrap() > 0,
        "{normal}"
    );
    let arts = all_artifacts(&srv, &srv.key, "type=task_schema").await;
    assert!(arts
        .iter()
        .all(|a| a["confidence"].as_f64().unwrap() >= engram::compiler::DEFAULT_MIN_STRENGTH));
}
