//! Several engram nodes on one PostgreSQL database, measured from outside (docs/scale-out.md):
//!
//! - `freshness`: two nodes; a steady background load of captures spread over both, and every
//!   50 ms one marked event captured on node A; each marked event is looked for in node B's
//!   packs (every 20 ms: a search costs CPU the nodes share) and the time from A's 202 to B's
//!   pack holding it is recorded. Prints p50/p90/p99/max, and how long each look took. The load
//!   runs 10 s before measuring, then the database is `ANALYZE`d (as autovacuum would). Knobs
//!   (environment): `CLUSTER_BENCH_RATE=N` (open-loop load of N captures/s instead of the
//!   default 4 closed loops), `CLUSTER_BENCH_LOAD` (number of closed loops; 0: idle),
//!   `CLUSTER_BENCH_WARMUP` (seconds; 0: none), `CLUSTER_BENCH_SAME=1` (look on node A),
//!   `CLUSTER_BENCH_TRACE=1` (per-event times), `CLUSTER_BENCH_LOG=1` (nodes' warnings).
//! - `catch-up`: a database holding N memories (written straight into the table, as a large
//!   tenant's history), then a new node with an empty data dir: the time until `/v1/health` says
//!   its index is rebuilt, and its peak RSS.
//!
//! ```sh
//! U=$(scripts/pg_cluster.sh start)        # or any PostgreSQL URL whose user may create databases
//! cargo build --release --bin engram
//! cargo run --release --example cluster_bench -- freshness "$U" [marked events, default 200]
//! cargo run --release --example cluster_bench -- catch-up "$U" [documents, default 1000000]
//! ```
//!
//! Only 127.0.0.1 and the given database are contacted; every loop is bounded in count and time.

use serde_json::{json, Value};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

const KEY: &str = "hx_live_ClusterBenchKey0123456789abcdefghijklmnop";

fn engram_bin() -> String {
    std::env::var("ENGRAM_BIN").unwrap_or_else(|_| "target/release/engram".into())
}

struct Node {
    child: Child,
    base: String,
    _dir: tempfile::TempDir,
}

impl Drop for Node {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn start_node(database: &str) -> Node {
    use std::io::BufRead;
    // `CLUSTER_BENCH_LOG=1`: the nodes' warnings (slow feed rounds, …) are shown.
    let show_log = std::env::var("CLUSTER_BENCH_LOG").is_ok_and(|v| v == "1");
    let dir = tempfile::tempdir().expect("temp dir");
    let mut child = Command::new(engram_bin())
        .args([
            "serve",
            "--listen",
            "127.0.0.1:0",
            "--disable-limits",
            "--data-dir",
        ])
        .arg(dir.path())
        .env("ENGRAM_DATABASE_URL", database)
        .env("ENGRAM_BOOTSTRAP_KEY", KEY)
        .env("ENGRAM_LOG", if show_log { "warn" } else { "error" })
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("engram starts (build it: cargo build --release --bin engram)");
    let stderr = child.stderr.take().expect("stderr");
    let pid = child.id();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in std::io::BufReader::new(stderr)
            .lines()
            .map_while(Result::ok)
        {
            if let Some(addr) = line.strip_prefix("engram listening on ") {
                let _ = tx.send(addr.trim().to_string());
            } else if show_log {
                eprintln!("[node {pid}] {line}");
            }
        }
    });
    let base = rx
        .recv_timeout(Duration::from_secs(120))
        .expect("engram listening within 120 s");
    Node {
        child,
        base,
        _dir: dir,
    }
}

/// A fresh database on the server of `url`; returns its URL.
async fn fresh_database(url: &str) -> String {
    let (client, conn) = tokio_postgres::connect(url, tokio_postgres::NoTls)
        .await
        .expect("PostgreSQL reachable");
    tokio::spawn(conn);
    let name = format!("engram_cluster_bench_{}", std::process::id());
    client
        .batch_execute(&format!("CREATE DATABASE {name}"))
        .await
        .expect("database created");
    let mut u = url::Url::parse(url).expect("a PostgreSQL URL");
    u.set_path(&format!("/{name}"));
    u.to_string()
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    if sorted.is_empty() {
        return Duration::ZERO;
    }
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i.min(sorted.len() - 1)]
}

async fn capture(http: &reqwest::Client, base: &str, session: &str, content: &str) -> bool {
    let r = http
        .post(format!("{base}/v1/capture"))
        .bearer_auth(KEY)
        .json(&json!({"type": "message", "sessionId": session,
                      "payload": {"role": "user", "content": content}}))
        .send()
        .await;
    matches!(r, Ok(r) if r.status().as_u16() == 202)
}

async fn pack_has(http: &reqwest::Client, base: &str, word: &str) -> bool {
    let r = http
        .post(format!("{base}/v1/synthesize"))
        .bearer_auth(KEY)
        .json(&json!({"query": word, "maxTokens": 200}))
        .send()
        .await;
    let Ok(r) = r else { return false };
    let Ok(v) = r.json::<Value>().await else {
        return false;
    };
    v["data"]["entries"].as_array().is_some_and(|es| {
        es.iter()
            .any(|e| e["content"].as_str().unwrap_or("").contains(word))
    })
}

async fn freshness(url: &str, marked: usize) {
    let db = fresh_database(url).await;
    let a = start_node(&db);
    let b = start_node(&db);
    let http = reqwest::Client::builder()
        .timeout(Duration::from_secs(10))
        .build()
        .unwrap();
    // Background load: 4 loops capturing over both nodes until the marked events are done
    // (bounded: at most 10 minutes).
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let sent = std::sync::Arc::new(std::sync::atomic::AtomicU64::new(0));
    let mut load = Vec::new();
    // `CLUSTER_BENCH_LOAD` sets the number of background loops (default 4; 0: none).
    let loops: u64 = std::env::var("CLUSTER_BENCH_LOAD")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(4);
    // `CLUSTER_BENCH_RATE=N`: instead of the loops, an open-loop load of N captures/s over both
    // nodes (one request started every 1/N s whatever the answers take; at most 256 in flight,
    // beyond which a tick is skipped and counted behind).
    let rate: Option<f64> = std::env::var("CLUSTER_BENCH_RATE")
        .ok()
        .and_then(|v| v.parse().ok())
        .filter(|r: &f64| *r > 0.0);
    let behind = std::sync::Arc::new(std::sync::atomic::AtomicU64::new(0));
    if let Some(rate) = rate {
        let (http, stop, sent, behind) = (http.clone(), stop.clone(), sent.clone(), behind.clone());
        let nodes = [a.base.clone(), b.base.clone()];
        load.push(tokio::spawn(async move {
            let start = Instant::now();
            let in_flight = std::sync::Arc::new(tokio::sync::Semaphore::new(256));
            let mut tick = tokio::time::interval(Duration::from_secs_f64(1.0 / rate));
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Burst);
            let mut i = 0u64;
            while !stop.load(std::sync::atomic::Ordering::Relaxed)
                && start.elapsed() < Duration::from_secs(600)
            {
                tick.tick().await;
                let Ok(permit) = in_flight.clone().try_acquire_owned() else {
                    behind.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                    continue;
                };
                let (http, sent) = (http.clone(), sent.clone());
                let node = nodes[(i % 2) as usize].clone();
                let text = format!("background note {i} about the deploy queue");
                tokio::spawn(async move {
                    if capture(&http, &node, &format!("bg{}", i % 64), &text).await {
                        sent.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                    }
                    drop(permit);
                });
                i += 1;
            }
        }));
    }
    for l in 0..if rate.is_some() { 0 } else { loops } {
        let (http, stop, sent) = (http.clone(), stop.clone(), sent.clone());
        let nodes = [a.base.clone(), b.base.clone()];
        load.push(tokio::spawn(async move {
            let start = Instant::now();
            let mut i = 0u64;
            while !stop.load(std::sync::atomic::Ordering::Relaxed)
                && start.elapsed() < Duration::from_secs(600)
            {
                let node = &nodes[(i % 2) as usize];
                let text = format!("background note {l} {i} about the deploy queue");
                if capture(&http, node, &format!("bg{}", i % 64), &text).await {
                    sent.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                }
                i += 1;
            }
        }));
    }
    // `CLUSTER_BENCH_SAME=1`: look in node A's own packs instead (what the feed adds is the
    // difference).
    let reader = if std::env::var("CLUSTER_BENCH_SAME").is_ok_and(|v| v == "1") {
        &a.base
    } else {
        &b.base
    };
    // `CLUSTER_BENCH_TRACE=1`: one line per marked event (when it was acknowledged and found,
    // Unix ms), to set beside the database's `processed_at`.
    let trace = std::env::var("CLUSTER_BENCH_TRACE").is_ok_and(|v| v == "1");
    // Warm-up (`CLUSTER_BENCH_WARMUP` seconds of the background load, default 10), then
    // `ANALYZE`, as autovacuum does within its first minute: a brand-new database's plans are
    // otherwise made on the statistics of empty tables, which is not the steady state measured.
    let warmup: u64 = std::env::var("CLUSTER_BENCH_WARMUP")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(10);
    if warmup > 0 {
        tokio::time::sleep(Duration::from_secs(warmup)).await;
        let (client, conn) = tokio_postgres::connect(&db, tokio_postgres::NoTls)
            .await
            .expect("PostgreSQL reachable");
        tokio::spawn(conn);
        client.batch_execute("ANALYZE").await.expect("analyzed");
        sent.store(0, std::sync::atomic::Ordering::Relaxed);
    }
    let started = Instant::now();
    let mut lags = Vec::with_capacity(marked);
    // How long each look (a synthesize on the reader) took: a lag is known to within one.
    let mut synths = Vec::new();
    let mut missed = 0;
    for i in 0..marked {
        let word = format!("fresh{i}q{}", std::process::id());
        let t0 = Instant::now();
        if !capture(
            &http,
            &a.base,
            "marked",
            &format!("{word} was captured on node A"),
        )
        .await
        {
            missed += 1;
            continue;
        }
        let acked = Instant::now();
        let mut found = false;
        while acked.elapsed() < Duration::from_secs(10) {
            let asked = Instant::now();
            let has = pack_has(&http, reader, &word).await;
            synths.push(asked.elapsed());
            if has {
                found = true;
                break;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        if found {
            if trace {
                let unix = |t: Instant| {
                    let ago = t.elapsed();
                    (std::time::SystemTime::now() - ago)
                        .duration_since(std::time::UNIX_EPOCH)
                        .unwrap_or_default()
                        .as_millis()
                };
                println!(
                    "trace {word} acked_ms {} found_ms {} last_look_ms {}",
                    unix(acked),
                    unix(Instant::now()),
                    synths.last().copied().unwrap_or_default().as_millis()
                );
            }
            lags.push(acked.elapsed());
        } else {
            missed += 1;
        }
        let spent = t0.elapsed();
        if spent < Duration::from_millis(50) {
            tokio::time::sleep(Duration::from_millis(50) - spent).await;
        }
    }
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    for l in load {
        let _ = l.await;
    }
    let secs = started.elapsed().as_secs_f64();
    lags.sort();
    println!(
        "freshness A→B: {} marked events, {} not found within 10 s; background load {:.0} captures/s \
         over both nodes ({}; {} ticks skipped behind)",
        lags.len(),
        missed,
        sent.load(std::sync::atomic::Ordering::Relaxed) as f64 / secs,
        match rate {
            Some(r) => format!("offered {r:.0}/s open loop"),
            None => format!("{loops} closed loops"),
        },
        behind.load(std::sync::atomic::Ordering::Relaxed)
    );
    println!(
        "  p50 {:?}  p90 {:?}  p99 {:?}  max {:?}",
        percentile(&lags, 0.5),
        percentile(&lags, 0.9),
        percentile(&lags, 0.99),
        lags.last().copied().unwrap_or_default()
    );
    synths.sort();
    println!(
        "  each look (a synthesize on the reader, {} of them): p50 {:?}  p99 {:?}  max {:?}",
        synths.len(),
        percentile(&synths, 0.5),
        percentile(&synths, 0.99),
        synths.last().copied().unwrap_or_default()
    );
}

fn peak_rss_kb(pid: u32) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmHWM:"))
                .and_then(|l| l.split_whitespace().nth(1)?.parse().ok())
        })
        .unwrap_or(0)
}

async fn catch_up(url: &str, docs: u64) {
    let db = fresh_database(url).await;
    // The first node creates the schema and the bootstrap key's tenant; then it stops.
    drop(start_node(&db));
    let (client, conn) = tokio_postgres::connect(&db, tokio_postgres::NoTls)
        .await
        .unwrap();
    tokio::spawn(conn);
    let tenant: String = client
        .query_one(
            "SELECT tenant_id FROM api_keys ORDER BY created_at LIMIT 1",
            &[],
        )
        .await
        .expect("the bootstrap key")
        .get(0);
    let t = Instant::now();
    let words = "deploy rollback queue worker retry payment service ledger cache timeout";
    client
        .execute(
            "INSERT INTO memories(id, tenant_id, kind, session_id, content, created_at, updated_at,
                                  confidence, salience)
             SELECT 'mem_bench' || lpad(g::text, 9, '0'), $1, 'episodic', 's' || (g % 1000),
                    'note ' || g || ' ' || split_part($2::text, ' ', (1 + g % 10)::int) || ' '
                      || split_part($2::text, ' ', (1 + (g / 10) % 10)::int) || ' '
                      || split_part($2::text, ' ', (1 + (g / 100) % 10)::int),
                    '2026-11-01T00:00:00.000Z', '2026-11-01T00:00:00.000Z', 0.5, 0.5
             FROM generate_series(1, $3::bigint) AS g",
            &[&tenant, &words, &(docs as i64)],
        )
        .await
        .expect("memories written");
    client
        .batch_execute("TRUNCATE index_feed")
        .await
        .expect("feed emptied");
    println!(
        "catch-up: {docs} memories written in {:.1} s",
        t.elapsed().as_secs_f64()
    );
    let start = Instant::now();
    let node = start_node(&db);
    let http = reqwest::Client::new();
    let mut done = false;
    while start.elapsed() < Duration::from_secs(3600) {
        let h: Value = match http.get(format!("{}/v1/health", node.base)).send().await {
            Ok(r) => r.json().await.unwrap_or(Value::Null),
            Err(_) => Value::Null,
        };
        let search = &h["data"]["subsystems"]["search"];
        let feed = &search["feed"];
        if feed["rebuilding"] == json!(false) && search["documents"].as_u64() >= Some(docs) {
            done = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let secs = start.elapsed().as_secs_f64();
    println!(
        "catch-up: a new node {} {docs} documents in {secs:.1} s ({:.0} documents/s), peak RSS {} MB",
        if done { "indexed" } else { "had NOT indexed" },
        docs as f64 / secs,
        peak_rss_kb(node.child.id()) / 1024
    );
}

#[tokio::main]
async fn main() {
    let args: Vec<String> = std::env::args().collect();
    let usage = "usage: cluster_bench freshness|catch-up POSTGRES_URL [count]";
    let (Some(what), Some(url)) = (args.get(1), args.get(2)) else {
        eprintln!("{usage}");
        std::process::exit(2);
    };
    let count: Option<u64> = args.get(3).and_then(|c| c.parse().ok());
    match what.as_str() {
        "freshness" => freshness(url, count.unwrap_or(200) as usize).await,
        "catch-up" => catch_up(url, count.unwrap_or(1_000_000)).await,
        _ => {
            eprintln!("{usage}");
            std::process::exit(2);
        }
    }
}
