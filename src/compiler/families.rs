//! Thirteen task families from different domains, for measuring what learn writes (the quality
//! suite, `examples/learn_quality.rs`). Unlike `trajectories`, the knowledge planted here lives in
//! the arguments: fixes that differ from the failing command only by a flag, decoy fixes, decisions
//! whose options differ only in their arguments, file edits that cause a concrete failure a step
//! later unless a mitigation ran first, task statements phrased several ways, and noise.
//!
//! `Truth` lists, per family, the exact strings learn must write. Everything is seeded; the
//! quality test uses only `QUALITY_SEEDS`, a range no code was tuned on (`DEV_SEEDS` is the one
//! development looked at).

use super::trajectories::{GenEvent, GenSession};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use serde_json::{json, Value};

/// The seeds the quality test runs on, and nothing else: no threshold or rule of the compiler
/// was chosen by looking at them (development used `DEV_SEEDS`).
pub const QUALITY_SEEDS: std::ops::RangeInclusive<u64> = 41001..=41010;
/// The seeds development looked at.
pub const DEV_SEEDS: std::ops::RangeInclusive<u64> = 9001..=9040;

/// What a family planted: the exact text learn must produce for it.
#[derive(Clone, Debug, Default)]
pub struct Truth {
    pub family: &'static str,
    pub domain: &'static str,
    /// The task statement's signature words (how the schema is found).
    pub task: &'static str,
    /// The schema's steps, verbatim, in order.
    pub steps: Vec<&'static str>,
    /// A failure: (a distinctive part of its error, the working recovery verbatim, the decoy).
    pub recovery: Option<(&'static str, &'static str, &'static str)>,
    /// A decision: the options verbatim, best first.
    pub decision: Option<(&'static str, &'static str)>,
    /// A cause → effect: (the cause's text, a distinctive part of the effect, the mitigation).
    pub causal: Option<(&'static str, &'static str, &'static str)>,
}

struct B {
    events: Vec<GenEvent>,
}

impl B {
    /// A session opened by the user's request, phrased one of `phrasings` ways.
    fn new(phrasings: &[&str], rng: &mut StdRng) -> B {
        let text = phrasings[rng.gen_range(0..phrasings.len())];
        let text = match rng.gen_range(0..3) {
            0 => text.to_string(),
            1 => format!("Please {}{}", text[..1].to_lowercase(), &text[1..]),
            _ => format!("{text} (ticket {})", rng.gen_range(1000..9999)),
        };
        let mut b = B { events: Vec::new() };
        b.push("message", json!({"role": "user", "content": text}));
        b
    }
    fn push(&mut self, kind: &'static str, payload: Value) {
        self.events.push(GenEvent {
            kind,
            payload,
            metadata: json!({}),
        });
    }
    fn cmd(&mut self, command: &str, ok: bool, err: Option<String>) {
        let mut p = json!({"command": command, "exitCode": if ok { 0 } else { 1 }});
        if let Some(e) = err {
            p["stderr"] = json!(e);
        }
        self.push("command_exec", p);
    }
    fn ok(&mut self, command: &str) {
        self.cmd(command, true, None);
    }
    fn edit(&mut self, path: &str, summary: &str) {
        self.push("file_edit", json!({"path": path, "summary": summary}));
    }
    fn outcome(&mut self, ok: bool) {
        self.push(
            "outcome",
            json!({"status": if ok { "success" } else { "failure" }}),
        );
    }
}

/// A failing step, then either the decoy (which fails again) and the fix, or the fix alone.
fn fail_then_fix(
    b: &mut B,
    failing: &str,
    error: String,
    decoy: &str,
    fix: &str,
    rng: &mut StdRng,
) -> bool {
    b.cmd(failing, false, Some(error.clone()));
    if rng.gen_bool(0.45) {
        b.ok(decoy);
        b.cmd(failing, false, Some(error));
    }
    let ok = rng.gen_bool(0.92);
    b.cmd(fix, ok, (!ok).then(|| "unexpected failure".to_string()));
    ok
}

/// A step a family plants a failure in: the command that fails, what agents try in vain, the fix,
/// and what a run that does not fail runs.
struct Planted {
    failing: &'static str,
    decoy: &'static str,
    fix: &'static str,
    direct: &'static str,
}

/// With probability `p` the step fails with `error` and is recovered (`fail_then_fix`), otherwise
/// the direct command runs. Answers (whether it failed, whether the run is still fine).
fn may_fail(
    b: &mut B,
    rng: &mut StdRng,
    p: f64,
    step: &Planted,
    error: impl FnOnce(&mut StdRng) -> String,
) -> (bool, bool) {
    if rng.gen_bool(p) {
        let error = error(rng);
        (
            true,
            fail_then_fix(b, step.failing, error, step.decoy, step.fix, rng),
        )
    } else {
        b.ok(step.direct);
        (false, true)
    }
}

// 1. Infrastructure — a container killed for memory; the fix is the same command with limits.
fn container(rng: &mut StdRng) -> Vec<GenEvent> {
    let mut b = B::new(
        &[
            "Start the reporting app container",
            "Run the reporting app in a container",
            "Bring up the reporting app container",
        ],
        rng,
    );
    b.ok("docker build -t reports:1.4 .");
    let (_, ok) = may_fail(
        &mut b,
        rng,
        0.6,
        &Planted {
            failing: "docker run -d --name reports reports:1.4",
            decoy: "docker system prune -f",
            fix: "docker run -d --name reports --memory=2g --cpus=1 reports:1.4",
            direct: "docker run -d --name reports --memory=2g --cpus=1 reports:1.4",
        },
        |rng| {
            format!(
                "container reports exited with code 137 after {}s (OOMKilled)",
                rng.gen_range(3..90)
            )
        },
    );
    if ok {
        b.ok("curl -f http://localhost:8080/healthz");
    }
    b.outcome(ok);
    b.events
}

// 2. Kubernetes — a decision whose options differ only in their --set argument.
fn scale(rng: &mut StdRng) -> Vec<GenEvent> {
    let mut b = B::new(
        &[
            "Scale the api deployment for the launch",
            "Scale up the api deployment before the launch",
        ],
        rng,
    );
    b.ok("kubectl config use-context prod-eu");
    let replicas = rng.gen_bool(0.5);
    let (choice, p) = if replicas {
        ("helm upgrade api ./charts/api --set replicas=6", 0.85)
    } else {
        ("helm upgrade api ./charts/api --set resources.cpu=4", 0.3)
    };
    b.ok(choice);
    let ok = rng.gen_bool(p);
    b.cmd(
        "kubectl rollout status deploy/api --timeout=120s",
        ok,
        (!ok).then(|| "error: deployment \"api\" exceeded its progress deadline".to_string()),
    );
    b.outcome(ok);
    b.events
}

// 3. TLS — URLs and domains must survive intact; the fix switches the challenge type.
fn certs(rng: &mut StdRng) -> Vec<GenEvent> {
    let mut b = B::new(
        &[
            "Renew the TLS certificate for the storefront",
            "Renew the storefront TLS certificate",
        ],
        rng,
    );
    b.ok("certbot --version");
    let issue = "certbot certonly --server https://acme-v02.example.org/dir -d shop.example.org";
    let (_, ok) = may_fail(
        &mut b,
        rng,
        0.6,
        &Planted {
            failing: issue,
            decoy: "systemctl restart nginx",
            fix: "certbot certonly --server https://acme-v02.example.org/dir -d shop.example.org --preferred-challenges dns",
            direct: issue,
        },
        |rng| format!(
            "Challenge failed for domain shop.example.org: connection timed out after {}ms",
            rng.gen_range(2000..9000)
        ),
    );
    if ok {
        b.ok("systemctl reload nginx");
    }
    b.outcome(ok);
    b.events
}

// 4. Databases — an index build that needs a lock timeout set.
fn index(rng: &mut StdRng) -> Vec<GenEvent> {
    let mut b = B::new(
        &[
            "Add an index on orders created_at",
            "Create the created_at index on the orders table",
        ],
        rng,
    );
    b.ok("psql -d shop -c \"SELECT count(*) FROM orders\"");
    let build =
        "psql -d shop -c \"CREATE INDEX CONCURRENTLY idx_orders_created ON orders (created_at)\"";
    let (_, ok) = may_fail(
        &mut b,
        rng,
        0.55,
        &Planted {
            failing: build,
            decoy: "psql -d shop -c \"VACUUM orders\"",
            fix: "psql -d shop -c \"SET statement_timeout = 0\" -c \"CREATE INDEX CONCURRENTLY idx_orders_created ON orders (created_at)\"",
            direct: build,
        },
        |rng| format!(
            "ERROR: canceling statement due to statement timeout (pid {})",
            rng.gen_range(1000..99999)
        ),
    );
    if ok {
        b.ok("psql -d shop -c \"ANALYZE orders\"");
    }
    b.outcome(ok);
    b.events
}

// 5. Web — a front-end build that needs more heap; the decoy reinstalls modules.
fn frontend(rng: &mut StdRng) -> Vec<GenEvent> {
    let mut b = B::new(
        &[
            "Build the checkout web app",
            "Produce a production build of the checkout web app",
        ],
        rng,
    );
    b.ok("npm ci");
    let build = "npm run build";
    let (_, ok) = may_fail(
        &mut b,
        rng,
        0.55,
        &Planted {
            failing: build,
            decoy: "rm -rf node_modules",
            fix: "NODE_OPTIONS=--max-old-space-size=4096 npm run build",
            direct: "NODE_OPTIONS=--max-old-space-size=4096 npm run build",
        },
        |rng| {
            format!(
            "FATAL ERROR: Reached heap limit Allocation failed - JavaScript heap out of memory ({} MB)",
            rng.gen_range(1900..2100)
        )
        },
    );
    if ok {
        b.ok("npx playwright test --project=chromium");
    }
    b.outcome(ok);
    b.events
}

// 6. CI — editing pyproject.toml breaks the test run with an ImportError unless the package is
// reinstalled first.
fn deps(rng: &mut StdRng) -> Vec<GenEvent> {
    let mut b = B::new(
        &[
            "Upgrade the billing package dependencies",
            "Bump the dependencies of the billing package",
        ],
        rng,
    );
    b.ok("git checkout -b deps-upgrade");
    let edited = rng.gen_bool(0.7);
    if edited {
        b.edit("pyproject.toml", "bump httpx to 0.28");
    } else {
        b.edit("requirements-dev.txt", "bump pytest to 8.3");
    }
    // Agents who know better reinstall after touching the packaging (and a few do anyway).
    let reinstall = rng.gen_bool(if edited { 0.3 } else { 0.1 });
    if reinstall {
        b.ok("pip install -e .");
    }
    let breaks = edited && !reinstall && rng.gen_bool(0.9);
    let mut p = json!({"suite": "billing", "command": "pytest -q tests/billing"});
    if breaks {
        p["status"] = json!("failed");
        p["error"] = json!(format!(
            "ImportError: cannot import name 'AsyncClient' from 'billing.http' (line {})",
            rng.gen_range(10..400)
        ));
    } else {
        p["status"] = json!("passed");
    }
    b.push("test_run", p);
    let ok = !breaks;
    if ok {
        b.ok("git push origin deps-upgrade");
    }
    b.outcome(ok);
    b.events
}

// 7. Data pipelines — a backfill killed for memory; the fix names a bigger pool.
fn backfill(rng: &mut StdRng) -> Vec<GenEvent> {
    let mut b = B::new(
        &[
            "Backfill the daily events partitions",
            "Backfill the events_daily partitions for last week",
        ],
        rng,
    );
    b.ok("airflow dags list-runs -d events_daily");
    let run = "airflow dags backfill events_daily -s 2026-01-01 -e 2026-01-07";
    let (_, ok) = may_fail(
        &mut b,
        rng,
        0.6,
        &Planted {
            failing: run,
            decoy: "airflow tasks clear events_daily -y",
            fix:
                "airflow dags backfill events_daily -s 2026-01-01 -e 2026-01-07 --pool large_memory",
            direct: run,
        },
        |rng| {
            format!(
                "Task events_daily.load exited with return code -9 (attempt {})",
                rng.gen_range(1..4)
            )
        },
    );
    if ok {
        b.ok("dbt test --select events_daily");
    }
    b.outcome(ok);
    b.events
}

// 8. Support — an explicit decision whose options differ only in an argument.
fn refund(rng: &mut StdRng) -> Vec<GenEvent> {
    let mut b = B::new(
        &[
            "Refund the duplicate charge for the customer",
            "Refund a customer's duplicate card charge",
        ],
        rng,
    );
    let charge = format!("ch_{:08x}", rng.gen::<u32>());
    b.push(
        "tool_call",
        json!({"tool": "stripe", "action": "lookup charge", "input": {"charge": charge}}),
    );
    b.push("tool_result", json!({"status": "success"}));
    let duplicate = rng.gen_bool(0.5);
    let (choice, p) = if duplicate {
        ("stripe refunds create --reason duplicate", 0.9)
    } else {
        ("stripe refunds create --reason requested_by_customer", 0.35)
    };
    b.push(
        "decision",
        json!({"question": "refund reason", "choice": choice,
               "options": ["stripe refunds create --reason duplicate", "stripe refunds create --reason requested_by_customer"]}),
    );
    let ok = rng.gen_bool(p);
    b.cmd(
        choice,
        ok,
        (!ok).then(|| "card_declined: the bank flagged the refund for review".to_string()),
    );
    b.outcome(ok);
    b.events
}

// 9. Infrastructure as code — a stale state lock; the fix carries a lock id that varies.
fn terraform(rng: &mut StdRng) -> Vec<GenEvent> {
    let mut b = B::new(
        &[
            "Apply the network changes in staging",
            "Roll out the staging network changes",
        ],
        rng,
    );
    b.ok("terraform init -backend-config=staging.hcl");
    b.ok("terraform plan -out=tfplan");
    let apply = "terraform apply tfplan";
    let (_, ok) = may_fail(
        &mut b,
        rng,
        0.5,
        &Planted {
            failing: apply,
            decoy: "terraform refresh",
            fix: "terraform apply -lock-timeout=5m tfplan",
            direct: apply,
        },
        |rng| {
            let id = format!("{:08x}-{:04x}", rng.gen::<u32>(), rng.gen::<u16>());
            format!("Error acquiring the state lock: ConditionalCheckFailedException (lock {id})")
        },
    );
    b.outcome(ok);
    b.events
}

// 10. Source control — a merge conflict in a lock file; the decoy aborts the merge.
fn merge(rng: &mut StdRng) -> Vec<GenEvent> {
    let mut b = B::new(
        &[
            "Merge the release branch into main",
            "Merge release/2.4 back into main",
        ],
        rng,
    );
    b.ok("git fetch origin");
    let m = "git merge --no-ff origin/release/2.4";
    let (failed, ok) = may_fail(
        &mut b,
        rng,
        0.55,
        &Planted {
            failing: m,
            decoy: "git merge --abort",
            fix: "git checkout --theirs Cargo.lock",
            direct: m,
        },
        |_| "CONFLICT (content): Merge conflict in Cargo.lock".to_string(),
    );
    if failed && ok {
        b.ok("git commit --no-edit");
    }
    if ok {
        b.ok("cargo test --workspace");
    }
    b.outcome(ok);
    b.events
}

// 11. Web APIs — editing the API config without reloading secrets gives HTTP 401 a step later.
fn catalog(rng: &mut StdRng) -> Vec<GenEvent> {
    let mut b = B::new(
        &[
            "Sync the product catalog to the storefront",
            "Push the product catalog to the storefront API",
        ],
        rng,
    );
    b.ok("python export_catalog.py --out catalog.json");
    let edited = rng.gen_bool(0.65);
    if edited {
        b.edit("config/storefront.yaml", "switch to the v2 endpoint");
    }
    let reload = rng.gen_bool(if edited { 0.3 } else { 0.1 });
    if reload {
        b.ok("vault kv get -field=token secret/storefront");
    }
    let unauthorized = edited && !reload && rng.gen_bool(0.9);
    b.push(
        "api_result",
        json!({"method": "POST", "url": "https://api.shop.example.org/v2/catalog",
               "status": if unauthorized { 401 } else { 200 }}),
    );
    b.outcome(!unauthorized);
    b.events
}

// 12. Machine learning — an implicit decision between learning rates (arguments only).
fn train(rng: &mut StdRng) -> Vec<GenEvent> {
    let mut b = B::new(
        &[
            "Retrain the churn prediction model",
            "Train a new churn prediction model",
        ],
        rng,
    );
    b.ok("python prepare.py --split 0.8");
    let slow = rng.gen_bool(0.5);
    let (run, p) = if slow {
        ("python train.py --epochs 20 --lr 0.001", 0.9)
    } else {
        ("python train.py --epochs 20 --lr 0.01", 0.2)
    };
    let ok = rng.gen_bool(p);
    b.cmd(
        run,
        ok,
        (!ok).then(|| "loss diverged: nan at epoch 3".to_string()),
    );
    if ok {
        b.ok("python evaluate.py --metric auc");
    }
    b.outcome(ok);
    b.events
}

// 13. Background jobs — the argument that decides the run is a number, and the command succeeds
// either way: only how the runs ended tells the two apart (one signature, two actions).
fn workers(rng: &mut StdRng) -> Vec<GenEvent> {
    let mut b = B::new(
        &[
            "Clear the email queue backlog",
            "Drain the backlog of the email queue",
        ],
        rng,
    );
    b.ok("celery -A mailer inspect active_queues");
    let many = rng.gen_bool(0.5);
    let (start, p) = if many {
        ("celery -A mailer worker -Q email --concurrency=32", 0.85)
    } else {
        ("celery -A mailer worker -Q email --concurrency=4", 0.3)
    };
    b.ok(start);
    let ok = rng.gen_bool(p);
    b.cmd(
        "python scripts/check_backlog.py --queue email --max 1000",
        ok,
        (!ok).then(|| {
            format!(
                "backlog still at {} messages after 10 minutes",
                rng.gen_range(1500..9000)
            )
        }),
    );
    b.outcome(ok);
    b.events
}

const WORDS: &[&str] = &[
    "amber", "basalt", "copper", "dahlia", "egret", "fjord", "gable", "hazel", "islet", "jetty",
    "knoll", "lagoon", "mesa", "nimbus", "orchid", "prairie", "quill", "ridge", "sable", "thicket",
];

fn noise(rng: &mut StdRng) -> Vec<GenEvent> {
    let w = |rng: &mut StdRng| WORDS[rng.gen_range(0..WORDS.len())];
    let task = format!("{} the {} {} {}", w(rng), w(rng), w(rng), w(rng));
    let mut b = B { events: Vec::new() };
    b.push("message", json!({"role": "user", "content": task}));
    for _ in 0..rng.gen_range(2..6) {
        let ok = rng.gen_bool(0.6);
        let cmd = format!("{} --{} {}", w(rng), w(rng), rng.gen_range(1..9));
        b.cmd(
            &cmd,
            ok,
            (!ok).then(|| format!("{} {} failed", w(rng), w(rng))),
        );
        if rng.gen_bool(0.2) {
            b.edit(&format!("{}/{}.toml", w(rng), w(rng)), "tweak");
        }
    }
    let ok = rng.gen_bool(0.5);
    b.outcome(ok);
    b.events
}

type Family = (&'static str, fn(&mut StdRng) -> Vec<GenEvent>);

/// The families in order.
pub const FAMILIES: [Family; 13] = [
    ("container", container),
    ("scale", scale),
    ("certs", certs),
    ("index", index),
    ("frontend", frontend),
    ("deps", deps),
    ("backfill", backfill),
    ("refund", refund),
    ("terraform", terraform),
    ("merge", merge),
    ("catalog", catalog),
    ("train", train),
    ("workers", workers),
];

/// `per_family` sessions of every family and `noise` noise sessions, interleaved by the seed.
pub fn generate(seed: u64, per_family: usize, noise_sessions: usize) -> Vec<GenSession> {
    let mut rng = StdRng::seed_from_u64(seed);
    let mut plan: Vec<usize> = Vec::new();
    for f in 0..FAMILIES.len() {
        plan.extend(std::iter::repeat(f).take(per_family));
    }
    plan.extend(std::iter::repeat(usize::MAX).take(noise_sessions));
    for i in (1..plan.len()).rev() {
        let j = rng.gen_range(0..=i);
        plan.swap(i, j);
    }
    plan.iter()
        .enumerate()
        .map(|(i, f)| {
            let (family, events) = match FAMILIES.get(*f) {
                Some((name, make)) => (*name, make(&mut rng)),
                None => ("noise", noise(&mut rng)),
            };
            GenSession {
                id: format!("q{seed}-{i:05}-{family}"),
                family,
                events,
            }
        })
        .collect()
}

/// What each family planted.
pub fn truths() -> Vec<Truth> {
    vec![
        Truth {
            family: "container",
            domain: "infrastructure",
            task: "reporting app container",
            steps: vec![
                "docker build -t reports:1.4 .",
                "docker run -d --name reports --memory=2g --cpus=1 reports:1.4",
                "curl -f http://localhost:8080/healthz",
            ],
            recovery: Some((
                "exited with code 137",
                "docker run -d --name reports --memory=2g --cpus=1 reports:1.4",
                "docker system prune -f",
            )),
            ..Truth::default()
        },
        Truth {
            family: "scale",
            domain: "kubernetes",
            task: "scale api deployment launch",
            steps: vec![
                "kubectl config use-context prod-eu",
                "helm upgrade api ./charts/api --set replicas=6",
                "kubectl rollout status deploy/api --timeout=120s",
            ],
            decision: Some((
                "helm upgrade api ./charts/api --set replicas=6",
                "helm upgrade api ./charts/api --set resources.cpu=4",
            )),
            ..Truth::default()
        },
        Truth {
            family: "certs",
            domain: "security",
            task: "tls certificate storefront",
            steps: vec![
                "certbot --version",
                "certbot certonly --server https://acme-v02.example.org/dir -d shop.example.org --preferred-challenges dns",
                "systemctl reload nginx",
            ],
            recovery: Some((
                "challenge failed for domain shop.example.org",
                "certbot certonly --server https://acme-v02.example.org/dir -d shop.example.org --preferred-challenges dns",
                "systemctl restart nginx",
            )),
            ..Truth::default()
        },
        Truth {
            family: "index",
            domain: "databases",
            task: "index orders created_at",
            steps: vec![
                "psql -d shop -c \"SELECT count(*) FROM orders\"",
                "psql -d shop -c \"SET statement_timeout = 0\" -c \"CREATE INDEX CONCURRENTLY idx_orders_created ON orders (created_at)\"",
                "psql -d shop -c \"ANALYZE orders\"",
            ],
            recovery: Some((
                "canceling statement due to statement timeout",
                "psql -d shop -c \"SET statement_timeout = 0\" -c \"CREATE INDEX CONCURRENTLY idx_orders_created ON orders (created_at)\"",
                "psql -d shop -c \"VACUUM orders\"",
            )),
            ..Truth::default()
        },
        Truth {
            family: "frontend",
            domain: "web",
            task: "checkout web app",
            steps: vec![
                "npm ci",
                "NODE_OPTIONS=--max-old-space-size=4096 npm run build",
                "npx playwright test --project=chromium",
            ],
            recovery: Some((
                "javascript heap out of memory",
                "NODE_OPTIONS=--max-old-space-size=4096 npm run build",
                "rm -rf node_modules",
            )),
            ..Truth::default()
        },
        Truth {
            family: "deps",
            domain: "ci",
            task: "billing package dependencies",
            causal: Some((
                "edit pyproject.toml (bump httpx to 0.28)",
                "cannot import name",
                "pip install -e .",
            )),
            ..Truth::default()
        },
        Truth {
            family: "backfill",
            domain: "data pipelines",
            task: "backfill daily events partitions",
            steps: vec![
                "airflow dags list-runs -d events_daily",
                "airflow dags backfill events_daily -s 2026-01-01 -e 2026-01-07 --pool large_memory",
                "dbt test --select events_daily",
            ],
            recovery: Some((
                "exited with return code -9",
                "airflow dags backfill events_daily -s 2026-01-01 -e 2026-01-07 --pool large_memory",
                "airflow tasks clear events_daily -y",
            )),
            ..Truth::default()
        },
        Truth {
            family: "refund",
            domain: "support",
            task: "refund duplicate charge",
            decision: Some((
                "stripe refunds create --reason duplicate",
                "stripe refunds create --reason requested_by_customer",
            )),
            ..Truth::default()
        },
        Truth {
            family: "terraform",
            domain: "infrastructure as code",
            task: "network changes staging",
            steps: vec![
                "terraform init -backend-config=staging.hcl",
                "terraform plan -out=tfplan",
                "terraform apply -lock-timeout=5m tfplan",
            ],
            recovery: Some((
                "error acquiring the state lock",
                "terraform apply -lock-timeout=5m tfplan",
                "terraform refresh",
            )),
            ..Truth::default()
        },
        Truth {
            family: "merge",
            domain: "source control",
            task: "merge release branch",
            recovery: Some((
                "merge conflict in cargo.lock",
                "git checkout --theirs Cargo.lock",
                "git merge --abort",
            )),
            ..Truth::default()
        },
        Truth {
            family: "catalog",
            domain: "web apis",
            task: "product catalog storefront",
            causal: Some((
                "edit config/storefront.yaml (switch to the v2 endpoint)",
                "http 401 from post https://api.shop.example.org/v2/catalog",
                "vault kv get -field=token secret/storefront",
            )),
            ..Truth::default()
        },
        Truth {
            family: "train",
            domain: "machine learning",
            task: "churn prediction model",
            steps: vec![
                "python prepare.py --split 0.8",
                "python train.py --epochs 20 --lr 0.001",
                "python evaluate.py --metric auc",
            ],
            decision: Some((
                "python train.py --epochs 20 --lr 0.001",
                "python train.py --epochs 20 --lr 0.01",
            )),
            ..Truth::default()
        },
        Truth {
            family: "workers",
            domain: "background jobs",
            task: "email queue backlog",
            steps: vec![
                "celery -A mailer inspect active_queues",
                "celery -A mailer worker -Q email --concurrency=32",
                "python scripts/check_backlog.py --queue email --max 1000",
            ],
            decision: Some((
                "celery -A mailer worker -Q email --concurrency=32",
                "celery -A mailer worker -Q email --concurrency=4",
            )),
            causal: Some((
                "celery -A mailer worker -Q email --concurrency=4",
                "backlog still at",
                "instead: celery -A mailer worker -Q email --concurrency=32",
            )),
            ..Truth::default()
        },
    ]
}

/// One check of the quality suite.
#[derive(Clone, Debug)]
pub struct Check {
    pub family: &'static str,
    pub check: &'static str,
    pub passed: bool,
    /// What was found instead, when it failed.
    pub detail: String,
}

/// The family a generated event id belongs to (`evt_q<seed>-<n>-<family>_<i>`).
fn family_of_event(id: &str) -> Option<&str> {
    let session = id.strip_prefix("evt_")?.rsplit_once('_')?.0;
    session.rsplit('-').next()
}

/// The family most of a draft's evidence comes from.
pub fn family_of(d: &super::Draft) -> Option<&str> {
    let mut counts: std::collections::BTreeMap<&str, usize> = Default::default();
    for e in &d.source_events {
        if let Some(f) = family_of_event(e) {
            *counts.entry(f).or_default() += 1;
        }
    }
    counts
        .into_iter()
        .max_by(|a, b| a.1.cmp(&b.1).then_with(|| b.0.cmp(a.0)))
        .map(|(f, _)| f)
}

fn strings(v: &Value) -> Vec<String> {
    v.as_array()
        .map(|a| {
            a.iter()
                .filter_map(|x| x.as_str().map(str::to_string))
                .collect()
        })
        .unwrap_or_default()
}

/// Checks compiled drafts against what the families planted.
pub fn check(drafts: &[super::Draft]) -> Vec<Check> {
    let mut out = Vec::new();
    let of = |family: &str, t: &str| -> Vec<&super::Draft> {
        let mut v: Vec<&super::Draft> = drafts
            .iter()
            .filter(|d| d.artifact_type == t && family_of(d) == Some(family))
            .collect();
        v.sort_by(|a, b| {
            b.evidence_count
                .cmp(&a.evidence_count)
                .then_with(|| a.signature.cmp(&b.signature))
        });
        v
    };
    for t in truths() {
        let mut push = |check: &'static str, passed: bool, detail: String| {
            out.push(Check {
                family: t.family,
                check,
                passed,
                detail: if passed { String::new() } else { detail },
            })
        };
        if !t.steps.is_empty() {
            let schemas = of(t.family, "task_schema");
            let found: Vec<Vec<String>> = schemas
                .iter()
                .map(|d| strings(&d.content["steps"]))
                .collect();
            let want: Vec<String> = t.steps.iter().map(|s| s.to_string()).collect();
            push(
                "schema steps verbatim, in order",
                found.first() == Some(&want),
                format!("{found:?}"),
            );
            push(
                "one schema for all phrasings",
                schemas.len() == 1,
                format!(
                    "{} schemas: {:?}",
                    schemas.len(),
                    schemas.iter().map(|d| &d.signature).collect::<Vec<_>>()
                ),
            );
        }
        if let Some((symptom, fix, decoy)) = t.recovery {
            let books = of(t.family, "failure_playbook");
            let book = books.iter().find(|d| {
                strings(&d.content["symptoms"])
                    .iter()
                    .any(|s| s.to_lowercase().contains(symptom))
            });
            let recoveries: Vec<(Vec<String>, f64)> = book
                .map(|d| {
                    d.content["recoverySteps"]
                        .as_array()
                        .into_iter()
                        .flatten()
                        .map(|r| {
                            (
                                strings(&r["steps"]),
                                r["successRate"].as_f64().unwrap_or(0.0),
                            )
                        })
                        .collect()
                })
                .unwrap_or_default();
            let top = recoveries.first();
            push(
                "fix verbatim, ranked first",
                top.is_some_and(|(steps, _)| steps.iter().any(|s| s == fix)),
                format!("{:?}", top.map(|r| &r.0)),
            );
            let decoy_rate = recoveries
                .iter()
                .find(|(steps, _)| steps.first().map(String::as_str) == Some(decoy))
                .map(|r| r.1);
            push(
                "decoy below the fix",
                book.is_some()
                    && top.is_some_and(|(steps, rate)| {
                        steps.first().map(String::as_str) != Some(decoy)
                            && decoy_rate.map_or(true, |d| d < *rate)
                    }),
                format!("{recoveries:?}"),
            );
        }
        if let Some((best, worse)) = t.decision {
            let policies = of(t.family, "decision_policy");
            let policy = policies.iter().find(|d| {
                let actions: Vec<String> = d.content["actions"]
                    .as_array()
                    .into_iter()
                    .flatten()
                    .filter_map(|a| a["action"].as_str().map(str::to_string))
                    .collect();
                actions.iter().any(|a| a == best) && actions.iter().any(|a| a == worse)
            });
            push(
                "options verbatim",
                policy.is_some(),
                format!(
                    "{:?}",
                    policies
                        .iter()
                        .map(|d| &d.content["actions"])
                        .collect::<Vec<_>>()
                ),
            );
            push(
                "recommends the better option, ranked first",
                policy.is_some_and(|d| {
                    d.content["recommendation"] == best && d.content["actions"][0]["action"] == best
                }),
                format!("{:?}", policy.map(|d| &d.content["actions"])),
            );
        }
        if let Some((cause, effect, mitigation)) = t.causal {
            let patterns = of(t.family, "causal_pattern");
            let found = patterns.iter().find(|d| {
                d.content["cause"] == cause
                    && d.content["effect"]
                        .as_str()
                        .is_some_and(|e| e.to_lowercase().contains(effect))
            });
            push(
                "cause → concrete effect",
                found.is_some(),
                format!(
                    "{:?}",
                    patterns
                        .iter()
                        .map(|d| format!("{} => {}", d.content["cause"], d.content["effect"]))
                        .collect::<Vec<_>>()
                ),
            );
            push(
                "mitigation verbatim",
                found.is_some_and(|d| d.content["mitigation"] == mitigation),
                format!("{:?}", found.map(|d| &d.content["mitigation"])),
            );
        }
    }
    let confident_noise: Vec<&super::Draft> = drafts
        .iter()
        .filter(|d| family_of(d) == Some("noise") && d.confidence >= 0.5)
        .collect();
    out.push(Check {
        family: "noise",
        check: "no artifact with confidence ≥ 0.5",
        passed: confident_noise.is_empty(),
        detail: format!(
            "{:?}",
            confident_noise
                .iter()
                .map(|d| &d.signature)
                .collect::<Vec<_>>()
        ),
    });
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::compiler::trajectories::to_events;
    use crate::compiler::{compile, Options};

    /// The quality suite: on seeds reserved for it, every planted fact comes out verbatim.
    #[test]
    fn learn_writes_what_the_agents_did() {
        let mut failed = Vec::new();
        for seed in QUALITY_SEEDS {
            let sessions = generate(seed, 60, 60);
            let drafts = compile(to_events(&sessions), Options::default()).artifacts;
            for c in check(&drafts) {
                if !c.passed {
                    failed.push(format!(
                        "seed {seed} {} / {}: {}",
                        c.family, c.check, c.detail
                    ));
                }
            }
        }
        assert!(
            failed.is_empty(),
            "{} failed checks:\n{}",
            failed.len(),
            failed.join("\n")
        );
    }

    #[test]
    fn the_same_sessions_give_byte_identical_artifacts() {
        let sessions = generate(*DEV_SEEDS.start(), 20, 20);
        let a = compile(to_events(&sessions), Options::default()).artifacts;
        let b = compile(to_events(&sessions), Options::default()).artifacts;
        assert!(!a.is_empty());
        assert_eq!(a, b);
        let text = |d: &[crate::compiler::Draft]| {
            d.iter()
                .map(|x| x.content.to_string())
                .collect::<Vec<_>>()
                .join("\n")
        };
        assert_eq!(text(&a), text(&b));
    }
}
