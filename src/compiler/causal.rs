//! causal_pattern: an action or observed condition that, across sessions, is followed by an
//! outcome (an error signature, or the session failing) far more often than that outcome occurs
//! overall.
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

const MIN_SUPPORT: u64 = 5;
const MIN_CONDITIONAL: f64 = 0.6;
const MIN_LIFT: f64 = 1.5;
const MIN_Z: f64 = 3.0;
const FAILS: &str = "the task fails";

#[derive(Default)]
pub struct Miner {
    sessions: u64,
    causes: BTreeMap<String, u64>,
    effects: BTreeMap<String, u64>,
    pairs: BTreeMap<(String, String), Evidence>,
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
        for c in causes.keys() {
            *self.causes.entry(c.clone()).or_default() += 1;
        }
        for e in effects.keys() {
            *self.effects.entry(e.clone()).or_default() += 1;
        }
        for (c, ci) in &causes {
            for (e, (ei, raisers)) in &effects {
                if ci >= ei || raisers.contains(c) {
                    continue;
                }
                let ev = [ctx.event_id(*ci)]
                    .into_iter()
                    .chain((*ei < ctx.events.len()).then(|| ctx.event_id(*ei)));
                self.pairs.entry((c.clone(), e.clone())).or_default().add(
                    ctx.at_ms,
                    ctx.touched,
                    ev,
                );
            }
        }
    }

    pub fn finish(&self, newest_ms: i64, tops: &[TopRecovery]) -> Vec<Draft> {
        let n = self.sessions as f64;
        let mut out = Vec::new();
        for ((cause, effect), ev) in &self.pairs {
            let n_ce = ev.count;
            if n_ce < MIN_SUPPORT {
                continue;
            }
            let n_c = self.causes.get(cause).copied().unwrap_or(0) as f64;
            let n_e = self.effects.get(effect).copied().unwrap_or(0) as f64;
            let p = n_ce as f64 / n_c;
            let base = n_e / n;
            if p < MIN_CONDITIONAL || base <= 0.0 || base >= 1.0 {
                continue;
            }
            let lift = p / base;
            let z = (n_ce as f64 - n_c * base) / (n_c * base * (1.0 - base)).sqrt();
            if lift < MIN_LIFT || z < MIN_Z {
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
