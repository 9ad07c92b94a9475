//! synthesize: tenant-scoped search and token-budgeted context packs.
//!
//! Most tests index rows they write themselves (memories and artifacts in SQLite, documents
//! through `search::docs` + `submit`, as capture and learn do), so ranking, packing and filtering
//! are checked on exactly known data; the end-to-end tests go through capture and learn.

mod fixtures;

pub use fixtures::*;

use crate::support::*;
use engram::search::docs;
use reqwest::Method;
use serde_json::{json, Value};

#[tokio::test]
async fn budget_is_never_exceeded_and_smaller_entries_still_fit() {
    let srv = TestServer::start().await;
    let tenant = tenant_of(&srv, &srv.key).await;
    // The best match is huge; smaller, weaker matches must still be packed around it.
    let huge = "deploy payment service rollback ".repeat(4000);
    insert_memory(&srv, &tenant, mem("episodic", &huge, 1)).await;
    for i in 0..40 {
        let text = format!(
            "step {i}: deploy the payment service after {} checks",
            "careful ".repeat(i % 7)
        );
        insert_memory(&srv, &tenant, mem("episodic", &text, 10 + i as u32)).await;
    }
    insert_memory(
        &srv,
        &tenant,
        mem("semantic", "unrelated gardening tip", 99),
    )
    .await;
    srv.state().search.flush().await;
    for budget in [1u64, 5, 12, 50, 300, 4000, 128000] {
        let p = synth(
            &srv,
            &srv.key,
            json!({"query": "deploy payment service", "maxTokens": budget}),
        )
        .await;
        check_pack(&p);
        let huge_tokens = docs::count_tokens(&huge);
        let n = p["entries"].as_array().unwrap().len();
        let dropped = p["budget"]["entriesDropped"].as_u64().unwrap();
        assert!(
            n as u64 + dropped <= 41,
            "budget {budget}: only matches are considered"
        );
        if budget < huge_tokens {
            assert!(dropped >= 1);
            assert!(!p["entries"]
                .as_array()
                .unwrap()
                .iter()
                .any(|e| e["content"] == huge));
        }
        if budget >= 50 {
            assert!(
                n >= 2,
                "budget {budget}: smaller entries are still considered"
            );
        }
        let used = p["budget"]["used"].as_u64().unwrap();
        let ratio = p["budget"]["compressionRatio"].as_f64().unwrap();
        if used > 0 {
            assert!(ratio >= 1.0, "{ratio}");
        }
        if budget == 128000 {
            // Everything matching was considered: the ratio is all source tokens / used.
            assert_eq!(n as u64 + dropped, 41);
            let source = huge_tokens
                + (0..40)
                    .map(|i| {
                        docs::count_tokens(&format!(
                            "step {i}: deploy the payment service after {} checks",
                            "careful ".repeat(i % 7)
                        ))
                    })
                    .sum::<u64>();
            assert!(
                (ratio - source as f64 / used as f64).abs() < 0.01,
                "{ratio}"
            );
        }
    }
    // The gardening tip never matches the query.
    let p = synth(&srv, &srv.key, json!({"query": "deploy"})).await;
    assert!(!p["entries"].to_string().contains("gardening"));
    srv.shutdown().await;
}

#[tokio::test]
async fn sections_map_from_sources_and_filter() {
    let srv = TestServer::start().await;
    let t = tenant_of(&srv, &srv.key).await;
    let mut expect = std::collections::HashMap::new();
    for (kind, section) in [
        ("task_schema", "procedures"),
        ("failure_playbook", "failures"),
        ("decision_policy", "decisions"),
        ("causal_pattern", "causal"),
    ] {
        let id = insert_artifact(
            &srv,
            &t,
            kind,
            &format!("kubernetes rollout {kind}"),
            json!({"steps": ["kubernetes apply"], "note": "rollout"}),
            0.8,
        )
        .await;
        expect.insert(id, (section, "artifact", kind));
    }
    let f = insert_memory(&srv, &t, mem("semantic", "kubernetes rollout uses helm", 5)).await;
    expect.insert(f, ("facts", "memory", "semantic"));
    let c = insert_memory(
        &srv,
        &t,
        mem("episodic", "ran kubernetes rollout status", 6),
    )
    .await;
    expect.insert(c, ("context", "memory", "episodic"));
    srv.state().search.flush().await;

    let p = synth(&srv, &srv.key, json!({"query": "kubernetes rollout"})).await;
    check_pack(&p);
    assert_eq!(p["entries"].as_array().unwrap().len(), 6);
    for e in p["entries"].as_array().unwrap() {
        let prov = &e["provenance"][0];
        let (section, source_type, detail) = expect[prov["sourceId"].as_str().unwrap()];
        assert_eq!(e["section"], section);
        assert_eq!(prov["sourceType"], source_type);
        if source_type == "artifact" {
            assert_eq!(prov["artifactType"], detail);
            assert_eq!(prov["evidenceCount"], 3);
            assert!(e["content"].as_str().unwrap().contains("kubernetes apply"));
        } else {
            assert_eq!(prov["memoryType"], detail);
        }
    }
    let p = synth(
        &srv,
        &srv.key,
        json!({"query": "kubernetes", "options": {"sections": ["procedures", "facts"]}}),
    )
    .await;
    let got: Vec<&str> = p["entries"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["section"].as_str().unwrap())
        .collect();
    assert_eq!(got.len(), 2, "{got:?}");
    assert!(got.contains(&"procedures") && got.contains(&"facts"));
    // Only artifacts, only memories.
    let p = synth(
        &srv,
        &srv.key,
        json!({"query": "kubernetes", "includeMemories": false}),
    )
    .await;
    assert!(p["sections"]
        .as_array()
        .unwrap()
        .iter()
        .all(|s| s["type"] == "artifact"));
    assert_eq!(p["sections"].as_array().unwrap().len(), 4);
    let p = synth(
        &srv,
        &srv.key,
        json!({"query": "kubernetes", "includeArtifacts": false}),
    )
    .await;
    assert!(p["sections"]
        .as_array()
        .unwrap()
        .iter()
        .all(|s| s["type"] == "memory"));
    assert_eq!(p["sections"].as_array().unwrap().len(), 2);
    // Provenance can be left out.
    let p = synth(
        &srv,
        &srv.key,
        json!({"query": "kubernetes", "options": {"includeProvenance": false}}),
    )
    .await;
    assert_eq!(p["entries"][0]["provenance"], json!([]));
    srv.shutdown().await;
}

#[tokio::test]
async fn min_confidence_and_nested_options_win() {
    let srv = TestServer::start().await;
    let t = tenant_of(&srv, &srv.key).await;
    for (i, c) in [0.2, 0.5, 0.9].into_iter().enumerate() {
        let mut m = mem("semantic", &format!("postgres vacuum fact {i}"), i as u32);
        m.confidence = c;
        insert_memory(&srv, &t, m).await;
    }
    srv.state().search.flush().await;
    let confs = |p: &Value| -> Vec<f64> {
        p["entries"]
            .as_array()
            .unwrap()
            .iter()
            .map(|e| e["confidence"].as_f64().unwrap())
            .collect()
    };
    let p = synth(&srv, &srv.key, json!({"query": "postgres vacuum"})).await;
    assert_eq!(confs(&p).len(), 3, "top-level default minConfidence is 0");
    let p = synth(
        &srv,
        &srv.key,
        json!({"query": "postgres", "minConfidence": 0.5}),
    )
    .await;
    let mut c = confs(&p);
    c.sort_by(f64::total_cmp);
    assert_eq!(c, vec![0.5, 0.9]);
    // SDK form: nested options win over the top-level fields.
    let p = synth(
        &srv,
        &srv.key,
        json!({"query": "postgres", "minConfidence": 0.1, "maxTokens": 1,
               "options": {"minConfidence": 0.6, "maxTokens": 500}}),
    )
    .await;
    assert_eq!(confs(&p), vec![0.9]);
    assert_eq!(p["budget"]["limit"], 500);
    // Higher confidence ranks first among equal matches.
    let p = synth(&srv, &srv.key, json!({"query": "postgres vacuum fact"})).await;
    assert_eq!(confs(&p)[0], 0.9);
    srv.shutdown().await;
}

#[tokio::test]
async fn same_request_same_pack_and_omitted_query_is_most_recent() {
    let srv = TestServer::start().await;
    let t = tenant_of(&srv, &srv.key).await;
    // Many identical texts: ties must still come out in one fixed order.
    for i in 0..30 {
        insert_memory(&srv, &t, mem("episodic", "cache warmup finished", i % 3)).await;
    }
    for i in 0..10 {
        insert_memory(
            &srv,
            &t,
            mem("episodic", &format!("cache miss {i}"), 50 + i),
        )
        .await;
    }
    srv.state().search.flush().await;
    for body in [
        json!({"query": "cache warmup", "maxTokens": 40}),
        json!({"maxTokens": 30}),
    ] {
        let a = synth(&srv, &srv.key, body.clone()).await;
        let b = synth(&srv, &srv.key, body.clone()).await;
        assert_eq!(a["entries"], b["entries"]);
        assert_eq!(a["budget"], b["budget"]);
        assert_ne!(a["packId"], b["packId"]);
    }
    // No query: the most recent first (cache miss 9, 8, …).
    let p = synth(&srv, &srv.key, json!({"maxTokens": 4000})).await;
    assert_eq!(p["query"], Value::Null);
    let first: Vec<&str> = p["entries"].as_array().unwrap()[..3]
        .iter()
        .map(|e| e["content"].as_str().unwrap())
        .collect();
    assert_eq!(first, vec!["cache miss 9", "cache miss 8", "cache miss 7"]);
    srv.shutdown().await;
}

#[tokio::test]
async fn tenants_with_the_same_words_never_see_each_other() {
    let srv = TestServer::start().await;
    let a = tenant_of(&srv, &srv.key).await;
    let key_b = srv.create_tenant("other", engram::plans::Plan::Pro).await;
    let b = tenant_of(&srv, &key_b).await;
    assert_ne!(a, b);
    let mut a_ids = Vec::new();
    let mut b_ids = Vec::new();
    for i in 0..5 {
        a_ids.push(
            insert_memory(
                &srv,
                &a,
                mem("semantic", &format!("secret launch code {i}"), i),
            )
            .await,
        );
        b_ids.push(
            insert_memory(
                &srv,
                &b,
                mem("semantic", &format!("secret launch code {i}"), i),
            )
            .await,
        );
    }
    let art = insert_artifact(
        &srv,
        &b,
        "task_schema",
        "secret launch",
        json!({"steps": ["launch"]}),
        0.9,
    )
    .await;
    srv.state().search.flush().await;
    for (key, mine, theirs) in [(&srv.key, &a_ids, &b_ids), (&key_b, &b_ids, &a_ids)] {
        for body in [
            json!({"query": "secret launch code"}),
            json!({}),
            json!({"query": "secret", "sessionId": "sess-1"}),
        ] {
            let p = synth(&srv, key, body).await;
            let got = ids(&p);
            assert!(got.iter().all(|id| !theirs.contains(id)), "{got:?}");
            if key == &srv.key {
                assert!(!got.contains(&art));
            }
            assert!(mine.iter().all(|id| got.contains(id)), "{got:?}");
        }
    }
    srv.shutdown().await;
}

#[tokio::test]
async fn superseded_and_deprecated_artifacts_leave_at_once() {
    let srv = TestServer::start().await;
    let t = tenant_of(&srv, &srv.key).await;
    let a1 = insert_artifact(
        &srv,
        &t,
        "failure_playbook",
        "disk full",
        json!({"symptoms": ["ENOSPC disk full"]}),
        0.7,
    )
    .await;
    let a2 = insert_artifact(
        &srv,
        &t,
        "failure_playbook",
        "disk full v2",
        json!({"symptoms": ["disk full again"]}),
        0.7,
    )
    .await;
    srv.state().search.flush().await;
    let p = synth(&srv, &srv.key, json!({"query": "disk full"})).await;
    assert_eq!(ids(&p).len(), 2);
    // Change the status in SQLite only: the index still holds both, the pack must not.
    for (id, status) in [(a1.clone(), "superseded"), (a2.clone(), "deprecated")] {
        let st = status.to_string();
        srv.state()
            .db
            .write(move |c| {
                c.test_exec(
                    "UPDATE artifacts SET status = ?1 WHERE id = ?2",
                    &[&st, &id],
                )?;
                Ok(())
            })
            .await
            .unwrap();
        let p = synth(&srv, &srv.key, json!({"query": "disk full"})).await;
        check_pack(&p);
        assert!(!ids(&p).contains(&a1), "{status}");
    }
    let p = synth(&srv, &srv.key, json!({"query": "disk full"})).await;
    assert!(ids(&p).is_empty());
    assert_eq!(p["budget"]["used"], 0);
    srv.shutdown().await;
}

#[tokio::test]
async fn hostile_queries_answer_200() {
    let srv = TestServer::start().await;
    let t = tenant_of(&srv, &srv.key).await;
    // An id not made by `ids::new` (read back from the stored document, not fast fields).
    let mut m = mem("episodic", "title:foo AND bar \"quoted\" héllo 日本語", 1);
    m.id = "mem_hand-written.1".to_string();
    insert_memory(&srv, &t, m).await;
    srv.state().search.flush().await;
    let big = "lorem ipsum dolor ".repeat(6000);
    let hostile = [
        "\"unbalanced quote",
        "title:foo",
        "a AND OR NOT b",
        "(((",
        "+-*&|!{}[]^~?:\\/",
        "héllo 日本語 🚀 \u{202e}",
        "*",
        "field:[1 TO 5]",
        "   ",
        "\u{0}\u{1}",
        big.as_str(),
    ];
    for q in hostile {
        let p = synth(&srv, &srv.key, json!({"query": q})).await;
        check_pack(&p);
    }
    let p = synth(&srv, &srv.key, json!({"query": "TITLE:FOO \"quoted"})).await;
    assert_eq!(ids(&p).len(), 1);
    let p = synth(&srv, &srv.key, json!({"query": "日本語"})).await;
    assert_eq!(ids(&p), vec!["mem_hand-written.1".to_string()]);
    srv.shutdown().await;
}

#[tokio::test]
async fn filters_by_agent_session_and_tags() {
    let srv = TestServer::start().await;
    let t = tenant_of(&srv, &srv.key).await;
    let mut m1 = mem("episodic", "build failed on linker", 1);
    m1.agent = Some("ops");
    m1.tags = vec!["ci"];
    let id1 = insert_memory(&srv, &t, m1).await;
    let mut m2 = mem("episodic", "build failed on tests", 2);
    m2.session = Some("sess-2");
    m2.tags = vec!["ci", "tests"];
    let id2 = insert_memory(&srv, &t, m2).await;
    let art = insert_artifact(&srv, &t, "failure_playbook", "build failed", json!({}), 0.9).await;
    srv.state().search.flush().await;
    let q = |extra: Value| {
        let mut b = json!({"query": "build failed"});
        for (k, v) in extra.as_object().unwrap() {
            b[k] = v.clone();
        }
        b
    };
    let p = synth(&srv, &srv.key, q(json!({"agentId": "ops"}))).await;
    assert_eq!(ids(&p), vec![id1.clone()]);
    let p = synth(&srv, &srv.key, q(json!({"sessionId": "sess-2"}))).await;
    assert_eq!(ids(&p), vec![id2.clone()]);
    let p = synth(&srv, &srv.key, q(json!({"tags": ["tests"]}))).await;
    let got = ids(&p);
    assert!(
        got.contains(&id2) && got.contains(&art) && !got.contains(&id1),
        "{got:?}"
    );
    srv.shutdown().await;
}

#[tokio::test]
async fn validation_errors_name_the_field() {
    let srv = TestServer::start().await;
    for (body, field) in [
        (json!({"maxTokens": 0}), "maxTokens"),
        (json!({"maxTokens": 128001}), "maxTokens"),
        (json!({"maxTokens": "many"}), "maxTokens"),
        (json!({"maxTokens": 1.5}), "maxTokens"),
        (json!({"options": {"maxTokens": -3}}), "options.maxTokens"),
        (
            json!({"options": {"minConfidence": 2}}),
            "options.minConfidence",
        ),
        (
            json!({"options": {"sections": ["recipes"]}}),
            "options.sections[0]",
        ),
        (
            json!({"options": {"sections": "facts"}}),
            "options.sections",
        ),
        (json!({"options": 5}), "options"),
        (json!({"query": 42}), "query"),
        (json!({"tags": ["ok", 3]}), "tags[1]"),
        (json!({"includeArtifacts": "yes"}), "includeArtifacts"),
        (json!({"agentId": ""}), "agentId"),
        (json!({"sessionId": 7}), "sessionId"),
    ] {
        let (s, b) = send(srv.req(Method::POST, "/v1/synthesize").json(&body)).await;
        assert_eq!(s, 422, "{body}: {b}");
        assert_eq!(b["error"]["code"], "validation_error");
        assert_eq!(b["error"]["details"][0]["field"], field, "{body}: {b}");
    }
    let (s, _) = send(srv.req(Method::POST, "/v1/synthesize").body("[1,2]")).await;
    assert_eq!(s, 422);
    // Permissions: a write-only key may not read memory.
    let key = srv.create_key(&["write"]).await;
    let (s, b) = send(
        srv.req_as(&key, Method::POST, "/v1/synthesize")
            .json(&json!({})),
    )
    .await;
    assert_eq!(s, 403, "{b}");
    let (s, _) = send(srv.http.post(srv.url("/v1/synthesize")).json(&json!({}))).await;
    assert_eq!(s, 401);
    srv.shutdown().await;
}

#[tokio::test]
async fn syntheses_are_counted() {
    let srv = TestServer::start().await;
    let t = tenant_of(&srv, &srv.key).await;
    insert_memory(
        &srv,
        &t,
        mem("semantic", "redis eviction policy is allkeys-lru", 1),
    )
    .await;
    srv.state().search.flush().await;
    let p = synth(&srv, &srv.key, json!({"query": "redis eviction"})).await;
    let used = p["budget"]["used"].as_i64().unwrap();
    assert!(used > 0);
    // The usage route sees both at once, though they are counted in memory first.
    let (s, b) = srv.get("/v1/usage-metrics").await;
    assert_eq!(s, 200, "{b}");
    assert_eq!(b["data"]["usage"]["syntheses"]["total"], 2, "{b}");
    // Synthesize counts in memory (`store::usage_buffer`); a direct counter read flushes first,
    // as the usage routes do.
    srv.state().db.flush_usage().await.unwrap();
    let t2 = t.clone();
    let (n, tokens, milli) = srv
        .state()
        .db
        .read(move |c| {
            use engram::store::usage;
            let g = |m| usage::get(c, &t2, "live", m, usage::ALL_TIME);
            Ok((
                g(usage::SYNTHESES)?,
                g(usage::SYNTHESIS_TOKENS)?,
                g(usage::SYNTHESIS_COMPRESSION_MILLI)?,
            ))
        })
        .await
        .unwrap();
    // tenant_of made one empty synthesis, then one real one.
    assert_eq!(n, 2);
    assert_eq!(tokens, used);
    assert_eq!(milli, 1000);
    srv.shutdown().await;
}

#[tokio::test]
async fn text_changed_after_indexing_is_shown_and_recounted() {
    let srv = TestServer::start().await;
    let t = tenant_of(&srv, &srv.key).await;
    let id = insert_memory(&srv, &t, mem("semantic", "nginx reload is safe", 1)).await;
    srv.state().search.flush().await;
    // SQLite changes first (as a merge of facts would); the index still has the old text.
    let longer = "nginx reload is safe, but a config test with nginx -t comes first, always, \
                  on every host of the fleet, including canaries";
    let (i, l) = (id.clone(), longer.to_string());
    srv.state()
        .db
        .write(move |c| {
            c.test_exec("UPDATE memories SET content = ?1 WHERE id = ?2", &[&l, &i])?;
            Ok(())
        })
        .await
        .unwrap();
    let tokens = docs::count_tokens(longer);
    for budget in [tokens - 1, tokens] {
        let p = synth(
            &srv,
            &srv.key,
            json!({"query": "nginx reload", "maxTokens": budget}),
        )
        .await;
        check_pack(&p);
        if budget < tokens {
            assert!(ids(&p).is_empty(), "the new text no longer fits: {p}");
        } else {
            assert_eq!(p["entries"][0]["content"], longer);
        }
    }
    srv.shutdown().await;
}
