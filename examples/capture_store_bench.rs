//! Storage side of capture alone (no HTTP, no workers): `store::events::insert_batch` of 100,000
//! validated events in batches of 100, one transaction each, on a fresh database. Prints wall time
//! and the thread's CPU time per event (CPU time stays meaningful on a busy machine).
//!
//! ```text
//! cargo run --release --example capture_store_bench
//! ```

use engram::capture::validate;
use serde_json::json;
use std::time::Instant;

const BATCHES: u64 = 1000;
const PER_BATCH: u64 = 100;

/// CPU seconds of the calling thread (from /proc; Linux).
fn cpu_secs() -> f64 {
    let Ok(s) = std::fs::read_to_string("/proc/thread-self/stat") else {
        return 0.0;
    };
    let Some(close) = s.rfind(')') else {
        return 0.0;
    };
    let f: Vec<&str> = s[close + 2..].split_whitespace().collect();
    let ticks = |i: usize| f.get(i).and_then(|v| v.parse::<f64>().ok()).unwrap_or(0.0);
    (ticks(11) + ticks(12)) / 100.0
}

fn main() {
    let dir = tempfile::tempdir().expect("temp dir");
    let mut db = engram::store::open_direct(dir.path()).expect("database");
    let conn = db.conn();
    // This connection plays the writer: it keeps the novelty counts of unprocessed events.
    engram::store::novelty::rebuild_pending(&conn).expect("novelty counts");
    let t =
        engram::store::tenants::create(&conn, "bench", engram::plans::Plan::Pro).expect("tenant");
    let event = |i: u64, j: u64| {
        validate(json!({
            "type": if j % 4 == 3 { "tool_call" } else { "message" },
            "sessionId": format!("s-{}", i % 50),
            "payload": {"role": "user", "content": format!("event {i}/{j}: deploy the payment service")},
            "metadata": {"agentId": format!("a-{}", j % 4)},
        }))
        .expect("valid event")
    };
    let batches: Vec<Vec<_>> = (0..BATCHES)
        .map(|i| (0..PER_BATCH).map(|j| event(i, j)).collect())
        .collect();
    let started = Instant::now();
    let cpu = cpu_secs();
    let tenant = t.id.clone();
    for b in batches {
        db.transaction(|c| {
            engram::store::events::insert_batch(c, &tenant, "live", b, 0, engram::time::now())
        })
        .expect("insert");
    }
    let secs = started.elapsed().as_secs_f64();
    let n = (BATCHES * PER_BATCH) as f64;
    println!(
        "insert_batch: {n} events in {secs:.2} s = {:.0} events/s; {:.1} µs wall, {:.1} µs CPU per event",
        n / secs,
        secs * 1e6 / n,
        (cpu_secs() - cpu) * 1e6 / n
    );
}
