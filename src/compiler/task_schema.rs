//! task_schema: sessions with the same task signature → the ordered steps their successful runs
//! have in common, with preconditions, postconditions and variations.
//!
//! A step belongs to the schema when it occurs in at least half of the successful runs; steps are
//! ordered by their mean relative position (first occurrence ÷ run length), ties by name. Steps
//! seen in 20–50% of successful runs are variations. Needs at least `MIN_SUCCESSES` successful
//! runs. Positions are summed as integers (parts per million) so the result does not depend on
//! the order sessions arrive in. Steps are counted by their verbatim text (leaving out steps that
//! failed in the run, and decoys: steps only ever tried while a failure was open that then came
//! back) and grouped into actions by `variants::Resolver` at finish; each is shown
//! verbatim.

use super::confidence::{round4, score};
use super::normalize::title_case;
use super::sessions::extends;
use super::variants::Resolver;
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
    /// verbatim step → (successful runs containing it, sum of relative positions in ppm)
    steps: BTreeMap<String, (u64, u64)>,
    /// verbatim step → (runs of known outcome containing it, successful ones): its variants'
    /// success rates within this task
    tried: BTreeMap<String, (u64, u64)>,
    pre: BTreeMap<String, u64>,
    post: BTreeMap<String, u64>,
    evidence: Evidence,
}

impl Task {
    /// Verbatim steps grouped into actions: key → (successful runs, position sum in ppm).
    ///
    /// An action that a more reliable action extends (every word of it and more: the fix of its
    /// failures, `terraform apply tfplan` → `terraform apply -lock-timeout=5m tfplan`) is counted
    /// as that action: runs that got away with the plain form and runs that needed the fix took
    /// one step, and the schema shows the form that works.
    fn actions<'a>(&'a self, names: &'a Resolver) -> BTreeMap<&'a str, (u64, u64)> {
        let mut actions: BTreeMap<&str, (u64, u64)> = BTreeMap::new();
        for (text, (c, pos)) in &self.steps {
            let a = actions.entry(names.key(text)).or_default();
            a.0 += c;
            a.1 += pos;
        }
        let own = || self.steps.iter().map(|(x, (c, _))| (x.as_str(), *c));
        let shown: BTreeMap<&str, String> = actions
            .keys()
            .map(|k| (*k, names.display_among(k, own())))
            .collect();
        // key → the more reliable action that extends it (the most reliable; ties: more runs,
        // then the key).
        let mut into: BTreeMap<&str, &str> = BTreeMap::new();
        for (a, ta) in &shown {
            let Some(ra) = names.step_rate(a) else {
                continue;
            };
            let better = shown
                .iter()
                .filter(|(b, tb)| b != &a && tb.len() > ta.len() && extends(tb, ta))
                .filter_map(|(b, _)| Some((*b, names.step_rate(b)?)))
                .filter(|(_, rb)| *rb > ra)
                .max_by(|x, y| {
                    x.1.total_cmp(&y.1)
                        .then_with(|| actions[x.0].0.cmp(&actions[y.0].0))
                        .then_with(|| y.0.cmp(x.0))
                });
            if let Some((b, _)) = better {
                into.insert(a, b);
            }
        }
        let mut out: BTreeMap<&str, (u64, u64)> = BTreeMap::new();
        for (k, (c, pos)) in actions {
            // Follow the chain (each hop is strictly longer text, so it ends).
            let mut to = k;
            while let Some(next) = into.get(to) {
                to = next;
            }
            let e = out.entry(to).or_default();
            e.0 += c;
            e.1 += pos;
        }
        out
    }
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
        if let Some(ok) = s.outcome {
            for st in s.distinct_texts(false) {
                let e = t.tried.entry(st.text.clone()).or_default();
                e.0 += 1;
                e.1 += ok as u64;
            }
        }
        if s.outcome != Some(true) {
            return;
        }
        t.successes += 1;
        let futile = s.futile_texts();
        let mut done = s.distinct_texts(true);
        done.retain(|st| !futile.contains(st.text.as_str()));
        let len = done.len().max(1) as u64;
        for (i, st) in done.iter().enumerate() {
            let e = t.steps.entry(st.text.clone()).or_default();
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

    pub fn finish(&self, newest_ms: i64, names: &Resolver) -> Vec<Draft> {
        let mut out = Vec::new();
        for (sig, t) in &self.tasks {
            if t.successes < MIN_SUCCESSES {
                continue;
            }
            let n = t.successes as f64;
            let actions = t.actions(names);
            let share = |c: u64| c.min(t.successes) as f64 / n;
            // Shown by the texts this task's successful runs wrote.
            let shown = |a: &str| {
                names.display_among(a, t.steps.iter().map(|(x, (c, _))| (x.as_str(), *c)))
            };
            let mut steps: Vec<(&str, u64, u64)> = actions
                .iter()
                .filter(|(_, (c, _))| share(*c) >= STEP_SHARE)
                .map(|(a, (c, pos))| (*a, (*c).min(t.successes), pos / c))
                .collect();
            if steps.is_empty() {
                continue;
            }
            steps.sort_by(|a, b| a.2.cmp(&b.2).then_with(|| a.0.cmp(b.0)));
            let variations: Vec<_> = actions
                .iter()
                .filter(|(_, (c, _))| (VARIATION_SHARE..STEP_SHARE).contains(&share(*c)))
                .map(|(a, (c, _))| json!({"action": shown(a), "frequency": round4(share(*c))}))
                .collect();
            let details: Vec<_> = steps
                .iter()
                .map(|(a, c, _)| {
                    let mut d = json!({
                        "action": shown(a),
                        "signature": names.signature(a),
                        "frequency": round4(share(*c)),
                    });
                    let tried = t.tried.iter().map(|(x, (r, w))| (x.as_str(), *r, *r, *w));
                    if let Some(v) = names.variants_among(a, tried) {
                        d["variants"] = v;
                    }
                    d
                })
                .collect();
            // Consistency: how often runs succeed and how fully they follow the schema.
            let coverage = steps.iter().map(|s| s.1 as f64 / n).sum::<f64>() / steps.len() as f64;
            let success_rate = t.successes as f64 / t.runs as f64;
            let consistency = coverage * (0.5 + 0.5 * success_rate);
            let content = json!({
                "task": sig,
                "signature": sig,
                "steps": steps.iter().map(|s| shown(s.0)).collect::<Vec<_>>(),
                "stepDetails": details,
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

/// Word overlap (Jaccard) two task statements need to be one task…
const ALIAS_WORDS: f64 = 0.25;
/// …or the overlap at which they are one task whatever their steps (the same words reordered).
const ALIAS_SAME_WORDS: f64 = 0.8;
/// Overlap of their schema steps (Jaccard of the step actions in half their successful runs).
const ALIAS_STEPS: f64 = 0.6;
/// …or the overlap of their steps at which sharing one word is enough ("start the app container",
/// "run the app in docker": every step the same). Needs `ALIAS_SAME_STEPS_MIN` steps.
const ALIAS_SAME_STEPS: f64 = 0.9;
const ALIAS_SAME_STEPS_MIN: usize = 2;
/// Successful runs a task needs before it is compared.
const ALIAS_MIN_SUCCESSES: u64 = 2;

impl Miner {
    /// Tasks that are one task said differently: their statements share words and their
    /// successful runs take the same steps, their statements have (almost) the same words, or
    /// they share a word and (almost) all their steps. Answers task → the name of its group (the
    /// member with the most runs; ties: the smaller name); tasks alone in their group are not
    /// listed.
    pub fn aliases(&self, names: &Resolver) -> BTreeMap<String, String> {
        use std::collections::BTreeSet;
        let mut sets: Vec<(&String, &Task, BTreeSet<&str>, BTreeSet<&str>)> = Vec::new();
        for (sig, t) in &self.tasks {
            if t.successes < ALIAS_MIN_SUCCESSES {
                continue;
            }
            let steps: BTreeSet<&str> = t
                .actions(names)
                .into_iter()
                .filter(|(_, (c, _))| {
                    (*c).min(t.successes) as f64 >= STEP_SHARE * t.successes as f64
                })
                .map(|(k, _)| k)
                .collect();
            if steps.is_empty() {
                continue;
            }
            sets.push((sig, t, sig.split(' ').collect(), steps));
        }
        fn jaccard(a: &BTreeSet<&str>, b: &BTreeSet<&str>) -> f64 {
            let inter = a.intersection(b).count();
            let union = a.len() + b.len() - inter;
            if union == 0 {
                0.0
            } else {
                inter as f64 / union as f64
            }
        }
        // Union-find over the tasks that share a word (candidates come from a word index, so
        // unrelated tasks are never compared).
        let mut parent: Vec<usize> = (0..sets.len()).collect();
        fn root(p: &mut [usize], mut i: usize) -> usize {
            while p[i] != i {
                p[i] = p[p[i]];
                i = p[i];
            }
            i
        }
        let mut by_word: BTreeMap<&str, Vec<usize>> = BTreeMap::new();
        for (i, s) in sets.iter().enumerate() {
            for w in &s.2 {
                by_word.entry(w).or_default().push(i);
            }
        }
        let mut compared = std::collections::BTreeSet::new();
        for list in by_word.values() {
            for (x, &i) in list.iter().enumerate() {
                for &j in &list[x + 1..] {
                    if !compared.insert((i, j)) {
                        continue;
                    }
                    let words = jaccard(&sets[i].2, &sets[j].2);
                    let steps = jaccard(&sets[i].3, &sets[j].3);
                    let same_steps = steps >= ALIAS_SAME_STEPS
                        && sets[i].3.len().min(sets[j].3.len()) >= ALIAS_SAME_STEPS_MIN;
                    if words >= ALIAS_SAME_WORDS
                        || (words >= ALIAS_WORDS && steps >= ALIAS_STEPS)
                        || same_steps
                    {
                        let (a, b) = (root(&mut parent, i), root(&mut parent, j));
                        if a != b {
                            parent[a.max(b)] = a.min(b);
                        }
                    }
                }
            }
        }
        let mut groups: BTreeMap<usize, Vec<usize>> = BTreeMap::new();
        for i in 0..sets.len() {
            let r = root(&mut parent, i);
            groups.entry(r).or_default().push(i);
        }
        let mut out = BTreeMap::new();
        for members in groups.values().filter(|m| m.len() > 1) {
            let head = members
                .iter()
                .max_by(|a, b| {
                    sets[**a]
                        .1
                        .runs
                        .cmp(&sets[**b].1.runs)
                        .then_with(|| sets[**b].0.cmp(sets[**a].0))
                })
                .expect("a group has members");
            for m in members {
                if m != head {
                    out.insert(sets[*m].0.clone(), sets[*head].0.clone());
                }
            }
        }
        out
    }

    /// Folds aliased tasks into their group's task.
    pub fn merge_tasks(&mut self, aliases: &BTreeMap<String, String>) {
        for (from, to) in aliases {
            let Some(t) = self.tasks.remove(from) else {
                continue;
            };
            let into = self.tasks.entry(to.clone()).or_default();
            into.runs += t.runs;
            into.successes += t.successes;
            for (k, (c, p)) in t.steps {
                let e = into.steps.entry(k).or_default();
                e.0 += c;
                e.1 += p;
            }
            for (k, (r, w)) in t.tried {
                let e = into.tried.entry(k).or_default();
                e.0 += r;
                e.1 += w;
            }
            for (k, c) in t.pre {
                *into.pre.entry(k).or_default() += c;
            }
            for (k, c) in t.post {
                *into.post.entry(k).or_default() += c;
            }
            into.evidence.absorb(&t.evidence);
        }
    }
}

fn dedup(v: &[String]) -> Vec<String> {
    let mut out: Vec<String> = v.to_vec();
    out.sort();
    out.dedup();
    out
}
