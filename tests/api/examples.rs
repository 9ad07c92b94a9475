//! The user examples in `examples/python/` (an SDK quickstart, the pytest fixture, `wrap()` with
//! a loopback model, faults and the request journal) run here against the binary this suite
//! built, so they cannot rot.

use crate::support::{engram_bin, python};
use std::path::Path;
use std::process::Command;

#[tokio::test]
async fn the_python_examples_pass() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("examples/python");
    let out = tokio::task::spawn_blocking(move || {
        Command::new(python())
            .args(["-m", "pytest", "-q", "-p", "no:cacheprovider"])
            .current_dir(&dir)
            .env("ENGRAM_BIN", engram_bin())
            .env("PYTHONDONTWRITEBYTECODE", "1")
            .env_remove("ENGRAM_BOOTSTRAP_KEY")
            .output()
            .expect("pytest runs")
    })
    .await
    .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "the Python examples failed:\n{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(stdout.contains("5 passed"), "{stdout}");
}
