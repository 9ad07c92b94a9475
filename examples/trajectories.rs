//! Prints generated agent sessions (with planted ground truth, see
//! `engram::compiler::trajectories`) as `POST /v1/capture/batch` bodies, one JSON object per line
//! and at most 1000 events each — ready to pipe into curl:
//!
//! `cargo run --example trajectories -- 40 | while read -r b; do curl -s -H "Authorization: Bearer $KEY" -H 'Content-Type: application/json' -d "$b" http://127.0.0.1:8080/v1/capture/batch; done`
//!
//! Arguments: number of sessions per family (default 20), seed (default 7).

use engram::compiler::trajectories::{capture_items, generate, Spec};
use serde_json::json;

fn main() {
    let mut args = std::env::args().skip(1);
    let per: usize = args.next().and_then(|a| a.parse().ok()).unwrap_or(20);
    let seed: u64 = args.next().and_then(|a| a.parse().ok()).unwrap_or(7);
    let spec = Spec {
        seed,
        deploy: per,
        migrate: per,
        release: per,
        noise: per,
        prefix: format!("gen{seed}"),
    };
    let items: Vec<_> = generate(&spec).iter().flat_map(capture_items).collect();
    for chunk in items.chunks(1000) {
        println!("{}", json!({ "events": chunk }));
    }
}
