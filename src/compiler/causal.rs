//! causal_pattern: something the agent did or saw that, across sessions, is followed by a concrete
//! failure far more often than that failure occurs in runs of the same task without it.
//!
//! Causes: commands, tool calls, browser actions, file edits (their path and change), decisions
//! and observed conditions — counted by their verbatim text and grouped at finish
//! (`variants::Resolver`), shown verbatim. Effects: concrete failure signals — an error signature
//! raised by a later step (a failing command's stderr or non-zero exit, a failing test, an HTTP
//! status of 400 or more from an API or browser result) — and the task failing. An effect is shown
//! by its smallest raw message.
//!
//! The baseline is stratified by task: within each task, runs with the cause are compared with
//! runs of the same task without it (P(effect | task, no cause), smoothed by +0.5/+1), and the
//! expectation is summed over tasks. Without that, anything peculiar to a failure-prone kind of
//! task would look like a cause of failure. Tasks with fewer than `MIN_BASELINE` runs without
//! the cause give no baseline and are left out.
//!
//! A session contributes a (cause, effect) pair when the cause first occurs before the effect and
//! the cause is not the action that raised the effect itself (that pairing is what a playbook
//! describes). A pattern needs support of `MIN_SUPPORT` sessions, P(effect | cause) ≥
//! `MIN_CONDITIONAL` (≥ `STRONG_MIN_CONDITIONAL` when the lift is at least `STRONG_LIFT`: a cause
//! that multiplies a failure's rate matters even when a common mitigation often prevents it),
//! lift ≥ `MIN_LIFT`, and a z-score against the base rate ≥ `MIN_Z`, so that coincidences in
//! small or noisy samples are not reported.
//!
//! Mitigation: the action that sessions with the cause but without the effect took after the
//! cause much more often (by at least `MITIGATION_GAP` of their runs) than the sessions with the
//! cause and the effect, and more often (by `MITIGATION_OVER_BASELINE`) than the runs of the same
//! tasks without the cause — an action every run takes is no mitigation —, verbatim; else the best recovery of the effect's playbook; else advice to double-check the
//! cause.

use super::confidence::{round4, score};
use super::failure_playbook::TopRecovery;
use super::variants::Resolver;
use super::{Draft, Evidence, SessionCtx};
use serde_json::json;
use std::collections::{BTreeMap, BTreeSet};

const MIN_SUPPORT: u64 = 4;
const MIN_CONDITIONAL: f64 = 0.5;
/// With a lift of at least this…
const STRONG_LIFT: f64 = 3.0;
/// …P(effect | cause) may be this low.
const STRONG_MIN_CONDITIONAL: f64 = 0.3;
const MIN_LIFT: f64 = 1.5;
const MIN_Z: f64 = 3.0;
const MIN_BASELINE: u64 = 3;
const FAILS: &str = "the task fails";
/// How much more often the mitigating action must occur without the effect than with it…
const MITIGATION_GAP: f64 = 0.4;
/// …and than in the task's runs without the cause (an action every run takes is no mitigation).
const MITIGATION_OVER_BASELINE: f64 = 0.1;
/// Sessions without the effect that must have taken the mitigating action.
const MITIGATION_MIN: u64 = 2;

/// A (cause, effect) pair grouped by cause key at finish: evidence, runs with both per task,
/// actions taken after the cause, and the action keys that raised the effect.
type Grouped<'a> = (
    Evidence,
    BTreeMap<&'a str, u64>,
    BTreeMap<&'a str, u64>,
    BTreeSet<&'a str>,
);

/// Per (cause, effect): evidence, runs with both per task, and actions taken after the cause.
#[derive(Default)]
struct Pair {
    evidence: Evidence,
    by_task: BTreeMap<String, u64>,
    after: BTreeMap<String, u64>,
    /// The steps (verbatim) whose failure raised the effect: never its mitigation (they only
    /// look like one because the runs that escaped ran them without failing).
    raisers: BTreeSet<String>,
}

#[derive(Default)]
pub struct Miner {
    sessions: u64,
    /// task → runs
    tasks: BTreeMap<String, u64>,
    /// cause (verbatim) → task → runs with the cause
    causes: BTreeMap<String, BTreeMap<String, u64>>,
    /// cause (verbatim) → action (verbatim) → runs where the action followed the cause
    after: BTreeMap<String, BTreeMap<String, u64>>,
    /// (effect, task) → runs with the effect
    effects: BTreeMap<(String, String), u64>,
    /// task → action (verbatim) → runs that took it
    task_actions: BTreeMap<String, BTreeMap<String, u64>>,
    /// effect → its smallest raw message
    shown: BTreeMap<String, String>,
    /// condition cause (`when <label>`) → its texts as written → runs
    conditions: BTreeMap<String, BTreeMap<String, u64>>,
    pairs: BTreeMap<(String, String), Pair>,
}

/// Keeps the smaller of two texts in `slot`.
fn keep_min(slot: &mut BTreeMap<String, String>, key: &str, text: &str) {
    match slot.get_mut(key) {
        Some(t) if text < t.as_str() => *t = text.to_string(),
        Some(_) => {}
        None => {
            slot.insert(key.to_string(), text.to_string());
        }
    }
}

impl Miner {
    pub fn add(&mut self, ctx: &SessionCtx<'_>) {
        let s = ctx.session;
        self.sessions += 1;
        // Cause (verbatim) → first event index.
        let mut causes: BTreeMap<String, usize> = BTreeMap::new();
        for st in &s.steps {
            causes.entry(st.text.clone()).or_insert(st.event);
        }
        for d in &s.decisions {
            causes
                .entry(format!("choose {}", d.choice_text))
                .or_insert(d.event);
        }
        for (c, raw, i) in &s.conditions {
            let key = format!("when {c}");
            if !causes.contains_key(&key) {
                *self
                    .conditions
                    .entry(key.clone())
                    .or_default()
                    .entry(raw.clone())
                    .or_default() += 1;
            }
            causes.entry(key).or_insert(*i);
        }
        // Effect → (first event index, verbatim actions that raised it).
        let mut effects: BTreeMap<String, (usize, BTreeSet<String>)> = BTreeMap::new();
        for st in &s.steps {
            if let (Some(sig), Some(raw)) = (&st.error, &st.error_text) {
                let key = format!("error: {sig}");
                keep_min(&mut self.shown, &key, raw);
                let e = effects.entry(key).or_insert((st.event, BTreeSet::new()));
                e.1.insert(st.text.clone());
            }
        }
        for (sig, raw, i) in &s.loose_errors {
            let key = format!("error: {sig}");
            keep_min(&mut self.shown, &key, raw);
            effects.entry(key).or_insert((*i, BTreeSet::new()));
        }
        if s.outcome == Some(false) {
            // A step that failed is the failure itself, not its cause.
            let failed: BTreeSet<String> = s
                .steps
                .iter()
                .filter(|st| st.ok == Some(false))
                .map(|st| st.text.clone())
                .collect();
            effects.insert(FAILS.to_string(), (ctx.events.len(), failed));
        }
        let task = s.task.clone().unwrap_or_default();
        *self.tasks.entry(task.clone()).or_default() += 1;
        let taken = self.task_actions.entry(task.clone()).or_default();
        for st in s.distinct_texts(true) {
            *taken.entry(st.text.clone()).or_default() += 1;
        }
        // Actions (verbatim) after each cause's first occurrence.
        let after_of = |ci: usize| -> BTreeSet<&str> {
            s.steps
                .iter()
                .filter(|st| st.event > ci && st.ok != Some(false))
                .map(|st| st.text.as_str())
                .collect()
        };
        for (c, ci) in &causes {
            *self
                .causes
                .entry(c.clone())
                .or_default()
                .entry(task.clone())
                .or_default() += 1;
            let later = self.after.entry(c.clone()).or_default();
            for a in after_of(*ci) {
                *later.entry(a.to_string()).or_default() += 1;
            }
        }
        for e in effects.keys() {
            *self.effects.entry((e.clone(), task.clone())).or_default() += 1;
        }
        for (c, ci) in &causes {
            for (e, (ei, raisers)) in &effects {
                if ci >= ei || raisers.contains(c) {
                    continue;
                }
                let ev = [ctx.event_id(*ci)]
                    .into_iter()
                    .chain((*ei < ctx.events.len()).then(|| ctx.event_id(*ei)));
                let pair = self.pairs.entry((c.clone(), e.clone())).or_default();
                pair.evidence.add(ctx.at_ms, ctx.touched, ev);
                *pair.by_task.entry(task.clone()).or_default() += 1;
                pair.raisers.extend(raisers.iter().cloned());
                for a in after_of(*ci) {
                    *pair.after.entry(a.to_string()).or_default() += 1;
                }
            }
        }
    }

    /// Re-keys every per-task count by the task's group (`task_schema::Miner::aliases`).
    pub fn merge_tasks(&mut self, aliases: &BTreeMap<String, String>) {
        if aliases.is_empty() {
            return;
        }
        let alias = |t: String| aliases.get(&t).cloned().unwrap_or(t);
        fn rekey(
            m: BTreeMap<String, u64>,
            alias: &dyn Fn(String) -> String,
        ) -> BTreeMap<String, u64> {
            let mut out = BTreeMap::new();
            for (k, v) in m {
                *out.entry(alias(k)).or_default() += v;
            }
            out
        }
        self.tasks = rekey(std::mem::take(&mut self.tasks), &alias);
        let mut taken: BTreeMap<String, BTreeMap<String, u64>> = BTreeMap::new();
        for (t, actions) in std::mem::take(&mut self.task_actions) {
            let into = taken.entry(alias(t)).or_default();
            for (a, n) in actions {
                *into.entry(a).or_default() += n;
            }
        }
        self.task_actions = taken;
        for by_task in self.causes.values_mut() {
            *by_task = rekey(std::mem::take(by_task), &alias);
        }
        for p in self.pairs.values_mut() {
            p.by_task = rekey(std::mem::take(&mut p.by_task), &alias);
        }
        let mut effects = BTreeMap::new();
        for ((e, t), n) in std::mem::take(&mut self.effects) {
            *effects.entry((e, alias(t))).or_default() += n;
        }
        self.effects = effects;
    }

    /// The cause key of a verbatim cause: steps by their action key, the rest as written.
    fn cause_key<'a>(names: &'a Resolver, cause: &'a str) -> &'a str {
        if cause.starts_with("when ") || cause.starts_with("choose ") {
            cause
        } else {
            names.key(cause)
        }
    }

    pub fn finish(&self, newest_ms: i64, tops: &[TopRecovery], names: &Resolver) -> Vec<Draft> {
        let n = self.sessions as f64;
        // Group causes (and what followed them) by cause key.
        let mut causes: BTreeMap<&str, BTreeMap<&str, u64>> = BTreeMap::new();
        let mut after: BTreeMap<&str, BTreeMap<&str, u64>> = BTreeMap::new();
        // A cause's own texts and the texts that followed it: how its pattern shows them.
        let mut cause_texts: BTreeMap<&str, Vec<(&str, u64)>> = BTreeMap::new();
        let mut after_texts: BTreeMap<&str, BTreeMap<&str, u64>> = BTreeMap::new();
        for (c, by_task) in &self.causes {
            let k = Self::cause_key(names, c);
            let g = causes.entry(k).or_default();
            for (t, runs) in by_task {
                *g.entry(t.as_str()).or_default() += runs;
            }
            cause_texts
                .entry(k)
                .or_default()
                .push((c.as_str(), by_task.values().sum()));
            let a = after.entry(k).or_default();
            let at = after_texts.entry(k).or_default();
            for (x, runs) in self.after.get(c).into_iter().flatten() {
                *a.entry(names.key(x)).or_default() += runs;
                *at.entry(x.as_str()).or_default() += runs;
            }
        }
        let mut pairs: BTreeMap<(&str, &str), Grouped<'_>> = BTreeMap::new();
        for ((c, e), p) in &self.pairs {
            let g = pairs
                .entry((Self::cause_key(names, c), e.as_str()))
                .or_default();
            let before = g.0.count;
            for ev in &p.evidence.events {
                g.0.add(p.evidence.last_ms, p.evidence.touched, [ev.clone()]);
            }
            g.0.count = before + p.evidence.count;
            for (t, runs) in &p.by_task {
                *g.1.entry(t.as_str()).or_default() += runs;
            }
            for (x, runs) in &p.after {
                *g.2.entry(names.key(x)).or_default() += runs;
            }
            g.3.extend(p.raisers.iter().map(|x| names.key(x)));
        }
        let mut out = Vec::new();
        for ((cause, effect), (ev, with_both, after_both, raisers)) in &pairs {
            let Some(by_task) = causes.get(cause) else {
                continue;
            };
            let (mut observed, mut n_c, mut expected, mut var) = (0u64, 0u64, 0.0, 0.0);
            for (task, n_ct) in by_task {
                let n_t = self.tasks.get(*task).copied().unwrap_or(0);
                let without = n_t.saturating_sub(*n_ct);
                if without < MIN_BASELINE {
                    continue;
                }
                let n_et = self
                    .effects
                    .get(&((*effect).to_string(), (*task).to_string()))
                    .copied()
                    .unwrap_or(0);
                let n_cet = with_both.get(task).copied().unwrap_or(0);
                let p0 = (n_et.saturating_sub(n_cet) as f64 + 0.5) / (without as f64 + 1.0);
                observed += n_cet;
                n_c += n_ct;
                expected += *n_ct as f64 * p0;
                var += *n_ct as f64 * p0 * (1.0 - p0);
            }
            if observed < MIN_SUPPORT || n_c == 0 || var <= 0.0 {
                continue;
            }
            let n_ce = observed;
            let p = n_ce as f64 / n_c as f64;
            let lift = n_ce as f64 / expected;
            let z = (n_ce as f64 - expected) / var.sqrt();
            // A cause that multiplies the failure's rate is reported even when a common
            // mitigation keeps P(effect | cause) under one half.
            let min_p = if lift >= STRONG_LIFT {
                STRONG_MIN_CONDITIONAL
            } else {
                MIN_CONDITIONAL
            };
            if p < min_p || lift < MIN_LIFT || z < MIN_Z {
                continue;
            }
            let total_c: u64 = by_task.values().sum();
            // What runs of the same tasks without the cause took (the baseline a mitigation must
            // beat: an action every successful run takes is no mitigation).
            let mut without: BTreeMap<&str, u64> = BTreeMap::new();
            let mut runs_without = 0u64;
            for (task, n_ct) in by_task {
                runs_without += self
                    .tasks
                    .get(*task)
                    .copied()
                    .unwrap_or(0)
                    .saturating_sub(*n_ct);
                for (a, n) in self.task_actions.get(*task).into_iter().flatten() {
                    *without.entry(names.key(a)).or_default() += n;
                }
            }
            for (a, n) in after.get(cause).into_iter().flatten() {
                if let Some(w) = without.get_mut(a) {
                    *w = w.saturating_sub(*n);
                }
            }
            let mitigation = mitigating_action(
                after.get(cause),
                (after_both, raisers),
                total_c,
                ev.count.max(n_ce),
                (&without, runs_without),
                (names, after_texts.get(cause)),
            )
            .or_else(|| {
                // A variant of the cause split off by its arguments: the variant of the same
                // signature whose runs met the effect least often, verbatim (`--concurrency=4`
                // → instead `--concurrency=32`), when that is less often than with the cause.
                let sig = names.signature(cause);
                let rate = |k: &str| -> Option<(f64, u64)> {
                    let runs: u64 = causes.get(k)?.values().sum();
                    let hit: u64 = pairs.get(&(k, *effect)).map_or(0, |g| g.1.values().sum());
                    (runs > 0).then(|| (hit as f64 / runs as f64, runs))
                };
                causes
                    .keys()
                    .filter(|k| **k != *cause && names.signature(k) == sig)
                    .filter_map(|k| Some((*k, rate(k)?)))
                    .filter(|(_, (r, _))| *r < p)
                    .min_by(|a, b| {
                        a.1 .0
                            .total_cmp(&b.1 .0)
                            .then_with(|| b.1 .1.cmp(&a.1 .1))
                            .then_with(|| a.0.cmp(b.0))
                    })
                    .map(|(k, _)| {
                        let own = self
                            .task_actions
                            .values()
                            .flatten()
                            .map(|(t, n)| (t.as_str(), *n));
                        format!("instead: {}", names.display_among(k, own))
                    })
            })
            .or_else(|| {
                let sig = effect.strip_prefix("error: ")?;
                let t = tops.iter().find(|t| t.signature == sig)?;
                Some(format!("if it happens: {}", t.recovery))
            })
            .unwrap_or_else(|| {
                format!(
                    "avoid or double-check: {}",
                    shown_cause(names, cause, cause_texts.get(cause), &self.conditions)
                )
            });
            let cause_shown = shown_cause(names, cause, cause_texts.get(cause), &self.conditions);
            let effect_shown = self
                .shown
                .get(*effect)
                .cloned()
                .unwrap_or_else(|| (*effect).to_string());
            let content = json!({
                "cause": cause_shown,
                "effect": effect_shown,
                "signature": format!("{cause} => {effect}"),
                "causeSignature": cause_signature(names, cause),
                "effectSignature": effect,
                "frequency": n_ce,
                "confidence": round4(p),
                "lift": round4(lift),
                "support": round4(n_ce as f64 / n),
                "mitigation": mitigation,
            });
            out.push(Draft {
                artifact_type: "causal_pattern",
                signature: format!("{cause} => {effect}"),
                title: format!("{cause_shown} leads to {effect_shown}"),
                content,
                confidence: score(n_ce, p, newest_ms - ev.last_ms),
                evidence_count: n_ce,
                source_events: ev.sources(),
                touched: ev.touched,
            });
        }
        out
    }
}

/// A cause as its pattern shows it: by the most frequent of its own texts (a condition as the
/// runs wrote it most often, ties: the smaller text).
fn shown_cause(
    names: &Resolver,
    cause: &str,
    own: Option<&Vec<(&str, u64)>>,
    conditions: &BTreeMap<String, BTreeMap<String, u64>>,
) -> String {
    if let Some(texts) = conditions.get(cause) {
        if let Some((raw, _)) = texts
            .iter()
            .max_by(|a, b| a.1.cmp(b.1).then_with(|| b.0.cmp(a.0)))
        {
            return format!("when {raw}");
        }
    }
    if cause.starts_with("when ") || cause.starts_with("choose ") {
        cause.to_string()
    } else {
        names.display_among(cause, own.into_iter().flatten().copied())
    }
}

fn cause_signature(names: &Resolver, cause: &str) -> String {
    if cause.starts_with("when ") || cause.starts_with("choose ") {
        cause.to_string()
    } else {
        names.signature(cause).to_string()
    }
}

/// The action most characteristic of the cause's runs that escaped the effect, verbatim.
fn mitigating_action(
    after_cause: Option<&BTreeMap<&str, u64>>,
    (after_both, raisers): (&BTreeMap<&str, u64>, &BTreeSet<&str>),
    runs_with_cause: u64,
    runs_with_both: u64,
    (without, runs_without): (&BTreeMap<&str, u64>, u64),
    (names, own): (&Resolver, Option<&BTreeMap<&str, u64>>),
) -> Option<String> {
    let escaped = runs_with_cause.saturating_sub(runs_with_both);
    if escaped == 0 || runs_with_both == 0 {
        return None;
    }
    let mut best: Option<(f64, u64, &str)> = None;
    for (a, n_all) in after_cause? {
        if raisers.contains(a) {
            continue;
        }
        let n_both = after_both.get(a).copied().unwrap_or(0);
        let n_escaped = n_all.saturating_sub(n_both);
        if n_escaped < MITIGATION_MIN {
            continue;
        }
        let baseline = if runs_without > 0 {
            without.get(a).copied().unwrap_or(0) as f64 / runs_without as f64
        } else {
            0.0
        };
        let share = n_escaped as f64 / escaped as f64;
        let gap = share - n_both as f64 / runs_with_both as f64;
        if gap < MITIGATION_GAP || share < baseline + MITIGATION_OVER_BASELINE {
            continue;
        }
        let better = match best {
            None => true,
            Some((g, n, name)) => {
                gap > g + 1e-9
                    || ((gap - g).abs() <= 1e-9 && (n_escaped > n || (n_escaped == n && *a < name)))
            }
        };
        if better {
            best = Some((gap, n_escaped, a));
        }
    }
    // Shown by the texts the cause's runs wrote.
    best.map(|(_, _, a)| names.display_among(a, own.into_iter().flatten().map(|(t, n)| (*t, *n))))
}
