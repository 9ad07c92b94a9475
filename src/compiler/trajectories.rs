//! A generator of realistic agent sessions with planted ground truth, for tests and examples.
//!
//! Families (each with a fixed task statement, so their sessions share one task signature):
//! - deploy: build → test → push → apply → health check. `kubectl apply` sometimes fails with
//!   "connection refused: db-host-N:5432"; restarting the database fixes it (flushing the cache
//!   first, which some runs try, does not). A recorded decision "deployment strategy" picks
//!   blue-green (succeeds ~90%) or rolling (~50%).
//! - migrate: backup → status → dry run → up → verify. When the dry run is skipped (observed as
//!   "dry run skipped") `migrate up` usually fails with a missing-column error: the planted
//!   cause → effect pair. Rolling back and running the dry run recovers.
//! - release: bump → changelog → publish → tag → release. `cargo publish` sometimes fails with an
//!   expired token; `cargo login` fixes it, a plain retry does not. The release itself is made
//!   either with the GitHub tool (always works) or a raw API call (fails ~45%): an implicit fork
//!   with no recorded decision.
//! - noise: random tasks, actions, errors and outcomes with no structure.
//!
//! Everything is seeded: the same `Spec` always yields the same sessions.

use super::Event;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use serde_json::{json, Value};

/// One generated event (before it is captured).
#[derive(Clone, Debug)]
pub struct GenEvent {
    pub kind: &'static str,
    pub payload: Value,
    pub metadata: Value,
}

/// One generated session.
#[derive(Clone, Debug)]
pub struct GenSession {
    pub id: String,
    pub family: &'static str,
    pub events: Vec<GenEvent>,
}

/// How many sessions of each family, and the seed.
#[derive(Clone, Debug)]
pub struct Spec {
    pub seed: u64,
    pub deploy: usize,
    pub migrate: usize,
    pub release: usize,
    pub noise: usize,
    /// Prefix of session ids (lets tests keep tenants' sessions apart).
    pub prefix: String,
}

impl Default for Spec {
    fn default() -> Self {
        Spec {
            seed: 7,
            deploy: 40,
            migrate: 30,
            release: 30,
            noise: 40,
            prefix: "s".into(),
        }
    }
}

pub const DEPLOY_TASK: &str = "Deploy the payment service to production";
pub const MIGRATE_TASK: &str = "Run the database migrations for the orders schema";
pub const RELEASE_TASK: &str = "Publish a new release of the command line tool";

struct B {
    events: Vec<GenEvent>,
    task: &'static str,
}

impl B {
    fn new(task: &'static str, rng: &mut StdRng) -> B {
        let mut b = B {
            events: Vec::new(),
            task,
        };
        let text = if rng.gen_bool(0.5) {
            task.to_string()
        } else {
            format!("{task} (ticket {})", rng.gen_range(100..9999))
        };
        b.push("message", json!({"role": "user", "content": text}));
        b
    }
    fn push(&mut self, kind: &'static str, payload: Value) {
        self.events.push(GenEvent {
            kind,
            payload,
            metadata: json!({"task": self.task}),
        });
    }
    fn cmd(&mut self, command: &str, ok: bool, err: Option<String>) {
        let mut p = json!({"command": command, "exitCode": if ok { 0 } else { 1 }});
        if let Some(e) = err {
            p["stderr"] = json!(e);
        }
        self.push("command_exec", p);
    }
    fn outcome(&mut self, ok: bool) {
        self.push(
            "outcome",
            json!({"status": if ok { "success" } else { "failure" }}),
        );
    }
}

fn deploy(rng: &mut StdRng) -> Vec<GenEvent> {
    let mut b = B::new(DEPLOY_TASK, rng);
    b.push("observation", json!({"condition": "main branch is green"}));
    b.cmd("git pull origin main", true, None);
    b.cmd("cargo build --release", true, None);
    b.push(
        "test_run",
        json!({"suite": "unit", "status": "passed", "passed": 120}),
    );
    b.cmd("docker push registry.local/payments:latest", true, None);
    let blue_green = rng.gen_bool(0.5);
    let choice = if blue_green { "blue-green" } else { "rolling" };
    b.push(
        "decision",
        json!({"question": "deployment strategy", "choice": choice, "options": ["blue-green", "rolling"]}),
    );
    let refused = || {
        format!(
            "connection refused: db-host-{}:5432",
            1 + (choice.len() % 7)
        )
    };
    let mut ok = true;
    if rng.gen_bool(0.3) {
        let msg = format!("{} after {}ms", refused(), rng.gen_range(10..5000));
        b.cmd("kubectl apply -f payments.yaml", false, Some(msg.clone()));
        if rng.gen_bool(0.4) {
            b.cmd("redis-cli flushall", true, None);
            b.cmd("kubectl apply -f payments.yaml", false, Some(msg));
        }
        b.cmd("systemctl restart postgresql", true, None);
        ok = rng.gen_bool(0.9);
        b.cmd("kubectl apply -f payments.yaml", ok, (!ok).then(refused));
    } else {
        b.cmd("kubectl apply -f payments.yaml", true, None);
    }
    if ok {
        let healthy = rng.gen_bool(if blue_green { 0.92 } else { 0.5 });
        b.push(
            "api_result",
            json!({"endpoint": "/health", "status": if healthy { 200 } else { 503 }}),
        );
        if !healthy {
            b.cmd(
                "curl -f https://payments.internal/health",
                false,
                Some(format!(
                    "health check failed: 503 from pod payments-{:x}",
                    rng.gen::<u32>()
                )),
            );
        }
        ok = healthy;
    }
    if ok {
        b.push("state_change", json!({"state": "payment service live"}));
    }
    b.outcome(ok);
    b.events
}

fn migrate(rng: &mut StdRng) -> Vec<GenEvent> {
    let mut b = B::new(MIGRATE_TASK, rng);
    b.cmd("pg_dump orders > backup.sql", true, None);
    b.cmd("sqlx migrate info", true, None);
    let skip = rng.gen_bool(0.4);
    if skip {
        b.push("observation", json!({"condition": "dry run skipped"}));
    } else {
        b.cmd("sqlx migrate run --dry-run", true, None);
    }
    let fails = if skip {
        rng.gen_bool(0.85)
    } else {
        rng.gen_bool(0.05)
    };
    let mut ok = true;
    if fails {
        let err = format!(
            "column \"total_{}\" of relation \"orders\" does not exist",
            rng.gen_range(1..99)
        );
        b.cmd("sqlx migrate run", false, Some(err));
        b.cmd("sqlx migrate revert", true, None);
        b.cmd("sqlx migrate run --dry-run", true, None);
        ok = rng.gen_bool(0.9);
        b.cmd(
            "sqlx migrate run",
            ok,
            (!ok).then(|| "lock timeout".to_string()),
        );
    } else {
        b.cmd("sqlx migrate run", true, None);
    }
    if ok {
        b.push("test_run", json!({"suite": "schema", "status": "passed"}));
        b.push("state_change", json!({"state": "schema up to date"}));
    }
    b.outcome(ok);
    b.events
}

fn release(rng: &mut StdRng) -> Vec<GenEvent> {
    let mut b = B::new(RELEASE_TASK, rng);
    b.cmd("cargo set-version --bump minor", true, None);
    b.push(
        "file_edit",
        json!({"path": "CHANGELOG.md", "diff": "+ notes"}),
    );
    let mut ok = true;
    if rng.gen_bool(0.3) {
        let err = format!(
            "authentication failed: token expired {} days ago",
            rng.gen_range(1..60)
        );
        b.cmd("cargo publish", false, Some(err.clone()));
        if rng.gen_bool(0.5) {
            b.cmd("cargo publish", false, Some(err));
        }
        b.cmd("cargo login", true, None);
        ok = rng.gen_bool(0.95);
        b.cmd(
            "cargo publish",
            ok,
            (!ok).then(|| "registry unavailable".to_string()),
        );
    } else {
        b.cmd("cargo publish", true, None);
    }
    if ok {
        b.cmd("git tag v1.2.3", true, None);
        // An implicit fork: the GitHub tool (reliable) or a raw API call (often rejected).
        if rng.gen_bool(0.6) {
            b.push(
                "tool_call",
                json!({"tool": "github", "action": "create release"}),
            );
            b.push("tool_result", json!({"status": "success"}));
        } else {
            ok = rng.gen_bool(0.55);
            b.cmd(
                "curl -X POST https://api.github.com/repos/acme/cli/releases",
                ok,
                (!ok).then(|| "HTTP 422: validation failed".to_string()),
            );
        }
    }
    b.outcome(ok);
    b.events
}

const WORDS: &[&str] = &[
    "alpha", "bravo", "cobalt", "delta", "ember", "falcon", "garnet", "harbor", "indigo", "jasper",
    "kernel", "lumen", "marble", "nectar", "onyx", "pepper", "quartz", "raven", "saffron",
    "tundra", "umber", "velvet", "willow", "xenon", "yarrow", "zephyr", "acorn", "birch", "cedar",
    "dune", "elm", "fern", "grove", "heath", "iris", "juniper", "kelp", "larch", "moss", "nettle",
];

fn word(rng: &mut StdRng) -> &'static str {
    WORDS[rng.gen_range(0..WORDS.len())]
}

fn noise(rng: &mut StdRng) -> (String, Vec<GenEvent>) {
    let task = format!(
        "{} the {} {} {}",
        word(rng),
        word(rng),
        word(rng),
        word(rng)
    );
    let mut events = vec![GenEvent {
        kind: "message",
        payload: json!({"role": "user", "content": task}),
        metadata: json!({}),
    }];
    for _ in 0..rng.gen_range(2..7) {
        let ok = rng.gen_bool(0.7);
        let mut p = json!({"command": format!("{} {}", word(rng), word(rng)), "exitCode": if ok {0} else {2}});
        if !ok {
            p["stderr"] = json!(format!("{} {} {} error", word(rng), word(rng), word(rng)));
        }
        events.push(GenEvent {
            kind: "command_exec",
            payload: p,
            metadata: json!({}),
        });
        if rng.gen_bool(0.15) {
            events.push(GenEvent {
                kind: "observation",
                payload: json!({"condition": format!("{} is {}", word(rng), word(rng))}),
                metadata: json!({}),
            });
        }
    }
    let ok = rng.gen_bool(0.5);
    events.push(GenEvent {
        kind: "outcome",
        payload: json!({"status": if ok {"success"} else {"failure"}}),
        metadata: json!({}),
    });
    (task, events)
}

/// The sessions of a spec, families interleaved deterministically.
pub fn generate(spec: &Spec) -> Vec<GenSession> {
    let mut rng = StdRng::seed_from_u64(spec.seed);
    let mut plan: Vec<&'static str> = Vec::new();
    plan.extend((0..spec.deploy).map(|_| "deploy"));
    plan.extend((0..spec.migrate).map(|_| "migrate"));
    plan.extend((0..spec.release).map(|_| "release"));
    plan.extend((0..spec.noise).map(|_| "noise"));
    // Interleave: a seeded shuffle.
    for i in (1..plan.len()).rev() {
        let j = rng.gen_range(0..=i);
        plan.swap(i, j);
    }
    plan.iter()
        .enumerate()
        .map(|(i, family)| {
            let events = match *family {
                "deploy" => deploy(&mut rng),
                "migrate" => migrate(&mut rng),
                "release" => release(&mut rng),
                _ => noise(&mut rng).1,
            };
            GenSession {
                id: format!("{}-{:06}-{}", spec.prefix, i, family),
                family,
                events,
            }
        })
        .collect()
}

/// A session's events as `POST /v1/capture/batch` items.
pub fn capture_items(s: &GenSession) -> Vec<Value> {
    s.events
        .iter()
        .map(|e| {
            json!({"type": e.kind, "sessionId": s.id, "payload": e.payload, "metadata": e.metadata})
        })
        .collect()
}

/// Sessions as compiler events ordered by session then sequence (as the store streams them),
/// with synthetic ids and timestamps one second apart from `2026-01-01T00:00:00Z`.
pub fn to_events(sessions: &[GenSession]) -> Vec<Event> {
    let base = crate::time::parse("2026-01-01T00:00:00Z").expect("valid base time");
    let mut out = Vec::new();
    let mut n = 0i64;
    let mut sorted: Vec<&GenSession> = sessions.iter().collect();
    sorted.sort_by(|a, b| a.id.cmp(&b.id));
    for s in sorted {
        for (i, e) in s.events.iter().enumerate() {
            n += 1;
            out.push(Event {
                id: format!("evt_{}_{:04}", s.id, i),
                session_id: s.id.clone(),
                agent_id: None,
                kind: e.kind.to_string(),
                payload: e.payload.clone(),
                metadata: e.metadata.clone(),
                created_at: crate::time::rfc3339(base + chrono::Duration::seconds(n)),
            });
        }
    }
    out
}
