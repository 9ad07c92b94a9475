//! What learn writes, family by family: generates the thirteen task families of
//! `compiler::families` (fixes in arguments, decoys, decisions that differ only in arguments,
//! causes in file edits, paraphrased tasks, noise), compiles them, and prints for each family and
//! check how many seeds passed, then what was found where a check failed.
//!
//! `cargo run --release --example learn_quality [-- --seeds 41001..41010 --sessions 60 --noise 60
//! --show FAMILY]` (defaults: the quality test's reserved seeds, 60 sessions per family, 60 noise
//! sessions; `--show` prints the artifacts compiled from one family's sessions).

use engram::compiler::families::{check, generate, Check, QUALITY_SEEDS};
use engram::compiler::trajectories::to_events;
use engram::compiler::{compile, Options};
use std::collections::BTreeMap;
use std::time::Instant;

fn arg(name: &str) -> Option<String> {
    let args: Vec<String> = std::env::args().collect();
    args.iter()
        .position(|a| a == name)
        .and_then(|i| args.get(i + 1).cloned())
}

fn main() {
    let seeds: Vec<u64> = match arg("--seeds") {
        Some(r) => {
            let (a, b) = r.split_once("..").expect("--seeds FROM..TO");
            let (a, b): (u64, u64) = (a.parse().expect("a seed"), b.parse().expect("a seed"));
            (a..=b).collect()
        }
        None => QUALITY_SEEDS.collect(),
    };
    let per_family: usize = arg("--sessions").map_or(60, |s| s.parse().expect("a count"));
    let noise: usize = arg("--noise").map_or(60, |s| s.parse().expect("a count"));

    // (family, check) → (passed, runs); the first failure's detail per check.
    let mut table: BTreeMap<(usize, &'static str, &'static str), (u32, u32)> = BTreeMap::new();
    let mut failures: Vec<(u64, Check)> = Vec::new();
    let mut order: Vec<&'static str> = Vec::new();
    let t = Instant::now();
    let mut artifacts = 0;
    for &seed in &seeds {
        let sessions = generate(seed, per_family, noise);
        let drafts = compile(to_events(&sessions), Options::default()).artifacts;
        artifacts += drafts.len();
        if let Some(show) = arg("--show") {
            for d in drafts
                .iter()
                .filter(|d| engram::compiler::families::family_of(d) == Some(show.as_str()))
            {
                println!(
                    "seed {seed} {} {} ({:.3}): {}",
                    d.artifact_type, d.signature, d.confidence, d.content
                );
            }
        }
        for c in check(&drafts) {
            if !order.contains(&c.family) {
                order.push(c.family);
            }
            let idx = order.iter().position(|f| *f == c.family).unwrap_or(0);
            let e = table.entry((idx, c.family, c.check)).or_default();
            e.1 += 1;
            if c.passed {
                e.0 += 1;
            } else {
                failures.push((seed, c));
            }
        }
    }
    println!(
        "learn quality: seeds {:?}, {per_family} sessions per family, {noise} noise sessions; \
         {artifacts} artifacts in {:.2} s",
        seeds,
        t.elapsed().as_secs_f64()
    );
    println!();
    println!("| family | check | seeds passed |");
    println!("|---|---|---|");
    let (mut passed, mut total) = (0, 0);
    for ((_, family, check), (p, n)) in &table {
        println!("| {family} | {check} | {p}/{n} |");
        passed += p;
        total += n;
    }
    println!("| **all** | | **{passed}/{total}** |");
    if !failures.is_empty() {
        println!();
        println!("failed checks:");
        for (seed, c) in &failures {
            println!("- seed {seed} {} / {}: {}", c.family, c.check, c.detail);
        }
    }
}
