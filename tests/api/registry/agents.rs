//! Agents: deploy (every field and its validation), get by id or slug, list with pagination and
//! filters, slug collisions, the plan's agent limit, delete.

use super::*;

#[tokio::test]
async fn deploy_stores_every_field_and_get_returns_the_full_agent() {
    let srv =
        TestServer::start_with(|c| c.public_url = Some("https://agents.example.org/".into())).await;
    let project = create_project(&srv, &srv.key, "nlp").await;
    let body = json!({
        "name": "Sentiment Analyzer",
        "instruction": "Analyze sentiment of text. Return positive, negative, or neutral.",
        "model": "sentiment-model-v1",
        "description": "Analyzes text sentiment",
        "category": "NLP",
        "tags": ["sentiment", "text", "sentiment"],
        "timeout": 45,
        "public": true,
        "project_id": project,
        "script": [
            {"match": "(?i)love|great", "reply": "positive"},
            {"match": "weather in (\\w+)", "reply": "Let me check.",
             "tool": {"connector": "weather", "name": "forecast", "arguments": {"days": 1}}}
        ]
    });
    let (s, b) = srv.post("/v1/agents/deploy", body).await;
    assert_eq!(s, 201, "{b}");
    let id = b["agent_id"].as_str().unwrap().to_string();
    assert!(id.starts_with("ag_"));
    assert_eq!(b["name"], "Sentiment Analyzer");
    assert_eq!(b["slug"], "sentiment-analyzer");
    assert_eq!(b["status"], "deployed");
    assert_eq!(
        b["endpoint"],
        format!("https://agents.example.org/v1/agents/{id}/invoke")
    );

    for key in [id.as_str(), "sentiment-analyzer", "Sentiment-Analyzer"] {
        let (s, a) = srv.get(&format!("/v1/agents/{key}")).await;
        assert_eq!(s, 200, "{a}");
        assert_eq!(a["id"], id.as_str());
        assert_eq!(a["model"], "sentiment-model-v1");
        assert_eq!(
            a["instruction"],
            "Analyze sentiment of text. Return positive, negative, or neutral."
        );
        assert_eq!(a["description"], "Analyzes text sentiment");
        assert_eq!(a["category"], "NLP");
        assert_eq!(a["tags"], json!(["sentiment", "text"]));
        assert_eq!(a["status"], "active");
        assert_eq!(a["endpoint"], b["endpoint"]);
        assert_eq!(a["invocation_count"], 0);
        assert_eq!(a["timeout"], 45);
        assert_eq!(a["public"], true);
        assert_eq!(a["project_id"], project.as_str());
        assert_eq!(
            a["script"][1]["tool"],
            json!({"connector": "weather", "name": "forecast", "arguments": {"days": 1}})
        );
        assert_eq!(a["script"][0].get("tool"), None);
        for t in ["created_at", "updated_at"] {
            assert!(engram::time::parse(a[t].as_str().unwrap()).is_some(), "{t}");
        }
    }
    // Invocations recorded by the store show in the agent and in the list.
    let tenant = tenant_of(&srv).await;
    let (t, a) = (tenant.clone(), id.clone());
    let counted = srv
        .state()
        .db
        .write(move |c| {
            engram::store::agents::record_invocation(c, &t, &a)?;
            engram::store::agents::record_invocation(c, &t, &a)?;
            engram::store::agents::record_invocation(c, &t, "ag_missing")
        })
        .await
        .unwrap();
    assert!(!counted, "an unknown agent is not counted");
    let (_, a) = srv.get("/v1/agents/sentiment-analyzer").await;
    assert_eq!(a["invocation_count"], 2);
    let (_, l) = srv.get("/v1/agents").await;
    assert_eq!(l["agents"][0]["invocation_count"], 2);
    // The store hands the invocation runtime the agent with its parsed script.
    let (t, a) = (tenant.clone(), id.clone());
    let agent = srv
        .state()
        .db
        .read(move |c| engram::store::agents::get(c, &t, &a))
        .await
        .unwrap()
        .expect("agent");
    let script = agent.script.expect("script");
    assert_eq!(
        (script.len(), script[1].pattern.as_str()),
        (2, "weather in (\\w+)")
    );
    assert_eq!(
        script[1].tool.as_ref().map(|t| t.name.as_str()),
        Some("forecast")
    );
    assert_eq!(agent.timeout_secs, 45);

    // Defaults, and the endpoint from the listen address when no public URL is configured.
    let plain = TestServer::start().await;
    let (s, b) = plain.post("/v1/agents/deploy", agent_body("x")).await;
    assert_eq!(s, 201, "{b}");
    assert_eq!(
        b["endpoint"],
        format!(
            "{}/v1/agents/{}/invoke",
            plain.base,
            b["agent_id"].as_str().unwrap()
        )
    );
    let (_, a) = plain
        .get(&format!("/v1/agents/{}", b["agent_id"].as_str().unwrap()))
        .await;
    assert_eq!(
        (
            a["timeout"].as_i64(),
            a["public"].as_bool(),
            a["tags"].clone()
        ),
        (Some(30), Some(false), json!([]))
    );
    assert_eq!(
        (a["project_id"].clone(), a["script"].clone()),
        (Value::Null, Value::Null)
    );
    plain.shutdown().await;
    srv.shutdown().await;
}

#[tokio::test]
async fn deploy_validation_one_field_at_a_time() {
    let srv = TestServer::start().await;
    let base = agent_body("valid");
    let cases: Vec<(&str, Value, &str)> = vec![
        ("name", Value::Null, "name"),
        ("name", json!(""), "name"),
        ("name", json!("x".repeat(65)), "name"),
        ("name", json!(123), "name"),
        ("name", json!("日本語"), "name"),
        ("instruction", Value::Null, "instruction"),
        ("instruction", json!("  "), "instruction"),
        (
            "instruction",
            json!("x".repeat(32 * 1024 + 1)),
            "instruction",
        ),
        ("instruction", json!(["x"]), "instruction"),
        ("model", Value::Null, "model"),
        ("model", json!(""), "model"),
        ("model", json!(7), "model"),
        ("description", json!(5), "description"),
        ("category", json!("c".repeat(65)), "category"),
        ("tags", json!("nlp"), "tags"),
        (
            "tags",
            json!((0..21).map(|i| format!("t{i}")).collect::<Vec<_>>()),
            "tags",
        ),
        ("tags", json!([1]), "tags[0]"),
        ("tags", json!(["ok", ""]), "tags[1]"),
        ("timeout", json!(4), "timeout"),
        ("timeout", json!(301), "timeout"),
        ("timeout", json!("30"), "timeout"),
        ("timeout", json!(30.5), "timeout"),
        ("public", json!("yes"), "public"),
        ("project_id", json!("proj_doesnotexist"), "project_id"),
        ("project_id", json!(9), "project_id"),
        ("script", json!({"match": "x"}), "script"),
        ("script", json!([{"reply": "x"}]), "script[0].match"),
        (
            "script",
            json!([{"match": "(", "reply": "x"}]),
            "script[0].match",
        ),
        ("script", json!([{"match": "a"}]), "script[0].reply"),
        (
            "script",
            json!([{"match": "a", "reply": "b", "tool": "t"}]),
            "script[0].tool",
        ),
        (
            "script",
            json!([{"match": "a", "reply": "b", "tool": {"connector": "c"}}]),
            "script[0].tool.name",
        ),
        (
            "script",
            json!([{"match": "a", "reply": "b"}, {"match": "a", "reply": "b", "tool": {"connector": "c", "name": "n", "arguments": 5}}]),
            "script[1].tool.arguments",
        ),
    ];
    for (field, value, expect) in cases {
        let mut body = base.clone();
        if value.is_null() {
            body.as_object_mut().unwrap().remove(field);
        } else {
            body[field] = value.clone();
        }
        let (s, b) = srv.post("/v1/agents/deploy", body).await;
        assert_eq!(bad_field(s, &b), expect, "{field} = {value}: {b}");
        assert!(b["message"].as_str().unwrap().starts_with(expect), "{b}");
    }
    // Every problem is reported at once.
    let (s, b) = srv.post("/v1/agents/deploy", json!({"timeout": 1})).await;
    assert_eq!(s, 400);
    let fields: Vec<&str> = b["details"]
        .as_array()
        .unwrap()
        .iter()
        .map(|d| d["field"].as_str().unwrap())
        .collect();
    assert_eq!(fields, ["name", "instruction", "model", "timeout"]);
    // Not an object, or not JSON.
    let (s, b) = srv.post("/v1/agents/deploy", json!(["x"])).await;
    assert_eq!(bad_field(s, &b), "body");
    let (s, b) = send(
        srv.req(Method::POST, "/v1/agents/deploy")
            .header("content-type", "application/json")
            .body("{\"name\":"),
    )
    .await;
    assert_eq!(bad_field(s, &b), "body");
    // The bounds themselves are accepted; nothing rejected was stored.
    for (name, t) in [("fast", 5), ("slow", 300)] {
        let mut body = agent_body(name);
        body["timeout"] = json!(t);
        let (s, b) = srv.post("/v1/agents/deploy", body).await;
        assert_eq!(s, 201, "{b}");
    }
    let (_, b) = srv.get("/v1/agents").await;
    assert_eq!(b["total"], 2);
    srv.shutdown().await;
}

#[tokio::test]
async fn list_paginates_filters_and_searches() {
    let srv = TestServer::start().await;
    let names = [
        "Alpha Bot",
        "Beta Bot",
        "Éclair Helper",
        "gamma-bot",
        "Delta",
    ];
    for (i, n) in names.iter().enumerate() {
        let mut body = agent_body(n);
        body["category"] = json!(if i % 2 == 0 { "NLP" } else { "Vision" });
        body["description"] = json!(format!("agent {i}"));
        let (s, b) = srv.post("/v1/agents/deploy", body).await;
        assert_eq!(s, 201, "{b}");
    }
    let (s, b) = srv.get("/v1/agents").await;
    assert_eq!(s, 200);
    assert_eq!(
        (
            b["total"].as_i64(),
            b["page"].as_i64(),
            b["per_page"].as_i64()
        ),
        (Some(5), Some(1), Some(20))
    );
    let first = &b["agents"][0];
    assert_eq!(first["name"], "Delta", "newest first");
    for f in [
        "id",
        "name",
        "slug",
        "description",
        "category",
        "status",
        "invocation_count",
    ] {
        assert!(first.get(f).is_some(), "{f}");
    }
    assert_eq!(first["status"], "active");

    let mut seen = Vec::new();
    for page in 1..=3 {
        let (s, b) = srv.get(&format!("/v1/agents?page={page}&per_page=2")).await;
        assert_eq!(s, 200);
        assert_eq!(
            (
                b["total"].as_i64(),
                b["page"].as_i64(),
                b["per_page"].as_i64()
            ),
            (Some(5), Some(page), Some(2))
        );
        let items = b["agents"].as_array().unwrap();
        assert_eq!(items.len(), if page < 3 { 2 } else { 1 });
        seen.extend(
            items
                .iter()
                .map(|a| a["name"].as_str().unwrap().to_string()),
        );
    }
    seen.sort();
    let mut all: Vec<String> = names.iter().map(|s| s.to_string()).collect();
    all.sort();
    assert_eq!(seen, all, "pages cover every agent once");
    // Past the end: empty page, real total.
    let (s, b) = srv.get("/v1/agents?page=4&per_page=2").await;
    assert_eq!(
        (s, b["agents"].clone(), b["total"].as_i64()),
        (200, json!([]), Some(5))
    );
    let (s, b) = srv.get("/v1/agents?page=99999999999").await;
    assert_eq!((s, b["agents"].clone()), (200, json!([])));
    // per_page above 100 is clamped; 0, negative and non-numeric values are refused.
    let (s, b) = srv.get("/v1/agents?per_page=101").await;
    assert_eq!((s, b["per_page"].as_i64()), (200, Some(100)));
    for q in [
        "per_page=0",
        "per_page=-3",
        "per_page=abc",
        "per_page=2.5",
        "page=0",
        "page=-1",
        "page=two",
    ] {
        let (s, b) = srv.get(&format!("/v1/agents?{q}")).await;
        let param = q.split('=').next().unwrap();
        assert_eq!(bad_field(s, &b), param, "{q}: {b}");
    }
    // Category (case-insensitive) and name search (case-insensitive, beyond ASCII).
    let (_, b) = srv.get("/v1/agents?category=nlp").await;
    assert_eq!(b["total"], 3);
    let (_, b) = srv.get("/v1/agents?search=BOT").await;
    assert_eq!(b["total"], 3);
    let (_, b) = srv.get("/v1/agents?search=%C3%A9CLAIR").await;
    assert_eq!(
        (b["total"].as_i64(), b["agents"][0]["slug"].as_str()),
        (Some(1), Some("clair-helper"))
    );
    let (_, b) = srv
        .get("/v1/agents?search=bot&category=Vision&per_page=1")
        .await;
    assert_eq!(
        (b["total"].as_i64(), b["agents"].as_array().unwrap().len()),
        (Some(2), 1)
    );
    let (_, b) = srv.get("/v1/agents?search=100%25").await;
    assert_eq!(b["total"], 0, "LIKE wildcards are plain text");
    srv.shutdown().await;
}

#[tokio::test]
async fn slugs_collide_within_a_tenant_only() {
    let srv = TestServer::start().await;
    let id = deploy(&srv, &srv.key, "Sentiment Analyzer").await;
    for name in ["sentiment-analyzer", "SENTIMENT  analyzer!"] {
        let (s, b) = srv.post("/v1/agents/deploy", agent_body(name)).await;
        assert_eq!((s, b["error"].as_str()), (409, Some("conflict")), "{b}");
        assert!(b["message"]
            .as_str()
            .unwrap()
            .contains("sentiment-analyzer"));
    }
    let other = srv.create_tenant("other", Plan::Pro).await;
    let (s, b) = call(
        &srv,
        &other,
        Method::POST,
        "/v1/agents/deploy",
        Some(agent_body("sentiment-analyzer")),
    )
    .await;
    assert_eq!(s, 201, "another tenant may use the same slug: {b}");
    assert_ne!(b["agent_id"], id.as_str());
    // Each tenant resolves the slug to its own agent.
    let (_, mine) = srv.get("/v1/agents/sentiment-analyzer").await;
    assert_eq!(mine["id"], id.as_str());
    srv.shutdown().await;
}

#[tokio::test]
async fn agent_limit_and_delete_frees_a_slot() {
    let srv = TestServer::start().await;
    let key = srv.create_tenant("small", Plan::Free).await;
    // Keep the free plan's agent limit (5) but lift its request rate, which is not under test.
    let tenant = {
        let (_, me) = call(&srv, &key, Method::GET, "/v1/me", None).await;
        me["tenant_id"].as_str().unwrap().to_string()
    };
    let t = tenant.clone();
    srv.state()
        .db
        .write(move |c| {
            engram::store::tenants::set_limits(
                c,
                &t,
                Some(&json!({"requestsPerMinute": null, "burst": null})),
            )
        })
        .await
        .unwrap();
    srv.state().auth.evict_tenant(&tenant);
    let mut ids = Vec::new();
    for i in 0..5 {
        ids.push(deploy(&srv, &key, &format!("agent {i}")).await);
    }
    let (s, b) = call(
        &srv,
        &key,
        Method::POST,
        "/v1/agents/deploy",
        Some(agent_body("one too many")),
    )
    .await;
    assert_eq!(
        (s, b["error"].as_str()),
        (429, Some("quota_exceeded")),
        "{b}"
    );
    assert!(b["message"].as_str().unwrap().contains("5"), "{b}");
    let (_, u) = call(&srv, &key, Method::GET, "/v1/usage", None).await;
    assert_eq!(
        (u["agents_used"].as_i64(), u["agents_limit"].as_i64()),
        (Some(5), Some(5))
    );

    // Delete by slug: gone by id and slug, a slot and the slug are free again.
    let (s, b) = call(&srv, &key, Method::DELETE, "/v1/agents/agent-0", None).await;
    assert_eq!(
        (s, b["message"].as_str()),
        (200, Some("Agent deleted successfully")),
        "{b}"
    );
    for path in [
        format!("/v1/agents/{}", ids[0]),
        "/v1/agents/agent-0".to_string(),
    ] {
        let (s, b) = call(&srv, &key, Method::GET, &path, None).await;
        assert_eq!((s, b["error"].as_str()), (404, Some("not_found")), "{b}");
        let (s, _) = call(&srv, &key, Method::DELETE, &path, None).await;
        assert_eq!(s, 404);
    }
    let (_, list) = call(&srv, &key, Method::GET, "/v1/agents", None).await;
    assert_eq!(list["total"], 4);
    let again = deploy(&srv, &key, "agent 0").await;
    assert_ne!(again, ids[0]);
    let (s, _) = call(
        &srv,
        &key,
        Method::POST,
        "/v1/agents/deploy",
        Some(agent_body("still too many")),
    )
    .await;
    assert_eq!(s, 429);
    // Concurrent deploys cannot overshoot the limit.
    call(
        &srv,
        &key,
        Method::DELETE,
        &format!("/v1/agents/{}", ids[1]),
        None,
    )
    .await;
    call(
        &srv,
        &key,
        Method::DELETE,
        &format!("/v1/agents/{}", ids[2]),
        None,
    )
    .await;
    let racers = (0..6).map(|i| {
        call(
            &srv,
            &key,
            Method::POST,
            "/v1/agents/deploy",
            Some(agent_body(&format!("racer {i}"))),
        )
    });
    let statuses: Vec<u16> = futures_util::future::join_all(racers)
        .await
        .into_iter()
        .map(|(s, _)| s)
        .collect();
    assert_eq!(
        statuses.iter().filter(|s| **s == 201).count(),
        2,
        "{statuses:?}"
    );
    assert_eq!(
        statuses.iter().filter(|s| **s == 429).count(),
        4,
        "{statuses:?}"
    );
    let (_, list) = call(&srv, &key, Method::GET, "/v1/agents", None).await;
    assert_eq!(list["total"], 5);
    srv.shutdown().await;
}
