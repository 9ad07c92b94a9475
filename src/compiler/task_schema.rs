//! task_schema: sessions with the same task signature → the ordered steps their successful runs
//! have in common, with preconditions, postconditions and variations.
//!
//! A step belongs to the schema when it occurs in at least half of the successful runs; steps are
//! ordered by their mean relative position (first occurrence ÷ run length), ties by name. Steps
//! seen in 20–50% of successful runs are variations. Needs at least `MIN_SUCCESSES` successful
//! runs. Positions are summed as integers (parts per million) so the result does not depend on
//! the order sessions arrive in.

use super::confidence::{round4, score};
use super::normalize::title_case;
use super::{Draft, Evidence, SessionCtx};
use serde_json::json;
use std::collections::BTreeMap;

const MIN_SUCCESSES: u64 = 3;
const STEP_SHARE: f64 = 0.5;
const VARIATION_SHARE: f64 = 0.2;

#[derive(Default)]
struct Task {
    runs: u64,
    successes: u64,
    /// action → (successful runs containing it, sum of relative positions in ppm)
    steps: BTreeMap<String, (u64, u64)>,
    pre: BTreeMap<String, u64>,
    post: BTreeMap<String, u64>,
    evidence: Evidence,
}

#[derive(Default)]
pub struct Miner {
    tasks: BTreeMap<String, Task>,
}

fn frequent(map: &BTreeMap<String, u64>, n: u64, share: f64) -> Vec<String> {
    map.iter()
        .filter(|(_, c)| (**c as f64) >= share * n as f64)
        .map(|(k, _)| k.clone())
        .collect()
}

impl Miner {
    pub fn add(&mut self, ctx: &SessionCtx<'_>) {
        let s = ctx.session;
        let Some(task) = &s.task else { return };
        if s.steps.is_empty() {
            return;
        }
        let t = self.tasks.entry(task.clone()).or_default();
        t.runs += 1;
        if s.outcome != Some(true) {
            return;
        }
        t.successes += 1;
        let actions = s.distinct_actions();
        let len = actions.len().max(1) as u64;
        for (i, a) in actions.iter().enumerate() {
            let e = t.steps.entry((*a).to_string()).or_default();
            e.0 += 1;
            e.1 += (i as u64 * 1_000_000) / len;
        }
        for c in dedup(&s.preconditions) {
            *t.pre.entry(c).or_default() += 1;
        }
        for c in dedup(&s.postconditions) {
            *t.post.entry(c).or_default() += 1;
        }
        let ids = s.steps.iter().map(|st| ctx.event_id(st.event));
        t.evidence.add(ctx.at_ms, ctx.touched, ids);
    }

    pub fn finish(&self, newest_ms: i64) -> Vec<Draft> {
        let mut out = Vec::new();
        for (sig, t) in &self.tasks {
            if t.successes < MIN_SUCCESSES {
                continue;
            }
            let n = t.successes as f64;
            let mut steps: Vec<(&String, u64, u64)> = t
                .steps
                .iter()
                .filter(|(_, (c, _))| *c as f64 >= STEP_SHARE * n)
                .map(|(a, (c, pos))| (a, *c, pos / c))
                .collect();
            if steps.is_empty() {
                continue;
            }
            steps.sort_by(|a, b| a.2.cmp(&b.2).then_with(|| a.0.cmp(b.0)));
            let variations: Vec<_> = t
                .steps
                .iter()
                .filter(|(_, (c, _))| {
                    let share = *c as f64 / n;
                    (VARIATION_SHARE..STEP_SHARE).contains(&share)
                })
                .map(|(a, (c, _))| json!({"action": a, "frequency": round4(*c as f64 / n)}))
                .collect();
            // Consistency: how often runs succeed and how fully they follow the schema.
            let coverage = steps.iter().map(|s| s.1 as f64 / n).sum::<f64>() / steps.len() as f64;
            let success_rate = t.successes as f64 / t.runs as f64;
            let consistency = coverage * (0.5 + 0.5 * success_rate);
            let content = json!({
                "task": sig,
                "steps": steps.iter().map(|s| s.0).collect::<Vec<_>>(),
                "preconditions": frequent(&t.pre, t.successes, STEP_SHARE),
                "postconditions": frequent(&t.post, t.successes, STEP_SHARE),
                "variations": variations,
                "successRate": round4(success_rate),
                "runs": t.runs,
            });
            out.push(Draft {
                artifact_type: "task_schema",
                signature: sig.clone(),
                title: title_case(sig),
                content,
                confidence: score(t.successes, consistency, newest_ms - t.evidence.last_ms),
                evidence_count: t.successes,
                source_events: t.evidence.sources(),
                touched: t.evidence.touched,
            });
        }
        out
    }
}

fn dedup(v: &[String]) -> Vec<String> {
    let mut out: Vec<String> = v.to_vec();
    out.sort();
    out.dedup();
    out
}
