//! The memory gateway `POST /v1/chat/completions`: memory injected as a system message, the call
//! proxied to an OpenAI-compatible or (translated) Anthropic peer on loopback, streamed chunk by
//! chunk, the exchange captured into the session; the outbound policy on `X-LLM-Base-URL`; the
//! operator's key never sent to a base URL the caller chose; upstream bodies never relayed.

use crate::invoke::peers::{ModelPeer, Wire};
use crate::security::raw::Target;
use crate::support::{run_python, send, wait_for, TestServer};
use reqwest::Method;
use serde_json::{json, Value};
use std::time::Duration;

async fn server() -> TestServer {
    TestServer::start_with(|c| {
        c.outbound.allow.push("127.0.0.1".parse().unwrap());
        c.auto_learn_every = 0;
    })
    .await
}

/// Stores a memory and waits until synthesize finds it.
async fn remember(srv: &TestServer, text: &str, query: &str) {
    let (s, b) = srv
        .post(
            "/v1/capture",
            json!({"type": "message", "sessionId": "earlier",
                   "payload": {"role": "user", "content": text}}),
        )
        .await;
    assert_eq!(s, 202, "{b}");
    wait_for(
        "the memory to be searchable",
        Duration::from_secs(30),
        || async {
            let (_, b) = srv.post("/v1/synthesize", json!({"query": query})).await;
            (b["data"]["entries"]
                .as_array()
                .is_some_and(|e| !e.is_empty()))
            .then_some(())
        },
    )
    .await;
}

async fn session_events(srv: &TestServer, session: &str, n: usize) -> Vec<Value> {
    wait_for(
        "the exchange to be captured",
        Duration::from_secs(30),
        || async {
            let (_, b) = srv
                .get(&format!("/v1/events?sessionId={session}&order=asc"))
                .await;
            let items = b["data"]["items"].as_array().cloned().unwrap_or_default();
            (items.len() >= n).then_some(items)
        },
    )
    .await
}

fn chat(
    srv: &TestServer,
    upstream: &str,
    provider: &str,
    session: &str,
    body: Value,
) -> reqwest::RequestBuilder {
    srv.req(Method::POST, "/v1/chat/completions")
        .header("x-llm-base-url", upstream)
        .header("x-llm-api-key", "sk-upstream")
        .header("x-llm-provider", provider)
        .header("x-hippocortex-session", session)
        .json(&body)
}

#[tokio::test]
async fn an_openai_peer_gets_memory_and_the_exchange_is_captured() {
    let peer = ModelPeer::start(Wire::OpenAi).await;
    let srv = server().await;
    remember(
        &srv,
        "We decided the deploy window is Tuesday 14:00 UTC",
        "deploy window",
    )
    .await;
    let resp = chat(
        &srv,
        &peer.base_url(),
        "openai",
        "gw-1",
        json!({"model": "gpt-test", "messages": [
            {"role": "system", "content": "Be brief."},
            {"role": "user", "content": "when is the deploy window"}]}),
    )
    .send()
    .await
    .unwrap();
    assert_eq!(resp.status(), 200);
    let entries: u64 = resp.headers()["x-hippocortex-memory-entries"]
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    assert!(entries >= 1);
    assert_eq!(resp.headers()["x-hippocortex-session"], "gw-1");
    let b: Value = resp.json().await.unwrap();
    assert_eq!(b["object"], "chat.completion", "{b}");
    assert_eq!(
        b["choices"][0]["message"]["content"],
        "echo: when is the deploy window"
    );
    // The upstream saw the memory merged into the first system message.
    let sent = peer.requests().last().unwrap().clone();
    let system = sent["messages"][0]["content"].as_str().unwrap();
    assert!(
        system.starts_with("[Hippocortex Memory Context]"),
        "{system}"
    );
    assert!(
        system.contains("Tuesday 14:00") && system.ends_with("Be brief."),
        "{system}"
    );
    assert_eq!(sent["messages"].as_array().unwrap().len(), 2);
    let events = session_events(&srv, "gw-1", 2).await;
    assert_eq!(events[0]["payload"]["content"], "when is the deploy window");
    assert_eq!(events[1]["payload"]["role"], "assistant");
    assert_eq!(
        events[1]["payload"]["content"],
        "echo: when is the deploy window"
    );
    srv.shutdown().await;
}

#[tokio::test]
async fn streams_pass_through_and_tool_calls_are_captured() {
    let peer = ModelPeer::start(Wire::OpenAi).await;
    let srv = server().await;
    let resp = chat(
        &srv,
        &peer.base_url(),
        "openai",
        "gw-2",
        json!({"model": "gpt-test", "stream": true,
               "messages": [{"role": "user", "content": "stream this"}]}),
    )
    .send()
    .await
    .unwrap();
    assert_eq!(resp.status(), 200);
    assert_eq!(resp.headers()["content-type"], "text/event-stream");
    let text = resp.text().await.unwrap();
    let mut content = String::new();
    for line in text.lines().filter_map(|l| l.strip_prefix("data: ")) {
        if line.trim() == "[DONE]" {
            continue;
        }
        // Passed through as the peer sent it.
        let v: Value = serde_json::from_str(line).unwrap();
        content.push_str(v["choices"][0]["delta"]["content"].as_str().unwrap_or(""));
    }
    assert_eq!(content, "echo: stream this");
    assert!(text.trim_end().ends_with("data: [DONE]"));
    let events = session_events(&srv, "gw-2", 2).await;
    assert_eq!(events[1]["payload"]["content"], "echo: stream this");
    // Tool calls come back to the client and are captured as tool_call events.
    let (s, b) = send(chat(
        &srv,
        &peer.base_url(),
        "openai",
        "gw-3",
        json!({"model": "gpt-test", "messages": [{"role": "user", "content": "[tool:add {\"a\": 1}]"}],
               "tools": [{"type": "function", "function": {"name": "add", "parameters": {"type": "object"}}}]}),
    ))
    .await;
    assert_eq!(s, 200, "{b}");
    assert_eq!(
        b["choices"][0]["message"]["tool_calls"][0]["function"]["name"],
        "add"
    );
    let events = session_events(&srv, "gw-3", 2).await;
    let tool = events
        .iter()
        .find(|e| e["type"] == "tool_call")
        .expect("a tool_call event");
    assert_eq!(tool["payload"]["tool_name"], "add");
    srv.shutdown().await;
}

#[tokio::test]
async fn an_anthropic_peer_is_reached_through_translation() {
    let peer = ModelPeer::start(Wire::Anthropic).await;
    let srv = server().await;
    let (s, b) = send(chat(
        &srv,
        &peer.base_url(),
        "anthropic",
        "gw-4",
        json!({"model": "claude-test", "max_tokens": 100,
               "messages": [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "hello there"}]}),
    ))
    .await;
    assert_eq!(s, 200, "{b}");
    assert_eq!(b["object"], "chat.completion");
    assert_eq!(b["choices"][0]["message"]["content"], "echo: hello there");
    let sent = peer.requests().last().unwrap().clone();
    assert_eq!(sent["system"], "Be brief.", "{sent}");
    assert_eq!(sent["max_tokens"], 100);
    // Streamed: OpenAI chunks made from the Anthropic stream.
    let resp = chat(
        &srv,
        &peer.base_url(),
        "anthropic",
        "gw-5",
        json!({"model": "claude-test", "stream": true, "messages": [{"role": "user", "content": "stream me"}]}),
    )
    .send()
    .await
    .unwrap();
    assert_eq!(resp.status(), 200);
    let text = resp.text().await.unwrap();
    let content: String = text
        .lines()
        .filter_map(|l| l.strip_prefix("data: "))
        .filter(|l| l.trim() != "[DONE]")
        .filter_map(|l| serde_json::from_str::<Value>(l).ok())
        .filter_map(|v| {
            v["choices"][0]["delta"]["content"]
                .as_str()
                .map(str::to_string)
        })
        .collect();
    assert_eq!(content, "echo: stream me");
    assert!(text.contains("\"finish_reason\":\"stop\""), "{text}");
    let events = session_events(&srv, "gw-5", 2).await;
    assert_eq!(events[1]["payload"]["content"], "echo: stream me");
    srv.shutdown().await;
}

#[tokio::test]
async fn the_outbound_policy_applies_and_upstream_bodies_are_not_relayed() {
    let target = Target::start(401, None).await;
    // No loopback allowed: the caller's base URL is refused before anything is called.
    let srv = TestServer::start_with(|c| {
        c.openai_api_key = Some("sk-operator-secret".into());
    })
    .await;
    let (s, b) = send(chat(
        &srv,
        &format!("http://127.0.0.1:{}/v1", target.port),
        "openai",
        "gw-6",
        json!({"model": "m", "messages": [{"role": "user", "content": "hi"}]}),
    ))
    .await;
    assert_eq!(s, 400, "{b}");
    assert!(
        b["error"]["message"].as_str().unwrap().contains("loopback"),
        "{b}"
    );
    assert_eq!(b["error"]["type"], "invalid_request_error");
    assert_eq!(target.count(), 0);
    srv.shutdown().await;
    // Allowed, but answering 401 with a body: the status comes back, the body does not, and the
    // operator's key is not sent to a base the caller chose.
    let port = target.port;
    let srv = TestServer::start_with(move |c| {
        c.openai_api_key = Some("sk-operator-secret".into());
        c.outbound
            .allow
            .push(format!("127.0.0.1:{port}").parse().unwrap());
    })
    .await;
    let (s, b) = send(
        srv.req(Method::POST, "/v1/chat/completions")
            .header("x-llm-base-url", format!("http://127.0.0.1:{port}"))
            .json(&json!({"model": "m", "messages": [{"role": "user", "content": "hi"}]})),
    )
    .await;
    assert_eq!(s, 401, "{b}");
    assert_eq!(b["error"]["type"], "upstream_error", "{b}");
    assert!(!b.to_string().contains("INTERNAL-ONLY"), "{b}");
    let heads = target.heads();
    assert_eq!(heads.len(), 1);
    assert!(
        heads[0].starts_with("POST /v1/chat/completions "),
        "{}",
        heads[0]
    );
    assert!(!heads[0].contains("sk-operator-secret"), "{}", heads[0]);
    // Bad requests are OpenAI-shaped too.
    let (s, b) = srv
        .post(
            "/v1/chat/completions",
            json!({"model": "m", "messages": []}),
        )
        .await;
    assert_eq!(
        (s, b["error"]["type"].as_str()),
        (400, Some("invalid_request_error")),
        "{b}"
    );
    srv.shutdown().await;
}

#[tokio::test]
async fn the_openai_python_package_works_against_the_gateway() {
    for (wire, provider) in [(Wire::OpenAi, "openai"), (Wire::Anthropic, "anthropic")] {
        let peer = ModelPeer::start(wire).await;
        let srv = server().await;
        remember(
            &srv,
            "The deploy window is Tuesday 14:00 UTC",
            "deploy window",
        )
        .await;
        let (base, key, upstream) = (format!("{}/v1", srv.base), srv.key.clone(), peer.base_url());
        let provider_s = provider.to_string();
        let out = tokio::task::spawn_blocking(move || {
            run_python(
                "gateway_openai.py",
                &[
                    ("ENGRAM_BASE_URL", &base),
                    ("ENGRAM_KEY", &key),
                    ("UPSTREAM", &upstream),
                    ("PROVIDER", &provider_s),
                    ("SESSION", "py-gw"),
                ],
            )
        })
        .await
        .unwrap();
        let v: Value = serde_json::from_str(out.trim()).unwrap();
        assert_eq!(
            v["content"], "echo: what did we decide about the deploy window",
            "{provider}: {v}"
        );
        assert_ne!(v["memory_entries"], "0", "{provider}: {v}");
        assert_eq!(v["session"], "py-gw");
        assert_eq!(
            v["streamed"], "echo: stream the deploy window please",
            "{provider}: {v}"
        );
        assert_eq!(v["tool"][0]["name"], "add", "{provider}: {v}");
        assert_eq!(
            v["tool"][0]["arguments"],
            json!({"a": 20, "b": 22}),
            "{provider}: {v}"
        );
        srv.shutdown().await;
    }
}

/// The SDK's integrations around real provider clients: `wrap()` of an OpenAI and of an
/// Anthropic client, and `import hippocortex.auto`. Each captures the exchange into engram, and
/// the next call's system prompt carries what was captured. engram's base URL is given with and
/// without `/v1` (without it, every call used to 404, silently inside `wrap()`).
#[tokio::test]
async fn the_sdks_integrations_capture_and_recall_through_engram() {
    let srv = server().await;
    let cases = [
        ("wrap", Wire::OpenAi, true),
        ("wrap", Wire::OpenAi, false),
        ("wrap", Wire::Anthropic, true),
        ("auto", Wire::OpenAi, true),
        ("auto", Wire::Anthropic, false),
    ];
    for (n, (mode, wire, v1)) in cases.into_iter().enumerate() {
        let peer = ModelPeer::start(wire).await;
        let provider = if wire == Wire::OpenAi {
            "openai"
        } else {
            "anthropic"
        };
        let base = if v1 {
            format!("{}/v1", srv.base)
        } else {
            srv.base.clone()
        };
        let session = format!("sdk-{mode}-{provider}-{n}");
        let run = |message: String| {
            let env: Vec<(String, String)> = vec![
                ("MODE".into(), mode.into()),
                ("PROVIDER".into(), provider.into()),
                ("ENGRAM_BASE_URL".into(), base.clone()),
                ("ENGRAM_KEY".into(), srv.key.clone()),
                ("UPSTREAM".into(), peer.base_url()),
                ("SESSION".into(), session.clone()),
                ("MESSAGE".into(), message),
            ];
            tokio::task::spawn_blocking(move || {
                let env: Vec<(&str, &str)> =
                    env.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
                run_python("sdk_wrap.py", &env)
            })
        };
        let word = format!("canary{n}");
        let fact = format!("remember: the {word} window is Friday");
        let out = run(fact.clone()).await.unwrap();
        let v: Value = serde_json::from_str(out.trim()).unwrap();
        assert_eq!(v["content"], format!("echo: {fact}"), "{session}");
        if mode == "wrap" {
            // Both sides of the exchange, in the session wrap() was given.
            let events = session_events(&srv, &session, 2).await;
            assert_eq!(events[0]["payload"]["content"], fact.as_str(), "{session}");
            assert_eq!(events[1]["payload"]["role"], "assistant", "{session}");
        }
        wait_for(
            "the fact to be searchable",
            Duration::from_secs(30),
            || async {
                let (_, b) = srv
                    .post("/v1/synthesize", json!({"query": format!("{word} window")}))
                    .await;
                b["data"]["entries"]
                    .to_string()
                    .contains(&word)
                    .then_some(())
            },
        )
        .await;
        // The next call's system prompt carries it.
        run(format!("when is the {word} window?")).await.unwrap();
        let sent = peer.requests().last().unwrap().clone();
        let system = match wire {
            Wire::OpenAi => sent["messages"][0]["content"]
                .as_str()
                .unwrap_or("")
                .to_string(),
            Wire::Anthropic => sent["system"].as_str().unwrap_or("").to_string(),
        };
        assert!(
            system.starts_with("[Hippocortex Memory Context]"),
            "{session}: {sent}"
        );
        assert!(system.contains(&word), "{session}: {system}");
    }
    srv.shutdown().await;
}

/// The SDK's LangGraph adapter around a real LangGraph graph (pinned `langgraph`): the run is
/// captured into engram, and the next run's input carries the memory as a system message.
#[tokio::test]
async fn the_sdks_langgraph_adapter_captures_and_recalls_through_engram() {
    let srv = server().await;
    let run = |message: &str| {
        let env: Vec<(String, String)> = vec![
            ("ENGRAM_BASE_URL".into(), format!("{}/v1", srv.base)),
            ("ENGRAM_KEY".into(), srv.key.clone()),
            ("SESSION".into(), "sdk-langgraph".into()),
            ("MESSAGE".into(), message.into()),
        ];
        tokio::task::spawn_blocking(move || {
            let env: Vec<(&str, &str)> =
                env.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
            run_python("sdk_langgraph.py", &env)
        })
    };
    let fact = "remember: the graphcanary window is Friday";
    let out = run(fact).await.unwrap();
    let v: Value = serde_json::from_str(out.trim()).unwrap();
    assert!(
        v["content"]
            .as_str()
            .unwrap()
            .starts_with(&format!("echo: {fact}")),
        "{v}"
    );
    let events = session_events(&srv, "sdk-langgraph", 2).await;
    assert_eq!(events[0]["payload"]["content"], fact);
    assert_eq!(events[1]["payload"]["role"], "assistant");
    wait_for(
        "the fact to be searchable",
        Duration::from_secs(30),
        || async {
            let (_, b) = srv
                .post("/v1/synthesize", json!({"query": "graphcanary window"}))
                .await;
            b["data"]["entries"]
                .to_string()
                .contains("graphcanary")
                .then_some(())
        },
    )
    .await;
    let out = run("when is the graphcanary window?").await.unwrap();
    let v: Value = serde_json::from_str(out.trim()).unwrap();
    let content = v["content"].as_str().unwrap();
    let system = content.split("system: ").nth(1).unwrap_or("");
    assert!(
        system.contains("graphcanary") && system.contains("Friday"),
        "{content}"
    );
    srv.shutdown().await;
}

/// A client that hangs up mid-stream cancels the upstream call, and what came is captured.
#[tokio::test]
async fn a_client_that_hangs_up_cancels_the_upstream_and_what_came_is_captured() {
    for (wire, provider) in [(Wire::OpenAi, "openai"), (Wire::Anthropic, "anthropic")] {
        let peer = ModelPeer::start(wire).await;
        let srv = server().await;
        let session = format!("gw-hangup-{provider}");
        let mut resp = chat(
            &srv,
            &peer.base_url(),
            provider,
            &session,
            json!({"model": "m", "stream": true, "max_tokens": 50,
                   "messages": [{"role": "user", "content": "[hold] tell me"}]}),
        )
        .send()
        .await
        .unwrap();
        assert_eq!(resp.status(), 200);
        // Read until the first text arrives, then hang up.
        let mut seen = String::new();
        while !seen.contains("first") {
            let chunk = tokio::time::timeout(Duration::from_secs(20), resp.chunk())
                .await
                .expect("a first chunk")
                .unwrap()
                .expect("more body");
            seen.push_str(&String::from_utf8_lossy(&chunk));
        }
        drop(resp);
        wait_for(
            "the upstream call to be cancelled",
            Duration::from_secs(20),
            || async { (peer.cancelled() >= 1).then_some(()) },
        )
        .await;
        let events = session_events(&srv, &session, 2).await;
        assert_eq!(
            events[0]["payload"]["content"], "[hold] tell me",
            "{provider}"
        );
        assert_eq!(
            events[1]["payload"]["content"], "first ",
            "{provider}: {events:?}"
        );
        srv.shutdown().await;
    }
}
