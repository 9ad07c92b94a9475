//! `engram migrate --to postgres://…` against a real PostgreSQL server (the throwaway cluster of
//! `scripts/pg_cluster.sh`): a data dir with a record of every kind is copied and verified, row
//! for row where it matters (event payloads, artifact contents, vault ciphertext, usage counts);
//! running it again changes nothing; a copy killed in the middle is resumed; a database holding
//! anything else, or written by a newer engram, is refused and left as it was.

use crate::support::{postgres_client, postgres_database, run_cli, TestServer};
use crate::transfer::{populate, server, VAULT_KEY};
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// The engram tables PostgreSQL holds (every table of schema public).
async fn pg_tables(client: &tokio_postgres::Client) -> Vec<String> {
    client
        .query(
            "SELECT tablename::text FROM pg_catalog.pg_tables WHERE schemaname = 'public'
             ORDER BY tablename",
            &[],
        )
        .await
        .unwrap()
        .iter()
        .map(|r| r.get(0))
        .collect()
}

fn sqlite(dir: &Path) -> rusqlite::Connection {
    rusqlite::Connection::open_with_flags(
        dir.join("engram.db"),
        rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY,
    )
    .unwrap()
}

fn sqlite_count(db: &rusqlite::Connection, table: &str) -> i64 {
    db.query_row(&format!("SELECT count(*) FROM {table}"), [], |r| r.get(0))
        .unwrap()
}

/// Rows of the source's `meta` against PostgreSQL's `meta` rows other than its own.
const PG_SOURCE_META: &str = "SELECT count(*) FROM meta WHERE key NOT IN ('schema_version',
    'copied_from', 'copy_verified_at') AND key NOT LIKE 'copied:%'";

/// Every table holds as many rows in PostgreSQL as in the data dir; answers the total.
async fn assert_same_counts(dir: &Path, client: &tokio_postgres::Client) -> i64 {
    let db = sqlite(dir);
    let tables = pg_tables(client).await;
    assert_eq!(tables.len(), 26, "{tables:?}");
    let mut total = 0;
    // novelty_pending is PostgreSQL's own (SQLite keeps it in memory): recomputed at start. So
    // are what only nodes use (the search feed, the shared limits): a copy leaves them empty.
    const OWN: [&str; 4] = [
        "novelty_pending",
        "index_feed",
        "rate_buckets",
        "quota_reserved",
    ];
    for t in &OWN[1..] {
        let n: i64 = client
            .query_one(&format!("SELECT count(*) FROM {t}"), &[])
            .await
            .unwrap()
            .get(0);
        assert_eq!(n, 0, "the copy leaves {t} empty");
    }
    for t in tables.iter().filter(|t| !OWN.contains(&t.as_str())) {
        let sql = if t == "meta" {
            PG_SOURCE_META.to_string()
        } else {
            format!("SELECT count(*) FROM {t}")
        };
        let pg: i64 = client.query_one(&sql, &[]).await.unwrap().get(0);
        assert_eq!(pg, sqlite_count(&db, t), "rows of {t}");
        total += pg;
    }
    total
}

/// Column values of `sql` run on both sides, as text (bytes in hex), in the query's order.
async fn same_rows(dir: &Path, client: &tokio_postgres::Client, sqlite_sql: &str, pg_sql: &str) {
    let db = sqlite(dir);
    let mut stmt = db.prepare(sqlite_sql).unwrap();
    let n = stmt.column_count();
    let ours: Vec<Vec<String>> = stmt
        .query_map([], |r| {
            (0..n)
                .map(|i| {
                    Ok(match r.get::<_, rusqlite::types::Value>(i)? {
                        rusqlite::types::Value::Null => "NULL".to_string(),
                        rusqlite::types::Value::Integer(v) => v.to_string(),
                        rusqlite::types::Value::Real(v) => v.to_string(),
                        rusqlite::types::Value::Text(v) => v,
                        rusqlite::types::Value::Blob(v) => hex(&v),
                    })
                })
                .collect()
        })
        .unwrap()
        .map(Result::unwrap)
        .collect();
    let theirs: Vec<Vec<String>> = client
        .query(pg_sql, &[])
        .await
        .unwrap()
        .iter()
        .map(|r| {
            (0..r.len())
                .map(|i| match r.columns()[i].type_().name() {
                    "int8" => r
                        .get::<_, Option<i64>>(i)
                        .map_or("NULL".into(), |v| v.to_string()),
                    "float8" => r
                        .get::<_, Option<f64>>(i)
                        .map_or("NULL".into(), |v| v.to_string()),
                    "bytea" => r
                        .get::<_, Option<Vec<u8>>>(i)
                        .map_or("NULL".into(), |v| hex(&v)),
                    _ => r.get::<_, Option<String>>(i).unwrap_or("NULL".into()),
                })
                .collect()
        })
        .collect();
    assert!(!ours.is_empty(), "{sqlite_sql} selects rows");
    assert_eq!(ours, theirs, "{sqlite_sql}");
}

fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

fn migrate_to(dir: &Path, url: &str, batch: &str) -> (bool, String, String) {
    run_cli(&[
        "migrate",
        "--data-dir",
        dir.to_str().unwrap(),
        "--to",
        url,
        "--batch-rows",
        batch,
    ])
}

/// A populated data dir (its server stopped).
async fn populated() -> (std::sync::Arc<tempfile::TempDir>, String) {
    let srv = server(VAULT_KEY, None).await;
    let (tenant, _, _) = populate(&srv).await;
    (srv.shutdown().await, tenant)
}

#[tokio::test]
async fn a_data_dir_is_copied_into_postgres_verified_row_for_row_and_copied_again_safely() {
    if crate::support::on_postgres() {
        // The source of a copy is a SQLite data dir.
        return;
    }
    let (dir, tenant) = populated().await;
    let dir = dir.path();
    let url = postgres_database().await;
    // Small batches: many COPYs and commits, as a large data dir would take.
    let (ok, out, err) = migrate_to(dir, &url, "7");
    assert!(ok, "{out}\n{err}");
    assert!(err.contains("copied and verified"), "{err}");
    assert!(
        out.contains("events") && out.contains("vault_items"),
        "{out}"
    );
    let client = postgres_client(&url).await;
    let total = assert_same_counts(dir, &client).await;
    assert!(total > 100, "{total} rows");
    let version: String = client
        .query_one("SELECT value FROM meta WHERE key = 'schema_version'", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(version, engram::store::SCHEMA_VERSION.to_string());

    same_rows(
        dir,
        &client,
        "SELECT tenant_id, seq, id, session_id, type, payload, metadata, salience, created_at,
                processed_at FROM events ORDER BY seq",
        "SELECT tenant_id, seq, id, session_id, type, payload, metadata, salience, created_at,
                processed_at FROM events ORDER BY seq",
    )
    .await;
    same_rows(
        dir,
        &client,
        "SELECT id, type, status, version, confidence, content_json FROM artifacts ORDER BY seq",
        "SELECT id, type, status, version, confidence, content_json FROM artifacts ORDER BY seq",
    )
    .await;
    same_rows(
        dir,
        &client,
        "SELECT id, tenant_id, nonce, ciphertext, tags FROM vault_items ORDER BY id",
        "SELECT id, tenant_id, nonce, ciphertext, tags FROM vault_items ORDER BY id",
    )
    .await;
    same_rows(
        dir,
        &client,
        "SELECT tenant_id, mode, metric, bucket, value FROM usage_counters
         ORDER BY tenant_id, mode, metric, bucket",
        "SELECT tenant_id, mode, metric, bucket, value FROM usage_counters
         ORDER BY tenant_id COLLATE \"C\", mode COLLATE \"C\", metric COLLATE \"C\",
                  bucket COLLATE \"C\"",
    )
    .await;
    same_rows(
        dir,
        &client,
        "SELECT key_hash, scopes, revoked_at FROM api_keys ORDER BY key_hash",
        "SELECT key_hash, scopes, revoked_at FROM api_keys ORDER BY key_hash COLLATE \"C\"",
    )
    .await;
    let mine: i64 = client
        .query_one(
            "SELECT count(*) FROM memories WHERE tenant_id = $1",
            &[&tenant],
        )
        .await
        .unwrap()
        .get(0);
    assert!(mine > 0);

    // The identities continue after the copied rows: a new row gets a fresh seq.
    for table in ["events", "memories", "jobs", "artifacts"] {
        let (max, next): (i64, i64) = {
            let r = client
                .query_one(
                    &format!(
                        "SELECT max(seq), nextval(pg_get_serial_sequence('{table}', 'seq'))
                         FROM {table}"
                    ),
                    &[],
                )
                .await
                .unwrap();
            (r.get(0), r.get(1))
        };
        assert_eq!(next, max + 1, "{table}");
    }

    // Again: nothing is sent twice and the counts still match.
    let (ok, out, err) = migrate_to(dir, &url, "500");
    assert!(ok, "{out}\n{err}");
    assert!(
        err.contains("already held a complete copy of this data dir"),
        "{err}"
    );
    assert_same_counts(dir, &client).await;
}

#[tokio::test]
async fn a_copy_killed_midway_resumes_and_foreign_databases_are_refused() {
    if crate::support::on_postgres() {
        // The source of a copy is a SQLite data dir.
        return;
    }
    let (dir, _) = populated().await;
    let dir = dir.path();
    let url = postgres_database().await;
    let client = postgres_client(&url).await;

    // A first run creates the schema. Then the tables from `events` on lose their rows (some)
    // and their progress (all), as if the copy had stopped before them: the next run sends them
    // again (rows still there are stored once) until it reaches `memories`, which a transaction
    // here holds locked, and is killed while it waits.
    let (ok, out, err) = migrate_to(dir, &url, "3");
    assert!(ok, "{out}\n{err}");
    client
        .batch_execute(
            "DELETE FROM memories; DELETE FROM artifacts; DELETE FROM events;
             DELETE FROM meta WHERE key LIKE 'copied:%' AND key NOT IN
               ('copied:meta', 'copied:tenants', 'copied:developers', 'copied:projects',
                'copied:project_members', 'copied:api_keys', 'copied:agents',
                'copied:connector_catalog', 'copied:connectors');
             DELETE FROM meta WHERE key = 'copy_verified_at'",
        )
        .await
        .unwrap();
    let mut locker = postgres_client(&url).await;
    let lock = locker.transaction().await.unwrap();
    lock.batch_execute("LOCK TABLE memories IN ACCESS EXCLUSIVE MODE")
        .await
        .unwrap();
    let mut child = Command::new(crate::support::engram_bin())
        .args(["migrate", "--data-dir", dir.to_str().unwrap(), "--to", &url])
        .args(["--batch-rows", "3"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let events = sqlite_count(&sqlite(dir), "events");
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let waiting: i64 = client
            .query_one(
                "SELECT count(*) FROM pg_stat_activity
                 WHERE datname = current_database() AND wait_event_type = 'Lock'",
                &[],
            )
            .await
            .unwrap()
            .get(0);
        if waiting > 0 {
            break;
        }
        assert!(
            child.try_wait().unwrap().is_none(),
            "the copy ended before it reached the locked table"
        );
        assert!(Instant::now() < deadline, "the copy never reached memories");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    child.kill().unwrap();
    child.wait().unwrap();
    lock.rollback().await.unwrap();
    let (copied_events, copied_memories): (i64, i64) = {
        let r = client
            .query_one(
                "SELECT (SELECT count(*) FROM events), (SELECT count(*) FROM memories)",
                &[],
            )
            .await
            .unwrap();
        (r.get(0), r.get(1))
    };
    assert_eq!((copied_events, copied_memories), (events, 0));

    let (ok, out, err) = migrate_to(dir, &url, "3");
    assert!(ok, "{out}\n{err}");
    assert!(
        err.contains("resumed an earlier, interrupted copy"),
        "{err}"
    );
    assert_same_counts(dir, &client).await;

    // Another data dir into the same database: refused, and the copy stays whole.
    let other = TestServer::start().await.shutdown().await;
    let (ok, _, err) = migrate_to(other.path(), &url, "100");
    assert!(!ok);
    assert!(err.contains("holds a copy of another data dir"), "{err}");
    assert_same_counts(dir, &client).await;

    // A database engram did not create.
    let foreign = postgres_database().await;
    postgres_client(&foreign)
        .await
        .batch_execute("CREATE TABLE orders (id int primary key); INSERT INTO orders VALUES (1)")
        .await
        .unwrap();
    let (ok, _, err) = migrate_to(dir, &foreign, "100");
    assert!(!ok);
    assert!(
        err.contains("is not empty (1 tables in schema public)"),
        "{err}"
    );
    let orders = pg_tables(&postgres_client(&foreign).await).await;
    assert_eq!(orders, ["orders"]);

    // A database a newer engram wrote.
    client
        .batch_execute("UPDATE meta SET value = '99' WHERE key = 'schema_version'")
        .await
        .unwrap();
    let (ok, _, err) = migrate_to(dir, &url, "100");
    assert!(!ok);
    assert!(
        err.contains("written by a newer engram (schema version 99"),
        "{err}"
    );

    // Not a PostgreSQL URL, and no server there.
    let (ok, _, err) = migrate_to(dir, "mysql://root@127.0.0.1/x", "100");
    assert!(!ok);
    assert!(err.contains("--to: a PostgreSQL URL looks like"), "{err}");
    let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = closed.local_addr().unwrap().port();
    drop(closed);
    let (ok, _, err) = migrate_to(
        dir,
        &format!("postgres://engram:s3cret@127.0.0.1:{port}/x"),
        "100",
    );
    assert!(!ok);
    assert!(err.contains("cannot connect to PostgreSQL at"), "{err}");
    assert!(!err.contains("s3cret"), "the password is not shown: {err}");
}

/// A database at version 5 (before leases, the search feed and the shared limits) is migrated by
/// the first node that starts on it, keeping its rows; the node then serves and its index follows
/// the feed.
#[tokio::test]
async fn a_version_5_database_is_migrated_by_the_first_node() {
    if crate::support::on_postgres() {
        return;
    }
    let url = postgres_database().await;
    let u = url.clone();
    let srv = TestServer::start_with(move |c| c.database = Some(u)).await;
    let (s, b) = srv
        .post(
            "/v1/capture",
            serde_json::json!({"type": "message", "sessionId": "old",
                               "payload": {"role": "user", "content": "kept across the upgrade"}}),
        )
        .await;
    assert_eq!(s, 202, "{b}");
    let key = srv.key.clone();
    let dir = srv.shutdown().await;
    // Back to version 5: what version 6 added, taken out.
    let client = postgres_client(&url).await;
    client
        .batch_execute(
            "DROP TABLE index_feed, rate_buckets, quota_reserved;
             DROP FUNCTION engram_feed_new, engram_feed_memories_changed,
                           engram_feed_artifacts_changed CASCADE;
             ALTER TABLE jobs DROP COLUMN lease_until;
             UPDATE meta SET value = '5' WHERE key = 'schema_version';",
        )
        .await
        .unwrap();
    let u = url.clone();
    let srv = TestServer::start_in(dir, move |c| c.database = Some(u)).await;
    let version: String = client
        .query_one("SELECT value FROM meta WHERE key = 'schema_version'", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(version, engram::store::SCHEMA_VERSION.to_string());
    assert_eq!(pg_tables(&client).await.len(), 26);
    let events: i64 = client
        .query_one("SELECT count(*) FROM events", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(events, 1);
    // The feed works: a new event reaches the index through it.
    let send = |path: &str, body: serde_json::Value| {
        srv.req_as(&key, reqwest::Method::POST, path)
            .json(&body)
            .send()
    };
    let r = send(
        "/v1/capture?wait=searchable",
        serde_json::json!({"type": "message", "sessionId": "new",
                           "payload": {"role": "user", "content": "zebrafish after the upgrade"}}),
    )
    .await
    .unwrap();
    assert_eq!(r.status().as_u16(), 202);
    let r = send("/v1/synthesize", serde_json::json!({"query": "zebrafish"}))
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 200);
    let p: serde_json::Value = r.json().await.unwrap();
    assert!(p.to_string().contains("zebrafish after the upgrade"), "{p}");
    srv.shutdown().await;
}
