//! decision_policy: points where sessions of one task diverge — a recorded `decision` with the
//! same question — and which choice led to success how often.
//!
//! Choices are compared by their Laplace-smoothed success rate ((successes + 1) ÷ (runs + 2)),
//! so one lucky run does not beat a long record; ties go to more evidence, then to the name. A
//! policy needs at least two choices with `MIN_PER_CHOICE` runs of known outcome each.

use super::confidence::{round4, score};
use super::normalize::title_case;
use super::{Draft, Evidence, SessionCtx};
use serde_json::json;
use std::collections::BTreeMap;

const MIN_PER_CHOICE: u64 = 2;
const MIN_TOTAL: u64 = 6;

#[derive(Default)]
struct Point {
    /// choice → (runs, successes)
    choices: BTreeMap<String, (u64, u64)>,
    evidence: Evidence,
}

#[derive(Default)]
pub struct Miner {
    points: BTreeMap<(String, String), Point>,
}

fn smoothed(runs: u64, wins: u64) -> f64 {
    (wins as f64 + 1.0) / (runs as f64 + 2.0)
}

impl Miner {
    pub fn add(&mut self, ctx: &SessionCtx<'_>) {
        let s = ctx.session;
        let Some(outcome) = s.outcome else { return };
        let task = s.task.clone().unwrap_or_else(|| "any task".to_string());
        let mut seen = std::collections::BTreeSet::new();
        for d in &s.decisions {
            // One vote per question per session: the first choice made.
            if !seen.insert(d.question.clone()) {
                continue;
            }
            let p = self
                .points
                .entry((task.clone(), d.question.clone()))
                .or_default();
            let c = p.choices.entry(d.choice.clone()).or_default();
            c.0 += 1;
            c.1 += outcome as u64;
            p.evidence
                .add(ctx.at_ms, ctx.touched, [ctx.event_id(d.event)]);
        }
    }

    pub fn finish(&self, newest_ms: i64) -> Vec<Draft> {
        let mut out = Vec::new();
        for ((task, question), p) in &self.points {
            let eligible: Vec<(&String, u64, u64)> = p
                .choices
                .iter()
                .filter(|(_, (runs, _))| *runs >= MIN_PER_CHOICE)
                .map(|(c, (r, w))| (c, *r, *w))
                .collect();
            let total: u64 = eligible.iter().map(|c| c.1).sum();
            if eligible.len() < 2 || total < MIN_TOTAL {
                continue;
            }
            let mut ranked = eligible;
            ranked.sort_by(|a, b| {
                smoothed(b.1, b.2)
                    .total_cmp(&smoothed(a.1, a.2))
                    .then_with(|| b.1.cmp(&a.1))
                    .then_with(|| a.0.cmp(b.0))
            });
            let best = ranked[0];
            let second = ranked[1];
            let gap = smoothed(best.1, best.2) - smoothed(second.1, second.2);
            // A clear winner is a consistent policy; a coin toss is not.
            let consistency = (0.4 + 2.0 * gap).min(1.0) * smoothed(best.1, best.2);
            let actions: Vec<_> = ranked
                .iter()
                .map(|(c, r, w)| {
                    json!({"action": c, "successRate": round4(*w as f64 / *r as f64), "evidence": r})
                })
                .collect();
            let content = json!({
                "task": task,
                "question": question,
                "condition": format!("when doing '{task}' and deciding {question}"),
                "actions": actions,
                "recommendation": best.0,
            });
            out.push(Draft {
                artifact_type: "decision_policy",
                signature: format!("{task} | {question}"),
                title: format!("{}: {}", title_case(task), question),
                content,
                confidence: score(total, consistency, newest_ms - p.evidence.last_ms),
                evidence_count: total,
                source_events: p.evidence.sources(),
                touched: p.evidence.touched,
            });
        }
        out
    }
}
