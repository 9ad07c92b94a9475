//! Fixture features of the operator API: the request journal (what was asked, by whom, with what
//! answer; bodies only when asked and then redacted), injected faults (delay, status, body,
//! probability, times; a faulted request stores nothing), and scripted agents' delays, errors,
//! templates and field checks.

use crate::support::{send, TestServer};
use reqwest::Method;
use serde_json::{json, Value};
use std::time::{Duration, Instant};

const TOKEN: &str = "operator-token-0123456789";

async fn server(bodies: bool) -> TestServer {
    TestServer::start_with(move |c| {
        c.admin_token = Some(TOKEN.into());
        c.auto_learn_every = 0;
        c.journal_bodies = bodies;
    })
    .await
}

async fn admin(srv: &TestServer, m: Method, path: &str, body: Option<Value>) -> (u16, Value) {
    let rb = srv.req_as(TOKEN, m, path);
    send(match body {
        Some(b) => rb.json(&b),
        None => rb,
    })
    .await
}

async fn journal(srv: &TestServer, query: &str) -> Vec<Value> {
    let (s, b) = admin(
        srv,
        Method::GET,
        &format!("/v1/admin/requests{query}"),
        None,
    )
    .await;
    assert_eq!(s, 200, "{b}");
    b["data"]["requests"].as_array().unwrap().clone()
}

#[tokio::test]
async fn the_journal_records_requests_newest_first_with_filters() {
    let srv = server(false).await;
    let capture =
        json!({"type": "message", "sessionId": "s1", "payload": {"content": "hello journal"}});
    let (s, _) = srv.post("/v1/capture", capture.clone()).await;
    assert_eq!(s, 202);
    let (s, _) = srv.get("/v1/agents/ag_missing").await;
    assert_eq!(s, 404);
    let (s, _) = send(srv.http.get(srv.url("/v1/me"))).await;
    assert_eq!(s, 401);
    let all = journal(&srv, "").await;
    assert_eq!(
        all.len(),
        3,
        "the operator API's own requests are not recorded: {all:?}"
    );
    assert_eq!(all[0]["route"], "/v1/me");
    assert_eq!(all[0]["status"], 401);
    assert_eq!(all[0]["tenantId"], Value::Null);
    assert_eq!(all[1]["path"], "/v1/agents/ag_missing");
    assert_eq!(all[1]["route"], "/v1/agents/{id}");
    let cap = &all[2];
    assert_eq!(cap["method"], "POST");
    assert_eq!(cap["status"], 202);
    assert!(cap["tenantId"].as_str().unwrap().starts_with("ten_"));
    assert!(cap["keyId"].as_str().unwrap().starts_with("key_"));
    assert_eq!(
        cap["requestBytes"].as_u64().unwrap(),
        serde_json::to_vec(&capture).unwrap().len() as u64
    );
    assert!(cap["responseBytes"].as_u64().unwrap() > 20);
    assert!(
        cap.get("requestBody").is_none(),
        "bodies only with --journal-bodies"
    );

    assert_eq!(journal(&srv, "?status=4xx").await.len(), 2);
    assert_eq!(journal(&srv, "?route=/v1/agents/{id}").await.len(), 1);
    assert_eq!(
        journal(&srv, "?route=/v1/agents/ag_missing&method=get")
            .await
            .len(),
        1
    );
    let tenant = cap["tenantId"].as_str().unwrap();
    assert_eq!(journal(&srv, &format!("?tenant={tenant}")).await.len(), 2);
    assert_eq!(journal(&srv, "?limit=1").await.len(), 1);
    let (s, b) = admin(&srv, Method::GET, "/v1/admin/requests?status=6xx", None).await;
    assert_eq!(s, 400, "{b}");
    assert!(b["error"]["message"].as_str().unwrap().contains("status"));

    let (s, b) = admin(&srv, Method::DELETE, "/v1/admin/requests", None).await;
    assert_eq!((s, b["data"]["cleared"].as_u64()), (200, Some(3)));
    assert!(journal(&srv, "").await.is_empty());
    srv.shutdown().await;
}

#[tokio::test]
async fn journal_bodies_are_kept_only_when_asked_and_never_show_secrets() {
    let srv = server(true).await;
    let (s, b) = srv
        .post(
            "/v1/api-keys",
            json!({"name": "ci key", "scopes": ["read"]}),
        )
        .await;
    assert_eq!(s, 201, "{b}");
    let secret_key = b["data"]["key"].as_str().unwrap().to_string();
    let (s, _) = srv
        .post(
            "/v1/capture",
            json!({"type": "message", "sessionId": "s1",
                   "payload": {"content": format!("my key is {secret_key}"), "password": "hunter2"}}),
        )
        .await;
    assert_eq!(s, 202);
    let all = journal(&srv, "").await;
    let text = serde_json::to_string(&all).unwrap();
    assert!(!text.contains(&secret_key[8..]), "a key leaked: {text}");
    assert!(!text.contains("hunter2"), "a password leaked: {text}");
    let cap = &all[0];
    assert_eq!(cap["requestBody"]["type"], "message");
    assert_eq!(cap["requestBody"]["payload"]["password"], "[redacted]");
    assert!(cap["requestBody"]["payload"]["content"]
        .as_str()
        .unwrap()
        .starts_with("my key is hk_"));
    assert_eq!(cap["responseBody"]["ok"], true);
    assert_eq!(all[1]["responseBody"]["data"]["key"], "[redacted]");
    srv.shutdown().await;
}

#[tokio::test]
async fn faults_delay_fail_and_run_out() {
    let srv = server(false).await;
    let synth = json!({"query": "anything"});
    // An error in the route family's format, twice, then the real answer.
    let (s, f) = admin(
        &srv,
        Method::POST,
        "/v1/admin/faults",
        Some(json!({"method": "POST", "route": "/v1/synthesize", "status": 503, "times": 2})),
    )
    .await;
    assert_eq!(s, 201, "{f}");
    let fault_id = f["data"]["id"].as_str().unwrap().to_string();
    for _ in 0..2 {
        let (s, b) = srv.post("/v1/synthesize", synth.clone()).await;
        assert_eq!(s, 503);
        assert_eq!(b["ok"], false);
        assert_eq!(b["error"]["code"], "unavailable");
    }
    let (s, _) = srv.post("/v1/synthesize", synth.clone()).await;
    assert_eq!(s, 200, "the fault ran out");
    let (_, list) = admin(&srv, Method::GET, "/v1/admin/faults", None).await;
    assert_eq!(list["data"]["total"], 0);
    let faulted = journal(&srv, "?status=503").await;
    assert_eq!(faulted.len(), 2);
    assert_eq!(faulted[0]["faultId"], fault_id.as_str());

    // A registry route fails in the registry's format; a given body is sent as is.
    let (s, _) = admin(
        &srv,
        Method::POST,
        "/v1/admin/faults",
        Some(json!({"route": "/v1/agents/{id}", "status": 500})),
    )
    .await;
    assert_eq!(s, 201);
    let (s, b) = srv.get("/v1/agents/ag_x").await;
    assert_eq!((s, b["error"].as_str()), (500, Some("internal_error")));
    let (s, _) = admin(
        &srv,
        Method::POST,
        "/v1/admin/faults",
        Some(json!({"route": "/v1/me", "status": 418, "body": {"teapot": true}})),
    )
    .await;
    assert_eq!(s, 201);
    let (s, b) = srv.get("/v1/me").await;
    assert_eq!((s, b), (418, json!({"teapot": true})));

    // A faulted capture stores nothing.
    let (s, _) = admin(
        &srv,
        Method::POST,
        "/v1/admin/faults",
        Some(json!({"route": "/v1/capture", "status": 500, "times": 1})),
    )
    .await;
    assert_eq!(s, 201);
    let event = json!({"type": "message", "sessionId": "f1", "payload": {"content": "lost"}});
    let (s, _) = srv.post("/v1/capture", event.clone()).await;
    assert_eq!(s, 500);
    let (_, events) = srv.get("/v1/events?sessionId=f1").await;
    assert_eq!(
        events["data"]["events"].as_array().map(Vec::len),
        Some(0),
        "{events}"
    );

    // A delay alone: the real answer, later.
    let (s, _) = admin(
        &srv,
        Method::POST,
        "/v1/admin/faults",
        Some(json!({"route": "/v1/capture", "delayMs": 300, "times": 1})),
    )
    .await;
    assert_eq!(s, 201);
    let t = Instant::now();
    let (s, _) = srv.post("/v1/capture", event).await;
    assert_eq!(s, 202);
    assert!(t.elapsed() >= Duration::from_millis(300));

    // Listing, deleting one and all.
    let (_, list) = admin(&srv, Method::GET, "/v1/admin/faults", None).await;
    let faults = list["data"]["faults"].as_array().unwrap().clone();
    assert_eq!(faults.len(), 2);
    assert_eq!(faults[0]["route"], "/v1/agents/{id}");
    assert_eq!(faults[0]["hits"], 1);
    let first = faults[0]["id"].as_str().unwrap();
    let (s, _) = admin(
        &srv,
        Method::DELETE,
        &format!("/v1/admin/faults/{first}"),
        None,
    )
    .await;
    assert_eq!(s, 200);
    let (s, _) = admin(
        &srv,
        Method::DELETE,
        &format!("/v1/admin/faults/{first}"),
        None,
    )
    .await;
    assert_eq!(s, 404);
    let (s, b) = admin(&srv, Method::DELETE, "/v1/admin/faults", None).await;
    assert_eq!((s, b["data"]["deleted"].as_u64()), (200, Some(1)));
    let (s, _) = srv.get("/v1/me").await;
    assert_eq!(s, 200);
    srv.shutdown().await;
}

#[tokio::test]
async fn bad_faults_are_refused_naming_the_field_and_need_the_token() {
    let srv = server(false).await;
    for (body, field) in [
        (
            json!({"route": "/v1/capture", "status": 503, "delay": 10}),
            "delay",
        ),
        (json!({"status": 503}), "route"),
        (json!({"route": "/v1/capture", "status": 99}), "status"),
        (
            json!({"route": "/v1/capture", "status": 500, "probability": 1.5}),
            "probability",
        ),
        (
            json!({"route": "/v1/capture", "status": 500, "times": 0}),
            "times",
        ),
        (json!({"route": "/v1/capture", "delayMs": -1}), "delayMs"),
        (json!({"route": "/v1/admin/reset", "status": 500}), "route"),
        (json!({"route": "/v1/capture"}), "status"),
    ] {
        let (s, b) = admin(&srv, Method::POST, "/v1/admin/faults", Some(body.clone())).await;
        assert_eq!(s, 422, "{body} → {b}");
        let fields: Vec<&str> = b["error"]["details"]
            .as_array()
            .unwrap()
            .iter()
            .filter_map(|d| d["field"].as_str())
            .collect();
        assert!(fields.contains(&field), "{body} → {b}");
    }
    let (s, _) = send(
        srv.req(Method::POST, "/v1/admin/faults")
            .json(&json!({"route": "/v1/capture", "status": 500})),
    )
    .await;
    assert_eq!(s, 401, "a tenant key cannot inject faults");
    srv.shutdown().await;
    let plain = TestServer::start().await;
    let (s, _) = plain.get("/v1/admin/faults").await;
    assert_eq!(s, 404, "without an operator token the routes do not exist");
    plain.shutdown().await;
}

async fn deploy(srv: &TestServer, script: Value) -> (u16, Value) {
    srv.post(
        "/v1/agents/deploy",
        json!({"name": "scripted", "instruction": "Follow the script.", "model": "offline",
               "script": script}),
    )
    .await
}

async fn invoke(srv: &TestServer, agent: &str, message: &str) -> (u16, Value) {
    srv.post(
        &format!("/v1/agents/{agent}/invoke"),
        json!({"message": message}),
    )
    .await
}

#[tokio::test]
async fn scripted_agents_wait_fail_and_fill_templates() {
    let srv = server(false).await;
    let (s, b) = deploy(
        &srv,
        json!([
            {"match": "^order (?P<item>\\w+) x(\\d+)$", "reply": "Ordered {{2}} of {{item}} ({{message}})."},
            {"match": "^boom", "status": 503, "reply": "model overloaded"},
            {"match": "^quota", "status": 429},
            {"match": "^slow", "reply": "done", "delay_ms": 400}
        ]),
    )
    .await;
    assert_eq!(s, 201, "{b}");
    let agent = b["id"].as_str().unwrap().to_string();
    let (_, full) = srv.get(&format!("/v1/agents/{agent}")).await;
    assert_eq!(full["script"][1]["status"], 503, "{full}");
    assert_eq!(full["script"][3]["delay_ms"], 400, "{full}");
    let (s, b) = invoke(&srv, &agent, "order tea x3").await;
    assert_eq!(s, 200, "{b}");
    assert_eq!(b["content"], "Ordered 3 of tea (order tea x3).");
    let (s, b) = invoke(&srv, &agent, "boom now").await;
    assert_eq!(s, 503, "{b}");
    assert_eq!(b["error"], "unavailable");
    assert_eq!(b["message"], "model overloaded");
    let (s, b) = invoke(&srv, &agent, "quota please").await;
    assert_eq!((s, b["error"].as_str()), (429, Some("rate_limit_exceeded")));
    let t = Instant::now();
    let (s, b) = invoke(&srv, &agent, "slow one").await;
    assert_eq!((s, b["content"].as_str()), (200, Some("done")));
    assert!(t.elapsed() >= Duration::from_millis(400));
    srv.shutdown().await;
}

#[tokio::test]
async fn unknown_script_fields_are_a_400_naming_them() {
    let srv = server(false).await;
    for (script, field) in [
        (
            json!([{"match": "a", "reply": "b", "delay": 5}]),
            "script[0].delay",
        ),
        (
            json!([{"match": "a", "reply": "b"}, {"match": "c", "reply": "d", "tool": {"connector": "x", "name": "y", "args": {}}}]),
            "script[1].tool.args",
        ),
        (
            json!([{"match": "a", "reply": "b", "status": 200}]),
            "script[0].status",
        ),
        (
            json!([{"match": "a", "reply": "b", "delay_ms": "soon"}]),
            "script[0].delay_ms",
        ),
        (json!([{"match": "a"}]), "script[0].reply"),
    ] {
        let (s, b) = deploy(&srv, script.clone()).await;
        assert_eq!(s, 400, "{script} → {b}");
        assert!(b.to_string().contains(field), "{script} → {b}");
    }
    srv.shutdown().await;
}
