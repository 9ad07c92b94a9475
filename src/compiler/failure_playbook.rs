//! failure_playbook: failures grouped by normalised error signature → the actions taken between a
//! failure and the successful retry of the failed action (or the session's successful end),
//! ranked by how often they worked.
//!
//! Within a session: a failure of action A with signature S opens an episode. Other actions are
//! collected as the recovery attempt. A new failure with S closes the attempt as "did not work"
//! and starts a new one; A succeeding — verbatim, or extended (every word of A with more to it:
//! flags, an environment prefix), in which case that variant is the last recovery step — (or the
//! session ending in success) closes it as "worked";
//! the session ending otherwise, or a failure with another signature, closes it as "did not
//! work". An empty successful attempt is recorded as "retry A". Needs `MIN_FAILURES` failures and
//! a best recovery that worked `MIN_RECOVERIES` times; confidence follows how many of the
//! failures that recovery resolved.

use super::confidence::{round4, score};
use super::sessions::extends;
use super::variants::Resolver;
use super::{Draft, Evidence, SessionCtx};
use serde_json::{json, Value};
use std::collections::BTreeMap;

/// The raw messages shown for a failure: the three most frequent (ties: the smaller), verbatim.
fn symptoms(examples: &BTreeMap<String, u64>) -> Vec<&str> {
    let mut v: Vec<(&String, &u64)> = examples.iter().collect();
    v.sort_by(|a, b| b.1.cmp(a.1).then_with(|| a.0.cmp(b.0)));
    v.into_iter().take(3).map(|(m, _)| m.as_str()).collect()
}

/// A recovery step's action key (`retry <text>` keeps its prefix).
fn step_key<'a>(names: &'a Resolver, text: &'a str) -> &'a str {
    match text.strip_prefix(RETRY) {
        Some(t) => {
            let k = names.key(t);
            if k == t {
                text
            } else {
                k
            }
        }
        None => names.key(text),
    }
}

/// A recovery as ranked: (shown, tried, worked, verbatim steps, variants).
type Ranked = (String, u64, u64, Vec<String>, Option<Value>);

/// Verbatim recoveries that are one action sequence.
#[derive(Default)]
struct Recovery<'a> {
    tried: u64,
    worked: u64,
    /// (verbatim steps, tried, worked)
    forms: Vec<(&'a Vec<String>, u64, u64)>,
}

impl Recovery<'_> {
    /// The most frequent verbatim form (ties: the smaller).
    fn shown(&self) -> Vec<String> {
        self.forms
            .iter()
            .max_by(|a, b| a.1.cmp(&b.1).then_with(|| b.0.cmp(a.0)))
            .map(|(f, _, _)| (*f).clone())
            .unwrap_or_default()
    }

    /// The verbatim forms with their attempts and success rates, when there is more than one.
    fn variants(&self) -> Option<Value> {
        if self.forms.len() < 2 {
            return None;
        }
        let mut v = self.forms.clone();
        v.sort_by(|a, b| b.1.cmp(&a.1).then_with(|| a.0.cmp(b.0)));
        Some(Value::Array(
            v.iter()
                .take(10)
                .map(|(f, n, w)| {
                    json!({"steps": f, "attempts": n, "successRate": round4(*w as f64 / *n as f64)})
                })
                .collect(),
        ))
    }
}

const MIN_FAILURES: u64 = 3;
/// Times the best recovery must have worked.
const MIN_RECOVERIES: u64 = 2;

#[derive(Default)]
struct Playbook {
    failures: u64,
    recovered: u64,
    /// Failing action (verbatim) → count.
    actions: BTreeMap<String, u64>,
    /// Stated causes → count.
    causes: BTreeMap<String, u64>,
    /// Raw messages → count (the most frequent are the symptoms).
    examples: BTreeMap<String, u64>,
    /// Recovery (verbatim steps) → (tried, worked).
    recoveries: BTreeMap<Vec<String>, (u64, u64)>,
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
    /// The failed action, verbatim.
    text: String,
    attempt: Vec<String>,
    events: Vec<String>,
}

/// `retry <text>`: a recovery that only ran the failed action again.
const RETRY: &str = "retry ";

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
                    *b.actions.entry(st.text.clone()).or_default() += 1;
                    if let Some(c) = &st.cause {
                        *b.causes.entry(c.clone()).or_default() += 1;
                    }
                    *b.examples.entry(raw).or_default() += 1;
                    if let Some(o) = open.take() {
                        self.close(o, false, ctx);
                    }
                    open = Some(Open {
                        sig,
                        text: st.text.clone(),
                        attempt: Vec::new(),
                        events: vec![ctx.event_id(st.event)],
                    });
                }
                false => {
                    if let Some(o) = open.as_mut() {
                        let again = st.text == o.text || extends(&st.text, &o.text);
                        if again && st.ok == Some(true) {
                            o.events.push(ctx.event_id(st.event));
                            if st.text != o.text {
                                o.attempt.push(st.text.clone());
                            }
                            let o = open.take().expect("open");
                            self.close(o, true, ctx);
                        } else if !again && !o.attempt.contains(&st.text) {
                            o.attempt.push(st.text.clone());
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
            vec![format!("{RETRY}{}", o.text)]
        } else {
            o.attempt
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
    pub fn finish(&self, newest_ms: i64, names: &Resolver) -> (Vec<Draft>, Vec<TopRecovery>) {
        let mut drafts = Vec::new();
        let mut tops = Vec::new();
        for (sig, b) in &self.books {
            if b.failures < MIN_FAILURES || b.recovered == 0 {
                continue;
            }
            // Verbatim recoveries grouped by their steps' action keys; each group is shown by
            // its most frequent verbatim form.
            let mut groups: BTreeMap<Vec<&str>, Recovery> = BTreeMap::new();
            for (steps, (tried, worked)) in &b.recoveries {
                let key: Vec<&str> = steps.iter().map(|t| step_key(names, t)).collect();
                let g = groups.entry(key).or_default();
                g.tried += tried;
                g.worked += worked;
                g.forms.push((steps, *tried, *worked));
            }
            let mut ranked: Vec<Ranked> = groups
                .values()
                .map(|g| {
                    let shown = g.shown();
                    (shown.join(" → "), g.tried, g.worked, shown, g.variants())
                })
                .collect();
            // Most successes first, then the better rate, then the name.
            ranked.sort_by(|a, b| {
                b.2.cmp(&a.2)
                    .then_with(|| (b.2 * a.1).cmp(&(a.2 * b.1)))
                    .then_with(|| a.0.cmp(&b.0))
            });
            let steps: Vec<_> = ranked
                .iter()
                .map(|(k, tried, worked, shown, variants)| {
                    let mut r = json!({
                        "action": k,
                        "steps": shown,
                        "successRate": round4(*worked as f64 / *tried as f64),
                        "attempts": tried,
                        "successes": worked,
                    });
                    if let Some(v) = variants {
                        r["variants"] = v.clone();
                    }
                    r
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
            let top = &ranked[0];
            if top.2 < MIN_RECOVERIES {
                continue;
            }
            // How often the best recovery resolved this failure: one lucky fix is no playbook.
            let consistency = top.2 as f64 / b.failures as f64;
            let content = json!({
                "errorSignature": sig,
                "signature": sig,
                "failingActions": failing.iter().map(|(a, _)| a).collect::<Vec<_>>(),
                "symptoms": symptoms(&b.examples),
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
