//! causal_pattern: an action or observed condition that, across sessions, is followed by an
//! outcome (an error signature, or the session failing) far more often than that outcome occurs
//! in runs of the same task.
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
//! `MIN_CONDITIONAL`, lift ≥ `MIN_LIFT`, and a z-score against the base rate ≥ `MIN_Z`, so that
//! coincidences in small or noisy samples are not reported.

use super::confidence::{round4, score};
use super::failure_playbook::TopRecovery;
use super::{Draft, Evidence, SessionCtx};
use serde_json::json;
use std::collections::{BTreeMap, BTreeSet};

const MIN_SUPPORT: u64 = 4;
const MIN_CONDITIONAL: f64 = 0.6;
const MIN_LIFT: f64 = 1.5;
const MIN_Z: f64 = 3.0;
const MIN_BASELINE: u64 = 3;
const FAILS: &str = "the task fails";

#[derive(Default)]
pub struct Miner {
    sessions: u64,
    /// task → runs
    tasks: BTreeMap<String, u64>,
    /// cause → task → runs with the cause
    causes: BTreeMap<String, BTreeMap<String, u64>>,
    /// (effect, task) → runs with the effect
    effects: BTreeMap<(String, String), u64>,
    /// (cause, effect) → evidence, and runs with both per task
    pairs: BTreeMap<(String, String), (Evidence, BTreeMap<String, u64>)>,
}

impl Miner {
    pub fn add(&mut self, ctx: &SessionCtx<'_>) {
        let s = ctx.session;
        self.sessions += 1;
        // Cause → first event index, and the event that showed it.
        let mut causes: BTreeMap<String, usize> = BTreeMap::new();
        for st in &s.steps {
            causes.entry(st.action.clone()).or_insert(st.event);
        }
        for d in &s.decisions {
            causes
                .entry(format!("choose {}", d.choice))
                .or_insert(d.event);
        }
        for (c, i) in &s.conditions {
            causes.entry(format!("when {c}")).or_insert(*i);
        }
        // Effect → (first event index, actions that raised it).
        let mut effects: BTreeMap<String, (usize, BTreeSet<String>)> = BTreeMap::new();
        for st in &s.steps {
            if let Some(sig) = &st.error {
                let e = effects
                    .entry(format!("error: {sig}"))
                    .or_insert((st.event, BTreeSet::new()));
                e.1.insert(st.action.clone());
            }
        }
        for (sig, _, i) in &s.loose_errors {
            effects
                .entry(format!("error: {sig}"))
                .or_insert((*i, BTreeSet::new()));
        }
        if s.outcome == Some(false) {
            // A step that failed is the failure itself, not its cause.
            let failed: BTreeSet<String> = s
                .steps
                .iter()
                .filter(|st| st.ok == Some(false))
                .map(|st| st.action.clone())
                .collect();
            effects.insert(FAILS.to_string(), (ctx.events.len(), failed));
        }
        let task = s.task.clone().unwrap_or_default();
        *self.tasks.entry(task.clone()).or_default() += 1;
        for c in causes.keys() {
            *self
                .causes
                .entry(c.clone())
                .or_default()
                .entry(task.clone())
                .or_default() += 1;
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
                pair.0.add(ctx.at_ms, ctx.touched, ev);
                *pair.1.entry(task.clone()).or_default() += 1;
            }
        }
    }

    pub fn finish(&self, newest_ms: i64, tops: &[TopRecovery]) -> Vec<Draft> {
        let n = self.sessions as f64;
        let mut out = Vec::new();
        for ((cause, effect), (ev, with_both)) in &self.pairs {
            let Some(by_task) = self.causes.get(cause) else {
                continue;
            };
            let (mut observed, mut n_c, mut expected, mut var) = (0u64, 0u64, 0.0, 0.0);
            for (task, n_ct) in by_task {
                let n_t = self.tasks.get(task).copied().unwrap_or(0);
                let without = n_t.saturating_sub(*n_ct);
                if without < MIN_BASELINE {
                    continue;
                }
                let n_et = self
                    .effects
                    .get(&(effect.clone(), task.clone()))
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
            if p < MIN_CONDITIONAL || lift < MIN_LIFT || z < MIN_Z {
                continue;
            }
            let mut mitigation = vec![format!("avoid or double-check: {cause}")];
            if let Some(sig) = effect.strip_prefix("error: ") {
                if let Some(t) = tops.iter().find(|t| t.signature == sig) {
                    mitigation.push(format!("if it happens: {}", t.recovery));
                }
            }
            let content = json!({
                "cause": cause,
                "effect": effect,
                "frequency": n_ce,
                "confidence": round4(p),
                "lift": round4(lift),
                "support": round4(n_ce as f64 / n),
                "mitigation": mitigation.join("; "),
            });
            out.push(Draft {
                artifact_type: "causal_pattern",
                signature: format!("{cause} => {effect}"),
                title: format!("{cause} leads to {effect}"),
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
