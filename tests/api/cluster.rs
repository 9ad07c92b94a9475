//! Several engram nodes on one PostgreSQL database (docs/scale-out.md): jobs, the search feed and
//! the limits they share. Each test makes its own database, so it runs once, in the suite's
//! SQLite pass (the PostgreSQL pass returns at once).

use crate::limits::tenant;
use crate::support::{
    on_postgres, postgres_client, postgres_database, wait_for, ChildServer, TestServer,
};
use engram::plans::Plan;
use serde_json::{json, Value};
use std::collections::HashSet;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// The operator key every node of the cluster test is bootstrapped with (the first one to start
/// creates it; the others find it in the database).
const KEY: &str = "hx_live_Clu5terTestKey0123456789abcdefghijklmnopq";

async fn post(http: &reqwest::Client, url: &str, body: &Value) -> Option<(u16, Value)> {
    let r = http
        .post(url)
        .bearer_auth(KEY)
        .json(body)
        .send()
        .await
        .ok()?;
    let status = r.status().as_u16();
    Some((status, r.json().await.unwrap_or(Value::Null)))
}

async fn synth(http: &reqwest::Client, node: &str, query: &str, max_tokens: u64) -> Value {
    let (s, b) = post(
        http,
        &format!("{node}/v1/synthesize"),
        &json!({"query": query, "maxTokens": max_tokens, "options": {"minConfidence": 0.0}}),
    )
    .await
    .expect("the node answers");
    assert_eq!(s, 200, "{b}");
    b["data"].clone()
}

fn pack_has(pack: &Value, word: &str) -> bool {
    pack["entries"].as_array().is_some_and(|es| {
        es.iter()
            .any(|e| e["content"].as_str().unwrap_or("").contains(word))
    })
}

/// Three engram processes on one database. Captures are spread over them; one is killed with
/// SIGKILL while they arrive. Every acknowledged event is then processed exactly once (its jobs,
/// claimed by the dead node, are claimed again when their lease lapses) and found in packs by
/// both survivors; learns started on different nodes never run together for the tenant; and the
/// caught-up survivors give the same pack for the same request.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_nodes_share_the_work_and_survive_a_sigkill() {
    if on_postgres() {
        return;
    }
    let url = postgres_database().await;
    let dirs: Vec<tempfile::TempDir> = (0..3).map(|_| tempfile::tempdir().unwrap()).collect();
    let env = [
        ("ENGRAM_DATABASE_URL", url.as_str()),
        ("ENGRAM_BOOTSTRAP_KEY", KEY),
        ("ENGRAM_JOB_LEASE_SECS", "2"),
        ("ENGRAM_DISABLE_LIMITS", "true"),
    ];
    let a = ChildServer::start(dirs[0].path(), &env);
    let b = ChildServer::start(dirs[1].path(), &env);
    let c = ChildServer::start(dirs[2].path(), &env);
    let nodes = [a.base.clone(), b.base.clone(), c.base.clone()];
    let http = reqwest::Client::builder()
        .timeout(Duration::from_secs(20))
        .build()
        .unwrap();

    // 900 captures, 12 at a time, round-robin over the nodes; the third node is killed after
    // the first 300 have been sent. Bounded: every request has a 20 s timeout.
    const EVENTS: usize = 900;
    let acked = Arc::new(std::sync::Mutex::new(Vec::<(usize, String)>::new()));
    let next = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let mut senders = Vec::new();
    for _ in 0..12 {
        let (http, nodes, acked, next) = (http.clone(), nodes.clone(), acked.clone(), next.clone());
        senders.push(tokio::spawn(async move {
            loop {
                let i = next.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                if i >= EVENTS {
                    break;
                }
                let body = json!({
                    "type": "message",
                    "sessionId": format!("s{}", i % 30),
                    "payload": {"role": "user",
                                "content": format!("marker{i}z note about the rollout of service {}", i % 7)},
                });
                let url = format!("{}/v1/capture", nodes[i % 3]);
                if let Some((202, b)) = post(&http, &url, &body).await {
                    let id = b["data"]["eventId"].as_str().unwrap().to_string();
                    acked.lock().unwrap().push((i, id));
                }
            }
        }));
    }
    wait_for("300 captures sent", Duration::from_secs(60), || async {
        (next.load(std::sync::atomic::Ordering::SeqCst) >= 300).then_some(())
    })
    .await;
    c.kill();
    for s in senders {
        s.await.unwrap();
    }
    let acked = acked.lock().unwrap().clone();
    let by_dead = acked.iter().filter(|(i, _)| i % 3 == 2).count();
    assert!(
        acked.len() >= EVENTS * 2 / 3,
        "{} acknowledged",
        acked.len()
    );
    assert!(by_dead > 0, "the killed node acknowledged nothing");

    let pg = postgres_client(&url).await;
    let count = |sql: &'static str| {
        let pg = &pg;
        async move { pg.query_one(sql, &[]).await.unwrap().get::<_, i64>(0) }
    };
    // Every stored event is processed, also those whose jobs the killed node held.
    wait_for("every event processed", Duration::from_secs(90), || async {
        (count("SELECT count(*) FROM events WHERE processed_at IS NULL").await == 0).then_some(())
    })
    .await;
    let stored = count("SELECT count(*) FROM events").await;
    assert!(stored as usize >= acked.len());
    let ids: HashSet<String> = pg
        .query("SELECT id FROM events", &[])
        .await
        .unwrap()
        .iter()
        .map(|r| r.get(0))
        .collect();
    for (_, id) in &acked {
        assert!(ids.contains(id), "acknowledged event {id} was lost");
    }
    // Exactly once in effect: one memory per event, and events counted processed once each.
    assert_eq!(
        count("SELECT count(*) FROM memories WHERE kind = 'episodic'").await,
        stored
    );
    assert_eq!(
        count(
            "SELECT count(*) FROM (SELECT event_id FROM memories WHERE kind = 'episodic'
             GROUP BY event_id HAVING count(*) > 1) d"
        )
        .await,
        0
    );
    assert_eq!(
        count("SELECT coalesce(sum(value), 0)::bigint FROM usage_counters WHERE metric = 'events_processed' AND bucket LIKE 'M%'").await,
        stored
    );
    // The jobs the dead node held end too (claimed again once their leases lapse), none failed.
    wait_for("every capture job ended", Duration::from_secs(30), || async {
        (count("SELECT count(*) FROM jobs WHERE kind = 'capture' AND status IN ('queued', 'running')").await == 0)
            .then_some(())
    })
    .await;
    let failed: Vec<String> = pg
        .query(
            "SELECT coalesce(error, '') FROM jobs WHERE kind = 'capture' AND status = 'failed'",
            &[],
        )
        .await
        .unwrap()
        .iter()
        .map(|r| r.get(0))
        .collect();
    assert!(failed.is_empty(), "capture jobs failed: {failed:?}");

    // Searchable from both survivors: events acknowledged by each node, the dead one included.
    let mut sample: Vec<usize> = Vec::new();
    for node in 0..3 {
        let of_node: Vec<usize> = acked
            .iter()
            .map(|(i, _)| *i)
            .filter(|i| i % 3 == node)
            .collect();
        // The first, the last and one in the middle that each node acknowledged.
        sample.extend([
            of_node[0],
            of_node[of_node.len() / 2],
            of_node[of_node.len() - 1],
        ]);
    }
    for node in &nodes[..2] {
        for i in &sample {
            let word = format!("marker{i}z");
            wait_for(
                &format!("{word} in a pack of {node}"),
                Duration::from_secs(10),
                || async { pack_has(&synth(&http, node, &word, 300).await, &word).then_some(()) },
            )
            .await;
        }
    }

    // Learns asked of both survivors at once, and auto-learns: never two at a time.
    for node in &nodes[..2] {
        let (s, b) = post(
            &http,
            &format!("{node}/v1/learn"),
            &json!({"scope": "full"}),
        )
        .await
        .unwrap();
        assert!(s == 202 || s == 200, "{s} {b}");
    }
    wait_for("learns finished", Duration::from_secs(90), || async {
        (count(
            "SELECT count(*) FROM jobs WHERE kind = 'learn' AND status IN ('queued', 'running')",
        )
        .await
            == 0)
            .then_some(())
    })
    .await;
    let runs: Vec<(String, String)> = pg
        .query(
            "SELECT started_at, finished_at FROM jobs WHERE kind = 'learn'
             AND started_at IS NOT NULL ORDER BY started_at",
            &[],
        )
        .await
        .unwrap()
        .iter()
        .map(|r| (r.get(0), r.get(1)))
        .collect();
    assert!(runs.len() >= 2, "{runs:?}");
    for w in runs.windows(2) {
        assert!(
            w[0].1 <= w[1].0,
            "two learns of the tenant overlapped: {runs:?}"
        );
    }

    // Caught up, both survivors answer a request with the same pack.
    let started = Instant::now();
    wait_for("identical packs", Duration::from_secs(15), || async {
        let p0 = synth(&http, &nodes[0], "rollout of service", 600).await;
        let p1 = synth(&http, &nodes[1], "rollout of service", 600).await;
        let same = p0["entries"] == p1["entries"] && !p0["entries"].as_array().unwrap().is_empty();
        same.then_some(())
    })
    .await;
    eprintln!("survivors agreed after {:?}", started.elapsed());
    assert!(a.terminate());
    assert!(b.terminate());

    // Novelty counts are exact across nodes: every stored event counted once, and with all of
    // them processed nothing is left pending.
    assert_eq!(
        count("SELECT coalesce(sum(seen), 0)::bigint FROM event_signatures").await,
        stored
    );
    assert_eq!(count("SELECT count(*) FROM novelty_pending").await, 0);
    // Nodes bump shared counter rows in one order (store::counters), so their transactions never
    // deadlock (each one PostgreSQL had to break cost a stall of deadlock_timeout and a group).
    // The nodes' sessions have ended, so their statistics are reported.
    assert_eq!(
        count("SELECT deadlocks FROM pg_stat_database WHERE datname = current_database()").await,
        0,
        "PostgreSQL broke deadlocks between the nodes' transactions"
    );
}

async fn status(node: &TestServer, key: &str) -> u16 {
    node.req_as(key, reqwest::Method::GET, "/v1/me")
        .send()
        .await
        .expect("the node answers")
        .status()
        .as_u16()
}

/// Three nodes share a key's rate bucket: a burst spread over them is admitted once in total,
/// not once per node; a sustained load through all three gets the plan's rate within 10 %; and a
/// monthly quota asked for at once through all three is filled exactly.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn limits_hold_across_three_nodes() {
    if on_postgres() {
        return;
    }
    let url = postgres_database().await;
    let mut nodes = Vec::new();
    for _ in 0..3 {
        let u = url.clone();
        nodes.push(TestServer::start_with(move |c| c.database = Some(u)).await);
    }
    // A burst of 30, then 6 a minute: 90 requests over three nodes within a second or two.
    let t = tenant(
        &nodes[0],
        Plan::Free,
        Some(json!({"requestsPerMinute": 6, "burst": 30})),
    )
    .await;
    let mut admitted = 0;
    for i in 0..90 {
        let s = status(&nodes[i % 3], &t.key).await;
        match s {
            200 => admitted += 1,
            429 => {}
            other => panic!("unexpected status {other}"),
        }
    }
    assert_eq!(admitted, 30, "the burst is the tenant's across nodes");

    // Sustained: 1,200 a minute (20 a second), bursts of 40, offered at about 3× that from
    // three nodes for 4 seconds (bounded in time and count).
    let t = tenant(
        &nodes[0],
        Plan::Free,
        Some(json!({"requestsPerMinute": 1200, "burst": 40})),
    )
    .await;
    let start = Instant::now();
    let mut admitted = 0u64;
    let mut sent = 0u64;
    while start.elapsed() < Duration::from_secs(4) && sent < 2_000 {
        let s = status(&nodes[(sent % 3) as usize], &t.key).await;
        sent += 1;
        if s == 200 {
            admitted += 1;
        }
        tokio::time::sleep(Duration::from_millis(16)).await;
    }
    let elapsed = start.elapsed().as_secs_f64();
    let allowed = 40.0 + 20.0 * elapsed;
    let ratio = admitted as f64 / allowed;
    eprintln!("sustained: {admitted} of {sent} admitted in {elapsed:.2} s; plan allows {allowed:.0} ({ratio:.3})");
    assert!(
        (0.9..=1.1).contains(&ratio),
        "{admitted} admitted where the plan allows {allowed:.0}"
    );
    // A monthly quota of 50 events, asked for by 3 × 30 events at once through the three nodes:
    // exactly 50 are stored.
    let t = tenant(
        &nodes[0],
        Plan::Free,
        Some(json!({"eventsPerMonth": 50, "requestsPerMinute": 100000})),
    )
    .await;
    let mut calls = Vec::new();
    for (n, node) in nodes.iter().enumerate() {
        for i in 0..30 {
            let req = node
                .req_as(&t.key, reqwest::Method::POST, "/v1/capture")
                .json(&json!({"type": "message", "sessionId": format!("q{n}"),
                              "payload": {"role": "user", "content": format!("quota {n} {i}")}}));
            calls.push(tokio::spawn(async move {
                req.send()
                    .await
                    .expect("the node answers")
                    .status()
                    .as_u16()
            }));
        }
    }
    let mut accepted = 0;
    for c in calls {
        match c.await.unwrap() {
            202 => accepted += 1,
            429 => {}
            other => panic!("unexpected status {other}"),
        }
    }
    assert_eq!(accepted, 50, "the quota is exact across nodes");
    let stored: i64 = postgres_client(&url)
        .await
        .query_one("SELECT count(*) FROM events WHERE tenant_id = $1", &[&t.id])
        .await
        .unwrap()
        .get(0);
    assert_eq!(stored, 50);
    for n in nodes {
        n.shutdown().await;
    }
}
