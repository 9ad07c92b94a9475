//! Times the storage side of capture alone (no HTTP): `store::events::insert_batch` for batches
//! of 100 events in one transaction each, to see the writer's per-event cost.
use engram::capture::validate;
use serde_json::json;
use std::time::Instant;

fn main() {
    let dir = tempfile::tempdir().unwrap();
    let conn = engram::store::open_direct(dir.path()).unwrap();
    if let Ok(v) = std::env::var("CKPT") {
        conn.execute_batch(&format!("PRAGMA wal_autocheckpoint={v}"))
            .unwrap();
    }
    let t = engram::store::tenants::create(&conn, "bench", engram::plans::Plan::Pro).unwrap();
    let n_batches = 1000;
    let mk = |i: u64, j: u64| {
        validate(json!({"type": "message", "sessionId": format!("s-{}", i % 50),
            "payload": {"role": "user", "content": format!("event {i}/{j} deploy the payment service")},
            "metadata": {"agentId": format!("a-{}", j % 4)}}))
        .unwrap()
    };
    let batches: Vec<Vec<_>> = (0..n_batches)
        .map(|i| (0..100).map(|j| mk(i, j)).collect())
        .collect();
    let started = Instant::now();
    let cpu = cpu_secs();
    for (i, b) in batches.into_iter().enumerate() {
        conn.execute_batch("BEGIN IMMEDIATE").unwrap();
        engram::store::events::insert_batch(&conn, &t.id, "live", b, 0, engram::time::now())
            .unwrap();
        conn.execute_batch("COMMIT").unwrap();
        let _ = i;
    }
    let secs = started.elapsed().as_secs_f64();
    println!(
        "insert_batch cpu {:.1} µs/event",
        (cpu_secs() - cpu) * 1e6 / (n_batches * 100) as f64
    );
    raw(&conn, &t.id, false, 100_000);
    raw(&conn, &t.id, true, 100_000);
    println!(
        "{} events in {secs:.2} s = {:.0} events/s ({:.1} µs/event)",
        n_batches * 100,
        (n_batches * 100) as f64 / secs,
        secs * 1e6 / (n_batches * 100) as f64
    );
}

fn cpu_secs() -> f64 {
    let s = std::fs::read_to_string("/proc/thread-self/stat").unwrap();
    let after = &s[s.rfind(')').unwrap() + 2..];
    let f: Vec<&str> = after.split_whitespace().collect();
    (f[11].parse::<f64>().unwrap() + f[12].parse::<f64>().unwrap()) / 100.0
}

#[allow(dead_code)]
fn raw(conn: &rusqlite::Connection, tenant: &str, sig: bool, n: u64) {
    let started = Instant::now();
    let cpu = cpu_secs();
    for i in 0..n / 100 {
        conn.execute_batch("BEGIN IMMEDIATE").unwrap();
        {
            let mut ins = conn.prepare_cached("INSERT INTO events(id, tenant_id, session_id, agent_id, type, payload, metadata, idempotency_key, salience, trace_id, job_id, mode, created_at) VALUES (?1, ?2, ?3, ?4, 'message', ?5, NULL, NULL, 0.5, ?6, 'job_x', 'live', '2026-11-23T10:00:00.000Z')").unwrap();
            let mut s = conn.prepare_cached("INSERT INTO event_signatures(tenant_id, signature, seen) VALUES (?1, ?2, 1) ON CONFLICT(tenant_id, signature) DO UPDATE SET seen = seen + 1 RETURNING seen").unwrap();
            for j in 0..100u64 {
                if sig {
                    let _: i64 = s
                        .query_row(
                            rusqlite::params![tenant, (i * 100 + j) as i64 % 5000],
                            |r| r.get(0),
                        )
                        .unwrap();
                }
                ins.execute(rusqlite::params![engram::ids::new("evt"), tenant, format!("s-{}", j % 50), format!("a-{}", j % 4), format!("{{\"role\":\"user\",\"content\":\"event {i}/{j} deploy the payment service\"}}"), engram::ids::new("trace")]).unwrap();
            }
        }
        conn.execute_batch("COMMIT").unwrap();
    }
    let secs = started.elapsed().as_secs_f64();
    println!(
        "raw sig={sig}: {:.1} µs/event wall, {:.1} µs/event cpu",
        secs * 1e6 / n as f64,
        (cpu_secs() - cpu) * 1e6 / n as f64
    );
}
