//! Input echoed in errors is cut short; both `maxTokens` spellings are validated; secrets stay
//! out of the logs (JSON logs write the first-start key to a private file); a bootstrap key on
//! an existing data dir is accepted when it is a key there and loudly ignored otherwise.

use crate::support::{banner_key, send, wait_for, ChildServer, TestServer};
use reqwest::Method;
use serde_json::json;
use std::time::Duration;

#[tokio::test]
async fn input_echoed_in_errors_is_cut_short() {
    let srv = TestServer::start().await;
    let (s, p) = srv.post("/v1/projects", json!({"name": "echo"})).await;
    assert_eq!(s, 201, "{p}");
    let project = p["id"].as_str().unwrap();
    let huge = "a".repeat(100_000);
    let resp = srv
        .req(Method::POST, &format!("/v1/projects/{project}/members"))
        .json(&json!({"email": "x@example.org", "role": huge}))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 400);
    let text = resp.text().await.unwrap();
    assert!(text.len() < 2_000, "a {} byte error body", text.len());
    assert!(text.contains("unknown role"), "{text}");
    // The same on the memory side (scopes of a new key, sections of a synthesize).
    let (s, b) = srv
        .post(
            "/v1/api-keys",
            json!({"name": "x", "scopes": [huge.clone()]}),
        )
        .await;
    assert_eq!(s, 422);
    assert!(b.to_string().len() < 2_000, "{}", b.to_string().len());
    let (s, b) = srv
        .post("/v1/synthesize", json!({"query": "x", "sections": [huge]}))
        .await;
    assert_eq!(s, 422);
    assert!(b.to_string().len() < 2_000, "{}", b.to_string().len());
    srv.shutdown().await;
}

#[tokio::test]
async fn both_max_tokens_spellings_are_validated() {
    let srv = TestServer::start().await;
    for bad in [json!(-1), json!("abc"), json!({}), json!(1e30), json!(0.5)] {
        let (s, b) = srv
            .post(
                "/v1/synthesize",
                json!({"query": "x", "maxTokens": bad, "options": {"maxTokens": 500}}),
            )
            .await;
        assert_eq!(s, 422, "top-level {bad}: {b}");
        assert_eq!(b["error"]["details"][0]["field"], "maxTokens", "{b}");
        let (s, b) = srv
            .post(
                "/v1/synthesize",
                json!({"query": "x", "maxTokens": 500, "options": {"maxTokens": bad}}),
            )
            .await;
        assert_eq!(s, 422, "options {bad}: {b}");
        assert_eq!(
            b["error"]["details"][0]["field"], "options.maxTokens",
            "{b}"
        );
    }
    let (s, b) = srv
        .post(
            "/v1/synthesize",
            json!({"query": "x", "maxTokens": 300, "options": {"maxTokens": 500}}),
        )
        .await;
    assert_eq!(s, 200, "{b}");
    srv.shutdown().await;
}

#[tokio::test]
async fn secrets_stay_out_of_json_logs() {
    let dir = tempfile::tempdir().unwrap();
    let provider_key = "sk-provider-secret-0123456789";
    let child = ChildServer::start(
        dir.path(),
        &[
            ("ENGRAM_LOG_FORMAT", "json"),
            ("ENGRAM_LOG", "debug"),
            ("OPENAI_API_KEY", provider_key),
        ],
    );
    let file = dir.path().join(engram::BOOTSTRAP_KEY_FILE);
    let key = std::fs::read_to_string(&file)
        .expect("the key file")
        .trim()
        .to_string();
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(&file).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600);
    }
    let http = crate::support::client();
    for path in ["/v1/me", "/v1/api-keys", "/v1/usage"] {
        let r = http
            .get(child.url(path))
            .bearer_auth(&key)
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200, "{path}");
    }
    // A bad key too: its text must not be logged either.
    let bad = engram::store::keys::generate("hk", "live");
    let r = http
        .get(child.url("/v1/me"))
        .bearer_auth(&bad)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 401);
    let logs = wait_for("the request logs", Duration::from_secs(10), || async {
        let t = child.stderr_text();
        t.contains("request done").then_some(t)
    })
    .await;
    assert!(
        logs.contains("admin-key.txt"),
        "the log says where the key is"
    );
    for secret in [
        key.as_str(),
        &key[8..],
        provider_key,
        bad.as_str(),
        &bad[8..],
    ] {
        assert!(!logs.contains(secret), "a secret reached the log");
    }
    for line in logs
        .lines()
        .filter(|l| !l.starts_with("engram listening on"))
    {
        assert!(
            serde_json::from_str::<serde_json::Value>(line).is_ok(),
            "a plain-text line in JSON logs: {line}"
        );
    }
    child.terminate();
}

#[tokio::test]
async fn a_bootstrap_key_on_an_existing_data_dir_is_accepted_or_loudly_ignored() {
    let dir = tempfile::tempdir().unwrap();
    let first = ChildServer::start(dir.path(), &[]);
    let key = banner_key(&first.stderr_text()).expect("first-start key");
    assert!(first.terminate());
    // The key of this data dir: accepted, and it works.
    let again = ChildServer::start(dir.path(), &[("ENGRAM_BOOTSTRAP_KEY", key.as_str())]);
    let logs = wait_for("the start log", Duration::from_secs(10), || async {
        let t = again.stderr_text();
        t.contains("ENGRAM_BOOTSTRAP_KEY").then_some(t)
    })
    .await;
    assert!(logs.contains("accepted"), "{logs}");
    let (s, _) = send(
        crate::support::client()
            .get(again.url("/v1/me"))
            .bearer_auth(&key),
    )
    .await;
    assert_eq!(s, 200);
    assert!(again.terminate());
    // A key this data dir does not know: the server starts but says loudly it was ignored.
    let stranger = engram::store::keys::generate("hk", "live");
    let third = ChildServer::start(dir.path(), &[("ENGRAM_BOOTSTRAP_KEY", stranger.as_str())]);
    let logs = wait_for("the start log", Duration::from_secs(10), || async {
        let t = third.stderr_text();
        t.contains("ENGRAM_BOOTSTRAP_KEY").then_some(t)
    })
    .await;
    assert!(logs.contains("IGNORED") && logs.contains("WARN"), "{logs}");
    assert!(!logs.contains(&stranger), "the key itself is not logged");
    let (s, _) = send(
        crate::support::client()
            .get(third.url("/v1/me"))
            .bearer_auth(&stranger),
    )
    .await;
    assert_eq!(s, 401);
    assert!(third.terminate());
}
