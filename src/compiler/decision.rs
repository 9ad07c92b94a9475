//! decision_policy: points where sessions of one task diverge, and which choice led to success
//! how often. A divergence is either explicit — `decision` events with the same question — or
//! implicit: two or more actions of one task that (almost) never occur in the same run (in at
//! most `FORK_TOGETHER` of the smaller one's runs: a run that tried one and switched does not
//! hide the fork), sit at about the same place in the runs (mean relative position within
//! `FORK_POSITION`), and together cover at least `FORK_COVERAGE` of the task's runs (nearly every
//! run took one branch or another). A fork is grown from each qualifying pair by adding every
//! other action that forks with all its members (most runs first), so three ways of doing one
//! thing are one policy with three options; a fork inside a larger one is not reported again.
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
/// Share of the smaller option's runs that may contain both options.
const FORK_TOGETHER: f64 = 0.15;
/// Most options one implicit fork has.
const FORK_MAX_OPTIONS: usize = 6;

/// An option of a policy: how it is shown, its signature, runs, successes, and its verbatim
/// variants.
struct Choice {
    shown: String,
    signature: String,
    runs: u64,
    wins: u64,
    variants: Option<serde_json::Value>,
}

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

    /// Implicit forks of a task, per the module's rules: each a list of two or more action
    /// keys in key order.
    fn forks<'a>(t: &TaskActions, g: &Grouped<'a>) -> Vec<Vec<&'a str>> {
        let (actions, together) = g;
        let mut cands: Vec<(&str, &ActionStats)> = actions
            .iter()
            .filter(|(_, v)| v.0 >= FORK_MIN_RUNS && v.0 < t.runs)
            .map(|(k, v)| (*k, v))
            .collect();
        // Most runs first (ties: the key), the order a fork grows in.
        cands.sort_by(|a, b| b.1 .0.cmp(&a.1 .0).then_with(|| a.0.cmp(b.0)));
        let both = |i: usize, j: usize| -> u64 {
            let (a, b) = (cands[i].0, cands[j].0);
            let key = if a < b { (a, b) } else { (b, a) };
            together.get(&key).copied().unwrap_or(0)
        };
        let linked = |i: usize, j: usize| -> bool {
            let (va, vb) = (cands[i].1, cands[j].1);
            let apart = both(i, j) as f64 <= FORK_TOGETHER * va.0.min(vb.0) as f64;
            let close = (va.2 / va.0).abs_diff(vb.2 / vb.0) <= FORK_POSITION;
            apart && close
        };
        let covered = |members: &[usize]| -> bool {
            let mut runs: u64 = members.iter().map(|&i| cands[i].1 .0).sum();
            for (x, &i) in members.iter().enumerate() {
                for &j in &members[x + 1..] {
                    runs = runs.saturating_sub(both(i, j));
                }
            }
            runs as f64 >= FORK_COVERAGE * t.runs as f64
        };
        let mut found: Vec<Vec<usize>> = Vec::new();
        for i in 0..cands.len() {
            for j in i + 1..cands.len() {
                if !linked(i, j) {
                    continue;
                }
                let mut members = vec![i, j];
                for k in 0..cands.len() {
                    if members.len() >= FORK_MAX_OPTIONS {
                        break;
                    }
                    if !members.contains(&k) && members.iter().all(|&m| linked(m, k)) {
                        members.push(k);
                    }
                }
                if covered(&members) {
                    members.sort_unstable();
                    if !found.contains(&members) {
                        found.push(members);
                    }
                }
            }
        }
        let subset =
            |a: &Vec<usize>, b: &Vec<usize>| a.len() < b.len() && a.iter().all(|x| b.contains(x));
        let mut out: Vec<Vec<&str>> = found
            .iter()
            .filter(|f| !found.iter().any(|g| subset(f, g)))
            .map(|f| {
                let mut keys: Vec<&str> = f.iter().map(|&i| cands[i].0).collect();
                keys.sort_unstable();
                keys
            })
            .collect();
        out.sort();
        out
    }

    pub fn finish(&self, newest_ms: i64, names: &Resolver, choice_names: &Resolver) -> Vec<Draft> {
        let mut out = Vec::new();
        for (task, t) in &self.tasks {
            let g = Self::grouped(t, names);
            // Shown by the texts this task's runs wrote.
            let own = || t.actions.iter().map(|(x, v)| (x.as_str(), v.0));
            for keys in Self::forks(t, &g) {
                let mut evidence = Evidence::default();
                for k in &keys {
                    let v = &g.0[k];
                    for e in &v.3.events {
                        evidence.add(v.3.last_ms, v.3.touched, [e.clone()]);
                    }
                }
                evidence.count = keys.iter().map(|k| g.0[k].0).sum();
                let choices: Vec<Choice> = keys
                    .iter()
                    .map(|k| Choice {
                        shown: names.display_among(k, own()),
                        signature: names.signature(k).to_string(),
                        runs: g.0[k].0,
                        wins: g.0[k].1,
                        variants: names.variants_among(
                            k,
                            t.actions.iter().map(|(x, v)| (x.as_str(), v.0, v.0, v.1)),
                        ),
                    })
                    .collect();
                let question = choices
                    .iter()
                    .map(|c| c.shown.as_str())
                    .collect::<Vec<_>>()
                    .join(" or ");
                let identity = keys.join(" or ");
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
            let choices: Vec<Choice> = grouped
                .iter()
                .map(|(k, (r, w))| Choice {
                    shown: choice_names
                        .display_among(k, p.choices.iter().map(|(x, (r, _))| (x.as_str(), *r))),
                    signature: choice_names.signature(k).to_string(),
                    runs: *r,
                    wins: *w,
                    variants: choice_names.variants_among(
                        k,
                        p.choices.iter().map(|(x, (r, w))| (x.as_str(), *r, *r, *w)),
                    ),
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
        choices: &[Choice],
        evidence: &Evidence,
        newest_ms: i64,
    ) -> Option<Draft> {
        let mut ranked: Vec<&Choice> = choices
            .iter()
            .filter(|c| c.runs >= MIN_PER_CHOICE)
            .collect();
        let total: u64 = ranked.iter().map(|c| c.runs).sum();
        if ranked.len() < 2 || total < MIN_TOTAL {
            return None;
        }
        ranked.sort_by(|a, b| {
            smoothed(b.runs, b.wins)
                .total_cmp(&smoothed(a.runs, a.wins))
                .then_with(|| b.runs.cmp(&a.runs))
                .then_with(|| a.shown.cmp(&b.shown))
        });
        let (best, second) = (ranked[0], ranked[1]);
        let gap = smoothed(best.runs, best.wins) - smoothed(second.runs, second.wins);
        // A clear winner is a consistent policy; a coin toss is not.
        let consistency = (0.4 + 2.0 * gap).min(1.0) * smoothed(best.runs, best.wins);
        let actions: Vec<_> = ranked
            .iter()
            .map(|c| {
                let mut a = json!({"action": c.shown, "signature": c.signature,
                       "successRate": round4(c.wins as f64 / c.runs as f64), "evidence": c.runs});
                if let Some(v) = &c.variants {
                    a["variants"] = v.clone();
                }
                a
            })
            .collect();
        let content = json!({
            "task": task,
            "question": question,
            "condition": format!("when doing '{task}' and deciding {question}"),
            "actions": actions,
            "recommendation": best.shown,
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
