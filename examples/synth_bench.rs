//! Synthesize benchmark: context packs over HTTP at concurrency 8 against an in-process engram,
//! beside raw tantivy on the same corpus and queries in the same run.
//!
//! Corpus: a Zipf-distributed (s = 1.05) vocabulary of 30,000 synthetic words; documents of 6–40
//! words (episodic and semantic memories with varied confidence, salience and time), written to
//! SQLite and indexed exactly as capture does. Phase A loads one tenant (`--docs` documents, default
//! 100,000) and measures it; phase B adds the other tenants (`--tenants`, default 10: 1,000,000
//! documents) and measures the same tenant again, so the two runs show whether one tenant's cost
//! grows with the others' data. `--layout` also builds raw tantivy indexes to compare one shared
//! index (`tenant AND …`) with a per-tenant index on the same documents.
//!
//! HTTP and engine rows also show the whole process's CPU time per request during the run (server,
//! client and every thread, from `/proc/self/stat`): on a shared machine it is steadier than the
//! wall-clock percentiles.
//!
//! Run: `cargo run --release --example synth_bench -- [--docs N] [--tenants T] [--requests R]
//! [--max-tokens M] [--layout] [--keep DIR]`. `--keep DIR` only loads phase A into the data dir
//! `DIR` (with `bench-key.txt` and `queries.txt` beside it) for `scripts/bench_synth.sh`. `ENGRAM_SEARCH_CONCURRENCY=N` overrides the server's search
//! permits (default four per core); `SYNTH_BENCH_ENGINE_ONLY` (set to anything) skips the HTTP
//! warm-up and the raw tantivy rows; `RUST_LOG` (e.g. `engram=debug`) prints the server's log.
//! Every loop is bounded in count and time and talks only to 127.0.0.1.

use engram::config::Config;
use engram::search::{docs, query, IndexOp};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tantivy::collector::TopDocs;

const VOCAB: usize = 30_000;
const CONCURRENCY: usize = 8;
const TIME_CAP: Duration = Duration::from_secs(60);
const SYLLABLES: [&str; 24] = [
    "ka", "ri", "to", "me", "su", "la", "no", "pe", "vi", "da", "zo", "gu", "ba", "fi", "ne", "xo",
    "ty", "wa", "he", "mo", "ju", "ce", "qi", "lo",
];

struct Args {
    docs: usize,
    tenants: usize,
    requests: usize,
    max_tokens: u32,
    layout: bool,
    /// Load phase A into this data dir, write its key and queries beside it, and stop (for
    /// `scripts/bench_synth.sh`, which serves it and drives it with wrk).
    keep: Option<std::path::PathBuf>,
}

fn args() -> Args {
    let mut a = Args {
        docs: 100_000,
        tenants: 10,
        requests: 4_000,
        max_tokens: 1_000,
        layout: false,
        keep: None,
    };
    let argv: Vec<String> = std::env::args().skip(1).collect();
    let mut i = 0;
    while i < argv.len() {
        let next = |i: usize| argv.get(i + 1).and_then(|v| v.parse::<usize>().ok());
        match argv[i].as_str() {
            "--docs" => a.docs = next(i).expect("--docs N"),
            "--tenants" => a.tenants = next(i).expect("--tenants T").max(1),
            "--requests" => a.requests = next(i).expect("--requests R"),
            "--max-tokens" => a.max_tokens = next(i).expect("--max-tokens M") as u32,
            "--layout" => {
                a.layout = true;
                i -= 1;
            }
            "--keep" => a.keep = Some(argv.get(i + 1).expect("--keep DIR").into()),
            other => panic!("unknown argument {other}"),
        }
        i += 2;
    }
    a
}

fn word(mut i: usize) -> String {
    let mut w = String::new();
    loop {
        w.push_str(SYLLABLES[i % SYLLABLES.len()]);
        i /= SYLLABLES.len();
        if i == 0 {
            break;
        }
    }
    w
}

struct Zipf {
    words: Vec<String>,
    cdf: Vec<f64>,
}

impl Zipf {
    fn new() -> Zipf {
        let mut cdf = Vec::with_capacity(VOCAB);
        let mut total = 0.0;
        for r in 0..VOCAB {
            total += 1.0 / ((r + 1) as f64).powf(1.05);
            cdf.push(total);
        }
        cdf.iter_mut().for_each(|c| *c /= total);
        Zipf {
            words: (0..VOCAB).map(word).collect(),
            cdf,
        }
    }

    fn sample<'a>(&'a self, rng: &mut StdRng) -> &'a str {
        let u: f64 = rng.gen();
        let i = self.cdf.partition_point(|c| *c < u).min(VOCAB - 1);
        &self.words[i]
    }

    fn text(&self, rng: &mut StdRng, min: usize, max: usize) -> String {
        let n = rng.gen_range(min..=max);
        let mut s = String::with_capacity(n * 8);
        for i in 0..n {
            if i > 0 {
                s.push(' ');
            }
            s.push_str(self.sample(rng));
        }
        s
    }
}

struct Row {
    id: String,
    kind: &'static str,
    session: String,
    content: String,
    confidence: f64,
    salience: f64,
    created_at: String,
}

/// The documents of tenant number `t` (deterministic).
fn tenant_rows(z: &Zipf, t: usize, n: usize, from: usize, to: usize) -> Vec<Row> {
    let mut rng = StdRng::seed_from_u64(0x5eed_0000 + t as u64 * 1_000_003 + from as u64);
    let base = chrono::DateTime::parse_from_rfc3339("2026-01-01T00:00:00Z")
        .expect("date")
        .with_timezone(&chrono::Utc);
    (from..to.min(n))
        .map(|i| Row {
            id: engram::ids::new("mem"),
            kind: if rng.gen_bool(0.8) {
                "episodic"
            } else {
                "semantic"
            },
            session: format!("s{}", i / 20),
            content: z.text(&mut rng, 6, 40),
            confidence: rng.gen_range(0.1..1.0),
            salience: rng.gen_range(0.1..1.0),
            created_at: engram::time::rfc3339(base + chrono::Duration::seconds(i as i64 * 30)),
        })
        .collect()
}

/// Writes and indexes `n` documents of tenant `t` (generation on two threads, one SQLite
/// transaction per chunk); returns when they are searchable.
fn load_tenant(state: &engram::app::AppState, z: &Zipf, t: usize, tenant_id: &str, n: usize) {
    const CHUNK: usize = 20_000;
    for from in (0..n).step_by(CHUNK) {
        let half = from + CHUNK / 2;
        let (a, b) = std::thread::scope(|s| {
            let a = s.spawn(|| prepare(z, t, tenant_id, n, from, half));
            let b = s.spawn(|| prepare(z, t, tenant_id, n, half, from + CHUNK));
            (a.join().expect("gen"), b.join().expect("gen"))
        });
        let rows: Vec<(Row, engram::search::SearchDoc)> = a.into_iter().chain(b).collect();
        let tenant = tenant_id.to_string();
        let docs: Vec<engram::search::SearchDoc> = rows.iter().map(|(_, d)| d.clone()).collect();
        state
            .db
            .write_blocking(move |c| {
                let mut st = c.sqlite().prepare_cached(
                    "INSERT INTO memories(id, tenant_id, kind, session_id, content, confidence,
                        salience, status, created_at, updated_at)
                     VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, 'active', ?8, ?8)",
                )?;
                for (r, _) in &rows {
                    st.execute(rusqlite::params![
                        r.id,
                        tenant,
                        r.kind,
                        r.session,
                        r.content,
                        r.confidence,
                        r.salience,
                        r.created_at
                    ])?;
                }
                Ok(())
            })
            .expect("rows written");
        for d in docs {
            state.search.submit(IndexOp::Upsert(Box::new(d)));
        }
    }
    state.search.flush_blocking();
}

fn prepare(
    z: &Zipf,
    t: usize,
    tenant_id: &str,
    n: usize,
    from: usize,
    to: usize,
) -> Vec<(Row, engram::search::SearchDoc)> {
    tenant_rows(z, t, n, from, to)
        .into_iter()
        .map(|r| {
            let d = docs::memory_doc(
                tenant_id,
                &r.id,
                r.kind,
                None,
                Some(&r.session),
                Vec::new(),
                &r.content,
                &r.created_at,
                r.confidence,
                r.salience,
            );
            (r, d)
        })
        .collect()
}

/// Waits (bounded) until background merges stop changing the segment count.
fn settle(state: &engram::app::AppState) -> usize {
    let deadline = Instant::now() + Duration::from_secs(90);
    let mut last = usize::MAX;
    loop {
        state.search.flush_blocking();
        let segs = state.search.stats().segments;
        if segs == last || Instant::now() > deadline {
            return segs;
        }
        last = segs;
        std::thread::sleep(Duration::from_secs(3));
    }
}

fn queries(z: &Zipf, n: usize) -> Vec<String> {
    let mut rng = StdRng::seed_from_u64(42);
    (0..n).map(|_| z.text(&mut rng, 2, 4)).collect()
}

/// CPU time used so far by this whole process (server, client and all threads), from
/// `/proc/self/stat` (clock ticks, 100 per second on Linux): steadier than wall time on a shared
/// machine. `None` where it cannot be read.
fn process_cpu() -> Option<Duration> {
    let stat = std::fs::read_to_string("/proc/self/stat").ok()?;
    let rest = stat.rsplit_once(')')?.1;
    let f: Vec<&str> = rest.split_whitespace().collect();
    let ticks: u64 = f.get(11)?.parse::<u64>().ok()? + f.get(12)?.parse::<u64>().ok()?;
    Some(Duration::from_millis(ticks * 10))
}

struct Lat(Vec<Duration>);

impl Lat {
    fn pct(&mut self, p: f64) -> f64 {
        self.0.sort();
        if self.0.is_empty() {
            return 0.0;
        }
        let i = ((self.0.len() as f64 * p).ceil() as usize).clamp(1, self.0.len()) - 1;
        self.0[i].as_secs_f64() * 1000.0
    }

    fn row(&mut self, name: &str, wall: Duration) {
        self.row_cpu(name, wall, None);
    }

    /// A row with the process CPU time spent per request during the run, when known.
    fn row_cpu(&mut self, name: &str, wall: Duration, cpu: Option<Duration>) {
        let n = self.0.len();
        let cpu = cpu
            .map(|c| {
                format!(
                    "  {:>6.0} µs CPU/req",
                    c.as_secs_f64() * 1e6 / n.max(1) as f64
                )
            })
            .unwrap_or_default();
        println!(
            "  {name:<44} n={n:<6} p50 {:>7.3} ms  p99 {:>7.3} ms  max {:>7.3} ms  {:>7.0} req/s{cpu}",
            self.pct(0.50),
            self.pct(0.99),
            self.pct(1.0),
            n as f64 / wall.as_secs_f64()
        );
    }
}

/// Synthesize over HTTP: `CONCURRENCY` clients, `n` requests in all (bounded by `TIME_CAP`).
async fn http_run(
    base: &str,
    key: &str,
    qs: &[String],
    n: usize,
    max_tokens: u32,
) -> (Lat, Duration) {
    // One keep-alive HTTP/1.1 connection per concurrent client, as the load generator drives a
    // server: the request bodies are built before the clock starts, so the client's own CPU is
    // mostly the HTTP exchange.
    let addr: std::net::SocketAddr = base
        .trim_start_matches("http://")
        .parse()
        .expect("a loopback address");
    let bodies: Arc<Vec<bytes::Bytes>> = Arc::new(
        qs.iter()
            .map(|q| {
                let body = serde_json::json!({"query": q, "maxTokens": max_tokens});
                bytes::Bytes::from(serde_json::to_vec(&body).expect("JSON"))
            })
            .collect(),
    );
    let auth = format!("Bearer {key}");
    let started = Instant::now();
    let mut tasks = Vec::new();
    for w in 0..CONCURRENCY {
        let (bodies, auth) = (bodies.clone(), auth.clone());
        tasks.push(tokio::spawn(async move {
            let stream = tokio::net::TcpStream::connect(addr).await.expect("connect");
            let _ = stream.set_nodelay(true);
            let (mut sender, conn) = hyper::client::conn::http1::handshake::<
                _,
                http_body_util::Full<bytes::Bytes>,
            >(hyper_util::rt::TokioIo::new(stream))
            .await
            .expect("HTTP handshake");
            tokio::spawn(conn);
            let mut lat = Vec::new();
            let mut i = w;
            while i < n && started.elapsed() < TIME_CAP {
                let req = hyper::Request::post("/v1/synthesize")
                    .header("host", addr.to_string())
                    .header("authorization", &auth)
                    .header("content-type", "application/json")
                    .body(http_body_util::Full::new(bodies[i % bodies.len()].clone()))
                    .expect("request");
                let t = Instant::now();
                sender.ready().await.expect("connection ready");
                let resp = sender.send_request(req).await.expect("synthesize sent");
                let ok = resp.status().is_success();
                let body = http_body_util::BodyExt::collect(resp.into_body()).await;
                assert!(ok && body.is_ok(), "synthesize failed");
                lat.push(t.elapsed());
                i += CONCURRENCY;
            }
            lat
        }));
    }
    let mut all = Vec::new();
    for t in tasks {
        all.extend(t.await.expect("client task"));
    }
    (Lat(all), started.elapsed())
}

/// The synthesize engine without HTTP (search, rank, validate, pack), `threads` at once.
fn engine_run(
    state: &engram::app::AppState,
    tenant: &str,
    qs: &[String],
    n: usize,
    threads: usize,
    max_tokens: u32,
) -> (Lat, Duration) {
    let started = Instant::now();
    let all = std::thread::scope(|s| {
        let hs: Vec<_> = (0..threads)
            .map(|w| {
                s.spawn(move || {
                    let mut lat = Vec::new();
                    let mut i = w;
                    while i < n && started.elapsed() < TIME_CAP {
                        let req = engram::search::pack::SynthRequest {
                            query: Some(qs[i % qs.len()].clone()),
                            max_tokens,
                            ..Default::default()
                        };
                        let t = Instant::now();
                        let pack = engram::search::pack::synthesize_blocking(
                            &state.db,
                            &state.search,
                            tenant,
                            &req,
                        )
                        .expect("pack");
                        std::hint::black_box(engram::search::pack_text::to_json_text(&pack, true));
                        lat.push(t.elapsed());
                        i += threads;
                    }
                    lat
                })
            })
            .collect();
        hs.into_iter()
            .flat_map(|h| h.join().expect("engine thread"))
            .collect::<Vec<_>>()
    });
    (Lat(all), started.elapsed())
}

/// Raw tantivy: the same queries on the tenant's searcher (top 10 by BM25), `threads` at once.
fn raw_run(
    state: &engram::app::AppState,
    tenant: &str,
    qs: &[String],
    n: usize,
    threads: usize,
    limit: usize,
) -> (Lat, Duration) {
    let (searcher, ti) = state.search.searcher(tenant).expect("tenant index");
    let fields = state.search.fields;
    let started = Instant::now();
    let all = std::thread::scope(|s| {
        let hs: Vec<_> = (0..threads)
            .map(|w| {
                let (searcher, ti) = (searcher.clone(), ti.clone());
                s.spawn(move || {
                    let mut lat = Vec::new();
                    let mut i = w;
                    while i < n && started.elapsed() < TIME_CAP {
                        let t = Instant::now();
                        let exact = query::terms(&ti.index, fields.text, &qs[i % qs.len()]);
                        let q = query::text_query(query::QueryTerms {
                            stemmed: Vec::new(),
                            exact,
                        });
                        let hits = searcher
                            .search(q.as_ref(), &TopDocs::with_limit(limit).order_by_score())
                            .expect("search");
                        std::hint::black_box(hits);
                        lat.push(t.elapsed());
                        i += threads;
                    }
                    lat
                })
            })
            .collect();
        hs.into_iter()
            .flat_map(|h| h.join().expect("raw thread"))
            .collect::<Vec<_>>()
    });
    (Lat(all), started.elapsed())
}

async fn measure(
    label: &str,
    srv: &engram::Running,
    key: &str,
    tenant: &str,
    qs: &[String],
    a: &Args,
) -> (f64, f64) {
    println!("{label}");
    let engine_only = std::env::var_os("SYNTH_BENCH_ENGINE_ONLY").is_some();
    let warm = if engine_only {
        1
    } else {
        (a.requests / 10).max(50)
    };
    let _ = http_run(&srv.base_url(), key, qs, warm, a.max_tokens).await;
    let cpu0 = process_cpu();
    let (mut h, wall) = http_run(&srv.base_url(), key, qs, a.requests, a.max_tokens).await;
    let cpu1 = process_cpu();
    h.row_cpu(
        &format!("synthesize over HTTP (maxTokens {})", a.max_tokens),
        wall,
        cpu1.zip(cpu0).map(|(b, a)| b.saturating_sub(a)),
    );
    let (mut h4, wall4) = http_run(&srv.base_url(), key, qs, a.requests / 2, 4000).await;
    let cpu2 = process_cpu();
    h4.row_cpu(
        "synthesize over HTTP (maxTokens 4000)",
        wall4,
        cpu2.zip(cpu1).map(|(b, a)| b.saturating_sub(a)),
    );
    let state = srv.state.clone();
    let (tenant, qv, n) = (tenant.to_string(), qs.to_vec(), a.requests);
    let raws = tokio::task::spawn_blocking(move || {
        let mut out = Vec::new();
        for max_tokens in [1000, 4000] {
            let cpu0 = process_cpu();
            let (mut l, wall) = engine_run(&state, &tenant, &qv, n, 2, max_tokens);
            l.row_cpu(
                &format!("engine only (maxTokens {max_tokens}), 2 threads"),
                wall,
                process_cpu().zip(cpu0).map(|(b, a)| b.saturating_sub(a)),
            );
        }
        if std::env::var_os("SYNTH_BENCH_ENGINE_ONLY").is_some() {
            return vec![1.0];
        }
        for (threads, limit) in [(CONCURRENCY, 10), (2, 10), (1, 10), (2, 125)] {
            let (mut l, wall) = raw_run(&state, &tenant, &qv, n, threads, limit);
            let name = format!("raw tantivy top-{limit}, {threads} threads");
            l.row(&name, wall);
            out.push(l.pct(0.5));
        }
        out
    })
    .await
    .expect("raw run");
    let p50 = h.pct(0.5);
    println!(
        "  ratio synthesize p50 / raw tantivy p50 (8 threads, top-10): {:.1}×",
        p50 / raws[0].max(1e-9)
    );
    (p50, h.pct(0.99))
}

fn main() {
    if std::env::var("RUST_LOG").is_ok() {
        tracing_subscriber::fmt()
            .with_env_filter(tracing_subscriber::EnvFilter::from_default_env())
            .with_writer(std::io::stderr)
            .init();
    }
    let a = args();
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("runtime");
    rt.block_on(run(a));
}

async fn run(a: Args) {
    let dir = tempfile::tempdir().expect("temp dir");
    let mut cfg = Config::for_data_dir(a.keep.clone().unwrap_or_else(|| dir.path().to_path_buf()));
    cfg.limits_enabled = false;
    cfg.auto_learn_every = 0;
    cfg.auto_learn_sweep = Duration::ZERO;
    if let Some(n) = std::env::var("ENGRAM_SEARCH_CONCURRENCY")
        .ok()
        .and_then(|v| v.parse().ok())
    {
        cfg.search_concurrency = n;
    }
    let srv = engram::start(cfg).await.expect("server starts");
    let mut tenants: Vec<(String, String)> = Vec::new();
    for t in 0..a.tenants {
        let created = srv
            .state
            .db
            .write(move |c| {
                engram::store::tenants::create_with_owner(
                    c,
                    &format!("bench-{t}"),
                    engram::plans::Plan::Enterprise,
                    "bench@example.com",
                    None,
                )
            })
            .await
            .expect("tenant");
        tenants.push((created.tenant.id, created.key));
    }
    let z = Arc::new(Zipf::new());
    let qs = queries(&z, 2_000);
    println!(
        "synth_bench: {} docs/tenant, {} tenants, {} requests/run, concurrency {CONCURRENCY}, {} cores",
        a.docs,
        a.tenants,
        a.requests,
        std::thread::available_parallelism().map(|n| n.get()).unwrap_or(0)
    );

    let t0 = Instant::now();
    {
        let (state, z, tid, n) = (srv.state.clone(), z.clone(), tenants[0].0.clone(), a.docs);
        tokio::task::spawn_blocking(move || load_tenant(&state, &z, 0, &tid, n))
            .await
            .expect("load");
    }
    let load_a = t0.elapsed();
    let segs = {
        let state = srv.state.clone();
        tokio::task::spawn_blocking(move || settle(&state))
            .await
            .expect("settle")
    };
    println!(
        "phase A: loaded {} docs in {load_a:.1?} ({segs} segments)",
        a.docs
    );
    if let Some(keep) = &a.keep {
        std::fs::write(keep.join("bench-key.txt"), &tenants[0].1).expect("key file");
        std::fs::write(keep.join("queries.txt"), qs.join("\n") + "\n").expect("queries file");
        srv.shutdown().await;
        println!("kept in {}", keep.display());
        return;
    }
    let (p50_a, p99_a) = measure(
        "phase A: one tenant",
        &srv,
        &tenants[0].1,
        &tenants[0].0,
        &qs,
        &a,
    )
    .await;

    if a.tenants > 1 {
        let t1 = Instant::now();
        for (t, (tid, _)) in tenants.iter().enumerate().skip(1) {
            let (state, z, tid, n) = (srv.state.clone(), z.clone(), tid.clone(), a.docs);
            tokio::task::spawn_blocking(move || load_tenant(&state, &z, t, &tid, n))
                .await
                .expect("load");
        }
        let load_b = t1.elapsed();
        let segs = {
            let state = srv.state.clone();
            tokio::task::spawn_blocking(move || settle(&state))
                .await
                .expect("settle")
        };
        println!(
            "phase B: loaded {} more docs in {load_b:.1?} ({} docs in all, {segs} segments)",
            a.docs * (a.tenants - 1),
            srv.state.search.stats().documents
        );
        let (p50_b, p99_b) = measure(
            &format!("phase B: the same tenant, {} others loaded", a.tenants - 1),
            &srv,
            &tenants[0].1,
            &tenants[0].0,
            &qs,
            &a,
        )
        .await;
        let last = tenants.last().expect("tenant");
        measure("phase B: another tenant", &srv, &last.1, &last.0, &qs, &a).await;
        println!(
            "tenant 0 synthesize p50 {p50_a:.3} → {p50_b:.3} ms, p99 {p99_a:.3} → {p99_b:.3} ms with {} other tenants loaded", a.tenants - 1
        );
    }
    freshness(&srv, &tenants[0].1).await;
    if a.layout {
        layout::compare(&z, &qs, &a);
    }
    srv.shutdown().await;
}

/// Capture → searchable: 20 events, one at a time (bounded wait of 10 s each).
async fn freshness(srv: &engram::Running, key: &str) {
    let client = reqwest::Client::new();
    let mut lat = Vec::new();
    for i in 0..20 {
        let marker = format!("freshmarker{i}x");
        let body = serde_json::json!({"type": "message", "sessionId": "fresh",
            "payload": {"role": "user", "content": format!("{marker} arrived")}});
        let r = client
            .post(format!("{}/v1/capture", srv.base_url()))
            .bearer_auth(key)
            .json(&body)
            .send()
            .await
            .expect("capture");
        assert_eq!(r.status().as_u16(), 202);
        let t = Instant::now();
        while t.elapsed() < Duration::from_secs(10) {
            let v: serde_json::Value = client
                .post(format!("{}/v1/synthesize", srv.base_url()))
                .bearer_auth(key)
                .json(&serde_json::json!({"query": marker}))
                .send()
                .await
                .expect("synth")
                .json()
                .await
                .expect("json");
            if v["data"]["entries"]
                .as_array()
                .is_some_and(|e| !e.is_empty())
            {
                break;
            }
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        lat.push(t.elapsed());
    }
    let wall = lat.iter().sum();
    Lat(lat).row("freshness: capture 202 → in a pack", wall);
}

/// Raw tantivy: one shared index (`tenant AND …`) against an index of the tenant alone.
#[path = "synth_bench_parts/layout.rs"]
mod layout;
