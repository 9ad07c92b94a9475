//! Export, import and seed: a tenant with every kind of record is exported, imported into a fresh
//! server and exported again — byte-identical — and answers there as it did (its key, its pack,
//! its vault value); damaged or conflicting imports are refused naming the problem and leave
//! nothing behind; `serve --seed` imports once, and a reset of everything imports it again; the
//! CLI does the same on a data dir (vault items with the exporting server's key).

use crate::support::{run_cli, run_cli_env, send, TestServer};
use reqwest::Method;
use serde_json::{json, Value};
use std::collections::BTreeSet;

pub(crate) const TOKEN: &str = "operator-token-0123456789";
pub(crate) const VAULT_KEY: &str =
    "00112233445566778899aabbccddeeff00112233445566778899aabbccddeeff";
const OTHER_VAULT_KEY: &str = "ffeeddccbbaa99887766554433221100ffeeddccbbaa99887766554433221100";

pub(crate) async fn server(
    vault_key: &'static str,
    seed: Option<std::path::PathBuf>,
) -> TestServer {
    TestServer::start_with(move |c| {
        c.admin_token = Some(TOKEN.into());
        c.auto_learn_every = 0;
        c.vault_key = Some(vault_key.into());
        c.seed = seed;
    })
    .await
}

async fn as_key(srv: &TestServer, key: &str, m: Method, path: &str, body: Value) -> (u16, Value) {
    send(srv.req_as(key, m, path).json(&body)).await
}

async fn export(srv: &TestServer, tenant: &str) -> String {
    let resp = srv
        .req_as(
            TOKEN,
            Method::GET,
            &format!("/v1/admin/tenants/{tenant}/export"),
        )
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status().as_u16(), 200);
    assert_eq!(
        resp.headers()["content-type"].to_str().unwrap(),
        "application/x-ndjson"
    );
    resp.text().await.unwrap()
}

async fn import(srv: &TestServer, text: &str) -> (u16, Value) {
    send(
        srv.req_as(TOKEN, Method::POST, "/v1/admin/import")
            .header("content-type", "application/x-ndjson")
            .body(text.to_string()),
    )
    .await
}

/// A tenant with a record of every kind; answers (tenant id, key, vault item id).
pub(crate) async fn populate(srv: &TestServer) -> (String, String, String) {
    let (s, b) = send(
        srv.req_as(TOKEN, Method::POST, "/v1/admin/tenants")
            .json(&json!({"name": "exported"})),
    )
    .await;
    assert_eq!(s, 201, "{b}");
    let tenant = b["data"]["tenant"]["id"].as_str().unwrap().to_string();
    let key = b["data"]["key"].as_str().unwrap().to_string();
    let k = key.as_str();
    for (session, texts) in [
        (
            "trip-1",
            [
                "We booked the ferry to the lighthouse island for Saturday",
                "The ferry leaves at nine from pier four",
            ],
        ),
        (
            "trip-2",
            [
                "Grandma's lasagna recipe needs ricotta and fresh basil",
                "Bake the lasagna for forty minutes",
            ],
        ),
    ] {
        for t in texts {
            let (s, b) = as_key(
                srv,
                k,
                Method::POST,
                "/v1/capture?wait=searchable",
                json!({"type": "message", "sessionId": session, "agentId": "planner",
                       "payload": {"role": "user", "content": t}, "metadata": {"channel": "chat"}}),
            )
            .await;
            assert_eq!(s, 202, "{b}");
        }
    }
    let ops_session = |i: usize| async move {
        for (t, payload) in [
            (
                "message",
                json!({"role": "user", "content": "Restart the web deployment"}),
            ),
            (
                "command_exec",
                json!({"command": "kubectl get deploy/web", "exitCode": 0}),
            ),
            (
                "tool_call",
                json!({"tool": "kubectl", "input": {"cmd": "kubectl rollout restart deploy/web"}}),
            ),
            (
                "tool_result",
                json!({"tool": "kubectl", "output": "restarted", "success": true}),
            ),
            (
                "outcome",
                json!({"status": "success", "summary": "web restarted"}),
            ),
        ] {
            let (s, b) = as_key(
                srv,
                k,
                Method::POST,
                "/v1/capture?wait=searchable",
                json!({"type": t, "sessionId": format!("ops-{i}"), "agentId": "ops", "payload": payload}),
            )
            .await;
            assert_eq!(s, 202, "{b}");
        }
    };
    let learn = || async {
        let (s, b) = as_key(
            srv,
            k,
            Method::POST,
            "/v1/learn?wait=true",
            json!({"scope": "full"}),
        )
        .await;
        assert_eq!(s, 200, "{b}");
    };
    // Learned twice, with a run more the second time: the artifacts get a second version.
    for i in 0..3 {
        ops_session(i).await;
    }
    learn().await;
    ops_session(3).await;
    learn().await;
    let (s, p) = as_key(srv, k, Method::POST, "/v1/projects", json!({"name": "ops"})).await;
    assert_eq!(s, 201, "{p}");
    let project = p["id"].as_str().unwrap();
    let (s, b) = as_key(
        srv,
        k,
        Method::POST,
        &format!("/v1/projects/{project}/members"),
        json!({"email": "dev@example.org", "role": "DEVELOPER"}),
    )
    .await;
    assert_eq!(s, 201, "{b}");
    let (s, b) = as_key(
        srv,
        k,
        Method::POST,
        "/v1/agents/deploy",
        json!({"name": "echo", "instruction": "Echo.", "model": "offline", "project_id": project,
               "script": [{"match": "(.*)", "reply": "you said {{1}}"}]}),
    )
    .await;
    assert_eq!(s, 201, "{b}");
    let agent = b["id"].as_str().unwrap().to_string();
    let (s, b) = as_key(
        srv,
        k,
        Method::POST,
        &format!("/v1/projects/{project}/connectors"),
        json!({"name": "Internal Docs", "mcp_url": "https://mcp.example.org/", "category": "Docs"}),
    )
    .await;
    assert_eq!(s, 201, "{b}");
    let (s, b) = as_key(
        srv,
        k,
        Method::POST,
        &format!("/v1/agents/{agent}/invoke"),
        json!({"message": "hello", "session_id": "chat-1"}),
    )
    .await;
    assert_eq!(s, 200, "{b}");
    let item = vault_item(srv, k, "tok-7f3a-secret").await;
    let (s, _) = as_key(
        srv,
        k,
        Method::POST,
        "/v1/api-keys",
        json!({"name": "reader", "scopes": ["read"]}),
    )
    .await;
    assert_eq!(s, 201);
    (tenant, key, item)
}

/// A vault holding one item with `value`; answers the item's id.
async fn vault_item(srv: &TestServer, key: &str, value: &str) -> String {
    let (s, v) = as_key(
        srv,
        key,
        Method::POST,
        "/v1/vaults",
        json!({"name": "ops secrets"}),
    )
    .await;
    assert_eq!(s, 201, "{v}");
    let vault = v["data"]["id"].as_str().unwrap();
    let (s, item) = as_key(
        srv,
        key,
        Method::POST,
        &format!("/v1/vaults/{vault}/items"),
        json!({"title": "registry token", "itemType": "token", "value": value}),
    )
    .await;
    assert_eq!(s, 201, "{item}");
    item["data"]["id"].as_str().unwrap().to_string()
}

/// The vault item's value, revealed with `key`.
async fn reveal(srv: &TestServer, key: &str, item: &str) -> Value {
    let (s, v) = as_key(
        srv,
        key,
        Method::POST,
        &format!("/v1/vault/query/{item}/reveal"),
        json!({}),
    )
    .await;
    assert_eq!(s, 200, "{v}");
    v["data"]["value"].clone()
}

/// A new tenant with one searchable message in session `s`; answers (tenant id, key).
async fn small_tenant(srv: &TestServer, name: &str, content: &str) -> (String, String) {
    let (s, b) = send(
        srv.req_as(TOKEN, Method::POST, "/v1/admin/tenants")
            .json(&json!({"name": name})),
    )
    .await;
    assert_eq!(s, 201, "{b}");
    let tenant = b["data"]["tenant"]["id"].as_str().unwrap().to_string();
    let key = b["data"]["key"].as_str().unwrap().to_string();
    let (s, b) = as_key(
        srv,
        &key,
        Method::POST,
        "/v1/capture?wait=searchable",
        json!({"type": "message", "sessionId": "s", "payload": {"content": content}}),
    )
    .await;
    assert_eq!(s, 202, "{b}");
    (tenant, key)
}

/// Waits until everything captured is processed and searchable (an export of a tenant at rest).
async fn settled(srv: &TestServer) {
    crate::support::wait_for(
        "capture to settle",
        std::time::Duration::from_secs(30),
        || async {
            let (_, h) = srv.get("/v1/health").await;
            let search = &h["data"]["subsystems"]["search"];
            let done = search["searchableSeq"] == search["capturedSeq"]
                && h["data"]["subsystems"]["workers"]["totalBacklog"] == 0;
            done.then_some(())
        },
    )
    .await;
}

fn kinds(export: &str) -> BTreeSet<String> {
    export
        .lines()
        .map(|l| {
            serde_json::from_str::<Value>(l).unwrap()["kind"]
                .as_str()
                .unwrap()
                .to_string()
        })
        .collect()
}

async fn pack(srv: &TestServer, key: &str, query: &str) -> Value {
    let (s, b) = as_key(
        srv,
        key,
        Method::POST,
        "/v1/synthesize",
        json!({"query": query, "maxTokens": 800}),
    )
    .await;
    assert_eq!(s, 200, "{b}");
    b["data"]["entries"].clone()
}

#[tokio::test]
async fn export_import_export_is_byte_identical_and_the_tenant_answers_the_same() {
    let a = server(VAULT_KEY, None).await;
    let (tenant, key, item) = populate(&a).await;
    // Another tenant's data on the same server never enters the export.
    let (s, _) = a
        .post(
            "/v1/capture?wait=searchable",
            json!({"type": "message", "sessionId": "elsewhere",
                   "payload": {"content": "the bootstrap tenant keeps its marmalade recipe"}}),
        )
        .await;
    assert_eq!(s, 202);
    settled(&a).await;
    let first = export(&a, &tenant).await;
    assert!(
        !first.contains("marmalade"),
        "another tenant's event was exported"
    );
    let found = kinds(&first);
    for kind in [
        "engram-export",
        "tenant",
        "developer",
        "project",
        "member",
        "key",
        "agent",
        "connector",
        "session",
        "message",
        "invocation",
        "job",
        "event",
        "event_signature",
        "memory",
        "artifact",
        "artifact_version",
        "vault",
        "vault_item",
        "vault_audit",
        "usage",
        "end",
    ] {
        assert!(
            found.contains(kind),
            "no {kind} record in the export: {found:?}"
        );
    }
    // Artifacts with all their versions: the second learn made a version 2 of at least one,
    // whose version 1 is an artifact_version record.
    let records: Vec<Value> = first
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    let newer: Vec<&Value> = records
        .iter()
        .filter(|r| r["kind"] == "artifact" && r["version"].as_i64() >= Some(2))
        .collect();
    assert!(!newer.is_empty(), "no artifact has a second version");
    for artifact in newer {
        assert!(
            records.iter().any(|r| r["kind"] == "artifact_version"
                && r["artifact_id"] == artifact["id"]
                && r["version"] == 1),
            "version 1 of {} was not exported",
            artifact["id"]
        );
    }
    assert!(
        !first.contains(&key[8..]),
        "keys are exported as hashes only"
    );
    assert!(
        !first.contains("tok-7f3a-secret"),
        "vault values are exported as ciphertext only"
    );
    let lasagna = pack(&a, &key, "what goes in the lasagna").await;
    let ferry = pack(&a, &key, "when does the ferry leave").await;
    assert!(lasagna.to_string().contains("ricotta"), "{lasagna}");

    let b = server(VAULT_KEY, None).await;
    let (s, r) = import(&b, &first).await;
    assert_eq!(s, 201, "{r}");
    assert_eq!(r["data"]["tenantId"], tenant.as_str());
    assert_eq!(
        r["data"]["records"].as_u64().unwrap() + 2,
        first.lines().count() as u64
    );
    let second = export(&b, &tenant).await;
    if first != second {
        let diff: Vec<(&str, &str)> = first
            .lines()
            .zip(second.lines())
            .filter(|(x, y)| x != y)
            .take(3)
            .collect();
        panic!("the second export differs from the first: {diff:#?}");
    }
    // The same key works, the same packs come back, the vault value decrypts.
    let (s, me) = as_key(&b, &key, Method::GET, "/v1/me", json!({})).await;
    assert_eq!(s, 200, "{me}");
    assert_eq!(pack(&b, &key, "what goes in the lasagna").await, lasagna);
    let other = pack(&b, &key, "marmalade recipe").await;
    assert!(!other.to_string().contains("marmalade"), "{other}");
    assert_eq!(pack(&b, &key, "when does the ferry leave").await, ferry);
    assert_eq!(reveal(&b, &key, &item).await, "tok-7f3a-secret");
    let (_, arts_a) = as_key(&a, &key, Method::GET, "/v1/artifacts", json!({})).await;
    let (_, arts_b) = as_key(&b, &key, Method::GET, "/v1/artifacts", json!({})).await;
    assert_eq!(arts_a["data"], arts_b["data"]);

    // Importing it again is a conflict and changes nothing. (Usage counted by the calls above is
    // written first, so a flush between the two exports cannot tell them apart.)
    b.state().db.flush_usage().await.unwrap();
    let before = export(&b, &tenant).await;
    let (s, r) = import(&b, &first).await;
    assert_eq!(s, 409, "{r}");
    let after = export(&b, &tenant).await;
    let changed: Vec<(&str, &str)> = before
        .lines()
        .zip(after.lines())
        .filter(|(x, y)| x != y)
        .collect();
    assert!(
        before.lines().count() == after.lines().count() && changed.is_empty(),
        "a refused import changed the tenant: {changed:#?}"
    );

    // A server with another vault key refuses the vault items (and so the whole tenant).
    let c = server(OTHER_VAULT_KEY, None).await;
    let (s, r) = import(&c, &first).await;
    assert_eq!(s, 409, "{r}");
    assert!(
        r["error"]["message"].as_str().unwrap().contains("vault"),
        "{r}"
    );
    let (s, _) = as_key(&c, &key, Method::GET, "/v1/me", json!({})).await;
    assert_eq!(s, 401, "nothing of a refused import is left");
    c.shutdown().await;
    a.shutdown().await;
    b.shutdown().await;
}

#[tokio::test]
async fn damaged_imports_are_refused_naming_the_line_and_leave_nothing() {
    let a = server(VAULT_KEY, None).await;
    let (tenant, key) = small_tenant(&a, "small", "a small note").await;
    let good = export(&a, &tenant).await;
    let lines: Vec<&str> = good.lines().collect();
    let target = server(VAULT_KEY, None).await;
    let event_line = lines
        .iter()
        .position(|l| l.contains("\"kind\":\"event\""))
        .unwrap();
    let cut = lines[..lines.len() - 1].join("\n");
    let mut unknown_kind = lines.clone();
    unknown_kind.insert(2, r#"{"kind":"widget","id":"w1"}"#);
    let renamed = lines[event_line].replacen("\"payload\":", "\"payloadz\":", 1);
    let mut unknown_field = lines.clone();
    unknown_field[event_line] = &renamed;
    let mut no_tenant = lines.clone();
    no_tenant.remove(1);
    for (text, says) in [
        (cut, "end record".to_string()),
        (unknown_kind.join("\n"), "widget".to_string()),
        (unknown_field.join("\n"), format!("line {}", event_line + 1)),
        (no_tenant.join("\n"), "tenant".to_string()),
        ("not json".to_string(), "line 1".to_string()),
        (String::new(), "empty".to_string()),
    ] {
        let (s, r) = import(&target, &text).await;
        assert_eq!(s, 422, "{r}");
        assert!(
            r["error"]["message"].as_str().unwrap().contains(&says),
            "{says}: {r}"
        );
        let (s, _) = as_key(&target, &key, Method::GET, "/v1/me", json!({})).await;
        assert_eq!(s, 401, "a refused import leaves nothing");
    }
    let (s, r) = send(
        target
            .req(Method::POST, "/v1/admin/import")
            .body(good.clone()),
    )
    .await;
    assert_eq!(s, 401, "a tenant key cannot import: {r}");
    let (s, r) = import(&target, &good).await;
    assert_eq!(s, 201, "{r}");
    a.shutdown().await;
    target.shutdown().await;
}

#[tokio::test]
async fn serve_seed_imports_once_and_the_cli_exports_and_imports() {
    let a = server(VAULT_KEY, None).await;
    let (tenant, key) = small_tenant(&a, "seeded", "the seeded walrus sings").await;
    let over_http = export(&a, &tenant).await;
    let dir_a = a.shutdown().await;

    // The CLI exports the same bytes from the data dir.
    let file = tempfile::tempdir().unwrap();
    let seed = file.path().join("seed.ndjson");
    let (seed_s, dir_s) = (
        seed.to_string_lossy().into_owned(),
        dir_a.path().to_string_lossy().into_owned(),
    );
    let (ok, _, err) = tokio::task::spawn_blocking(move || {
        run_cli(&[
            "export",
            "--data-dir",
            &dir_s,
            "--tenant",
            &tenant,
            "--to",
            &seed_s,
        ])
    })
    .await
    .unwrap();
    assert!(ok, "{err}");
    assert!(err.contains("records"), "{err}");
    assert_eq!(std::fs::read_to_string(&seed).unwrap(), over_http);
    let seed_s = seed.to_string_lossy().into_owned();
    let (ok, _, err) = tokio::task::spawn_blocking(move || {
        run_cli(&[
            "export",
            "--data-dir",
            "/nonexistent/engram",
            "--tenant",
            "ten_x",
            "--to",
            &seed_s,
        ])
    })
    .await
    .unwrap();
    assert!(!ok && err.contains("not an engram data dir"), "{err}");

    // serve --seed: imported at the first start, left alone at the next.
    let s1 = server(VAULT_KEY, Some(seed.clone())).await;
    let found = pack(&s1, &key, "what does the walrus do").await;
    assert!(found.to_string().contains("walrus"), "{found}");
    let (s, _) = as_key(
        &s1,
        &key,
        Method::POST,
        "/v1/capture",
        json!({"type": "message", "sessionId": "s2", "payload": {"content": "more"}}),
    )
    .await;
    assert_eq!(s, 202);
    let dir = s1.shutdown().await;
    let s2 = TestServer::start_in(dir, |c| {
        c.admin_token = Some(TOKEN.into());
        c.vault_key = Some(VAULT_KEY.into());
        c.seed = Some(seed.clone());
    })
    .await;
    let (s, ev) = as_key(&s2, &key, Method::GET, "/v1/events?sessionId=s2", json!({})).await;
    assert_eq!(s, 200);
    assert_eq!(
        ev["data"]["events"].as_array().map(Vec::len),
        Some(1),
        "the tenant was not re-imported: {ev}"
    );
    s2.shutdown().await;

    // The CLI imports into a stopped data dir; a server there then answers from it.
    let fresh = std::sync::Arc::new(tempfile::tempdir().unwrap());
    let (fresh_s, seed_s) = (
        fresh.path().to_string_lossy().into_owned(),
        seed.to_string_lossy().into_owned(),
    );
    let (ok, _, err) = tokio::task::spawn_blocking(move || {
        run_cli(&["import", "--data-dir", &fresh_s, "--from", &seed_s])
    })
    .await
    .unwrap();
    assert!(ok, "{err}");
    assert!(err.contains("imported tenant"), "{err}");
    let s3 = TestServer::start_in(fresh, |c| {
        c.admin_token = Some(TOKEN.into());
        c.vault_key = Some(VAULT_KEY.into());
    })
    .await;
    let found = pack(&s3, &key, "what does the walrus do").await;
    assert!(found.to_string().contains("walrus"), "{found}");
    s3.shutdown().await;
}

#[tokio::test]
async fn events_waiting_for_processing_are_processed_after_import() {
    let a = server(VAULT_KEY, None).await;
    let (tenant, key) = small_tenant(&a, "in flight", "the heron fishes at dawn").await;
    let text = export(&a, &tenant).await;
    // Rewrite it as if exported mid-flight: the event not processed yet (no memory), its capture
    // job still running, with seqs that mean nothing on another server.
    let mut lines: Vec<String> = Vec::new();
    for line in text.lines() {
        let mut v: Value = serde_json::from_str(line).unwrap();
        match v["kind"].as_str().unwrap() {
            "memory" => continue,
            "event" => v["processed_at"] = Value::Null,
            "job" => {
                v["status"] = json!("running");
                v["input"] = json!({"count": 1, "firstSeq": 9999, "lastSeq": 9999});
                v["result"] = Value::Null;
                v["finished_at"] = Value::Null;
            }
            "end" => v["records"] = json!(v["records"].as_u64().unwrap() - 1),
            _ => {}
        }
        lines.push(v.to_string());
    }
    let b = server(VAULT_KEY, None).await;
    // Another tenant's events first, so seqs differ between the two servers.
    for i in 0..5 {
        let (s, _) = b
            .post(
                "/v1/capture",
                json!({"type": "message", "sessionId": "other", "payload": {"content": format!("filler {i}")}}),
            )
            .await;
        assert_eq!(s, 202);
    }
    let (s, r) = import(&b, &lines.join("\n")).await;
    assert_eq!(s, 201, "{r}");
    assert_eq!(r["data"]["unprocessedEvents"], 1, "{r}");
    assert_eq!(r["data"]["queuedJobs"]["capture"], 1, "{r}");
    settled(&b).await;
    let found = pack(&b, &key, "when does the heron fish").await;
    assert!(found.to_string().contains("heron"), "{found}");
    a.shutdown().await;
    b.shutdown().await;
}

/// A tenant with one searchable message and a vault item, exported from a server that then
/// stopped, and written to `seed.ndjson` in a dir of its own.
struct Exported {
    tenant: String,
    key: String,
    item: String,
    text: String,
    file: std::path::PathBuf,
    dir: tempfile::TempDir,
}

async fn exported_with_vault(name: &str, content: &str, secret: &str) -> Exported {
    let a = server(VAULT_KEY, None).await;
    let (tenant, key) = small_tenant(&a, name, content).await;
    let item = vault_item(&a, &key, secret).await;
    settled(&a).await;
    let text = export(&a, &tenant).await;
    a.shutdown().await;
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("seed.ndjson");
    std::fs::write(&file, &text).unwrap();
    Exported {
        tenant,
        key,
        item,
        text,
        file,
        dir,
    }
}

/// What a test does to a seeded server: changes the seeded tenant (`key`'s), adds another;
/// answers the other's key.
async fn change(srv: &TestServer, key: &str) -> String {
    let (s, b) = as_key(
        srv,
        key,
        Method::POST,
        "/v1/capture?wait=searchable",
        json!({"type": "message", "sessionId": "s9",
               "payload": {"content": "the walrus moved to the north pole"}}),
    )
    .await;
    assert_eq!(s, 202, "{b}");
    small_tenant(srv, "other", "an unrelated note").await.1
}

/// After a reset: the seeded tenant is its seed byte for byte and answers from it alone; the
/// other tenant (`other_key`'s) is gone.
async fn back_to_the_seed(srv: &TestServer, tenant: &str, key: &str, seed: &str, other_key: &str) {
    assert!(
        export(srv, tenant).await == seed,
        "the reset did not return the tenant to its seed"
    );
    let found = pack(srv, key, "what does the walrus do").await.to_string();
    assert!(
        found.contains("sings") && !found.contains("north"),
        "{found}"
    );
    let (s, _) = as_key(srv, other_key, Method::GET, "/v1/me", json!({})).await;
    assert_eq!(s, 401, "the other tenant is gone");
}

async fn reset_all(srv: &TestServer) -> (u16, Value) {
    send(srv.req_as(TOKEN, Method::POST, "/v1/admin/reset")).await
}

/// A fixture that starts from a seed and resets before every test gets the seeded tenant back
/// (byte for byte, searchable, its vault value decrypting), over HTTP and from the CLI; a seed
/// that cannot be read any more refuses the reset and changes nothing.
#[tokio::test]
async fn reset_everything_returns_a_seeded_server_to_its_seed() {
    let Exported {
        tenant,
        key,
        item,
        text: seeded,
        file: seed,
        dir: files,
    } = exported_with_vault("seeded", "the seeded walrus sings", "walrus-secret").await;

    let srv = server(VAULT_KEY, Some(seed.clone())).await;
    let other = change(&srv, &key).await;
    let (s, r) = reset_all(&srv).await;
    assert_eq!(s, 200, "{r}");
    assert_eq!(r["data"]["seeded"], tenant.as_str(), "{r}");
    assert_eq!(r["data"]["tenantsDeleted"], 2, "{r}");
    back_to_the_seed(&srv, &tenant, &key, &seeded, &other).await;
    assert_eq!(reveal(&srv, &key, &item).await, "walrus-secret");
    let (s, _) = srv.get("/v1/me").await;
    assert_eq!(s, 200, "the bootstrap key stays");

    // The seed file gone: the reset is refused naming it, and nothing changes.
    let moved = files.path().join("moved.ndjson");
    std::fs::rename(&seed, &moved).unwrap();
    let other = change(&srv, &key).await;
    let (s, r) = reset_all(&srv).await;
    assert_eq!(s, 503, "{r}");
    assert!(
        r["error"]["message"]
            .as_str()
            .unwrap()
            .contains(&seed.display().to_string()),
        "{r}"
    );
    let (s, _) = as_key(&srv, &other, Method::GET, "/v1/me", json!({})).await;
    assert_eq!(s, 200, "a refused reset deleted a tenant");
    std::fs::rename(&moved, &seed).unwrap();
    let dir = srv.shutdown().await;

    // The CLI on the stopped data dir: the same reset, the same seed (with the vault's key).
    let data = dir.path().display().to_string();
    let seed_arg = seed.display().to_string();
    let env = [("ENGRAM_VAULT_KEY", VAULT_KEY)];
    let (ok, _, err) = tokio::task::spawn_blocking(move || {
        run_cli_env(
            &[
                "tenants",
                "reset",
                "--all",
                "--data-dir",
                &data,
                "--seed",
                &seed_arg,
            ],
            &env,
        )
    })
    .await
    .unwrap();
    assert!(ok, "{err}");
    assert!(
        err.contains("2 tenants deleted") && err.contains("imported again"),
        "{err}"
    );
    let again = TestServer::start_in(dir, |c| {
        c.admin_token = Some(TOKEN.into());
        c.vault_key = Some(VAULT_KEY.into());
    })
    .await;
    back_to_the_seed(&again, &tenant, &key, &seeded, &other).await;
    let dir = again.shutdown().await;
    // Bad input is named.
    let data = dir.path().display().to_string();
    let (ok, _, err) = tokio::task::spawn_blocking(move || {
        run_cli(&[
            "tenants",
            "reset",
            "--all",
            "--data-dir",
            &data,
            "--seed",
            "/nonexistent/seed.ndjson",
        ])
    })
    .await
    .unwrap();
    assert!(
        !ok && err.contains("cannot read the seed file /nonexistent/seed.ndjson"),
        "{err}"
    );
}

/// `engram import` into a data dir no server ever started loads the vault key as `serve` does
/// (ENGRAM_VAULT_KEY): with the exporting server's key the vault items come along and decrypt
/// there; with another key the import is refused naming the key, and leaves no tenant.
#[tokio::test]
async fn the_cli_imports_vault_items_into_a_new_data_dir() {
    let Exported {
        tenant,
        key,
        item,
        text,
        file,
        dir: _files,
    } = exported_with_vault(
        "vaulted",
        "the vault keeps a registry token",
        "tok-cli-import",
    )
    .await;
    let from = file.display().to_string();

    let wrong = tempfile::tempdir().unwrap();
    let (wrong_s, from_s) = (wrong.path().display().to_string(), from.clone());
    let (ok, _, err) = tokio::task::spawn_blocking(move || {
        run_cli_env(
            &["import", "--data-dir", &wrong_s, "--from", &from_s],
            &[("ENGRAM_VAULT_KEY", OTHER_VAULT_KEY)],
        )
    })
    .await
    .unwrap();
    assert!(
        !ok && err.contains("vault items are encrypted") && err.contains("ENGRAM_VAULT_KEY"),
        "{err}"
    );
    let wrong_s = wrong.path().display().to_string();
    let (ok, out, _) = run_cli(&["tenants", "list", "--data-dir", &wrong_s]);
    assert!(
        ok && !out.contains(&tenant),
        "a refused import left the tenant"
    );

    let fresh = std::sync::Arc::new(tempfile::tempdir().unwrap());
    let fresh_s = fresh.path().display().to_string();
    let (ok, _, err) = tokio::task::spawn_blocking(move || {
        run_cli_env(
            &["import", "--data-dir", &fresh_s, "--from", &from],
            &[("ENGRAM_VAULT_KEY", VAULT_KEY)],
        )
    })
    .await
    .unwrap();
    assert!(ok && err.contains("imported tenant"), "{err}");
    let b = TestServer::start_in(fresh, |c| {
        c.admin_token = Some(TOKEN.into());
        c.vault_key = Some(VAULT_KEY.into());
    })
    .await;
    assert!(export(&b, &tenant).await == text, "the import differs");
    assert_eq!(reveal(&b, &key, &item).await, "tok-cli-import");
    b.shutdown().await;
}
