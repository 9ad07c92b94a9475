//! failure_playbook: failures grouped by normalised error signature → the actions taken between a
//! failure and the successful retry of the failed action (or the session's successful end),
//! ranked by how often they worked.
//!
//! Within a session: a failure of action A with signature S opens an episode. Other actions are
//! collected as the recovery attempt. A new failure with S closes the attempt as "did not work"
//! and starts a new one; A succeeding (or the session ending in success) closes it as "worked";
//! the session ending otherwise, or a failure with another signature, closes it as "did not
//! work". An empty successful attempt is recorded as "retry A". Needs `MIN_FAILURES` failures and
//! a best recovery that worked `MIN_RECOVERIES` times; confidence follows how many of the
//! failures that recovery resolved.

use super::confidence::{round4, score};
use super::{Draft, Evidence, SessionCtx};
use serde_json::json;
use std::collections::BTreeMap;

const MIN_FAILURES: u64 = 3;
/// Times the best recovery must have worked.
const MIN_RECOVERIES: u64 = 2;

#[derive(Default)]
struct Playbook {
    failures: u64,
    recovered: u64,
    /// Failing action → count.
    actions: BTreeMap<String, u64>,
    /// Stated causes → count.
    causes: BTreeMap<String, u64>,
    /// Raw messages (a few, smallest first) as symptoms.
    examples: std::collections::BTreeSet<String>,
    /// Recovery (actions joined by " → ") → (tried, worked).
    recoveries: BTreeMap<String, (u64, u64)>,
    evidence: Evidence,
}

/// A finished playbook's signature and its top recovery (for causal mitigations).
pub struct TopRecovery {
    pub signature: String,
    pub recovery: String,
}

#[derive(Default)]
pub struct Miner {
    books: BTreeMap<String, Playbook>,
}

struct Open {
    sig: String,
    action: String,
    attempt: Vec<String>,
    events: Vec<String>,
}

impl Miner {
    pub fn add(&mut self, ctx: &SessionCtx<'_>) {
        let s = ctx.session;
        let mut open: Option<Open> = None;
        for st in &s.steps {
            let failed = st.ok == Some(false) || (st.error.is_some() && st.ok != Some(true));
            match failed {
                true => {
                    let sig = st
                        .error
                        .clone()
                        .unwrap_or_else(|| format!("{} failed", st.action));
                    let raw = st.error_text.clone().unwrap_or_else(|| sig.clone());
                    let b = self.books.entry(sig.clone()).or_default();
                    b.failures += 1;
                    *b.actions.entry(st.action.clone()).or_default() += 1;
                    if let Some(c) = &st.cause {
                        *b.causes.entry(c.clone()).or_default() += 1;
                    }
                    if b.examples.len() < 3 || raw < *b.examples.last().expect("non-empty") {
                        b.examples.insert(raw);
                        if b.examples.len() > 3 {
                            b.examples.pop_last();
                        }
                    }
                    if let Some(o) = open.take() {
                        self.close(o, false, ctx);
                    }
                    open = Some(Open {
                        sig,
                        action: st.action.clone(),
                        attempt: Vec::new(),
                        events: vec![ctx.event_id(st.event)],
                    });
                }
                false => {
                    if let Some(o) = open.as_mut() {
                        if st.action == o.action && st.ok == Some(true) {
                            o.events.push(ctx.event_id(st.event));
                            let o = open.take().expect("open");
                            self.close(o, true, ctx);
                        } else if st.action != o.action && !o.attempt.contains(&st.action) {
                            o.attempt.push(st.action.clone());
                            o.events.push(ctx.event_id(st.event));
                        }
                    }
                }
            }
        }
        if let Some(o) = open {
            self.close(o, s.outcome == Some(true), ctx);
        }
    }

    fn close(&mut self, o: Open, worked: bool, ctx: &SessionCtx<'_>) {
        let b = self.books.entry(o.sig).or_default();
        let key = if o.attempt.is_empty() {
            format!("retry {}", o.action)
        } else {
            o.attempt.join(" → ")
        };
        let r = b.recoveries.entry(key).or_default();
        r.0 += 1;
        if worked {
            r.1 += 1;
            b.recovered += 1;
        }
        b.evidence.add(ctx.at_ms, ctx.touched, o.events);
    }

    /// Drafts plus each playbook's top recovery.
    pub fn finish(&self, newest_ms: i64) -> (Vec<Draft>, Vec<TopRecovery>) {
        let mut drafts = Vec::new();
        let mut tops = Vec::new();
        for (sig, b) in &self.books {
            if b.failures < MIN_FAILURES || b.recovered == 0 {
                continue;
            }
            let mut ranked: Vec<(&String, u64, u64)> = b
                .recoveries
                .iter()
                .map(|(k, (tried, worked))| (k, *tried, *worked))
                .collect();
            // Most successes first, then the better rate, then the name.
            ranked.sort_by(|a, b| {
                b.2.cmp(&a.2)
                    .then_with(|| (b.2 * a.1).cmp(&(a.2 * b.1)))
                    .then_with(|| a.0.cmp(b.0))
            });
            let steps: Vec<_> = ranked
                .iter()
                .map(|(k, tried, worked)| {
                    json!({
                        "action": k,
                        "steps": k.split(" → ").collect::<Vec<_>>(),
                        "successRate": round4(*worked as f64 / *tried as f64),
                        "attempts": tried,
                        "successes": worked,
                    })
                })
                .collect();
            let mut root: Vec<(&String, &u64)> = b.causes.iter().collect();
            root.sort_by(|a, b| b.1.cmp(a.1).then_with(|| a.0.cmp(b.0)));
            let mut root_causes: Vec<String> = root.iter().map(|(c, _)| (*c).clone()).collect();
            let mut failing: Vec<(&String, &u64)> = b.actions.iter().collect();
            failing.sort_by(|a, b| b.1.cmp(a.1).then_with(|| a.0.cmp(b.0)));
            root_causes.extend(
                failing
                    .iter()
                    .map(|(a, _)| format!("{a} fails with: {sig}")),
            );
            let success_rate = b.recovered.min(b.failures) as f64 / b.failures as f64;
            let top = ranked[0];
            if top.2 < MIN_RECOVERIES {
                continue;
            }
            // How often the best recovery resolved this failure: one lucky fix is no playbook.
            let consistency = top.2 as f64 / b.failures as f64;
            let content = json!({
                "errorSignature": sig,
                "symptoms": std::iter::once(sig.clone()).chain(b.examples.iter().cloned()).collect::<Vec<_>>(),
                "rootCauses": root_causes,
                "recoverySteps": steps,
                "successRate": round4(success_rate),
                "failures": b.failures,
            });
            tops.push(TopRecovery {
                signature: sig.clone(),
                recovery: top.0.clone(),
            });
            drafts.push(Draft {
                artifact_type: "failure_playbook",
                signature: sig.clone(),
                title: format!("Recovering from: {sig}"),
                content,
                confidence: score(b.failures, consistency, newest_ms - b.evidence.last_ms),
                evidence_count: b.failures,
                source_events: b.evidence.sources(),
                touched: b.evidence.touched,
            });
        }
        (drafts, tops)
    }
}
