//! Load generator: drives an engram server with N keep-alive HTTP/1.1 connections for T seconds per
//! scenario and prints throughput and latency percentiles, next to the same load against a bare
//! hyper endpoint it starts itself (our req/s as a ratio of that baseline).
//!
//! ```text
//! cargo run --release --example loadgen -- [--scenarios baseline,capture,batch]
//!     [--connections 64] [--seconds 10] [--drain 1000000] [--limits]
//!     [--url http://127.0.0.1:8080 --key hx_live_…]
//! ```
//! Without `--url` it starts engram in-process on a temp data dir (limits disabled unless
//! `--limits`). `--drain N` (after the scenarios, once their backlog is processed) captures N
//! events in batches of 1000 and reports the acknowledged events/s, the time until every event is
//! processed and searchable, and the peak RSS.
//!
//! Every loop is bounded by a request count and a deadline, and only 127.0.0.1 (or `--url`) is
//! contacted. To add a scenario, add an entry to `scenarios()`.

#[path = "bare_parts/server.rs"]
mod bare_server;

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::{Method, Request};
use hyper_util::rt::TokioIo;
use serde_json::{json, Value};
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Most requests one connection sends in one scenario.
const MAX_REQUESTS_PER_CONN: u64 = 5_000_000;
/// Distinct requests each connection builds up front and cycles through (building JSON while
/// measuring would spend the shared CPU on the client).
const POOL: u64 = 16;

/// One kind of request the generator can send.
struct Scenario {
    name: &'static str,
    /// Events per request (for events/s); 0 when the scenario does not capture.
    events: u64,
    /// Sent to the bare hyper baseline instead of engram.
    baseline: bool,
    /// Builds request number `i` of connection `conn`: (method, path, JSON body).
    build: fn(conn: usize, i: u64) -> (Method, String, Option<Value>),
}

fn capture_event(conn: usize, i: u64, j: u64) -> Value {
    json!({
        "type": if j % 4 == 3 { "tool_call" } else { "message" },
        "sessionId": format!("load-{conn}-{}", i % 50),
        "payload": {"role": "user", "content": format!("load test event {i}/{j} from connection {conn}: deploy the payment service"), "tool_name": "kubectl"},
        "metadata": {"agentId": format!("agent-{}", conn % 4)},
    })
}

/// The scenarios, in the order they run. Extend here.
fn scenarios() -> Vec<Scenario> {
    vec![
        Scenario {
            name: "baseline",
            events: 0,
            baseline: true,
            build: |conn, i| (Method::POST, "/".into(), Some(capture_event(conn, i, 0))),
        },
        Scenario {
            name: "capture",
            events: 1,
            baseline: false,
            build: |conn, i| {
                (
                    Method::POST,
                    "/v1/capture".into(),
                    Some(capture_event(conn, i, 0)),
                )
            },
        },
        Scenario {
            name: "batch",
            events: 100,
            baseline: false,
            build: |conn, i| {
                let events: Vec<Value> = (0..100).map(|j| capture_event(conn, i, j)).collect();
                (
                    Method::POST,
                    "/v1/capture/batch".into(),
                    Some(json!({ "events": events })),
                )
            },
        },
    ]
}

struct Args {
    scenarios: Vec<String>,
    connections: usize,
    seconds: u64,
    drain: u64,
    limits: bool,
    url: Option<String>,
    key: Option<String>,
}

fn parse_args() -> Args {
    let mut a = Args {
        scenarios: vec!["baseline".into(), "capture".into(), "batch".into()],
        connections: 64,
        seconds: 10,
        drain: 0,
        limits: false,
        url: None,
        key: None,
    };
    let mut it = std::env::args().skip(1);
    while let Some(flag) = it.next() {
        let mut value = || it.next().unwrap_or_else(|| panic!("{flag} needs a value"));
        match flag.as_str() {
            "--scenarios" => a.scenarios = value().split(',').map(str::to_string).collect(),
            "--connections" => a.connections = value().parse().expect("--connections N"),
            "--seconds" => a.seconds = value().parse().expect("--seconds N"),
            "--drain" => a.drain = value().parse().expect("--drain N"),
            "--limits" => a.limits = true,
            "--url" => a.url = Some(value()),
            "--key" => a.key = Some(value()),
            other => panic!("unknown flag {other}"),
        }
    }
    a
}

/// The bare hyper baseline (`bare_parts/server.rs`) on an ephemeral loopback port.
async fn start_baseline() -> SocketAddr {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(bare_server::serve(listener));
    addr
}

struct ConnResult {
    latencies_us: Vec<u32>,
    errors: u64,
    first_error: Option<String>,
}

#[allow(clippy::too_many_arguments)]
async fn drive_connection(
    addr: SocketAddr,
    host: String,
    key: String,
    scenario: fn(usize, u64) -> (Method, String, Option<Value>),
    conn_no: usize,
    deadline: Instant,
    max_requests: u64,
    progress: Arc<AtomicU64>,
) -> ConnResult {
    let mut out = ConnResult {
        latencies_us: Vec::with_capacity(1 << 14),
        errors: 0,
        first_error: None,
    };
    let stream = match tokio::net::TcpStream::connect(addr).await {
        Ok(s) => s,
        Err(e) => {
            out.errors += 1;
            out.first_error = Some(format!("connect: {e}"));
            return out;
        }
    };
    let _ = stream.set_nodelay(true);
    let (mut sender, conn) =
        match hyper::client::conn::http1::handshake::<_, Full<Bytes>>(TokioIo::new(stream)).await {
            Ok(x) => x,
            Err(e) => {
                out.errors += 1;
                out.first_error = Some(format!("handshake: {e}"));
                return out;
            }
        };
    tokio::spawn(conn);
    let auth = format!("Bearer {key}");
    let pool: Vec<(Method, String, Bytes)> = (0..POOL.min(max_requests))
        .map(|i| {
            let (method, path, body) = scenario(conn_no, i);
            let bytes = body
                .map(|b| Bytes::from(serde_json::to_vec(&b).unwrap()))
                .unwrap_or_default();
            (method, path, bytes)
        })
        .collect();
    let mut i = 0;
    while i < max_requests && Instant::now() < deadline {
        let (method, path, bytes) = pool[(i % POOL) as usize].clone();
        let req = Request::builder()
            .method(method)
            .uri(path)
            .header("host", &host)
            .header("authorization", &auth)
            .header("content-type", "application/json")
            .body(Full::new(bytes))
            .unwrap();
        let started = Instant::now();
        if sender.ready().await.is_err() {
            out.errors += 1;
            out.first_error
                .get_or_insert_with(|| "connection closed".into());
            break;
        }
        match sender.send_request(req).await {
            Ok(resp) => {
                let status = resp.status();
                let body = resp.into_body().collect().await.map(|b| b.to_bytes());
                if status.is_success() && body.is_ok() {
                    out.latencies_us
                        .push(started.elapsed().as_micros().min(u32::MAX as u128) as u32);
                    progress.fetch_add(1, Ordering::Relaxed);
                } else {
                    out.errors += 1;
                    out.first_error.get_or_insert_with(|| {
                        format!(
                            "HTTP {status}: {}",
                            body.map(|b| String::from_utf8_lossy(&b)
                                .chars()
                                .take(300)
                                .collect::<String>())
                                .unwrap_or_default()
                        )
                    });
                }
            }
            Err(e) => {
                out.errors += 1;
                out.first_error.get_or_insert_with(|| e.to_string());
                break;
            }
        }
        i += 1;
    }
    out
}

struct Figures {
    requests: u64,
    errors: u64,
    secs: f64,
    p50: f64,
    p90: f64,
    p99: f64,
    first_error: Option<String>,
}

impl Figures {
    fn rps(&self) -> f64 {
        self.requests as f64 / self.secs
    }
}

#[allow(clippy::too_many_arguments)]
async fn run_load(
    addr: SocketAddr,
    key: &str,
    build: fn(usize, u64) -> (Method, String, Option<Value>),
    connections: usize,
    duration: Duration,
    max_per_conn: u64,
    progress: Arc<AtomicU64>,
) -> Figures {
    let started = Instant::now();
    let deadline = started + duration;
    let host = addr.to_string();
    let tasks: Vec<_> = (0..connections)
        .map(|n| {
            tokio::spawn(drive_connection(
                addr,
                host.clone(),
                key.to_string(),
                build,
                n,
                deadline,
                max_per_conn,
                progress.clone(),
            ))
        })
        .collect();
    let mut lat = Vec::new();
    let (mut errors, mut first_error) = (0, None);
    for t in tasks {
        let r = t.await.expect("connection task");
        lat.extend(r.latencies_us);
        errors += r.errors;
        if first_error.is_none() {
            first_error = r.first_error;
        }
    }
    let secs = started.elapsed().as_secs_f64();
    lat.sort_unstable();
    let pct = |p: f64| {
        if lat.is_empty() {
            0.0
        } else {
            lat[((lat.len() - 1) as f64 * p).round() as usize] as f64 / 1000.0
        }
    };
    Figures {
        requests: lat.len() as u64,
        errors,
        secs,
        p50: pct(0.5),
        p90: pct(0.9),
        p99: pct(0.99),
        first_error,
    }
}

/// CPU seconds used so far by this process's threads, grouped by thread name (from /proc).
fn thread_cpu() -> std::collections::BTreeMap<String, f64> {
    let mut out = std::collections::BTreeMap::new();
    let Ok(dir) = std::fs::read_dir("/proc/self/task") else {
        return out;
    };
    for entry in dir.flatten() {
        let Ok(stat) = std::fs::read_to_string(entry.path().join("stat")) else {
            continue;
        };
        let (Some(open), Some(close)) = (stat.find('('), stat.rfind(')')) else {
            continue;
        };
        let name = stat[open + 1..close].trim_end_matches(|c: char| c.is_ascii_digit() || c == '-');
        let fields: Vec<&str> = stat[close + 2..].split_whitespace().collect();
        let ticks = |i: usize| {
            fields
                .get(i)
                .and_then(|v| v.parse::<f64>().ok())
                .unwrap_or(0.0)
        };
        *out.entry(name.to_string()).or_default() += (ticks(11) + ticks(12)) / 100.0;
    }
    out
}

fn print_cpu_delta(before: &std::collections::BTreeMap<String, f64>, requests: u64, events: u64) {
    let after = thread_cpu();
    let mut parts: Vec<(String, f64)> = after
        .iter()
        .map(|(k, v)| (k.clone(), v - before.get(k).copied().unwrap_or(0.0)))
        .filter(|(_, d)| *d >= 0.01)
        .collect();
    parts.sort_by(|a, b| b.1.total_cmp(&a.1));
    let total: f64 = parts.iter().map(|(_, d)| d).sum();
    let per = |d: f64| d * 1e6 / requests.max(1) as f64;
    let list: Vec<String> = parts
        .iter()
        .take(6)
        .map(|(k, d)| format!("{k} {:.0}", per(*d)))
        .collect();
    println!(
        "{:<10} cpu µs/request {:.0} (µs/event {:.1}): {}",
        "",
        per(total),
        total * 1e6 / events.max(1) as f64,
        list.join(", ")
    );
}

fn peak_rss_mb() -> f64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmHWM:"))
                .and_then(|l| l.split_whitespace().nth(1))
                .and_then(|kb| kb.parse::<f64>().ok())
        })
        .map(|kb| kb / 1024.0)
        .unwrap_or(0.0)
}

async fn health(addr: SocketAddr) -> Option<Value> {
    let stream = tokio::net::TcpStream::connect(addr).await.ok()?;
    let (mut sender, conn) =
        hyper::client::conn::http1::handshake::<_, Full<Bytes>>(TokioIo::new(stream))
            .await
            .ok()?;
    tokio::spawn(conn);
    let req = Request::builder()
        .uri("/v1/health")
        .header("host", addr.to_string())
        .body(Full::new(Bytes::new()))
        .ok()?;
    let resp = sender.send_request(req).await.ok()?;
    let body = resp.into_body().collect().await.ok()?.to_bytes();
    serde_json::from_slice(&body).ok()
}

/// Whether the server has no capture work left: no queued or running capture job, nothing
/// waiting for the index.
async fn capture_idle(addr: SocketAddr) -> bool {
    let h = health(addr).await.unwrap_or(Value::Null);
    let sub = &h["data"]["subsystems"];
    let capture = &sub["workers"]["queues"]["capture"];
    capture["waiting"].as_u64() == Some(0)
        && capture["active"].as_u64() == Some(0)
        && sub["search"]["pendingDocuments"].as_u64() == Some(0)
}

/// Captures `total` events in batches of 1000, then waits until they are processed and indexed.
/// It starts once the backlog of earlier scenarios is processed (captures are acknowledged before
/// they are processed, so a saturating scenario leaves work behind), and says how long that took.
async fn drain(addr: SocketAddr, key: &str, total: u64, connections: usize) {
    let waited = Instant::now();
    let deadline = waited + Duration::from_secs(1800);
    while !capture_idle(addr).await && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    if waited.elapsed() > Duration::from_millis(200) {
        println!(
            "drain: the earlier scenarios' backlog was processed after {:.1} s; starting",
            waited.elapsed().as_secs_f64()
        );
    }
    let batches = total.div_ceil(1000);
    let per_conn = batches.div_ceil(connections as u64);
    let progress = Arc::new(AtomicU64::new(0));
    let docs_before = health(addr).await.map_or(0, |h| {
        h["data"]["subsystems"]["search"]["documents"]
            .as_u64()
            .unwrap_or(0)
    });
    let started = Instant::now();
    let cpu_before = thread_cpu();
    let build: fn(usize, u64) -> (Method, String, Option<Value>) = |conn, i| {
        let events: Vec<Value> = (0..1000).map(|j| capture_event(conn, i, j)).collect();
        (
            Method::POST,
            "/v1/capture/batch".into(),
            Some(json!({ "events": events })),
        )
    };
    let f = run_load(
        addr,
        key,
        build,
        connections,
        Duration::from_secs(3600),
        per_conn,
        progress,
    )
    .await;
    let acked = f.requests * 1000;
    let ack_secs = started.elapsed().as_secs_f64();
    println!(
        "drain: {acked} events acknowledged in {ack_secs:.1} s = {:.0} events/s (p99 {:.1} ms per 1000-event batch, {} errors)",
        acked as f64 / ack_secs,
        f.p99,
        f.errors
    );
    if let Some(e) = f.first_error {
        println!("  first error: {e}");
    }
    let deadline = Instant::now() + Duration::from_secs(1800);
    let mut last_print = Instant::now();
    loop {
        let h = health(addr).await.unwrap_or(Value::Null);
        let sub = &h["data"]["subsystems"];
        let capture = &sub["workers"]["queues"]["capture"];
        let waiting = capture["waiting"].as_u64().unwrap_or(u64::MAX);
        let active = capture["active"].as_u64().unwrap_or(u64::MAX);
        let pending = sub["search"]["pendingDocuments"]
            .as_u64()
            .unwrap_or(u64::MAX);
        let docs = sub["search"]["documents"].as_u64().unwrap_or(0);
        if waiting == 0 && active == 0 && pending == 0 && docs >= docs_before + acked {
            break;
        }
        if last_print.elapsed() > Duration::from_secs(10) {
            println!("  … {waiting} capture jobs waiting, {docs} documents searchable");
            last_print = Instant::now();
        }
        if Instant::now() > deadline {
            println!("  gave up waiting after 30 minutes");
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let total_secs = started.elapsed().as_secs_f64();
    print_cpu_delta(&cpu_before, f.requests, acked);
    println!(
        "drain: all {acked} events processed and searchable {total_secs:.1} s after the first request \
         ({:.1} s after the last acknowledgement) = {:.0} events/s end to end; peak RSS {:.0} MB",
        total_secs - ack_secs,
        acked as f64 / total_secs,
        peak_rss_mb()
    );
}

fn resolve(url: &str) -> SocketAddr {
    let rest = url
        .strip_prefix("http://")
        .expect("--url must be http://host:port");
    let hostport = rest.trim_end_matches('/');
    std::net::ToSocketAddrs::to_socket_addrs(hostport)
        .expect("resolvable --url")
        .next()
        .expect("an address")
}

fn main() {
    let args = parse_args();
    // The servers get their own runtime, as in production; the load generator another one.
    let server_rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let client_rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let (engram_addr, key, running) = match &args.url {
        Some(u) => (
            resolve(u),
            args.key.clone().expect("--key is required with --url"),
            None,
        ),
        None => {
            let mut cfg = engram::config::Config::for_data_dir(dir.path());
            cfg.limits_enabled = args.limits;
            // Throughput is measured without capture's backlog limit (a drain may exceed it).
            cfg.max_backlog = 0;
            cfg.auto_learn_every = 0;
            let running = server_rt
                .block_on(engram::start(cfg))
                .expect("engram starts");
            let key = running.bootstrap_key.clone().expect("bootstrap key");
            (running.addr, key, Some(running))
        }
    };
    let baseline_addr = server_rt.block_on(start_baseline());
    println!(
        "loadgen: {} connections, {} s per scenario, engram at {engram_addr}{}",
        args.connections,
        args.seconds,
        if args.limits || args.url.is_some() {
            ""
        } else {
            " (limits disabled)"
        }
    );
    println!(
        "{:<10} {:>10} {:>12} {:>9} {:>9} {:>9} {:>8} {:>9}",
        "scenario", "requests", "req/s", "p50 ms", "p90 ms", "p99 ms", "errors", "vs hyper"
    );
    let mut baseline_rps = None;
    for s in scenarios() {
        if !args.scenarios.iter().any(|n| n == s.name) {
            continue;
        }
        let addr = if s.baseline {
            baseline_addr
        } else {
            engram_addr
        };
        let commits = |rt: &tokio::runtime::Runtime| {
            rt.block_on(health(engram_addr)).map_or(0, |h| {
                h["data"]["subsystems"]["sqlite"]["commits"]
                    .as_u64()
                    .unwrap_or(0)
            })
        };
        let commits_before = commits(&client_rt);
        let cpu_before = thread_cpu();
        let f = client_rt.block_on(run_load(
            addr,
            &key,
            s.build,
            args.connections,
            Duration::from_secs(args.seconds),
            MAX_REQUESTS_PER_CONN,
            Arc::new(AtomicU64::new(0)),
        ));
        if s.baseline {
            baseline_rps = Some(f.rps());
        }
        let ratio = match (s.baseline, baseline_rps) {
            (false, Some(b)) => format!("{:.2}x", f.rps() / b),
            _ => "-".into(),
        };
        println!(
            "{:<10} {:>10} {:>12.0} {:>9.2} {:>9.2} {:>9.2} {:>8} {:>9}",
            s.name,
            f.requests,
            f.rps(),
            f.p50,
            f.p90,
            f.p99,
            f.errors,
            ratio
        );
        if s.events > 1 {
            println!("{:<10} {:>23.0} events/s", "", f.rps() * s.events as f64);
        }
        print_cpu_delta(&cpu_before, f.requests, f.requests * s.events.max(1));
        if !s.baseline {
            let n = commits(&client_rt).saturating_sub(commits_before).max(1);
            println!(
                "{:<10} {:>23} commits ({:.1} requests per commit, all writes counted)",
                "",
                n,
                f.requests as f64 / n as f64
            );
        }
        if let Some(e) = f.first_error {
            println!("  first error: {e}");
        }
    }
    if args.drain > 0 {
        client_rt.block_on(drain(
            engram_addr,
            &key,
            args.drain,
            args.connections.min(8),
        ));
    }
    if let Some(r) = running {
        server_rt.block_on(r.shutdown());
    }
}
