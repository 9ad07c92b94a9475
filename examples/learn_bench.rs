//! Learn benchmark: compiles ~100,000 events in 10,000 generated sessions on a real engram
//! server (in-process, temp data dir) and prints the time of the learn run and the peak RSS.
//!
//! Events are written straight into the store (one transaction per 10,000 events) so the figure
//! is the learn run alone, not capture. Run with `cargo run --release --example learn_bench`
//! (optional arguments: number of sessions, default 10000; share of noise sessions in percent,
//! default 20; `families` to generate the task families of `compiler::families` instead of the
//! three of `compiler::trajectories`).

use engram::compiler::trajectories::{generate, Spec};
use serde_json::{json, Value};
use std::time::{Duration, Instant};

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
        .unwrap_or(f64::NAN)
}

#[tokio::main]
async fn main() {
    let sessions: usize = std::env::args()
        .nth(1)
        .and_then(|a| a.parse().ok())
        .unwrap_or(10_000);
    let dir = tempfile::tempdir().expect("temp dir");
    let mut cfg = engram::config::Config::for_data_dir(dir.path());
    cfg.auto_learn_every = 0;
    cfg.auto_learn_sweep = Duration::ZERO;
    cfg.limits_enabled = false;
    let running = engram::start(cfg).await.expect("server starts");
    let state = running.state.clone();
    let created = state
        .db
        .write(|c| {
            engram::store::tenants::create_with_owner(
                c,
                "bench",
                engram::plans::Plan::Enterprise,
                "bench@example.com",
                None,
            )
        })
        .await
        .expect("tenant");
    let tenant = created.tenant.id.clone();

    // Noise sessions in percent (default 20); the rest split 3:2.5:2.5 over deploy, migrate and
    // release.
    let noise_pct: usize = std::env::args()
        .nth(2)
        .and_then(|a| a.parse().ok())
        .unwrap_or(20)
        .min(100);
    let structured = sessions * (100 - noise_pct) / 100;
    let spec = Spec {
        seed: 42,
        deploy: structured * 3 / 8,
        migrate: structured * 5 / 16,
        release: structured - structured * 3 / 8 - structured * 5 / 16,
        noise: sessions - structured,
        prefix: "bench".into(),
    };
    let families = std::env::args().any(|a| a == "families");
    let gen = if families {
        let n = engram::compiler::families::FAMILIES.len();
        engram::compiler::families::generate(42, structured / n, sessions - structured / n * n)
    } else {
        generate(&spec)
    };
    let rows: Vec<(String, String, String, String)> = gen
        .iter()
        .flat_map(|s| {
            s.events.iter().map(move |e| {
                (
                    s.id.clone(),
                    e.kind.to_string(),
                    e.payload.to_string(),
                    e.metadata.to_string(),
                )
            })
        })
        .collect();
    let total = rows.len();
    let t0 = Instant::now();
    for chunk in rows.chunks(10_000) {
        let chunk = chunk.to_vec();
        let tenant = tenant.clone();
        state
            .db
            .write(move |c| {
                let mut stmt = c.sqlite().prepare_cached(
                    "INSERT INTO events(id, tenant_id, session_id, type, payload, metadata,
                                        salience, trace_id, mode, created_at)
                     VALUES (?1, ?2, ?3, ?4, ?5, ?6, 0.5, ?7, 'live', ?8)",
                )?;
                for (sid, kind, payload, meta) in &chunk {
                    stmt.execute(rusqlite::params![
                        engram::ids::new("evt"),
                        tenant,
                        sid,
                        kind,
                        payload,
                        meta,
                        engram::ids::new("trace"),
                        engram::time::now_rfc3339()
                    ])?;
                }
                Ok(())
            })
            .await
            .expect("events stored");
    }
    let load = t0.elapsed();
    let rss_before = peak_rss_mb();

    let http = reqwest::Client::builder()
        .timeout(Duration::from_secs(600))
        .build()
        .expect("client");
    let t1 = Instant::now();
    let resp = http
        .post(format!("{}/v1/learn?wait=true", running.base_url()))
        .header("Prefer", "wait=300")
        .bearer_auth(&created.key)
        .json(&json!({"scope": "full"}))
        .send()
        .await
        .expect("learn request");
    let status = resp.status();
    let body: Value = resp.json().await.expect("json");
    let wall = t1.elapsed();
    let rss_after = peak_rss_mb();
    assert!(status.is_success(), "{body}");
    let data = &body["data"];

    println!(
        "learn_bench ({} sessions, {} events, {} generator)",
        gen.len(),
        total,
        if families {
            "task-family"
        } else {
            "three-family"
        }
    );
    println!("| measure | value |");
    println!("|---|---|");
    println!(
        "| events stored (direct) | {total} in {:.2} s |",
        load.as_secs_f64()
    );
    println!("| learn status | {} |", data["status"]);
    println!(
        "| learn wall time (HTTP, waited) | {:.2} s |",
        wall.as_secs_f64()
    );
    println!(
        "| compilationMs (job) | {} |",
        data["stats"]["compilationMs"]
    );
    println!("| events compiled | {} |", data["stats"]["eventsCompiled"]);
    println!(
        "| sessions compiled | {} |",
        data["stats"]["sessionsCompiled"]
    );
    println!("| artifacts created | {} |", data["artifacts"]["created"]);
    println!("| artifacts by type | {} |", data["artifacts"]["byType"]);
    println!("| peak RSS before learn | {rss_before:.0} MB |");
    println!("| peak RSS after learn | {rss_after:.0} MB |");
    running.shutdown().await;
}
