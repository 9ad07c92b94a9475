//! What rate limiting and quotas cost.
//!
//! Part one times the limiter itself in-process: `admit` (key and tenant buckets, request
//! count) for one hot key and for 10,000 keys, and a quota `reserve` + `commit`.
//! Part two starts two engram servers in this process on temporary data dirs, one with limits
//! on and one with them off, gives each a tenant whose limits are finite but never reached (so
//! every bucket and quota is really checked), and drives the same load at both in alternating
//! rounds, so drift of the machine affects both alike. It prints requests per second of each and
//! the cost of limiting as a share of the unlimited throughput.
//!
//! ```text
//! cargo run --release --example limits_bench -- [--scenario capture|batch|me] [--secs 5]
//!     [--rounds 3] [--conns 32]
//! ```
//! `--rounds 0` times the limiter in process only.
//! Every request goes to 127.0.0.1; every loop is bounded in time and count.

use engram::config::Config;
use engram::limits::Quota;
use engram::plans::Plan;
use engram::store::tenants;
use serde_json::{json, Value};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Upper bound on requests per connection per round, whatever the speed.
const MAX_REQUESTS_PER_CONN: u64 = 2_000_000;

struct Args {
    scenario: String,
    secs: u64,
    rounds: usize,
    conns: usize,
}

fn args() -> Args {
    let mut a = Args {
        scenario: "capture".into(),
        secs: 5,
        rounds: 3,
        conns: 32,
    };
    let mut it = std::env::args().skip(1);
    while let Some(flag) = it.next() {
        let mut val = || it.next().unwrap_or_else(|| panic!("{flag} needs a value"));
        match flag.as_str() {
            "--scenario" => a.scenario = val(),
            "--secs" => a.secs = val().parse().expect("--secs is a number"),
            "--rounds" => a.rounds = val().parse().expect("--rounds is a number"),
            "--conns" => a.conns = val().parse().expect("--conns is a number"),
            other => panic!("unknown flag {other}"),
        }
    }
    assert!(
        ["capture", "batch", "me"].contains(&a.scenario.as_str()),
        "--scenario is capture, batch or me"
    );
    a
}

struct Target {
    running: engram::Running,
    key: String,
    _dir: tempfile::TempDir,
}

/// A server and a tenant with limits that are checked on every request but never reached.
async fn target(limits_enabled: bool) -> Target {
    let dir = tempfile::tempdir().expect("temp dir");
    let mut cfg = Config::for_data_dir(dir.path());
    cfg.limits_enabled = limits_enabled;
    cfg.auto_learn_every = 0;
    cfg.auto_learn_sweep = Duration::ZERO;
    let running = engram::start(cfg).await.expect("engram starts");
    let key = running
        .state
        .db
        .write(|c| {
            let t = tenants::create_with_owner(c, "bench", Plan::Pro, "bench@localhost", None)?;
            let huge = json!({"requestsPerMinute": 1_000_000_000_000u64, "burst": 1_000_000_000u64,
                              "eventsPerMonth": 1_000_000_000_000u64});
            tenants::set_limits(c, &t.tenant.id, Some(&huge))?;
            Ok(t.key)
        })
        .await
        .expect("tenant created");
    Target {
        running,
        key,
        _dir: dir,
    }
}

fn request(
    client: &reqwest::Client,
    base: &str,
    key: &str,
    scenario: &str,
    n: u64,
) -> reqwest::RequestBuilder {
    let event = |i: u64| {
        json!({"type": "message", "sessionId": format!("s{}", i % 64),
               "payload": {"role": "user", "content": format!("benchmark event {i}")}})
    };
    match scenario {
        "me" => client.get(format!("{base}/v1/me")),
        "capture" => client.post(format!("{base}/v1/capture")).json(&event(n)),
        _ => {
            let events: Vec<Value> = (0..100).map(|i| event(n * 100 + i)).collect();
            client
                .post(format!("{base}/v1/capture/batch"))
                .json(&json!({ "events": events }))
        }
    }
    .bearer_auth(key)
}

/// Drives `conns` connections at one server for `secs`; returns (ok per second, failures).
async fn round(t: &Target, a: &Args) -> (f64, u64) {
    let client = reqwest::Client::builder()
        .pool_max_idle_per_host(a.conns)
        .build()
        .expect("client");
    let ok = Arc::new(AtomicU64::new(0));
    let failed = Arc::new(AtomicU64::new(0));
    let started = Instant::now();
    let deadline = started + Duration::from_secs(a.secs);
    let tasks: Vec<_> = (0..a.conns)
        .map(|c| {
            let (client, base, key) = (client.clone(), t.running.base_url(), t.key.clone());
            let (ok, failed, scenario) = (ok.clone(), failed.clone(), a.scenario.clone());
            tokio::spawn(async move {
                for i in 0..MAX_REQUESTS_PER_CONN {
                    if Instant::now() >= deadline {
                        break;
                    }
                    let n = c as u64 * MAX_REQUESTS_PER_CONN + i;
                    match request(&client, &base, &key, &scenario, n).send().await {
                        Ok(r) if r.status().is_success() => {
                            let _ = r.bytes().await;
                            ok.fetch_add(1, Ordering::Relaxed);
                        }
                        _ => {
                            failed.fetch_add(1, Ordering::Relaxed);
                        }
                    }
                }
            })
        })
        .collect();
    for t in tasks {
        t.await.expect("load task");
    }
    let secs = started.elapsed().as_secs_f64();
    (
        ok.load(Ordering::Relaxed) as f64 / secs,
        failed.load(Ordering::Relaxed),
    )
}

/// Waits (up to a minute) until the server's job queues are empty, so the work one round left
/// behind does not run during the next round.
async fn drain(t: &Target) {
    let client = reqwest::Client::new();
    let deadline = Instant::now() + Duration::from_secs(60);
    while Instant::now() < deadline {
        let health: Value = match client
            .get(format!("{}/v1/health", t.running.base_url()))
            .send()
            .await
        {
            Ok(r) => r.json().await.unwrap_or(Value::Null),
            Err(_) => Value::Null,
        };
        if health["data"]["subsystems"]["workers"]["totalBacklog"] == 0 {
            return;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    eprintln!("warning: the job backlog did not drain within a minute");
}

/// Nanoseconds per call of `f`, over `n` calls.
fn per_call(n: u64, mut f: impl FnMut(u64)) -> f64 {
    let started = Instant::now();
    for i in 0..n {
        f(i);
    }
    started.elapsed().as_nanos() as f64 / n as f64
}

async fn micro(t: &Target) {
    let state = &t.running.state;
    let p = state
        .auth
        .authenticate(Some(&format!("Bearer {}", t.key)))
        .await
        .expect("bench key");
    state.limits.prepare(&p).await.expect("prepare");
    let limits = &state.limits;
    let hot = per_call(1_000_000, |_| {
        let a = limits.admit(&p);
        assert!(a.result.is_ok());
    });
    // Many keys of one tenant: one bucket each, round robin.
    let many: Vec<_> = (0..10_000)
        .map(|i| {
            let mut q = p.clone();
            q.key_id = format!("key_bench{i}");
            q
        })
        .collect();
    let spread = per_call(1_000_000, |i| {
        let a = limits.admit(&many[(i % 10_000) as usize]);
        assert!(a.result.is_ok());
    });
    let quota = per_call(1_000_000, |_| {
        limits
            .reserve(&p, Quota::Events, 1)
            .expect("within quota")
            .commit(0);
    });
    // The whole per-request path of a capture: buckets, quota figures, hold (a valid key meets
    // no address check).
    let started = Instant::now();
    for _ in 0..1_000_000 {
        assert!(limits.admit(&p).result.is_ok());
        limits.prepare(&p).await.expect("prepared");
        limits
            .reserve(&p, Quota::Events, 1)
            .expect("within quota")
            .commit(0);
    }
    let path = started.elapsed().as_nanos() as f64 / 1e6;
    println!("limiter, in process (1,000,000 calls each):");
    println!("  whole path of one capture  {path:>8.0} ns/request");
    println!("  admit, one key             {hot:>8.0} ns/request");
    println!("  admit, 10,000 keys         {spread:>8.0} ns/request");
    println!("  quota reserve + commit     {quota:>8.0} ns/request");
    println!(
        "  buckets held afterwards    {:>8}",
        limits.tracked_buckets()
    );
}

#[tokio::main]
async fn main() {
    let a = args();
    let on = target(true).await;
    let off = target(false).await;
    micro(&on).await;
    if a.rounds == 0 {
        return;
    }

    println!(
        "\nHTTP, scenario {} ({} connections, {} s per round, limits on/off alternating):",
        a.scenario, a.conns, a.secs
    );
    println!("  round   limits on req/s   limits off req/s");
    let (mut sum_on, mut sum_off) = (0.0, 0.0);
    let mut ratios = Vec::new();
    for r in 0..a.rounds {
        // Alternate which server goes first so warm-up and drift hit both alike.
        let (first, second) = if r % 2 == 0 { (&on, &off) } else { (&off, &on) };
        let x = round(first, &a).await;
        drain(first).await;
        let y = round(second, &a).await;
        drain(second).await;
        let ((rate_on, fail_on), (rate_off, fail_off)) = if r % 2 == 0 { (x, y) } else { (y, x) };
        assert_eq!(fail_on + fail_off, 0, "requests failed");
        println!("  {:>5}   {rate_on:>15.0}   {rate_off:>16.0}", r + 1);
        sum_on += rate_on;
        sum_off += rate_off;
        ratios.push(rate_on / rate_off);
    }
    ratios.sort_by(f64::total_cmp);
    let median = ratios[ratios.len() / 2];
    let (mean_on, mean_off) = (sum_on / a.rounds as f64, sum_off / a.rounds as f64);
    println!("  mean    {mean_on:>15.0}   {mean_off:>16.0}");
    println!(
        "  limiting costs {:.2} % of throughput by the means, {:.2} % by the median round \
         (negative: within noise)",
        (1.0 - mean_on / mean_off) * 100.0,
        (1.0 - median) * 100.0
    );
    on.running.shutdown().await;
    off.running.shutdown().await;
}
