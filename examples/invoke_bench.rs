//! Invocation benchmark (run with `cargo run --release --example invoke_bench`).
//!
//! 1. Offline-provider invokes (memory recall + turn recording and capture included) at 32
//!    concurrent connections: invocations per second and latency percentiles.
//! 2. Overhead over a loopback upstream: the same OpenAI-format peer (answering after a fixed
//!    delay) called directly and through engram; the difference of the percentiles is what engram
//!    adds per call.
//!
//! Every request goes to 127.0.0.1; each phase is bounded in requests and in time.
//! Options (env): `BENCH_SECS` (per phase, default 10), `BENCH_CONNS` (offline phase, default 32),
//! `BENCH_UPSTREAM_CONNS` (upstream phases, default 4),
//! `BENCH_UPSTREAM_MS` (peer delay, default 20), `BENCH_AUTO_LEARN` (auto-learn every N events,
//! default 0 = off).

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use serde_json::{json, Value};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

fn env_u64(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// A minimal OpenAI chat-completions peer that answers after `delay`.
async fn start_peer(delay: Duration) -> std::net::SocketAddr {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        loop {
            let Ok((stream, _)) = listener.accept().await else {
                return;
            };
            tokio::spawn(async move {
                let svc = hyper::service::service_fn(
                    move |req: hyper::Request<hyper::body::Incoming>| async move {
                        let _ = req.into_body().collect().await;
                        tokio::time::sleep(delay).await;
                        let body = json!({"choices": [{"index": 0, "message": {"role": "assistant",
                        "content": "The sentiment is positive."}, "finish_reason": "stop"}],
                        "usage": {"prompt_tokens": 40, "completion_tokens": 6, "total_tokens": 46}});
                        let mut r = hyper::Response::new(Full::new(Bytes::from(body.to_string())));
                        r.headers_mut()
                            .insert("content-type", "application/json".parse().unwrap());
                        Ok::<_, std::convert::Infallible>(r)
                    },
                );
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(hyper_util::rt::TokioIo::new(stream), svc)
                    .await;
            });
        }
    });
    addr
}

/// Creates an agent row directly (the bench measures invoke, not deploy).
async fn make_agent(state: &engram::app::AppState, key: &str, model: &str) -> String {
    let p = state
        .auth
        .authenticate(Some(&format!("Bearer {key}")))
        .await
        .expect("admin key");
    let model = model.to_string();
    state
        .db
        .write(move |c| {
            let id = engram::ids::new("ag");
            let now = engram::time::now_rfc3339();
            c.sqlite().execute(
                "INSERT INTO agents (id, tenant_id, name, slug, model, instruction, created_at, updated_at)
                 VALUES (?1, ?2, ?1, ?1, ?3, 'Classify the sentiment of the message.', ?4, ?4)",
                rusqlite::params![id, p.tenant_id, model, now],
            )?;
            Ok(id)
        })
        .await
        .expect("agent")
}

struct Stats {
    count: u64,
    errors: u64,
    elapsed: Duration,
    lat_us: Vec<u64>,
}

impl Stats {
    fn pct(&self, p: f64) -> f64 {
        if self.lat_us.is_empty() {
            return 0.0;
        }
        let i = ((self.lat_us.len() as f64 - 1.0) * p).round() as usize;
        self.lat_us[i] as f64 / 1000.0
    }
}

/// `conns` workers POST `body` to `url` until `max` requests or `secs` seconds.
async fn load(
    url: String,
    key: Option<String>,
    body: Value,
    conns: usize,
    secs: u64,
    max: u64,
) -> Stats {
    let client = reqwest::Client::builder()
        .pool_max_idle_per_host(conns)
        .build()
        .unwrap();
    let issued = Arc::new(AtomicU64::new(0));
    let deadline = Instant::now() + Duration::from_secs(secs);
    let start = Instant::now();
    let mut tasks = Vec::new();
    for _ in 0..conns {
        let (client, url, key, body, issued) = (
            client.clone(),
            url.clone(),
            key.clone(),
            body.clone(),
            issued.clone(),
        );
        tasks.push(tokio::spawn(async move {
            let mut lat = Vec::new();
            let mut errors = 0u64;
            while Instant::now() < deadline && issued.fetch_add(1, Ordering::Relaxed) < max {
                let t = Instant::now();
                let mut rb = client.post(&url).json(&body);
                if let Some(k) = &key {
                    rb = rb.bearer_auth(k);
                }
                match rb.send().await {
                    Ok(r) if r.status().is_success() => {
                        let _ = r.bytes().await;
                        lat.push(t.elapsed().as_micros() as u64);
                    }
                    _ => errors += 1,
                }
            }
            (lat, errors)
        }));
    }
    let mut stats = Stats {
        count: 0,
        errors: 0,
        elapsed: Duration::ZERO,
        lat_us: Vec::new(),
    };
    for t in tasks {
        let (lat, errors) = t.await.unwrap();
        stats.lat_us.extend(lat);
        stats.errors += errors;
    }
    stats.elapsed = start.elapsed();
    stats.count = stats.lat_us.len() as u64;
    stats.lat_us.sort_unstable();
    stats
}

fn row(name: &str, s: &Stats) {
    println!(
        "| {name:<34} | {:>7} | {:>6} | {:>9.0} | {:>7.2} | {:>7.2} | {:>7.2} |",
        s.count,
        s.errors,
        s.count as f64 / s.elapsed.as_secs_f64(),
        s.pct(0.50),
        s.pct(0.99),
        s.pct(0.999),
    );
}

fn main() {
    let secs = env_u64("BENCH_SECS", 10);
    let conns = env_u64("BENCH_CONNS", 32) as usize;
    let upstream_ms = env_u64("BENCH_UPSTREAM_MS", 20);
    let upstream_conns = env_u64("BENCH_UPSTREAM_CONNS", 4) as usize;
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async move {
        let peer = start_peer(Duration::from_millis(upstream_ms)).await;
        let dir = tempfile::tempdir().unwrap();
        let mut cfg = engram::config::Config::for_data_dir(dir.path());
        cfg.limits_enabled = false;
        // Auto-learn recompiles the tenant's memory every N captured events; it is measured by
        // the learn benchmarks, not here (set BENCH_AUTO_LEARN=N to include it).
        cfg.auto_learn_every = env_u64("BENCH_AUTO_LEARN", 0);
        cfg.openai_base_url = Some(format!("http://{peer}/v1"));
        cfg.model_providers = vec![("offline".into(), engram::config::ProviderKind::Offline)];
        let running = engram::start(cfg).await.expect("server");
        let key = running.bootstrap_key.clone().unwrap();
        let base = running.base_url();
        let offline = make_agent(&running.state, &key, "offline-bench").await;
        let upstream = make_agent(&running.state, &key, "gpt-bench").await;

        println!("\ninvoke benchmark: {conns} connections, {secs} s per phase, upstream delay {upstream_ms} ms");
        println!("| {:<34} | {:>7} | {:>6} | {:>9} | {:>7} | {:>7} | {:>7} |", "phase", "ok", "errors", "req/s", "p50 ms", "p99 ms", "p99.9");
        println!("|{}|", "-".repeat(98));
        let body = |i: &str| json!({"message": format!("How do I feel about {i}? It is great."), "session_id": "bench"});
        // Warm-up (connections, caches, tokenizer).
        load(format!("{base}/v1/agents/{offline}/invoke"), Some(key.clone()), body("warm-up"), conns, 2, 500).await;
        let s = load(format!("{base}/v1/agents/{offline}/invoke"), Some(key.clone()), body("the offline model"), conns, secs, 200_000).await;
        row("offline invoke (recall + capture)", &s);

        let direct = load(format!("http://{peer}/v1/chat/completions"), None,
            json!({"model": "gpt-bench", "messages": [{"role": "user", "content": "hi"}]}), upstream_conns, secs, 200_000).await;
        println!("| (upstream phases: {upstream_conns} connections) |");
        row("upstream called directly", &direct);
        let via = load(format!("{base}/v1/agents/{upstream}/invoke"), Some(key.clone()), body("the upstream"), upstream_conns, secs, 200_000).await;
        row("invoke via engram → upstream", &via);
        println!(
            "\noverhead over the upstream's own latency: p50 {:+.2} ms, p99 {:+.2} ms",
            via.pct(0.50) - direct.pct(0.50),
            via.pct(0.99) - direct.pct(0.99)
        );
        running.shutdown().await;
    });
}
