//! invoke tests: `POST /v1/agents/{id}/invoke` against loopback model peers (OpenAI and
//! Anthropic formats), the offline model, and a real MCP server from the pinned `mcp` package.

mod helpers;
pub mod peers;

use crate::support::{json_of, send, wait_for, TestServer};
use helpers::{
    agent, allow_loopback_connectors, invoke, one, server_with, stream, system_prompt_of,
    wait_memory,
};
use peers::{McpPeer, ModelPeer, Wire};
use reqwest::Method;
use serde_json::{json, Value};
use std::time::Duration;

#[tokio::test]
async fn plain_answers_from_both_upstreams_are_recorded() {
    let oa = ModelPeer::start(Wire::OpenAi).await;
    let an = ModelPeer::start(Wire::Anthropic).await;
    let srv = server_with(Some(&oa), Some(&an)).await;
    for (model, peer) in [("gpt-test", &oa), ("claude-test", &an)] {
        let ag = agent(&srv, &srv.key, model, None, 30, &[]).await;
        let (status, body) = invoke(&srv, &ag, json!({"message": "hello there"})).await;
        assert_eq!(status, 200, "{body}");
        assert_eq!(body["content"], "echo: hello there");
        assert_eq!(body["agent_id"], ag.as_str());
        assert_eq!(body["model"], model);
        assert_eq!(body["status"], "completed");
        assert_eq!(
            body["tokens_used"], 18,
            "the upstream's own usage is reported"
        );
        assert_eq!(body["tools_called"], json!([]));
        assert!(body["session_id"].as_str().unwrap().starts_with("sess_"));
        assert!(body["trace_id"].as_str().unwrap().starts_with("trace_"));
        assert!(body["request_id"].as_str().unwrap().starts_with("req_"));
        assert!(body["latency_ms"].is_u64() && body["timestamp"].is_string());
        // The agent's instruction reached the upstream as the system prompt.
        let req = peer.requests().pop().expect("the upstream was called");
        let wire = if model.starts_with("gpt") {
            Wire::OpenAi
        } else {
            Wire::Anthropic
        };
        assert!(system_prompt_of(wire, &req).contains("careful test agent"));
        assert_eq!(req["model"], model);
        // Counted on the agent, logged, and captured as memory events.
        let count: Option<i64> = one(
            &srv,
            "SELECT invocation_count FROM agents WHERE id = ?1",
            ag.clone(),
        )
        .await;
        assert_eq!(count, Some(1));
        let logged: Option<String> = one(
            &srv,
            "SELECT status FROM invocations WHERE id = ?1",
            body["request_id"].as_str().unwrap().to_string(),
        )
        .await;
        assert_eq!(logged.as_deref(), Some("completed"));
        let events: Option<i64> = one(
            &srv,
            "SELECT COUNT(*) FROM events WHERE agent_id = ?1",
            ag.clone(),
        )
        .await;
        assert_eq!(events, Some(2), "the user message and the reply");
    }
    // The alias `input` works too; a bad body names its field.
    let ag = agent(&srv, &srv.key, "gpt-test", None, 30, &[]).await;
    let (status, body) = invoke(&srv, &ag, json!({"input": "alias"})).await;
    assert_eq!(
        (status, body["content"].as_str()),
        (200, Some("echo: alias"))
    );
    let (status, body) = invoke(&srv, &ag, json!({"session_id": "x"})).await;
    assert_eq!(status, 400, "{body}");
    assert_eq!(body["error"], "bad_request");
    assert!(
        body["message"].as_str().unwrap().contains("message"),
        "{body}"
    );
    let (status, body) = invoke(&srv, &ag, json!({"message": "hi", "timeout": 3})).await;
    assert_eq!(status, 400);
    assert!(
        body["message"].as_str().unwrap().contains("timeout"),
        "{body}"
    );
    let (status, _) = invoke(&srv, &ag, json!({"message": "hi", "stream": "yes"})).await;
    assert_eq!(status, 400);
}

#[tokio::test]
async fn streamed_answers_arrive_before_the_end() {
    let oa = ModelPeer::start(Wire::OpenAi).await;
    let an = ModelPeer::start(Wire::Anthropic).await;
    let srv = server_with(Some(&oa), Some(&an)).await;
    for (model, peer) in [("gpt-test", &oa), ("claude-test", &an)] {
        let ag = agent(&srv, &srv.key, model, None, 30, &[]).await;
        let mut sse = stream(&srv, &ag, json!({"message": "[hold] go", "stream": true})).await;
        // The upstream holds the rest back: this chunk can only be here if it was flushed.
        let first = sse.next().await.expect("a first event");
        assert_eq!(first.0, "chunk");
        assert_eq!(
            serde_json::from_str::<Value>(&first.1).unwrap()["delta"],
            "first "
        );
        peer.release();
        let rest = sse.rest().await;
        let names: Vec<&str> = rest.iter().map(|(e, _)| e.as_str()).collect();
        assert_eq!(names, vec!["chunk", "done", ""], "{rest:?}");
        let done: Value = serde_json::from_str(&rest[1].1).unwrap();
        assert_eq!(done["content"], "first second");
        assert_eq!(done["status"], "completed");
        assert_eq!(done["tokens_used"], 18);
        assert_eq!(rest[2].1, "[DONE]");
    }
}

#[tokio::test]
async fn tool_calls_round_trip_through_an_mcp_server() {
    let mcp = McpPeer::start().await;
    let oa = ModelPeer::start(Wire::OpenAi).await;
    let an = ModelPeer::start(Wire::Anthropic).await;
    let srv = server_with(Some(&oa), Some(&an)).await;
    let msg = r#"please [tool:demo-tools__add {"a":2,"b":3}]"#;
    // OpenAI, not streamed.
    let ag = agent(
        &srv,
        &srv.key,
        "gpt-test",
        None,
        60,
        &[("demo-tools", &mcp.url)],
    )
    .await;
    let (status, body) = invoke(&srv, &ag, json!({"message": msg})).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["content"], "tool said: 5");
    let call = &body["tools_called"][0];
    assert_eq!(call["connector"], "demo-tools");
    assert_eq!(call["tool"], "add");
    assert_eq!(call["arguments"], json!({"a": 2, "b": 3}));
    assert_eq!(call["is_error"], false);
    assert!(call["duration_ms"].is_u64());
    assert_eq!(body["tokens_used"], 36, "two model calls of 18");
    // The MCP server's tools were offered to the model.
    let first = &oa.requests()[0];
    let offered: Vec<&str> = first["tools"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["function"]["name"].as_str().unwrap())
        .collect();
    assert!(offered.contains(&"demo-tools__add") && offered.contains(&"demo-tools__shout"));
    let kinds: Option<i64> = one(
        &srv,
        "SELECT COUNT(*) FROM events WHERE agent_id = ?1 AND type IN ('tool_call', 'tool_result')",
        ag.clone(),
    )
    .await;
    assert_eq!(kinds, Some(2));

    // Anthropic, streamed: the tool event comes before the answer.
    let ag = agent(
        &srv,
        &srv.key,
        "claude-test",
        None,
        60,
        &[("demo-tools", &mcp.url)],
    )
    .await;
    let msg = r#"[tool:demo-tools__shout {"text":"quiet"}]"#;
    let mut sse = stream(&srv, &ag, json!({"message": msg, "stream": true})).await;
    let events = sse.rest().await;
    let tool = events
        .iter()
        .find(|(e, _)| e == "tool")
        .expect("a tool event");
    let tool: Value = serde_json::from_str(&tool.1).unwrap();
    assert_eq!(tool["tool"], "shout");
    assert_eq!(tool["arguments"], json!({"text": "quiet"}));
    let done = events.iter().find(|(e, _)| e == "done").expect("done");
    let done: Value = serde_json::from_str(&done.1).unwrap();
    assert_eq!(done["content"], "tool said: QUIET");
    assert_eq!(done["tools_called"][0]["tool"], "shout");

    // A tool that fails is reported as an error result, not a failed invocation.
    let msg = r#"[tool:demo-tools__fail {"reason":"disk on fire"}]"#;
    let (status, body) = invoke(&srv, &ag, json!({"message": msg})).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["tools_called"][0]["is_error"], true);
    assert!(
        body["content"].as_str().unwrap().starts_with("tool said: "),
        "{body}"
    );

    // The other two paths: OpenAI streamed (tool-call fragments) and Anthropic not streamed.
    for (model, stream_it) in [("gpt-test", true), ("claude-test", false)] {
        let ag = agent(&srv, &srv.key, model, None, 60, &[("demo-tools", &mcp.url)]).await;
        let msg = r#"[tool:demo-tools__add {"a":40,"b":2}]"#;
        let done = if stream_it {
            let events = stream(&srv, &ag, json!({"message": msg, "stream": true}))
                .await
                .rest()
                .await;
            let names: Vec<&str> = events.iter().map(|(e, _)| e.as_str()).collect();
            assert_eq!(names.first(), Some(&"tool"), "{events:?}");
            let done = events.iter().find(|(e, _)| e == "done").expect("done");
            serde_json::from_str::<Value>(&done.1).unwrap()
        } else {
            let (status, body) = invoke(&srv, &ag, json!({"message": msg})).await;
            assert_eq!(status, 200, "{body}");
            body
        };
        assert_eq!(done["content"], "tool said: 42", "{model}");
        assert_eq!(
            done["tools_called"][0]["arguments"],
            json!({"a": 40, "b": 2})
        );
    }
    // Every invocation counted in the month's usage.
    let (_, usage) = srv.get("/v1/usage").await;
    assert_eq!(usage["invocations_used"], 5, "{usage}");
}

#[tokio::test]
async fn scripted_offline_agents_answer_exactly_and_call_tools() {
    let mcp = McpPeer::start().await;
    // No upstream configured: the offline model.
    let srv = TestServer::start_with(allow_loopback_connectors).await;
    let script = json!([
        {"match": "(?i)^hello", "reply": "Hi! You said: {{message}}"},
        {"match": "sum", "reply": "The sum is {{tool_result}}.",
         "tool": {"connector": "calc", "name": "add", "arguments": {"a": 20, "b": 22}}}
    ]);
    let ag = agent(
        &srv,
        &srv.key,
        "gpt-4o",
        Some(script),
        30,
        &[("calc", &mcp.url)],
    )
    .await;
    let (status, body) = invoke(&srv, &ag, json!({"message": "Hello engram"})).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["content"], "Hi! You said: Hello engram");
    assert!(
        body["tokens_used"].as_u64().unwrap() > 0,
        "counted when nobody reports usage"
    );
    let (_, body) = invoke(&srv, &ag, json!({"message": "what is the sum?"})).await;
    assert_eq!(body["content"], "The sum is 42.");
    assert_eq!(body["tools_called"][0]["connector"], "calc");
    assert_eq!(
        body["tools_called"][0]["arguments"],
        json!({"a": 20, "b": 22})
    );
    // Streamed, the offline model streams too.
    let mut sse = stream(&srv, &ag, json!({"message": "hello again", "stream": true})).await;
    let events = sse.rest().await;
    let text: String = events
        .iter()
        .filter(|(e, _)| e == "chunk")
        .map(|(_, d)| {
            serde_json::from_str::<Value>(d).unwrap()["delta"]
                .as_str()
                .unwrap()
                .to_string()
        })
        .collect();
    assert_eq!(text, "Hi! You said: hello again");
    // No rule matches: it answers from memory and says it is the offline model.
    wait_memory(&srv, &ag, "engram", "Hello engram").await;
    let (_, body) = invoke(
        &srv,
        &ag,
        json!({"message": "what did I tell engram?", "session_id": "s2"}),
    )
    .await;
    let content = body["content"].as_str().unwrap();
    assert!(content.contains("offline model"), "{content}");
    assert!(
        content.contains("Hello engram"),
        "memory of earlier sessions: {content}"
    );
}

#[tokio::test]
async fn memory_of_earlier_sessions_reaches_the_upstream_prompt() {
    let oa = ModelPeer::start(Wire::OpenAi).await;
    let srv = server_with(Some(&oa), None).await;
    let ag = agent(&srv, &srv.key, "gpt-test", None, 30, &[]).await;
    let (s, _) = invoke(
        &srv,
        &ag,
        json!({"message": "My favourite colour is teal.", "session_id": "monday"}),
    )
    .await;
    assert_eq!(s, 200);
    wait_memory(&srv, &ag, "colour", "teal").await;
    let other = agent(&srv, &srv.key, "gpt-test", None, 30, &[]).await;
    let (s, _) = invoke(
        &srv,
        &other,
        json!({"message": "I prefer crimson.", "session_id": "x"}),
    )
    .await;
    assert_eq!(s, 200);
    let (s, _) = invoke(
        &srv,
        &ag,
        json!({"message": "Which colour?", "session_id": "tuesday"}),
    )
    .await;
    assert_eq!(s, 200);
    let req = oa.requests().pop().unwrap();
    let system = system_prompt_of(Wire::OpenAi, &req);
    assert!(system.contains("teal"), "{system}");
    assert!(
        !system.contains("crimson"),
        "another agent's memory leaked: {system}"
    );
    // A new session carries no history: only the system prompt and the question.
    assert_eq!(req["messages"].as_array().unwrap().len(), 2);
}

#[tokio::test]
async fn a_session_sends_its_history() {
    let an = ModelPeer::start(Wire::Anthropic).await;
    let srv = server_with(None, Some(&an)).await;
    let ag = agent(&srv, &srv.key, "claude-test", None, 30, &[]).await;
    let (_, b1) = invoke(
        &srv,
        &ag,
        json!({"message": "one", "session_id": "user-123"}),
    )
    .await;
    assert_eq!(b1["session_id"], "user-123");
    let (_, b2) = invoke(
        &srv,
        &ag,
        json!({"message": "two", "session_id": "user-123"}),
    )
    .await;
    assert_eq!(b2["content"], "echo: two");
    let req = an.requests().pop().unwrap();
    let msgs = req["messages"].as_array().unwrap();
    let texts: Vec<&str> = msgs
        .iter()
        .map(|m| match &m["content"] {
            Value::String(s) => s.as_str(),
            blocks => blocks[0]["text"].as_str().unwrap_or(""),
        })
        .collect();
    assert_eq!(texts, vec!["one", "echo: one", "two"]);
    assert_eq!(msgs[1]["role"], "assistant");
}

#[tokio::test]
async fn upstream_failures_and_timeouts_are_502_and_504() {
    let oa = ModelPeer::start(Wire::OpenAi).await;
    let srv = server_with(Some(&oa), None).await;
    let ag = agent(&srv, &srv.key, "gpt-test", None, 30, &[]).await;
    let (status, body) = invoke(&srv, &ag, json!({"message": "[fail]"})).await;
    assert_eq!(status, 502, "{body}");
    assert_eq!(body["error"], "upstream_error");
    let msg = body["message"].as_str().unwrap();
    assert!(msg.contains("500") && msg.contains("overloaded"), "{msg}");
    // The per-call timeout overrides the agent's 30 s.
    let (status, body) = invoke(&srv, &ag, json!({"message": "[slow]", "timeout": 5})).await;
    assert_eq!(status, 504, "{body}");
    assert_eq!(body["error"], "timeout");
    let agent = ag.clone();
    let statuses: Vec<String> = srv
        .state()
        .db
        .read(move |c| {
            c.test_column(
                "SELECT status FROM invocations WHERE agent_id = ?1 ORDER BY created_at, status",
                &[&agent],
            )
        })
        .await
        .unwrap();
    assert_eq!(statuses, ["error", "timeout"]);
    // Streamed failures end the stream with an error event.
    let mut sse = stream(&srv, &ag, json!({"message": "[fail]", "stream": true})).await;
    let events = sse.rest().await;
    assert_eq!(events[0].0, "error");
    assert_eq!(
        serde_json::from_str::<Value>(&events[0].1).unwrap()["error"],
        "upstream_error"
    );
    assert_eq!(events.last().unwrap().1, "[DONE]");
}

#[tokio::test]
async fn an_unreachable_connector_is_reported_not_fatal() {
    let dead = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        format!("http://{}/mcp", l.local_addr().unwrap())
    };
    let oa = ModelPeer::start(Wire::OpenAi).await;
    let srv = server_with(Some(&oa), None).await;
    let ag = agent(&srv, &srv.key, "gpt-test", None, 30, &[("gone", &dead)]).await;
    let (status, body) = invoke(&srv, &ag, json!({"message": "hi"})).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["content"], "echo: hi");
    assert_eq!(body["connector_errors"][0]["connector"], "gone");
    assert!(body["connector_errors"][0]["error"]
        .as_str()
        .unwrap()
        .contains("unreachable"));
    // A scripted call to it comes back as an error result.
    let script = json!([{"match": ".", "reply": "got: {{tool_result}}",
                         "tool": {"connector": "gone", "name": "ping"}}]);
    let ag = agent(
        &srv,
        &srv.key,
        "offline",
        Some(script),
        30,
        &[("gone", &dead)],
    )
    .await;
    let (status, body) = invoke(&srv, &ag, json!({"message": "ping"})).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["tools_called"][0]["is_error"], true);
    assert!(
        body["content"].as_str().unwrap().contains("unreachable"),
        "{body}"
    );
}

#[tokio::test]
async fn a_client_that_leaves_mid_stream_cancels_and_the_turn_is_recorded() {
    let oa = ModelPeer::start(Wire::OpenAi).await;
    let srv = server_with(Some(&oa), None).await;
    let ag = agent(&srv, &srv.key, "gpt-test", None, 60, &[]).await;
    let mut sse = stream(
        &srv,
        &ag,
        json!({"message": "[hold] then leave", "stream": true, "session_id": "gone"}),
    )
    .await;
    let first = sse.next().await.unwrap();
    assert_eq!(first.0, "chunk");
    drop(sse);
    wait_for(
        "the upstream call to be cancelled",
        Duration::from_secs(20),
        || async { (oa.cancelled() == 1).then_some(()) },
    )
    .await;
    let status = wait_for(
        "the turn to be recorded",
        Duration::from_secs(20),
        || async {
            one::<String>(
                &srv,
                "SELECT status FROM invocations WHERE agent_id = ?1",
                ag.clone(),
            )
            .await
        },
    )
    .await;
    assert_eq!(status, "cancelled");
    let reply: Option<String> = one(
        &srv,
        "SELECT content FROM agent_messages WHERE session_id = 'gone' AND role = ?1",
        "assistant".to_string(),
    )
    .await;
    assert_eq!(
        reply.as_deref(),
        Some("first "),
        "what was produced is recorded"
    );
}

#[tokio::test]
async fn another_tenants_agent_is_not_found() {
    let srv = TestServer::start().await;
    let ag = agent(&srv, &srv.key, "offline", None, 30, &[]).await;
    let other = srv.create_tenant("other", engram::plans::Plan::Pro).await;
    let (status, body) = send(
        srv.req_as(&other, Method::POST, &format!("/v1/agents/{ag}/invoke"))
            .json(&json!({"message": "hi"})),
    )
    .await;
    assert_eq!(status, 404, "{body}");
    assert_eq!(body["error"], "not_found");
    let (status, _) = invoke(&srv, "ag_missing", json!({"message": "hi"})).await;
    assert_eq!(status, 404);
    // A key without agents:invoke is refused.
    let key = srv.create_key(&["read"]).await;
    let (status, _) = json_of(
        srv.req_as(&key, Method::POST, &format!("/v1/agents/{ag}/invoke"))
            .json(&json!({"message": "hi"}))
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(status, 403);
}
