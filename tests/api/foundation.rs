//! Foundation: health, authentication, errors in both families, request ids, body caps,
//! bootstrap and restart, graceful shutdown, CLI keys.

use crate::support::*;
use reqwest::Method;
use serde_json::json;
use std::time::Duration;

#[tokio::test]
async fn health_reports_subsystems() {
    let srv = TestServer::start().await;
    let resp = srv.http.get(srv.url("/v1/health")).send().await.unwrap();
    assert!(resp.headers().get("x-request-id").is_some());
    let (status, body) = json_of(resp).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["ok"], true);
    let d = &body["data"];
    assert_eq!(d["status"], "healthy");
    assert_eq!(d["version"], env!("CARGO_PKG_VERSION"));
    assert!(d["uptime"].is_u64());
    let backend = if crate::support::on_postgres() {
        "postgres"
    } else {
        "sqlite"
    };
    let sqlite = &d["subsystems"][backend];
    assert_eq!(sqlite["status"], "healthy");
    assert!(crate::support::on_postgres() || sqlite["sizeBytes"].as_u64().unwrap() > 0);
    assert!(sqlite["connections"]["max"].as_u64().unwrap() >= 1);
    assert!(sqlite["connections"]["utilizationPercent"].is_u64());
    let search = &d["subsystems"]["search"];
    assert_eq!(search["status"], "healthy");
    assert_eq!(search["documents"], 0);
    let workers = &d["subsystems"]["workers"];
    for q in ["capture", "learn"] {
        for f in ["waiting", "active", "failed"] {
            assert!(workers["queues"][q][f].is_u64(), "{q}.{f}");
        }
    }
    assert_eq!(workers["totalBacklog"], 0);
    assert_eq!(d["alerts"]["firing"], 0);
    srv.shutdown().await;
}

#[tokio::test]
async fn health_degrades_when_the_indexer_is_down() {
    let srv = TestServer::start().await;
    // Stop the indexer thread: search can no longer take documents.
    srv.state().search.close();
    let (status, body) = send(srv.http.get(srv.url("/v1/health"))).await;
    assert_eq!(status, 503, "{body}");
    assert_eq!(body["data"]["status"], "degraded");
    assert_eq!(body["data"]["subsystems"]["search"]["status"], "degraded");
    assert!(body["data"]["alerts"]["firing"].as_u64().unwrap() >= 1);
    assert_eq!(body["data"]["alerts"]["items"][0]["subsystem"], "search");
    srv.shutdown().await;
}

#[tokio::test]
async fn unauthorized_keys_get_401_in_both_families() {
    let srv = TestServer::start().await;
    // Missing.
    let (s, b) = send(srv.http.get(srv.url("/v1/api-keys"))).await;
    assert_eq!(s, 401);
    assert_eq!(b["ok"], false);
    assert_eq!(b["error"]["code"], "unauthorized");
    assert!(b["meta"]["requestId"].as_str().unwrap().starts_with("req_"));
    let (s, b) = send(srv.http.get(srv.url("/v1/me"))).await;
    assert_eq!(s, 401);
    assert_eq!(b["error"], "unauthorized");
    assert!(b["message"].is_string());
    // Malformed.
    for header in [
        "Bearer nope",
        "Basic abc",
        "Bearer hk_live_short",
        "Bearer hq_live_0123456789012345678901234567890123",
    ] {
        let (s, b) = send(
            srv.http
                .get(srv.url("/v1/me"))
                .header("Authorization", header),
        )
        .await;
        assert_eq!(s, 401, "{header}: {b}");
    }
    // Unknown but well-formed.
    let unknown = format!("hk_live_{}", "A".repeat(40));
    let (s, b) = send(srv.req_as(&unknown, Method::GET, "/v1/me")).await;
    assert_eq!(
        (s, b["message"].as_str().unwrap()),
        (401, "unknown API key")
    );

    // Revoked: works, then revoked through the API, then 401 on the very next request.
    let key = srv.create_key(&[]).await;
    let (s, _) = send(srv.req_as(&key, Method::GET, "/v1/me")).await;
    assert_eq!(s, 200);
    let (_, list) = srv.get("/v1/api-keys").await;
    let id = list["data"]["items"]
        .as_array()
        .unwrap()
        .iter()
        .find(|k| k["last4"] == key[key.len() - 4..])
        .unwrap()["id"]
        .as_str()
        .unwrap()
        .to_string();
    let (s, b) = srv.delete(&format!("/v1/api-keys/{id}")).await;
    assert_eq!(s, 200, "{b}");
    let (s, b) = send(srv.req_as(&key, Method::GET, "/v1/me")).await;
    assert_eq!(s, 401);
    assert_eq!(b["message"], "this API key has been revoked");
    let (s, _) = srv.delete(&format!("/v1/api-keys/{id}")).await;
    assert_eq!(s, 404);

    // Expired: valid a moment, then past its expiry.
    let expires = engram::time::rfc3339(engram::time::now() + chrono::Duration::milliseconds(3000));
    let (s, b) = srv
        .post(
            "/v1/api-keys",
            json!({"name": "short", "expiresAt": expires}),
        )
        .await;
    assert_eq!(s, 201, "{b}");
    let short = b["data"]["key"].as_str().unwrap().to_string();
    let (s, _) = send(srv.req_as(&short, Method::GET, "/v1/me")).await;
    assert_eq!(s, 200);
    let b = wait_for("the key to expire", Duration::from_secs(10), || async {
        let (s, b) = send(srv.req_as(&short, Method::GET, "/v1/me")).await;
        (s == 401).then_some(b)
    })
    .await;
    assert_eq!(b["message"], "this API key has expired");
    srv.shutdown().await;
}

#[tokio::test]
async fn scopes_are_enforced_with_403() {
    let srv = TestServer::start().await;
    let read_only = srv.create_key(&["read"]).await;
    let (s, b) = send(srv.req_as(&read_only, Method::GET, "/v1/api-keys")).await;
    assert_eq!(s, 403, "{b}");
    assert_eq!(b["error"]["code"], "forbidden");
    let (s, b) = send(srv.req_as(&read_only, Method::GET, "/v1/me")).await;
    assert_eq!(s, 200);
    assert_eq!(b["scopes"], json!(["read"]));
    // A key cannot be created with a scope that does not exist.
    let (s, b) = srv
        .post("/v1/api-keys", json!({"name": "x", "scopes": ["fly"]}))
        .await;
    assert_eq!(s, 422);
    assert_eq!(b["error"]["details"][0]["field"], "scopes");
    srv.shutdown().await;
}

#[tokio::test]
async fn not_found_and_method_not_allowed_in_both_families() {
    let srv = TestServer::start().await;
    let (s, b) = srv.get("/v1/nothing-here").await;
    assert_eq!(s, 404);
    assert_eq!(b["ok"], false);
    assert_eq!(b["error"]["code"], "not_found");
    let (s, b) = srv.get("/v1/agents/a/b/c").await;
    assert_eq!(s, 404);
    assert_eq!(b["error"], "not_found");

    let resp = srv.req(Method::PUT, "/v1/capture").send().await.unwrap();
    assert_eq!(resp.status(), 405);
    assert_eq!(resp.headers()["allow"], "POST");
    let (_, b) = json_of(resp).await;
    assert_eq!(b["error"]["code"], "method_not_allowed");

    let resp = srv
        .req(Method::PUT, "/v1/agents/ag_1")
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 405);
    assert_eq!(resp.headers()["allow"], "DELETE, GET");
    let (_, b) = json_of(resp).await;
    assert_eq!(b["error"], "method_not_allowed");
    srv.shutdown().await;
}

#[tokio::test]
async fn body_caps_and_malformed_json() {
    let srv = TestServer::start().await;
    let big = vec![b'x'; 300 * 1024];
    let (s, b) = send(
        srv.req(Method::POST, "/v1/api-keys")
            .header("content-type", "application/json")
            .body(big),
    )
    .await;
    assert_eq!(s, 413, "{b}");
    assert_eq!(b["error"]["code"], "payload_too_large");
    // The capture route takes up to 1 MiB: 300 KiB is not refused for its size there.
    let (s, _) = send(
        srv.req(Method::POST, "/v1/capture")
            .header("content-type", "application/json")
            .body(vec![b' '; 300 * 1024]),
    )
    .await;
    assert_ne!(s, 413);
    let (s, _) = send(
        srv.req(Method::POST, "/v1/capture")
            .body(vec![b' '; 1024 * 1024 + 1]),
    )
    .await;
    assert_eq!(s, 413);

    let (s, b) = send(
        srv.req(Method::POST, "/v1/api-keys")
            .header("content-type", "application/json")
            .body("{\"name\": "),
    )
    .await;
    assert_eq!(s, 422, "{b}");
    assert_eq!(b["error"]["code"], "validation_error");
    assert_eq!(b["error"]["details"][0]["field"], "body");
    assert!(b["error"]["message"]
        .as_str()
        .unwrap()
        .contains("invalid JSON"));
    srv.shutdown().await;
}

#[tokio::test]
async fn request_ids_are_echoed_or_generated() {
    let srv = TestServer::start().await;
    let resp = srv
        .req(Method::GET, "/v1/me")
        .header("X-Request-Id", "my-trace-123")
        .send()
        .await
        .unwrap();
    assert_eq!(resp.headers()["x-request-id"], "my-trace-123");
    let resp = srv.req(Method::GET, "/v1/api-keys").send().await.unwrap();
    let id = resp.headers()["x-request-id"].to_str().unwrap().to_string();
    assert!(id.starts_with("req_"));
    let (_, b) = json_of(resp).await;
    assert_eq!(b["meta"]["requestId"], id.as_str());
    assert!(b["meta"]["tenantId"].as_str().unwrap().starts_with("ten_"));
    // Errors carry it too.
    let resp = srv
        .http
        .get(srv.url("/v1/nope"))
        .header("X-Request-Id", "abc")
        .send()
        .await
        .unwrap();
    assert_eq!(resp.headers()["x-request-id"], "abc");
    srv.shutdown().await;
}

#[tokio::test]
async fn data_survives_a_restart() {
    let srv = TestServer::start().await;
    let key = srv.key.clone();
    let extra = srv.create_key(&["read"]).await;
    let (_, me) = srv.get("/v1/me").await;
    let dir = srv.shutdown().await;
    let srv = TestServer::start_in(dir, |_| {}).await;
    assert!(
        srv.key.is_empty(),
        "a restart must not create another bootstrap key"
    );
    let (s, me2) = send(srv.req_as(&key, Method::GET, "/v1/me")).await;
    assert_eq!(s, 200);
    assert_eq!(me["tenant_id"], me2["tenant_id"]);
    let (s, _) = send(srv.req_as(&extra, Method::GET, "/v1/me")).await;
    assert_eq!(s, 200);
    srv.shutdown().await;
}

#[tokio::test]
async fn graceful_shutdown_finishes_an_in_flight_request() {
    let srv = TestServer::start().await;
    let (tx, rx) = tokio::sync::mpsc::channel::<Result<Vec<u8>, std::io::Error>>(4);
    let stream = futures_util::stream::unfold(rx, |mut rx| async move {
        rx.recv().await.map(|item| (item, rx))
    });
    let request = srv
        .req(Method::POST, "/v1/api-keys")
        .header("content-type", "application/json")
        .body(reqwest::Body::wrap_stream(stream))
        .send();
    let pending = tokio::spawn(request);
    tx.send(Ok(b"{\"name\": ".to_vec())).await.unwrap();
    // Wait until the server has the request (headers and part of the body) in hand.
    let state = srv.running.as_ref().unwrap().state.clone();
    wait_for("the request to arrive", Duration::from_secs(10), || {
        let n = state.inflight.load(std::sync::atomic::Ordering::SeqCst);
        async move { (n >= 1).then_some(()) }
    })
    .await;
    let running = {
        let mut srv = srv;
        srv.running.take().unwrap()
    };
    let shutdown = tokio::spawn(running.shutdown());
    // Shutdown has begun once the listener is closed; it must still wait for the request.
    wait_for("the listener to close", Duration::from_secs(10), || async {
        let closed = tokio::net::TcpStream::connect(state.bound).await.is_err();
        closed.then_some(())
    })
    .await;
    assert!(
        !shutdown.is_finished(),
        "shutdown must wait for the in-flight request"
    );
    tx.send(Ok(b"\"late\"}".to_vec())).await.unwrap();
    drop(tx);
    let resp = pending.await.unwrap().expect("in-flight request answered");
    let (s, b) = json_of(resp).await;
    assert_eq!(s, 201, "{b}");
    tokio::time::timeout(Duration::from_secs(30), shutdown)
        .await
        .expect("shutdown completes")
        .unwrap();
}

#[tokio::test]
async fn bootstrap_key_printed_once_and_stable_across_restart() {
    let dir = tempfile::tempdir().unwrap();
    let child = ChildServer::start(dir.path(), &[]);
    let first = child.stderr_text();
    let key = banner_key(&first).expect("the first start prints the admin key");
    let http = client();
    let (s, _) = send(http.get(child.url("/v1/me")).bearer_auth(&key)).await;
    assert_eq!(s, 200);
    assert!(child.terminate(), "SIGTERM exits cleanly");

    let child = ChildServer::start(dir.path(), &[]);
    assert!(
        banner_key(&child.stderr_text()).is_none(),
        "no second bootstrap key"
    );
    let (s, _) = send(http.get(child.url("/v1/me")).bearer_auth(&key)).await;
    assert_eq!(s, 200);
    child.kill();
}

#[tokio::test]
async fn bootstrap_key_from_the_environment() {
    let dir = tempfile::tempdir().unwrap();
    let key = format!("hx_test_{}", "k".repeat(40));
    let child = ChildServer::start(dir.path(), &[("ENGRAM_BOOTSTRAP_KEY", &key)]);
    assert_eq!(
        banner_key(&child.stderr_text()).as_deref(),
        Some(key.as_str())
    );
    let (s, b) = send(client().get(child.url("/v1/me")).bearer_auth(&key)).await;
    assert_eq!(s, 200, "{b}");
    assert_eq!(b["mode"], "test");
    child.kill();
    // A malformed bootstrap key is refused at start with a clear message.
    let out = std::process::Command::new(engram_bin())
        .args(["serve", "--listen", "127.0.0.1:0", "--data-dir"])
        .arg(tempfile::tempdir().unwrap().path())
        .env("ENGRAM_BOOTSTRAP_KEY", "not-a-key")
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("ENGRAM_BOOTSTRAP_KEY"));
}

#[tokio::test]
async fn cli_keys_create_works_on_a_running_server() {
    let srv = TestServer::start().await;
    let dir = srv.data_dir().to_str().unwrap().to_string();
    let (ok, stdout, stderr) = run_cli(&[
        "keys",
        "create",
        "--data-dir",
        &dir,
        "--name",
        "from-cli",
        "--scopes",
        "read,write",
    ]);
    assert!(ok, "{stderr}");
    let key = stdout.trim().to_string();
    let (s, b) = send(srv.req_as(&key, Method::GET, "/v1/me")).await;
    assert_eq!(s, 200, "{b}");
    assert_eq!(b["scopes"], json!(["read", "write"]));
    let (ok, stdout, _) = run_cli(&["keys", "list", "--data-dir", &dir]);
    assert!(ok);
    assert!(stdout.contains("from-cli"));
    // Revoked by the CLI: refused within the auth cache lifetime.
    let id = stdout
        .lines()
        .find(|l| l.contains("from-cli"))
        .and_then(|l| l.split_whitespace().next())
        .unwrap()
        .to_string();
    let (ok, _, stderr) = run_cli(&["keys", "revoke", "--data-dir", &dir, &id]);
    assert!(ok, "{stderr}");
    wait_for(
        "CLI revocation to take effect",
        Duration::from_secs(10),
        || async {
            let (s, _) = send(srv.req_as(&key, Method::GET, "/v1/me")).await;
            (s == 401).then_some(())
        },
    )
    .await;
    // Bad input is refused with a clear message.
    let (ok, _, stderr) = run_cli(&["keys", "create", "--data-dir", &dir, "--scopes", "fly"]);
    assert!(!ok);
    assert!(stderr.contains("unknown scope"));
    srv.shutdown().await;
}

#[tokio::test]
async fn newer_database_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    {
        let db = engram::store::open_direct(dir.path()).unwrap();
        db.conn()
            .sqlite()
            .execute_batch("PRAGMA user_version = 999")
            .unwrap();
    }
    let cfg = engram::config::Config::for_data_dir(dir.path());
    let err = engram::start(cfg).await.err().expect("refused");
    assert!(err.to_string().contains("newer engram"), "{err}");
}

#[tokio::test]
async fn http2_prior_knowledge_is_served() {
    let srv = TestServer::start().await;
    let h2 = reqwest::Client::builder()
        .http2_prior_knowledge()
        .build()
        .unwrap();
    let resp = h2.get(srv.url("/v1/health")).send().await.unwrap();
    assert_eq!(resp.version(), reqwest::Version::HTTP_2);
    assert_eq!(resp.status(), 200);
    srv.shutdown().await;
}

#[tokio::test]
async fn slow_headers_are_cut_off_by_the_header_read_timeout() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let srv = TestServer::start_with(|c| c.header_read_timeout = Duration::from_secs(1)).await;
    let mut stream = tokio::net::TcpStream::connect(srv.running.as_ref().unwrap().addr)
        .await
        .unwrap();
    // Headers started but never finished.
    stream
        .write_all(b"GET /v1/health HTTP/1.1\r\nHost: localhost\r\n")
        .await
        .unwrap();
    let mut buf = Vec::new();
    let read = tokio::time::timeout(Duration::from_secs(20), stream.read_to_end(&mut buf)).await;
    let read = read.expect("the server closes a connection whose headers never finish");
    // Closed (possibly after a 408), never answered as a request.
    assert!(
        read.is_err() || buf.is_empty() || buf.starts_with(b"HTTP/1.1 408"),
        "{}",
        String::from_utf8_lossy(&buf)
    );
    // The server still serves others.
    let (s, _) = send(srv.http.get(srv.url("/v1/health"))).await;
    assert_eq!(s, 200);
    srv.shutdown().await;
}

/// One server per data dir: a second serve (in this process or another) and a reindex against a
/// dir in use refuse, naming the holder's pid; read-only commands on a missing data dir exit 2.
#[tokio::test]
async fn a_data_dir_in_use_is_refused_and_a_missing_one_is_not_created() {
    let srv = TestServer::start().await;
    let second = engram::start(engram::config::Config::for_data_dir(srv.data_dir())).await;
    let err = second
        .err()
        .expect("a second server on the same data dir is refused")
        .to_string();
    assert!(
        err.contains(&format!("pid {}", std::process::id())),
        "{err}"
    );
    let data = srv.data_dir().display().to_string();
    let out = std::process::Command::new(engram_bin())
        .args(["serve", "--listen", "127.0.0.1:0", "--data-dir", &data])
        .env_remove("ENGRAM_BOOTSTRAP_KEY")
        .output()
        .unwrap();
    assert!(!out.status.success());
    let text = String::from_utf8_lossy(&out.stderr);
    assert!(
        text.contains("in use by another engram") && text.contains("(serve)"),
        "{text}"
    );
    // Every command that rewrites the database or the index refuses, naming the server.
    let holder = format!("pid {} (serve)", std::process::id());
    for args in [
        vec!["reindex"],
        vec!["migrate"],
        vec!["vault", "rotate-key"],
        vec!["tenants", "reset", "--all"],
        vec!["import", "--from", "/dev/null"],
    ] {
        let mut args = args;
        args.extend(["--data-dir", &data]);
        let (ok, _, err) = run_cli(&args);
        assert!(
            !ok && err.contains("in use by another engram") && err.contains(&holder),
            "{args:?}: {err}"
        );
    }
    let (ok, _, err) = run_cli(&["tenants", "reset", "--all", "--data-dir", &data]);
    assert!(!ok && err.contains("POST /v1/admin/reset"), "{err}");
    // Commands that are safe beside a server still work.
    let (ok, _, err) = run_cli(&["tenants", "list", "--data-dir", &data]);
    assert!(ok, "{err}");
    let dir = srv.shutdown().await;
    // Once it stopped, the dir is free again.
    let again = TestServer::start_in(dir, |_| {}).await;
    again.shutdown().await;
    // Read-only commands on a missing data dir say so and exit 2, creating nothing.
    let missing = tempfile::tempdir().unwrap().path().join("nowhere");
    let m = missing.display().to_string();
    for args in [
        vec!["tenants", "list", "--data-dir", &m],
        vec!["keys", "list", "--data-dir", &m],
        vec!["reindex", "--data-dir", &m],
    ] {
        let out = std::process::Command::new(engram_bin())
            .args(&args)
            .output()
            .unwrap();
        assert_eq!(out.status.code(), Some(2), "{args:?}");
        assert!(String::from_utf8_lossy(&out.stderr).contains("not an engram data dir"));
        assert!(!missing.exists(), "{args:?} created the data dir");
    }
}

/// The schema version of the database in `dir`, read without migrating it.
fn schema_version(dir: &std::path::Path) -> u32 {
    engram::store::open_unmigrated(dir)
        .unwrap()
        .schema_version()
        .unwrap()
}

/// What migrations 4 and 6 added, taken out again (a version 3 database; migration 5 only
/// rebuilds an index).
const UNDO_4: &str = "ALTER TABLE jobs DROP COLUMN lease_until;
                      DROP TABLE vault_audit; DROP TABLE vault_items; DROP TABLE vaults;";

/// Sets the database's schema version after running `undo`.
fn set_schema_version(dir: &std::path::Path, undo: &str, version: u32) {
    let db = engram::store::open_unmigrated(dir).unwrap();
    db.conn()
        .sqlite()
        .execute_batch(&format!("{undo} PRAGMA user_version = {version};"))
        .unwrap();
}

/// A CLI command never migrates the database of a data dir a server is using (a newer binary's
/// CLI beside an older server): it refuses, naming the holder and the way out. `engram migrate`
/// migrates under the lock, saying from and to which version; with the lock free, other
/// commands migrate under it too; a newer schema is refused by all.
#[tokio::test]
async fn an_older_schema_is_migrated_only_under_the_data_dir_lock() {
    if crate::support::on_postgres() {
        // SQLite's schema migrations; PostgreSQL's version check is in `postgres::`.
        return;
    }
    let current = engram::store::SCHEMA_VERSION;
    let srv = TestServer::start().await;
    let dir = srv.data_dir().to_path_buf();
    let data = dir.display().to_string();
    // As if the running server were an older engram: its database has the previous version.
    set_schema_version(&dir, "", current - 1);
    let holder = format!("pid {} (serve)", std::process::id());
    for args in [
        vec!["tenants", "list"],
        vec!["keys", "create", "--name", "x"],
        vec!["tenants", "create", "--name", "x"],
        vec!["backup", "--to", "/nonexistent/copy.db"],
    ] {
        let mut args = args;
        args.extend(["--data-dir", &data]);
        let (ok, _, err) = run_cli(&args);
        assert!(!ok, "{args:?} ran on a database it would have to migrate");
        for says in [
            format!("schema version {}", current - 1).as_str(),
            &holder,
            "engram migrate",
            "stop that server",
        ] {
            assert!(err.contains(says), "{args:?} does not say {says:?}: {err}");
        }
        assert_eq!(schema_version(&dir), current - 1, "{args:?} migrated");
    }
    let (ok, _, err) = run_cli(&["migrate", "--data-dir", &data]);
    assert!(!ok && err.contains(&holder), "{err}");
    assert_eq!(schema_version(&dir), current - 1);
    set_schema_version(&dir, "", current);
    let dir_guard = srv.shutdown().await;

    // Stopped: `engram migrate` upgrades it and says so; a second run has nothing to do.
    set_schema_version(&dir, UNDO_4, 3);
    let (ok, _, err) = run_cli(&["migrate", "--data-dir", &data]);
    assert!(ok, "{err}");
    assert!(
        err.contains(&format!("from version 3 to version {current}")),
        "{err}"
    );
    assert_eq!(schema_version(&dir), current);
    let (ok, _, err) = run_cli(&["migrate", "--data-dir", &data]);
    assert!(ok && err.contains("nothing to migrate"), "{err}");
    // With the lock free, another command migrates under it and runs.
    set_schema_version(&dir, UNDO_4, 3);
    let (ok, out, err) = run_cli(&["tenants", "list", "--data-dir", &data]);
    assert!(ok && out.contains("(default)"), "{err}");
    assert_eq!(schema_version(&dir), current);
    // A newer schema is refused, by `migrate` too.
    set_schema_version(&dir, "", 999);
    for args in [vec!["tenants", "list"], vec!["migrate"]] {
        let mut args = args;
        args.extend(["--data-dir", &data]);
        let (ok, _, err) = run_cli(&args);
        assert!(!ok && err.contains("newer engram"), "{args:?}: {err}");
        assert_eq!(schema_version(&dir), 999);
    }
    // `migrate` on a missing data dir says so (exit 2) and creates nothing.
    let missing = dir_guard.path().join("nowhere");
    let out = std::process::Command::new(engram_bin())
        .args(["migrate", "--data-dir"])
        .arg(&missing)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(!missing.exists());
}
