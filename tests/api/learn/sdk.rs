//! The pinned official SDK: learn, list_artifacts, get_artifact.

use super::*;
use crate::support::*;
use engram::compiler::trajectories::{generate, Spec};
use serde_json::Value;

#[tokio::test]
async fn official_sdk_learns_lists_and_gets_artifacts() {
    let srv = server().await;
    capture(
        &srv,
        &srv.key,
        &generate(&Spec {
            deploy: 12,
            migrate: 0,
            release: 10,
            noise: 3,
            ..Spec::default()
        }),
    )
    .await;
    let base = format!("{}/v1", srv.base);
    let key = srv.key.clone();
    let out = tokio::task::spawn_blocking(move || {
        run_python(
            "sdk_learn.py",
            &[("ENGRAM_URL", &base), ("ENGRAM_KEY", &key)],
        )
    });
    let out = out.await.unwrap();
    let v: Value = serde_json::from_str(out.trim().lines().last().unwrap()).expect("json line");
    assert!(v["artifacts"].as_u64().unwrap() >= 2, "{v}");
    assert_eq!(v["got_same"], true, "{v}");
    assert_eq!(v["types_ok"], true, "{v}");
}
