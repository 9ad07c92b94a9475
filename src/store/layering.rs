//! Checks of the layers' boundaries (docs/architecture.md, "Layers"), run as unit tests: no file
//! outside `src/store/` holds SQL or names rusqlite, no file in it imports a layer above it, and
//! the runtime, search, jobs, capture and the compiler return values (they never import `api` or
//! `http`, which render them). Test modules (from `#[cfg(test)]` to the end of a file) are not checked: a test may
//! build its input with the layers above.

use std::path::{Path, PathBuf};

/// The layers `store` must not import.
const ABOVE: &[&str] = &[
    "api", "capture", "jobs", "search", "runtime", "limits", "auth", "server", "router", "http",
    "app", "fixture", "transfer", "catalog", "vault",
];

/// The layers below `api` that must not import `api` or `http`.
const RETURN_VALUES: &[&str] = &["runtime", "search", "jobs", "capture", "compiler"];

fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) {
    for entry in std::fs::read_dir(dir).expect("readable source dir") {
        let path = entry.expect("dir entry").path();
        if path.is_dir() {
            rust_files(&path, out);
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(path);
        }
    }
}

/// The file's code before its test module.
fn production_code(path: &Path) -> String {
    let text = std::fs::read_to_string(path).expect("readable source file");
    match text.find("#[cfg(test)]") {
        Some(i) => text[..i].to_string(),
        None => text,
    }
}

fn src() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("src")
}

/// SQL in a string literal: a statement keyword right after an unescaped opening quote.
fn sql_literal() -> regex::Regex {
    regex::Regex::new(
        r#"(^|[^\\])"\s*(SELECT|INSERT|UPDATE|DELETE|REPLACE|CREATE|DROP|ALTER|BEGIN|COMMIT|ROLLBACK|SAVEPOINT|RELEASE|PRAGMA|VACUUM|WITH)\s"#,
    )
    .expect("valid regex")
}

/// Every violation of the boundary in the tree at `root` (its `src` dir).
fn violations(root: &Path) -> Vec<String> {
    let mut files = Vec::new();
    rust_files(root, &mut files);
    files.sort();
    let sql = sql_literal();
    let above = regex::Regex::new(&format!(r"crate::({})\b", ABOVE.join("|"))).expect("regex");
    let rendering = regex::Regex::new(r"crate::(api|http)\b").expect("regex");
    let store = root.join("store");
    let mut out = Vec::new();
    for path in files {
        let code = production_code(&path);
        let name = path
            .strip_prefix(root)
            .unwrap_or(&path)
            .display()
            .to_string();
        for (n, line) in code.lines().enumerate() {
            let line_no = n + 1;
            if line.trim_start().starts_with("//") {
                continue;
            }
            let below_api = RETURN_VALUES.iter().any(|d| path.starts_with(root.join(d)));
            if below_api {
                if let Some(m) = rendering.find(line) {
                    out.push(format!("src/{name}:{line_no}: imports `{}`", m.as_str()));
                }
            }
            if path.starts_with(&store) {
                if let Some(m) = above.find(line) {
                    out.push(format!(
                        "src/{name}:{line_no}: store imports `{}`",
                        m.as_str()
                    ));
                }
            } else {
                if sql.is_match(line) {
                    out.push(format!("src/{name}:{line_no}: SQL outside src/store/"));
                }
                if line.contains("rusqlite") {
                    out.push(format!("src/{name}:{line_no}: rusqlite outside src/store/"));
                }
                if line.contains(".sqlite()") {
                    out.push(format!(
                        "src/{name}:{line_no}: the raw connection outside src/store/"
                    ));
                }
            }
        }
    }
    out
}

#[test]
fn only_store_speaks_sql_and_store_imports_nothing_above_it() {
    let found = violations(&src());
    assert!(found.is_empty(), "layer violations:\n{}", found.join("\n"));
}

/// The check itself finds each kind of violation (it would otherwise pass on any tree).
#[test]
fn the_check_finds_planted_violations() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path();
    std::fs::create_dir_all(root.join("store")).unwrap();
    std::fs::create_dir_all(root.join("jobs")).unwrap();
    std::fs::create_dir_all(root.join("runtime")).unwrap();
    std::fs::write(
        root.join("runtime/invoke.rs"),
        "use crate::http::Reply;\nuse crate::store::Db;\n",
    )
    .unwrap();
    std::fs::write(
        root.join("jobs/queue.rs"),
        "fn f(c: &rusqlite::Connection) {\n    c.execute(\"UPDATE jobs SET status = 'x'\", []);\n}\n\
         // \"SELECT in a comment\" is fine\n\
         fn g() { let cmd = \"psql -c \\\"SELECT 1\\\"\"; }\n",
    )
    .unwrap();
    std::fs::write(
        root.join("store/events.rs"),
        "use crate::capture::salience;\nuse crate::error::Result;\n\
         #[cfg(test)]\nmod tests { use crate::api::x; }\n",
    )
    .unwrap();
    let found = violations(root);
    assert_eq!(
        found,
        vec![
            "src/jobs/queue.rs:1: rusqlite outside src/store/".to_string(),
            "src/jobs/queue.rs:2: SQL outside src/store/".to_string(),
            "src/runtime/invoke.rs:1: imports `crate::http`".to_string(),
            "src/store/events.rs:1: store imports `crate::capture`".to_string(),
        ]
    );
}
