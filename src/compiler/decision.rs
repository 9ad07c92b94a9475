//! decision_policy: points where sessions of one task diverge, and which choice led to success
//! how often. A divergence is either explicit — `decision` events with the same question — or
//! implicit: two actions of one task that never occur in the same run, sit at about the same
//! place in the runs (mean relative position within `FORK_POSITION`), and together cover at
//! least `FORK_COVERAGE` of the task's runs (nearly every run took one branch or the other).
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

const FORK_POSITION: u64 = 200_000; // ppm of a run's length
const FORK_COVERAGE: f64 = 0.8;
const FORK_MIN_RUNS: u64 = 3;

/// An action within a task: (runs, successes, sum of relative positions in ppm, evidence).
type ActionStats = (u64, u64, u64, Evidence);

#[derive(Default)]
struct TaskActions {
    runs: u64,
    actions: BTreeMap<String, ActionStats>,
    /// (a, b) with a < b → runs containing both
    together: BTreeMap<(String, String), u64>,
}

#[derive(Default)]
pub struct Miner {
    points: BTreeMap<(String, String), Point>,
    tasks: BTreeMap<String, TaskActions>,
}

fn smoothed(runs: u64, wins: u64) -> f64 {
    (wins as f64 + 1.0) / (runs as f64 + 2.0)
}

impl Miner {
    pub fn add(&mut self, ctx: &SessionCtx<'_>) {
        let s = ctx.session;
        let Some(outcome) = s.outcome else { return };
        let task = s.task.clone().unwrap_or_else(|| "any task".to_string());
        if s.task.is_some() {
            let t = self.tasks.entry(task.clone()).or_default();
            t.runs += 1;
            let actions = s.distinct_actions();
            let len = actions.len().max(1) as u64;
            for (i, a) in actions.iter().enumerate() {
                let e = t.actions.entry((*a).to_string()).or_default();
                e.0 += 1;
                e.1 += outcome as u64;
                e.2 += (i as u64 * 1_000_000) / len;
                let first = s.steps.iter().find(|st| st.action == *a).map(|st| st.event);
                e.3.add(ctx.at_ms, ctx.touched, first.map(|i| ctx.event_id(i)));
            }
            for (i, a) in actions.iter().enumerate() {
                for b in &actions[i + 1..] {
                    let key = if a < b { (a, b) } else { (b, a) };
                    *t.together
                        .entry((key.0.to_string(), key.1.to_string()))
                        .or_default() += 1;
                }
            }
        }
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

    /// Implicit forks: (task, a, b) with a < b, per the module's rules.
    fn forks(&self) -> Vec<(&String, &String, &String)> {
        let mut out = Vec::new();
        for (task, t) in &self.tasks {
            let cands: Vec<(&String, &ActionStats)> = t
                .actions
                .iter()
                .filter(|(_, v)| v.0 >= FORK_MIN_RUNS && v.0 < t.runs)
                .collect();
            for (i, (a, va)) in cands.iter().enumerate() {
                for (b, vb) in &cands[i + 1..] {
                    let apart = !t.together.contains_key(&((*a).clone(), (*b).clone()));
                    let (pa, pb) = (va.2 / va.0, vb.2 / vb.0);
                    let close = pa.abs_diff(pb) <= FORK_POSITION;
                    let covered = (va.0 + vb.0) as f64 >= FORK_COVERAGE * t.runs as f64;
                    if apart && close && covered {
                        out.push((task, *a, *b));
                    }
                }
            }
        }
        out
    }

    pub fn finish(&self, newest_ms: i64) -> Vec<Draft> {
        let mut out = Vec::new();
        for (task, a, b) in self.forks() {
            let t = &self.tasks[task];
            let (va, vb) = (&t.actions[a], &t.actions[b]);
            let mut evidence = va.3.clone();
            for e in &vb.3.events {
                evidence.add(vb.3.last_ms, vb.3.touched, [e.clone()]);
            }
            evidence.count = va.0 + vb.0;
            let question = format!("{a} or {b}");
            let choices = [(a, va.0, va.1), (b, vb.0, vb.1)];
            out.extend(self.policy(task, &question, &choices, &evidence, newest_ms));
        }
        for ((task, question), p) in &self.points {
            let choices: Vec<(&String, u64, u64)> =
                p.choices.iter().map(|(c, (r, w))| (c, *r, *w)).collect();
            out.extend(self.policy(task, question, &choices, &p.evidence, newest_ms));
        }
        out
    }

    /// A policy from choices (name, runs, successes), if the evidence is sufficient.
    fn policy(
        &self,
        task: &str,
        question: &str,
        choices: &[(&String, u64, u64)],
        evidence: &Evidence,
        newest_ms: i64,
    ) -> Option<Draft> {
        let mut ranked: Vec<(&String, u64, u64)> = choices
            .iter()
            .filter(|(_, runs, _)| *runs >= MIN_PER_CHOICE)
            .copied()
            .collect();
        let total: u64 = ranked.iter().map(|c| c.1).sum();
        if ranked.len() < 2 || total < MIN_TOTAL {
            return None;
        }
        ranked.sort_by(|a, b| {
            smoothed(b.1, b.2)
                .total_cmp(&smoothed(a.1, a.2))
                .then_with(|| b.1.cmp(&a.1))
                .then_with(|| a.0.cmp(b.0))
        });
        let (best, second) = (ranked[0], ranked[1]);
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
        Some(Draft {
            artifact_type: "decision_policy",
            signature: format!("{task} | {question}"),
            title: format!("{}: {}", title_case(task), question),
            content,
            confidence: score(total, consistency, newest_ms - evidence.last_ms),
            evidence_count: total,
            source_events: evidence.sources(),
            touched: evidence.touched,
        })
    }
}
