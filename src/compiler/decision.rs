//! decision_policy: points where sessions of one task diverge, and which choice led to success
//! how often. A divergence is either explicit — `decision` events with the same question — or
//! implicit: two actions of one task that never occur in the same run, sit at about the same
//! place in the runs (mean relative position within `FORK_POSITION`), and together cover at
//! least `FORK_COVERAGE` of the task's runs (nearly every run took one branch or the other).
//!
//! Actions and choices are counted by their verbatim text and grouped at finish
//! (`variants::Resolver`): options that differ only in their arguments but end differently are
//! different options, and every option and the recommendation are shown verbatim.
//!
//! Choices are compared by their Laplace-smoothed success rate ((successes + 1) ÷ (runs + 2)),
//! so one lucky run does not beat a long record; ties go to more evidence, then to the name. A
//! policy needs at least two choices with `MIN_PER_CHOICE` runs of known outcome each.

use super::confidence::{round4, score};
use super::normalize::title_case;
use super::variants::Resolver;
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

/// A task's actions by key, and co-occurrence counts of key pairs.
type Grouped<'a> = (
    BTreeMap<&'a str, ActionStats>,
    BTreeMap<(&'a str, &'a str), u64>,
);

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
            let steps = s.distinct_texts(false);
            let len = steps.len().max(1) as u64;
            for (i, st) in steps.iter().enumerate() {
                let e = t.actions.entry(st.text.clone()).or_default();
                e.0 += 1;
                e.1 += outcome as u64;
                e.2 += (i as u64 * 1_000_000) / len;
                e.3.add(ctx.at_ms, ctx.touched, [ctx.event_id(st.event)]);
            }
            for (i, a) in steps.iter().enumerate() {
                for b in &steps[i + 1..] {
                    let (a, b) = (&a.text, &b.text);
                    let key = if a < b { (a, b) } else { (b, a) };
                    *t.together
                        .entry((key.0.clone(), key.1.clone()))
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
            let c = p.choices.entry(d.choice_text.clone()).or_default();
            c.0 += 1;
            c.1 += outcome as u64;
            p.evidence
                .add(ctx.at_ms, ctx.touched, [ctx.event_id(d.event)]);
        }
    }

    /// Folds aliased tasks into their group's task (`task_schema::Miner::aliases`).
    pub fn merge_tasks(&mut self, aliases: &BTreeMap<String, String>) {
        for (from, to) in aliases {
            if let Some(t) = self.tasks.remove(from) {
                let into = self.tasks.entry(to.clone()).or_default();
                into.runs += t.runs;
                for (k, v) in t.actions {
                    let e = into.actions.entry(k).or_default();
                    e.0 += v.0;
                    e.1 += v.1;
                    e.2 += v.2;
                    e.3.absorb(&v.3);
                }
                for (k, n) in t.together {
                    *into.together.entry(k).or_default() += n;
                }
            }
        }
        let points = std::mem::take(&mut self.points);
        for ((task, question), p) in points {
            let task = aliases.get(&task).cloned().unwrap_or(task);
            let into = self.points.entry((task, question)).or_default();
            for (c, (r, w)) in p.choices {
                let e = into.choices.entry(c).or_default();
                e.0 += r;
                e.1 += w;
            }
            into.evidence.absorb(&p.evidence);
        }
    }

    /// A task's actions grouped by action key, and the runs in which two keys occur together.
    fn grouped<'a>(t: &'a TaskActions, names: &'a Resolver) -> Grouped<'a> {
        let mut actions: BTreeMap<&str, ActionStats> = BTreeMap::new();
        for (text, v) in &t.actions {
            let g = actions.entry(names.key(text)).or_default();
            g.0 += v.0;
            g.1 += v.1;
            g.2 += v.2;
            for e in &v.3.events {
                g.3.add(v.3.last_ms, v.3.touched, [e.clone()]);
            }
        }
        let mut together: BTreeMap<(&str, &str), u64> = BTreeMap::new();
        for ((a, b), n) in &t.together {
            let (a, b) = (names.key(a), names.key(b));
            if a != b {
                *together
                    .entry(if a < b { (a, b) } else { (b, a) })
                    .or_default() += n;
            }
        }
        (actions, together)
    }

    /// Implicit forks of a task: (a, b) with a < b, per the module's rules.
    fn forks<'a>(t: &TaskActions, g: &Grouped<'a>) -> Vec<(&'a str, &'a str)> {
        let (actions, together) = g;
        let mut out = Vec::new();
        let cands: Vec<(&str, &ActionStats)> = actions
            .iter()
            .filter(|(_, v)| v.0 >= FORK_MIN_RUNS && v.0 < t.runs)
            .map(|(k, v)| (*k, v))
            .collect();
        for (i, (a, va)) in cands.iter().enumerate() {
            for (b, vb) in &cands[i + 1..] {
                let apart = !together.contains_key(&(*a, *b));
                let (pa, pb) = (va.2 / va.0, vb.2 / vb.0);
                let close = pa.abs_diff(pb) <= FORK_POSITION;
                let covered = (va.0 + vb.0) as f64 >= FORK_COVERAGE * t.runs as f64;
                if apart && close && covered {
                    out.push((*a, *b));
                }
            }
        }
        out
    }

    pub fn finish(&self, newest_ms: i64, names: &Resolver, choice_names: &Resolver) -> Vec<Draft> {
        let mut out = Vec::new();
        for (task, t) in &self.tasks {
            let g = Self::grouped(t, names);
            for (a, b) in Self::forks(t, &g) {
                let (va, vb) = (&g.0[a], &g.0[b]);
                let mut evidence = va.3.clone();
                for e in &vb.3.events {
                    evidence.add(vb.3.last_ms, vb.3.touched, [e.clone()]);
                }
                evidence.count = va.0 + vb.0;
                let (da, db) = (names.display(a).to_string(), names.display(b).to_string());
                let question = format!("{da} or {db}");
                let choices = [
                    (da, names.signature(a).to_string(), va.0, va.1),
                    (db, names.signature(b).to_string(), vb.0, vb.1),
                ];
                let identity = format!("{a} or {b}");
                out.extend(self.policy(task, &identity, &question, &choices, &evidence, newest_ms));
            }
        }
        for ((task, question), p) in &self.points {
            let mut grouped: BTreeMap<&str, (u64, u64)> = BTreeMap::new();
            for (text, (r, w)) in &p.choices {
                let c = grouped.entry(choice_names.key(text)).or_default();
                c.0 += r;
                c.1 += w;
            }
            let choices: Vec<(String, String, u64, u64)> = grouped
                .iter()
                .map(|(k, (r, w))| {
                    (
                        choice_names.display(k).to_string(),
                        choice_names.signature(k).to_string(),
                        *r,
                        *w,
                    )
                })
                .collect();
            out.extend(self.policy(task, question, question, &choices, &p.evidence, newest_ms));
        }
        out
    }

    /// A policy from choices (shown text, signature, runs, successes), if the evidence is
    /// sufficient.
    fn policy(
        &self,
        task: &str,
        identity: &str,
        question: &str,
        choices: &[(String, String, u64, u64)],
        evidence: &Evidence,
        newest_ms: i64,
    ) -> Option<Draft> {
        let mut ranked: Vec<&(String, String, u64, u64)> =
            choices.iter().filter(|c| c.2 >= MIN_PER_CHOICE).collect();
        let total: u64 = ranked.iter().map(|c| c.2).sum();
        if ranked.len() < 2 || total < MIN_TOTAL {
            return None;
        }
        ranked.sort_by(|a, b| {
            smoothed(b.2, b.3)
                .total_cmp(&smoothed(a.2, a.3))
                .then_with(|| b.2.cmp(&a.2))
                .then_with(|| a.0.cmp(&b.0))
        });
        let (best, second) = (ranked[0], ranked[1]);
        let gap = smoothed(best.2, best.3) - smoothed(second.2, second.3);
        // A clear winner is a consistent policy; a coin toss is not.
        let consistency = (0.4 + 2.0 * gap).min(1.0) * smoothed(best.2, best.3);
        let actions: Vec<_> = ranked
            .iter()
            .map(|(c, sig, r, w)| {
                json!({"action": c, "signature": sig,
                       "successRate": round4(*w as f64 / *r as f64), "evidence": r})
            })
            .collect();
        let content = json!({
            "task": task,
            "question": question,
            "condition": format!("when doing '{task}' and deciding {question}"),
            "actions": actions,
            "recommendation": best.0,
            "signature": format!("{task} | {identity}"),
        });
        Some(Draft {
            artifact_type: "decision_policy",
            signature: format!("{task} | {identity}"),
            title: format!("{}: {}", title_case(task), question),
            content,
            confidence: score(total, consistency, newest_ms - evidence.last_ms),
            evidence_count: total,
            source_events: evidence.sources(),
            touched: evidence.touched,
        })
    }
}
