//! Test harness: a real engram server, in-process on 127.0.0.1:0 with a temp data dir
//! (`TestServer`), or the real binary as a child process (`ChildServer`) for restart and kill
//! tests. Helpers wait on conditions with deadlines, never fixed sleeps.

#![allow(dead_code)]

use engram::config::Config;
use reqwest::{Method, RequestBuilder, Response};
use serde_json::Value;
use std::future::Future;
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tempfile::TempDir;

pub fn client() -> reqwest::Client {
    reqwest::Client::builder()
        .timeout(Duration::from_secs(60))
        .build()
        .expect("http client")
}

/// A server running in this process.
pub struct TestServer {
    pub running: Option<engram::Running>,
    pub dir: Arc<TempDir>,
    /// The bootstrap admin key (OWNER, every permission).
    pub key: String,
    pub base: String,
    pub http: reqwest::Client,
}

impl TestServer {
    pub async fn start() -> TestServer {
        Self::start_with(|_| {}).await
    }

    /// Starts with a config adjusted by `f` (data dir and port are set by the harness).
    pub async fn start_with(f: impl FnOnce(&mut Config)) -> TestServer {
        let dir = Arc::new(tempfile::tempdir().expect("temp dir"));
        Self::start_in(dir, f).await
    }

    /// Starts on an existing data dir (restart tests); `key` is empty unless this start
    /// bootstrapped the database.
    pub async fn start_in(dir: Arc<TempDir>, f: impl FnOnce(&mut Config)) -> TestServer {
        let mut cfg = Config::for_data_dir(dir.path());
        cfg.database = test_database_of(dir.path()).await;
        f(&mut cfg);
        let running = engram::start(cfg).await.expect("server starts");
        // A PostgreSQL node that must rebuild its index does so after it starts serving
        // (progress in /v1/health); tests begin once it follows the feed.
        running.state.search.flush().await;
        let base = running.base_url();
        TestServer {
            key: running.bootstrap_key.clone().unwrap_or_default(),
            running: Some(running),
            dir,
            base,
            http: client(),
        }
    }

    /// Starts with the server's clock moved forward to `at` (RFC 3339): quota periods and rate
    /// windows then follow it, so a test never races the wall clock's month or minute.
    pub async fn start_at(at: &str) -> TestServer {
        let t = engram::time::parse(at).expect("an RFC 3339 time");
        Self::start_with(|c| c.clock.set(t).expect("a time in the future")).await
    }

    /// The server's clock (`engram::time::Clock`); moving it moves quota periods and rate windows.
    pub fn clock(&self) -> &engram::time::Clock {
        &self.state().config.clock
    }

    pub fn state(&self) -> &engram::app::AppState {
        &self.running.as_ref().expect("running").state
    }

    pub fn data_dir(&self) -> &Path {
        self.dir.path()
    }

    pub fn url(&self, path: &str) -> String {
        format!("{}{}", self.base, path)
    }

    /// A request with the admin key.
    pub fn req(&self, method: Method, path: &str) -> RequestBuilder {
        self.http
            .request(method, self.url(path))
            .bearer_auth(&self.key)
    }

    /// A request with another key.
    pub fn req_as(&self, key: &str, method: Method, path: &str) -> RequestBuilder {
        self.http.request(method, self.url(path)).bearer_auth(key)
    }

    pub async fn get(&self, path: &str) -> (u16, Value) {
        send(self.req(Method::GET, path)).await
    }

    pub async fn post(&self, path: &str, body: Value) -> (u16, Value) {
        send(self.req(Method::POST, path).json(&body)).await
    }

    pub async fn delete(&self, path: &str) -> (u16, Value) {
        send(self.req(Method::DELETE, path)).await
    }

    /// Creates a key through the API with the given scopes (empty = role permissions).
    pub async fn create_key(&self, scopes: &[&str]) -> String {
        let (status, body) = self
            .post(
                "/v1/api-keys",
                serde_json::json!({"name": "test", "scopes": scopes}),
            )
            .await;
        assert_eq!(status, 201, "{body}");
        body["data"]["key"].as_str().expect("key").to_string()
    }

    /// Creates a second tenant directly in the database; returns its admin key.
    pub async fn create_tenant(&self, name: &str, plan: engram::plans::Plan) -> String {
        let name = name.to_string();
        let created = self
            .state()
            .db
            .write(move |c| {
                engram::store::tenants::create_with_owner(c, &name, plan, "owner@example.com", None)
            })
            .await
            .expect("tenant created");
        created.key
    }

    pub async fn shutdown(mut self) -> Arc<TempDir> {
        if let Some(r) = self.running.take() {
            r.shutdown().await;
        }
        self.dir.clone()
    }
}

/// Sends a request; returns the status and the JSON body (`Null` when not JSON).
pub async fn send(rb: RequestBuilder) -> (u16, Value) {
    let resp = rb.send().await.expect("request sent");
    json_of(resp).await
}

pub async fn json_of(resp: Response) -> (u16, Value) {
    let status = resp.status().as_u16();
    let bytes = resp.bytes().await.expect("body read");
    (
        status,
        serde_json::from_slice(&bytes).unwrap_or(Value::Null),
    )
}

/// Polls `cond` until it returns `Some` or the deadline passes (then panics with `what`).
pub async fn wait_for<T, F, Fut>(what: &str, timeout: Duration, mut cond: F) -> T
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Option<T>>,
{
    let deadline = Instant::now() + timeout;
    let mut delay = Duration::from_millis(5);
    loop {
        if let Some(v) = cond().await {
            return v;
        }
        if Instant::now() >= deadline {
            panic!("timed out after {timeout:?} waiting for {what}");
        }
        tokio::time::sleep(delay).await;
        delay = (delay * 2).min(Duration::from_millis(100));
    }
}

/// The `engram` binary built for these tests.
pub fn engram_bin() -> PathBuf {
    PathBuf::from(env!("CARGO_BIN_EXE_engram"))
}

/// Runs an `engram` CLI command; returns (success, stdout, stderr).
pub fn run_cli(args: &[&str]) -> (bool, String, String) {
    run_cli_env(args, &[])
}

/// `run_cli` with extra environment variables.
pub fn run_cli_env(args: &[&str], env: &[(&str, &str)]) -> (bool, String, String) {
    let mut cmd = Command::new(engram_bin());
    // On PostgreSQL, a command on a test data dir runs on that dir's database.
    if let Some(dir) = args
        .iter()
        .position(|a| *a == "--data-dir")
        .and_then(|i| args.get(i + 1))
    {
        if let Some(url) = test_database_blocking(Path::new(dir)) {
            cmd.env("ENGRAM_DATABASE_URL", url);
        }
    }
    let out = cmd
        .args(args)
        .env_remove("ENGRAM_BOOTSTRAP_KEY")
        .envs(env.iter().copied())
        .output()
        .expect("engram runs");
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// The real binary as a child process.
pub struct ChildServer {
    pub child: Child,
    pub base: String,
    /// Every stderr line so far.
    pub stderr: Arc<Mutex<Vec<String>>>,
}

impl ChildServer {
    /// Starts `engram serve` on `data_dir` (port chosen by the OS) with extra env vars.
    pub fn start(data_dir: &Path, env: &[(&str, &str)]) -> ChildServer {
        let mut cmd = Command::new(engram_bin());
        cmd.args(["serve", "--listen", "127.0.0.1:0", "--data-dir"])
            .arg(data_dir)
            .env_remove("ENGRAM_BOOTSTRAP_KEY")
            .env("ENGRAM_LOG", "info")
            .stdout(Stdio::null())
            .stderr(Stdio::piped());
        if let Some(url) = test_database_blocking(data_dir) {
            cmd.env("ENGRAM_DATABASE_URL", url);
        }
        for (k, v) in env {
            cmd.env(k, v);
        }
        let mut child = cmd.spawn().expect("engram starts");
        let stderr = child.stderr.take().expect("stderr");
        let lines = Arc::new(Mutex::new(Vec::new()));
        let (tx, rx) = std::sync::mpsc::channel();
        {
            let lines = lines.clone();
            std::thread::spawn(move || {
                for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                    if let Some(addr) = line.strip_prefix("engram listening on ") {
                        let _ = tx.send(addr.trim().to_string());
                    }
                    lines.lock().unwrap().push(line);
                }
            });
        }
        let base = match rx.recv_timeout(Duration::from_secs(60)) {
            Ok(b) => b,
            Err(_) => {
                let _ = child.kill();
                panic!(
                    "engram did not start; stderr:\n{}",
                    lines.lock().unwrap().join("\n")
                );
            }
        };
        ChildServer {
            child,
            base,
            stderr: lines,
        }
    }

    pub fn url(&self, path: &str) -> String {
        format!("{}{}", self.base, path)
    }

    pub fn stderr_text(&self) -> String {
        self.stderr.lock().unwrap().join("\n")
    }

    /// SIGKILL: no chance to clean up.
    pub fn kill(mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// SIGTERM and wait for a clean exit; returns whether it exited successfully.
    pub fn terminate(mut self) -> bool {
        let _ = Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status();
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            if let Ok(Some(status)) = self.child.try_wait() {
                return status.success();
            }
            if Instant::now() > deadline {
                let _ = self.child.kill();
                return false;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for ChildServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The admin key printed in a first-start banner.
pub fn banner_key(stderr: &str) -> Option<String> {
    stderr
        .lines()
        .map(str::trim)
        .find(|l| (l.starts_with("hk_") || l.starts_with("hx_")) && !l.contains(' '))
        .map(str::to_string)
}

/// The Python interpreter of the test virtualenv (pinned `hippocortex` and `mcp` packages):
/// `ENGRAM_TEST_PYTHON`, else `target/pyenv/bin/python` (created by `scripts/test.sh`).
pub fn python() -> PathBuf {
    if let Some(p) = std::env::var_os("ENGRAM_TEST_PYTHON") {
        return PathBuf::from(p);
    }
    let p = Path::new(env!("CARGO_MANIFEST_DIR")).join("target/pyenv/bin/python");
    assert!(
        p.exists(),
        "the Python test environment is missing: run ./scripts/test.sh (it creates target/pyenv)"
    );
    p
}

/// Runs `tests/python/<script>` with the test interpreter and `env`; panics with its output
/// unless it exits 0. Returns its stdout.
pub fn run_python(script: &str, env: &[(&str, &str)]) -> String {
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/python")
        .join(script);
    let mut cmd = Command::new(python());
    cmd.arg(&path);
    for (k, v) in env {
        cmd.env(k, v);
    }
    let out = cmd.output().expect("python runs");
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        out.status.success(),
        "{script} failed ({}):\nstdout:\n{stdout}\nstderr:\n{}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    stdout
}

/// A new, empty database in the test PostgreSQL cluster: its URL. The cluster is
/// `ENGRAM_TEST_DATABASE_URL`, which `scripts/test.sh` starts on loopback
/// (`scripts/pg_cluster.sh`); the databases go with the cluster at the next start.
pub async fn postgres_database() -> String {
    static NEXT: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
    let base = std::env::var("ENGRAM_TEST_DATABASE_URL").unwrap_or_else(|_| {
        panic!(
            "ENGRAM_TEST_DATABASE_URL is not set: run ./scripts/test.sh (it starts a throwaway \
             PostgreSQL cluster), or point it at a cluster where the user may create databases"
        )
    });
    let name = format!(
        "engram_test_{}_{}",
        std::process::id(),
        NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed)
    );
    postgres_client(&base)
        .await
        .batch_execute(&format!("CREATE DATABASE {name}"))
        .await
        .expect("test database created");
    let mut url = url::Url::parse(&base).expect("ENGRAM_TEST_DATABASE_URL is a URL");
    url.set_path(&name);
    url.to_string()
}

/// A client of the PostgreSQL database at `url`.
pub async fn postgres_client(url: &str) -> tokio_postgres::Client {
    let (client, connection) = tokio_postgres::connect(url, tokio_postgres::NoTls)
        .await
        .unwrap_or_else(|e| panic!("cannot connect to the test PostgreSQL at {url}: {e}"));
    tokio::spawn(connection);
    client
}

/// Whether the suite runs against PostgreSQL (`ENGRAM_TEST_BACKEND=postgres`, as the second pass
/// of `scripts/test.sh` does) instead of each data dir's SQLite file.
pub fn on_postgres() -> bool {
    std::env::var("ENGRAM_TEST_BACKEND").is_ok_and(|b| b == "postgres")
}

/// On PostgreSQL, the database of a test data dir: a new one the first time, the same one when
/// the data dir is started again (its URL is kept in the dir). `None` on SQLite, and for a data
/// dir that does not exist.
pub async fn test_database_of(dir: &Path) -> Option<String> {
    if !on_postgres() {
        return None;
    }
    let marker = dir.join("test-database-url");
    if let Ok(url) = std::fs::read_to_string(&marker) {
        return Some(url);
    }
    if !dir.is_dir() {
        // A missing data dir stays missing (commands on it are refused as on SQLite).
        return None;
    }
    let url = postgres_database().await;
    std::fs::write(&marker, &url).expect("database URL kept in the data dir");
    Some(url)
}

/// `test_database_of` for plain code (a thread of its own runs it).
pub fn test_database_blocking(dir: &Path) -> Option<String> {
    if !on_postgres() {
        return None;
    }
    let dir = dir.to_path_buf();
    std::thread::spawn(move || {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("a runtime")
            .block_on(test_database_of(&dir))
    })
    .join()
    .expect("test database")
}
