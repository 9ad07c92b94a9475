//! The user examples in `examples/python/` (an SDK quickstart, the pytest fixture, `wrap()` with
//! a loopback model, faults and the request journal) run here against the binary this suite
//! built, so they cannot rot; the quickstart also runs as the script a user starts by hand.

use crate::support::{engram_bin, python, TestServer};
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::Duration;

fn examples_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("examples/python")
}

/// Runs the test interpreter in `examples/python/` with `args` and `env`, off the async runtime
/// (a server of this process answers meanwhile).
async fn run_python(args: &[&str], env: Vec<(&'static str, String)>) -> Output {
    let args: Vec<String> = args.iter().map(|a| a.to_string()).collect();
    tokio::task::spawn_blocking(move || {
        Command::new(python())
            .args(&args)
            .current_dir(examples_dir())
            .env_remove("ENGRAM_BOOTSTRAP_KEY")
            .env_remove("ENGRAM_KEY")
            .envs(env)
            .env("PYTHONDONTWRITEBYTECODE", "1")
            .output()
            .expect("python runs")
    })
    .await
    .unwrap()
}

/// The process's output for a failure message.
fn shown(out: &Output) -> String {
    format!(
        "{}\nstdout:\n{}\nstderr:\n{}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

#[tokio::test]
async fn the_python_examples_pass() {
    let out = run_python(
        &["-m", "pytest", "-q", "-p", "no:cacheprovider"],
        vec![("ENGRAM_BIN", engram_bin().display().to_string())],
    )
    .await;
    assert!(
        out.status.success(),
        "the Python examples failed: {}",
        shown(&out)
    );
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(stdout.contains("5 passed"), "{stdout}");
}

/// `ENGRAM_URL=… ENGRAM_KEY=… python quickstart.py`, as its docstring says, against a live
/// server: it captures, learns (the server waits for the compile, as the pytest fixture's does)
/// and prints the pack, whose procedure has the deploy's steps in order.
#[tokio::test]
async fn the_quickstart_runs_as_a_script() {
    let srv = TestServer::start_with(|c| {
        c.learn_wait = Duration::from_secs(30);
        c.auto_learn_every = 0;
    })
    .await;
    let out = run_python(
        &["quickstart.py"],
        vec![
            ("ENGRAM_URL", srv.base.clone()),
            ("ENGRAM_KEY", srv.key.clone()),
        ],
    )
    .await;
    assert!(
        out.status.success(),
        "quickstart.py failed: {}",
        shown(&out)
    );
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        stdout
            .lines()
            .any(|l| l.starts_with("learn ") && l.ends_with(": completed")),
        "{stdout}"
    );
    // An entry prints as `[section] content`, its content over several lines.
    let start = stdout
        .find("[procedures]")
        .unwrap_or_else(|| panic!("no procedure printed:\n{stdout}"));
    let procedure = stdout[start..].split("\n[").next().unwrap_or_default();
    let (make, apply) = (procedure.find("make test"), procedure.find("kubectl apply"));
    assert!(
        make.is_some() && apply.is_some() && make < apply,
        "{procedure}"
    );
    // Without ENGRAM_KEY the script stops at once, saying what to set.
    let out = run_python(&["quickstart.py"], vec![("ENGRAM_URL", srv.base.clone())]).await;
    assert!(!out.status.success());
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("set ENGRAM_KEY to an engram API key"),
        "{}",
        shown(&out)
    );
    srv.shutdown().await;
}
