//! Quality of the compiler on generated sessions with planted ground truth
//! (`trajectories`): schemas, playbooks, decisions, causal patterns, noise and determinism.

use super::trajectories::{generate, to_events, Spec};
use super::{compile, Draft, Options};
use serde_json::Value;

fn run(spec: &Spec) -> Vec<Draft> {
    compile(to_events(&generate(spec)), Options::default()).artifacts
}

fn of_type<'a>(drafts: &'a [Draft], t: &str) -> Vec<&'a Draft> {
    drafts.iter().filter(|d| d.artifact_type == t).collect()
}

fn steps(d: &Draft) -> Vec<String> {
    d.content["steps"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s.as_str().unwrap().to_string())
        .collect()
}

fn position(list: &[String], needle: &str) -> usize {
    list.iter()
        .position(|s| s.contains(needle))
        .unwrap_or_else(|| panic!("{needle} not in {list:?}"))
}

/// Several seeds: recovery must not hinge on one lucky sample.
const SEEDS: std::ops::RangeInclusive<u64> = 1..=8;

#[test]
fn recovers_the_planted_knowledge() {
    for seed in SEEDS {
        recovers(seed);
    }
}

fn recovers(seed: u64) {
    let drafts = run(&Spec {
        seed,
        ..Spec::default()
    });
    let schemas = of_type(&drafts, "task_schema");
    let deploy = schemas
        .iter()
        .find(|d| d.signature == "deploy payment service production")
        .expect("deploy schema");
    let s = steps(deploy);
    let order = [
        "git pull",
        "cargo build",
        "run tests",
        "docker push",
        "kubectl apply",
    ];
    for w in order.windows(2) {
        assert!(position(&s, w[0]) < position(&s, w[1]), "{s:?}");
    }
    let migrate = schemas
        .iter()
        .find(|d| d.signature.contains("migrations orders schema"))
        .expect("migrate schema");
    let s = steps(migrate);
    assert!(
        position(&s, "pg_dump") < position(&s, "sqlx migrate info"),
        "{s:?}"
    );
    assert!(
        position(&s, "sqlx migrate info") < position(&s, "sqlx migrate run"),
        "{s:?}"
    );
    let release = schemas
        .iter()
        .find(|d| d.signature.contains("release command line tool"))
        .expect("release schema");
    let s = steps(release);
    assert!(
        position(&s, "cargo set-version") < position(&s, "cargo publish"),
        "{s:?}"
    );
    assert!(
        position(&s, "cargo publish") < position(&s, "git tag"),
        "{s:?}"
    );

    let books = of_type(&drafts, "failure_playbook");
    let first_recovery = |needle: &str| -> String {
        let b = books
            .iter()
            .find(|b| b.signature.contains(needle))
            .unwrap_or_else(|| panic!("playbook for {needle}"));
        b.content["recoverySteps"][0]["action"]
            .as_str()
            .unwrap()
            .to_string()
    };
    assert!(first_recovery("connection refused").contains("restart postgresql"));
    assert!(first_recovery("token expired").contains("cargo login"));
    assert!(first_recovery("does not exist").contains("sqlx migrate revert"));

    let policies = of_type(&drafts, "decision_policy");
    let strategy = policies
        .iter()
        .find(|d| d.signature.contains("deployment strategy"))
        .expect("strategy policy");
    assert_eq!(
        strategy.content["recommendation"],
        Value::from("blue-green")
    );

    // The implicit fork (no decision recorded): the GitHub tool beats the raw API call.
    let fork = policies
        .iter()
        .find(|d| d.signature.contains("github create release"))
        .expect("implicit release fork");
    assert_eq!(
        fork.content["recommendation"],
        Value::from("github create release")
    );

    let causal = of_type(&drafts, "causal_pattern");
    assert!(
        causal
            .iter()
            .any(|d| d.content["cause"] == "when dry run skipped"
                && d.content["effect"]
                    .as_str()
                    .unwrap()
                    .contains("does not exist")),
        "planted causal pattern missing"
    );
}

#[test]
fn pure_noise_yields_nothing() {
    for seed in SEEDS {
        nothing_from_noise(seed);
    }
}

fn nothing_from_noise(seed: u64) {
    let spec = Spec {
        seed,
        deploy: 0,
        migrate: 0,
        release: 0,
        noise: 400,
        ..Spec::default()
    };
    let drafts = run(&spec);
    assert!(drafts.is_empty(), "noise produced {drafts:#?}");
    // The same noise under one shared task: random steps and outcomes still yield nothing.
    let mut sessions = generate(&spec);
    for s in &mut sessions {
        for e in &mut s.events {
            e.metadata = serde_json::json!({"task": "routine chores"});
        }
    }
    let drafts = compile(to_events(&sessions), Options::default()).artifacts;
    assert!(drafts.is_empty(), "shared-task noise produced {drafts:#?}");
}

#[test]
fn compiling_twice_is_byte_identical() {
    let a = run(&Spec::default());
    let b = run(&Spec::default());
    assert_eq!(a.len(), b.len());
    for (x, y) in a.iter().zip(&b) {
        assert_eq!(x.content.to_string(), y.content.to_string());
        assert_eq!(x.confidence, y.confidence);
        assert_eq!(x.source_events, y.source_events);
    }
}

/// Hand-written sessions, not from a generator: one task said two ways with the same steps, and a
/// decoy that more than half of the successful runs tried. The decoy is not a step of the task
/// (the playbook ranks it as a recovery that did not work) and the two statements are one task.
#[test]
fn decoys_are_not_steps_and_one_task_said_two_ways_is_one_schema() {
    use super::Event;
    use serde_json::json;
    let mut events = Vec::new();
    let mut push = |sid: &str, kind: &str, payload: Value| {
        let n = events.len();
        events.push(Event {
            id: format!("evt_{n:05}"),
            session_id: sid.to_string(),
            agent_id: None,
            kind: kind.to_string(),
            payload,
            metadata: json!({}),
            created_at: format!("2026-01-01T00:{:02}:{:02}Z", n / 60 % 60, n % 60),
        });
    };
    let oom = "container killed: OOMKilled (exit 137)";
    for i in 0..12 {
        let sid = format!("s{i:02}");
        let ask = ["Start the app container", "Run the app in docker"][i % 2];
        push(&sid, "message", json!({"role": "user", "content": ask}));
        push(
            &sid,
            "command_exec",
            json!({"command": "docker build -t app .", "exitCode": 0}),
        );
        push(
            &sid,
            "command_exec",
            json!({"command": "docker run app", "exitCode": 137, "stderr": oom}),
        );
        if i % 3 != 0 {
            push(
                &sid,
                "command_exec",
                json!({"command": "docker system prune -f", "exitCode": 0}),
            );
            push(
                &sid,
                "command_exec",
                json!({"command": "docker run app", "exitCode": 137, "stderr": oom}),
            );
        }
        push(
            &sid,
            "command_exec",
            json!({"command": "docker run --memory=2g --cpus=1 app", "exitCode": 0}),
        );
        push(&sid, "outcome", json!({"status": "success"}));
    }
    let drafts = compile(events, Options::default()).artifacts;
    let schemas = of_type(&drafts, "task_schema");
    assert_eq!(
        schemas.len(),
        1,
        "one task: {:?}",
        schemas.iter().map(|d| &d.signature).collect::<Vec<_>>()
    );
    assert_eq!(
        steps(schemas[0]),
        [
            "docker build -t app .",
            "docker run --memory=2g --cpus=1 app"
        ]
    );
    let book = of_type(&drafts, "failure_playbook");
    let recoveries = &book[0].content["recoverySteps"];
    assert_eq!(
        recoveries[0]["action"],
        "docker run --memory=2g --cpus=1 app"
    );
    assert_eq!(recoveries[1]["action"], "docker system prune -f");
    assert_eq!(recoveries[1]["successRate"], 0.0);
}

/// Events of hand-written sessions, each `(session, kind, payload)`, in order.
fn events_of(rows: Vec<(String, &str, Value)>) -> Vec<super::Event> {
    rows.into_iter()
        .enumerate()
        .map(|(n, (sid, kind, payload))| super::Event {
            id: format!("evt_{n:05}"),
            session_id: sid,
            agent_id: None,
            kind: kind.to_string(),
            payload,
            metadata: serde_json::json!({}),
            created_at: format!(
                "2026-01-01T{:02}:{:02}:{:02}Z",
                n / 3600,
                n / 60 % 60,
                n % 60
            ),
        })
        .collect()
}

/// Three ways of running one command that differ only in a number, the command succeeding every
/// time and only the runs' ends telling them apart: one policy with three options, best first,
/// its figures exact; the worst way is a cause whose mitigation is the best way; a step written
/// two ways that end alike stays one step with both variants and their rates.
#[test]
fn arguments_that_decide_the_run_are_options_with_exact_figures() {
    use serde_json::json;
    let mut rows = Vec::new();
    let restore = |jobs: u32| format!("pg_restore --jobs {jobs} -d shop dump.sql");
    for i in 0..31u32 {
        let sid = format!("s{i:02}");
        let mut push = |kind: &'static str, p: Value| rows.push((sid.clone(), kind, p));
        push(
            "message",
            json!({"role": "user", "content": "Restore the nightly backup of the shop database"}),
        );
        let sleep = if i % 2 == 0 { "sleep 5" } else { "sleep 10" };
        push("command_exec", json!({"command": sleep, "exitCode": 0}));
        let (tried, ok) = match (i, i % 3) {
            // A run that tried the worst way, then switched.
            (30, _) => (vec![1, 8], true),
            (_, 0) => (vec![8], i != 27),
            (_, 1) => (vec![4], (i / 3) % 2 == 0),
            _ => (vec![1], i == 2),
        };
        for jobs in tried {
            push(
                "command_exec",
                json!({"command": restore(jobs), "exitCode": 0}),
            );
        }
        push(
            "outcome",
            json!({"status": if ok { "success" } else { "failure" }}),
        );
    }
    let drafts = compile(events_of(rows), Options::default()).artifacts;

    let policies = of_type(&drafts, "decision_policy");
    assert_eq!(policies.len(), 1, "{policies:?}");
    let p = &policies[0].content;
    assert_eq!(p["recommendation"], restore(8));
    let options: Vec<(&str, &str, f64, u64)> = p["actions"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| {
            (
                a["action"].as_str().unwrap(),
                a["signature"].as_str().unwrap(),
                a["successRate"].as_f64().unwrap(),
                a["evidence"].as_u64().unwrap(),
            )
        })
        .collect();
    let sig = "pg_restore shop dump.sql";
    assert_eq!(
        options,
        [
            (restore(8).as_str(), sig, 0.9091, 11),
            (restore(4).as_str(), sig, 0.5, 10),
            (restore(1).as_str(), sig, 0.1818, 11),
        ]
    );

    let causes = of_type(&drafts, "causal_pattern");
    let c = causes
        .iter()
        .find(|d| d.content["cause"] == restore(1) && d.content["effect"] == "the task fails")
        .unwrap_or_else(|| panic!("{causes:?}"));
    assert_eq!(c.content["causeSignature"], sig);
    assert_eq!(c.content["frequency"], 9);
    assert_eq!(c.content["confidence"], 0.8182);
    assert_eq!(c.content["lift"], 2.6434);
    assert_eq!(c.content["support"], 0.2903);
    assert_eq!(c.content["mitigation"], format!("instead: {}", restore(8)));

    let schemas = of_type(&drafts, "task_schema");
    assert_eq!(schemas.len(), 1);
    let details = &schemas[0].content["stepDetails"];
    assert_eq!(details[0]["action"], "sleep 10", "{details}");
    assert_eq!(details[0]["signature"], "sleep");
    assert_eq!(
        details[0]["variants"],
        json!([
            {"text": "sleep 5", "count": 16, "successRate": 0.4375},
            {"text": "sleep 10", "count": 15, "successRate": 0.6},
        ])
    );
    assert_eq!(details[1]["action"], restore(8));
}

/// A condition that causes a failure is shown as the runs wrote it, not as its grouping label.
#[test]
fn a_condition_cause_is_shown_as_written() {
    use serde_json::json;
    let mut rows = Vec::new();
    for i in 0..12u32 {
        let sid = format!("c{i:02}");
        let mut push = |kind: &'static str, p: Value| rows.push((sid.clone(), kind, p));
        push(
            "message",
            json!({"role": "user", "content": "Rotate the API signing keys"}),
        );
        let cold = i % 2 == 0;
        if cold {
            push(
                "state_change",
                json!({"state": "Cache is COLD after the 02:00 restart"}),
            );
        }
        push(
            "command_exec",
            if cold {
                json!({"command": "keyctl rotate --all", "exitCode": 1, "stderr": "lookup timed out"})
            } else {
                json!({"command": "keyctl rotate --all", "exitCode": 0})
            },
        );
        push(
            "outcome",
            json!({"status": if cold { "failure" } else { "success" }}),
        );
    }
    let drafts = compile(events_of(rows), Options::default()).artifacts;
    let causes = of_type(&drafts, "causal_pattern");
    let c = causes
        .iter()
        .find(|d| d.content["effect"] == "lookup timed out")
        .unwrap_or_else(|| panic!("{causes:?}"));
    assert_eq!(
        c.content["cause"],
        "when Cache is COLD after the 02:00 restart"
    );
    assert_eq!(
        c.content["causeSignature"],
        "when cache is cold after the restart"
    );
}
